// `gantry deploy --server` end to end: the real `gantry server` binary with a push-mode
// configuration (one real control plane) and a file:// config repository, and the real `gantry`
// CLI as two robot tokens of project default: a deployer's deploy reaches the cluster (exit 0,
// following the server's events to the end); a viewer's is refused by the server (exit 3, naming
// apps.deploy) and leaves no release. The project's closed sync window refuses the deployer until
// it overrides it with a reason, and the override is in the audit log with who and why. A deploy
// waiting for health is stopped by `gantry terminate` within a couple of seconds, and nothing of a
// later wave is applied.

#include <filesystem>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "kube/kube.h"
#include "sign/sign.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kAdminToken[] = "deploy-server-admin-0123456789";

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

// Commits `files` (path → content) to the config repository `dir` on main, creating it the first time.
void CommitConfig(const fs::path& dir, const std::map<std::string, std::string>& files) {
  for (const auto& [path, content] : files) {
    fs::create_directories((dir / path).parent_path());
    GANTRY_CHECK(WriteFileAtomic(dir / path, content).ok());
  }
  ProcessOptions po;
  po.cwd = dir.string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  std::vector<std::vector<std::string>> steps = {{"git", "add", "-A"}, {"git", "commit", "-q", "-m", "change"}};
  if (!fs::exists(dir / ".git")) steps.insert(steps.begin(), {"git", "init", "-q", "-b", "main"});
  for (const auto& argv : steps) GANTRY_CHECK(RunChecked(argv, po).ok());
}

// A config repository with envs/dev: a ConfigMap naming the revision it came from.
void MakeConfigRepo(const fs::path& dir) {
  CommitConfig(dir, {{"envs/dev/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {from: server}\n"}});
}

// A real `gantry server` over ROOT/config (a file:// config repository), ROOT/deliver and ROOT/data,
// with the admin token kAdminToken; its URL once it listens. It builds no repository (no --repo):
// a server for deploys only, as a team that keeps its CI elsewhere runs it.
struct ServerUnderTest {
  std::unique_ptr<Process> process;
  std::string url, log;
};
ServerUnderTest StartServer(const fs::path& root, const std::vector<std::string>& extra = {}) {
  const std::string repo = "file://" + (root / "config").string();
  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"HOOK", "hook-secret-0123456789"}, {"API_TOKEN", kAdminToken}};
  ServerUnderTest s;
  s.log = (root / "server.log").string();
  std::vector<std::string> argv = {Binary(), "server", "--listen", "127.0.0.1:0", "--store", "sqlite:" + (root / "gantry.db").string(),
                                   "--webhook-secret-env", "HOOK", "--api-token-env", "API_TOKEN", "--data-dir",
                                   (root / "data").string(), "--allow-file-repos", "--config-repo", repo,
                                   "--deliver-config", (root / "deliver").string(), "--health-timeout", "60s"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto server = Process::Start(argv, po, s.log);
  GANTRY_CHECK(server.ok());
  s.process = std::make_unique<Process>(*std::move(server));
  std::string port;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (port.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::string text = ReadFile(s.log).value_or("");
    std::smatch m;
    if (std::regex_search(text, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
  }
  GANTRY_CHECK(!port.empty());
  s.url = "http://127.0.0.1:" + port;
  return s;
}

// `gantry deploy web --revision main` through the server at `url` as `token`.
ProcessResult DeployThroughServer(const std::string& url, const std::string& token, const fs::path& home,
                                  const std::vector<std::string>& extra = {}) {
  ProcessOptions o;
  o.inherit_env = true;
  o.env = {{"GANTRY_TOKEN", token}, {"GANTRY_SERVER", url}, {"HOME", home.string()}};
  o.timeout = std::chrono::seconds(120);
  std::vector<std::string> argv = {Binary(), "deploy", "web", "--revision", "main"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = gantry::Run(argv, o);
  GANTRY_CHECK(r.ok());
  return *std::move(r);
}

// A robot token of project default with `role`, made through the API as the admin.
std::string RobotToken(const std::string& url, const std::string& name, const std::string& role) {
  ProcessOptions po;
  po.inherit_env = true;
  auto r = Run({"curl", "-s", "-X", "POST", "-H", std::string("Authorization: Bearer ") + kAdminToken, "--data",
                R"({"name":")" + name + R"(","project":"default","roles":[")" + role + R"("]})", url + "/api/tokens"},
               po);
  GANTRY_CHECK(r.ok());
  auto doc = value::ParseJson(r->out);
  GANTRY_CHECK(doc.ok() && doc->Get("token") != nullptr);
  return std::string(doc->Get("token")->AsString());
}

TEST(DeployServer, ADeployerDeploysThroughTheServerAndAViewerIsRefused) {
  auto cluster = testenv::Server::Start("kube-cluster.sh", {"--name", "deploy-server", "--nodes", "1"});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  testenv::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  // A server run as root runs CI steps as uid 65533, which must reach the data directory.
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  MakeConfigRepo(root / "config");
  fs::create_directories(root / "deliver");
  const std::string kubeconfig = (*cluster)->Get("KUBECONFIG");
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "topology.yaml",
                              fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: dev-1}}\n"
                                          "spec: {{kubeconfig: {}, environment: dev}}\n---\n"
                                          "apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: dev}}\nspec: {{}}\n",
                                          kubeconfig))
                  .ok());
  // The default project, narrowed: its one cluster, and a deny window that is always active but
  // lets a person override it.
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "project.yaml",
                              "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: default}\n"
                              "spec:\n  destinations: [{name: \"*\", namespace: \"*\"}]\n  credentials: [dev-1]\n"
                              "  syncWindows:\n  - {kind: deny, schedule: \"* * * * *\", duration: 1h, manualSync: true}\n")
                  .ok());
  ServerUnderTest server = StartServer(root);
  const std::string& url = server.url;
  const std::string& log = server.log;
  ProcessOptions po;
  po.inherit_env = true;
  const std::string deployer = RobotToken(url, "deployer", "deployer");
  const std::string viewer = RobotToken(url, "viewer", "viewer");

  auto cli = [&](const std::string& token, std::vector<std::string> extra = {}) {
    return DeployThroughServer(url, token, root, extra);
  };

  ProcessResult refused = cli(viewer);
  EXPECT_EQ(refused.exit_code, 3) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("HTTP 403"));
  EXPECT_THAT(refused.err, HasSubstr("lacks apps.deploy on project default"));

  ProcessResult closed = cli(deployer);
  EXPECT_EQ(closed.exit_code, 1) << closed.out << closed.err;
  EXPECT_THAT(closed.out + closed.err, HasSubstr("project default: sync window deny \"* * * * *\" 1h"));
  EXPECT_THAT(closed.out + closed.err, HasSubstr("--override-window --reason WHY"));
  ProcessResult no_reason = cli(deployer, {"--override-window"});
  EXPECT_EQ(no_reason.exit_code, 2) << no_reason.err;
  EXPECT_THAT(no_reason.err, HasSubstr("--override-window needs --reason"));

  ProcessResult ok = cli(deployer, {"--override-window", "--reason", "hotfix INC-42"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err << "\nserver:\n" << ReadFile(log).value_or("");
  EXPECT_THAT(ok.out, HasSubstr("deploy started in the server"));
  EXPECT_THAT(ok.out, HasSubstr("==> dev/dev-1: healthy"));
  EXPECT_THAT(ok.out, HasSubstr(": succeeded"));

  // The object is in the real cluster.
  auto config = kube::LoadConfig({.paths = {kubeconfig}});
  ASSERT_TRUE(config.ok());
  auto client = kube::NewHttpClient(*config);
  ASSERT_TRUE(client.ok());
  auto cm = (*client)->Get({"v1", "ConfigMap", "default", "web-config"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(cm->Find({"data", "from"})->AsString(), "server");

  // The override is audited: by the engine for the window passed, and in the request's row.
  auto audit = [&](const std::string& action) {
    auto r = gantry::Run({"curl", "-s", "-H", std::string("Authorization: Bearer ") + kAdminToken, url + "/api/audit?action=" + action},
                 po);
    GANTRY_CHECK(r.ok());
    return r->out;
  };
  const std::string overrides = audit("windows.override");
  EXPECT_THAT(overrides, HasSubstr("\"actor\":\"robot:deployer\""));
  EXPECT_THAT(overrides, HasSubstr("reason: hotfix INC-42"));
  EXPECT_THAT(overrides, HasSubstr("app/web env/dev cluster/dev-1"));
  EXPECT_THAT(audit("apps.deploy"), HasSubstr("window override requested: hotfix INC-42"));

  // Terminate: a deploy waiting for a Deployment that cannot become available (its Pods fit no
  // node) is stopped by `gantry terminate` in its health wait, long before its 60 s health
  // timeout; the ConfigMap of the next wave is never applied, and the target is left applying, for
  // resume, not failed.
  ASSERT_TRUE(WriteFileAtomic(root / "config" / "envs" / "dev" / "stuck.yaml",
                              "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: stuck}\nspec:\n"
                              "  selector: {matchLabels: {app: stuck}}\n  template:\n"
                              "    metadata: {labels: {app: stuck}}\n    spec:\n"
                              "      nodeSelector: {gantry.dev/no-such-node: \"true\"}\n"
                              "      containers: [{name: app, image: registry.example/stuck:1}]\n---\n"
                              "apiVersion: v1\nkind: ConfigMap\n"
                              "metadata: {name: after-stuck, annotations: {gantry.dev/sync-wave: \"1\"}}\n")
                  .ok());
  ProcessOptions git = po;
  git.cwd = (root / "config").string();
  git.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  ASSERT_TRUE(RunChecked({"git", "add", "-A"}, git).ok());
  ASSERT_TRUE(RunChecked({"git", "commit", "-q", "-m", "stuck"}, git).ok());
  ProcessResult started = cli(deployer, {"--override-window", "--reason", "terminate test", "--no-wait"});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  const auto applied_by = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(*client)->Get({"apps/v1", "Deployment", "default", "stuck"}).ok() && std::chrono::steady_clock::now() < applied_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE((*client)->Get({"apps/v1", "Deployment", "default", "stuck"}).ok()) << ReadFile(log).value_or("");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // into the health wait (no condition shows it)
  const auto asked = std::chrono::steady_clock::now();
  ProcessOptions o;
  o.inherit_env = true;
  o.env = {{"GANTRY_TOKEN", deployer}, {"GANTRY_SERVER", url}, {"HOME", root.string()}};
  auto terminated = gantry::Run({Binary(), "terminate", "web"}, o);
  ASSERT_TRUE(terminated.ok());
  EXPECT_EQ(terminated->exit_code, 0) << terminated->out << terminated->err;
  EXPECT_THAT(terminated->out, HasSubstr("stopping the deploy of web"));
  // Once it ended, nothing of web runs in the server: terminate is 404.
  auto again = [&] { return gantry::Run({Binary(), "terminate", "web"}, o); };
  auto last = again();
  while (last.ok() && last->exit_code == 0 && std::chrono::steady_clock::now() - asked < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    last = again();
  }
  const auto took = std::chrono::steady_clock::now() - asked;
  RecordProperty("terminate_to_end_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(last->err, HasSubstr("HTTP 404"));
  EXPECT_THAT(last->err, HasSubstr("no deploy, resume or rollback of web runs"));
  EXPECT_LT(took, std::chrono::seconds(5)) << "ended within a health-wait slice, not at its 60 s health timeout";
  EXPECT_FALSE((*client)->Get({"v1", "ConfigMap", "default", "after-stuck"}).ok()) << "the next wave was applied";
  auto releases = gantry::Run({"curl", "-s", "-H", std::string("Authorization: Bearer ") + kAdminToken,
                               url + "/api/v1/apps/web/releases?limit=1"}, po);
  ASSERT_TRUE(releases.ok());
  EXPECT_THAT(releases->out, HasSubstr("\"state\":\"applying\"")) << releases->out;
  EXPECT_THAT(audit("apps.terminate"), HasSubstr("terminate deploy"));
}

// Verify before apply in push mode (issue 18): prod's project requires Gantry's signature on its
// images (the key as a PEM file). An image built and pushed by hand with `gantry image build
// --push` and written into prod's manifests is refused by the server's deploy, naming the object,
// the image and the rule, and nothing reaches the cluster; once the image is signed (`gantry image
// sign`), the same deploy applies it, pinned to the digest that was verified.
TEST(DeployServer, AnImagePushedByHandIsRefusedAndTheSignedOneDeploysPinned) {
  auto& cluster = testenv::Shared("kube-cluster.sh");
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  testenv::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const std::string image = host + "/policy/web:hand";
  ProcessOptions po;
  po.inherit_env = true;
  fs::create_directories(root / "files");
  ASSERT_TRUE(WriteFileAtomic(root / "files" / "index.html", "hello\n").ok());
  auto built = RunChecked({Binary(), "image", "build", "--layer", (root / "files").string() + ":/srv", "--output",
                           "oci:" + (root / "layout").string(), "--push", image, "--insecure-registry", host,
                           "--digest-file", (root / "digest").string()},
                          po);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  std::string digest = ReadFile(root / "digest").value_or("");
  while (!digest.empty() && digest.back() == '\n') digest.pop_back();
  sign::PrivateKey key = *sign::GenerateKey(sign::KeyType::kEcdsaP256);
  ASSERT_TRUE(WriteFileAtomic(root / "release.pem", key.Pem()).ok());
  ASSERT_TRUE(WriteFileAtomic(root / "release.pub", key.Public().Pem()).ok());

  const std::string deployment = fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: "{}"}}]}}
)", image);
  CommitConfig(root / "config", {{"envs/prod/app.yaml", deployment}});
  fs::create_directories(root / "deliver");
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "topology.yaml",
                              fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: prod-1}}\n"
                                          "spec: {{kubeconfig: {}, environment: prod}}\n---\n"
                                          "apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: prod}}\nspec: {{}}\n",
                                          cluster.Get("KUBECONFIG")))
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "project.yaml",
                              fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {{name: default}}\n"
                                          "spec:\n  destinations: [{{name: \"*\", namespace: \"*\"}}]\n  credentials: [prod-1]\n"
                                          "  verification:\n  - environments: [prod]\n    images: [\"{}/policy/*\"]\n"
                                          "    keys: [{{file: {}}}]\n",
                                          host, (root / "release.pub").string()))
                  .ok());
  ServerUnderTest server = StartServer(root, {"--insecure-registry", host});
  const std::string deployer = RobotToken(server.url, "deployer", "deployer");

  ProcessResult refused = DeployThroughServer(server.url, deployer, root);
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  const std::string said = refused.out + refused.err;
  EXPECT_THAT(said, HasSubstr("==> prod/prod-1: failed"));
  EXPECT_THAT(said, HasSubstr("apps/v1 Deployment default/web: image " + image + " (" + digest + "): verification[0] ("));
  EXPECT_THAT(said, HasSubstr("project.yaml:8:5) of project default: no signature verifies with its keys"));
  EXPECT_THAT(said, HasSubstr("no signatures (no tag sha256-"));
  auto config = kube::LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
  ASSERT_TRUE(config.ok());
  auto client = kube::NewHttpClient(*config);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->Get({"apps/v1", "Deployment", "default", "web"}).status().code(), Code::kNotFound)
      << "nothing may be applied";

  auto signed_ = RunChecked({Binary(), "image", "sign", image, "--key", (root / "release.pem").string(),
                             "--insecure-http", host, "--registry-config", "none"},
                            po);
  ASSERT_TRUE(signed_.ok()) << signed_.status().ToString();
  ProcessResult ok = DeployThroughServer(server.url, deployer, root);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err << "\nserver:\n" << ReadFile(server.log).value_or("");
  EXPECT_THAT(ok.out, HasSubstr("==> prod/prod-1: healthy"));
  auto web = (*client)->Get({"apps/v1", "Deployment", "default", "web"});
  ASSERT_TRUE(web.ok()) << web.status().ToString();
  EXPECT_EQ(value::StringAt(&*web, {"spec", "template", "spec", "containers", 0, "image"}), image + "@" + digest);
}

}  // namespace
}  // namespace gantry
