// Argo CD's sync options against a real control plane (etcd, apiserver, controller-manager, kwok):
// each option that changes what reaches the cluster, on the object annotation or as an
// application's option (docs/argo-cd-compatibility.md).

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
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

class SyncOptionsTest : public ::testing::Test {
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
      s.error = op.status();
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

  static std::string At(const kube::ObjectRef& ref, std::initializer_list<Value::PathElem> path) {
    auto got = client().Get(ref);
    return got.ok() ? value::StringAt(&*got, path) : "";
  }

  static const ObjectResult* Result(const State& s, std::string_view kind, std::string_view name) {
    for (const auto& r : s.results) {
      if (r.ref.kind == kind && r.ref.name == name) return &r;
    }
    return nullptr;
  }

  // Waits (bounded) until `pred` holds.
  static bool Eventually(const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return pred();
  }

  static inline kube::Client* client_ = nullptr;
};

std::string ConfigMap(std::string_view name, std::string_view color, std::string_view options) {
  return fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  annotations: "
                     "{{argocd.argoproj.io/sync-options: {:?}}}\ndata: {{color: {}}}\n",
                     name, options, color);
}

TEST_F(SyncOptionsTest, ReplaceCreatesThenReplacesAndWithForceRecreates) {
  Options o = Opts("replacer", "replacer");
  kube::ObjectRef cm{"v1", "ConfigMap", "replacer", "settings"};
  State first = Sync(Yaml(ConfigMap("settings", "blue", "Replace=true")), o);
  ASSERT_EQ(first.phase, Phase::kSucceeded) << first.message;
  std::string uid = At(cm, {"metadata", "uid"});
  ASSERT_FALSE(uid.empty());

  State second = Sync(Yaml(ConfigMap("settings", "red", "Replace=true")), o);
  ASSERT_EQ(second.phase, Phase::kSucceeded) << second.message;
  EXPECT_EQ(At(cm, {"data", "color"}), "red");
  EXPECT_EQ(At(cm, {"metadata", "uid"}), uid) << "a replace keeps the object";
  // Written with PUT, not server-side apply: no Apply entry of field manager gantry.
  auto live = client().Get(cm);
  ASSERT_TRUE(live.ok());
  for (const Value& e : live->Find({"metadata", "managedFields"})->items()) {
    EXPECT_NE(value::StringAt(&e, {"operation"}), "Apply") << value::ToJson(e);
  }

  State forced = Sync(Yaml(ConfigMap("settings", "green", "Replace=true,Force=true")), o);
  ASSERT_EQ(forced.phase, Phase::kSucceeded) << forced.message;
  EXPECT_EQ(At(cm, {"data", "color"}), "green");
  EXPECT_NE(At(cm, {"metadata", "uid"}), uid) << "Replace=true,Force=true deletes and recreates";
}

TEST_F(SyncOptionsTest, ForceRecreatesWhenAnImmutableFieldChanges) {
  auto job = [](std::string_view image, std::string_view options) {
    return fmt::format(R"(apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {{argocd.argoproj.io/sync-options: "{}"}}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: m, image: "{}"}}]
)", options, image);
  };
  Options o = Opts("forcer", "forcer");
  kube::ObjectRef ref{"batch/v1", "Job", "forcer", "migrate"};
  ASSERT_EQ(Sync(Yaml(job("busybox:1", "Validate=true")), o).phase, Phase::kSucceeded);
  std::string uid = At(ref, {"metadata", "uid"});
  // A Job's template is immutable: without Force the apply is refused.
  State refused = Sync(Yaml(job("busybox:2", "Validate=true")), o);
  ASSERT_EQ(refused.phase, Phase::kFailed);
  EXPECT_NE(refused.message.find("immutable"), std::string::npos) << refused.message;
  State forced = Sync(Yaml(job("busybox:2", "Force=true")), o);
  ASSERT_EQ(forced.phase, Phase::kSucceeded) << forced.message;
  EXPECT_NE(At(ref, {"metadata", "uid"}), uid);
  auto live = client().Get(ref);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(value::StringAt(&*live, {"spec", "template", "spec", "containers", 0, "image"}), "busybox:2");
}

// Validate=false is sent as fieldValidation=Ignore, but the apiserver's server-side apply refuses
// a field the schema does not declare whatever fieldValidation says (kube-apiserver 1.36): the sync
// fails naming the field, with or without the option. docs/argo-cd-compatibility.md says so.
TEST_F(SyncOptionsTest, UnknownFieldsFailTheSyncByNameEvenWithValidateFalse) {
  // A custom resource with a field its schema does not declare.
  const char* app = R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: knobs.validate.example.org}
spec:
  group: validate.example.org
  scope: Namespaced
  names: {plural: knobs, singular: knob, kind: Knob}
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
apiVersion: validate.example.org/v1
kind: Knob
metadata:
  name: k
  annotations: {argocd.argoproj.io/sync-options: %s}
spec: {size: 1, colour: blue}
)";
  Options o = Opts("validate", "validate");
  std::string strict = app;
  strict.replace(strict.find("%s"), 2, "Validate=true");
  State refused = Sync(Yaml(strict), o);
  ASSERT_EQ(refused.phase, Phase::kFailed);
  EXPECT_NE(refused.message.find("colour"), std::string::npos) << refused.message;

  std::string loose = app;
  loose.replace(loose.find("%s"), 2, "Validate=false");
  State still = Sync(Yaml(loose), o);
  ASSERT_EQ(still.phase, Phase::kFailed);
  EXPECT_NE(still.message.find(".spec.colour: field not declared in schema"), std::string::npos) << still.message;
}

TEST_F(SyncOptionsTest, PrunePropagationOrphanLeavesTheDependents) {
  const char* deploy = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: keep}
data: {a: b}
)";
  Options o = Opts("orphans", "orphans");
  o.prune = true;
  o.wait_for_health = true;
  ASSERT_EQ(Sync(Yaml(deploy), o).phase, Phase::kSucceeded);
  auto sets = [] {
    auto l = client().List("apps/v1", "ReplicaSet", "orphans", {.label_selector = "app=web"});
    return l.ok() ? l->items.size() : size_t{0};
  };
  ASSERT_TRUE(Eventually([&] { return sets() == 1; }));
  Options orphan = o;
  ASSERT_TRUE(ReadSyncOptions({"PrunePropagationPolicy=orphan"}, "test", orphan, nullptr).ok());
  State pruned = Sync(Yaml(std::string(deploy).substr(std::string(deploy).find("---") + 4)), orphan);
  ASSERT_EQ(pruned.phase, Phase::kSucceeded) << pruned.message;
  EXPECT_TRUE(Eventually([] {
    return client().Get({"apps/v1", "Deployment", "orphans", "web"}).status().code() == Code::kNotFound;
  }));
  // The ReplicaSet stays, without its owner.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(sets(), 1u);
}

TEST_F(SyncOptionsTest, PruneConfirmWaitsForAnApprovalNewerThanThePendingPrune) {
  Options o = Opts("confirm", "confirm");
  o.prune = true;
  std::string both = ConfigMap("critical", "blue", "Prune=confirm") + "---\n" + ConfigMap("other", "x", "Prune=true");
  ASSERT_EQ(Sync(Yaml(both), o).phase, Phase::kSucceeded);
  kube::ObjectRef critical{"v1", "ConfigMap", "confirm", "critical"};
  const std::string only_other = ConfigMap("other", "x", "Prune=true");

  auto before = std::chrono::system_clock::now() - std::chrono::seconds(5);
  State waiting = Sync(Yaml(only_other), o);
  ASSERT_EQ(waiting.phase, Phase::kSucceeded) << waiting.message;
  const ObjectResult* r = Result(waiting, "ConfigMap", "critical");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->action, Action::kPruneSkipped);
  EXPECT_NE(r->message.find("waiting for confirmation"), std::string::npos) << r->message;
  EXPECT_FALSE(At(critical, {"metadata", "annotations", kPrunePendingAnnotation}).empty());

  // An approval older than the pending prune does not count.
  o.prune_approved_at = before;
  ASSERT_EQ(Sync(Yaml(only_other), o).phase, Phase::kSucceeded);
  EXPECT_TRUE(client().Get(critical).ok());

  o.prune_approved_at = std::chrono::system_clock::now() + std::chrono::seconds(1);
  State approved = Sync(Yaml(only_other), o);
  ASSERT_EQ(approved.phase, Phase::kSucceeded) << approved.message;
  EXPECT_EQ(client().Get(critical).status().code(), Code::kNotFound);
  r = Result(approved, "ConfigMap", "critical");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->action, Action::kPrune);
}

TEST_F(SyncOptionsTest, CreateNamespaceAppliesAndUpdatesManagedNamespaceMetadata) {
  Options o = Opts("nsmeta", "nsmeta");
  o.namespace_labels = {{"team", "shop"}, {"tier", "gold"}};
  o.namespace_annotations = {{"owner", "ops@example.com"}};
  ASSERT_EQ(Sync(Yaml(ConfigMap("c", "blue", "Prune=true")), o).phase, Phase::kSucceeded);
  kube::ObjectRef ns{"v1", "Namespace", "", "nsmeta"};
  EXPECT_EQ(At(ns, {"metadata", "labels", "team"}), "shop");
  EXPECT_EQ(At(ns, {"metadata", "labels", "tier"}), "gold");
  EXPECT_EQ(At(ns, {"metadata", "annotations", "owner"}), "ops@example.com");
  std::string rv = At(ns, {"metadata", "resourceVersion"});

  // Unchanged: not written again.
  ASSERT_EQ(Sync(Yaml(ConfigMap("c", "blue", "Prune=true")), o).phase, Phase::kSucceeded);
  EXPECT_EQ(At(ns, {"metadata", "resourceVersion"}), rv);

  // Changed and removed entries follow.
  o.namespace_labels = {{"team", "checkout"}};
  ASSERT_EQ(Sync(Yaml(ConfigMap("c", "blue", "Prune=true")), o).phase, Phase::kSucceeded);
  EXPECT_EQ(At(ns, {"metadata", "labels", "team"}), "checkout");
  EXPECT_EQ(At(ns, {"metadata", "labels", "tier"}), "");
  EXPECT_EQ(At(ns, {"metadata", "annotations", "owner"}), "ops@example.com");
}

TEST_F(SyncOptionsTest, RespectIgnoreDifferencesKeepsTheIgnoredLiveValue) {
  auto deploy = [](std::string_view image) {
    return fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "{}"}}]
)", image);
  };
  Options o = Opts("respect", "respect");
  o.diff.ignore = {{.group = "apps", .kind = "Deployment", .json_pointers = {"/spec/replicas"}}};
  ASSERT_EQ(Sync(Yaml(deploy("registry.k8s.io/pause:3.10")), o).phase, Phase::kSucceeded);
  kube::ObjectRef ref{"apps/v1", "Deployment", "respect", "web"};
  // An autoscaler (another field manager) scales it to 3.
  Value scale = Yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: respect}\n"
                     "spec: {replicas: 3}\n")[0];
  ASSERT_TRUE(client().Apply(scale, {.field_manager = "autoscaler", .force = true}).ok());

  // Without the option the sync sets replicas back to 1 (Gantry's own object: drift is corrected).
  Options plain = o;
  plain.force_owned = true;
  // With it, the image changes and the replicas stay.
  ASSERT_TRUE(ReadSyncOptions({"RespectIgnoreDifferences=true"}, "test", o, nullptr).ok());
  o.force_owned = true;
  State s = Sync(Yaml(deploy("registry.k8s.io/pause:3.9")), o);
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  auto live = client().Get(ref);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(value::IntAt(&*live, {"spec", "replicas"}), 3);
  EXPECT_EQ(value::StringAt(&*live, {"spec", "template", "spec", "containers", 0, "image"}),
            "registry.k8s.io/pause:3.9");

  State reverted = Sync(Yaml(deploy("registry.k8s.io/pause:3.10")), plain);
  ASSERT_EQ(reverted.phase, Phase::kSucceeded) << reverted.message;
  auto after = client().Get(ref);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(value::IntAt(&*after, {"spec", "replicas"}), 1);
}

TEST_F(SyncOptionsTest, SkipDryRunOnMissingResourceAcceptsAKindNotServedYet) {
  const char* gadget = R"(apiVersion: example.org/v1
kind: Gadget
metadata:
  name: g
  annotations: {argocd.argoproj.io/sync-options: %s}
spec: {size: 1}
)";
  std::string plain = gadget;
  plain.replace(plain.find("%s"), 2, "Validate=true");
  Options o = Opts("gadgets", "gadgets");
  State refused = Sync(Yaml(plain), o);
  ASSERT_EQ(refused.phase, Phase::kFailed);
  EXPECT_NE(refused.message.find("SkipDryRunOnMissingResource"), std::string::npos) << refused.message;

  std::string skip = gadget;
  skip.replace(skip.find("%s"), 2, "SkipDryRunOnMissingResource=true");
  Options dry = o;
  dry.dry_run = true;
  State planned = Sync(Yaml(skip), dry);
  ASSERT_EQ(planned.phase, Phase::kSucceeded) << planned.message;
  const ObjectResult* r = Result(planned, "Gadget", "g");
  ASSERT_NE(r, nullptr);
  EXPECT_NE(r->message.find("does not serve"), std::string::npos) << r->message;

  // Another application installs the CRD; the same sync then applies the object.
  State crd = Sync(Yaml(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.org}
spec:
  group: example.org
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
)"), Opts("gadget-crd", "gadgets"));
  ASSERT_EQ(crd.phase, Phase::kSucceeded) << crd.message;
  ASSERT_TRUE(Eventually([] {
    client().InvalidateDiscovery();
    return client().Resolve("example.org/v1", "Gadget").ok();
  }));
  State applied = Sync(Yaml(skip), o);
  ASSERT_EQ(applied.phase, Phase::kSucceeded) << applied.message;
  EXPECT_EQ(At({"example.org/v1", "Gadget", "gadgets", "g"}, {"metadata", "name"}), "g");
}

TEST_F(SyncOptionsTest, FailOnSharedResourceNamesTheObjectAndTheOtherApplication) {
  ASSERT_EQ(Sync(Yaml(ConfigMap("shared", "blue", "Prune=true")), Opts("owner", "shared")).phase, Phase::kSucceeded);
  Options other = Opts("intruder", "shared");
  ASSERT_TRUE(ReadSyncOptions({"FailOnSharedResource=true"}, "test", other, nullptr).ok());
  State s = Sync(Yaml(ConfigMap("shared", "red", "Prune=true")), other);
  ASSERT_EQ(s.phase, Phase::kFailed);
  EXPECT_NE(s.message.find("ConfigMap shared/shared"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("owner"), std::string::npos) << s.message;
  EXPECT_EQ(At({"v1", "ConfigMap", "shared", "shared"}, {"data", "color"}), "blue");
}

TEST_F(SyncOptionsTest, AnUnknownOptionOnAnObjectFailsTheSyncByName) {
  State s = Sync(Yaml(ConfigMap("typo", "blue", "Prune=false,Replcae=true")), Opts("typo", "typo"));
  ASSERT_EQ(s.phase, Phase::kFailed);
  EXPECT_NE(s.message.find("unknown sync option \"Replcae=true\""), std::string::npos) << s.message;
  EXPECT_EQ(client().Get({"v1", "ConfigMap", "typo", "typo"}).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry::sync
