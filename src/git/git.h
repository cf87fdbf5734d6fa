#pragma once
// Git sources: bare mirrors of remote repositories in a local cache, read without a checkout.
//
// Mirrors keeps one bare mirror per repository URL under its cache directory
// (<cache>/<first 16 hex of sha256(url)>/), created on first use. Fetch() brings a mirror up to
// date with the remote's branches and tags (pruning deleted ones, transferring only missing
// objects); concurrent Fetch() calls for one URL share a fetch: a caller that arrives while a fetch
// runs waits for the next one, which one of the waiters starts, so every caller sees a fetch that
// began after it asked, and N simultaneous callers cause at most two fetches. The per-URL lock is
// never held across the network call, and nothing is shared between URLs.
//
// Everything else reads the mirror's object database: Resolve() turns a revision (HEAD, branch,
// tag, full or short SHA, semver range over tags) into a commit id; ReadTree() returns the files of
// a path of a commit in memory, bounded by Limits; Materialize() writes them into a fresh private
// directory for renderers that need files, never creating a symlink that leaves it; ChangedPaths()
// diffs two commits; CommitAndPush() commits changes computed against the branch tip and pushes,
// recomputing on the new tip when another writer won the race.
//
// Security: URLs are validated before use (ValidateUrl); credentials are bound to one host and
// scheme and given only to requests for that host (libgit2 is told not to follow redirects to other
// hosts when credentials are set, and the credential callback checks the URL it is asked for);
// credentials never appear in errors or logs. SSH host keys are checked against a known_hosts file;
// unknown hosts are refused.
//
// Time bounds (libgit2 1.5 has no socket timeouts): every network operation has a deadline
// (OpenOptions::timeout) checked in libgit2's progress callbacks, which run whenever data arrives,
// so a slow or endless transfer is aborted with DeadlineExceeded; over HTTP(S) the socket reads,
// writes and connects wait at most until that deadline too (internal/timed_stream.h), so a server
// that accepts the connection and then sends nothing fails with DeadlineExceeded. Over SSH such a
// server is still bounded only by the kernel's TCP timeouts (libssh2 reads the socket itself).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace gantry::git {

// A secret for one host. HTTPS/HTTP: basic auth with username and password (or a token as the
// password; username defaults to "x-access-token"). SSH: the private key (and its passphrase) with
// the user from the URL or `username` (default "git"); the host key must be in ssh_known_hosts_path.
struct Credentials {
  std::string host;  // "git.example.com" or "git.example.com:8443"; without a port, any port matches
  std::string username;
  std::string password;  // or token
  std::string ssh_private_key_path;
  std::string ssh_key_passphrase;
  std::string ssh_known_hosts_path;  // required for ssh:// and scp-like URLs
};

struct OpenOptions {
  std::optional<Credentials> credentials;
  bool allow_file = false;  // accept file:// URLs (tests, local setups); refused otherwise
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};  // per network operation
};

// Bounds on what ReadTree() and Materialize() accept from a repository; each error names the limit.
struct Limits {
  size_t max_files = 10'000;              // regular files and symlinks under the path
  uint64_t max_file_bytes = 8ull << 20;   // 8 MiB per file
  uint64_t max_total_bytes = 256ull << 20;  // 256 MiB in all
};

// One entry of a tree read from the object database.
struct File {
  std::string path;     // relative to the path that was read, '/'-separated
  uint32_t mode = 0;    // 0100644, 0100755 or 0120000 (symlink)
  std::string content;  // the blob; for a symlink, its target (never what it points to)
  bool is_symlink() const { return mode == 0120000; }
};

struct ReadResult {
  std::vector<File> files;              // sorted by path
  std::vector<std::string> submodules;  // gitlinks met (paths), skipped: their content is elsewhere
};

// What a CommitAndPush() callback wants changed: path → new content, or nullopt to delete it.
struct Changes {
  std::map<std::string, std::optional<std::string>> files;
};

struct Signature {
  std::string name;
  std::string email;
};

struct PushRequest {
  std::string branch;       // e.g. "main"; created if the remote does not have it
  std::string start_point;  // commit for a new branch; empty: a root commit
  // Computes the changes against the tip (a commit id, "" for a new branch without start_point).
  // Called again on the new tip after a lost race; it must not assume an earlier call's tip.
  std::function<Result<Changes>(const std::string& tip)> recompute;
  Signature author;
  std::string message;
  int max_attempts = 5;
  // Rebuild the branch: the commit goes on start_point (which must be set), whatever the branch
  // holds, and replaces it (a forced push). A branch already holding exactly that change (one
  // commit on start_point with the same tree) is left alone. For a branch Gantry owns, such as the
  // head of a release's pull request.
  bool force = false;
  // Signs each commit: given the commit object's text, returns the signature stored in its
  // `gpgsig` header (an armored SSH signature, sign/sshsig.h, or a PGP one), over which `git
  // verify-commit` checks it. Unset: commits are not signed. Its error fails the commit.
  std::function<Result<std::string>(std::string_view commit)> sign;
};

// One commit of a history (Log).
struct CommitInfo {
  std::string id;
  std::string parent;   // the first parent; "" for a root commit
  std::string message;  // in full, as written
  Signature author;     // as recorded (name and email)
  int64_t time = 0;     // the author's time, seconds since the epoch
};

// A signed commit's signature (the `gpgsig` header: an armored SSH or PGP signature) and the text it
// signs (the commit object without that header), as `git verify-commit` checks them.
struct CommitSignature {
  std::string signature;
  std::string signed_data;
};

// Which fetch served a Fetch() call: fetches of one mirror are numbered from 1.
struct FetchResult {
  uint64_t fetch_number = 0;
  bool shared = false;  // true when another caller ran it
};

// A remote repository through its local mirror. Thread-safe: every method may be called from
// several threads; each opens its own libgit2 handle.
class Repository {
 public:
  virtual ~Repository() = default;

  // The URL the mirror is of (as given: never contains credentials).
  virtual const std::string& url() const = 0;

  // Updates the mirror (see the file comment for sharing). Unauthenticated when the server refuses
  // the credentials (or none were given), NotFound when the repository does not exist,
  // DeadlineExceeded after the timeout, Unavailable for network failures (retryable).
  virtual Result<FetchResult> Fetch() = 0;

  // The commit `revision` names in the mirror: "HEAD" (the remote's default branch), a branch, a
  // tag (annotated tags peeled), "refs/..." in full, a full or short (>= 4 hex) SHA, or a version
  // range over the tags that parse as versions (the highest match). NotFound when nothing matches;
  // InvalidArgument when it is ambiguous (a branch and a tag of that name on different commits, a
  // short SHA with several candidates) or malformed.
  virtual Result<std::string> Resolve(std::string_view revision) = 0;

  // Whether commit `ancestor` is commit `descendant` or reachable from it (both full ids).
  // NotFound when either is not in the mirror; InvalidArgument for a malformed id.
  virtual Result<bool> Contains(std::string_view descendant, std::string_view ancestor) = 0;

  // The files under `path` ("" for the root; a file path gives that file) of `commit`, read from
  // the object database. NotFound when the path does not exist; ResourceExhausted naming the limit
  // when one is exceeded; InvalidArgument for a path with ".." or similar.
  virtual Result<ReadResult> ReadTree(std::string_view commit, std::string_view path,
                                      const Limits& limits = {}) = 0;

  // The object id of `path` in `commit` (a tree or blob): a cache key for what ReadTree returns.
  virtual Result<std::string> TreeId(std::string_view commit, std::string_view path) = 0;

  // Writes ReadTree(commit, path) into `dest`, which must not exist and is created with mode 0700
  // (its parent must exist); files get 0644 or 0755. Symlinks are created only when their target,
  // resolved inside `dest`, stays inside it; otherwise PermissionDenied naming the link. On any
  // failure `dest` is removed. AlreadyExists when `dest` exists; the ReadTree errors otherwise.
  virtual Status Materialize(std::string_view commit, std::string_view path,
                             const std::filesystem::path& dest, const Limits& limits = {}) = 0;

  // The commits reachable from `tip` and not from `since` ("" : from any), newest first
  // (topological order), at most `max`: "which commits landed on a branch since I last looked".
  // NotFound when either commit is not in the mirror; InvalidArgument for a malformed id or
  // max < 1.
  virtual Result<std::vector<CommitInfo>> Log(std::string_view tip, std::string_view since, int max) = 0;

  // The signature of `commit` (a full id) and what it signs; nullopt for an unsigned commit.
  // NotFound when the commit is not in the mirror; InvalidArgument for a malformed id.
  virtual Result<std::optional<CommitSignature>> ReadSignature(std::string_view commit) = 0;

  // The paths (files, symlinks, submodules) that differ between two commits, sorted; a rename
  // lists both its old and new path. NotFound when a commit is unknown.
  virtual Result<std::vector<std::string>> ChangedPaths(std::string_view from,
                                                        std::string_view to) = 0;

  // Fetches, computes changes against the branch tip with request.recompute, commits them on the
  // tip and pushes to the branch. When the push is rejected because the branch moved, fetches and
  // tries again on the new tip, up to max_attempts with backoff. When recompute yields no change
  // against the tip, nothing is committed and the tip is returned. Returns the branch's commit.
  // Aborted when every attempt lost a race; InvalidArgument for a bad branch, path or signature;
  // the errors of recompute and Fetch() as they are.
  virtual Result<std::string> CommitAndPush(const PushRequest& request) = 0;
};

// Whether any of `changed` (from ChangedPaths) is `prefix` or under it ("" matches everything).
bool PathChanged(const std::vector<std::string>& changed, std::string_view prefix);

// The mirrors in one cache directory: one trust domain (a mirror fetched with one caller's
// credentials serves every caller of that URL). Repositories it returns share the per-URL fetch
// state and stay valid after it is destroyed. Thread-safe. One process per cache directory.
class Mirrors {
 public:
  explicit Mirrors(std::filesystem::path cache_dir);
  ~Mirrors();
  Mirrors(const Mirrors&) = delete;
  Mirrors& operator=(const Mirrors&) = delete;

  // The repository of `url` (validated with ValidateUrl), its mirror created if missing (not
  // fetched yet). InvalidArgument for a refused URL; Internal when the cache cannot be written.
  // Each call returns a new handle with its own options; handles of one URL share fetches.
  Result<std::shared_ptr<Repository>> Open(const std::string& url, const OpenOptions& options = {});

  struct FetchGate;  // per-URL fetch coordination (private to the implementation)

 private:
  std::filesystem::path cache_dir_;
  Mutex mu_;
  std::map<std::string, std::shared_ptr<FetchGate>> gates_ GUARDED_BY(mu_);
};

// Accepts https://, http:// (plain: only sensible on trusted networks), ssh://, scp-like
// user@host:path, and file:// when allow_file. InvalidArgument, saying why, for: other transports
// (ext::, fd::, anything "x::"), local paths without file://, credentials in the URL (use
// Credentials instead), a missing host or path, whitespace or control characters, an argument-like
// host beginning with "-".
Status ValidateUrl(std::string_view url, bool allow_file);

// Checks a branch or tag name (without refs/heads/) by git check-ref-format's rules, refusing also
// a leading '-'. InvalidArgument saying which rule.
Status ValidateRefName(std::string_view name);

// Parses "host=user:password" (a token goes in the password; host may carry a port), the form
// credentials take in environment variables. InvalidArgument that never repeats the value.
Result<Credentials> ParseCredentials(std::string_view spec);

// Credentials from an Argo CD repository Secret mounted as a directory (one file per key): `url`
// (required; the credentials are bound to its host and port), then `sshPrivateKey` (a private key
// file, used in place; OpenSSH or PEM format, unencrypted as Argo CD requires) for ssh:// and
// scp-like URLs, or `password` with an optional `username` for HTTPS; other keys (type, name,
// project) are ignored. `known_hosts_path` is the known_hosts file SSH host keys are checked
// against (Argo CD keeps them in a ConfigMap: mount its ssh_known_hosts key). InvalidArgument naming
// the directory and the key for a missing or unreadable url, an SSH URL without sshPrivateKey or
// without known_hosts_path, an sshPrivateKey for a non-SSH URL, or neither key nor password.
// Never reads a secret into a message.
Result<Credentials> ReadRepositorySecret(const std::filesystem::path& dir, const std::string& known_hosts_path);

// The credentials of `list` for `url`'s host (an entry without a port matches any port), if any.
std::optional<Credentials> CredentialsFor(const std::vector<Credentials>& list, std::string_view url);

// The host of `url`, with its port when it names one, without any user@: "git.example.com:8443"
// for https://git.example.com:8443/x.git, "github.com" for git@github.com:org/x.git. What
// Credentials::host is matched against.
std::string HostOf(std::string_view url);

// The URL with any user:password@ removed, for messages.
std::string ScrubUrl(std::string_view url);

}  // namespace gantry::git
