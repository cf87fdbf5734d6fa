// Reconcile: one Application, one pass (see agent.h for the skeleton).

#include <algorithm>
#include <cmath>

#include "agent/agent.h"
#include "base/clock.h"
#include "base/log.h"

namespace gantry::agent {
namespace {

using value::Value;

std::string StringAt(const Value* v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v ? v->Find(path) : nullptr;
  return f && f->IsString() ? std::string(f->AsString()) : "";
}

int64_t IntAt(const Value* v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v ? v->Find(path) : nullptr;
  return f && f->IsInt() ? f->AsInt() : 0;
}

std::string Now() { return Rfc3339(SystemClock().WallNow()); }

Value Map(std::initializer_list<std::pair<std::string_view, Value>> kv) {
  Value m = Value::Map();
  for (const auto& [k, v] : kv) m.Set(k, v);
  return m;
}

// Status conditions, keeping lastTransitionTime when a condition does not change.
class Conditions {
 public:
  explicit Conditions(const Value* previous) {
    if (previous && previous->IsSeq()) {
      for (const Value& c : previous->items()) {
        if (c.IsMap()) previous_.push_back(c);
      }
    }
  }
  void Set(std::string_view type, bool on, std::string_view reason, std::string_view message) {
    std::string status = on ? "True" : "False";
    std::string since = Now();
    for (const Value& p : previous_) {
      if (StringAt(&p, {"type"}) == type && StringAt(&p, {"status"}) == status) {
        since = StringAt(&p, {"lastTransitionTime"});
      }
    }
    current_.push_back(Map({{"type", Value(type)}, {"status", Value(status)}, {"reason", Value(reason)},
                            {"message", Value(message)}, {"lastTransitionTime", Value(since)}}));
  }
  Value ToValue() const {
    Value seq = Value::Seq();
    for (const Value& c : current_) seq.Append(c);
    return seq;
  }

 private:
  std::vector<Value> previous_;
  std::vector<Value> current_;
};

Value ResourceEntry(const kube::ObjectRef& ref, std::string_view sync_status, const health::Health& h) {
  auto [group, version] = kube::SplitApiVersion(ref.api_version);
  Value r = Map({{"group", Value(group)}, {"version", Value(version)}, {"kind", Value(ref.kind)}});
  if (!ref.namespace_.empty()) r.Set("namespace", ref.namespace_);
  r.Set("name", ref.name);
  r.Set("status", sync_status);
  Value hv = Map({{"status", Value(health::Name(h.status))}});
  if (!h.message.empty()) hv.Set("message", h.message);
  r.Set("health", hv);
  return r;
}

// The delay before retry number `attempt` (1-based) of a failed sync.
std::chrono::milliseconds RetryDelay(const RetryPolicy& p, int attempt) {
  double ms = static_cast<double>(p.duration.count()) * std::pow(p.factor, std::max(0, attempt - 1));
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, static_cast<double>(p.max_duration.count()))));
}

// Records a Kubernetes Event on the Application (best effort: an Event that cannot be written is
// logged, never a reason to fail the reconcile).
void Emit(kube::Client& client, const kube::ObjectRef& app, const std::string& uid, bool warning,
          std::string_view reason, std::string_view message) {
  auto now = SystemClock().WallNow();
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  Value involved = Map({{"apiVersion", Value(kApiVersion)}, {"kind", Value(kKind)}, {"name", Value(app.name)},
                        {"namespace", Value(app.namespace_)}});
  if (!uid.empty()) involved.Set("uid", uid);
  Value event = Map({{"apiVersion", Value("v1")}, {"kind", Value("Event")},
                     {"metadata", Map({{"name", Value(fmt::format("{}.{:x}", app.name, nanos))},
                                       {"namespace", Value(app.namespace_)}})},
                     {"involvedObject", involved},
                     {"type", Value(warning ? "Warning" : "Normal")},
                     {"reason", Value(reason)},
                     {"message", Value(std::string(message.substr(0, 1024)))},
                     {"source", Map({{"component", Value("gantry-agent")}})},
                     {"firstTimestamp", Value(Rfc3339(now))},
                     {"lastTimestamp", Value(Rfc3339(now))},
                     {"count", Value(static_cast<int64_t>(1))}});
  auto r = client.Create(event);
  if (!r.ok()) log::Debug("agent: event for {}: {}", app.name, r.status().message());
}

}  // namespace

Result<ReconcileResult> Reconcile(kube::Client& client, const Value& object, const RenderFn& render,
                                  std::chrono::steady_clock::time_point fetch_after, const ReconcileOptions& options,
                                  bool write_status) {
  const Value* previous = object.Get("status");
  Conditions conditions(previous ? previous->Get("conditions") : nullptr);
  ReconcileResult result;
  Value status = Value::Map();
  // Carried over until replaced: the last known sync, health, resources, operation and history.
  for (std::string_view key : {"sync", "health", "resources", "operationState", "history", "lastSyncRequest"}) {
    if (previous && previous->Get(key)) status.Set(key, *previous->Get(key));
  }
  kube::ObjectRef self = kube::RefOf(object);

  auto write = [&]() -> Status {
    status.Set("conditions", conditions.ToValue());
    // A reconcile that changed nothing writes nothing (steady state makes no API writes): the time
    // of the last reconcile is only written along with a real change.
    Value without_time = status;
    without_time.Erase("reconciledAt");
    Value previous_without_time = previous ? *previous : Value();
    if (previous_without_time.IsMap()) previous_without_time.Erase("reconciledAt");
    if (previous && without_time == previous_without_time) {
      result.status = *previous;
      return OkStatus();
    }
    status.Set("reconciledAt", Now());
    result.status = status;
    if (!write_status) return OkStatus();
    Value patch = Map({{"apiVersion", Value(kApiVersion)}, {"kind", Value(kKind)},
                       {"metadata", Map({{"name", Value(self.name)}, {"namespace", Value(self.namespace_)}})},
                       {"status", status}});
    auto written = client.ApplyStatus(patch, {.field_manager = options.field_manager + "-agent", .force = true});
    return written.status().WithContext("write status of Application " + self.name);
  };

  auto parsed = ParseApplication(object);
  if (!parsed.ok()) {
    conditions.Set("InvalidSpec", true, "InvalidSpec", parsed.status().message());
    result.failed = true;
    GANTRY_RETURN_IF_ERROR(write());
    return result;
  }
  const Application& app = *parsed;
  status.Set("observedGeneration", app.generation);

  // Guards.
  if (app.suspend) {
    conditions.Set("Suspended", true, "Suspended", "spec.suspend is true: nothing is fetched or applied");
    GANTRY_RETURN_IF_ERROR(write());
    return result;
  }
  for (const std::string& dep : app.depends_on) {
    auto other = client.Get({kApiVersion, kKind, app.namespace_, dep});
    std::string health = other.ok() ? StringAt(&other.value(), {"status", "health", "status"}) : "";
    if (health != "Healthy") {
      conditions.Set("DependencyNotReady", true, "DependencyNotReady",
                     other.ok() ? fmt::format("waiting for Application {} to be Healthy (it is {})", dep,
                                              health.empty() ? "not reconciled yet" : health)
                                : fmt::format("waiting for Application {}: {}", dep, other.status().message()));
      result.requeue_after = std::chrono::seconds(5);
      GANTRY_RETURN_IF_ERROR(write());
      return result;
    }
  }

  // Fetch and render. A manual refresh request, or a spec the last reconcile did not see, fetches.
  std::string last_refresh = StringAt(previous, {"lastRefreshRequest"});
  bool refresh = (!app.refresh_request.empty() && app.refresh_request != last_refresh) ||
                 IntAt(previous, {"observedGeneration"}) != app.generation || StringAt(previous, {"sync", "revision"}).empty();
  if (refresh) fetch_after = std::chrono::steady_clock::now();
  if (!app.refresh_request.empty()) status.Set("lastRefreshRequest", app.refresh_request);
  auto rendered = render(app, fetch_after);
  if (!rendered.ok()) {
    bool fetch_failed = rendered.status().message().starts_with("fetch");
    // One Event per distinct failure, not one per retry.
    std::string previous_message;
    if (const Value* conds = previous ? previous->Get("conditions") : nullptr; conds && conds->IsSeq()) {
      for (const Value& c : conds->items()) {
        if (StringAt(&c, {"type"}) == (fetch_failed ? "FetchFailed" : "RenderFailed")) previous_message = StringAt(&c, {"message"});
      }
    }
    if (previous_message != rendered.status().message()) {
      Emit(client, self, StringAt(&object, {"metadata", "uid"}), true, fetch_failed ? "FetchFailed" : "RenderFailed",
           rendered.status().message());
    }
    conditions.Set(fetch_failed ? "FetchFailed" : "RenderFailed", true, fetch_failed ? "FetchFailed" : "RenderFailed",
                   rendered.status().message());
    // The last good state stays applied: nothing is synced or pruned on a failed fetch or render.
    result.failed = true;
    GANTRY_RETURN_IF_ERROR(write());
    return result;
  }

  result.content_key = rendered->content_key;

  sync::Options so;
  so.app = app.name;
  so.default_namespace = app.destination_namespace;
  so.prune = app.sync_policy.prune || app.sync_policy.HasOption("Prune=true");
  so.prune_last = app.sync_policy.HasOption("PruneLast=true");
  so.allow_empty = app.sync_policy.allow_empty;
  so.create_namespace = app.sync_policy.HasOption("CreateNamespace=true");
  so.apply_out_of_sync_only = !app.sync_policy.HasOption("ApplyOutOfSyncOnly=false");
  // Git is the truth: fields another manager took over are taken back (as Argo CD's server-side
  // apply does with --force-conflicts), unless the application opts out.
  so.force = !app.sync_policy.HasOption("ForceConflicts=false");
  so.timeout = options.health_timeout;
  so.parallelism = options.parallelism;
  so.wait_for_health = false;
  so.diff.field_manager = options.field_manager;
  so.diff.ignore = app.ignore_differences;

  auto diffs = sync::Diff(client, rendered->objects, so, false);
  if (!diffs.ok()) {
    conditions.Set("ComparisonFailed", true, "ComparisonFailed", diffs.status().message());
    result.failed = true;
    GANTRY_RETURN_IF_ERROR(write());
    return result;
  }
  int out_of_sync = 0;
  for (const auto& d : *diffs) out_of_sync += d.status != diff::SyncStatus::kSynced;

  // Decide whether to sync.
  const Value* op_prev = previous ? previous->Get("operationState") : nullptr;
  std::string op_phase = StringAt(op_prev, {"phase"});
  std::string op_revision = StringAt(op_prev, {"revision"});
  int retries = static_cast<int>(IntAt(op_prev, {"retryCount"}));
  bool manual = !app.sync_request.empty() && app.sync_request != StringAt(previous, {"lastSyncRequest"});
  bool resume = op_phase == "Running";  // the agent stopped mid-sync
  bool new_revision = rendered->revision != op_revision;
  bool want = manual || resume ||
              (app.sync_policy.automated && out_of_sync > 0 && (new_revision || app.sync_policy.self_heal));
  // An automated sync that failed at this revision is retried with backoff, a bounded number of times.
  if (want && !manual && !resume && op_phase == "Failed" && !new_revision) {
    int limit = app.sync_policy.retry.limit;
    if (limit >= 0 && retries >= limit) {
      want = false;
      conditions.Set("SyncFailed", true, "RetriesExhausted",
                     fmt::format("sync failed {} times at {}; fix the source or request a sync: {}", retries + 1,
                                 op_revision.substr(0, 12), StringAt(op_prev, {"message"})));
    } else {
      auto delay = RetryDelay(app.sync_policy.retry, retries + 1);
      // finishedAt has second precision; compare against wall time.
      std::string finished = StringAt(op_prev, {"finishedAt"});
      std::tm tm{};
      bool waited = true;
      if (strptime(finished.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) {
        auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
        auto since = SystemClock().WallNow() - at;
        if (since < delay) {
          waited = false;
          result.requeue_after = std::chrono::duration_cast<std::chrono::milliseconds>(delay - since) +
                                 std::chrono::milliseconds(100);
        }
      }
      if (!waited) want = false;
      else ++retries;
    }
  } else if (want) {
    retries = 0;
  }
  if (manual) status.Set("lastSyncRequest", app.sync_request);

  health::Health overall{health::HealthStatus::kHealthy, ""};
  if (want) {
    std::string started = Now();
    Value running = Map({{"phase", Value("Running")}, {"revision", Value(rendered->revision)},
                         {"startedAt", Value(started)}, {"retryCount", Value(static_cast<int64_t>(retries))},
                         {"trigger", Value(manual ? "manual" : resume ? "resume" : new_revision ? "revision" : "self-heal")}});
    status.Set("operationState", running);
    GANTRY_RETURN_IF_ERROR(write());  // recorded before anything is applied (crash safety)

    auto op = sync::Operation::Create(client, rendered->objects, so);
    sync::State final_state;
    if (!op.ok()) {
      final_state.phase = sync::Phase::kFailed;
      final_state.message = op.status().message();
    } else {
      final_state = (*op)->Run();
    }
    result.synced = true;
    bool ok = final_state.phase == sync::Phase::kSucceeded;
    Value sync_resources = Value::Seq();
    for (const auto& r : final_state.results) {
      Value e = ResourceEntry(r.ref, sync::Name(r.action), r.health);
      if (r.failed) e.Set("failed", true);
      if (!r.message.empty()) e.Set("message", r.message);
      sync_resources.Append(e);
    }
    running.Set("phase", ok ? "Succeeded" : "Failed");
    running.Set("message", final_state.message);
    running.Set("finishedAt", Now());
    running.Set("syncResult", Map({{"resources", sync_resources}}));
    status.Set("operationState", running);
    Value history = status.Get("history") && status.Get("history")->IsSeq() ? *status.Get("history") : Value::Seq();
    Value entry = Map({{"revision", Value(rendered->revision)}, {"startedAt", Value(started)},
                       {"finishedAt", Value(Now())}, {"result", Value(ok ? "Succeeded" : "Failed")},
                       {"message", Value(final_state.message)}});
    Value trimmed = Value::Seq();
    size_t keep = static_cast<size_t>(std::max(1, options.history_limit));
    size_t n = history.size();
    for (size_t i = n + 1 > keep ? n + 1 - keep : 0; i < n; ++i) trimmed.Append(*history.At(i));
    trimmed.Append(entry);
    status.Set("history", trimmed);
    std::string uid = StringAt(&object, {"metadata", "uid"});
    Emit(client, self, uid, !ok, ok ? "Synced" : "SyncFailed",
         ok ? fmt::format("synced {} at {}", app.source.repo_url, rendered->revision.substr(0, 12))
            : final_state.message);
    if (!ok) {
      conditions.Set("SyncFailed", true, final_state.message.find("refusing to prune") != std::string::npos
                                              ? "PruneBlocked" : "SyncFailed", final_state.message);
      result.failed = true;
    }
    // Compare again: the status reports the cluster as it is now.
    auto after = sync::Diff(client, rendered->objects, so, false);
    if (after.ok()) diffs = std::move(after);
  }

  Value resources = Value::Seq();
  out_of_sync = 0;
  for (const auto& d : *diffs) {
    out_of_sync += d.status != diff::SyncStatus::kSynced;
    resources.Append(ResourceEntry(d.ref, diff::Name(d.status), d.health));
    if (d.status != diff::SyncStatus::kExtra && health::IsWorse(overall.status, d.health.status)) {
      overall = {d.health.status, fmt::format("{}: {}", d.ref.ToString(), d.health.message)};
    }
  }
  status.Set("resources", resources);
  status.Set("sync", Map({{"status", Value(out_of_sync == 0 ? "Synced" : "OutOfSync")},
                          {"revision", Value(rendered->revision)}}));
  Value hv = Map({{"status", Value(health::Name(overall.status))}});
  if (overall.status != health::HealthStatus::kHealthy) hv.Set("message", overall.message);
  status.Set("health", hv);
  if (!result.failed) {
    conditions.Set("Ready", out_of_sync == 0 && overall.status == health::HealthStatus::kHealthy,
                   out_of_sync == 0 ? "Synced" : "OutOfSync",
                   out_of_sync == 0 ? fmt::format("{} objects in sync at {}", diffs->size(), rendered->revision.substr(0, 12))
                                    : fmt::format("{} of {} objects differ from {}", out_of_sync, diffs->size(),
                                                  rendered->revision.substr(0, 12)));
  }
  if (overall.status == health::HealthStatus::kProgressing && result.requeue_after.count() == 0) {
    result.requeue_after = std::chrono::seconds(2);  // watch health settle
  }
  GANTRY_RETURN_IF_ERROR(write());
  return result;
}

}  // namespace gantry::agent
