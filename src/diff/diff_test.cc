#include "diff/diff.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"

namespace gantry::diff {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using value::Value;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text);
  EXPECT_TRUE(docs.ok()) << docs.status().ToString();
  if (!docs.ok() || docs->empty()) return Value();
  return (*docs)[0];
}

Value Load(const std::string& name) {
  std::ifstream in("testdata/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "testdata/" << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return Yaml(ss.str());
}

// A pointer into `v` for editing (copy-on-write), following map keys and list indices.
Value* Mut(Value& v, std::initializer_list<Value::PathElem> path) {
  Value* node = &v;
  for (const Value::PathElem& p : path) {
    node = p.is_index ? node->MutableAt(p.index) : node->MutableGet(p.key);
    if (!node) {
      ADD_FAILURE() << "no such path";
      return nullptr;
    }
  }
  return node;
}

ObjectDiff MustCompare(const Value& desired, const Value& live, const Options& options = {}) {
  Result<ObjectDiff> r = Compare(&desired, &live, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ObjectDiff{};
}

std::string MustRender(const Value* desired, const Value* live, const RenderOptions& options = {}) {
  Result<std::string> r = RenderDiff(desired, live, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : "";
}

class DeploymentTest : public ::testing::Test {
 protected:
  Value desired_ = Load("deployment-desired.yaml");
  Value live_ = Load("deployment-live.yaml");
  // Index of the web container in live (sidecar comes first there).
  static constexpr int kLiveWeb = 1;
  static constexpr int kDesiredWeb = 0;
};

TEST_F(DeploymentTest, LiveAfterApplyIsSynced) {
  ObjectDiff d = MustCompare(desired_, live_);
  EXPECT_EQ(d.status, SyncStatus::kSynced);
  EXPECT_THAT(d.changed, IsEmpty());
  EXPECT_EQ(MustRender(&desired_, &live_), "");
}

TEST_F(DeploymentTest, ChangedImageIsOutOfSyncAndNamed) {
  *Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "image"}) =
      "ghcr.io/stefanprodan/podinfo:6.6.0";
  ObjectDiff d = MustCompare(desired_, live_);
  EXPECT_EQ(d.status, SyncStatus::kOutOfSync);
  EXPECT_THAT(d.changed, ElementsAre("/spec/template/spec/containers/name=web/image"));
}

TEST_F(DeploymentTest, ChangeInLiveIsDrift) {
  *Mut(live_, {"spec", "template", "spec", "containers", kLiveWeb, "env", 0, "value"}) = "debug";
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/spec/template/spec/containers/name=web/env/name=LOG_LEVEL/value"));
}

TEST_F(DeploymentTest, DroppingAFieldGantryOwnsIsOutOfSync) {
  Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb})->Erase("env");
  ObjectDiff d = MustCompare(desired_, live_);
  EXPECT_EQ(d.status, SyncStatus::kOutOfSync);
  EXPECT_THAT(d.changed, ElementsAre("/spec/template/spec/containers/name=web/env"));
}

TEST_F(DeploymentTest, DroppingAContainerOrALabelGantryOwnsIsOutOfSync) {
  Value containers = Value::Seq();
  containers.Append(*desired_.Find({"spec", "template", "spec", "containers", 0}));
  *Mut(desired_, {"spec", "template", "spec", "containers"}) = containers;
  Mut(desired_, {"metadata", "labels"})->Erase("app.kubernetes.io/instance");
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/metadata/labels/app.kubernetes.io~1instance",
                          "/spec/template/spec/containers/name=sidecar"));
}

TEST_F(DeploymentTest, ChangedPortIsAddedAndRemovedByKey) {
  *Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "ports", 0,
                  "containerPort"}) = 8080;
  EXPECT_THAT(
      MustCompare(desired_, live_).changed,
      ElementsAre("/spec/template/spec/containers/name=web/ports/containerPort=8080,protocol=TCP",
                  "/spec/template/spec/containers/name=web/ports/containerPort=9898,protocol=TCP"));
}

TEST_F(DeploymentTest, DroppedFieldThatAnotherManagerAlsoOwnsIsOnlyReleased) {
  // kubectl scale took co-ownership of replicas: SSA keeps the field when Gantry stops setting it.
  Value other = Yaml(R"(
apiVersion: apps/v1
fieldsType: FieldsV1
fieldsV1:
  f:spec:
    f:replicas: {}
manager: kubectl
operation: Update
)");
  Mut(desired_, {"spec"})->Erase("replicas");
  EXPECT_THAT(MustCompare(desired_, live_).changed, ElementsAre("/spec/replicas"));
  EXPECT_THAT(MustRender(&desired_, &live_), HasSubstr("\n-  replicas: 2\n"));
  Mut(live_, {"metadata", "managedFields"})->Append(other);
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_), "");
}

TEST_F(DeploymentTest, NoOwnershipCheckWithoutFieldManager) {
  Mut(desired_, {"spec"})->Erase("replicas");
  EXPECT_EQ(MustCompare(desired_, live_, {.field_manager = ""}).status, SyncStatus::kSynced);
  EXPECT_EQ(MustCompare(desired_, live_, {.field_manager = "someone-else"}).status,
            SyncStatus::kSynced);
}

TEST_F(DeploymentTest, OtherManagersFieldsAndServerDefaultsAreIgnored) {
  Mut(live_, {"metadata", "labels"})->Set("team", "payments");  // e.g. kubectl label
  Mut(live_, {"spec", "template", "spec"})->Set("priorityClassName", "high");
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
}

TEST_F(DeploymentTest, DesiredServerFieldsAndStatusAreDropped) {
  Mut(desired_, {"metadata"})->Set("resourceVersion", "1");
  Mut(desired_, {"metadata"})->Set("uid", "x");
  desired_.Set("status", Yaml("replicas: 7"));
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
}

TEST_F(DeploymentTest, UnsetAndEmptyDesiredValuesMatchAbsentLive) {
  Value* sidecar = Mut(desired_, {"spec", "template", "spec", "containers", 1});
  sidecar->Set("resources", Value::Map());
  sidecar->Set("volumeMounts", Value::Seq());
  sidecar->Set("workingDir", "");
  Mut(desired_, {"spec", "template", "spec"})->Set("hostNetwork", false);
  Mut(desired_, {"spec", "template", "spec"})->Set("securityContext", Yaml("runAsNonRoot: false"));
  Mut(desired_, {"metadata"})->Set("annotations", Value());
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_), "");
  // A non-empty value that live lacks is a difference.
  Mut(desired_, {"spec", "template", "spec"})->Set("hostNetwork", true);
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/spec/template/spec/hostNetwork"));
}

TEST_F(DeploymentTest, QuantitiesCompareByValue) {
  Value* resources = Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb,
                                    "resources"});
  *Mut(*resources, {"requests", "cpu"}) = "0.1";
  *Mut(*resources, {"requests", "memory"}) = "65536Ki";
  *Mut(*resources, {"limits", "memory"}) = "268435456";
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  *Mut(*resources, {"requests", "cpu"}) = "1000m";
  *Mut(live_, {"spec", "template", "spec", "containers", kLiveWeb, "resources", "requests",
               "cpu"}) = 1;
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  *Mut(*resources, {"limits", "memory"}) = "1Gi";
  *Mut(live_, {"spec", "template", "spec", "containers", kLiveWeb, "resources", "limits",
               "memory"}) = "1024Mi";
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_), "");
  *Mut(*resources, {"requests", "cpu"}) = "200m";
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/spec/template/spec/containers/name=web/resources/requests/cpu"));
}

TEST(CompareTest, QuantitySemanticsOnlyInQuantityFields) {
  Value desired = Yaml("kind: ConfigMap\napiVersion: v1\ndata:\n  cpu: 1000m\n");
  Value live = Yaml("kind: ConfigMap\napiVersion: v1\ndata:\n  cpu: \"1\"\n");
  EXPECT_THAT(MustCompare(desired, live).changed, ElementsAre("/data/cpu"));
  Value quota = Yaml("kind: ResourceQuota\napiVersion: v1\nspec:\n  hard:\n    pods: 1e3\n");
  Value quota_live = Yaml("kind: ResourceQuota\napiVersion: v1\nspec:\n  hard:\n    pods: 1k\n");
  EXPECT_EQ(MustCompare(quota, quota_live).status, SyncStatus::kSynced);
}

TEST_F(DeploymentTest, NumericStringsEqualNumbersOnlyInIntegerFields) {
  *Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "ports", 0,
                  "containerPort"}) = "9898";
  *Mut(desired_, {"spec", "replicas"}) = 2.0;
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kSynced);
  // maxSurge is IntOrString: "1" and 1 are different values.
  Mut(desired_, {"spec"})->Set("strategy", Yaml("rollingUpdate:\n  maxSurge: \"1\""));
  *Mut(live_, {"spec", "strategy", "rollingUpdate", "maxSurge"}) = 1;
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/spec/strategy/rollingUpdate/maxSurge"));
}

TEST(CompareTest, TargetPortStringAndIntAreDifferent) {
  Value desired = Yaml(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports:
    - port: "80"
      targetPort: "8080"
)");
  Value live = Yaml(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports:
    - port: 80
      protocol: TCP
      targetPort: 8080
)");
  EXPECT_THAT(MustCompare(desired, live).changed,
              ElementsAre("/spec/ports/port=80,protocol=TCP/targetPort"));
  *Mut(desired, {"spec", "ports", 0, "targetPort"}) = 8080;
  EXPECT_EQ(MustCompare(desired, live).status, SyncStatus::kSynced);
}

TEST(CompareTest, ProbePortIsIntOrString) {
  Value desired = Yaml("kind: Pod\napiVersion: v1\nspec:\n  httpGet:\n    port: \"8080\"\n");
  Value live = Yaml("kind: Pod\napiVersion: v1\nspec:\n  httpGet:\n    port: 8080\n");
  EXPECT_EQ(MustCompare(desired, live).status, SyncStatus::kOutOfSync);
}

TEST(CompareTest, BoolsAndStringsNeverEqual) {
  Value desired = Yaml("kind: X\napiVersion: v1\nspec:\n  a: \"true\"\n  b: 1\n");
  Value live = Yaml("kind: X\napiVersion: v1\nspec:\n  a: true\n  b: \"1\"\n");
  EXPECT_THAT(MustCompare(desired, live).changed, ElementsAre("/spec/a", "/spec/b"));
}

TEST_F(DeploymentTest, KeyedListsIgnoreOrderAtomicListsDoNot) {
  // The fixture already lists the containers in another order than desired; reversing args is a
  // real change because args is atomic.
  Value* args = Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "args"});
  Value reversed = Value::Seq();
  reversed.Append(args->items()[1]);
  reversed.Append(args->items()[0]);
  *args = reversed;
  EXPECT_THAT(MustCompare(desired_, live_).changed,
              ElementsAre("/spec/template/spec/containers/name=web/args"));
  // A longer or shorter atomic list differs too.
  args->Append("--extra");
  EXPECT_EQ(MustCompare(desired_, live_).status, SyncStatus::kOutOfSync);
}

TEST(CompareTest, SetListsNeedEachDesiredItem) {
  Value desired = Yaml("kind: X\napiVersion: v1\nmetadata:\n  finalizers: [a]\n");
  Value live = Yaml("kind: X\napiVersion: v1\nmetadata:\n  finalizers: [b, a]\n");
  EXPECT_EQ(MustCompare(desired, live).status, SyncStatus::kSynced);
  *Mut(desired, {"metadata", "finalizers", 0}) = "c";
  EXPECT_THAT(MustCompare(desired, live).changed, ElementsAre("/metadata/finalizers/c"));
}

TEST(CompareTest, MissingExtraAndNothing) {
  Value obj = Yaml("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n");
  EXPECT_EQ(MustCompare(obj, Value()).status, SyncStatus::kMissing);
  Result<ObjectDiff> r = Compare(&obj, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, SyncStatus::kMissing);
  r = Compare(nullptr, &obj);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, SyncStatus::kExtra);
  r = Compare(nullptr, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, SyncStatus::kSynced);
  EXPECT_EQ(Name(SyncStatus::kSynced), "Synced");
  EXPECT_EQ(Name(SyncStatus::kOutOfSync), "OutOfSync");
  EXPECT_EQ(Name(SyncStatus::kMissing), "Missing");
  EXPECT_EQ(Name(SyncStatus::kExtra), "Extra");
}

// The HPA case: kube-controller-manager scaled the Deployment through the scale subresource and
// took replicas over.
class HpaTest : public DeploymentTest {
 protected:
  void SetUp() override {
    *Mut(live_, {"spec", "replicas"}) = 5;
    Mut(live_, {"metadata", "managedFields"})->Append(Yaml(R"(
apiVersion: apps/v1
fieldsType: FieldsV1
fieldsV1:
  f:spec:
    f:replicas: {}
manager: kube-controller-manager
operation: Update
subresource: scale
)"));
  }
};

TEST_F(HpaTest, ReplicasDifferWithoutRule) {
  EXPECT_THAT(MustCompare(desired_, live_).changed, ElementsAre("/spec/replicas"));
}

TEST_F(HpaTest, JsonPointerRuleIgnoresReplicas) {
  Options o{.ignore = {
      {.group = "apps", .kind = "Deployment", .json_pointers = {"/spec/replicas"}}}};
  EXPECT_EQ(MustCompare(desired_, live_, o).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_, {.compare = o}), "");
  // Other changes still count.
  *Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "image"}) = "x:1";
  EXPECT_THAT(MustCompare(desired_, live_, o).changed,
              ElementsAre("/spec/template/spec/containers/name=web/image"));
}

TEST_F(HpaTest, RulesOnlyApplyToMatchingObjects) {
  for (const IgnoreRule& rule : {
           IgnoreRule{.group = "", .kind = "Deployment", .json_pointers = {"/spec/replicas"}},
           IgnoreRule{.group = "apps", .kind = "StatefulSet", .json_pointers = {"/spec/replicas"}},
           IgnoreRule{.group = "apps", .kind = "Deployment", .name = "api",
                      .json_pointers = {"/spec/replicas"}},
           IgnoreRule{.group = "apps", .kind = "Deployment", .namespace_ = "other",
                      .json_pointers = {"/spec/replicas"}},
           IgnoreRule{.group = "apps", .kind = "Deployment", .json_pointers = {"/spec/replica"}},
       }) {
    EXPECT_EQ(MustCompare(desired_, live_, {.ignore = {rule}}).status, SyncStatus::kOutOfSync)
        << rule.group << "/" << rule.kind << " " << rule.name << " " << rule.namespace_;
  }
  for (const IgnoreRule& rule : {
           IgnoreRule{.group = "*", .kind = "*", .json_pointers = {"/spec/replicas"}},
           IgnoreRule{.group = "apps", .kind = "Deployment", .name = "web",
                      .namespace_ = "podinfo", .json_pointers = {"/spec"}},
           IgnoreRule{.group = "apps", .kind = "Deployment", .json_pointers = {""}},
       }) {
    EXPECT_EQ(MustCompare(desired_, live_, {.ignore = {rule}}).status, SyncStatus::kSynced)
        << rule.group << "/" << rule.kind;
  }
}

TEST_F(HpaTest, ManagersRuleIgnoresTheirFields) {
  Options o{.ignore = {{.group = "apps", .kind = "Deployment",
                        .managers = {"kube-controller-manager"}}}};
  EXPECT_EQ(MustCompare(desired_, live_, o).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_, {.compare = o}), "");
  // A field the manager does not own still counts.
  *Mut(live_, {"spec", "template", "spec", "containers", kLiveWeb, "image"}) = "x:1";
  EXPECT_THAT(MustCompare(desired_, live_, o).changed,
              ElementsAre("/spec/template/spec/containers/name=web/image"));
}

TEST(WebhookTest, InjectedCaBundleIsIgnoredByPointerOrManager) {
  Value desired = Load("webhook-desired.yaml");
  Value live = Load("webhook-live.yaml");
  EXPECT_THAT(MustCompare(desired, live).changed,
              ElementsAre("/webhooks/name=webhook.cert-manager.io/clientConfig/caBundle"));
  IgnoreRule by_pointer{.group = "admissionregistration.k8s.io",
                        .kind = "ValidatingWebhookConfiguration",
                        .json_pointers = {"/webhooks/0/clientConfig/caBundle"}};
  EXPECT_EQ(MustCompare(desired, live, {.ignore = {by_pointer}}).status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired, &live, {.compare = {.ignore = {by_pointer}}}), "");
  IgnoreRule by_manager{.group = "admissionregistration.k8s.io",
                        .kind = "ValidatingWebhookConfiguration", .managers = {"cainjector"}};
  EXPECT_EQ(MustCompare(desired, live, {.ignore = {by_manager}}).status, SyncStatus::kSynced);
  // Without the empty caBundle in desired, nothing differs in the first place.
  Mut(desired, {"webhooks", 0, "clientConfig"})->Erase("caBundle");
  EXPECT_EQ(MustCompare(desired, live).status, SyncStatus::kSynced);
}

TEST(OptionsTest, MalformedRulesAreInvalidArgumentNamingThem) {
  Value obj = Yaml("kind: ConfigMap\napiVersion: v1\n");
  for (const char* bad : {"spec/replicas", "/spec/~2x", "/a~"}) {
    Result<ObjectDiff> r =
        Compare(&obj, &obj, {.ignore = {{.kind = "ConfigMap", .json_pointers = {bad}}}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(bad));
    EXPECT_FALSE(RenderDiff(&obj, &obj, {.compare = {.ignore = {{.kind = "ConfigMap",
                                                                 .json_pointers = {bad}}}}})
                     .ok());
  }
  Result<ObjectDiff> r = Compare(&obj, &obj, {.ignore = {{.group = "apps"}}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("kind is required"));
  EXPECT_TRUE(Compare(&obj, &obj, {.ignore = {{.kind = "X", .json_pointers = {"/a~0b~1c", ""}}}})
                  .ok());
}

TEST(PointerTest, EscapedTokensMatchKeys) {
  Value desired = Yaml("kind: X\napiVersion: v1\nmetadata:\n  annotations:\n    a/b~c: \"1\"\n");
  Value live = Yaml("kind: X\napiVersion: v1\nmetadata:\n  annotations:\n    a/b~c: \"2\"\n");
  EXPECT_THAT(MustCompare(desired, live).changed, ElementsAre("/metadata/annotations/a~1b~0c"));
  Options o{.ignore = {{.kind = "X", .json_pointers = {"/metadata/annotations/a~1b~0c"}}}};
  EXPECT_EQ(MustCompare(desired, live, o).status, SyncStatus::kSynced);
}

// Properties over every fixture here and the value module's corpus of real manifests: an object
// compared with itself is Synced with an empty diff, and comparing any two succeeds.
TEST(PropertyTest, ObjectEqualsItselfAndAnyPairCompares) {
  std::vector<Value> docs;
  for (const char* name : {"deployment-desired.yaml", "deployment-live.yaml",
                           "webhook-desired.yaml", "webhook-live.yaml"}) {
    docs.push_back(Load(name));
  }
  if (const char* root = std::getenv("GANTRY_SOURCE_DIR")) {
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(root) + "/src/value/testdata")) {
      if (entry.path().extension() != ".yaml") continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      auto parsed = value::ParseYaml(ss.str());
      if (!parsed.ok()) continue;  // the corpus holds deliberately bad files too
      for (const Value& doc : *parsed) docs.push_back(doc);
    }
  }
  ASSERT_GE(docs.size(), 4u);
  for (const Value& doc : docs) {
    // A live Secret never holds stringData (the apiserver folds it into data).
    if (doc.Get("stringData")) continue;
    ObjectDiff d = MustCompare(doc, doc);
    EXPECT_EQ(d.status, SyncStatus::kSynced) << value::ToYaml(doc);
    EXPECT_THAT(d.changed, IsEmpty());
    EXPECT_EQ(MustRender(&doc, &doc), "");
  }
  for (const Value& a : docs) {
    for (const Value& b : docs) {
      ASSERT_TRUE(Compare(&a, &b).ok());
      ASSERT_TRUE(RenderDiff(&a, &b).ok());
    }
  }
}

// ---- Secrets ----

constexpr std::string_view kCanary = "canary-7f3a9c-s3cr3t";

class SecretTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string encoded = Base64Encode(kCanary);
    desired_ = Yaml(fmt::format(R"(
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"stringData":{{"password":"{0}"}}}}'
type: Opaque
stringData:
  password: {0}
data:
  user: YWRtaW4=
)", kCanary));
    live_ = Yaml(fmt::format(R"(
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"stringData":{{"password":"{0}"}}}}'
  managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:data:
          f:user: {{}}
        f:stringData:
          f:password: {{}}
        f:type: {{}}
      manager: gantry
      operation: Apply
type: Opaque
data:
  password: {1}
  user: "YWRt\naW4="
)", kCanary, encoded));
  }

  void ExpectNoCanary(const std::string& text) {
    EXPECT_THAT(text, Not(HasSubstr(kCanary)));
    EXPECT_THAT(text, Not(HasSubstr(Base64Encode(kCanary))));
    EXPECT_THAT(text, Not(HasSubstr("YWRtaW4")));
  }

  Value desired_, live_;
};

TEST_F(SecretTest, StringDataMatchesDecodedData) {
  ObjectDiff d = MustCompare(desired_, live_);
  EXPECT_EQ(d.status, SyncStatus::kSynced);
  EXPECT_EQ(MustRender(&desired_, &live_), "");
}

TEST_F(SecretTest, ChangedValueIsOutOfSyncButNeverShown) {
  *Mut(live_, {"data", "password"}) = Base64Encode("other-value");
  *Mut(desired_, {"data", "user"}) = Base64Encode(kCanary);
  ObjectDiff d = MustCompare(desired_, live_);
  EXPECT_EQ(d.status, SyncStatus::kOutOfSync);
  EXPECT_THAT(d.changed, ElementsAre("/stringData/password", "/data/user"));
  for (const std::string& c : d.changed) ExpectNoCanary(c);
  for (bool color : {false, true}) {
    std::string text = MustRender(&desired_, &live_, {.color = color});
    ExpectNoCanary(text);
    EXPECT_THAT(text, Not(HasSubstr("other-value")));
    EXPECT_THAT(text, Not(HasSubstr(Base64Encode("other-value"))));
    EXPECT_THAT(text, HasSubstr("+++++++++ (changed)"));
  }
  ExpectNoCanary(MustRender(&desired_, nullptr));
  ExpectNoCanary(MustRender(nullptr, &live_));
}

TEST_F(SecretTest, DroppedKeyIsOutOfSync) {
  Mut(desired_, {"data"})->Erase("user");
  EXPECT_THAT(MustCompare(desired_, live_).changed, ElementsAre("/data/user"));
}

TEST_F(SecretTest, RedactReplacesValuesAndLastApplied) {
  for (const Value* v : {&desired_, &live_}) {
    Value r = Redact(*v);
    std::string text = value::ToYaml(r);
    ExpectNoCanary(text);
    EXPECT_EQ(*r.Find({"metadata", "annotations",
                       "kubectl.kubernetes.io/last-applied-configuration"}),
              Value("+++++++++"));
    EXPECT_EQ(*r.Find({"data", "user"}), Value("+++++++++"));
  }
  Value config = Yaml("apiVersion: v1\nkind: ConfigMap\ndata:\n  user: admin\n");
  EXPECT_EQ(Redact(config), config);
}

// ---- RenderDiff ----

TEST_F(DeploymentTest, RenderShowsChangedAndRemovedLines) {
  *Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb, "image"}) = "podinfo:7";
  Mut(desired_, {"spec", "template", "spec", "containers", kDesiredWeb})->Erase("env");
  std::string text = MustRender(&desired_, &live_);
  EXPECT_THAT(text, HasSubstr("--- live apps/v1 Deployment podinfo/web\n"
                              "+++ desired apps/v1 Deployment podinfo/web\n@@ -"));
  EXPECT_THAT(text, HasSubstr("\n       - name: web\n"
                              "-        image: ghcr.io/stefanprodan/podinfo:6.5.0\n"
                              "+        image: podinfo:7\n"));
  EXPECT_THAT(text,
              HasSubstr("\n-        env:\n-        - name: LOG_LEVEL\n-          value: info\n"));
  // Server defaults, status and managedFields are not shown; quantities are shown as desired.
  EXPECT_THAT(text, Not(HasSubstr("imagePullPolicy")));
  EXPECT_THAT(text, Not(HasSubstr("managedFields")));
  EXPECT_THAT(text, Not(HasSubstr("availableReplicas")));
  EXPECT_THAT(text, Not(HasSubstr("256Mi")));
  EXPECT_THAT(text, Not(HasSubstr("\x1b[")));
  std::string colored = MustRender(&desired_, &live_, {.color = true});
  EXPECT_THAT(colored,
              HasSubstr("\x1b[31m-        image: ghcr.io/stefanprodan/podinfo:6.5.0\x1b[0m\n"));
  EXPECT_THAT(colored, HasSubstr("\x1b[32m+        image: podinfo:7\x1b[0m\n"));
  EXPECT_THAT(colored, HasSubstr("\x1b[36m@@ -"));
}

TEST_F(DeploymentTest, RenderMissingAndExtra) {
  std::string missing = MustRender(&desired_, nullptr);
  EXPECT_THAT(missing, HasSubstr("--- live apps/v1 Deployment podinfo/web\n"));
  EXPECT_THAT(missing, HasSubstr("\n+kind: Deployment\n"));
  EXPECT_EQ(missing.find("\n-", missing.find("@@")), std::string::npos);
  std::string extra = MustRender(nullptr, &live_);
  EXPECT_THAT(extra, HasSubstr("\n-kind: Deployment\n"));
  EXPECT_THAT(extra, HasSubstr("\n-        imagePullPolicy: IfNotPresent\n"));
  EXPECT_EQ(extra.find("\n+", extra.find("@@")), std::string::npos);
  EXPECT_THAT(extra, Not(HasSubstr("managedFields")));
  EXPECT_THAT(extra, Not(HasSubstr("resourceVersion")));
  EXPECT_THAT(extra, Not(HasSubstr("availableReplicas")));
  EXPECT_EQ(MustRender(nullptr, nullptr), "");
}

}  // namespace
}  // namespace gantry::diff
