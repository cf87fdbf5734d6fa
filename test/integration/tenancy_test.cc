// Tenancy against a real control plane and a real Git server: a Project bounds what its
// Applications may deploy, checked by the engine before anything is applied; writes go as the
// project's ServiceAccount, so the apiserver's RBAC refuses what that account may not do; an
// application never takes over another's object; push mode gives the same decision as pull.

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "api/status.h"
#include "deliver/deliver.h"
#include "git/git.h"
#include "kube/kube.h"
#include "project/project.h"
#include "store/store.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

using value::Value;
using namespace std::chrono_literals;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

std::string ConfigMap(const std::string& name, const std::string& ns, const std::string& value) {
  return fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}{}}}\ndata: {{value: \"{}\"}}\n", name,
                     ns.empty() ? "" : ", namespace: " + ns, value);
}

constexpr char kClusterRoleBinding[] = R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tenant-escalates}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: deployer, namespace: default}]
)";

class TenancyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto& cluster = testenv::Shared("kube-cluster.sh");
    testenv::Shared("git-server.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    client_ = kube::NewHttpClient(*config)->release();
    for (const Value& crd : {api::ApplicationCrd(), project::ProjectCrd()}) GANTRY_CHECK(client_->Apply(crd, {.force = true}).ok());
    for (int i = 0; i < 100 && !(client_->Resolve(api::kApiVersion, api::kKind).ok() &&
                                 client_->Resolve(project::kApiVersion, project::kKind).ok());
         ++i) {
      client_->InvalidateDiscovery();
      std::this_thread::sleep_for(100ms);
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
  }

  void SetUp() override {
    static std::atomic<int> n{0};
    id_ = fmt::format("t{}", ++n);
    home_ = "tenancy-" + id_;
    team_ = "team-a-" + id_;
    other_ = "team-b-" + id_;
    auto& git = testenv::Shared("git-server.sh");
    auto created = git.Command("create", {"tenancy-" + id_});
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    url_ = testenv::ParseValues(*created)["REPO_URL"];
    std::string host = git.Get("GIT_URL").substr(std::string("http://").size());
    creds_ = git::Credentials{.host = host, .username = git.Get("GIT_USER"), .password = git.Get("GIT_PASSWORD")};
    auto repo = mirrors_.Open(url_, {.credentials = creds_});
    ASSERT_TRUE(repo.ok());
    repo_ = *repo;
    for (const std::string& ns : {home_, team_, other_}) Apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + "}\n");
    // The team's account may do anything in its namespace, nothing elsewhere.
    Apply(fmt::format("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {}}}\n", team_));
    Apply(fmt::format("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: all, namespace: {}}}\n"
                      "rules: [{{apiGroups: [\"*\"], resources: [\"*\"], verbs: [\"*\"]}}]\n", team_));
    Apply(fmt::format("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: all, namespace: {0}}}\n"
                      "roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: all}}\n"
                      "subjects: [{{kind: ServiceAccount, name: deployer, namespace: {0}}}]\n", team_));
    auto projects = value::ParseYaml(ProjectYaml(), "projects.yaml");
    ASSERT_TRUE(projects.ok()) << projects.status().ToString();
    for (const Value& p : *projects) ASSERT_TRUE(client_->Apply(p, {.force = true}).ok());
  }

  void TearDown() override {
    for (auto& a : agents_) a->Stop();
    for (auto& t : threads_) t.join();
  }

  // team-a: its repository, its namespace and (to show the apiserver's RBAC) team-b's namespace,
  // where its account has no rights; no cluster-scoped kinds.
  std::string ProjectYaml() const {
    return fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: team-a, namespace: {0}}}
spec:
  sourceRepos: ["{1}"]
  sourceNamespaces: ["{2}"]
  destinations: [{{server: "*", namespace: "{2}"}}, {{server: "*", namespace: "{3}"}}]
  destinationServiceAccounts: [{{server: "*", namespace: "*", defaultServiceAccount: "{2}:deployer"}}]
  credentials: ["{4}", local]  # local: the push-mode Cluster of PushAndPullGiveTheSameDecision
---
apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: no-credentials, namespace: {0}}}
spec:
  sourceRepos: ["{1}"]
  destinations: [{{server: "*", namespace: "{2}"}}]
  destinationServiceAccounts: [{{server: "*", namespace: "*", defaultServiceAccount: "{2}:deployer"}}]
)", home_, url_, team_, other_, creds_.host);
  }

  void Apply(const std::string& yaml) {
    auto r = client_->Apply(Yaml(yaml), {.force = true});
    ASSERT_TRUE(r.ok()) << r.status().ToString() << "\n" << yaml;
  }

  std::string Commit(std::map<std::string, std::optional<std::string>> files) {
    auto sha = repo_->CommitAndPush({.branch = "main",
                                     .recompute = [&](const std::string&) -> Result<git::Changes> {
                                       return git::Changes{files};
                                     },
                                     .author = {"Dev", "dev@example.com"},
                                     .message = "tenancy"});
    EXPECT_TRUE(sha.ok()) << sha.status().ToString();
    return sha.value_or("");
  }

  void Application(const std::string& name, const std::string& path, const std::string& dest,
                   const std::string& project = "team-a", const std::string& repo = "", std::string ns = "") {
    Apply(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {1}}}
spec:
  project: {2}
  source: {{repoURL: "{3}", targetRevision: main, path: {4}}}
  destination: {{namespace: {5}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}, retry: {{limit: 0}}}}
)", name, ns.empty() ? home_ : ns, project, repo.empty() ? url_ : repo, path, dest));
  }

  void StartAgent(std::vector<std::string> app_namespaces = {}) {
    agent::AgentOptions o;
    o.namespace_ = home_;
    o.app_namespaces = std::move(app_namespaces);
    o.cache_dir = tmp_.path() + "/cache";
    o.interval = 2s;
    o.lease_name = "";
    o.git_credentials = {fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password)};
    o.reconcile.health_timeout = 30s;
    auto source = agent::NewSource(o, {});
    GANTRY_CHECK(source.ok());
    auto a = agent::NewAgent(*client_, o, *std::move(source));
    GANTRY_CHECK(a.ok());
    agents_.push_back(std::move(a).value());
    agent::Agent* p = agents_.back().get();
    threads_.emplace_back([p] { EXPECT_TRUE(p->Run().ok()); });
  }

  // Waits until the Application has condition `type` (True) and returns its message.
  std::string WaitCondition(const std::string& app, std::string_view type, std::chrono::seconds limit = 60s,
                            std::string ns = "") {
    auto deadline = std::chrono::steady_clock::now() + limit;
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = client_->Get({api::kApiVersion, api::kKind, ns.empty() ? home_ : ns, app});
      if (got.ok()) {
        api::ApplicationStatus st = api::ParseStatus(got->Get("status"));
        last = got->Get("status") ? value::ToYaml(*got->Get("status")) : "";
        if (const api::Condition* c = st.FindCondition(type); c != nullptr && c->status) return c->message;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "Application " << app << " never had condition " << type << "; last status:\n" << last;
    return "";
  }

  bool Exists(const kube::ObjectRef& ref) { return client_->Get(ref).ok(); }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  testenv::ScopedTempDir tmp_;
  std::string id_, home_, team_, other_, url_;
  git::Credentials creds_;
  git::Mirrors mirrors_{tmp_.path() + "/test-mirrors"};
  std::shared_ptr<git::Repository> repo_;
  std::vector<std::unique_ptr<agent::Agent>> agents_;
  std::vector<std::thread> threads_;
};

TEST_F(TenancyTest, ProjectRefusesWhatItDoesNotAllowAndNothingIsApplied) {
  Commit({{"crb/crb.yaml", std::string(kClusterRoleBinding) + "---\n" + ConfigMap("with-crb", "", "x")},
          {"system/cm.yaml", ConfigMap("in-system", "", "x")},
          {"good/cm.yaml", ConfigMap("good", "", "ok")},
          {"rbac/cm.yaml", ConfigMap("rbac-refused", "", "x")}});
  Application("crb", "crb", team_);
  Application("system", "system", "kube-system");
  Application("foreign", "good", team_, "team-a", url_ + "-elsewhere");
  Application("good", "good", team_);
  Application("rbac", "rbac", other_);  // the project allows the namespace; the account's RBAC does not
  Application("nocreds", "good", team_, "no-credentials");  // its project may not use the Git credentials
  StartAgent();

  std::string crb = WaitCondition("crb", api::kConditionProjectDenied);
  EXPECT_NE(crb.find("clusterResourceWhitelist"), std::string::npos) << crb;
  EXPECT_NE(crb.find("ClusterRoleBinding"), std::string::npos) << crb;
  EXPECT_NE(crb.find("team-a"), std::string::npos) << crb;
  std::string system = WaitCondition("system", api::kConditionProjectDenied);
  EXPECT_NE(system.find("kube-system"), std::string::npos) << system;
  std::string foreign = WaitCondition("foreign", api::kConditionProjectDenied);
  EXPECT_NE(foreign.find("sourceRepos"), std::string::npos) << foreign;
  std::string nocreds = WaitCondition("nocreds", api::kConditionProjectDenied);
  EXPECT_NE(nocreds.find("credentials"), std::string::npos) << nocreds;

  // The good one syncs, as the team's account.
  WaitCondition("good", api::kConditionReady);
  auto good = client_->Get({"v1", "ConfigMap", team_, "good"});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  // The apiserver refuses the account in team-b's namespace: the sync fails, nothing is there.
  std::string rbac = WaitCondition("rbac", api::kConditionSyncFailed);
  EXPECT_NE(rbac.find("system:serviceaccount:" + team_ + ":deployer"), std::string::npos) << rbac;

  // Nothing of a refused application was applied, not even its allowed objects.
  EXPECT_FALSE(Exists({"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "tenant-escalates"}));
  EXPECT_FALSE(Exists({"v1", "ConfigMap", team_, "with-crb"}));
  EXPECT_FALSE(Exists({"v1", "ConfigMap", "kube-system", "in-system"}));
  EXPECT_FALSE(Exists({"v1", "ConfigMap", other_, "rbac-refused"}));
}

TEST_F(TenancyTest, AnApplicationNeverTakesOverAnothersObject) {
  Commit({{"owner/cm.yaml", ConfigMap("shared", team_, "owner")}, {"thief/cm.yaml", ConfigMap("shared", team_, "thief")}});
  Application("owner", "owner", team_);
  StartAgent();
  WaitCondition("owner", api::kConditionReady);
  Application("thief", "thief", team_);
  std::string why = WaitCondition("thief", api::kConditionSyncFailed);
  EXPECT_NE(why.find("belongs to application owner"), std::string::npos) << why;
  auto cm = client_->Get({"v1", "ConfigMap", team_, "shared"});
  ASSERT_TRUE(cm.ok());
  EXPECT_EQ(value::StringAt(&*cm, {"data", "value"}), "owner");
  EXPECT_EQ(value::StringAt(&*cm, {"metadata", "annotations", "gantry.dev/tracking-id"}).substr(0, 6), "owner:");
}

// Push mode (a deploy of the same manifests with the same Project YAML from the push
// configuration) refuses with the same rule as the pull agent.
TEST_F(TenancyTest, PushAndPullGiveTheSameDecision) {
  Commit({{"crb/crb.yaml", std::string(kClusterRoleBinding)}});
  Application("crb", "crb", team_);
  StartAgent();
  std::string pull = WaitCondition("crb", api::kConditionProjectDenied);

  auto parsed = value::ParseYaml(ProjectYaml(), "gantry.yaml");
  ASSERT_TRUE(parsed.ok());
  std::vector<Value> objects = *parsed;
  objects.push_back(Yaml(fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: local}}\n"
                                     "spec: {{kubeconfig: {}, environment: dev}}\n", *kubeconfig_)));
  objects.push_back(Yaml("apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec: {}\n"));
  auto config = deliver::ParseConfig(objects);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto store = store::Open("sqlite://" + tmp_.path() + "/gantry.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  deliver::RenderFn render = [](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(kClusterRoleBinding, path + "/crb.yaml"));
    return render::Rendered{.commit = std::string(revision), .objects = std::move(docs), .content_key = {}};
  };
  auto d = deliver::Deployment::Start(**store, *config, render, [](const deliver::Cluster& c) { return deliver::Connect(c); },
                                      {.app = "crb", .revision = "r1", .project = "team-a", .default_namespace = team_,
                                       .health_timeout = 30s});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const deliver::DeployState& st = (*d)->Run();
  ASSERT_EQ(st.phase, deliver::Phase::kFailed) << st.message;
  ASSERT_EQ(st.targets.size(), 1u);
  std::string push = st.targets[0].message;
  // The same rule and object named; only the manifest's file name differs.
  for (std::string_view part : {"project team-a", "ClusterRoleBinding", "clusterResourceWhitelist"}) {
    EXPECT_NE(pull.find(part), std::string::npos) << pull;
    EXPECT_NE(push.find(part), std::string::npos) << push;
  }
  EXPECT_FALSE(Exists({"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "tenant-escalates"}));
}

// Applications outside the agent's namespace (--app-namespaces): served when their project lists
// the namespace, keyed NAMESPACE_NAME so a same-named Application elsewhere never shares objects.
TEST_F(TenancyTest, ApplicationsInOtherNamespacesAreKeyedByNamespaceAndBoundByTheirProject) {
  Commit({{"web/cm.yaml", ConfigMap("web", "", "team")}, {"home/cm.yaml", ConfigMap("web-home", "", "home")}});
  Application("web", "web", team_, "team-a", "", team_);       // in the team's namespace, which team-a lists
  Application("web", "home", team_, "default");                 // same name, in the agent's namespace
  Application("web", "web", other_, "team-a", "", other_);     // team-a does not list team-b's namespace
  StartAgent({"team-*"});

  WaitCondition("web", api::kConditionReady, 60s, team_);
  WaitCondition("web", api::kConditionReady);
  std::string refused = WaitCondition("web", api::kConditionProjectDenied, 60s, other_);
  EXPECT_NE(refused.find("sourceNamespaces"), std::string::npos) << refused;

  auto cm = client_->Get({"v1", "ConfigMap", team_, "web"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(value::StringAt(&*cm, {"metadata", "labels", "gantry.dev/app"}), team_ + "_web");
  EXPECT_EQ(value::StringAt(&*cm, {"metadata", "annotations", "gantry.dev/tracking-id"}),
            team_ + "_web:/ConfigMap:" + team_ + "/web");
  EXPECT_TRUE(Exists({"v1", "ConfigMap", team_, "gantry-inventory." + team_ + ".web"}));
  auto home = client_->Get({"v1", "ConfigMap", team_, "web-home"});
  ASSERT_TRUE(home.ok()) << home.status().ToString();
  EXPECT_EQ(value::StringAt(&*home, {"metadata", "labels", "gantry.dev/app"}), "web");
  EXPECT_TRUE(Exists({"v1", "ConfigMap", team_, "gantry-inventory-web"}));
}

}  // namespace
}  // namespace gantry
