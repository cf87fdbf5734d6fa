// The sync engine against a real control plane (etcd, apiserver, controller-manager, scheduler and
// kwok): create, update, no-op, prune, CRDs, namespaces, waves and hooks, conflicts, health, and bad
// input.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "kube/kube.h"
#include "render/render.h"
#include "sync/sync.h"
#include "test/env/testenv.h"

namespace gantry::sync {
namespace {

using value::Value;

std::vector<Value> Yaml(std::string_view text, std::string_view file = "app.yaml") {
  auto docs = value::ParseYaml(text, file);
  GANTRY_CHECK(docs.ok());
  return *docs;
}

class SyncTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    auto config = kube::LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
  }
  static void TearDownTestSuite() { delete client_; }
  static kube::Client& client() { return *client_; }

  static State Sync(std::vector<Value> objects, Options options) {
    auto op = Operation::Create(client(), std::move(objects), std::move(options));
    if (!op.ok()) {
      State s;
      s.phase = Phase::kFailed;
      s.message = op.status().message();
      return s;
    }
    return (*op)->Run();
  }

  static Options Opts(const std::string& app, const std::string& ns) {
    Options o;
    o.app = app;
    o.default_namespace = ns;
    o.create_namespace = true;
    o.timeout = std::chrono::seconds(90);
    return o;
  }

  static std::string ResourceVersion(const kube::ObjectRef& ref) {
    auto got = client().Get(ref);
    return got.ok() ? std::string(got->Find({"metadata", "resourceVersion"})->AsString()) : "";
  }

  static inline kube::Client* client_ = nullptr;
};

constexpr char kApp[] = R"(apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/pause:3.10
        resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
)";

TEST_F(SyncTest, CreateThenNoOpThenUpdate) {
  Options o = Opts("shop", "shop");
  o.wait_for_health = true;
  State first = Sync(Yaml(kApp), o);
  ASSERT_EQ(first.phase, Phase::kSucceeded) << first.message;
  for (const auto& r : first.results) {
    EXPECT_EQ(r.action, Action::kCreate) << r.ref.ToString();
    EXPECT_EQ(r.health.status, health::HealthStatus::kHealthy) << r.ref.ToString() << " " << r.health.message;
  }
  kube::ObjectRef deploy{"apps/v1", "Deployment", "shop", "web"};
  kube::ObjectRef cm{"v1", "ConfigMap", "shop", "settings"};
  kube::ObjectRef inventory{"v1", "ConfigMap", "shop", "gantry-inventory-shop"};
  std::string rv_deploy = ResourceVersion(deploy), rv_cm = ResourceVersion(cm), rv_inv = ResourceVersion(inventory);
  ASSERT_FALSE(rv_inv.empty());
  auto live = client().Get(deploy);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->Find({"metadata", "labels", kAppLabel})->AsString(), "shop");
  EXPECT_EQ(live->Find({"metadata", "annotations", kTrackingAnnotation})->AsString(), "shop:apps/Deployment:shop/web");

  // A no-op re-sync writes nothing: every object is unchanged and no resourceVersion moves.
  State again = Sync(Yaml(kApp), Opts("shop", "shop"));
  ASSERT_EQ(again.phase, Phase::kSucceeded) << again.message;
  for (const auto& r : again.results) EXPECT_EQ(r.action, Action::kUnchanged) << r.ref.ToString();
  EXPECT_EQ(ResourceVersion(deploy), rv_deploy);
  EXPECT_EQ(ResourceVersion(cm), rv_cm);
  EXPECT_EQ(ResourceVersion(inventory), rv_inv);
  EXPECT_LE(again.requests, 8u) << "a no-op sync should only read: discovery, one list per kind, the inventory";

  // One changed field updates one object.
  std::string changed(kApp);
  changed.replace(changed.find("color: blue"), 11, "color: red");
  State update = Sync(Yaml(changed), Opts("shop", "shop"));
  ASSERT_EQ(update.phase, Phase::kSucceeded) << update.message;
  int updated = 0;
  for (const auto& r : update.results) updated += r.action == Action::kUpdate;
  EXPECT_EQ(updated, 1);
  EXPECT_EQ(client().Get(cm)->Find({"data", "color"})->AsString(), "red");
  EXPECT_EQ(ResourceVersion(deploy), rv_deploy);
}

TEST_F(SyncTest, PruneDeletesWhatIsNoLongerRenderedButNeverOnAnEmptyRender) {
  Options o = Opts("pruner", "pruner");
  o.prune = true;
  ASSERT_EQ(Sync(Yaml(kApp), o).phase, Phase::kSucceeded);
  // Drop the Service from the render.
  std::string without(kApp);
  without = without.substr(0, without.rfind("---"));
  State pruned = Sync(Yaml(without), o);
  ASSERT_EQ(pruned.phase, Phase::kSucceeded) << pruned.message;
  EXPECT_EQ(client().Get({"v1", "Service", "pruner", "web"}).status().code(), Code::kNotFound);
  bool saw = false;
  for (const auto& r : pruned.results) saw |= r.action == Action::kPrune && r.ref.kind == "Service";
  EXPECT_TRUE(saw);

  // An empty render prunes nothing unless allowed.
  State empty = Sync({}, o);
  EXPECT_EQ(empty.phase, Phase::kFailed);
  EXPECT_NE(empty.message.find("render is empty"), std::string::npos) << empty.message;
  EXPECT_TRUE(client().Get({"apps/v1", "Deployment", "pruner", "web"}).ok());

  // An object annotated prune: disabled stays.
  auto cm = client().Get({"v1", "ConfigMap", "pruner", "settings"});
  ASSERT_TRUE(cm.ok());
  Value patch = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: pruner, annotations: {gantry.dev/prune: disabled}}\n")[0];
  ASSERT_TRUE(client().Apply(patch, {.field_manager = "ops"}).ok());
  std::string only_deploy = Yaml(without)[1].IsMap() ? value::ToYaml(Yaml(without)[1]) : "";
  State keep = Sync(Yaml(only_deploy), o);
  ASSERT_EQ(keep.phase, Phase::kSucceeded) << keep.message;
  EXPECT_TRUE(client().Get({"v1", "ConfigMap", "pruner", "settings"}).ok());
}

TEST_F(SyncTest, CrdAndItsCustomResourcesInOneSync) {
  State s = Sync(Yaml(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: small}
spec: {size: 3}
)"), Opts("widgets", "widgets"));
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  auto w = client().Get({"example.com/v1", "Widget", "widgets", "small"});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->Find({"spec", "size"})->AsInt(), 3);
}

TEST_F(SyncTest, WavesAndHooksRunInOrder) {
  // A PreSync Job, two waves and a PostSync Job; each hook records the time it ran as a label on a
  // ConfigMap created by the engine, and resourceVersions show the order.
  State s = Sync(Yaml(R"(apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: HookSucceeded}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: second, annotations: {gantry.dev/sync-wave: "1"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: first, annotations: {gantry.dev/sync-wave: "-1"}}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  annotations: {gantry.dev/hook: PostSync}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: s, image: registry.k8s.io/pause:3.10}]
)"), Opts("ordered", "ordered"));
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  std::vector<std::string> order;
  for (const auto& r : s.results) order.push_back(r.ref.kind + "/" + r.ref.name);
  EXPECT_EQ(order, (std::vector<std::string>{"Job/migrate", "ConfigMap/first", "ConfigMap/second", "Job/smoke"}));
  auto rv = [&](const std::string& name) { return std::stoll(ResourceVersion({"v1", "ConfigMap", "ordered", name})); };
  EXPECT_LT(rv("first"), rv("second"));
  // HookSucceeded deleted the PreSync Job; the PostSync Job (default BeforeHookCreation) stays.
  EXPECT_EQ(client().Get({"batch/v1", "Job", "ordered", "migrate"}).status().code(), Code::kNotFound);
  EXPECT_TRUE(client().Get({"batch/v1", "Job", "ordered", "smoke"}).ok());
}

TEST_F(SyncTest, ConflictWithAnotherFieldManagerIsReportedClearly) {
  ASSERT_EQ(Sync(Yaml(kApp), Opts("conflict", "conflict")).phase, Phase::kSucceeded);
  Value edit = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: conflict}\ndata: {color: green}\n")[0];
  ASSERT_TRUE(client().Apply(edit, {.field_manager = "kubectl-edit", .force = true}).ok());
  std::string changed(kApp);
  changed.replace(changed.find("color: blue"), 11, "color: pink");
  State s = Sync(Yaml(changed), Opts("conflict", "conflict"));
  ASSERT_EQ(s.phase, Phase::kFailed);
  EXPECT_NE(s.message.find("v1 ConfigMap conflict/settings"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("kubectl-edit"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find(".data.color"), std::string::npos) << s.message;
  Options force = Opts("conflict", "conflict");
  force.force = true;
  EXPECT_EQ(Sync(Yaml(changed), force).phase, Phase::kSucceeded);
}

TEST_F(SyncTest, MalformedManifestsAreReportedWithFileAndLineAndNothingIsApplied) {
  auto objects = Yaml(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: fine}
---
apiVersion: v1
kind: Widgett
metadata: {name: typo}
)", "bad/app.yaml");
  State s = Sync(objects, Opts("malformed", "malformed"));
  EXPECT_EQ(s.phase, Phase::kFailed);
  EXPECT_NE(s.message.find("bad/app.yaml:5:1"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("Widgett"), std::string::npos) << s.message;
  EXPECT_EQ(client().Get({"v1", "ConfigMap", "malformed", "fine"}).status().code(), Code::kNotFound);

  State bad_version = Sync(Yaml("apiVersion: apps/v1/extra\nkind: Deployment\nmetadata: {name: x}\n", "v.yaml"),
                           Opts("malformed", "malformed"));
  EXPECT_EQ(bad_version.phase, Phase::kFailed);
  EXPECT_NE(bad_version.message.find("v.yaml:1:1"), std::string::npos) << bad_version.message;

  // A field the server rejects fails the sync, naming the object, the field and the file.
  State invalid = Sync(Yaml("apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports: [{port: 99999}]\n",
                            "svc.yaml"),
                       Opts("malformed", "malformed"));
  EXPECT_EQ(invalid.phase, Phase::kFailed);
  EXPECT_NE(invalid.message.find("spec.ports[0].port"), std::string::npos) << invalid.message;
  EXPECT_NE(invalid.message.find("svc.yaml:1:1"), std::string::npos) << invalid.message;
}

TEST_F(SyncTest, DryRunChangesNothing) {
  Options o = Opts("dry", "dry");
  o.dry_run = true;
  o.create_namespace = false;
  ASSERT_TRUE(client().Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: dry}\n")[0]).ok());
  State s = Sync(Yaml(kApp), o);
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  EXPECT_EQ(client().Get({"apps/v1", "Deployment", "dry", "web"}).status().code(), Code::kNotFound);
}

// The Jobs of a namespace whose name starts with `prefix`, not being deleted.
std::vector<std::string> Jobs(kube::Client& client, const std::string& ns, std::string_view prefix) {
  std::vector<std::string> out;
  auto list = client.List("batch/v1", "Job", ns);
  GANTRY_CHECK(list.ok());
  for (const Value& job : list->items) {
    std::string name = value::StringAt(&job, {"metadata", "name"});
    if (name.starts_with(prefix) && job.Find({"metadata", "deletionTimestamp"}) == nullptr) out.push_back(name);
  }
  return out;
}

constexpr char kGenerateNameHook[] = R"(apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations: {{helm.sh/hook: pre-install{}}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: m, image: registry.k8s.io/pause:3.10}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
)";

// Argo CD and Helm hook Jobs are usually written with metadata.generateName; sync and diff refused
// them ("object needs apiVersion, kind and metadata.name").
TEST_F(SyncTest, GenerateNameHooksAreCreatedTrackedAndReplacedByTheNextRun) {
  Options o = Opts("generated", "generated");
  State first = Sync(Yaml(fmt::format(kGenerateNameHook, "")), o);
  ASSERT_EQ(first.phase, Phase::kSucceeded) << first.message;
  ASSERT_EQ(first.results.size(), 2u);
  std::string run = first.results[0].ref.name;
  EXPECT_TRUE(run.starts_with("migrate-") && run.size() > 8) << run;
  EXPECT_EQ(first.results[0].health.status, health::HealthStatus::kHealthy) << first.results[0].health.message;
  EXPECT_EQ(Jobs(client(), "generated", "migrate-"), std::vector<std::string>{run});

  // diff shows the hook as one the sync will create, and is clean otherwise.
  auto diff = Diff(client(), Yaml(fmt::format(kGenerateNameHook, "")), o, false);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  ASSERT_EQ(diff->size(), 2u);
  EXPECT_EQ((*diff)[0].status, diff::SyncStatus::kSynced);
  EXPECT_EQ((*diff)[1].hook, HookPhase::kPreSync);
  EXPECT_NE((*diff)[1].text.find("will be created"), std::string::npos) << (*diff)[1].text;

  // The default BeforeHookCreation deletes the earlier run before the new one is created.
  State second = Sync(Yaml(fmt::format(kGenerateNameHook, "")), o);
  ASSERT_EQ(second.phase, Phase::kSucceeded) << second.message;
  std::string run2 = second.results[0].ref.name;
  EXPECT_NE(run2, run);
  EXPECT_EQ(Jobs(client(), "generated", "migrate-"), std::vector<std::string>{run2});

  // hook-succeeded deletes the run once it has succeeded.
  State third = Sync(Yaml(fmt::format(kGenerateNameHook, ", helm.sh/hook-delete-policy: hook-succeeded")), o);
  ASSERT_EQ(third.phase, Phase::kSucceeded) << third.message;
  EXPECT_NE(third.results[0].ref.name, run2);
  EXPECT_EQ(Jobs(client(), "generated", "migrate-"), std::vector<std::string>{run2});
}

// A chart as Helm renders it: test hooks failed the sync ("unknown hook"), hook weights were
// ignored, and a RoleList was refused ("object has no metadata").
TEST_F(SyncTest, HelmTestHooksAreSkippedWeightsOrderHooksAndListsAreExpanded) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("gantry-sync-chart-{}", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "chart.yaml") << R"(apiVersion: v1
kind: Pod
metadata:
  name: web-test-connection
  annotations: {helm.sh/hook: test}
spec:
  containers: [{name: wget, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
  annotations: {helm.sh/hook: pre-install, helm.sh/hook-weight: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: first
  annotations: {helm.sh/hook: pre-install, helm.sh/hook-weight: "-1"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleList
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: reader}
  rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
)";
  auto manifests = render::RenderPlain(dir);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(manifests.ok()) << manifests.status().ToString();
  std::vector<Value> objects;
  for (auto& m : *manifests) objects.push_back(std::move(m.object));
  State s = Sync(std::move(objects), Opts("chart", "chart"));
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  std::vector<std::string> order;
  for (const auto& r : s.results) order.push_back(fmt::format("{} {}/{}", Name(r.action), r.ref.kind, r.ref.name));
  EXPECT_EQ(order, (std::vector<std::string>{"skipped Pod/web-test-connection", "hook ConfigMap/first",
                                             "hook ConfigMap/second", "created Role/reader"}));
  EXPECT_EQ(client().Get({"v1", "Pod", "chart", "web-test-connection"}).status().code(), Code::kNotFound);
  EXPECT_LT(std::stoll(ResourceVersion({"v1", "ConfigMap", "chart", "first"})),
            std::stoll(ResourceVersion({"v1", "ConfigMap", "chart", "second"})));
  EXPECT_TRUE(client().Get({"rbac.authorization.k8s.io/v1", "Role", "chart", "reader"}).ok());
}

// A dry run of a first install failed with "namespaces ... not found" for objects in a namespace
// the same sync creates, and "does not serve kind" for custom resources of a CRD it creates.
TEST_F(SyncTest, DryRunOfAFirstInstallReportsWhatDependsOnNamespacesAndCrdsItCreates) {
  Options o = Opts("firstdry", "firstdry");  // create_namespace: the destination namespace is missing too
  o.dry_run = true;
  State s = Sync(Yaml(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.org}
spec:
  group: example.org
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: example.org/v1
kind: Gadget
metadata: {name: g}
spec: {size: 1}
---
apiVersion: v1
kind: Namespace
metadata: {name: firstdry-extra}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: there, namespace: firstdry-extra}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: here}
---
apiVersion: batch/v1
kind: Job
metadata:
  generateName: init-
  annotations: {argocd.argoproj.io/hook: PreSync}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: validated, namespace: default}
data: {a: b}
)"), o);
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  std::map<std::string, std::string> messages;
  for (const auto& r : s.results) {
    EXPECT_FALSE(r.failed) << r.ref.ToString() << ": " << r.message;
    messages[r.ref.kind + "/" + r.ref.name] = r.message;
  }
  EXPECT_EQ(messages["Gadget/g"],
            "would be created (not validated by the server: CRD gadgets.example.org is created by this sync)");
  EXPECT_EQ(messages["ConfigMap/there"],
            "would be created (not validated by the server: namespace firstdry-extra is created by this sync)");
  EXPECT_EQ(messages["ConfigMap/here"],
            "would be created (not validated by the server: namespace firstdry is created by this sync)");
  EXPECT_EQ(messages["Job/init-*"],
            "would be created (not validated by the server: namespace firstdry is created by this sync)");
  EXPECT_EQ(messages["ConfigMap/validated"], "dry run") << "what the server can validate still is";
  EXPECT_EQ(client().Get({"v1", "Namespace", "", "firstdry-extra"}).status().code(), Code::kNotFound);
  EXPECT_EQ(client().Get({"v1", "Namespace", "", "firstdry"}).status().code(), Code::kNotFound);
  EXPECT_EQ(client().Get({"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "gadgets.example.org"})
                .status().code(), Code::kNotFound);

  // A generateName hook in an existing namespace is created by the server in a dry run (named, not
  // persisted).
  Options existing = Opts("drygen", "default");
  existing.dry_run = true;
  State gen = Sync(Yaml(fmt::format(kGenerateNameHook, "")), existing);
  ASSERT_EQ(gen.phase, Phase::kSucceeded) << gen.message;
  EXPECT_EQ(gen.results[0].message, "dry run");
  EXPECT_TRUE(Jobs(client(), "default", "migrate-").empty());
}

}  // namespace
}  // namespace gantry::sync
