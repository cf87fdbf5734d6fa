#pragma once
// authz: who may do what on which project. Pure: no I/O; the caller brings the principal (from
// server/access.h's authentication) and the role bindings (from the store).
//
// A Principal is who made a request: a user (through an API token of theirs, or an OIDC sign-in
// with its groups), a robot token (bound to one project with the roles it was created with), or
// the bootstrap admin (the deprecated shared API token).
//
// Roles are ordered, each containing the one below it: viewer ⊂ deployer ⊂ admin. Apart from them,
// worker is the role of remote CI workers' tokens (`gantry worker`): it grants runs.work (claim a
// run, renew its lease, report its steps, logs and end) and nothing else, and no other role grants
// runs.work: a claim hands over the run's secrets, which not even an admin reads through the API. The decision
// table is data, kPermissions: every permission with its name and the least role that grants it.
// A role is granted on a project, or on "*" (every project: cluster-wide). Check(principal,
// permission, project) is OK when one of the principal's grants covers `project` (a grant on that
// project or on "*") with a role at least the permission's; project "*" (a cluster-wide action,
// or an object that belongs to no project) is covered only by grants on "*". So a cluster-wide
// admin may do everything, and nothing else reaches beyond its projects.
//
// Where the grants come from:
//   users      every binding of the user's name (subject kind user) or of one of their groups;
//   robots     the token's roles on the token's project only (bindings do not apply);
//   bootstrap  admin on "*".
//
// Thread-safety: an Authorizer is immutable after construction; share it freely.

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::authz {

// "*": every project.
inline constexpr std::string_view kAllProjects = "*";

enum class Role { kViewer, kDeployer, kAdmin, kWorker };

enum class Permission {
  kRunsRead,
  kRunsCancel,
  kRunsApprove,
  kAppsRead,
  kAppsSync,
  kAppsDeploy,
  kAppsRollback,
  kReleasesApprove,
  kTokensManageOwn,
  kTokensManage,
  kRolesManage,
  kAuditRead,
  kRunsWork,
};

// The decision table: a permission, its name, and the least role that grants it: one of viewer ⊂
// deployer ⊂ admin, or worker, which alone grants runs.work, and grants nothing else.
struct PermissionRule {
  Permission permission;
  std::string_view name;
  Role least;
};
inline constexpr std::array<PermissionRule, 13> kPermissions = {{
    {Permission::kRunsRead, "runs.read", Role::kViewer},
    {Permission::kRunsCancel, "runs.cancel", Role::kDeployer},
    {Permission::kRunsApprove, "runs.approve", Role::kDeployer},
    {Permission::kAppsRead, "apps.read", Role::kViewer},
    {Permission::kAppsSync, "apps.sync", Role::kDeployer},
    {Permission::kAppsDeploy, "apps.deploy", Role::kDeployer},
    {Permission::kAppsRollback, "apps.rollback", Role::kDeployer},
    {Permission::kReleasesApprove, "releases.approve", Role::kDeployer},
    {Permission::kTokensManageOwn, "tokens.manage-own", Role::kViewer},
    {Permission::kTokensManage, "tokens.manage", Role::kAdmin},
    {Permission::kRolesManage, "roles.manage", Role::kAdmin},
    {Permission::kAuditRead, "audit.read", Role::kAdmin},
    {Permission::kRunsWork, "runs.work", Role::kWorker},
}};
inline constexpr std::array<Role, 4> kRoles = {Role::kViewer, Role::kDeployer, Role::kAdmin, Role::kWorker};

std::string_view Name(Role role);              // "viewer", "deployer", "admin", "worker"
std::string_view Name(Permission permission);  // "runs.cancel", ...
std::optional<Role> ParseRole(std::string_view name);
std::optional<Permission> ParsePermission(std::string_view name);
// True when `role` grants `permission` (on the project it is granted on).
bool Grants(Role role, Permission permission);

// A project name, or "*". InvalidArgument naming `what` for an empty name, one with characters
// other than [A-Za-z0-9._-] or longer than 253.
Status ValidateProject(std::string_view project, std::string_view what = "project");

enum class Via { kToken, kOidc, kBootstrap };
std::string_view Name(Via via);  // "token", "oidc", "bootstrap"

struct Principal {
  std::string name;                 // user name; "robot:<token name>" for a robot token
  std::vector<std::string> groups;  // OIDC groups; empty for tokens
  Via via = Via::kToken;
  int64_t token_id = 0;  // the API token used, when via == kToken
  // Robot tokens only: the one project they act in, with these roles (else empty).
  std::string robot_project;
  std::vector<Role> robot_roles;

  bool robot() const { return !robot_project.empty(); }
};

// A role on a project ("*" = every project).
struct Grant {
  Role role;
  std::string project;
  bool operator==(const Grant&) const = default;
};

// A role granted to a user or a group (store::RoleBinding without its bookkeeping).
struct Binding {
  bool group = false;
  std::string subject;
  Role role = Role::kViewer;
  std::string project;
};

class Authorizer {
 public:
  explicit Authorizer(std::vector<Binding> bindings = {});

  // The grants of `principal` (see the file comment), in binding order.
  std::vector<Grant> GrantsOf(const Principal& principal) const;

  // OK when `principal` holds `permission` on `project`; PermissionDenied otherwise, naming the
  // principal, the permission, the project and its roles there:
  //   "user alice lacks apps.sync on project team-a (roles: viewer)".
  Status Check(const Principal& principal, Permission permission, std::string_view project) const;
  bool Allowed(const Principal& principal, Permission permission, std::string_view project) const;
  // True when `principal` holds `permission` on at least one project (so a listing may show it
  // something: the caller filters what it lists with Allowed()).
  bool AllowedSomewhere(const Principal& principal, Permission permission) const;

 private:
  std::vector<Binding> bindings_;
};

}  // namespace gantry::authz
