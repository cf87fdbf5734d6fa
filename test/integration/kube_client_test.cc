// kube::HttpClient against a real control plane: discovery, apply, get, list, watch, delete, and
// the errors a user sees.

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "http/http.h"
#include "kube/kube.h"
#include "test/env/testenv.h"

namespace gantry::kube {
namespace {

using value::Value;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

class KubeClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    auto config = LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    config_ = new RestConfig(*config);
    auto client = NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete config_;
  }
  static Client& client() { return *client_; }
  static void CreateNamespace(const std::string& name) {
    auto r = client().Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n"));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  static inline Client* client_ = nullptr;
  static inline RestConfig* config_ = nullptr;
};

TEST_F(KubeClientTest, DiscoveryMapsKindsToResources) {
  auto deploy = client().Resolve("apps/v1", "Deployment");
  ASSERT_TRUE(deploy.ok()) << deploy.status().ToString();
  EXPECT_EQ(deploy->resource, "deployments");
  EXPECT_TRUE(deploy->namespaced);
  auto ns = client().Resolve("v1", "Namespace");
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->resource, "namespaces");
  EXPECT_FALSE(ns->namespaced);
  auto missing = client().Resolve("example.com/v1", "Widget");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("Widget"), std::string::npos);
}

TEST_F(KubeClientTest, ServerSideApplyIsIdempotentAndKeepsResourceVersion) {
  CreateNamespace("apply-test");
  Value cm = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: apply-test}\n"
                  "data: {color: blue}\n");
  auto first = client().Apply(cm);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string rv(first->Find({"metadata", "resourceVersion"})->AsString());
  auto again = client().Apply(cm);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Find({"metadata", "resourceVersion"})->AsString(), rv) << "a no-op apply wrote";
  const Value* managers = again->Find({"metadata", "managedFields"});
  ASSERT_NE(managers, nullptr);
  EXPECT_EQ(managers->At(0)->Get("manager")->AsString(), "gantry");

  auto got = client().Get(RefOf(cm));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->Find({"data", "color"})->AsString(), "blue");
}

TEST_F(KubeClientTest, DryRunDoesNotPersist) {
  CreateNamespace("dry-run");
  Value cm = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ghost, namespace: dry-run}\n");
  auto dry = client().Apply(cm, {.dry_run = true});
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_EQ(client().Get(RefOf(cm)).status().code(), Code::kNotFound);
}

TEST_F(KubeClientTest, ConflictWithAnotherManagerIsReportedUnlessForced) {
  CreateNamespace("conflicts");
  Value mine = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: conflicts}\n"
                    "data: {owner: gantry}\n");
  ASSERT_TRUE(client().Apply(mine).ok());
  Value theirs = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: conflicts}\n"
                      "data: {owner: someone-else}\n");
  auto conflict = client().Apply(theirs, {.field_manager = "kubectl-edit"});
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(conflict.status().message().find("conflict"), std::string::npos) << conflict.status().message();
  EXPECT_NE(conflict.status().message().find(".data.owner"), std::string::npos) << conflict.status().message();
  auto forced = client().Apply(theirs, {.field_manager = "kubectl-edit", .force = true});
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ(forced->Find({"data", "owner"})->AsString(), "someone-else");
}

TEST_F(KubeClientTest, InvalidObjectsGiveTheServersReason) {
  CreateNamespace("invalid");
  Value bad = Yaml(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: invalid}
spec:
  replicas: -3
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, image: busybox}]}
)");
  auto r = client().Apply(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.replicas"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("apply apps/v1 Deployment invalid/bad"), std::string::npos);

  Value no_ns = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
  EXPECT_EQ(client().Apply(no_ns).status().code(), Code::kInvalidArgument);
}

TEST_F(KubeClientTest, ListFollowsContinueTokens) {
  CreateNamespace("paging");
  for (int i = 0; i < 25; ++i) {
    auto r = client().Apply(Yaml(fmt::format(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{}, namespace: paging, labels: {{set: a}}}}\n", i)));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  uint64_t before = client().request_count();
  auto list = client().List("v1", "ConfigMap", "paging", {.label_selector = "set=a", .page_size = 10});
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ(list->items.size(), 25u);
  EXPECT_EQ(client().request_count() - before, 3u);
  EXPECT_EQ(list->items[0].Get("kind")->AsString(), "ConfigMap");
  EXPECT_FALSE(list->resource_version.empty());
}

TEST_F(KubeClientTest, WatchSeesChangesAfterAList) {
  CreateNamespace("watching");
  auto list = client().List("v1", "ConfigMap", "watching");
  ASSERT_TRUE(list.ok());
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (void)client().Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: watching}\ndata: {a: '1'}\n"));
    (void)client().Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: watching}\ndata: {a: '2'}\n"));
    (void)client().Delete({"v1", "ConfigMap", "watching", "w"});
  });
  std::vector<std::string> seen;
  Status s = client().Watch("v1", "ConfigMap", "watching",
                            {.resource_version = list->resource_version, .timeout = std::chrono::seconds(20)},
                            [&](const WatchEvent& e) {
                              if (e.type == EventType::kBookmark) return true;
                              // The controller-manager adds kube-root-ca.crt to every new namespace.
                              if (e.object.Find({"metadata", "name"})->AsString() != "w") return true;
                              const char* names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK"};
                              seen.push_back(names[static_cast<int>(e.type)]);
                              return e.type != EventType::kDeleted;
                            });
  writer.join();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"ADDED", "MODIFIED", "DELETED"}));
}

TEST_F(KubeClientTest, DeleteAndNotFound) {
  CreateNamespace("deleting");
  Value cm = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: doomed, namespace: deleting}\n");
  ASSERT_TRUE(client().Apply(cm).ok());
  ASSERT_TRUE(client().Delete(RefOf(cm)).ok());
  EXPECT_EQ(client().Get(RefOf(cm)).status().code(), Code::kNotFound);
  Status again = client().Delete(RefOf(cm));
  EXPECT_EQ(again.code(), Code::kNotFound);
  EXPECT_NE(again.message().find("delete v1 ConfigMap deleting/doomed"), std::string::npos);
}

TEST_F(KubeClientTest, ManyConcurrentRequestsShareTheClient) {
  CreateNamespace("concurrent");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto r = client().Apply(Yaml(fmt::format(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c-{}-{}, namespace: concurrent}}\n", t, i)));
        if (r.ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(KubeClientTest, WrongCredentialsAreUnauthenticatedAndNotRetried) {
  RestConfig bad = *config_;
  bad.client_cert_pem.clear();
  bad.client_key_pem.clear();
  bad.token = "wrong";
  auto c = NewHttpClient(bad);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Get({"v1", "Namespace", "", "default"});
  EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << r.status().ToString();
  EXPECT_LE((*c)->request_count(), 2u);  // discovery, then nothing retried
}

TEST_F(KubeClientTest, TlsServerNameIsVerifiedInsteadOfTheAddress) {
  RestConfig named = *config_;
  named.tls_server_name = "kubernetes.default.svc";  // a SAN of the serving certificate
  auto ok = NewHttpClient(named);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE((*ok)->Get({"v1", "Namespace", "", "default"}).ok());
  RestConfig wrong = *config_;
  wrong.tls_server_name = "not-in-the-certificate.example";
  auto bad = NewHttpClient(wrong, {.max_attempts = 1});
  ASSERT_TRUE(bad.ok());
  auto r = (*bad)->Get({"v1", "Namespace", "", "default"});
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("not-in-the-certificate.example"), std::string::npos) << r.status().message();
}

TEST_F(KubeClientTest, UnreachableServerFailsClearlyWithinTheTimeout) {
  RestConfig gone = *config_;
  gone.server = "https://127.0.0.1:1";  // nothing listens on port 1
  auto c = NewHttpClient(gone, {.request_timeout = std::chrono::milliseconds(2000), .max_attempts = 2});
  ASSERT_TRUE(c.ok());
  auto start = std::chrono::steady_clock::now();
  auto r = (*c)->Get({"v1", "Namespace", "", "default"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("127.0.0.1"), std::string::npos) << r.status().message();
  EXPECT_LT(took, std::chrono::seconds(10));
}

// Regression: a response body (a Pod log, a raw GET) was read into memory however large it was.
TEST_F(KubeClientTest, ResponseBodiesAreBoundedInMemory) {
  http::Server server;
  std::atomic<int> requests{0};
  server.Handle("GET", "/huge", [&](const http::Request&) {
    ++requests;
    return http::Response::Text(200, std::string((64 << 20) + 1, 'x'));
  });
  server.Handle("GET", "/fine", [](const http::Request&) { return http::Response::Text(200, "ok"); });
  ASSERT_TRUE(server.Start().ok());
  RestConfig plain;
  plain.server = "http://127.0.0.1:" + std::to_string(server.port());
  auto c = NewHttpClient(plain);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*(*c)->GetRaw("/fine"), "ok");
  auto huge = (*c)->GetRaw("/huge");
  EXPECT_EQ(huge.status().code(), Code::kResourceExhausted) << huge.status().ToString();
  EXPECT_EQ(requests.load(), 1) << "not retried";
}

// Impersonation: the apiserver authorizes an impersonating client with the impersonated account's
// RBAC, not ours.
TEST_F(KubeClientTest, ImpersonatedClientIsBoundByTheServiceAccountsRbac) {
  CreateNamespace("imp-tenant");
  CreateNamespace("imp-other");
  for (const char* doc : {
           "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: deployer, namespace: imp-tenant}\n",
           "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm, namespace: imp-tenant}\n"
           "rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [\"*\"]}]\n",
           "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: cm, namespace: imp-tenant}\n"
           "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm}\n"
           "subjects: [{kind: ServiceAccount, name: deployer, namespace: imp-tenant}]\n"}) {
    auto r = client().Apply(Yaml(doc));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  auto tenant = client().Impersonate({.user = ServiceAccountUser("imp-tenant", "deployer")});
  ASSERT_TRUE(tenant.ok()) << tenant.status().ToString();
  uint64_t before = client().request_count();

  auto allowed = (*tenant)->Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: imp-tenant}\n"),
                                  {.field_manager = "gantry"});
  // RBAC is evaluated by the authorizer cache; a fresh binding may take a moment to be seen.
  for (int i = 0; i < 50 && !allowed.ok() && allowed.status().code() == Code::kPermissionDenied; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    allowed = (*tenant)->Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: imp-tenant}\n"),
                               {.field_manager = "gantry"});
  }
  ASSERT_TRUE(allowed.ok()) << allowed.status().ToString();
  EXPECT_GT(client().request_count(), before) << "an impersonating client counts in its origin's requests";

  auto other_ns = (*tenant)->Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: refused, namespace: imp-other}\n"));
  EXPECT_EQ(other_ns.status().code(), Code::kPermissionDenied) << other_ns.status().ToString();
  EXPECT_NE(other_ns.status().message().find("system:serviceaccount:imp-tenant:deployer"), std::string::npos)
      << other_ns.status().message();
  auto crb = (*tenant)->Apply(Yaml("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
                                   "metadata: {name: imp-escalate}\n"
                                   "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
                                   "subjects: [{kind: ServiceAccount, name: deployer, namespace: imp-tenant}]\n"));
  EXPECT_EQ(crb.status().code(), Code::kPermissionDenied) << crb.status().ToString();
  EXPECT_EQ(client().Get({"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "imp-escalate"}).status().code(),
            Code::kNotFound);
  // Our own client is unchanged.
  EXPECT_TRUE(client().Apply(Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: admin, namespace: imp-other}\n")).ok());

  EXPECT_EQ(client().Impersonate({.user = ""}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(client().Impersonate({.user = "a\r\nImpersonate-Group: system:masters"}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ((*tenant)->Impersonate({.user = "x"}).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace gantry::kube
