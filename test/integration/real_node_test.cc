// A real node beside the kwok ones (kube-cluster.sh --real-nodes 1: kubelet, containerd, runc,
// CNI bridge): containers really run, so what kwok can only pretend is checked here.
//   - the node itself: a Pod runs from images built by `gantry image build` and pulled from the
//     test registry, logs, exits with its code, is OOMKilled over its memory limit;
//   - CI steps as Pods: the Kubernetes executor's logs come from the kubelet, exit codes, secrets
//     by reference, OOMKilled, timeout deleting the Pod; the workspace shipped into the step's
//     Pod and back (helper containers from Gantry's own image), so that a two-step pipeline's
//     checkout, files, artifacts and caches behave as with the process executor, and a step's
//     symlink to /etc/passwd declared as an artifact brings nothing of the host's back;
//   - health: Gantry's assessment agrees with what the kubelet does (a readiness probe that fails
//     keeps a Deployment Progressing, then Degraded past its deadline; a crash-looping Pod is
//     Degraded with the reason);
//   - the pull agent in the cluster: `gantry install` runs the image deploy/build-image.sh builds on
//     the real node; it syncs from the test Git server through pod networking, its readiness
//     probe is served, and deleting the leader's Pod hands the Lease to the other replica;
//   - the node's loopback guard (CVE-2020-8558): a Pod crafting packets to the host's 127.0.0.1
//     gets no answer, while the DNATed apiserver address answers.
// The node is tainted gantry.dev/real-node; every Pod here tolerates it and selects type=real.

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "ci/executor.h"
#include "ci/runner.h"
#include "health/health.h"
#include "kube/kube.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

using ::testing::HasSubstr;
using value::Value;
using Clock = std::chrono::steady_clock;

std::string Text(const Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : ""; }

std::string Binary();

class RealNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& registry = testenv::Shared("registry.sh");
    cluster_ = &testenv::Shared("kube-cluster.sh", {"--nodes", "1", "--real-nodes", "1", "--registry",
                                                    registry.Get("REGISTRY_HOST")});
    auto config = kube::LoadConfig({.paths = {cluster_->Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
  }
  static void TearDownTestSuite() { delete client_; }

  void SetUp() override {
    ns_ = fmt::format("real-{:06x}", std::random_device{}() & 0xffffff);
    auto r = client_->Create(value::ParseJson(R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + ns_ +
                                              "\"}}")
                                 .value());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (auto end = Clock::now() + std::chrono::seconds(30); Clock::now() < end;) {
      if (client_->Get({"v1", "ServiceAccount", ns_, "default"}).ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void TearDown() override { (void)client_->Delete({"v1", "Namespace", "", ns_}); }

  static std::string Busybox() { return cluster_->Get("BUSYBOX_IMAGE"); }

  // Gantry's own image, as deploy/build-image.sh builds it, pushed to the test registry (once per
  // test binary): the agent's image and the CI executor's helper image.
  static std::string GantryImage() {
    static std::string image = [] {
      std::string registry = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
      std::string ref = registry + "/gantry-test/gantry:agent";
      testenv::ScopedTempDir tmp;
      auto built = RunChecked({testenv::ScriptDir() + "/../../deploy/build-image.sh", Binary(),
                               "oci:" + tmp.path() + "/layout:agent", "--push", ref, "--insecure-registry", registry},
                              {.inherit_env = true, .timeout = std::chrono::minutes(5)});
      if (!built.ok()) {
        ADD_FAILURE() << "build Gantry's image: " << built.status().ToString();
        return std::string();
      }
      return ref;
    }();
    return image;
  }

  // A Pod spec's placement on the real node.
  static std::string Placement() {
    return R"("nodeSelector":{"type":"real"},"tolerations":[{"key":"gantry.dev/real-node","operator":"Exists"}])";
  }

  // Polls `ref` until `done` says so or `seconds` pass; the last object read.
  std::optional<Value> WaitFor(const kube::ObjectRef& ref, const std::function<bool(const Value&)>& done,
                               int seconds = 90) {
    std::optional<Value> last;
    for (auto end = Clock::now() + std::chrono::seconds(seconds); Clock::now() < end;) {
      auto got = client_->Get(ref);
      if (got.ok()) {
        last = *got;
        if (done(*got)) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << "timed out waiting for " << ref.name << "; last: " << (last ? value::ToJson(*last) : "none");
    return last;
  }

  static inline testenv::Server* cluster_ = nullptr;
  static inline kube::Client* client_ = nullptr;
  std::string ns_;
};

const Value* Terminated(const Value& pod) { return pod.Find({"status", "containerStatuses", 0, "state", "terminated"}); }

TEST_F(RealNodeTest, APodRunsLogsExitsWithItsCodeAndIsOomKilledOverItsLimit) {
  auto make = [&](const std::string& name, const std::string& script, const std::string& resources) {
    std::string pod = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name + R"(","namespace":")" + ns_ +
                      R"("},"spec":{"restartPolicy":"Never",)" + Placement() +
                      R"(,"containers":[{"name":"c","image":")" + Busybox() +
                      R"(","command":["sh","-c",")" + script + "\"]" + resources + "}]}}";
    auto r = client_->Create(value::ParseJson(pod).value());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  };
  make("hello", "echo hello from $(hostname); exit 3", "");
  make("hog", "head -c 300m /dev/zero | tail", R"(,"resources":{"limits":{"memory":"32Mi"}})");

  auto hello = WaitFor({"v1", "Pod", ns_, "hello"}, [](const Value& p) {
    return Terminated(p) != nullptr && Text(p.Find({"status", "phase"})) == "Failed";
  });
  ASSERT_TRUE(hello && Terminated(*hello));
  EXPECT_EQ(Text(hello->Find({"spec", "nodeName"})), "real-node-0");
  EXPECT_EQ(Terminated(*hello)->Get("exitCode")->AsInt(), 3);
  EXPECT_EQ(Text(hello->Find({"status", "phase"})), "Failed");
  EXPECT_FALSE(Text(hello->Find({"status", "podIP"})).empty()) << "pod networking gave it an address";
  auto log = client_->GetRaw("/api/v1/namespaces/" + ns_ + "/pods/hello/log");
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(*log, "hello from hello\n");

  auto hog = WaitFor({"v1", "Pod", ns_, "hog"}, [](const Value& p) { return Terminated(p) != nullptr; });
  ASSERT_TRUE(hog && Terminated(*hog));
  EXPECT_EQ(Text(Terminated(*hog)->Get("reason")), "OOMKilled");
  EXPECT_EQ(Terminated(*hog)->Get("exitCode")->AsInt(), 137);
}

class RealNodeCiTest : public RealNodeTest {
 protected:
  void SetUp() override {
    RealNodeTest::SetUp();
    executor_ = ci::NewKubernetesExecutor(*client_, {.namespace_ = ns_,
                                                     .default_image = Busybox(),
                                                     .poll = std::chrono::milliseconds(100),
                                                     .node_selector = {{"type", "real"}},
                                                     .tolerate_taints = {"gantry.dev/real-node"}});
  }
  ci::StepRequest Request(std::vector<std::string> argv) {
    ci::StepRequest r;
    r.run_label = "run-1";
    r.step = "build";
    r.argv = std::move(argv);
    r.env = {{"GREETING", "hello"}, {"TOKEN", "canary-real-node-secret"}};
    r.secret_names = {"TOKEN"};
    r.timeout = std::chrono::seconds(90);
    return r;
  }
  std::unique_ptr<ci::Executor> executor_;
};

TEST_F(RealNodeCiTest, StepLogsComeFromTheKubeletWithTheExitCodeAndSecretsByReference) {
  ci::StepRequest r = Request({"sh", "-c", "echo \"$GREETING\"; echo token has ${#TOKEN} bytes; id -u; exit 7"});
  std::string out;
  std::atomic<bool> cancel{false};
  auto outcome = executor_->Run(r, [&](std::string_view d) { out += d; }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->exit_code, 7);
  EXPECT_EQ(outcome->Describe(), "exit code 7");
  EXPECT_THAT(out, HasSubstr("hello\n"));
  EXPECT_THAT(out, HasSubstr("token has 23 bytes\n"));
  EXPECT_THAT(out, HasSubstr("1000\n")) << "steps run as the executor's uid, never root";
  EXPECT_EQ(out.find("canary-real-node-secret"), std::string::npos);
  EXPECT_EQ(out.find("no log from the Pod"), std::string::npos) << out;
}

TEST_F(RealNodeCiTest, AStepOverItsMemoryLimitIsOomKilled) {
  ci::StepRequest r = Request({"sh", "-c", "echo start; head -c 300m /dev/zero | tail"});
  r.limits.memory_bytes = 32 << 20;
  std::string out;
  std::atomic<bool> cancel{false};
  auto outcome = executor_->Run(r, [&](std::string_view d) { out += d; }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_FALSE(outcome->success());
  EXPECT_THAT(outcome->Describe(), HasSubstr("OOMKilled")) << out;
  EXPECT_THAT(out, HasSubstr("start\n"));
}

TEST_F(RealNodeCiTest, TimeoutDeletesTheRunningPod) {
  ci::StepRequest r = Request({"sh", "-c", "echo waiting; sleep 600"});
  r.timeout = std::chrono::seconds(8);
  std::string out;
  std::atomic<bool> cancel{false};
  auto start = Clock::now();
  auto outcome = executor_->Run(r, [&](std::string_view d) { out += d; }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->timed_out) << outcome->Describe();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(60));
  EXPECT_THAT(out, HasSubstr("waiting\n"));
  for (auto end = Clock::now() + std::chrono::seconds(60); Clock::now() < end;) {
    auto l = client_->List("v1", "Pod", ns_, {.label_selector = "app.kubernetes.io/managed-by=gantry"});
    if (l.ok() && l->items.empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ADD_FAILURE() << "the step's Pod was not deleted";
}

// The workspace goes into the step's Pod and comes back: step 1 reads the checkout and leaves a
// file, an artifact and a cache; step 2 (another Pod) reads the file and the artifact; the server
// keeps the artifact and the cache. A symlink to the host's /etc/passwd declared as an artifact
// and a cache comes back as a link at most, never as the file's content.
TEST_F(RealNodeCiTest, TheWorkspaceGoesToThePodAndArtifactsAndCachesComeBack) {
  auto executor = ci::NewKubernetesExecutor(*client_, {.namespace_ = ns_,
                                                       .default_image = Busybox(),
                                                       .poll = std::chrono::milliseconds(100),
                                                       .helper_image = GantryImage(),
                                                       .node_selector = {{"type", "real"}},
                                                       .tolerate_taints = {"gantry.dev/real-node"}});
  testenv::ScopedTempDir tmp;
  std::filesystem::path ws = tmp.path() + "/ws";
  std::filesystem::create_directories(ws / "src");
  std::ofstream(ws / "src/input.txt") << "from the checkout\n";
  // Larger than one stdin message (256 KiB) and one WebSocket frame of a fragmenting client.
  std::ofstream(ws / "src/big.bin") << std::string(3 << 20, 'b');
  auto pipeline = ci::ParsePipeline(R"(shell: sh
steps:
  build:
    cache: {key: deps, paths: [deps]}
    artifacts: ["out/**"]
    run: cat src/input.txt > made.txt && mkdir -p out deps && echo report > out/report.txt && echo cached > deps/c.txt && ln -s /etc/passwd out/evil && id -u && wc -c < src/big.bin
  check:
    needs: [build]
    run: cat made.txt /artifacts/build/out/report.txt && ls /artifacts/build/out && ! test -e deps/nothing
  fails:
    needs: [check]
    run: echo partial > partial.txt && exit 4
)");
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
  std::string log;
  ci::RunOptions o;
  o.workspace = ws;
  o.run_dir = tmp.path() + "/run";
  o.cache_root = tmp.path() + "/cache";
  o.on_progress = [&](const ci::Progress& p) {
    if (p.kind == ci::Progress::Kind::kOutput) log += p.data;
  };
  ci::Runner runner(*pipeline, *executor, o);
  auto result = runner.Run();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->steps.size(), 3u);
  EXPECT_EQ(result->steps[0].state, store::RunState::kSucceeded) << result->steps[0].message << "\n" << log;
  EXPECT_EQ(result->steps[1].state, store::RunState::kSucceeded) << result->steps[1].message << "\n" << log;
  EXPECT_EQ(result->steps[2].exit_code, 4) << log;
  EXPECT_THAT(log, HasSubstr("from the checkout\nreport\n")) << "step 2 read step 1's file and artifact";
  EXPECT_THAT(log, HasSubstr("3145728\n")) << "the 3 MiB file arrived whole";
  EXPECT_THAT(log, HasSubstr("workspace shipped to the Pod"));
  EXPECT_THAT(log, HasSubstr("workspace brought back from the Pod"));
  auto read = [](const std::filesystem::path& p) {
    auto r = ReadFile(p);
    return r.ok() ? *r : "<" + r.status().message() + ">";
  };
  // On the server: the workspace as the steps left it (the failing one's too), the artifact, the cache.
  EXPECT_EQ(read(ws / "made.txt"), "from the checkout\n");
  EXPECT_EQ(read(ws / "src/big.bin"), std::string(3 << 20, 'b'));
  EXPECT_EQ(read(ws / "partial.txt"), "partial\n") << "a failing step's workspace comes back too";
  EXPECT_EQ(read(tmp.path() + "/run/artifacts/build/out/report.txt"), "report\n");
  bool cached = false;
  std::string passwd = read("/etc/passwd");
  for (const auto& root : {tmp.path() + "/cache", tmp.path() + "/run", tmp.path() + "/ws"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      if (e.is_symlink() || !e.is_regular_file()) continue;
      std::string text = read(e.path());
      if (e.path().filename() == "c.txt" && text == "cached\n") cached = true;
      EXPECT_TRUE(passwd.empty() || text.find(passwd.substr(0, 40)) == std::string::npos)
          << e.path() << " holds the host's /etc/passwd";
    }
  }
  EXPECT_TRUE(cached) << "the cache deps/ was saved on the server\n" << log;
  EXPECT_TRUE(std::filesystem::is_symlink(ws / "out/evil")) << "the link came back as a link";
}

// Gantry's health of what really runs: the kubelet's probes and restarts decide, Gantry reads.
TEST_F(RealNodeTest, HealthAgreesWithTheKubeletOnProbesAndCrashLoops) {
  auto deployment = [&](const std::string& name, const std::string& container) {
    std::string d = R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":")" + name +
                    R"(","namespace":")" + ns_ +
                    R"("},"spec":{"replicas":1,"progressDeadlineSeconds":15,"selector":{"matchLabels":{"app":")" +
                    name + R"("}},"template":{"metadata":{"labels":{"app":")" + name + R"("}},"spec":{)" +
                    Placement() + R"(,"terminationGracePeriodSeconds":1,"containers":[)" + container + "]}}}}";
    auto r = client_->Create(value::ParseJson(d).value());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  };
  // Never ready: its readiness probe looks for a file that is never made.
  deployment("unready", R"({"name":"c","image":")" + Busybox() +
                            R"(","command":["sleep","3600"],"readinessProbe":{"exec":{"command":["cat","/tmp/ready"]},"periodSeconds":1}})");
  // Crash-looping: exits 1 at once, restarted by the kubelet with back-off.
  deployment("crasher", R"({"name":"c","image":")" + Busybox() + R"(","command":["sh","-c","echo boom; exit 1"]})");

  // While the Pod runs unready and the deadline has not passed: Progressing.
  auto pods_running = WaitFor({"apps/v1", "Deployment", ns_, "unready"}, [](const Value& d) {
    const Value* s = d.Find({"status", "replicas"});
    return s != nullptr && s->AsInt() == 1;
  });
  ASSERT_TRUE(pods_running);
  EXPECT_EQ(health::Assess(&*pods_running).status, health::HealthStatus::kProgressing)
      << health::Assess(&*pods_running).message;
  // Past progressDeadlineSeconds (15 s) with no ready replica: Degraded, naming the deadline.
  auto unready = WaitFor(
      {"apps/v1", "Deployment", ns_, "unready"},
      [](const Value& d) { return health::Assess(&d).status == health::HealthStatus::kDegraded; }, 120);
  ASSERT_TRUE(unready);
  EXPECT_THAT(health::Assess(&*unready).message, HasSubstr("progress deadline"));
  // The kubelet really ran the probe: the Pod is Running but not Ready.
  auto pods = client_->List("v1", "Pod", ns_, {.label_selector = "app=unready"});
  ASSERT_TRUE(pods.ok() && pods->items.size() == 1);
  EXPECT_EQ(Text(pods->items[0].Find({"status", "phase"})), "Running");
  EXPECT_FALSE(pods->items[0].Find({"status", "containerStatuses", 0, "ready"})->AsBool());

  // The crash-looping Pod: Degraded with the kubelet's reason, whether it is caught waiting in
  // CrashLoopBackOff or terminated between two back-offs.
  std::optional<Value> crashing;
  std::string message;
  for (auto end = Clock::now() + std::chrono::seconds(120); Clock::now() < end && !crashing;) {
    auto l = client_->List("v1", "Pod", ns_, {.label_selector = "app=crasher"});
    if (l.ok() && !l->items.empty()) {
      health::Health h = health::Assess(&l->items[0]);
      message = h.message;
      if (h.status == health::HealthStatus::kDegraded) crashing = l->items[0];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(crashing) << "the crash-looping Pod was never Degraded; last message: " << message;
  EXPECT_THAT(message, ::testing::AnyOf(HasSubstr("CrashLoopBackOff"), HasSubstr("crash-looping: exit code 1")));
  EXPECT_GE(crashing->Find({"status", "containerStatuses", 0, "restartCount"})->AsInt(), 1);
  // Its Deployment is not Degraded: the rollout completed when the container first started, and
  // Kubernetes' progress deadline covers rollouts only. As in Argo CD, the crash shows on the Pod.
  // Without a readiness probe the container counts as available while it runs between two crashes,
  // so the Deployment is Progressing or, in that moment, Healthy (CI caught it Healthy once).
  auto crasher = client_->Get({"apps/v1", "Deployment", ns_, "crasher"});
  ASSERT_TRUE(crasher.ok()) << crasher.status().ToString();
  EXPECT_THAT(health::Assess(&*crasher).status,
              ::testing::AnyOf(health::HealthStatus::kProgressing, health::HealthStatus::kHealthy))
      << health::Assess(&*crasher).message;
}

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

// Commits `content` as cm.yaml to the repository at `bare` (a path) through a clone in `work`.
void CommitConfigMap(const std::string& bare, const std::string& work, const std::string& value) {
  ProcessOptions po{.inherit_env = true};
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@example.com"}, {"GIT_COMMITTER_NAME", "t"},
            {"GIT_COMMITTER_EMAIL", "t@example.com"}};
  if (!std::filesystem::exists(work + "/.git")) {
    auto r = RunChecked({"git", "clone", "-q", "file://" + bare, work}, po);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::ofstream(work + "/cm.yaml") << "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-git}\ndata: {v: \""
                                   << value << "\"}\n";
  for (std::vector<std::string> argv : {std::vector<std::string>{"git", "-C", work, "add", "cm.yaml"},
                                        {"git", "-C", work, "commit", "-qm", "v" + value},
                                        {"git", "-C", work, "push", "-q", "origin", "HEAD:main"}}) {
    auto r = RunChecked(argv, po);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

TEST_F(RealNodeTest, TheAgentRunsInTheClusterSyncsOverPodNetworkingAndHandsOverItsLease) {
  testenv::Server& git = testenv::Shared("git-server.sh", {"--anonymous"});
  ASSERT_TRUE(git.Command("create", {"apps"}).ok());
  testenv::ScopedTempDir tmp;
  ASSERT_NO_FATAL_FAILURE(CommitConfigMap(git.Get("GIT_ROOT") + "/apps.git", tmp.path() + "/work", "1"));
  // Pods reach the Git server (on the host's 127.0.0.1) at the node's address.
  std::string git_port = git.Get("GIT_URL").substr(git.Get("GIT_URL").rfind(':') + 1);
  auto exposed = cluster_->Command("expose", {git_port});
  ASSERT_TRUE(exposed.ok()) << exposed.status().ToString();
  std::string git_address = testenv::ParseValues(*exposed).at("ADDRESS");

  // The agent's image, as deploy/build-image.sh builds it, pushed to the test registry.
  std::string image = GantryImage();
  auto installed = RunChecked({Binary(), "install", "--kubeconfig", cluster_->Get("KUBECONFIG"), "--image", image,
                                     "--node-selector", "type=real", "--tolerate", "gantry.dev/real-node",
                                     "--agent-arg=--interval=3s"},
                                    {.inherit_env = true, .timeout = std::chrono::minutes(2)});
  ASSERT_TRUE(installed.ok()) << installed.status().ToString();
  // Both replicas Ready: the kubelet's readiness probe got /healthz from each.
  auto agents = WaitFor(
      {"apps/v1", "Deployment", "gantry-system", "gantry-agent"},
      [](const Value& d) {
        const Value* ready = d.Find({"status", "readyReplicas"});
        return ready != nullptr && ready->AsInt() == 2;
      },
      240);
  ASSERT_TRUE(agents);

  std::string app = R"({"apiVersion":"gantry.dev/v1alpha1","kind":"Application","metadata":{"name":"from-git","namespace":"gantry-system"},"spec":{"source":{"repoURL":"http://)" +
                    git_address + R"(/apps.git","path":"."},"destination":{"namespace":")" + ns_ +
                    R"("},"syncPolicy":{"automated":{"prune":true}}}})";
  auto created = client_->Create(value::ParseJson(app).value());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto value_is = [](const std::string& want) {
    return [want](const Value& cm) { return Text(cm.Find({"data", "v"})) == want; };
  };
  ASSERT_TRUE(WaitFor({"v1", "ConfigMap", ns_, "from-git"}, value_is("1"), 120));

  // The leader's Pod goes; the other replica takes the Lease (released on SIGTERM) and follows Git.
  auto lease = client_->Get({"coordination.k8s.io/v1", "Lease", "gantry-system", "gantry-agent"});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  std::string leader = Text(lease->Find({"spec", "holderIdentity"}));
  std::string leader_pod = leader.substr(0, leader.rfind('-'));
  ASSERT_TRUE(client_->Delete({"v1", "Pod", "gantry-system", leader_pod}).ok()) << leader;
  ASSERT_NO_FATAL_FAILURE(CommitConfigMap(git.Get("GIT_ROOT") + "/apps.git", tmp.path() + "/work", "2"));
  ASSERT_TRUE(WaitFor({"v1", "ConfigMap", ns_, "from-git"}, value_is("2"), 120));
  auto after = client_->Get({"coordination.k8s.io/v1", "Lease", "gantry-system", "gantry-agent"});
  ASSERT_TRUE(after.ok());
  EXPECT_NE(Text(after->Find({"spec", "holderIdentity"})), leader);
  (void)client_->Delete({"gantry.dev/v1alpha1", "Application", "gantry-system", "from-git"});
}

// kube-proxy's CVE-2020-8558: route_localnet (which the DNAT of the kubernetes Service to the
// apiserver on loopback needs) lets a Pod that writes its own packets, addressed to 127.0.0.1 and
// sent to the node's MAC, reach any server on the host's loopback (etcd: the whole cluster). The
// real node drops what comes from its bridge to 127.0.0.0/8 unless it was DNATed there. A static
// probe (testdata/syn_probe.c: TCP SYNs on a packet socket, as the exploit does) in a Pod on the
// real node sends a SYN to the apiserver twice: through its DNATed address 10.96.0.1:443, which
// must answer, and straight to 127.0.0.1:PORT, which must stay silent. With the guard taken away
// the same probe must get through: the test proves the guard, not the kernel, stops it.
TEST_F(RealNodeTest, APodReachesTheHostsLoopbackOnlyThroughTheDnat) {
  testenv::ScopedTempDir tmp;
  std::filesystem::create_directories(tmp.path() + "/ctx");
  auto compiled = RunChecked({"cc", "-static", "-O2", "-o", tmp.path() + "/ctx/syn_probe",
                              testenv::ScriptDir() + "/../integration/testdata/syn_probe.c"},
                             {.inherit_env = true, .merge_stderr = true, .timeout = std::chrono::minutes(2)});
  ASSERT_TRUE(compiled.ok()) << compiled.status().ToString();
  std::string registry = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  std::string image = registry + "/gantry-test/syn-probe:1";
  auto built = RunChecked({Binary(), "image", "build", "--layer", tmp.path() + "/ctx/syn_probe:/syn_probe",
                           "--entrypoint", R"(["/syn_probe"])", "--output", "oci:" + tmp.path() + "/layout:probe",
                           "--push", image, "--insecure-registry", registry},
                          {.inherit_env = true, .merge_stderr = true, .timeout = std::chrono::minutes(2)});
  ASSERT_TRUE(built.ok()) << built.status().ToString();

  std::string api_port = cluster_->Get("KUBE_SERVER").substr(cluster_->Get("KUBE_SERVER").rfind(':') + 1);
  // Runs the probe in a Pod on the real node (as root, with CAP_NET_RAW) and returns its log.
  auto probe = [&](const std::string& name) -> std::string {
    std::string pod = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name + R"(","namespace":")" + ns_ +
                      R"("},"spec":{"restartPolicy":"Never",)" + Placement() +
                      R"(,"containers":[{"name":"c","image":")" + image +
                      R"(","args":["10.96.0.1","443","127.0.0.1",")" + api_port +
                      R"("],"securityContext":{"runAsUser":0,"capabilities":{"add":["NET_RAW"]}}}]}})";
    auto r = client_->Create(value::ParseJson(pod).value());
    if (!r.ok()) return "create: " + r.status().ToString();
    auto done = WaitFor({"v1", "Pod", ns_, name}, [](const Value& p) { return Terminated(p) != nullptr; });
    if (!done || Terminated(*done) == nullptr) return "the probe never finished";
    auto log = client_->GetRaw("/api/v1/namespaces/" + ns_ + "/pods/" + name + "/log");
    if (!log.ok()) return "log: " + log.status().ToString();
    return fmt::format("exit {}: {}", Terminated(*done)->Get("exitCode")->AsInt(), *log);
  };
  EXPECT_EQ(probe("guarded"),
            fmt::format("exit 0: 10.96.0.1:443 answered\n127.0.0.1:{} silent\n", api_port));

  // Without the guard, the same packets reach the apiserver on the host's loopback.
  auto off = cluster_->Command("loopback-guard", {"off"});
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  std::string unguarded = probe("unguarded");
  auto on = cluster_->Command("loopback-guard", {"on"});
  ASSERT_TRUE(on.ok()) << "the loopback guard was not restored: " << on.status().ToString();
  EXPECT_EQ(unguarded, fmt::format("exit 0: 10.96.0.1:443 answered\n127.0.0.1:{} answered\n", api_port))
      << "the probe would not notice a missing guard";
}

}  // namespace
}  // namespace gantry
