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
#include "http/http.h"
#include "sync/sync.h"
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

}  // namespace
}  // namespace gantry::server
