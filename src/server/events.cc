#include "server/events.h"

#include <map>
#include <thread>

#include "base/log.h"

namespace gantry::server {

EventBus::EventBus(size_t ring_size, size_t queue_size) : ring_size_(ring_size), queue_size_(queue_size) {}

int64_t EventBus::Publish(std::string type, const value::Value& data, std::string project) {
  MutexLock lock(mu_);
  Event e{.id = next_id_++, .type = std::move(type), .data = value::ToJson(data), .project = std::move(project)};
  for (Subscription* s : subscribers_) {
    if (s->dropped_) continue;
    if (s->queue_.size() >= queue_size_) {
      s->dropped_ = true;
      s->queue_.clear();
      continue;
    }
    s->queue_.push_back(e);
  }
  ring_.push_back(std::move(e));
  if (ring_.size() > ring_size_) ring_.pop_front();
  cv_.NotifyAll();
  return next_id_ - 1;
}

std::unique_ptr<EventBus::Subscription> EventBus::Subscribe(std::optional<int64_t> last_id) {
  std::unique_ptr<Subscription> s(new Subscription(*this));
  MutexLock lock(mu_);
  if (last_id) {
    const int64_t oldest = ring_.empty() ? next_id_ : ring_.front().id;
    if (*last_id + 1 < oldest && *last_id < next_id_ - 1) {
      // What it missed is gone: it must reload what it shows.
      value::Value data = value::Value::Map();
      data.Set("last_id", next_id_ - 1);
      s->queue_.push_back({.id = next_id_ - 1, .type = "reset", .data = value::ToJson(data)});
    } else {
      for (const Event& e : ring_) {
        if (e.id > *last_id) s->queue_.push_back(e);
      }
    }
  }
  subscribers_.insert(s.get());
  return s;
}

EventBus::Subscription::~Subscription() {
  MutexLock lock(bus_.mu_);
  bus_.subscribers_.erase(this);
}

std::optional<Event> EventBus::Subscription::Next(std::chrono::milliseconds timeout) {
  MutexLock lock(bus_.mu_);
  bus_.cv_.WaitFor(bus_.mu_, timeout, [this]() REQUIRES(bus_.mu_) { return dropped_ || !queue_.empty(); });
  if (dropped_ || queue_.empty()) return std::nullopt;
  Event e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

bool EventBus::Subscription::dropped() const {
  MutexLock lock(bus_.mu_);
  return dropped_;
}

int64_t EventBus::last_id() const {
  MutexLock lock(mu_);
  return next_id_ - 1;
}

size_t EventBus::subscribers() const {
  MutexLock lock(mu_);
  return subscribers_.size();
}

namespace {

using value::Value;

class Observed final : public store::Store {
 public:
  Observed(store::Store& inner, EventBus& bus, std::function<std::string(const store::Run&)> project_of,
           std::function<std::string(int64_t)> project_of_release, std::chrono::milliseconds watch)
      : inner_(inner), bus_(bus), project_of_(std::move(project_of)), project_of_release_(std::move(project_of_release)) {
    if (watch.count() > 0) watcher_ = std::thread([this, watch] { Watch(watch); });
  }
  ~Observed() override {
    {
      MutexLock lock(mu_);
      stop_ = true;
      cv_.NotifyAll();
    }
    if (watcher_.joinable()) watcher_.join();
  }

  Result<int64_t> CreateRelease(const store::Release& r) override { return inner_.CreateRelease(r); }
  Result<store::Release> GetRelease(int64_t id) override { return inner_.GetRelease(id); }
  Result<std::vector<store::Release>> ListReleases(std::string_view app, int limit, int64_t before_id) override {
    return inner_.ListReleases(app, limit, before_id);
  }
  Result<std::vector<std::string>> ListApps() override { return inner_.ListApps(); }
  Result<store::Target> UpsertTarget(const store::Target& target) override {
    auto t = inner_.UpsertTarget(target);
    if (t.ok()) {
      auto release = inner_.GetRelease(t->release_id);
      Value v = Value::Map();
      v.Set("app", release.ok() ? release->app : "");
      v.Set("release", t->release_id);
      v.Set("environment", t->env);
      v.Set("cluster", t->cluster);
      v.Set("state", store::Name(t->state));
      bus_.Publish("release", v, project_of_release_ ? project_of_release_(t->release_id) : "");
    }
    return t;
  }
  Result<std::vector<store::Target>> ListTargets(int64_t release_id) override { return inner_.ListTargets(release_id); }
  Result<std::vector<store::TargetStatus>> CurrentByTarget(std::string_view app) override {
    return inner_.CurrentByTarget(app);
  }
  Result<int64_t> ReleasesBehind(std::string_view app, std::string_view env, std::string_view cluster) override {
    return inner_.ReleasesBehind(app, env, cluster);
  }
  Status Approve(int64_t release_id, std::string_view env, std::string_view by) override {
    return inner_.Approve(release_id, env, by);
  }
  Result<bool> IsApproved(int64_t release_id, std::string_view env) override { return inner_.IsApproved(release_id, env); }

  Result<int64_t> CreateRun(const store::Run& run) override {
    auto id = inner_.CreateRun(run);
    if (id.ok()) {
      Remember(*id, run);
      RunEvent(*id, run.state);
    }
    return id;
  }
  Status ApproveRun(int64_t id, std::string_view by) override {
    Status s = inner_.ApproveRun(id, by);
    if (s.ok()) RunEvent(id, store::RunState::kQueued);
    return s;
  }
  Status BindRunCommit(int64_t id, std::string_view commit) override { return inner_.BindRunCommit(id, commit); }
  Status UpdateRun(int64_t id, store::RunState state, std::string_view message, int attempt) override {
    Status s = inner_.UpdateRun(id, state, message, attempt);
    if (s.ok()) RunEvent(id, state);
    return s;
  }
  Status UpsertStep(int64_t run_id, const store::Step& step) override {
    Status s = inner_.UpsertStep(run_id, step);
    if (s.ok()) {
      Value v = Value::Map();
      v.Set("run", run_id);
      v.Set("name", step.name);
      v.Set("state", store::Name(step.state));
      bus_.Publish("step", v, ProjectOf(run_id));
    }
    return s;
  }
  Result<store::Run> GetRun(int64_t id) override { return inner_.GetRun(id); }
  Result<std::vector<store::Run>> ListRuns(const store::RunFilter& filter) override { return inner_.ListRuns(filter); }
  Result<std::vector<store::Run>> MarkUnfinishedInterrupted(std::string_view worker) override {
    return Interrupted(inner_.MarkUnfinishedInterrupted(worker));
  }
  Result<std::optional<store::Run>> ClaimNextQueuedRun(std::string_view worker, std::optional<bool> trusted,
                                                        std::chrono::milliseconds lease, const store::Labels& labels,
                                                        std::optional<std::string_view> project) override {
    auto run = inner_.ClaimNextQueuedRun(worker, trusted, lease, labels, project);
    if (run.ok() && run->has_value()) {
      Remember((*run)->id, **run);
      RunEvent((*run)->id, (*run)->state);
    }
    return run;
  }
  Result<store::Renewal> RenewRunLease(int64_t id, std::string_view worker, int attempt,
                                       std::chrono::milliseconds lease) override {
    return inner_.RenewRunLease(id, worker, attempt, lease);
  }
  Status RequestRunCancel(int64_t id) override { return inner_.RequestRunCancel(id); }
  Result<std::vector<store::Run>> MarkExpiredInterrupted() override { return Interrupted(inner_.MarkExpiredInterrupted()); }
  Result<uint64_t> AppendRunUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                   std::string_view data) override {
    return inner_.AppendRunUpload(id, worker, attempt, offset, data);
  }
  Result<std::string> ReadRunUpload(int64_t id, int attempt, uint64_t offset) override {
    return inner_.ReadRunUpload(id, attempt, offset);
  }
  Status DeleteRunUploads(int64_t id) override { return inner_.DeleteRunUploads(id); }
  Result<bool> AcquireLease(std::string_view name, std::string_view holder, std::chrono::milliseconds duration) override {
    return inner_.AcquireLease(name, holder, duration);
  }
  Result<store::ReleaseProgress> PutReleaseProgress(const store::ReleaseProgress& p) override {
    return inner_.PutReleaseProgress(p);
  }
  Result<std::optional<store::ReleaseProgress>> GetReleaseProgress(int64_t run_id) override {
    return inner_.GetReleaseProgress(run_id);
  }
  Status AppendLogChunk(int64_t run_id, std::string_view step, int64_t seq, std::string_view data) override {
    Status s = inner_.AppendLogChunk(run_id, step, seq, data);
    if (s.ok()) {
      Value v = Value::Map();
      v.Set("run", run_id);
      v.Set("step", step);
      v.Set("seq", seq);
      v.Set("text", data);
      bus_.Publish("log", v, ProjectOf(run_id));
    }
    return s;
  }
  Result<std::vector<store::LogChunk>> ReadLog(int64_t run_id, std::string_view step, int64_t from_seq,
                                               int max_chunks) override {
    return inner_.ReadLog(run_id, step, from_seq, max_chunks);
  }
  Result<bool> RecordDelivery(std::string_view provider, std::string_view delivery_id) override {
    return inner_.RecordDelivery(provider, delivery_id);
  }
  Result<int64_t> Audit(const store::AuditEntry& entry) override { return inner_.Audit(entry); }
  Result<std::vector<store::AuditEntry>> ListAudit(const store::AuditFilter& filter) override {
    return inner_.ListAudit(filter);
  }
  Result<store::ApiToken> CreateToken(const store::ApiToken& token, bool only_if_first) override {
    return inner_.CreateToken(token, only_if_first);
  }
  Result<store::ApiToken> FindTokenByHash(std::string_view sha) override { return inner_.FindTokenByHash(sha); }
  Result<store::ApiToken> GetToken(int64_t id) override { return inner_.GetToken(id); }
  Status TouchToken(int64_t id) override { return inner_.TouchToken(id); }
  Status RevokeToken(int64_t id, std::string_view by) override { return inner_.RevokeToken(id, by); }
  Result<std::vector<store::ApiToken>> ListTokens(std::string_view owner) override { return inner_.ListTokens(owner); }
  Status GrantRole(const store::RoleBinding& binding) override { return inner_.GrantRole(binding); }
  Status RevokeRole(store::SubjectKind kind, std::string_view subject, std::string_view role,
                    std::string_view project) override {
    return inner_.RevokeRole(kind, subject, role, project);
  }
  Result<std::vector<store::RoleBinding>> ListRoleBindings() override { return inner_.ListRoleBindings(); }
  Result<int64_t> EnqueueNotification(const store::Notification& n) override { return inner_.EnqueueNotification(n); }
  Result<std::vector<store::Notification>> ListNotifications(const store::NotificationFilter& filter) override {
    return inner_.ListNotifications(filter);
  }
  Status RecordNotificationAttempt(int64_t id, store::NotificationState state, std::string_view error,
                                   store::Time next_attempt_at) override {
    return inner_.RecordNotificationAttempt(id, state, error, next_attempt_at);
  }
  Result<int64_t> PutForgeStatus(const store::ForgeStatus& s) override { return inner_.PutForgeStatus(s); }
  Result<std::vector<store::ForgeStatus>> ListForgeStatuses(const store::ForgeStatusFilter& filter) override {
    return inner_.ListForgeStatuses(filter);
  }
  Status RecordForgeStatusAttempt(int64_t id, int64_t version, store::NotificationState delivery, std::string_view error,
                                  store::Time next_attempt_at) override {
    return inner_.RecordForgeStatusAttempt(id, version, delivery, error, next_attempt_at);
  }
  Result<int64_t> PutPullMerge(const store::PullMerge& m) override { return inner_.PutPullMerge(m); }
  Result<std::vector<store::PullMerge>> ListPullMerges(std::optional<store::Time> due_by, int limit) override {
    return inner_.ListPullMerges(due_by, limit);
  }
  Result<std::optional<store::PullMerge>> PullMergeOfRelease(int64_t release_id) override {
    return inner_.PullMergeOfRelease(release_id);
  }
  Status RecordPullMergeAttempt(int64_t id, int64_t version, store::NotificationState state, std::string_view note,
                                store::Time next_attempt_at) override {
    return inner_.RecordPullMergeAttempt(id, version, state, note, next_attempt_at);
  }
  Result<int> SchemaVersion() override { return inner_.SchemaVersion(); }
  Status Verify() override { return inner_.Verify(); }

 private:
  void Remember(int64_t id, const store::Run& run) {
    std::string project = project_of_ ? project_of_(run) : "";
    MutexLock lock(mu_);
    if (projects_.size() > 10000) projects_.clear();  // bounded: a miss only costs a read
    projects_[id] = std::move(project);
  }
  std::string ProjectOf(int64_t run_id) {
    {
      MutexLock lock(mu_);
      if (auto it = projects_.find(run_id); it != projects_.end()) return it->second;
    }
    auto run = inner_.GetRun(run_id);
    if (!run.ok()) return "";
    Remember(run_id, *run);
    return project_of_ ? project_of_(*run) : "";
  }
  // Publishes the runs a recovery marked interrupted.
  Result<std::vector<store::Run>> Interrupted(Result<std::vector<store::Run>> runs) {
    if (runs.ok()) {
      for (const auto& r : *runs) {
        Remember(r.id, r);
        RunEvent(r.id, store::RunState::kInterrupted);
      }
    }
    return runs;
  }
  // Every `interval`, the newest runs: a "run" event for each whose state differs from the last
  // this process published or saw (another server sharing the store changed it). The first read
  // only learns the states.
  void Watch(std::chrono::milliseconds interval) {
    for (bool first = true;; first = false) {
      auto runs = inner_.ListRuns({.limit = 200});
      if (!runs.ok()) log::Warn("events: read the runs of other servers: {}", runs.status().message());
      for (const auto& r : runs.ok() ? *runs : std::vector<store::Run>()) {
        {
          MutexLock lock(mu_);
          auto [it, fresh] = seen_.try_emplace(r.id, r.state);
          if ((!fresh && it->second == r.state) || (fresh && first)) continue;
        }
        Remember(r.id, r);
        RunEvent(r.id, r.state, /*elsewhere=*/true);
      }
      MutexLock lock(mu_);
      if (!stop_) cv_.WaitFor(mu_, interval);
      if (stop_) return;
    }
  }
  void RunEvent(int64_t id, store::RunState state, bool elsewhere = false) {
    {
      MutexLock lock(mu_);
      if (seen_.size() > 10000) seen_.clear();  // bounded: a miss costs one repeated event
      seen_[id] = state;
    }
    Value v = Value::Map();
    v.Set("id", id);
    v.Set("state", store::Name(state));
    if (elsewhere) v.Set("elsewhere", true);
    bus_.Publish("run", v, ProjectOf(id));
  }

  store::Store& inner_;
  EventBus& bus_;
  const std::function<std::string(const store::Run&)> project_of_;
  const std::function<std::string(int64_t)> project_of_release_;
  Mutex mu_;
  std::map<int64_t, std::string> projects_ GUARDED_BY(mu_);
  std::map<int64_t, store::RunState> seen_ GUARDED_BY(mu_);  // the last state published or seen, by run
  bool stop_ GUARDED_BY(mu_) = false;
  CondVar cv_;
  std::thread watcher_;  // with a watch interval: Watch()
};

}  // namespace

std::unique_ptr<store::Store> ObservedStore(store::Store& inner, EventBus& bus,
                                            std::function<std::string(const store::Run&)> project_of_run,
                                            std::function<std::string(int64_t)> project_of_release,
                                            std::chrono::milliseconds watch) {
  return std::make_unique<Observed>(inner, bus, std::move(project_of_run), std::move(project_of_release), watch);
}

}  // namespace gantry::server
