#pragma once
// LeaderElector: leader election through a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection does. Each Tick() reads the Lease and creates it, renews it (when held) or takes
// it over (when free or not renewed for a lease duration, as this elector observed on its own
// clock); the write is a compare-and-swap on resourceVersion, so two candidates cannot both win.
// Leadership lasts while renewals succeed within 2/3 of the duration plus one retry period,
// counted from when the successful renewal was *sent* (its write cannot have landed earlier), and
// is judged when asked (leading()), not only at ticks: a renewal that hangs ends it on time.
// A renewal that comes back after leadership had lapsed starts a new term (term()): whatever was
// held in the old one may have been taken meanwhile.
// Release() gives the Lease up on shutdown, as client-go's ReleaseOnCancel does, so another
// candidate takes over at its next tick instead of a lease duration later.
// Not thread-safe: one thread ticks; leading() may be read from any thread.

#include <atomic>
#include <chrono>
#include <map>
#include <string>

#include "base/clock.h"
#include "kube/kube.h"
#include "value/value.h"

namespace gantry::agent::internal {

class LeaderElector {
 public:
  struct Options {
    kube::ObjectRef lease;  // coordination.k8s.io/v1 Lease NAMESPACE/NAME
    std::string identity;
    std::chrono::seconds duration{15};
    Clock* clock = nullptr;  // nullptr: SystemClock()
    std::map<std::string, std::string> labels;  // set on the Lease when this candidate creates it
  };
  LeaderElector(kube::Client& client, Options options);

  // One round; returns whether this candidate leads now. Wait retry_period() before the next.
  bool Tick();
  // Whether this candidate leads now: its last successful renewal was sent less than 2/3 of the
  // duration plus a retry period ago. Thread-safe.
  bool leading() const;
  // Counts the terms: it grows when a renewal succeeds after leadership had lapsed (or never was).
  uint64_t term() const { return term_.load(); }
  // When this candidate holds the Lease: clears holderIdentity and sets leaseDurationSeconds to 1
  // (client-go's release), keeping leaseTransitions, and stops leading. OK when it does not hold
  // it; the error of the write otherwise (the Lease then expires as if this candidate had died).
  Status Release();
  std::chrono::milliseconds retry_period() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(options_.duration) / 5;
  }

 private:
  value::Value Spec(std::chrono::system_clock::time_point acquire, std::chrono::system_clock::time_point renew,
                    int64_t transitions) const;

  kube::Client& client_;
  Options options_;
  Clock& clock_;
  std::string observed_;  // holder + renewTime of the record last seen
  std::chrono::steady_clock::time_point observed_at_;
  // When the last successful renewal was sent (steady clock ticks); read by leading().
  std::atomic<std::chrono::steady_clock::rep> last_renew_;
  std::atomic<bool> released_{false};
  std::atomic<uint64_t> term_{0};
  bool was_leading_ = false;  // at the previous tick, for the log
};

}  // namespace gantry::agent::internal
