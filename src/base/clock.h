#pragma once
// Clock: the one source of time, so that retries, timeouts and intervals can be tested without
// sleeping. Both implementations are thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/mutex.h"

namespace gantry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual std::chrono::system_clock::time_point WallNow() = 0;
  virtual void SleepFor(std::chrono::nanoseconds d) = 0;
  // Waits on `cv` (with `mu` held, as CondVar::WaitUntil) until it is notified or this clock
  // reaches `deadline`; false when the deadline passed. May return spuriously, like a CondVar.
  virtual bool WaitUntil(CondVar& cv, Mutex& mu, std::chrono::steady_clock::time_point deadline) REQUIRES(mu) = 0;
};

class RealClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point WallNow() override { return std::chrono::system_clock::now(); }
  void SleepFor(std::chrono::nanoseconds d) override;
  bool WaitUntil(CondVar& cv, Mutex& mu, std::chrono::steady_clock::time_point deadline) override REQUIRES(mu) {
    return cv.WaitUntil(mu, deadline);
  }
};

// The process-wide real clock.
Clock& SystemClock();

// "2026-11-28T23:40:00Z": RFC 3339 in UTC with second precision, as Kubernetes writes times.
std::string Rfc3339(std::chrono::system_clock::time_point t);

// Parses an RFC 3339 time ("2026-11-28T23:40:00Z", "2026-11-28T23:40:00.5+02:00"; fractions of a
// second are kept to the microsecond); nullopt when `text` is not one.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text);

// Time advances only when SleepFor(), WaitUntil() or Advance() is called, by any thread: a sleep
// returns at once, having moved the time of every user of the clock forward; so does a wait, as if
// nothing notified it before its deadline (it never blocks). Both clocks start at their
// epoch (WallNow() is 1970-01-01 until advanced).
class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override {
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(ns_.load())));
  }
  std::chrono::system_clock::time_point WallNow() override {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns_.load())));
  }
  void SleepFor(std::chrono::nanoseconds d) override { Advance(d); }
  bool WaitUntil(CondVar&, [[maybe_unused]] Mutex& mu, std::chrono::steady_clock::time_point deadline) override
      REQUIRES(mu) {
    Advance(deadline - Now());
    return false;
  }
  void Advance(std::chrono::nanoseconds d) {
    if (d.count() > 0) ns_ += d.count();
  }

 private:
  std::atomic<int64_t> ns_{0};
};

}  // namespace gantry
