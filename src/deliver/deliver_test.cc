// The pure parts of push mode: configuration parsing, promotion order, path templates, status rows.

#include "deliver/deliver.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/forwarding_store.h"
#include "test/fakes/kube_client.h"

namespace gantry::deliver {
namespace {

using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

Result<Config> Parse(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "config.yaml");
  if (!docs.ok()) return docs.status();
  return ParseConfig(*docs);
}

constexpr char kThree[] = R"(apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: dev-1}
spec: {kubeconfig: /k/dev, environment: dev}
---
apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: prod-b}
spec: {kubeconfig: /k/pb, environment: prod, labels: {region: eu}}
---
apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: prod-a}
spec: {kubeconfig: /k/pa, context: admin, environment: prod}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: prod}
spec:
  after: staging
  gates: {approval: true, soak: 10m}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: staging}
spec: {after: [dev], clusters: [dev-1]}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: dev}
)";

TEST(Config, ParsesClustersEnvironmentsAndGates) {
  auto c = Parse(kThree);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->clusters.size(), 3u);
  EXPECT_EQ(c->FindCluster("prod-a")->context, "admin");
  EXPECT_EQ(c->FindCluster("prod-b")->labels.at("region"), "eu");
  const Environment* prod = c->FindEnvironment("prod");
  ASSERT_NE(prod, nullptr);
  EXPECT_TRUE(prod->gates.approval);
  EXPECT_TRUE(prod->gates.healthy);
  EXPECT_EQ(prod->gates.soak, 10min);
  EXPECT_EQ(prod->after, std::vector<std::string>{"staging"});
  // Clusters by their environment field, sorted; or the explicit list.
  auto prod_clusters = c->ClustersOf(*prod);
  ASSERT_EQ(prod_clusters.size(), 2u);
  EXPECT_EQ(prod_clusters[0]->name, "prod-a");
  EXPECT_EQ(c->ClustersOf(*c->FindEnvironment("staging"))[0]->name, "dev-1");
}

TEST(Config, OrderFollowsAfterNotDeclarationOrder) {
  auto c = Parse(kThree);
  ASSERT_TRUE(c.ok());
  // dev-1 is in dev (by field) and staging (explicitly): refused.
  auto order = PromotionOrder(*c);
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.status().message().find("cluster dev-1 is in two environments"), std::string::npos) << order.status().message();
  c->clusters.push_back({.name = "stg-1", .kubeconfig = "/k/s"});
  c->environments[1].clusters = {"stg-1"};
  order = PromotionOrder(*c);
  ASSERT_TRUE(order.ok()) << order.status().ToString();
  EXPECT_EQ(*order, (std::vector<std::string>{"dev", "staging", "prod"}));
}

TEST(Config, CycleIsNamed) {
  auto c = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: a}
spec: {after: c}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: b}
spec: {after: a}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: c}
spec: {after: b}
)");
  ASSERT_TRUE(c.ok());
  auto order = PromotionOrder(*c);
  ASSERT_FALSE(order.ok());
  EXPECT_EQ(order.status().code(), Code::kInvalidArgument);
  EXPECT_NE(order.status().message().find("cycle: a → c → b → a"), std::string::npos) << order.status().message();
}

TEST(Config, UnknownNamesAreErrorsWithPositions) {
  auto c = Parse("apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: {after: stagin}\n");
  ASSERT_TRUE(c.ok());
  auto order = PromotionOrder(*c);
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.status().message().find("config.yaml:1:1: Environment prod: after: names unknown environment \"stagin\""),
            std::string::npos)
      << order.status().message();
  c = Parse("apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: {clusters: [nope]}\n");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(PromotionOrder(*c).status().message().find("unknown cluster \"nope\""), std::string::npos);
}

TEST(Config, BadFieldsNameFileAndLine) {
  struct Case {
    std::string yaml, want;
  } cases[] = {
      {"apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: p}\nspec:\n  gates: {soak: 10 minutes}\n",
       "config.yaml:5:17: Environment p: gates.soak:"},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: p}\nspec:\n  gates: {aproval: true}\n",
       "config.yaml:5:11: Environment p: unknown gate \"aproval\""},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {context: x}\n",
       "config.yaml:4:7: Cluster c: kubeconfig is required"},
      {"apiVersion: gantry.dev/v1\nkind: Cluster\nmetadata: {name: c}\n", "config.yaml:1:13: apiVersion \"gantry.dev/v1\""},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: c}\n", "config.yaml:2:7: kind \"Application\""},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: p}\nspec: {after: [1]}\n",
       "config.yaml:4:16: Environment p: after must hold names"},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: p}\n---\napiVersion: gantry.dev/v1alpha1\nkind: "
       "Environment\nmetadata: {name: p}\n",
       "config.yaml:5:1: Environment p is defined twice (first at config.yaml:1:1)"},
      {"apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {name: Prod}\nspec: {kubeconfig: k}\n",
       "config.yaml:3:18: Cluster name \"Prod\""},
  };
  for (const auto& c : cases) {
    auto r = Parse(c.yaml);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message() << "\nwant: " << c.want;
  }
}

TEST(Config, ObjectsRoundTrip) {
  Cluster cl{.name = "eu-1", .kubeconfig = "/s/eu-1.kubeconfig", .context = "ctx", .allow_exec_plugins = {"aws"},
             .environment = "prod", .labels = {{"region", "eu"}}};
  Environment env{.name = "prod", .after = {"staging"}, .gates = {.healthy = true, .approval = true, .soak = 90s}};
  auto text = value::ToYaml(ToObject(cl)) + "---\n" + value::ToYaml(ToObject(env));
  auto c = Parse(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << text;
  EXPECT_EQ(c->clusters[0].context, "ctx");
  EXPECT_EQ(c->clusters[0].labels, cl.labels);
  EXPECT_EQ(c->clusters[0].allow_exec_plugins, cl.allow_exec_plugins);
  EXPECT_EQ(c->environments[0].gates.soak, 90s);
  EXPECT_TRUE(c->environments[0].gates.approval);
}

// `cluster add` copies a kubeconfig; one that authenticates with an exec plugin keeps the plugin
// (its credential expires), and the copy loads as the original.
TEST(Connect, FlattenedKubeconfigKeepsTheExecPlugin) {
  std::string dir = (std::filesystem::temp_directory_path() / ("deliver-flatten-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  std::string original = dir + "/original";
  std::ofstream(original) << R"(current-context: eks
clusters:
- name: k
  cluster:
    server: https://k.example:443
    extensions: [{name: client.authentication.k8s.io/exec, extension: {audience: x}}]
users:
- name: u
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [eks, get-token, --cluster-name, prod],
           env: [{name: AWS_PROFILE, value: prod}], provideClusterInfo: true, installHint: get the AWS CLI}
contexts: [{name: eks, context: {cluster: k, user: u}}]
)";
  Cluster cluster{.name = "eu-1", .kubeconfig = original, .allow_exec_plugins = {"aws"}};
  auto flat = FlattenKubeconfig(cluster);
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  std::ofstream(dir + "/flat") << *flat;
  auto a = kube::LoadConfig({.paths = {original}, .allowed_exec_plugins = {"aws"}});
  auto b = kube::LoadConfig({.paths = {dir + "/flat"}, .allowed_exec_plugins = {"aws"}});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString() << "\n" << *flat;
  ASSERT_TRUE(b->exec.has_value()) << *flat;
  EXPECT_EQ(b->exec->command, a->exec->command);
  EXPECT_EQ(b->exec->args, a->exec->args);
  EXPECT_EQ(b->exec->env, a->exec->env);
  EXPECT_EQ(b->exec->api_version, a->exec->api_version);
  EXPECT_TRUE(b->exec->provide_cluster_info);
  EXPECT_EQ(b->exec->install_hint, "get the AWS CLI");
  EXPECT_EQ(b->exec->cluster_config, a->exec->cluster_config);
  EXPECT_FALSE(FlattenKubeconfig({.name = "eu-1", .kubeconfig = original}).ok()) << "not allowed: refused";
}

TEST(PathTemplate, Expands) {
  EXPECT_EQ(*ExpandPathTemplate("envs/{env}", "web", "prod"), "envs/prod");
  EXPECT_EQ(*ExpandPathTemplate("apps/{app}/envs/{env}", "web", "dev"), "apps/web/envs/dev");
  EXPECT_EQ(ExpandPathTemplate("apps/{name}", "web", "dev").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ExpandPathTemplate("apps/{app", "web", "dev").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ExpandPathTemplate("apps/app}", "web", "dev").status().code(), Code::kInvalidArgument);
}

store::Release Rel(int64_t id, std::string rev) {
  store::Release r;
  r.id = id;
  r.app = "web";
  r.source_revision = std::move(rev);
  return r;
}

TEST(Status, PushRowsAndBehindByEnvironment) {
  std::vector<store::TargetStatus> ts(3);
  ts[0] = {.env = "dev", .cluster = "d1", .running = Rel(3, "c3"), .latest = Rel(3, "c3"), .behind = 0};
  ts[0].latest_target.state = store::TargetState::kHealthy;
  ts[1] = {.env = "prod", .cluster = "p1", .running = Rel(1, "c1"), .latest = Rel(3, "c3"), .behind = 2};
  ts[1].latest_target.state = store::TargetState::kFailed;
  ts[1].latest_target.message = "Deployment web: Degraded";
  ts[2] = {.env = "prod", .cluster = "p2", .running = std::nullopt, .latest = Rel(3, "c3"), .behind = 3};
  ts[2].latest_target.state = store::TargetState::kPending;
  auto rows = PushRows("web", ts);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].health, "Healthy");
  EXPECT_EQ(rows[1].release, 1);
  EXPECT_EQ(rows[1].health, "Degraded");
  EXPECT_EQ(rows[1].message, "release 3: Deployment web: Degraded");
  EXPECT_EQ(rows[2].release, 0);
  auto behind = BehindByEnv(rows);
  EXPECT_EQ((behind[{"web", "dev"}]), 0);
  EXPECT_EQ((behind[{"web", "prod"}]), 3);
}

TEST(Status, PullRowsMatchRevisionsToReleases) {
  auto apps = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: gantry}
status: {sync: {status: Synced, revision: c2}, health: {status: Healthy}}
---
apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: api, namespace: gantry}
status: {sync: {status: OutOfSync, revision: zzz}}
)");
  ASSERT_TRUE(apps.ok());
  std::map<std::string, std::vector<store::Release>> rels{{"web", {Rel(3, "c3"), Rel(2, "c2"), Rel(1, "c1")}},
                                                          {"api", {Rel(4, "a1")}}};
  Cluster c{.name = "edge", .environment = "prod", .pull = true};
  auto rows = PullRows(c, *apps, rels);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].app, "web");
  EXPECT_EQ(rows[1].release, 2);
  EXPECT_EQ(rows[1].behind, 1);
  EXPECT_EQ(rows[1].mode, "pull");
  EXPECT_EQ(rows[0].app, "api");
  EXPECT_EQ(rows[0].behind, 1);  // its revision matches no release: behind all of them
  EXPECT_EQ(rows[0].health, "Unknown");
}

// A Deployment on fake clusters (a new FakeKubeClient per connection, so every apply starts from
// an empty cluster; or every connection to `cluster_` when a test sets it), a SQLite ledger in a
// temp dir, and one FakeClock for both: waits and soaks take no real time (unless a test sets
// `deploy_clock_`).
class FakeDeploy : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (std::filesystem::temp_directory_path() / "gantry-deliver-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    auto s = store::Open("sqlite:" + (dir_ / "gantry.db").string(), {.clock = &clock_});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = *std::move(s);
    config_.clusters = {{.name = "dev-1", .environment = "dev"}, {.name = "prod-1", .environment = "prod"}};
    config_.environments = {{.name = "dev"}, {.name = "prod", .after = {"dev"}}};
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Renders `yaml` for every environment.
  const DeployState& Deploy(std::string yaml, std::chrono::milliseconds health_timeout = 5min) {
    RenderFn render = [yaml](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
      GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(yaml, path));
      return render::Rendered{std::string(revision), std::move(docs)};
    };
    ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
      if (cluster_) return fakes::ForwardingKubeClient::To(cluster_);
      std::unique_ptr<kube::Client> client =
          std::make_unique<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
      return client;
    };
    DeployOptions options{.app = "web", .revision = "abc123", .health_timeout = health_timeout, .clock = deploy_clock_};
    auto d = Deployment::Start(*store_, config_, render, connect, options, [this](std::string_view line) {
      {
        MutexLock lock(mu_);
        progress_.emplace_back(line);
        progressed_.NotifyAll();
      }
      if (on_progress_) on_progress_(line);
    });
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    deployment_ = *std::move(d);
    return deployment_->Run();
  }

  // Counts of each verb the deploys made so far on `cluster_`.
  std::map<std::string, uint64_t> Counts() const {
    std::map<std::string, uint64_t> out;
    for (const char* verb : {"get", "list", "watch", "apply", "create", "replace", "delete"}) out[verb] = cluster_->count(verb);
    return out;
  }

  FakeClock clock_;
  Clock* deploy_clock_ = &clock_;
  std::shared_ptr<fakes::FakeKubeClient> cluster_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  Config config_;
  std::unique_ptr<Deployment> deployment_;
  Mutex mu_;
  CondVar progressed_;
  std::vector<std::string> progress_;  // guarded by mu_ while a deploy runs in another thread
  std::function<void(std::string_view)> on_progress_;  // called with each line, on the deploy's thread
};

constexpr char kConfigMap[] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n";

// issue 16: a Helm chart is rendered with the destination namespace as its release namespace,
// once before anything is applied and again for each cluster with that cluster's Capabilities.
TEST_F(FakeDeploy, HelmChartsAreRenderedForEachClusterWithItsCapabilities) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>();
  std::vector<RenderTarget> targets;
  Mutex targets_mu;
  RenderFn render = [&](std::string_view revision, const std::string& path,
                        const RenderTarget& target) -> Result<render::Rendered> {
    {
      MutexLock lock(targets_mu);
      targets.push_back(target);
    }
    std::string version = target.capabilities ? target.capabilities->kube_version : "none";
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: "
                                                                     "web, namespace: {}}}\ndata: {{kube: {}}}\n",
                                                                     target.namespace_, version),
                                                         path));
    return render::Rendered{.commit = std::string(revision), .objects = std::move(docs), .content_key = {},
                            .renderer = render::Renderer::kHelm};
  };
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(cluster_);
  };
  config_.environments = {{.name = "dev"}};
  config_.clusters = {{.name = "dev-1", .environment = "dev"}};
  DeployOptions options{.app = "web", .revision = "abc123", .default_namespace = "shop", .clock = &clock_};
  auto d = Deployment::Start(*store_, config_, render, connect, options, nullptr);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const DeployState& s = (*d)->Run();
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].namespace_, "shop");
  EXPECT_FALSE(targets[0].capabilities.has_value()) << "the render before any cluster is reached";
  EXPECT_EQ(targets[1].namespace_, "shop");
  ASSERT_TRUE(targets[1].capabilities.has_value());
  EXPECT_EQ(targets[1].capabilities->kube_version, "v1.31.0");  // the fake cluster's
  auto cm = cluster_->Get({"v1", "ConfigMap", "shop", "web"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(value::StringAt(&*cm, {"data", "kube"}), "v1.31.0");
}

TEST_F(FakeDeploy, SoakWaitsOnTheClock) {
  // One cluster that keeps what was applied: the soak looks at it (without cluster_, each
  // connection would be a new, empty cluster).
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  config_.environments[0].gates.soak = 10min;
  const auto start = clock_.Now();
  const DeployState& s = Deploy(kConfigMap);
  EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
  EXPECT_GE(clock_.Now() - start, 10min);
  EXPECT_LT(clock_.Now() - start, 10min + 5s);  // one-second soak steps, no more
  EXPECT_THAT(progress_, Contains("dev: soaking until 1970-01-01T00:10:00Z"));
  EXPECT_THAT(progress_, Contains("dev: soak done"));
  EXPECT_THAT(progress_, Contains("prod: healthy"));
}

// An environment gated on health must stay healthy while it soaks: an object deleted as dev's
// 10-minute soak begins fails dev's target at the next look (30 s on), and the release stops
// there instead of reaching prod after the soak.
TEST_F(FakeDeploy, AnObjectGoneWhileTheEnvironmentSoaksStopsTheReleaseThere) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  config_.environments[0].gates.soak = 10min;
  Status deleted = InternalError("the soak never began");
  on_progress_ = [&](std::string_view line) {
    if (line.starts_with("dev: soaking until")) deleted = cluster_->Delete({"v1", "ConfigMap", "default", "web"});
  };
  const auto start = clock_.Now();
  const DeployState& s = Deploy(kConfigMap);
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  EXPECT_EQ(s.phase, Phase::kFailed) << s.message;
  EXPECT_THAT(s.message, HasSubstr("dev failed, stopping before the next environment"));
  EXPECT_THAT(s.message, HasSubstr("dev-1: unhealthy while soaking: v1 ConfigMap default/web: the object does not exist"));
  EXPECT_LT(clock_.Now() - start, 1min) << "the soak was waited out before its look";
  EXPECT_THAT(progress_, Not(Contains("dev: soak done")));
  EXPECT_THAT(progress_, Not(Contains("prod: healthy")));
  ASSERT_EQ(s.targets.size(), 2u);
  EXPECT_EQ(s.targets[0].env, "dev");
  EXPECT_EQ(s.targets[0].state, store::TargetState::kFailed);
  EXPECT_EQ(s.targets[1].state, store::TargetState::kPending) << "prod was reached";
  auto ledger = store_->ListTargets(s.release_id);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  for (const auto& t : *ledger) {
    if (t.env == "dev") {
      EXPECT_EQ(t.state, store::TargetState::kFailed) << "the ledger still says dev is " << store::Name(t.state);
    }
  }
}

// The same soak with nothing changing looks at dev 21 times (every 30 s, and as it ends) and moves on.
TEST_F(FakeDeploy, ASoakLooksAtTheEnvironmentAndMovesOnWhileItStaysHealthy) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  config_.environments[0].gates.soak = 10min;
  uint64_t lists_at_soak = 0, lists_after = 0;
  on_progress_ = [&](std::string_view line) {
    if (line.starts_with("dev: soaking until")) lists_at_soak = cluster_->count("list") + cluster_->count("get");
    if (line == "dev: soak done") lists_after = cluster_->count("list") + cluster_->count("get");
  };
  const DeployState& s = Deploy(kConfigMap);
  EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
  EXPECT_THAT(progress_, Contains("prod: healthy"));
  EXPECT_GE(lists_after - lists_at_soak, 21u) << "the soak did not read the cluster at each look";
}

// A Job with ttlSecondsAfterFinished is deleted by Kubernetes once it has finished: its going
// while the environment soaks is no fault, and the release moves on. (The fake cluster runs no
// controller: the test completes the Job, then deletes it as the TTL controller would.)
TEST_F(FakeDeploy, AJobItsTtlRemovesWhileTheEnvironmentSoaksIsNoFault) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  config_.environments[0].gates.soak = 10min;
  const kube::ObjectRef job{"batch/v1", "Job", "default", "migrate"};
  Status completed = InternalError("the health gate never waited"), deleted = InternalError("the soak never began");
  on_progress_ = [&](std::string_view line) {
    if (line.ends_with(": waiting for health")) {  // dev's Job, then prod's (the same fake cluster)
      auto status = value::ParseYaml(R"(apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
status:
  succeeded: 1
  conditions: [{type: Complete, status: "True", reason: Completed, message: done}]
)");
      completed = status.ok() ? cluster_->ApplyStatus(status->at(0), {.field_manager = "job-controller"}).status()
                              : status.status();
    }
    if (line.starts_with("dev: soaking until")) deleted = cluster_->Delete(job);
  };
  const DeployState& s = Deploy(R"(apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox}]
)");
  ASSERT_TRUE(completed.ok()) << completed.ToString();
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
  EXPECT_THAT(progress_, Contains("dev: soak done"));
  EXPECT_THAT(progress_, Contains("prod: healthy"));
}

TEST_F(FakeDeploy, HealthTimeoutRunsOnTheClock) {
  // A Deployment nothing ever makes available: no controller runs in a fake cluster.
  const DeployState& s = Deploy(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
)", 5min);
  EXPECT_EQ(s.phase, Phase::kFailed);
  EXPECT_GE(clock_.Now(), std::chrono::steady_clock::time_point(5min));
  ASSERT_FALSE(s.targets.empty());
  EXPECT_EQ(s.targets[0].state, store::TargetState::kFailed);
  EXPECT_THAT(s.targets[0].message, HasSubstr("not healthy after 300 s"));
}

// Push mode reads the cluster as the agent does: one list (and one watch) per kind, the objects
// not yet labelled one Get each, the inventory one Get; a re-deploy with nothing to change writes
// nothing and polls nothing.
TEST_F(FakeDeploy, ReadsOneListPerKindAndANoOpRedeployWritesNothing) {
  config_.clusters = {{.name = "dev-1", .environment = "dev"}};
  config_.environments = {{.name = "dev"}};
  cluster_ = std::make_shared<fakes::FakeKubeClient>();
  constexpr char kApp[] = R"(apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
data: {k: v}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
)";
  const DeployState& first = Deploy(kApp);
  ASSERT_EQ(first.phase, Phase::kSucceeded) << first.message;
  std::map<std::string, uint64_t> want{{"get", 1 + 3 + 1},  // namespace, 3 objects not labelled yet, inventory
                                       {"list", 2},         // ConfigMap, Service: the caches' first lists
                                       {"watch", 2},
                                       {"apply", 3 + 1 + 1},  // objects, inventory, namespace
                                       {"create", 0}, {"replace", 0}, {"delete", 0}};
  EXPECT_EQ(Counts(), want);
  // The sync's own count: the 12 requests above that are not watches, plus the caches' two
  // watches as far as their threads have started them when the sync ends (both, nearly always; a
  // loaded machine showed 13).
  const std::string& result = first.targets[0].sync_result;
  const size_t at = result.find("\"requests\":");
  ASSERT_NE(at, std::string::npos) << result;
  const int requests = std::atoi(result.c_str() + at + std::string_view("\"requests\":").size());
  EXPECT_GE(requests, 12) << result;
  EXPECT_LE(requests, 14) << result;

  const DeployState& again = Deploy(kApp);
  ASSERT_EQ(again.phase, Phase::kSucceeded) << again.message;
  want["get"] += 2;  // namespace, inventory
  want["list"] += 2;
  want["watch"] += 2;
  EXPECT_EQ(Counts(), want);
  EXPECT_NE(again.targets[0].sync_result.find("\"changed\":0"), std::string::npos) << again.targets[0].sync_result;
}

// The health wait is served by the watch: it ends on the event of the status change that makes
// the Deployment available (not after a poll interval, nor the timeout), and lists nothing.
TEST_F(FakeDeploy, HealthWaitEndsOnTheWatchEvent) {
  config_.clusters = {{.name = "dev-1", .environment = "dev"}};
  config_.environments = {{.name = "dev"}};
  cluster_ = std::make_shared<fakes::FakeKubeClient>();
  deploy_clock_ = nullptr;  // real time: the watch events arrive in real time
  std::thread deploy([&] {
    Deploy(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
)", 60s);
  });
  {
    MutexLock lock(mu_);
    bool waiting = progressed_.WaitFor(mu_, 30s, [&]() REQUIRES(mu_) {
      return std::find(progress_.begin(), progress_.end(), "dev/dev-1: waiting for health") != progress_.end();
    });
    EXPECT_TRUE(waiting) << "the deploy never waited for health";
  }
  const uint64_t lists = cluster_->count("list");
  // What the Deployment controller would write.
  auto available = value::ParseYaml(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1}
)");
  ASSERT_TRUE(available.ok());
  auto status = cluster_->ApplyStatus(available->at(0), {.field_manager = "deployment-controller"});
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  const auto written = std::chrono::steady_clock::now();
  deploy.join();
  const auto waited = std::chrono::steady_clock::now() - written;
  const DeployState& s = deployment_->state();
  EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
  // The wait looks at the cache again only every 5 s without an event.
  EXPECT_LT(waited, 2500ms);
  EXPECT_EQ(cluster_->count("list"), lists);
}

// An app's releases belong to the project of its first: a deploy (or rollback) of it under
// another project is refused before anything is rendered or recorded; under its own it goes on.
TEST_F(FakeDeploy, AnAppBelongsToTheProjectOfItsFirstRelease) {
  ASSERT_EQ(Deploy(kConfigMap).phase, Phase::kSucceeded);  // under "default"
  auto projects = value::ParseYaml("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-b}\n"
                                   "spec: {sourceRepos: [\"*\"], destinations: [{server: \"*\", name: \"*\", namespace: \"*\"}],"
                                   " credentials: [\"*\"]}\n",
                                   "gantry.yaml");
  ASSERT_TRUE(projects.ok()) << projects.status().ToString();
  auto parsed = ParseConfig(*projects);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  config_.projects = parsed->projects;
  RenderFn render = [](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(kConfigMap, path));
    return render::Rendered{std::string(revision), std::move(docs)};
  };
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return std::unique_ptr<kube::Client>(std::make_unique<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_}));
  };
  auto before = store_->ListReleases("web", 10);
  ASSERT_TRUE(before.ok());
  auto other = Deployment::Start(*store_, config_, render, connect,
                                 {.app = "web", .revision = "def456", .project = "team-b", .clock = &clock_});
  EXPECT_EQ(other.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(other.status().message(),
            fmt::format("deploy: app web belongs to project default (release {} was made under it); a release under "
                        "project team-b is refused", before->front().id));
  EXPECT_EQ(store_->ListReleases("web", 10)->size(), before->size()) << "nothing recorded";
  EXPECT_EQ(Rollback(*store_, config_, render, connect, {.app = "web", .env = "dev", .project = "team-b"}).status().code(),
            Code::kPermissionDenied);
  // A new app deployed under team-b is team-b's from then on.
  auto first = Deployment::Start(*store_, config_, render, connect,
                                 {.app = "api", .revision = "a1", .project = "team-b", .clock = &clock_});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(store_->ListReleases("api", 1)->front().project, "team-b");
  EXPECT_TRUE(CheckAppProject(*store_, "api", "team-b").ok());
  EXPECT_EQ(CheckAppProject(*store_, "api", "default").code(), Code::kPermissionDenied);
}

// The project of `yaml` (one Project) as the configuration's only project.
void UseProject(Config& config, std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "gantry.yaml");
  ASSERT_TRUE(docs.ok()) << docs.status().ToString();
  auto parsed = ParseConfig(*docs);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  config.projects = parsed->projects;
}

RenderFn RenderConfigMap() {
  return [](std::string_view revision, const std::string& path, const RenderTarget&) -> Result<render::Rendered> {
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(kConfigMap, path));
    return render::Rendered{std::string(revision), std::move(docs)};
  };
}

// A ConfigMap web whose data.revision is the revision rendered.
RenderFn RenderRevision() {
  return [](std::string_view revision, const std::string& path, const RenderTarget&) -> Result<render::Rendered> {
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\n"
                                                                     "data: {{revision: {}}}\n",
                                                                     revision),
                                                         path));
    return render::Rendered{std::string(revision), std::move(docs)};
  };
}

// A push-mode Cluster entry is a credential named by the cluster: a project deploys (and rolls
// back) only to clusters its `credentials` list, refused before anything is recorded or applied.
TEST_F(FakeDeploy, AProjectDeploysOnlyToClustersItsCredentialsList) {
  UseProject(config_, R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-c}
spec:
  destinations: [{name: "*", namespace: "*"}]
  credentials: [dev-*]
)");
  int connects = 0;
  ConnectFn connect = [&](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    ++connects;
    return std::unique_ptr<kube::Client>(std::make_unique<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_}));
  };
  auto refused = Deployment::Start(*store_, config_, RenderConfigMap(), connect,
                                   {.app = "web", .revision = "r1", .project = "team-c", .clock = &clock_});
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "deploy: cluster prod-1: project team-c: credentials does not allow credential prod-1 (it lists dev-*)");
  EXPECT_TRUE(store_->ListReleases("web", 10)->empty()) << "nothing recorded";
  EXPECT_EQ(connects, 0) << "nothing applied";

  auto dev = Deployment::Start(*store_, config_, RenderConfigMap(), connect,
                               {.app = "web", .revision = "r1", .only_env = "dev", .project = "team-c", .clock = &clock_});
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  EXPECT_EQ((*dev)->Run().phase, Phase::kSucceeded);
  auto rollback = Rollback(*store_, config_, RenderConfigMap(), connect, {.app = "web", .env = "prod", .project = "team-c"});
  EXPECT_EQ(rollback.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(rollback.status().message(), HasSubstr("rollback: cluster prod-1: project team-c: credentials does not allow"));

  // The permissive default project allows every cluster.
  auto other = Deployment::Start(*store_, config_, RenderConfigMap(), connect,
                                 {.app = "api", .revision = "r1", .clock = &clock_});
  EXPECT_TRUE(other.ok()) << other.status().ToString();
}

// A closed window refuses a person's deploy and says how to override it; the override passes only
// with a reason, and leaves an audit row with who and why.
TEST_F(FakeDeploy, AClosedWindowRefusesUntilAPersonOverridesItWithAReason) {
  UseProject(config_, R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-w}
spec:
  destinations: [{name: "*", namespace: "*"}]
  credentials: ["*"]
  syncWindows:
  - {kind: deny, schedule: "0 0 * * *", duration: 24h, environments: [dev], manualSync: true}
)");
  ConnectFn connect = [&](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return std::unique_ptr<kube::Client>(std::make_unique<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_}));
  };
  DeployOptions options{.app = "web", .revision = "r1", .only_env = "dev", .started_by = "alice", .project = "team-w",
                        .clock = &clock_};
  auto closed = Deployment::Start(*store_, config_, RenderConfigMap(), connect, options);
  ASSERT_TRUE(closed.ok()) << closed.status().ToString();
  const DeployState& refused = (*closed)->Run();
  EXPECT_EQ(refused.phase, Phase::kFailed);
  ASSERT_EQ(refused.targets.size(), 1u);
  EXPECT_THAT(refused.targets[0].message, HasSubstr("project team-w: sync window deny \"0 0 * * *\" 24h"));
  EXPECT_THAT(refused.targets[0].message, HasSubstr("--override-window --reason WHY"));

  options.window_override = "hotfix INC-7";
  auto overridden = Deployment::Start(*store_, config_, RenderConfigMap(), connect, options);
  ASSERT_TRUE(overridden.ok()) << overridden.status().ToString();
  EXPECT_EQ((*overridden)->Run().phase, Phase::kSucceeded);
  auto rows = store_->ListAudit({.action = "windows.override"});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].actor, "alice");
  EXPECT_EQ((*rows)[0].project, "team-w");
  EXPECT_EQ((*rows)[0].object, "app/web env/dev cluster/dev-1");
  EXPECT_THAT((*rows)[0].details, HasSubstr("reason: hotfix INC-7"));
}

// A ledger whose process "dies" after the release and its first new target are written: every
// later target write fails, as nothing more reached the database.
class DiesAfterFirstTarget : public fakes::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<store::Target> UpsertTarget(const store::Target& t) override {
    if (t.version == 0 && ++created_ > 1) return UnavailableError("the process died here");
    return ForwardingStore::UpsertTarget(t);
  }

 private:
  int created_ = 0;
};

// A crash between writing a release and writing all its targets (issue 21, server-kill9-push-deploy)
// left the release with dev's target only: resumed, it deployed dev and ended "healthy in dev,
// prod", prod never deployed (and the CI release with no target at all ended failed, deploying
// nothing). Resume now writes the targets the release's plan names and deploys every environment;
// a newer release supersedes an older one's unwritten targets, which is then never resumed.
TEST_F(FakeDeploy, AStartCutShortBeforeItsTargetsAreWrittenIsResumedToEveryEnvironment) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(cluster_);
  };
  DeployOptions options{.app = "web", .revision = "r1", .clock = &clock_};
  {
    DiesAfterFirstTarget dying(*store_);
    EXPECT_EQ(Deployment::Start(dying, config_, RenderConfigMap(), connect, options).status().code(), Code::kUnavailable);
  }
  auto releases = store_->ListReleases("web", 10);
  ASSERT_TRUE(releases.ok() && releases->size() == 1u);
  const store::Release cut = releases->front();
  ASSERT_EQ(store_->ListTargets(cut.id)->size(), 1u) << "dev-1's target only";
  EXPECT_EQ(HasWorkLeft(*store_, cut, config_, &clock_).value_or(false), true);

  auto resumed = Deployment::Resume(*store_, config_, RenderConfigMap(), connect, options);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->state().release_id, cut.id);
  ASSERT_EQ((*resumed)->Run().phase, Phase::kSucceeded) << (*resumed)->state().message;
  auto targets = store_->ListTargets(cut.id);
  ASSERT_TRUE(targets.ok());
  ASSERT_EQ(targets->size(), 2u);
  for (const auto& t : *targets) EXPECT_EQ(t.state, store::TargetState::kHealthy) << t.env << "/" << t.cluster;
  EXPECT_EQ(HasWorkLeft(*store_, cut, config_, &clock_).value_or(true), false);

  // Cut short again, then a newer release: the older one's unwritten target is superseded with its
  // pending one, and nothing is left to resume.
  options.revision = "r2";
  {
    DiesAfterFirstTarget dying(*store_);
    EXPECT_FALSE(Deployment::Start(dying, config_, RenderConfigMap(), connect, options).ok());
  }
  const int64_t second = store_->ListReleases("web", 1)->front().id;
  options.revision = "r3";
  auto third = Deployment::Start(*store_, config_, RenderConfigMap(), connect, options);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  ASSERT_EQ((*third)->Run().phase, Phase::kSucceeded);
  targets = store_->ListTargets(second);
  ASSERT_TRUE(targets.ok());
  ASSERT_EQ(targets->size(), 2u);
  for (const auto& t : *targets) EXPECT_EQ(t.state, store::TargetState::kSuperseded) << t.env << "/" << t.cluster;
  EXPECT_EQ(Deployment::Resume(*store_, config_, RenderConfigMap(), connect, options).status().code(), Code::kNotFound);
}

// A crash during an environment's soak (its targets healthy, the next's pending: a server killed
// between two environments, issue 21) was resumed at the next environment at once, the soak
// skipped. Resumed, the soak now goes on to the end recorded when it began, then prod is applied.
TEST_F(FakeDeploy, ACrashDuringASoakIsResumedToTheEndOfThatSoak) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(cluster_);
  };
  config_.environments[0].gates.soak = 10min;
  std::vector<std::string> lines;
  auto say = [&lines](std::string_view line) { lines.emplace_back(line); };
  DeployOptions options{.app = "web", .revision = "r1", .clock = &clock_};
  auto d = Deployment::Start(*store_, config_, RenderConfigMap(), connect, options, say);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  while (std::find(lines.begin(), lines.end(), "dev: soaking until 1970-01-01T00:10:00Z") == lines.end())
    ASSERT_TRUE((*d)->Step()) << (*d)->state().message;
  ASSERT_TRUE((*d)->Step());  // a second of the soak
  clock_.Advance(2min);       // the server down, started again
  d->reset();

  auto resumed = Deployment::Resume(*store_, config_, RenderConfigMap(), connect, options, say);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  ASSERT_EQ((*resumed)->Run().phase, Phase::kSucceeded) << (*resumed)->state().message;
  const auto soak_done = std::find(lines.begin(), lines.end(), "dev: soak done");
  ASSERT_NE(soak_done, lines.end()) << "the soak was skipped";
  EXPECT_EQ(std::count(lines.begin(), lines.end(), "dev: soaking until 1970-01-01T00:10:00Z"), 2)
      << "the same soak, to the same end";
  EXPECT_NE(std::find(soak_done, lines.end(), "prod/prod-1: applying"), lines.end()) << "prod before the soak ended";
  EXPECT_GE(clock_.Now(), std::chrono::steady_clock::time_point(10min));
  EXPECT_LT(clock_.Now(), std::chrono::steady_clock::time_point(10min + 5s));
}

// An older release whose target a crash (or Terminate) left applying, with a newer release
// deployed after it: Resume took the older one, the newest with an unfinished target, and applied
// its objects over the newer release's in that target's environment (then failed at the next,
// whose superseded target it could not write), the ledger still calling the newer release
// running there. A newer release now supersedes an older one's applying targets as well as its
// pending ones.
TEST_F(FakeDeploy, AnOlderReleaseCutShortWhileApplyingIsNotResumedOverANewerOne) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(cluster_);
  };
  RenderFn render = RenderRevision();
  DeployOptions options{.app = "web", .revision = "r1", .clock = &clock_};
  int64_t older = 0;
  {
    auto d = Deployment::Start(*store_, config_, render, connect, options);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    older = (*d)->state().release_id;
    // Killed while dev-1 applies: the ledger holds what ApplyCluster wrote before the sync.
    store::Target dev = (*d)->state().targets.front();
    ASSERT_EQ(dev.env, "dev");
    dev.state = store::TargetState::kApplying;
    ASSERT_TRUE(store_->UpsertTarget(dev).ok());
  }
  options.revision = "r2";
  auto newer = Deployment::Start(*store_, config_, render, connect, options);
  ASSERT_TRUE(newer.ok()) << newer.status().ToString();
  ASSERT_EQ((*newer)->Run().phase, Phase::kSucceeded) << (*newer)->state().message;

  auto release = store_->GetRelease(older);
  ASSERT_TRUE(release.ok());
  EXPECT_EQ(HasWorkLeft(*store_, *release, config_, &clock_).value_or(true), false);
  auto resumed = Deployment::Resume(*store_, config_, render, connect, options);
  if (resumed.ok()) (*resumed)->Run();
  EXPECT_EQ(resumed.status().code(), Code::kNotFound) << "release " << older << " resumed over the newer one";
  auto cm = cluster_->Get({"v1", "ConfigMap", "default", "web"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(value::StringAt(&*cm, {"data", "revision"}), "r2");
  auto targets = store_->ListTargets(older);
  ASSERT_TRUE(targets.ok());
  for (const auto& t : *targets) EXPECT_EQ(t.state, store::TargetState::kSuperseded) << t.env << "/" << t.cluster;
}

// A crash during the soak of the last environment (prod's targets healthy, nothing after it to
// leave pending) left the release with no work: `gantry deploy --resume` found nothing to resume
// and the server's release ended the deploy succeeded at once, the rest of the soak skipped
// (issue 21). The release now has work left until that soak's recorded end, and resumed, it soaks
// to that end before it is done.
TEST_F(FakeDeploy, ACrashDuringTheLastSoakIsResumedToItsEndBeforeTheDeployIsDone) {
  cluster_ = std::make_shared<fakes::FakeKubeClient>(fakes::FakeKubeClient::Options{.clock = &clock_});
  ConnectFn connect = [this](const Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(cluster_);
  };
  config_.environments[1].gates.soak = 10min;
  std::vector<std::string> lines;
  auto say = [&lines](std::string_view line) { lines.emplace_back(line); };
  const std::string soaking = "prod: soaking until 1970-01-01T00:10:00Z";
  DeployOptions options{.app = "web", .revision = "r1", .clock = &clock_};
  auto d = Deployment::Start(*store_, config_, RenderConfigMap(), connect, options, say);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const int64_t id = (*d)->state().release_id;
  while (std::find(lines.begin(), lines.end(), soaking) == lines.end())
    ASSERT_TRUE((*d)->Step()) << (*d)->state().message;
  ASSERT_TRUE((*d)->Step());  // a second of the soak
  clock_.Advance(2min);       // the server down, started again
  d->reset();

  auto release = store_->GetRelease(id);
  ASSERT_TRUE(release.ok()) << release.status().ToString();
  auto left = HasWorkLeft(*store_, *release, config_, &clock_);
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_TRUE(*left) << "prod's soak has 8 minutes to go";
  auto resumed = Deployment::Resume(*store_, config_, RenderConfigMap(), connect, options, say);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->state().release_id, id);
  ASSERT_EQ((*resumed)->Run().phase, Phase::kSucceeded) << (*resumed)->state().message;
  EXPECT_EQ(std::count(lines.begin(), lines.end(), soaking), 2) << "the same soak, to the same end";
  EXPECT_NE(std::find(lines.begin(), lines.end(), "prod: soak done"), lines.end());
  EXPECT_GE(clock_.Now(), std::chrono::steady_clock::time_point(10min)) << "done before the soak's end";
  EXPECT_LT(clock_.Now(), std::chrono::steady_clock::time_point(10min + 5s));
  EXPECT_EQ(HasWorkLeft(*store_, *release, config_, &clock_).value_or(true), false);
  EXPECT_EQ(Deployment::Resume(*store_, config_, RenderConfigMap(), connect, options).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry::deliver
