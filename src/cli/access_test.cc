// gantry token, role and audit (and runs approve under roles) through cli::Main, against a real
// in-process server: a Front on loopback with server::Access and the CI routes on SQLite.

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "cli/deps.h"
#include "cli/testing.h"
#include "server/access.h"
#include "server/api_v1.h"
#include "server/ci_front.h"
#include "test/fakes/no_step_executor.h"

namespace gantry::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
namespace fs = std::filesystem;

constexpr char kBootstrap[] = "cli-access-bootstrap-0123456789";
constexpr char kRepo[] = "https://git.example/team-a/app";

class AccessCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cli_access_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ci::ServerOptions options;  // named: GCC 12 at -O2 takes a temporary's map for uninitialized
    options.repos = {kRepo};
    options.data_dir = dir_ / "data";
    ci_ = std::make_unique<ci::Server>(*store_, executor_, options);
    access_ = std::make_unique<server::Access>(*store_, server::AccessOptions{.bootstrap_token = kBootstrap});
    ASSERT_TRUE(server::ServeCi(front_, *ci_,
                                {.webhook = {.secret = "s"}, .access = access_.get(), .project_of = [](const store::Run&) {
                                   return std::string("team-a");
                                 }})
                    .ok());
    server::ServeAccess(front_, *access_);
    ASSERT_TRUE(server::ServeApiV1(front_, {.access = access_.get(), .ci = ci_.get(), .project_of = [](const store::Run&) {
                                              return std::string("team-a");
                                            }})
                    .ok());
    ASSERT_TRUE(front_.Start().ok());
    deps_.clock = &SystemClock();
    ::unsetenv("GANTRY_TOKEN");
    ::setenv("XDG_CONFIG_HOME", (dir_ / "config").c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("GANTRY_TOKEN");
    ::unsetenv("XDG_CONFIG_HOME");
    front_.Stop();
    ci_.reset();
    access_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // `gantry ARGS --server URL` with GANTRY_TOKEN=token ("" = unset).
  Ran As(const std::string& token, std::vector<std::string> args) {
    if (token.empty()) {
      ::unsetenv("GANTRY_TOKEN");
    } else {
      ::setenv("GANTRY_TOKEN", token.c_str(), 1);
    }
    args.insert(args.end(), {"--server", fmt::format("127.0.0.1:{}", front_.port())});
    return RunForTest(std::move(args), deps_);
  }
  std::string UserToken(const std::string& user) {
    auto secret = server::NewTokenSecret();
    GANTRY_CHECK(secret.ok());
    GANTRY_CHECK(store_->CreateToken({.name = "t", .owner = user, .secret_sha256 = Sha256Hex(*secret)}).ok());
    return *secret;
  }

  fs::path dir_;
  std::unique_ptr<store::Store> store_;
  fakes::NoStepExecutor executor_;
  std::unique_ptr<ci::Server> ci_;
  std::unique_ptr<server::Access> access_;
  server::Front front_{"server", {}};
  Deps deps_;
};

TEST_F(AccessCommandsTest, UsageErrorsExitTwoBeforeAnythingIsSent) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"token", "create", "--project", "team-a"}, "--project and --role go together"},
      {{"token", "create", "--role", "deployer"}, "--project and --role go together"},
      {{"token", "create", "--project", "team-a", "--role", "root"}, "--role \"root\""},
      {{"token", "create", "--project", "*", "--role", "viewer"}, "not \"*\""},
      {{"token", "create", "--project", "a b", "--role", "viewer"}, "--project"},
      {{"token", "create", "--expires", "forever"}, "--expires \"forever\""},
      {{"token", "create", "--expires", "0d"}, "--expires"},
      {{"token", "create", "--name", ""}, "--name"},
      {{"token", "revoke", "abc"}, "not a token id"},
      {{"token", "list", "--project", "a/b"}, "--project"},
      {{"role", "grant", "alice", "owner", "--project", "team-a"}, "role \"owner\""},
      {{"role", "grant", "alice", "viewer", "--project", ""}, "--project"},
      {{"audit", "--limit", "0"}, "--limit 0"},
      {{"audit", "--since", "yesterday"}, "--since \"yesterday\""},
  };
  const size_t rows = store_->ListAudit(100)->size();
  for (const auto& [args, message] : cases) {
    Ran r = As(kBootstrap, args);
    EXPECT_EQ(r.code, 2) << r;
    EXPECT_THAT(r.err, HasSubstr(message)) << r;
  }
  EXPECT_EQ(store_->ListAudit(100)->size(), rows) << "nothing reached the server";
  Ran missing = As(kBootstrap, {"role", "grant", "alice", "viewer"});
  EXPECT_EQ(missing.code, 2) << "--project is required: no cluster-wide grant by omission";
}

TEST_F(AccessCommandsTest, TokensAreCreatedListedAndRevoked) {
  ASSERT_TRUE(store_->GrantRole({.subject = "alice", .role = "viewer", .project = "team-a"}).ok());
  Ran created = As(UserToken("alice"), {"token", "create", "--name", "laptop", "--expires", "30d"});
  ASSERT_EQ(created.code, 0) << created;
  const std::string secret = created.out.substr(0, created.out.find('\n'));
  EXPECT_THAT(secret, StartsWith("gty_"));
  EXPECT_EQ(created.out, secret + "\n") << "stdout is the secret alone (TOKEN=$(gantry token create))";
  EXPECT_THAT(created.err, HasSubstr("created token t-2 \"laptop\": user token of alice, expires 20"));
  EXPECT_THAT(created.err, HasSubstr("shown once"));

  Ran list = As(secret, {"token", "list"});
  ASSERT_EQ(list.code, 0) << list;
  EXPECT_THAT(list.out, HasSubstr("laptop"));
  EXPECT_THAT(list.out, Not(HasSubstr("gty_")));
  Ran revoked = As(secret, {"token", "revoke", "t-2"});
  ASSERT_EQ(revoked.code, 0) << revoked;
  EXPECT_EQ(revoked.out, "revoked t-2\n");
  Ran after = As(secret, {"token", "list"});
  EXPECT_EQ(after.code, 3) << after;
  EXPECT_THAT(after.err, HasSubstr("HTTP 401: token t-2 was revoked at "));
  EXPECT_THAT(after.err, HasSubstr(" by alice"));

  Ran robot = As(kBootstrap, {"token", "create", "--name", "ci", "--project", "team-a", "--role", "deployer"});
  ASSERT_EQ(robot.code, 0) << robot;
  EXPECT_THAT(robot.err, HasSubstr("robot token of team-a as deployer"));
  Ran all = As(kBootstrap, {"token", "list", "--all"});
  ASSERT_EQ(all.code, 0) << all;
  EXPECT_THAT(all.out, HasSubstr("robot"));
  EXPECT_THAT(all.out, HasSubstr("by alice"));

  // Each token change left exactly one audit row (token commands always go through the server:
  // there is no local path that changes tokens).
  auto rows = [&](const std::string& action) {
    auto r = store_->ListAudit({.action = action});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.value_or(std::vector<store::AuditEntry>{});
  };
  auto creates = rows("tokens.create");
  ASSERT_EQ(creates.size(), 2u);
  EXPECT_EQ(creates[1].actor, "alice");
  EXPECT_EQ(creates[1].result, "ok");
  EXPECT_EQ(creates[0].project, "team-a");
  auto revokes = rows("tokens.revoke");
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0].actor, "alice");
  EXPECT_EQ(revokes[0].object, "token t-2 \"laptop\"");
  EXPECT_EQ(revokes[0].result, "ok");
}

TEST_F(AccessCommandsTest, RunsRetryQueuesANewRunOfAFinishedOneForADeployer) {
  auto run = store_->CreateRun({.repo = kRepo, .pipeline = kRepo, .commit = std::string(40, 'b'), .ref = "refs/heads/main"});
  ASSERT_TRUE(run.ok());
  const std::string bob = UserToken("bob");
  ASSERT_EQ(As(kBootstrap, {"role", "grant", "bob", "deployer", "--project", "team-a"}).code, 0);
  Ran early = As(bob, {"runs", "retry", std::to_string(*run)});
  EXPECT_EQ(early.code, 3) << early;
  EXPECT_THAT(early.err, HasSubstr("HTTP 409"));
  EXPECT_THAT(early.err, HasSubstr("only a finished run"));
  ASSERT_TRUE(store_->UpdateRun(*run, store::RunState::kCancelled, "cancelled").ok());
  Ran retried = As(bob, {"runs", "retry", std::to_string(*run)});
  ASSERT_EQ(retried.code, 0) << retried;
  EXPECT_EQ(retried.out, fmt::format("run {} retries run {}: queued\n", *run + 1, *run));
  auto again = store_->GetRun(*run + 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->retry_of, *run);
}

TEST_F(AccessCommandsTest, AViewerCannotApproveThroughTheCliADeployerCan) {
  auto run = store_->CreateRun({.repo = kRepo, .pipeline = kRepo, .commit = std::string(40, 'a'), .ref = "refs/heads/main",
                                .state = store::RunState::kAwaitingApproval});
  ASSERT_TRUE(run.ok());
  const std::string bob = UserToken("bob");
  ASSERT_EQ(As(kBootstrap, {"role", "grant", "bob", "viewer", "--project", "team-a"}).code, 0);
  Ran refused = As(bob, {"runs", "approve", std::to_string(*run)});
  EXPECT_EQ(refused.code, 3) << refused;
  EXPECT_THAT(refused.err, HasSubstr("HTTP 403: user bob lacks runs.approve on project team-a (roles: viewer)"));
  Ran grant = As(kBootstrap, {"role", "grant", "bob", "deployer", "--project", "team-a"});
  ASSERT_EQ(grant.code, 0) << grant;
  EXPECT_EQ(grant.out, "granted deployer to user bob on team-a\n");
  Ran approved = As(bob, {"runs", "approve", std::to_string(*run)});
  EXPECT_EQ(approved.code, 0) << approved;

  Ran roles = As(kBootstrap, {"role", "list"});
  ASSERT_EQ(roles.code, 0) << roles;
  EXPECT_THAT(roles.out, HasSubstr("bob"));
  EXPECT_THAT(roles.out, HasSubstr("deployer"));
  EXPECT_EQ(As(kBootstrap, {"role", "revoke", "bob", "deployer", "--project", "team-a"}).code, 0);
  Ran again = As(kBootstrap, {"role", "revoke", "bob", "deployer", "--project", "team-a"});
  EXPECT_EQ(again.code, 3);
  EXPECT_THAT(again.err, HasSubstr("HTTP 404: user bob has no role deployer on project team-a"));

  // Every step above that changed something left its row; `gantry audit` shows them.
  Ran audit = As(kBootstrap, {"audit", "--actor", "bob", "--since", "1h"});
  ASSERT_EQ(audit.code, 0) << audit;
  EXPECT_THAT(audit.out, HasSubstr("runs.approve"));
  EXPECT_THAT(audit.out, HasSubstr("PermissionDenied: user bob lacks runs.approve"));
  // The refused and the successful approval: one row each, both written by the API front.
  size_t approvals = 0;  // lines: the refusal's result names the permission too
  for (size_t at = 0, nl; at < audit.out.size(); at = nl + 1) {
    nl = audit.out.find('\n', at);
    if (nl == std::string::npos) nl = audit.out.size();
    approvals += audit.out.substr(at, nl - at).find("runs.approve") != std::string::npos;
  }
  EXPECT_EQ(approvals, 2u) << audit.out;
  Ran grants = As(kBootstrap, {"audit", "--action", "roles.grant", "--project", "team-a", "--limit", "1"});
  ASSERT_EQ(grants.code, 0) << grants;
  EXPECT_THAT(grants.out, HasSubstr("user bob role deployer"));
  EXPECT_THAT(grants.out, Not(HasSubstr("role viewer"))) << "--limit 1";
  Ran denied = As(bob, {"audit"});
  EXPECT_EQ(denied.code, 3);
  EXPECT_THAT(denied.err, HasSubstr("lacks audit.read"));
}

TEST_F(AccessCommandsTest, WithoutGantryTokenTheTokenFileIsUsedIfPrivate) {
  ASSERT_TRUE(store_->GrantRole({.subject = "carol", .role = "viewer", .project = "*"}).ok());
  const fs::path file = dir_ / "config" / "gantry" / "token";
  fs::create_directories(file.parent_path());
  std::ofstream(file) << UserToken("carol") << "\n";
  ::chmod(file.c_str(), 0600);
  Ran ok = As("", {"token", "list"});
  EXPECT_EQ(ok.code, 0) << ok;
  ::chmod(file.c_str(), 0644);
  Ran open = As("", {"token", "list"});
  EXPECT_EQ(open.code, 3) << open;
  EXPECT_THAT(open.err, HasSubstr("is readable by others"));
  fs::remove(file);
  Ran none = As("", {"token", "list"});
  EXPECT_EQ(none.code, 3);
  EXPECT_THAT(none.err, HasSubstr("HTTP 401: no credentials"));
}

}  // namespace
}  // namespace gantry::cli
