// The Kubernetes executor against a real control plane (kube-apiserver, scheduler, controllers)
// whose nodes are played by kwok.
//
// kwok only fakes the kubelet partly: its stages (test/env/build-tools.sh) schedule a Pod and make
// it Running, but finish only Pods owned by a Job, and it serves no container logs. So these tests
// run a FakeKubelet of their own: it finishes the step Pods whose command ends in "exit N" by
// writing status.containerStatuses[0].state.terminated.exitCode = N through the status
// subresource, as a kubelet would, and leaves every other Pod running (for timeouts and
// cancellation). Nothing really executes in these Pods: what is checked is the Pod the executor
// creates, how it reads the status back, and the cleanup.

#include <filesystem>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "ci/executor.h"
#include "kube/kube.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using value::Value;
using Clock = std::chrono::steady_clock;

std::string Text(const Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : "<none>"; }

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

// Finishes Pods as a kubelet would (see the file comment) and keeps the last version of every
// step Pod, Secret and NetworkPolicy it saw, for the assertions.
class FakeKubelet {
 public:
  FakeKubelet(kube::Client& client, std::string ns) : client_(client), ns_(std::move(ns)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeKubelet() {
    stop_.store(true);
    thread_.join();
  }
  std::optional<Value> Pod(const std::string& step_label) const { return Find(pods_, step_label); }
  std::optional<Value> Secret(const std::string& step_label) const { return Find(secrets_, step_label); }
  std::optional<Value> Policy(const std::string& step_label) const { return Find(policies_, step_label); }
  // Waits until a Pod of the step is Running (scheduled on a kwok node).
  std::optional<Value> WaitRunning(const std::string& step_label) const {
    for (auto end = Clock::now() + std::chrono::seconds(60); Clock::now() < end;) {
      auto p = Pod(step_label);
      if (p && Text(p->Find({"status", "phase"})) == "Running") return p;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

 private:
  using ByStep = std::map<std::string, Value>;
  std::optional<Value> Find(const ByStep& m, const std::string& step) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = m.find(step);
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
  void Loop() {
    kube::ListOptions lo{.label_selector = "app.kubernetes.io/managed-by=gantry"};
    std::regex exit_re("exit ([0-9]+)$");
    while (!stop_.load()) {
      auto pods = client_.List("v1", "Pod", ns_, lo);
      auto secrets = client_.List("v1", "Secret", ns_, lo);
      auto policies = client_.List("networking.k8s.io/v1", "NetworkPolicy", ns_, lo);
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [list, m] : {std::pair{&pods, &pods_}, {&secrets, &secrets_}, {&policies, &policies_}}) {
          if (!list->ok()) continue;
          for (const auto& o : (*list)->items) (*m)[Text(o.Find({"metadata", "labels", "gantry.dev/step"}))] = o;
        }
      }
      for (const auto& pod : pods.ok() ? pods->items : std::vector<Value>{}) {
        if (Text(pod.Find({"status", "phase"})) != "Running" || pod.Find({"metadata", "deletionTimestamp"}) != nullptr) continue;
        const Value* command = pod.Find({"spec", "containers", 0, "command"});
        std::smatch m;
        std::string last = Text(command->At(command->items().size() - 1));
        // "... # deadline": what a kubelet does at activeDeadlineSeconds (kills the container).
        bool deadline = last.ends_with("# deadline");
        if (!deadline && !std::regex_search(last, m, exit_re)) continue;
        int code = deadline ? 137 : std::stoi(m[1]);
        Value status = value::ParseJson(fmt::format(
                           R"({{"phase":"{}",{}"containerStatuses":[{{"name":"step","image":"{}","imageID":"","ready":false,)"
                           R"("restartCount":0,"state":{{"terminated":{{"exitCode":{},"reason":"{}"}}}}}}]}})",
                           code == 0 ? "Succeeded" : "Failed",
                           deadline ? R"("reason":"DeadlineExceeded","message":"Pod was active on the node longer than the specified deadline",)" : "",
                           Text(pod.Find({"spec", "containers", 0, "image"})), code,
                           code == 0 ? "Completed" : "Error"))
                           .value();
        Value obj = Value::Map();
        obj.Set("apiVersion", "v1");
        obj.Set("kind", "Pod");
        Value meta = Value::Map();
        meta.Set("name", *pod.Find({"metadata", "name"}));
        meta.Set("namespace", ns_);
        obj.Set("metadata", meta);
        obj.Set("status", status);
        auto r = client_.ApplyStatus(obj, {.field_manager = "fake-kubelet", .force = true});
        if (!r.ok()) ADD_FAILURE() << "fake kubelet: " << r.status().ToString();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  kube::Client& client_;
  std::string ns_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  ByStep pods_, secrets_, policies_;  // GUARDED_BY(mu_), by gantry.dev/step label
  std::thread thread_;
};

class CiKubeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
  }
  void SetUp() override {
    ns_ = fmt::format("ci-kube-{:06x}", std::random_device{}() & 0xffffff);
    auto r = client_->Create(value::ParseJson(R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + ns_ + "\"}}").value());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    // Pods are refused until the namespace's default ServiceAccount exists.
    for (auto end = Clock::now() + std::chrono::seconds(30); Clock::now() < end;) {
      if (client_->Get({"v1", "ServiceAccount", ns_, "default"}).ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    executor_ = ci::NewKubernetesExecutor(*client_, {.namespace_ = ns_, .poll = std::chrono::milliseconds(100)});
  }
  // Waits until no object of `kind` made by Gantry is left in the namespace.
  bool Gone(std::string_view api_version, std::string_view kind) {
    for (auto end = Clock::now() + std::chrono::seconds(30); Clock::now() < end;) {
      auto l = client_->List(api_version, kind, ns_, {.label_selector = "app.kubernetes.io/managed-by=gantry"});
      if (l.ok() && l->items.empty()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  ci::StepRequest Request(std::vector<std::string> argv) {
    ci::StepRequest r;
    r.run_label = "run-7";
    r.step = "build";
    r.argv = std::move(argv);
    r.env = {{"GREETING", "hello"}, {"TOKEN", "canary-kube-secret"}};
    r.secret_names = {"TOKEN"};
    r.timeout = std::chrono::seconds(90);
    return r;
  }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  std::string ns_;
  std::unique_ptr<ci::Executor> executor_;
};

TEST_F(CiKubeTest, CreatesThePodReadsTheExitCodeAndCleansUp) {
  FakeKubelet kubelet(*client_, ns_);
  ci::StepRequest r = Request({"sh", "-c", "echo \"$GREETING\"; exit 3"});
  r.limits.memory_bytes = 64 << 20;
  r.network = false;
  r.image = "alpine:3.20";
  std::string out;
  std::atomic<bool> cancel{false};
  auto outcome = executor_->Run(r, [&](std::string_view d) { out += d; }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->exit_code, 3);
  EXPECT_FALSE(outcome->success());
  EXPECT_EQ(outcome->Describe(), "exit code 3");
  // kwok serves no logs: said once, not an error.
  EXPECT_THAT(out, HasSubstr("no log from the Pod"));

  auto pod = kubelet.Pod("build");
  ASSERT_TRUE(pod.has_value());
  const Value* c = pod->Find({"spec", "containers", 0});
  std::vector<std::string> command;
  for (const auto& a : c->Get("command")->items()) command.emplace_back(a.AsString());
  EXPECT_THAT(command, ElementsAre("sh", "-c", "echo \"$GREETING\"; exit 3"));
  EXPECT_EQ(Text(c->Get("image")), "alpine:3.20");
  EXPECT_EQ(Text(c->Find({"resources", "limits", "memory"})), std::to_string(64 << 20));
  EXPECT_EQ(Text(pod->Find({"spec", "restartPolicy"})), "Never");
  EXPECT_EQ(pod->Find({"spec", "activeDeadlineSeconds"})->AsInt(), 90);
  EXPECT_EQ(Text(pod->Find({"metadata", "namespace"})), ns_);
  EXPECT_EQ(Text(pod->Find({"metadata", "labels", "gantry.dev/run"})), "run-7");
  EXPECT_EQ(Text(pod->Find({"spec", "nodeName"})).rfind("kwok-node-", 0), 0u) << "scheduled on a kwok node";
  std::string pod_json = value::ToJson(*pod);
  EXPECT_EQ(pod_json.find("canary-kube-secret"), std::string::npos) << "a secret in the Pod spec: " << pod_json;
  EXPECT_THAT(pod_json, HasSubstr(R"("name":"GREETING","value":"hello")"));
  EXPECT_THAT(pod_json, HasSubstr(R"("secretKeyRef":{"name":")" + Text(pod->Find({"metadata", "name"})) + R"(-env","key":"TOKEN"})"));
  // The secret lives in a Secret the Pod owns; network: false is a deny-all NetworkPolicy.
  auto secret = kubelet.Secret("build");
  ASSERT_TRUE(secret.has_value());
  EXPECT_EQ(Text(secret->Find({"metadata", "ownerReferences", 0, "uid"})), Text(pod->Find({"metadata", "uid"})));
  EXPECT_EQ(Text(secret->Find({"data", "TOKEN"})), "Y2FuYXJ5LWt1YmUtc2VjcmV0");  // base64
  EXPECT_EQ(secret->Find({"data", "GREETING"}), nullptr) << "only secrets go into the Secret";
  auto policy = kubelet.Policy("build");
  ASSERT_TRUE(policy.has_value());
  EXPECT_EQ(Text(policy->Find({"spec", "podSelector", "matchLabels", "gantry.dev/pod"})), Text(pod->Find({"metadata", "name"})));
  EXPECT_THAT(value::ToJson(*policy->Find({"spec", "policyTypes"})), HasSubstr("Egress"));

  EXPECT_TRUE(Gone("v1", "Pod"));
  EXPECT_TRUE(Gone("v1", "Secret"));
  EXPECT_TRUE(Gone("networking.k8s.io/v1", "NetworkPolicy"));
}

// Regression: step Pods ran unhardened, and untrusted steps shared the namespace of trusted ones.
TEST_F(CiKubeTest, UntrustedStepRunsHardenedInItsOwnNamespaceBehindADefaultDeny) {
  std::string untrusted = ns_ + "-untrusted";
  struct DeleteNamespace {
    kube::Client& client;
    std::string name;
    ~DeleteNamespace() { client.Delete({"v1", "Namespace", "", name}).IgnoreError(); }
  } delete_untrusted{*client_, untrusted};
  auto executor = ci::NewKubernetesExecutor(
      *client_, {.namespace_ = ns_, .poll = std::chrono::milliseconds(100), .untrusted_namespace = untrusted});
  FakeKubelet kubelet(*client_, untrusted);
  FakeKubelet trusted_kubelet(*client_, ns_);
  ci::StepRequest r = Request({"sh", "-c", "exit 0"});
  r.trusted = false;
  std::atomic<bool> cancel{false};
  // The namespace's default ServiceAccount appears shortly after the namespace: the first step may
  // be refused until then, as it would be in any new namespace.
  Result<ci::StepOutcome> outcome = InternalError("not run");
  for (auto end = Clock::now() + std::chrono::seconds(30); Clock::now() < end;) {
    outcome = executor->Run(r, [](std::string_view) {}, cancel);
    if (outcome.ok() || outcome.status().message().find("serviceaccount") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->success()) << outcome->Describe();

  // The namespace enforces the restricted Pod Security Standard and denies all traffic by default.
  auto ns = client_->Get({"v1", "Namespace", "", untrusted});
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  EXPECT_EQ(Text(ns->Find({"metadata", "labels", "pod-security.kubernetes.io/enforce"})), "restricted");
  auto deny = client_->Get({"networking.k8s.io/v1", "NetworkPolicy", untrusted, "gantry-default-deny"});
  ASSERT_TRUE(deny.ok()) << deny.status().ToString();
  EXPECT_EQ(value::ToJson(*deny->Find({"spec", "podSelector"})), "{}");
  EXPECT_EQ(value::ToJson(*deny->Find({"spec", "policyTypes"})), R"(["Ingress","Egress"])");

  // The Pod, as the apiserver stored it, is hardened and in the untrusted namespace only.
  auto pod = kubelet.Pod("build");
  ASSERT_TRUE(pod.has_value());
  EXPECT_EQ(Text(pod->Find({"metadata", "namespace"})), untrusted);
  EXPECT_TRUE(pod->Find({"spec", "securityContext", "runAsNonRoot"})->AsBool());
  EXPECT_EQ(pod->Find({"spec", "securityContext", "runAsUser"})->AsInt(), 1000);
  EXPECT_EQ(Text(pod->Find({"spec", "securityContext", "seccompProfile", "type"})), "RuntimeDefault");
  const Value* csc = pod->Find({"spec", "containers", 0, "securityContext"});
  ASSERT_NE(csc, nullptr);
  EXPECT_FALSE(csc->Get("allowPrivilegeEscalation")->AsBool());
  EXPECT_TRUE(csc->Get("readOnlyRootFilesystem")->AsBool());
  EXPECT_EQ(value::ToJson(*csc->Get("capabilities")), R"({"drop":["ALL"]})");
  EXPECT_FALSE(trusted_kubelet.Pod("build").has_value()) << "an untrusted step ran in the trusted namespace";
  EXPECT_TRUE(Gone("v1", "Pod"));

  // The restricted profile is enforced: a Pod that is not locked down is refused there.
  auto loose = client_->Create(value::ParseJson(fmt::format(
      R"({{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"loose","namespace":"{}"}},)"
      R"("spec":{{"containers":[{{"name":"c","image":"alpine"}}]}}}})", untrusted)).value());
  EXPECT_FALSE(loose.ok());
  EXPECT_EQ(loose.status().code(), Code::kPermissionDenied) << loose.status().ToString();
}

TEST_F(CiKubeTest, TimeoutDeletesThePodAndFailsTheStep) {
  FakeKubelet kubelet(*client_, ns_);
  ci::StepRequest r = Request({"sleep", "600"});
  r.timeout = std::chrono::seconds(3);
  std::atomic<bool> cancel{false};
  auto t0 = Clock::now();
  auto outcome = executor_->Run(r, [](std::string_view) {}, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->timed_out);
  EXPECT_FALSE(outcome->success());
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  ASSERT_TRUE(kubelet.Pod("build").has_value()) << "the Pod was never created";
  EXPECT_TRUE(Gone("v1", "Pod"));
  EXPECT_TRUE(Gone("v1", "Secret"));
}

TEST_F(CiKubeTest, PodPastItsActiveDeadlineIsATimeout) {
  FakeKubelet kubelet(*client_, ns_);
  std::atomic<bool> cancel{false};
  std::string out;
  auto outcome = executor_->Run(Request({"sh", "-c", "sleep 600 # deadline"}), [&](std::string_view d) { out += d; }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->timed_out) << outcome->Describe();
  EXPECT_THAT(out, HasSubstr("longer than the specified deadline"));
  EXPECT_TRUE(Gone("v1", "Pod"));
}

TEST_F(CiKubeTest, CancelDeletesTheRunningPod) {
  FakeKubelet kubelet(*client_, ns_);
  std::atomic<bool> cancel{false};
  Result<ci::StepOutcome> outcome = InternalError("not run");
  std::thread t([&] { outcome = executor_->Run(Request({"sleep", "600"}), [](std::string_view) {}, cancel); });
  auto running = kubelet.WaitRunning("build");
  cancel.store(true);
  t.join();
  ASSERT_TRUE(running.has_value()) << "the Pod never ran";
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->cancelled);
  EXPECT_TRUE(Gone("v1", "Pod"));
}

TEST_F(CiKubeTest, PodDeletedBySomeoneElseFailsTheStep) {
  FakeKubelet kubelet(*client_, ns_);
  std::atomic<bool> cancel{false};
  Result<ci::StepOutcome> outcome = InternalError("not run");
  std::thread t([&] { outcome = executor_->Run(Request({"sleep", "600"}), [](std::string_view) {}, cancel); });
  auto running = kubelet.WaitRunning("build");
  if (running) ASSERT_TRUE(client_->Delete(kube::RefOf(*running)).ok());
  else cancel.store(true);
  t.join();
  ASSERT_TRUE(running.has_value()) << "the Pod never ran";
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_FALSE(outcome->success());
  EXPECT_FALSE(outcome->cancelled);
  EXPECT_THAT(outcome->Describe(), HasSubstr("deleted by someone else"));
}

TEST_F(CiKubeTest, CliRunsAPipelineWithTheKubeExecutor) {
  FakeKubelet kubelet(*client_, ns_);
  testenv::ScopedTempDir tmp;
  fs::path dir = tmp.path();
  fs::create_directories(dir / ".gantry");
  ASSERT_TRUE(WriteFileAtomic(dir / ".gantry" / "pipeline.yaml", R"(
name: kube
steps:
  build:
    image: golang:1.23
    run: [sh, -c, "go build ./... && exit 0"]
  test:
    needs: [build]
    run: [sh, -c, "go test ./... || exit 2"]
  deploy:
    needs: [test]
    run: [sh, -c, "exit 0"]
)").ok());
  auto r = gantry::Run({Binary(), "ci", "run", dir.string(), "--executor", "kube", "--kubeconfig", *kubeconfig_,
                        "--namespace", ns_, "--image", "busybox:1.36"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 1) << r->out << r->err;
  EXPECT_THAT(r->out, HasSubstr("build succeeded"));
  EXPECT_THAT(r->out, HasSubstr("test failed"));
  EXPECT_THAT(r->out, HasSubstr("exit code 2"));
  EXPECT_THAT(r->out, HasSubstr("deploy skipped"));
  EXPECT_THAT(r->err, HasSubstr("empty /workspace"));
  auto build = kubelet.Pod("build");
  auto test = kubelet.Pod("test");
  ASSERT_TRUE(build.has_value() && test.has_value());
  EXPECT_EQ(Text(build->Find({"spec", "containers", 0, "image"})), "golang:1.23");
  EXPECT_EQ(Text(test->Find({"spec", "containers", 0, "image"})), "busybox:1.36");
  EXPECT_FALSE(kubelet.Pod("deploy").has_value());
  EXPECT_TRUE(Gone("v1", "Pod"));

  auto bad = gantry::Run({Binary(), "ci", "run", dir.string(), "--namespace", ns_});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 2) << "--namespace without --executor kube";
  EXPECT_THAT(bad->err, HasSubstr("--executor kube"));
}

}  // namespace
}  // namespace gantry
