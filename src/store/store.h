#pragma once
// Gantry's state: the release ledger, CI runs with their steps and logs, approvals, webhook
// deliveries and the audit log, in SQLite (the embedded default, one file) or PostgreSQL (shared by
// several servers), behind one interface, Store.
//
// The ledger: a Release is one version of an application (source and config revisions, image
// digests, who started it, the CI run that built it). A Target is that release at one environment
// and cluster, with its deployment state. The release running at a place is the newest release
// whose target there is healthy (a rollback marks the newer ones rolled_back); a place is "behind"
// by the number of releases of the app newer than the one running there.
//
// Durability: every method is one transaction; when it returns OK its effect has been committed
// (SQLite: WAL with synchronous=FULL, so it survives power loss; PostgreSQL: a committed
// transaction). A crash at any point leaves either all or none of a call's writes. Transient
// failures (a broken PostgreSQL connection, a deadlock, a busy SQLite file) are retried with
// bounded backoff; a write whose COMMIT was sent when the connection broke is not retried, because
// it may have been applied: it fails with Unavailable and a message saying the outcome is unknown.
//
// Schema: numbered migrations built into the binary are applied at Open(), in one transaction,
// once (PostgreSQL: under an advisory lock, so servers starting together do not race).
//
// Secrets: the store holds none. Callers must not put credentials or tokens into any field; step
// logs arrive already masked by the ci module. Errors never contain the password of a database URL.
//
// Every time is stamped by the store from Options::clock, stored as UTC microseconds.
//
// Errors common to every method: Unavailable when the database cannot be reached (after the
// retries), DataLoss when it is corrupt, Internal for anything unexpected.
//
// Thread-safety: a Store is safe to use from many threads; it keeps a small pool of connections.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/retry.h"
#include "base/status.h"

namespace gantry::store {

using Time = std::chrono::system_clock::time_point;

// ---------------------------------------------------------------------------------------------
// Records

// What the supply chain recorded of one image of a release (docs/supply-chain.md): the digests of
// the manifests cosign's tags held after Gantry signed it ("sha256-<hex>.sig") and attested its
// SLSA provenance and its SBOM ("sha256-<hex>.att"); "" for what was not done.
struct ImageSupplyChain {
  std::string signature;
  std::string provenance;
  std::string sbom;
  bool empty() const { return signature.empty() && provenance.empty() && sbom.empty(); }
  friend bool operator==(const ImageSupplyChain&, const ImageSupplyChain&) = default;
};

struct Release {
  int64_t id = 0;  // assigned by CreateRelease; increases with every release of the store
  std::string app;
  std::string source_revision;
  std::string config_revision;
  std::map<std::string, std::string> image_digests;  // image name → "sha256:..."
  // Image name (a key of image_digests) → its signature and attestations; absent when unsigned.
  std::map<std::string, ImageSupplyChain> supply_chain;
  std::string started_by;                             // a user, "webhook:github", "agent", ...
  std::optional<int64_t> run_id;                      // the CI run that built it, if any
  std::string note;
  Time created_at{};  // set by the store
  // The Project it was released under ("" : before projects, which is the default project). An
  // app's releases all belong to one project (deliver refuses a release under another).
  std::string project;
  // A release in pull-request mode: the pull request (GitLab: merge request) it opened or updated
  // on the config repository's forge; 0 and "" otherwise.
  int64_t pull_request = 0;
  std::string pull_request_url;
};

// The deployment state of a release at one environment and cluster. rolled_back and superseded are
// final: a target in either never changes again. Any other transition is allowed.
enum class TargetState { kPending, kApplying, kHealthy, kFailed, kRolledBack, kSuperseded };

struct Target {
  int64_t release_id = 0;
  std::string env;
  std::string cluster;
  TargetState state = TargetState::kPending;
  std::string message;
  std::string sync_result;  // opaque to the store (the sync module's JSON summary)
  // Optimistic concurrency: starts at 1 and increases with every write. UpsertTarget() takes the
  // version the caller last read (0 to create) and returns the new one.
  int64_t version = 0;
  Time created_at{};
  Time updated_at{};
  std::optional<Time> finished_at;  // set on entering healthy, failed, rolled_back or superseded
};

// One environment × cluster of an application, for `gantry status`.
struct TargetStatus {
  std::string env;
  std::string cluster;
  std::optional<Release> running;  // the newest release whose target here is healthy
  Release latest;                  // the newest release with a target here, in any state
  Target latest_target;            // its target here
  int64_t behind = 0;              // releases of the app newer than `running` (all, when none)
};

// Labels of a run (what its claimer must have) and of a claimer (what it has): key → value.
using Labels = std::map<std::string, std::string>;
// "arch=arm64,gpu=yes" (sorted by key), and back: InvalidArgument naming the bad entry for an entry
// without '=', a repeated key, or a key or value that is empty or not [A-Za-z0-9._/-]+.
std::string FormatLabels(const Labels& labels);
Result<Labels> ParseLabels(std::string_view text);
// True when every label of `wanted` is in `have` with the same value.
bool LabelsMatch(const Labels& wanted, const Labels& have);

// Runs and steps. succeeded, failed, cancelled and skipped are final; interrupted is not (a
// restarted runner may re-queue the run). skipped is for steps only. awaiting_approval is for runs
// only: an untrusted run is created in it and leaves it by ApproveRun (to queued) or cancelled.
enum class RunState {
  kQueued, kRunning, kSucceeded, kFailed, kCancelled, kInterrupted, kSkipped, kAwaitingApproval
};
enum class RunEvent { kPush, kPullRequest, kManual };

struct Step {
  std::string name;
  RunState state = RunState::kQueued;
  std::optional<int> exit_code;
  std::optional<Time> started_at;   // set by the store on entering running
  std::optional<Time> finished_at;  // set by the store on entering a final state or interrupted
  // The steps it waits for, as the pipeline file said when the run started (its DAG's edges).
  std::vector<std::string> needs;
  int attempts = 0;  // how many times it was started (1 + the retries its `retry:` allowed); 0 before
};

struct Run {
  int64_t id = 0;  // assigned by CreateRun
  std::string repo;
  std::string pipeline;
  std::string commit;
  std::string ref;
  // A pull request's head branch ("feature/x", in `repo`): its commit must be on that branch.
  std::string head_ref;
  RunEvent event = RunEvent::kPush;
  std::string delivery_id;  // the webhook delivery that caused it; "" when none
  RunState state = RunState::kQueued;
  std::string worker;  // the server that claimed it; "" while queued
  int attempt = 0;     // how many times it was claimed
  // While running: until when the claim holds unless its server renews it (RenewRunLease); after
  // that any server may take the run over (MarkExpiredInterrupted). nullopt when not claimed, or
  // claimed by a Gantry that kept no leases.
  std::optional<Time> lease_expires_at;
  std::string message;
  // False for code nobody trusted pushed (a fork's pull request, or any pull request when the
  // repository's policy says so): such a run is claimed only by ClaimNextQueuedRun(_, false).
  bool trusted = true;
  std::string approved_by;  // who moved it out of awaiting_approval (ApproveRun); "" otherwise
  // The run this one retries (same repository, commit, ref, event and pipeline); 0 when none. A
  // retry claims no (pipeline, repo, ref, commit, event) key: that commit is built again on purpose.
  int64_t retry_of = 0;
  // What a claimer must have to take the run (ClaimNextQueuedRun): every label here, with the same
  // value, among its own ("arch" → "arm64"). Keys and values: [A-Za-z0-9._/-]+. Empty: anyone.
  Labels labels;
  // The project of its repository when it was queued (ci::RepoPolicy::project; "" for none): a
  // worker whose token is for one project claims only that project's runs (ClaimNextQueuedRun).
  std::string project;
  // The paths the push changed (from its webhook), for `when: paths:`; nullopt when not known
  // (a poll, a retry), and then path filters match.
  std::optional<std::vector<std::string>> changed_paths;
  // Set by RequestRunCancel while the run runs: whoever holds its claim learns it at its next
  // renewal (RenewRunLease) and stops it.
  bool cancel_requested = false;
  Time created_at{};
  std::optional<Time> started_at;
  std::optional<Time> finished_at;
  std::vector<Step> steps;  // filled by GetRun, in the order they were first written
};

struct RunFilter {
  std::string pipeline;              // "" = all
  std::optional<RunState> state;     // nullopt = all
  int64_t before_id = 0;             // 0 = from the newest
  int limit = 50;
};

inline constexpr size_t kMaxLogChunkBytes = 64 * 1024;

// What RenewRunLease found.
enum class Renewal { kLost, kRenewed, kCancelRequested };

// How many of the oldest queued runs a claimer looks at for one its labels match.
inline constexpr int kClaimCandidates = 64;

// How long a run's claim lasts without renewal (`gantry server --run-lease`).
inline constexpr std::chrono::milliseconds kDefaultRunLease{15'000};

struct LogChunk {
  std::string step;
  int64_t seq = 0;
  std::string data;
  Time written_at{};
};

struct AuditEntry {
  int64_t id = 0;  // assigned by Audit()
  Time at{};       // set by the store
  std::string actor;
  std::string action;  // "deploy", "rollback", "approve", "runs.cancel", "tokens.create", ...
  std::string object;  // "app/podinfo env/prod"
  std::string details;
  std::string source;         // the client's address ("127.0.0.1:53412"), "cli", "agent", or ""
  std::string result = "ok";  // "ok", or the refusal or failure: "PermissionDenied: user bob lacks ..."
  std::string project;        // the project the object belongs to; "" for none
};

// Which audit entries ListAudit() returns: every condition given must hold. Newest first.
struct AuditFilter {
  std::string actor;            // "" = any
  std::string action;           // "" = any
  std::string project;          // "" = any
  std::optional<Time> since;    // at >= since
  std::optional<Time> until;    // at < until
  int64_t before_id = 0;        // 0 = from the newest (paging)
  int limit = 100;
};

// API tokens (server/access.h). The store keeps a token's SHA-256, never its secret: the caller
// generates the secret, shows it once and hands in its hash. A user token acts as its owner (a user
// name) with that user's roles; a robot token acts for one project (its owner) with the roles it
// was created with.
enum class TokenKind { kUser, kRobot };

struct ApiToken {
  int64_t id = 0;  // assigned by CreateToken; shown as "t-<id>"
  std::string name;
  TokenKind kind = TokenKind::kUser;
  std::string owner;               // user tokens: the user; robot tokens: the project
  std::vector<std::string> roles;  // robot tokens only: role names ("deployer")
  std::string secret_sha256;       // 64 lowercase hex characters
  std::string created_by;
  Time created_at{};  // set by the store
  std::optional<Time> expires_at;
  std::optional<Time> last_used_at;  // set by TouchToken
  std::optional<Time> revoked_at;    // set by RevokeToken
  std::string revoked_by;
};

// A role granted to a user or a group on a project; project "*" is every project (cluster-wide).
// The store does not interpret role names (authz/authz.h does).
enum class SubjectKind { kUser, kGroup };

struct RoleBinding {
  SubjectKind subject_kind = SubjectKind::kUser;
  std::string subject;
  std::string role;
  std::string project;
  std::string created_by;
  Time created_at{};  // set by the store
};

// How far the release pipeline of one CI run got (release/release.h), so that a run re-queued after
// a crash resumes its release after the last stage that completed instead of repeating it. The
// store keeps it and does not interpret it: `stage` names what was done last, `data` is the
// release module's own JSON (what the stages produced, what a stage in flight had started).
struct ReleaseProgress {
  int64_t run_id = 0;
  std::string stage;
  std::string data;
  // Optimistic concurrency, as Target's: starts at 1 and increases with every write; a writer
  // passes the version it last read (0 to create).
  int64_t version = 0;
  Time updated_at{};  // set by the store
};

// A notification in the outbox (notify/notify.h): accepted for one subscription and provider,
// rendered, and delivered by the server's notifier, which retries it until its deadline.
// delivered and failed are final.
enum class NotificationState { kPending, kDelivered, kFailed };

struct Notification {
  int64_t id = 0;            // assigned by EnqueueNotification
  std::string event_id;      // the event's id, sent to receivers for idempotency
  std::string subscription;  // the subscription's name in the notifications config
  std::string provider;      // the provider's name there
  std::string trigger;       // "run-failed", "release-deployed", ...
  std::string project;       // "" for none
  std::string app;
  std::string environment;
  std::string subject;  // the title (an email's Subject)
  std::string body;     // the rendered payload, opaque to the store
  NotificationState state = NotificationState::kPending;
  int attempts = 0;
  std::string last_error;  // why the last attempt failed ("HTTP 500: ...", an SMTP reply)
  Time created_at{};       // set by the store
  Time next_attempt_at{};  // when the notifier tries (again)
  Time deadline{};         // after this, a failed attempt is final
  std::optional<Time> finished_at;  // set by the store on entering delivered or failed
};

// Which notifications ListNotifications() returns: every condition given must hold.
struct NotificationFilter {
  std::optional<NotificationState> state;  // nullopt = all
  // Only pending ones due by then (next_attempt_at <= due_by), oldest first; otherwise newest first.
  std::optional<Time> due_by;
  int64_t before_id = 0;  // 0 = from the newest (paging; ignored with due_by)
  int limit = 50;
};

// A commit status for a forge (forge/forge.h) in the outbox: the newest wanted state of one
// context on one commit. A later PutForgeStatus of the same (forge, repo, sha, context) replaces it
// (an undelivered pending is not sent after the success that followed it); `version` tells an
// attempt on the replaced one from one on the newest. Delivery states as a Notification's.
struct ForgeStatus {
  int64_t id = 0;       // assigned by the store
  std::string forge;    // the forge's name in the server's config
  std::string repo;     // the repository's path on that forge ("owner/name")
  std::string sha;
  std::string context;  // "gantry/ci", "gantry/deploy/prod"
  std::string state;    // forge::State's name: "pending", "running", "success", "failure", "error"
  std::string description;
  std::string target_url;
  NotificationState delivery = NotificationState::kPending;
  int attempts = 0;
  std::string last_error;
  int64_t version = 0;     // set by the store: 1, then + 1 on every change by PutForgeStatus
  Time updated_at{};       // set by the store
  Time next_attempt_at{};  // when the deliverer tries (again)
  Time deadline{};         // after this, a failed attempt is final
};

// A pull request the server merges once its checks pass (the outbox of server/pull_merges.h): the
// newest head wanted merged of one pull request. A later PutPullMerge of the same (forge, repo,
// number) replaces it (the next release's head is merged, never the older one); `version` tells an
// attempt on the replaced one from one on the newest. States as a Notification's: pending (waiting
// for the checks, or for the forge), delivered (merged), failed.
struct PullMerge {
  int64_t id = 0;       // assigned by the store
  std::string forge;    // the forge's name in the server's config
  std::string repo;     // the repository's path on that forge ("owner/name")
  int64_t number = 0;   // the pull request's number (GitLab: iid)
  std::string sha;      // the head to merge
  std::string method;   // "merge", "squash", "rebase"
  std::vector<std::string> required_checks;  // empty: every check reported
  int64_t release_id = 0;  // the ledger release it merges
  NotificationState state = NotificationState::kPending;
  int attempts = 0;
  std::string last_error;  // pending: why it waits; failed: why it gave up
  int64_t version = 0;     // set by the store: 1, then + 1 on every change by PutPullMerge
  Time updated_at{};       // set by the store
  Time next_attempt_at{};  // when the merger looks (again)
  Time deadline{};         // after this, a pull request still waiting is recorded failed
};

// Which forge statuses ListForgeStatuses() returns: every condition given must hold.
struct ForgeStatusFilter {
  std::optional<NotificationState> delivery;  // nullopt = all
  std::optional<Time> due_by;  // only pending ones due by then, oldest first; otherwise newest first
  std::string sha;             // "" = any
  int limit = 50;
};

// ---------------------------------------------------------------------------------------------
// The interface

class Store {
 public:
  virtual ~Store() = default;

  // Releases.
  // Creates a release and returns its id. InvalidArgument when app is empty; NotFound when run_id
  // names no run.
  virtual Result<int64_t> CreateRelease(const Release& release) = 0;
  // NotFound when there is no release `id`.
  virtual Result<Release> GetRelease(int64_t id) = 0;
  // The releases of `app`, newest first, at most `limit`, only those older than `before_id` when
  // it is not 0 (paging). InvalidArgument when limit < 1 (so for every List/Read below).
  virtual Result<std::vector<Release>> ListReleases(std::string_view app, int limit,
                                                    int64_t before_id = 0) = 0;
  // Every application with at least one release, sorted by name.
  virtual Result<std::vector<std::string>> ListApps() = 0;

  // Deployments.
  // Creates (target.version == 0) or updates (target.version == the version last read) the target
  // of (release_id, env, cluster) with state, message and sync_result, stamping the times, and
  // returns it with its new version. InvalidArgument when env or cluster is empty; NotFound when
  // the release does not exist, or when version != 0 names a target that does not; AlreadyExists
  // when creating a target that exists; Aborted when the target changed since `version` was read
  // (read again and decide again); FailedPrecondition when it is rolled_back or superseded.
  virtual Result<Target> UpsertTarget(const Target& target) = 0;
  // The targets of a release, ordered by env then cluster (empty when none or no such release).
  virtual Result<std::vector<Target>> ListTargets(int64_t release_id) = 0;
  // Every place `app` has a target, ordered by env then cluster.
  virtual Result<std::vector<TargetStatus>> CurrentByTarget(std::string_view app) = 0;
  // How many releases of `app` are newer than the one running at (env, cluster): all of them when
  // none runs there.
  virtual Result<int64_t> ReleasesBehind(std::string_view app, std::string_view env,
                                         std::string_view cluster) = 0;

  // Approvals. Approve() is idempotent: a second approval keeps the first. NotFound when there is
  // no such release.
  virtual Status Approve(int64_t release_id, std::string_view env, std::string_view by) = 0;
  virtual Result<bool> IsApproved(int64_t release_id, std::string_view env) = 0;

  // CI runs.
  // Creates a run in run.state (queued or awaiting_approval) and returns its id. InvalidArgument
  // when pipeline is empty or the state is another; AlreadyExists, naming the existing run, when a
  // run of the same pipeline was already created for this non-empty delivery_id (a redelivered
  // webhook), or for the same (pipeline, repo, ref, non-empty commit, event) unless the event is
  // manual (a replayed webhook with a new delivery id, or a poll finding a commit a webhook
  // queued): a commit is built once per ref and event.
  virtual Result<int64_t> CreateRun(const Run& run) = 0;
  // Moves run `id` from awaiting_approval to queued, recording `by` (who approved). NotFound;
  // FailedPrecondition (saying its state) when it does not await approval.
  virtual Status ApproveRun(int64_t id, std::string_view by) = 0;
  // Records that run `id` builds `commit` (the tip its ref pointed to after the fetch, when the
  // webhook named another): the run's commit becomes `commit`, and (pipeline, repo, ref, commit,
  // event) is claimed for it, so neither a poll nor a webhook queues that commit again. The key of
  // the commit it was created with stays claimed too. NotFound; AlreadyExists naming the other
  // run when another run already has that key (this one is then redundant).
  virtual Status BindRunCommit(int64_t id, std::string_view commit) = 0;
  // Moves run `id` to `state` with `message`, stamping started_at/finished_at; queued clears the
  // worker (re-queue). Writing a final run's state again is OK (a retry). With `attempt` > 0 the
  // write is fenced: it happens only while the run is running at that attempt (the claim that
  // wrote it still holds), else Aborted saying who has the run now. NotFound; FailedPrecondition
  // when the run is final or state is skipped; Aborted when another writer changed its state
  // meanwhile.
  virtual Status UpdateRun(int64_t id, RunState state, std::string_view message = {}, int attempt = 0) = 0;
  // Creates or updates step `step.name` of a run (state, exit code, needs and attempts; times are
  // stamped; needs and attempts are kept when a later write leaves them empty and 0).
  // Writing a final step's state again is OK (a retry). InvalidArgument when the name is empty;
  // NotFound when there is no such run; FailedPrecondition when the step is final.
  virtual Status UpsertStep(int64_t run_id, const Step& step) = 0;
  // NotFound when there is no run `id`.
  virtual Result<Run> GetRun(int64_t id) = 0;
  // Newest first, without steps.
  virtual Result<std::vector<Run>> ListRuns(const RunFilter& filter) = 0;
  // After a restart: every running run claimed by `worker` ("" = by anyone, for a single server)
  // and its running steps become interrupted. Returns those runs (for the re-queue policy).
  virtual Result<std::vector<Run>> MarkUnfinishedInterrupted(std::string_view worker) = 0;
  // Atomically takes the oldest queued run (only those whose `trusted` equals `trusted`, when it
  // is set, and whose labels `labels` has: LabelsMatch): it becomes running, claimed by `worker`,
  // attempt + 1, its lease expiring after `lease`. nullopt when none is queued. Each queued run is
  // claimed by exactly one caller, across threads and servers. A caller looks at the
  // kClaimCandidates oldest queued runs it may take by trust (and `project`, when it is set: only
  // runs of that project), and takes the first its labels match.
  virtual Result<std::optional<Run>> ClaimNextQueuedRun(std::string_view worker, std::optional<bool> trusted,
                                                        std::chrono::milliseconds lease = kDefaultRunLease,
                                                        const Labels& labels = {},
                                                        std::optional<std::string_view> project = std::nullopt) = 0;
  // Extends the lease of run `id` to now + `lease` when `worker` still holds it at `attempt` (it
  // is running under that claim): kRenewed, or kCancelRequested when a cancel was asked for
  // (RequestRunCancel: the caller stops the run's steps and ends it cancelled). kLost when it does
  // not hold it (its lease expired and another server took it over, or it ended): the caller must
  // stop working on the run and write nothing more of it. NotFound when there is no run `id`.
  virtual Result<Renewal> RenewRunLease(int64_t id, std::string_view worker, int attempt,
                                        std::chrono::milliseconds lease) = 0;
  // Asks whoever runs run `id` to cancel it: its next RenewRunLease says kCancelRequested. NotFound;
  // FailedPrecondition (saying its state) when it is not running.
  virtual Status RequestRunCancel(int64_t id) = 0;
  // Every running run whose lease has expired (its server died or lost the database) and its
  // running steps become interrupted, as MarkUnfinishedInterrupted does for a restarted server.
  // Returns those runs, oldest first, for the re-queue policy; exactly one caller gets each.
  virtual Result<std::vector<Run>> MarkExpiredInterrupted() = 0;

  // Workspace uploads: what the release of a run built on a remote worker reads (docs/scaling.md),
  // one tar stream per (run, attempt) in parts, kept here so that any server takes any part and
  // any server releases it. A run's uploads are dropped when it leaves running (UpdateRun,
  // Mark*Interrupted) or by DeleteRunUploads.
  //
  // Appends `data` at byte `offset` of the upload of run `id` at `attempt`, which `worker` must
  // hold (running under that claim); offset 0 starts it over. Returns the bytes held after it.
  // Aborted (saying who holds it) when `worker` does not hold the run at `attempt`;
  // FailedPrecondition when `offset` is not the bytes held (saying how many); NotFound when there
  // is no run `id`. The caller bounds the upload (offset + data.size()).
  virtual Result<uint64_t> AppendRunUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                           std::string_view data) = 0;
  // The part of the upload of run `id` at `attempt` that starts at byte `offset` ("" at its end
  // or when nothing was uploaded).
  virtual Result<std::string> ReadRunUpload(int64_t id, int attempt, uint64_t offset) = 0;
  // Drops every upload of run `id`.
  virtual Status DeleteRunUploads(int64_t id) = 0;

  // Named leases: scheduled work done once across servers (delivering an outbox, polling). True
  // when `holder` holds the lease `name` until now + `duration`: it was free, expired, or already
  // its own (renewed). False while another holder's lease has not expired. InvalidArgument when
  // name or holder is empty.
  virtual Result<bool> AcquireLease(std::string_view name, std::string_view holder,
                                    std::chrono::milliseconds duration) = 0;

  // Release progress.
  // Creates (progress.version == 0) or replaces (== the version last read) the progress of run
  // progress.run_id and returns it with its new version. InvalidArgument when stage is empty;
  // NotFound when there is no such run, or when version != 0 and the run has no progress yet;
  // AlreadyExists when creating progress that exists; Aborted when it changed since `version` was
  // read (another process is releasing the run: stop).
  virtual Result<ReleaseProgress> PutReleaseProgress(const ReleaseProgress& progress) = 0;
  // The progress of run `run_id`'s release; nullopt when it has none (it never started one).
  virtual Result<std::optional<ReleaseProgress>> GetReleaseProgress(int64_t run_id) = 0;

  // Logs.
  // Stores chunk `seq` of a step's log. Idempotent: writing the same (run, step, seq) again with
  // the same bytes is OK. InvalidArgument when data exceeds kMaxLogChunkBytes or seq < 0; NotFound
  // when there is no such run; AlreadyExists when that chunk exists with different bytes.
  virtual Status AppendLogChunk(int64_t run_id, std::string_view step, int64_t seq,
                                std::string_view data) = 0;
  // The chunks of a step with seq >= from_seq in order, at most max_chunks; empty when there are
  // none (yet). For `logs -f`: poll again from the last seq + 1 until the run is final.
  virtual Result<std::vector<LogChunk>> ReadLog(int64_t run_id, std::string_view step,
                                                int64_t from_seq, int max_chunks = 256) = 0;

  // Webhook deliveries: true when (provider, delivery_id) is new, false when already recorded.
  // Records older than Options::delivery_retention are forgotten.
  virtual Result<bool> RecordDelivery(std::string_view provider, std::string_view delivery_id) = 0;

  // Audit log, append-only: there is no method that changes or deletes an entry, and the database
  // refuses UPDATE and DELETE on it (a trigger). Audit() returns the entry's id; ListAudit() the
  // entries `filter` selects, newest first (InvalidArgument when filter.limit < 1).
  virtual Result<int64_t> Audit(const AuditEntry& entry) = 0;
  virtual Result<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) = 0;
  // The newest `limit` entries older than `before_id` (0 = from the newest).
  Result<std::vector<AuditEntry>> ListAudit(int limit, int64_t before_id = 0) {
    return ListAudit(AuditFilter{.before_id = before_id, .limit = limit});
  }

  // API tokens.
  // Stores `token` (name, kind, owner, roles, secret_sha256, created_by, expires_at) and returns it
  // with its id and creation time. InvalidArgument when the name or owner is empty, the hash is
  // not 64 lowercase hex characters, or a robot token has no role; AlreadyExists when a token has
  // the same hash; with only_if_first, AlreadyExists when any token exists (checked atomically:
  // the bootstrap admin's token is created once, even by servers starting together).
  virtual Result<ApiToken> CreateToken(const ApiToken& token, bool only_if_first = false) = 0;
  // NotFound when no token has that hash (revoked and expired tokens are found: the caller says why
  // they no longer work).
  virtual Result<ApiToken> FindTokenByHash(std::string_view secret_sha256) = 0;
  // NotFound when there is no token `id`.
  virtual Result<ApiToken> GetToken(int64_t id) = 0;
  // Sets the token's last_used_at to now (callers throttle how often). NotFound.
  virtual Status TouchToken(int64_t id) = 0;
  // Revokes token `id`, recording who; idempotent (a second revocation keeps the first). NotFound.
  virtual Status RevokeToken(int64_t id, std::string_view by) = 0;
  // The tokens of `owner` ("" = every token), newest first.
  virtual Result<std::vector<ApiToken>> ListTokens(std::string_view owner) = 0;

  // Role bindings.
  // Grants binding.role to the subject on binding.project; idempotent (a second grant keeps the
  // first). InvalidArgument when subject, role or project is empty.
  virtual Status GrantRole(const RoleBinding& binding) = 0;
  // Removes that binding. NotFound when there is none.
  virtual Status RevokeRole(SubjectKind kind, std::string_view subject, std::string_view role,
                            std::string_view project) = 0;
  // Every binding, ordered by subject kind, subject, project, role.
  virtual Result<std::vector<RoleBinding>> ListRoleBindings() = 0;

  // Notifications (the outbox).
  // Stores `n` (pending or failed, e.g. refused by a rate limit) and returns its id.
  // InvalidArgument when event_id, subscription or provider is empty, or the state is delivered;
  // AlreadyExists when (subscription, event_id) is already there (the same event accepted twice).
  virtual Result<int64_t> EnqueueNotification(const Notification& n) = 0;
  // As `filter` says. InvalidArgument when filter.limit < 1.
  virtual Result<std::vector<Notification>> ListNotifications(const NotificationFilter& filter) = 0;
  // Records one delivery attempt of notification `id`: attempts + 1, its state (pending again,
  // delivered or failed), the error ("" when delivered) and, when pending, the next attempt's
  // time. NotFound; FailedPrecondition when it is already delivered or failed.
  virtual Status RecordNotificationAttempt(int64_t id, NotificationState state, std::string_view error,
                                           Time next_attempt_at) = 0;

  // Forge commit statuses (the outbox of server/forge_statuses.h).
  // Puts the wanted status `s` of (forge, repo, sha, context), pending from s.next_attempt_at until
  // s.deadline, and returns its id: a new row, or the existing one replaced (attempts and error
  // reset, version + 1). The same state, description and URL as the existing row's change nothing
  // (unless it failed). InvalidArgument when forge, repo, sha, context or state is empty.
  virtual Result<int64_t> PutForgeStatus(const ForgeStatus& s) = 0;
  // As `filter` says. InvalidArgument when filter.limit < 1.
  virtual Result<std::vector<ForgeStatus>> ListForgeStatuses(const ForgeStatusFilter& filter) = 0;
  // Records one delivery attempt of status `id` at `version`, as RecordNotificationAttempt does.
  // Aborted when the status was replaced since (another version: the newest is delivered on its
  // own); NotFound; FailedPrecondition when it is no longer pending.
  virtual Status RecordForgeStatusAttempt(int64_t id, int64_t version, NotificationState delivery,
                                          std::string_view error, Time next_attempt_at) = 0;

  // Pull requests to merge (the outbox of server/pull_merges.h).
  // Puts `m` (pending from m.next_attempt_at until m.deadline) and returns its id: a new row, or
  // the existing one of (forge, repo, number) replaced (attempts and error reset, version + 1).
  // InvalidArgument when forge, repo, sha or method is empty or number < 1.
  virtual Result<int64_t> PutPullMerge(const PullMerge& m) = 0;
  // With due_by: the pending ones due by then, oldest first; without: all, newest first. At most
  // `limit`. InvalidArgument when limit < 1.
  virtual Result<std::vector<PullMerge>> ListPullMerges(std::optional<Time> due_by, int limit) = 0;
  // The merge wanted for ledger release `release_id`; nullopt when there is none (the release did
  // not ask for one, or a newer release of the same pull request replaced it).
  virtual Result<std::optional<PullMerge>> PullMergeOfRelease(int64_t release_id) = 0;
  // Records one attempt of merge `id` at `version` as RecordForgeStatusAttempt does: pending again
  // (with `note` saying why it waits), delivered (merged) or failed. Aborted when it was replaced
  // since; NotFound; FailedPrecondition when it is no longer pending.
  virtual Status RecordPullMergeAttempt(int64_t id, int64_t version, NotificationState state, std::string_view note,
                                        Time next_attempt_at) = 0;

  // The number of the newest migration applied to the database.
  virtual Result<int> SchemaVersion() = 0;
  // Checks that the database answers and, for SQLite, that the file is intact
  // (PRAGMA integrity_check): DataLoss naming the first problem when it is not.
  virtual Status Verify() = 0;
};

struct Options {
  Clock* clock = nullptr;  // nullptr: SystemClock()
  std::chrono::hours delivery_retention{24 * 7};
  int max_connections = 4;
  std::chrono::milliseconds busy_timeout{5000};  // SQLite: wait for another process's lock
  // PostgreSQL: the longest wait for the server's answer to one statement. Past it the connection
  // is dropped and the statement fails Unavailable (the transaction is retried), so a server or
  // network that goes silent cannot hold a caller forever. Connecting is bounded by libpq's
  // connect_timeout (10 s unless the URL sets it).
  std::chrono::milliseconds reply_timeout{60000};
  BackoffPolicy retry{.initial = std::chrono::milliseconds(50),
                      .max_delay = std::chrono::milliseconds(2000),
                      .max_attempts = 6,
                      .max_elapsed = std::chrono::milliseconds(20000)};
  // Apply migrations only up to this version (nullopt = all): lets tests act as an older binary.
  std::optional<int> max_schema_version;
};

// Opens (creating when needed) the store at `url` and migrates it:
//   sqlite:///abs/path/gantry.db, sqlite:relative.db, or a plain path  → SQLite
//   postgresql://user:pass@host:port/db?sslmode=...  or postgres://... → PostgreSQL
// InvalidArgument for an unsupported or malformed URL; Unavailable when PostgreSQL cannot be
// reached (after the retries); Unauthenticated when it refuses the credentials; FailedPrecondition
// when the SQLite file cannot be opened or created, the PostgreSQL database does not exist, or the
// database was migrated by a newer Gantry; DataLoss when the SQLite file is not a database or is
// corrupt.
Result<std::unique_ptr<Store>> Open(std::string_view url, const Options& options = {});

// What Open() makes of a URL.
struct Location {
  enum class Kind { kSqlite, kPostgres } kind;
  std::string target;  // the file path, or the PostgreSQL URL as given
};
Result<Location> ParseUrl(std::string_view url);

// `url` with any password replaced by "***", for messages and logs.
std::string RedactUrl(std::string_view url);

// Names as stored and shown ("pending", "rolled_back", "pull_request", ...) and their parsers
// (nullopt for an unknown name).
std::string_view Name(TargetState state);
std::string_view Name(RunState state);
std::string_view Name(RunEvent event);
std::optional<TargetState> ParseTargetState(std::string_view name);
std::optional<RunState> ParseRunState(std::string_view name);
std::optional<RunEvent> ParseRunEvent(std::string_view name);
std::string_view Name(TokenKind kind);      // "user", "robot"
std::string_view Name(SubjectKind kind);    // "user", "group"
std::optional<TokenKind> ParseTokenKind(std::string_view name);
std::optional<SubjectKind> ParseSubjectKind(std::string_view name);
std::string_view Name(NotificationState state);  // "pending", "delivered", "failed"
std::optional<NotificationState> ParseNotificationState(std::string_view name);

// The transition rules UpsertTarget / UpdateRun / UpsertStep enforce, as pure functions:
// FailedPrecondition (saying why) when `from` may not become `to`.
bool IsFinal(TargetState state);
bool IsFinal(RunState state);
Status CheckTransition(TargetState from, TargetState to);
Status CheckRunTransition(RunState from, RunState to);
Status CheckStepTransition(RunState from, RunState to);

}  // namespace gantry::store
