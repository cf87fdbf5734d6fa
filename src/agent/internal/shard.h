#pragma once
// Sharded agent replicas (`gantry agent --shard`): membership through Leases, and which replica
// owns which Application.
//
// Membership: each replica holds a coordination.k8s.io/v1 Lease of its own, named
// GROUP-member-IDENTITY and labelled gantry.dev/agent-member=GROUP, renewed by a LeaderElector
// (internal/leader.h: its leading() says whether this replica is a member now, judged from when its
// last renewal was sent). Every tick lists the group's Leases and, as client-go's leader election
// does, judges another member's expiry by when this replica saw its record (holder and renewTime)
// change, on its own clock, never by the renewTime written by another machine's clock. A member
// is live while its record is not older than its leaseDurationSeconds; a released Lease (no holder)
// is gone at once, and so is a member whose Lease is absent for a lease duration.
//
// Ownership: rendezvous (highest random weight) hashing of the Application's NAMESPACE/NAME over
// the live members: a member that joins takes about 1/N of the Applications, one that leaves gives
// only its own away.
//
// Exactly one replica at a time: ownership only says who should work on an Application; who may is
// the claim, the annotation gantry.dev/shard-owner: IDENTITY, written with a compare-and-swap on
// the Application's resourceVersion (Agent, agent.cc). A replica takes the claim when it is free,
// its own, or held by a member that Dead() says has stopped; it gives it back when ownership moved.
// The argument is in docs/agent.md § Sharded replicas.
//
// Thread-safe: one thread calls Tick() and Release(); the others ask.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/internal/leader.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "kube/kube.h"

namespace gantry::agent::internal {

inline constexpr char kMemberLabel[] = "gantry.dev/agent-member";
inline constexpr char kShardOwnerAnnotation[] = "gantry.dev/shard-owner";

// The member of `members` (non-empty) that owns `key`: the one with the highest hash of
// (member, key). Pure: every replica that sees the same members picks the same owner.
std::string ShardOwner(std::string_view key, const std::vector<std::string>& members);

// The Lease name of `identity` in `group`: GROUP-member-IDENTITY, lowercased, with every character
// a Lease name cannot hold replaced by '-'.
std::string MemberLeaseName(std::string_view group, std::string_view identity);

class Membership {
 public:
  struct Options {
    std::string namespace_;  // of the Leases
    std::string group;       // the agents' lease name (AgentOptions::lease_name)
    std::string identity;
    std::chrono::seconds duration{15};
    Clock* clock = nullptr;  // nullptr: SystemClock()
  };
  Membership(kube::Client& client, Options options);

  // Renews this replica's Lease, lists the group's Leases and updates the live members. Wait
  // retry_period() before the next. An error when the list fails (the members stay as they were).
  Status Tick();
  // Releases this replica's Lease (the others drop it from the members at their next tick).
  Status Release() { return self_.Release(); }

  // Whether this replica is a member now (its own Lease renewed in time).
  bool member() const { return self_.leading(); }
  // Grows each time membership starts again after it had lapsed: claims taken earlier must be
  // taken again (another replica may have taken them meanwhile).
  uint64_t term() const { return self_.term(); }
  // The live members, sorted, this replica included while member(); as of the last tick.
  std::vector<std::string> members() const;
  // Whether the member `identity` has stopped working for sure: its Lease released, or its record
  // (or its absence) unchanged for a lease duration as this replica observed it. An identity never
  // seen before is observed from now on.
  bool Dead(const std::string& identity);
  std::chrono::milliseconds retry_period() const { return self_.retry_period(); }

 private:
  struct Observed {
    std::string record;  // holder@renewTime, or "" while absent
    std::string holder;  // "" : released (or absent)
    std::chrono::steady_clock::time_point at;  // when this replica saw it change
    std::chrono::seconds duration;
    bool released = false;
  };
  bool Expired(const Observed& o, std::chrono::steady_clock::time_point listed) const;

  kube::Client& client_;
  Options options_;
  Clock& clock_;
  LeaderElector self_;
  mutable Mutex mu_;
  std::map<std::string, Observed> observed_ GUARDED_BY(mu_);  // by Lease name
  std::chrono::steady_clock::time_point listed_ GUARDED_BY(mu_);  // when the last list was sent
  std::vector<std::string> members_ GUARDED_BY(mu_);
};

}  // namespace gantry::agent::internal
