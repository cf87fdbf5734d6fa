#pragma once
// A Clock whose wall time can be stepped forwards and backwards, as NTP or an operator steps a
// machine's clock, while its steady time only moves forwards: for unit tests of what leases,
// timeouts, backoff and token expiry do under a clock step (faking the time of a real process would
// need libfaketime's LD_PRELOAD). Steady time moves as FakeClock's does (SleepFor, WaitUntil,
// Advance); WallNow() is that time plus the sum of the steps. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>

#include "base/clock.h"

namespace gantry::fakes {

class SteppedClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return steady_.Now(); }
  std::chrono::system_clock::time_point WallNow() override {
    return steady_.WallNow() +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(step_ns_.load()));
  }
  void SleepFor(std::chrono::nanoseconds d) override { steady_.SleepFor(d); }
  bool WaitUntil(CondVar& cv, Mutex& mu, std::chrono::steady_clock::time_point deadline) override REQUIRES(mu) {
    return steady_.WaitUntil(cv, mu, deadline);
  }
  // Both clocks move forward by `d`.
  void Advance(std::chrono::nanoseconds d) { steady_.Advance(d); }
  // The wall clock jumps by `d` (negative: backwards); the steady clock does not move.
  void StepWall(std::chrono::nanoseconds d) { step_ns_ += d.count(); }

 private:
  FakeClock steady_;
  std::atomic<int64_t> step_ns_{0};
};

}  // namespace gantry::fakes
