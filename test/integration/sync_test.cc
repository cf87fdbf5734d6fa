// The sync engine against a real control plane (etcd, apiserver, controller-manager, scheduler and
// kwok): create, update, no-op, prune, CRDs, namespaces, waves and hooks, conflicts, health, and bad
// input.

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "kube/kube.h"
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

}  // namespace
}  // namespace gantry::sync
