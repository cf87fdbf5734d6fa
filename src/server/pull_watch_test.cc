// PullWatch over a FakeKubeClient and a SQLite store: the matrix's pull rows come from the watch
// (no list per request), status changes publish "app" events, agent syncs are audited once (also
// across a restart), and an unreachable cluster is a warning until it answers.

#include "server/pull_watch.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/application.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
using value::Value;
namespace fs = std::filesystem;

constexpr auto kWait = std::chrono::seconds(10);

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

Value App(std::string_view name) {
  return Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {}, namespace: gantry}}
spec:
  project: team-a
  source: {{repoURL: "https://git.example/config", path: apps/web}}
  destination: {{namespace: web}}
)",
                          name));
}

// The status an agent writes after a sync of `revision` that ended in `phase` at `finished`.
Value StatusValue(std::string_view name, std::string_view revision, std::string_view phase, std::string_view finished,
             std::string_view health) {
  return Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: gantry}}
status:
  sync: {{status: Synced, revision: {1}}}
  health: {{status: {4}}}
  operationState: {{phase: {2}, revision: {1}, startedAt: "2026-12-06T10:00:00Z", finishedAt: "{3}", trigger: revision, message: "{2} at {1}"}}
  history:
  - {{revision: {1}, startedAt: "2026-12-06T10:00:00Z", finishedAt: "{3}", result: {2}, message: "{2} at {1}"}}
)",
                          name, revision, phase, finished, health));
}

class PullWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "pull_watch_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    config_.clusters = {{.name = "edge-1", .environment = "prod", .pull = true},
                        {.name = "dev-1", .environment = "dev"}};
    config_.environments = {{.name = "dev"}, {.name = "prod", .after = {"dev"}}};
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  PullWatchOptions Options() {
    return {.config = config_,
            .connect = [this](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
              ++connects_;
              if (c.name != "edge-1") return NotFoundError("no cluster {}", c.name);
              if (unreachable_.load()) return UnavailableError("cannot reach https://edge-1.example: refused");
              return fakes::ForwardingKubeClient::To(cluster_);
            },
            .store = store_.get(),
            .events = &bus_,
            .backoff_initial = std::chrono::milliseconds(20),
            .backoff_max = std::chrono::milliseconds(100)};
  }

  std::vector<store::AuditEntry> AgentSyncs() {
    auto rows = store_->ListAudit({.action = "apps.sync"});
    GANTRY_CHECK(rows.ok());
    return *rows;
  }

  // The next "app" event within 10 s, or null.
  static Value NextApp(EventBus::Subscription& sub) {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto e = sub.Next(std::chrono::milliseconds(100));
      if (e && e->type == "app") {
        EXPECT_EQ(e->project, "team-a");
        return *value::ParseJson(e->data);
      }
    }
    return Value();
  }

  fs::path dir_;
  std::unique_ptr<store::Store> store_;
  deliver::Config config_;
  EventBus bus_;
  std::shared_ptr<fakes::FakeKubeClient> cluster_ = std::make_shared<fakes::FakeKubeClient>();
  std::atomic<bool> unreachable_{false};
  std::atomic<int> connects_{0};
};

TEST_F(PullWatchTest, TheMatrixReadsPullClustersFromTheWatchNotAListPerRequest) {
  ASSERT_TRUE(cluster_->Apply(App("web")).ok());
  ASSERT_TRUE(cluster_->ApplyStatus(StatusValue("web", "c0ffee", "Succeeded", "2026-12-06T10:01:00Z", "Healthy")).ok());
  PullWatch watch(Options());
  ASSERT_TRUE(watch.WaitSynced(kWait));
  const uint64_t lists = cluster_->count("list");
  for (int i = 0; i < 3; ++i) {
    auto report = deliver::GatherStatus(*store_, config_, "", nullptr, watch.Source());
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    ASSERT_EQ(report->rows.size(), 1u);
    EXPECT_EQ(report->rows[0].cluster, "edge-1");
    EXPECT_EQ(report->rows[0].health, "Healthy");
    EXPECT_EQ(report->rows[0].state, "Synced");
    EXPECT_TRUE(report->warnings.empty());
  }
  EXPECT_EQ(cluster_->count("list"), lists) << "the matrix listed the cluster's Applications again";
}

TEST_F(PullWatchTest, AStatusChangePublishesAnAppEvent) {
  ASSERT_TRUE(cluster_->Apply(App("web")).ok());
  auto sub = bus_.Subscribe();
  PullWatch watch(Options());
  Value first = NextApp(*sub);
  EXPECT_EQ(value::StringAt(&first, {"app"}), "web");
  EXPECT_EQ(value::StringAt(&first, {"cluster"}), "edge-1");
  EXPECT_EQ(value::StringAt(&first, {"environment"}), "prod");
  ASSERT_TRUE(watch.WaitSynced(kWait));
  ASSERT_TRUE(cluster_->ApplyStatus(StatusValue("web", "c0ffee", "Succeeded", "2026-12-06T10:01:00Z", "Degraded")).ok());
  Value changed = NextApp(*sub);
  EXPECT_EQ(value::StringAt(&changed, {"health"}), "Degraded");
  EXPECT_EQ(value::StringAt(&changed, {"revision"}), "c0ffee");
  EXPECT_EQ(value::StringAt(&changed, {"phase"}), "Succeeded");
  ASSERT_TRUE(cluster_->Delete({.api_version = "gantry.dev/v1alpha1", .kind = "Application", .namespace_ = "gantry", .name = "web"}).ok());
  Value gone = NextApp(*sub);
  EXPECT_TRUE(value::BoolAt(&gone, {"deleted"}));
}

TEST_F(PullWatchTest, EachAgentSyncIsAuditedOnceAlsoAcrossARestart) {
  ASSERT_TRUE(cluster_->Apply(App("web")).ok());
  ASSERT_TRUE(cluster_->ApplyStatus(StatusValue("web", "c0ffee", "Succeeded", "2026-12-06T10:01:00Z", "Healthy")).ok());
  {
    PullWatch watch(Options());
    ASSERT_TRUE(watch.WaitSynced(kWait));
    auto rows = AgentSyncs();
    ASSERT_EQ(rows.size(), 1u) << "operationState and the history entry are one sync";
    EXPECT_EQ(rows[0].actor, "agent:edge-1");
    EXPECT_EQ(rows[0].object, "gantry/web");
    EXPECT_EQ(rows[0].project, "team-a");
    EXPECT_EQ(rows[0].source, "agent");
    EXPECT_EQ(rows[0].details, "revision c0ffee finished at 2026-12-06T10:01:00Z");
    EXPECT_EQ(rows[0].result, "Succeeded: Succeeded at c0ffee");
    // A failed sync of the next revision: one more row.
    ASSERT_TRUE(cluster_->ApplyStatus(StatusValue("web", "bad1", "Failed", "2026-12-06T10:05:00Z", "Degraded")).ok());
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (AgentSyncs().size() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    rows = AgentSyncs();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].result, "Failed: Failed at bad1");
  }
  // A restarted server sees the same status again: nothing new is written.
  PullWatch again(Options());
  ASSERT_TRUE(again.WaitSynced(kWait));
  EXPECT_EQ(AgentSyncs().size(), 2u);
}

TEST_F(PullWatchTest, AnUnreachableClusterIsAWarningAndIsRetriedUntilItAnswers) {
  ASSERT_TRUE(cluster_->Apply(App("web")).ok());
  unreachable_ = true;
  PullWatch watch(Options());
  EXPECT_FALSE(watch.WaitSynced(std::chrono::milliseconds(300)));
  EXPECT_GE(connects_.load(), 2) << "retried with backoff";
  auto report = deliver::GatherStatus(*store_, config_, "", nullptr, watch.Source());
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->rows.empty());
  ASSERT_EQ(report->warnings.size(), 1u);
  EXPECT_THAT(report->warnings[0], HasSubstr("pull cluster edge-1: unreachable: cannot reach https://edge-1.example"));
  unreachable_ = false;
  ASSERT_TRUE(watch.WaitSynced(kWait));
  report = deliver::GatherStatus(*store_, config_, "", nullptr, watch.Source());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->rows.size(), 1u);
  EXPECT_TRUE(report->warnings.empty());
  EXPECT_EQ(watch.Applications({.name = "dev-1"}).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry::server
