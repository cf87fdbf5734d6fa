// Adopting what `kubectl apply` created (issue 16): objects created with client-side apply (the real
// kubectl, built by test/env/build-tools.sh, without --server-side) are synced by the gantry binary
// (GANTRY_BINARY) from manifests without one of their fields: the field is gone from the cluster,
// the kubectl-client-side-apply managers and the last-applied annotation are gone, `gantry diff`
// showed the removal beforehand, and a second sync writes nothing. Against the real apiserver of
// test/env/kube-cluster.sh.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/process.h"
#include "kube/kube.h"
#include "sync/sync.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using value::Value;

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A ConfigMap with data a and b, and a Deployment with env A and B and labels a and b.
std::string Manifests(bool with_b) {
  std::string cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: adopt}\ndata:\n  a: \"1\"\n";
  if (with_b) cm += "  b: \"2\"\n";
  std::string deploy = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: adopt
  labels: {a: "1")" + std::string(with_b ? ", b: \"2\"" : "") + R"(}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/pause:3.10
        env:
        - {name: A, value: "1"}
)" + std::string(with_b ? "        - {name: B, value: \"2\"}\n" : "");
  return cm + "---\n" + deploy;
}

class KubectlAdoptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
    // The real kubectl, from the tool cache (built once, then found there).
    ProcessOptions po;
    po.inherit_env = true;
    po.timeout = std::chrono::minutes(30);
    auto built = RunChecked({testenv::ScriptDir() + "/build-tools.sh", "kubectl"}, po);
    if (!built.ok()) DieBecause("build-tools.sh kubectl: " + built.status().ToString());
    std::string out = built->out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    kubectl_ = new std::string(out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1) + "/kubectl");
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
    delete kubectl_;
  }
  static kube::Client& client() { return *client_; }

  static ProcessResult Run(std::vector<std::string> argv) {
    ProcessOptions po;
    po.timeout = std::chrono::minutes(3);
    po.env = {{"PATH", "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"HOME", home_.path()},
              {"KUBECONFIG", *kubeconfig_}};
    auto r = gantry::Run(argv, po);
    GANTRY_CHECK(r.ok());
    return *r;
  }
  static ProcessResult Gantry(std::vector<std::string> args) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    args.insert(args.begin(), binary);
    return Run(std::move(args));
  }
  static ProcessResult Kubectl(std::vector<std::string> args) {
    args.insert(args.begin(), *kubectl_);
    return Run(std::move(args));
  }

  static Value Live(const kube::ObjectRef& ref) {
    auto got = client().Get(ref);
    GANTRY_CHECK(got.ok());
    return *std::move(got);
  }
  static std::vector<std::string> Managers(const Value& live) {
    std::vector<std::string> out;
    const Value* entries = live.Find({"metadata", "managedFields"});
    for (size_t i = 0; entries != nullptr && i < entries->size(); ++i) {
      out.push_back(value::StringAt(entries->At(i), {"manager"}) + "/" +
                    value::StringAt(entries->At(i), {"operation"}));
    }
    return out;
  }
  static std::string Env(const Value& deploy) {
    std::string out;
    const Value* env = deploy.Find({"spec", "template", "spec", "containers", 0, "env"});
    for (size_t i = 0; env != nullptr && i < env->size(); ++i) out += value::StringAt(env->At(i), {"name"});
    return out;
  }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  static inline std::string* kubectl_ = nullptr;
  static inline testenv::ScopedTempDir home_;
};

TEST_F(KubectlAdoptTest, AFieldRemovedFromGitIsRemovedFromWhatKubectlApplyCreated) {
  testenv::ScopedTempDir dir;
  fs::path before = fs::path(dir.path()) / "before/app.yaml";
  fs::path app = fs::path(dir.path()) / "app";
  WriteFile(before, Manifests(true));
  WriteFile(app / "app.yaml", Manifests(false));
  ASSERT_EQ(Kubectl({"create", "namespace", "adopt"}).exit_code, 0);
  ProcessResult applied = Kubectl({"apply", "-f", before.string()});
  ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;

  const kube::ObjectRef cm{"v1", "ConfigMap", "adopt", "settings"};
  const kube::ObjectRef deploy{"apps/v1", "Deployment", "adopt", "web"};
  ASSERT_THAT(Managers(Live(cm)), ::testing::Contains("kubectl-client-side-apply/Update"));
  ASSERT_NE(Live(cm).Find({"metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"}), nullptr);
  ASSERT_EQ(Env(Live(deploy)), "AB");

  // diff shows the fields the sync will remove (client-side apply owned them, gantry will).
  ProcessResult diff = Gantry({"diff", app.string(), "--app", "adopt", "-n", "adopt"});
  EXPECT_EQ(diff.exit_code, 1) << diff.out << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("\n-  b: \"2\"\n")) << diff.out;
  EXPECT_THAT(diff.out, HasSubstr("\n-        - name: B\n")) << diff.out;

  ProcessResult sync = Gantry({"sync", app.string(), "--app", "adopt", "-n", "adopt"});
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  Value live_cm = Live(cm), live_deploy = Live(deploy);
  EXPECT_EQ(live_cm.Find({"data", "b"}), nullptr) << value::ToYaml(live_cm);
  EXPECT_EQ(value::StringAt(&live_cm, {"data", "a"}), "1");
  EXPECT_EQ(live_deploy.Find({"metadata", "labels", "b"}), nullptr) << value::ToYaml(live_deploy);
  EXPECT_EQ(Env(live_deploy), "A");
  for (const Value* live : {&live_cm, &live_deploy}) {
    EXPECT_THAT(Managers(*live), ::testing::Not(::testing::Contains("kubectl-client-side-apply/Update")));
    EXPECT_THAT(Managers(*live), ::testing::Contains("gantry/Apply"));
    EXPECT_EQ(live->Find({"metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"}), nullptr)
        << value::ToYaml(*live);
  }

  // Adopted once: a second sync writes nothing, and diff finds nothing.
  std::string rv_cm = value::StringAt(&live_cm, {"metadata", "resourceVersion"});
  ProcessResult again = Gantry({"sync", app.string(), "--app", "adopt", "-n", "adopt"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  Value after_cm = Live(cm), after_deploy = Live(deploy);
  EXPECT_EQ(value::StringAt(&after_cm, {"metadata", "resourceVersion"}), rv_cm);
  // The Deployment's status moves with its controllers; its spec generation must not.
  EXPECT_EQ(value::IntAt(&after_deploy, {"metadata", "generation"}),
            value::IntAt(&live_deploy, {"metadata", "generation"}));
  ProcessResult clean = Gantry({"diff", app.string(), "--app", "adopt", "-n", "adopt"});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
}

// An object kubectl changed after its last apply is adopted from what is read at the time: a
// concurrent write between the read and the patch is refused by the resourceVersion precondition,
// never overwritten. Here: kubectl applies again (client-side) after an adoption, with b back;
// the next sync adopts again and removes b again.
TEST_F(KubectlAdoptTest, AnObjectKubectlAppliesAgainIsAdoptedAgain) {
  testenv::ScopedTempDir dir;
  fs::path before = fs::path(dir.path()) / "before/app.yaml";
  fs::path app = fs::path(dir.path()) / "app";
  std::string with_b = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: again, namespace: adopt2}\n"
                       "data: {a: \"1\", b: \"2\"}\n";
  WriteFile(before, with_b);
  WriteFile(app / "app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: again}\ndata: {a: \"1\"}\n");
  ASSERT_EQ(Kubectl({"create", "namespace", "adopt2"}).exit_code, 0);
  const kube::ObjectRef cm{"v1", "ConfigMap", "adopt2", "again"};
  for (int round = 0; round < 2; ++round) {
    ProcessResult applied = Kubectl({"apply", "-f", before.string()});
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    Value applied_cm = Live(cm);
    ASSERT_EQ(value::StringAt(&applied_cm, {"data", "b"}), "2") << "round " << round;
    ProcessResult sync = Gantry({"sync", app.string(), "--app", "again", "-n", "adopt2"});
    ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
    Value live = Live(cm);
    EXPECT_EQ(live.Find({"data", "b"}), nullptr) << "round " << round << "\n" << value::ToYaml(live);
    EXPECT_THAT(Managers(live), ::testing::Not(::testing::Contains("kubectl-client-side-apply/Update")));
  }
}

// The adoption patch's precondition: replacing metadata.resourceVersion with one the object has
// moved past is a conflict (FailedPrecondition), and nothing is written.
TEST_F(KubectlAdoptTest, TheAdoptionPatchNeverOverwritesALaterWrite) {
  testenv::ScopedTempDir dir;
  fs::path file = fs::path(dir.path()) / "cm.yaml";
  ASSERT_EQ(Kubectl({"create", "namespace", "adopt3"}).exit_code, 0);
  WriteFile(file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: raced, namespace: adopt3}\ndata: {a: \"1\"}\n");
  ASSERT_EQ(Kubectl({"apply", "-f", file.string()}).exit_code, 0);
  const kube::ObjectRef cm{"v1", "ConfigMap", "adopt3", "raced"};
  Value read = Live(cm);
  WriteFile(file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: raced, namespace: adopt3}\ndata: {a: \"2\"}\n");
  ASSERT_EQ(Kubectl({"apply", "-f", file.string()}).exit_code, 0);
  Value adopted = read;
  ASSERT_TRUE(sync::AdoptClientSideApply(adopted, "gantry"));
  std::string patch = R"([{"op":"replace","path":"/metadata/managedFields","value":)" +
                      value::ToJson(*adopted.Find({"metadata", "managedFields"})) +
                      R"(},{"op":"replace","path":"/metadata/resourceVersion","value":")" +
                      value::StringAt(&read, {"metadata", "resourceVersion"}) + R"("}])";
  auto stale = client().JsonPatch(cm, patch);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), Code::kFailedPrecondition) << stale.status().ToString();
  EXPECT_THAT(Managers(Live(cm)), ::testing::Contains("kubectl-client-side-apply/Update"));
  Value after = Live(cm);
  EXPECT_EQ(value::StringAt(&after, {"data", "a"}), "2");
}

}  // namespace
}  // namespace gantry
