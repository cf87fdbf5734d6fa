#include <gtest/gtest.h>

#include "sync/sync.h"

namespace gantry::sync {
namespace {

Task MakeTask(const std::string& yaml) {
  auto docs = value::ParseYaml(yaml, "plan.yaml");
  GANTRY_CHECK(docs.ok());
  Task t;
  t.object = (*docs)[0];
  t.ref = kube::RefOf(t.object);
  Status s = ReadAnnotations(t.object, t);
  GANTRY_CHECK(s.ok());
  return t;
}

Task Obj(const std::string& kind, const std::string& name, const std::string& annotations = "{}") {
  return MakeTask(fmt::format("apiVersion: v1\nkind: {}\nmetadata: {{name: {}, annotations: {}}}\n", kind, name,
                              annotations));
}

std::vector<std::string> Names(const SyncPlan& plan) {
  std::vector<std::string> out;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    std::string s = plan.step_names[i] + ":";
    for (const Task& t : plan.steps[i]) s += " " + t.ref.kind + "/" + t.ref.name;
    out.push_back(s);
  }
  return out;
}

TEST(Plan, NamespacesAndCrdsFirstThenWavesThenKindOrder) {
  std::vector<Task> tasks;
  tasks.push_back(Obj("Deployment", "web"));
  tasks.push_back(Obj("Service", "web"));
  tasks.push_back(Obj("ConfigMap", "late", "{argocd.argoproj.io/sync-wave: '2'}"));
  tasks.push_back(Obj("CustomResourceDefinition", "widgets.example.com"));
  tasks.push_back(Obj("Secret", "creds"));
  tasks.push_back(Obj("Namespace", "shop"));
  tasks.push_back(Obj("Job", "migrate", "{gantry.dev/sync-wave: '-1'}"));
  tasks.push_back(Obj("Widget", "w"));
  tasks.push_back(Obj("ServiceAccount", "sa"));
  SyncPlan plan = Plan(std::move(tasks));
  EXPECT_EQ(Names(plan), (std::vector<std::string>{
                             "namespaces and CRDs: Namespace/shop CustomResourceDefinition/widgets.example.com",
                             "wave -1: Job/migrate",
                             "wave 0: ServiceAccount/sa Secret/creds Service/web Deployment/web Widget/w",
                             "wave 2: ConfigMap/late",
                         }));
}

TEST(Plan, HooksRunInTheirPhases) {
  std::vector<Task> tasks;
  tasks.push_back(Obj("Job", "post", "{argocd.argoproj.io/hook: PostSync}"));
  tasks.push_back(Obj("Deployment", "web"));
  tasks.push_back(Obj("Job", "pre", "{gantry.dev/hook: PreSync, gantry.dev/hook-delete-policy: HookSucceeded}"));
  tasks.push_back(Obj("Pod", "cleanup", "{argocd.argoproj.io/hook: SyncFail}"));
  SyncPlan plan = Plan(std::move(tasks));
  EXPECT_EQ(Names(plan), (std::vector<std::string>{"PreSync hooks: Job/pre", "wave 0: Deployment/web",
                                                   "PostSync hooks: Job/post"}));
  ASSERT_EQ(plan.sync_fail_hooks.size(), 1u);
  EXPECT_EQ(plan.sync_fail_hooks[0].ref.name, "cleanup");
  EXPECT_EQ(plan.steps[0][0].hook_delete_policies, std::vector<std::string>{"HookSucceeded"});
  EXPECT_EQ(plan.steps[2][0].hook_delete_policies, std::vector<std::string>{"BeforeHookCreation"});
}

// Helm hook weights were ignored: hooks of one phase ran together, in kind and name order.
TEST(Plan, HelmHookWeightIsTheWaveWithinItsPhaseAndSyncWaveWins) {
  std::vector<Task> tasks;
  tasks.push_back(Obj("Job", "a-late", "{helm.sh/hook: pre-install, helm.sh/hook-weight: '5'}"));
  tasks.push_back(Obj("Job", "b-early", "{helm.sh/hook: pre-upgrade, helm.sh/hook-weight: '-5'}"));
  tasks.push_back(Obj("Job", "c-wins", "{helm.sh/hook: pre-install, helm.sh/hook-weight: '-9', "
                                       "argocd.argoproj.io/sync-wave: '9'}"));
  tasks.push_back(Obj("ConfigMap", "weighted", "{helm.sh/hook-weight: '2'}"));
  tasks.push_back(Obj("Job", "post-b", "{helm.sh/hook: post-install, helm.sh/hook-weight: '1'}"));
  tasks.push_back(Obj("Job", "post-a", "{helm.sh/hook: post-install}"));
  tasks.push_back(Obj("Deployment", "web"));
  SyncPlan plan = Plan(std::move(tasks));
  EXPECT_EQ(Names(plan), (std::vector<std::string>{
                             "PreSync hooks, wave -5: Job/b-early",
                             "PreSync hooks, wave 5: Job/a-late",
                             "PreSync hooks, wave 9: Job/c-wins",
                             "wave 0: Deployment/web",
                             "wave 2: ConfigMap/weighted",
                             "PostSync hooks, wave 0: Job/post-a",
                             "PostSync hooks, wave 1: Job/post-b",
                         }));

  Task bad;
  auto docs = value::ParseYaml("apiVersion: v1\nkind: Pod\nmetadata: {name: x, annotations: "
                               "{helm.sh/hook: pre-install, helm.sh/hook-weight: heavy}}\n", "chart.yaml");
  bad.object = (*docs)[0];
  Status s = ReadAnnotations(bad.object, bad);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("helm.sh/hook-weight"), std::string::npos) << s.message();
}

// Helm test hooks failed the whole sync with "unknown hook".
TEST(Plan, HelmTestHooksAreSkippedUnlessTheyAlsoNameARealPhase) {
  std::vector<Task> tasks;
  tasks.push_back(Obj("Pod", "test-connection", "{helm.sh/hook: test}"));
  tasks.push_back(Obj("Pod", "legacy-success", "{helm.sh/hook: test-success}"));
  tasks.push_back(Obj("Pod", "legacy-failure", "{helm.sh/hook: test-failure}"));
  tasks.push_back(Obj("Job", "both", "{helm.sh/hook: 'test,post-install'}"));
  tasks.push_back(Obj("Deployment", "web"));
  SyncPlan plan = Plan(std::move(tasks));
  EXPECT_EQ(Names(plan), (std::vector<std::string>{"wave 0: Deployment/web", "PostSync hooks: Job/both"}));
  std::vector<std::string> skipped;
  for (const Task& t : plan.skipped) skipped.push_back(t.ref.name);
  EXPECT_EQ(skipped, (std::vector<std::string>{"test-connection", "legacy-success", "legacy-failure"}));
  EXPECT_EQ(plan.skipped[0].hook, HookPhase::kSkipped);
}

// Argo CD's hook Skip was applied as a plain object, and Helm's delete and rollback hooks failed the
// sync with "unknown hook"; a sync runs neither.
TEST(Plan, SkipAndHelmDeleteOrRollbackHooksAreSkippedWithAReason) {
  std::vector<Task> tasks;
  tasks.push_back(Obj("ConfigMap", "local-only", "{argocd.argoproj.io/hook: Skip}"));
  tasks.push_back(Obj("Job", "cleanup", "{helm.sh/hook: pre-delete}"));
  tasks.push_back(Obj("Job", "undo", "{helm.sh/hook: 'post-rollback,pre-upgrade'}"));
  tasks.push_back(Obj("Deployment", "web"));
  SyncPlan plan = Plan(std::move(tasks));
  EXPECT_EQ(Names(plan), (std::vector<std::string>{"PreSync hooks: Job/undo", "wave 0: Deployment/web"}));
  ASSERT_EQ(plan.skipped.size(), 2u);
  EXPECT_EQ(plan.skipped[0].skip_reason, "annotation argocd.argoproj.io/hook: Skip: never applied");
  EXPECT_EQ(plan.skipped[1].skip_reason, "a Helm pre-delete hook: a sync runs no delete or rollback hooks");

  // Helm's hook names mean nothing under Argo CD's annotation: a typo there is still an error.
  auto argo = value::ParseYaml("apiVersion: batch/v1\nkind: Job\nmetadata: {name: x, annotations: "
                               "{argocd.argoproj.io/hook: pre-delete}}\n");
  ASSERT_TRUE(argo.ok());
  Task t;
  t.object = (*argo)[0];
  EXPECT_EQ(ReadAnnotations(t.object, t).code(), Code::kInvalidArgument);
}

TEST(ReadAnnotations, MalformedValuesNameTheAnnotationAndPosition) {
  auto docs = value::ParseYaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations:\n"
                               "    gantry.dev/sync-wave: soon\n", "app/cm.yaml");
  ASSERT_TRUE(docs.ok());
  Task t;
  t.object = (*docs)[0];
  Status s = ReadAnnotations(t.object, t);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("app/cm.yaml:6:27"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("gantry.dev/sync-wave"), std::string::npos);

  auto hook = value::ParseYaml("apiVersion: v1\nkind: Pod\nmetadata: {name: x, annotations: {argocd.argoproj.io/hook: Sometimes}}\n");
  Task h;
  h.object = (*hook)[0];
  EXPECT_EQ(ReadAnnotations(h.object, h).code(), Code::kInvalidArgument);
}

TEST(KindOrder, WorkloadsAfterTheirDependencies) {
  EXPECT_LT(KindOrder("Namespace"), KindOrder("ServiceAccount"));
  EXPECT_LT(KindOrder("Secret"), KindOrder("Deployment"));
  EXPECT_LT(KindOrder("ConfigMap"), KindOrder("Deployment"));
  EXPECT_LT(KindOrder("ClusterRole"), KindOrder("RoleBinding"));
  EXPECT_LT(KindOrder("Service"), KindOrder("Deployment"));
  EXPECT_LT(KindOrder("Deployment"), KindOrder("SomethingCustom"));
}

}  // namespace
}  // namespace gantry::sync
