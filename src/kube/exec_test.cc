// Exec credential plugins: what the plugin is given, what Gantry accepts from it, caching and
// expiry, and the errors a user sees (the real thing, against an apiserver, is in
// test/integration/kube_exec_test.cc).

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/clock.h"
#include "kube/internal/exec.h"
#include "kube/kube.h"

namespace gantry::kube::internal {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kV1[] = "client.authentication.k8s.io/v1";

class ExecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gantry-exec-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A plugin: a shell script with `body`.
  std::string Script(const std::string& name, const std::string& body) {
    fs::path p = dir_ / name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }
  RestConfig Config(const std::string& command) {
    RestConfig c;
    c.server = "https://10.0.0.1:6443";
    c.ca_pem = "CA-PEM";
    c.exec = ExecConfig{.command = command, .api_version = kV1, .user = "user \"u\" in test"};
    return c;
  }
  fs::path dir_;
};

TEST(ParseRfc3339, KubernetesTimesWithFractionsAndOffsets) {
  auto t = ParseRfc3339("2026-11-28T23:40:00Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(Rfc3339(*t), "2026-11-28T23:40:00Z");
  auto offset = ParseRfc3339("2026-11-29T01:40:00.250+02:00");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(*offset - *t, std::chrono::milliseconds(250));
  EXPECT_FALSE(ParseRfc3339("2026-11-28 23:40").has_value());
  EXPECT_FALSE(ParseRfc3339("2026-11-28T23:40:00").has_value()) << "no zone";
  EXPECT_FALSE(ParseRfc3339("2026-13-28T23:40:00Z").has_value());
}

TEST(ParseExecOutput, TokenCertificateExpiryAndWhatIsRefused) {
  auto token = ParseExecOutput(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
      "status":{"token":"abc","expirationTimestamp":"2030-01-01T00:00:00Z"}})", kV1);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(token->token, "abc");
  ASSERT_TRUE(token->expiry.has_value());
  EXPECT_EQ(Rfc3339(*token->expiry), "2030-01-01T00:00:00Z");

  auto cert = ParseExecOutput(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
      "status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}})", kV1);
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->client_cert_pem, "CERT");
  EXPECT_FALSE(cert->expiry.has_value());

  auto wrong_version = ParseExecOutput(
      R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"a"}})", kV1);
  EXPECT_THAT(wrong_version.status().message(), HasSubstr("v1beta1"));
  auto empty = ParseExecOutput(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}})", kV1);
  EXPECT_THAT(empty.status().message(), HasSubstr("neither a token nor a client certificate"));
  auto half = ParseExecOutput(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientKeyData":"K"}})", kV1);
  EXPECT_THAT(half.status().message(), HasSubstr("without a certificate"));
  auto bad_time = ParseExecOutput(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
      "status":{"token":"a","expirationTimestamp":"tomorrow"}})", kV1);
  EXPECT_THAT(bad_time.status().message(), HasSubstr("tomorrow"));
  EXPECT_THAT(ParseExecOutput("Login required", kV1).status().message(), HasSubstr("not an ExecCredential"));
}

TEST_F(ExecTest, ThePluginGetsArgsEnvAndClusterInfoAndNotGantrysSecrets) {
  ::setenv("GANTRY_EXEC_TEST_SECRET", "s3cret", 1);
  ::setenv("AWS_PROFILE", "prod", 1);
  std::string plugin = Script("plugin", R"sh(
printf '%s\n' "$@" > "$(dirname "$0")/args"
env > "$(dirname "$0")/env"
echo "plugin says hello" >&2
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t1"}}'
)sh");
  RestConfig c = Config(plugin);
  c.tls_server_name = "kubernetes.internal";
  c.exec->args = {"token", "--cluster", "prod"};
  c.exec->env = {{"REGION", "eu-west-1"}};
  c.exec->provide_cluster_info = true;
  c.exec->cluster_config = R"({"audience":"gantry"})";
  auto cred = RunExecPlugin(c);
  ::unsetenv("GANTRY_EXEC_TEST_SECRET");
  ::unsetenv("AWS_PROFILE");
  ASSERT_TRUE(cred.ok()) << cred.status().ToString();
  EXPECT_EQ(cred->token, "t1");
  std::ifstream args(dir_ / "args");
  std::string all((std::istreambuf_iterator<char>(args)), {});
  EXPECT_EQ(all, "token\n--cluster\nprod\n");
  std::ifstream env_file(dir_ / "env");
  std::string env((std::istreambuf_iterator<char>(env_file)), {});
  EXPECT_THAT(env, HasSubstr("REGION=eu-west-1\n"));
  EXPECT_THAT(env, HasSubstr("AWS_PROFILE=prod\n")) << "the cloud SDK's settings pass through";
  EXPECT_THAT(env, ::testing::Not(HasSubstr("s3cret"))) << "Gantry's own environment stays out";
  size_t at = env.find("KUBERNETES_EXEC_INFO=");
  ASSERT_NE(at, std::string::npos) << env;
  std::string info = env.substr(at + 21, env.find('\n', at) - at - 21);
  auto v = value::ParseJson(info, "info");
  ASSERT_TRUE(v.ok()) << info;
  EXPECT_EQ(value::StringAt(&*v, {"apiVersion"}), kV1);
  EXPECT_EQ(value::StringAt(&*v, {"kind"}), "ExecCredential");
  EXPECT_FALSE(value::BoolAt(&*v, {"spec", "interactive"}));
  EXPECT_EQ(value::StringAt(&*v, {"spec", "cluster", "server"}), "https://10.0.0.1:6443");
  EXPECT_EQ(value::StringAt(&*v, {"spec", "cluster", "tls-server-name"}), "kubernetes.internal");
  EXPECT_EQ(value::StringAt(&*v, {"spec", "cluster", "certificate-authority-data"}), Base64Encode("CA-PEM"));
  EXPECT_EQ(value::StringAt(&*v, {"spec", "cluster", "config", "audience"}), "gantry");

  c.exec->provide_cluster_info = false;
  auto bare = value::ParseJson(ExecInfo(c), "info");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->Find({"spec", "cluster"}), nullptr) << "cluster info only when asked";
}

TEST_F(ExecTest, MissingFailingAndHangingPluginsSayWhatToDo) {
  RestConfig missing = Config(dir_.string() + "/gke-gcloud-auth-plugin");
  missing.exec->install_hint = "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin";
  auto m = RunExecPlugin(missing);
  EXPECT_EQ(m.status().code(), Code::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("gcloud components install gke-gcloud-auth-plugin"));
  EXPECT_THAT(m.status().message(), HasSubstr("user \"u\""));

  auto failing = RunExecPlugin(Config(Script("failing", "echo 'error: the SSO session has expired' >&2\nexit 3\n")));
  EXPECT_EQ(failing.status().code(), Code::kUnauthenticated);
  EXPECT_THAT(failing.status().message(), HasSubstr("exit code 3"));
  EXPECT_THAT(failing.status().message(), HasSubstr("the SSO session has expired"));

  RestConfig hanging = Config(Script("hanging", "sleep 30\n"));
  hanging.exec->timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto h = RunExecPlugin(hanging);
  EXPECT_EQ(h.status().code(), Code::kDeadlineExceeded);
  EXPECT_THAT(h.status().message(), HasSubstr("killed after 300 ms"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ExecTest, CredentialIsCachedUntilShortlyBeforeItExpiresAndRefreshedOnce) {
  // Each run prints a new token that expires at the time written in the file `expiry`.
  std::string plugin = Script("counting", R"sh(
d="$(dirname "$0")"
n=$(( $(cat "$d/runs" 2>/dev/null || echo 0) + 1 ))
echo $n > "$d/runs"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t%s","expirationTimestamp":"%s"}}' $n "$(cat "$d/expiry")"
)sh");
  std::ofstream(dir_ / "expiry") << "2030-01-01T00:10:00Z";
  FakeClock clock;
  clock.Advance(*ParseRfc3339("2030-01-01T00:00:00Z") - std::chrono::system_clock::time_point{});
  ExecCredentials creds(Config(plugin), &clock);
  auto first = creds.Get();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ((*first)->token, "t1");
  for (int i = 0; i < 5; ++i) EXPECT_EQ((*creds.Get())->token, "t1");
  EXPECT_EQ(creds.runs(), 1);
  // Used until kRefreshBefore (10 s) before it expires; then the plugin runs again.
  clock.Advance(std::chrono::seconds(9 * 60 + 45));
  EXPECT_EQ((*creds.Get())->token, "t1");
  std::ofstream(dir_ / "expiry") << "2030-01-01T01:00:00Z";
  clock.Advance(std::chrono::seconds(10));
  EXPECT_EQ((*creds.Get())->token, "t2");
  EXPECT_EQ(creds.runs(), 2);
  // A 401 with t2 runs the plugin; a second caller that also saw t2 refused gets t3 without a run.
  auto second = *creds.Get();
  auto refreshed = creds.Refresh(second);
  ASSERT_TRUE(refreshed.ok());
  EXPECT_EQ((*refreshed)->token, "t3");
  EXPECT_EQ((*creds.Refresh(second))->token, "t3");
  EXPECT_EQ(creds.runs(), 3);
}

}  // namespace
}  // namespace gantry::kube::internal
