// Push mode against three real control planes (dev, staging, prod) and a SQLite ledger: promotion,
// a failing health gate, rollback, approval, an unreachable cluster, an interrupted deploy resumed,
// status showing an environment behind, bad cluster configuration, the same result as the pull
// agent from the same Git revision, and config commits a Project requires signed (push and pull).

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/agent.h"
#include "api/application.h"
#include "deliver/deliver.h"
#include "git/git.h"
#include "project/project.h"
#include "sign/sign.h"
#include "sign/sshsig.h"
#include "store/store.h"
#include "sync/sync.h"
#include "test/env/testenv.h"

namespace gantry::deliver {
namespace {

using namespace std::chrono_literals;
using value::Value;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kNames[] = {"dev", "staging", "prod"};

std::vector<testenv::Server*>* g_clusters = nullptr;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

// The app at a revision: a ConfigMap naming the revision and env, and a Deployment. A revision
// "bad-ENV" gives ENV a Deployment that can never become available (no node matches).
std::string Manifests(std::string_view revision, std::string_view env) {
  bool bad = revision == fmt::format("bad-{}", env);
  return fmt::format(R"(apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{revision: "{0}", env: "{1}"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  progressDeadlineSeconds: {2}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      {3}
      containers: [{{name: web, image: "nginx:{0}"}}]
)", revision, env, bad ? 1 : 600, bad ? "nodeSelector: {nowhere: \"true\"}" : "");
}

RenderFn TestRender() {
  return [](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
    std::string env = path.substr(path.rfind('/') + 1);
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(Manifests(revision, env), path));
    return render::Rendered{.commit = std::string(revision), .objects = std::move(docs), .content_key = {}};
  };
}

ConnectFn RealConnect() {
  return [](const Cluster& c) { return Connect(c); };
}

class DeliverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (g_clusters != nullptr) return;
    std::vector<std::future<Result<std::unique_ptr<testenv::Server>>>> starting;
    for (const char* name : kNames)
      starting.push_back(std::async(std::launch::async, [name] {
        return testenv::Server::Start("kube-cluster.sh", {"--name", name, "--nodes", "1"});
      }));
    g_clusters = new std::vector<testenv::Server*>;
    for (auto& f : starting) {
      auto s = f.get();
      if (!s.ok()) DieBecause("cannot start a test cluster: " + s.status().ToString());
      g_clusters->push_back(s->release());
    }
  }

  void SetUp() override {
    static std::atomic<int> n{0};
    app_ = fmt::format("web{}", ++n);
    auto s = store::Open("sqlite://" + tmp_.path() + "/gantry.db");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    for (size_t i = 0; i < 3; ++i)
      config_.clusters.push_back({.name = kNames[i], .kubeconfig = (*g_clusters)[i]->Get("KUBECONFIG"), .environment = kNames[i]});
    config_.environments = {{.name = "dev"}, {.name = "staging", .after = {"dev"}}, {.name = "prod", .after = {"staging"}}};
  }

  static void TearDownTestSuite() {
    for (auto* c : *g_clusters) delete c;  // stops the control planes
    delete g_clusters;
    g_clusters = nullptr;
  }

  DeployOptions Options(std::string revision) {
    return {.app = app_, .revision = std::move(revision), .default_namespace = app_, .health_timeout = 60s};
  }

  Result<std::unique_ptr<Deployment>> Start(DeployOptions o) {
    return Deployment::Start(*store_, config_, TestRender(), RealConnect(), std::move(o), [this](std::string_view line) {
      progress_.emplace_back(line);
      if (on_progress_) on_progress_(line);
    });
  }

  std::unique_ptr<kube::Client> Client(size_t i) {
    auto config = kube::LoadConfig({.paths = {(*g_clusters)[i]->Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    return std::move(kube::NewHttpClient(*config)).value();
  }

  // The revision in the cluster's ConfigMap ("" when absent).
  std::string Revision(size_t cluster) {
    auto cm = Client(cluster)->Get({"v1", "ConfigMap", app_, "web-config"});
    if (!cm.ok()) return "";
    const Value* r = cm->Find({"data", "revision"});
    return r ? std::string(r->AsString()) : "";
  }

  std::map<std::string, store::Target> Targets(int64_t release) {
    std::map<std::string, store::Target> out;
    auto ts = store_->ListTargets(release);
    EXPECT_TRUE(ts.ok());
    for (auto& t : *ts) out[t.env + "/" + t.cluster] = t;
    return out;
  }

  // A new repository on the shared Git server and its mirror.
  struct GitRepo {
    std::string url;
    git::Credentials creds;
    std::shared_ptr<git::Repository> repo;
  };
  GitRepo NewGitRepo(const std::string& name) {
    auto& git_server = testenv::Shared("git-server.sh");
    auto created = git_server.Command("create", {name});
    GANTRY_CHECK(created.ok());
    GitRepo r{.url = testenv::ParseValues(*created)["REPO_URL"],
              .creds = {.host = git_server.Get("GIT_URL").substr(std::string("http://").size()),
                        .username = git_server.Get("GIT_USER"),
                        .password = git_server.Get("GIT_PASSWORD")},
              .repo = nullptr};
    git::Mirrors mirrors(tmp_.path() + "/mirrors");
    auto repo = mirrors.Open(r.url, {.credentials = r.creds});
    GANTRY_CHECK(repo.ok());
    r.repo = *std::move(repo);
    return r;
  }

  // The Application and Project CRDs in `cluster`, once its discovery serves them, and the
  // namespace app_.
  void PrepareForAgent(kube::Client& cluster) {
    ASSERT_TRUE(cluster.Apply(api::ApplicationCrd(), {.force = true}).ok());
    ASSERT_TRUE(cluster.Apply(project::ProjectCrd(), {.force = true}).ok());
    for (int i = 0; i < 100 && !(cluster.Resolve(api::kApiVersion, api::kKind).ok() &&
                                 cluster.Resolve(project::kApiVersion, project::kKind).ok());
         ++i) {
      cluster.InvalidateDiscovery();
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(cluster.Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + app_ + "}\n")).ok());
  }

  // An agent of namespace app_ reading the repository with `creds`.
  agent::AgentOptions AgentOptions(const git::Credentials& creds) {
    agent::AgentOptions ao;
    ao.namespace_ = app_;
    ao.cache_dir = tmp_.path() + "/agent-cache";
    ao.interval = 2s;
    ao.lease_name = "";
    ao.git_credentials = {fmt::format("{}={}:{}", creds.host, creds.username, creds.password)};
    ao.reconcile.health_timeout = 60s;
    return ao;
  }

  testenv::ScopedTempDir tmp_;
  std::string app_;
  std::unique_ptr<store::Store> store_;
  Config config_;
  std::vector<std::string> progress_;
  std::function<void(std::string_view)> on_progress_;  // with each progress line, on the deploy's thread
};

TEST_F(DeliverTest, PromotesThroughDevStagingProd) {
  auto d = Start(Options("v1"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const DeployState& s = (*d)->Run();
  ASSERT_EQ(s.phase, Phase::kSucceeded) << s.message;
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(Revision(i), "v1") << kNames[i];
  for (const auto& [where, t] : Targets(s.release_id)) {
    EXPECT_EQ(t.state, store::TargetState::kHealthy) << where << ": " << t.message;
    EXPECT_TRUE(t.finished_at.has_value());
    EXPECT_NE(t.sync_result.find("\"objects\":2"), std::string::npos) << t.sync_result;
  }
  auto rel = store_->GetRelease(s.release_id);
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->source_revision, "v1");
  // Progress names every environment and cluster in order.
  std::string all = fmt::format("{}", fmt::join(progress_, "\n"));
  EXPECT_LT(all.find("dev/dev: healthy"), all.find("staging/staging: applying")) << all;
  EXPECT_LT(all.find("staging/staging: healthy"), all.find("prod/prod: applying")) << all;
}

TEST_F(DeliverTest, FailingHealthGateStopsAtStagingAndSaysWhy) {
  auto d = Start(Options("bad-staging"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const DeployState& s = (*d)->Run();
  ASSERT_EQ(s.phase, Phase::kFailed);
  EXPECT_NE(s.message.find("staging failed"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("Deployment " + app_ + "/web"), std::string::npos) << s.message;
  auto targets = Targets(s.release_id);
  EXPECT_EQ(targets["dev/dev"].state, store::TargetState::kHealthy);
  EXPECT_EQ(targets["staging/staging"].state, store::TargetState::kFailed);
  EXPECT_NE(targets["staging/staging"].sync_result.find("\"failed\":1"), std::string::npos) << targets["staging/staging"].sync_result;
  EXPECT_EQ(targets["prod/prod"].state, store::TargetState::kPending);
  EXPECT_EQ(Revision(2), "") << "prod must not be touched";
}

// A soaking environment is looked at on its cluster: v1 soaks 3 s in dev and staging and goes
// through (its Deployment healthy, nothing Missing); v2's ConfigMap is deleted as dev begins to
// soak, and the look as the soak ends stops v2 at dev, staging untouched.
TEST_F(DeliverTest, AnObjectDeletedWhileDevSoaksStopsTheReleaseAtDev) {
  config_.environments[0].gates.soak = 3s;
  config_.environments[1].gates.soak = 3s;
  auto d1 = Start(Options("v1"));
  ASSERT_TRUE(d1.ok()) << d1.status().ToString();
  const DeployState& s1 = (*d1)->Run();
  ASSERT_EQ(s1.phase, Phase::kSucceeded) << s1.message;
  std::string all = fmt::format("{}", fmt::join(progress_, "\n"));
  EXPECT_THAT(all, HasSubstr("dev: soak done"));
  EXPECT_THAT(all, HasSubstr("staging: soak done"));
  EXPECT_THAT(all, Not(HasSubstr("could not read the cluster"))) << "the soak's look did not read the cluster";
  Status deleted = InternalError("dev's soak never began");
  on_progress_ = [&](std::string_view line) {
    if (line.starts_with("dev: soaking until")) deleted = Client(0)->Delete({"v1", "ConfigMap", app_, "web-config"});
  };
  auto d2 = Start(Options("v2"));
  ASSERT_TRUE(d2.ok()) << d2.status().ToString();
  const DeployState& s2 = (*d2)->Run();
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  ASSERT_EQ(s2.phase, Phase::kFailed) << s2.message;
  EXPECT_THAT(s2.message, HasSubstr("dev: unhealthy while soaking: v1 ConfigMap " + app_ + "/web-config"));
  auto targets = Targets(s2.release_id);
  EXPECT_EQ(targets["dev/dev"].state, store::TargetState::kFailed);
  EXPECT_EQ(targets["staging/staging"].state, store::TargetState::kPending);
  EXPECT_EQ(Revision(1), "v1") << "staging was reached";
}

TEST_F(DeliverTest, RollbackRestoresThePreviousRelease) {
  auto d1 = Start([&] { auto o = Options("v1"); o.only_env = "dev"; return o; }());
  ASSERT_TRUE(d1.ok());
  ASSERT_EQ((*d1)->Run().phase, Phase::kSucceeded);
  auto d2 = Start([&] { auto o = Options("v2"); o.only_env = "dev"; return o; }());
  ASSERT_TRUE(d2.ok());
  ASSERT_EQ((*d2)->Run().phase, Phase::kSucceeded);
  EXPECT_EQ(Revision(0), "v2");

  auto rb = Rollback(*store_, config_, TestRender(), RealConnect(), {.app = app_, .env = "dev", .default_namespace = app_, .health_timeout = 60s});
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_TRUE(rb->ok) << rb->message;
  EXPECT_EQ(rb->from_release, (*d2)->state().release_id);
  EXPECT_EQ(rb->to_release, (*d1)->state().release_id);
  EXPECT_EQ(Revision(0), "v1");
  EXPECT_EQ(Targets(rb->from_release)["dev/dev"].state, store::TargetState::kRolledBack);
  auto current = store_->CurrentByTarget(app_);
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 1u);
  EXPECT_EQ((*current)[0].running->id, rb->to_release);
  EXPECT_EQ((*current)[0].behind, 1);

  // A failing deploy with --rollback-on-failure puts dev back on what ran before.
  auto d3 = Start([&] { auto o = Options("bad-dev"); o.only_env = "dev"; o.rollback_on_failure = true; o.health_timeout = 30s; return o; }());
  ASSERT_TRUE(d3.ok());
  const DeployState& s3 = (*d3)->Run();
  EXPECT_EQ(s3.phase, Phase::kFailed);
  EXPECT_NE(s3.message.find("dev rolled back to release " + std::to_string(rb->to_release)), std::string::npos) << s3.message;
  EXPECT_EQ(Revision(0), "v1");
  EXPECT_EQ(Targets(s3.release_id)["dev/dev"].state, store::TargetState::kRolledBack);
  auto audit = store_->ListAudit(10);
  ASSERT_TRUE(audit.ok());
  EXPECT_TRUE(std::any_of(audit->begin(), audit->end(), [](const store::AuditEntry& a) { return a.action == "rollback"; }));
}

TEST_F(DeliverTest, ApprovalGateWaitsThenResumes) {
  config_.environments[2].gates.approval = true;
  auto d = Start(Options("v1"));
  ASSERT_TRUE(d.ok());
  const DeployState& s = (*d)->Run();
  ASSERT_EQ(s.phase, Phase::kWaitingApproval) << s.message;
  EXPECT_NE(s.message.find(fmt::format("gantry approve {} --env prod --release {}", app_, s.release_id)), std::string::npos) << s.message;
  EXPECT_EQ(Targets(s.release_id)["prod/prod"].state, store::TargetState::kPending);
  EXPECT_EQ(Revision(1), "v1");
  EXPECT_EQ(Revision(2), "");
  // Resuming without approval waits again.
  auto again = Deployment::Resume(*store_, config_, TestRender(), RealConnect(), Options(""));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->Run().phase, Phase::kWaitingApproval);

  ASSERT_TRUE(store_->Approve(s.release_id, "prod", "alice").ok());
  auto resumed = Deployment::Resume(*store_, config_, TestRender(), RealConnect(), Options(""));
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->state().release_id, s.release_id);
  EXPECT_EQ((*resumed)->Run().phase, Phase::kSucceeded) << (*resumed)->state().message;
  EXPECT_EQ(Revision(2), "v1");
}

TEST_F(DeliverTest, UnreachableProdClusterFailsAloneWithAClearError) {
  std::string kc = tmp_.path() + "/down.kubeconfig";
  std::ofstream(kc) << "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {server: 'https://127.0.0.1:1', "
                       "insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: down\n  "
                       "context: {cluster: down, user: u}\ncurrent-context: down\n";
  config_.clusters.push_back({.name = "prod-down", .kubeconfig = kc, .environment = "prod"});
  auto d = Start(Options("v1"));
  ASSERT_TRUE(d.ok());
  const DeployState& s = (*d)->Run();
  ASSERT_EQ(s.phase, Phase::kFailed);
  auto targets = Targets(s.release_id);
  EXPECT_EQ(targets["prod/prod"].state, store::TargetState::kHealthy) << targets["prod/prod"].message;
  EXPECT_EQ(Revision(2), "v1");
  const auto& down = targets["prod/prod-down"];
  EXPECT_EQ(down.state, store::TargetState::kFailed);
  EXPECT_NE(down.message.find("cluster prod-down: cannot reach https://127.0.0.1:1"), std::string::npos) << down.message;
  EXPECT_NE(s.message.find("prod-down: cluster prod-down: cannot reach"), std::string::npos) << s.message;
}

TEST_F(DeliverTest, InterruptedDeployIsResumed) {
  auto d = Start(Options("v1"));
  ASSERT_TRUE(d.ok());
  while ((*d)->state().next_env < 1 && (*d)->Step()) {
  }
  int64_t release = (*d)->state().release_id;
  store::Target dev_before = Targets(release)["dev/dev"];
  ASSERT_EQ(dev_before.state, store::TargetState::kHealthy);
  // A crash in the middle of staging: its target says applying; the process is gone.
  store::Target staging = Targets(release)["staging/staging"];
  staging.state = store::TargetState::kApplying;
  ASSERT_TRUE(store_->UpsertTarget(staging).ok());
  d->reset();

  // A new process: --resume finds the release and continues at staging, leaving dev alone.
  auto resumed = Deployment::Resume(*store_, config_, TestRender(), RealConnect(), Options(""));
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->state().release_id, release);
  EXPECT_EQ((*resumed)->state().next_env, 1u);
  ASSERT_EQ((*resumed)->Run().phase, Phase::kSucceeded) << (*resumed)->state().message;
  auto after = Targets(release);
  EXPECT_EQ(after["dev/dev"].version, dev_before.version) << "dev was applied again";
  EXPECT_EQ(after["prod/prod"].state, store::TargetState::kHealthy);
  EXPECT_EQ(Revision(2), "v1");
  // Nothing is left to resume.
  EXPECT_EQ(Deployment::Resume(*store_, config_, TestRender(), RealConnect(), Options("")).status().code(), Code::kNotFound);

  // Terminate() (Ctrl-C) from another thread stops at a step boundary, resumable.
  auto d2 = Start(Options("v2"));
  ASSERT_TRUE(d2.ok());
  (*d2)->Terminate();
  EXPECT_EQ((*d2)->Run().phase, Phase::kTerminated);
  EXPECT_NE((*d2)->state().message.find("--resume"), std::string::npos);
  auto r2 = Deployment::Resume(*store_, config_, TestRender(), RealConnect(), Options(""));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ((*r2)->Run().phase, Phase::kSucceeded);
}

TEST_F(DeliverTest, StatusShowsAnEnvironmentBehind) {
  auto d1 = Start(Options("v1"));
  ASSERT_TRUE(d1.ok());
  ASSERT_EQ((*d1)->Run().phase, Phase::kSucceeded);
  auto d2 = Start([&] { auto o = Options("v2"); o.through = "staging"; return o; }());
  ASSERT_TRUE(d2.ok());
  ASSERT_EQ((*d2)->Run().phase, Phase::kSucceeded);
  auto d3 = Start([&] { auto o = Options("v3"); o.only_env = "dev"; return o; }());
  ASSERT_TRUE(d3.ok());
  ASSERT_EQ((*d3)->Run().phase, Phase::kSucceeded);
  auto current = store_->CurrentByTarget(app_);
  ASSERT_TRUE(current.ok());
  auto rows = PushRows(app_, *current);
  auto behind = BehindByEnv(rows);
  EXPECT_EQ((behind[{app_, "dev"}]), 0);
  EXPECT_EQ((behind[{app_, "staging"}]), 1);
  EXPECT_EQ((behind[{app_, "prod"}]), 2);
  for (const auto& r : rows) {
    if (r.env == "prod") {
      EXPECT_EQ(r.release, (*d1)->state().release_id);
      EXPECT_EQ(r.revision, "v1");
      EXPECT_EQ(r.health, "Healthy");
    }
  }
}

// A client certificate signed by the cluster's CA that expired yesterday.
void WriteExpiredCert(const std::string& ca_crt, const std::string& cert_out, const std::string& key_out) {
  std::string ca_key_path = std::filesystem::path(ca_crt).parent_path() / "ca.key";
  FILE* f = fopen(ca_key_path.c_str(), "r");
  GANTRY_CHECK(f != nullptr);
  EVP_PKEY* ca_key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  fclose(f);
  f = fopen(ca_crt.c_str(), "r");
  X509* ca = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  GANTRY_CHECK(ca_key != nullptr && ca != nullptr);
  EVP_PKEY* key = EVP_RSA_gen(2048);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242);
  X509_gmtime_adj(X509_getm_notBefore(cert), -2 * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), -86400);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("system:masters"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("expired"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(ca));
  X509_set_pubkey(cert, key);
  GANTRY_CHECK(X509_sign(cert, ca_key, EVP_sha256()) > 0);
  f = fopen(cert_out.c_str(), "w");
  PEM_write_X509(f, cert);
  fclose(f);
  f = fopen(key_out.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(cert);
  X509_free(ca);
  EVP_PKEY_free(key);
  EVP_PKEY_free(ca_key);
}

TEST_F(DeliverTest, BadClusterConfigGivesClearErrors) {
  const testenv::Server& dev = *(*g_clusters)[0];
  // Missing file.
  auto r = Connect({.name = "c1", .kubeconfig = tmp_.path() + "/nope.kubeconfig"});
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("cluster c1: kubeconfig " + tmp_.path() + "/nope.kubeconfig does not exist"), std::string::npos)
      << r.status().message();
  // Wrong context.
  r = Connect({.name = "c2", .kubeconfig = dev.Get("KUBECONFIG"), .context = "no-such-context"});
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("no-such-context"), std::string::npos) << r.status().message();
  // Expired client certificate, signed by the right CA.
  std::string crt = tmp_.path() + "/expired.crt", key = tmp_.path() + "/expired.key";
  WriteExpiredCert(dev.Get("KUBE_CA"), crt, key);
  std::string kc = tmp_.path() + "/expired.kubeconfig";
  std::ofstream(kc) << fmt::format(
      "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster: {{server: '{}', certificate-authority: '{}'}}\n"
      "users:\n- name: u\n  user: {{client-certificate: '{}', client-key: '{}'}}\ncontexts:\n- name: dev\n  context: {{cluster: dev, "
      "user: u}}\ncurrent-context: dev\n",
      dev.Get("KUBE_SERVER"), dev.Get("KUBE_CA"), crt, key);
  r = Connect({.name = "c3", .kubeconfig = kc});
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("cluster c3: client certificate expired at"), std::string::npos) << r.status().message();
  // Unreachable server.
  std::string down = tmp_.path() + "/down.kubeconfig";
  std::ofstream(down) << "apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n"
                         "- name: u\n  user: {token: secret-token-value}\ncontexts:\n- name: d\n  context: {cluster: d, user: u}\n"
                         "current-context: d\n";
  r = Connect({.name = "c4", .kubeconfig = down});
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("cluster c4: cannot reach https://127.0.0.1:1"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().find("secret-token-value"), std::string::npos);
  // A good one connects, and its flattened kubeconfig works on its own.
  auto flat = FlattenKubeconfig({.name = "dev", .kubeconfig = dev.Get("KUBECONFIG")});
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  std::string copy = tmp_.path() + "/copy.kubeconfig";
  std::ofstream(copy) << *flat;
  EXPECT_TRUE(Connect({.name = "dev", .kubeconfig = copy}).ok());
}

// Strips what differs between two clusters for reasons other than what was applied.
Value Comparable(Value obj) {
  Value* meta = obj.MutableGet("metadata");
  for (const char* k : {"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"}) meta->Erase(k);
  if (Value* labels = meta->MutableGet("labels")) labels->Erase(sync::kAppLabel);
  if (Value* ann = meta->MutableGet("annotations")) {
    ann->Erase(sync::kTrackingAnnotation);
    ann->Erase("deployment.kubernetes.io/revision");
    if (ann->size() == 0) meta->Erase("annotations");
  }
  if (Value* labels = meta->MutableGet("labels"); labels && labels->size() == 0) meta->Erase("labels");
  obj.Erase("status");
  return obj;
}

// issue 16: a push deploy of a Helm chart renders it with the deploy's namespace as the release
// namespace and, per cluster, with that cluster's version and APIs: the CRD installed only in
// staging shows in staging's .Capabilities alone.
TEST_F(DeliverTest, HelmChartIsRenderedForEachClusterAndTheDeployNamespace) {
  std::filesystem::path chart = std::filesystem::path(testenv::SourceDir()) / "src/render/testdata/helm/capabilities";
  for (const char* env : {"dev", "staging"}) {
    std::filesystem::create_directories(tmp_.path() + "/charts/envs/" + env);
    std::filesystem::copy(chart, tmp_.path() + "/charts/envs/" + env, std::filesystem::copy_options::recursive);
  }
  auto staging = Client(1);
  ASSERT_TRUE(staging->Apply(Yaml(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.capabilities.gantry.test}
spec:
  group: capabilities.gantry.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
)")).ok());
  for (int i = 0; i < 100 && !staging->Resolve("capabilities.gantry.test/v1", "Widget").ok(); ++i) {
    staging->InvalidateDiscovery();
    std::this_thread::sleep_for(100ms);
  }
  render::Options ro;
  ro.helm_binary = testenv::ToolsDir() + "/helm";
  auto options = Options("v1");
  options.through = "staging";
  auto d = Deployment::Start(*store_, config_, DirRenderFn(tmp_.path() + "/charts", ro), RealConnect(), options);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ((*d)->Run().phase, Phase::kSucceeded) << (*d)->state().message;
  for (size_t i : {0, 1}) {
    auto client = Client(i);
    auto version = client->GetRaw("/version");
    ASSERT_TRUE(version.ok());
    auto cm = client->Get({"v1", "ConfigMap", app_, "capabilities"});
    ASSERT_TRUE(cm.ok()) << kNames[i] << ": " << cm.status().ToString();
    EXPECT_EQ(value::StringAt(&*cm, {"data", "namespace"}), app_) << kNames[i];
    EXPECT_EQ(value::StringAt(&*cm, {"data", "kubeVersion"}), kube::KubeVersionOf(*version).value_or("?")) << kNames[i];
    EXPECT_EQ(value::StringAt(&*cm, {"data", "widgets"}), i == 1 ? "true" : "false") << kNames[i];
    EXPECT_EQ(value::StringAt(&*cm, {"data", "deployments"}), "true") << kNames[i];
    EXPECT_TRUE(client->Get({"v1", "ConfigMap", app_, "no-namespace"}).ok()) << kNames[i];
  }
}

TEST_F(DeliverTest, SameEngineSameResultAsThePullAgent) {
  // Not a structured binding: the lambdas below capture these (clang's tsa build cannot).
  GitRepo remote = NewGitRepo("same-" + app_);
  const std::string& url = remote.url;
  const git::Credentials& creds = remote.creds;
  std::shared_ptr<git::Repository>& repo = remote.repo;
  auto sha = repo->CommitAndPush({.branch = "main",
                                     .recompute = [&](const std::string&) -> Result<git::Changes> {
                                       return git::Changes{{{"envs/dev/app.yaml", Manifests("v1", "dev")}}};
                                     },
                                     .author = {"Dev", "dev@example.com"},
                                     .message = "v1"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();

  // Push: gantry deploy into the dev cluster.
  auto d = Deployment::Start(*store_, config_, GitRenderFn(repo), RealConnect(),
                             [&] { auto o = Options(*sha); o.only_env = "dev"; return o; }());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ((*d)->Run().phase, Phase::kSucceeded) << (*d)->state().message;

  // Pull: an agent in the staging cluster, from the same commit.
  auto staging = Client(1);
  PrepareForAgent(*staging);
  ASSERT_TRUE(staging->Apply(Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {0}}}
spec:
  source: {{repoURL: "{1}", targetRevision: "{2}", path: envs/dev}}
  destination: {{namespace: {0}}}
  syncPolicy: {{automated: {{prune: false, selfHeal: false}}}}
)", app_, url, *sha))).ok());
  agent::AgentOptions ao = AgentOptions(creds);
  auto source = agent::NewSource(ao, {});
  ASSERT_TRUE(source.ok());
  auto agent = agent::NewAgent(*staging, ao, *std::move(source));
  ASSERT_TRUE(agent.ok());
  std::thread runner([&] { (*agent)->Run().IgnoreError(); });
  auto deadline = std::chrono::steady_clock::now() + 90s;
  std::string health;
  while (std::chrono::steady_clock::now() < deadline) {
    auto a = staging->Get({api::kApiVersion, api::kKind, app_, app_});
    const Value* h = a.ok() ? a->Find({"status", "health", "status"}) : nullptr;
    const Value* rev = a.ok() ? a->Find({"status", "sync", "revision"}) : nullptr;
    if (h && h->IsString() && rev && rev->IsString() && rev->AsString() == *sha) health = h->AsString();
    if (health == "Healthy") break;
    std::this_thread::sleep_for(500ms);
  }
  (*agent)->Stop();
  runner.join();
  ASSERT_EQ(health, "Healthy");

  auto dev = Client(0);
  for (const kube::ObjectRef& ref : {kube::ObjectRef{"v1", "ConfigMap", app_, "web-config"},
                                     kube::ObjectRef{"apps/v1", "Deployment", app_, "web"}}) {
    auto pushed = dev->Get(ref);
    auto pulled = staging->Get(ref);
    ASSERT_TRUE(pushed.ok() && pulled.ok()) << ref.ToString();
    EXPECT_EQ(value::ToYaml(Comparable(*pushed)), value::ToYaml(Comparable(*pulled))) << ref.ToString();
  }
}

// A Project whose verification rule has commitKeys: a push deploy and a pull agent render only
// config commits signed by one of its keys. On the real Git server: a commit Gantry signed with the
// key (as gantry server --commit-signing-key does), one it signed with another key, and an
// unsigned one. The refused ones fail naming the commit and the rule, before anything is applied.
TEST_F(DeliverTest, ConfigCommitsMustBeSignedByTheProjectsCommitKeys) {
  // Not a structured binding: the lambdas below capture these (clang's tsa build cannot).
  GitRepo remote = NewGitRepo("signed-" + app_);
  const std::string& url = remote.url;
  const git::Credentials& creds = remote.creds;
  std::shared_ptr<git::Repository>& repo = remote.repo;
  auto key = sign::SshSigner::Parse(sign::GenerateKey(sign::KeyType::kEd25519)->Pem(), "commit-key");
  auto other = sign::SshSigner::Parse(sign::GenerateKey(sign::KeyType::kEd25519)->Pem(), "other-key");
  ASSERT_TRUE(key.ok() && other.ok());
  auto commit = [&](std::string_view revision, const sign::SshSigner* signer) {
    git::PushRequest request{.branch = "main",
                             .recompute = [&](const std::string&) -> Result<git::Changes> {
                               return git::Changes{{{"envs/dev/app.yaml", Manifests(revision, "dev")},
                                                    {"envs/staging/app.yaml", Manifests(revision, "staging")}}};
                             },
                             .author = {"Dev", "dev@example.com"},
                             .message = std::string(revision)};
    if (signer != nullptr) request.sign = [signer](std::string_view text) { return signer->Sign(text, "git"); };
    auto sha = repo->CommitAndPush(request);
    GANTRY_CHECK(sha.ok());
    return *sha;
  };
  const std::string unsigned_commit = commit("v1", nullptr);
  const std::string foreign = commit("v2", &*other);
  const std::string good = commit("v3", &*key);
  auto project_yaml = fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: signed, namespace: {0}}}
spec:
  sourceRepos: ["*"]
  destinations: [{{server: "*", namespace: "*"}}]
  credentials: ["*"]
  verification:
  - environments: [dev, staging]
    commitKeys: ["{1}"]
)", app_, key->PublicKeyLine("release@example.com"));
  auto project = project::ParseProject(Yaml(project_yaml));
  ASSERT_TRUE(project.ok()) << project.status().ToString();
  config_.projects.push_back(*project);

  // Push: refused before anything is rendered or applied, then the signed commit deploys.
  auto deploy = [&](const std::string& revision) {
    auto o = Options(revision);
    o.only_env = "dev";
    o.project = "signed";
    return Deployment::Start(*store_, config_, GitRenderFn(repo), RealConnect(), o);
  };
  auto refused = deploy(unsigned_commit);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(),
              ::testing::AllOf(::testing::HasSubstr("config commit " + unsigned_commit.substr(0, 12)),
                               ::testing::HasSubstr("verification[0] (test:"), ::testing::HasSubstr(") of project signed: "),
                               ::testing::HasSubstr("the commit is not signed")));
  refused = deploy(foreign);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), ::testing::AllOf(::testing::HasSubstr("config commit " + foreign.substr(0, 12)),
                                                           ::testing::HasSubstr("commitKeys[0]: signed by another key")));
  EXPECT_EQ(Revision(0), "") << "a refused commit was applied";
  auto d = deploy(good);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ((*d)->Run().phase, Phase::kSucceeded) << (*d)->state().message;
  EXPECT_EQ(Revision(0), "v3");

  // Pull: the agent of the staging cluster, its Application at the unsigned commit, then at the
  // signed one.
  auto staging = Client(1);
  PrepareForAgent(*staging);
  ASSERT_TRUE(staging->Apply(Yaml(project_yaml)).ok());
  auto application = [&](const std::string& revision) {
    return Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {0}}}
spec:
  project: signed
  source: {{repoURL: "{1}", targetRevision: "{2}", path: envs/staging}}
  destination: {{namespace: {0}}}
  syncPolicy: {{automated: {{prune: false, selfHeal: false}}}}
)", app_, url, revision));
  };
  ASSERT_TRUE(staging->Apply(application(unsigned_commit)).ok());
  agent::AgentOptions ao = AgentOptions(creds);
  ao.reconcile.environment = "staging";
  auto source = agent::NewSource(ao, {});
  ASSERT_TRUE(source.ok());
  auto agent = agent::NewAgent(*staging, ao, *std::move(source));
  ASSERT_TRUE(agent.ok());
  std::thread runner([&] { (*agent)->Run().IgnoreError(); });
  // The condition of `type` that is True, its message; "" when there is none.
  auto condition = [&](std::string_view type) -> std::string {
    auto a = staging->Get({api::kApiVersion, api::kKind, app_, app_});
    const Value* conditions = a.ok() ? a->Find({"status", "conditions"}) : nullptr;
    if (conditions == nullptr || !conditions->IsSeq()) return "";
    for (const Value& c : conditions->items()) {
      if (value::StringAt(&c, {"type"}) == type && value::StringAt(&c, {"status"}) == "True") {
        return std::string(value::StringAt(&c, {"message"}));
      }
    }
    return "";
  };
  std::string message;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       message.empty() && std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(200ms)) {
    message = condition(api::kConditionCommitVerificationFailed);
  }
  EXPECT_THAT(message, ::testing::AllOf(::testing::HasSubstr("config commit " + unsigned_commit.substr(0, 12)),
                                        ::testing::HasSubstr("of project signed: the commit is not signed")));
  EXPECT_FALSE(staging->Get({"v1", "ConfigMap", app_, "web-config"}).ok()) << "the agent applied an unsigned commit";

  ASSERT_TRUE(staging->Apply(application(good)).ok());
  std::string revision;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       revision != "v3" && std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(200ms)) {
    revision = Revision(1);
  }
  EXPECT_EQ(revision, "v3");
  EXPECT_EQ(condition(api::kConditionCommitVerificationFailed), "") << "the condition stays after a signed commit synced";
  (*agent)->Stop();
  runner.join();
}

}  // namespace
}  // namespace gantry::deliver
