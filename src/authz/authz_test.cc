// The decision table, exhaustively: every role × every permission × (the project it was granted
// on, another project, cluster-wide), against the expected table written out below; the
// principals' grants; the messages; and docs/access.md's table against the code's.

#include "authz/authz.h"

#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::authz {
namespace {

using ::testing::HasSubstr;

// What each role may do on a project it holds; written out by hand, not derived from kPermissions.
struct Expected {
  std::string_view permission;
  bool viewer, deployer, admin, worker;
};
constexpr Expected kExpected[] = {
    // permission           viewer deployer admin  worker
    {"runs.read",           true,  true,    true,  false},
    {"runs.cancel",         false, true,    true,  false},
    {"runs.approve",        false, true,    true,  false},
    {"apps.read",           true,  true,    true,  false},
    {"apps.sync",           false, true,    true,  false},
    {"apps.deploy",         false, true,    true,  false},
    {"apps.rollback",       false, true,    true,  false},
    {"releases.approve",    false, true,    true,  false},
    {"tokens.manage-own",   true,  true,    true,  false},
    {"tokens.manage",       false, false,   true,  false},
    {"roles.manage",        false, false,   true,  false},
    {"audit.read",          false, false,   true,  false},
    {"runs.work",           false, false,   false, true},
};

bool ExpectedFor(const Expected& e, Role r) {
  return r == Role::kViewer ? e.viewer : r == Role::kDeployer ? e.deployer : r == Role::kAdmin ? e.admin : e.worker;
}

TEST(AuthzTableTest, TheExpectedTableNamesEveryPermissionOnce) {
  ASSERT_EQ(std::size(kExpected), kPermissions.size());
  for (const Expected& e : kExpected) {
    auto p = ParsePermission(e.permission);
    ASSERT_TRUE(p.has_value()) << e.permission;
    EXPECT_EQ(Name(*p), e.permission);
  }
}

TEST(AuthzTableTest, EveryRoleEveryPermissionEveryScope) {
  for (Role role : kRoles) {
    // A user granted `role` on team-a, and another granted it cluster-wide.
    Authorizer authz({{.subject = "alice", .role = role, .project = "team-a"},
                      {.subject = "root", .role = role, .project = "*"}});
    const Principal alice{.name = "alice"};
    const Principal root{.name = "root"};
    for (const Expected& e : kExpected) {
      const Permission p = *ParsePermission(e.permission);
      const bool want = ExpectedFor(e, role);
      const std::string what = fmt::format("{} {}", Name(role), e.permission);
      EXPECT_EQ(Grants(role, p), want) << what;
      EXPECT_EQ(authz.Allowed(alice, p, "team-a"), want) << what << " on its project";
      EXPECT_FALSE(authz.Allowed(alice, p, "team-b")) << what << " on another project";
      EXPECT_FALSE(authz.Allowed(alice, p, "*")) << what << " cluster-wide, granted on a project";
      EXPECT_EQ(authz.Allowed(root, p, "team-a"), want) << what << " granted cluster-wide, on a project";
      EXPECT_EQ(authz.Allowed(root, p, "team-b"), want) << what << " granted cluster-wide, on another";
      EXPECT_EQ(authz.Allowed(root, p, "*"), want) << what << " granted cluster-wide, cluster-wide";
      EXPECT_EQ(authz.Check(alice, p, "team-a").ok(), want) << what;
      EXPECT_EQ(authz.AllowedSomewhere(alice, p), want) << what;
      // A robot token with the role on team-a: the same, and bindings do not reach it.
      const Principal robot{.name = "robot:ci", .robot_project = "team-a", .robot_roles = {role}};
      EXPECT_EQ(authz.Allowed(robot, p, "team-a"), want) << what << " robot";
      EXPECT_FALSE(authz.Allowed(robot, p, "team-b")) << what << " robot, another project";
      EXPECT_FALSE(authz.Allowed(robot, p, "*")) << what << " robot, cluster-wide";
    }
  }
}

TEST(AuthzTableTest, RolesContainTheOnesBelow) {
  for (const PermissionRule& rule : kPermissions) {
    EXPECT_TRUE(!Grants(Role::kViewer, rule.permission) || Grants(Role::kDeployer, rule.permission)) << rule.name;
    EXPECT_TRUE(!Grants(Role::kDeployer, rule.permission) || Grants(Role::kAdmin, rule.permission)) << rule.name;
    // A cluster-wide admin may do everything but work as a CI worker (a claim carries the run's secrets).
    EXPECT_EQ(Grants(Role::kAdmin, rule.permission), rule.permission != Permission::kRunsWork) << rule.name;
  }
}

TEST(AuthzPrincipalTest, UsersGetTheirOwnAndTheirGroupsBindings) {
  Authorizer authz({{.subject = "alice", .role = Role::kViewer, .project = "team-a"},
                    {.group = true, .subject = "ops", .role = Role::kDeployer, .project = "team-a"},
                    {.group = true, .subject = "alice", .role = Role::kAdmin, .project = "*"},
                    {.subject = "bob", .role = Role::kAdmin, .project = "*"}});
  const Principal alice{.name = "alice", .groups = {"ops"}, .via = Via::kOidc};
  EXPECT_EQ(authz.GrantsOf(alice), (std::vector<Grant>{{Role::kViewer, "team-a"}, {Role::kDeployer, "team-a"}}))
      << "a group named like the user is not the user";
  EXPECT_TRUE(authz.Allowed(alice, Permission::kAppsSync, "team-a")) << "through the group";
  EXPECT_FALSE(authz.Allowed(Principal{.name = "alice"}, Permission::kAppsSync, "team-a")) << "without it";
  EXPECT_TRUE(authz.GrantsOf(Principal{.name = "carol"}).empty());
  const Principal bootstrap{.name = "admin", .via = Via::kBootstrap};
  EXPECT_EQ(authz.GrantsOf(bootstrap), (std::vector<Grant>{{Role::kAdmin, "*"}}));
  for (const PermissionRule& rule : kPermissions) {
    EXPECT_EQ(authz.Allowed(bootstrap, rule.permission, "*"), rule.permission != Permission::kRunsWork) << rule.name;
  }
}

TEST(AuthzMessageTest, NamesWhoThePermissionTheProjectAndTheRoles) {
  Authorizer authz({{.subject = "alice", .role = Role::kViewer, .project = "team-a"},
                    {.subject = "alice", .role = Role::kViewer, .project = "*"}});
  Status s = authz.Check(Principal{.name = "alice"}, Permission::kAppsSync, "team-a");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.message(), "user alice lacks apps.sync on project team-a (roles: viewer)");
  EXPECT_EQ(authz.Check(Principal{.name = "bob"}, Permission::kRolesManage, "*").message(),
            "user bob lacks roles.manage cluster-wide (roles: none)");
  const Principal robot{.name = "robot:ci", .robot_project = "team-a", .robot_roles = {Role::kDeployer}};
  EXPECT_EQ(authz.Check(robot, Permission::kRunsCancel, "team-b").message(),
            "robot token robot:ci (project team-a) lacks runs.cancel on project team-b (roles: none)");
}

TEST(AuthzNamesTest, RoundTripAndRejectUnknown) {
  for (Role r : kRoles) EXPECT_EQ(ParseRole(Name(r)), r);
  EXPECT_EQ(ParseRole("Admin"), std::nullopt);
  EXPECT_EQ(ParsePermission("runs.delete"), std::nullopt);
  EXPECT_TRUE(ValidateProject("*").ok());
  EXPECT_TRUE(ValidateProject("team-a.prod_1").ok());
  for (std::string_view bad : {"", "team a", "a/b", "a*", "é"}) {
    Status s = ValidateProject(bad, "--project");
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("--project")) << bad;
  }
}

// docs/access.md has the table between its "<!-- roles table -->" markers, one row per
// permission: "| `name` | ✓ | ✓ | ✓ |" (✓ or blank for viewer, deployer, admin).
TEST(AuthzDocsTest, TheRolesTableInTheDocsIsTheCodes) {
  std::ifstream in("../../docs/access.md");
  ASSERT_TRUE(in) << "docs/access.md (the test runs in src/authz)";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const size_t begin = doc.find("<!-- roles table -->");
  const size_t end = doc.find("<!-- end roles table -->");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  std::string table = doc.substr(begin, end - begin);
  std::vector<std::string> want;
  for (const PermissionRule& rule : kPermissions) {
    std::string row = fmt::format("| `{}` |", rule.name);
    for (Role r : kRoles) row += Grants(r, rule.permission) ? " ✓ |" : "   |";
    want.push_back(row);
  }
  std::vector<std::string> got;
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("| `")) got.push_back(line);
  }
  EXPECT_EQ(got, want) << "regenerate the table in docs/access.md from authz::kPermissions";
}

}  // namespace
}  // namespace gantry::authz
