// The pull agent against a real control plane and a real Git server over smart HTTP with auth:
// Applications converge, follow new commits, heal drift (or report it), prune, survive broken
// commits, isolate a broken application, elect one leader, and converge after kill -9.

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <fstream>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/agent.h"
#include <curl/curl.h>

#include "base/base64.h"
#include "base/clock.h"
#include "base/path.h"
#include "base/process.h"
#include "git/git.h"
#include "webhook/webhook.h"
#include "kube/kube.h"
#include "oci/registry.h"
#include "project/project.h"
#include "sign/sign.h"
#include "test/env/testenv.h"
#include "test/env/toxiproxy.h"
#include "test/fakes/agent_source.h"

namespace gantry::agent {
namespace {

using ::testing::HasSubstr;
using value::Value;
using namespace std::chrono_literals;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

std::string Deployment(const std::string& name, const std::string& image) {
  return fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: {0}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {0}}}}}
  template:
    metadata: {{labels: {{app: {0}}}}}
    spec: {{containers: [{{name: app, image: "{1}"}}]}}
)", name, image);
}

std::string ConfigMap(const std::string& name, const std::string& value) {
  return fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\ndata: {{value: \"{}\"}}\n", name, value);
}

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto& cluster = testenv::Shared("kube-cluster.sh");
    testenv::Shared("git-server.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    client_ = kube::NewHttpClient(*config)->release();
    auto crd = client_->Apply(api::ApplicationCrd(), {.force = true});
    GANTRY_CHECK(crd.ok());
    for (int i = 0; i < 100 && !client_->Resolve(api::kApiVersion, api::kKind).ok(); ++i) {
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
    ns_ = "agent-" + id_;
    auto& git = testenv::Shared("git-server.sh");
    auto created = git.Command("create", {"config-" + id_});
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    url_ = testenv::ParseValues(*created)["REPO_URL"];
    std::string host = git.Get("GIT_URL").substr(std::string("http://").size());
    creds_ = git::Credentials{.host = host, .username = git.Get("GIT_USER"), .password = git.Get("GIT_PASSWORD")};
    auto repo = mirrors_.Open(url_, {.credentials = creds_});
    ASSERT_TRUE(repo.ok());
    repo_ = *repo;
    ASSERT_TRUE(client_->Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns_ + "}\n")).ok());
  }

  void TearDown() override {
    for (auto& a : agents_) a->Stop();
    for (auto& t : threads_) t.join();
    // A failure under load is diagnosed from the agents' logs: their ends are printed (the whole
    // temp dir stays with GANTRY_KEEP_TESTENV=1).
    if (!HasFailure()) return;
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(tmp_.path(), ec)) {
      if (f.path().extension() != ".log") continue;
      std::string text = ReadFile(f.path()).value_or("");
      size_t from = text.size();
      for (int lines = 0; from > 0 && lines <= 80; --from) lines += text[from - 1] == '\n';
      std::printf("--- the last lines of %s (%zu bytes)\n%s\n", f.path().c_str(), text.size(), text.c_str() + from);
    }
  }

  // Commits `files` (path → content, nullopt deletes) to main over smart HTTP.
  std::string Commit(std::map<std::string, std::optional<std::string>> files, const std::string& message) {
    auto sha = repo_->CommitAndPush({.branch = "main",
                                     .recompute = [&](const std::string&) -> Result<git::Changes> {
                                       return git::Changes{files};
                                     },
                                     .author = {"Dev", "dev@example.com"},
                                     .message = message});
    EXPECT_TRUE(sha.ok()) << sha.status().ToString();
    return sha.value_or("");
  }

  Value Application(const std::string& name, const std::string& path, bool self_heal, bool prune = true,
                    const std::string& extra = "") {
    return Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {1}}}
spec:
  source: {{repoURL: "{2}", targetRevision: main, path: {3}}}
  destination: {{namespace: {1}}}
  syncPolicy:
    automated: {{prune: {4}, selfHeal: {5}}}
    retry: {{limit: 2, backoff: {{duration: 1s}}}}
{6})", name, ns_, url_, path, prune ? "true" : "false", self_heal ? "true" : "false", extra));
  }

  // Runs an agent in this process until the test ends.
  Agent& StartAgent(std::chrono::milliseconds interval = 2s, std::string lease = "") {
    AgentOptions o;
    o.namespace_ = ns_;
    o.cache_dir = tmp_.path() + "/cache-" + std::to_string(agents_.size());
    o.interval = interval;
    o.workers = 4;
    o.lease_name = lease;
    o.lease_namespace = ns_;
    o.git_credentials = {fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password)};
    o.reconcile.health_timeout = 60s;
    // As `gantry agent` builds it: Helm renders for this cluster.
    render::Options ro;
    ro.helm_binary = testenv::ToolsDir() + "/helm";
    auto source = NewSource(o, ro, client_);
    GANTRY_CHECK(source.ok());
    auto agent = NewAgent(*client_, o, *std::move(source));
    GANTRY_CHECK(agent.ok());
    agents_.push_back(std::move(agent).value());
    Agent* a = agents_.back().get();
    threads_.emplace_back([a] {
      Status s = a->Run();
      EXPECT_TRUE(s.ok()) << s.ToString();
    });
    return *a;
  }

  // Polls `pred` on the Application until true or the deadline; returns the last object.
  Value WaitApp(const std::string& name, const std::function<bool(const Value&)>& pred,
                std::chrono::seconds limit = 60s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    Value last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = client_->Get({api::kApiVersion, api::kKind, ns_, name});
      if (got.ok()) {
        last = *got;
        if (pred(last)) return last;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "timed out waiting for Application " << name << "; last status:\n"
                  << (last.Get("status") ? value::ToYaml(*last.Get("status")) : "none");
    return last;
  }

  static std::string At(const Value& v, std::initializer_list<Value::PathElem> path) {
    const Value* f = v.Find(path);
    return f && f->IsString() ? std::string(f->AsString()) : "";
  }

  static bool SyncedHealthyAt(const Value& app, const std::string& sha) {
    return At(app, {"status", "sync", "status"}) == "Synced" && At(app, {"status", "health", "status"}) == "Healthy" &&
           At(app, {"status", "sync", "revision"}) == sha;
  }

  std::string Image(const std::string& name) {
    auto d = client_->Get({"apps/v1", "Deployment", ns_, name});
    return d.ok() ? At(*d, {"spec", "template", "spec", "containers", 0, "image"}) : "";
  }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  testenv::ScopedTempDir tmp_;
  std::string id_, ns_, url_;
  git::Credentials creds_;
  git::Mirrors mirrors_{tmp_.path() + "/test-mirrors"};
  std::shared_ptr<git::Repository> repo_;
  std::vector<std::unique_ptr<Agent>> agents_;
  std::vector<std::thread> threads_;
};

TEST_F(AgentTest, ConvergesFollowsCommitsAndPrunes) {
  std::string first = Commit({{"app/web.yaml", Deployment("web", "registry.k8s.io/pause:3.9")},
                              {"app/settings.yaml", ConfigMap("settings", "a")}},
                             "first");
  ASSERT_TRUE(client_->Apply(Application("web", "app", true)).ok());
  StartAgent();
  Value app = WaitApp("web", [&](const Value& a) { return SyncedHealthyAt(a, first); });
  EXPECT_EQ(Image("web"), "registry.k8s.io/pause:3.9");
  EXPECT_EQ(At(app, {"status", "operationState", "phase"}), "Succeeded");

  // A new image tag in Git is applied (found by polling; the interval is 2 s here).
  auto pushed = std::chrono::steady_clock::now();
  std::string second = Commit({{"app/web.yaml", Deployment("web", "registry.k8s.io/pause:3.10")}}, "bump");
  WaitApp("web", [&](const Value& a) { return SyncedHealthyAt(a, second); });
  EXPECT_EQ(Image("web"), "registry.k8s.io/pause:3.10");
  auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - pushed);
  RecordProperty("commit_to_applied_poll_ms", static_cast<int>(latency.count()));

  // A manifest removed from Git is pruned.
  std::string third = Commit({{"app/settings.yaml", std::nullopt}}, "drop settings");
  WaitApp("web", [&](const Value& a) { return SyncedHealthyAt(a, third); });
  EXPECT_EQ(client_->Get({"v1", "ConfigMap", ns_, "settings"}).status().code(), Code::kNotFound);
  const Value* history = app.Find({"status", "history"});
  EXPECT_NE(history, nullptr);
}

// issue 16: the agent renders a Helm chart with the Application's destination namespace as the
// release namespace and the cluster's version and APIs as .Capabilities.
TEST_F(AgentTest, HelmChartRendersForTheClusterAndTheDestinationNamespace) {
  std::filesystem::path chart = std::filesystem::path(testenv::SourceDir()) / "src/render/testdata/helm/capabilities";
  auto read = [&](const std::string& rel) {
    std::ifstream in(chart / rel);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::string sha = Commit({{"charts/caps/Chart.yaml", read("Chart.yaml")},
                            {"charts/caps/templates/capabilities.yaml", read("templates/capabilities.yaml")}},
                           "chart");
  ASSERT_TRUE(client_->Apply(Application("caps", "charts/caps", true)).ok());
  StartAgent();
  WaitApp("caps", [&](const Value& a) { return SyncedHealthyAt(a, sha); });
  auto version = client_->GetRaw("/version");
  ASSERT_TRUE(version.ok());
  auto cm = client_->Get({"v1", "ConfigMap", ns_, "capabilities"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(At(*cm, {"data", "namespace"}), ns_);
  EXPECT_EQ(At(*cm, {"data", "kubeVersion"}), kube::KubeVersionOf(*version).value_or("?"));
  EXPECT_EQ(At(*cm, {"data", "deployments"}), "true");
  EXPECT_TRUE(client_->Get({"v1", "ConfigMap", ns_, "no-namespace"}).ok());
}

TEST_F(AgentTest, SelfHealRevertsDriftAndWithoutItDriftIsReported) {
  std::string sha = Commit({{"healed/cm.yaml", ConfigMap("healed", "git")},
                            {"reported/cm.yaml", ConfigMap("reported", "git")}},
                           "two apps");
  ASSERT_TRUE(client_->Apply(Application("healed", "healed", true)).ok());
  ASSERT_TRUE(client_->Apply(Application("reported", "reported", false)).ok());
  StartAgent(60s);  // drift must be seen through the watches, not the interval
  WaitApp("healed", [&](const Value& a) { return SyncedHealthyAt(a, sha); });
  WaitApp("reported", [&](const Value& a) { return SyncedHealthyAt(a, sha); });

  for (const char* name : {"healed", "reported"}) {
    Value edit = Yaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {}}}\ndata: {{value: edited}}\n",
                                  name, ns_));
    ASSERT_TRUE(client_->Apply(edit, {.field_manager = "kubectl-edit", .force = true}).ok());
  }
  auto value_of = [&](const std::string& name) {
    auto cm = client_->Get({"v1", "ConfigMap", ns_, name});
    return cm.ok() ? At(*cm, {"data", "value"}) : "";
  };
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (value_of("healed") != "git" && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(value_of("healed"), "git") << "selfHeal did not revert the edit";
  Value reported = WaitApp("reported", [](const Value& a) { return At(a, {"status", "sync", "status"}) == "OutOfSync"; }, 30s);
  EXPECT_EQ(value_of("reported"), "edited") << "without selfHeal the edit must stay";
}

TEST_F(AgentTest, BrokenCommitKeepsTheLastGoodStateAndSaysWhy) {
  std::string good = Commit({{"app/a.yaml", ConfigMap("a", "1")}, {"app/b.yaml", ConfigMap("b", "1")}}, "good");
  ASSERT_TRUE(client_->Apply(Application("fragile", "app", false)).ok());
  StartAgent();
  WaitApp("fragile", [&](const Value& a) { return SyncedHealthyAt(a, good); });
  Commit({{"app/b.yaml", std::string("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\ndata: [")}}, "broken");
  Value app = WaitApp("fragile", [](const Value& a) {
    const Value* conds = a.Find({"status", "conditions"});
    if (!conds || !conds->IsSeq()) return false;
    for (const Value& c : conds->items()) {
      if (At(c, {"type"}) == "RenderFailed" && At(c, {"status"}) == "True") return true;
    }
    return false;
  });
  std::string message;
  for (const Value& c : app.Find({"status", "conditions"})->items()) {
    if (At(c, {"type"}) == "RenderFailed") message = At(c, {"message"});
  }
  EXPECT_NE(message.find("app/b.yaml:"), std::string::npos) << message;
  // The failure is also a Kubernetes Event on the Application.
  auto events = client_->List("v1", "Event", ns_);
  ASSERT_TRUE(events.ok());
  bool found = false;
  for (const Value& e : events->items) {
    found |= At(e, {"reason"}) == "RenderFailed" && At(e, {"involvedObject", "name"}) == "fragile" &&
             At(e, {"type"}) == "Warning";
  }
  EXPECT_TRUE(found) << "no RenderFailed Event";
  EXPECT_TRUE(client_->Get({"v1", "ConfigMap", ns_, "a"}).ok());
  EXPECT_TRUE(client_->Get({"v1", "ConfigMap", ns_, "b"}).ok()) << "a broken render must not prune";
}

TEST_F(AgentTest, OneBrokenApplicationDoesNotHoldUpFifty) {
  std::map<std::string, std::optional<std::string>> files;
  for (int i = 0; i < 49; ++i) files[fmt::format("apps/a{}/cm.yaml", i)] = ConfigMap(fmt::format("cm{}", i), "v");
  files["apps/broken/cm.yaml"] = std::string("kind: [");
  std::string sha = Commit(files, "fifty");
  for (int i = 0; i < 49; ++i) {
    ASSERT_TRUE(client_->Apply(Application(fmt::format("a{}", i), fmt::format("apps/a{}", i), false)).ok());
  }
  ASSERT_TRUE(client_->Apply(Application("broken", "apps/broken", false)).ok());
  auto start = std::chrono::steady_clock::now();
  StartAgent(30s);
  for (int i = 0; i < 49; ++i) {
    WaitApp(fmt::format("a{}", i), [&](const Value& a) { return SyncedHealthyAt(a, sha); }, 60s);
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  RecordProperty("fifty_apps_converged_ms", static_cast<int>(took.count()));
  Value broken = WaitApp("broken", [](const Value& a) { return a.Find({"status", "conditions"}) != nullptr; });
  EXPECT_NE(value::ToJson(broken).find("RenderFailed"), std::string::npos);
}

TEST_F(AgentTest, DependsOnWaitsForTheDependencyToBeHealthy) {
  std::string sha = Commit({{"db/cm.yaml", ConfigMap("db", "1")}, {"web/cm.yaml", ConfigMap("web", "1")}}, "deps");
  ASSERT_TRUE(client_->Apply(Application("web", "web", false, true, "  dependsOn: [db]\n")).ok());
  StartAgent();
  Value waiting = WaitApp("web", [](const Value& a) { return value::ToJson(a).find("DependencyNotReady") != std::string::npos; });
  EXPECT_EQ(client_->Get({"v1", "ConfigMap", ns_, "web"}).status().code(), Code::kNotFound);
  ASSERT_TRUE(client_->Apply(Application("db", "db", false)).ok());
  WaitApp("web", [&](const Value& a) { return SyncedHealthyAt(a, sha); });
}

// --- The webhook path ---------------------------------------------------------------------------

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TEST_F(AgentTest, PushWebhookTriggersARefreshAtOnce) {
  std::string first = Commit({{"hook/cm.yaml", ConfigMap("hooked", "1")}}, "first");
  ASSERT_TRUE(client_->Apply(Application("hooked", "hook", false)).ok());
  // A long interval: only the webhook can explain a fast update.
  Agent& agent = [&]() -> Agent& {
    AgentOptions opts;
    opts.namespace_ = ns_;
    opts.cache_dir = tmp_.path() + "/cache-hook";
    opts.interval = std::chrono::minutes(10);
    opts.lease_name = "";
    opts.listen = "127.0.0.1:0";
    opts.webhook_secret = "s3cret";
    opts.git_credentials = {fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password)};
    auto source = NewSource(opts, {});
    GANTRY_CHECK(source.ok());
    auto a = NewAgent(*client_, opts, *std::move(source));
    GANTRY_CHECK(a.ok());
    agents_.push_back(std::move(a).value());
    Agent* p = agents_.back().get();
    threads_.emplace_back([p] { EXPECT_TRUE(p->Run().ok()); });
    return *p;
  }();
  WaitApp("hooked", [&](const Value& a) { return SyncedHealthyAt(a, first); });
  ASSERT_GT(agent.port(), 0);

  std::vector<double> latencies;
  for (int round = 0; round < 5; ++round) {
    std::string sha = Commit({{"hook/cm.yaml", ConfigMap("hooked", std::to_string(round + 2))}}, "bump");
    auto pushed = std::chrono::steady_clock::now();
    std::string body = fmt::format(R"({{"ref":"refs/heads/main","before":"{}","after":"{}",
      "repository":{{"full_name":"org/config","clone_url":"{}","ssh_url":"","html_url":""}},
      "pusher":{{"name":"dev"}},"sender":{{"login":"dev"}},"commits":[]}})", first, sha, url_);
    std::string signature = "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex("s3cret", body);
    std::string delivery = fmt::format("X-GitHub-Delivery: {}-{}", id_, round);
    CURL* curl = curl_easy_init();
    curl_slist* h = curl_slist_append(nullptr, "X-GitHub-Event: push");
    h = curl_slist_append(h, signature.c_str());
    h = curl_slist_append(h, delivery.c_str());
    h = curl_slist_append(h, "Content-Type: application/json");
    std::string url = fmt::format("http://127.0.0.1:{}/webhook", agent.port()), reply;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(curl);
    ASSERT_EQ(code, 202) << reply;
    EXPECT_NE(reply.find("refreshing 1 application"), std::string::npos) << reply;
    WaitApp("hooked", [&](const Value& a) { return SyncedHealthyAt(a, sha); }, 20s);
    latencies.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - pushed).count());
    first = sha;
  }
  std::sort(latencies.begin(), latencies.end());
  RecordProperty("webhook_to_synced_p50_ms", static_cast<int>(latencies[latencies.size() / 2] * 1000));
  EXPECT_LT(latencies[latencies.size() / 2], 5.0) << "the webhook path should not wait for the 10 min interval";
  // A forged delivery is refused.
  CURL* curl = curl_easy_init();
  curl_slist* h = curl_slist_append(nullptr, "X-GitHub-Event: push");
  h = curl_slist_append(h, "X-Hub-Signature-256: sha256=0000000000000000000000000000000000000000000000000000000000000000");
  std::string url = fmt::format("http://127.0.0.1:{}/webhook", agent.port()), reply;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{}");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
  ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  EXPECT_EQ(code, 401) << reply;
  curl_slist_free_all(h);
  curl_easy_cleanup(curl);
}

// Regression: /metrics was served, without authentication, on the webhook listener (all
// interfaces in the Pod), and that listener could not serve HTTPS.
TEST_F(AgentTest, WebhookListenerServesTlsAndMetricsHaveAListenerOfTheirOwn) {
  std::string cert = tmp_.path() + "/agent-cert.pem", key = tmp_.path() + "/agent-key.pem";
  std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                    "-addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  AgentOptions opts;
  opts.namespace_ = ns_;
  opts.cache_dir = tmp_.path() + "/cache-tls";
  opts.lease_name = "";
  opts.listen = "127.0.0.1:0";
  opts.tls_cert_file = cert;
  opts.tls_key_file = key;
  opts.metrics_listen = "127.0.0.1:0";
  opts.webhook_secret = "s3cret";
  auto source = NewSource(opts, {});
  ASSERT_TRUE(source.ok());
  auto a = NewAgent(*client_, opts, *std::move(source));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  agents_.push_back(std::move(a).value());
  Agent* agent = agents_.back().get();
  threads_.emplace_back([agent] { EXPECT_TRUE(agent->Run().ok()); });
  for (auto end = std::chrono::steady_clock::now() + 30s;
       (agent->port() == 0 || agent->metrics_port() == 0) && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GT(agent->port(), 0);
  ASSERT_GT(agent->metrics_port(), 0);

  auto get = [&](const std::string& url, std::string* body) {
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CAINFO, cert.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    long code = 0;
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(curl);
    return code;
  };
  std::string body;
  EXPECT_EQ(get(fmt::format("https://127.0.0.1:{}/healthz", agent->port()), &body), 200);
  EXPECT_EQ(body, "ok\n");
  EXPECT_EQ(get(fmt::format("http://127.0.0.1:{}/healthz", agent->port()), &body), 0) << "plain HTTP";
  EXPECT_EQ(get(fmt::format("https://127.0.0.1:{}/metrics", agent->port()), &body), 404);
  body.clear();
  EXPECT_EQ(get(fmt::format("http://127.0.0.1:{}/metrics", agent->metrics_port()), &body), 200);
  EXPECT_NE(body.find("gantry_agent_queue_depth"), std::string::npos) << body;
}

// --- Separate agent processes: leader election and kill -9 --------------------------------------

class AgentProcess {
 public:
  AgentProcess(const std::string& kubeconfig, const std::string& ns, const std::string& cache,
               const std::string& identity, const std::string& creds_env, const std::string& log,
               const std::vector<std::string>& extra_args = {}, const std::map<std::string, std::string>& extra_env = {}) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    std::vector<std::string> argv = {binary, "agent", "--kubeconfig", kubeconfig, "-n", ns, "--cache-dir", cache,
                                     "--identity", identity, "--lease-duration", "3s", "--interval", "2s",
                                     "--git-credentials-env", "GIT_CREDS", "--metrics-listen", "127.0.0.1:0"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    std::map<std::string, std::string> env = {{"GIT_CREDS", creds_env}, {"HOME", cache}, {"PATH", "/usr/bin:/bin"}};
    // GANTRY_LOG_LEVEL=debug for the test reaches its agents (every API request, with its time).
    if (const char* level = std::getenv("GANTRY_LOG_LEVEL")) env["GANTRY_LOG_LEVEL"] = level;
    // The sanitizers' options (scripts/sanitize.sh: every report fatal, where reports go,
    // suppressions) reach the agents too.
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"}) {
      if (const char* given = std::getenv(name)) env[name] = given;
    }
    for (const auto& [name, value] : extra_env) env[name] = value;
    auto p = Process::Start(argv, {.env = env}, log);
    GANTRY_CHECK(p.ok());
    process_ = std::make_unique<Process>(std::move(p).value());
  }
  void Kill9() { process_->Signal(SIGKILL); process_->Stop(std::chrono::milliseconds(100)); }
  // SIGTERM, as Kubernetes stops a Pod; returns the exit status once it has exited.
  int Term() { return process_->Stop(std::chrono::seconds(20)); }
  bool Running() { return process_->Running(); }
  pid_t pid() const { return process_->pid(); }

 private:
  std::unique_ptr<Process> process_;
};

TEST_F(AgentTest, TwoAgentsElectOneLeaderAndTheOtherTakesOverAfterKill9) {
  std::string first = Commit({{"ha/cm.yaml", ConfigMap("ha", "1")}}, "first");
  ASSERT_TRUE(client_->Apply(Application("ha", "ha", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  AgentProcess a(*kubeconfig_, ns_, tmp_.path() + "/a", "agent-a", creds, tmp_.path() + "/a.log");
  AgentProcess b(*kubeconfig_, ns_, tmp_.path() + "/b", "agent-b", creds, tmp_.path() + "/b.log");
  WaitApp("ha", [&](const Value& app) { return SyncedHealthyAt(app, first); });
  auto holder = [&] {
    auto lease = client_->Get({"coordination.k8s.io/v1", "Lease", ns_, "gantry-agent"});
    return lease.ok() ? At(*lease, {"spec", "holderIdentity"}) : "";
  };
  std::string leader = holder();
  ASSERT_TRUE(leader == "agent-a" || leader == "agent-b") << leader;
  // Only the leader reconciles: the status was written by one of them, and the lease stays put.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(holder(), leader);

  (leader == "agent-a" ? a : b).Kill9();
  std::string follower = leader == "agent-a" ? "agent-b" : "agent-a";
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (holder() != follower && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(200ms);
  EXPECT_EQ(holder(), follower) << "the follower did not take over the lease";
  // The new leader keeps the cluster in sync.
  std::string second = Commit({{"ha/cm.yaml", ConfigMap("ha", "2")}}, "second");
  WaitApp("ha", [&](const Value& app) { return SyncedHealthyAt(app, second); }, 40s);
}

TEST_F(AgentTest, LeaderStoppedWithSigtermHandsTheLeaseOverAtOnce) {
  std::string first = Commit({{"handover/cm.yaml", ConfigMap("handover", "1")}}, "first");
  ASSERT_TRUE(client_->Apply(Application("handover", "handover", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  AgentProcess a(*kubeconfig_, ns_, tmp_.path() + "/ta", "agent-a", creds, tmp_.path() + "/ta.log");
  AgentProcess b(*kubeconfig_, ns_, tmp_.path() + "/tb", "agent-b", creds, tmp_.path() + "/tb.log");
  WaitApp("handover", [&](const Value& app) { return SyncedHealthyAt(app, first); });
  auto holder = [&] {
    auto lease = client_->Get({"coordination.k8s.io/v1", "Lease", ns_, "gantry-agent"});
    return lease.ok() ? At(*lease, {"spec", "holderIdentity"}) : "";
  };
  std::string leader = holder();
  ASSERT_TRUE(leader == "agent-a" || leader == "agent-b") << leader;
  std::string follower = leader == "agent-a" ? "agent-b" : "agent-a";

  // The lease lasts 3 s; the follower tries every 600 ms. Released, it is taken at the next try.
  auto stopped = std::chrono::steady_clock::now();
  EXPECT_EQ((leader == "agent-a" ? a : b).Term(), 0) << "the agent exits cleanly on SIGTERM";
  auto released = std::chrono::steady_clock::now();
  auto deadline = released + 10s;
  while (holder() != follower && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  auto took = std::chrono::steady_clock::now() - stopped;
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf("lease handover: leader exited %lld ms after SIGTERM, follower led %lld ms after SIGTERM\n",
              static_cast<long long>(ms(released - stopped)), static_cast<long long>(ms(took)));
  EXPECT_EQ(holder(), follower) << "the follower did not take over the lease";
  // Unreleased, the follower waits a lease duration (3 s) after the last renewal it saw, which is
  // at most a retry period (600 ms) old at SIGTERM: 2.4 s at the least. Released: ~0.6 s.
  EXPECT_LT(took, 1500ms) << "took over " << ms(took) << " ms after SIGTERM (the leader exited after "
                      << ms(released - stopped) << " ms): the lease was not released";
  std::string second = Commit({{"handover/cm.yaml", ConfigMap("handover", "2")}}, "second");
  WaitApp("handover", [&](const Value& app) { return SyncedHealthyAt(app, second); }, 40s);
}

// issue 19: sharded replicas. Every reconcile an agent process ran, from its log ("agent: NS/NAME
// synced|stopped|reconciled ... (N ms)", stamped when it ended).
struct LoggedReconcile {
  std::string app, agent;
  int64_t start_ms = 0, end_ms = 0;  // wall clock
  bool synced = false;               // it ran a sync operation to its end
  bool stopped = false;              // it started one that was stopped between two steps (still Running)
};
std::vector<LoggedReconcile> ReconcilesInLog(const std::string& path, const std::string& agent) {
  std::vector<LoggedReconcile> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t at = line.find(" agent: ");
    size_t ms = line.rfind(" ms");
    size_t open = line.rfind('(');
    if (at == std::string::npos || ms == std::string::npos || open == std::string::npos || open > ms) continue;
    std::istringstream words(line.substr(at + 8));
    std::string key, what;
    words >> key >> what;
    if (what != "synced" && what != "stopped" && what != "reconciled") continue;
    auto end = ParseRfc3339(line.substr(0, line.find(' ')));
    if (!end) continue;
    int64_t end_ms = std::chrono::duration_cast<std::chrono::milliseconds>(end->time_since_epoch()).count();
    out.push_back({key, agent, end_ms - std::stoll(line.substr(open + 1, ms - open - 1)), end_ms, what == "synced",
                   what == "stopped"});
  }
  return out;
}

TEST_F(AgentTest, ThreeShardedAgentsShareTheApplicationsAndTakeOverAKilledOnesWithin15s) {
  // 90 in CI; GANTRY_SHARD_APPS=300 for the issue's size (about a minute more).
  const char* apps_env = std::getenv("GANTRY_SHARD_APPS");
  const int kApps = apps_env ? std::atoi(apps_env) : 90;
  ASSERT_GE(kApps, 6);
  std::map<std::string, std::optional<std::string>> files;
  for (int i = 0; i < kApps; ++i) files[fmt::format("s{}/cm.yaml", i)] = ConfigMap(fmt::format("cm-{}", i), "1");
  std::string first = Commit(files, "first");
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  const std::vector<std::string> ids = {"agent-a", "agent-b", "agent-c"};
  std::map<std::string, std::unique_ptr<AgentProcess>> agents;
  for (const std::string& id : ids) {
    agents[id] = std::make_unique<AgentProcess>(*kubeconfig_, ns_, tmp_.path() + "/" + id, id, creds,
                                                tmp_.path() + "/" + id + ".log",
                                                std::vector<std::string>{"--shard", "--workers", "2"});
  }
  auto members = [&] {
    auto leases = client_->List("coordination.k8s.io/v1", "Lease", ns_, {.label_selector = "gantry.dev/agent-member"});
    return leases.ok() ? leases->items.size() : 0;
  };
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (members() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  ASSERT_EQ(members(), 3u) << "one member Lease per replica";
  for (int i = 0; i < kApps; ++i) {
    ASSERT_TRUE(client_->Apply(Application(fmt::format("s{}", i), fmt::format("s{}", i), false)).ok());
  }
  // Polls the Applications until `done` holds for every one; returns them by name (claim holder,
  // sync revision).
  auto wait_all = [&](const std::function<bool(const Value&)>& done, std::chrono::seconds limit) {
    std::map<std::string, Value> apps;
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      auto list = client_->List(api::kApiVersion, api::kKind, ns_);
      if (list.ok()) {
        apps.clear();
        for (const Value& a : list->items) apps[At(a, {"metadata", "name"})] = a;
        if (apps.size() == static_cast<size_t>(kApps) && std::ranges::all_of(apps, [&](const auto& kv) { return done(kv.second); })) break;
      }
      std::this_thread::sleep_for(200ms);
    }
    return apps;
  };
  auto holder = [](const Value& app) { return At(app, {"metadata", "annotations", "gantry.dev/shard-owner"}); };
  auto apps = wait_all([&](const Value& a) { return SyncedHealthyAt(a, first) && !holder(a).empty(); }, 90s);
  std::map<std::string, std::vector<std::string>> owned;
  for (const auto& [name, app] : apps) {
    ASSERT_TRUE(SyncedHealthyAt(app, first)) << name << " did not converge";
    owned[holder(app)].push_back(name);
  }
  for (const std::string& id : ids) {
    EXPECT_GE(owned[id].size(), kApps / 6u) << id << " holds too few of the Applications";
    RecordProperty(id + "_apps", static_cast<int>(owned[id].size()));
  }
  EXPECT_EQ(owned.size(), 3u) << "claims by others than the three replicas";

  // kill -9 one replica, then push a commit that changes every application: the killed one's
  // applications are claimed and synced by the other two.
  const std::string victim = "agent-b";
  ASSERT_FALSE(owned[victim].empty());
  auto killed_at = std::chrono::steady_clock::now();
  const int64_t killed_wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count();
  agents[victim]->Kill9();
  for (auto& [path, content] : files) content = ConfigMap("cm-" + path.substr(1, path.find('/') - 1), "2");
  std::string second = Commit(files, "second");
  // Claims are taken right before the new owner's first reconcile.
  apps = wait_all([&](const Value& a) { return !holder(a).empty() && holder(a) != victim; }, 40s);
  auto took = std::chrono::steady_clock::now() - killed_at;
  apps = wait_all([&](const Value& a) { return SyncedHealthyAt(a, second) && holder(a) != victim; }, 60s);
  auto all_synced = std::chrono::steady_clock::now() - killed_at;
  auto ms = [](auto d) { return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); };
  std::printf("sharded agents: %zu of %d applications moved from the killed replica in %lld ms; all %d synced at "
              "the commit pushed after the kill in %lld ms\n",
              owned[victim].size(), kApps, ms(took), kApps, ms(all_synced));
  RecordProperty("failover_ms", static_cast<int>(ms(took)));
  for (const std::string& name : owned[victim]) {
    EXPECT_TRUE(SyncedHealthyAt(apps[name], second)) << name;
    EXPECT_NE(holder(apps[name]), victim) << name << " was not taken over";
  }
  EXPECT_LT(took, 15s) << "the killed replica's applications moved in " << ms(took) << " ms";
  for (const std::string& id : ids) {
    if (id != victim) {
      EXPECT_EQ(agents[id]->Term(), 0) << id;
    }
  }

  // No application was reconciled by two replicas at once, and before the kill each was synced
  // by exactly one of them, once: one sync operation that ran to its end. A sync stopped between
  // two steps because its replica's membership lapsed (a renewal late under load: the replica
  // may no longer write) stays Running and is resumed by the next reconcile; it is the same
  // operation, counted apart (issue 21: at load 41 the count had failed for every application).
  std::map<std::string, std::vector<LoggedReconcile>> runs;
  for (const std::string& id : ids) {
    for (LoggedReconcile& r : ReconcilesInLog(tmp_.path() + "/" + id + ".log", id)) runs[r.app].push_back(std::move(r));
  }
  EXPECT_EQ(runs.size(), static_cast<size_t>(kApps));
  size_t reconciles = 0, stopped = 0;
  for (auto& [app, spans] : runs) {
    std::sort(spans.begin(), spans.end(), [](const auto& x, const auto& y) { return x.start_ms < y.start_ms; });
    int64_t end = 0;
    std::string by;
    for (const LoggedReconcile& r : spans) {
      if (r.agent != by) {
        EXPECT_LE(end, r.start_ms) << app << ": reconciled by " << by << " and " << r.agent << " at once";
      }
      if (r.end_ms >= end) {
        end = r.end_ms;
        by = r.agent;
      }
    }
    EXPECT_EQ(std::ranges::count_if(spans, [&](const auto& r) { return r.synced && r.end_ms < killed_wall; }), 1)
        << app << ": synced more than once, or never, before the kill";
    for (const LoggedReconcile& r : spans) {
      if (!r.stopped) continue;
      ++stopped;
      EXPECT_TRUE(std::ranges::any_of(spans, [&](const auto& later) { return later.synced && later.start_ms >= r.end_ms; }))
          << app << ": its sync stopped by " << r.agent << " was never resumed";
    }
    reconciles += spans.size();
  }
  std::printf("sharded agents: %zu reconciles, %zu syncs stopped (membership lapsed) and resumed\n", reconciles, stopped);
  RecordProperty("reconciles", static_cast<int>(reconciles));
  RecordProperty("stopped_syncs", static_cast<int>(stopped));
}

TEST_F(AgentTest, Kill9MidSyncConvergesAfterRestart) {
  std::map<std::string, std::optional<std::string>> files;
  for (int i = 0; i < 1000; ++i) files[fmt::format("big/cm{:04}.yaml", i)] = ConfigMap(fmt::format("cm{:04}", i), "1");
  std::string sha = Commit(files, "many objects");
  ASSERT_TRUE(client_->Apply(Application("big", "big", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  {
    AgentProcess a(*kubeconfig_, ns_, tmp_.path() + "/a", "agent-a", creds, tmp_.path() + "/a.log");
    // Kill it as soon as the sync has started, most likely before it has finished.
    WaitApp("big", [](const Value& app) { return !At(app, {"status", "operationState", "phase"}).empty(); }, 60s);
    a.Kill9();
  }
  auto killed = client_->Get({api::kApiVersion, api::kKind, ns_, "big"});
  ASSERT_TRUE(killed.ok());
  bool mid_sync = At(*killed, {"status", "operationState", "phase"}) == "Running";
  RecordProperty("killed_mid_sync", mid_sync ? 1 : 0);
  auto half = client_->List("v1", "ConfigMap", ns_, {.label_selector = "gantry.dev/app=big"});
  ASSERT_TRUE(half.ok());
  RecordProperty("objects_applied_before_kill", static_cast<int>(half->items.size()));
  AgentProcess b(*kubeconfig_, ns_, tmp_.path() + "/b", "agent-b", creds, tmp_.path() + "/b.log");
  Value app = WaitApp("big", [&](const Value& a) {
    return SyncedHealthyAt(a, sha) && At(a, {"status", "operationState", "phase"}) == "Succeeded";
  }, 90s);
  auto all = client_->List("v1", "ConfigMap", ns_, {.label_selector = "gantry.dev/app=big"});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->items.size(), 1000u);
  if (mid_sync) {
    EXPECT_EQ(At(app, {"status", "operationState", "trigger"}), "resume");
  }
}

// kill -9 of the agent process at seeded points of a sync with prune (issue 21): a commit changes
// 300 ConfigMaps and drops 100; three agents in turn are killed a seeded 0-1.5 s after the sync of
// that commit shows Running (from the outside: the Application's status). After every kill each
// ConfigMap the new commit still wants is on the apiserver (no prune after a partial read or an
// interrupted apply); a fourth agent converges: exactly the 300 wanted, at the new value.
// Only in the full campaign (bench/faults/run.sh): a few agent restarts take most of a minute.
TEST_F(AgentTest, Kill9AtSeededPointsOfASyncWithPruneConverges) {
  if (!testenv::FullFaults()) GTEST_SKIP() << "runs in the full fault campaign (GANTRY_FAULTS_FULL=1, bench/faults/run.sh)";
  std::map<std::string, std::optional<std::string>> files;
  for (int i = 0; i < 400; ++i) files[fmt::format("seeded/cm{:04}.yaml", i)] = ConfigMap(fmt::format("cm{:04}", i), "1");
  std::string first = Commit(files, "400 objects");
  ASSERT_TRUE(client_->Apply(Application("seeded", "seeded", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  auto agent = [&](int n) {
    const std::string id = fmt::format("agent-{}", n);
    return std::make_unique<AgentProcess>(*kubeconfig_, ns_, tmp_.path() + "/" + id, id, creds,
                                          tmp_.path() + "/" + id + ".log");
  };
  {
    auto a = agent(0);
    WaitApp("seeded", [&](const Value& app) { return SyncedHealthyAt(app, first); }, 120s);
    a->Kill9();
  }
  for (int i = 0; i < 100; ++i) files[fmt::format("seeded/cm{:04}.yaml", i)] = std::nullopt;
  for (int i = 100; i < 400; ++i) files[fmt::format("seeded/cm{:04}.yaml", i)] = ConfigMap(fmt::format("cm{:04}", i), "2");
  std::string second = Commit(files, "300 changed, 100 dropped");
  auto wanted_present = [&] {
    auto list = client_->List("v1", "ConfigMap", ns_, {.label_selector = "gantry.dev/app=seeded"});
    EXPECT_TRUE(list.ok());
    std::set<std::string> names;
    for (const Value& cm : list.ok() ? list->items : std::vector<Value>{}) names.insert(At(cm, {"metadata", "name"}));
    int missing = 0;
    for (int i = 100; i < 400; ++i) missing += names.count(fmt::format("cm{:04}", i)) == 0;
    return missing;
  };
  std::mt19937_64 random(testenv::FaultSeed());
  auto start = std::chrono::steady_clock::now();
  int killed_mid_sync = 0;
  for (int n = 1; n <= 3; ++n) {
    auto a = agent(n);
    WaitApp("seeded", [&](const Value& app) {
      return At(app, {"status", "operationState", "phase"}) == "Running" || SyncedHealthyAt(app, second);
    }, 90s);
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 1500));  // the schedule
    auto now = client_->Get({api::kApiVersion, api::kKind, ns_, "seeded"});
    killed_mid_sync += now.ok() && At(*now, {"status", "operationState", "phase"}) == "Running";
    a->Kill9();
    EXPECT_EQ(wanted_present(), 0) << "kill " << n << ": ConfigMaps the new commit wants were deleted";
  }
  double fault_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto healed = std::chrono::steady_clock::now();
  auto last = agent(4);
  WaitApp("seeded", [&](const Value& app) {
    return SyncedHealthyAt(app, second) && At(app, {"status", "operationState", "phase"}) == "Succeeded";
  }, 120s);
  double recover_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - healed).count();
  auto all = client_->List("v1", "ConfigMap", ns_, {.label_selector = "gantry.dev/app=seeded"});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->items.size(), 300u);
  for (const Value& cm : all->items) EXPECT_EQ(At(cm, {"data", "value"}), "2") << At(cm, {"metadata", "name"});
  std::cout << "  " << killed_mid_sync << " of 3 kills fell mid-sync" << std::endl;
  testenv::RecordFault("agent-kill9-seeded", fmt::format("killed-mid-sync-{}-of-3-converged", killed_mid_sync), fault_s,
                       recover_s);
}

// The agent out of descriptors (issue 21): once it has synced, its RLIMIT_NOFILE is lowered to
// the lowest descriptor it has free (prlimit), so that nothing new opens (a fetch's connection, a
// pack file, a connection to the apiserver), until a seeded 0-3 s after it has said why. The
// commit made then is not synced; the agent says why ("Too many open files") and keeps running;
// once the limit is back it syncs the commit.
TEST_F(AgentTest, OutOfDescriptorsTheAgentSaysWhyAndSyncsOnceTheLimitAllows) {
#if defined(__SANITIZE_ADDRESS__)
  // Not under the sanitizers (scripts/sanitize.sh asan-integration): UBSan's vptr check asks
  // whether a vtable is readable by writing it to a pipe (sanitizer_common's
  // IsAccessibleMemoryRange returns false when pipe() fails), so once the agent has no descriptor
  // free, its next check that misses UBSan's cache calls the object "invalid vptr" and the agent
  // dies (it did: a shared_ptr's control block, "<memory cannot be printed>"). A suppression
  // cannot help: it matches the object's dynamic type, which UBSan then cannot read either.
  GTEST_SKIP() << "UBSan's vptr check needs a free descriptor (IsAccessibleMemoryRange uses pipe())";
#endif
  std::string first = Commit({{"fds/cm.yaml", ConfigMap("fds", "1")}}, "first");
  ASSERT_TRUE(client_->Apply(Application("fds", "fds", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  const std::string log = tmp_.path() + "/fds.log";
  AgentProcess a(*kubeconfig_, ns_, tmp_.path() + "/fds", "agent-fds", creds, log);
  WaitApp("fds", [&](const Value& app) { return SyncedHealthyAt(app, first); });
  std::set<int> open;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", a.pid()))) {
    open.insert(std::stoi(e.path().filename().string()));
  }
  rlimit low{}, normal{};
  ASSERT_EQ(::prlimit(a.pid(), RLIMIT_NOFILE, nullptr, &normal), 0) << std::strerror(errno);
  low.rlim_max = normal.rlim_max;
  while (open.contains(static_cast<int>(low.rlim_cur))) ++low.rlim_cur;
  ASSERT_EQ(::prlimit(a.pid(), RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);
  const auto limited = std::chrono::steady_clock::now();
  std::string second = Commit({{"fds/cm.yaml", ConfigMap("fds", "2")}}, "second");
  auto says_why = [&] {
    auto app = client_->Get({api::kApiVersion, api::kKind, ns_, "fds"});
    const std::string status = app.ok() && app->Get("status") ? value::ToYaml(*app->Get("status")) : "";
    return ReadFile(log).value_or("") + status;
  };
  std::string why;
  for (auto end = limited + 30s; std::chrono::steady_clock::now() < end && why.find("Too many open files") == std::string::npos;) {
    std::this_thread::sleep_for(200ms);
    why = says_why();
  }
  EXPECT_THAT(why, HasSubstr("Too many open files")) << "the agent does not say why it stopped syncing";
  if (size_t at = why.find("Too many open files"); at != std::string::npos) {
    const size_t line = why.rfind('\n', at) + 1;
    std::cout << "  " << why.substr(line, why.find('\n', at) - line) << std::endl;
  }
  // The limit holds a seeded 0-3 s more: syncs, fetches and Lease renewals keep failing.
  std::mt19937_64 random(testenv::FaultSeed());
  std::this_thread::sleep_for(std::chrono::milliseconds(random() % 3000));
  EXPECT_TRUE(a.Running()) << "the agent died out of descriptors:\n" << ReadFile(log).value_or("");
  ASSERT_EQ(::prlimit(a.pid(), RLIMIT_NOFILE, &normal, nullptr), 0) << std::strerror(errno);
  const auto raised = std::chrono::steady_clock::now();
  WaitApp("fds", [&](const Value& app) { return SyncedHealthyAt(app, second); });
  testenv::RecordFault("agent-out-of-descriptors", a.Running() ? "said-why-then-synced" : "crashed",
                       testenv::Seconds(raised - limited), testenv::Seconds(std::chrono::steady_clock::now() - raised));
}

// Clock steps of a real process (issue 21): the leading agent runs under Debian's libfaketime
// (LD_PRELOAD), whose wall clock the test steps an hour forwards and then back while a second agent,
// its clock true, waits for the Lease. The Lease's renewTime shows the step took effect; the
// leader keeps the Lease (no transition: leadership is judged on the monotonic clock, which
// libfaketime leaves alone here) and syncs the commit made after each step.
// Only in the full campaign (bench/faults/run.sh): it holds each step for three lease durations.
TEST_F(AgentTest, WallClockStepsOfTheLeaderNeitherHandOverTheLeaseNorStopItsSyncs) {
  if (!testenv::FullFaults()) GTEST_SKIP() << "runs in the full fault campaign (GANTRY_FAULTS_FULL=1, bench/faults/run.sh)";
  const std::string faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
  if (!std::filesystem::exists(faketime)) {
    GTEST_SKIP() << "needs Debian's libfaketime (apt-get install libfaketime; scripts/setup installs it)";
  }
  std::string sha = Commit({{"clock/cm.yaml", ConfigMap("clock", "0")}}, "first");
  ASSERT_TRUE(client_->Apply(Application("clock", "clock", false)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  const std::string offset = tmp_.path() + "/faketime";
  ASSERT_TRUE(WriteFileAtomic(offset, "+0\n").ok());
  AgentProcess a(*kubeconfig_, ns_, tmp_.path() + "/a", "agent-a", creds, tmp_.path() + "/a.log", {},
                 {{"LD_PRELOAD", faketime}, {"FAKETIME_TIMESTAMP_FILE", offset}, {"FAKETIME_NO_CACHE", "1"},
                  {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}});
  WaitApp("clock", [&](const Value& app) { return SyncedHealthyAt(app, sha); });
  auto lease = [&] {
    auto l = client_->Get({"coordination.k8s.io/v1", "Lease", ns_, "gantry-agent"});
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? *l : Value();
  };
  ASSERT_EQ(At(lease(), {"spec", "holderIdentity"}), "agent-a");
  const Value first = lease();
  const int64_t transitions = value::IntAt(&first, {"spec", "leaseTransitions"});
  AgentProcess b(*kubeconfig_, ns_, tmp_.path() + "/b", "agent-b", creds, tmp_.path() + "/b.log");
  int version = 0;
  const auto stepped = std::chrono::steady_clock::now();
  for (auto [step, ahead] : {std::pair{"+3600", true}, std::pair{"+0", false}}) {
    ASSERT_TRUE(WriteFileAtomic(offset, std::string(step) + "\n").ok());
    sha = Commit({{"clock/cm.yaml", ConfigMap("clock", std::to_string(++version))}}, "after a step");
    WaitApp("clock", [&](const Value& app) { return SyncedHealthyAt(app, sha); });
    // Three lease durations (3 s each) under the step: the Lease stays with agent-a.
    for (auto until = std::chrono::steady_clock::now() + 9s; std::chrono::steady_clock::now() < until;) {
      Value l = lease();
      EXPECT_EQ(At(l, {"spec", "holderIdentity"}), "agent-a") << "after the step " << step;
      std::this_thread::sleep_for(500ms);
    }
    auto renewed = ParseRfc3339(At(lease(), {"spec", "renewTime"}));
    ASSERT_TRUE(renewed.has_value());
    const auto skew = *renewed - std::chrono::system_clock::now();
    EXPECT_EQ(skew > std::chrono::minutes(50), ahead)
        << "the Lease's renewTime is " << std::chrono::duration_cast<std::chrono::seconds>(skew).count()
        << " s from now after the step " << step << ": libfaketime did not take effect";
  }
  const Value last = lease();
  EXPECT_EQ(value::IntAt(&last, {"spec", "leaseTransitions"}), transitions);
  EXPECT_TRUE(a.Running());
  testenv::RecordFault("agent-wall-clock-steps", "kept-the-lease-and-synced",
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - stepped).count(), 0);
}

// A pull app's running sync could not be stopped (the API answered 501). `gantry app terminate`
// annotates the Application (as POST /api/v1/apps/{app}/terminate does); the agent process stops
// the sync in its health wait within a couple of seconds, applies nothing of the next wave, records
// Terminated, and does not sync that revision again by itself: after a refresh it is still
// Terminated; a sync request syncs again.
TEST_F(AgentTest, AgentProcessTerminatesASyncWaitingForHealthAndDoesNotRetryItByItself) {
  Commit({{"stuck/all.yaml", fakes::kStuckThenWave1}}, "a Deployment that never becomes available, then a later wave");
  ASSERT_TRUE(client_->Apply(Application("stuck", "stuck", /*self_heal=*/true)).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  AgentProcess agent(*kubeconfig_, ns_, tmp_.path() + "/a", "agent-a", creds, tmp_.path() + "/a.log");
  WaitApp("stuck", [&](const Value& app) {
    return At(app, {"status", "operationState", "phase"}) == "Running" &&
           client_->Get({"apps/v1", "Deployment", ns_, "stuck"}).ok();
  });
  auto app_cli = [&](const std::string& request) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    ProcessOptions po;
    po.inherit_env = true;
    auto r = gantry::Run({binary, "app", "--kubeconfig", *kubeconfig_, "-n", ns_, request, "stuck"}, po);
    GANTRY_CHECK(r.ok());
    EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    auto app = client_->Get({api::kApiVersion, api::kKind, ns_, "stuck"});
    GANTRY_CHECK(app.ok());
    const std::string annotation = "gantry.dev/" + request + "-requested";
    return At(*app, {"metadata", "annotations", std::string_view(annotation)});
  };
  const auto asked = std::chrono::steady_clock::now();
  const std::string terminate = app_cli("terminate");
  ASSERT_FALSE(terminate.empty());
  Value app = WaitApp("stuck", [](const Value& a) { return At(a, {"status", "operationState", "phase"}) == "Terminated"; },
                      30s);
  const auto took = std::chrono::steady_clock::now() - asked;
  RecordProperty("terminate_to_terminated_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  // What is checked: the sync stopped in its health wait, not at the wait's end (the agent's is
  // 5 min). Under load the request's path (CLI, watch event, the 250 ms stop poll, the status
  // write) took 9.96 s once against a 5 s bound; the time itself is recorded, not judged.
  EXPECT_LT(took, 60s) << "not stopped in its health wait (the agent's is 5 min)";
  EXPECT_EQ(At(app, {"status", "lastTerminateRequest"}), terminate);
  EXPECT_EQ(At(app, {"status", "operationState", "message"}),
            "terminated during wait for wave 0 to be healthy (gantry.dev/terminate-requested: " + terminate + ")");
  EXPECT_FALSE(client_->Get({"v1", "ConfigMap", ns_, "after-stuck"}).ok()) << "the next wave was applied";

  // A refresh is a full pass at the same revision: it finds the app out of sync (selfHeal on) and
  // still does not sync it.
  const std::string refresh = app_cli("refresh");
  app = WaitApp("stuck", [&](const Value& a) { return At(a, {"status", "lastRefreshRequest"}) == refresh; });
  EXPECT_EQ(At(app, {"status", "operationState", "phase"}), "Terminated");
  EXPECT_EQ(At(app, {"status", "sync", "status"}), "OutOfSync");
  EXPECT_FALSE(client_->Get({"v1", "ConfigMap", ns_, "after-stuck"}).ok());

  // A sync request does sync again.
  const std::string sync = app_cli("sync");
  WaitApp("stuck", [&](const Value& a) {
    return At(a, {"status", "lastSyncRequest"}) == sync && At(a, {"status", "operationState", "trigger"}) == "manual" &&
           At(a, {"status", "operationState", "phase"}) == "Running";
  });
}

// issue 16: the agent process renders a Jsonnet application (TLA and ext var from the Application)
// and applies a Secret encrypted by the real `sops --encrypt --age`, decrypted with the key file it
// was given; its log never holds the plaintext.
TEST_F(AgentTest, AgentProcessAppliesJsonnetAndSopsSecretsWithoutLoggingThePlaintext) {
  ProcessOptions po;
  po.inherit_env = true;
  po.timeout = std::chrono::minutes(30);
  auto built = RunChecked({testenv::ScriptDir() + "/build-tools.sh", "jsonnet", "sops", "age"}, po);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  std::string tools = built->out;
  while (!tools.empty() && tools.back() == '\n') tools.pop_back();
  tools = tools.substr(tools.rfind('\n') == std::string::npos ? 0 : tools.rfind('\n') + 1);
  const std::string key = tmp_.path() + "/age.agekey", plain = tmp_.path() + "/secret.yaml";
  const std::string plaintext = "agent-pl41ntext-s3cret";
  ASSERT_TRUE(RunChecked({tools + "/age-keygen", "-o", key}, {}).ok());
  auto recipient = RunChecked({tools + "/age-keygen", "-y", key}, {});
  ASSERT_TRUE(recipient.ok());
  std::string r = recipient->out.substr(0, recipient->out.find('\n'));
  std::ofstream(plain) << "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ntype: Opaque\nstringData:\n  password: "
                       << plaintext << "\n";
  auto enc = RunChecked({tools + "/sops", "--encrypt", "--age", r, "--encrypted-regex", "^(data|stringData)$", plain},
                        {});
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  std::string sha = Commit({{"sops/secret.enc.yaml", enc->out},
                            {"jsonnet/main.jsonnet", "function(env) {apiVersion: 'v1', kind: 'ConfigMap', "
                                                     "metadata: {name: 'js-' + env}, data: {region: "
                                                     "std.extVar('region')}}\n"}},
                           "jsonnet and sops");
  ASSERT_TRUE(client_->Apply(Application("sops", "sops", false)).ok());
  ASSERT_TRUE(client_->Apply(Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: jsonnet, namespace: {0}}}
spec:
  source:
    repoURL: "{1}"
    targetRevision: main
    path: jsonnet
    directory:
      jsonnet:
        tlas: [{{name: env, value: prod}}]
        extVars: [{{name: region, value: eu-west-1}}]
  destination: {{namespace: {0}}}
  syncPolicy:
    automated: {{prune: true}}
)", ns_, url_))).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  const std::string log = tmp_.path() + "/sops-agent.log";
  {
    AgentProcess agent(*kubeconfig_, ns_, tmp_.path() + "/sops-agent", "agent-sops", creds, log,
                       {"--sops-age-key-file", key, "--sops-binary", tools + "/sops", "--jsonnet-binary",
                        tools + "/jsonnet"});
    WaitApp("sops", [&](const Value& app) { return SyncedHealthyAt(app, sha); }, 60s);
    WaitApp("jsonnet", [&](const Value& app) { return SyncedHealthyAt(app, sha); }, 60s);
    agent.Term();
  }
  auto secret = client_->Get({"v1", "Secret", ns_, "db"});
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(At(*secret, {"data", "password"}), "YWdlbnQtcGw0MW50ZXh0LXMzY3JldA==");
  auto cm = client_->Get({"v1", "ConfigMap", ns_, "js-prod"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(At(*cm, {"data", "region"}), "eu-west-1");
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.find(plaintext), std::string::npos) << text;
  EXPECT_EQ(text.find("YWdlbnQtcGw0MW50ZXh0"), std::string::npos) << text;
}

// --- Verify before apply (issue 18) --------------------------------------------------------------

// A tiny image (a config and one layer) pushed under `ref` as someone with push rights would; its digest.
std::string PushByHand(oci::Registry& registry, const oci::Reference& ref, std::string_view content) {
  auto layer = oci::PushBlobBytes(registry, ref, content, oci::media::kOciLayer);
  auto config = oci::PushBlobBytes(registry, ref, "{\"architecture\":\"amd64\",\"os\":\"linux\"}", oci::media::kOciConfig);
  GANTRY_CHECK(layer.ok() && config.ok());
  oci::Manifest m{.media_type = std::string(oci::media::kOciManifest), .config = *config, .layers = {*layer}};
  auto digest = registry.PutManifest(ref, oci::media::kOciManifest, oci::SerializeManifest(m));
  GANTRY_CHECK(digest.ok());
  return *digest;
}

// The /metrics text of an AgentProcess, found through the port its log names ("agent: metrics on
// 127.0.0.1:PORT/metrics"); "" when the log does not name one yet.
std::string ScrapeAgentMetrics(const std::string& log) {
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string marker = "agent: metrics on 127.0.0.1:";
  const size_t at = text.find(marker);
  if (at == std::string::npos) return "";
  const size_t port = at + marker.size();
  const std::string url = "http://127.0.0.1:" + text.substr(port, text.find('/', port) - port) + "/metrics";
  std::string body;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  const bool ok = curl_easy_perform(curl) == CURLE_OK;
  curl_easy_cleanup(curl);
  return ok ? body : "";
}

// The value of the sample `series` (name and labels, as exposed) in a /metrics text; -1 if absent.
double Sample(const std::string& metrics, const std::string& series) {
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

// The prod agent (a real `gantry agent --environment prod` process) checks its project's rule
// against the real docker-registry, with the key from a Secret: an image pushed by hand and written
// into the manifests is refused, named in the Application's status, and nothing is applied; the
// image Gantry signed syncs, pinned to the digest that was verified.
TEST_F(AgentTest, TheProdAgentRefusesAnImagePushedByHandAndSyncsASignedOne) {
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  auto registry = oci::NewHttpRegistry({.docker_config = "none", .insecure_http_hosts = {host}});
  ASSERT_TRUE(registry.ok());
  auto hand = *oci::ParseReference(fmt::format("{}/policy-{}/web:hand", host, id_));
  auto built = *oci::ParseReference(fmt::format("{}/policy-{}/web:v1", host, id_));
  PushByHand(**registry, hand, "pushed by hand");
  std::string built_digest = PushByHand(**registry, built, "built by CI");
  sign::PrivateKey key = *sign::GenerateKey(sign::KeyType::kEcdsaP256);
  ASSERT_TRUE(sign::SignImage(**registry, built, key).ok());

  ASSERT_TRUE(client_->Apply(project::ProjectCrd(), {.force = true}).ok());
  for (int i = 0; i < 100 && !client_->Resolve(project::kApiVersion, project::kKind).ok(); ++i) {
    client_->InvalidateDiscovery();
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(client_->Apply(Yaml(fmt::format("apiVersion: v1\nkind: Secret\nmetadata: {{name: release-keys, namespace: {}}}\n"
                                              "data: {{signing.pub: {}}}\n",
                                              ns_, Base64Encode(key.Public().Pem()))))
                  .ok());
  ASSERT_TRUE(client_->Apply(Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: prod, namespace: {0}}}
spec:
  sourceRepos: ["*"]
  destinations: [{{server: "*", name: "*", namespace: "*"}}]
  credentials: ["*"]
  verification:
  - environments: [prod]
    images: ["{1}/policy-{2}/*"]
    keys: [{{secretRef: {{name: release-keys, key: signing.pub}}}}]
)", ns_, host, id_))).ok());

  Commit({{"img/web.yaml", Deployment("web", hand.ToString())}}, "an image pushed by hand");
  ASSERT_TRUE(client_->Apply(Application("web", "img", false, true, "  project: prod")).ok());
  std::string creds = fmt::format("{}={}:{}", creds_.host, creds_.username, creds_.password);
  AgentProcess agent(*kubeconfig_, ns_, tmp_.path() + "/prod-agent", "agent-prod", creds, tmp_.path() + "/prod.log",
                     {"--environment", "prod", "--insecure-registry", host});
  auto condition = [](const Value& app, std::string_view type) {
    const Value* conds = app.Find({"status", "conditions"});
    for (size_t i = 0; conds != nullptr && i < conds->size(); ++i) {
      if (At(*conds->At(i), {"type"}) == type && At(*conds->At(i), {"status"}) == "True") {
        return At(*conds->At(i), {"message"});
      }
    }
    return std::string();
  };
  Value refused = WaitApp("web", [&](const Value& a) { return !condition(a, "ImageVerificationFailed").empty(); });
  std::string message = condition(refused, "ImageVerificationFailed");
  EXPECT_THAT(message, HasSubstr("apps/v1 Deployment " + ns_ + "/web: image " + hand.ToString()));
  // The rule is named by its index and project: a line and column in the apiserver's JSON of the
  // Project (read from the watch cache) would tell a reader nothing.
  EXPECT_THAT(message, HasSubstr(": verification[0] of project prod: no signature verifies with its keys"));
  EXPECT_THAT(message, HasSubstr("no signatures (no tag sha256-"));
  EXPECT_FALSE(client_->Get({"apps/v1", "Deployment", ns_, "web"}).ok()) << "nothing may be applied";
  const std::string log = tmp_.path() + "/prod.log";
  std::string metrics = ScrapeAgentMetrics(log);
  EXPECT_GE(Sample(metrics, "gantry_agent_image_verifications_total{result=\"refused\"}"), 1) << metrics;

  std::string signed_sha = Commit({{"img/web.yaml", Deployment("web", built.ToString())}}, "the image CI signed");
  WaitApp("web", [&](const Value& a) { return SyncedHealthyAt(a, signed_sha); });
  EXPECT_EQ(Image("web"), built.ToString() + "@" + built_digest);
  metrics = ScrapeAgentMetrics(log);
  EXPECT_GE(Sample(metrics, "gantry_agent_image_verifications_total{result=\"passed\"}"), 1) << metrics;
  EXPECT_GE(Sample(metrics, "gantry_agent_image_verification_cache_hits_total"), 0) << "exposed: " << metrics;
}

}  // namespace
}  // namespace gantry::agent
