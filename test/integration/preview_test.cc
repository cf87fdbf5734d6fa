// Pull-request previews, the whole loop against real components: a config repository on a real
// Gitea (test/env/gitea.sh), a real `gantry server` that deployed it to a real kwok cluster
// (test/env/kube-cluster.sh), Gitea's own pull_request webhook to the server, and the preview
// comment on the pull request with the diff against the cluster; the next push to the pull request
// edits the same comment. A second kwok cluster in pull mode, whose agent's Application renders
// the config repository, gets its own section, compared by a server-side dry run. A pull request
// from a fork is previewed from the fork; one to the app repository, whose pipeline releases into
// the config repository, gets the predicted release. `gantry preview` prints the same report in
// the terminal.

#include <filesystem>
#include <future>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/application.h"
#include "base/base64.h"
#include "base/path.h"
#include "base/process.h"
#include "kube/kube.h"
#include "sync/sync.h"
#include "test/env/gitea.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "preview-admin-token-0123456789";
constexpr char kHookSecret[] = "preview-hook-secret-0123456789";
constexpr char kMarker[] = "<!-- gantry-preview -->";

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

std::string Web(std::string_view image, int replicas) {
  return fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-creds}}
stringData: {{password: {}}}
)",
                     replicas, image, image == "nginx:1.25" ? "s3cret-base" : "s3cret-" + std::to_string(replicas));
}

struct Comment {
  int64_t id = 0;
  std::string body;
};

// The preview comments of pull request `number` of `repo` ("ops/config") once one satisfies `done`
// (polled, with a deadline).
template <typename F>
std::vector<Comment> WaitComments(testenv::Gitea& g, std::string_view repo, int64_t number, F done,
                                  std::chrono::seconds limit = 120s) {
  std::vector<Comment> got;
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    auto list = g.Api("GET", fmt::format("/repos/{}/issues/{}/comments", repo, number));
    if (list.ok()) {
      got.clear();
      for (const auto& c : list->items()) {
        const std::string body = value::StringAt(&c, {"body"});
        if (body.find(kMarker) != std::string::npos) got.push_back({value::IntAt(&c, {"id"}), body});
      }
      if (!got.empty() && done(got.front().body)) return got;
    }
    std::this_thread::sleep_for(300ms);
  }
  return got;
}

// The pull cluster as its agent left it: the Application CRD, an Application of the config
// repository's envs/edge in namespace gantry, and what the agent applied from `objects`.
void RunAgentOnce(const std::string& kubeconfig, const std::string& config_repo, const std::string& objects) {
  auto config = kube::LoadConfig({.paths = {kubeconfig}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = kube::NewHttpClient(*config);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  kube::Client& k = **client;
  ASSERT_TRUE(k.Apply(api::ApplicationCrd(), {.force = true}).ok());
  for (int i = 0; i < 100 && !k.Resolve(api::kApiVersion, api::kKind).ok(); ++i) {
    k.InvalidateDiscovery();
    std::this_thread::sleep_for(100ms);
  }
  auto docs = value::ParseYaml(fmt::format("apiVersion: v1\nkind: Namespace\nmetadata: {{name: gantry}}\n---\n"
                                           "apiVersion: gantry.dev/v1alpha1\nkind: Application\n"
                                           "metadata: {{name: web-edge, namespace: gantry}}\n"
                                           "spec: {{source: {{repoURL: \"{}\", path: envs/edge, targetRevision: main}}, "
                                           "destination: {{namespace: default}}}}\n",
                                           config_repo),
                               "apps.yaml");
  ASSERT_TRUE(docs.ok());
  for (const auto& d : *docs) ASSERT_TRUE(k.Apply(d).ok());
  sync::Options options;
  options.app = "web-edge";  // the agent tracks an Application of its own namespace by its name
  auto op = sync::Operation::Create(k, *value::ParseYaml(objects, "web.yaml"), options);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  ASSERT_EQ((*op)->Run().phase, sync::Phase::kSucceeded);
}

// A kubeconfig of the pull cluster `edge` for a ServiceAccount that may read everything and write
// nothing, so a server-side dry run is refused (403): the token of a ServiceAccount token Secret,
// which the cluster's controller manager fills.
void WriteReadOnlyKubeconfig(const testenv::Server& edge, const fs::path& out) {
  auto config = kube::LoadConfig({.paths = {edge.Get("KUBECONFIG")}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto client = kube::NewHttpClient(*config);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  kube::Client& k = **client;
  auto docs = value::ParseYaml(R"(apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: gantry}
---
apiVersion: v1
kind: Secret
metadata: {name: viewer-token, namespace: gantry, annotations: {kubernetes.io/service-account.name: viewer}}
type: kubernetes.io/service-account-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: preview-viewer}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: preview-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: preview-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: gantry}]
)",
                               "viewer.yaml");
  ASSERT_TRUE(docs.ok());
  for (const auto& d : *docs) ASSERT_TRUE(k.Apply(d).ok());
  std::string token;
  for (int i = 0; i < 100 && token.empty(); ++i) {
    auto secret = k.Get({"v1", "Secret", "gantry", "viewer-token"});
    if (secret.ok()) token = Base64Decode(value::StringAt(&*secret, {"data", "token"})).value_or("");
    if (token.empty()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(token.empty()) << "the controller manager did not fill the ServiceAccount token";
  ASSERT_TRUE(WriteFileAtomic(out, fmt::format("apiVersion: v1\nkind: Config\ncurrent-context: viewer\n"
                                              "clusters: [{{name: edge, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\n"
                                              "users: [{{name: viewer, user: {{token: \"{}\"}}}}]\n"
                                              "contexts: [{{name: viewer, context: {{cluster: edge, user: viewer}}}}]\n",
                                              edge.Get("KUBE_SERVER"), edge.Get("KUBE_CA"), token))
                  .ok());
}

TEST(Preview, APullRequestGetsOneCommentWithTheDiffAgainstTheClusterEditedOnTheNextPush) {
  // The pull cluster starts while the push cluster does.
  auto starting = std::async(std::launch::async, [] {
    return testenv::Server::Start("kube-cluster.sh", {"--name", "preview-edge", "--nodes", "1"});
  });
  auto cluster = testenv::Server::Start("kube-cluster.sh", {"--name", "preview", "--nodes", "1"});
  auto edge = starting.get();
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  testenv::Gitea g(testenv::Shared("gitea.sh"));
  testenv::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const std::string work = (root / "work").string();
  ASSERT_TRUE(g.CreateOrg("ops").ok());
  ASSERT_TRUE(g.CreateRepo("ops", "config").ok());
  ASSERT_TRUE(g.CreateRepo("ops", "app").ok());
  ASSERT_TRUE(
      g.Push("ops", "config", work, {{"envs/dev/web.yaml", Web("nginx:1.25", 1)}, {"envs/edge/web.yaml", Web("nginx:1.25", 1)}}, "first")
          .ok());
  // Gantry's user: write access, a token with the scopes of comments.
  ASSERT_TRUE(g.CreateUser("gantry-bot", "bot-password-12345").ok());
  ASSERT_TRUE(g.Api("PUT", "/repos/ops/config/collaborators/gantry-bot", R"({"permission":"write"})").ok());
  auto token = g.CreateToken("gantry-bot", "bot-password-12345", "previews", {"write:repository", "write:issue"});
  ASSERT_TRUE(token.ok()) << token.status().ToString();

  fs::create_directories(root / "deliver");
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "topology.yaml",
                              fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: dev-1}}\n"
                                          "spec: {{kubeconfig: {}, environment: dev}}\n---\n"
                                          "apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: edge-1}}\n"
                                          "spec: {{kubeconfig: {}, environment: dev, mode: pull}}\n---\n"
                                          "apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: edge-ro}}\n"
                                          "spec: {{kubeconfig: {}, environment: dev, mode: pull}}\n---\n"
                                          "apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: dev}}\nspec: {{}}\n",
                                          (*cluster)->Get("KUBECONFIG"), (*edge)->Get("KUBECONFIG"),
                                          (root / "edge-ro.kubeconfig").string()))
                  .ok());
  const std::string config_repo = g.RepoUrl("ops", "config");
  RunAgentOnce((*edge)->Get("KUBECONFIG"), config_repo, Web("nginx:1.25", 1));
  if (HasFatalFailure()) return;
  // edge-ro: the same cluster through credentials that may not write.
  WriteReadOnlyKubeconfig(**edge, root / "edge-ro.kubeconfig");
  if (HasFatalFailure()) return;
  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"HOOK", kHookSecret}, {"API_TOKEN", kAdminToken}, {"FORGE_TOKEN", *token}};
  const std::string log = (root / "server.log").string();
  auto server = Process::Start({Binary(), "server", "--listen", "127.0.0.1:0", "--store", "sqlite:" + (root / "gantry.db").string(),
                                "--webhook-secret-env", "HOOK", "--webhook-provider", "gitea", "--api-token-env", "API_TOKEN",
                                "--repo", g.RepoUrl("ops", "app"), "--config-repo", config_repo, "--deliver-config",
                                (root / "deliver").string(), "--data-dir", (root / "data").string(), "--health-timeout", "60s",
                                "--forge", g.url() + "/ type=gitea token-env=FORGE_TOKEN"},
                               po, log);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string port;
  for (int i = 0; i < 400 && port.empty(); ++i) {
    std::this_thread::sleep_for(50ms);
    std::smatch m;
    std::string text = ReadFile(log).value_or("");
    if (std::regex_search(text, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
  }
  ASSERT_FALSE(port.empty()) << ReadFile(log).value_or("");
  const std::string url = "http://127.0.0.1:" + port;

  // main runs in the cluster: deployed through the server, which so knows the app.
  ProcessOptions cli;
  cli.inherit_env = true;
  cli.env = {{"GANTRY_TOKEN", kAdminToken}, {"GANTRY_SERVER", url}, {"HOME", root.string()}};
  cli.timeout = 180s;
  auto deployed = gantry::Run({Binary(), "deploy", "web", "--revision", "main"}, cli);
  ASSERT_TRUE(deployed.ok());
  ASSERT_EQ(deployed->exit_code, 0) << deployed->out << deployed->err << ReadFile(log).value_or("");

  // Gitea's own webhook for pull requests, then a pull request changing the image and the Secret.
  ASSERT_TRUE(g.AddWebhook("ops", "config", url + "/webhook", kHookSecret, {"pull_request", "pull_request_sync"}).ok());
  ASSERT_TRUE(g.Push("ops", "config", work, {{"envs/dev/web.yaml", Web("nginx:1.26", 1)}, {"envs/edge/web.yaml", Web("nginx:1.26", 2)}},
                     "bump", "bump")
                  .ok());
  auto pr = g.Api("POST", "/repos/ops/config/pulls", R"({"base":"main","head":"bump","title":"nginx 1.26"})");
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  const int64_t number = value::IntAt(&*pr, {"number"});
  ASSERT_GT(number, 0);

  auto comments = WaitComments(g, "ops/config", number, [](const std::string& b) { return b.find("nginx:1.26") != std::string::npos; });
  ASSERT_EQ(comments.size(), 1u) << ReadFile(log).value_or("");
  const Comment first = comments.front();
  EXPECT_THAT(first.body, HasSubstr("#### dev / dev-1: web (`envs/dev`)"));
  EXPECT_THAT(first.body, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → nginx:1.26 |"));
  EXPECT_THAT(first.body, HasSubstr("| changed | `v1 Secret default/web-creds` |"));
  // The field diff against the live object.
  EXPECT_THAT(first.body, ::testing::ContainsRegex("\n-[ -]*image: nginx:1.25\n"));
  EXPECT_THAT(first.body, ::testing::ContainsRegex("\n\\+[ -]*image: nginx:1.26\n"));
  EXPECT_THAT(first.body, Not(HasSubstr("s3cret")));
  EXPECT_THAT(first.body, Not(HasSubstr("czNjcmV0")));  // nor in base64
  // The pull cluster: its Application rendered at the head, dry-run against the cluster.
  EXPECT_THAT(first.body, HasSubstr("#### dev / edge-1 (pull): gantry/web-edge (`envs/edge`)\n\n"
                                    "A pull agent applies this change once it is merged.\nCompared by a server-side dry run.\n"));
  EXPECT_THAT(first.body, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → nginx:1.26; replicas: 1 → 2 |"));
  // Through read-only credentials the apiserver refuses the dry run: compared with the live objects, and said.
  EXPECT_THAT(first.body, HasSubstr("#### dev / edge-ro (pull): gantry/web-edge (`envs/edge`)\n\n"
                                    "A pull agent applies this change once it is merged.\n"
                                    "Compared with the live objects: a server-side dry run of "));
  EXPECT_THAT(first.body, HasSubstr("system:serviceaccount:gantry:viewer"));
  EXPECT_THAT(first.body, HasSubstr("3 target(s)"));

  // A second push to the pull request: the same comment, edited with the new diff.
  ASSERT_TRUE(g.Push("ops", "config", work, {{"envs/dev/web.yaml", Web("nginx:1.27", 3)}, {"envs/edge/web.yaml", Web("nginx:1.27", 3)}},
                     "bump again", "bump")
                  .ok());
  comments = WaitComments(g, "ops/config", number, [](const std::string& b) { return b.find("nginx:1.27") != std::string::npos; });
  ASSERT_EQ(comments.size(), 1u) << ReadFile(log).value_or("");
  EXPECT_EQ(comments.front().id, first.id);
  EXPECT_THAT(comments.front().body, HasSubstr("image web: nginx:1.25 → nginx:1.27; replicas: 1 → 3"));
  EXPECT_THAT(comments.front().body, Not(HasSubstr("nginx:1.26")));
  EXPECT_THAT(comments.front().body, Not(HasSubstr("s3cret")));

  // A pull request from a fork: its head fetched from the fork into a mirror of its own (removed
  // afterwards) and previewed against the push cluster; the pull cluster's Application renders from
  // the config repository only, and says so.
  ASSERT_TRUE(g.CreateOrg("forks").ok());
  ASSERT_TRUE(g.Api("POST", "/repos/ops/config/forks", R"({"organization":"forks"})").ok());
  ASSERT_TRUE(g.Push("forks", "config", work, {{"envs/dev/web.yaml", Web("nginx:1.28", 1)}}, "from a fork", "fix").ok());
  auto forked = g.Api("POST", "/repos/ops/config/pulls", R"({"base":"main","head":"forks:fix","title":"nginx 1.28"})");
  ASSERT_TRUE(forked.ok()) << forked.status().ToString();
  const int64_t fork_number = value::IntAt(&*forked, {"number"});
  comments = WaitComments(g, "ops/config", fork_number, [](const std::string& b) { return b.find("nginx:1.28") != std::string::npos; });
  ASSERT_EQ(comments.size(), 1u) << ReadFile(log).value_or("");
  EXPECT_THAT(comments.front().body, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → nginx:1.28 |"));
  EXPECT_THAT(comments.front().body, HasSubstr("**Not previewed:** the head is on the fork " + g.RepoUrl("forks", "config")));
  EXPECT_THAT(comments.front().body, Not(HasSubstr("s3cret")));
  EXPECT_TRUE(fs::is_empty(root / "data" / "preview-forks"));

  // A pull request to the app repository, whose pipeline releases into envs/dev of the config
  // repository: its comment is what that release would change, predicted.
  const std::string app_work = (root / "app-work").string();
  const std::string pipeline = fmt::format(
      "steps: {{build: {{run: [make]}}}}\nimage: {{repository: nginx, tags: [\"pr-{{short_commit}}\"], layers: [dist]}}\n"
      "release: {{repo: \"{}\", branch: main, path: envs/dev}}\n",
      config_repo);
  ASSERT_TRUE(g.Push("ops", "app", app_work, {{".gantry/pipeline.yaml", pipeline}}, "pipeline").ok());
  ASSERT_TRUE(g.AddWebhook("ops", "app", url + "/webhook", kHookSecret, {"pull_request", "pull_request_sync"}).ok());
  auto app_head = g.Push("ops", "app", app_work, {{"main.go", "package main\n"}}, "a change", "feature");
  ASSERT_TRUE(app_head.ok()) << app_head.status().ToString();
  auto app_pr = g.Api("POST", "/repos/ops/app/pulls", R"({"base":"main","head":"feature","title":"a change"})");
  ASSERT_TRUE(app_pr.ok()) << app_pr.status().ToString();
  const std::string predicted_tag = "nginx:pr-" + app_head->substr(0, 12);
  const auto app_comments = WaitComments(g, "ops/app", value::IntAt(&*app_pr, {"number"}), [](const std::string&) { return true; });
  ASSERT_EQ(app_comments.size(), 1u) << ReadFile(log).value_or("");
  EXPECT_THAT(app_comments[0].body, HasSubstr("**Predicted.** This pull request is to the app repository"));
  EXPECT_THAT(app_comments[0].body, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → " + predicted_tag + " |"));

  // The same report in the terminal.
  auto printed = gantry::Run({Binary(), "preview", "--repo", config_repo, "--base", "main", "--head", "bump", "--app", "web",
                      "--config", (root / "deliver").string(), "--cache-dir", (root / "cli-cache").string()},
                     cli);
  ASSERT_TRUE(printed.ok());
  EXPECT_EQ(printed->exit_code, 0) << printed->err;
  EXPECT_THAT(printed->out, HasSubstr("== dev / dev-1: web (envs/dev) =="));
  EXPECT_THAT(printed->out, HasSubstr("image web: nginx:1.25 → nginx:1.27; replicas: 1 → 3"));
  EXPECT_THAT(printed->out, HasSubstr("== dev / edge-1 (pull): gantry/web-edge (envs/edge) ==\n"
                                      "  A pull agent applies this change once it is merged.\n"
                                      "  Compared by a server-side dry run.\n"));
  EXPECT_THAT(printed->out, Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace gantry
