#pragma once
// ci/job: a claimed run as whoever builds it needs it, the server's own workers (ci/server.h) and
// remote ones (`gantry worker`, cli/worker.cc) alike, and the steps every builder takes with it.
//
// A Job is made by the server (ci::Server, which holds the policies and the secrets): the run,
// whether it is trusted, the secrets in its scope (none for an untrusted run), and the limits its
// trust sets. A remote worker receives it as JSON in the answer to its claim (JobJson/ParseJob;
// docs/scaling.md), so the server's policy, not the worker's flags, decides what a run may do.
//
// Then, on whichever machine builds it: CheckOut (fetch; the commit to build; the workspace; the
// pipeline file), the trigger check (TriggerMatches with ContextOf), RunOptionsOf, and a Runner.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "ci/executor.h"
#include "ci/pipeline.h"
#include "ci/runner.h"
#include "git/git.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::ci {

struct Job {
  store::Run run;
  bool trusted = false;  // the run is trusted and of a repository the server builds
  std::map<std::string, std::string> secrets;       // name → value, the run's scope only
  std::map<std::string, std::string> out_of_scope;  // name → the scope that keeps it out (no value)
  bool allow_network = false;
  std::chrono::milliseconds max_step_timeout{0};  // 0 = none
  uint64_t max_workspace_bytes = 0;
  uint64_t max_artifact_bytes = 0;
  uint64_t max_log_bytes = 0;
  uint64_t cache_quota_bytes = 0;
  int parallelism = 4;
  // The server releases a trusted push whose steps succeeded and whose pipeline has image:; a
  // remote worker then uploads what the release reads from its workspace (ci/server.h, "remote").
  bool releases = false;
  // How long the claim lasts without renewal (the server's run lease): renew every third of it.
  std::chrono::milliseconds lease{store::kDefaultRunLease};
};

// The job as the claim answer carries it: secrets included, so for that answer only.
value::Value JobJson(const Job& job);
// Back from JSON; InvalidArgument naming the field that is missing or of the wrong type.
Result<Job> ParseJob(const value::Value& v);

// The context `when:` and `on:` are matched against: the event ("push", "tag", "pull_request",
// "manual"), branch or tag from the run's ref, and its changed paths when known.
Context ContextOf(const store::Run& run);

// Creates `data_dir` (0700) with mirrors/ and caches/ in it. When steps run as a host user of their
// own (Executor::StepUser: Gantry runs as root), the directory and its runs/ become traversable
// (0711) for bubblewrap, started as that user; FailedPrecondition naming the first directory above
// it that user cannot search. The file system's errors otherwise.
Status PrepareDataDir(const std::filesystem::path& data_dir, const Executor& executor);

// FailedPrecondition, saying what to do, when `job` is untrusted and `executor` does not isolate
// its steps (the host runs them without a sandbox).
Status CheckIsolation(const Job& job, const Executor& executor);

// The run's final message after its steps: "3 steps succeeded", "cancelled", "1 step(s) failed";
// `cancel_came`: a cancel was asked for (too late, when the steps succeeded).
std::string RunOutcome(const RunResult& result, bool cancel_came);

// The repository a run builds from, open: the mirror in `mirrors` of a repository Gantry builds,
// or, for a fork's pull request (`fork`), a mirror of its own in `fork_dir`, removed with this
// object (nothing of a fork outlives its run). Errors: "open URL: ..." as git::Mirrors::Open's.
class RunRepository {
 public:
  static Result<std::unique_ptr<RunRepository>> Open(git::Mirrors& mirrors, const store::Run& run, bool fork,
                                                     const std::filesystem::path& fork_dir, const git::OpenOptions& options);
  ~RunRepository();
  git::Repository& repo() { return *repo_; }

 private:
  std::filesystem::path fork_dir_;  // "" unless a fork's
  std::unique_ptr<git::Mirrors> fork_mirrors_;
  std::shared_ptr<git::Repository> repo_;
};

struct CheckedOut {
  std::string commit;  // what was built
  std::string notes;   // what the run's final message says first ("stale payload: ..."), or ""
  Pipeline pipeline;
  std::filesystem::path workspace;  // <run_dir>/workspace
};

// Fetches `repo` (the run's repository) and checks out what the run builds into
// <run_dir>/workspace (run_dir is emptied first: an earlier attempt's), then reads and parses its
// .gantry/pipeline.yaml. A pull request builds the head commit the event named, which must be on
// its branch (head_ref); a push or tag builds what its ref points to after the fetch, and when that
// is not the payload's commit, `bind` is called with it (Store::BindRunCommit). Errors fail the run
// with their message, except Aborted: `bind` found another run of that commit (this one is
// superseded and ends cancelled).
Result<CheckedOut> CheckOut(git::Repository& repo, const store::Run& run, const std::filesystem::path& run_dir,
                            const std::function<Status(const std::string& commit)>& bind);

// The lines the run's message says about secrets its steps name that are out of its scope (the
// runner fails those steps; this says which scope kept each out). Empty for an untrusted job.
std::vector<std::string> OutOfScopeNotes(const Job& job, const Pipeline& pipeline, const Context& context);

// The runner's options for `job` checked out as `co`: workspace, artifacts in run_dir, caches under
// cache_root scoped by the run's repository and trust, the job's limits, secrets and network.
// Where step states and logs go (store or recorder) and `fenced` are the caller's to set.
RunOptions RunOptionsOf(const Job& job, const CheckedOut& co, const std::filesystem::path& run_dir,
                        const std::filesystem::path& cache_root);

}  // namespace gantry::ci
