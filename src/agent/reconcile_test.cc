// Reconcile on the fake client and source: one render, one live read and one compare per pass,
// and a pass that changes nothing makes no API request.

#include <atomic>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "kube/cache.h"
#include "project/project.h"
#include "sync/sync.h"
#include "test/fakes/agent_source.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/stepped_clock.h"

namespace gantry::agent {
namespace {

using value::Value;

class ReconcileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.AddCommit("c1", {{"apps/web", fakes::kTwoConfigMaps}, {"apps/other", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: o}\n"}},
                      {"apps/web/all.yaml", "apps/other/all.yaml"});
    auto app = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: apps}
spec:
  source: {repoURL: "https://git.example.com/config.git", path: apps/web}
  destination: {namespace: web}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
)");
    ASSERT_TRUE(app.ok());
    auto created = client_.Create((*app)[0]);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    object_ = *created;
    objects_ = kube::NewCache(client_, {.label_selector = sync::kAppLabel, .index_label = sync::kAppLabel});
    inventories_ = kube::NewCache(client_, {.label_selector = sync::kInventoryLabel, .index_label = sync::kInventoryLabel});
  }

  // One pass over the current object; the object is then what the pass wrote.
  ReconcileResult Pass(std::chrono::steady_clock::time_point fetch_after = {}) {
    ReconcileDeps deps{.client = client_, .source = source_, .objects = objects_.get(), .inventories = inventories_.get(),
                       .clock = clock_};
    if (project_) deps.get_project = [this](const Application&) { return Result<project::Project>(*project_); };
    auto r = Reconcile(deps, object_, fetch_after, {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    if (!r->object.IsNull()) object_ = r->object;
    return *std::move(r);
  }

  void WatchAll() {
    ASSERT_TRUE(objects_->Watch("v1", "ConfigMap", std::chrono::seconds(5)).ok());
    ASSERT_TRUE(inventories_->Watch("v1", "ConfigMap", std::chrono::seconds(5)).ok());
  }

  // Waits until the caches have seen every write so far.
  void Settle() {
    for (int i = 0; i < 200; ++i) {
      auto a = objects_->Get({"v1", "ConfigMap", "web", "a"});
      auto inv = inventories_->Get({"v1", "ConfigMap", "web", "gantry-inventory-web"});
      auto live = client_.Get({"v1", "ConfigMap", "web", "a"});
      if (a && inv && live.ok() &&
          value::StringAt(&*a, {"metadata", "resourceVersion"}) ==
              value::StringAt(&*live, {"metadata", "resourceVersion"})) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "caches did not catch up";
  }

  fakes::FakeKubeClient client_;
  fakes::FakeSource source_;
  std::optional<project::Project> project_;  // unset: the default project
  Clock* clock_ = nullptr;                    // null: the system clock
  std::unique_ptr<kube::Cache> objects_, inventories_;
  Value object_;
};

TEST_F(ReconcileTest, FirstPassRendersOnceAppliesAndWritesStatus) {
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.rendered);
  EXPECT_TRUE(r.synced);
  EXPECT_FALSE(r.failed);
  EXPECT_EQ(source_.renders(), 1u);
  EXPECT_EQ(r.status.sync_status, api::kSynced);
  EXPECT_EQ(r.status.sync_revision, "c1");
  EXPECT_EQ(r.status.health, health::HealthStatus::kHealthy);
  ASSERT_EQ(r.status.resources.size(), 2u);
  ASSERT_TRUE(r.status.operation.has_value());
  EXPECT_EQ(r.status.operation->phase, api::kPhaseSucceeded);
  EXPECT_EQ(r.status.operation->trigger, api::kTriggerRevision);
  ASSERT_NE(r.status.FindCondition(api::kConditionReady), nullptr);
  EXPECT_TRUE(r.status.FindCondition(api::kConditionReady)->status);
  EXPECT_TRUE(client_.Get({"v1", "ConfigMap", "web", "b"}).ok());
  // What was written is what the result says.
  EXPECT_EQ(api::ParseStatus(object_.Get("status")).sync_revision, "c1");
}

TEST_F(ReconcileTest, ANoOpPassIsServedFromTheCacheAndMakesNoRequest) {
  WatchAll();
  Pass();
  Settle();
  uint64_t before = client_.request_count();
  uint64_t lists = client_.count("list"), gets = client_.count("get");
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.rendered);
  EXPECT_FALSE(r.synced);
  EXPECT_TRUE(r.object.IsNull()) << "nothing changed, nothing written";
  EXPECT_EQ(client_.request_count() - before, 0u) << "lists " << client_.count("list") - lists << ", gets "
                                                  << client_.count("get") - gets;
  EXPECT_EQ(r.status.sync_status, api::kSynced);
}

TEST_F(ReconcileTest, ACommitElsewhereMarksTheNewRevisionWithoutRendering) {
  Pass();
  source_.AddCommit("c2", {{"apps/web", fakes::kTwoConfigMaps}, {"apps/other", "x"}}, {"apps/other/all.yaml"});
  uint64_t renders = source_.renders();
  ReconcileResult r = Pass(std::chrono::steady_clock::now());
  EXPECT_FALSE(r.rendered);
  EXPECT_EQ(source_.renders(), renders);
  EXPECT_EQ(r.status.sync_revision, "c2");
  EXPECT_EQ(r.status.sync_status, api::kSynced);
  EXPECT_TRUE(r.status.FindCondition(api::kConditionReady)->status);
  EXPECT_EQ(r.status.history.size(), 1u) << "no sync ran";
}

TEST_F(ReconcileTest, ACommitToItsPathRendersAndApplies) {
  Pass();
  source_.AddCommit("c2", {{"apps/web", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: \"9\"}\n"}},
                    {"apps/web/all.yaml"});
  ReconcileResult r = Pass(std::chrono::steady_clock::now());
  EXPECT_TRUE(r.rendered);
  EXPECT_TRUE(r.synced);
  auto a = client_.Get({"v1", "ConfigMap", "web", "a"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(value::StringAt(&*a, {"data", "k"}), "9");
  EXPECT_FALSE(client_.Get({"v1", "ConfigMap", "web", "b"}).ok()) << "pruned";
  ASSERT_EQ(r.status.resources.size(), 1u) << "the pruned object is no longer listed";
  EXPECT_EQ(r.status.history.size(), 2u);
}

TEST_F(ReconcileTest, WithoutPruneAnObjectLeftBehindIsOutOfSyncButNoReasonToSyncAgain) {
  // prune off, selfHeal on: b leaves the render and stays in the cluster as Extra.
  object_.MutableGet("spec")->MutableGet("syncPolicy")->MutableGet("automated")->Set("prune", Value(false));
  auto replaced = client_.Replace(object_);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  object_ = *replaced;
  Pass();
  source_.AddCommit("c2", {{"apps/web", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: \"9\"}\n"}},
                    {"apps/web/all.yaml"});
  ReconcileResult r = Pass(std::chrono::steady_clock::now());
  EXPECT_TRUE(r.synced) << "the new revision is synced once";
  EXPECT_TRUE(client_.Get({"v1", "ConfigMap", "web", "b"}).ok()) << "not pruned";
  for (int i = 0; i < 3; ++i) {
    r = Pass();
    EXPECT_FALSE(r.synced) << "pass " << i << ": a sync cannot remove b, so selfHeal must not loop on it";
    EXPECT_EQ(r.status.sync_status, api::kOutOfSync) << "b still requires pruning";
  }
}

TEST_F(ReconcileTest, DriftIsHealedFromOneComparison) {
  WatchAll();
  Pass();
  auto a = client_.Get({"v1", "ConfigMap", "web", "a"});
  ASSERT_TRUE(a.ok());
  Value changed = *a;
  changed.MutableGet("data")->Set("k", "tampered");
  ASSERT_TRUE(client_.Replace(changed).ok());
  Settle();
  uint64_t applies = client_.count("apply");
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.synced);
  EXPECT_EQ(r.status.operation->trigger, api::kTriggerSelfHeal);
  EXPECT_EQ(client_.count("apply") - applies, 1u) << "only the drifted object is applied";
  auto healed = client_.Get({"v1", "ConfigMap", "web", "a"});
  ASSERT_TRUE(healed.ok());
  EXPECT_EQ(value::StringAt(&*healed, {"data", "k"}), "1");
  EXPECT_EQ(r.status.sync_status, api::kSynced);
}

TEST_F(ReconcileTest, FailuresAreClassifiedByReasonNotText) {
  source_.FailResolve(UnavailableError("render this: connection refused").set_reason(kReasonFetchFailed));
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.failed);
  ASSERT_NE(r.status.FindCondition(api::kConditionFetchFailed), nullptr);
  EXPECT_EQ(r.status.FindCondition(api::kConditionRenderFailed), nullptr);

  source_.FailResolve(NotFoundError("fetch: no such revision"));  // the text says fetch; the reason does not
  r = Pass();
  EXPECT_NE(r.status.FindCondition(api::kConditionRenderFailed), nullptr);
  EXPECT_EQ(r.status.FindCondition(api::kConditionFetchFailed), nullptr);
}

// A chart (or a kustomization) may name repositories to fetch beyond the Application's own: the
// project's sourceRepos decides before anything is fetched, as for the source itself.
TEST_F(ReconcileTest, RepositoriesFetchedBeyondTheSourceNeedTheProjectsSourceRepos) {
  project::Project p = project::DefaultProject();
  p.source_repos = {"https://git.example.com/*"};
  project_ = p;
  source_.FetchBeyondSource({"http://169.254.169.254/latest"});
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.failed);
  const api::Condition* denied = r.status.FindCondition(api::kConditionProjectDenied);
  ASSERT_NE(denied, nullptr);
  EXPECT_NE(denied->message.find("apps/web/Chart.yaml: project default: sourceRepos does not allow repository "
                                 "http://169.254.169.254/latest"),
            std::string::npos)
      << denied->message;
  EXPECT_FALSE(client_.Get({"v1", "ConfigMap", "web", "a"}).ok()) << "nothing is applied";

  source_.FetchBeyondSource({"https://git.example.com/charts"});
  r = Pass();
  EXPECT_FALSE(r.failed);
  EXPECT_EQ(r.status.FindCondition(api::kConditionProjectDenied), nullptr);
  EXPECT_TRUE(client_.Get({"v1", "ConfigMap", "web", "a"}).ok());
}

TEST_F(ReconcileTest, AnUnknownSyncOptionIsAnInvalidSpecNamingItAndNothingIsApplied) {
  auto app = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: typo, namespace: apps}
spec:
  source: {repoURL: "https://git.example.com/config.git", path: apps/web}
  destination: {namespace: typo}
  syncPolicy: {automated: {prune: true}, syncOptions: [CreateNamespace=true, Replcae=true]}
)");
  ASSERT_TRUE(app.ok());
  auto created = client_.Create((*app)[0]);
  ASSERT_TRUE(created.ok());
  object_ = *created;
  ReconcileResult r = Pass();
  EXPECT_TRUE(r.failed);
  const api::Condition* invalid = r.status.FindCondition(api::kConditionInvalidSpec);
  ASSERT_NE(invalid, nullptr);
  EXPECT_NE(invalid->message.find("spec.syncPolicy.syncOptions of Application apps/typo: unknown sync option "
                                  "\"Replcae=true\""),
            std::string::npos)
      << invalid->message;
  EXPECT_EQ(client_.Get({"v1", "ConfigMap", "typo", "a"}).status().code(), Code::kNotFound);
}

TEST_F(ReconcileTest, AnEmptyRenderIsAPruneBlockedSyncFailure) {
  Pass();
  source_.AddCommit("c2", {{"apps/web", ""}}, {"apps/web/all.yaml"});
  ReconcileResult r = Pass(std::chrono::steady_clock::now());
  EXPECT_TRUE(r.failed);
  const api::Condition* failed = r.status.FindCondition(api::kConditionSyncFailed);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->reason, api::kReasonPruneBlocked);
  EXPECT_TRUE(client_.Get({"v1", "ConfigMap", "web", "a"}).ok()) << "nothing pruned";
}

// Clock steps (issue 21): an automated sync that failed is retried after its backoff, measured
// from its finishedAt against the wall clock. When the wall clock has since gone back an hour,
// finishedAt lies in the future; the retry used to wait until the clock caught up (an hour); it now
// goes ahead, and the backoff after it is measured on the stepped clock again.
TEST_F(ReconcileTest, AFailedSyncIsRetriedAfterItsBackoffWhenTheWallClockWentBack) {
  fakes::SteppedClock clock;
  clock.Advance(std::chrono::hours(1000));
  clock_ = &clock;
  Pass();
  source_.AddCommit("c2", {{"apps/web", ""}}, {"apps/web/all.yaml"});
  ReconcileResult failed = Pass(std::chrono::steady_clock::now());
  ASSERT_TRUE(failed.failed);
  ASSERT_TRUE(failed.status.operation.has_value());
  const std::string first_finish = failed.status.operation->finished_at;

  clock.StepWall(-std::chrono::hours(1));
  ReconcileResult retried = Pass();
  ASSERT_TRUE(retried.status.operation.has_value());
  EXPECT_NE(retried.status.operation->finished_at, first_finish) << "the retry did not run";
  EXPECT_LT(retried.requeue_after, std::chrono::minutes(1)) << "the retry waits for the clock to catch up";
  // The next retry waits for its backoff again, now measured on the stepped clock.
  ReconcileResult waiting = Pass();
  EXPECT_EQ(waiting.status.operation->finished_at, retried.status.operation->finished_at);
  EXPECT_GT(waiting.requeue_after, std::chrono::milliseconds(0));
  EXPECT_LT(waiting.requeue_after, std::chrono::minutes(1));
}

// Not a timing test: GANTRY_NOOP_PASSES=N runs N no-op passes over 10 objects, to profile them.
TEST_F(ReconcileTest, NoOpPassesForProfiling) {
  const char* n = std::getenv("GANTRY_NOOP_PASSES");
  if (n == nullptr) GTEST_SKIP() << "set GANTRY_NOOP_PASSES to run";
  std::string ten;
  for (int i = 0; i < 10; ++i) ten += fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{}}}\ndata: {{k: \"{}\"}}\n---\n", i, i);
  source_.AddCommit("c2", {{"apps/web", ten}}, {"apps/web/all.yaml"});
  WatchAll();
  Pass();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int i = 0, count = std::atoi(n); i < count; ++i) {
    ReconcileResult r = Pass();
    ASSERT_FALSE(r.synced);
  }
}

TEST_F(ReconcileTest, AStoppedSyncStaysRunningAndTheNextPassResumesIt) {
  std::atomic<bool> stop{true};
  ReconcileDeps deps{.client = client_, .source = source_, .stop = &stop};
  auto r = Reconcile(deps, object_, {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->status.operation.has_value());
  EXPECT_EQ(r->status.operation->phase, api::kPhaseRunning);
  EXPECT_FALSE(client_.Get({"v1", "ConfigMap", "web", "a"}).ok()) << "stopped before applying";
  object_ = r->object;
  ReconcileResult next = Pass();
  EXPECT_EQ(next.status.operation->trigger, api::kTriggerResume);
  EXPECT_EQ(next.status.operation->phase, api::kPhaseSucceeded);
  EXPECT_TRUE(client_.Get({"v1", "ConfigMap", "web", "a"}).ok());
}

// A pull app's running sync could not be terminated: the agent had no request for it (the API
// answered 501). The request stops the sync in its health wait, is recorded, and the same revision
// is not synced again until a sync request.
TEST_F(ReconcileTest, ATerminateRequestStopsTheSyncInItsWaitAndTheRevisionIsNotSyncedAgainByItself) {
  source_.AddCommit("c2", {{"apps/web", fakes::kStuckThenWave1}}, {"apps/web/all.yaml"});
  std::atomic<bool> asked{false};
  ReconcileDeps deps{.client = client_, .source = source_,
                     .terminate_request = [&] { return asked.load() ? std::string("t1/alice") : std::string(); }};
  std::thread asker([&] {
    while (!client_.Get({"apps/v1", "Deployment", "web", "stuck"}).ok()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside the wait for wave 0
    asked.store(true);
  });
  const auto started = std::chrono::steady_clock::now();
  auto r = Reconcile(deps, object_, {}, {.health_timeout = std::chrono::minutes(5)});
  const auto took = std::chrono::steady_clock::now() - started;
  asker.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LT(took, std::chrono::seconds(3)) << "stopped in the wait, not at its 5 min timeout";
  ASSERT_TRUE(r->status.operation.has_value());
  const api::OperationState& op = *r->status.operation;
  EXPECT_EQ(op.phase, api::kPhaseTerminated);
  EXPECT_EQ(op.message, "terminated during wait for wave 0 to be healthy (gantry.dev/terminate-requested: t1/alice)");
  EXPECT_FALSE(op.finished_at.empty());
  EXPECT_EQ(r->status.last_terminate_request, "t1/alice");
  EXPECT_EQ(r->status.history.back().result, api::kPhaseTerminated);
  const api::Condition* failed = r->status.FindCondition(api::kConditionSyncFailed);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->reason, api::kReasonTerminated);
  EXPECT_FALSE(client_.Get({"v1", "ConfigMap", "web", "after-stuck"}).ok()) << "wave 1 is not applied";
  object_ = r->object;

  // The next pass (same revision, same spec, the request acted on) starts no sync.
  ReconcileDeps later{.client = client_, .source = source_, .terminate_request = [] { return std::string("t1/alice"); }};
  auto again = Reconcile(later, object_, {}, {});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->synced);
  EXPECT_EQ(again->status.operation->phase, api::kPhaseTerminated);
  EXPECT_EQ(again->status.FindCondition(api::kConditionSyncFailed)->reason, api::kReasonTerminated);

  // A sync request does (here it waits for wave 0 again, up to a short timeout).
  Value requested = object_;
  requested.MutableGet("metadata")->Set("annotations", value::ParseYaml("gantry.dev/sync-requested: s1\n")->front());
  auto synced = Reconcile(later, requested, {}, {.health_timeout = std::chrono::milliseconds(500)});
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_TRUE(synced->synced);
  EXPECT_EQ(synced->status.operation->trigger, api::kTriggerManual);
  EXPECT_EQ(synced->status.operation->phase, api::kPhaseFailed) << "wave 0 never becomes healthy here";
}

}  // namespace
}  // namespace gantry::agent
