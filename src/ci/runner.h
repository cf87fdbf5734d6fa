#pragma once
// ci/runner: runs one pipeline in a workspace with an Executor.
//
// The runner schedules the DAG: a step starts when everything it needs has succeeded, at most
// `parallelism` steps at a time, in pipeline order among the ready ones. A step whose `when:` does
// not match is skipped, and so is every step that needs a skipped, failed or cancelled step
// (failure propagation); independent branches of the DAG keep running after a failure. A failed
// attempt is retried `retry:` times (a timeout or a cancellation is not retried).
//
// Around each step: caches are restored into the workspace before it runs and saved after it
// succeeds; after it ends, the files matching its `artifacts:` are copied (regular files only) to
// <run_dir>/artifacts/<step>/, which later steps see read-only under $GANTRY_ARTIFACTS/<step>/.
// A step may be replacing anything in the workspace with a link while these host-side copies run,
// so they all go through CopyTreeBeneath (base/path.h): every component is opened beneath its root
// by descriptor, never through a link (one on the way fails the copy, naming it; links inside a
// cached tree are copied as links, never followed).
//
// Caches are scoped by repository and trust, with hashes for names (H = first 24 hex digits of
// SHA-256; an entry is H(pipeline name, NUL, cache key)):
//   <cache_root>/H(cache_repository)/trusted/<entry>                      trusted runs read, write
//   <cache_root>/H(cache_repository)/untrusted/H(cache_source)/<entry>    that source's untrusted runs
// An untrusted run restores its own entry if there is one, else the trusted one (read only), and
// saves only into its own scope: nothing it writes is ever read by a trusted run. A local run
// (cache_repository "") has one trusted scope of its own. A save is written beside the old entry
// and renamed over it. After a save, when the entries under cache_root exceed cache_quota_bytes,
// whole entries are removed: untrusted ones first, then trusted ones, least recently used (saved or
// restored by its own scope) first. A cache larger than the quota is not saved.
//
// Untrusted runs may also be bounded: allow_network = false runs every step without network, and
// max_step_timeout caps each step's timeout (the step's log says so). The logs of a run share
// max_log_bytes: once they are used up, the log of each step that writes more ends with one line
// "gantry: log truncated at N bytes" and the rest of its output is dropped (the step keeps running).
//
// The environment of a step is built from nothing: PATH, HOME=/tmp, LANG, CI=true, GANTRY_*
// (workspace, artifacts, step, pipeline, event, branch, commit, run id), then the pipeline's and
// step's env:, matrix values, and the secrets the step names. Secrets are withheld (and the log
// says so) when RunOptions::withhold_secrets is set (pull requests from forks); a secret that is
// not configured fails the step before it starts.
//
// Output is masked (Masker over every configured secret, in every encoding) before anything sees
// it: the progress callback, the store's log chunks and the final messages. With a store, step
// states, exit codes and log chunks (<= 16 KiB, flushed at least every 250 ms while Step() waits)
// are written as they happen; the run's own final state is the caller's to store (the server does).
//
// A run is a step-driven state object, like sync::Operation: Step() does the next piece of work
// (prepare; skip and start the queued steps it can; wait for one running step to end and record
// it; end the run) and returns, state() tells where the run is between steps, Cancel() stops it.
// The Executor blocks until its step ends, so each running step has a thread of the runner's own,
// which runs the step's attempts and the host-side copies around them; everything else
// (scheduling, the state, the store's step rows, the progress of starts and ends) happens in
// Step(), on the caller's thread. Run() steps to the end for callers that want to block.
//
// Cancel() (from any thread, also a signal handler) starts nothing more: no new step and no retry;
// running steps are stopped through the Executor (their process trees are killed), the queued ones
// are skipped, and the run ends cancelled once the running ones are recorded.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
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

// Progress, in the order it happens for each step. kStarted and kFinished come from Step(), on the
// thread driving the runner; kOutput from the step's own thread; never two calls at once.
struct Progress {
  enum class Kind { kStarted, kOutput, kFinished } kind;
  const StepResult* step;  // kStarted/kFinished: the step; kOutput: the step's name only is set
  std::string_view data;   // kOutput: masked output
};

// Stores `data` as chunk `seq` of `step`'s log of run `run_id` and returns the seq it took: `seq`,
// or, when an earlier attempt of the run (before a restart or a takeover) already wrote a
// different chunk there, the one after the last chunk of that log (the attempt's log follows the
// earlier one's). The store's errors otherwise.
Result<int64_t> AppendStepLog(store::Store& store, int64_t run_id, std::string_view step, int64_t seq,
                              std::string_view data);

// Where a run's step states and log chunks go as they happen: the store (RunOptions::store), or,
// on a remote worker (`gantry worker`), the server's API. Called from the runner's threads, never
// two calls for one step at once; implementations are thread-safe.
class Recorder {
 public:
  virtual ~Recorder() = default;
  // Creates or updates the step (store::Store::UpsertStep).
  virtual Status WriteStep(const store::Step& step) = 0;
  // Stores chunk `seq` of `step`'s log and returns the seq it took (AppendStepLog).
  virtual Result<int64_t> AppendLog(std::string_view step, int64_t seq, std::string_view data) = 0;
};

struct RunOptions {
  std::filesystem::path workspace;   // the checkout; must exist
  std::filesystem::path run_dir;     // created; artifacts/ lives here
  std::filesystem::path cache_root;  // "" = caches disabled
  Context context;
  std::string commit;                // for GANTRY_COMMIT
  std::map<std::string, std::string> secrets;  // every configured secret (name → value)
  bool withhold_secrets = false;
  // Trust and cache scope (docs/security.md). A trusted run (a push or a pull request from a branch
  // of a configured repository) restores from and saves to the trusted scope of `cache_repository`.
  // An untrusted run (a fork's pull request, or one the repository's policy does not trust) may
  // restore from the trusted scope but saves only to a scope of its own, keyed by `cache_source`,
  // which no trusted run ever reads.
  bool trusted = true;
  std::string cache_repository;  // the configured repository the run belongs to (a fork PR: its base)
  std::string cache_source;      // untrusted runs: where the code came from (the fork's clone URL)
  bool allow_network = true;     // false: every step runs without network, whatever it asks for
  std::chrono::milliseconds max_step_timeout{0};  // 0 = none; else caps every step's timeout
  uint64_t max_log_bytes = 64u << 20;        // of the whole run's logs; 0 = unlimited
  uint64_t cache_quota_bytes = 5ull << 30;   // of everything under cache_root; 0 = unlimited
  // After each step, a workspace holding more fails that step (and so the run); 0 = unlimited.
  uint64_t max_workspace_bytes = 0;
  uint64_t max_artifact_bytes = 1ull << 30;  // kept by the whole run; beyond, files are not kept
  std::vector<std::string> only_steps;  // run these and what they need; empty = all
  int parallelism = 4;
  store::Store* store = nullptr;  // optional; then run_id must name a run
  int64_t run_id = 0;
  // The run's attempt (store::Run::attempt). Its steps' log chunks are numbered from
  // FirstLogSeq(attempt), after every chunk an earlier attempt can have written: a chunk of this
  // attempt that happens to hold the same bytes as an earlier attempt's at the same number would
  // otherwise be taken for a retry of it (the store's appends are idempotent) and left out.
  int attempt = 1;
  Recorder* recorder = nullptr;   // instead of store: where step states and logs go
  // Once set (by the server when another server took the run over: its lease expired), nothing
  // more of the run is written to the store; the caller cancels the runner too.
  const std::atomic<bool>* fenced = nullptr;
  std::function<void(const Progress&)> on_progress;
  Clock* clock = nullptr;  // the run's and steps' durations; nullptr: SystemClock()
};

// One run of one pipeline. Not thread-safe: one thread drives it (Step, Run, state); Cancel() is
// the exception. Destroying a runner whose run has not ended cancels its running steps and waits
// for their threads (their final states are then neither recorded nor stored).
class Runner {
 public:
  Runner(const Pipeline& pipeline, Executor& executor, RunOptions options);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Does the next piece of work and returns true, or returns false once the run has ended (see
  // state().state). In order:
  //  - the first call prepares the run: checks the workspace, creates <run_dir>/artifacts, selects
  //    the steps (only_steps), stores them queued. On failure the run ends failed with error() set;
  //  - skips every queued step that cannot run (a need did not succeed, `when:` does not match, the
  //    run is cancelled) and starts the ready ones, in pipeline order, up to the parallelism;
  //  - else, while steps run, waits for one of them to end and records it (its state, exit code,
  //    attempts, duration, message); meanwhile the logs of running steps are flushed to the store
  //    every kFlushInterval. To stop a run while it waits, Cancel() from another thread;
  //  - else ends the run: failed if a step failed, cancelled if cancelled, else succeeded.
  bool Step();
  // Where the run is: queued before the first Step(), running, then its final state; each step's
  // state as of the last Step(). Read it from the thread that drives the runner.
  const RunResult& state() const;
  // Why the run could not start (the workspace missing, an unknown --step); OK otherwise.
  const Status& error() const;
  // Thread-safe and async-signal-safe; see the file comment.
  void Cancel() { cancel_.store(true); }
  // Steps to the end. Errors only for a bad setup (error()); failing steps are a RunResult with
  // state failed.
  Result<RunResult> Run();

  // How often the stored logs of running steps are brought up to date while Step() waits (on the
  // real clock: it bounds how stale they get, not anything a test measures).
  static constexpr std::chrono::milliseconds kFlushInterval{250};

 private:
  struct Impl;
  std::atomic<bool> cancel_{false};
  std::unique_ptr<Impl> impl_;
};

// The first log chunk number of a run's attempt: 0 for the first, then (attempt - 1) << 32 (no
// attempt writes 2^32 chunks: a step's log is bounded by max_log_bytes, 64 MiB by default, and a
// chunk is written at most every kFlushInterval or 16 KiB).
inline int64_t FirstLogSeq(int attempt) { return attempt <= 1 ? 0 : static_cast<int64_t>(attempt - 1) << 32; }

// A file name for a step ("test (linux, 3)" → "test_linux_3_").
std::string StepDirName(std::string_view step);

}  // namespace gantry::ci
