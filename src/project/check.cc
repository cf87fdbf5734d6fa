// The tenancy decisions over a parsed Project.

#include <algorithm>

#include "project/glob.h"
#include "project/project.h"

namespace gantry::project {
namespace {

template <typename... Args>
Status Denied(const Project& p, fmt::format_string<Args...> format, Args&&... args) {
  return PermissionDeniedError("project {}: {}", p.name, fmt::format(format, std::forward<Args>(args)...))
      .set_reason(kReasonDenied);
}

bool Negated(std::string_view g) { return g.starts_with('!'); }
std::string_view Positive(std::string_view g) { return Negated(g) ? g.substr(1) : g; }

// How a list of (possibly negated) globs judges `text`: allowed when a plain entry matches and no
// "!" entry's glob does. `denied_by` is the "!" entry that matched, if any.
struct Judgement {
  bool allowed = false;
  const std::string* denied_by = nullptr;
};

template <typename Normalise>
Judgement Judge(const std::vector<std::string>& globs, std::string_view text, Normalise normalise) {
  Judgement j;
  bool matched = false;
  for (const std::string& g : globs) {
    bool m = GlobMatch(normalise(Positive(g)), text);
    if (m && Negated(g)) {
      j.denied_by = &g;
      return j;
    }
    matched = matched || (m && !Negated(g));
  }
  j.allowed = matched;
  return j;
}
Judgement Judge(const std::vector<std::string>& globs, std::string_view text) {
  return Judge(globs, text, [](std::string_view g) { return std::string(g); });
}

// "HTTPS://Git.Example.com/team-a/web.git/" -> "https://git.example.com/team-a/web": scheme and
// host are case-insensitive; paths are not on many Git servers, so they stay as written.
std::string NormaliseRepo(std::string_view url) {
  std::string s(url);
  if (size_t scheme = s.find("://"); scheme != std::string::npos) {
    size_t host_end = std::min(s.find('/', scheme + 3), s.size());
    for (size_t i = 0; i < host_end; ++i) {
      if (s[i] >= 'A' && s[i] <= 'Z') s[i] = static_cast<char>(s[i] - 'A' + 'a');
    }
  }
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (s.ends_with(".git")) s.resize(s.size() - 4);
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool HasDotSegment(std::string_view s) {
  for (size_t start = 0; start <= s.size();) {
    size_t end = std::min(s.find('/', start), s.size());
    std::string_view seg = s.substr(start, end - start);
    if (seg == "." || seg == "..") return true;
    start = end + 1;
  }
  return false;
}

std::string Listing(const std::vector<std::string>& globs) {
  if (globs.empty()) return "it is empty: none allowed";
  std::string out = "it lists ";
  for (size_t i = 0; i < globs.size(); ++i) out += (i ? ", " : "") + globs[i];
  return out;
}

std::string GroupOf(std::string_view api_version) {
  size_t slash = api_version.find('/');
  return slash == std::string_view::npos ? "" : std::string(api_version.substr(0, slash));
}

std::string GroupKindName(std::string_view group, std::string_view kind) {
  return group.empty() ? std::string(kind) : fmt::format("{}/{}", group, kind);
}

const GroupKind* FindGroupKind(const std::vector<GroupKind>& list, std::string_view group, std::string_view kind) {
  for (const GroupKind& gk : list) {
    // An empty group pattern matches the core group ("") only.
    if (GlobMatch(gk.group, group) && GlobMatch(gk.kind, kind)) return &gk;
  }
  return nullptr;
}

// "ClusterRoleBinding rbac.authorization.k8s.io/admin-all (manifests/rbac.yaml:3:1)",
// "Deployment apps/web in namespace team-a (apps/web.yaml:1:1)"
std::string Describe(const Object& o) {
  std::string group = GroupOf(o.ref.api_version);
  std::string out = fmt::format("{} {}{}", o.ref.kind, group.empty() ? "" : group + "/", o.ref.name);
  if (o.namespaced) out += fmt::format(" in namespace {}", o.ref.namespace_.empty() ? "\"\"" : o.ref.namespace_);
  if (!o.source.empty()) out += fmt::format(" ({})", o.source);
  return out;
}

std::string ClusterName(std::string_view server, std::string_view name) {
  if (name.empty()) return std::string(server);
  if (server.empty()) return std::string(name);
  return fmt::format("{} ({})", name, server);
}

// Why destinations refuse (server, name, ns); "" when they allow it.
std::string DestinationRefusal(const Project& p, std::string_view server, std::string_view name,
                               std::string_view ns) {
  bool allowed = false;
  for (const Destination& d : p.destinations) {
    bool negated = Negated(d.server) || Negated(d.name) || Negated(d.namespace_);
    // A cluster whose server URL (or name) is not known is matched by a wildcard entry only.
    bool cluster = (!d.server.empty() && GlobMatch(Positive(d.server), server)) ||
                   (!d.name.empty() && GlobMatch(Positive(d.name), name));
    if (!cluster || !GlobMatch(Positive(d.namespace_), ns)) continue;
    if (negated) {
      std::string entry;
      if (!d.server.empty()) entry += fmt::format("server: {:?}, ", d.server);
      if (!d.name.empty()) entry += fmt::format("name: {:?}, ", d.name);
      return fmt::format("destinations entry {{{}namespace: {:?}}} refuses namespace {} on cluster {}", entry,
                         d.namespace_, ns, ClusterName(server, name));
    }
    allowed = true;
  }
  if (allowed) return "";
  return fmt::format("destinations {} namespace {} on cluster {}",
                     p.destinations.empty() ? "is empty: it allows no" : "do not allow", ns,
                     ClusterName(server, name));
}

// Why the kind of `o` is refused; "" when allowed.
std::string KindRefusal(const Project& p, const Object& o) {
  std::string group = GroupOf(o.ref.api_version);
  std::string gk = GroupKindName(group, o.ref.kind);
  if (!o.namespaced) {
    if (FindGroupKind(p.cluster_allow, group, o.ref.kind) == nullptr) {
      return fmt::format("is cluster-scoped and clusterResourceWhitelist does not list {}", gk);
    }
    if (const GroupKind* deny = FindGroupKind(p.cluster_deny, group, o.ref.kind)) {
      return fmt::format("is cluster-scoped and clusterResourceBlacklist lists {}", GroupKindName(deny->group, deny->kind));
    }
    return "";
  }
  if (!p.namespace_allow.empty() && FindGroupKind(p.namespace_allow, group, o.ref.kind) == nullptr) {
    return fmt::format("is of a kind namespaceResourceWhitelist does not list ({})", gk);
  }
  if (const GroupKind* deny = FindGroupKind(p.namespace_deny, group, o.ref.kind)) {
    return fmt::format("is of a kind namespaceResourceBlacklist lists ({})", GroupKindName(deny->group, deny->kind));
  }
  return "";
}

// "apps/./team-a/../team-b" -> "apps/team-b"; nullopt when it leaves the root.
std::optional<std::string> CleanPath(std::string_view path) {
  std::vector<std::string_view> parts;
  for (size_t start = 0; start <= path.size();) {
    size_t end = std::min(path.find('/', start), path.size());
    std::string_view seg = path.substr(start, end - start);
    start = end + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
      continue;
    }
    parts.push_back(seg);
  }
  std::string out;
  for (std::string_view s : parts) out += (out.empty() ? "" : "/") + std::string(s);
  return out;
}

}  // namespace

Status CheckSourceRepo(const Project& p, std::string_view repo_url) {
  if (HasDotSegment(repo_url)) {
    return Denied(p, "repository {} has a \".\" or \"..\" path segment; sourceRepos are checked against a "
                     "normalised URL",
                  repo_url);
  }
  std::string url = NormaliseRepo(repo_url);
  Judgement j = Judge(p.source_repos, url, [](std::string_view g) { return NormaliseRepo(g); });
  if (j.denied_by) return Denied(p, "sourceRepos entry {:?} refuses repository {}", *j.denied_by, repo_url);
  if (!j.allowed) return Denied(p, "sourceRepos does not allow repository {} ({})", repo_url, Listing(p.source_repos));
  return OkStatus();
}

Status CheckAppNamespace(const Project& p, std::string_view ns) {
  if (!p.namespace_.empty() && ns == p.namespace_) return OkStatus();
  Judgement j = Judge(p.source_namespaces, ns);
  if (j.denied_by) {
    return Denied(p, "sourceNamespaces entry {:?} refuses Applications in namespace {}", *j.denied_by, ns);
  }
  if (!j.allowed) {
    return Denied(p, "sourceNamespaces does not allow Applications in namespace {} ({})", ns,
                  Listing(p.source_namespaces));
  }
  return OkStatus();
}

Status CheckDestination(const Project& p, std::string_view cluster_server, std::string_view cluster_name,
                        std::string_view ns) {
  std::string why = DestinationRefusal(p, cluster_server, cluster_name, ns);
  if (!why.empty()) return Denied(p, "{}", why);
  return OkStatus();
}

Status CheckObjects(const Project& p, std::string_view cluster_server, std::string_view cluster_name,
                    std::span<const Object> objects) {
  std::string first;
  size_t refused = 0;
  for (const Object& o : objects) {
    std::string why = KindRefusal(p, o);
    if (why.empty() && o.namespaced) {
      std::string dest = DestinationRefusal(p, cluster_server, cluster_name, o.ref.namespace_);
      if (!dest.empty()) why = "is outside the project's destinations: " + dest;
    }
    if (why.empty()) continue;
    if (refused++ == 0) first = fmt::format("{} {}", Describe(o), why);
  }
  if (refused == 0) return OkStatus();
  if (refused > 1) {
    first += fmt::format("; and {} more object{} refused", refused - 1, refused == 2 ? " is" : "s are");
  }
  return Denied(p, "{}", first);
}

Status CheckRelease(const Project& p, std::string_view image_repo, std::string_view config_path) {
  if (!image_repo.empty()) {
    Judgement j = Judge(p.image_repos, image_repo);
    if (j.denied_by) return Denied(p, "releases.imageRepos entry {:?} refuses image repository {}", *j.denied_by, image_repo);
    if (!j.allowed) {
      return Denied(p, "releases.imageRepos does not allow image repository {} ({})", image_repo,
                    Listing(p.image_repos));
    }
  }
  if (!config_path.empty()) {
    std::optional<std::string> clean = CleanPath(config_path);
    if (!clean) return Denied(p, "config path {} leaves the config repository", config_path);
    Judgement j = Judge(p.config_paths, *clean);
    if (j.denied_by) return Denied(p, "releases.configPaths entry {:?} refuses config path {}", *j.denied_by, *clean);
    if (!j.allowed) {
      return Denied(p, "releases.configPaths does not allow config path {} ({})", *clean, Listing(p.config_paths));
    }
  }
  return OkStatus();
}

Status CheckCredential(const Project& p, std::string_view credential_name) {
  Judgement j = Judge(p.credentials, credential_name);
  if (j.denied_by) return Denied(p, "credentials entry {:?} refuses credential {}", *j.denied_by, credential_name);
  if (!j.allowed) {
    return Denied(p, "credentials does not allow credential {} ({})", credential_name, Listing(p.credentials));
  }
  return OkStatus();
}

std::string ServiceAccountFor(const Project& p, std::string_view cluster_server, std::string_view ns) {
  for (const ServiceAccountRule& r : p.service_accounts) {
    if (!GlobMatch(r.server, cluster_server) || !GlobMatch(r.namespace_, ns)) continue;
    std::string_view sa = r.service_account;
    size_t colon = sa.find(':');
    if (colon != std::string_view::npos) return kube::ServiceAccountUser(sa.substr(0, colon), sa.substr(colon + 1));
    if (ns.empty()) continue;
    return kube::ServiceAccountUser(ns, sa);
  }
  return "";
}

}  // namespace gantry::project
