// Libgit2Repository: git::Repository over a bare mirror, with libgit2 (the one adapter that calls
// it); Mirrors: the cache of mirrors and the per-URL fetch coordination.

#include <fcntl.h>
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "base/hash.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/path.h"
#include "base/retry.h"
#include "git/git.h"
#include "git/internal/remote.h"
#include "git/internal/timed_stream.h"
#include "base/semver.h"

namespace gantry::git {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

struct Mirrors::FetchGate {
  Mutex mu;
  CondVar cv;
  uint64_t started GUARDED_BY(mu) = 0;  // fetches begun
  uint64_t finished GUARDED_BY(mu) = 0;  // the number of the last fetch that ended
  bool running GUARDED_BY(mu) = false;
  Status last GUARDED_BY(mu);  // the outcome of fetch `finished`

  // Open handles of the mirror not in use. Opening a repository reads its config files and
  // stats the directory (≈40% of a cached render's CPU when every call opened one); a handle is
  // used by one thread at a time (libgit2 objects are not shared between threads) and returned
  // here. A handle sees what a fetch through another one wrote: libgit2 re-reads changed refs
  // and rescans the packs when an object is missing. But a handle never forgets a pack it has
  // seen, removed or not, nor an object it has cached: after the packs are consolidated
  // (ConsolidatePacks) the idle handles are closed and `generation` moves on, so a handle opened
  // before goes when it is given back.
  static constexpr size_t kMaxIdle = 8;
  Mutex pool_mu;
  std::vector<git_repository*> idle GUARDED_BY(pool_mu);
  uint64_t generation GUARDED_BY(pool_mu) = 0;

  // Closes the idle handles and retires those in use (see above).
  void Recycle() {
    MutexLock lock(pool_mu);
    for (git_repository* r : idle) git_repository_free(r);
    idle.clear();
    ++generation;
  }

  ~FetchGate() {
    MutexLock lock(pool_mu);
    for (git_repository* r : idle) git_repository_free(r);
  }
};

namespace {

// --- libgit2 handles -------------------------------------------------------------------------

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;
using RemotePtr = Ptr<git_remote, git_remote_free>;
using ObjectPtr = Ptr<git_object, git_object_free>;
using CommitPtr = Ptr<git_commit, git_commit_free>;
using TreePtr = Ptr<git_tree, git_tree_free>;
using EntryPtr = Ptr<git_tree_entry, git_tree_entry_free>;
using RefPtr = Ptr<git_reference, git_reference_free>;
using BlobPtr = Ptr<git_blob, git_blob_free>;
using DiffPtr = Ptr<git_diff, git_diff_free>;
using OdbPtr = Ptr<git_odb, git_odb_free>;
using SigPtr = Ptr<git_signature, git_signature_free>;
using RefIterPtr = Ptr<git_reference_iterator, git_reference_iterator_free>;
using PackbuilderPtr = Ptr<git_packbuilder, git_packbuilder_free>;

// Pack files libgit2 keeps open at once, across all repositories of the process.
constexpr int kMaxOpenPackFiles = 64;

void InitLibgit2() {
  static std::once_flag once;
  std::call_once(once, [] {
    git_libgit2_init();
    internal::RegisterTimedStream();
    // Every fetch adds a pack file to a mirror, and libgit2 keeps each pack it has read from open
    // (no limit by default): a long-running agent held one descriptor more per commit fetched until
    // it ran out (the soak, bench/soak/run.sh). Beyond this many, the least recently used are closed.
    git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, static_cast<size_t>(kMaxOpenPackFiles));
    // No user or system configuration (url.insteadOf, credential helpers, proxies) reaches a
    // mirror: what Gantry fetches depends only on what it was asked.
    for (int level : {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG, GIT_CONFIG_LEVEL_GLOBAL,
                      GIT_CONFIG_LEVEL_PROGRAMDATA}) {
      git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, level, "");
    }
  });
}

// A Status for a failed libgit2 call: the code mapped to a canonical one, the message scrubbed.
// An in-memory remote for `url` that ignores url.*.insteadOf from any Git config: the URL fetched
// is the one validated, never one a config rewrote. (Looking insteadOf up also leaks ~20 KiB of
// PCRE2 match data per call in Debian's libgit2 1.5.1, which a long-running agent felt.)
int CreateRemote(git_remote** out, git_repository* repo, const std::string& url) {
  git_remote_create_options opts = GIT_REMOTE_CREATE_OPTIONS_INIT;
  opts.repository = repo;
  opts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
  return git_remote_create_with_opts(out, url.c_str(), &opts);
}

Status GitError(int code, std::string_view what) {
  const git_error* e = git_error_last();
  std::string message = e != nullptr && e->message != nullptr ? e->message : "unknown libgit2 error";
  int klass = e != nullptr ? e->klass : 0;
  // libgit2 messages may quote URLs; ours never hold credentials, but be safe.
  message = ScrubUrl(message);
  std::string text = fmt::format("{}: {}", what, message);
  switch (code) {
    case GIT_ENOTFOUND: return NotFoundError("{}", text);
    case GIT_EAUTH: return UnauthenticatedError("{}", text);
    case GIT_ECERTIFICATE: return PermissionDeniedError("{}", text);
    case GIT_EAMBIGUOUS: return InvalidArgumentError("{}", text);
    case GIT_ENONFASTFORWARD:
    case GIT_ELOCKED:
    case GIT_EMODIFIED: return AbortedError("{}", text);
    default: break;
  }
  // libgit2 reports a failed system call with strerror's text (a full disk during a fetch:
  // "cannot extend packfile '...': No space left on device"): out of a resource, as ErrnoError says,
  // not an internal error.
  for (int err : {ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM}) {
    if (message.find(std::strerror(err)) != std::string::npos) return ResourceExhaustedError("{}", text);
  }
  const bool network = klass == GIT_ERROR_NET || klass == GIT_ERROR_HTTP || klass == GIT_ERROR_SSH ||
                       klass == GIT_ERROR_SSL;
  // An HTTP status only in an error of the network: the digits of a path or a hash in any other
  // ("/cache/git/7f32...a40368.../objects/pack/...") are not one.
  if (klass == GIT_ERROR_NET || klass == GIT_ERROR_HTTP) {
    if (message.find("401") != std::string::npos) return UnauthenticatedError("{}", text);
    if (message.find("404") != std::string::npos) return NotFoundError("{} (no such repository?)", text);
    if (message.find("403") != std::string::npos) return PermissionDeniedError("{}", text);
  }
  if (network) return UnavailableError("{}", text);
  return InternalError("{}", text);
}

std::string OidHex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), &oid);
  return buf;
}

Result<git_oid> ParseCommitId(std::string_view commit) {
  git_oid oid;
  if (commit.size() != GIT_OID_HEXSZ || git_oid_fromstrn(&oid, commit.data(), commit.size()) != 0) {
    return InvalidArgumentError("{:?} is not a full commit id (40 hex digits; use Resolve)",
                                std::string(commit));
  }
  return oid;
}

// Splits a repository path into components: InvalidArgument for "..", ".", empty components
// (other than leading/trailing '/'), NUL or a ".git" component.
Result<std::vector<std::string>> PathComponents(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    std::string_view part = path.substr(start, end == std::string_view::npos ? end : end - start);
    start = end == std::string_view::npos ? path.size() : end + 1;
    if (part.empty() && (parts.empty() || start == path.size())) continue;
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos ||
        part == ".git") {
      if (parts.empty() && part == "." && start == path.size()) continue;  // "." is the root
      return InvalidArgumentError("path {:?}: empty, \".\", \"..\" or \".git\" components are not allowed",
                                  std::string(path));
    }
    parts.emplace_back(part);
  }
  return parts;
}

std::string JoinPath(const std::vector<std::string>& parts, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? "/" : "") + parts[i];
  return out;
}

// --- callbacks -------------------------------------------------------------------------------

// The payload of libgit2's remote callbacks for one network operation.
struct Callbacks {
  const OpenOptions* options = nullptr;
  const internal::ParsedUrl* url = nullptr;
  SteadyClock::time_point deadline;
  int credential_calls = 0;
  Status error;              // why a callback aborted the operation
  std::string rejected;      // refs the server refused in a push: "ref: status"
  std::string known_hosts;   // loaded on the first SSH host key check

  int Fail(Status status) {
    if (error.ok()) error = std::move(status);
    return GIT_EUSER;
  }
  int CheckDeadline() {
    if (SteadyClock::now() <= deadline) return 0;
    return Fail(DeadlineExceededError("the operation took longer than its timeout of {} ms",
                                      options->timeout.count()));
  }
  // The operation's result: a callback's reason when it aborted, DeadlineExceeded when the
  // deadline passed (the timed stream gave up waiting), the socket's error when libgit2 lost its
  // message, else libgit2's error.
  Status Result(int code, std::string_view what) {
    if (code == 0) return OkStatus();
    if (!error.ok()) return error.WithContext(what);
    const std::string& network = internal::LastNetworkError();
    const bool lost = git_error_last() == nullptr && !network.empty();
    if (SteadyClock::now() > deadline) {
      return DeadlineExceededError("{}: the operation took longer than its timeout of {} ms ({})", what,
                                   options->timeout.count(), lost ? network : GitError(code, "libgit2").message());
    }
    if (lost) return UnavailableError("{}: {}", what, network);
    return GitError(code, what);
  }
};

int OnCredentials(git_credential** out, const char* url, const char* username_from_url,
                  unsigned int allowed, void* payload) {
  auto* cb = static_cast<Callbacks*>(payload);
  const auto& creds = cb->options->credentials;
  if (!creds) return cb->Fail(UnauthenticatedError("the server asks for credentials; none are configured"));
  if (!internal::CredentialsApply(*creds, cb->url->scheme, url != nullptr ? url : "")) {
    return cb->Fail(UnauthenticatedError(
        "the server asks for credentials, but the configured ones are bound to host {:?} and "
        "scheme {}; they are not given to {}", creds->host, cb->url->scheme,
        ScrubUrl(url != nullptr ? url : "")));
  }
  if (++cb->credential_calls > 1) {
    return cb->Fail(UnauthenticatedError("the server rejected the credentials for {}", creds->host));
  }
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0 && !creds->password.empty()) {
    std::string user = creds->username.empty() ? "x-access-token" : creds->username;
    return git_credential_userpass_plaintext_new(out, user.c_str(), creds->password.c_str());
  }
  std::string ssh_user = username_from_url != nullptr && *username_from_url != '\0'
                             ? username_from_url
                             : creds->username.empty() ? "git" : creds->username;
  if ((allowed & GIT_CREDENTIAL_SSH_KEY) != 0 && !creds->ssh_private_key_path.empty()) {
    return git_credential_ssh_key_new(out, ssh_user.c_str(), nullptr,
                                      creds->ssh_private_key_path.c_str(),
                                      creds->ssh_key_passphrase.c_str());
  }
  if ((allowed & GIT_CREDENTIAL_USERNAME) != 0) {
    return git_credential_username_new(out, ssh_user.c_str());
  }
  return cb->Fail(UnauthenticatedError(
      "the server asks for a kind of credentials that is not configured (allowed types {:#x})", allowed));
}

int OnCertificate(git_cert* cert, int /*valid*/, const char* host, void* payload) {
  auto* cb = static_cast<Callbacks*>(payload);
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) return GIT_PASSTHROUGH;  // libgit2's TLS check
  const auto& creds = cb->options->credentials;
  if (!creds) {
    return cb->Fail(UnauthenticatedError(
        "no credentials are configured for SSH host {}: SSH needs a private key and a known_hosts file "
        "to check the host key", host));
  }
  if (creds->ssh_known_hosts_path.empty()) {
    return cb->Fail(PermissionDeniedError(
        "SSH needs a known_hosts file in the credentials to check the host key of {}", host));
  }
  auto* key = reinterpret_cast<git_cert_hostkey*>(cert);
  if ((key->type & GIT_CERT_SSH_RAW) == 0) {
    return cb->Fail(PermissionDeniedError("libgit2 did not provide the SSH host key of {}", host));
  }
  int port = cb->url->port.empty() ? 22 : std::stoi(cb->url->port);
  if (cb->known_hosts.empty()) {
    auto text = ReadFile(creds->ssh_known_hosts_path, 16 << 20);
    if (!text.ok()) {
      return cb->Fail(PermissionDeniedError("cannot check the SSH host key of {}:{}: {}", host, port,
                                            text.status().message()));
    }
    cb->known_hosts = std::move(text).value();
  }
  Status s = internal::CheckKnownHost(
      cb->known_hosts, host, port,
      std::string_view(key->hostkey, key->hostkey_len));
  if (s.ok()) return 0;
  return cb->Fail(PermissionDeniedError("{} (known_hosts file {})", s.message(), creds->ssh_known_hosts_path));
}

int OnTransferProgress(const git_indexer_progress*, void* payload) {
  return static_cast<Callbacks*>(payload)->CheckDeadline();
}
int OnSideband(const char*, int, void* payload) {
  return static_cast<Callbacks*>(payload)->CheckDeadline();
}
int OnUpdateTips(const char*, const git_oid*, const git_oid*, void* payload) {
  return static_cast<Callbacks*>(payload)->CheckDeadline();
}
int OnPackProgress(int, uint32_t, uint32_t, void* payload) {
  return static_cast<Callbacks*>(payload)->CheckDeadline();
}
int OnPushTransferProgress(unsigned int, unsigned int, size_t, void* payload) {
  return static_cast<Callbacks*>(payload)->CheckDeadline();
}
int OnPushUpdateReference(const char* ref, const char* status, void* payload) {
  if (status != nullptr) {
    auto* cb = static_cast<Callbacks*>(payload);
    cb->rejected += fmt::format("{}{}: {}", cb->rejected.empty() ? "" : "; ", ref, status);
  }
  return 0;
}

git_remote_callbacks MakeCallbacks(Callbacks* cb) {
  git_remote_callbacks c = GIT_REMOTE_CALLBACKS_INIT;
  c.credentials = OnCredentials;
  c.certificate_check = OnCertificate;
  c.transfer_progress = OnTransferProgress;
  c.sideband_progress = OnSideband;
  c.update_tips = OnUpdateTips;
  c.pack_progress = OnPackProgress;
  c.push_transfer_progress = OnPushTransferProgress;
  c.push_update_reference = OnPushUpdateReference;
  c.payload = cb;
  return c;
}

// Redirects to another host are never followed when credentials are set (they would not be sent
// there anyway); anonymous fetches follow them on the first request as git does.
git_remote_redirect_t Redirects(const OpenOptions& options) {
  return options.credentials ? GIT_REMOTE_REDIRECT_NONE : GIT_REMOTE_REDIRECT_INITIAL;
}

// --- trees -----------------------------------------------------------------------------------

struct Entry {
  std::string path;
  uint32_t mode;
  git_oid oid;
};

uint32_t NormalMode(git_filemode_t mode) {
  if (mode == GIT_FILEMODE_LINK) return 0120000;
  if (mode == GIT_FILEMODE_BLOB_EXECUTABLE) return 0100755;
  return 0100644;
}

// Directories nested deeper than this under the path read are refused: the recursion below would
// otherwise follow a hostile repository's nesting as deep as it likes.
constexpr int kMaxTreeDepth = 64;

// Collects the blobs under `tree` (prefix: their path so far; `depth` directories deep), bounded
// by max_files and kMaxTreeDepth.
Status CollectTree(git_repository* repo, const git_tree* tree, const std::string& prefix,
                   const Limits& limits, std::vector<Entry>& out, std::vector<std::string>& submodules,
                   int depth = 0) {
  if (depth > kMaxTreeDepth) {
    return ResourceExhaustedError("directories nested more than {} deep at {:?}; refusing the tree",
                                  kMaxTreeDepth, prefix);
  }
  size_t n = git_tree_entrycount(tree);
  for (size_t i = 0; i < n; ++i) {
    const git_tree_entry* e = git_tree_entry_byindex(tree, i);
    std::string_view name = git_tree_entry_name(e);
    if (name.empty() || name == "." || name == ".." || name == ".git" ||
        name.find('/') != std::string_view::npos) {
      return DataLossError("the tree at {:?} has an entry named {:?}, which git forbids; refusing it",
                           prefix, std::string(name));
    }
    std::string path = prefix.empty() ? std::string(name) : prefix + "/" + std::string(name);
    git_filemode_t mode = git_tree_entry_filemode(e);
    if (mode == GIT_FILEMODE_TREE) {
      git_tree* sub = nullptr;
      if (int err = git_tree_lookup(&sub, repo, git_tree_entry_id(e)); err != 0) {
        return GitError(err, "read tree " + path);
      }
      TreePtr owned(sub);
      GANTRY_RETURN_IF_ERROR(CollectTree(repo, sub, path, limits, out, submodules, depth + 1));
    } else if (mode == GIT_FILEMODE_COMMIT) {
      submodules.push_back(path);
    } else {
      if (out.size() >= limits.max_files) {
        return ResourceExhaustedError("more than {} files (the limit max_files)", limits.max_files);
      }
      out.push_back(Entry{path, NormalMode(mode), *git_tree_entry_id(e)});
    }
  }
  return OkStatus();
}

// Physical resolution of a symlink target inside a tree whose symlinks are `links` (path →
// target): false when the target, or any link it passes through, leads outside the root.
bool StaysInside(const std::map<std::string, std::string>& links, std::vector<std::string>& stack,
                 std::string_view target, int& hops) {
  if (target.empty() || target[0] == '/') return false;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    std::string_view part = target.substr(start, end == std::string_view::npos ? end : end - start);
    start = end == std::string_view::npos ? target.size() + 1 : end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (stack.empty()) return false;
      stack.pop_back();
      continue;
    }
    stack.emplace_back(part);
    auto link = links.find(JoinPath(stack, stack.size()));
    if (link != links.end()) {
      if (++hops > 40) return false;
      stack.pop_back();
      if (!StaysInside(links, stack, link->second, hops)) return false;
    }
  }
  return true;
}

// Creates the directories of `parts[0..n)` under `root`, refusing anything that is not a directory.
Status MakeDirs(const fs::path& root, const std::vector<std::string>& parts, size_t n) {
  fs::path dir = root;
  for (size_t i = 0; i < n; ++i) {
    dir /= parts[i];
    if (::mkdir(dir.c_str(), 0755) == 0) continue;
    if (errno != EEXIST) return ErrnoError(errno, "mkdir " + dir.string());
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return PermissionDeniedError("{} exists and is not a directory", dir.string());
    }
  }
  return OkStatus();
}

// --- consolidating packs ---------------------------------------------------------------------

// Pack files a mirror may hold before a fetch consolidates them.
constexpr size_t kMaxPacks = 16;

struct PackFile {
  fs::path pack;  // objects/pack/pack-<hash>.pack; its index is beside it (.idx)
  uintmax_t size = 0;
  fs::path index() const { return fs::path(pack).replace_extension(".idx"); }
};

// The complete packs (with their index) in `pack_dir`.
std::vector<PackFile> ListPacks(const fs::path& pack_dir) {
  std::vector<PackFile> packs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(pack_dir, ec)) {
    PackFile p{e.path()};
    if (p.pack.extension() != ".pack" || !p.pack.filename().string().starts_with("pack-")) continue;
    std::error_code size_ec, idx_ec;
    p.size = e.file_size(size_ec);
    if (!size_ec && fs::exists(p.index(), idx_ec)) packs.push_back(std::move(p));
  }
  return packs;
}

// fsync of a file or directory; errors name the path.
Status SyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + path.string());
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError(err, "fsync " + path.string());
  return OkStatus();
}

// Beyond kMaxPacks packs in the mirror at `dir`, merges every pack but the largest into one, as
// `git gc --auto` does beyond gc.autoPackLimit; returns how many packs were merged (0: nothing to
// do). Each fetch adds a pack, and libgit2 searches the packs one by one for an object and keeps
// every pack it has seen in memory with its index mapped, so a mirror fetched every few seconds
// grew the process without bound (bench/soak). The largest pack (usually the first fetch) stays
// as it is, so the work is in proportion to what came since. Every object of the merged packs is
// kept, reachable or not (a reader may still hold a commit a forced push dropped). The old packs
// are removed only once the new one is written and synced: a reader that has them open keeps
// reading them, and one that looks an object up later finds it in the new pack (libgit2 rescans
// the directory when an object is missing). The errors of libgit2 and the file system; on error
// nothing is removed.
Result<size_t> ConsolidatePacks(git_repository* repo, const fs::path& dir) {
  const fs::path pack_dir = dir / "objects" / "pack";
  std::vector<PackFile> packs = ListPacks(pack_dir);
  if (packs.size() <= kMaxPacks) return 0;
  packs.erase(std::max_element(packs.begin(), packs.end(),
                               [](const PackFile& a, const PackFile& b) { return a.size < b.size; }));
  // The objects of the packs to merge, read from their indexes.
  git_odb* raw_odb = nullptr;
  if (int err = git_odb_new(&raw_odb); err != 0) return GitError(err, "new object database");
  OdbPtr odb(raw_odb);
  for (const PackFile& p : packs) {
    git_odb_backend* backend = nullptr;
    if (int err = git_odb_backend_one_pack(&backend, p.index().c_str()); err != 0) {
      return GitError(err, "read " + p.index().string());
    }
    if (int err = git_odb_add_backend(odb.get(), backend, 1); err != 0) {
      backend->free(backend);
      return GitError(err, "read " + p.index().string());
    }
  }
  std::vector<git_oid> ids;
  auto collect = [](const git_oid* id, void* payload) {
    static_cast<std::vector<git_oid>*>(payload)->push_back(*id);
    return 0;
  };
  if (int err = git_odb_foreach(odb.get(), collect, &ids); err != 0) return GitError(err, "list objects");
  git_packbuilder* raw_pb = nullptr;
  if (int err = git_packbuilder_new(&raw_pb, repo); err != 0) return GitError(err, "new pack");
  PackbuilderPtr pb(raw_pb);
  for (const git_oid& id : ids) {  // an object in several packs is inserted once
    if (int err = git_packbuilder_insert(pb.get(), &id, nullptr); err != 0) {
      return GitError(err, "pack object " + OidHex(id));
    }
  }
  if (int err = git_packbuilder_write(pb.get(), pack_dir.c_str(), 0, nullptr, nullptr); err != 0) {
    return GitError(err, "write pack in " + pack_dir.string());
  }
  const fs::path written = pack_dir / fmt::format("pack-{}.pack", git_packbuilder_name(pb.get()));
  const PackFile merged{written};
  for (const fs::path& p : {merged.pack, merged.index(), pack_dir}) GANTRY_RETURN_IF_ERROR(SyncPath(p));
  for (const PackFile& p : packs) {
    if (p.pack == merged.pack) continue;  // the same objects packed the same way
    std::error_code ec;
    fs::remove(p.pack, ec);  // the pack first: an index without its pack is ignored
    if (!ec) fs::remove(p.index(), ec);
    if (ec) return InternalError("remove {}: {}", p.pack.string(), ec.message());
  }
  return packs.size();
}

// --- the repository --------------------------------------------------------------------------

class Libgit2Repository final : public Repository {
 public:
  Libgit2Repository(std::string url, internal::ParsedUrl parsed, fs::path dir, OpenOptions options,
                    std::shared_ptr<Mirrors::FetchGate> gate)
      : url_(std::move(url)), parsed_(std::move(parsed)), dir_(std::move(dir)),
        options_(std::move(options)), gate_(std::move(gate)) {}

  const std::string& url() const override { return url_; }
  Result<FetchResult> Fetch() override;
  Result<std::string> Resolve(std::string_view revision) override;
  Result<bool> Contains(std::string_view descendant, std::string_view ancestor) override;
  Result<ReadResult> ReadTree(std::string_view commit, std::string_view path,
                              const Limits& limits) override;
  Result<std::string> TreeId(std::string_view commit, std::string_view path) override;
  Status Materialize(std::string_view commit, std::string_view path, const fs::path& dest,
                     const Limits& limits) override;
  Result<std::vector<std::string>> ChangedPaths(std::string_view from, std::string_view to) override;
  Result<std::vector<CommitInfo>> Log(std::string_view tip, std::string_view since, int max) override;
  Result<std::optional<CommitSignature>> ReadSignature(std::string_view commit) override;
  Result<std::string> CommitAndPush(const PushRequest& request) override;

 private:
  // A handle of the mirror, from the gate's idle handles or newly opened; it goes back to them
  // when the PooledRepo is destroyed.
  struct GiveBack {
    std::shared_ptr<Mirrors::FetchGate> gate;
    uint64_t generation = 0;  // the gate's when the handle was opened
    void operator()(git_repository* repo) const;
  };
  using PooledRepo = std::unique_ptr<git_repository, GiveBack>;
  Result<PooledRepo> OpenRepo() const;
  Status DoFetch();
  Callbacks NewCallbacks() const {
    Callbacks cb;
    cb.options = &options_;
    cb.url = &parsed_;
    cb.deadline = SteadyClock::now() + options_.timeout;
    return cb;
  }
  // The tree of `path` in `commit`; a blob path gives the blob's entry instead (tree null).
  struct Located {
    TreePtr tree;
    EntryPtr entry;
  };
  Result<Located> Locate(git_repository* repo, std::string_view commit, std::string_view path) const;
  Result<std::string> ResolveIn(git_repository* repo, std::string_view revision) const;
  Result<std::string> PushOnce(git_repository* repo, const git_oid& commit, const std::string& branch, bool force,
                               bool* lost_race);

  const std::string url_;
  const internal::ParsedUrl parsed_;
  const fs::path dir_;
  const OpenOptions options_;
  const std::shared_ptr<Mirrors::FetchGate> gate_;
};

void Libgit2Repository::GiveBack::operator()(git_repository* repo) const {
  {
    MutexLock lock(gate->pool_mu);
    if (generation == gate->generation && gate->idle.size() < Mirrors::FetchGate::kMaxIdle) {
      gate->idle.push_back(repo);
      return;
    }
  }
  git_repository_free(repo);
}

Result<Libgit2Repository::PooledRepo> Libgit2Repository::OpenRepo() const {
  uint64_t generation = 0;
  {
    MutexLock lock(gate_->pool_mu);
    generation = gate_->generation;
    if (!gate_->idle.empty()) {
      git_repository* repo = gate_->idle.back();
      gate_->idle.pop_back();
      return PooledRepo(repo, GiveBack{gate_, generation});
    }
  }
  git_repository* repo = nullptr;
  if (int err = git_repository_open_bare(&repo, dir_.c_str()); err != 0) {
    return GitError(err, "open mirror " + dir_.string());
  }
  return PooledRepo(repo, GiveBack{gate_, generation});
}

Result<FetchResult> Libgit2Repository::Fetch() {
  Mirrors::FetchGate& g = *gate_;
  MutexLock lock(g.mu);
  const uint64_t want = g.started + 1;  // a fetch that begins after this call
  while (g.finished < want && g.running) g.cv.Wait(g.mu);
  if (g.finished >= want) {
    if (!g.last.ok()) return g.last;
    return FetchResult{g.finished, true};
  }
  g.running = true;
  const uint64_t number = ++g.started;
  lock.Unlock();
  Status s = DoFetch().WithContext("fetch " + url_);
  lock.Lock();
  g.running = false;
  g.finished = number;
  g.last = s;
  g.cv.NotifyAll();
  if (!s.ok()) return s;
  return FetchResult{number, false};
}

Status Libgit2Repository::DoFetch() {
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  git_remote* raw = nullptr;
  if (int err = CreateRemote(&raw, repo.get(), url_); err != 0) {
    return GitError(err, "create remote");
  }
  RemotePtr remote(raw);
  Callbacks cb = NewCallbacks();
  internal::NetworkDeadline network_deadline(cb.deadline);
  git_remote_connect_options connect = GIT_REMOTE_CONNECT_OPTIONS_INIT;
  connect.callbacks = MakeCallbacks(&cb);
  connect.follow_redirects = Redirects(options_);
  if (int err = git_remote_connect_ext(remote.get(), GIT_DIRECTION_FETCH, &connect); err != 0) {
    return cb.Result(err, "connect");
  }
  std::string default_branch;
  git_buf buf = GIT_BUF_INIT;
  if (git_remote_default_branch(&buf, remote.get()) == 0) default_branch.assign(buf.ptr, buf.size);
  git_buf_dispose(&buf);
  git_error_clear();

  char heads[] = "+refs/heads/*:refs/heads/*";
  char tags[] = "+refs/tags/*:refs/tags/*";
  char* specs[] = {heads, tags};
  git_strarray refspecs = {specs, 2};
  git_fetch_options fetch = GIT_FETCH_OPTIONS_INIT;
  fetch.callbacks = connect.callbacks;
  fetch.prune = GIT_FETCH_PRUNE;
  fetch.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  fetch.update_fetchhead = 0;
  fetch.follow_redirects = connect.follow_redirects;
  if (int err = git_remote_download(remote.get(), &refspecs, &fetch); err != 0) {
    return cb.Result(err, "download");
  }
  if (int err = git_remote_update_tips(remote.get(), &fetch.callbacks, 0,
                                       GIT_REMOTE_DOWNLOAD_TAGS_NONE, "gantry fetch");
      err != 0) {
    return cb.Result(err, "update refs");
  }
  if (int err = git_remote_prune(remote.get(), &fetch.callbacks); err != 0) {
    return cb.Result(err, "prune refs");
  }
  git_remote_disconnect(remote.get());
  if (!default_branch.empty()) {
    git_reference* head = nullptr;
    if (int err = git_reference_symbolic_create(&head, repo.get(), "HEAD", default_branch.c_str(), 1,
                                                "gantry fetch: remote HEAD");
        err != 0) {
      return GitError(err, "set HEAD to " + default_branch);
    }
    git_reference_free(head);
  }
  // The fetch succeeded whatever happens here: a failed consolidation leaves the packs as they were.
  auto merged = ConsolidatePacks(repo.get(), dir_);
  if (!merged.ok()) {
    log::Warn("git: {}: {}", url_, merged.status().WithContext("consolidate the mirror's packs").ToString());
  } else if (*merged > 0) {
    gate_->Recycle();
  }
  return OkStatus();
}

Result<std::string> PeelToCommit(git_object* object, std::string_view what) {
  git_object* commit = nullptr;
  if (int err = git_object_peel(&commit, object, GIT_OBJECT_COMMIT); err != 0) {
    return GitError(err, fmt::format("{} does not name a commit", what));
  }
  ObjectPtr owned(commit);
  return OidHex(*git_object_id(commit));
}

// The commit a reference points to (peeling tags); NotFound when it does not exist.
Result<std::string> RefCommit(git_repository* repo, const std::string& name) {
  git_reference* ref = nullptr;
  if (int err = git_reference_lookup(&ref, repo, name.c_str()); err != 0) {
    return GitError(err, "reference " + name);
  }
  RefPtr owned(ref);
  git_object* commit = nullptr;
  if (int err = git_reference_peel(&commit, ref, GIT_OBJECT_COMMIT); err != 0) {
    return GitError(err, fmt::format("{} does not point to a commit", name));
  }
  ObjectPtr owned_commit(commit);
  return OidHex(*git_object_id(commit));
}

Result<std::string> Libgit2Repository::Resolve(std::string_view revision) {
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  auto r = ResolveIn(repo.get(), revision);
  if (!r.ok()) return r.status().WithContext(fmt::format("resolve {:?} in {}", std::string(revision), url_));
  return r;
}

Result<bool> Libgit2Repository::Contains(std::string_view descendant, std::string_view ancestor) {
  GANTRY_ASSIGN_OR_RETURN(git_oid d, ParseCommitId(descendant));
  GANTRY_ASSIGN_OR_RETURN(git_oid a, ParseCommitId(ancestor));
  if (git_oid_equal(&d, &a)) return true;
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  for (const git_oid* oid : {&d, &a}) {
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, repo.get(), oid) != 0) {
      return NotFoundError("commit {} is not in {}", OidHex(*oid), url_);
    }
    git_commit_free(c);
  }
  int r = git_graph_descendant_of(repo.get(), &d, &a);
  if (r < 0) return GitError(r, fmt::format("is {} in the history of {}", OidHex(a), OidHex(d)));
  return r == 1;
}

Result<std::optional<CommitSignature>> Libgit2Repository::ReadSignature(std::string_view commit) {
  GANTRY_ASSIGN_OR_RETURN(git_oid id, ParseCommitId(commit));
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  git_commit* c = nullptr;
  if (git_commit_lookup(&c, repo.get(), &id) != 0) {
    return NotFoundError("read the signature of commit {}: it is not in the mirror of {}", OidHex(id), url_);
  }
  git_commit_free(c);
  git_buf signature = GIT_BUF_INIT, data = GIT_BUF_INIT;
  int err = git_commit_extract_signature(&signature, &data, repo.get(), &id, nullptr);
  std::optional<CommitSignature> out;
  if (err == 0) out = CommitSignature{.signature = std::string(signature.ptr, signature.size),
                                     .signed_data = std::string(data.ptr, data.size)};
  git_buf_dispose(&signature);
  git_buf_dispose(&data);
  if (err != 0 && err != GIT_ENOTFOUND) {
    return GitError(err, fmt::format("read the signature of commit {} in {}", OidHex(id), url_));
  }
  return out;  // nullopt: GIT_ENOTFOUND, the commit has no gpgsig header
}

Result<std::vector<CommitInfo>> Libgit2Repository::Log(std::string_view tip, std::string_view since, int max) {
  auto context = fmt::format("log {}..{} in {}", std::string(since), std::string(tip), url_);
  if (max < 1) return InvalidArgumentError("{}: max must be at least 1, got {}", context, max);
  GANTRY_ASSIGN_OR_RETURN(git_oid t, ParseCommitId(tip));
  std::optional<git_oid> s;
  if (!since.empty()) { GANTRY_ASSIGN_OR_RETURN(s, ParseCommitId(since)); }
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  for (const git_oid* oid : {&t, s ? &*s : nullptr}) {
    if (oid == nullptr) continue;
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, repo.get(), oid) != 0) {
      return NotFoundError("{}: commit {} is not in the mirror", context, OidHex(*oid));
    }
    git_commit_free(c);
  }
  git_revwalk* raw = nullptr;
  if (int err = git_revwalk_new(&raw, repo.get()); err != 0) return GitError(err, context);
  std::unique_ptr<git_revwalk, void (*)(git_revwalk*)> walk(raw, git_revwalk_free);
  git_revwalk_sorting(raw, GIT_SORT_TOPOLOGICAL | GIT_SORT_TIME);
  if (int err = git_revwalk_push(raw, &t); err != 0) return GitError(err, context);
  if (s) {
    if (int err = git_revwalk_hide(raw, &*s); err != 0) return GitError(err, context);
  }
  std::vector<CommitInfo> out;
  git_oid oid;
  while (static_cast<int>(out.size()) < max) {
    int err = git_revwalk_next(&oid, raw);
    if (err == GIT_ITEROVER) break;
    if (err != 0) return GitError(err, context);
    git_commit* c = nullptr;
    if (int e = git_commit_lookup(&c, repo.get(), &oid); e != 0) return GitError(e, context);
    CommitPtr commit(c);
    CommitInfo info;
    info.id = OidHex(oid);
    if (git_commit_parentcount(c) > 0) info.parent = OidHex(*git_commit_parent_id(c, 0));
    const char* message = git_commit_message(c);
    info.message = message != nullptr ? message : "";
    if (const git_signature* author = git_commit_author(c)) {
      info.author = {.name = author->name != nullptr ? author->name : "", .email = author->email != nullptr ? author->email : ""};
      info.time = author->when.time;
    }
    out.push_back(std::move(info));
  }
  return out;
}

Result<std::string> Libgit2Repository::ResolveIn(git_repository* repo, std::string_view revision) const {
  if (revision.empty()) return InvalidArgumentError("empty revision");
  if (revision.find_first_of(std::string_view("\0\n\r", 3)) != std::string_view::npos) {
    return InvalidArgumentError("control characters in the revision");
  }
  std::string rev(revision);
  if (rev == "HEAD") {
    git_oid oid;
    if (int err = git_reference_name_to_id(&oid, repo, "HEAD"); err != 0) {
      if (err == GIT_ENOTFOUND || err == GIT_EUNBORNBRANCH) {
        return NotFoundError("the mirror has no HEAD (not fetched yet, or the remote is empty)");
      }
      return GitError(err, "HEAD");
    }
    return OidHex(oid);
  }
  if (rev.starts_with("refs/")) {
    GANTRY_RETURN_IF_ERROR(ValidateRefName(rev.substr(5)));
    return RefCommit(repo, rev);
  }
  if (ValidateRefName(rev).ok()) {
    auto branch = RefCommit(repo, "refs/heads/" + rev);
    auto tag = RefCommit(repo, "refs/tags/" + rev);
    if (branch.ok() && tag.ok() && *branch != *tag) {
      return InvalidArgumentError("both a branch and a tag have this name; say refs/heads/{0} or refs/tags/{0}", rev);
    }
    if (branch.ok()) return branch;
    if (tag.ok()) return tag;
    if (branch.status().code() != Code::kNotFound) return branch.status();
    if (tag.status().code() != Code::kNotFound) return tag.status();
  }
  bool hex = rev.size() >= 4 && rev.size() <= GIT_OID_HEXSZ &&
             std::all_of(rev.begin(), rev.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  if (hex) {
    git_oid oid;
    git_oid_fromstrn(&oid, rev.data(), rev.size());
    git_object* object = nullptr;
    int err = git_object_lookup_prefix(&object, repo, &oid, rev.size(), GIT_OBJECT_ANY);
    if (err == 0) {
      ObjectPtr owned(object);
      return PeelToCommit(object, rev);
    }
    if (err == GIT_EAMBIGUOUS) {
      return InvalidArgumentError("the short id {} matches several objects; give more digits", rev);
    }
    if (err != GIT_ENOTFOUND) return GitError(err, "look up " + rev);
    git_error_clear();
  }
  auto range = semver::VersionRange::Parse(rev);
  if (!range.ok()) {
    return NotFoundError("no branch, tag or commit of that name (and not a version range: {})",
                         range.status().message());
  }
  git_reference_iterator* raw = nullptr;
  if (int err = git_reference_iterator_glob_new(&raw, repo, "refs/tags/*"); err != 0) {
    return GitError(err, "list tags");
  }
  RefIterPtr it(raw);
  std::optional<semver::Version> best;
  std::string best_tag;
  size_t versions = 0;
  const char* name = nullptr;
  while (git_reference_next_name(&name, it.get()) == 0) {
    std::string_view tag = std::string_view(name).substr(std::string_view("refs/tags/").size());
    auto v = semver::ParseVersion(tag);
    if (!v.ok()) continue;
    ++versions;
    if (range->Matches(*v) && (!best || *v > *best)) {
      best = *v;
      best_tag = std::string(tag);
    }
  }
  git_error_clear();
  if (!best) {
    return NotFoundError("no tag matches the version range ({} tags are versions)", versions);
  }
  return RefCommit(repo, "refs/tags/" + best_tag);
}

Result<Libgit2Repository::Located> Libgit2Repository::Locate(git_repository* repo,
                                                              std::string_view commit,
                                                              std::string_view path) const {
  GANTRY_ASSIGN_OR_RETURN(git_oid oid, ParseCommitId(commit));
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> parts, PathComponents(path));
  git_commit* c = nullptr;
  if (int err = git_commit_lookup(&c, repo, &oid); err != 0) {
    return GitError(err, fmt::format("commit {}", std::string(commit)));
  }
  CommitPtr owned(c);
  git_tree* root = nullptr;
  if (int err = git_commit_tree(&root, c); err != 0) return GitError(err, "tree of the commit");
  Located out;
  out.tree.reset(root);
  if (parts.empty()) return out;
  std::string joined = JoinPath(parts, parts.size());
  git_tree_entry* entry = nullptr;
  if (int err = git_tree_entry_bypath(&entry, root, joined.c_str()); err != 0) {
    if (err == GIT_ENOTFOUND) return NotFoundError("path {:?} does not exist in commit {}", joined, std::string(commit));
    return GitError(err, "path " + joined);
  }
  out.entry.reset(entry);
  out.tree.reset();
  if (git_tree_entry_type(entry) == GIT_OBJECT_TREE) {
    git_tree* sub = nullptr;
    if (int err = git_tree_lookup(&sub, repo, git_tree_entry_id(entry)); err != 0) {
      return GitError(err, "tree " + joined);
    }
    out.tree.reset(sub);
  }
  return out;
}

Result<ReadResult> Libgit2Repository::ReadTree(std::string_view commit, std::string_view path,
                                               const Limits& limits) {
  auto context = [&] { return fmt::format("read {:?} of {} in {}", std::string(path), std::string(commit), url_); };
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  auto located = Locate(repo.get(), commit, path);
  if (!located.ok()) return located.status().WithContext(context());
  std::vector<Entry> entries;
  ReadResult result;
  if (located->tree) {
    Status s = CollectTree(repo.get(), located->tree.get(), "", limits, entries, result.submodules);
    if (!s.ok()) return s.WithContext(context());
  } else if (git_tree_entry_filemode(located->entry.get()) == GIT_FILEMODE_COMMIT) {
    result.submodules.emplace_back(git_tree_entry_name(located->entry.get()));
  } else {
    entries.push_back(Entry{git_tree_entry_name(located->entry.get()),
                            NormalMode(git_tree_entry_filemode(located->entry.get())),
                            *git_tree_entry_id(located->entry.get())});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.path < b.path; });
  git_odb* raw_odb = nullptr;
  if (int err = git_repository_odb(&raw_odb, repo.get()); err != 0) return GitError(err, "open odb");
  OdbPtr odb(raw_odb);
  // Sizes first, from object headers: nothing large is inflated before the limits are checked.
  uint64_t total = 0;
  for (const Entry& e : entries) {
    size_t size = 0;
    git_object_t type;
    if (int err = git_odb_read_header(&size, &type, odb.get(), &e.oid); err != 0) {
      return GitError(err, "object of " + e.path).WithContext(context());
    }
    if (size > limits.max_file_bytes) {
      return ResourceExhaustedError("file {:?} is {} bytes, above the limit max_file_bytes of {} bytes",
                                    e.path, size, limits.max_file_bytes).WithContext(context());
    }
    total += size;
    if (total > limits.max_total_bytes) {
      return ResourceExhaustedError("the files add up to more than the limit max_total_bytes of {} bytes",
                                    limits.max_total_bytes).WithContext(context());
    }
  }
  result.files.reserve(entries.size());
  for (Entry& e : entries) {
    git_blob* blob = nullptr;
    if (int err = git_blob_lookup(&blob, repo.get(), &e.oid); err != 0) {
      return GitError(err, "blob of " + e.path).WithContext(context());
    }
    BlobPtr owned(blob);
    std::string content(static_cast<const char*>(git_blob_rawcontent(blob)),
                        static_cast<size_t>(git_blob_rawsize(blob)));
    result.files.push_back(File{std::move(e.path), e.mode, std::move(content)});
  }
  return result;
}

Result<std::string> Libgit2Repository::TreeId(std::string_view commit, std::string_view path) {
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  auto located = Locate(repo.get(), commit, path);
  if (!located.ok()) return located.status().WithContext("tree id in " + url_);
  if (located->tree) return OidHex(*git_tree_id(located->tree.get()));
  return OidHex(*git_tree_entry_id(located->entry.get()));
}

Status Libgit2Repository::Materialize(std::string_view commit, std::string_view path,
                                      const fs::path& dest, const Limits& limits) {
  auto context = fmt::format("materialize {:?} of {} into {}", std::string(path), std::string(commit),
                             dest.string());
  struct stat st;
  if (::lstat(dest.c_str(), &st) == 0) return AlreadyExistsError("{}: the directory already exists", context);
  GANTRY_ASSIGN_OR_RETURN(ReadResult tree, ReadTree(commit, path, limits));
  std::map<std::string, std::string> links;
  for (const File& f : tree.files) {
    if (f.is_symlink()) links[f.path] = f.content;
  }
  // Every symlink must resolve inside dest before anything is written.
  for (const auto& [link, target] : links) {
    auto parts = PathComponents(link);
    std::vector<std::string> stack = parts.ok() ? *parts : std::vector<std::string>{};
    if (!stack.empty()) stack.pop_back();
    int hops = 0;
    if (target.find('\0') != std::string::npos || !StaysInside(links, stack, target, hops)) {
      return PermissionDeniedError("symbolic link {:?} points to {:?}, outside the directory; refusing it",
                                   link, target).WithContext(context);
    }
  }
  if (::mkdir(dest.c_str(), 0700) != 0) return ErrnoError(errno, "mkdir " + dest.string()).WithContext(context);
  auto fail = [&](Status s) {
    std::error_code ec;
    fs::remove_all(dest, ec);
    return s.WithContext(context);
  };
  for (const File& f : tree.files) {
    auto parts = PathComponents(f.path);
    if (!parts.ok()) return fail(parts.status());
    if (Status s = MakeDirs(dest, *parts, parts->size() - 1); !s.ok()) return fail(s);
    fs::path target = dest / f.path;
    if (f.is_symlink()) {
      if (::symlink(f.content.c_str(), target.c_str()) != 0) return fail(ErrnoError(errno, "symlink " + f.path));
      continue;
    }
    int mode = f.mode == 0100755 ? 0755 : 0644;
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return fail(ErrnoError(errno, "create " + f.path));
    Status s = WriteAll(fd, f.content, target);
    if (::close(fd) != 0 && s.ok()) s = ErrnoError(errno, "close " + f.path);
    if (!s.ok()) return fail(s);
  }
  return OkStatus();
}

Result<std::vector<std::string>> Libgit2Repository::ChangedPaths(std::string_view from,
                                                                 std::string_view to) {
  GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
  auto context = fmt::format("changed paths {}..{} in {}", std::string(from), std::string(to), url_);
  auto a = Locate(repo.get(), from, "");
  if (!a.ok()) return a.status().WithContext(context);
  auto b = Locate(repo.get(), to, "");
  if (!b.ok()) return b.status().WithContext(context);
  git_diff_options options = GIT_DIFF_OPTIONS_INIT;
  options.flags = GIT_DIFF_INCLUDE_TYPECHANGE;
  git_diff* raw = nullptr;
  if (int err = git_diff_tree_to_tree(&raw, repo.get(), a->tree.get(), b->tree.get(), &options); err != 0) {
    return GitError(err, context);
  }
  DiffPtr diff(raw);
  std::set<std::string> paths;
  for (size_t i = 0, n = git_diff_num_deltas(raw); i < n; ++i) {
    const git_diff_delta* d = git_diff_get_delta(raw, i);
    if (d->old_file.path != nullptr) paths.insert(d->old_file.path);
    if (d->new_file.path != nullptr) paths.insert(d->new_file.path);
  }
  return std::vector<std::string>(paths.begin(), paths.end());
}

Result<std::string> Libgit2Repository::PushOnce(git_repository* repo, const git_oid& commit,
                                                const std::string& branch, bool force, bool* lost_race) {
  // libgit2 pushes references, not ids: a private ref names the commit for the push.
  static std::atomic<uint64_t> counter{0};
  std::string temp = fmt::format("refs/gantry/push/{}-{}", OidHex(commit), counter.fetch_add(1));
  git_reference* ref = nullptr;
  if (int err = git_reference_create(&ref, repo, temp.c_str(), &commit, 1, nullptr); err != 0) {
    return GitError(err, "create " + temp);
  }
  RefPtr temp_ref(ref);
  git_remote* raw = nullptr;
  if (int err = CreateRemote(&raw, repo, url_); err != 0) {
    git_reference_delete(ref);
    return GitError(err, "create remote");
  }
  RemotePtr remote(raw);
  Callbacks cb = NewCallbacks();
  internal::NetworkDeadline network_deadline(cb.deadline);
  git_push_options options = GIT_PUSH_OPTIONS_INIT;
  options.callbacks = MakeCallbacks(&cb);
  options.follow_redirects = Redirects(options_);
  // Not forced unless asked: only fast-forwards.
  std::string spec = (force ? "+" : "") + temp + ":refs/heads/" + branch;
  char* specs[] = {spec.data()};
  git_strarray refspecs = {specs, 1};
  int err = git_remote_push(remote.get(), &refspecs, &options);
  git_reference_delete(ref);
  if (err == GIT_ENONFASTFORWARD || (err == 0 && !cb.rejected.empty())) {
    *lost_race = true;
    return AbortedError("the remote branch {} moved{}", branch, cb.rejected.empty() ? "" : ": " + cb.rejected);
  }
  if (err != 0) {
    Status s = cb.Result(err, "push");
    // A receive-pack that lost the ref lock to a concurrent push reports it as an error.
    if (s.message().find("non-fast-forward") != std::string::npos ||
        s.message().find("failed to update ref") != std::string::npos ||
        s.message().find("cannot lock ref") != std::string::npos) {
      *lost_race = true;
    }
    return s;
  }
  return OidHex(commit);
}

Status ValidateSignature(const Signature& s) {
  auto bad_char = [](const std::string& v) {
    return v.empty() || v.find_first_of(std::string_view("<>\n\r\0", 5)) != std::string::npos;
  };
  if (bad_char(s.name) || bad_char(s.email)) {
    return InvalidArgumentError("author name and email must be non-empty, without '<', '>' or newlines");
  }
  return OkStatus();
}

// Writes a commit of `tree_id` with parent `parent` (none when null); returns its id.
Result<git_oid> CreateCommit(git_repository* repo, const git_oid& tree_id, const git_commit* parent,
                             const PushRequest& request) {
  git_tree* tree = nullptr;
  if (int err = git_tree_lookup(&tree, repo, &tree_id); err != 0) return GitError(err, "new tree");
  TreePtr owned_tree(tree);
  git_signature* sig = nullptr;
  if (int err = git_signature_now(&sig, request.author.name.c_str(), request.author.email.c_str()); err != 0) {
    return GitError(err, "author");
  }
  SigPtr owned_sig(sig);
  const git_commit* parents[] = {parent};
  git_oid id;
  if (!request.sign) {
    if (int err = git_commit_create(&id, repo, nullptr, sig, sig, nullptr, request.message.c_str(), tree,
                                    parent != nullptr ? 1 : 0, parents);
        err != 0) {
      return GitError(err, "create commit");
    }
    return id;
  }
  // Signed: the commit's text, its signature over that text, then the object with a gpgsig header.
  git_buf content = GIT_BUF_INIT;
  if (int err = git_commit_create_buffer(&content, repo, sig, sig, nullptr, request.message.c_str(), tree,
                                         parent != nullptr ? 1 : 0, parents);
      err != 0) {
    return GitError(err, "create commit");
  }
  std::string text(content.ptr, content.size);
  git_buf_dispose(&content);
  auto signature = request.sign(text);
  if (!signature.ok()) return signature.status().WithContext("sign the commit");
  // libgit2 indents each line of the header; a final newline would add an empty continuation line.
  while (!signature->empty() && signature->back() == '\n') signature->pop_back();
  if (int err = git_commit_create_with_signature(&id, repo, text.c_str(), signature->c_str(), nullptr); err != 0) {
    return GitError(err, "create signed commit");
  }
  return id;
}

Result<std::string> Libgit2Repository::CommitAndPush(const PushRequest& request) {
  auto context = fmt::format("commit and push to {} of {}", request.branch, url_);
  GANTRY_RETURN_IF_ERROR(ValidateRefName(request.branch).WithContext(context));
  GANTRY_RETURN_IF_ERROR(ValidateSignature(request.author).WithContext(context));
  if (!request.recompute || request.max_attempts < 1) {
    return InvalidArgumentError("{}: a recompute function and max_attempts >= 1 are required", context);
  }
  if (request.force && request.start_point.empty()) {
    return InvalidArgumentError("{}: a forced push rebuilds the branch on a start point, and none was given", context);
  }
  BackoffPolicy backoff{.initial = std::chrono::milliseconds(50), .max_delay = std::chrono::seconds(2)};
  thread_local std::mt19937_64 random(std::random_device{}());
  std::string last_race;
  for (int attempt = 1; attempt <= request.max_attempts; ++attempt) {
    if (attempt > 1) {
      std::this_thread::sleep_for(BackoffDelay(backoff, attempt - 1, std::uniform_real_distribution<>(0, 1)(random)));
    }
    auto fetched = Fetch();
    if (!fetched.ok()) return fetched.status().WithContext(context);
    GANTRY_ASSIGN_OR_RETURN(PooledRepo repo, OpenRepo());
    auto tip = RefCommit(repo.get(), "refs/heads/" + request.branch);
    std::string base;
    if (!tip.ok() && tip.status().code() != Code::kNotFound) return tip.status().WithContext(context);
    if (tip.ok() && !request.force) {
      base = *tip;
    } else if (!request.start_point.empty()) {
      auto start = ResolveIn(repo.get(), request.start_point);
      if (!start.ok()) return start.status().WithContext(context + ": start point");
      base = *start;
    }
    auto changes = request.recompute(base);
    if (!changes.ok()) return changes.status().WithContext(context + ": compute changes");
    // The new tree: the base tree with the changes applied.
    TreePtr base_tree;
    CommitPtr base_commit;
    if (!base.empty()) {
      GANTRY_ASSIGN_OR_RETURN(git_oid oid, ParseCommitId(base));
      git_commit* c = nullptr;
      if (int err = git_commit_lookup(&c, repo.get(), &oid); err != 0) return GitError(err, context);
      base_commit.reset(c);
      git_tree* t = nullptr;
      if (int err = git_commit_tree(&t, c); err != 0) return GitError(err, context);
      base_tree.reset(t);
    }
    std::vector<git_tree_update> updates;
    std::vector<std::string> paths;
    paths.reserve(changes->files.size());
    for (const auto& [path, content] : changes->files) {
      auto parts = PathComponents(path);
      if (!parts.ok()) return parts.status().WithContext(context);
      if (parts->empty()) return InvalidArgumentError("{}: an empty path in the changes", context);
      paths.push_back(JoinPath(*parts, parts->size()));
      git_tree_update u{};
      u.path = paths.back().c_str();
      git_tree_entry* existing = nullptr;
      bool exists = base_tree && git_tree_entry_bypath(&existing, base_tree.get(), u.path) == 0;
      git_error_clear();
      EntryPtr owned(existing);
      if (!content) {
        if (!exists) continue;
        u.action = GIT_TREE_UPDATE_REMOVE;
      } else {
        u.action = GIT_TREE_UPDATE_UPSERT;
        u.filemode = exists && git_tree_entry_filemode(existing) == GIT_FILEMODE_BLOB_EXECUTABLE
                         ? GIT_FILEMODE_BLOB_EXECUTABLE
                         : GIT_FILEMODE_BLOB;
        if (int err = git_blob_create_from_buffer(&u.id, repo.get(), content->data(), content->size()); err != 0) {
          return GitError(err, context + ": write blob " + path);
        }
      }
      updates.push_back(u);
    }
    git_oid tree_id;
    if (base_tree) {
      if (int err = git_tree_create_updated(&tree_id, repo.get(), base_tree.get(), updates.size(), updates.data());
          err != 0) {
        return GitError(err, context + ": build tree");
      }
      if (git_oid_equal(&tree_id, git_tree_id(base_tree.get())) && (tip.ok() || request.force)) {
        return base;  // nothing to change: idempotent
      }
      // Forced: a branch that already is this change on the start point stays as it is.
      if (request.force && tip.ok()) {
        GANTRY_ASSIGN_OR_RETURN(git_oid tip_oid, ParseCommitId(*tip));
        git_commit* c = nullptr;
        if (git_commit_lookup(&c, repo.get(), &tip_oid) == 0) {
          CommitPtr tip_commit(c);
          if (git_commit_parentcount(c) == 1 && git_oid_equal(git_commit_parent_id(c, 0), git_commit_id(base_commit.get())) &&
              git_oid_equal(git_commit_tree_id(c), &tree_id)) {
            return *tip;
          }
        }
        git_error_clear();
      }
    } else {
      if (updates.empty()) return FailedPreconditionError("{}: nothing to commit on a new branch", context);
      if (int err = git_tree_create_updated(&tree_id, repo.get(), nullptr, updates.size(), updates.data());
          err != 0) {
        return GitError(err, context + ": build tree");
      }
    }
    bool unchanged = base_tree && git_oid_equal(&tree_id, git_tree_id(base_tree.get()));
    git_oid commit_id;
    if (unchanged) {
      commit_id = *git_commit_id(base_commit.get());  // a new branch at its start point
    } else {
      GANTRY_ASSIGN_OR_RETURN(commit_id, CreateCommit(repo.get(), tree_id, base_commit.get(), request));
    }
    bool lost_race = false;
    auto pushed = PushOnce(repo.get(), commit_id, request.branch, request.force, &lost_race);
    if (pushed.ok()) {
      // The mirror knows its own push at once (the next fetch confirms it).
      git_reference* ref = nullptr;
      if (git_reference_create(&ref, repo.get(), ("refs/heads/" + request.branch).c_str(), &commit_id, 1,
                               "gantry push") == 0) {
        git_reference_free(ref);
      }
      git_error_clear();
      return pushed;
    }
    if (!lost_race) return pushed.status().WithContext(context);
    last_race = pushed.status().message();
    log::Info("git: {}: attempt {} of {} lost a race ({}); fetching and recomputing", context, attempt,
              request.max_attempts, last_race);
  }
  return AbortedError("{}: every one of {} attempts lost a race with another writer; last: {}", context,
                      request.max_attempts, last_race);
}

}  // namespace

Mirrors::Mirrors(fs::path cache_dir) : cache_dir_(std::move(cache_dir)) { InitLibgit2(); }
Mirrors::~Mirrors() = default;

Result<std::shared_ptr<Repository>> Mirrors::Open(const std::string& url, const OpenOptions& options) {
  GANTRY_RETURN_IF_ERROR(ValidateUrl(url, options.allow_file));
  GANTRY_ASSIGN_OR_RETURN(internal::ParsedUrl parsed, internal::ParseUrl(url));
  if (options.timeout.count() <= 0) return InvalidArgumentError("open {}: the timeout must be positive", url);
  fs::path dir = cache_dir_ / Sha256Hex(url).substr(0, 32);
  MutexLock lock(mu_);
  auto& gate = gates_[url];
  if (!gate) {
    // First use in this process: make sure a usable bare mirror exists (a leftover of a crash
    // during creation is replaced).
    std::error_code ec;
    fs::create_directories(cache_dir_, ec);
    if (ec) return InternalError("create cache directory {}: {}", cache_dir_.string(), ec.message());
    git_repository* repo = nullptr;
    if (git_repository_open_bare(&repo, dir.c_str()) != 0) {
      fs::remove_all(dir, ec);
      if (int err = git_repository_init(&repo, dir.c_str(), /*is_bare=*/1); err != 0) {
        return GitError(err, "create mirror " + dir.string() + " of " + url);
      }
    }
    git_repository_free(repo);
    gate = std::make_shared<FetchGate>();
  }
  return std::shared_ptr<Repository>(
      std::make_shared<Libgit2Repository>(url, std::move(parsed), dir, options, gate));
}

}  // namespace gantry::git
