// The agent's loop on fakes: a refresh that finds nothing changed renders nothing, reads nothing
// and makes no API request; drift, a commit and an edited Application each make the next pass full.

#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "api/status.h"
#include "test/fakes/agent_source.h"
#include "test/fakes/forwarding_kube_client.h"
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


// A client whose Lease renewals hang once told to (an apiserver that stops answering this replica)
// and whose ConfigMap applies take 300 ms each, recording when each began.
class HangingLeaseClient final : public fakes::ForwardingKubeClient {
 public:
  using ForwardingKubeClient::ForwardingKubeClient;
  Result<Value> Replace(const Value& object) override {
    if (value::StringAt(&object, {"kind"}) == "Lease") {
      while (hang_ && !release_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ForwardingKubeClient::Replace(object);
  }
  Result<Value> Apply(const Value& object, const kube::ApplyOptions& options) override {
    if (value::StringAt(&object, {"kind"}) == "ConfigMap") {
      {
        std::lock_guard lock(mu_);
        if (applies_.empty()) hang_ = true;  // from the first, renewals hang
        applies_.push_back(std::chrono::steady_clock::now());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return ForwardingKubeClient::Apply(object, options);
  }
  std::vector<std::chrono::steady_clock::time_point> applies() {
    std::lock_guard lock(mu_);
    return applies_;
  }
  std::atomic<bool> hang_{false};
  std::atomic<bool> release_{false};

 private:
  std::mutex mu_;
  std::vector<std::chrono::steady_clock::time_point> applies_;
};

// Leader election: a leader whose renewals hang stops its running sync once its leadership lapses
// (2/3 of the lease duration plus a retry period after the last renewal it sent), before another
// candidate may take the Lease (a duration after it last saw it renewed). Before, only a stop of
// the agent stopped a sync, so the old leader went on applying beside the new one.
TEST(AgentLeaderTest, ALeaderWhoseRenewalsHangStopsItsSyncBeforeAnotherCanTakeTheLease) {
  fakes::FakeKubeClient store;
  HangingLeaseClient client(store);
  auto source = std::make_unique<fakes::FakeSource>();
  std::string many;
  for (int i = 0; i < 40; ++i) many += fmt::format("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{}}}\ndata: {{k: \"1\"}}\n", i);
  source->AddCommit("c1", {{"apps/web", many}}, {"apps/web/all.yaml"});
  ASSERT_TRUE(store.Create(Yaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: apps}
spec:
  source: {repoURL: "https://git.example.com/config.git", path: apps/web}
  destination: {namespace: web}
  syncPolicy: {automated: {prune: true}}
)")).ok());
  AgentOptions options;
  options.namespace_ = "apps";
  options.interval = std::chrono::milliseconds(1000);
  options.workers = 1;
  options.lease_name = "gantry-agent";
  options.lease_namespace = "apps";
  options.identity = "agent-a";
  options.lease_duration = std::chrono::seconds(3);
  options.reconcile.parallelism = 2;  // 40 applies of 300 ms: a sync of 6 s
  auto agent = NewAgent(client, options, std::move(source));
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  Status run_status;
  std::thread thread([&] { run_status = (*agent)->Run(); });

  ASSERT_TRUE(Eventually([&] { return !client.applies().empty(); }));
  const auto hung = client.applies().front();
  // Leadership lapses by 2.6 s after the last renewal sent, which was before `hung`; the applies
  // in flight then end (300 ms). None may begin after that.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  auto applies = client.applies();
  const auto last = applies.back();
  EXPECT_LT(last - hung, std::chrono::milliseconds(3300))
      << "the old leader began an apply " << std::chrono::duration_cast<std::chrono::milliseconds>(last - hung).count()
      << " ms after its renewals hung (" << applies.size() << " applies)";
  EXPECT_LT(applies.size(), 40u) << "the sync ran to its end with the leadership lapsed";

  // The renewals come back: it leads again (a new term) and the stopped sync is resumed to its end.
  client.release_ = true;
  EXPECT_TRUE(Eventually([&] {
    auto app = store.Get({"gantry.dev/v1alpha1", "Application", "apps", "web"});
    if (!app.ok()) return false;
    api::ApplicationStatus s = api::ParseStatus(app->Get("status"));
    return s.sync_status == api::kSynced && s.sync_revision == "c1" && s.operation &&
           s.operation->phase == api::kPhaseSucceeded;
  }, std::chrono::seconds(30)));
  (*agent)->Stop();
  thread.join();
  EXPECT_TRUE(run_status.ok()) << run_status.ToString();
}

}  // namespace
}  // namespace gantry::agent
