// `gantry sync` and `gantry diff` render for their destination cluster (issue 16): a Helm chart is
// rendered with the destination namespace as its release namespace and with the cluster's version
// and served APIs as .Capabilities (so a `kubeVersion:` constraint and `.Capabilities.APIVersions.Has`
// work as with Argo CD); objects without a namespace land in the destination namespace, for Helm,
// Kustomize and plain; and kustomize and helm are found in the tool cache without any set-up.
// Runs the gantry binary (GANTRY_BINARY) against the real apiserver of test/env/kube-cluster.sh.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/process.h"
#include "kube/kube.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path Testdata() {
  return fs::path(testenv::SourceDir()) / "src/render/testdata";
}

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

class RenderDestinationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::ToolsDir();
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
  }
  static kube::Client& client() { return *client_; }

  // Runs gantry as a newcomer would: PATH without kustomize or helm, a fresh HOME, and only what
  // `env` adds.
  static ProcessResult Gantry(const std::vector<std::string>& args, std::map<std::string, std::string> env = {}) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOptions po;
    po.timeout = std::chrono::minutes(3);
    po.env = {{"PATH", "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"HOME", home_.path()},
              {"KUBECONFIG", *kubeconfig_}};
    for (auto& [k, v] : env) po.env[k] = v;
    auto r = gantry::Run(argv, po);
    GANTRY_CHECK(r.ok());
    return *r;
  }

  static std::string Data(const std::string& ns, const std::string& name, const std::string& key) {
    auto cm = client().Get({"v1", "ConfigMap", ns, name});
    if (!cm.ok()) return "(" + cm.status().ToString() + ")";
    return value::StringAt(&*cm, {"data", std::string_view(key)});
  }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  static inline testenv::ScopedTempDir home_;
};

// issue 16 items 5 and 6: a chart with `kubeVersion: ">=1.25.0-0"` whose templates ask
// .Capabilities and use .Release.Namespace, synced with -n: rendered for this cluster, in NS.
TEST_F(RenderDestinationTest, HelmChartRendersForTheDestinationVersionApisAndNamespace) {
  // A CRD the cluster serves, which helm's built-in API list does not know.
  auto crd = value::ParseYaml(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.capabilities.gantry.test}
spec:
  group: capabilities.gantry.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
)");
  ASSERT_TRUE(crd.ok());
  ASSERT_TRUE(client().Apply((*crd)[0]).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!client().Resolve("capabilities.gantry.test/v1", "Widget").ok()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the CRD is not served";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    client().InvalidateDiscovery();
  }
  auto version = client().GetRaw("/version");
  ASSERT_TRUE(version.ok());
  auto kube_version = kube::KubeVersionOf(*version);
  ASSERT_TRUE(kube_version.ok()) << kube_version.status().ToString();

  const std::string chart = (Testdata() / "helm/capabilities").string();
  const std::map<std::string, std::string> env = {{"GANTRY_HELM", testenv::ToolsDir() + "/helm"}};
  ProcessResult sync = Gantry({"sync", chart, "--app", "capabilities", "-n", "helm-dest", "--create-namespace"}, env);
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_EQ(Data("helm-dest", "capabilities", "namespace"), "helm-dest");
  EXPECT_EQ(Data("helm-dest", "capabilities", "kubeVersion"), *kube_version);
  EXPECT_EQ(Data("helm-dest", "capabilities", "widgets"), "true");
  EXPECT_EQ(Data("helm-dest", "capabilities", "widgetKind"), "true");
  EXPECT_EQ(Data("helm-dest", "capabilities", "deployments"), "true");
  EXPECT_EQ(Data("helm-dest", "no-namespace", "release"), "capabilities");
  EXPECT_EQ(client().Get({"v1", "ConfigMap", "default", "capabilities"}).status().code(), Code::kNotFound)
      << "the chart's objects landed in default";
  // diff renders the same way: nothing differs.
  ProcessResult diff = Gantry({"diff", chart, "--app", "capabilities", "-n", "helm-dest"}, env);
  EXPECT_EQ(diff.exit_code, 0) << diff.out << diff.err;
  // --helm-namespace still names another release namespace explicitly.
  ProcessResult other = Gantry({"diff", chart, "--app", "capabilities", "-n", "helm-dest", "--helm-namespace", "elsewhere"},
                               env);
  EXPECT_NE(other.exit_code, 0) << other.out << other.err;
  EXPECT_THAT(other.out + other.err, HasSubstr("elsewhere"));
}

// issue 16 items 6 and 9: Kustomize and plain objects without a namespace land in -n's namespace,
// and kustomize is found in the tool cache ($GANTRY_CACHE/tools/bin) with nothing on PATH.
TEST_F(RenderDestinationTest, KustomizeAndPlainObjectsLandInTheDestinationAndKustomizeIsFoundInTheToolCache) {
  testenv::ScopedTempDir dir;
  fs::path app = fs::path(dir.path()) / "app";
  WriteFile(app / "plain/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {from: plain}\n");
  WriteFile(app / "kustomize/kustomization.yaml", "resources: [cm.yaml]\ncommonLabels: {rendered-by: kustomize}\n");
  WriteFile(app / "kustomize/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kustomized}\ndata: {from: kustomize}\n");
  const std::string cache = fs::path(testenv::ToolsDir()).parent_path().parent_path().string();

  // Without the tool cache: the error names every place looked at and the variable to set.
  ProcessResult missing = Gantry({"render", (app / "kustomize").string()});
  EXPECT_EQ(missing.exit_code, 3) << missing.out << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("GANTRY_KUSTOMIZE"));
  EXPECT_THAT(missing.err, HasSubstr(home_.path() + "/.cache/gantry/tools/bin"));

  ProcessResult render = Gantry({"render", (app / "kustomize").string()}, {{"GANTRY_CACHE", cache}});
  EXPECT_EQ(render.exit_code, 0) << render.out << render.err;
  EXPECT_THAT(render.out, HasSubstr("rendered-by: kustomize"));

  for (const char* kind : {"plain", "kustomize"}) {
    ProcessResult sync = Gantry({"sync", (app / kind).string(), "--app", std::string("dest-") + kind, "-n",
                                 std::string("dest-") + kind, "--create-namespace"},
                                {{"GANTRY_CACHE", cache}});
    ASSERT_EQ(sync.exit_code, 0) << kind << ": " << sync.out << sync.err;
  }
  EXPECT_EQ(Data("dest-plain", "plain", "from"), "plain");
  EXPECT_EQ(Data("dest-kustomize", "kustomized", "from"), "kustomize");
}

}  // namespace
}  // namespace gantry
