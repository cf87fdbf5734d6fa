#include "server/pull_watch.h"

#include <deque>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "api/application.h"
#include "api/status.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/retry.h"
#include "kube/cache.h"

namespace gantry::server {
namespace {

using value::Value;

constexpr char kSyncAction[] = "apps.sync";
constexpr int kAuditPage = 500;

// The client and its cache, destroyed together (the cache reads through the client).
struct Connection {
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<kube::Cache> cache;
  ~Connection() {
    if (cache) cache->Stop();
    cache.reset();
  }
};

struct WatchedChange {
  kube::EventType type;
  Value object;
};

// What an "app" event reports; an event is published when it changes.
struct Summary {
  std::string sync, revision, health, phase;
  friend bool operator==(const Summary&, const Summary&) = default;
};

std::string ProjectOf(const Value& app) {
  std::string project = value::StringAt(&app, {"spec", "project"});
  return project.empty() ? "default" : project;
}

// The audit row's identity of one finished sync: its object and details.
std::string AuditKey(std::string_view object, std::string_view details) { return fmt::format("{} {}", object, details); }

std::string SyncDetails(std::string_view revision, std::string_view finished_at) {
  return fmt::format("revision {} finished at {}", revision, finished_at);
}

}  // namespace

struct PullWatch::Watched {
  deliver::Cluster cluster;
  std::thread thread;
  mutable Mutex mu;
  mutable CondVar cv;
  bool stop GUARDED_BY(mu) = false;
  std::shared_ptr<Connection> connection GUARDED_BY(mu);
  std::string error GUARDED_BY(mu) = "watch not started yet";
  bool handled GUARDED_BY(mu) = false;  // every Application of the first list is handled
  bool busy GUARDED_BY(mu) = false;     // a change is being handled
  std::deque<WatchedChange> changes GUARDED_BY(mu);
  // Only the cluster's thread touches these.
  std::map<std::string, Summary> summaries;  // "namespace/name" → the last published
  std::set<std::string> audited;             // AuditKey of rows in the store
  bool audit_loaded = false;
};

PullWatch::PullWatch(PullWatchOptions options) : options_(std::move(options)) {
  GANTRY_CHECK(options_.connect != nullptr);
  for (const auto& c : options_.config.clusters) {
    if (!c.pull) continue;
    auto w = std::make_unique<Watched>();
    w->cluster = c;
    watched_.push_back(std::move(w));
  }
  for (auto& w : watched_) w->thread = std::thread([this, w = w.get()] { Run(*w); });
}

PullWatch::~PullWatch() { Stop(); }

void PullWatch::Stop() {
  for (auto& w : watched_) {
    MutexLock lock(w->mu);
    w->stop = true;
    w->cv.NotifyAll();
  }
  for (auto& w : watched_) {
    if (w->thread.joinable()) w->thread.join();
    MutexLock lock(w->mu);
    w->connection.reset();
  }
}

Result<std::vector<Value>> PullWatch::Applications(const deliver::Cluster& cluster) const {
  for (const auto& w : watched_) {
    if (w->cluster.name != cluster.name) continue;
    std::shared_ptr<Connection> connection;
    {
      MutexLock lock(w->mu);
      if (!w->error.empty()) return UnavailableError("{}", w->error);
      connection = w->connection;
    }
    if (connection == nullptr) return UnavailableError("watch not started yet");
    auto items = connection->cache->ByIndex(api::kApiVersion, api::kKind, "", "");
    if (!items.ok()) return UnavailableError("watch of its Applications not synced (relisting)");
    return items;
  }
  return NotFoundError("cluster {:?} is not a watched pull cluster", cluster.name);
}

deliver::ApplicationsFn PullWatch::Source() const {
  return [this](const deliver::Cluster& c) { return Applications(c); };
}

bool PullWatch::WaitSynced(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& w : watched_) {
    MutexLock lock(w->mu);
    while (!(w->handled && !w->busy && w->error.empty() && w->changes.empty())) {
      if (!w->cv.WaitUntil(w->mu, deadline)) return false;
    }
  }
  return true;
}

void PullWatch::Run(Watched& w) {
  std::mt19937_64 random{std::random_device{}()};
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const BackoffPolicy backoff{.initial = options_.backoff_initial, .max_delay = options_.backoff_max};
  int attempt = 0;
  auto stopping = [&w] {
    MutexLock lock(w.mu);
    return w.stop;
  };
  auto fail = [&](const Status& s) {
    ++attempt;
    MutexLock lock(w.mu);
    w.error = "unreachable: " + s.message();
    w.connection.reset();
    w.cv.NotifyAll();
    // A first retry after up to `initial`, then up to twice as long each time (full jitter), but
    // never sooner than a tenth of the policy's delay, so a dead cluster is not hammered.
    auto delay = std::max(BackoffDelay(backoff, attempt, uniform(random)), options_.backoff_initial / 10);
    const auto until = std::chrono::steady_clock::now() + delay;
    while (!w.stop && w.cv.WaitUntil(w.mu, until)) {
    }
  };
  auto load_audit = [&]() -> Status {
    if (options_.store == nullptr || w.audit_loaded) return OkStatus();
    int64_t before = 0;
    while (true) {
      GANTRY_ASSIGN_OR_RETURN(auto rows, options_.store->ListAudit({.actor = "agent:" + w.cluster.name,
                                                                     .action = kSyncAction,
                                                                     .before_id = before,
                                                                     .limit = kAuditPage}));
      for (const auto& r : rows) w.audited.insert(AuditKey(r.object, r.details));
      if (rows.size() < static_cast<size_t>(kAuditPage)) break;
      before = rows.back().id;
    }
    w.audit_loaded = true;
    return OkStatus();
  };
  // One change: an "app" event when its summary changed, audit rows for finished syncs.
  auto handle = [&](const WatchedChange& change) {
    const Value& obj = change.object;
    const std::string ns = value::StringAt(&obj, {"metadata", "namespace"});
    const std::string name = value::StringAt(&obj, {"metadata", "name"});
    const std::string key = ns + "/" + name;
    const std::string project = ProjectOf(obj);
    const bool deleted = change.type == kube::EventType::kDeleted;
    const api::ApplicationStatus st = api::ParseStatus(obj.Get("status"));
    Summary now{.sync = st.sync_status,
                .revision = st.sync_revision,
                .health = st.health ? std::string(health::Name(*st.health)) : "",
                .phase = st.operation ? st.operation->phase : ""};
    auto it = w.summaries.find(key);
    const bool changed = deleted ? it != w.summaries.end() : it == w.summaries.end() || !(it->second == now);
    if (deleted) {
      if (it != w.summaries.end()) w.summaries.erase(it);
    } else {
      w.summaries[key] = now;
    }
    if (changed && options_.events != nullptr) {
      Value v = Value::Map();
      v.Set("app", name);
      v.Set("namespace", ns);
      v.Set("cluster", w.cluster.name);
      v.Set("environment", w.cluster.environment);
      v.Set("sync", now.sync);
      v.Set("health", now.health);
      v.Set("revision", now.revision);
      v.Set("phase", now.phase);
      v.Set("deleted", deleted);
      options_.events->Publish("app", v, project);
    }
    if (deleted || options_.store == nullptr) return;
    if (!options_.lease_holder.empty()) {
      // Servers sharing a store: the holder of this cluster's audit lease audits its syncs, after
      // reading what the others audited (again whenever it becomes the holder).
      auto held = options_.store->AcquireLease("pull-audit/" + w.cluster.name, options_.lease_holder, options_.lease);
      if (!held.ok() || !*held) {
        if (!held.ok()) log::Warn("audit of agent syncs in cluster {}: the lease: {}", w.cluster.name, held.status().ToString());
        w.audit_loaded = false;
        w.audited.clear();
        return;
      }
      if (Status loaded = load_audit(); !loaded.ok()) {
        log::Warn("audit of agent syncs in cluster {}: {}", w.cluster.name, loaded.ToString());
        return;
      }
    }
    std::vector<api::HistoryEntry> finished = st.history;
    if (st.operation && st.operation->phase != api::kPhaseRunning && !st.operation->finished_at.empty()) {
      finished.push_back({st.operation->revision, st.operation->started_at, st.operation->finished_at,
                          st.operation->phase, st.operation->message});
    }
    for (const auto& h : finished) {
      if (h.finished_at.empty()) continue;
      const std::string details = SyncDetails(h.revision, h.finished_at);
      if (!w.audited.insert(AuditKey(key, details)).second) continue;
      auto written = options_.store->Audit({.actor = "agent:" + w.cluster.name,
                                            .action = kSyncAction,
                                            .object = key,
                                            .details = details,
                                            .source = "agent",
                                            .result = h.message.empty() ? h.result : h.result + ": " + h.message,
                                            .project = project});
      if (!written.ok()) {
        // Not recorded: the next change of this Application tries again.
        w.audited.erase(AuditKey(key, details));
        log::Warn("audit of agent sync {} in cluster {}: {}", key, w.cluster.name, written.status().ToString());
      }
    }
  };

  while (!stopping()) {
    auto client = options_.connect(w.cluster);
    if (!client.ok()) {
      fail(client.status());
      continue;
    }
    auto connection = std::make_shared<Connection>();
    connection->client = std::move(*client);
    connection->cache = kube::NewCache(*connection->client, {.notify_first_list = true});
    connection->cache->OnChange([&w](kube::EventType type, const Value& object) {
      MutexLock lock(w.mu);
      w.changes.push_back({type, object});
      w.cv.NotifyAll();
    });
    Status watching = connection->cache->Watch(api::kApiVersion, api::kKind, options_.first_list_wait);
    if (!watching.ok()) {
      fail(watching);
      continue;
    }
    if (Status loaded = load_audit(); !loaded.ok()) {
      fail(loaded.WithContext("reading the audit log"));
      continue;
    }
    attempt = 0;
    {
      MutexLock lock(w.mu);
      w.connection = connection;
      w.error.clear();
    }
    // Handle changes until stopped; the cache resumes (and relists) its watch by itself.
    MutexLock lock(w.mu);
    while (!w.stop) {
      while (!w.changes.empty()) {
        WatchedChange change = std::move(w.changes.front());
        w.changes.pop_front();
        w.busy = true;
        lock.Unlock();
        handle(change);
        lock.Lock();
        w.busy = false;
      }
      if (!w.handled) {
        // The first list's objects reach the handler on the cache's thread, possibly after Watch()
        // returned: the first list is handled once every cached Application has been seen.
        lock.Unlock();
        auto cached = connection->cache->ByIndex(api::kApiVersion, api::kKind, "", "");
        const bool seen_all = cached.ok() && cached->size() <= w.summaries.size();
        lock.Lock();
        if (seen_all && w.changes.empty()) w.handled = true;
      }
      w.cv.NotifyAll();
      w.cv.WaitUntil(w.mu, std::chrono::steady_clock::now() + std::chrono::seconds(1));
    }
  }
}

}  // namespace gantry::server
