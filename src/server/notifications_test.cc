#include "server/notifications.h"

#include <stdlib.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "base/status.h"
#include "value/value.h"

namespace gantry::server {
namespace {

namespace fs = std::filesystem;
using notify::Trigger;
using value::Value;

class NotificationFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "notifications_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    notifier_ = std::make_unique<notify::Notifier>(notify::NotifierOptions{.store = store_.get()});
    feed_ = std::make_unique<NotificationFeed>(bus_, *store_, *notifier_);
  }
  void TearDown() override {
    feed_.reset();
    notifier_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  // Translate() directly (nothing is published on the bus, so the feed's thread stays idle).
  std::optional<notify::Event> T(const std::string& type, const Value& data, const std::string& project = "shop") {
    return feed_->Translate({.id = ++id_, .type = type, .data = value::ToJson(data), .project = project});
  }
  static Value App(const std::string& health, const std::string& sync) {
    Value v = Value::Map();
    v.Set("app", "web");
    v.Set("namespace", "apps");
    v.Set("cluster", "eu");
    v.Set("environment", "prod");
    v.Set("health", health);
    v.Set("sync", sync);
    v.Set("revision", "abc");
    return v;
  }

  fs::path dir_;
  EventBus bus_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<notify::Notifier> notifier_;
  std::unique_ptr<NotificationFeed> feed_;
  int64_t id_ = 0;
};

TEST_F(NotificationFeedTest, PullAppsDegradeRecoverAndDriftOnTransitionsOnly) {
  EXPECT_FALSE(T("app", App("Healthy", "Synced")));
  auto degraded = T("app", App("Degraded", "Synced"));
  ASSERT_TRUE(degraded);
  EXPECT_EQ(degraded->trigger, Trigger::kHealthDegraded);
  EXPECT_EQ(degraded->environment, "prod");
  EXPECT_EQ(degraded->project, "shop");
  EXPECT_FALSE(T("app", App("Degraded", "Synced")));  // still degraded
  auto recovered = T("app", App("Healthy", "Synced"));
  ASSERT_TRUE(recovered);
  EXPECT_EQ(recovered->trigger, Trigger::kHealthRecovered);
  auto drift = T("app", App("Healthy", "OutOfSync"));
  ASSERT_TRUE(drift);
  EXPECT_EQ(drift->trigger, Trigger::kDriftDetected);
  EXPECT_NE(drift->id, recovered->id);
  // OutOfSync that was never Synced (a new app) is not drift.
  Value fresh = App("Healthy", "OutOfSync");
  fresh.Set("app", "new");
  EXPECT_FALSE(T("app", fresh));
}

TEST_F(NotificationFeedTest, AFailedTargetIsADeployFailureOrASyncWindowBlock) {
  auto release = store_->CreateRelease({.app = "web", .source_revision = "a", .config_revision = "b"});
  ASSERT_TRUE(release.ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *release, .env = "prod", .cluster = "eu",
                                    .state = store::TargetState::kFailed,
                                    .message = "project shop: sync window deny \"0 0 * * *\" 24h is active"})
                  .ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *release, .env = "dev", .cluster = "eu",
                                    .state = store::TargetState::kFailed, .message = "crash loop"})
                  .ok());
  Value v = Value::Map();
  v.Set("app", "web");
  v.Set("release", *release);
  v.Set("environment", "prod");
  v.Set("cluster", "eu");
  v.Set("state", "failed");
  auto blocked = T("release", v);
  ASSERT_TRUE(blocked);
  EXPECT_EQ(blocked->trigger, Trigger::kSyncWindowBlocked);
  v.Set("environment", "dev");
  auto failed = T("release", v);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->trigger, Trigger::kDeployFailed);
  EXPECT_EQ(failed->message, "crash loop");
  v.Set("state", "healthy");
  auto deployed = T("release", v);
  ASSERT_TRUE(deployed);
  EXPECT_EQ(deployed->trigger, Trigger::kReleaseDeployed);
  v.Set("state", "applying");
  EXPECT_FALSE(T("release", v));
}

TEST_F(NotificationFeedTest, RunsAndApprovalGates) {
  Value run = Value::Map();
  run.Set("id", 7);
  run.Set("state", "failed");
  auto failed = T("run", run);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->trigger, Trigger::kRunFailed);
  EXPECT_EQ(failed->id, "run-7-failed");
  run.Set("state", "running");
  EXPECT_FALSE(T("run", run));
  Value action = Value::Map();
  action.Set("action", "deploy");
  action.Set("app", "web");
  action.Set("release", 3);
  action.Set("environment", "prod");
  action.Set("phase", "WaitingApproval");
  action.Set("message", "prod: waiting for approval");
  auto gate = T("action", action);
  ASSERT_TRUE(gate);
  EXPECT_EQ(gate->trigger, Trigger::kApprovalNeeded);
  EXPECT_EQ(gate->release, 3);
}

}  // namespace
}  // namespace gantry::server
