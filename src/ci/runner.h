#pragma once
// ci/runner: runs one pipeline in a workspace with an Executor.
//
// The runner schedules the DAG: a step starts when everything it needs has succeeded, at most
// `parallelism` steps at a time, in pipeline order among the ready ones. A step whose `when:` does
// not match is skipped, and so is every step that needs a skipped, failed or cancelled step
// (failure propagation); independent branches of the DAG keep running after a failure. A failed
// attempt is retried `retry:` times (a timeout or a cancellation is not retried).
//
// Around each step: caches are restored (copied from <cache_root>/<hash of pipeline and key>/ into
// the workspace) before it runs and saved after it succeeds (written beside the old entry, then
// renamed over it); after it ends, the files matching its `artifacts:` are copied (regular files
// only, never following a symlink) to <run_dir>/artifacts/<step>/, which later steps see
// read-only under $GANTRY_ARTIFACTS/<step>/.
//
// The environment of a step is built from nothing: PATH, HOME=/tmp, LANG, CI=true, GANTRY_*
// (workspace, artifacts, step, pipeline, event, branch, commit, run id), then the pipeline's and
// step's env:, matrix values, and the secrets the step names. Secrets are withheld (and the log
// says so) when RunOptions::withhold_secrets is set (pull requests from forks); a secret that is
// not configured fails the step before it starts.
//
// Output is masked (Masker over every configured secret, in every encoding) before anything sees
// it: the progress callback, the store's log chunks and the final messages. With a store, step
// states, exit codes and log chunks (<= 16 KiB, flushed at least every 250 ms) are written as they
// happen, and the run's final state at the end.
//
// Cancel() (from any thread) stops running steps (their process trees are killed by the executor)
// and skips the rest; the run ends cancelled. A Runner runs once; it is otherwise not thread-safe.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ci/executor.h"
#include "ci/pipeline.h"
#include "store/store.h"

namespace gantry::ci {

struct StepResult {
  std::string name;
  store::RunState state = store::RunState::kQueued;
  std::optional<int> exit_code;
  std::chrono::milliseconds duration{0};
  int attempts = 0;
  std::string message;  // "exit code 2", "skipped: needs build (failed)", ...
};

struct RunResult {
  store::RunState state = store::RunState::kQueued;
  std::vector<StepResult> steps;  // pipeline order
  std::chrono::milliseconds duration{0};
};

// Progress, in the order it happens for each step (calls may come from several threads, but never
// two at once).
struct Progress {
  enum class Kind { kStarted, kOutput, kFinished } kind;
  const StepResult* step;  // kStarted/kFinished: the step; kOutput: the step's name only is set
  std::string_view data;   // kOutput: masked output
};

struct RunOptions {
  std::filesystem::path workspace;   // the checkout; must exist
  std::filesystem::path run_dir;     // created; artifacts/ lives here
  std::filesystem::path cache_root;  // "" = caches disabled
  Context context;
  std::string commit;                // for GANTRY_COMMIT
  std::map<std::string, std::string> secrets;  // every configured secret (name → value)
  bool withhold_secrets = false;
  std::vector<std::string> only_steps;  // run these and what they need; empty = all
  int parallelism = 4;
  store::Store* store = nullptr;  // optional; then run_id must name a run
  int64_t run_id = 0;
  std::function<void(const Progress&)> on_progress;
};

class Runner {
 public:
  Runner(const Pipeline& pipeline, Executor& executor, RunOptions options);
  // Runs the pipeline to the end. Errors only for a bad setup (the workspace missing, an unknown
  // --step); failing steps are a RunResult with state failed.
  Result<RunResult> Run();
  void Cancel() { cancel_.store(true); }

 private:
  const Pipeline& pipeline_;
  Executor& executor_;
  RunOptions options_;
  std::atomic<bool> cancel_{false};
};

// A file name for a step ("test (linux, 3)" → "test_linux_3_").
std::string StepDirName(std::string_view step);

// Reads a secrets file of NAME=VALUE lines (# comments, blank lines). PermissionDenied when the
// file is readable by group or others (it must be 0600 or stricter); InvalidArgument naming the
// line for a malformed one.
Result<std::map<std::string, std::string>> ReadSecretsFile(const std::filesystem::path& path);

}  // namespace gantry::ci
