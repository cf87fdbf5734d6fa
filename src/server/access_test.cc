// Authentication, authorization and audit of the REST API, end to end in one process: a real
// Front on loopback, a real ci::Server (not started: runs stay where the test puts them) and
// server::Access on SQLite, driven with http::Client as a client would.

#include "server/access.h"

#include <stdlib.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "http/client.h"
#include "server/ci_front.h"
#include "test/fakes/no_step_executor.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
namespace fs = std::filesystem;

constexpr char kAccessSecret[] = "access-test-webhook-secret";
constexpr char kBootstrap[] = "access-test-bootstrap-0123456789";
constexpr char kRepoA[] = "https://git.example/team-a/app";
constexpr char kRepoB[] = "https://git.example/team-b/app";

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "access_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    clock_.Advance(std::chrono::hours(24 * 365 * 56));  // 2026
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ci::ServerOptions options;  // named: GCC 12 at -O2 takes a temporary's map for uninitialized
    options.repos = {kRepoA, kRepoB};
    options.data_dir = dir_ / "data";
    ci_ = std::make_unique<ci::Server>(*store_, executor_, options);
    access_ = std::make_unique<Access>(*store_, AccessOptions{.bootstrap_token = kBootstrap,
                                                              .verify_jwt = [this](std::string_view jwt) { return Verify(jwt); },
                                                              .clock = &clock_});
    ASSERT_TRUE(ServeCi(front_, *ci_,
                        {.webhook = {.secret = kAccessSecret},
                         .access = access_.get(),
                         .project_of = [](const store::Run& r) {
                           return r.repo == kRepoA ? "team-a" : r.repo == kRepoB ? "team-b" : "";
                         }})
                    .ok());
    ServeAccess(front_, *access_);
    ASSERT_TRUE(front_.Start().ok());
  }
  void TearDown() override {
    front_.Stop();
    ci_.reset();
    access_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // "a.b.c" tokens: the stand-in for the OIDC module's verifier (user "oidc-<first part>", groups).
  Result<authz::Principal> Verify(std::string_view jwt) {
    if (jwt.starts_with("bad.")) return UnauthenticatedError("the ID token's signature does not verify");
    return authz::Principal{.name = "oidc-" + std::string(jwt.substr(0, jwt.find('.'))), .groups = {"platform"}};
  }

  http::ClientResponse Send(std::string method, std::string path, std::string token, std::string body = "") {
    http::Headers headers;
    if (!token.empty()) headers["authorization"] = "Bearer " + token;
    if (!body.empty()) headers["content-type"] = "application/json";
    auto r = http::Client().Send({.method = std::move(method), .url = fmt::format("http://127.0.0.1:{}{}", front_.port(), path),
                                  .headers = std::move(headers), .body = std::move(body)});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }
  static std::string Message(const http::ClientResponse& r) { return ParseApiError(r.status, r.body).message(); }

  // A user token of `user`, straight in the store (as the API would make it); its secret.
  std::string UserToken(const std::string& user) {
    auto secret = NewTokenSecret();
    GANTRY_CHECK(secret.ok());
    auto t = store_->CreateToken({.name = user + "-token", .owner = user, .secret_sha256 = Sha256Hex(*secret), .created_by = "test"});
    GANTRY_CHECK(t.ok());
    return *secret;
  }
  void Grant(const std::string& user, const std::string& role, const std::string& project) {
    GANTRY_CHECK(store_->GrantRole({.subject = user, .role = role, .project = project}).ok());
  }
  int64_t NewRun(const std::string& repo, store::RunState state = store::RunState::kQueued) {
    static int n = 0;
    auto id = store_->CreateRun({.repo = repo, .pipeline = repo, .commit = fmt::format("{:040x}", ++n),
                                 .ref = "refs/heads/main", .state = state});
    GANTRY_CHECK(id.ok());
    return *id;
  }
  size_t AuditRows() {
    auto all = store_->ListAudit(1000);
    GANTRY_CHECK(all.ok());
    return all->size();
  }
  store::AuditEntry LastAudit() {
    auto all = store_->ListAudit(1);
    GANTRY_CHECK(all.ok() && !all->empty());
    return all->front();
  }
  // `token` (a JSON answer of POST /api/tokens) → its secret and id.
  static std::pair<std::string, std::string> Created(const http::ClientResponse& r) {
    auto doc = value::ParseJson(r.body);
    GANTRY_CHECK(doc.ok());
    return {std::string(doc->Get("token")->AsString()), std::string(doc->Get("id")->AsString())};
  }

  fs::path dir_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  fakes::NoStepExecutor executor_;
  std::unique_ptr<ci::Server> ci_;
  std::unique_ptr<Access> access_;
  Front front_{"server", {}};
};

TEST_F(AccessTest, EachBadCredentialIs401WithItsReason) {
  struct Case {
    std::string header_token;
    std::string reason;
  };
  auto missing = Send("GET", "/api/runs", "");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.headers["www-authenticate"], "Bearer realm=\"gantry\"");
  EXPECT_THAT(Message(missing), HasSubstr("no credentials"));
  auto basic = http::Client().Send({.url = fmt::format("http://127.0.0.1:{}/api/runs", front_.port()),
                                    .headers = {{"authorization", "Basic YWxpY2U6cHc="}}});
  ASSERT_TRUE(basic.ok());
  EXPECT_EQ(basic->status, 401);
  EXPECT_THAT(Message(*basic), HasSubstr("malformed Authorization header"));
  for (const Case& c : {Case{"gty_0123", "malformed API token"}, Case{"gty_" + std::string(64, 'A'), "malformed API token"},
                        Case{"gty_" + std::string(64, 'a'), "unknown token"}, Case{"not-the-bootstrap-token", "unknown token"},
                        Case{"bad.eyJ.sig", "signature does not verify"}}) {
    auto r = Send("GET", "/api/runs", c.header_token);
    EXPECT_EQ(r.status, 401) << c.header_token;
    EXPECT_THAT(Message(r), HasSubstr(c.reason)) << c.header_token;
  }
  // Without a verifier, a JWT is refused saying OIDC is off.
  Access plain(*store_, {});
  http::Request jwt{.headers = {{"authorization", "Bearer aaa.bbb.ccc"}}};
  auto p = plain.Authenticate(jwt);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kUnauthenticated);
  EXPECT_THAT(p.status().message(), HasSubstr("OIDC is not configured"));
  // With one, the verifier's principal with its groups.
  Grant("oidc-alice", "viewer", "*");
  auto ok = access_->Authenticate({.headers = {{"authorization", "Bearer alice.body.sig"}}});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->name, "oidc-alice");
  EXPECT_EQ(ok->via, authz::Via::kOidc);
  EXPECT_EQ(Send("GET", "/api/runs", "alice.body.sig").status, 200);
}

TEST_F(AccessTest, TheBootstrapTokenIsTheClusterAdmin) {
  auto r = Send("GET", "/api/runs", kBootstrap);
  EXPECT_EQ(r.status, 200);
  const int64_t run = NewRun(kRepoB);
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", run), kBootstrap).status, 200);
  EXPECT_EQ(LastAudit().actor, "admin");
}

TEST_F(AccessTest, AViewerCannotCancelOrApproveADeployerCan) {
  Grant("alice", "viewer", "*");
  Grant("bob", "deployer", "team-a");
  const std::string alice = UserToken("alice");
  const std::string bob = UserToken("bob");
  const int64_t queued = NewRun(kRepoA);
  const int64_t waiting = NewRun(kRepoA, store::RunState::kAwaitingApproval);

  EXPECT_EQ(Send("GET", fmt::format("/api/runs/{}", queued), alice).status, 200) << "a viewer reads";
  size_t rows = AuditRows();
  auto cancel = Send("POST", fmt::format("/api/runs/{}/cancel", queued), alice);
  EXPECT_EQ(cancel.status, 403);
  EXPECT_EQ(Message(cancel), "user alice lacks runs.cancel on project team-a (roles: viewer)");
  EXPECT_EQ(AuditRows(), ++rows);
  store::AuditEntry refused = LastAudit();
  EXPECT_EQ(refused.actor, "alice");
  EXPECT_EQ(refused.action, "runs.cancel");
  EXPECT_EQ(refused.object, fmt::format("run {}", queued));
  EXPECT_EQ(refused.project, "team-a");
  EXPECT_THAT(refused.source, StartsWith("127.0.0.1:"));
  EXPECT_EQ(refused.result, "PermissionDenied: user alice lacks runs.cancel on project team-a (roles: viewer)");
  auto approve = Send("POST", fmt::format("/api/runs/{}/approve", waiting), alice);
  EXPECT_EQ(approve.status, 403);
  EXPECT_THAT(Message(approve), HasSubstr("lacks runs.approve"));
  EXPECT_EQ(AuditRows(), ++rows);

  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", queued), bob).status, 200);
  EXPECT_EQ(AuditRows(), ++rows);
  EXPECT_EQ(LastAudit().result, "ok");
  EXPECT_EQ(LastAudit().actor, "bob");
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/approve", waiting), bob).status, 200);
  EXPECT_EQ(AuditRows(), ++rows) << "one row for the approval (ci::Server::Approve writes it)";
  EXPECT_EQ(LastAudit().actor, "bob");
  auto run = store_->GetRun(waiting);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->approved_by, "bob");
  EXPECT_EQ(run->state, store::RunState::kQueued);
  // bob's role is on team-a only.
  auto other = Send("POST", fmt::format("/api/runs/{}/cancel", NewRun(kRepoB)), bob);
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(Message(other), "user bob lacks runs.cancel on project team-b (roles: none)");
}

TEST_F(AccessTest, ARevokedTokenStopsWorkingAtOnce) {
  Grant("alice", "viewer", "*");
  auto created = Send("POST", "/api/tokens", UserToken("alice"), R"({"name":"laptop"})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto [secret, id] = Created(created);
  EXPECT_THAT(secret, StartsWith("gty_"));
  EXPECT_EQ(Send("GET", "/api/runs", secret).status, 200);
  auto revoked = Send("DELETE", "/api/tokens/" + id, secret);
  EXPECT_EQ(revoked.status, 200) << revoked.body;
  auto after = Send("GET", "/api/runs", secret);
  EXPECT_EQ(after.status, 401);
  EXPECT_THAT(Message(after), HasSubstr(fmt::format("token {} was revoked at 20", id)));
  EXPECT_THAT(Message(after), HasSubstr("by alice"));
  // The store holds the hash only.
  auto stored = store_->FindTokenByHash(Sha256Hex(secret));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->secret_sha256.find(secret.substr(4)), std::string::npos);
}

TEST_F(AccessTest, AnExpiredTokenIs401SayingWhen) {
  Grant("alice", "viewer", "*");
  auto created = Send("POST", "/api/tokens", UserToken("alice"), R"({"name":"short","expires_in_seconds":60})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto [secret, id] = Created(created);
  EXPECT_EQ(Send("GET", "/api/runs", secret).status, 200);
  const std::string when = Rfc3339(clock_.WallNow() + std::chrono::seconds(60));
  clock_.Advance(std::chrono::seconds(61));
  auto r = Send("GET", "/api/runs", secret);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Message(r), fmt::format("token {} expired at {}", id, when));
}

TEST_F(AccessTest, ARobotTokenActsInItsProjectOnly) {
  auto created = Send("POST", "/api/tokens", kBootstrap, R"({"name":"ci","project":"team-a","roles":["deployer"]})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto [robot, id] = Created(created);
  const int64_t a = NewRun(kRepoA);
  const int64_t b = NewRun(kRepoB);
  auto list = value::ParseJson(Send("GET", "/api/runs", robot).body);
  ASSERT_TRUE(list.ok() && list->IsSeq());
  ASSERT_EQ(list->items().size(), 1u) << "it sees team-a's run only";
  EXPECT_EQ(list->items()[0].Get("id")->AsInt(), a);
  EXPECT_EQ(Send("GET", fmt::format("/api/runs/{}", b), robot).status, 403);
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", a), robot).status, 200);
  auto other = Send("POST", fmt::format("/api/runs/{}/cancel", b), robot);
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(Message(other), "robot token robot:ci (project team-a) lacks runs.cancel on project team-b (roles: none)");
  EXPECT_EQ(LastAudit().actor, "robot:ci");
  // Role bindings do not reach it, and it makes no tokens of its own.
  Grant("robot:ci", "admin", "*");
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", b), robot).status, 403);
  EXPECT_EQ(Send("POST", "/api/tokens", robot, R"({"name":"more"})").status, 403);
  // A robot token's project and roles are checked.
  for (std::string_view body : {R"({"name":"x","project":"team-a"})", R"({"name":"x","project":"team-a","roles":["root"]})",
                                R"({"name":"x","project":"*","roles":["viewer"]})", R"({"name":"x","project":"a b","roles":["viewer"]})",
                                R"({"name":"","project":"team-a","roles":["viewer"]})", R"(not json)"}) {
    auto r = Send("POST", "/api/tokens", kBootstrap, std::string(body));
    EXPECT_EQ(r.status, 400) << body << " " << r.body;
  }
}

// A webhook is authenticated by its signature, not a token; the run it queues is its sender's
// action: one audit row naming the provider, the source address and the run's project. A
// redelivery changes nothing and leaves none.
TEST_F(AccessTest, AWebhookThatQueuesARunLeavesOneAuditRow) {
  const std::string body = fmt::format(
      R"({{"ref":"refs/heads/main","before":"{}","after":"{}","repository":{{"full_name":"team-a/app","clone_url":"{}"}},"commits":[]}})",
      std::string(40, '1'), std::string(40, '2'), kRepoA);
  auto deliver = [&] {
    auto r = http::Client().Send({.method = "POST", .url = fmt::format("http://127.0.0.1:{}/webhook", front_.port()),
                                  .headers = {{"x-github-event", "push"},
                                              {"x-github-delivery", "delivery-1"},
                                              {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(kAccessSecret, body)},
                                              {"content-type", "application/json"}},
                                  .body = body});
    GANTRY_CHECK(r.ok());
    return r->status;
  };
  size_t rows = AuditRows();
  EXPECT_EQ(deliver(), 201);
  ASSERT_EQ(AuditRows(), rows + 1);
  store::AuditEntry row = LastAudit();
  EXPECT_EQ(row.actor, "webhook:github");
  EXPECT_EQ(row.action, "runs.create");
  EXPECT_THAT(row.object, StartsWith("run "));
  EXPECT_EQ(row.project, "team-a");
  EXPECT_THAT(row.source, StartsWith("127.0.0.1:"));
  EXPECT_EQ(row.result, "ok");
  EXPECT_EQ(deliver(), 200) << "a redelivery";
  EXPECT_EQ(AuditRows(), rows + 1);
}

TEST_F(AccessTest, EveryMutatingRequestWritesExactlyOneAuditRowAndReadsNone) {
  Grant("alice", "viewer", "*");
  const std::string alice = UserToken("alice");
  const int64_t run = NewRun(kRepoA);
  struct Case {
    std::string method, path, token, body;
    std::string action, result_prefix;
  };
  const std::vector<Case> cases = {
      {"POST", fmt::format("/api/runs/{}/cancel", run), "", "", "runs.cancel", "Unauthenticated: no credentials"},
      {"POST", fmt::format("/api/runs/{}/cancel", run), alice, "", "runs.cancel", "PermissionDenied: "},
      {"POST", "/api/runs/99/cancel", kBootstrap, "", "runs.cancel", "NotFound: "},
      {"POST", fmt::format("/api/runs/{}/cancel", run), kBootstrap, "", "runs.cancel", "ok"},
      {"POST", fmt::format("/api/runs/{}/cancel", run), kBootstrap, "", "runs.cancel", "FailedPrecondition: "},
      {"POST", fmt::format("/api/runs/{}", run), kBootstrap, "", "runs", "Unimplemented: "},
      {"POST", "/api/tokens", alice, R"({"name":"n"})", "tokens.create", "ok"},
      {"POST", "/api/tokens", alice, R"({"name":"n","project":"team-a","roles":["viewer"]})", "tokens.create", "PermissionDenied: "},
      {"DELETE", "/api/tokens/t-999", kBootstrap, "", "tokens.revoke", "NotFound: "},
      {"DELETE", "/api/tokens/x", kBootstrap, "", "tokens.revoke", "InvalidArgument: "},
      {"DELETE", "/api/tokens", kBootstrap, "", "tokens", "Unimplemented: "},
      {"POST", "/api/tokens/t-1", "", "", "tokens", "Unauthenticated: "},
      {"POST", "/api/roles", kBootstrap, R"({"user":"bob","role":"deployer","project":"team-a"})", "roles.grant", "ok"},
      {"POST", "/api/roles", alice, R"({"user":"alice","role":"admin","project":"*"})", "roles.grant", "PermissionDenied: "},
      {"POST", "/api/roles", kBootstrap, R"({"user":"bob","role":"owner","project":"team-a"})", "roles.grant", "InvalidArgument: "},
      {"DELETE", "/api/roles?user=bob&role=deployer&project=team-a", kBootstrap, "", "roles.revoke", "ok"},
      {"DELETE", "/api/roles?user=bob&role=deployer&project=team-a", kBootstrap, "", "roles.revoke", "NotFound: "},
  };
  for (const Case& c : cases) {
    const size_t before = AuditRows();
    auto r = Send(c.method, c.path, c.token, c.body);
    const std::string what = c.method + " " + c.path + " " + c.body;
    ASSERT_EQ(AuditRows(), before + 1) << what << " → " << r.status;
    store::AuditEntry e = LastAudit();
    EXPECT_EQ(e.action, c.action) << what;
    EXPECT_THAT(e.result, StartsWith(c.result_prefix)) << what;
    EXPECT_THAT(e.source, StartsWith("127.0.0.1:")) << what;
    EXPECT_EQ(e.result.find("gty_"), std::string::npos) << "never a secret: " << e.result;
  }
  const size_t before = AuditRows();
  for (const char* path : {"/api/runs", "/api/tokens", "/api/roles", "/api/audit"}) Send("GET", path, kBootstrap);
  Send("GET", fmt::format("/api/runs/{}", run), kBootstrap);
  EXPECT_EQ(AuditRows(), before) << "reads are not audited";
}

TEST_F(AccessTest, RolesAreGrantedAndRevokedThroughTheApiByAdminsOfTheProject) {
  Grant("carol", "admin", "team-a");
  const std::string carol = UserToken("carol");
  const std::string alice = UserToken("alice");
  const int64_t run = NewRun(kRepoA);
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", run), alice).status, 403);
  auto grant = Send("POST", "/api/roles", carol, R"({"user":"alice","role":"deployer","project":"team-a"})");
  EXPECT_EQ(grant.status, 200) << grant.body;
  auto beyond = Send("POST", "/api/roles", carol, R"({"user":"alice","role":"deployer","project":"team-b"})");
  EXPECT_EQ(beyond.status, 403);
  EXPECT_THAT(Message(beyond), HasSubstr("lacks roles.manage on project team-b"));
  auto list = value::ParseJson(Send("GET", "/api/roles", carol).body);
  ASSERT_TRUE(list.ok() && list->IsSeq());
  EXPECT_EQ(list->items().size(), 2u) << "the bindings on team-a: carol's and alice's";
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", run), alice).status, 200);
  EXPECT_EQ(Send("DELETE", "/api/roles?user=alice&role=deployer&project=team-a", carol).status, 200);
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", NewRun(kRepoA)), alice).status, 403) << "at once";
  EXPECT_EQ(Send("GET", "/api/roles", alice).status, 403);
  // A group binding reaches an OIDC user of that group (the verifier gives "platform").
  EXPECT_EQ(Send("POST", "/api/roles", kBootstrap, R"({"group":"platform","role":"deployer","project":"team-b"})").status, 200);
  EXPECT_EQ(Send("POST", fmt::format("/api/runs/{}/cancel", NewRun(kRepoB)), "dave.body.sig").status, 200);
  EXPECT_EQ(Send("POST", "/api/roles", kBootstrap, R"({"user":"a","group":"b","role":"viewer","project":"*"})").status, 400);
}

TEST_F(AccessTest, TheAuditLogIsReadWithFiltersByWhoMayReadIt) {
  Grant("alice", "viewer", "*");
  Grant("erin", "admin", "team-a");
  const std::string alice = UserToken("alice");
  const std::string erin = UserToken("erin");
  Send("POST", fmt::format("/api/runs/{}/cancel", NewRun(kRepoA)), alice);
  Send("POST", fmt::format("/api/runs/{}/cancel", NewRun(kRepoB)), kBootstrap);
  auto denied = Send("GET", "/api/audit", alice);
  EXPECT_EQ(denied.status, 403);
  EXPECT_THAT(Message(denied), HasSubstr("lacks audit.read cluster-wide"));
  EXPECT_EQ(Send("GET", "/api/audit", erin).status, 403) << "a project admin reads its project's only";
  auto mine = value::ParseJson(Send("GET", "/api/audit?project=team-a", erin).body);
  ASSERT_TRUE(mine.ok() && mine->IsSeq());
  ASSERT_EQ(mine->items().size(), 1u);
  EXPECT_EQ(mine->items()[0].Get("actor")->AsString(), "alice");
  auto by_actor = value::ParseJson(Send("GET", "/api/audit?actor=admin&limit=5", kBootstrap).body);
  ASSERT_TRUE(by_actor.ok() && by_actor->IsSeq());
  ASSERT_EQ(by_actor->items().size(), 1u);
  EXPECT_EQ(by_actor->items()[0].Get("project")->AsString(), "team-b");
  const int64_t later = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count() + 3600;
  auto none = value::ParseJson(Send("GET", fmt::format("/api/audit?since={}", later), kBootstrap).body);
  ASSERT_TRUE(none.ok() && none->IsSeq());
  EXPECT_TRUE(none->items().empty());
  EXPECT_EQ(Send("GET", "/api/audit?limit=0", kBootstrap).status, 400);
  EXPECT_EQ(Send("GET", "/api/audit?since=yesterday", kBootstrap).status, 400);
}

TEST_F(AccessTest, TokensAreListedByOwnerProjectOrAll) {
  Grant("alice", "viewer", "*");
  const std::string alice = UserToken("alice");
  ASSERT_EQ(Send("POST", "/api/tokens", kBootstrap, R"({"name":"ci","project":"team-a","roles":["viewer"]})").status, 201);
  auto mine = value::ParseJson(Send("GET", "/api/tokens", alice).body);
  ASSERT_TRUE(mine.ok() && mine->IsSeq());
  ASSERT_EQ(mine->items().size(), 1u);
  EXPECT_EQ(mine->items()[0].Get("owner")->AsString(), "alice");
  EXPECT_EQ(mine->items()[0].Get("token"), nullptr) << "the secret is shown at creation only";
  EXPECT_EQ(Send("GET", "/api/tokens?all=1", alice).status, 403);
  EXPECT_EQ(Send("GET", "/api/tokens?project=team-a", alice).status, 403);
  auto all = value::ParseJson(Send("GET", "/api/tokens?all=1", kBootstrap).body);
  ASSERT_TRUE(all.ok() && all->IsSeq());
  EXPECT_EQ(all->items().size(), 2u);
  auto robots = value::ParseJson(Send("GET", "/api/tokens?project=team-a", kBootstrap).body);
  ASSERT_TRUE(robots.ok() && robots->IsSeq());
  ASSERT_EQ(robots->items().size(), 1u);
  EXPECT_EQ(robots->items()[0].Get("kind")->AsString(), "robot");
  // alice may not revoke the robot's token; an admin of team-a may.
  const std::string robot_id(robots->items()[0].Get("id")->AsString());
  EXPECT_EQ(Send("DELETE", "/api/tokens/" + robot_id, alice).status, 403);
  EXPECT_EQ(Send("DELETE", "/api/tokens/" + robot_id, kBootstrap).status, 200);
}

TEST(BootstrapAdminTest, IsCreatedOnceForAnEmptyStore) {
  std::string tmpl = (fs::temp_directory_path() / "bootstrap_test.XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  auto store = store::Open("sqlite:" + tmpl + "/gantry.db");
  ASSERT_TRUE(store.ok());
  auto first = CreateBootstrapAdmin(**store);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->has_value());
  EXPECT_THAT(**first, StartsWith("gty_"));
  EXPECT_EQ((*first)->size(), 4u + 64u);
  auto second = CreateBootstrapAdmin(**store);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value()) << "never again";
  Access access(**store, {});
  auto p = access.Authenticate({.headers = {{"authorization", "Bearer " + **first}}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "admin");
  EXPECT_TRUE(access.Authorize(*p, authz::Permission::kRolesManage, "*").ok());
  fs::remove_all(tmpl);
}

TEST(TokenIdTest, ParsesBothForms) {
  EXPECT_EQ(TokenId(12), "t-12");
  EXPECT_EQ(ParseTokenId("t-12").value_or(0), 12);
  EXPECT_EQ(ParseTokenId("12").value_or(0), 12);
  for (std::string_view bad : {"", "t-", "t-0", "t12", "12a", "-3"}) EXPECT_FALSE(ParseTokenId(bad).ok()) << bad;
}

TEST(ParseQueryTest, DecodesPercentAndPlus) {
  auto q = ParseQuery("actor=alice%40example.com&action=runs.cancel&x=a+b&empty=&flag");
  EXPECT_EQ(q["actor"], "alice@example.com");
  EXPECT_EQ(q["action"], "runs.cancel");
  EXPECT_EQ(q["x"], "a b");
  EXPECT_EQ(q["empty"], "");
  EXPECT_TRUE(q.contains("flag"));
}

}  // namespace
}  // namespace gantry::server
