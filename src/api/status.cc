#include "api/status.h"

namespace gantry::api {
namespace {

using value::BoolAt;
using value::IntAt;
using value::StringAt;
using value::Value;

std::optional<health::HealthStatus> ParseHealth(std::string_view name) {
  for (auto h : {health::HealthStatus::kHealthy, health::HealthStatus::kProgressing, health::HealthStatus::kDegraded,
                 health::HealthStatus::kSuspended, health::HealthStatus::kMissing, health::HealthStatus::kUnknown}) {
    if (health::Name(h) == name) return h;
  }
  return std::nullopt;
}

void SetIf(Value& m, std::string_view key, const std::string& s) {
  if (!s.empty()) m.Set(key, s);
}

std::vector<ResourceStatus> ParseResources(const Value* seq) {
  std::vector<ResourceStatus> out;
  if (seq == nullptr || !seq->IsSeq()) return out;
  for (const Value& r : seq->items()) {
    ResourceStatus e;
    e.group = StringAt(&r, {"group"});
    e.version = StringAt(&r, {"version"});
    e.kind = StringAt(&r, {"kind"});
    e.namespace_ = StringAt(&r, {"namespace"});
    e.name = StringAt(&r, {"name"});
    e.status = StringAt(&r, {"status"});
    e.health = ParseHealth(StringAt(&r, {"health", "status"})).value_or(health::HealthStatus::kUnknown);
    e.health_message = StringAt(&r, {"health", "message"});
    e.failed = BoolAt(&r, {"failed"});
    e.message = StringAt(&r, {"message"});
    out.push_back(std::move(e));
  }
  return out;
}

Value ResourcesValue(const std::vector<ResourceStatus>& resources) {
  Value seq = Value::Seq();
  for (const ResourceStatus& e : resources) {
    Value r = Value::Map();
    r.Set("group", e.group);
    r.Set("version", e.version);
    r.Set("kind", e.kind);
    SetIf(r, "namespace", e.namespace_);
    r.Set("name", e.name);
    r.Set("status", e.status);
    Value h = Value::Map();
    h.Set("status", health::Name(e.health));
    SetIf(h, "message", e.health_message);
    r.Set("health", h);
    if (e.failed) r.Set("failed", true);
    SetIf(r, "message", e.message);
    seq.Append(r);
  }
  return seq;
}

}  // namespace

const Condition* ApplicationStatus::FindCondition(std::string_view type) const {
  for (const Condition& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

ApplicationStatus ParseStatus(const Value* s) {
  ApplicationStatus out;
  if (s == nullptr || !s->IsMap()) return out;
  out.observed_generation = IntAt(s, {"observedGeneration"});
  out.sync_status = StringAt(s, {"sync", "status"});
  out.sync_revision = StringAt(s, {"sync", "revision"});
  if (s->Find({"health", "status"})) out.health = ParseHealth(StringAt(s, {"health", "status"}));
  out.health_message = StringAt(s, {"health", "message"});
  out.resources = ParseResources(s->Get("resources"));
  if (const Value* op = s->Get("operationState"); op && op->IsMap()) {
    OperationState o;
    o.phase = StringAt(op, {"phase"});
    o.revision = StringAt(op, {"revision"});
    o.started_at = StringAt(op, {"startedAt"});
    o.finished_at = StringAt(op, {"finishedAt"});
    o.retry_count = IntAt(op, {"retryCount"});
    o.trigger = StringAt(op, {"trigger"});
    o.message = StringAt(op, {"message"});
    o.sync_result = ParseResources(op->Find({"syncResult", "resources"}));
    out.operation = std::move(o);
  }
  if (const Value* h = s->Get("history"); h && h->IsSeq()) {
    for (const Value& e : h->items()) {
      out.history.push_back({StringAt(&e, {"revision"}), StringAt(&e, {"startedAt"}), StringAt(&e, {"finishedAt"}),
                             StringAt(&e, {"result"}), StringAt(&e, {"message"})});
    }
  }
  if (const Value* cs = s->Get("conditions"); cs && cs->IsSeq()) {
    for (const Value& c : cs->items()) {
      if (!c.IsMap()) continue;
      out.conditions.push_back({StringAt(&c, {"type"}), StringAt(&c, {"status"}) == "True", StringAt(&c, {"reason"}),
                                StringAt(&c, {"message"}), StringAt(&c, {"lastTransitionTime"})});
    }
  }
  out.last_sync_request = StringAt(s, {"lastSyncRequest"});
  out.last_refresh_request = StringAt(s, {"lastRefreshRequest"});
  out.last_terminate_request = StringAt(s, {"lastTerminateRequest"});
  out.reconciled_at = StringAt(s, {"reconciledAt"});
  return out;
}

Value ToValue(const ApplicationStatus& s) {
  Value v = Value::Map();
  if (s.observed_generation != 0) v.Set("observedGeneration", s.observed_generation);
  if (!s.sync_status.empty() || !s.sync_revision.empty()) {
    Value sync = Value::Map();
    sync.Set("status", s.sync_status);
    sync.Set("revision", s.sync_revision);
    v.Set("sync", sync);
  }
  if (s.health) {
    Value h = Value::Map();
    h.Set("status", health::Name(*s.health));
    SetIf(h, "message", s.health_message);
    v.Set("health", h);
  }
  if (!s.resources.empty() || s.health) v.Set("resources", ResourcesValue(s.resources));
  if (s.operation) {
    const OperationState& o = *s.operation;
    Value op = Value::Map();
    op.Set("phase", o.phase);
    op.Set("revision", o.revision);
    op.Set("startedAt", o.started_at);
    op.Set("retryCount", o.retry_count);
    op.Set("trigger", o.trigger);
    if (o.phase != kPhaseRunning) {
      op.Set("message", o.message);
      op.Set("finishedAt", o.finished_at);
      Value result = Value::Map();
      result.Set("resources", ResourcesValue(o.sync_result));
      op.Set("syncResult", result);
    }
    v.Set("operationState", op);
  }
  if (!s.history.empty()) {
    Value h = Value::Seq();
    for (const HistoryEntry& e : s.history) {
      Value m = Value::Map();
      m.Set("revision", e.revision);
      m.Set("startedAt", e.started_at);
      m.Set("finishedAt", e.finished_at);
      m.Set("result", e.result);
      m.Set("message", e.message);
      h.Append(m);
    }
    v.Set("history", h);
  }
  Value cs = Value::Seq();
  for (const Condition& c : s.conditions) {
    Value m = Value::Map();
    m.Set("type", c.type);
    m.Set("status", c.status ? "True" : "False");
    m.Set("reason", c.reason);
    m.Set("message", c.message);
    m.Set("lastTransitionTime", c.last_transition_time);
    cs.Append(m);
  }
  v.Set("conditions", cs);
  SetIf(v, "lastSyncRequest", s.last_sync_request);
  SetIf(v, "lastRefreshRequest", s.last_refresh_request);
  SetIf(v, "lastTerminateRequest", s.last_terminate_request);
  SetIf(v, "reconciledAt", s.reconciled_at);
  return v;
}

void ConditionSet::Set(std::string_view type, bool on, std::string_view reason, std::string_view message) {
  std::string since = now_;
  for (const Condition& p : previous_) {
    if (p.type == type && p.status == on && !p.last_transition_time.empty()) since = p.last_transition_time;
  }
  for (Condition& c : current_) {
    if (c.type == type) {  // one condition per type: the last Set wins
      c = {std::string(type), on, std::string(reason), std::string(message), since};
      return;
    }
  }
  current_.push_back({std::string(type), on, std::string(reason), std::string(message), since});
}

}  // namespace gantry::api
