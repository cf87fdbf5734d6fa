#include "store/internal/sql_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/mutex.h"

namespace gantry::store::internal {
namespace {

// Column lists, in the order the *From() functions read them.
#define GANTRY_RELEASE_COLS \
  "id, app, source_revision, config_revision, started_by, run_id, note, created_at, project, pull_request, " \
  "pull_request_url"
#define GANTRY_TARGET_COLS                                                                    \
  "release_id, env, cluster, state, message, sync_result, version, created_at, updated_at, " \
  "finished_at"
#define GANTRY_RUN_COLS                                                                       \
  "id, repo, pipeline, commit_sha, ref, event, delivery_id, state, worker, attempt, message, " \
  "created_at, started_at, finished_at, trusted, approved_by, head_ref, retry_of, lease_expires_at, " \
  "labels, changed_paths, cancel_requested, project"
#define GANTRY_STEP_COLS "name, state, exit_code, started_at, finished_at, needs, attempts"

// The key of the PostgreSQL advisory lock that serialises migrations ("gantry" in ASCII).
constexpr int64_t kMigrationLockKey = 0x67616e747279;

Value OptValue(std::optional<int64_t> v) { return v ? Value(*v) : Value(nullptr); }
std::optional<Time> OptTimeFrom(const Row& r, size_t i) {
  return r.IsNull(i) ? std::nullopt : std::optional<Time>(FromMicros(r.Int(i)));
}
std::string S(std::string_view s) { return std::string(s); }
std::string S(TargetState s) { return std::string(Name(s)); }
std::string S(RunState s) { return std::string(Name(s)); }
// "before_id = 0" means from the newest.
int64_t Before(int64_t before_id) {
  return before_id > 0 ? before_id : std::numeric_limits<int64_t>::max();
}
Status CheckLimit(int limit) {
  if (limit < 1) return InvalidArgumentError("limit must be at least 1, got {}", limit);
  return OkStatus();
}

// States come from Name(); the schema version check keeps names this binary does not know out.
TargetState TargetStateFrom(const std::string& s) {
  return ParseTargetState(s).value_or(TargetState::kFailed);
}
RunState RunStateFrom(const std::string& s) { return ParseRunState(s).value_or(RunState::kFailed); }

Release ReleaseFrom(const Row& r) {
  Release out;
  out.id = r.Int(0);
  out.app = r.Text(1);
  out.source_revision = r.Text(2);
  out.config_revision = r.Text(3);
  out.started_by = r.Text(4);
  out.run_id = r.OptInt(5);
  out.note = r.Text(6);
  out.created_at = FromMicros(r.Int(7));
  out.project = r.Text(8);
  out.pull_request = r.Int(9);
  out.pull_request_url = r.Text(10);
  return out;
}

Target TargetFrom(const Row& r) {
  Target out;
  out.release_id = r.Int(0);
  out.env = r.Text(1);
  out.cluster = r.Text(2);
  out.state = TargetStateFrom(r.Text(3));
  out.message = r.Text(4);
  out.sync_result = r.Text(5);
  out.version = r.Int(6);
  out.created_at = FromMicros(r.Int(7));
  out.updated_at = FromMicros(r.Int(8));
  out.finished_at = OptTimeFrom(r, 9);
  return out;
}

Run RunFrom(const Row& r) {
  Run out;
  out.id = r.Int(0);
  out.repo = r.Text(1);
  out.pipeline = r.Text(2);
  out.commit = r.Text(3);
  out.ref = r.Text(4);
  out.event = ParseRunEvent(r.Text(5)).value_or(RunEvent::kManual);
  out.delivery_id = r.Text(6);
  out.state = RunStateFrom(r.Text(7));
  out.worker = r.Text(8);
  out.attempt = static_cast<int>(r.Int(9));
  out.message = r.Text(10);
  out.created_at = FromMicros(r.Int(11));
  out.started_at = OptTimeFrom(r, 12);
  out.finished_at = OptTimeFrom(r, 13);
  out.trusted = r.Int(14) != 0;
  out.approved_by = r.Text(15);
  out.head_ref = r.Text(16);
  out.retry_of = r.OptInt(17).value_or(0);
  out.lease_expires_at = OptTimeFrom(r, 18);
  // Written by CreateRun from a valid Labels, and read back as such.
  out.labels = ParseLabels(r.Text(19)).value_or(Labels{});
  // changed_paths: each path and a newline (CreateRun stores none that holds one).
  if (!r.IsNull(20)) {
    out.changed_paths.emplace();
    for (std::string_view paths = r.Text(20); !paths.empty();) {
      const size_t nl = std::min(paths.find('\n'), paths.size());
      out.changed_paths->emplace_back(paths.substr(0, nl));
      paths.remove_prefix(std::min(nl + 1, paths.size()));
    }
  }
  out.cancel_requested = r.Int(21) != 0;
  out.project = r.Text(22);
  return out;
}

Step StepFrom(const Row& r) {
  Step out;
  out.name = r.Text(0);
  out.state = RunStateFrom(r.Text(1));
  if (!r.IsNull(2)) out.exit_code = static_cast<int>(r.Int(2));
  out.started_at = OptTimeFrom(r, 3);
  out.finished_at = OptTimeFrom(r, 4);
  // needs: the names one a line (a matrix step's name has commas and spaces, never a newline).
  for (std::string_view needs = r.Text(5); !needs.empty();) {
    const size_t nl = std::min(needs.find('\n'), needs.size());
    out.needs.emplace_back(needs.substr(0, nl));
    needs.remove_prefix(std::min(nl + 1, needs.size()));
  }
  out.attempts = static_cast<int>(r.Int(6));
  return out;
}

Status RequireRow(Connection& c, std::string_view sql, int64_t id, std::string_view what) {
  GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query(sql, {id}));
  if (rows.empty()) return NotFoundError("{} {} not found", what, id);
  return OkStatus();
}
// Claims (pipeline, repo, ref, commit, event) for run `id`; the id of the run that has it when
// another run does. Manual runs and runs without a commit claim nothing.
Result<std::optional<int64_t>> ClaimRunKey(Connection& c, const Run& run, std::string_view commit,
                                           int64_t id) {
  if (commit.empty() || run.event == RunEvent::kManual) return std::optional<int64_t>();
  const std::vector<Value> key = {run.pipeline, run.repo, run.ref, S(commit), S(Name(run.event))};
  std::vector<Value> insert = key;
  insert.push_back(id);
  GANTRY_ASSIGN_OR_RETURN(
      Rows inserted,
      c.Query("INSERT INTO run_keys (pipeline, repo, ref, commit_sha, event, run_id) VALUES ($1, "
              "$2, $3, $4, $5, $6) ON CONFLICT (pipeline, repo, ref, commit_sha, event) DO NOTHING "
              "RETURNING run_id",
              insert));
  if (!inserted.empty()) return std::optional<int64_t>();
  GANTRY_ASSIGN_OR_RETURN(
      Rows existing, c.Query("SELECT run_id FROM run_keys WHERE pipeline = $1 AND repo = $2 AND "
                             "ref = $3 AND commit_sha = $4 AND event = $5",
                             key));
  const int64_t other = existing.empty() ? 0 : existing[0].Int(0);
  if (other == id) return std::optional<int64_t>();
  return std::optional<int64_t>(other);
}

Status RequireRelease(Connection& c, int64_t id) {
  return RequireRow(c, "SELECT 1 FROM releases WHERE id = $1", id, "release");
}

// Drops the workspace uploads of run `id` (AppendRunUpload).
Status DropUploads(Connection& c, int64_t id) {
  return c.Query("DELETE FROM run_uploads WHERE run_id = $1", {id}).status();
}

Status RequireRun(Connection& c, int64_t id) {
  return RequireRow(c, "SELECT 1 FROM runs WHERE id = $1", id, "run");
}

Status LoadImages(Connection& c, Release& release) {
  GANTRY_ASSIGN_OR_RETURN(
      Rows rows,
      c.Query("SELECT name, digest, signature, provenance, sbom FROM release_images WHERE release_id = $1", {release.id}));
  for (const Row& r : rows) {
    release.image_digests[r.Text(0)] = r.Text(1);
    ImageSupplyChain chain{.signature = r.Text(2), .provenance = r.Text(3), .sbom = r.Text(4)};
    if (!chain.empty()) release.supply_chain[r.Text(0)] = std::move(chain);
  }
  return OkStatus();
}

Result<Release> LoadRelease(Connection& c, int64_t id) {
  GANTRY_ASSIGN_OR_RETURN(
      Rows rows, c.Query("SELECT " GANTRY_RELEASE_COLS " FROM releases WHERE id = $1", {id}));
  if (rows.empty()) return NotFoundError("release {} not found", id);
  Release release = ReleaseFrom(rows[0]);
  GANTRY_RETURN_IF_ERROR(LoadImages(c, release));
  return release;
}

Result<std::optional<int64_t>> RunningReleaseId(Connection& c, std::string_view app,
                                                std::string_view env, std::string_view cluster) {
  GANTRY_ASSIGN_OR_RETURN(
      Rows rows, c.Query("SELECT MAX(t.release_id) FROM targets t JOIN releases r ON r.id = "
                         "t.release_id WHERE r.app = $1 AND t.env = $2 AND t.cluster = $3 AND "
                         "t.state = $4",
                         {S(app), S(env), S(cluster), S(TargetState::kHealthy)}));
  return rows.empty() ? std::nullopt : rows[0].OptInt(0);
}

Result<int64_t> CountNewer(Connection& c, std::string_view app, std::optional<int64_t> than) {
  GANTRY_ASSIGN_OR_RETURN(Rows rows,
                          c.Query("SELECT COUNT(*) FROM releases WHERE app = $1 AND id > $2",
                                  {S(app), than.value_or(int64_t{0})}));
  return rows.at(0).Int(0);
}

}  // namespace

SqlStore::SqlStore(Dialect dialect, Options options)
    : dialect_(dialect),
      options_(std::move(options)),
      clock_(options_.clock ? options_.clock : &SystemClock()) {}

SqlStore::~SqlStore() = default;

// ---------------------------------------------------------------------------------------------
// Connections and transactions

Result<std::unique_ptr<Connection>> SqlStore::Acquire() {
  {
    MutexLock lock(mu_);
    idle_cv_.Wait(mu_, [&]() REQUIRES(mu_) {
      return !idle_.empty() || open_ < std::max(1, options_.max_connections);
    });
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;
  }
  Result<std::unique_ptr<Connection>> conn = Connect();
  if (!conn.ok()) {
    MutexLock lock(mu_);
    --open_;
    idle_cv_.NotifyOne();
  }
  return conn;
}

void SqlStore::Return(std::unique_ptr<Connection> conn) {
  MutexLock lock(mu_);
  if (conn->broken()) {
    --open_;  // dropped; the next Acquire() connects again
  } else {
    idle_.push_back(std::move(conn));
  }
  idle_cv_.NotifyOne();
}

Status SqlStore::Transaction(TxMode mode, const std::function<Status(Connection&)>& body) {
  Status result;
  Status retried = Retry(
      options_.retry,
      [&]() -> Status {
        GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Acquire());
        Status s = conn->Begin(mode);
        if (s.ok()) s = body(*conn);
        bool committing = false;
        if (s.ok()) {
          committing = true;
          s = conn->Commit();
        }
        if (!s.ok() && !conn->broken()) conn->Rollback();
        const bool transient = conn->transient();
        const bool broken = conn->broken();
        Return(std::move(conn));
        if (s.ok()) {
          result = OkStatus();
          return OkStatus();
        }
        if (committing && broken && mode == TxMode::kWrite) {
          result = UnavailableError(
              "{}; the connection broke during COMMIT, so whether this write was applied is "
              "unknown: read before writing again",
              s.message());
          return OkStatus();
        }
        if (transient) return s;  // Unavailable or Aborted: Retry() tries again
        result = std::move(s);
        return OkStatus();
      },
      *clock_);
  if (!retried.ok()) return retried;
  return result;
}

Status SqlStore::Migrate() {
  const std::vector<Migration>& all = Migrations();
  const int known = std::min(options_.max_schema_version.value_or(all.back().version),
                             all.back().version);
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
    if (dialect_ == Dialect::kPostgres) {
      GANTRY_RETURN_IF_ERROR(
          c.Query("SELECT pg_advisory_xact_lock($1)", {kMigrationLockKey}).status());
    }
    GANTRY_RETURN_IF_ERROR(
        c.Script("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at BIGINT NOT NULL)"));
    GANTRY_ASSIGN_OR_RETURN(Rows rows,
                            c.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    const int64_t current = rows.at(0).Int(0);
    if (current > known) {
      return FailedPreconditionError(
          "the database has schema version {}, newer than the {} this Gantry knows: a newer "
          "Gantry migrated it; run that version (or restore a backup taken before the upgrade)",
          current, known);
    }
    for (const Migration& m : all) {
      if (m.version <= current || m.version > known) continue;
      Status s = c.Script(MigrationSql(m, dialect_));
      if (!s.ok()) return s.WithContext(fmt::format("migration {} ({})", m.version, m.name));
      GANTRY_RETURN_IF_ERROR(
          c.Query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                  {int64_t{m.version}, S(m.name), Micros(Now())})
              .status());
    }
    return OkStatus();
  }).WithContext("migrate the store schema");
}

namespace {

#define GANTRY_NOTIFICATION_COLS                                                                   \
  "id, event_id, subscription, provider, trigger_name, project, app, environment, subject, body, " \
  "state, attempts, last_error, created_at, next_attempt_at, deadline, finished_at"

Notification NotificationFrom(const Row& r) {
  Notification out;
  out.id = r.Int(0);
  out.event_id = r.Text(1);
  out.subscription = r.Text(2);
  out.provider = r.Text(3);
  out.trigger = r.Text(4);
  out.project = r.Text(5);
  out.app = r.Text(6);
  out.environment = r.Text(7);
  out.subject = r.Text(8);
  out.body = r.Text(9);
  out.state = ParseNotificationState(r.Text(10)).value_or(NotificationState::kFailed);
  out.attempts = static_cast<int>(r.Int(11));
  out.last_error = r.Text(12);
  out.created_at = FromMicros(r.Int(13));
  out.next_attempt_at = FromMicros(r.Int(14));
  out.deadline = FromMicros(r.Int(15));
  out.finished_at = OptTimeFrom(r, 16);
  return out;
}

}  // namespace

Result<int64_t> SqlStore::EnqueueNotification(const Notification& n) {
  if (n.event_id.empty() || n.subscription.empty() || n.provider.empty()) {
    return InvalidArgumentError("enqueue notification: event_id, subscription and provider are required (got {:?}, "
                                "{:?}, {:?})",
                                n.event_id, n.subscription, n.provider);
  }
  if (n.state == NotificationState::kDelivered) {
    return InvalidArgumentError("enqueue notification {}: a new notification is pending or failed, not delivered",
                                n.event_id);
  }
  return Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    const Time now = Now();
    const bool failed = n.state == NotificationState::kFailed;
    auto rows = c.Query(
        "INSERT INTO notifications (event_id, subscription, provider, trigger_name, project, app, environment, "
        "subject, body, state, attempts, last_error, created_at, next_attempt_at, deadline, finished_at) VALUES "
        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        {n.event_id, n.subscription, n.provider, n.trigger, n.project, n.app, n.environment, n.subject, n.body,
         S(Name(n.state)), int64_t{n.attempts}, n.last_error, Micros(now), Micros(n.next_attempt_at),
         Micros(n.deadline), failed ? Value(Micros(now)) : Value(nullptr)});
    if (!rows.ok() && rows.status().code() == Code::kAlreadyExists) {
      return AlreadyExistsError("notification of event {} for subscription {} is already in the outbox", n.event_id,
                                n.subscription);
    }
    if (!rows.ok()) return rows.status();
    return rows->at(0).Int(0);
  });
}

Result<std::vector<Notification>> SqlStore::ListNotifications(const NotificationFilter& f) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(f.limit));
  return Transact<std::vector<Notification>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<Notification>> {
        Rows rows;
        if (f.due_by) {
          GANTRY_ASSIGN_OR_RETURN(
              rows, c.Query("SELECT " GANTRY_NOTIFICATION_COLS " FROM notifications WHERE state = 'pending' AND "
                            "next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
                            {Micros(*f.due_by), int64_t{f.limit}}));
        } else {
          GANTRY_ASSIGN_OR_RETURN(
              rows, c.Query("SELECT " GANTRY_NOTIFICATION_COLS " FROM notifications WHERE ($1 = '' OR state = $1) "
                            "AND id < $2 ORDER BY id DESC LIMIT $3",
                            {f.state ? S(Name(*f.state)) : std::string(), Before(f.before_id), int64_t{f.limit}}));
        }
        std::vector<Notification> out;
        for (const Row& r : rows) {
          Notification n = NotificationFrom(r);
          if (f.state && n.state != *f.state) continue;
          out.push_back(std::move(n));
        }
        return out;
      });
}

Status SqlStore::RecordNotificationAttempt(int64_t id, NotificationState state, std::string_view error,
                                           Time next_attempt_at) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT state FROM notifications WHERE id = $1", {id}));
           if (rows.empty()) return NotFoundError("no notification {}", id);
           if (rows[0].Text(0) != "pending") {
             return FailedPreconditionError("it is {}, which is final", rows[0].Text(0));
           }
           const Time now = Now();
           const bool final = state != NotificationState::kPending;
           return c
               .Query("UPDATE notifications SET state = $2, attempts = attempts + 1, last_error = $3, "
                      "next_attempt_at = $4, finished_at = $5 WHERE id = $1",
                      {id, S(Name(state)), S(error), Micros(final ? now : next_attempt_at),
                       final ? Value(Micros(now)) : Value(nullptr)})
               .status();
         })
      .WithContext(fmt::format("record an attempt of notification {}", id));
}

namespace {

#define GANTRY_FORGE_STATUS_COLS                                                                       \
  "id, forge, repo, sha, context, state, description, target_url, delivery, attempts, last_error, version, " \
  "updated_at, next_attempt_at, deadline"

ForgeStatus ForgeStatusFrom(const Row& r) {
  ForgeStatus out;
  out.id = r.Int(0);
  out.forge = r.Text(1);
  out.repo = r.Text(2);
  out.sha = r.Text(3);
  out.context = r.Text(4);
  out.state = r.Text(5);
  out.description = r.Text(6);
  out.target_url = r.Text(7);
  out.delivery = ParseNotificationState(r.Text(8)).value_or(NotificationState::kFailed);
  out.attempts = static_cast<int>(r.Int(9));
  out.last_error = r.Text(10);
  out.version = r.Int(11);
  out.updated_at = FromMicros(r.Int(12));
  out.next_attempt_at = FromMicros(r.Int(13));
  out.deadline = FromMicros(r.Int(14));
  return out;
}

}  // namespace

Result<int64_t> SqlStore::PutForgeStatus(const ForgeStatus& s) {
  if (s.forge.empty() || s.repo.empty() || s.sha.empty() || s.context.empty() || s.state.empty()) {
    return InvalidArgumentError("put forge status: forge, repo, sha, context and state are required (got {:?}, {:?}, "
                                "{:?}, {:?}, {:?})",
                                s.forge, s.repo, s.sha, s.context, s.state);
  }
  return Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    const Time now = Now();
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("SELECT " GANTRY_FORGE_STATUS_COLS " FROM forge_statuses WHERE forge = $1 AND repo = $2 AND "
                           "sha = $3 AND context = $4",
                           {s.forge, s.repo, s.sha, s.context}));
    if (rows.empty()) {
      GANTRY_ASSIGN_OR_RETURN(
          Rows made,
          c.Query("INSERT INTO forge_statuses (forge, repo, sha, context, state, description, target_url, delivery, "
                  "attempts, last_error, version, updated_at, next_attempt_at, deadline) VALUES ($1, $2, $3, $4, $5, "
                  "$6, $7, 'pending', 0, '', 1, $8, $9, $10) RETURNING id",
                  {s.forge, s.repo, s.sha, s.context, s.state, s.description, s.target_url, Micros(now),
                   Micros(s.next_attempt_at), Micros(s.deadline)}));
      return made.at(0).Int(0);
    }
    const ForgeStatus old = ForgeStatusFrom(rows[0]);
    if (old.state == s.state && old.description == s.description && old.target_url == s.target_url &&
        old.delivery != NotificationState::kFailed) {
      return old.id;
    }
    GANTRY_RETURN_IF_ERROR(
        c.Query("UPDATE forge_statuses SET state = $2, description = $3, target_url = $4, delivery = 'pending', "
                "attempts = 0, last_error = '', version = version + 1, updated_at = $5, next_attempt_at = $6, "
                "deadline = $7 WHERE id = $1",
                {old.id, s.state, s.description, s.target_url, Micros(now), Micros(s.next_attempt_at),
                 Micros(s.deadline)})
            .status());
    return old.id;
  });
}

Result<std::vector<ForgeStatus>> SqlStore::ListForgeStatuses(const ForgeStatusFilter& f) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(f.limit));
  return Transact<std::vector<ForgeStatus>>(TxMode::kRead, [&](Connection& c) -> Result<std::vector<ForgeStatus>> {
    Rows rows;
    if (f.due_by) {
      GANTRY_ASSIGN_OR_RETURN(
          rows, c.Query("SELECT " GANTRY_FORGE_STATUS_COLS " FROM forge_statuses WHERE delivery = 'pending' AND "
                        "next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
                        {Micros(*f.due_by), int64_t{f.limit}}));
    } else {
      GANTRY_ASSIGN_OR_RETURN(
          rows, c.Query("SELECT " GANTRY_FORGE_STATUS_COLS " FROM forge_statuses WHERE ($1 = '' OR delivery = $1) "
                        "AND ($2 = '' OR sha = $2) ORDER BY updated_at DESC, id DESC LIMIT $3",
                        {f.delivery ? S(Name(*f.delivery)) : std::string(), f.sha, int64_t{f.limit}}));
    }
    std::vector<ForgeStatus> out;
    for (const Row& r : rows) out.push_back(ForgeStatusFrom(r));
    return out;
  });
}

namespace {

// An outbox whose rows are replaced by newer versions (forge_statuses, pull_merges): one attempt at
// row `id` of `table`, whose state is in `column`, recorded when the row is still at `version` and
// pending (Aborted, FailedPrecondition otherwise; NotFound). The table and column are the store's
// own names, never input.
Status RecordOutboxAttempt(Connection& c, std::string_view table, std::string_view column, int64_t id, int64_t version,
                           NotificationState state, std::string_view note, Time next_attempt_at) {
  GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query(fmt::format("SELECT {}, version FROM {} WHERE id = $1", column, table), {id}));
  if (rows.empty()) return NotFoundError("no row {}", id);
  if (rows[0].Int(1) != version) {
    return AbortedError("it was replaced (version {}, the attempt was on {})", rows[0].Int(1), version);
  }
  if (rows[0].Text(0) != "pending") return FailedPreconditionError("it is {}, which is final", rows[0].Text(0));
  return c
      .Query(fmt::format("UPDATE {} SET {} = $2, attempts = attempts + 1, last_error = $3, next_attempt_at = $4 "
                         "WHERE id = $1",
                         table, column),
             {id, S(Name(state)), S(note), Micros(next_attempt_at)})
      .status();
}

}  // namespace

Status SqlStore::RecordForgeStatusAttempt(int64_t id, int64_t version, NotificationState delivery,
                                          std::string_view error, Time next_attempt_at) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           const bool final = delivery != NotificationState::kPending;
           return RecordOutboxAttempt(c, "forge_statuses", "delivery", id, version, delivery, error,
                                      final ? Now() : next_attempt_at);
         })
      .WithContext(fmt::format("record an attempt of forge status {}", id));
}

namespace {

#define GANTRY_PULL_MERGE_COLS                                                                              \
  "id, forge, repo, number, sha, method, required_checks, release_id, state, attempts, last_error, version, " \
  "updated_at, next_attempt_at, deadline"

PullMerge PullMergeFrom(const Row& r) {
  PullMerge out;
  out.id = r.Int(0);
  out.forge = r.Text(1);
  out.repo = r.Text(2);
  out.number = r.Int(3);
  out.sha = r.Text(4);
  out.method = r.Text(5);
  const std::string checks = r.Text(6);
  for (size_t at = 0; at < checks.size();) {
    size_t end = checks.find('\n', at);
    if (end == std::string::npos) end = checks.size();
    out.required_checks.push_back(checks.substr(at, end - at));
    at = end + 1;
  }
  out.release_id = r.Int(7);
  out.state = ParseNotificationState(r.Text(8)).value_or(NotificationState::kFailed);
  out.attempts = static_cast<int>(r.Int(9));
  out.last_error = r.Text(10);
  out.version = r.Int(11);
  out.updated_at = FromMicros(r.Int(12));
  out.next_attempt_at = FromMicros(r.Int(13));
  out.deadline = FromMicros(r.Int(14));
  return out;
}

}  // namespace

Result<int64_t> SqlStore::PutPullMerge(const PullMerge& m) {
  if (m.forge.empty() || m.repo.empty() || m.sha.empty() || m.method.empty() || m.number < 1) {
    return InvalidArgumentError("put pull merge: forge, repo, number, sha and method are required (got {:?}, {:?}, {}, "
                                "{:?}, {:?})",
                                m.forge, m.repo, m.number, m.sha, m.method);
  }
  std::string checks;
  for (const std::string& c : m.required_checks) {
    if (c.empty() || c.find('\n') != std::string::npos) {
      return InvalidArgumentError("put pull merge: required check {:?} is empty or spans lines", c);
    }
    checks += (checks.empty() ? "" : "\n") + c;
  }
  return Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    const Time now = Now();
    GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT id FROM pull_merges WHERE forge = $1 AND repo = $2 AND number = $3",
                                               {m.forge, m.repo, m.number}));
    if (rows.empty()) {
      GANTRY_ASSIGN_OR_RETURN(
          Rows made,
          c.Query("INSERT INTO pull_merges (forge, repo, number, sha, method, required_checks, release_id, state, "
                  "attempts, last_error, version, updated_at, next_attempt_at, deadline) VALUES ($1, $2, $3, $4, $5, "
                  "$6, $7, 'pending', 0, '', 1, $8, $9, $10) RETURNING id",
                  {m.forge, m.repo, m.number, m.sha, m.method, checks, m.release_id, Micros(now),
                   Micros(m.next_attempt_at), Micros(m.deadline)}));
      return made.at(0).Int(0);
    }
    const int64_t id = rows[0].Int(0);
    GANTRY_RETURN_IF_ERROR(
        c.Query("UPDATE pull_merges SET sha = $2, method = $3, required_checks = $4, release_id = $5, state = 'pending', "
                "attempts = 0, last_error = '', version = version + 1, updated_at = $6, next_attempt_at = $7, "
                "deadline = $8 WHERE id = $1",
                {id, m.sha, m.method, checks, m.release_id, Micros(now), Micros(m.next_attempt_at), Micros(m.deadline)})
            .status());
    return id;
  });
}

Result<std::vector<PullMerge>> SqlStore::ListPullMerges(std::optional<Time> due_by, int limit) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(limit));
  return Transact<std::vector<PullMerge>>(TxMode::kRead, [&](Connection& c) -> Result<std::vector<PullMerge>> {
    Rows rows;
    if (due_by) {
      GANTRY_ASSIGN_OR_RETURN(rows, c.Query("SELECT " GANTRY_PULL_MERGE_COLS " FROM pull_merges WHERE state = 'pending' "
                                            "AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
                                            {Micros(*due_by), int64_t{limit}}));
    } else {
      GANTRY_ASSIGN_OR_RETURN(rows, c.Query("SELECT " GANTRY_PULL_MERGE_COLS " FROM pull_merges ORDER BY updated_at "
                                            "DESC, id DESC LIMIT $1",
                                            {int64_t{limit}}));
    }
    std::vector<PullMerge> out;
    for (const Row& r : rows) out.push_back(PullMergeFrom(r));
    return out;
  });
}

Result<std::optional<PullMerge>> SqlStore::PullMergeOfRelease(int64_t release_id) {
  return Transact<std::optional<PullMerge>>(TxMode::kRead, [&](Connection& c) -> Result<std::optional<PullMerge>> {
    GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT " GANTRY_PULL_MERGE_COLS " FROM pull_merges WHERE release_id = $1 "
                                               "ORDER BY id DESC LIMIT 1",
                                               {release_id}));
    if (rows.empty()) return std::optional<PullMerge>();
    return std::optional<PullMerge>(PullMergeFrom(rows[0]));
  });
}

Status SqlStore::RecordPullMergeAttempt(int64_t id, int64_t version, NotificationState state, std::string_view note,
                                        Time next_attempt_at) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           const bool final = state != NotificationState::kPending;
           return RecordOutboxAttempt(c, "pull_merges", "state", id, version, state, note, final ? Now() : next_attempt_at);
         })
      .WithContext(fmt::format("record an attempt of pull merge {}", id));
}

Result<int> SqlStore::SchemaVersion() {
  return Transact<int>(TxMode::kRead, [&](Connection& c) -> Result<int> {
    GANTRY_ASSIGN_OR_RETURN(Rows rows,
                            c.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    return static_cast<int>(rows.at(0).Int(0));
  });
}

Status SqlStore::Verify() {
  return Transaction(TxMode::kRead, [&](Connection& c) -> Status {
    if (dialect_ == Dialect::kPostgres) return c.Query("SELECT 1").status();
    GANTRY_ASSIGN_OR_RETURN(Rows check, c.Query("PRAGMA integrity_check"));
    if (check.empty() || check[0].Text(0) != "ok") {
      return DataLossError("the database file is damaged: {}",
                           check.empty() ? "no answer" : check[0].Text(0));
    }
    GANTRY_ASSIGN_OR_RETURN(Rows orphans, c.Query("PRAGMA foreign_key_check"));
    if (!orphans.empty()) {
      return DataLossError("{} rows of table {} reference missing rows (first: rowid {})",
                           orphans.size(), orphans[0].Text(0), orphans[0].Text(1));
    }
    return OkStatus();
  }).WithContext("verify the store");
}

// ---------------------------------------------------------------------------------------------
// Releases

Result<int64_t> SqlStore::CreateRelease(const Release& release) {
  if (release.app.empty()) return InvalidArgumentError("create release: the app name is empty");
  for (const auto& [name, chain] : release.supply_chain) {
    if (release.image_digests.count(name) == 0) {
      return InvalidArgumentError("create release of {}: signatures of image {} that is not among its images", release.app, name);
    }
  }
  Result<int64_t> id = Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    if (release.run_id) GANTRY_RETURN_IF_ERROR(RequireRun(c, *release.run_id));
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows,
        c.Query("INSERT INTO releases (app, source_revision, config_revision, started_by, run_id, "
                "note, created_at, project, pull_request, pull_request_url) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                "$8, $9, $10) RETURNING id",
                {release.app, release.source_revision, release.config_revision, release.started_by,
                 OptValue(release.run_id), release.note, Micros(Now()), release.project, release.pull_request,
                 release.pull_request_url}));
    const int64_t new_id = rows.at(0).Int(0);
    for (const auto& [name, digest] : release.image_digests) {
      auto chain = release.supply_chain.find(name);
      const ImageSupplyChain none;
      const ImageSupplyChain& sc = chain == release.supply_chain.end() ? none : chain->second;
      GANTRY_RETURN_IF_ERROR(
          c.Query("INSERT INTO release_images (release_id, name, digest, signature, provenance, sbom) "
                  "VALUES ($1, $2, $3, $4, $5, $6)",
                  {new_id, name, digest, sc.signature, sc.provenance, sc.sbom})
              .status());
    }
    return new_id;
  });
  if (!id.ok()) return id.status().WithContext(fmt::format("create release of {}", release.app));
  return id;
}

Result<Release> SqlStore::GetRelease(int64_t id) {
  return Transact<Release>(TxMode::kRead,
                           [&](Connection& c) -> Result<Release> { return LoadRelease(c, id); });
}

Result<std::vector<Release>> SqlStore::ListReleases(std::string_view app, int limit,
                                                    int64_t before_id) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(limit));
  return Transact<std::vector<Release>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<Release>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows, c.Query("SELECT " GANTRY_RELEASE_COLS " FROM releases WHERE app = $1 AND "
                               "id < $2 ORDER BY id DESC LIMIT $3",
                               {S(app), Before(before_id), int64_t{limit}}));
        std::vector<Release> out;
        for (const Row& r : rows) {
          out.push_back(ReleaseFrom(r));
          GANTRY_RETURN_IF_ERROR(LoadImages(c, out.back()));
        }
        return out;
      });
}

Result<std::vector<std::string>> SqlStore::ListApps() {
  return Transact<std::vector<std::string>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<std::string>> {
        // releases_by_app (app, id) serves this without reading the releases.
        GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT DISTINCT app FROM releases ORDER BY app"));
        std::vector<std::string> out;
        out.reserve(rows.size());
        for (const Row& r : rows) out.push_back(r.Text(0));
        return out;
      });
}

// ---------------------------------------------------------------------------------------------
// Deployments

Result<Target> SqlStore::UpsertTarget(const Target& t) {
  const std::string where =
      fmt::format("target {}/{} of release {}", t.env, t.cluster, t.release_id);
  if (t.env.empty() || t.cluster.empty()) {
    return InvalidArgumentError("{}: env and cluster must not be empty", where);
  }
  Result<Target> out = Transact<Target>(TxMode::kWrite, [&](Connection& c) -> Result<Target> {
    GANTRY_RETURN_IF_ERROR(RequireRelease(c, t.release_id));
    const int64_t now = Micros(Now());
    const std::optional<int64_t> finished =
        t.state == TargetState::kPending || t.state == TargetState::kApplying
            ? std::nullopt
            : std::optional<int64_t>(now);
    GANTRY_ASSIGN_OR_RETURN(
        Rows current,
        c.Query("SELECT state, version, finished_at FROM targets WHERE release_id = $1 AND env = "
                "$2 AND cluster = $3",
                {t.release_id, t.env, t.cluster}));
    Rows rows;
    if (current.empty()) {
      if (t.version != 0) {
        return NotFoundError("it does not exist (version {} was given; use 0 to create it)",
                             t.version);
      }
      GANTRY_ASSIGN_OR_RETURN(
          rows, c.Query("INSERT INTO targets (" GANTRY_TARGET_COLS ") VALUES ($1, $2, $3, $4, $5, "
                        "$6, 1, $7, $7, $8) RETURNING " GANTRY_TARGET_COLS,
                        {t.release_id, t.env, t.cluster, S(t.state), t.message, t.sync_result, now,
                         OptValue(finished)}));
    } else {
      const TargetState from = TargetStateFrom(current[0].Text(0));
      const int64_t version = current[0].Int(1);
      if (t.version == 0) return AlreadyExistsError("it exists (version {})", version);
      if (t.version != version) {
        return AbortedError("it changed since it was read (version {}, now {}); read it again",
                            t.version, version);
      }
      GANTRY_RETURN_IF_ERROR(CheckTransition(from, t.state));
      // A repeated final-ish state (healthy → healthy) keeps the time it was first reached.
      const std::optional<int64_t> keep =
          from == t.state && !current[0].IsNull(2) ? current[0].OptInt(2) : finished;
      GANTRY_ASSIGN_OR_RETURN(
          rows, c.Query("UPDATE targets SET state = $4, message = $5, sync_result = $6, version = "
                        "version + 1, updated_at = $7, finished_at = $8 WHERE release_id = $1 AND "
                        "env = $2 AND cluster = $3 AND version = $9 RETURNING " GANTRY_TARGET_COLS,
                        {t.release_id, t.env, t.cluster, S(t.state), t.message, t.sync_result, now,
                         OptValue(keep), version}));
      if (rows.empty()) return AbortedError("it changed while being written; read it again");
    }
    return TargetFrom(rows.at(0));
  });
  if (!out.ok()) return out.status().WithContext(where);
  return out;
}

Result<std::vector<Target>> SqlStore::ListTargets(int64_t release_id) {
  return Transact<std::vector<Target>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<Target>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows, c.Query("SELECT " GANTRY_TARGET_COLS " FROM targets WHERE release_id = $1 "
                               "ORDER BY env, cluster",
                               {release_id}));
        std::vector<Target> out;
        for (const Row& r : rows) out.push_back(TargetFrom(r));
        return out;
      });
}

Result<std::vector<TargetStatus>> SqlStore::CurrentByTarget(std::string_view app) {
  return Transact<std::vector<TargetStatus>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<TargetStatus>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows places,
            c.Query("SELECT t.env, t.cluster, MAX(CASE WHEN t.state = $2 THEN t.release_id END), "
                    "MAX(t.release_id) FROM targets t JOIN releases r ON r.id = t.release_id "
                    "WHERE r.app = $1 GROUP BY t.env, t.cluster ORDER BY t.env, t.cluster",
                    {S(app), S(TargetState::kHealthy)}));
        std::vector<TargetStatus> out;
        for (const Row& p : places) {
          TargetStatus status;
          status.env = p.Text(0);
          status.cluster = p.Text(1);
          const std::optional<int64_t> running = p.OptInt(2);
          if (running) {
            GANTRY_ASSIGN_OR_RETURN(status.running, LoadRelease(c, *running));
          }
          GANTRY_ASSIGN_OR_RETURN(status.latest, LoadRelease(c, p.Int(3)));
          GANTRY_ASSIGN_OR_RETURN(
              Rows target, c.Query("SELECT " GANTRY_TARGET_COLS " FROM targets WHERE release_id "
                                   "= $1 AND env = $2 AND cluster = $3",
                                   {p.Int(3), status.env, status.cluster}));
          status.latest_target = TargetFrom(target.at(0));
          GANTRY_ASSIGN_OR_RETURN(status.behind, CountNewer(c, app, running));
          out.push_back(std::move(status));
        }
        return out;
      });
}

Result<int64_t> SqlStore::ReleasesBehind(std::string_view app, std::string_view env,
                                         std::string_view cluster) {
  return Transact<int64_t>(TxMode::kRead, [&](Connection& c) -> Result<int64_t> {
    GANTRY_ASSIGN_OR_RETURN(std::optional<int64_t> running, RunningReleaseId(c, app, env, cluster));
    return CountNewer(c, app, running);
  });
}

// ---------------------------------------------------------------------------------------------
// Approvals

Status SqlStore::Approve(int64_t release_id, std::string_view env, std::string_view by) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_RETURN_IF_ERROR(RequireRelease(c, release_id));
           return c.Query("INSERT INTO approvals (release_id, env, approved_by, approved_at) "
                          "VALUES ($1, $2, $3, $4) ON CONFLICT (release_id, env) DO NOTHING",
                          {release_id, S(env), S(by), Micros(Now())})
               .status();
         })
      .WithContext(fmt::format("approve release {} for {}", release_id, env));
}

Result<bool> SqlStore::IsApproved(int64_t release_id, std::string_view env) {
  return Transact<bool>(TxMode::kRead, [&](Connection& c) -> Result<bool> {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("SELECT 1 FROM approvals WHERE release_id = $1 AND env = $2",
                           {release_id, S(env)}));
    return !rows.empty();
  });
}

// ---------------------------------------------------------------------------------------------
// Runs

Result<int64_t> SqlStore::CreateRun(const Run& run) {
  if (run.pipeline.empty()) return InvalidArgumentError("create run: the pipeline name is empty");
  if (run.state != RunState::kQueued && run.state != RunState::kAwaitingApproval) {
    return InvalidArgumentError("create run: a run starts queued or awaiting_approval, not {}",
                                Name(run.state));
  }
  Result<int64_t> id = Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    const int64_t now = Micros(Now());
    if (run.retry_of != 0) {
      GANTRY_RETURN_IF_ERROR(RequireRun(c, run.retry_of));
    }
    // retry_of is named only when set, so that a store held below migration 7
    // (Options::max_schema_version, as an older Gantry's database) still creates other runs.
    std::vector<Value> args = {run.repo, run.pipeline, run.commit, run.ref, S(Name(run.event)),
                               run.delivery_id, S(run.state), run.message, now,
                               int64_t{run.trusted ? 1 : 0}, run.head_ref};
    // So are labels and changed paths (migration 13) and the project (14).
    std::string columns, values;
    auto add = [&](std::string_view column, Value v) {
      args.push_back(std::move(v));
      columns += fmt::format(", {}", column);
      values += fmt::format(", ${}", args.size());
    };
    if (run.retry_of != 0) add("retry_of", run.retry_of);
    if (!run.labels.empty()) add("labels", FormatLabels(run.labels));
    if (!run.project.empty()) add("project", run.project);
    // A path with a newline in it (Git allows one) leaves the paths unknown: filters then match.
    if (run.changed_paths && std::none_of(run.changed_paths->begin(), run.changed_paths->end(),
                                          [](const std::string& p) { return p.find('\n') != std::string::npos; })) {
      std::string paths;
      for (const auto& p : *run.changed_paths) paths += p + "\n";
      add("changed_paths", std::move(paths));
    }
    Result<Rows> rows = c.Query(
        fmt::format("INSERT INTO runs (repo, pipeline, commit_sha, ref, event, delivery_id, state, "
                    "worker, attempt, message, created_at, updated_at, trusted, approved_by, "
                    "head_ref{}) VALUES ($1, $2, $3, $4, $5, $6, $7, '', 0, $8, $9, $9, $10, '', "
                    "$11{}) RETURNING id",
                    columns, values),
        args);
    if (!rows.ok() && rows.status().code() == Code::kAlreadyExists) {
      return AlreadyExistsError("a run was already created for delivery {}", run.delivery_id);
    }
    if (!rows.ok()) return rows.status();
    const int64_t new_id = rows->at(0).Int(0);
    if (run.retry_of != 0) return new_id;  // a retry builds the commit again: it claims no key
    GANTRY_ASSIGN_OR_RETURN(std::optional<int64_t> other, ClaimRunKey(c, run, run.commit, new_id));
    if (other) {
      return AlreadyExistsError("run {} already builds {} at {} ({})", *other, run.ref, run.commit,
                                Name(run.event));
    }
    return new_id;
  });
  if (!id.ok()) {
    return id.status().WithContext(fmt::format("create run of {} at {}", run.pipeline, run.commit));
  }
  return id;
}

Status SqlStore::ApproveRun(int64_t id, std::string_view by) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_ASSIGN_OR_RETURN(Rows rows,
                                   c.Query("SELECT state FROM runs WHERE id = $1", {id}));
           if (rows.empty()) return NotFoundError("run {} not found", id);
           const RunState from = RunStateFrom(rows[0].Text(0));
           if (from != RunState::kAwaitingApproval) {
             return FailedPreconditionError("run {} is {}: it does not await approval", id,
                                            Name(from));
           }
           GANTRY_ASSIGN_OR_RETURN(
               Rows updated,
               c.Query("UPDATE runs SET state = $2, approved_by = $3, updated_at = $4 WHERE id = "
                       "$1 AND state = $5 RETURNING id",
                       {id, S(RunState::kQueued), S(by), Micros(Now()), S(from)}));
           if (updated.empty()) return AbortedError("it changed while being written");
           return OkStatus();
         })
      .WithContext(fmt::format("approve run {}", id));
}

Status SqlStore::BindRunCommit(int64_t id, std::string_view commit) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_ASSIGN_OR_RETURN(
               Rows rows, c.Query("SELECT " GANTRY_RUN_COLS " FROM runs WHERE id = $1", {id}));
           if (rows.empty()) return NotFoundError("run {} not found", id);
           const Run run = RunFrom(rows[0]);
           if (run.commit == commit) return OkStatus();
           GANTRY_ASSIGN_OR_RETURN(std::optional<int64_t> other, ClaimRunKey(c, run, commit, id));
           if (other) {
             return AlreadyExistsError("run {} already builds {} at {} ({})", *other, run.ref,
                                       commit, Name(run.event));
           }
           return c.Query("UPDATE runs SET commit_sha = $2, updated_at = $3 WHERE id = $1",
                          {id, S(commit), Micros(Now())})
               .status();
         })
      .WithContext(fmt::format("bind run {} to commit {}", id, commit));
}

Status SqlStore::UpdateRun(int64_t id, RunState state, std::string_view message, int attempt) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_ASSIGN_OR_RETURN(
               Rows rows,
               c.Query("SELECT state, worker, started_at, finished_at, attempt, lease_expires_at FROM runs "
                       "WHERE id = $1",
                       {id}));
           if (rows.empty()) return NotFoundError("run {} not found", id);
           const RunState from = RunStateFrom(rows[0].Text(0));
           if (attempt > 0 && (from != RunState::kRunning || rows[0].Int(4) != attempt)) {
             return AbortedError("attempt {} no longer holds it: it is {} at attempt {}{}", attempt, Name(from),
                                 rows[0].Int(4), rows[0].Text(1).empty() ? "" : ", claimed by " + rows[0].Text(1));
           }
           GANTRY_RETURN_IF_ERROR(CheckRunTransition(from, state));
           if (from == state && IsFinal(from)) return OkStatus();  // a repeated final write
           const int64_t now = Micros(Now());
           const std::string worker = state == RunState::kQueued ? "" : rows[0].Text(1);
           std::optional<int64_t> started = rows[0].OptInt(2);
           if (state == RunState::kRunning && from != RunState::kRunning) started = now;
           std::optional<int64_t> finished;
           if (IsFinal(state) || state == RunState::kInterrupted) {
             finished = from == state ? rows[0].OptInt(3) : now;
           }
           GANTRY_ASSIGN_OR_RETURN(
               Rows updated,
               c.Query("UPDATE runs SET state = $2, message = $3, worker = $4, started_at = $5, "
                       "finished_at = $6, updated_at = $7, lease_expires_at = $9 WHERE id = $1 AND "
                       "state = $8 RETURNING id",
                       {id, S(state), S(message), worker, OptValue(started), OptValue(finished),
                        now, S(from),
                        OptValue(state == RunState::kRunning ? rows[0].OptInt(5) : std::nullopt)}));
           if (updated.empty()) return AbortedError("it changed while being written");
           if (state != RunState::kRunning) GANTRY_RETURN_IF_ERROR(DropUploads(c, id));
           return OkStatus();
         })
      .WithContext(fmt::format("set run {} {}", id, Name(state)));
}

Status SqlStore::UpsertStep(int64_t run_id, const Step& step) {
  if (step.name.empty()) return InvalidArgumentError("write step of run {}: empty name", run_id);
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_RETURN_IF_ERROR(RequireRun(c, run_id));
           GANTRY_ASSIGN_OR_RETURN(
               Rows rows, c.Query("SELECT state, started_at, finished_at, needs, attempts FROM "
                                  "steps WHERE run_id = $1 AND name = $2",
                                  {run_id, step.name}));
           std::string needs;
           for (const std::string& n : step.needs) needs += (needs.empty() ? "" : "\n") + n;
           int64_t attempts = step.attempts;
           const int64_t now = Micros(Now());
           std::optional<RunState> from;
           std::optional<int64_t> started, finished;
           if (!rows.empty()) {
             from = RunStateFrom(rows[0].Text(0));
             started = rows[0].OptInt(1);
             finished = rows[0].OptInt(2);
             if (step.needs.empty()) needs = rows[0].Text(3);
             if (step.attempts == 0) attempts = rows[0].Int(4);
             GANTRY_RETURN_IF_ERROR(CheckStepTransition(*from, step.state));
             if (*from == step.state && IsFinal(step.state)) return OkStatus();
           }
           const bool begun = step.state != RunState::kQueued && step.state != RunState::kSkipped;
           if (begun && (!started || (step.state == RunState::kRunning && from != step.state))) {
             started = now;
           }
           if (IsFinal(step.state) || step.state == RunState::kInterrupted) {
             if (from != step.state || !finished) finished = now;
           } else {
             finished.reset();
           }
           const Value exit_code =
               step.exit_code ? Value(int64_t{*step.exit_code}) : Value(nullptr);
           if (!from) {
             return c.Query("INSERT INTO steps (run_id, name, state, exit_code, started_at, "
                            "finished_at, updated_at, needs, attempts) VALUES ($1, $2, $3, $4, "
                            "$5, $6, $7, $8, $9)",
                            {run_id, step.name, S(step.state), exit_code, OptValue(started),
                             OptValue(finished), now, needs, attempts})
                 .status();
           }
           GANTRY_ASSIGN_OR_RETURN(
               Rows updated,
               c.Query("UPDATE steps SET state = $3, exit_code = $4, started_at = $5, finished_at "
                       "= $6, updated_at = $7, needs = $9, attempts = $10 WHERE run_id = $1 AND "
                       "name = $2 AND state = $8 RETURNING name",
                       {run_id, step.name, S(step.state), exit_code, OptValue(started),
                        OptValue(finished), now, S(*from), needs, attempts}));
           if (updated.empty()) return AbortedError("it changed while being written");
           return OkStatus();
         })
      .WithContext(fmt::format("set step {} of run {} {}", step.name, run_id, Name(step.state)));
}

Result<Run> SqlStore::GetRun(int64_t id) {
  return Transact<Run>(TxMode::kRead, [&](Connection& c) -> Result<Run> {
    GANTRY_ASSIGN_OR_RETURN(Rows rows,
                            c.Query("SELECT " GANTRY_RUN_COLS " FROM runs WHERE id = $1", {id}));
    if (rows.empty()) return NotFoundError("run {} not found", id);
    Run run = RunFrom(rows[0]);
    GANTRY_ASSIGN_OR_RETURN(
        Rows steps,
        c.Query("SELECT " GANTRY_STEP_COLS " FROM steps WHERE run_id = $1 ORDER BY id", {id}));
    for (const Row& r : steps) run.steps.push_back(StepFrom(r));
    return run;
  });
}

Result<std::vector<Run>> SqlStore::ListRuns(const RunFilter& filter) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(filter.limit));
  return Transact<std::vector<Run>>(TxMode::kRead, [&](Connection& c) -> Result<std::vector<Run>> {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows,
        c.Query("SELECT " GANTRY_RUN_COLS " FROM runs WHERE ($1 = '' OR pipeline = $1) AND "
                "($2 = '' OR state = $2) AND id < $3 ORDER BY id DESC LIMIT $4",
                {filter.pipeline, filter.state ? S(*filter.state) : std::string(),
                 Before(filter.before_id), int64_t{filter.limit}}));
    std::vector<Run> out;
    for (const Row& r : rows) out.push_back(RunFrom(r));
    return out;
  });
}

namespace {
// Marks the running runs `where` selects (SQL over the runs table with $4 = now) and their
// running steps interrupted, saying `why`; returns them oldest first.
Result<std::vector<Run>> InterruptRuns(Connection& c, int64_t now, std::string_view where,
                                       std::string_view why, std::vector<Value> params) {
  params.insert(params.begin(), {S(RunState::kInterrupted), S(why), S(RunState::kRunning), now});
  GANTRY_ASSIGN_OR_RETURN(
      Rows rows,
      c.Query(fmt::format("UPDATE runs SET state = $1, message = $2, finished_at = $4, updated_at = $4, "
                          "lease_expires_at = NULL WHERE state = $3 AND {} RETURNING " GANTRY_RUN_COLS,
                          where),
              params));
  std::vector<Run> out;
  for (const Row& r : rows) {
    out.push_back(RunFrom(r));
    GANTRY_RETURN_IF_ERROR(
        c.Query("UPDATE steps SET state = $2, finished_at = $3, updated_at = $3 WHERE run_id = "
                "$1 AND state = $4",
                {out.back().id, S(RunState::kInterrupted), now, S(RunState::kRunning)})
            .status());
    GANTRY_RETURN_IF_ERROR(DropUploads(c, out.back().id));
  }
  std::sort(out.begin(), out.end(), [](const Run& a, const Run& b) { return a.id < b.id; });
  return out;
}
}  // namespace

Result<std::vector<Run>> SqlStore::MarkUnfinishedInterrupted(std::string_view worker) {
  return Transact<std::vector<Run>>(TxMode::kWrite, [&](Connection& c) -> Result<std::vector<Run>> {
    return InterruptRuns(c, Micros(Now()), "($5 = '' OR worker = $5)",
                         "interrupted: the runner stopped while it ran", {S(worker)});
  });
}

Result<std::vector<Run>> SqlStore::MarkExpiredInterrupted() {
  return Transact<std::vector<Run>>(TxMode::kWrite, [&](Connection& c) -> Result<std::vector<Run>> {
    return InterruptRuns(c, Micros(Now()), "lease_expires_at IS NOT NULL AND lease_expires_at < $4",
                         "interrupted: the lease of the server running it expired (it died or lost the "
                         "database)",
                         {});
  });
}

Result<Renewal> SqlStore::RenewRunLease(int64_t id, std::string_view worker, int attempt,
                                        std::chrono::milliseconds lease) {
  return Transact<Renewal>(TxMode::kWrite, [&](Connection& c) -> Result<Renewal> {
    GANTRY_RETURN_IF_ERROR(RequireRun(c, id));
    const int64_t now = Micros(Now());
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("UPDATE runs SET lease_expires_at = $5 WHERE id = $1 AND state = $2 AND "
                           "worker = $3 AND attempt = $4 RETURNING cancel_requested",
                           {id, S(RunState::kRunning), S(worker), int64_t{attempt},
                            now + int64_t{std::chrono::microseconds(lease).count()}}));
    if (rows.empty()) return Renewal::kLost;
    return rows[0].Int(0) != 0 ? Renewal::kCancelRequested : Renewal::kRenewed;
  });
}

Status SqlStore::RequestRunCancel(int64_t id) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT state FROM runs WHERE id = $1", {id}));
           if (rows.empty()) return NotFoundError("run {} not found", id);
           GANTRY_ASSIGN_OR_RETURN(
               Rows updated, c.Query("UPDATE runs SET cancel_requested = 1, updated_at = $3 WHERE id = $1 AND "
                                     "state = $2 RETURNING id",
                                     {id, S(RunState::kRunning), Micros(Now())}));
           if (updated.empty()) return FailedPreconditionError("it is {}, not running", rows[0].Text(0));
           return OkStatus();
         })
      .WithContext(fmt::format("request cancel of run {}", id));
}

Result<bool> SqlStore::AcquireLease(std::string_view name, std::string_view holder,
                                    std::chrono::milliseconds duration) {
  if (name.empty() || holder.empty()) {
    return InvalidArgumentError("acquire lease {:?} for {:?}: name and holder must not be empty", name, holder);
  }
  return Transact<bool>(TxMode::kWrite, [&](Connection& c) -> Result<bool> {
    const int64_t now = Micros(Now());
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows,
        c.Query("INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) "
                "DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE "
                "leases.holder = excluded.holder OR leases.expires_at < $4 RETURNING holder",
                {S(name), S(holder), now + int64_t{std::chrono::microseconds(duration).count()}, now}));
    return !rows.empty();
  });
}

Result<std::optional<Run>> SqlStore::ClaimNextQueuedRun(std::string_view worker,
                                                        std::optional<bool> trusted,
                                                        std::chrono::milliseconds lease,
                                                        const Labels& labels,
                                                        std::optional<std::string_view> project) {
  // The candidates, oldest first, of which the first whose labels the caller has is taken.
  // PostgreSQL: rows other servers are claiming are skipped rather than waited for; SQLite: the
  // write transaction holds the database's only write lock.
  const std::string candidates = fmt::format(
      "SELECT id, labels FROM runs WHERE state = $1 AND ($2 < 0 OR trusted = $2) AND ($3 = '' OR project = $3){} "
      "ORDER BY id LIMIT {}{}",
      labels.empty() ? " AND labels = ''" : "", kClaimCandidates,
      dialect_ == Dialect::kPostgres ? " FOR UPDATE SKIP LOCKED" : "");
  return Transact<std::optional<Run>>(
      TxMode::kWrite, [&](Connection& c) -> Result<std::optional<Run>> {
        const int64_t want = !trusted ? -1 : *trusted ? 1 : 0;
        GANTRY_ASSIGN_OR_RETURN(Rows queued, c.Query(candidates, {S(RunState::kQueued), want, S(project.value_or(""))}));
        for (const Row& q : queued) {
          auto wanted = ParseLabels(q.Text(1));
          if (!wanted.ok() || !LabelsMatch(*wanted, labels)) continue;
          const int64_t now = Micros(Now());
          GANTRY_ASSIGN_OR_RETURN(
              Rows rows,
              c.Query("UPDATE runs SET state = $2, worker = $3, attempt = attempt + 1, started_at = $4, "
                      "finished_at = NULL, updated_at = $4, lease_expires_at = $5 WHERE id = $6 AND state = $1 "
                      "RETURNING " GANTRY_RUN_COLS,
                      {S(RunState::kQueued), S(RunState::kRunning), S(worker), now,
                       now + int64_t{std::chrono::microseconds(lease).count()}, q.Int(0)}));
          if (!rows.empty()) return std::optional<Run>(RunFrom(rows[0]));
        }
        return std::optional<Run>();
      });
}

// ---------------------------------------------------------------------------------------------
// Workspace uploads

Result<uint64_t> SqlStore::AppendRunUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                           std::string_view data) {
  return Transact<uint64_t>(TxMode::kWrite, [&](Connection& c) -> Result<uint64_t> {
           GANTRY_ASSIGN_OR_RETURN(Rows run, c.Query("SELECT state, worker, attempt FROM runs WHERE id = $1", {id}));
           if (run.empty()) return NotFoundError("run {} not found", id);
           if (RunStateFrom(run[0].Text(0)) != RunState::kRunning || run[0].Text(1) != worker ||
               run[0].Int(2) != attempt) {
             return AbortedError("{} no longer holds attempt {}: it is {} at attempt {}{}", worker, attempt,
                                 run[0].Text(0), run[0].Int(2), run[0].Text(1).empty() ? "" : " by " + run[0].Text(1));
           }
           if (offset == 0) {
             GANTRY_RETURN_IF_ERROR(
                 c.Query("DELETE FROM run_uploads WHERE run_id = $1 AND attempt = $2", {id, int64_t{attempt}}).status());
           }
           GANTRY_ASSIGN_OR_RETURN(
               Rows held, c.Query("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM run_uploads WHERE run_id = $1 AND "
                                  "attempt = $2",
                                  {id, int64_t{attempt}}));
           const auto bytes = static_cast<uint64_t>(held[0].Int(0));
           if (bytes != offset) {
             return FailedPreconditionError("the store holds {} bytes of the workspace upload of run {} attempt {}, not {}",
                                            bytes, id, attempt, offset);
           }
           // Two parts at one offset at once (a retry racing the first send): the key refuses the second.
           auto inserted = c.Query("INSERT INTO run_uploads (run_id, attempt, byte_offset, data) VALUES ($1, $2, $3, $4)",
                                   {id, int64_t{attempt}, static_cast<int64_t>(offset), Blob{S(data)}});
           if (!inserted.ok() && inserted.status().code() == Code::kAlreadyExists) {
             return FailedPreconditionError("another part of the workspace upload of run {} was written at byte {}", id, offset);
           }
           GANTRY_RETURN_IF_ERROR(inserted.status());
           return offset + data.size();
         });
}

Result<std::string> SqlStore::ReadRunUpload(int64_t id, int attempt, uint64_t offset) {
  return Transact<std::string>(TxMode::kRead, [&](Connection& c) -> Result<std::string> {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("SELECT byte_offset, data FROM run_uploads WHERE run_id = $1 AND attempt = $2 AND "
                           "byte_offset <= $3 ORDER BY byte_offset DESC LIMIT 1",
                           {id, int64_t{attempt}, static_cast<int64_t>(offset)}));
    if (rows.empty()) return std::string();
    const auto skip = offset - static_cast<uint64_t>(rows[0].Int(0));
    const std::string& data = rows[0].Text(1);
    return skip < data.size() ? data.substr(skip) : std::string();
  });
}

Status SqlStore::DeleteRunUploads(int64_t id) {
  return Transaction(TxMode::kWrite, [&](Connection& c) { return DropUploads(c, id); })
      .WithContext(fmt::format("delete the workspace uploads of run {}", id));
}

// ---------------------------------------------------------------------------------------------
// Release progress

namespace {
ReleaseProgress ProgressFrom(const Row& r) {
  return ReleaseProgress{.run_id = r.Int(0), .stage = r.Text(1), .data = r.Text(2), .version = r.Int(3),
                         .updated_at = FromMicros(r.Int(4))};
}
}  // namespace

Result<ReleaseProgress> SqlStore::PutReleaseProgress(const ReleaseProgress& p) {
  const std::string where = fmt::format("release progress of run {}", p.run_id);
  if (p.stage.empty()) return InvalidArgumentError("{}: the stage must not be empty", where);
  Result<ReleaseProgress> out =
      Transact<ReleaseProgress>(TxMode::kWrite, [&](Connection& c) -> Result<ReleaseProgress> {
        GANTRY_RETURN_IF_ERROR(RequireRun(c, p.run_id));
        GANTRY_ASSIGN_OR_RETURN(
            Rows current, c.Query("SELECT version FROM release_progress WHERE run_id = $1", {p.run_id}));
        Rows rows;
        if (current.empty()) {
          if (p.version != 0) {
            return NotFoundError("it does not exist (version {} was given; use 0 to create it)", p.version);
          }
          GANTRY_ASSIGN_OR_RETURN(
              rows, c.Query("INSERT INTO release_progress (run_id, stage, data, version, updated_at) VALUES "
                            "($1, $2, $3, 1, $4) RETURNING run_id, stage, data, version, updated_at",
                            {p.run_id, p.stage, p.data, Micros(Now())}));
        } else {
          const int64_t version = current[0].Int(0);
          if (p.version == 0) return AlreadyExistsError("it exists (version {})", version);
          if (p.version != version) {
            return AbortedError("it changed since it was read (version {}, now {}): another process is "
                                "releasing this run",
                                p.version, version);
          }
          GANTRY_ASSIGN_OR_RETURN(
              rows, c.Query("UPDATE release_progress SET stage = $2, data = $3, version = version + 1, "
                            "updated_at = $4 WHERE run_id = $1 AND version = $5 RETURNING run_id, stage, "
                            "data, version, updated_at",
                            {p.run_id, p.stage, p.data, Micros(Now()), version}));
          if (rows.empty()) return AbortedError("it changed while being written; read it again");
        }
        return ProgressFrom(rows.at(0));
      });
  if (!out.ok()) return out.status().WithContext(where);
  return out;
}

Result<std::optional<ReleaseProgress>> SqlStore::GetReleaseProgress(int64_t run_id) {
  return Transact<std::optional<ReleaseProgress>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::optional<ReleaseProgress>> {
        GANTRY_ASSIGN_OR_RETURN(Rows rows, c.Query("SELECT run_id, stage, data, version, updated_at FROM "
                                                   "release_progress WHERE run_id = $1",
                                                   {run_id}));
        if (rows.empty()) return std::optional<ReleaseProgress>();
        return std::optional<ReleaseProgress>(ProgressFrom(rows[0]));
      });
}

// ---------------------------------------------------------------------------------------------
// Logs

Status SqlStore::AppendLogChunk(int64_t run_id, std::string_view step, int64_t seq,
                                std::string_view data) {
  const std::string where = fmt::format("append log chunk {} of run {} step {}", seq, run_id, step);
  if (data.size() > kMaxLogChunkBytes) {
    return InvalidArgumentError("{}: {} bytes, more than the {} a chunk may hold", where,
                                data.size(), kMaxLogChunkBytes);
  }
  if (seq < 0) return InvalidArgumentError("{}: negative sequence number", where);
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_RETURN_IF_ERROR(RequireRun(c, run_id));
           GANTRY_ASSIGN_OR_RETURN(
               Rows inserted,
               c.Query("INSERT INTO log_chunks (run_id, step, seq, data, written_at) VALUES ($1, "
                       "$2, $3, $4, $5) ON CONFLICT (run_id, step, seq) DO NOTHING RETURNING seq",
                       {run_id, S(step), seq, Blob{S(data)}, Micros(Now())}));
           if (!inserted.empty()) return OkStatus();
           GANTRY_ASSIGN_OR_RETURN(
               Rows existing, c.Query("SELECT data FROM log_chunks WHERE run_id = $1 AND step = "
                                      "$2 AND seq = $3",
                                      {run_id, S(step), seq}));
           if (existing.at(0).Text(0) != data) {
             return AlreadyExistsError("that chunk exists with different contents");
           }
           return OkStatus();  // a retried append
         })
      .WithContext(where);
}

Result<std::vector<LogChunk>> SqlStore::ReadLog(int64_t run_id, std::string_view step,
                                                int64_t from_seq, int max_chunks) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(max_chunks));
  return Transact<std::vector<LogChunk>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<LogChunk>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows, c.Query("SELECT step, seq, data, written_at FROM log_chunks WHERE run_id = "
                               "$1 AND step = $2 AND seq >= $3 ORDER BY seq LIMIT $4",
                               {run_id, S(step), from_seq, int64_t{max_chunks}}));
        std::vector<LogChunk> out;
        for (const Row& r : rows) {
          out.push_back({.step = r.Text(0),
                         .seq = r.Int(1),
                         .data = r.Text(2),
                         .written_at = FromMicros(r.Int(3))});
        }
        return out;
      });
}

// ---------------------------------------------------------------------------------------------
// Deliveries and audit

Result<bool> SqlStore::RecordDelivery(std::string_view provider, std::string_view delivery_id) {
  return Transact<bool>(TxMode::kWrite, [&](Connection& c) -> Result<bool> {
    const Time now = Now();
    GANTRY_RETURN_IF_ERROR(c.Query("DELETE FROM deliveries WHERE received_at < $1",
                                   {Micros(now - options_.delivery_retention)})
                               .status());
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("INSERT INTO deliveries (provider, delivery_id, received_at) VALUES "
                           "($1, $2, $3) ON CONFLICT (provider, delivery_id) DO NOTHING "
                           "RETURNING 1",
                           {S(provider), S(delivery_id), Micros(now)}));
    return !rows.empty();
  });
}

Result<int64_t> SqlStore::Audit(const AuditEntry& entry) {
  return Transact<int64_t>(TxMode::kWrite, [&](Connection& c) -> Result<int64_t> {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows,
        c.Query("INSERT INTO audit (at, actor, action, object, details, source, result, project) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                {Micros(Now()), entry.actor, entry.action, entry.object, entry.details,
                 entry.source, entry.result, entry.project}));
    return rows.at(0).Int(0);
  });
}

Result<std::vector<AuditEntry>> SqlStore::ListAudit(const AuditFilter& f) {
  GANTRY_RETURN_IF_ERROR(CheckLimit(f.limit));
  return Transact<std::vector<AuditEntry>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<AuditEntry>> {
        // Every condition is always present; an empty one matches everything.
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows,
            c.Query("SELECT id, at, actor, action, object, details, source, result, project "
                    "FROM audit WHERE id < $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR "
                    "action = $3) AND ($4 = '' OR project = $4) AND at >= $5 AND at < $6 "
                    "ORDER BY id DESC LIMIT $7",
                    {Before(f.before_id), f.actor, f.action, f.project,
                     f.since ? Micros(*f.since) : std::numeric_limits<int64_t>::min(),
                     f.until ? Micros(*f.until) : std::numeric_limits<int64_t>::max(),
                     int64_t{f.limit}}));
        std::vector<AuditEntry> out;
        for (const Row& r : rows) {
          out.push_back({.id = r.Int(0),
                         .at = FromMicros(r.Int(1)),
                         .actor = r.Text(2),
                         .action = r.Text(3),
                         .object = r.Text(4),
                         .details = r.Text(5),
                         .source = r.Text(6),
                         .result = r.Text(7),
                         .project = r.Text(8)});
        }
        return out;
      });
}

// ---------------------------------------------------------------------------------------------
// API tokens and role bindings

#define GANTRY_TOKEN_COLS                                                                    \
  "id, name, kind, owner, roles, secret_sha256, created_by, created_at, expires_at, "       \
  "last_used_at, revoked_at, revoked_by"

namespace {

ApiToken TokenFrom(const Row& r) {
  ApiToken out;
  out.id = r.Int(0);
  out.name = r.Text(1);
  out.kind = ParseTokenKind(r.Text(2)).value_or(TokenKind::kRobot);
  out.owner = r.Text(3);
  for (std::string_view roles = r.Text(4); !roles.empty();) {
    const size_t comma = std::min(roles.find(','), roles.size());
    out.roles.emplace_back(roles.substr(0, comma));
    roles.remove_prefix(std::min(comma + 1, roles.size()));
  }
  out.secret_sha256 = r.Text(5);
  out.created_by = r.Text(6);
  out.created_at = FromMicros(r.Int(7));
  out.expires_at = OptTimeFrom(r, 8);
  out.last_used_at = OptTimeFrom(r, 9);
  out.revoked_at = OptTimeFrom(r, 10);
  out.revoked_by = r.Text(11);
  return out;
}

bool IsSha256Hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

Status CheckToken(const ApiToken& t) {
  if (t.name.empty()) return InvalidArgumentError("the token's name is empty");
  if (t.owner.empty()) return InvalidArgumentError("token {:?}: the owner is empty", t.name);
  if (!IsSha256Hex(t.secret_sha256)) {
    return InvalidArgumentError("token {:?}: the secret's hash is not 64 lowercase hex characters",
                                t.name);
  }
  if (t.kind == TokenKind::kRobot && t.roles.empty()) {
    return InvalidArgumentError("robot token {:?}: a robot token needs at least one role", t.name);
  }
  for (const std::string& role : t.roles) {
    if (role.empty() || role.find(',') != std::string::npos) {
      return InvalidArgumentError("token {:?}: bad role name {:?}", t.name, role);
    }
  }
  return OkStatus();
}

Result<ApiToken> LoadToken(Connection& c, int64_t id) {
  GANTRY_ASSIGN_OR_RETURN(Rows rows,
                          c.Query("SELECT " GANTRY_TOKEN_COLS " FROM api_tokens WHERE id = $1", {id}));
  if (rows.empty()) return NotFoundError("no token t-{}", id);
  return TokenFrom(rows[0]);
}

}  // namespace

Result<ApiToken> SqlStore::CreateToken(const ApiToken& t, bool only_if_first) {
  GANTRY_RETURN_IF_ERROR(CheckToken(t).WithContext("create token"));
  std::string roles;
  for (const std::string& role : t.roles) roles += (roles.empty() ? "" : ",") + role;
  Result<ApiToken> created = Transact<ApiToken>(TxMode::kWrite, [&](Connection& c) -> Result<ApiToken> {
           if (only_if_first) {
             // SQLite's write transaction is exclusive already; PostgreSQL's READ COMMITTED
             // would let two servers both see an empty table.
             if (dialect_ == Dialect::kPostgres) {
               GANTRY_RETURN_IF_ERROR(
                   c.Query("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE").status());
             }
             GANTRY_ASSIGN_OR_RETURN(Rows any, c.Query("SELECT id FROM api_tokens LIMIT 1"));
             if (!any.empty()) return AlreadyExistsError("tokens exist already");
           }
           GANTRY_ASSIGN_OR_RETURN(
               Rows rows,
               c.Query("INSERT INTO api_tokens (name, kind, owner, roles, secret_sha256, "
                       "created_by, created_at, expires_at, revoked_by) VALUES ($1, $2, $3, $4, "
                       "$5, $6, $7, $8, '') RETURNING id",
                       {t.name, S(Name(t.kind)), t.owner, roles, t.secret_sha256, t.created_by,
                        Micros(Now()),
                        t.expires_at ? Value(Micros(*t.expires_at)) : Value(nullptr)}));
           return LoadToken(c, rows.at(0).Int(0));
         });
  if (!created.ok()) return created.status().WithContext(fmt::format("create token {:?}", t.name));
  return created;
}

Result<ApiToken> SqlStore::FindTokenByHash(std::string_view secret_sha256) {
  return Transact<ApiToken>(TxMode::kRead, [&](Connection& c) -> Result<ApiToken> {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("SELECT " GANTRY_TOKEN_COLS " FROM api_tokens WHERE secret_sha256 = $1",
                           {S(secret_sha256)}));
    if (rows.empty()) return NotFoundError("no token has that secret");
    return TokenFrom(rows[0]);
  });
}

Result<ApiToken> SqlStore::GetToken(int64_t id) {
  return Transact<ApiToken>(TxMode::kRead, [&](Connection& c) { return LoadToken(c, id); });
}

Status SqlStore::TouchToken(int64_t id) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
    GANTRY_ASSIGN_OR_RETURN(Rows rows,
                            c.Query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 "
                                    "RETURNING id",
                                    {id, Micros(Now())}));
    if (rows.empty()) return NotFoundError("no token t-{}", id);
    return OkStatus();
  });
}

Status SqlStore::RevokeToken(int64_t id, std::string_view by) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
           GANTRY_RETURN_IF_ERROR(LoadToken(c, id).status());
           return c
               .Query("UPDATE api_tokens SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND "
                      "revoked_at IS NULL",
                      {id, Micros(Now()), S(by)})
               .status();
         })
      .WithContext(fmt::format("revoke token t-{}", id));
}

Result<std::vector<ApiToken>> SqlStore::ListTokens(std::string_view owner) {
  return Transact<std::vector<ApiToken>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<ApiToken>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows, c.Query("SELECT " GANTRY_TOKEN_COLS " FROM api_tokens WHERE $1 = '' OR "
                               "owner = $1 ORDER BY id DESC",
                               {S(owner)}));
        std::vector<ApiToken> out;
        for (const Row& r : rows) out.push_back(TokenFrom(r));
        return out;
      });
}

Status SqlStore::GrantRole(const RoleBinding& b) {
  if (b.subject.empty() || b.role.empty() || b.project.empty()) {
    return InvalidArgumentError("grant role: subject, role and project are required (got {:?}, "
                                "{:?}, {:?})",
                                b.subject, b.role, b.project);
  }
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
    return c
        .Query("INSERT INTO role_bindings (subject_kind, subject, role, project, created_by, "
               "created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_kind, subject, "
               "role, project) DO NOTHING",
               {S(Name(b.subject_kind)), b.subject, b.role, b.project, b.created_by,
                Micros(Now())})
        .status();
  });
}

Status SqlStore::RevokeRole(SubjectKind kind, std::string_view subject, std::string_view role,
                            std::string_view project) {
  return Transaction(TxMode::kWrite, [&](Connection& c) -> Status {
    GANTRY_ASSIGN_OR_RETURN(
        Rows rows, c.Query("DELETE FROM role_bindings WHERE subject_kind = $1 AND subject = $2 "
                           "AND role = $3 AND project = $4 RETURNING subject",
                           {S(Name(kind)), S(subject), S(role), S(project)}));
    if (rows.empty()) {
      return NotFoundError("{} {} has no role {} on project {}", Name(kind), subject, role,
                           project);
    }
    return OkStatus();
  });
}

Result<std::vector<RoleBinding>> SqlStore::ListRoleBindings() {
  return Transact<std::vector<RoleBinding>>(
      TxMode::kRead, [&](Connection& c) -> Result<std::vector<RoleBinding>> {
        GANTRY_ASSIGN_OR_RETURN(
            Rows rows, c.Query("SELECT subject_kind, subject, role, project, created_by, "
                               "created_at FROM role_bindings ORDER BY subject_kind, subject, "
                               "project, role"));
        std::vector<RoleBinding> out;
        for (const Row& r : rows) {
          out.push_back({.subject_kind = ParseSubjectKind(r.Text(0)).value_or(SubjectKind::kUser),
                         .subject = r.Text(1),
                         .role = r.Text(2),
                         .project = r.Text(3),
                         .created_by = r.Text(4),
                         .created_at = FromMicros(r.Int(5))});
        }
        return out;
      });
}

}  // namespace gantry::store::internal
