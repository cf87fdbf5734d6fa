// The real control plane of test/env/kube-cluster.sh: a Deployment applied to it becomes Available
// (etcd, kube-apiserver, controller-manager, scheduler and kwok all working together), and three
// clusters can run side by side, as the multi-cluster tests need.

#include <curl/curl.h>

#include <chrono>
#include <future>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {

using std::chrono::seconds;

struct Response {
  long code = 0;
  std::string body;
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One HTTPS request to the apiserver, authenticated with the admin client certificate from the
// cluster's PKI and verified against its CA.
Response Request(const testenv::Server& cluster, const std::string& method, const std::string& path,
                 const std::string& body = "") {
  std::string pki = cluster.dir() + "/pki/";
  CURL* curl = curl_easy_init();
  Response r;
  std::string url = cluster.Get("KUBE_SERVER") + path;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_CAINFO, cluster.Get("KUBE_CA").c_str());
  curl_easy_setopt(curl, CURLOPT_SSLCERT, (pki + "admin.crt").c_str());
  curl_easy_setopt(curl, CURLOPT_SSLKEY, (pki + "admin.key").c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  if (!body.empty()) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) r.body = curl_easy_strerror(rc);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return r;
}

bool HasCondition(const value::Value& object, std::string_view type, std::string_view status) {
  const value::Value* conditions = object.Find({"status", "conditions"});
  if (conditions == nullptr || !conditions->IsSeq()) return false;
  for (const value::Value& c : conditions->items()) {
    const value::Value* t = c.Get("type");
    const value::Value* s = c.Get("status");
    if (t && s && t->IsString() && s->IsString() && t->AsString() == type && s->AsString() == status) {
      return true;
    }
  }
  return false;
}

constexpr char kDeployment[] = R"({
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "smoke", "namespace": "default"},
  "spec": {
    "replicas": 3,
    "selector": {"matchLabels": {"app": "smoke"}},
    "template": {
      "metadata": {"labels": {"app": "smoke"}},
      "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    }
  }
})";

TEST(KubeSmoke, DeploymentBecomesAvailable) {
  testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
  Response created = Request(cluster, "POST", "/apis/apps/v1/namespaces/default/deployments", kDeployment);
  ASSERT_EQ(created.code, 201) << created.body;

  auto deadline = std::chrono::steady_clock::now() + seconds(90);
  value::Value live;
  while (std::chrono::steady_clock::now() < deadline) {
    Response got = Request(cluster, "GET", "/apis/apps/v1/namespaces/default/deployments/smoke");
    ASSERT_EQ(got.code, 200) << got.body;
    auto parsed = value::ParseJson(got.body, "deployment smoke");
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    live = *parsed;
    if (HasCondition(live, "Available", "True")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(HasCondition(live, "Available", "True")) << value::ToYaml(live);
  const value::Value* ready = live.Find({"status", "readyReplicas"});
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->AsInt(), 3);

  // The pods run on kwok's fake nodes.
  Response pods = Request(cluster, "GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dsmoke");
  auto list = value::ParseJson(pods.body, "pods");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->Get("items")->size(), 3u);
  for (const value::Value& pod : list->Get("items")->items()) {
    EXPECT_EQ(pod.Find({"status", "phase"})->AsString(), "Running");
    EXPECT_EQ(pod.Find({"spec", "nodeName"})->AsString().substr(0, 10), "kwok-node-");
  }
}

TEST(KubeSmoke, ThreeClustersRunSideBySide) {
  std::vector<std::future<Result<std::unique_ptr<testenv::Server>>>> starting;
  for (const char* name : {"dev", "staging", "prod"}) {
    starting.push_back(std::async(std::launch::async, [name] {
      return testenv::Server::Start("kube-cluster.sh", {"--name", name, "--nodes", "1"});
    }));
  }
  std::vector<std::unique_ptr<testenv::Server>> clusters;
  for (auto& f : starting) {
    auto started = f.get();
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    clusters.push_back(std::move(started).value());
  }
  std::set<std::string> servers;
  for (auto& c : clusters) {
    servers.insert(c->Get("KUBE_SERVER"));
    Response ns = Request(*c, "POST", "/api/v1/namespaces",
                          R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"only-here"}})");
    EXPECT_EQ(ns.code, 201) << ns.body;
  }
  EXPECT_EQ(servers.size(), 3u);
  // Each cluster has its own etcd: the namespace created in each exists once in each.
  for (auto& c : clusters) {
    EXPECT_EQ(Request(*c, "GET", "/api/v1/namespaces/only-here").code, 200);
  }
}

TEST(KubeSmoke, TokenAuthenticationWorksAndBadTokensAreRejected) {
  testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
  for (const auto& [token, want] : {std::pair<std::string, long>{cluster.Get("KUBE_TOKEN"), 200},
                                    std::pair<std::string, long>{"not-the-token", 401}}) {
    CURL* curl = curl_easy_init();
    std::string body;
    std::string url = cluster.Get("KUBE_SERVER") + "/api/v1/namespaces/default";
    curl_slist* headers = curl_slist_append(nullptr, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CAINFO, cluster.Get("KUBE_CA").c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    EXPECT_EQ(code, want) << body;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
  }
}

}  // namespace
}  // namespace gantry
