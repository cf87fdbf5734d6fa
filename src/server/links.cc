#include "server/links.h"

#include "git/git.h"

namespace gantry::server {
namespace {

std::string Replace(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

bool Contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// HOST (with its port) and PATH (no leading slash, no .git, no trailing slash) of a repository URL
// in any of the forms Git takes; nullopt for a file:// URL or one without a path.
struct RepoParts {
  std::string host;
  std::string path;
};
std::optional<RepoParts> SplitRepo(std::string_view url) {
  std::string clean = git::ScrubUrl(url);
  std::string_view rest = clean;
  if (size_t scheme = rest.find("://"); scheme != std::string_view::npos) {
    if (rest.substr(0, scheme) == "file") return std::nullopt;
    rest.remove_prefix(scheme + 3);
    if (size_t at = rest.find('@'); at != std::string_view::npos && at < rest.find('/')) rest.remove_prefix(at + 1);
  } else {
    // scp-like: [user@]host:path
    if (size_t at = rest.find('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    return SplitRepo("ssh://" + std::string(rest.substr(0, colon)) + "/" + std::string(rest.substr(colon + 1)));
  }
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  RepoParts parts{.host = std::string(rest.substr(0, slash)), .path = std::string(rest.substr(slash + 1))};
  while (parts.path.ends_with('/')) parts.path.pop_back();
  if (parts.path.ends_with(".git")) parts.path.resize(parts.path.size() - 4);
  if (parts.path.empty() || parts.host.empty()) return std::nullopt;
  // ssh URLs name the ssh port; the web pages are on https's.
  if (clean.starts_with("ssh://") || !Contains(clean, "://")) {
    if (size_t port = parts.host.find(':'); port != std::string::npos) parts.host.resize(port);
  }
  return parts;
}

std::optional<std::string> ForgeCommit(std::string_view kind, const RepoParts& p, std::string_view sha) {
  if (kind == "github" || kind == "gitea") return "https://" + p.host + "/" + p.path + "/commit/" + std::string(sha);
  if (kind == "gitlab") return "https://" + p.host + "/" + p.path + "/-/commit/" + std::string(sha);
  return std::nullopt;
}

bool IsForgeKind(std::string_view t) { return t == "github" || t == "gitlab" || t == "gitea"; }

}  // namespace

Result<LinkRule> ParseLinkRule(std::string_view flag, std::string_view text, bool commit) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return InvalidArgumentError("{} {:?}: expected PREFIX=TEMPLATE{}", flag, text, commit ? " (or PREFIX=github|gitlab|gitea)" : "");
  }
  LinkRule rule{.prefix = std::string(text.substr(0, eq)), .template_ = std::string(text.substr(eq + 1))};
  if (commit && !IsForgeKind(rule.template_) && !Contains(rule.template_, "{sha}")) {
    return InvalidArgumentError("{} {:?}: the template names no {{sha}} and is not github, gitlab or gitea", flag, text);
  }
  if (!commit && !Contains(rule.template_, "{digest}") && !Contains(rule.template_, "{reference}")) {
    return InvalidArgumentError("{} {:?}: the template names neither {{digest}} nor {{reference}}", flag, text);
  }
  return rule;
}

std::optional<std::string> CommitUrl(const LinkOptions& options, std::string_view repo_url, std::string_view sha) {
  if (repo_url.empty() || sha.empty()) return std::nullopt;
  const std::string clean = git::ScrubUrl(repo_url);
  const std::optional<RepoParts> parts = SplitRepo(repo_url);
  for (const auto& rule : options.commits) {
    if (!clean.starts_with(rule.prefix)) continue;
    if (IsForgeKind(rule.template_)) return parts ? ForgeCommit(rule.template_, *parts, sha) : std::nullopt;
    std::string url = Replace(rule.template_, "{sha}", sha);
    if (parts) {
      url = Replace(url, "{repo}", parts->host + "/" + parts->path);
      url = Replace(url, "{path}", parts->path);
    }
    return url;
  }
  if (!parts) return std::nullopt;
  const std::string& host = parts->host;
  if (host == "github.com" || Contains(host, "github")) return ForgeCommit("github", *parts, sha);
  if (host == "gitlab.com" || Contains(host, "gitlab")) return ForgeCommit("gitlab", *parts, sha);
  if (host == "codeberg.org" || Contains(host, "gitea") || Contains(host, "forgejo")) return ForgeCommit("gitea", *parts, sha);
  return std::nullopt;
}

std::optional<std::string> ImageUrl(const LinkOptions& options, std::string_view name, std::string_view digest) {
  if (name.empty() || digest.empty()) return std::nullopt;
  // The registry is the first component when it looks like a host (has a dot or a port, or is
  // localhost), as Docker decides; else Docker Hub.
  std::string registry = "docker.io";
  std::string repository(name);
  if (size_t slash = name.find('/'); slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    if (Contains(first, ".") || Contains(first, ":") || first == "localhost") {
      registry = std::string(first);
      repository = std::string(name.substr(slash + 1));
    }
  }
  const std::string reference = std::string(name) + "@" + std::string(digest);
  for (const auto& rule : options.images) {
    if (!std::string_view(name).starts_with(rule.prefix)) continue;
    std::string url = Replace(rule.template_, "{registry}", registry);
    url = Replace(url, "{repository}", repository);
    url = Replace(url, "{digest}", digest);
    return Replace(url, "{reference}", reference);
  }
  if (registry == "quay.io") return "https://quay.io/repository/" + repository + "/manifest/" + std::string(digest);
  if (registry == "ghcr.io") return "https://ghcr.io/" + repository;
  if (registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io") {
    if (repository.starts_with("library/")) return "https://hub.docker.com/_/" + repository.substr(8);
    if (!Contains(repository, "/")) return "https://hub.docker.com/_/" + repository;
    return "https://hub.docker.com/r/" + repository;
  }
  return std::nullopt;
}

}  // namespace gantry::server
