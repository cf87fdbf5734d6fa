// ForgeStatuses over a SQLite store and a local HTTP receiver standing in for a Gitea API (the real
// Gitea is test/integration/forge_test.cc): what each run and release event asks for, the outbox
// replacing an undelivered status with a newer one, and an unreachable forge recorded failed.

#include "server/forge_statuses.h"

#include <stdlib.h>

#include <filesystem>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "http/http.h"
#include "value/value.h"

namespace gantry::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using value::Value;

constexpr char kSha[] = "0123456789abcdef0123456789abcdef01234567";

// A forge API: answers `status` to every POST and records the bodies.
class FakeForgeApi {
 public:
  FakeForgeApi() {
    server_.Handle("POST", "/", [this](const http::Request& req) {
      MutexLock lock(mu_);
      bodies_.push_back(req.target + " " + req.body);
      return http::Response::Json(status_, R"({"message":"as told"})");
    });
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string api() const { return fmt::format("http://127.0.0.1:{}/api/v1", server_.port()); }
  void Answer(int status) {
    MutexLock lock(mu_);
    status_ = status;
  }
  std::vector<std::string> bodies() {
    MutexLock lock(mu_);
    return bodies_;
  }

 private:
  Mutex mu_;
  int status_ GUARDED_BY(mu_) = 201;
  std::vector<std::string> bodies_ GUARDED_BY(mu_);
  http::Server server_;
};

class ForgeStatusesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "forge_statuses_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    statuses_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  void Make(const std::string& api, bool start = false) {
    auto s = ForgeStatuses::Start(
        bus_,
        {.store = store_.get(),
         .forges = {{.prefix = "https://git.example/", .options = {.kind = forge::Kind::kGitea, .api_url = api, .token = "tok", .timeout = 3s}}},
         .public_url = "https://gantry.example",
         .initial_backoff = 10ms,
         .max_backoff = 20ms,
         .poll = 20ms,
         .deadline = 2s},
        start);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    statuses_ = *std::move(s);
  }
  int64_t NewRun() {
    auto id = store_->CreateRun({.repo = "https://git.example/shop/web.git", .pipeline = "https://git.example/shop/web.git",
                                 .commit = kSha, .ref = "refs/heads/main"});
    EXPECT_TRUE(id.ok());
    return id.value_or(0);
  }
  std::optional<store::ForgeStatus> RunEvent(int64_t run) {
    Value v = Value::Map();
    v.Set("id", run);
    v.Set("state", "x");
    return statuses_->Translate({.id = 1, .type = "run", .data = value::ToJson(v)});
  }
  std::vector<store::ForgeStatus> All() {
    auto all = store_->ListForgeStatuses({.limit = 50});
    EXPECT_TRUE(all.ok());
    return all.value_or(std::vector<store::ForgeStatus>{});
  }

  fs::path dir_;
  EventBus bus_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ForgeStatuses> statuses_;
};

TEST_F(ForgeStatusesTest, ARunIsPendingRunningThenFailureNamingTheStep) {
  Make("http://127.0.0.1:1/api/v1");
  const int64_t run = NewRun();
  auto s = RunEvent(run);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->forge, "https://git.example/");
  EXPECT_EQ(s->repo, "shop/web");
  EXPECT_EQ(s->sha, kSha);
  EXPECT_EQ(s->context, "gantry/ci");
  EXPECT_EQ(s->state, "pending");
  EXPECT_EQ(s->target_url, fmt::format("https://gantry.example/runs/{}", run));
  ASSERT_TRUE(store_->UpdateRun(run, store::RunState::kRunning).ok());
  EXPECT_EQ(RunEvent(run)->state, "running");
  ASSERT_TRUE(store_->UpsertStep(run, {.name = "build", .state = store::RunState::kSucceeded, .exit_code = 0}).ok());
  ASSERT_TRUE(store_->UpsertStep(run, {.name = "test", .state = store::RunState::kFailed, .exit_code = 2}).ok());
  ASSERT_TRUE(store_->UpdateRun(run, store::RunState::kFailed, "step test failed").ok());
  s = RunEvent(run);
  EXPECT_EQ(s->state, "failure");
  EXPECT_EQ(s->description, "step test failed (exit 2)");
  // A repository on no configured forge gets nothing.
  auto other = store_->CreateRun({.repo = "https://elsewhere.example/x.git", .pipeline = "p", .commit = kSha, .ref = "refs/heads/main"});
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(RunEvent(*other));
}

// Another server's run (read from a shared store: "elsewhere") gets its statuses from that server,
// in order; this one puts none, so a late read can never put an older state over a newer one.
TEST_F(ForgeStatusesTest, ARunOfAnotherServerGetsNoStatusHere) {
  Make("http://127.0.0.1:1/api/v1");
  const int64_t run = NewRun();
  Value v = Value::Map();
  v.Set("id", run);
  v.Set("state", "running");
  v.Set("elsewhere", true);
  EXPECT_FALSE(statuses_->Translate({.id = 1, .type = "run", .data = value::ToJson(v)}));
  EXPECT_TRUE(RunEvent(run));
}

TEST_F(ForgeStatusesTest, ADeployIsOneContextPerEnvironmentOverItsClusters) {
  Make("http://127.0.0.1:1/api/v1");
  const int64_t run = NewRun();
  auto release = store_->CreateRelease({.app = "web", .source_revision = kSha, .config_revision = "c", .run_id = run});
  ASSERT_TRUE(release.ok());
  for (const char* cluster : {"eu", "us"}) {
    ASSERT_TRUE(store_->UpsertTarget({.release_id = *release, .env = "prod", .cluster = cluster,
                                      .state = store::TargetState::kHealthy}).ok());
  }
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *release, .env = "dev", .cluster = "eu",
                                    .state = store::TargetState::kApplying}).ok());
  Value v = Value::Map();
  v.Set("app", "web");
  v.Set("release", *release);
  v.Set("environment", "prod");
  v.Set("cluster", "us");
  v.Set("state", "healthy");
  auto s = statuses_->Translate({.id = 2, .type = "release", .data = value::ToJson(v)});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->context, "gantry/deploy/prod");
  EXPECT_EQ(s->state, "success");
  EXPECT_EQ(s->description, "healthy on 2 cluster(s)");
  EXPECT_EQ(s->target_url, fmt::format("https://gantry.example/apps/web/releases/{}", *release));
  v.Set("environment", "dev");
  EXPECT_EQ(statuses_->Translate({.id = 3, .type = "release", .data = value::ToJson(v)})->state, "pending");
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *release, .env = "dev", .cluster = "eu", .state = store::TargetState::kFailed,
                                    .message = "Deployment web: progress deadline exceeded", .version = 1}).ok());
  s = statuses_->Translate({.id = 4, .type = "release", .data = value::ToJson(v)});
  EXPECT_EQ(s->state, "failure");
  EXPECT_EQ(s->description, "eu: Deployment web: progress deadline exceeded");
}

TEST_F(ForgeStatusesTest, ANewerStatusReplacesAnUndeliveredOneSoTheForgeNeverGoesBackToPending) {
  FakeForgeApi api;
  Make(api.api());
  const int64_t run = NewRun();
  api.Answer(503);
  ASSERT_TRUE(store_->PutForgeStatus(*RunEvent(run)).ok());
  statuses_->DeliverDue();  // refused: retried later
  ASSERT_EQ(api.bodies().size(), 1u);
  ASSERT_TRUE(store_->UpdateRun(run, store::RunState::kSucceeded).ok());
  ASSERT_TRUE(store_->PutForgeStatus(*RunEvent(run)).ok());
  api.Answer(201);
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (All().at(0).delivery == store::NotificationState::kPending && std::chrono::steady_clock::now() < end) {
    statuses_->DeliverDue();
    std::this_thread::sleep_for(5ms);
  }
  const auto bodies = api.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_THAT(bodies[0], ::testing::HasSubstr(R"("state":"pending")"));
  EXPECT_THAT(bodies[1], ::testing::StartsWith(std::string("/api/v1/repos/shop/web/statuses/") + kSha));
  EXPECT_THAT(bodies[1], ::testing::HasSubstr(R"("state":"success")"));
  ASSERT_EQ(All().size(), 1u);
  EXPECT_EQ(All()[0].delivery, store::NotificationState::kDelivered);
  // The same status again changes nothing and sends nothing.
  ASSERT_TRUE(store_->PutForgeStatus(*RunEvent(run)).ok());
  statuses_->DeliverDue();
  EXPECT_EQ(api.bodies().size(), 2u);
}

TEST_F(ForgeStatusesTest, AnUnreachableForgeNeverBlocksAndIsRecordedFailedWithTheReason) {
  Make("http://127.0.0.1:1/api/v1", /*start=*/true);
  auto observed = ObservedStore(*store_, bus_, nullptr);
  const auto begin = std::chrono::steady_clock::now();
  auto run = observed->CreateRun({.repo = "https://git.example/shop/web.git", .pipeline = "p", .commit = kSha, .ref = "refs/heads/main"});
  ASSERT_TRUE(run.ok());
  ASSERT_TRUE(observed->UpdateRun(*run, store::RunState::kRunning).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s);  // the run's writes did not wait for the forge
  const auto end = std::chrono::steady_clock::now() + 20s;
  std::vector<store::ForgeStatus> all;
  while (std::chrono::steady_clock::now() < end) {
    all = All();
    if (!all.empty() && all[0].delivery == store::NotificationState::kFailed) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].delivery, store::NotificationState::kFailed);
  EXPECT_EQ(all[0].state, "running");
  EXPECT_GT(all[0].attempts, 1);
  EXPECT_THAT(all[0].last_error, ::testing::HasSubstr("gave up after"));
  EXPECT_THAT(all[0].last_error, ::testing::HasSubstr("127.0.0.1:1"));
}

TEST(ParseForgeFlag, ReadsTheTokenFromTheEnvironmentAndRefusesBadSpecs) {
  setenv("FS_TEST_TOKEN", "secret-token", 1);
  auto c = ParseForgeFlag("https://gitea.example type=gitea token-env=FS_TEST_TOKEN");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->prefix, "https://gitea.example/");
  EXPECT_EQ(c->options.api_url, "https://gitea.example/api/v1");
  EXPECT_EQ(c->options.token, "secret-token");
  c = ParseForgeFlag("https://github.com/ type=github token-env=FS_TEST_TOKEN");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->options.api_url, "https://api.github.com");
  for (const char* bad : {"type=gitea token-env=FS_TEST_TOKEN", "https://x/ type=svn token-env=FS_TEST_TOKEN",
                          "https://x/ type=gitea", "https://x/ type=gitea token-env=FS_TEST_UNSET",
                          "https://x/ type=gitea token-env=FS_TEST_TOKEN colour=red", "git.example type=gitea token-env=FS_TEST_TOKEN"}) {
    auto r = ParseForgeFlag(bad);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr("--forge")) << bad;
    EXPECT_THAT(r.status().message(), ::testing::Not(::testing::HasSubstr("secret-token")));
  }
}

}  // namespace
}  // namespace gantry::server
