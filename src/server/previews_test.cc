// Pull-request previews on the fake cluster (test/fakes): what the report says per object (added,
// changed, removed, the health-relevant callouts, drift the pull request does not make), Secrets
// redacted, the report's order and bound; and the comment put into the outbox and delivered to a
// local receiver shaped as Gitea's API. The real loop (Gitea's webhook, the kwok cluster) is
// test/integration/preview_test.cc.

#include "server/previews.h"

#include <stdlib.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "base/path.h"
#include "base/process.h"
#include "http/http.h"
#include "sync/sync.h"
#include "test/fakes/agent_source.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using value::Value;

std::vector<Value> Docs(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "test.yaml");
  GANTRY_CHECK(docs.ok());
  return *std::move(docs);
}

std::string Deployment(std::string_view image, int replicas, std::string_view cpu) {
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
        resources: {{requests: {{cpu: {}}}}}
)",
                     replicas, image, cpu);
}

// "hunter2-base" and "hunter2-head", base64.
constexpr char kBaseSecret[] = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: aHVudGVyMi1iYXNl}\n";
constexpr char kHeadSecret[] = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: aHVudGVyMi1oZWFk}\n";

// The config repository: two revisions of envs/dev.
const std::map<std::string, std::string> kRevisions = {
    {"main", Deployment("nginx:1.25", 1, "100m") + "---\n" + kBaseSecret +
                 "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: old}\ndata: {k: v}\n"},
    {"feature", Deployment("nginx:1.26", 3, "250m") + "---\n" + kHeadSecret +
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: new}\ndata: {k: v}\n"},
};

deliver::RenderFn Render() {
  return [](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
    auto it = kRevisions.find(std::string(revision));
    if (it == kRevisions.end() || path != "envs/dev") return NotFoundError("path {:?} does not exist in commit {}", path, revision);
    return render::Rendered{.commit = std::string(revision) + "-sha", .objects = Docs(it->second)};
  };
}

// Whether a line of a unified diff starts with `sign` and ends with `content`.
bool HasLine(std::string_view diff, char sign, std::string_view content) {
  size_t at = 0;
  while (at < diff.size()) {
    const size_t end = std::min(diff.find('\n', at), diff.size());
    const std::string_view line = diff.substr(at, end - at);
    if (line.starts_with(sign) && line.ends_with(content)) return true;
    at = end + 1;
  }
  return false;
}

class PreviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.clusters.push_back({.name = "dev-1", .kubeconfig = "/nonexistent", .environment = "dev"});
    config_.environments.push_back({.name = "dev"});
    // The cluster runs main, deployed by the engine (labels, inventory), and drifted: the old
    // ConfigMap's data edited by hand.
    sync::Options options;
    options.app = deliver::TrackingKey("default", "web");
    auto op = sync::Operation::Create(cluster_, Docs(kRevisions.at("main")), options);
    ASSERT_TRUE(op.ok()) << op.status().ToString();
    ASSERT_EQ((*op)->Run().phase, sync::Phase::kSucceeded);
  }

  PreviewRequest Request() {
    return {.config = &config_,
            .render = Render(),
            .connect = [this](const deliver::Cluster&) -> Result<std::unique_ptr<kube::Client>> {
              return std::unique_ptr<kube::Client>(std::make_unique<fakes::ForwardingKubeClient>(cluster_));
            },
            .base = "main",
            .head = "feature",
            .apps = {{"web", "default"}}};
  }

  deliver::Config config_;
  fakes::FakeKubeClient cluster_;
};

TEST_F(PreviewTest, ObjectsAddedChangedAndRemovedWithTheHealthRelevantChanges) {
  auto p = ComputePreview(Request());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->base, "main-sha");
  EXPECT_EQ(p->head, "feature-sha");
  ASSERT_EQ(p->targets.size(), 1u);
  const TargetPreview& t = p->targets[0];
  EXPECT_EQ(t.error, "");
  EXPECT_EQ(t.environment, "dev");
  EXPECT_EQ(t.cluster, "dev-1");
  EXPECT_EQ(t.path, "envs/dev");
  std::vector<std::string> got;
  for (const auto& o : t.objects) got.push_back(std::string(Name(o.change)) + " " + o.ref.ToString());
  // In order: added, changed (by kind), removed.
  EXPECT_THAT(got, ::testing::ElementsAre("added v1 ConfigMap default/new", "changed apps/v1 Deployment default/web",
                                          "changed v1 Secret default/creds", "removed v1 ConfigMap default/old"));
  const ObjectPreview& web = t.objects[1];
  EXPECT_TRUE(web.in_pull_request);
  EXPECT_THAT(web.callouts, ::testing::ElementsAre("image web: nginx:1.25 → nginx:1.26",
                                                   R"(requests web: {"cpu":"100m"} → {"cpu":"250m"})", "replicas: 1 → 3"));
  EXPECT_TRUE(HasLine(web.diff, '-', "image: nginx:1.25")) << web.diff;
  EXPECT_TRUE(HasLine(web.diff, '+', "image: nginx:1.26")) << web.diff;
  // No Secret value, old or new, in any diff or in the report.
  const std::string report = Report(*p, {});
  for (const auto& o : t.objects) {
    EXPECT_THAT(o.diff, Not(HasSubstr("aHVudGVyMi")));
  }
  EXPECT_THAT(t.objects[2].diff, HasSubstr("+++++++++"));
  EXPECT_THAT(report, Not(HasSubstr("aHVudGVyMi")));
  EXPECT_THAT(report, Not(HasSubstr("hunter2")));
  EXPECT_TRUE(report.starts_with(kMarker));
  EXPECT_THAT(report, HasSubstr("1 target(s), 1 object(s) added, 2 changed, 1 removed."));
  EXPECT_THAT(report, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → nginx:1.26;"));
  EXPECT_THAT(report, HasSubstr("```diff\n"));
}

TEST_F(PreviewTest, DriftThePullRequestDoesNotMakeIsToldApartAndListedLast) {
  // The cluster's Deployment scaled by hand; the pull request only adds a ConfigMap.
  auto live = cluster_.Get({"apps/v1", "Deployment", "default", "web"});
  ASSERT_TRUE(live.ok());
  Value scaled = *live;
  scaled.MutableGet("spec")->Set("replicas", 5);
  ASSERT_TRUE(cluster_.Replace(scaled).ok());
  PreviewRequest q = Request();
  q.head = "main";
  auto p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 1u);
  ASSERT_EQ(p->targets[0].objects.size(), 1u);
  const ObjectPreview& web = p->targets[0].objects[0];
  EXPECT_EQ(web.ref.name, "web");
  EXPECT_FALSE(web.in_pull_request);
  EXPECT_THAT(web.callouts, ::testing::ElementsAre("replicas: 5 → 1"));
  EXPECT_THAT(Report(*p, {.markdown = false}), HasSubstr("not changed by this pull request"));
}

TEST_F(PreviewTest, AnUnreachableClusterIsReportedAndAnUnknownPathIsNoTarget) {
  PreviewRequest q = Request();
  q.connect = [](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
    return UnavailableError("cluster {}: cannot reach https://10.0.0.1:6443", c.name);
  };
  q.apps.push_back({"api", "default"});
  q.path_template = "envs/{env}";
  auto p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 2u);  // both apps render envs/dev
  EXPECT_THAT(p->targets[0].error, HasSubstr("cannot reach https://10.0.0.1:6443"));
  EXPECT_THAT(Report(*p, {}), HasSubstr("2 target(s) could not be previewed"));
  q.path_template = "apps/{app}/{env}";
  p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->targets.empty());
  EXPECT_THAT(Report(*p, {}), HasSubstr("no environment of this server renders from this change"));
  q.only_env = "prod";
  EXPECT_EQ(ComputePreview(q).status().code(), Code::kNotFound);
}

// A pull cluster edge-1 (environment dev) whose agent runs main of the config repository's
// envs/edge through an Application; another Application there has another repository.
class PullPreviewTest : public PreviewTest {
 protected:
  void SetUp() override {
    PreviewTest::SetUp();
    config_.clusters.push_back({.name = "edge-1", .kubeconfig = "/nonexistent", .environment = "dev", .pull = true});
    source_.AddCommit("main", {{"envs/edge", Deployment("nginx:1.25", 1, "100m")}, {"other", kBaseSecret}}, {});
    source_.AddCommit("feature", {{"envs/edge", Deployment("nginx:1.26", 2, "100m")}, {"other", kHeadSecret}}, {"envs/edge/web.yaml"});
    for (const auto& [name, repo, path] : {std::tuple("web", "https://git.example/ops/config.git", "envs/edge"),
                                           std::tuple("other", "https://git.example/ops/other.git", "other")}) {
      auto app = value::ParseYaml(fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {{name: {}, namespace: gantry}}\n"
                                              "spec: {{source: {{repoURL: \"{}\", path: {}}}, destination: {{namespace: default}}}}\n",
                                              name, repo, path),
                                  "app.yaml");
      ASSERT_TRUE(app.ok());
      ASSERT_TRUE(edge_.Create((*app)[0]).ok());
    }
    // What the agent applied from main (tracked by the Application's name in its own namespace).
    sync::Options options;
    options.app = "web";
    auto op = sync::Operation::Create(edge_, Docs(Deployment("nginx:1.25", 1, "100m")), options);
    ASSERT_TRUE(op.ok()) << op.status().ToString();
    ASSERT_EQ((*op)->Run().phase, sync::Phase::kSucceeded);
  }

  PreviewRequest PullRequest() {
    PreviewRequest q = Request();
    q.connect = [this](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
      return std::unique_ptr<kube::Client>(std::make_unique<fakes::ForwardingKubeClient>(c.pull ? edge_ : cluster_));
    };
    q.pull_source = &source_;
    q.config_repo = "https://git.example/ops/config";  // the same repository as the Application's
    q.pull_repos = {"https://git.example/ops/config.git"};
    return q;
  }

  fakes::FakeKubeClient edge_;
  fakes::FakeSource source_;
};

TEST_F(PullPreviewTest, ApplicationsOfTheConfigRepositoryAreRenderedAsTheirAgentRendersThemAndDryRun) {
  auto p = ComputePreview(PullRequest());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 2u);  // the push target, then the pull one; not the other repository's
  EXPECT_FALSE(p->targets[0].pull);
  const TargetPreview& t = p->targets[1];
  EXPECT_TRUE(t.pull);
  EXPECT_EQ(t.error, "");
  EXPECT_EQ(t.app, "gantry/web");
  EXPECT_EQ(t.cluster, "edge-1");
  EXPECT_EQ(t.path, "envs/edge");
  EXPECT_EQ(t.compared, "dry run");
  ASSERT_EQ(t.objects.size(), 1u);
  EXPECT_EQ(t.objects[0].ref.ToString(), "apps/v1 Deployment default/web");
  EXPECT_THAT(t.objects[0].callouts, ::testing::ElementsAre("image web: nginx:1.25 → nginx:1.26", "replicas: 1 → 2"));
  EXPECT_TRUE(HasLine(t.objects[0].diff, '+', "image: nginx:1.26")) << t.objects[0].diff;
  EXPECT_GT(edge_.count("apply"), 1);  // the dry run (and the agent's sync in SetUp)
  const std::string report = Report(*p, {});
  EXPECT_THAT(report, HasSubstr("#### dev / edge-1 (pull): gantry/web (`envs/edge`)"));
  EXPECT_THAT(report, HasSubstr("A pull agent applies this change once it is merged.\nCompared by a server-side dry run."));
  EXPECT_THAT(report, HasSubstr("2 target(s)"));
}

TEST_F(PullPreviewTest, CredentialsThatMayNotDryRunAreComparedWithTheLiveObjectsAndSaySo) {
  edge_.FailNext("apply", PermissionDeniedError("deployments.apps \"web\" is forbidden: User \"viewer\" cannot patch"));
  auto p = ComputePreview(PullRequest());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 2u);
  const TargetPreview& t = p->targets[1];
  EXPECT_EQ(t.compared, "live");
  EXPECT_THAT(t.compared_note, HasSubstr("cannot patch"));
  ASSERT_EQ(t.objects.size(), 1u);
  EXPECT_TRUE(HasLine(t.objects[0].diff, '+', "image: nginx:1.26")) << t.objects[0].diff;
  EXPECT_THAT(Report(*p, {.markdown = false}), HasSubstr("  Compared with the live objects: a server-side dry run of apps/v1 "
                                                         "Deployment default/web was refused"));
}

TEST_F(PullPreviewTest, AnObjectTheServerRefusesInTheDryRunIsNamedWithTheRefusal) {
  source_.AddCommit("two", {{"envs/edge", Deployment("nginx:1.26", 2, "100m") +
                                           "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: zz}\ndata: {k: v}\n"}},
                    {});
  // The ConfigMap is dry-run first (kind order) and refused; the Deployment's goes through.
  edge_.FailNext("apply", InvalidArgumentError("admission webhook \"policy.example\" denied the request: no team label"));
  PreviewRequest q = PullRequest();
  q.head = "two";
  q.apps.clear();  // pull targets only
  auto p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 1u);
  const TargetPreview& t = p->targets[0];
  EXPECT_EQ(t.compared, "dry run");
  ASSERT_EQ(t.objects.size(), 2u);
  EXPECT_EQ(t.objects[0].ref.name, "zz");
  EXPECT_THAT(t.objects[0].refused, HasSubstr("denied the request: no team label"));
  EXPECT_EQ(t.objects[1].refused, "");
  const std::string report = Report(*p, {});
  EXPECT_THAT(report, HasSubstr("| added | `v1 ConfigMap default/zz` | refused by the server in a dry run: "));
  EXPECT_THAT(report, HasSubstr("denied the request: no team label |"));
}

TEST_F(PullPreviewTest, WhatTheApplicationsProjectRefusesIsListedWithTheRuleAndLeftOutOfTheDiff) {
  edge_.AddKind({.group = "gantry.dev", .version = "v1alpha1", .kind = "Project", .resource = "projects"});
  for (const char* yaml : {R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a, namespace: gantry}
spec:
  sourceRepos: ["https://git.example/ops/*"]
  destinations: [{name: "edge-*", namespace: default}]
  namespaceResourceBlacklist: [{group: "", kind: Secret}]
)",
                           R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: gantry}
spec: {project: team-a, source: {repoURL: "https://git.example/ops/config.git", path: envs/edge}, destination: {namespace: default}}
)"}) {
    auto docs = value::ParseYaml(yaml, "project.yaml");
    ASSERT_TRUE(docs.ok());
    ASSERT_TRUE(edge_.Apply((*docs)[0], {.force = true}).ok());
  }
  source_.AddCommit("bad", {{"envs/edge", Deployment("nginx:1.26", 1, "100m") + "---\n" + kHeadSecret +
                                           "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: kube-system}\n"}},
                    {});
  PreviewRequest q = PullRequest();
  q.head = "bad";
  q.apps.clear();
  auto p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 1u);
  const TargetPreview& t = p->targets[0];
  EXPECT_EQ(t.error, "");
  ASSERT_EQ(t.violations.size(), 2u) << fmt::format("{}", fmt::join(t.violations, "\n"));
  EXPECT_THAT(t.violations, ::testing::Contains(::testing::AllOf(HasSubstr("team-a"), HasSubstr("Secret"),
                                                                 HasSubstr("namespaceResourceBlacklist"))));
  EXPECT_THAT(t.violations, ::testing::Contains(::testing::AllOf(HasSubstr("kube-system"), HasSubstr("destinations"))));
  // The rest is still compared: the Deployment's image.
  ASSERT_EQ(t.objects.size(), 1u);
  EXPECT_EQ(t.objects[0].ref.kind, "Deployment");
  const std::string report = Report(*p, {});
  EXPECT_THAT(report, HasSubstr("; 2 policy violation(s)."));
  EXPECT_THAT(report, HasSubstr("2 policy violation(s): a sync of this change would be refused for\n- "));
  // An Application whose project does not exist is refused by its agent: said, not previewed.
  ASSERT_TRUE(edge_.Delete({"gantry.dev/v1alpha1", "Project", "gantry", "team-a"}).ok());
  p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_THAT(p->targets[0].error, HasSubstr("project team-a of Application gantry/web"));
}

TEST_F(PullPreviewTest, AnUnreachablePullClusterIsReportedAndPushTargetsStillShown) {
  PreviewRequest q = PullRequest();
  q.connect = [this](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
    if (c.pull) return UnavailableError("cluster {}: cannot reach https://10.0.0.2:6443", c.name);
    return std::unique_ptr<kube::Client>(std::make_unique<fakes::ForwardingKubeClient>(cluster_));
  };
  auto p = ComputePreview(q);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->targets.size(), 2u);
  EXPECT_EQ(p->targets[0].error, "");
  EXPECT_TRUE(p->targets[1].pull);
  EXPECT_THAT(p->targets[1].error, HasSubstr("list the Applications of pull cluster edge-1: cluster edge-1: cannot reach"));
}

// A preview of `targets` × `objects` changed objects, each with a `diff_bytes` diff.
Preview Large(int targets, int objects, size_t diff_bytes) {
  Preview p{.base = "b", .head = "h"};
  for (int t = 0; t < targets; ++t) {
    TargetPreview target{.app = "web", .environment = "dev", .cluster = fmt::format("c{}", t), .path = "envs/dev"};
    for (int i = 0; i < objects; ++i) {
      target.objects.push_back({.ref = {"v1", "ConfigMap", "default", fmt::format("cm-{:04}", i)},
                                .diff = std::string(diff_bytes, 'x') + "\n"});
    }
    p.targets.push_back(std::move(target));
  }
  return p;
}

TEST(PreviewReport, ALargeDiffIsSummarisedPerObjectWithinTheBound) {
  const Preview p = Large(2, 10, 10'000);
  const std::string full = Report(p, {.max_bytes = 1 << 20});
  EXPECT_THAT(full, HasSubstr(std::string(10'000, 'x')));
  const std::string bounded = Report(p, {.full_diff = "`gantry preview ...`"});
  EXPECT_LE(bounded.size(), 64u * 1024);
  EXPECT_TRUE(bounded.starts_with(kMarker));
  EXPECT_THAT(bounded, Not(HasSubstr("xxxxxxxxxx")));
  EXPECT_THAT(bounded, HasSubstr("| changed | `v1 ConfigMap default/cm-0009` |"));
  EXPECT_THAT(bounded, ::testing::ContainsRegex("The diffs \\(19[0-9] KiB\\) are left out: this report is bounded to 64 KiB\\. "
                                               "The full diff: `gantry preview \\.\\.\\.`"));
}

TEST(PreviewReport, TooManyObjectsAreCutWithACount) {
  const Preview p = Large(1, 3000, 10);
  const std::string bounded = Report(p, {});
  EXPECT_LE(bounded.size(), 64u * 1024);
  EXPECT_THAT(bounded, HasSubstr("| changed | `v1 ConfigMap default/cm-0000` |"));
  EXPECT_THAT(bounded, ::testing::ContainsRegex("\n\\.\\.\\. and [0-9]+ more row\\(s\\) left out\\.\n"));
  EXPECT_THAT(bounded, Not(HasSubstr("cm-2999")));
}

TEST(PreviewReport, HealthCalloutsOfAWorkloadOnly) {
  const Value cron = Docs(R"(apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          initContainers: [{name: init, image: busybox:1}]
          containers: [{name: job, image: tool:2, resources: {limits: {memory: 1Gi}}}]
)")[0];
  EXPECT_THAT(HealthCallouts(nullptr, &cron),
              ::testing::ElementsAre("image init: (none) → busybox:1", "image job: (none) → tool:2",
                                     R"(limits job: (none) → {"memory":"1Gi"})"));
  const Value cm = Docs("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")[0];
  EXPECT_TRUE(HealthCallouts(nullptr, &cm).empty());
  EXPECT_TRUE(HealthCallouts(&cron, nullptr).empty());
  EXPECT_TRUE(HealthCallouts(&cron, &cron).empty());
}

// A forge API shaped as Gitea's for comments: lists none, records the created one.
class GiteaComments {
 public:
  GiteaComments() {
    server_.Handle("GET", "/", [](const http::Request&) { return http::Response::Json(200, "[]"); });
    server_.Handle("POST", "/", [this](const http::Request& req) {
      MutexLock lock(mu_);
      posts_.push_back(req.target + " " + req.body);
      return http::Response::Json(201, R"({"id": 41})");
    });
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string api() const { return fmt::format("http://127.0.0.1:{}/api/v1", server_.port()); }
  std::vector<std::string> posts() {
    MutexLock lock(mu_);
    return posts_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> posts_ GUARDED_BY(mu_);
  http::Server server_;
};

TEST_F(PreviewTest, APullRequestWebhookPutsTheCommentIntoTheOutboxWhichDeliversIt) {
  std::string tmpl = (fs::temp_directory_path() / "previews_test.XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;
  {
    auto store = store::Open("sqlite:" + (dir / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateRelease({.app = "web", .config_revision = "main", .project = "default"}).ok());
    GiteaComments api;
    const ForgeConfig forge{.prefix = "https://git.example/",
                            .options = {.kind = forge::Kind::kGitea, .api_url = api.api(), .token = "tok", .timeout = 3s}};
    Previews previews({.store = store->get(),
                       .config = &config_,
                       .renderer = [] { return Render(); },
                       .connect = Request().connect,
                       .config_repo = "https://git.example/shop/config.git",
                       .forges = {forge}},
                      /*start=*/false);
    webhook::Event e{.provider = webhook::Provider::kGitea,
                     .kind = webhook::Kind::kPullRequest,
                     .repo_full_name = "shop/config",
                     .clone_url = "https://git.example/shop/config.git",
                     .pull_request = webhook::PullRequest{.action = "opened",
                                                          .normalized_action = webhook::PrAction::kOpened,
                                                          .number = 7,
                                                          .head_sha = "feature",
                                                          .base_ref = "main"}};
    webhook::Event other = e;
    other.clone_url = "https://git.example/shop/web.git";
    other.repo_full_name = "shop/web";
    EXPECT_FALSE(previews.Offer(other)) << "not the config repository";
    webhook::Event closed = e;
    closed.pull_request->normalized_action = webhook::PrAction::kClosed;
    EXPECT_FALSE(previews.Offer(closed));
    ASSERT_TRUE(previews.Handle(e).ok());
    auto rows = (*store)->ListForgeStatuses({});
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].sha, "pull/7");
    EXPECT_EQ((*rows)[0].context, kCommentContext);
    EXPECT_THAT((*rows)[0].description, HasSubstr("image web: nginx:1.25 → nginx:1.26"));
    // The same preview again changes nothing in the outbox; the delivery posts it once.
    ASSERT_TRUE(previews.Handle(e).ok());
    EventBus bus;
    auto statuses = ForgeStatuses::Start(bus, {.store = store->get(), .forges = {forge}}, /*start=*/false);
    ASSERT_TRUE(statuses.ok());
    (*statuses)->DeliverDue();
    ASSERT_EQ(api.posts().size(), 1u);
    EXPECT_THAT(api.posts()[0], HasSubstr("/api/v1/repos/shop/config/issues/7/comments {\"body\":\"<!-- gantry-preview -->"));
    auto delivered = (*store)->ListForgeStatuses({.delivery = store::NotificationState::kDelivered});
    ASSERT_TRUE(delivered.ok());
    EXPECT_EQ(delivered->size(), 1u);
  }
  fs::remove_all(dir);
}

// A pull request to an app repository whose pipeline releases into the config repository: the
// comment, on the app repository's pull request, is what that release would change, predicted.
TEST_F(PreviewTest, APullRequestToAnAppRepositoryPreviewsTheReleaseItsHeadWouldMakePredicted) {
  std::string tmpl = (fs::temp_directory_path() / "previews_test.XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;
  const fs::path app = dir / "shop" / "web";
  fs::create_directories(app / ".gantry");
  ProcessOptions po;
  po.cwd = app.string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  auto commit = [&](const std::string& pipeline) {
    GANTRY_CHECK(WriteFileAtomic(app / ".gantry" / "pipeline.yaml", pipeline).ok());
    GANTRY_CHECK(RunChecked({"git", "add", "-A"}, po).ok());
    GANTRY_CHECK(RunChecked({"git", "commit", "-q", "-m", "change"}, po).ok());
    return RunChecked({"git", "rev-parse", "HEAD"}, po)->out.substr(0, 40);
  };
  ASSERT_TRUE(RunChecked({"git", "init", "-q", "-b", "main"}, po).ok());
  const std::string releasing = commit(
      "steps: {build: {run: [make]}}\nimage: {repository: docker.io/library/nginx, tags: [\"pr-{short_commit}\"], layers: [dist]}\n"
      "release: {repo: \"https://git.example/shop/config\", branch: main, path: envs}\n");
  const std::string elsewhere = commit(
      "steps: {build: {run: [make]}}\nimage: {repository: nginx, layers: [dist]}\nrelease: {repo: \"https://git.example/shop/other.git\"}\n");
  {
    auto store = store::Open("sqlite:" + (dir / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateRelease({.app = "web", .config_revision = "main", .project = "default"}).ok());
    const std::string app_url = "file://" + app.string();
    Previews previews({.store = store->get(),
                       .config = &config_,
                       .renderer = [] { return Render(); },
                       .connect = Request().connect,
                       .config_repo = "https://git.example/shop/config.git",
                       .fork_dir = dir / "heads",
                       .allow_file_repos = true,
                       .app_repos = {app_url},
                       .forges = {{.prefix = "file://" + dir.string() + "/", .options = {.kind = forge::Kind::kGitea}}}},
                      /*start=*/false);
    webhook::Event e{.provider = webhook::Provider::kGitea,
                     .kind = webhook::Kind::kPullRequest,
                     .repo_full_name = "shop/web",
                     .clone_url = app_url,
                     .pull_request = webhook::PullRequest{.action = "opened",
                                                          .normalized_action = webhook::PrAction::kOpened,
                                                          .number = 9,
                                                          .head_sha = releasing,
                                                          .base_ref = "main",
                                                          .head_clone_url = app_url}};
    EXPECT_TRUE(previews.Offer(e)) << "a pull request to an app repository";
    ASSERT_TRUE(previews.Handle(e).ok());
    auto rows = (*store)->ListForgeStatuses({});
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].repo, "shop/web");  // on the app repository's pull request
    EXPECT_EQ((*rows)[0].sha, "pull/9");
    const std::string& body = (*rows)[0].description;
    EXPECT_THAT(body, HasSubstr("**Predicted.** This pull request is to the app repository " + app_url +
                                ": once it is merged, its pipeline releases docker.io/library/nginx:pr-" + releasing.substr(0, 12) +
                                " into envs of the config repository (branch main)."));
    // Against the cluster, which runs main: only the image the release sets differs from main.
    EXPECT_THAT(body, HasSubstr("| changed | `apps/v1 Deployment default/web` | image web: nginx:1.25 → docker.io/library/nginx:pr-" +
                                releasing.substr(0, 12) + " |"));
    EXPECT_THAT(body, Not(HasSubstr("nginx:1.26")));  // nothing of the config repository's other branches
    EXPECT_TRUE(fs::is_empty(dir / "heads"));         // the head's mirror is gone
    // A head whose pipeline releases into another repository: no preview, no comment.
    e.pull_request->number = 10;
    e.pull_request->head_sha = elsewhere;
    ASSERT_TRUE(previews.Handle(e).ok());
    rows = (*store)->ListForgeStatuses({});
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ(rows->size(), 1u);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gantry::server
