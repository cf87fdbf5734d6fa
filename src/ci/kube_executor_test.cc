// The Pod the Kubernetes executor creates for a step, as a value (no cluster needed; the
// executor's behaviour against a control plane is in test/integration/ci_kube_test.cc).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "base/clock.h"
#include "base/mutex.h"
#include "ci/executor.h"
#include "kube/kube.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/unimplemented_kube_client.h"

namespace gantry::ci {
namespace {

using ::testing::ElementsAre;
using value::Value;

std::string Text(const Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : "<none>"; }

StepRequest Request() {
  StepRequest r;
  r.run_label = "run-12";
  r.step = "Test (linux, 3)";
  r.argv = {"bash", "-c", "echo \"$GREETING\" $(id -u)"};
  r.env = {{"GREETING", "hello $USER"}, {"TOKEN", "canary-kube-secret"}};
  r.secret_names = {"TOKEN"};
  r.limits.memory_bytes = 64 << 20;
  r.timeout = std::chrono::milliseconds(90'500);
  r.image = "alpine:3.20";
  return r;
}

// With a helper image and a workspace: the init container that receives the workspace (the step
// starts after it), the sidecar that keeps the Pod for the way back, earlier artifacts read-only,
// the same hardening for every container, time for the transfers.
TEST(KubernetesPodSpec, ShipsTheWorkspaceThroughHelperContainers) {
  StepRequest r = Request();
  r.workspace = "/srv/runs/12/ws";
  r.artifacts = "/srv/runs/12/artifacts";
  Value plain = KubernetesPodSpec(r, "p", {.namespace_ = "ci"});
  EXPECT_EQ(plain.Find({"spec", "initContainers"}), nullptr) << "no helper image: nothing shipped";
  Value pod = KubernetesPodSpec(r, "p", {.namespace_ = "ci", .helper_image = "registry.local/gantry:1"});
  const Value* in = pod.Find({"spec", "initContainers", 0});
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(Text(in->Get("name")), "gantry-in");
  EXPECT_EQ(Text(in->Get("image")), "registry.local/gantry:1");
  EXPECT_EQ(value::ToJson(*in->Get("command")),
            R"(["/usr/local/bin/gantry","internal","await-file","/gantry/control/ready","--timeout","391"])");
  ASSERT_EQ(pod.Find({"spec", "containers"})->items().size(), 2u);
  EXPECT_EQ(Text(pod.Find({"spec", "containers", 0, "name"})), "step");
  const Value* out = pod.Find({"spec", "containers", 1});
  EXPECT_EQ(Text(out->Get("name")), "gantry-out");
  for (const Value* c : {in, out, pod.Find({"spec", "containers", 0})}) {
    EXPECT_TRUE(c->Find({"securityContext", "readOnlyRootFilesystem"})->AsBool());
    EXPECT_EQ(value::ToJson(*c->Find({"securityContext", "capabilities"})), R"({"drop":["ALL"]})");
  }
  std::map<std::string, std::string> mounts;
  for (const Value& m : pod.Find({"spec", "containers", 0, "volumeMounts"})->items()) {
    mounts[Text(m.Get("mountPath"))] = Text(m.Get("name")) + (m.Get("readOnly") != nullptr ? " ro" : "");
  }
  EXPECT_EQ(mounts, (std::map<std::string, std::string>{
                        {"/artifacts", "artifacts ro"}, {"/tmp", "tmp"}, {"/workspace", "workspace"}}));
  EXPECT_EQ(pod.Find({"spec", "activeDeadlineSeconds"})->AsInt(), 91 + 300);
  EXPECT_EQ(pod.Find({"spec", "volumes"})->items().size(), 4u);
}

TEST(KubernetesPodSpec, RunsTheArgvUnchangedWithPlainVariablesAndSecretRefs) {
  Value pod = KubernetesPodSpec(Request(), "gantry-run-12-test-linux-3-abcdef", {.namespace_ = "ci"});
  const Value* c = pod.Find({"spec", "containers", 0});
  ASSERT_NE(c, nullptr);
  std::vector<std::string> command;
  for (const auto& a : c->Get("command")->items()) command.emplace_back(a.AsString());
  EXPECT_THAT(command, ElementsAre("bash", "-c", "echo \"$GREETING\" $(id -u)"));
  EXPECT_EQ(Text(c->Get("image")), "alpine:3.20");
  const Value* env = c->Get("env");
  ASSERT_NE(env, nullptr);
  ASSERT_EQ(env->items().size(), 2u);
  EXPECT_EQ(Text(env->At(0)->Get("name")), "GREETING");
  EXPECT_EQ(Text(env->At(0)->Get("value")), "hello $USER");
  EXPECT_EQ(Text(env->At(1)->Get("name")), "TOKEN");
  EXPECT_EQ(env->At(1)->Get("value"), nullptr);
  EXPECT_EQ(Text(env->At(1)->Find({"valueFrom", "secretKeyRef", "name"})), "gantry-run-12-test-linux-3-abcdef-env");
  EXPECT_EQ(Text(env->At(1)->Find({"valueFrom", "secretKeyRef", "key"})), "TOKEN");
  EXPECT_EQ(value::ToJson(pod).find("canary-kube-secret"), std::string::npos) << value::ToJson(pod);
}

TEST(KubernetesPodSpec, NeverRestartsHasADeadlineLimitsAndNamesTheRunAndStep) {
  Value pod = KubernetesPodSpec(Request(), "gantry-run-12-test-linux-3-abcdef", {.namespace_ = "ci"});
  EXPECT_EQ(Text(pod.Find({"metadata", "namespace"})), "ci");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "gantry.dev/run"})), "run-12");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "gantry.dev/step"})), "test-linux-3");
  EXPECT_EQ(Text(pod.Find({"metadata", "annotations", "gantry.dev/step"})), "Test (linux, 3)");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "app.kubernetes.io/managed-by"})), "gantry");
  EXPECT_EQ(Text(pod.Find({"spec", "restartPolicy"})), "Never");
  EXPECT_EQ(pod.Find({"spec", "activeDeadlineSeconds"})->AsInt(), 91);  // rounded up
  EXPECT_FALSE(pod.Find({"spec", "automountServiceAccountToken"})->AsBool());
  EXPECT_EQ(Text(pod.Find({"spec", "containers", 0, "resources", "limits", "memory"})), std::to_string(64 << 20));
}

// Placement is the operator's (executor options), never the pipeline's; a step is killed 5 s after
// SIGTERM when it times out or is cancelled.
TEST(KubernetesPodSpec, PlacedByTheOperatorWithAShortGracePeriod) {
  Value plain = KubernetesPodSpec(Request(), "p", {.namespace_ = "ci"});
  EXPECT_EQ(plain.Find({"spec", "nodeSelector"}), nullptr);
  EXPECT_EQ(plain.Find({"spec", "tolerations"}), nullptr);
  EXPECT_EQ(plain.Find({"spec", "terminationGracePeriodSeconds"})->AsInt(), 5);
  Value placed = KubernetesPodSpec(Request(), "p",
                                   {.namespace_ = "ci", .node_selector = {{"pool", "ci"}}, .tolerate_taints = {"ci-only"}});
  EXPECT_EQ(Text(placed.Find({"spec", "nodeSelector", "pool"})), "ci");
  EXPECT_EQ(Text(placed.Find({"spec", "tolerations", 0, "key"})), "ci-only");
  EXPECT_EQ(Text(placed.Find({"spec", "tolerations", 0, "operator"})), "Exists");
  EXPECT_EQ(placed.Find({"spec", "tolerations", 0, "effect"}), nullptr) << "any effect";
}

TEST(KubernetesPodSpec, UsesTheDefaultImageAndNoResourcesWithoutLimits) {
  StepRequest r = Request();
  r.image.clear();
  r.limits = {};
  Value pod = KubernetesPodSpec(r, "p", {.default_image = "busybox:1"});
  EXPECT_EQ(Text(pod.Find({"spec", "containers", 0, "image"})), "busybox:1");
  EXPECT_EQ(pod.Find({"spec", "containers", 0, "resources"}), nullptr);
}

// Regression: step Pods ran as the image's user (often root) with its capabilities, no seccomp
// profile and a writable root.
TEST(KubernetesPodSpec, IsHardened) {
  Value pod = KubernetesPodSpec(Request(), "p", {.namespace_ = "ci"});
  const Value* psc = pod.Find({"spec", "securityContext"});
  ASSERT_NE(psc, nullptr);
  EXPECT_TRUE(psc->Get("runAsNonRoot")->AsBool());
  EXPECT_EQ(psc->Get("runAsUser")->AsInt(), 1000);
  EXPECT_EQ(psc->Get("runAsGroup")->AsInt(), 1000);
  EXPECT_EQ(psc->Get("fsGroup")->AsInt(), 1000);
  EXPECT_EQ(Text(psc->Find({"seccompProfile", "type"})), "RuntimeDefault");
  const Value* csc = pod.Find({"spec", "containers", 0, "securityContext"});
  ASSERT_NE(csc, nullptr);
  EXPECT_TRUE(csc->Get("runAsNonRoot")->AsBool());
  EXPECT_FALSE(csc->Get("allowPrivilegeEscalation")->AsBool());
  EXPECT_FALSE(csc->Get("privileged")->AsBool());
  EXPECT_TRUE(csc->Get("readOnlyRootFilesystem")->AsBool());
  EXPECT_EQ(value::ToJson(*csc->Get("capabilities")), R"({"drop":["ALL"]})");
  EXPECT_EQ(Text(csc->Find({"seccompProfile", "type"})), "RuntimeDefault");
  // Writable places on the read-only root: /workspace and /tmp, both emptyDirs.
  std::map<std::string, std::string> mounts;
  for (const Value& m : pod.Find({"spec", "containers", 0, "volumeMounts"})->items()) {
    mounts[Text(m.Get("mountPath"))] = Text(m.Get("name"));
  }
  EXPECT_EQ(mounts, (std::map<std::string, std::string>{{"/tmp", "tmp"}, {"/workspace", "workspace"}}));
  for (const Value& v : pod.Find({"spec", "volumes"})->items()) {
    EXPECT_NE(v.Get("emptyDir"), nullptr) << value::ToJson(v);
  }
  // A configured uid is used; root never is.
  Value other = KubernetesPodSpec(Request(), "p", {.run_as_user = 4242});
  EXPECT_EQ(other.Find({"spec", "securityContext", "runAsUser"})->AsInt(), 4242);
  Value root = KubernetesPodSpec(Request(), "p", {.run_as_user = 0});
  EXPECT_EQ(root.Find({"spec", "securityContext", "runAsUser"})->AsInt(), 1000);
}

TEST(KubernetesPodSpec, UntrustedStepsGoToTheUntrustedNamespace) {
  StepRequest r = Request();
  r.trusted = false;
  EXPECT_EQ(Text(KubernetesPodSpec(r, "p", {.namespace_ = "ci"}).Find({"metadata", "namespace"})), "ci-untrusted");
  EXPECT_EQ(Text(KubernetesPodSpec(r, "p", {.namespace_ = "ci", .untrusted_namespace = "forks"})
                     .Find({"metadata", "namespace"})),
            "forks");
  r.trusted = true;
  EXPECT_EQ(Text(KubernetesPodSpec(r, "p", {.namespace_ = "ci", .untrusted_namespace = "forks"})
                     .Find({"metadata", "namespace"})),
            "ci");
}

// A cluster whose step Pods run for `running_polls` polls, then terminate, and whose log endpoint
// serves the lines of `log` from sinceTime on (whole seconds), cut to limitBytes, as the kubelet
// does. Records the log requests.
class LogOnlyClient final : public fakes::UnimplementedKubeClient {
 public:
  explicit LogOnlyClient(std::string log, int running_polls = 19)
      : log_(std::move(log)), running_polls_(running_polls) {}
  std::vector<std::string> log_requests() {
    MutexLock lock(mu_);
    return log_requests_;
  }

  Result<Value> Get(const kube::ObjectRef&) override {
    if (gets_++ < running_polls_) {
      return value::ParseJson(R"({"status":{"phase":"Running","containerStatuses":[{"name":"step","state":{"running":{}}}]}})", "pod");
    }
    return value::ParseJson(R"({"status":{"phase":"Running","containerStatuses":[
        {"name":"step","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}})", "pod");
  }
  Result<Value> Replace(const Value& object) override { return object; }
  Status Delete(const kube::ObjectRef&, const kube::DeleteOptions&) override { return OkStatus(); }
  Result<Value> Create(const Value& object, const kube::CreateOptions&) override { return object; }
  Result<std::string> GetRaw(std::string_view path) override {
    MutexLock lock(mu_);
    log_requests_.emplace_back(path);
    size_t limit = std::string::npos;
    if (size_t at = path.find("limitBytes="); at != std::string_view::npos) {
      limit = std::stoul(std::string(path.substr(at + 11)));
    }
    std::string since;
    if (size_t at = path.find("sinceTime="); at != std::string_view::npos) since = path.substr(at + 10, 19);
    size_t from = 0;
    while (from < log_.size() && log_.compare(from, 19, since) < 0) from = log_.find('\n', from) + 1;
    return log_.substr(from, limit);
  }
 private:
  const std::string log_;
  const int running_polls_;
  std::atomic<int> gets_{0};
  Mutex mu_;
  std::vector<std::string> log_requests_ GUARDED_BY(mu_);
};

// Runs one step with 1 ms polls on `client`; returns the log it forwarded.
std::string RunLoggingStep(kube::Client& client, KubernetesExecutorOptions options = {}) {
  options.namespace_ = "ci";
  options.poll = std::chrono::milliseconds(1);
  auto executor = NewKubernetesExecutor(client, options);
  std::string got;
  std::atomic<bool> cancel{false};
  auto outcome = executor->Run(Request(), [&](std::string_view d) { got.append(d); }, cancel);
  EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome.ok() && outcome->success());
  return got;
}

// Regression: the log was read whole, however large, and all of it forwarded.
TEST(KubernetesExecutor, LogReadsAreBoundedAndAStepsLogIsCapped) {
  // 3 MiB of lines, all in one second.
  std::string log;
  for (int i = 0; log.size() < (3u << 20); ++i) {
    log += fmt::format("2024-05-01T10:00:00.{:09d}Z line {} {}\n", i, i, std::string(100, 'x'));
  }
  LogOnlyClient client(log);
  std::string got = RunLoggingStep(client, {.max_log_bytes = 256 << 10});
  EXPECT_LE(got.size(), 256u << 10);
  EXPECT_GT(got.size(), 200u << 10);
  EXPECT_THAT(got, ::testing::HasSubstr("line 0 "));
  EXPECT_THAT(got, ::testing::EndsWith("gantry: the step's log passed 262144 bytes; the rest of it is not kept\n"));
  std::vector<std::string> requests = client.log_requests();
  ASSERT_FALSE(requests.empty());
  for (const std::string& r : requests) EXPECT_THAT(r, ::testing::HasSubstr("&limitBytes=1048576"));
}

// Regression: more than one request's worth of log within one second made every later fetch
// return the same lines, so nothing after them was ever shown.
TEST(KubernetesExecutor, ASecondWithMoreLogThanOneReadIsSkippedNotStuckOn) {
  std::string log;
  for (int i = 0; log.size() < (2u << 20); ++i) {
    log += fmt::format("2024-05-01T10:00:00.{:09d}Z busy {} {}\n", i, i, std::string(100, 'x'));
  }
  log += "2024-05-01T10:00:01.000000000Z after the busy second\n";
  log += "2024-05-01T10:00:02.000000000Z the end\n";
  LogOnlyClient client(log);
  std::string got = RunLoggingStep(client);
  EXPECT_THAT(got, ::testing::HasSubstr("busy 0 "));
  EXPECT_THAT(got, ::testing::HasSubstr("gantry: more than 1048576 bytes of log within 2024-05-01T10:00:00; "
                                        "the rest of that second is not shown\n"));
  EXPECT_THAT(got, ::testing::HasSubstr("\nafter the busy second\nthe end\n"));
  EXPECT_LT(got.size(), (1u << 20) + 4096);
}

// Regression: after the Pod ended, one fetch of at most limitBytes read what was left, so the end
// of a step that printed more than that since the last poll was lost (seen under ASan, whose
// slower polls left 2 MiB for the end). Here the container has ended at the first poll.
TEST(KubernetesExecutor, TheLogLeftWhenThePodEndsIsReadToItsEnd) {
  std::string log;
  for (int i = 0; log.size() < (5u << 19); ++i) {
    log += fmt::format("2024-05-01T10:{:02d}:{:02d}.000000000Z line {} {}\n", i / 3600 % 60, i / 60 % 60, i,
                       std::string(100, 'x'));
  }
  log += "2024-05-01T11:00:00.000000000Z the end\n";
  LogOnlyClient client(log, 0);
  std::string got = RunLoggingStep(client);
  EXPECT_THAT(got, ::testing::HasSubstr("line 0 "));
  EXPECT_THAT(got, ::testing::EndsWith("\nthe end\n"));
  EXPECT_GE(client.log_requests().size(), 3u);
}

// A hostile step's last words: one line longer than a fetch holds, without a newline, and nothing
// before it. Reading the rest of the log after the Pod ended asked for it again and again.
TEST(KubernetesExecutor, OneLineLongerThanAFetchAtTheEndDoesNotHoldTheRun) {
  std::string log = "2024-05-01T10:00:00.000000000Z " + std::string(2u << 20, 'x');
  LogOnlyClient client(log, 0);
  RunLoggingStep(client);
  EXPECT_LE(client.log_requests().size(), 8u);
}

// The step's timeout runs on the executor's clock: a Pod that never starts times out after the
// step's ten minutes of polls, which take no time on a fake clock. The Pod is deleted.
TEST(KubernetesExecutor, APodThatNeverEndsTimesOutOnTheClock) {
  fakes::FakeKubeClient client;
  FakeClock clock;
  auto executor = NewKubernetesExecutor(client, {.namespace_ = "ci", .poll = std::chrono::seconds(1), .clock = &clock});
  StepRequest r = Request();
  r.timeout = std::chrono::minutes(10);
  std::string got;
  std::atomic<bool> cancel{false};
  auto outcome = executor->Run(r, [&](std::string_view d) { got.append(d); }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->timed_out) << got;
  EXPECT_GE(outcome->duration, std::chrono::minutes(10));
  EXPECT_GE(client.count("get"), 600u);  // one a second
  auto pods = client.List("v1", "Pod", "ci");
  ASSERT_TRUE(pods.ok()) << pods.status().ToString();
  EXPECT_TRUE(pods->items.empty());
}

}  // namespace
}  // namespace gantry::ci
