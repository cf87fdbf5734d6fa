// Leader election through a Lease (see internal/leader.h).

#include "agent/internal/leader.h"

#include "base/log.h"

namespace gantry::agent::internal {
namespace {

using value::StringAt;
using value::Value;

// "2026-11-28T23:40:00.123456Z": Kubernetes MicroTime.
std::string MicroTime(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1'000'000;
  std::string s = Rfc3339(t);
  s.pop_back();  // 'Z'
  return fmt::format("{}.{:06d}Z", s, us);
}

}  // namespace

LeaderElector::LeaderElector(kube::Client& client, Options options)
    : client_(client), options_(std::move(options)), clock_(options_.clock ? *options_.clock : SystemClock()),
      observed_at_(clock_.Now()), last_renew_((clock_.Now() - options_.duration).time_since_epoch().count()) {}

bool LeaderElector::leading() const {
  if (released_.load()) return false;
  std::chrono::steady_clock::time_point last{std::chrono::steady_clock::duration(last_renew_.load())};
  return clock_.Now() - last < options_.duration * 2 / 3 + retry_period();
}

Value LeaderElector::Spec(std::chrono::system_clock::time_point acquire, std::chrono::system_clock::time_point renew,
                          int64_t transitions) const {
  Value spec = Value::Map();
  spec.Set("holderIdentity", options_.identity);
  spec.Set("leaseDurationSeconds", static_cast<int64_t>(options_.duration.count()));
  if (acquire.time_since_epoch().count() != 0) spec.Set("acquireTime", MicroTime(acquire));
  spec.Set("renewTime", MicroTime(renew));
  spec.Set("leaseTransitions", transitions);
  return spec;
}

bool LeaderElector::Tick() {
  const kube::ObjectRef& ref = options_.lease;
  const auto sent = clock_.Now();  // before any request: the renewal cannot land earlier
  auto lease = client_.Get(ref);
  auto now_wall = clock_.WallNow();
  bool acquired = false;
  if (!lease.ok() && lease.status().code() == Code::kNotFound) {
    Value l = Value::Map();
    l.Set("apiVersion", ref.api_version);
    l.Set("kind", "Lease");
    Value meta = Value::Map();
    meta.Set("name", ref.name);
    meta.Set("namespace", ref.namespace_);
    if (!options_.labels.empty()) {
      Value labels = Value::Map();
      for (const auto& [k, v] : options_.labels) labels.Set(k, v);
      meta.Set("labels", labels);
    }
    l.Set("metadata", meta);
    l.Set("spec", Spec(now_wall, now_wall, 0));
    acquired = client_.Create(l).ok();
  } else if (lease.ok()) {
    std::string holder = StringAt(&lease.value(), {"spec", "holderIdentity"});
    std::string record = holder + "@" + StringAt(&lease.value(), {"spec", "renewTime"});
    if (record != observed_) {
      observed_ = record;
      observed_at_ = clock_.Now();
    }
    bool expired = clock_.Now() > observed_at_ + options_.duration;
    if (holder == options_.identity || holder.empty() || expired) {
      Value l = *lease;
      int64_t t = value::IntAt(&lease.value(), {"spec", "leaseTransitions"});
      std::string acquire = StringAt(&lease.value(), {"spec", "acquireTime"});
      bool takeover = holder != options_.identity;
      Value spec = Spec(takeover ? now_wall : std::chrono::system_clock::time_point{}, now_wall, takeover ? t + 1 : t);
      if (!takeover && !acquire.empty()) spec.Set("acquireTime", acquire);
      l.Set("spec", spec);
      // resourceVersion makes this a compare-and-swap: two candidates cannot both win.
      auto r = client_.Replace(l);
      acquired = r.ok();
      if (acquired) {
        observed_ = options_.identity + "@" + StringAt(&r.value(), {"spec", "renewTime"});
        observed_at_ = clock_.Now();
        if (takeover) log::Info("agent {}: acquired lease {}/{}", options_.identity, ref.namespace_, ref.name);
      }
    }
  }
  if (acquired) {
    if (!leading()) ++term_;  // lapsed (or never led) until this renewal came back
    last_renew_ = sent.time_since_epoch().count();
    released_ = false;
  }
  bool now = leading();
  if (was_leading_ && !now) log::Warn("agent {}: lost the lease", options_.identity);
  was_leading_ = now;
  return now;
}

Status LeaderElector::Release() {
  const kube::ObjectRef& ref = options_.lease;
  auto lease = client_.Get(ref);
  if (!lease.ok()) return lease.status().code() == Code::kNotFound ? OkStatus() : lease.status();
  if (StringAt(&lease.value(), {"spec", "holderIdentity"}) != options_.identity) return OkStatus();
  released_ = true;
  auto now = MicroTime(clock_.WallNow());
  Value spec = Value::Map();
  spec.Set("leaseDurationSeconds", int64_t{1});
  spec.Set("acquireTime", now);
  spec.Set("renewTime", now);
  spec.Set("leaseTransitions", value::IntAt(&lease.value(), {"spec", "leaseTransitions"}));
  Value l = *lease;
  l.Set("spec", spec);
  // A compare-and-swap like every write of the Lease: never clears a holder that took over since.
  auto r = client_.Replace(l);
  if (!r.ok()) return r.status();
  log::Info("agent {}: released lease {}/{}", options_.identity, ref.namespace_, ref.name);
  return OkStatus();
}

}  // namespace gantry::agent::internal
