#pragma once
// Retry with exponential backoff and full jitter, bounded in attempts and total time.
//
// Only transient failures are retried: Unavailable, DeadlineExceeded, ResourceExhausted and Aborted
// (conflicts). Authentication, permission and validation errors never are. A Retry-After carried
// by the Status (set by HTTP clients on 429/503) replaces the computed delay when it is longer.

#include <chrono>
#include <cstdint>
#include <functional>

#include "base/clock.h"
#include "base/status.h"

namespace gantry {

struct BackoffPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max_delay{30'000};
  double multiplier = 2.0;
  int max_attempts = 5;                        // including the first
  std::chrono::milliseconds max_elapsed{120'000};  // no new attempt starts after this
};

// True for the codes Retry() retries.
bool IsRetryable(const Status& status);

// The delay before attempt `attempt` (1 = the first retry): uniform in [0, min(max, initial·m^(a-1))]
// ("full jitter"), drawn with `random01` in [0, 1).
std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int attempt, double random01);

// Calls `fn` until it succeeds, fails with a non-retryable status, or the policy is exhausted.
// Returns the last status; when attempts ran out, its message says how many were made.
Status Retry(const BackoffPolicy& policy, const std::function<Status()>& fn,
             Clock& clock = SystemClock());

// Result-returning variant.
template <typename T>
Result<T> RetryResult(const BackoffPolicy& policy, const std::function<Result<T>()>& fn,
                      Clock& clock = SystemClock()) {
  std::optional<T> value;
  Status s = Retry(
      policy,
      [&]() -> Status {
        Result<T> r = fn();
        if (!r.ok()) return r.status();
        value.emplace(std::move(r).value());
        return OkStatus();
      },
      clock);
  if (!s.ok()) return s;
  return std::move(*value);
}

}  // namespace gantry
