// Network faults between Gantry and its servers, injected by Toxiproxy (test/env/toxiproxy.sh)
// between Gantry and the real kube-apiserver and docker-registry. Each scenario checks an invariant
// from outside Gantry (the apiserver read directly, the registry read directly and by skopeo):
//   - a sync whose live read is cut mid-body fails with a reason and prunes nothing, and the next
//     sync after the fault converges;
//   - a sync against an apiserver that accepts and then stays silent fails within its deadline;
//   - a push whose blob upload is cut, or throttled and then stalled, never leaves a manifest
//     visible whose blobs are not all present, and a retry completes it;
//   - a sync of 100 objects converges under latency with jitter, and with every stream sliced into
//     small pieces and every close delayed; so do a push and a pull;
//   - half-open connections (the server's direction silent mid-operation, the client's flowing):
//     a sync fails within its deadline and prunes nothing it has not read; a pull fails within its
//     stall timeout and tags nothing;
//   - a layer pulled onto a full disk fails saying so, leaves no partial blob, and completes once
//     space is back;
//   - `gantry server` out of descriptors (RLIMIT_NOFILE) says so, does not crash, and serves again
//     when the load drops;
//   - process faults: `gantry sync --prune` killed with SIGKILL mid-apply, and the kube-apiserver or
//     etcd killed with SIGKILL mid-sync and started again, prune nothing still wanted and converge.
// Git and the store under faults: faults_git_test.cc, faults_store_test.cc.
// The fault schedule (when a reset comes, the jitter) comes from GANTRY_FAULT_SEED (default 1).
// Each scenario prints "FAULT <scenario> seed=<n> outcome=<...> fault_s=<time under the fault>
// recover_s=<time from removing the fault to the next success>" and, when
// GANTRY_FAULTS_REPORT names a file, appends that line to it (bench/faults/run.sh sums them).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "kube/kube.h"
#include "oci/layout.h"
#include "oci/registry.h"
#include "sync/sync.h"
#include "test/env/testenv.h"
#include "test/env/toxiproxy.h"
#include "value/value.h"

namespace gantry {
namespace {

using Clock = std::chrono::steady_clock;
using testenv::RandomBytes;
using testenv::RecordFault;
using testenv::Seconds;
using value::Value;

uint64_t Seed() { return testenv::FaultSeed(); }

testenv::Toxiproxy& Toxi() { return testenv::SharedToxiproxy(); }

// ---- Kubernetes ------------------------------------------------------------------------------

class KubeFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    auto config = kube::LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    config_ = new kube::RestConfig(*config);
    auto direct = kube::NewHttpClient(*config);
    GANTRY_CHECK(direct.ok());
    direct_ = direct->release();
    std::string upstream = config->server.substr(std::string_view("https://").size());
    auto listen = Toxi().CreateProxy("apiserver", upstream);
    GANTRY_CHECK(listen.ok());
    proxied_server_ = "https://" + *listen;  // 127.0.0.1: the certificate names that IP
  }
  void SetUp() override { ASSERT_TRUE(Toxi().Reset().ok()); }
  void TearDown() override { ASSERT_TRUE(Toxi().Reset().ok()); }

  // A client that goes through the proxy, with short timeouts so that faults show within seconds.
  static std::unique_ptr<kube::Client> Proxied(std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                               int attempts = 3, const std::string& server = proxied_server_) {
    kube::RestConfig config = *config_;
    config.server = server;
    auto client = kube::NewHttpClient(config, {.request_timeout = timeout,
                                               .connect_timeout = timeout,
                                               .max_attempts = attempts});
    GANTRY_CHECK(client.ok());
    return std::move(*client);
  }

  friend void KillMidSyncAndRestart(kube::Client&, kube::Client&, const std::string&, const std::string&);

  static sync::Options Opts(const std::string& app) {
    sync::Options o;
    o.app = app;
    o.default_namespace = app;
    o.create_namespace = true;
    o.prune = true;
    o.timeout = std::chrono::seconds(30);
    return o;
  }

  // Runs a sync on another thread and gives up waiting after `limit`: a hung sync fails the test
  // instead of hanging it (the thread is left behind).
  static sync::State SyncWithin(kube::Client& client, std::vector<Value> objects, sync::Options o,
                                std::chrono::seconds limit) {
    auto state = testenv::RunWithin<sync::State>(limit, [&client, objects = std::move(objects), o = std::move(o)] {
      auto op = sync::Operation::Create(client, objects, o);
      if (op.ok()) return (*op)->Run();
      sync::State s;
      s.phase = sync::Phase::kFailed;
      s.message = op.status().message();
      return s;
    });
    if (state) return *state;
    sync::State hung;
    hung.phase = sync::Phase::kRunning;
    hung.message = fmt::format("the sync did not return within {} s", limit.count());
    return hung;
  }

  // `count` ConfigMaps of `bytes` random letters each (so that gzip does not shrink them), and
  // (with_service) a Service: a live read of them is large enough to be cut mid-body.
  static std::vector<Value> Render(int count, size_t bytes, bool with_service) {
    std::string yaml;
    std::mt19937_64 random(42);  // the same objects on every call: a re-sync changes nothing
    for (int i = 0; i < count; ++i) {
      std::string data(bytes, 'a');
      for (char& c : data) c = static_cast<char>('a' + random() % 26);
      yaml += fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{}}}\ndata: {{blob: {}}}\n---\n", i, data);
    }
    if (with_service) {
      yaml += "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
              "  ports: [{port: 80, targetPort: 8080}]\n";
    }
    auto docs = value::ParseYaml(yaml, "faults.yaml");
    GANTRY_CHECK(docs.ok());
    return *docs;
  }

  static inline kube::RestConfig* config_ = nullptr;
  static inline kube::Client* direct_ = nullptr;
  static inline std::string proxied_server_;
};

// The live read of a sync with prune is cut mid-body: every connection to the apiserver is closed
// after a seeded 40-120 KB from the server (Toxiproxy limit_data), while the ConfigMaps alone are
// over 200 KB. The sync fails with a reason and the Service it would prune is still there (read from
// the apiserver directly). With the toxic gone the same client's next sync converges and prunes it.
TEST_F(KubeFaultsTest, CutMidBodyDuringLiveReadFailsAndPrunesNothing) {
  const std::string app = "fault-reset";
  auto client = Proxied();
  sync::State first = SyncWithin(*client, Render(50, 4000, true), Opts(app), std::chrono::seconds(120));
  ASSERT_EQ(first.phase, sync::Phase::kSucceeded) << first.message;
  kube::ObjectRef service{"v1", "Service", app, "web"};
  ASSERT_TRUE(direct_->Get(service).ok());

  std::mt19937_64 random(Seed());
  int64_t cut_after = 40'000 + static_cast<int64_t>(random() % 80'000);
  ASSERT_TRUE(Toxi().AddToxic("apiserver", {.name = "cut", .type = "limit_data",
                                            .attributes = {{"bytes", cut_after}}}).ok());
  sync::Options o = Opts(app);
  o.create_namespace = false;  // it exists: the first requests are the live read
  auto start = Clock::now();
  sync::State faulted = SyncWithin(*client, Render(50, 4000, false), o, std::chrono::seconds(120));
  double fault_s = Seconds(Clock::now() - start);
  EXPECT_EQ(faulted.phase, sync::Phase::kFailed) << faulted.message;
  EXPECT_FALSE(faulted.message.empty());
  for (const auto& r : faulted.results) {
    EXPECT_FALSE(r.action == sync::Action::kPrune && !r.failed) << "pruned during a failed read: " << r.ref.ToString();
  }
  EXPECT_TRUE(direct_->Get(service).ok()) << "the Service was pruned although the live read failed";

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  sync::State after = SyncWithin(*client, Render(50, 4000, false), Opts(app), std::chrono::seconds(120));
  double recover = Seconds(Clock::now() - healed);
  ASSERT_EQ(after.phase, sync::Phase::kSucceeded) << after.message;
  EXPECT_EQ(direct_->Get(service).status().code(), Code::kNotFound);
  RecordFault("apiserver-cut-mid-body", faulted.phase == sync::Phase::kFailed ? "failed-no-prune" : "unexpected", fault_s,
         recover);
  std::cout << "  reason: " << faulted.message << std::endl;
}

// The apiserver accepts connections and then sends nothing: the sync fails within its deadline
// (3 attempts of 2 s per request, so well under 60 s) with a reason, and does not hang.
TEST_F(KubeFaultsTest, SilentApiserverFailsWithinDeadline) {
  ASSERT_TRUE(Toxi().AddToxic("apiserver", {.name = "silence", .type = "timeout",
                                            .attributes = {{"timeout", 0}}}).ok());
  auto client = Proxied(std::chrono::seconds(2), 3);
  auto start = Clock::now();
  sync::State s = SyncWithin(*client, Render(3, 10, true), Opts("fault-silence"), std::chrono::seconds(60));
  double took = Seconds(Clock::now() - start);
  EXPECT_EQ(s.phase, sync::Phase::kFailed) << s.message;
  EXPECT_FALSE(s.message.empty());
  EXPECT_LT(took, 60.0);
  std::cout << "  failed after " << took << " s: " << s.message << std::endl;

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  sync::State after = SyncWithin(*client, Render(3, 10, true), Opts("fault-silence"), std::chrono::seconds(120));
  double recover = Seconds(Clock::now() - healed);
  ASSERT_EQ(after.phase, sync::Phase::kSucceeded) << after.message;
  RecordFault("apiserver-timeout", s.phase == sync::Phase::kFailed ? "failed" : "hung", took, recover);
}

// 100 ± 50 ms on every packet from the apiserver (seeded jitter): a sync of 100 objects converges.
TEST_F(KubeFaultsTest, LatencyWithJitterStillConverges) {
  std::mt19937_64 random(Seed());
  int64_t jitter = 40 + static_cast<int64_t>(random() % 21);  // 40-60 ms
  ASSERT_TRUE(Toxi().AddToxic("apiserver", {.name = "latency", .type = "latency",
                                            .attributes = {{"latency", 100}, {"jitter", jitter}}}).ok());
  auto client = Proxied(std::chrono::seconds(30), 4);
  auto start = Clock::now();
  sync::State s = SyncWithin(*client, Render(100, 100, false), Opts("fault-latency"), std::chrono::seconds(170));
  double took = Seconds(Clock::now() - start);
  ASSERT_EQ(s.phase, sync::Phase::kSucceeded) << s.message;
  for (int i : {0, 50, 99}) {
    EXPECT_TRUE(direct_->Get({"v1", "ConfigMap", "fault-latency", fmt::format("cm-{}", i)}).ok());
  }
  RecordFault("apiserver-latency-100ms-jitter", "converged", took, 0);
}

// ---- Process faults ----------------------------------------------------------------------------

// The ConfigMaps of namespace `ns` by name → data.version.
std::map<std::string, std::string> ConfigMapVersions(kube::Client& client, const std::string& ns) {
  std::map<std::string, std::string> out;
  auto list = client.List("v1", "ConfigMap", ns);
  GANTRY_CHECK(list.ok());
  for (const Value& cm : list->items) {
    out[value::StringAt(&cm, {"metadata", "name"})] = value::StringAt(&cm, {"data", "version"});
  }
  return out;
}

// `gantry sync --prune` (its own process) is killed with SIGKILL a seeded 50-800 ms into a sync that
// changes 130 ConfigMaps, adds 50 and drops 20. Wherever the kill fell, every object the new render
// still wants, and the Service, are on the apiserver (nothing wanted was pruned); the rerun
// converges: the 180 wanted at the new version, the 20 dropped ones gone.
TEST_F(KubeFaultsTest, SyncProcessKilledMidApplyConverges) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr) << "GANTRY_BINARY (set by CTest) names the gantry binary";
  const std::string app = "fault-kill9";
  testenv::ScopedTempDir tmp;
  auto render = [&](const std::string& name, int from, int to, const std::string& version) {
    std::string yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
                       "  ports: [{port: 80, targetPort: 8080}]\n";
    for (int i = from; i < to; ++i) {
      yaml += fmt::format("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{}}}\ndata: {{version: \"{}\"}}\n", i,
                          version);
    }
    std::string dir = tmp.path() + "/" + name;
    std::filesystem::create_directories(dir);
    GANTRY_CHECK(WriteFileAtomic(dir + "/all.yaml", yaml).ok());
    return std::vector<std::string>{binary, "sync", dir, "--app", app, "-n", app, "--create-namespace", "--prune",
                                    "--kubeconfig", testenv::Shared("kube-cluster.sh").Get("KUBECONFIG"),
                                    "--state-dir", tmp.path() + "/state"};
  };
  ProcessOptions po;
  po.inherit_env = true;
  po.timeout = std::chrono::minutes(2);
  auto first = gantry::Run(render("v1", 0, 150, "1"), po);
  ASSERT_TRUE(first.ok() && first->success()) << (first.ok() ? first->err : first.status().ToString());

  std::mt19937_64 random(Seed());
  auto kill_after = std::chrono::milliseconds(50 + random() % 750);
  auto second = render("v2", 20, 200, "2");
  auto sync = Process::Start(second, po, tmp.path() + "/killed.log");
  ASSERT_TRUE(sync.ok()) << sync.status().ToString();
  auto start = Clock::now();
  std::this_thread::sleep_for(kill_after);  // the schedule, not a wait for a condition
  const bool finished_first = !sync->Running();
  sync->Signal(SIGKILL);
  sync->Stop(std::chrono::milliseconds(100));
  double fault_s = Seconds(Clock::now() - start);
  auto after_kill = ConfigMapVersions(*direct_, app);
  for (int i = 20; i < 150; ++i) {
    EXPECT_EQ(after_kill.count(fmt::format("cm-{}", i)), 1u) << "cm-" << i << " is wanted and was deleted";
  }
  EXPECT_TRUE(direct_->Get({"v1", "Service", app, "web"}).ok()) << "the Service is wanted and was deleted";
  int applied = 0;
  for (const auto& [name, version] : after_kill) applied += version == "2";

  auto healed = Clock::now();
  auto rerun = gantry::Run(second, po);
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(rerun.ok() && rerun->success()) << (rerun.ok() ? rerun->err : rerun.status().ToString());
  auto converged = ConfigMapVersions(*direct_, app);
  std::map<std::string, std::string> want;
  for (int i = 20; i < 200; ++i) want[fmt::format("cm-{}", i)] = "2";
  converged.erase("kube-root-ca.crt");
  converged.erase("gantry-inventory-" + app);  // what the sync records it applied
  for (const auto& [name, version] : want) {
    EXPECT_EQ(converged.count(name) ? converged[name] : "(absent)", version) << name;
  }
  for (const auto& [name, version] : converged) EXPECT_EQ(want.count(name), 1u) << name << " was not pruned";
  EXPECT_TRUE(direct_->Get({"v1", "Service", app, "web"}).ok());
  std::cout << "  killed after " << kill_after.count() << " ms with " << applied << " of 180 ConfigMaps at the new version"
            << std::endl;
  RecordFault("sync-process-kill9", finished_first ? "finished-before-kill" : "killed-mid-sync-converged", fault_s,
              recover_s);
}

// kill -9 of `component` of the cluster (kube-cluster.sh kill-COMPONENT: "apiserver", or "etcd"
// while the apiserver keeps running) a seeded 20-300 ms into a sync with prune of 100 ConfigMaps and
// a Service, and the same component started again on its port a seeded 0.5-1.5 s later
// (start-COMPONENT). The interrupted sync returns (failed with a reason, or finished first) and
// pruned nothing; syncs retried every second, as the agent retries, converge once it is back. A
// sync may also succeed through the kill: it ended first, or its retries outlasted the outage.
void KillMidSyncAndRestart(kube::Client& direct, kube::Client& client, const std::string& component,
                           const std::string& scenario) {
  const std::string app = "fault-" + component + "-kill9";
  // Every object changes (other data than the first sync's): the kill has work to interrupt.
  auto render = [] { return KubeFaultsTest::Render(100, 120, true); };
  sync::State first = KubeFaultsTest::SyncWithin(client, KubeFaultsTest::Render(60, 100, true),
                                                 KubeFaultsTest::Opts(app), std::chrono::seconds(120));
  ASSERT_EQ(first.phase, sync::Phase::kSucceeded) << first.message;

  std::mt19937_64 random(Seed());
  auto kill_after = std::chrono::milliseconds(20 + random() % 280);
  auto down_for = std::chrono::milliseconds(500 + random() % 1000);
  testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
  auto interrupted = std::async(std::launch::async, [&] {
    return KubeFaultsTest::SyncWithin(client, render(), KubeFaultsTest::Opts(app), std::chrono::seconds(120));
  });
  std::this_thread::sleep_for(kill_after);  // the schedule, not a wait for a condition
  auto killed = Clock::now();
  ASSERT_TRUE(cluster.Command("kill-" + component).ok());
  std::this_thread::sleep_for(down_for);
  auto restarted = cluster.Command("start-" + component);
  ASSERT_TRUE(restarted.ok()) << restarted.status().ToString();
  auto ready = Clock::now();
  double fault_s = Seconds(ready - killed);
  sync::State cut = interrupted.get();
  EXPECT_NE(cut.phase, sync::Phase::kRunning) << cut.message;
  std::cout << "  the interrupted sync: " << sync::Name(cut.phase) << ": " << cut.message << std::endl;
  for (const auto& r : cut.results) {
    EXPECT_FALSE(r.action == sync::Action::kPrune && !r.failed) << "pruned: " << r.ref.ToString();
  }
  EXPECT_TRUE(direct.Get({"v1", "Service", app, "web"}).ok()) << "the Service was deleted";

  sync::State after;
  int attempts = 0;
  do {
    if (attempts++ > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    after = KubeFaultsTest::SyncWithin(client, render(), KubeFaultsTest::Opts(app), std::chrono::seconds(60));
  } while (after.phase != sync::Phase::kSucceeded && Clock::now() - ready < std::chrono::seconds(90));
  double recover_s = Seconds(Clock::now() - ready);
  ASSERT_EQ(after.phase, sync::Phase::kSucceeded) << after.message;
  auto versions = ConfigMapVersions(direct, app);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(versions.count(fmt::format("cm-{}", i)), 1u) << "cm-" << i;
  RecordFault(scenario, cut.phase == sync::Phase::kSucceeded ? "succeeded-through-the-kill" : "failed-no-prune-converged",
              fault_s, recover_s);
}

TEST_F(KubeFaultsTest, ApiserverKilledMidSyncRecoversAfterRestart) {
  auto client = Proxied(std::chrono::seconds(5), 2);
  KillMidSyncAndRestart(*direct_, *client, "apiserver", "apiserver-kill9-mid-sync");
}

// etcd killed under a running apiserver: the apiserver answers errors (or nothing) until etcd is
// back over the same data, and nothing the sync wanted is lost.
TEST_F(KubeFaultsTest, EtcdKilledMidSyncRecoversAfterRestart) {
  auto client = Proxied(std::chrono::seconds(5), 2);
  KillMidSyncAndRestart(*direct_, *client, "etcd", "etcd-kill9-mid-sync");
}

// Every byte to and from the apiserver comes in slices of a seeded 16-256 bytes and every close is
// delayed 0.2-1 s (Toxiproxy slicer, slow_close): a sync of 30 ConfigMaps and a Service converges,
// and the next, which drops the Service, prunes it.
TEST_F(KubeFaultsTest, SlicedStreamsAndSlowCloseStillConverge) {
  const std::string app = "fault-sliced";
  std::mt19937_64 random(Seed());
  std::string what;
  auto sliced = testenv::CreateSlicedSlowCloseProxy(Toxi(), "apiserver-sliced",
                                                    config_->server.substr(std::string_view("https://").size()), random,
                                                    what);
  ASSERT_TRUE(sliced.ok()) << sliced.status().ToString();
  auto client = Proxied(std::chrono::seconds(10), 3, "https://" + *sliced);
  auto start = Clock::now();
  sync::State first = SyncWithin(*client, Render(30, 2000, true), Opts(app), std::chrono::seconds(120));
  ASSERT_EQ(first.phase, sync::Phase::kSucceeded) << first.message;
  sync::State second = SyncWithin(*client, Render(30, 2000, false), Opts(app), std::chrono::seconds(120));
  double took = Seconds(Clock::now() - start);
  ASSERT_EQ(second.phase, sync::Phase::kSucceeded) << second.message;
  EXPECT_EQ(direct_->Get({"v1", "Service", app, "web"}).status().code(), Code::kNotFound);
  for (int i : {0, 29}) EXPECT_TRUE(direct_->Get({"v1", "ConfigMap", app, fmt::format("cm-{}", i)}).ok()) << i;
  std::cout << "  " << what << ": two syncs in " << took << " s" << std::endl;
  EXPECT_TRUE(Toxi().DeleteProxy("apiserver-sliced").ok());
  RecordFault("apiserver-sliced-slow-close", "converged", took, 0);
}

// Half-open: a seeded 20-220 ms into a sync with prune, the apiserver's direction goes silent while
// Gantry's requests still flow (no FIN, no reset). The sync fails within its deadline (2 s per
// request, 2 attempts) with a reason, and prunes only after a complete read: if the Service it
// drops is gone, the sync got as far as pruning it. The next sync after the fault converges.
TEST_F(KubeFaultsTest, HalfOpenMidSyncFailsWithinDeadlineAndPrunesNothingUnread) {
  const std::string app = "fault-half-open";
  auto client = Proxied(std::chrono::seconds(2), 2);
  sync::State first = SyncWithin(*client, Render(60, 2000, true), Opts(app), std::chrono::seconds(120));
  ASSERT_EQ(first.phase, sync::Phase::kSucceeded) << first.message;
  std::mt19937_64 random(Seed());
  auto silent = testenv::GoHalfOpenAfter(Toxi(), "apiserver", std::chrono::milliseconds(20 + random() % 200));
  sync::Options o = Opts(app);
  o.create_namespace = false;
  auto start = Clock::now();
  sync::State faulted = SyncWithin(*client, Render(60, 2000, false), o, std::chrono::seconds(60));
  double fault_s = Seconds(Clock::now() - start);
  ASSERT_TRUE(silent.get().ok());
  EXPECT_NE(faulted.phase, sync::Phase::kRunning) << faulted.message;
  EXPECT_LT(fault_s, 30.0) << faulted.message;
  std::cout << "  after " << fault_s << " s: " << sync::Name(faulted.phase) << ": " << faulted.message << std::endl;
  const bool prune_tried = std::ranges::any_of(faulted.results, [](const auto& r) { return r.action == sync::Action::kPrune; });
  if (!direct_->Get({"v1", "Service", app, "web"}).ok()) {
    EXPECT_TRUE(prune_tried) << "the Service is gone although the sync never got to pruning it";
  }

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  sync::State after = SyncWithin(*client, Render(60, 2000, false), Opts(app), std::chrono::seconds(120));
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_EQ(after.phase, sync::Phase::kSucceeded) << after.message;
  EXPECT_EQ(direct_->Get({"v1", "Service", app, "web"}).status().code(), Code::kNotFound);
  RecordFault("apiserver-half-open-mid-sync",
              faulted.phase == sync::Phase::kSucceeded ? "finished-before-fault"
              : prune_tried                            ? "failed-after-full-read"
                                                       : "failed-no-prune",
              fault_s, recover_s);
}

// ---- Resource faults -----------------------------------------------------------------------------

// `gantry server` under RLIMIT_NOFILE 128 while 200 idle connections are opened to it: it runs out of
// descriptors. It must not crash, must say why in its log ("Too many open files"), and a request
// queued while it is out of descriptors is answered once the load drops (the idle connections are
// closed), within a few seconds.
TEST(ResourceFaultsTest, ServerOutOfDescriptorsSaysSoAndServesAgainWhenLoadDrops) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr) << "GANTRY_BINARY (set by CTest) names the gantry binary";
  testenv::ScopedTempDir tmp;
  // A server run as root runs CI steps as uid 65533, which must reach the data directory.
  std::filesystem::permissions(tmp.path(), std::filesystem::perms::owner_all | std::filesystem::perms::group_exec |
                                               std::filesystem::perms::others_exec);
  ProcessOptions git;
  git.inherit_env = true;
  ASSERT_TRUE(gantry::Run({"git", "init", "-q", "--bare", tmp.path() + "/repo.git"}, git).ok());
  const std::string token = "fault-admin-token-0123456789";
  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"HOOK", "hook-secret-0123456789"}, {"API_TOKEN", token}};
  po.rlimits = {{RLIMIT_NOFILE, 128}};
  const std::string log = tmp.path() + "/server.log";
  auto server = Process::Start({binary, "server", "--listen", "127.0.0.1:0", "--store", "sqlite:" + tmp.path() + "/gantry.db",
                                "--webhook-secret-env", "HOOK", "--api-token-env", "API_TOKEN", "--data-dir",
                                tmp.path() + "/data", "--allow-file-repos", "--repo", "file://" + tmp.path() + "/repo.git"},
                               po, log);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  int port = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(30); port == 0 && Clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::string text = ReadFile(log).value_or("");
    if (auto at = text.find("listening on 127.0.0.1:"); at != std::string::npos) {
      port = std::atoi(text.c_str() + at + std::string_view("listening on 127.0.0.1:").size());
    }
    ASSERT_TRUE(server->Running()) << "the server exited at start: " << text;
  }
  ASSERT_NE(port, 0) << ReadFile(log).value_or("");
  const std::string runs = fmt::format("http://127.0.0.1:{}/api/v1/runs", port);
  auto get = [&](int max_s) {
    ProcessOptions curl;
    curl.inherit_env = true;
    auto r = gantry::Run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", std::to_string(max_s),
                          "-H", "Authorization: Bearer " + token, runs}, curl);
    return r.ok() ? r->out : r.status().ToString();
  };
  ASSERT_EQ(get(10), "200");

  // 200 idle connections from 127.0.0.2-6, 40 from each: under the server's cap per address (64),
  // over its 128 descriptors.
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + static_cast<uint32_t>(i / 40));
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from), 0) << std::strerror(errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    idle.push_back(fd);
  }
  auto exhausted = Clock::now();
  // A request while the server has no descriptor left waits in the listen queue.
  auto queued = std::async(std::launch::async, [&] { return get(60); });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the schedule: the load lasts a second
  EXPECT_TRUE(server->Running()) << "the server died out of descriptors: " << ReadFile(log).value_or("");
  for (int fd : idle) ::close(fd);
  auto dropped = Clock::now();
  std::string answer = queued.get();
  double recover_s = Seconds(Clock::now() - dropped);
  EXPECT_EQ(answer, "200") << "the request queued while out of descriptors";
  EXPECT_EQ(get(10), "200");
  EXPECT_TRUE(server->Running()) << ReadFile(log).value_or("");
  std::string text = ReadFile(log).value_or("");
  EXPECT_NE(text.find("Too many open files"), std::string::npos) << "the log does not say why it stopped accepting:\n"
                                                                  << text;
  server->Stop(std::chrono::seconds(10));
  RecordFault("server-out-of-descriptors", answer == "200" ? "refused-then-served" : "unexpected",
              Seconds(dropped - exhausted), recover_s);
}

// ---- Registry --------------------------------------------------------------------------------

// Config + layers of the given sizes and a manifest, tagged `tag`; returns the manifest.
oci::Manifest WriteImage(const oci::Layout& layout, const std::vector<size_t>& sizes, const std::string& tag,
                         std::mt19937_64& random) {
  oci::Manifest m;
  m.media_type = std::string(oci::media::kOciManifest);
  value::Value diff_ids = value::Value::Seq();
  for (size_t size : sizes) {
    auto layer = layout.WriteBlob(RandomBytes(size, random), oci::media::kOciLayer);
    GANTRY_CHECK(layer.ok());
    m.layers.push_back(*layer);
    diff_ids.Append(layer->digest);
  }
  value::Value config = value::Value::Map();
  config.Set("architecture", "amd64");
  config.Set("os", "linux");
  value::Value rootfs = value::Value::Map();
  rootfs.Set("type", "layers");
  rootfs.Set("diff_ids", diff_ids);
  config.Set("rootfs", rootfs);
  auto c = layout.WriteBlob(value::ToJson(config), oci::media::kOciConfig);
  GANTRY_CHECK(c.ok());
  m.config = *c;
  auto d = layout.WriteBlob(oci::SerializeManifest(m), oci::media::kOciManifest);
  GANTRY_CHECK(d.ok());
  GANTRY_CHECK(layout.Tag(*d, tag).ok());
  return m;
}

class RegistryFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& server = testenv::Shared("registry.sh");
    host_ = server.Get("REGISTRY_HOST");
    auto listen = Toxi().CreateProxy("registry", host_);
    ASSERT_TRUE(listen.ok()) << listen.status().ToString();
    proxied_host_ = *listen;
    ASSERT_TRUE(Toxi().Reset().ok());
  }
  void TearDown() override { ASSERT_TRUE(Toxi().Reset().ok()); }

  std::unique_ptr<oci::Registry> Client(const std::string& host, std::chrono::seconds stall) {
    oci::RegistryOptions options;
    options.docker_config = "none";
    options.insecure_http_hosts = {host};
    options.connect_timeout = std::chrono::seconds(3);
    options.stall_timeout = stall;
    options.retry = {.initial = std::chrono::milliseconds(100), .max_attempts = 3};
    auto r = oci::NewHttpRegistry(options);
    GANTRY_CHECK(r.ok());
    return std::move(*r);
  }

  static oci::Reference Ref(const std::string& text) {
    auto r = oci::ParseReference(text);
    GANTRY_CHECK(r.ok());
    return *r;
  }

  // The invariant: the tag is either absent, or its manifest and every blob it names are present
  // (read directly, not through the proxy). Returns whether the manifest is visible.
  bool ExpectNoPartialManifest(const std::string& repo_tag, const oci::Manifest& m) {
    auto direct = Client(host_, std::chrono::seconds(30));
    auto head = direct->HeadManifest(Ref(host_ + "/" + repo_tag));
    EXPECT_TRUE(head.ok()) << head.status().ToString();
    if (!head.ok() || !head->has_value()) return false;
    std::vector<oci::Descriptor> blobs = m.layers;
    blobs.push_back(m.config);
    for (const auto& b : blobs) {
      auto stat = direct->StatBlob(Ref(host_ + "/" + repo_tag), b.digest);
      EXPECT_TRUE(stat.ok() && stat->has_value()) << "manifest visible without blob " << b.digest;
    }
    return true;
  }

  std::string host_, proxied_host_;
};

// Every connection to the registry is cut after a seeded 0.5-2.5 MB from Gantry (Toxiproxy
// limit_data upstream) while a 3 MiB layer is uploaded: the push fails, no manifest is visible, and
// a push without the fault completes it.
TEST_F(RegistryFaultsTest, CutMidBlobUploadLeavesNoManifest) {
  std::mt19937_64 random(Seed());
  testenv::ScopedTempDir tmp;
  auto layout = oci::Layout::Open(tmp.path() + "/src", true);
  ASSERT_TRUE(layout.ok());
  oci::Manifest m = WriteImage(*layout, {64 * 1024, 3 << 20}, "v1", random);
  std::string repo_tag = fmt::format("faults/reset-{}:v1", Seed());
  int64_t cut_after = 500'000 + static_cast<int64_t>(random() % 2'000'000);
  ASSERT_TRUE(Toxi().AddToxic("registry", {.name = "cut", .type = "limit_data", .stream = "upstream",
                                           .attributes = {{"bytes", cut_after}}}).ok());
  auto proxied = Client(proxied_host_, std::chrono::seconds(5));
  auto start = Clock::now();
  auto pushed = oci::PushImage(*proxied, *layout, "v1", Ref(proxied_host_ + "/" + repo_tag));
  double fault_s = Seconds(Clock::now() - start);
  EXPECT_FALSE(pushed.ok()) << "the push went through connections cut after " << cut_after << " bytes";
  std::cout << "  push under resets: " << pushed.status().ToString() << std::endl;
  EXPECT_FALSE(ExpectNoPartialManifest(repo_tag, m)) << "a manifest is visible after a failed push";

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  auto again = oci::PushImage(*proxied, *layout, "v1", Ref(proxied_host_ + "/" + repo_tag));
  double recover = Seconds(Clock::now() - healed);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(ExpectNoPartialManifest(repo_tag, m));
  RecordFault("registry-cut-mid-blob", pushed.ok() ? "pushed" : "failed-no-manifest", fault_s, recover);
}

// The upload is throttled to 128 KB/s, and after a seeded 0.5-1.5 s the registry goes silent (the
// proxy stops forwarding): the push fails within its stall timeout instead of hanging, no manifest
// is visible, and a retry completes it.
TEST_F(RegistryFaultsTest, BandwidthThenSilenceFailsWithinStallTimeout) {
  std::mt19937_64 random(Seed() + 1);
  testenv::ScopedTempDir tmp;
  auto layout = oci::Layout::Open(tmp.path() + "/src", true);
  ASSERT_TRUE(layout.ok());
  oci::Manifest m = WriteImage(*layout, {2 << 20}, "v1", random);
  std::string repo_tag = fmt::format("faults/stall-{}:v1", Seed());
  ASSERT_TRUE(Toxi().AddToxic("registry", {.name = "slow", .type = "bandwidth", .stream = "upstream",
                                           .attributes = {{"rate", 128}}}).ok());
  auto proxied = Client(proxied_host_, std::chrono::seconds(3));
  auto start = Clock::now();
  auto push = std::async(std::launch::async, [&] {
    return oci::PushImage(*proxied, *layout, "v1", Ref(proxied_host_ + "/" + repo_tag));
  });
  auto silence_after = std::chrono::milliseconds(500 + random() % 1000);
  if (push.wait_for(silence_after) == std::future_status::ready) FAIL() << "2 MiB at 128 KB/s took less than 1.5 s";
  ASSERT_TRUE(Toxi().AddToxic("registry", {.name = "silence", .type = "timeout", .stream = "upstream",
                                           .attributes = {{"timeout", 0}}}).ok());
  ASSERT_EQ(push.wait_for(std::chrono::seconds(90)), std::future_status::ready) << "the push hung";
  auto pushed = push.get();
  double took = Seconds(Clock::now() - start);
  EXPECT_FALSE(pushed.ok());
  std::cout << "  push under silence failed after " << took << " s: " << pushed.status().ToString() << std::endl;
  EXPECT_FALSE(ExpectNoPartialManifest(repo_tag, m));

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  auto again = oci::PushImage(*proxied, *layout, "v1", Ref(proxied_host_ + "/" + repo_tag));
  double recover = Seconds(Clock::now() - healed);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(ExpectNoPartialManifest(repo_tag, m));
  RecordFault("registry-bandwidth-then-timeout", pushed.ok() ? "pushed" : "failed-no-manifest", took, recover);
}

// Every blob in `layout` is whole: its content matches its digest (a write cut short by a fault
// must not leave a blob under its final name).
void ExpectBlobsWhole(const oci::Layout& layout) {
  const std::filesystem::path blobs = layout.dir() / "blobs" / "sha256";
  if (!std::filesystem::exists(blobs)) return;
  for (const auto& blob : std::filesystem::directory_iterator(blobs)) {
    auto read = layout.ReadBlob("sha256:" + blob.path().filename().string());
    EXPECT_TRUE(read.ok()) << "partial blob " << blob.path() << ": " << read.status().ToString();
  }
}

// An image layer (3 MiB) pulled into a layout on an 8 MB tmpfs that is full: the pull fails saying
// the disk is full, nothing is tagged and no partial blob is left under its name; once space is back
// the pull completes with every blob verified.
TEST_F(RegistryFaultsTest, FullDiskFailsALayerWriteAndThePullAfterSpaceReturnsCompletesIt) {
  testenv::SmallDisk disk;
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  std::mt19937_64 random(Seed() + 4);
  testenv::ScopedTempDir tmp;
  auto layout = oci::Layout::Open(tmp.path() + "/src", true);
  ASSERT_TRUE(layout.ok());
  oci::Manifest m = WriteImage(*layout, {64 << 10, 3 << 20}, "v1", random);
  std::string repo_tag = fmt::format("faults/enospc-{}:v1", Seed());
  auto direct = Client(host_, std::chrono::seconds(30));
  ASSERT_TRUE(oci::PushImage(*direct, *layout, "v1", Ref(host_ + "/" + repo_tag)).ok());
  auto onto = oci::Layout::Open(disk.dir() / "layout", true);
  ASSERT_TRUE(onto.ok()) << onto.status().ToString();

  std::filesystem::path filler = disk.Fill();
  auto start = Clock::now();
  auto pulled = oci::PullImage(*direct, Ref(host_ + "/" + repo_tag), *onto, "v1");
  double fault_s = Seconds(Clock::now() - start);
  EXPECT_FALSE(pulled.ok()) << "a 3 MiB layer was written to a full disk";
  std::cout << "  on the full disk: " << pulled.status().ToString() << std::endl;
  EXPECT_EQ(pulled.status().code(), Code::kResourceExhausted) << pulled.status().ToString();
  EXPECT_NE(pulled.status().message().find("No space left on device"), std::string::npos) << pulled.status().ToString();
  EXPECT_FALSE(onto->Find("v1").ok()) << "a failed pull tagged the image";
  ExpectBlobsWhole(*onto);

  std::filesystem::remove(filler);
  auto healed = Clock::now();
  auto again = oci::PullImage(*direct, Ref(host_ + "/" + repo_tag), *onto, "v1");
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (const auto& layer : m.layers) EXPECT_TRUE(onto->HasBlob(layer.digest)) << layer.digest;
  ExpectBlobsWhole(*onto);
  RecordFault("layer-write-enospc", pulled.ok() ? "pulled" : "failed-clearly-nothing-tagged", fault_s, recover_s);
}

// Both directions to the registry in slices of a seeded 16-256 bytes, every close delayed (slicer,
// slow_close): an image (1 MiB layer) pushes, the manifest and every blob are there, and it pulls
// back through the same proxy with every blob verified against its digest.
TEST_F(RegistryFaultsTest, SlicedStreamsAndSlowCloseStillPushAndPull) {
  std::mt19937_64 random(Seed() + 2);
  testenv::ScopedTempDir tmp;
  auto layout = oci::Layout::Open(tmp.path() + "/src", true);
  ASSERT_TRUE(layout.ok());
  oci::Manifest m = WriteImage(*layout, {64 * 1024, 1 << 20}, "v1", random);
  std::string repo_tag = fmt::format("faults/sliced-{}:v1", Seed());
  std::string what;
  auto sliced = testenv::CreateSlicedSlowCloseProxy(Toxi(), "registry-sliced", host_, random, what);
  ASSERT_TRUE(sliced.ok()) << sliced.status().ToString();
  auto proxied = Client(*sliced, std::chrono::seconds(10));
  auto start = Clock::now();
  auto pushed = oci::PushImage(*proxied, *layout, "v1", Ref(*sliced + "/" + repo_tag));
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  auto back = oci::Layout::Open(tmp.path() + "/back", true);
  ASSERT_TRUE(back.ok());
  auto pulled = oci::PullImage(*proxied, Ref(*sliced + "/" + repo_tag), *back, "v1");
  double took = Seconds(Clock::now() - start);
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  EXPECT_TRUE(ExpectNoPartialManifest(repo_tag, m));
  for (const auto& layer : m.layers) EXPECT_TRUE(back->ReadBlob(layer.digest).ok()) << layer.digest;
  std::cout << "  " << what << ": push and pull in " << took << " s" << std::endl;
  EXPECT_TRUE(Toxi().DeleteProxy("registry-sliced").ok());
  RecordFault("registry-sliced-slow-close", "pushed-and-pulled", took, 0);
}

// Half-open during a pull: the registry's answer is throttled to 256 KB/s and, a seeded 0.3-1 s in,
// goes silent while the requests still flow. The pull fails within its stall timeout (2 s, 3
// attempts), nothing is tagged in the layout and every blob it holds is whole (verified); the pull
// after the fault completes.
TEST_F(RegistryFaultsTest, HalfOpenMidPullFailsWithinStallTimeoutAndTagsNothing) {
  std::mt19937_64 random(Seed() + 3);
  testenv::ScopedTempDir tmp;
  auto layout = oci::Layout::Open(tmp.path() + "/src", true);
  ASSERT_TRUE(layout.ok());
  oci::Manifest m = WriteImage(*layout, {3 << 20}, "v1", random);
  std::string repo_tag = fmt::format("faults/half-open-{}:v1", Seed());
  auto direct = Client(host_, std::chrono::seconds(30));
  ASSERT_TRUE(oci::PushImage(*direct, *layout, "v1", Ref(host_ + "/" + repo_tag)).ok());
  auto back = oci::Layout::Open(tmp.path() + "/back", true);
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(Toxi().AddToxic("registry", {.name = "slow", .type = "bandwidth", .attributes = {{"rate", 256}}}).ok());
  auto silent = testenv::GoHalfOpenAfter(Toxi(), "registry", std::chrono::milliseconds(300 + random() % 700));
  std::shared_ptr<oci::Registry> proxied = Client(proxied_host_, std::chrono::seconds(2));
  const oci::Reference src = Ref(proxied_host_ + "/" + repo_tag);
  auto start = Clock::now();
  auto pulled = testenv::RunWithin<Status>(std::chrono::seconds(90), [proxied, src, dst = *back] {
    return oci::PullImage(*proxied, src, dst, "v1").status();
  });
  double fault_s = Seconds(Clock::now() - start);
  ASSERT_TRUE(silent.get().ok());
  ASSERT_TRUE(pulled.has_value()) << "the pull from a half-open registry did not return within 90 s";
  EXPECT_FALSE(pulled->ok()) << "3 MiB at 256 KB/s came through before the silence";
  std::cout << "  after " << fault_s << " s: " << pulled->ToString() << std::endl;
  EXPECT_FALSE(back->Find("v1").ok()) << "a failed pull tagged the image";
  ExpectBlobsWhole(*back);

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  auto again = oci::PullImage(*proxied, src, *back, "v1");
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (const auto& layer : m.layers) EXPECT_TRUE(back->ReadBlob(layer.digest).ok()) << layer.digest;
  RecordFault("registry-half-open-mid-pull", pulled->ok() ? "pulled" : "failed-nothing-tagged", fault_s, recover_s);
}

}  // namespace
}  // namespace gantry
