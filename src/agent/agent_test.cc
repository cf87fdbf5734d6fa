// The agent's loop on fakes: a refresh that finds nothing changed renders nothing, reads nothing
// and makes no API request; drift, a commit and an edited Application each make the next pass full.

#include <gtest/gtest.h>

#include <thread>

#include "agent/agent.h"
#include "api/status.h"
#include "test/fakes/agent_source.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::agent {
namespace {

using value::Value;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

bool Eventually(const std::function<bool()>& cond, std::chrono::seconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class AgentLoopTest : public ::testing::Test {
 protected:
  static constexpr std::chrono::milliseconds kInterval{1000};  // the least the agent takes

  void SetUp() override {
    auto source = std::make_unique<fakes::FakeSource>();
    source_ = source.get();
    source_->AddCommit("c1", {{"apps/web", fakes::kTwoConfigMaps}}, {"apps/web/all.yaml"});
    auto created = client_.Create(Yaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: apps}
spec:
  source: {repoURL: "https://git.example.com/config.git", path: apps/web}
  destination: {namespace: web}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
)"));
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    AgentOptions options;
    options.namespace_ = "apps";
    options.interval = kInterval;
    options.workers = 1;
    options.lease_name = "";  // no leader election: its lease renewals are requests of their own
    auto agent = NewAgent(client_, options, std::move(source));
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    agent_ = *std::move(agent);
    thread_ = std::thread([this] { run_status_ = agent_->Run(); });
  }

  void TearDown() override {
    if (agent_) agent_->Stop();
    if (thread_.joinable()) thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  }

  api::ApplicationStatus AppStatus() {
    auto app = client_.Get({"gantry.dev/v1alpha1", "Application", "apps", "web"});
    return app.ok() ? api::ParseStatus(app->Get("status")) : api::ApplicationStatus{};
  }

  std::string Data(std::string_view name) {
    auto cm = client_.Get({"v1", "ConfigMap", "web", std::string(name)});
    return cm.ok() ? value::StringAt(&*cm, {"data", "k"}) : "";
  }

  bool SyncedAt(std::string_view commit) {
    api::ApplicationStatus s = AppStatus();
    return s.sync_status == api::kSynced && s.sync_revision == commit && s.health == health::HealthStatus::kHealthy;
  }

  std::string Verbs() {
    std::string out;
    for (const char* verb : {"get", "list", "create", "replace", "delete", "apply", "apply_status", "watch", "get_raw"}) {
      out += fmt::format("{} {}, ", verb, client_.count(verb));
    }
    return out;
  }

  // Waits until the agent has refreshed the application `passes` more times.
  void WaitPasses(uint64_t passes) {
    uint64_t from = source_->resolves();
    ASSERT_TRUE(Eventually([&] { return source_->resolves() >= from + passes; }));
  }

  fakes::FakeKubeClient client_;
  fakes::FakeSource* source_ = nullptr;
  std::unique_ptr<Agent> agent_;
  std::thread thread_;
  Status run_status_;
};

TEST_F(AgentLoopTest, UnchangedRefreshesRenderNothingAndMakeNoRequest) {
  ASSERT_TRUE(Eventually([&] { return SyncedAt("c1"); }));
  WaitPasses(2);  // the pass after the sync compares once more and finds nothing to do
  uint64_t renders = source_->renders();
  uint64_t requests = client_.request_count();
  std::string before = Verbs();
  WaitPasses(3);
  SCOPED_TRACE("before: " + before);
  EXPECT_EQ(source_->renders(), renders) << "an unchanged refresh renders";
  EXPECT_EQ(client_.request_count(), requests) << "an unchanged refresh makes API requests: " << Verbs();
}

TEST_F(AgentLoopTest, DriftAfterUnchangedRefreshesIsHealed) {
  ASSERT_TRUE(Eventually([&] { return SyncedAt("c1"); }));
  WaitPasses(2);
  // Someone else changes a managed object: the cache's event makes the next pass a full one.
  Value drifted = Yaml(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: web}
data: {k: "tampered"}
)");
  ASSERT_TRUE(client_.Apply(drifted, {.field_manager = "kubectl", .force = true}).ok());
  EXPECT_TRUE(Eventually([&] { return Data("a") == "1"; })) << "drift was not healed";
  // A deleted object comes back too.
  ASSERT_TRUE(client_.Delete({"v1", "ConfigMap", "web", "b"}).ok());
  EXPECT_TRUE(Eventually([&] { return Data("b") == "2"; })) << "a deleted object was not recreated";
}

TEST_F(AgentLoopTest, ACommitOrAnEditedApplicationAfterUnchangedRefreshesIsApplied) {
  ASSERT_TRUE(Eventually([&] { return SyncedAt("c1"); }));
  WaitPasses(2);
  source_->AddCommit("c2", {{"apps/web", std::string(fakes::kTwoConfigMaps).replace(std::string(fakes::kTwoConfigMaps).find("\"1\""), 3, "\"9\"")}},
                     {"apps/web/all.yaml"});
  EXPECT_TRUE(Eventually([&] { return SyncedAt("c2") && Data("a") == "9"; })) << "the new commit was not applied";
  WaitPasses(2);
  // Turning prune off and deleting an object is not healed by an agent that still compares the
  // old spec; suspending is the edit that shows the spec was read again.
  auto app = client_.Get({"gantry.dev/v1alpha1", "Application", "apps", "web"});
  ASSERT_TRUE(app.ok());
  Value edited = *app;
  edited.MutableGet("spec")->Set("suspend", Value(true));
  ASSERT_TRUE(client_.Replace(edited).ok());
  EXPECT_TRUE(Eventually([&] { return AppStatus().FindCondition(api::kConditionSuspended) != nullptr; }))
      << "the edited Application was not reconciled";
}

}  // namespace
}  // namespace gantry::agent
