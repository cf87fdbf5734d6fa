#pragma once
// ci/server: the CI part of `gantry server`: what becomes of a webhook, the queue, the workers,
// polling, restart recovery, approval and cancellation. It speaks no HTTP: the server module's
// front (server/ci_front.h) verifies webhooks, authenticates API requests and calls the methods
// below, mapping their Status to HTTP in one place.
//
//   webhook  Accept(a verified event) → the repository must be one of Options::repos (host and
//            path of the clone URL) and the provider the one pinned for it → Store::RecordDelivery
//            (a redelivery is a duplicate) → a run (Store::CreateRun, which refuses a second run of
//            one (repo, ref, commit, event), so a replay with a new delivery id is a duplicate too).
//            Untrusted runs (below) are created awaiting_approval unless the repository's policy
//            says otherwise.
//   poller   every poll_interval, for each repo and poll branch: Fetch, Resolve, and a queued run
//            for the tip (CreateRun refuses it when a webhook or an earlier poll queued it).
//   workers  `workers` threads claim trusted runs only, `untrusted_workers` untrusted runs only
//            (Store::ClaimNextQueuedRun, with this server's `labels`), so pull requests from forks
//            never delay pushes (0 and 0: remote workers build every run, below) → a Job (JobOf:
//            the run's scoped secrets and limits, ci/job.h) → CheckOut: fetch
//            → for a push or tag, the commit the ref points to now (a payload whose `after` is not
//            the tip is stale: the tip is built, Store::BindRunCommit, and the run says so) →
//            Materialize into <data_dir>/runs/<id>/workspace → .gantry/pipeline.yaml → triggers →
//            Runner.
//   remote   Remote workers (`gantry worker`, docs/scaling.md) build runs through the worker API
//            (server/worker_api.h), which calls the Worker* methods: a long-polled claim
//            (WorkerClaim: the run and its Job, as the server's own workers get them), lease
//            renewals, step states, log chunks, the commit built, the final state. Each of these
//            writes is fenced: it is refused (Aborted) unless the worker still holds the run at
//            the claim's attempt. A run whose steps succeed on a worker and that is released
//            (a trusted push whose pipeline has image:) is released here, by the server that
//            holds the credentials: the worker uploads what the release reads from its
//            workspace (release::WorkspaceTrees, one tar stream, in parts kept in the store, so
//            that any server sharing it takes any part: WorkerUpload), then asks any server for
//            the release (WorkerRelease): the digest is checked, the tar unpacked
//            safely into <data_dir>/runs/<id>/workspace, the pipeline read from this server's
//            own mirror at the run's commit, and the release (after_success, as for a run of
//            its own workers) runs on a thread of this server, which renews the claim in the
//            worker's name from then on and writes the run's final state.
//   labels   A repository's policy may ask for labels (`labels=arch=arm64`): its runs are created
//            with them and claimed only by a server or worker that has them all.
//   restart  Start() marks this worker's unfinished runs interrupted and re-queues those with
//            attempt < max_attempts (requeue_interrupted), so none is ever left running.
//   leases   Several servers may share one (PostgreSQL) store, each with its own worker_name. A
//            claimed run carries a lease (run_lease), which this server renews every third of it
//            while the run or its release is in flight. Every server, every third of run_lease,
//            marks runs whose lease expired (their server died) interrupted and re-queues them as
//            a restart does, so another server takes them over. A server that finds its renewal
//            refused (it was paused or cut off past its lease, and its run was taken over) stops
//            the run at once and writes nothing more of it: its steps' and logs' writes are
//            fenced in process (RunOptions::fenced), its final state in the store (UpdateRun at
//            its attempt), its release by the progress's version (release/release.h).
//   runs     ListRuns, GetRun, ReadLog (reads), Approve, Retry and Cancel.
//   cancel   A run another server or a remote worker runs is cancelled through the store
//            (Store::RequestRunCancel): its holder learns it at its next lease renewal and stops it
//            as below. A run this server claimed is known to it from the claim (taken and registered in one
//            critical section) until its final state is written, whatever it is doing: fetching
//            and checking out (it then starts no step), running steps (they are stopped), done
//            with its steps before its release (the release never starts), releasing (the release
//            is told to stop). Only once its outcome is settled is a cancel too late. So a run the
//            store says is running and this server does not know is another server's.
//
// Errors the methods return are about the request (NotFound run, FailedPrecondition state,
// PermissionDenied provider); a failure of the store underneath is Unavailable ("try again"),
// whatever its own code, so that a client never takes the store's trouble for its own.
//
// Trust: a push or tag of a configured repository is trusted; a pull request from a branch of it is
// trusted unless its policy says `pull-requests=untrusted`; a pull request from a fork never is (it
// builds the fork's head commit: run.repo is the fork's clone URL, fetched into a mirror of its
// own under <data_dir>/fork-mirrors/<run id>, removed when the run ends). Untrusted runs get no
// secrets, no network unless the policy allows it, steps capped at untrusted_step_timeout, their
// own cache scope (RunOptions::trusted), and no release.
//
// Secrets are scoped (ci/secret_scopes.h): a run is given only the secrets in its scope; a step
// naming one out of scope fails before it starts, and the run's message names the secret and its
// scope.
// Which paths a push changed is known only from the webhook payload; it is kept with the run
// (store::Run::changed_paths), so whichever server or worker builds it, after a restart too, filters
// `when: paths:` (runs queued by polling do not know their changed paths: their path filters match).
//
// Thread-safety: Start/Stop from one thread; Accept, the reads, Approve and Cancel from any thread
// (the front's handlers); everything else runs on the server's own threads.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string_view>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "ci/executor.h"
#include "ci/job.h"
#include "ci/pipeline.h"
#include "ci/secret_scopes.h"
#include "git/git.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace gantry::ci {

class Runner;

// What the release hook is given: a run whose steps all succeeded, its pipeline (with image:) and
// workspace (the steps' outputs are still there).
struct SucceededRun {
  const store::Run& run;
  const Pipeline& pipeline;
  const std::filesystem::path& workspace;
  const std::string& commit;
  // One line of progress of `stage`: stored (masked) as the log of a step named `stage`, which is
  // created running at its first line and ends with the hook.
  std::function<void(std::string_view stage, std::string_view line)> log;
  const std::atomic<bool>* cancel;  // set by Cancel()
  std::string project;               // the repository's RepoPolicy::project
};

// What a repository lets untrusted code do, and who may send its webhooks.
struct RepoPolicy {
  bool require_approval = true;     // untrusted runs wait for Approve()
  bool trust_pull_requests = true;  // pull requests from the repository's own branches are trusted
  bool untrusted_network = false;   // untrusted runs' steps may use the network
  // The only provider whose webhooks are accepted for the repository. kAuto: the one its URL's host
  // implies (github.com, gitlab.com, bitbucket.org, codeberg.org), else any provider that signs
  // the body — never GitLab's plain token, which must be pinned.
  webhook::Provider provider = webhook::Provider::kAuto;
  // The Project the repository belongs to ("" : none, then only cluster-wide roles reach its runs,
  // and its releases are bound by the default project): who may act on its runs, and what its
  // releases may push and rewrite (project/project.h).
  std::string project;
  // The environment variable holding the repository's own webhook secret ("" : the shared one).
  // Its webhooks are checked with that secret only; the shared secret is refused for it.
  std::string secret_env;
  // What a server or worker must have to build the repository's runs (`labels=arch=arm64,gpu=yes`).
  store::Labels labels;
};

struct ServerOptions {
  std::vector<std::string> repos;  // clone URLs accepted from webhooks and polled
  std::filesystem::path data_dir;  // mirrors/, fork-mirrors/, runs/, caches/ (created 0700)
  SecretScopes secrets;
  std::vector<std::string> protected_branches = {"main"};  // globs, for [protected] secrets
  RepoPolicy policy;                                // every repository's, unless overridden
  std::map<std::string, RepoPolicy> repo_policies;  // by URL as in `repos`
  std::chrono::milliseconds poll_interval{0};  // 0 = no polling
  std::vector<std::string> poll_branches = {"main"};
  int workers = 1;            // threads for trusted runs (0: only remote workers build them)
  int untrusted_workers = 1;  // threads for untrusted runs (0: only remote workers build them)
  store::Labels labels;       // this server's own: its threads claim runs that ask for no more
  std::chrono::milliseconds trusted_step_timeout{0};  // caps every step's timeout; 0 = no cap
  std::chrono::milliseconds untrusted_step_timeout{std::chrono::minutes(30)};
  // Per run (RunOptions): workspace after each step, artifacts kept, logs; all caches together.
  uint64_t max_workspace_bytes = 20ull << 30;
  uint64_t max_artifact_bytes = 1ull << 30;
  uint64_t max_log_bytes = 64ull << 20;
  uint64_t cache_quota_bytes = 5ull << 30;
  int parallelism = 4;
  std::string worker_name = "gantry";
  bool requeue_interrupted = true;
  int max_attempts = 3;
  // How long a claim lasts without renewal: a server that dies loses its runs to the others
  // after at most this (plus a third of it, the others' check).
  std::chrono::milliseconds run_lease = store::kDefaultRunLease;
  git::OpenOptions git;
  // Called for push and tag runs of `repos` (never pull requests, never forks) whose steps all
  // succeeded and whose pipeline has image:, before the run is final: the rest of the flow
  // (release/release.h). An error fails the run (its message becomes the run's) and the stage that
  // was logging last.
  std::function<Status(const SucceededRun&)> after_success;
  // The runs' and steps' durations (RunOptions::clock); nullptr: SystemClock(). The workers' and
  // the poller's idle waits stay on real time: on a fake clock they would spin.
  Clock* clock = nullptr;
};

// What Accept() did with a verified webhook event.
struct Accepted {
  enum class Outcome {
    kQueued,     // a new run: `run`, in `state`
    kDuplicate,  // a redelivery, or a run of that commit exists: `note` says which
    kIgnored,    // nothing to build: `note` says why ("the ref was deleted")
  };
  Outcome outcome = Outcome::kIgnored;
  int64_t run = 0;
  store::RunState state = store::RunState::kQueued;  // kQueued or kAwaitingApproval
  std::string note;
};

// What Cancel() did.
enum class Cancelled {
  kStopping,         // the run's steps are being stopped, or will not start; it ends cancelled
  kStoppingRelease,  // its release (after_success) was told to stop
  kBeforeItRan,      // it was queued, interrupted or awaiting approval: now cancelled
  kRequested,        // another server or a remote worker runs it: told at its next lease renewal
};

class Server {
 public:
  // `store` and `executor` must outlive the Server.
  Server(store::Store& store, Executor& executor, ServerOptions options);
  ~Server();  // Stop()

  // Recovers unfinished runs and starts the workers and the poller. InvalidArgument for a bad repo
  // URL; errors of the data directory and the store as they come.
  Status Start();
  // Cancels running steps, marks their runs cancelled, joins the threads. Idempotent.
  void Stop();

  // A verified webhook event (webhook::Verify): see the file comment. PermissionDenied when the
  // repository accepts only another provider's webhooks (the message says what to pin);
  // Unavailable when the store fails (the sender should deliver again).
  Result<Accepted> Accept(const webhook::Event& event);

  // The latest runs, newest first, at most `limit`. Unavailable when the store fails.
  Result<std::vector<store::Run>> ListRuns(int limit);
  // Run `id`; NotFound, or Unavailable when the store fails.
  Result<store::Run> GetRun(int64_t id);
  // Up to `max` log chunks of `step` of run `id` from `seq` on (store::Store::ReadLog).
  Result<std::vector<store::LogChunk>> ReadLog(int64_t id, std::string_view step, int64_t seq, int max);

  // Queues run `id`, which awaits approval, on behalf of `by` (audited). NotFound;
  // FailedPrecondition when the run does not await approval; Unavailable when the store fails.
  Status Approve(int64_t id, std::string_view by);
  // Queues a new run of what run `id` built (repository, ref, head branch, commit, event and
  // pipeline), recording `retry_of` = id, and returns it. It is as trusted as `id` was: an
  // untrusted run's retry awaits approval again when the repository's policy requires approval.
  // Its changed paths are not known (`when: paths:` filters match). NotFound; FailedPrecondition
  // when `id` has not finished (succeeded, failed or cancelled); Unavailable when the store fails.
  Result<store::Run> Retry(int64_t id, std::string_view by);
  // Cancels run `id`: see Cancelled and "cancel" above. NotFound; FailedPrecondition when it is
  // final, or its outcome is settled and being written (its steps ended and no release follows, or
  // its release ended); Unavailable when the store fails.
  Result<Cancelled> Cancel(int64_t id);

  // Remote workers (see "remote" above). `worker` is the claimer's name as the store records it
  // (the worker API makes it from the token and the worker's own name).
  //
  // The oldest queued run `labels` match (trusted runs only, unless `untrusted`: then untrusted
  // ones too; of `project` only, when it is set: a project's worker pool), claimed for `worker`
  // with this server's run_lease, as a Job; nullopt when none came within `wait`, or once
  // `wanted` (asked before each look, every 200 ms) says the claimer went away. Unavailable when
  // the store fails.
  Result<std::optional<Job>> WorkerClaim(std::string_view worker, const store::Labels& labels, bool untrusted,
                                         std::chrono::milliseconds wait,
                                         std::optional<std::string_view> project = std::nullopt,
                                         const std::function<bool()>& wanted = nullptr);
  // Gives back a run `worker` claimed at `attempt` whose claim never reached it (the long poll's
  // client had gone): queued again at once, for another claimer, instead of after its lease.
  // Aborted unless `worker` still holds it at `attempt`; NotFound; Unavailable.
  Status WorkerUnclaim(int64_t id, std::string_view worker, int attempt);
  // Renews the claim (run_lease): kRenewed, kCancelRequested (the worker stops the run's steps and
  // ends it cancelled), or kLost (stop at once, write nothing more). NotFound; Unavailable.
  Result<store::Renewal> WorkerRenew(int64_t id, std::string_view worker, int attempt);
  // The run's step state, log chunk (returns the seq it took: AppendStepLog), the commit it built
  // (Store::BindRunCommit: AlreadyExists when another run builds that commit), and its final state
  // with its message (Store::UpdateRun at `attempt`). Each: Aborted unless `worker` holds run `id`
  // at `attempt`; NotFound; InvalidArgument for a final state that is not one; Unavailable.
  Status WorkerStep(int64_t id, std::string_view worker, int attempt, const store::Step& step);
  Result<int64_t> WorkerLog(int64_t id, std::string_view worker, int attempt, std::string_view step, int64_t seq,
                            std::string_view data);
  Status WorkerCommit(int64_t id, std::string_view worker, int attempt, std::string_view commit);
  Status WorkerFinish(int64_t id, std::string_view worker, int attempt, store::RunState state, std::string_view message);
  // Part of the upload of what the release of run `id` reads from the worker's workspace: `data`
  // at byte `offset` of the tar stream of `attempt`, kept in the store (Store::AppendRunUpload),
  // so that the parts may reach any server sharing it (offset 0 starts it over); returns the bytes
  // held. Aborted unless `worker` holds the run at `attempt`; FailedPrecondition when `offset` is
  // not the bytes held (start over); ResourceExhausted beyond the run's workspace limit
  // (max_workspace_bytes); Unavailable when the store fails.
  Result<uint64_t> WorkerUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset, std::string_view data);
  // Releases run `id` from its upload, whose SHA-256 must be `digest` ("sha256:<hex>"): see
  // "remote" above. From an OK on this server renews the claim and ends the run: succeeded with
  // `message` (the worker's, on its steps), or failed or cancelled with the release's error. Aborted
  // unless `worker` holds the run at `attempt`; FailedPrecondition when the run is not one this
  // server releases (not a trusted push, no image:, no release flow) or nothing was uploaded;
  // InvalidArgument for a digest that does not match, or a tar entry that is unsafe (naming it);
  // Unavailable when the server is stopping or its mirror or store fails.
  Status WorkerRelease(int64_t id, std::string_view worker, int attempt, std::string_view digest, std::string_view message);

  // `commit` of `repo` (message, author, time), one of the repositories this server builds, as its
  // mirror has it (no fetch: a run of the commit fetched it). NotFound when `repo` is not one of them or
  // the mirror lacks the commit; Unavailable before Start() (which callers must not run
  // concurrently with this); the git error otherwise.
  Result<git::CommitInfo> Commit(std::string_view repo, std::string_view commit);

 private:
  // A run this server claimed, from the claim until its final state is written (in active_).
  struct Active {
    int attempt = 0;                  // the claim's (store::Run::attempt): renewals and the final write
    std::string holder;               // the claimer renewals name: "" this server, or the remote worker whose run it releases
    std::atomic<bool> cancel{false};  // Cancel() or Stop(): honoured by whatever the run does next
    std::atomic<bool> lost{false};    // another server took the run over: write nothing more of it
    Runner* runner = nullptr;         // while its steps run
    bool releasing = false;           // from the end of its steps until its release returns
    std::optional<store::RunState> outcome;  // settled and being written: too late to cancel
  };

  const RepoPolicy& PolicyFor(const std::string& repo) const;
  // What building `run` takes: its trust, scoped secrets and limits, by this server's policy.
  Job JobOf(const store::Run& run) const;
  // OK when `worker` holds run `id` at `attempt` (it is running under that claim); Aborted saying
  // who has it otherwise; NotFound; Unavailable.
  Status CheckHolder(int64_t id, std::string_view worker, int attempt);
  void WorkerLoop(bool trusted);
  void PollLoop();
  // Renews the leases of active_ and takes over the runs whose lease expired, every third of
  // run_lease.
  void LeaseLoop();
  // Re-queues runs a restart or an expired lease (`why`) interrupted, per requeue_interrupted.
  void Requeue(const std::vector<store::Run>& interrupted, std::string_view why);
  void Execute(const store::Run& run, Active& active);
  // Writes the run's final state at active.attempt (not when the run was lost), refusing cancels
  // from then on.
  void End(const store::Run& run, Active& active, store::RunState state, const std::string& message);
  // The pipeline file of `run` at its commit, from this server's mirror (fetched when it lacks it).
  Result<Pipeline> PipelineAt(const store::Run& run);
  // Copies the workspace upload of run `id` at `attempt` from the store to `path` (WorkerRelease);
  // returns its digest ("sha256:<hex>"). FailedPrecondition when nothing was uploaded; Unavailable.
  Result<std::string> FetchUpload(int64_t id, int attempt, const std::filesystem::path& path);
  // WorkerRelease's thread: the release of a remote worker's run, then its end.
  void ReleaseRemote(const store::Run& run, const Pipeline& pipeline, const std::string& message, Active& active);
  Status Release(const store::Run& run, const Pipeline& pipeline, const std::filesystem::path& workspace,
                 const std::string& commit, const Active& active);

  store::Store& store_;
  Executor& executor_;
  ServerOptions options_;
  std::unique_ptr<git::Mirrors> mirrors_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  // Held across a claim and the registration of the claimed run, and across Cancel()'s reading of
  // the store, so that a run this server claimed is always in active_ while the store says it is
  // running (one store round trip each; cancels are rare, claims every 200 ms per idle worker).
  Mutex mu_;
  std::map<int64_t, Active> active_ GUARDED_BY(mu_);  // by run id; the nodes stay where they are
  // The threads releasing remote workers' runs (WorkerRelease), joined by Stop(); `done` when it
  // has returned, so the next WorkerRelease joins it.
  struct ReleaseThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<ReleaseThread> release_threads_ GUARDED_BY(mu_);
};

// The host (lower-case, without user and port; "" for file://) and path (without leading '/',
// trailing '/' and ".git") of a clone URL: scheme://, scp-like user@host:path, file://.
struct RepoLocation {
  std::string host;
  std::string path;
  bool operator==(const RepoLocation&) const = default;
};
RepoLocation LocateRepo(std::string_view url);

// Whether webhook event `e` is about configured repository `configured`: the host and path of its
// clone URL must be those of `configured`. Only when the event has no clone URL (Bitbucket) does
// its full name ("org/app") decide, as the end of the configured path, and then a host the event
// does name (web or SSH URL) must be the configured one.
bool SameRepo(std::string_view configured, const webhook::Event& e);

// The provider whose webhooks `repo` accepts under `policy` (kAuto: any provider that signs).
webhook::Provider PinnedProvider(std::string_view repo, const RepoPolicy& policy);
// OK when a webhook verified as `got` may speak for `repo`; PermissionDenied saying what to pin
// otherwise.
Status CheckProvider(std::string_view repo, const RepoPolicy& policy, webhook::Provider got);

// "URL key=value ..." (a --repo-policy flag): `defaults` with the keys changed. Keys:
// approval=required|none, pull-requests=trusted|untrusted, network=off|on (for untrusted runs),
// provider=github|gitlab|gitea|forgejo|bitbucket|generic. InvalidArgument naming a bad key/value.
Result<std::pair<std::string, RepoPolicy>> ParseRepoPolicy(std::string_view spec, const RepoPolicy& defaults);

}  // namespace gantry::ci
