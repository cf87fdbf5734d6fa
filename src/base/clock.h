#pragma once
// Clock: the one source of time, so that retries, timeouts and intervals can be tested without
// sleeping. RealClock is thread-safe; FakeClock is for single-threaded unit tests.

#include <chrono>
#include <string>

namespace gantry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual std::chrono::system_clock::time_point WallNow() = 0;
  virtual void SleepFor(std::chrono::nanoseconds d) = 0;
};

class RealClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point WallNow() override { return std::chrono::system_clock::now(); }
  void SleepFor(std::chrono::nanoseconds d) override;
};

// The process-wide real clock.
Clock& SystemClock();

// "2026-11-28T23:40:00Z": RFC 3339 in UTC with second precision, as Kubernetes writes times.
std::string Rfc3339(std::chrono::system_clock::time_point t);

// Time advances only when SleepFor() or Advance() is called.
class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return now_; }
  std::chrono::system_clock::time_point WallNow() override {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(now_.time_since_epoch()));
  }
  void SleepFor(std::chrono::nanoseconds d) override { now_ += d; }
  void Advance(std::chrono::nanoseconds d) { now_ += d; }

 private:
  std::chrono::steady_clock::time_point now_{};
};

}  // namespace gantry
