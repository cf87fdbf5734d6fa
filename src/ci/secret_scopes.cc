#include "ci/secret_scopes.h"

#include <sys/stat.h>

#include <cerrno>

#include "base/path.h"
#include "ci/pipeline.h"

namespace gantry::ci {
namespace {

std::vector<std::string> SplitList(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

bool AnyMatch(const std::vector<std::string>& globs, std::string_view text) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (GlobMatch(g, text)) return true;
  }
  return false;
}

Status ParseHeader(std::string_view line, std::string_view where, SecretScope& scope) {
  scope.header = std::string(line);
  std::string_view body = line.substr(1, line.size() - 2);
  while (!body.empty()) {
    size_t space = body.find_first_of(" \t");
    std::string_view word = body.substr(0, space);
    body = space == std::string_view::npos ? std::string_view() : body.substr(space + 1);
    if (word.empty()) continue;
    if (word == "protected") {
      scope.protected_only = true;
      continue;
    }
    size_t eq = word.find('=');
    std::string_view key = word.substr(0, eq);
    std::vector<std::string> values = eq == std::string_view::npos ? std::vector<std::string>() : SplitList(word.substr(eq + 1));
    std::vector<std::string>* into = key == "repo" ? &scope.repos : key == "branch" ? &scope.branches
                                     : key == "tag" ? &scope.tags : key == "event" ? &scope.events : nullptr;
    if (into == nullptr) {
      return InvalidArgumentError("{}: unknown scope {:?}: use repo=, branch=, tag=, event= or protected", where, key);
    }
    if (values.empty()) return InvalidArgumentError("{}: {}= needs at least one value", where, key);
    into->insert(into->end(), values.begin(), values.end());
  }
  return OkStatus();
}

}  // namespace

std::vector<std::string> SecretScopes::AllValues() const {
  std::vector<std::string> out;
  for (const auto& s : scopes) {
    for (const auto& [_, v] : s.values) out.push_back(v);
  }
  return out;
}

Result<SecretScopes> ParseSecretScopes(std::string_view text, std::string_view source) {
  SecretScopes out;
  out.scopes.emplace_back();  // the lines before any header
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    std::string where = fmt::format("{}:{}", source, line_no);
    if (line.front() == '[') {
      if (line.back() != ']') return InvalidArgumentError("{}: a scope header ends with ']'", where);
      SecretScope scope;
      GANTRY_RETURN_IF_ERROR(ParseHeader(line, where, scope));
      out.scopes.push_back(std::move(scope));
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return InvalidArgumentError("{}: expected NAME=VALUE or a [scope] header", where);  // never echo the line
    }
    out.scopes.back().values[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  return out;
}

Result<SecretScopes> ReadSecretScopesFile(const std::filesystem::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, "secrets file " + path.string());
  if ((st.st_mode & 077) != 0) {
    return PermissionDeniedError("secrets file {} is readable by others (mode {:o}); chmod 600 it", path.string(),
                                 st.st_mode & 0777);
  }
  GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  return ParseSecretScopes(text, path.string());
}

SelectedSecrets Select(const SecretScopes& scopes, const SecretRequest& r) {
  SelectedSecrets out;
  for (const auto& s : scopes.scopes) {
    bool match = AnyMatch(s.repos, r.repo) && AnyMatch(s.events, r.event);
    if (!s.branches.empty()) match = match && !r.branch.empty() && AnyMatch(s.branches, r.branch);
    if (!s.tags.empty()) match = match && !r.tag.empty() && AnyMatch(s.tags, r.tag);
    if (s.protected_only) {
      bool pushed = r.event == "push" || r.event == "tag";
      match = match && r.trusted && pushed && !r.branch.empty() && AnyMatch(r.protected_branches, r.branch) &&
              !r.protected_branches.empty();
    }
    for (const auto& [name, value] : s.values) {
      if (match) {
        out.in_scope[name] = value;
      } else {
        std::string& why = out.out_of_scope[name];
        why += why.empty() ? "scoped to " + s.header : " or " + s.header;
      }
    }
  }
  for (const auto& [name, _] : out.in_scope) out.out_of_scope.erase(name);
  return out;
}

}  // namespace gantry::ci
