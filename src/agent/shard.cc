// Membership and ownership of sharded agent replicas (see internal/shard.h).

#include "agent/internal/shard.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>

#include "base/log.h"

namespace gantry::agent::internal {
namespace {

using value::StringAt;

// FNV-1a over member '\0' key, then splitmix64's finalizer: FNV alone mixes the last bytes poorly,
// and rendezvous hashing needs every bit of the weight to depend on both.
uint64_t Weight(std::string_view member, std::string_view key) {
  uint64_t h = 1469598103934665603ULL;
  auto add = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  };
  add(member);
  h = (h ^ 0) * 1099511628211ULL;
  add(key);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace

std::string ShardOwner(std::string_view key, const std::vector<std::string>& members) {
  GANTRY_CHECK(!members.empty());
  const std::string* best = &members.front();
  uint64_t best_weight = Weight(*best, key);
  for (const std::string& m : members) {
    uint64_t w = Weight(m, key);
    if (w > best_weight || (w == best_weight && m < *best)) {
      best = &m;
      best_weight = w;
    }
  }
  return *best;
}

std::string MemberLeaseName(std::string_view group, std::string_view identity) {
  std::string name = fmt::format("{}-member-{}", group, identity);
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) c = '-';
  }
  if (name.size() > 253) name.resize(253);
  while (!name.empty() && !std::isalnum(static_cast<unsigned char>(name.back()))) name.pop_back();
  return name;
}

Membership::Membership(kube::Client& client, Options options)
    : client_(client), options_(std::move(options)), clock_(options_.clock ? *options_.clock : SystemClock()),
      self_(client, {.lease = {"coordination.k8s.io/v1", "Lease", options_.namespace_,
                               MemberLeaseName(options_.group, options_.identity)},
                     .identity = options_.identity,
                     .duration = options_.duration,
                     .clock = options_.clock,
                     .labels = {{kMemberLabel, options_.group}}}) {
  MutexLock lock(mu_);
  listed_ = clock_.Now();
}

bool Membership::Expired(const Observed& o, std::chrono::steady_clock::time_point listed) const {
  return o.released || listed > o.at + o.duration;
}

Status Membership::Tick() {
  self_.Tick();
  // A record unchanged in this list was not renewed between its first sighting and `listed`; a
  // record first seen here was written before `got`. Both err on the side of a later expiry.
  const auto listed = clock_.Now();
  auto leases = client_.List("coordination.k8s.io/v1", "Lease", options_.namespace_,
                             {.label_selector = fmt::format("{}={}", kMemberLabel, options_.group)});
  if (!leases.ok()) return leases.status().WithContext("list the agents' member Leases");
  const auto got = clock_.Now();
  MutexLock lock(mu_);
  std::map<std::string, Observed> seen;
  for (const value::Value& lease : leases->items) {
    std::string name = StringAt(&lease, {"metadata", "name"});
    std::string holder = StringAt(&lease, {"spec", "holderIdentity"});
    Observed o{.record = holder + "@" + StringAt(&lease, {"spec", "renewTime"}),
               .holder = holder,
               .at = got,
               .duration = std::chrono::seconds(std::max<int64_t>(1, value::IntAt(&lease, {"spec", "leaseDurationSeconds"}))),
               .released = holder.empty()};
    if (auto it = observed_.find(name); it != observed_.end() && it->second.record == o.record) o.at = it->second.at;
    seen[name] = std::move(o);
  }
  // Absent Leases (deleted, or not created yet) are observed too: absent for a duration is dead.
  for (auto& [name, o] : observed_) {
    if (seen.count(name)) continue;
    // (A released Lease that disappears stays released: its member had stopped.)
    seen[name] = Observed{.record = "", .holder = "", .at = o.record.empty() ? o.at : got,
                          .duration = options_.duration, .released = o.released};
  }
  // Leases of members gone for long (each Pod of a Deployment has an identity of its own) are
  // deleted, that very incarnation only; a member that comes back creates its Lease again, in a new
  // term.
  for (const value::Value& lease : leases->items) {
    std::string name = StringAt(&lease, {"metadata", "name"});
    const Observed& o = seen[name];
    if (o.holder == options_.identity || listed <= o.at + options_.duration * 20) continue;
    Status s = client_.Delete(kube::RefOf(lease), {.precondition_uid = StringAt(&lease, {"metadata", "uid"})});
    if (s.ok()) log::Info("agent {}: deleted the Lease {} of a member gone for {} s", options_.identity, name,
                          std::chrono::duration_cast<std::chrono::seconds>(listed - o.at).count());
  }
  observed_ = std::move(seen);
  listed_ = listed;
  std::vector<std::string> members;
  for (const auto& [name, o] : observed_) {
    if (o.holder.empty() || Expired(o, listed)) continue;
    if (o.holder != options_.identity) members.push_back(o.holder);
  }
  if (self_.leading()) members.push_back(options_.identity);
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  if (members != members_) {
    log::Info("agent {}: members {}", options_.identity, fmt::join(members, ", "));
    members_ = std::move(members);
  }
  return OkStatus();
}

std::vector<std::string> Membership::members() const {
  MutexLock lock(mu_);
  return members_;
}

bool Membership::Dead(const std::string& identity) {
  std::string name = MemberLeaseName(options_.group, identity);
  MutexLock lock(mu_);
  auto it = observed_.find(name);
  if (it == observed_.end()) {
    // Never seen: observed absent from now (the next list may show it).
    observed_[name] = Observed{.record = "", .holder = "", .at = clock_.Now(), .duration = options_.duration};
    return false;
  }
  // A Lease now held by another identity (a sanitized name shared by two) is not this one's.
  if (!it->second.holder.empty() && it->second.holder != identity) return false;
  return Expired(it->second, listed_);
}

}  // namespace gantry::agent::internal
