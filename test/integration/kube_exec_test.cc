// Exec credential plugins against a real apiserver: a plugin (testdata/sa-token-plugin.sh) that
// obtains a real ServiceAccount token with a TokenRequest, so what the client can do is what RBAC
// grants that account; the credential is cached, refreshed when it expires and after a 401; a
// missing plugin shows its install hint and a plugin that hangs is killed.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube/kube.h"
#include "test/env/testenv.h"

namespace gantry::kube {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using value::Value;

constexpr char kNamespace[] = "exec-auth";

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

class KubeExecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    auto config = LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    admin_ = NewHttpClient(*config)->release();
    // ServiceAccount "reader" may read ConfigMaps of its namespace, and nothing else.
    for (const char* object : {
             "apiVersion: v1\nkind: Namespace\nmetadata: {name: exec-auth}\n",
             "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader, namespace: exec-auth}\n",
             "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: read-configmaps, namespace: exec-auth}\n"
             "rules: [{apiGroups: [''], resources: [configmaps], verbs: [get, list, watch]}]\n",
             "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: exec-auth}\n"
             "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}\n"
             "subjects: [{kind: ServiceAccount, name: reader, namespace: exec-auth}]\n",
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello, namespace: exec-auth}\ndata: {greeting: hi}\n"}) {
      auto r = admin_->Apply(Yaml(object));
      GANTRY_CHECK(r.ok());
    }
  }
  static void TearDownTestSuite() { delete admin_; }

  void SetUp() override { runs_file_ = tmp_.path() + "/runs"; }

  // A kubeconfig whose user is the plugin `command` with `extra` exec env, loaded with it allowed.
  Result<RestConfig> Load(const std::string& command, const std::vector<std::pair<std::string, std::string>>& extra = {},
                          std::chrono::milliseconds timeout = 60s) {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    std::vector<std::pair<std::string, std::string>> env = {
        {"SERVER", cluster.Get("KUBE_SERVER")}, {"CA_FILE", cluster.Get("KUBE_CA")},
        {"ADMIN_TOKEN", cluster.Get("KUBE_TOKEN")}, {"NAMESPACE", kNamespace}, {"ACCOUNT", "reader"},
        {"RUNS_FILE", runs_file_}};
    env.insert(env.end(), extra.begin(), extra.end());
    std::string env_yaml;
    for (const auto& [k, v] : env) env_yaml += fmt::format("      - {{name: {}, value: {:?}}}\n", k, v);
    std::string path = tmp_.path() + "/kubeconfig";
    std::ofstream(path) << fmt::format(R"(apiVersion: v1
kind: Config
current-context: sa
clusters: [{{name: test, cluster: {{server: {:?}, certificate-authority: {:?}}}}}]
contexts: [{{name: sa, context: {{cluster: test, user: sa}}}}]
users:
- name: sa
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {:?}
      interactiveMode: Never
      installHint: "gke-gcloud-auth-plugin is needed: gcloud components install gke-gcloud-auth-plugin"
      env:
{})",
                                       cluster.Get("KUBE_SERVER"), cluster.Get("KUBE_CA"), command, env_yaml);
    std::string base = std::filesystem::path(command).filename().string();
    return LoadConfig({.paths = {path}, .allowed_exec_plugins = {base}, .exec_timeout = timeout});
  }

  static std::string Plugin() {
    return testenv::SourceDir() + "/test/integration/testdata/sa-token-plugin.sh";
  }

  int Runs() const {
    std::ifstream in(runs_file_);
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  static inline Client* admin_ = nullptr;
  testenv::ScopedTempDir tmp_;
  std::string runs_file_;
};

TEST_F(KubeExecTest, PluginTokenIsUsedWithItsAccountsRbacAndCachedForManyRequests) {
  auto config = Load(Plugin());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 20; ++i) {
    auto cm = (*client)->Get({"v1", "ConfigMap", kNamespace, "hello"});
    ASSERT_TRUE(cm.ok()) << cm.status().ToString();
    EXPECT_EQ(value::StringAt(&*cm, {"data", "greeting"}), "hi");
  }
  auto list = (*client)->List("v1", "ConfigMap", kNamespace);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  // The token is the ServiceAccount's, not the admin's: RBAC refuses what the Role does not grant.
  auto secrets = (*client)->List("v1", "Secret", kNamespace);
  EXPECT_EQ(secrets.status().code(), Code::kPermissionDenied) << secrets.status().ToString();
  EXPECT_THAT(secrets.status().message(), HasSubstr("system:serviceaccount:exec-auth:reader"));
  EXPECT_GE((*client)->request_count(), 22u);
  EXPECT_EQ(Runs(), 1) << "the credential is cached until it expires";
}

TEST_F(KubeExecTest, ExpiringCredentialIsRenewedBeforeItExpires) {
  // Expires 14 s after it is issued (whole seconds): used for 3 to 4 s, renewed 10 s before expiry.
  auto config = Load(Plugin(), {{"EXPIRES_IN", "14"}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  ASSERT_TRUE((*client)->Get({"v1", "ConfigMap", kNamespace, "hello"}).ok());
  ASSERT_TRUE((*client)->Get({"v1", "ConfigMap", kNamespace, "hello"}).ok());
  EXPECT_EQ(Runs(), 1);
  auto start = std::chrono::steady_clock::now();
  while (Runs() < 2 && std::chrono::steady_clock::now() - start < 20s) {
    auto cm = (*client)->Get({"v1", "ConfigMap", kNamespace, "hello"});
    ASSERT_TRUE(cm.ok()) << cm.status().ToString();
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(Runs(), 2) << "the plugin did not run again as its credential neared expiry";
  EXPECT_GT(std::chrono::steady_clock::now() - start, 2s) << "it ran again before it had to";
}

TEST_F(KubeExecTest, RefusedCredentialRunsThePluginAgainOnceAndTheRequestSucceeds) {
  auto config = Load(Plugin(), {{"FIRST_BAD", "1"}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  auto cm = (*client)->Get({"v1", "ConfigMap", kNamespace, "hello"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(Runs(), 2) << "first token refused (401), second one used";
  ASSERT_TRUE((*client)->Get({"v1", "ConfigMap", kNamespace, "hello"}).ok());
  EXPECT_EQ(Runs(), 2);
}

TEST_F(KubeExecTest, PluginClientCertificateIsUsed) {
  std::string pki = std::filesystem::path(testenv::Shared("kube-cluster.sh").Get("KUBE_CA")).parent_path().string();
  auto config = Load(Plugin(), {{"CERT_FILE", pki + "/admin.crt"}, {"KEY_FILE", pki + "/admin.key"}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  // The admin certificate (system:masters) may list Secrets, which the ServiceAccount may not.
  auto secrets = (*client)->List("v1", "Secret", kNamespace);
  ASSERT_TRUE(secrets.ok()) << secrets.status().ToString();
  EXPECT_EQ(Runs(), 1);
}

TEST_F(KubeExecTest, MissingPluginShowsItsInstallHint) {
  auto config = Load(tmp_.path() + "/bin/gke-gcloud-auth-plugin");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  auto cm = (*client)->Get({"v1", "ConfigMap", kNamespace, "hello"});
  EXPECT_EQ(cm.status().code(), Code::kNotFound);
  EXPECT_THAT(cm.status().message(), HasSubstr("gcloud components install gke-gcloud-auth-plugin"));
  EXPECT_THAT(cm.status().message(), HasSubstr("user \"sa\""));
}

TEST_F(KubeExecTest, HangingPluginIsKilledAfterTheTimeout) {
  auto config = Load(Plugin(), {{"HANG", "1"}}, 1500ms);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = NewHttpClient(*config);
  auto start = std::chrono::steady_clock::now();
  auto cm = (*client)->Get({"v1", "ConfigMap", kNamespace, "hello"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(cm.status().code(), Code::kDeadlineExceeded) << cm.status().ToString();
  EXPECT_THAT(cm.status().message(), HasSubstr("killed after 1500 ms"));
  EXPECT_LT(took, 10s);
  EXPECT_GE(took, 1400ms);
}

}  // namespace
}  // namespace gantry::kube
