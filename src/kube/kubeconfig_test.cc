#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/base64.h"
#include "kube/kube.h"

namespace gantry::kube {
namespace {
namespace fs = std::filesystem;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gantry-kubeconfig-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "certs");
    std::ofstream(dir_ / "certs" / "ca.crt") << "CA-PEM";
    std::ofstream(dir_ / "certs" / "admin.crt") << "CERT-PEM";
    std::ofstream(dir_ / "certs" / "admin.key") << "KEY-PEM";
    std::ofstream(dir_ / "token") << "file-token\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

constexpr char kMain[] = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: certs/ca.crt
- name: prod
  cluster:
    server: https://prod.example:443
    insecure-skip-tls-verify: true
    proxy-url: http://proxy.internal:3128
users:
- name: admin
  user:
    client-certificate: certs/admin.crt
    client-key: certs/admin.key
- name: robot
  user:
    tokenFile: token
contexts:
- name: dev
  context: {cluster: dev, user: admin, namespace: apps}
- name: prod
  context: {cluster: prod, user: robot}
)";

TEST_F(KubeconfigTest, CurrentContextWithRelativeFiles) {
  auto c = LoadConfig({.paths = {Write("config", kMain)}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->context, "dev");
  EXPECT_EQ(c->namespace_, "apps");
  EXPECT_EQ(c->ca_pem, "CA-PEM");
  EXPECT_EQ(c->client_cert_pem, "CERT-PEM");
  EXPECT_EQ(c->client_key_pem, "KEY-PEM");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
}

TEST_F(KubeconfigTest, ExplicitContextTokenFileInsecureAndProxy) {
  auto c = LoadConfig({.paths = {Write("config", kMain)}, .context = "prod"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://prod.example:443");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->proxy_url, "http://proxy.internal:3128");
  EXPECT_EQ(c->token_file, (dir_ / "token").string());
  EXPECT_EQ(c->namespace_, "default");
}

TEST_F(KubeconfigTest, InlineDataWinsOverFiles) {
  std::string cfg = fmt::format(R"(current-context: c
clusters: [{{name: k, cluster: {{server: "https://k:1", certificate-authority-data: {}, certificate-authority: /nonexistent}}}}]
users: [{{name: u, user: {{client-certificate-data: {}, client-key-data: {}, token: ignored-when-certs}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
)", Base64Encode("INLINE-CA"), Base64Encode("INLINE-CERT"), Base64Encode("INLINE-KEY"));
  auto c = LoadConfig({.paths = {Write("inline", cfg)}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_pem, "INLINE-CA");
  EXPECT_EQ(c->client_cert_pem, "INLINE-CERT");
  EXPECT_EQ(c->client_key_pem, "INLINE-KEY");
}

TEST_F(KubeconfigTest, SeveralFilesMergeFirstWins) {
  std::string first = Write("first", R"(current-context: other
contexts: [{name: dev, context: {cluster: dev, user: robot, namespace: first-wins}}]
)");
  std::string second = Write("second", kMain);
  auto c = LoadConfig({.paths = {first, (dir_ / "missing").string(), second}, .context = "dev"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->namespace_, "first-wins");
  EXPECT_EQ(c->token_file, (dir_ / "token").string());
  // current-context comes from the first file that sets it.
  auto cur = LoadConfig({.paths = {first, second}});
  EXPECT_EQ(cur.status().code(), Code::kNotFound);
  EXPECT_NE(cur.status().message().find("context \"other\" not found"), std::string::npos);
}

TEST_F(KubeconfigTest, KubeconfigEnvironmentVariableIsSplitOnColons) {
  std::string a = Write("a", "current-context: dev\n");
  std::string b = Write("b", kMain);
  setenv("KUBECONFIG", (a + ":" + b).c_str(), 1);
  auto c = LoadConfig();
  unsetenv("KUBECONFIG");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->context, "dev");
}

TEST_F(KubeconfigTest, ExecPluginsAreRefusedNamingThePlugin) {
  std::string cfg = R"(current-context: eks
clusters: [{name: k, cluster: {server: "https://k:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /usr/local/bin/aws-iam-authenticator, args: [token]}}}]
contexts: [{name: eks, context: {cluster: k, user: u}}]
)";
  auto c = LoadConfig({.paths = {Write("exec", cfg)}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kPermissionDenied);
  EXPECT_NE(c.status().message().find("aws-iam-authenticator"), std::string::npos);
}

TEST_F(KubeconfigTest, AllowedExecPluginIsReadAsKubectlReadsIt) {
  std::string cfg = R"(current-context: eks
clusters:
- name: k
  cluster:
    server: "https://k:1"
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: sts.amazonaws.com}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: bin/aws
      args: [eks, get-token, --cluster-name, prod]
      env: [{name: AWS_PROFILE, value: prod}]
      provideClusterInfo: true
      installHint: install the AWS CLI
contexts: [{name: eks, context: {cluster: k, user: u}}]
)";
  auto c = LoadConfig({.paths = {Write("exec", cfg)}, .allowed_exec_plugins = {"aws"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->exec.has_value());
  EXPECT_EQ(c->exec->command, (dir_ / "bin/aws").string()) << "relative to the kubeconfig, as kubectl";
  EXPECT_EQ(c->exec->args, (std::vector<std::string>{"eks", "get-token", "--cluster-name", "prod"}));
  ASSERT_EQ(c->exec->env.size(), 1u);
  EXPECT_EQ(c->exec->env[0].second, "prod");
  EXPECT_EQ(c->exec->api_version, "client.authentication.k8s.io/v1beta1");
  EXPECT_TRUE(c->exec->provide_cluster_info);
  EXPECT_EQ(c->exec->install_hint, "install the AWS CLI");
  EXPECT_EQ(c->exec->cluster_config, R"({"audience":"sts.amazonaws.com"})");
  EXPECT_TRUE(c->token.empty());
}

TEST_F(KubeconfigTest, ExecPluginsGantryCannotRunAreRefusedWithTheReason) {
  auto load = [&](const std::string& exec) {
    std::string cfg = "current-context: x\nclusters: [{name: k, cluster: {server: \"https://k:1\"}}]\n"
                      "users: [{name: u, user: {exec: " + exec + "}}]\n"
                      "contexts: [{name: x, context: {cluster: k, user: u}}]\n";
    return LoadConfig({.paths = {Write("exec", cfg)}, .allowed_exec_plugins = {"kubelogin"}});
  };
  auto always = load("{apiVersion: client.authentication.k8s.io/v1, command: kubelogin, interactiveMode: Always}");
  EXPECT_EQ(always.status().code(), Code::kInvalidArgument);
  EXPECT_NE(always.status().message().find("interactiveMode Always"), std::string::npos) << always.status().ToString();
  auto no_mode = load("{apiVersion: client.authentication.k8s.io/v1, command: kubelogin}");
  EXPECT_NE(no_mode.status().message().find("no interactiveMode"), std::string::npos) << no_mode.status().ToString();
  auto alpha = load("{apiVersion: client.authentication.k8s.io/v1alpha1, command: kubelogin}");
  EXPECT_NE(alpha.status().message().find("v1alpha1"), std::string::npos) << alpha.status().ToString();
  auto unquoted = load("{apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, env: [{name: A, value: 3}]}");
  EXPECT_NE(unquoted.status().message().find("exec env A must be a string"), std::string::npos) << unquoted.status().ToString();
  auto ok = load("{apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, args: [get-token]}");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->exec->command, "kubelogin") << "a bare name is looked up in PATH when it runs";
}

TEST_F(KubeconfigTest, AuthProviderSaysToSwitchToTheExecPlugin) {
  std::string cfg = R"(current-context: gke
clusters: [{name: k, cluster: {server: "https://k:1"}}]
users: [{name: u, user: {auth-provider: {name: gcp, config: {cmd-path: gcloud}}}}]
contexts: [{name: gke, context: {cluster: k, user: u}}]
)";
  auto c = LoadConfig({.paths = {Write("gcp", cfg)}});
  EXPECT_EQ(c.status().code(), Code::kPermissionDenied);
  EXPECT_NE(c.status().message().find("\"gcp\""), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("gke-gcloud-auth-plugin"), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("--allow-exec-plugin"), std::string::npos) << c.status().ToString();
}

TEST_F(KubeconfigTest, ClearErrorsForMissingPieces) {
  auto missing_file = LoadConfig({.paths = {(dir_ / "nope").string()}});
  EXPECT_EQ(missing_file.status().code(), Code::kNotFound);
  EXPECT_NE(missing_file.status().message().find("nope"), std::string::npos);

  auto bad_context = LoadConfig({.paths = {Write("config", kMain)}, .context = "staging"});
  EXPECT_EQ(bad_context.status().code(), Code::kNotFound);
  EXPECT_NE(bad_context.status().message().find("\"staging\""), std::string::npos);

  auto missing_ca = LoadConfig({.paths = {Write("ca", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:1", certificate-authority: gone.crt}}]
contexts: [{name: c, context: {cluster: k}}]
)")}});
  EXPECT_EQ(missing_ca.status().code(), Code::kNotFound);
  EXPECT_NE(missing_ca.status().message().find("gone.crt"), std::string::npos);

  auto bad_yaml = LoadConfig({.paths = {Write("bad", "clusters: [\n")}});
  EXPECT_EQ(bad_yaml.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad_yaml.status().message().find("bad:"), std::string::npos);

  auto half_cert = LoadConfig({.paths = {Write("half", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:1"}}]
users: [{name: u, user: {client-certificate: certs/admin.crt}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)")}});
  EXPECT_EQ(half_cert.status().code(), Code::kInvalidArgument);
}

TEST_F(KubeconfigTest, InClusterConfigReadsTheServiceAccount) {
  fs::path sa = dir_ / "var/run/secrets/kubernetes.io/serviceaccount";
  fs::create_directories(sa);
  std::ofstream(sa / "token") << "sa-token\n";
  std::ofstream(sa / "ca.crt") << "SA-CA";
  std::ofstream(sa / "namespace") << "gantry-system";
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(InClusterConfig(dir_.string()).status().code(), Code::kNotFound);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = InClusterConfig(dir_.string());
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token, "sa-token");
  EXPECT_EQ(c->ca_pem, "SA-CA");
  EXPECT_EQ(c->namespace_, "gantry-system");
}

TEST(ObjectRef, FromObjectAndToString) {
  auto docs = value::ParseYaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n");
  ASSERT_TRUE(docs.ok());
  ObjectRef ref = RefOf((*docs)[0]);
  EXPECT_EQ(ref.ToString(), "apps/v1 Deployment shop/web");
  EXPECT_EQ(SplitApiVersion("apps/v1"), (std::pair<std::string, std::string>{"apps", "v1"}));
  EXPECT_EQ(SplitApiVersion("v1"), (std::pair<std::string, std::string>{"", "v1"}));
}

}  // namespace
}  // namespace gantry::kube
