#include "authz/authz.h"

#include <algorithm>
#include <utility>

#include <fmt/ranges.h>

namespace gantry::authz {
namespace {

constexpr std::array<std::pair<Role, std::string_view>, 4> kRoleNames = {{
    {Role::kViewer, "viewer"},
    {Role::kDeployer, "deployer"},
    {Role::kAdmin, "admin"},
    {Role::kWorker, "worker"},
}};

constexpr const PermissionRule* RuleOf(Permission p) {
  for (const PermissionRule& r : kPermissions) {
    if (r.permission == p) return &r;
  }
  return nullptr;
}

// Every permission has exactly one row.
constexpr bool EveryPermissionOnce() {
  for (size_t i = 0; i < kPermissions.size(); ++i) {
    if (static_cast<size_t>(kPermissions[i].permission) != i) return false;
  }
  return true;
}
static_assert(EveryPermissionOnce(), "kPermissions lists the permissions in enum order, once each");

bool Covers(std::string_view granted_on, std::string_view project) {
  return granted_on == kAllProjects || (project != kAllProjects && granted_on == project);
}

// "user alice", "robot ci (project team-a)", "admin (bootstrap credential)".
std::string Describe(const Principal& p) {
  if (p.via == Via::kBootstrap) return p.name + " (bootstrap credential)";
  if (p.robot()) return fmt::format("robot token {} (project {})", p.name, p.robot_project);
  return "user " + p.name;
}

}  // namespace

std::string_view Name(Role role) {
  for (const auto& [r, name] : kRoleNames) {
    if (r == role) return name;
  }
  return "unknown";
}

std::string_view Name(Permission permission) {
  const PermissionRule* rule = RuleOf(permission);
  return rule != nullptr ? rule->name : "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (const auto& [r, n] : kRoleNames) {
    if (n == name) return r;
  }
  return std::nullopt;
}

std::optional<Permission> ParsePermission(std::string_view name) {
  for (const PermissionRule& r : kPermissions) {
    if (r.name == name) return r.permission;
  }
  return std::nullopt;
}

bool Grants(Role role, Permission permission) {
  const PermissionRule* rule = RuleOf(permission);
  if (rule == nullptr) return false;
  // The worker role is outside the chain: it alone grants runs.work, and nothing else.
  if (role == Role::kWorker || rule->least == Role::kWorker) return role == rule->least;
  return static_cast<int>(role) >= static_cast<int>(rule->least);
}

Status ValidateProject(std::string_view project, std::string_view what) {
  if (project == kAllProjects) return OkStatus();
  if (project.empty()) return InvalidArgumentError("{} is empty (use \"*\" for every project)", what);
  if (project.size() > 253) return InvalidArgumentError("{} {:?} is longer than 253 characters", what, project);
  for (char c : project) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return InvalidArgumentError("{} {:?}: only letters, digits, '.', '_' and '-' (or \"*\")", what, project);
  }
  return OkStatus();
}

std::string_view Name(Via via) {
  switch (via) {
    case Via::kToken: return "token";
    case Via::kOidc: return "oidc";
    case Via::kBootstrap: return "bootstrap";
  }
  return "unknown";
}

Authorizer::Authorizer(std::vector<Binding> bindings) : bindings_(std::move(bindings)) {}

std::vector<Grant> Authorizer::GrantsOf(const Principal& p) const {
  std::vector<Grant> out;
  if (p.via == Via::kBootstrap) return {Grant{Role::kAdmin, std::string(kAllProjects)}};
  if (p.robot()) {
    for (Role r : p.robot_roles) out.push_back({r, p.robot_project});
    return out;
  }
  for (const Binding& b : bindings_) {
    const bool mine = b.group ? std::find(p.groups.begin(), p.groups.end(), b.subject) != p.groups.end()
                              : b.subject == p.name;
    if (mine) out.push_back({b.role, b.project});
  }
  return out;
}

bool Authorizer::Allowed(const Principal& p, Permission permission, std::string_view project) const {
  for (const Grant& g : GrantsOf(p)) {
    if (Covers(g.project, project) && Grants(g.role, permission)) return true;
  }
  return false;
}

bool Authorizer::AllowedSomewhere(const Principal& p, Permission permission) const {
  for (const Grant& g : GrantsOf(p)) {
    if (Grants(g.role, permission)) return true;
  }
  return false;
}

Status Authorizer::Check(const Principal& p, Permission permission, std::string_view project) const {
  if (Allowed(p, permission, project)) return OkStatus();
  std::vector<std::string_view> roles;
  for (const Grant& g : GrantsOf(p)) {
    if (!Covers(g.project, project)) continue;
    if (std::find(roles.begin(), roles.end(), Name(g.role)) == roles.end()) roles.push_back(Name(g.role));
  }
  const std::string where = project == kAllProjects ? "cluster-wide" : fmt::format("on project {}", project);
  return PermissionDeniedError("{} lacks {} {} (roles: {})", Describe(p), Name(permission), where,
                               roles.empty() ? "none" : fmt::format("{}", fmt::join(roles, ", ")));
}

}  // namespace gantry::authz
