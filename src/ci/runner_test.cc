// Runner + ProcessExecutor end to end on the local machine (bubblewrap when it works here, the
// host otherwise), with a SQLite store in a temp dir. No servers needed.

#include "ci/runner.h"

#include <dirent.h>
#include <stdlib.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/hash.h"
#include "base/path.h"

namespace gantry::ci {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using store::RunState;

struct Env {
  // sandbox = false: on the host, for tests of what the runner itself does on the host (copies).
  explicit Env(bool sandbox = true) {
    std::string t = (fs::temp_directory_path() / "gantry-ci-test-XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
    root = t;
    auto ex = NewProcessExecutor({.sandbox = sandbox});
    if (!ex.ok()) ex = NewProcessExecutor({.sandbox = false});
    executor = std::move(ex).value();
    auto s = store::Open("sqlite:" + (root / "gantry.db").string());
    GANTRY_CHECK(s.ok());
    st = std::move(s).value();
  }
  ~Env() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  Result<RunResult> Run(const std::string& yaml, std::map<std::string, std::string> secrets = {},
                        std::string* live = nullptr, int64_t* run_id = nullptr) {
    auto p = ParsePipeline(yaml, "p.yaml");
    if (!p.ok()) return p.status();
    pipeline = *p;
    fs::path ws = root / ("ws" + std::to_string(++n));
    fs::create_directories(ws);
    store::Run r;
    r.pipeline = "test";
    auto id = st->CreateRun(r);
    GANTRY_CHECK(id.ok());
    if (run_id) *run_id = *id;
    RunOptions o;
    o.workspace = ws;
    o.run_dir = root / ("run" + std::to_string(n));
    o.cache_root = root / "cache";
    o.secrets = std::move(secrets);
    o.store = st.get();
    o.run_id = *id;
    o.on_progress = [live](const Progress& pr) {
      if (live && pr.kind == Progress::Kind::kOutput) *live += pr.data;
    };
    if (configure) configure(o);
    Runner runner(pipeline, *executor, o);
    return runner.Run();
  }
  const StepResult& Step(const RunResult& r, std::string_view name) {
    for (const auto& s : r.steps) {
      if (s.name == name) return s;
    }
    GANTRY_CHECK(false);
    return r.steps[0];
  }
  // The stored log of one step.
  std::string Log(int64_t run_id, const std::string& step) {
    auto chunks = st->ReadLog(run_id, step, 0, 100000);
    GANTRY_CHECK(chunks.ok());
    std::string out;
    for (const auto& c : *chunks) out += c.data;
    return out;
  }
  fs::path root;
  int n = 0;
  std::function<void(RunOptions&)> configure;  // applied to every run's options
  Pipeline pipeline;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<store::Store> st;
};

TEST(Runner, IndependentStepsRunInParallelAndNeedsAreOrdered) {
  Env env;
  // a and b each wait for the other to have started: only parallel execution succeeds.
  auto r = env.Run(R"(
shell: sh
steps:
  a:
    run: touch a.started; i=0; while [ ! -e b.started ]; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done
  b:
    run: touch b.started; i=0; while [ ! -e a.started ]; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done
  c:
    needs: [a, b]
    run: test -e a.started && test -e b.started && echo ok > c.done
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->state, RunState::kSucceeded);
  EXPECT_EQ(env.Step(*r, "c").state, RunState::kSucceeded);
}

TEST(Runner, FailurePropagatesAndWhenSkips) {
  Env env;
  auto r = env.Run(R"(
steps:
  bad: {run: [sh, -c, "exit 3"]}
  after-bad: {run: ["true"], needs: [bad]}
  after-after: {run: ["true"], needs: [after-bad]}
  independent: {run: ["true"]}
  only-tags: {run: ["true"], when: {events: [tag]}}
  after-skipped: {run: ["true"], needs: [only-tags]}
)");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kFailed);
  EXPECT_EQ(env.Step(*r, "bad").exit_code, 3);
  EXPECT_EQ(env.Step(*r, "after-bad").state, RunState::kSkipped);
  EXPECT_THAT(env.Step(*r, "after-bad").message, HasSubstr("needs bad (failed)"));
  EXPECT_EQ(env.Step(*r, "after-after").state, RunState::kSkipped);
  EXPECT_EQ(env.Step(*r, "independent").state, RunState::kSucceeded);
  EXPECT_EQ(env.Step(*r, "only-tags").state, RunState::kSkipped);
  EXPECT_EQ(env.Step(*r, "after-skipped").state, RunState::kSkipped);
}

TEST(Runner, RetryRunsAgain) {
  Env env;
  auto r = env.Run("steps:\n  flaky: {run: [sh, -c, 'test -e once && exit 0; touch once; exit 1'], retry: 2}\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded);
  EXPECT_EQ(env.Step(*r, "flaky").attempts, 2);
}

TEST(Runner, TheStoreKeepsEachStepsNeedsAndAttempts) {
  Env env;
  int64_t id = 0;
  auto r = env.Run("steps:\n  flaky: {run: [sh, -c, 'test -e once && exit 0; touch once; exit 1'], retry: 2}\n"
                   "  after: {run: [\"true\"], needs: [flaky]}\n",
                   {}, nullptr, &id);
  ASSERT_TRUE(r.ok());
  auto run = env.st->GetRun(id);
  ASSERT_TRUE(run.ok());
  ASSERT_EQ(run->steps.size(), 2u);
  EXPECT_EQ(run->steps[0].name, "flaky");
  EXPECT_TRUE(run->steps[0].needs.empty());
  EXPECT_EQ(run->steps[0].attempts, 2);
  EXPECT_EQ(run->steps[1].needs, std::vector<std::string>{"flaky"});
  EXPECT_EQ(run->steps[1].attempts, 1);
}

TEST(Runner, CanarySecretNeverInStoredOrStreamedLog) {
  Env env;
  const std::string canary = "canary-7f3a/9b+c d\"q";
  std::string live;
  int64_t id = 0;
  auto r = env.Run(R"(
shell: bash
steps:
  leak:
    secrets: [CANARY]
    run: |
      echo "raw: $CANARY"
      printf '%s' "$CANARY" | base64
      echo "$CANARY" | base64
      printf 'x%s' "$CANARY" | base64 -w0; echo
      printf 'xy%s' "$CANARY" | base64 -w0; echo
      printf '%s' "$CANARY" | od -An -tx1 | tr -d ' \n' | sed 's/../%&/g'; echo
      python3 -c 'import json,os,urllib.parse as u; v=os.environ["CANARY"]; print(json.dumps(v)); print(u.quote(v, safe="")); print(u.quote_plus(v))' 2>/dev/null || true
      # split across two writes
      printf '%s' "${CANARY:0:5}"; sleep 0.3; printf '%s\n' "${CANARY:5}"
)", {{"CANARY", canary}}, &live, &id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded) << live;
  auto chunks = env.st->ReadLog(id, "leak", 0, 1000);
  ASSERT_TRUE(chunks.ok());
  std::string stored;
  for (const auto& c : *chunks) stored += c.data;
  EXPECT_EQ(stored, live);
  EXPECT_THAT(stored, HasSubstr("raw: ***"));
  std::vector<std::string> forms = {canary, Base64Encode(canary), "canary-7f3a%2F9b", "7f3a/9b+c d\\\""};
  for (const auto& f : forms) {
    EXPECT_EQ(stored.find(f), std::string::npos) << f << "\n" << stored;
    EXPECT_EQ(live.find(f), std::string::npos) << f;
  }
  EXPECT_EQ(stored.find("canar"), std::string::npos) << stored;  // the split write
}

TEST(Runner, WritingOutsideTheWorkspaceFails) {
  Env env;
  if (env.executor->name() != "process (bubblewrap)") GTEST_SKIP() << "bubblewrap does not work here";
  std::string target = (env.root / "outside").string();
  auto r = env.Run("steps:\n  escape: {run: [sh, -c, 'echo x > " + target + " || exit 9; touch /usr/evil || exit 8']}\n"
                   "  inside: {run: [sh, -c, 'echo x > $GANTRY_WORKSPACE/ok']}\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(env.Step(*r, "escape").exit_code, 9);
  EXPECT_FALSE(fs::exists(target));
  EXPECT_EQ(env.Step(*r, "inside").state, RunState::kSucceeded);
}

bool ProcessWithArgRunning(const std::string& needle) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), {});
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(needle) != std::string::npos && cmd.find("sleep") == 0) return true;
  }
  return false;
}

TEST(Runner, TimeoutKillsTheWholeTree) {
  Env env;
  auto r = env.Run("steps:\n  slow:\n    timeout: 1s\n    run: [sh, -c, 'sleep 4321.5 & (sleep 4321.5 &) ; sleep 4321.5']\n");
  ASSERT_TRUE(r.ok());
  const auto& s = env.Step(*r, "slow");
  EXPECT_EQ(s.state, RunState::kFailed);
  EXPECT_THAT(s.message, HasSubstr("timed out"));
  // The tree dies with the step; give the kernel a moment to reap.
  for (int i = 0; i < 50 && ProcessWithArgRunning("4321.5"); ++i) usleep(100000);
  EXPECT_FALSE(ProcessWithArgRunning("4321.5"));
}

TEST(Runner, CancelKillsChildren) {
  Env env;
  auto p = ParsePipeline("steps:\n  long: {run: [sh, -c, 'sleep 4322.5 & sleep 4322.5']}\n  next: {run: ['true'], needs: [long]}\n");
  ASSERT_TRUE(p.ok());
  fs::path ws = env.root / "wsc";
  fs::create_directories(ws);
  Runner runner(*p, *env.executor, {.workspace = ws, .run_dir = env.root / "runc"});
  std::thread t([&] {
    for (int i = 0; i < 100 && !ProcessWithArgRunning("4322.5"); ++i) usleep(50000);
    runner.Cancel();
  });
  auto r = runner.Run();
  t.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kCancelled);
  EXPECT_EQ(r->steps[1].state, RunState::kSkipped);
  for (int i = 0; i < 50 && ProcessWithArgRunning("4322.5"); ++i) usleep(100000);
  EXPECT_FALSE(ProcessWithArgRunning("4322.5"));
}

TEST(Runner, CacheAcrossRunsAndArtifactsAcrossSteps) {
  Env env;
  const std::string yaml = R"(
shell: sh
steps:
  build:
    cache: {key: deps-v1, paths: [.deps]}
    artifacts: ["out/*.txt"]
    run: |
      if [ -e .deps/fetched ]; then echo cache-hit; else echo cache-miss; mkdir -p .deps; date > .deps/fetched; fi
      mkdir -p out && echo built > out/app.txt && echo no > out/skip.bin
  use:
    needs: [build]
    run: cat "$GANTRY_ARTIFACTS/build/out/app.txt"; test ! -e "$GANTRY_ARTIFACTS/build/out/skip.bin"
)";
  std::string live1, live2;
  auto r1 = env.Run(yaml, {}, &live1);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->state, RunState::kSucceeded) << live1;
  EXPECT_THAT(live1, HasSubstr("cache-miss"));
  EXPECT_THAT(live1, HasSubstr("built"));
  auto r2 = env.Run(yaml, {}, &live2);  // a fresh workspace
  ASSERT_TRUE(r2.ok());
  EXPECT_THAT(live2, HasSubstr("cache-hit"));
}

TEST(Runner, MissingSecretFailsTheStep) {
  Env env;
  auto r = env.Run("steps:\n  s: {run: ['true'], secrets: [NOPE]}\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kFailed);
  EXPECT_THAT(env.Step(*r, "s").message, HasSubstr("secret NOPE is not configured"));
}

// Trusted runs of "repo" and runs of a fork of it, with caches of .deps/v.
RunOptions& Trusted(RunOptions& o) {
  o.cache_repository = "https://git.example/org/app.git";
  o.trusted = true;
  return o;
}
RunOptions& Fork(RunOptions& o, const std::string& source = "https://git.example/mallory/app.git") {
  Trusted(o).trusted = false;
  o.cache_source = source;
  return o;
}
std::string CacheStep(const std::string& value) {
  return "shell: sh\nsteps:\n  s:\n    cache: {key: deps, paths: [.deps]}\n    run: |\n"
         "      echo \"seen: $(cat .deps/v 2>/dev/null || echo none)\"; mkdir -p .deps; echo " + value + " > .deps/v\n";
}

TEST(Runner, ForkRunCannotPoisonTheTrustedCache) {
  Env env;
  std::string live;
  env.configure = [](RunOptions& o) { Trusted(o); };
  ASSERT_TRUE(env.Run(CacheStep("trusted"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: none"));
  env.configure = [](RunOptions& o) { Fork(o); };
  live.clear();
  auto fork = env.Run(CacheStep("poisoned"), {}, &live);
  ASSERT_TRUE(fork.ok());
  EXPECT_EQ(fork->state, RunState::kSucceeded) << live;
  EXPECT_THAT(live, HasSubstr("gantry: cache deps saved"));
  // The next trusted run still gets what a trusted run saved.
  env.configure = [](RunOptions& o) { Trusted(o); };
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("trusted"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: trusted"));
  EXPECT_THAT(live, Not(HasSubstr("poisoned")));
}

TEST(Runner, UntrustedRunReadsTheTrustedCache) {
  Env env;
  std::string live;
  env.configure = [](RunOptions& o) { Trusted(o); };
  ASSERT_TRUE(env.Run(CacheStep("trusted"), {}, &live).ok());
  // A fork's first run starts from the trusted cache; its later runs from what it saved itself;
  // another fork still from the trusted one.
  env.configure = [](RunOptions& o) { Fork(o); };
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("fork-1"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: trusted"));
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("fork-2"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: fork-1"));
  env.configure = [](RunOptions& o) { Fork(o, "https://git.example/other/app.git"); };
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("other"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: trusted"));
  // Another repository shares nothing with this one; a local run (no repository) neither.
  env.configure = [](RunOptions& o) { o.cache_repository = "https://git.example/org/other.git"; };
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("x"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: none"));
  env.configure = nullptr;
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("local"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: none"));
  live.clear();
  ASSERT_TRUE(env.Run(CacheStep("local"), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("seen: local"));
}

// Records what the runner asks for and succeeds without running anything.
class RecordingExecutor : public Executor {
 public:
  Result<StepOutcome> Run(const StepRequest& request, const OutputFn& output, const std::atomic<bool>&) override {
    std::lock_guard<std::mutex> lock(mu);
    requests[request.step] = request;
    output("ran\n");
    return StepOutcome{.exit_code = 0};
  }
  std::string WorkspacePath(const fs::path& host) const override { return host.string(); }
  std::string ArtifactsPath(const fs::path& host) const override { return host.string(); }
  std::string_view name() const override { return "recording"; }
  bool Isolates() const override { return true; }
  std::mutex mu;
  std::map<std::string, StepRequest> requests;
};

TEST(Runner, UntrustedRunHasNoNetwork) {
  Env env;
  auto recording = std::make_unique<RecordingExecutor>();
  RecordingExecutor* rec = recording.get();
  env.executor = std::move(recording);
  const std::string yaml = "steps:\n  online: {run: ['true']}\n  offline: {run: ['true'], network: false}\n";
  int64_t id = 0;
  ASSERT_TRUE(env.Run(yaml).ok());
  EXPECT_TRUE(rec->requests["online"].network);
  env.configure = [](RunOptions& o) { Fork(o).allow_network = false; };
  ASSERT_TRUE(env.Run(yaml, {}, nullptr, &id).ok());
  EXPECT_FALSE(rec->requests["online"].network);
  EXPECT_FALSE(rec->requests["offline"].network);
  EXPECT_THAT(env.Log(id, "online"), HasSubstr("gantry: network off for this run (untrusted)\n"));
  EXPECT_THAT(env.Log(id, "offline"), Not(HasSubstr("network off")));

  // And in the real sandbox, where there is one: the step sees no interface but loopback.
  Env real;
  if (real.executor->name() != "process (bubblewrap)") GTEST_SKIP() << "bubblewrap does not work here";
  real.configure = [](RunOptions& o) { Fork(o).allow_network = false; };
  std::string live;
  auto r = real.Run("shell: sh\nsteps:\n  s:\n    run: tail -n +3 /proc/net/dev | cut -d':' -f1 | tr -d ' ' | sed 's/^/iface=/'\n",
                    {}, &live);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded) << live;
  EXPECT_THAT(live, HasSubstr("iface=lo\n"));
  EXPECT_EQ(live.find("iface="), live.rfind("iface=")) << live;
}

TEST(Runner, StepTimeoutIsCappedForTheRun) {
  Env env;
  auto recording = std::make_unique<RecordingExecutor>();
  RecordingExecutor* rec = recording.get();
  env.executor = std::move(recording);
  env.configure = [](RunOptions& o) { o.max_step_timeout = std::chrono::minutes(10); };
  int64_t id = 0;
  ASSERT_TRUE(env.Run("steps:\n  long: {run: ['true'], timeout: 2h}\n  short: {run: ['true'], timeout: 90s}\n", {},
                      nullptr, &id).ok());
  EXPECT_EQ(rec->requests["long"].timeout, std::chrono::minutes(10));
  EXPECT_EQ(rec->requests["short"].timeout, std::chrono::seconds(90));
  EXPECT_THAT(env.Log(id, "long"), HasSubstr("gantry: timeout 7200s capped at 600s for this run\n"));
  EXPECT_THAT(env.Log(id, "short"), Not(HasSubstr("capped")));
}

// Takes `took` on the clock for every step, without sleeping.
class SlowExecutor : public RecordingExecutor {
 public:
  SlowExecutor(Clock& clock, std::chrono::milliseconds took) : clock_(clock), took_(took) {}
  Result<StepOutcome> Run(const StepRequest& request, const OutputFn& output, const std::atomic<bool>& cancel) override {
    clock_.SleepFor(took_);
    return RecordingExecutor::Run(request, output, cancel);
  }

 private:
  Clock& clock_;
  const std::chrono::milliseconds took_;
};

TEST(Runner, DurationsAreMeasuredOnItsClock) {
  Env env;
  FakeClock clock;
  env.executor = std::make_unique<SlowExecutor>(clock, std::chrono::seconds(90));
  env.configure = [&](RunOptions& o) { o.clock = &clock; };
  auto r = env.Run("steps:\n  a: {run: ['true']}\n  b: {run: ['true'], needs: [a]}\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->state, RunState::kSucceeded);
  EXPECT_EQ(env.Step(*r, "a").duration, std::chrono::seconds(90));
  EXPECT_EQ(env.Step(*r, "b").duration, std::chrono::seconds(90));
  EXPECT_EQ(r->duration, std::chrono::seconds(180));
}

// The step's timeout runs on the executor's clock: moved past it, the step ends at once although
// its process would still run for ten minutes.
TEST(ProcessExecutor, TimeoutIsMeasuredOnItsClock) {
  Env env(/*sandbox=*/false);
  FakeClock clock;
  auto executor = NewProcessExecutor({.sandbox = false, .clock = &clock});
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  StepRequest r;
  r.step = "slow";
  r.argv = {"sh", "-c", "echo started; exec sleep 600"};
  r.env = {{"PATH", "/usr/bin:/bin"}};
  r.workspace = env.root;
  r.timeout = std::chrono::minutes(10);
  std::string out;
  std::atomic<bool> cancel{false};
  auto outcome = (*executor)->Run(r, [&](std::string_view d) {
    out += d;
    if (out == "started\n") clock.Advance(std::chrono::minutes(11));
  }, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_TRUE(outcome->timed_out) << outcome->Describe();
  EXPECT_GE(outcome->duration, std::chrono::minutes(11));
}

// A directory outside the workspace with a canary file, which no host-side copy may touch.
struct Outside {
  explicit Outside(const Env& env) : dir(env.root / "outside") {
    fs::create_directories(dir);
    std::ofstream(dir / "canary.txt") << kCanary;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
  }
  static constexpr const char* kCanary = "host-canary-5d41402abc";
  fs::path dir;
};

TEST(Runner, CacheRestoreDoesNotWriteThroughAPlantedSymlink) {
  Env env(/*sandbox=*/false);
  Outside outside(env);
  std::string live;
  auto r = env.Run("shell: sh\nsteps:\n"
                   "  a: {cache: {key: k, paths: [x]}, run: 'mkdir -p x && echo cached > x/file'}\n"
                   "  b: {needs: [a], run: 'rm -rf x && ln -s " + outside.dir.string() + " x'}\n"
                   "  c: {needs: [b], cache: {key: k, paths: [x]}, run: 'true'}\n", {}, &live);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded) << live;
  EXPECT_THAT(outside.Names(), ::testing::ElementsAre("canary.txt"));
  EXPECT_THAT(live, HasSubstr("gantry: cache k not restored: " + (env.root / "ws1" / "x").string() +
                              " is a symbolic link"));
}

// Every regular file under `dir` (links are not followed), concatenated.
std::string AllFileContents(const fs::path& dir) {
  std::string all;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file() && !it->is_symlink()) all += *ReadFile(it->path());
  }
  return all;
}

TEST(Runner, CacheSaveDoesNotReadThroughASymlinkToTheHost) {
  Env env(/*sandbox=*/false);
  Outside outside(env);
  std::string canary_from_root = (outside.dir / "canary.txt").string().substr(1);
  std::string live;
  // x -> /, cached as x/<the canary's absolute path>; y/up -> the canary's directory, cached as y/up/canary.txt;
  // z holds a link to the canary, cached as a whole.
  auto r = env.Run("shell: sh\nsteps:\n  s:\n    cache:\n"
                   "      - {key: root, paths: [x/" + canary_from_root + "]}\n"
                   "      - {key: up, paths: [y/up/canary.txt]}\n"
                   "      - {key: tree, paths: [z]}\n"
                   "    run: ln -s / x; mkdir y z; ln -s " + outside.dir.string() + " y/up; ln -s " +
                   (outside.dir / "canary.txt").string() + " z/leak\n", {}, &live);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded) << live;
  EXPECT_THAT(live, HasSubstr("gantry: cache root not saved: " + (env.root / "ws1" / "x").string() + " is a symbolic link"));
  EXPECT_THAT(live, HasSubstr("gantry: cache up not saved: " + (env.root / "ws1" / "y" / "up").string() + " is a symbolic link"));
  EXPECT_THAT(live, HasSubstr("gantry: cache tree saved"));
  EXPECT_EQ(AllFileContents(env.root / "cache").find(Outside::kCanary), std::string::npos);
}

TEST(Runner, ArtifactCopyDoesNotFollowASymlink) {
  // Step "swap" waits until the runner has started copying the artifacts of "make" (the first one
  // appears in $GANTRY_ARTIFACTS: no sandbox here), then replaces out/ by a link to a directory of
  // canaries with the same names: each later copy must be refused, never a canary.
  Env env(/*sandbox=*/false);
  Outside outside(env);
  for (int i = 0; i < 2000; ++i) std::ofstream(outside.dir / fmt::format("f{}.txt", i)) << Outside::kCanary;
  std::string live;
  auto r = env.Run(R"(shell: bash
steps:
  make:
    artifacts: ["out/*.txt"]
    run: while [ ! -e ready ]; do sleep 0.01; done
  swap:
    run: |
      mkdir out; for i in $(seq 0 1999); do echo real > out/f$i.txt; done
      perl -e 'open(F, ">ready"); close(F); my $end = time + 10;
               until (-d "$ENV{GANTRY_ARTIFACTS}/make/out" || time > $end) {}
               rename("out", "real"); symlink(")" + outside.dir.string() + R"(", "out");'
)", {}, &live);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded) << live;
  fs::path kept = env.root / "run1" / "artifacts" / "make";
  ASSERT_TRUE(fs::exists(kept)) << live;
  EXPECT_EQ(AllFileContents(kept).find(Outside::kCanary), std::string::npos);
}

TEST(Runner, LogIsTruncatedAtTheRunBudget) {
  Env env;
  env.configure = [](RunOptions& o) { o.max_log_bytes = 1000; };
  int64_t id = 0;
  auto r = env.Run("shell: sh\nsteps:\n"
                   "  loud: {run: 'for i in $(seq 1 500); do echo line-$i; done; echo finished > done'}\n"
                   "  after: {needs: [loud], run: 'echo more; test -e done'}\n", {}, nullptr, &id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded);  // the step kept running to the end
  std::string loud = env.Log(id, "loud"), after = env.Log(id, "after");
  const std::string line = "gantry: log truncated at 1000 bytes\n";
  EXPECT_THAT(loud, HasSubstr("line-1\n"));
  EXPECT_THAT(loud, Not(HasSubstr("line-500")));
  ASSERT_GE(loud.size(), line.size());
  EXPECT_EQ(loud.substr(loud.size() - line.size()), line);
  EXPECT_LE(loud.size(), 1000 + 1 + line.size());
  EXPECT_EQ(after, line);  // the budget is the run's: nothing more, said once
}

// Issue 12, finding 11: nothing bounded what a run could leave on the server's disk.
TEST(Runner, AWorkspaceAboveItsLimitFailsTheStepAndTheRun) {
  Env env;
  env.configure = [](RunOptions& o) { o.max_workspace_bytes = 100000; };
  int64_t id = 0;
  auto r = env.Run("shell: sh\nsteps:\n"
                   "  small: {run: 'head -c 50000 /dev/zero > a'}\n"
                   "  big: {needs: [small], run: 'head -c 60000 /dev/zero > b'}\n"
                   "  never: {needs: [big], run: 'echo ran'}\n", {}, nullptr, &id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kFailed);
  EXPECT_EQ(env.Step(*r, "small").state, RunState::kSucceeded);
  EXPECT_EQ(env.Step(*r, "big").state, RunState::kFailed);
  EXPECT_THAT(env.Step(*r, "big").message, HasSubstr("the workspace holds 110000 bytes after this step, above the limit of 100000"));
  EXPECT_EQ(env.Step(*r, "never").state, RunState::kSkipped);
}

TEST(Runner, ArtifactsStopAtTheRunsLimit) {
  Env env;
  env.configure = [](RunOptions& o) { o.max_artifact_bytes = 25000; };
  int64_t id = 0;
  auto r = env.Run("shell: sh\nsteps:\n"
                   "  one: {run: 'head -c 10000 /dev/zero > out1', artifacts: [out1]}\n"
                   "  two: {needs: [one], run: 'head -c 10000 /dev/zero > out2', artifacts: [out2]}\n"
                   "  three: {needs: [two], run: 'head -c 10000 /dev/zero > out3', artifacts: [out3]}\n",
                   {}, nullptr, &id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, RunState::kSucceeded);  // a file not kept is said, not a failure
  fs::path artifacts = env.root / ("run" + std::to_string(env.n)) / "artifacts";
  EXPECT_TRUE(fs::exists(artifacts / "one" / "out1"));
  EXPECT_TRUE(fs::exists(artifacts / "two" / "out2"));
  EXPECT_FALSE(fs::exists(artifacts / "three" / "out3"));
  EXPECT_THAT(env.Log(id, "three"), HasSubstr("artifact out3 not kept"));
}

TEST(Runner, CacheQuotaEvictsTheLeastRecentlyUsed) {
  Env env;
  auto entry = [&](const std::string& key, bool trusted = true) {
    fs::path repo = env.root / "cache" / Sha256Hex("https://git.example/org/app.git").substr(0, 24);
    fs::path scope = trusted ? repo / "trusted" : repo / "untrusted" / Sha256Hex("https://git.example/mallory/app.git").substr(0, 24);
    return scope / Sha256Hex("pipeline" + std::string(1, '\0') + key).substr(0, 24);
  };
  auto save = [&](const std::string& key, int bytes) {
    return "shell: sh\nsteps:\n  s:\n    cache: {key: " + key + ", paths: [d]}\n    run: mkdir -p d; head -c " +
           std::to_string(bytes) + " /dev/zero > d/f\n";
  };
  std::string live;
  env.configure = [](RunOptions& o) { Trusted(o).cache_quota_bytes = 3000; };
  ASSERT_TRUE(env.Run(save("k1", 1000)).ok());
  ASSERT_TRUE(env.Run(save("k2", 1000)).ok());
  ASSERT_TRUE(env.Run(save("k1", 1000)).ok());  // restores k1: now more recently used than k2
  ASSERT_TRUE(env.Run(save("k3", 1500), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("gantry: cache quota of 3000 bytes: removed 1 least recently used cache(s)"));
  EXPECT_TRUE(fs::exists(entry("k1")));
  EXPECT_FALSE(fs::exists(entry("k2")));
  EXPECT_TRUE(fs::exists(entry("k3")));
  // A fork's caches go first, however recent: it cannot push the trusted ones out.
  env.configure = [](RunOptions& o) { Fork(o).cache_quota_bytes = 3000; };
  ASSERT_TRUE(env.Run(save("f1", 400)).ok());
  EXPECT_TRUE(fs::exists(entry("f1", false)));
  ASSERT_TRUE(env.Run(save("f2", 400)).ok());  // 3300 bytes: f1 goes, although k1 is older
  EXPECT_FALSE(fs::exists(entry("f1", false)));
  EXPECT_TRUE(fs::exists(entry("f2", false)));
  EXPECT_TRUE(fs::exists(entry("k1")));
  EXPECT_TRUE(fs::exists(entry("k3")));
  // A cache larger than the whole quota is not saved at all.
  live.clear();
  ASSERT_TRUE(env.Run(save("huge", 4000), {}, &live).ok());
  EXPECT_THAT(live, HasSubstr("gantry: cache huge not saved: copy of"));
  EXPECT_FALSE(fs::exists(entry("huge", false)));
}

}  // namespace
}  // namespace gantry::ci
