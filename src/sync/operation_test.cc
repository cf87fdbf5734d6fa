// sync::Operation on the fake client: what the inventory keeps across syncs with and without prune,
// hooks, and a stop that reaches a health wait.

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "sync/sync.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::sync {
namespace {

using value::Value;

Value Map(std::string_view name) {
  auto docs = value::ParseYaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\ndata: {{k: v}}\n", name));
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

class OperationTest : public ::testing::Test {
 protected:
  const State& Sync(std::vector<Value> objects, bool prune) {
    Options options;
    options.app = "web";
    options.prune = prune;
    auto op = Operation::Create(client_, std::move(objects), options);
    EXPECT_TRUE(op.ok()) << op.status().ToString();
    op_ = *std::move(op);
    const State& s = op_->Run();
    EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
    return s;
  }
  bool Exists(std::string_view name) { return client_.Get({"v1", "ConfigMap", "default", std::string(name)}).ok(); }

  fakes::FakeKubeClient client_;
  std::unique_ptr<Operation> op_;
};

TEST_F(OperationTest, AnObjectLeftBehindWithoutPruneIsStillPrunedLater) {
  Sync({Map("a"), Map("b")}, false);
  Sync({Map("a")}, false);
  EXPECT_TRUE(Exists("b")) << "nothing is deleted without prune";
  auto diff = Diff(client_, {Map("a")}, {.app = "web"}, false);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  bool extra = false;
  for (const DiffEntry& e : *diff) extra = extra || (e.ref.name == "b" && e.status == diff::SyncStatus::kExtra);
  EXPECT_TRUE(extra) << "the object left behind is reported Extra (still in the inventory)";
  Sync({Map("a")}, true);
  EXPECT_FALSE(Exists("b")) << "a later sync with prune deletes what an earlier one left behind";
  EXPECT_TRUE(Exists("a"));
}

Value Doc(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "hooks.yaml");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

// The ConfigMaps in the fake whose name starts with `prefix`.
std::vector<std::string> Named(fakes::FakeKubeClient& client, std::string_view prefix) {
  std::vector<std::string> out;
  auto list = client.List("v1", "ConfigMap", "default");
  GANTRY_CHECK(list.ok());
  for (const Value& item : list->items) {
    std::string name = value::StringAt(&item, {"metadata", "name"});
    if (name.starts_with(prefix)) out.push_back(name);
  }
  return out;
}

constexpr char kGeneratedHook[] = R"(apiVersion: v1
kind: ConfigMap
metadata:
  generateName: migrate-
  annotations: {{argocd.argoproj.io/hook: PreSync{}}}
data: {{step: migrate}}
)";

// Hooks with metadata.generateName (the usual Argo CD and Helm hook Job) were refused with "object
// needs apiVersion, kind and metadata.name".
TEST_F(OperationTest, AGenerateNameHookIsCreatedTrackedByItsNameAndReplacedByTheNextRun) {
  const State& first = Sync({Doc(fmt::format(kGeneratedHook, "")), Map("a")}, false);
  ASSERT_EQ(first.results.size(), 2u);
  const ObjectResult& hook = first.results[0];
  EXPECT_EQ(hook.action, Action::kHook);
  EXPECT_TRUE(hook.ref.name.starts_with("migrate-") && hook.ref.name != "migrate-*") << hook.ref.name;
  std::vector<std::string> runs = Named(client_, "migrate-");
  ASSERT_EQ(runs, std::vector<std::string>{hook.ref.name}) << "the result names the created object";
  auto live = client_.Get({"v1", "ConfigMap", "default", hook.ref.name});
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(value::StringAt(&*live, {"metadata", "annotations", kTrackingAnnotation}), "web:/ConfigMap:default/migrate-*");

  // BeforeHookCreation (the default) deletes the earlier run, found by the tracking id.
  const State& second = Sync({Doc(fmt::format(kGeneratedHook, "")), Map("a")}, false);
  std::vector<std::string> now = Named(client_, "migrate-");
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], runs[0]);
  EXPECT_EQ(second.results[0].ref.name, now[0]);

  // HookSucceeded deletes the run once it is healthy (and BeforeHookCreation is not set: the
  // earlier run stays).
  Sync({Doc(fmt::format(kGeneratedHook, ", argocd.argoproj.io/hook-delete-policy: HookSucceeded")), Map("a")}, false);
  EXPECT_EQ(Named(client_, "migrate-"), now);
}

TEST_F(OperationTest, GenerateNameOnAnObjectThatIsNotAHookIsRefusedClearly) {
  auto op = Operation::Create(client_, {Doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: cfg-}\n")},
                              {.app = "web"});
  ASSERT_FALSE(op.ok());
  EXPECT_EQ(op.status().code(), Code::kInvalidArgument);
  EXPECT_NE(op.status().message().find("hooks.yaml:1:1: ConfigMap has metadata.generateName \"cfg-\" and no "
                                       "metadata.name: generateName is only for hooks"),
            std::string::npos)
      << op.status().message();
}

TEST_F(OperationTest, DiffShowsHooksAsWillBeCreatedWithoutCountingThemAsDifferences) {
  Sync({Map("a")}, false);
  auto diff = Diff(client_, {Doc(fmt::format(kGeneratedHook, "")), Map("a")}, {.app = "web"}, false);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  ASSERT_EQ(diff->size(), 2u);
  EXPECT_EQ((*diff)[0].status, diff::SyncStatus::kSynced);
  const DiffEntry& hook = (*diff)[1];
  EXPECT_EQ(hook.hook, HookPhase::kPreSync);
  EXPECT_EQ(hook.ref.ToString(), "v1 ConfigMap default/migrate-*");
  EXPECT_EQ(hook.text, "PreSync hook: will be created by the sync (named by the server from generateName \"migrate-\")\n");
}

// Helm test hooks failed the whole sync with "unknown hook".
TEST_F(OperationTest, HelmTestHooksAreReportedSkippedAndNeverApplied) {
  const State& s = Sync({Doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: test-connection, annotations: "
                             "{helm.sh/hook: test}}\n"),
                         Map("a")},
                        true);
  ASSERT_EQ(s.results.size(), 2u);
  EXPECT_EQ(s.results[0].action, Action::kSkipped);
  EXPECT_EQ(s.results[0].ref.name, "test-connection");
  EXPECT_FALSE(Exists("test-connection"));
  EXPECT_NE(s.message.find("1 skipped"), std::string::npos) << s.message;
}

// A deploy waiting for health could not be stopped: Terminate() and the stop flag were looked at
// only between steps, and the health wait was one step that lasted until its timeout.
TEST_F(OperationTest, AStopReachesAHealthWaitAndNothingAfterItIsApplied) {
  // Wave 0 never becomes healthy (the fake has no controller: the rollout never finishes);
  // wave 1 must not be applied once the stop is asked.
  Value stuck = Doc("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: stuck}\nspec:\n  replicas: 1\n"
                    "  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n"
                    "    spec: {containers: [{name: app, image: stuck:1}]}\n");
  Value after = Map("after");
  after.MutableGet("metadata")->Set("annotations", Doc("gantry.dev/sync-wave: \"1\"\n"));
  std::atomic<bool> stop{false};
  Options options;
  options.app = "web";
  options.timeout = std::chrono::minutes(5);
  options.stop = [&stop] { return stop.load(); };
  auto op = Operation::Create(client_, {stuck, after}, options);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  std::thread stopper([&] {
    while (!client_.Get({"apps/v1", "Deployment", "default", "stuck"}).ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // well inside the wait
    stop.store(true);
  });
  const auto started = std::chrono::steady_clock::now();
  const State& s = (*op)->Run();
  const auto took = std::chrono::steady_clock::now() - started;
  stopper.join();
  EXPECT_EQ(s.phase, Phase::kTerminated) << s.message;
  EXPECT_EQ(s.message, "terminated during wait for wave 0 to be healthy");
  EXPECT_LT(took, std::chrono::seconds(3)) << "stopped within a wait slice, not at the 5 min timeout";
  EXPECT_FALSE(Exists("after")) << "wave 1 is not applied after the stop";
  EXPECT_TRUE(s.error.ok()) << "terminated is not a failure: " << s.error.ToString();
}

}  // namespace
}  // namespace gantry::sync

namespace gantry::sync {
namespace {

// Options::check_images sees every object after tracking, may rewrite them (what is applied is what
// it left), and its refusal fails the sync before anything is written.
TEST_F(OperationTest, ImageChecksRewriteWhatIsAppliedAndTheirRefusalAppliesNothing) {
  Options options;
  options.app = "web";
  size_t seen = 0;
  options.check_images = [&](std::span<Value* const> objects) {
    seen = objects.size();
    for (Value* o : objects) o->MutableGet("data")->Set("k", "checked");
    return OkStatus();
  };
  auto op = Operation::Create(client_, {Map("a"), Map("b")}, options);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  EXPECT_EQ((*op)->Run().phase, Phase::kSucceeded);
  EXPECT_EQ(seen, 2u);
  auto a = client_.Get({"v1", "ConfigMap", "default", "a"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(value::StringAt(&*a, {"data", "k"}), "checked");

  options.check_images = [](std::span<Value* const>) {
    return PermissionDeniedError("image refused").set_reason(project::kReasonImageVerification);
  };
  uint64_t writes = client_.count("apply");
  auto refused = Operation::Create(client_, {Map("c")}, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().reason(), project::kReasonImageVerification);
  EXPECT_EQ(client_.count("apply"), writes);
  EXPECT_FALSE(Exists("c"));
}

}  // namespace
}  // namespace gantry::sync
