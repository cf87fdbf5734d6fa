// Runner driven one Step() at a time on a fake executor whose steps end when the test says so:
// the order of work, the state between steps, Cancel() between steps. No processes, no store.

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "ci/runner.h"
#include "test/fakes/refusing_recorder.h"

namespace gantry::ci {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using store::RunState;

// Runs nothing: a step's Run() returns when the test ends the step with End(), or cancelled when
// the run's cancel flag is set first. Thread-safe.
class GatedExecutor : public Executor {
 public:
  Result<StepOutcome> Run(const StepRequest& request, const OutputFn& output, const std::atomic<bool>& cancel) override {
    MutexLock lock(mu_);
    started_.push_back(request.step);
    for (;;) {
      if (auto it = outcomes_.find(request.step); it != outcomes_.end()) {
        StepOutcome o = it->second;
        outcomes_.erase(it);
        output("ran " + request.step + "\n");
        return o;
      }
      if (cancel.load()) {
        cancelled_.push_back(request.step);
        return StepOutcome{.cancelled = true};
      }
      cv_.WaitFor(mu_, std::chrono::milliseconds(5));  // `cancel` notifies nobody: poll it
    }
  }
  // Ends the (next attempt of the) step with exit code `code`.
  void End(const std::string& step, int code = 0) {
    MutexLock lock(mu_);
    outcomes_[step] = StepOutcome{.exit_code = code};
    cv_.NotifyAll();
  }
  std::vector<std::string> started() {
    MutexLock lock(mu_);
    return started_;
  }
  std::vector<std::string> cancelled() {
    MutexLock lock(mu_);
    return cancelled_;
  }
  std::string WorkspacePath(const fs::path& host) const override { return host.string(); }
  std::string ArtifactsPath(const fs::path& host) const override { return host.string(); }
  std::string_view name() const override { return "gated"; }
  bool Isolates() const override { return true; }

 private:
  Mutex mu_;
  CondVar cv_;
  std::map<std::string, StepOutcome> outcomes_ GUARDED_BY(mu_);
  std::vector<std::string> started_ GUARDED_BY(mu_);
  std::vector<std::string> cancelled_ GUARDED_BY(mu_);
};

class RunnerStepTest : public ::testing::Test {
 protected:
  RunnerStepTest() {
    std::string t = (fs::temp_directory_path() / "gantry-ci-step-test-XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
    root_ = t;
    fs::create_directories(root_ / "ws");
  }
  ~RunnerStepTest() override {
    runner_.reset();  // its step threads first
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  Runner& Start(const std::string& yaml, int parallelism = 4) {
    auto p = ParsePipeline(yaml, "p.yaml");
    GANTRY_CHECK(p.ok());
    pipeline_ = *p;
    RunOptions o{.workspace = root_ / "ws", .run_dir = root_ / "run", .parallelism = parallelism};
    o.on_progress = [this](const Progress& pr) {
      if (pr.kind == Progress::Kind::kOutput) return;
      events_.push_back(fmt::format("{} {}", pr.kind == Progress::Kind::kStarted ? "start" : "end", pr.step->name));
    };
    runner_ = std::make_unique<Runner>(pipeline_, executor_, o);
    return *runner_;
  }
  // "a:running b:queued": the state of every step, in pipeline order.
  std::string States() const {
    std::string out;
    for (const auto& s : runner_->state().steps) {
      out += fmt::format("{}{}:{}", out.empty() ? "" : " ", s.name, store::Name(s.state));
    }
    return out;
  }
  const StepResult& Result(std::string_view name) const {
    for (const auto& s : runner_->state().steps) {
      if (s.name == name) return s;
    }
    GANTRY_CHECK(false);
    return runner_->state().steps[0];
  }

  fs::path root_;
  Pipeline pipeline_;
  GatedExecutor executor_;
  std::vector<std::string> events_;
  std::unique_ptr<Runner> runner_;
};

TEST_F(RunnerStepTest, EachStepDoesOnePieceOfWorkInDagOrder) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n  b: {run: ['true']}\n  c: {run: ['true'], needs: [a, b]}\n");
  EXPECT_EQ(r.state().state, RunState::kQueued);
  ASSERT_TRUE(r.Step());  // prepare
  EXPECT_EQ(r.state().state, RunState::kRunning);
  EXPECT_EQ(States(), "a:queued b:queued c:queued");
  ASSERT_TRUE(r.Step());  // start what is ready
  EXPECT_EQ(States(), "a:running b:running c:queued");
  executor_.End("b");
  ASSERT_TRUE(r.Step());  // record b
  EXPECT_EQ(States(), "a:running b:succeeded c:queued");
  executor_.End("a", 0);
  ASSERT_TRUE(r.Step());  // record a
  EXPECT_EQ(States(), "a:succeeded b:succeeded c:queued");
  ASSERT_TRUE(r.Step());  // start c
  EXPECT_EQ(States(), "a:succeeded b:succeeded c:running");
  executor_.End("c");
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kRunning);
  EXPECT_FALSE(r.Step());  // the end
  EXPECT_EQ(r.state().state, RunState::kSucceeded);
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(Result("c").exit_code, 0);
  EXPECT_EQ(Result("c").attempts, 1);
  EXPECT_THAT(events_, ElementsAre("start a", "start b", "end b", "end a", "start c", "end c"));
}

TEST_F(RunnerStepTest, ParallelismOneStartsInPipelineOrder) {
  Runner& r = Start("steps:\n  one: {run: ['true']}\n  two: {run: ['true']}\n  three: {run: ['true']}\n", 1);
  ASSERT_TRUE(r.Step());
  for (const char* name : {"one", "two", "three"}) {
    ASSERT_TRUE(r.Step());
    EXPECT_EQ(Result(name).state, RunState::kRunning);
    executor_.End(name);
    ASSERT_TRUE(r.Step());
    EXPECT_EQ(Result(name).state, RunState::kSucceeded);
  }
  EXPECT_FALSE(r.Step());
  EXPECT_THAT(executor_.started(), ElementsAre("one", "two", "three"));
}

TEST_F(RunnerStepTest, AFailedStepSkipsItsDependantsAtOnce) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n  b: {run: ['true'], needs: [a]}\n"
                    "  c: {run: ['true'], needs: [b]}\n  d: {run: ['true']}\n");
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(States(), "a:running b:queued c:queued d:running");
  executor_.End("a", 2);
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(States(), "a:failed b:queued c:queued d:running");
  EXPECT_EQ(Result("a").exit_code, 2);
  EXPECT_EQ(Result("a").message, "exit code 2");
  ASSERT_TRUE(r.Step());  // b, and c after it, in one step
  EXPECT_EQ(States(), "a:failed b:skipped c:skipped d:running");
  EXPECT_EQ(Result("b").message, "skipped: needs a (failed)");
  EXPECT_EQ(Result("c").message, "skipped: needs b (skipped)");
  executor_.End("d");
  ASSERT_TRUE(r.Step());
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kFailed);
  EXPECT_EQ(Result("d").state, RunState::kSucceeded);
  EXPECT_THAT(executor_.started(), UnorderedElementsAre("a", "d"));  // in parallel
}

TEST_F(RunnerStepTest, CancelBetweenStepsStartsNothingAndCancelsTheRunningStep) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n  b: {run: ['true']}\n  c: {run: ['true'], needs: [a]}\n", 1);
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(States(), "a:running b:queued c:queued");
  r.Cancel();
  ASSERT_TRUE(r.Step());  // the queued steps are skipped, nothing starts
  EXPECT_EQ(States(), "a:running b:skipped c:skipped");
  EXPECT_EQ(Result("b").message, "skipped: run cancelled");
  ASSERT_TRUE(r.Step());  // a ends, cancelled through the executor
  EXPECT_EQ(Result("a").state, RunState::kCancelled);
  EXPECT_EQ(Result("a").exit_code, std::nullopt);
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kCancelled);
  EXPECT_THAT(executor_.started(), ElementsAre("a"));
  EXPECT_THAT(executor_.cancelled(), ElementsAre("a"));
}

TEST_F(RunnerStepTest, CancelBeforeTheFirstStepRunsNothing) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n");
  r.Cancel();
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(States(), "a:skipped");
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kCancelled);
  EXPECT_TRUE(executor_.started().empty());
}

TEST_F(RunnerStepTest, NoRetryOnceTheRunIsCancelled) {
  Runner& r = Start("steps:\n  flaky: {run: ['true'], retry: 3}\n");
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  r.Cancel();
  executor_.End("flaky", 1);  // the attempt fails on its own, after the cancel
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(Result("flaky").state, RunState::kFailed);
  EXPECT_EQ(Result("flaky").attempts, 1);
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kCancelled);
  EXPECT_THAT(executor_.started(), ElementsAre("flaky"));
}

TEST_F(RunnerStepTest, RetriesAreOneStepOfTheRun) {
  Runner& r = Start("steps:\n  flaky: {run: ['true'], retry: 1}\n");
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  executor_.End("flaky", 1);
  // The second attempt waits for its own End(): give it once the first has been seen.
  for (int i = 0; i < 2000 && executor_.started().size() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(executor_.started().size(), 2u);
  EXPECT_EQ(Result("flaky").state, RunState::kRunning);
  executor_.End("flaky", 0);
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(Result("flaky").state, RunState::kSucceeded);
  EXPECT_EQ(Result("flaky").attempts, 2);
}

TEST_F(RunnerStepTest, ABadSetupEndsTheRunAtTheFirstStep) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n");
  fs::remove_all(root_ / "ws");
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.state().state, RunState::kFailed);
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.error().message(), HasSubstr((root_ / "ws").string() + " is not a directory"));
  EXPECT_FALSE(r.Step());
  auto result = r.Run();
  EXPECT_EQ(result.status().code(), Code::kFailedPrecondition);
}

TEST_F(RunnerStepTest, AnUnknownSelectedStepIsNamed) {
  auto p = ParsePipeline("steps:\n  a: {run: ['true']}\n", "p.yaml");
  ASSERT_TRUE(p.ok());
  Runner r(*p, executor_, {.workspace = root_ / "ws", .run_dir = root_ / "run", .only_steps = {"nope"}});
  EXPECT_FALSE(r.Step());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr("nope"));
}

TEST_F(RunnerStepTest, DestroyingARunnerMidRunCancelsAndJoinsItsSteps) {
  Runner& r = Start("steps:\n  a: {run: ['true']}\n  b: {run: ['true']}\n");
  ASSERT_TRUE(r.Step());
  ASSERT_TRUE(r.Step());
  EXPECT_EQ(States(), "a:running b:running");
  for (int i = 0; i < 2000 && executor_.started().size() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  runner_.reset();  // returns only once both steps' threads have
  auto cancelled = executor_.cancelled();
  std::sort(cancelled.begin(), cancelled.end());
  EXPECT_THAT(cancelled, ElementsAre("a", "b"));
}

// Prints `chunks` pieces of 20 KB (each over the log's batch size, so each is a flush), and
// exits 0.
class PrintingExecutor : public Executor {
 public:
  explicit PrintingExecutor(int chunks) : chunks_(chunks) {}
  Result<StepOutcome> Run(const StepRequest&, const OutputFn& output, const std::atomic<bool>&) override {
    for (int i = 0; i < chunks_; ++i) output(Piece(i));
    return StepOutcome{.exit_code = 0};
  }
  static std::string Piece(int i) { return std::string(20 << 10, static_cast<char>('a' + i % 26)) + "\n"; }
  std::string WorkspacePath(const fs::path& host) const override { return host.string(); }
  std::string ArtifactsPath(const fs::path& host) const override { return host.string(); }
  std::string_view name() const override { return "printing"; }
  bool Isolates() const override { return true; }

 private:
  const int chunks_;
};

class StepLogStoreTest : public RunnerStepTest {
 protected:
  RunResult RunPrinting(int chunks, int attempt = 1) {
    auto p = ParsePipeline("steps:\n  a: {run: ['print']}\n", "p.yaml");
    GANTRY_CHECK(p.ok());
    pipeline_ = *p;
    PrintingExecutor executor(chunks);
    Runner runner(pipeline_, executor,
                  RunOptions{.workspace = root_ / "ws", .run_dir = root_ / "run", .run_id = 1, .attempt = attempt,
                             .recorder = &recorder_});
    auto r = runner.Run();
    GANTRY_CHECK(r.ok());
    return *r;
  }
  fakes::RefusingRecorder recorder_;
};

// Regression (fault campaign, a full data disk): a chunk the store refused was dropped with a
// warning, and the run could end succeeded with lines missing from its log. A refused chunk is
// kept and sent again, in order, so the stored log is every byte the step printed.
TEST_F(StepLogStoreTest, ARefusedChunkIsSentAgainAndTheLogKeepsEveryByte) {
  recorder_.Refuse(1);
  RunResult r = RunPrinting(4);
  std::string want;
  for (int i = 0; i < 4; ++i) want += PrintingExecutor::Piece(i);
  EXPECT_EQ(r.state, RunState::kSucceeded);
  EXPECT_EQ(recorder_.Log("a"), want);
  // Refused once, then held back for a second rather than tried at every write; the step's end
  // sends it all.
  EXPECT_LE(recorder_.calls(), 4);
}

// Regression (fault campaign, a worker killed mid-step): the second attempt's first chunk held the
// same bytes as the first attempt's, at the same number, so the store took it for a retry and the
// second attempt's log lacked its first lines. Each attempt numbers its chunks after the earlier
// ones': the stored log is the first attempt's, then the whole of the second.
TEST_F(StepLogStoreTest, ASecondAttemptPrintingTheSameKeepsItsWholeLog) {
  RunPrinting(2, 1);
  RunPrinting(2, 2);
  const std::string once = PrintingExecutor::Piece(0) + PrintingExecutor::Piece(1);
  EXPECT_EQ(recorder_.Log("a"), once + once);
}

// A log that still cannot be stored when the step ends fails the step, saying why: a run that
// succeeded must have its whole log.
TEST_F(StepLogStoreTest, ALogTheStoreKeepsRefusingFailsTheStepSayingWhy) {
  recorder_.Refuse(-1);
  RunResult r = RunPrinting(2);
  EXPECT_EQ(r.state, RunState::kFailed);
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].state, RunState::kFailed);
  EXPECT_EQ(r.steps[0].message, "its log could not be stored: database or disk is full");
}

}  // namespace
}  // namespace gantry::ci
