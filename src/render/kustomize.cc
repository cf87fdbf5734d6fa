// Kustomize: which directories a build may read (checked before anything runs), and the edits
// that image overrides and extra components make to the copied kustomization.

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <set>

#include "base/path.h"
#include "git/git.h"
#include "render/chart_repo.h"
#include "render/internal/documents.h"
#include "render/internal/renderers.h"
#include "render/internal/tree.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

// Fields whose entries may name other kustomizations (directories).
constexpr const char* kReferenceFields[] = {"resources", "bases",        "components",
                                            "generators", "transformers", "validators"};

// A URL, an scp-like git address, or a kustomize remote spec (?ref=...): never a local path.
bool IsUrlLike(std::string_view s) {
  return s.find("://") != std::string_view::npos || s.starts_with("git@") || s.starts_with("git::") ||
         s.find("?ref=") != std::string_view::npos || s.find("?version=") != std::string_view::npos ||
         s.find("?submodules=") != std::string_view::npos || s.find("?timeout=") != std::string_view::npos;
}

// "github.com/org/repo/path": the first component looks like a host name.
bool LooksLikeHost(std::string_view s) {
  std::string_view first = s.substr(0, s.find('/'));
  return first.size() < s.size() && first.find('.') != std::string_view::npos && first != "." &&
         first != ".." && !first.starts_with('.');
}

Result<value::Value> ReadKustomization(const fs::path& root, const std::string& rel, const Limits& limits) {
  GANTRY_ASSIGN_OR_RETURN(fs::path path, ResolveBeneath(root, rel));
  auto text = ReadFile(path, limits.max_file_bytes);
  if (!text.ok()) {
    if (text.status().code() == Code::kResourceExhausted) {
      return ResourceExhaustedError("{}: larger than {} bytes (limit max_file_bytes)", rel,
                                    limits.max_file_bytes);
    }
    return text.status();
  }
  GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(*text, rel, limits.parse));
  if (docs.empty()) return value::Value::Map();
  if (docs.size() > 1 || !docs[0].IsMap()) {
    return InvalidArgumentError("{}: a kustomization must be one YAML map", rel);
  }
  return docs[0];
}

// Whether `host` (git::HostOf) is in the allow-list; an entry without a port matches any port.
bool HostAllowed(const std::vector<std::string>& allowed, const std::string& host) {
  std::string_view bare = std::string_view(host).substr(0, host.find(':'));
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    return !a.empty() && (a == host || a == bare);
  });
}

// Where a reference was written: "kfile:line:column" when the entry came from a file.
std::string Place(const std::string& kfile, const value::Value* entry) {
  if (entry == nullptr) return kfile;
  std::string w = Where(*entry);
  return w.starts_with("<") ? kfile : w;
}

// One reference of a kustomization, after the checks of KustomizeTrees: a local directory is
// queued, an allowed remote one recorded in `scan`.
Status CheckReference(const fs::path& root, const std::string& dir, const std::string& kfile,
                      std::string_view field, size_t index, const value::Value* value, std::string_view entry,
                      const KustomizeOptions& options, std::deque<std::string>& queue, KustomizeScan& scan) {
  if (entry.find('\n') != std::string_view::npos) return OkStatus();  // an inline configuration
  std::string what = fmt::format("{}: {} entry {:?}", Place(kfile, value), field, entry);
  auto remote = [&]() -> Status {
    auto base = ParseRemoteBase(entry);
    if (!base.ok()) {
      return PermissionDeniedError("{} is a remote reference Gantry cannot fetch ({}); only Git remote bases "
                                   "from hosts the operator allows are fetched: copy it into this repository "
                                   "and refer to it by its relative path", what, base.status().message());
    }
    if (!HostAllowed(options.remote_hosts, base->host)) {
      return PermissionDeniedError("{} is a remote base on {}, a Git host the operator has not allowed; allow it "
                                   "with --kustomize-remote-host {} (Gantry then fetches it, never kustomize), or "
                                   "copy the base into this repository and refer to it by its relative path",
                                   what, base->host, base->host);
    }
    scan.remotes.push_back(RemoteUse{.kfile = kfile, .field = std::string(field), .index = index,
                                     .where = Place(kfile, value), .base = *std::move(base)});
    return OkStatus();
  };
  if (entry.starts_with("file://")) {
    return PermissionDeniedError("{} is a file URL; only paths inside the repository are allowed", what);
  }
  if (IsUrlLike(entry)) return remote();
  if (entry.starts_with('/')) {
    return PermissionDeniedError("{} is an absolute path; only paths inside the repository are allowed", what);
  }
  auto rel = NormalizeRel(dir.empty() ? std::string(entry) : dir + "/" + std::string(entry), what);
  if (!rel.ok()) return PermissionDeniedError("{} leaves the repository", what);
  auto resolved = ResolveBeneath(root, *rel);
  if (!resolved.ok()) {
    if (resolved.status().code() == Code::kPermissionDenied) {
      return PermissionDeniedError("{}: {}", what, resolved.status().message());
    }
    if (resolved.status().code() != Code::kNotFound) return resolved.status();
  }
  struct stat st;
  if (!resolved.ok() || ::stat(resolved->c_str(), &st) != 0) {
    if (LooksLikeHost(entry)) return remote();
    return NotFoundError("{}: no such file or directory in the repository", what);
  }
  if (S_ISDIR(st.st_mode)) queue.push_back(*rel);
  return OkStatus();
}

// The helmCharts entries of the kustomization `kfile` in `dir`, into `scan`.
Status ScanCharts(const value::Value& k, const std::string& dir, const std::string& kfile, KustomizeScan& scan) {
  const value::Value* charts = k.Get("helmCharts");
  if (charts == nullptr || charts->IsNull()) return OkStatus();
  if (!charts->IsSeq()) return InvalidArgumentError("{}: helmCharts must be a list", Where(*charts));
  std::string home = "charts";
  if (const value::Value* globals = k.Get("helmGlobals"); globals != nullptr && globals->IsMap()) {
    if (const value::Value* h = globals->Get("chartHome"); h != nullptr && h->IsString()) home = h->AsString();
  }
  std::string what_home = fmt::format("{}: helmGlobals.chartHome {:?}", kfile, home);
  GANTRY_ASSIGN_OR_RETURN(std::string home_rel, NormalizeRel(dir.empty() ? home : dir + "/" + home, what_home));
  if (!dir.empty() && home_rel != dir && !home_rel.starts_with(dir + "/")) {
    return InvalidArgumentError("{} leaves the kustomization's directory (kustomize reads charts only below it)",
                                what_home);
  }
  for (size_t i = 0; i < charts->size(); ++i) {
    const value::Value& e = *charts->At(i);
    auto str = [&](const char* key) {
      const value::Value* v = e.IsMap() ? e.Get(key) : nullptr;
      return v != nullptr && v->IsString() ? std::string(v->AsString()) : std::string();
    };
    ChartUse use{.kfile = kfile, .index = i, .where = Place(kfile, &e), .chart_dir = {}, .name = str("name"),
                 .version = str("version"), .repo = str("repo")};
    if (use.name.empty() || use.name.find('/') != std::string::npos || use.name == "." || use.name == "..") {
      return InvalidArgumentError("{}: helmCharts entry {} needs a chart name (without '/')", use.where, i);
    }
    std::string sub = !use.repo.empty() && !use.version.empty() ? use.name + "-" + use.version + "/" : "";
    if (sub.find("..") != std::string::npos || use.version.find('/') != std::string::npos) {
      return InvalidArgumentError("{}: helmCharts entry {}: version {:?} is not a version", use.where, i, use.version);
    }
    use.chart_dir = (home_rel.empty() ? "" : home_rel + "/") + sub + use.name;
    scan.charts.push_back(std::move(use));
  }
  return OkStatus();
}

// Parses "name=newName:tag", "name:tag", "name@digest", "name=newName", "name=newName@digest".
Result<value::Value> ParseImage(std::string_view spec) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("image override {:?}: {} (expected name=newName:tag, name:tag or "
                                "name@digest)", spec, why);
  };
  if (spec.empty()) return bad("empty");
  for (char c : spec) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("contains whitespace or a control character");
  }
  std::string_view name = spec, target = spec;
  bool rename = false;
  if (size_t eq = spec.find('='); eq != std::string_view::npos) {
    name = spec.substr(0, eq);
    target = spec.substr(eq + 1);
    rename = true;
  }
  std::string_view new_name = target, tag, digest;
  if (size_t at = target.find('@'); at != std::string_view::npos) {
    new_name = target.substr(0, at);
    digest = target.substr(at + 1);
    if (digest.empty()) return bad("empty digest");
  } else if (size_t colon = target.rfind(':');
             colon != std::string_view::npos && target.find('/', colon) == std::string_view::npos) {
    new_name = target.substr(0, colon);  // the colon after the last '/' starts the tag (not a port)
    tag = target.substr(colon + 1);
    if (tag.empty()) return bad("empty tag");
  } else if (!rename) {
    return bad("no tag or digest");
  }
  if (!rename) name = new_name;
  if (name.empty() || new_name.empty()) return bad("empty image name");
  value::Value image = value::Value::Map();
  image.Set("name", name);
  if (rename) image.Set("newName", new_name);
  if (!tag.empty()) image.Set("newTag", tag);
  if (!digest.empty()) image.Set("digest", digest);
  return image;
}

}  // namespace

std::string KustomizationName(const fs::path& dir) {
  for (const char* name : {"kustomization.yaml", "kustomization.yml", "Kustomization"}) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir / name, ec))) return name;
  }
  return "";
}

Result<KustomizeScan> KustomizeTrees(const fs::path& root, const std::string& app, const KustomizeOptions& options,
                                     const Limits& limits) {
  KustomizeScan scan;
  std::deque<std::string> queue = {app};
  std::set<std::string> seen;
  bool first = true;
  while (!queue.empty()) {
    std::string dir = std::move(queue.front());
    queue.pop_front();
    if (!seen.insert(dir).second) continue;
    if (seen.size() > limits.max_files) {
      return ResourceExhaustedError("more than {} kustomizations reachable from {} (limit max_files)",
                                    limits.max_files, app.empty() ? "." : app);
    }
    GANTRY_ASSIGN_OR_RETURN(fs::path resolved, ResolveBeneath(root, dir));
    std::string name = KustomizationName(resolved);
    std::string kfile = dir.empty() ? name : dir + "/" + name;
    if (!name.empty()) {
      GANTRY_ASSIGN_OR_RETURN(value::Value k, ReadKustomization(root, kfile, limits));
      for (const char* field : kReferenceFields) {
        const value::Value* list = k.Get(field);
        if (list == nullptr || list->IsNull()) continue;
        if (!list->IsSeq()) return InvalidArgumentError("{}: {} must be a list", Where(*list), field);
        for (size_t i = 0; i < list->size(); ++i) {
          const value::Value& entry = *list->At(i);
          if (!entry.IsString()) continue;  // inline generator/transformer configurations
          GANTRY_RETURN_IF_ERROR(
              CheckReference(root, dir, kfile, field, i, &entry, entry.AsString(), options, queue, scan));
        }
      }
      GANTRY_RETURN_IF_ERROR(ScanCharts(k, dir, kfile, scan));
    }
    if (first) {
      for (const std::string& c : options.components) {
        GANTRY_RETURN_IF_ERROR(CheckReference(root, dir, "the extra components", "components", 0, nullptr, c,
                                              KustomizeOptions{}, queue, scan));
      }
      first = false;
    }
  }
  // Keep only the outermost directories: a tree's copy holds the trees below it.
  for (const std::string& dir : seen) {  // sorted: a parent comes before its children
    bool covered = std::any_of(scan.trees.begin(), scan.trees.end(), [&](const std::string& t) {
      return t.empty() || dir.starts_with(t + "/");
    });
    if (!covered) scan.trees.push_back(dir);
  }
  return scan;
}

Status EditKustomization(value::Value& kustomization, const KustomizeOptions& options) {
  for (const std::string& spec : options.images) {
    GANTRY_ASSIGN_OR_RETURN(value::Value image, ParseImage(spec));
    value::Value* images = kustomization.MutableGet("images");
    if (images == nullptr || images->IsNull()) {
      kustomization.Set("images", value::Value::Seq());
      images = kustomization.MutableGet("images");
    }
    if (!images->IsSeq()) return InvalidArgumentError("{}: images must be a list", Where(*images));
    value::Value* existing = nullptr;
    for (size_t i = 0; i < images->size(); ++i) {
      const value::Value* n = images->At(i)->Get("name");
      if (n != nullptr && n->IsString() && n->AsString() == image.Get("name")->AsString()) {
        existing = images->MutableAt(i);
      }
    }
    if (existing == nullptr) {
      images->Append(std::move(image));
      continue;
    }
    // As `kustomize edit set image`: given fields replace; a tag clears the digest and back.
    if (const value::Value* v = image.Get("newName")) existing->Set("newName", *v);
    if (const value::Value* v = image.Get("newTag")) {
      existing->Set("newTag", *v);
      existing->Erase("digest");
    }
    if (const value::Value* v = image.Get("digest")) {
      existing->Set("digest", *v);
      existing->Erase("newTag");
    }
  }
  for (const std::string& c : options.components) {
    value::Value* components = kustomization.MutableGet("components");
    if (components == nullptr || components->IsNull()) {
      kustomization.Set("components", value::Value::Seq());
      components = kustomization.MutableGet("components");
    }
    if (!components->IsSeq()) return InvalidArgumentError("{}: components must be a list", Where(*components));
    bool present = std::any_of(components->items().begin(), components->items().end(),
                               [&](const value::Value& v) { return v.IsString() && v.AsString() == c; });
    if (!present) components->Append(c);
  }
  return OkStatus();
}

namespace {

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// kustomize's parseQuery: ref= wins over version=; timeout= and submodules= are ignored here (the
// fetch has Gantry's own deadline; Gantry's Git layer never reads submodules).
std::string RefOf(std::string_view query) {
  std::string ref, version;
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq), value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (key == "ref") ref = value;
    if (key == "version") version = value;
  }
  return !ref.empty() ? ref : version;
}

}  // namespace

Result<RemoteBase> ParseRemoteBase(std::string_view spec) {
  auto bad = [&](std::string_view why) { return InvalidArgumentError("remote base {:?}: {}", spec, why); };
  for (char c : spec) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("contains whitespace or a control character");
  }
  std::string_view n = spec;
  if (StartsWithNoCase(n, "git::")) n.remove_prefix(5);
  if (n.starts_with('/')) return bad("an absolute path is not a remote base");
  std::string_view query;
  if (size_t q = n.find('?'); q != std::string_view::npos) {
    query = n.substr(q + 1);
    n = n.substr(0, q);
  }
  std::string scheme;
  for (std::string_view p : {"ssh://", "https://", "http://", "file://"}) {
    if (StartsWithNoCase(n, p)) {
      scheme = p;
      n.remove_prefix(p.size());
      break;
    }
  }
  if (scheme == "file://") return bad("file:// bases are not fetched; only paths inside the repository are read");
  std::string username;
  if (!n.empty() && std::isalpha(static_cast<unsigned char>(n[0]))) {
    size_t i = 1;
    while (i < n.size() && (std::isalnum(static_cast<unsigned char>(n[i])) || n[i] == '-')) ++i;
    if (i < n.size() && n[i] == '@') {
      username = std::string(n.substr(0, i + 1));
      n.remove_prefix(i + 1);
    }
  }
  bool github = StartsWithNoCase(n, "github.com/") || StartsWithNoCase(n, "github.com:");
  bool scp = scheme.empty() && (!username.empty() || github);
  if (scheme.empty() && !scp) {
    return bad("no scheme: write https://HOST/ORG/REPO//PATH?ref=REF, ssh://..., or git@HOST:ORG/REPO.git//PATH");
  }
  size_t sep = n.find('/');
  if (scp) {
    size_t colon = n.find(':');
    if (sep == std::string_view::npos || (colon != std::string_view::npos && colon > 0 && colon < sep)) sep = colon;
  }
  std::string host(sep == std::string_view::npos ? n : n.substr(0, sep + 1));
  std::string_view rest = sep == std::string_view::npos ? std::string_view() : n.substr(sep + 1);
  if (github) {
    if (scheme == "ssh://" || !username.empty()) {
      scheme.clear();
      host = "github.com:";
    } else {
      scheme = "https://";
      host = "github.com/";
    }
  }
  if (host.empty() || host == "/" || host == ":") return bad("no host");
  // The repository path ends at "_git/NAME", "//" or ".git"; else it is ORG/REPO.
  std::string_view repo_path, dir;
  if (size_t g = rest.find("_git/"); g != std::string_view::npos) {
    std::string_view after = rest.substr(g + 5);
    size_t slash = after.find('/');
    repo_path = rest.substr(0, g + 5 + std::min(slash, after.size()));
    dir = slash == std::string_view::npos ? std::string_view() : after.substr(slash + 1);
  } else if (size_t d = rest.find("//"); d != std::string_view::npos) {
    repo_path = rest.substr(0, d);
    dir = rest.substr(d + 2);
  } else if (size_t x = rest.find(".git"); x != std::string_view::npos) {
    repo_path = rest.substr(0, x + 4);
    dir = rest.substr(x + 4);
  } else {
    size_t first = rest.find('/');
    size_t second = first == std::string_view::npos ? first : rest.find('/', first + 1);
    if (first == std::string_view::npos) return bad("no ORG/REPO after the host");
    repo_path = rest.substr(0, second);
    dir = second == std::string_view::npos ? std::string_view() : rest.substr(second + 1);
  }
  if (repo_path.empty()) return bad("no repository path after the host");
  while (dir.starts_with('/')) dir.remove_prefix(1);
  auto path = NormalizeRel(dir, "its path");
  if (!path.ok()) return bad(fmt::format("the path {:?} leaves the repository", dir));
  RemoteBase out;
  out.spec = std::string(spec);
  out.repo_url = scheme + username + host + std::string(repo_path);
  out.host = git::HostOf(out.repo_url);
  out.path = *std::move(path);
  out.ref = RefOf(query);
  if (out.ref.empty()) out.ref = "HEAD";
  if (out.host.empty()) return bad("no host");
  return out;
}

Result<std::string> PrepareKustomizeCopy(const KustomizeScan& scan, const fs::path& copy, const fs::path& remote_dir,
                                         const Options& options, const std::string& helm_binary) {
  const KustomizeOptions& ko = options.kustomize;
  // Edits to copied kustomizations, by file: parsed once, written back at the end.
  std::map<fs::path, value::Value> docs;
  auto doc = [&](const fs::path& root, const std::string& kfile) -> Result<value::Value*> {
    fs::path path = root / kfile;
    if (auto it = docs.find(path); it != docs.end()) return &it->second;
    GANTRY_ASSIGN_OR_RETURN(value::Value k, ReadKustomization(root, kfile, options.limits));
    return &docs.emplace(path, std::move(k)).first->second;
  };
  struct Pending {
    fs::path root;  // a copy: of the repository, or of a remote base's repository
    KustomizeScan scan;
    int depth = 0;
  };
  std::deque<Pending> work;
  work.push_back({copy, scan, 0});
  std::string deps;
  size_t fetched = 0;
  bool charts = false;
  while (!work.empty()) {
    Pending p = std::move(work.front());
    work.pop_front();
    for (const RemoteUse& r : p.scan.remotes) {
      std::string what = fmt::format("{}: remote base {:?}", r.where, r.base.spec);
      if (!ko.fetch_remote) {
        return FailedPreconditionError("{}: remote bases are fetched only when rendering from Git (the agent, the "
                                       "deployer, gantry render/diff/sync); copy the base into this repository",
                                       what);
      }
      if (p.depth >= kMaxRemoteDepth) {
        return ResourceExhaustedError("{}: remote bases nested more than {} deep", what, kMaxRemoteDepth);
      }
      if (++fetched > kMaxRemoteBases) {
        return ResourceExhaustedError("{}: more than {} remote bases in one render", what, kMaxRemoteBases);
      }
      fs::path staging = remote_dir / fmt::format("fetch-{}", fetched);
      fs::path dest = remote_dir / std::to_string(fetched);
      std::error_code ec;
      fs::create_directories(remote_dir, ec);
      if (ec) return InternalError("create {}: {}", remote_dir.string(), ec.message());
      if (options.allow_repository) {
        if (Status allowed = options.allow_repository(r.base.repo_url); !allowed.ok()) return allowed.WithContext(what);
      }
      auto commit = ko.fetch_remote(r.base, staging);
      if (!commit.ok()) return commit.status().WithContext(what);
      std::string at = fmt::format("{} (commit {} of {})", what, commit->substr(0, 12), git::ScrubUrl(r.base.repo_url));
      // The remote repository is as hostile as this one: the same checks, rooted at its commit.
      auto resolved = ResolveBeneath(staging, r.base.path);
      if (!resolved.ok() || KustomizationName(*resolved).empty()) {
        fs::remove_all(staging, ec);
        return NotFoundError("{}: no kustomization at {:?}", at, r.base.path.empty() ? "." : r.base.path);
      }
      auto nested = KustomizeTrees(staging, r.base.path, ko, options.limits);
      if (!nested.ok()) {
        fs::remove_all(staging, ec);
        return nested.status().WithContext(at);
      }
      Materializer copier(staging, dest, options.limits, nullptr);
      for (const std::string& tree : nested->trees) {
        if (Status s = copier.AddTree(tree); !s.ok()) {
          fs::remove_all(staging, ec);
          return s.WithContext(at);
        }
      }
      fs::remove_all(staging, ec);
      GANTRY_ASSIGN_OR_RETURN(value::Value * k, doc(p.root, r.kfile));
      value::Value* list = k->MutableGet(r.field);
      GANTRY_CHECK(list != nullptr && list->IsSeq() && r.index < list->size());
      fs::path kdir = (p.root / r.kfile).parent_path();
      *list->MutableAt(r.index) = value::Value((dest / r.base.path).lexically_normal().lexically_relative(kdir).string());
      deps += fmt::format("remote {} {} {} {}\n", r.base.repo_url, r.base.path, r.base.ref, *commit);
      work.push_back({dest, *std::move(nested), p.depth + 1});
    }
    for (const ChartUse& c : p.scan.charts) {
      charts = true;
      std::string what = fmt::format("{}: helmCharts entry {:?}", c.where, c.name);
      fs::path dir = p.root / c.chart_dir;
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) {
        if (c.repo.empty()) {
          return NotFoundError("{}: no chart at {} and no repo to fetch it from; vendor the chart there", what,
                               c.chart_dir);
        }
        std::string vendor = fmt::format("helm pull {} --repo {}{} --untar --untardir {}", c.name, c.repo,
                                         c.version.empty() ? "" : " --version " + c.version,
                                         fs::path(c.chart_dir).parent_path().string());
        if (c.repo.starts_with("oci://")) {
          vendor = fmt::format("helm pull {}/{}{} --untar --untardir {}", c.repo, c.name,
                               c.version.empty() ? "" : " --version " + c.version,
                               fs::path(c.chart_dir).parent_path().string());
        }
        if (!ko.fetch_chart && options.charts == nullptr) {
          return FailedPreconditionError("{} (repo {}{}): the chart is not vendored at {}, and neither kustomize nor "
                                         "helm may fetch it; vendor it into the repository with `{}`",
                                         what, c.repo, c.version.empty() ? "" : ", version " + c.version,
                                         c.chart_dir, vendor);
        }
        if (options.allow_repository) {
          if (Status allowed = options.allow_repository(c.repo); !allowed.ok()) return allowed.WithContext(what);
        }
        fs::create_directories(dir.parent_path(), ec);
        if (ec) return InternalError("create {}: {}", dir.parent_path().string(), ec.message());
        if (ko.fetch_chart) {
          if (Status s = ko.fetch_chart(c.repo, c.name, c.version, dir); !s.ok()) return s.WithContext(what);
          deps += fmt::format("chart {} {} {}\n", c.repo, c.name, c.version);
        } else {
          // Gantry's own chart fetcher (index.yaml or oci://, credentials bound to their host).
          auto chart = options.charts->Fetch({.repo_url = c.repo, .chart = c.name, .version = c.version});
          if (!chart.ok()) return chart.status().WithContext(what);
          auto copied = CopyTreeBeneath(chart->dir.parent_path(), chart->dir.filename().string(), copy,
                                        dir.lexically_relative(copy).string());
          if (!copied.ok()) return copied.status().WithContext(what);
          deps += fmt::format("chart {} {}\n", c.repo, chart->Revision());
        }
      }
      // The cluster's Capabilities for entries that do not name their own (as Argo CD's
      // --helm-kube-version / --helm-api-versions, which kustomize would apply to every entry).
      const HelmOptions& h = options.helm;
      if (h.kube_version.empty() && h.api_versions.empty()) continue;
      GANTRY_ASSIGN_OR_RETURN(value::Value * k, doc(p.root, c.kfile));
      value::Value* entry = k->MutableGet("helmCharts")->MutableAt(c.index);
      if (!h.kube_version.empty() && entry->Get("kubeVersion") == nullptr) entry->Set("kubeVersion", h.kube_version);
      if (!h.api_versions.empty() && entry->Get("apiVersions") == nullptr) {
        value::Value seq = value::Value::Seq();
        for (const std::string& v : h.api_versions) seq.Append(v);
        entry->Set("apiVersions", std::move(seq));
      }
    }
  }
  if (charts) {
    deps += fmt::format("helm {} {}", helm_binary, options.helm.kube_version);
    for (const std::string& v : options.helm.api_versions) deps += " " + v;
    deps += "\n";
  }
  for (auto& [path, k] : docs) {
    std::error_code ec;
    fs::remove(path, ec);
    GANTRY_RETURN_IF_ERROR(WriteNewFile(path, value::ToYaml(k)));
  }
  return deps;
}

}  // namespace gantry::render::internal
