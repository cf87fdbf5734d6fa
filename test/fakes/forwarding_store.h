#pragma once
// fakes::ForwardingStore: a store::Store that forwards every call to another store it does not own.
// A test derives from it and overrides the one call it wants to watch or hold up (for example the
// final UpdateRun of a run, to act in the moment before it is written). The target must outlive the
// forwarder. Thread-safe as the target is.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace gantry::fakes {

class ForwardingStore : public store::Store {
 public:
  explicit ForwardingStore(store::Store& target) : target_(target) {}

  Result<int64_t> CreateRelease(const store::Release& release) override { return target_.CreateRelease(release); }
  Result<store::Release> GetRelease(int64_t id) override { return target_.GetRelease(id); }
  Result<std::vector<store::Release>> ListReleases(std::string_view app, int limit, int64_t before_id = 0) override {
    return target_.ListReleases(app, limit, before_id);
  }
  Result<std::vector<std::string>> ListApps() override { return target_.ListApps(); }
  Result<store::Target> UpsertTarget(const store::Target& target) override { return target_.UpsertTarget(target); }
  Result<std::vector<store::Target>> ListTargets(int64_t release_id) override { return target_.ListTargets(release_id); }
  Result<std::vector<store::TargetStatus>> CurrentByTarget(std::string_view app) override {
    return target_.CurrentByTarget(app);
  }
  Result<int64_t> ReleasesBehind(std::string_view app, std::string_view env, std::string_view cluster) override {
    return target_.ReleasesBehind(app, env, cluster);
  }
  Status Approve(int64_t release_id, std::string_view env, std::string_view by) override {
    return target_.Approve(release_id, env, by);
  }
  Result<bool> IsApproved(int64_t release_id, std::string_view env) override { return target_.IsApproved(release_id, env); }
  Result<int64_t> CreateRun(const store::Run& run) override { return target_.CreateRun(run); }
  Status ApproveRun(int64_t id, std::string_view by) override { return target_.ApproveRun(id, by); }
  Status BindRunCommit(int64_t id, std::string_view commit) override { return target_.BindRunCommit(id, commit); }
  Status UpdateRun(int64_t id, store::RunState state, std::string_view message = {}, int attempt = 0) override {
    return target_.UpdateRun(id, state, message, attempt);
  }
  Status UpsertStep(int64_t run_id, const store::Step& step) override { return target_.UpsertStep(run_id, step); }
  Result<store::Run> GetRun(int64_t id) override { return target_.GetRun(id); }
  Result<std::vector<store::Run>> ListRuns(const store::RunFilter& filter) override { return target_.ListRuns(filter); }
  Result<std::vector<store::Run>> MarkUnfinishedInterrupted(std::string_view worker) override {
    return target_.MarkUnfinishedInterrupted(worker);
  }
  Result<std::optional<store::Run>> ClaimNextQueuedRun(std::string_view worker, std::optional<bool> trusted,
                                                        std::chrono::milliseconds lease = store::kDefaultRunLease,
                                                        const store::Labels& labels = {},
                                                        std::optional<std::string_view> project = std::nullopt) override {
    return target_.ClaimNextQueuedRun(worker, trusted, lease, labels, project);
  }
  Result<store::Renewal> RenewRunLease(int64_t id, std::string_view worker, int attempt,
                                       std::chrono::milliseconds lease) override {
    return target_.RenewRunLease(id, worker, attempt, lease);
  }
  Status RequestRunCancel(int64_t id) override { return target_.RequestRunCancel(id); }
  Result<std::vector<store::Run>> MarkExpiredInterrupted() override { return target_.MarkExpiredInterrupted(); }
  Result<uint64_t> AppendRunUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                   std::string_view data) override {
    return target_.AppendRunUpload(id, worker, attempt, offset, data);
  }
  Result<std::string> ReadRunUpload(int64_t id, int attempt, uint64_t offset) override {
    return target_.ReadRunUpload(id, attempt, offset);
  }
  Status DeleteRunUploads(int64_t id) override { return target_.DeleteRunUploads(id); }
  Result<bool> AcquireLease(std::string_view name, std::string_view holder, std::chrono::milliseconds duration) override {
    return target_.AcquireLease(name, holder, duration);
  }
  Result<store::ReleaseProgress> PutReleaseProgress(const store::ReleaseProgress& progress) override {
    return target_.PutReleaseProgress(progress);
  }
  Result<std::optional<store::ReleaseProgress>> GetReleaseProgress(int64_t run_id) override {
    return target_.GetReleaseProgress(run_id);
  }
  Status AppendLogChunk(int64_t run_id, std::string_view step, int64_t seq, std::string_view data) override {
    return target_.AppendLogChunk(run_id, step, seq, data);
  }
  Result<std::vector<store::LogChunk>> ReadLog(int64_t run_id, std::string_view step, int64_t from_seq,
                                               int max_chunks = 256) override {
    return target_.ReadLog(run_id, step, from_seq, max_chunks);
  }
  Result<bool> RecordDelivery(std::string_view provider, std::string_view delivery_id) override {
    return target_.RecordDelivery(provider, delivery_id);
  }
  Result<int64_t> Audit(const store::AuditEntry& entry) override { return target_.Audit(entry); }
  Result<std::vector<store::AuditEntry>> ListAudit(const store::AuditFilter& filter) override {
    return target_.ListAudit(filter);
  }
  using store::Store::ListAudit;
  Result<store::ApiToken> CreateToken(const store::ApiToken& token, bool only_if_first = false) override {
    return target_.CreateToken(token, only_if_first);
  }
  Result<store::ApiToken> FindTokenByHash(std::string_view secret_sha256) override {
    return target_.FindTokenByHash(secret_sha256);
  }
  Result<store::ApiToken> GetToken(int64_t id) override { return target_.GetToken(id); }
  Status TouchToken(int64_t id) override { return target_.TouchToken(id); }
  Status RevokeToken(int64_t id, std::string_view by) override { return target_.RevokeToken(id, by); }
  Result<std::vector<store::ApiToken>> ListTokens(std::string_view owner) override { return target_.ListTokens(owner); }
  Status GrantRole(const store::RoleBinding& binding) override { return target_.GrantRole(binding); }
  Status RevokeRole(store::SubjectKind kind, std::string_view subject, std::string_view role,
                    std::string_view project) override {
    return target_.RevokeRole(kind, subject, role, project);
  }
  Result<std::vector<store::RoleBinding>> ListRoleBindings() override { return target_.ListRoleBindings(); }
  Result<int64_t> EnqueueNotification(const store::Notification& n) override { return target_.EnqueueNotification(n); }
  Result<std::vector<store::Notification>> ListNotifications(const store::NotificationFilter& filter) override {
    return target_.ListNotifications(filter);
  }
  Status RecordNotificationAttempt(int64_t id, store::NotificationState state, std::string_view error,
                                   store::Time next_attempt_at) override {
    return target_.RecordNotificationAttempt(id, state, error, next_attempt_at);
  }
  Result<int64_t> PutForgeStatus(const store::ForgeStatus& s) override { return target_.PutForgeStatus(s); }
  Result<std::vector<store::ForgeStatus>> ListForgeStatuses(const store::ForgeStatusFilter& filter) override {
    return target_.ListForgeStatuses(filter);
  }
  Status RecordForgeStatusAttempt(int64_t id, int64_t version, store::NotificationState delivery, std::string_view error,
                                  store::Time next_attempt_at) override {
    return target_.RecordForgeStatusAttempt(id, version, delivery, error, next_attempt_at);
  }
  Result<int64_t> PutPullMerge(const store::PullMerge& m) override { return target_.PutPullMerge(m); }
  Result<std::vector<store::PullMerge>> ListPullMerges(std::optional<store::Time> due_by, int limit) override {
    return target_.ListPullMerges(due_by, limit);
  }
  Result<std::optional<store::PullMerge>> PullMergeOfRelease(int64_t release_id) override {
    return target_.PullMergeOfRelease(release_id);
  }
  Status RecordPullMergeAttempt(int64_t id, int64_t version, store::NotificationState state, std::string_view note,
                                store::Time next_attempt_at) override {
    return target_.RecordPullMergeAttempt(id, version, state, note, next_attempt_at);
  }
  Result<int> SchemaVersion() override { return target_.SchemaVersion(); }
  Status Verify() override { return target_.Verify(); }

 private:
  store::Store& target_;
};

}  // namespace gantry::fakes
