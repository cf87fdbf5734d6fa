#pragma once
// Private to the store module: SqlStore, the one implementation of Store's operations, over the
// Connection of a backend. SqliteStore and PostgresStore derive from it and supply Connect().
//
// Every operation runs in Transaction(): a pooled connection, BEGIN (SQLite: IMMEDIATE for writes;
// PostgreSQL: READ COMMITTED for writes, whose compare-and-set UPDATEs make them safe, and
// REPEATABLE READ READ ONLY for reads), the body, COMMIT. A transient failure (lost connection,
// deadlock, busy file) rolls back and retries the whole transaction with Options::retry, on a new
// connection when the old one broke; a COMMIT that was sent on a connection that then broke is
// not retried (it may have been applied).

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "base/mutex.h"
#include "store/internal/sql.h"
#include "store/store.h"

namespace gantry::store::internal {

class SqlStore : public Store {
 public:
  SqlStore(Dialect dialect, Options options);
  ~SqlStore() override;

  // Creates the schema_migrations table and applies the pending migrations, in one transaction.
  // FailedPrecondition when the database is newer than this binary.
  Status Migrate();

  Result<int64_t> CreateRelease(const Release& release) override;
  Result<Release> GetRelease(int64_t id) override;
  Result<std::vector<Release>> ListReleases(std::string_view app, int limit,
                                            int64_t before_id) override;
  Result<std::vector<std::string>> ListApps() override;
  Result<Target> UpsertTarget(const Target& target) override;
  Result<std::vector<Target>> ListTargets(int64_t release_id) override;
  Result<std::vector<TargetStatus>> CurrentByTarget(std::string_view app) override;
  Result<int64_t> ReleasesBehind(std::string_view app, std::string_view env,
                                 std::string_view cluster) override;
  Status Approve(int64_t release_id, std::string_view env, std::string_view by) override;
  Result<bool> IsApproved(int64_t release_id, std::string_view env) override;
  Result<int64_t> CreateRun(const Run& run) override;
  Status ApproveRun(int64_t id, std::string_view by) override;
  Status BindRunCommit(int64_t id, std::string_view commit) override;
  Status UpdateRun(int64_t id, RunState state, std::string_view message, int attempt) override;
  Status UpsertStep(int64_t run_id, const Step& step) override;
  Result<Run> GetRun(int64_t id) override;
  Result<std::vector<Run>> ListRuns(const RunFilter& filter) override;
  Result<std::vector<Run>> MarkUnfinishedInterrupted(std::string_view worker) override;
  Result<std::optional<Run>> ClaimNextQueuedRun(std::string_view worker, std::optional<bool> trusted,
                                                std::chrono::milliseconds lease, const Labels& labels,
                                                std::optional<std::string_view> project) override;
  Result<Renewal> RenewRunLease(int64_t id, std::string_view worker, int attempt,
                                std::chrono::milliseconds lease) override;
  Status RequestRunCancel(int64_t id) override;
  Result<std::vector<Run>> MarkExpiredInterrupted() override;
  Result<uint64_t> AppendRunUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                   std::string_view data) override;
  Result<std::string> ReadRunUpload(int64_t id, int attempt, uint64_t offset) override;
  Status DeleteRunUploads(int64_t id) override;
  Result<bool> AcquireLease(std::string_view name, std::string_view holder,
                            std::chrono::milliseconds duration) override;
  Result<ReleaseProgress> PutReleaseProgress(const ReleaseProgress& progress) override;
  Result<std::optional<ReleaseProgress>> GetReleaseProgress(int64_t run_id) override;
  Status AppendLogChunk(int64_t run_id, std::string_view step, int64_t seq,
                        std::string_view data) override;
  Result<std::vector<LogChunk>> ReadLog(int64_t run_id, std::string_view step, int64_t from_seq,
                                        int max_chunks) override;
  Result<bool> RecordDelivery(std::string_view provider, std::string_view delivery_id) override;
  Result<int64_t> Audit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) override;
  using Store::ListAudit;
  Result<ApiToken> CreateToken(const ApiToken& token, bool only_if_first) override;
  Result<ApiToken> FindTokenByHash(std::string_view secret_sha256) override;
  Result<ApiToken> GetToken(int64_t id) override;
  Status TouchToken(int64_t id) override;
  Status RevokeToken(int64_t id, std::string_view by) override;
  Result<std::vector<ApiToken>> ListTokens(std::string_view owner) override;
  Status GrantRole(const RoleBinding& binding) override;
  Status RevokeRole(SubjectKind kind, std::string_view subject, std::string_view role,
                    std::string_view project) override;
  Result<std::vector<RoleBinding>> ListRoleBindings() override;
  Result<int64_t> EnqueueNotification(const Notification& n) override;
  Result<std::vector<Notification>> ListNotifications(const NotificationFilter& filter) override;
  Status RecordNotificationAttempt(int64_t id, NotificationState state, std::string_view error,
                                   Time next_attempt_at) override;
  Result<int64_t> PutForgeStatus(const ForgeStatus& s) override;
  Result<std::vector<ForgeStatus>> ListForgeStatuses(const ForgeStatusFilter& filter) override;
  Result<int64_t> PutPullMerge(const PullMerge& m) override;
  Result<std::vector<PullMerge>> ListPullMerges(std::optional<Time> due_by, int limit) override;
  Result<std::optional<PullMerge>> PullMergeOfRelease(int64_t release_id) override;
  Status RecordPullMergeAttempt(int64_t id, int64_t version, NotificationState state, std::string_view note,
                                Time next_attempt_at) override;
  Status RecordForgeStatusAttempt(int64_t id, int64_t version, NotificationState delivery, std::string_view error,
                                  Time next_attempt_at) override;
  Result<int> SchemaVersion() override;
  Status Verify() override;

 protected:
  // A new connection to the database. Unavailable (retried) when it cannot be reached.
  virtual Result<std::unique_ptr<Connection>> Connect() = 0;

 private:
  // Runs `body` in a transaction as described above; returns its status or the transaction's.
  Status Transaction(TxMode mode, const std::function<Status(Connection&)>& body);

  template <typename T, typename F>
  Result<T> Transact(TxMode mode, F&& body) {
    std::optional<T> out;
    Status s = Transaction(mode, [&](Connection& c) -> Status {
      Result<T> r = body(c);
      if (!r.ok()) return r.status();
      out.emplace(std::move(r).value());
      return OkStatus();
    });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<std::unique_ptr<Connection>> Acquire();
  void Return(std::unique_ptr<Connection> conn);
  Time Now() { return clock_->WallNow(); }

  const Dialect dialect_;
  const Options options_;
  Clock* const clock_;

  Mutex mu_;
  CondVar idle_cv_;
  std::vector<std::unique_ptr<Connection>> idle_ GUARDED_BY(mu_);
  int open_ GUARDED_BY(mu_) = 0;  // idle + in use
};

}  // namespace gantry::store::internal
