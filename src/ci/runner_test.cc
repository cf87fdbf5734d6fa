// Runner + ProcessExecutor end to end on the local machine (bubblewrap when it works here, the
// host otherwise), with a SQLite store in a temp dir. No servers needed.

#include "ci/runner.h"

#include <dirent.h>
#include <stdlib.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/path.h"

namespace gantry::ci {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using store::RunState;

struct Env {
  Env() {
    std::string t = (fs::temp_directory_path() / "gantry-ci-test-XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
    root = t;
    auto ex = NewProcessExecutor({.sandbox = true});
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
  fs::path root;
  int n = 0;
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

}  // namespace
}  // namespace gantry::ci
