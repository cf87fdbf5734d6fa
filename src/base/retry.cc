#include "base/retry.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace gantry {

bool IsRetryable(const Status& status) {
  switch (status.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
    case Code::kResourceExhausted:
    case Code::kAborted:
      return true;
    default:
      return false;
  }
}

std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int attempt, double random01) {
  double cap = static_cast<double>(policy.max_delay.count());
  double base = static_cast<double>(policy.initial.count()) *
                std::pow(policy.multiplier, std::max(0, attempt - 1));
  double upper = std::min(cap, base);
  return std::chrono::milliseconds(static_cast<int64_t>(upper * std::clamp(random01, 0.0, 1.0)));
}

Status Retry(const BackoffPolicy& policy, const std::function<Status()>& fn, Clock& clock) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const auto start = clock.Now();
  Status last;
  for (int attempt = 1;; ++attempt) {
    last = fn();
    if (last.ok() || !IsRetryable(last)) return last;
    if (attempt >= policy.max_attempts) {
      return std::move(last).WithContext(fmt::format("gave up after {} attempts", attempt));
    }
    auto delay = BackoffDelay(policy, attempt, uniform(rng));
    if (last.retry_after()) delay = std::max(delay, *last.retry_after());
    if (clock.Now() + delay - start > policy.max_elapsed) {
      return std::move(last).WithContext(
          fmt::format("gave up after {} attempts ({} ms budget)", attempt, policy.max_elapsed.count()));
    }
    clock.SleepFor(delay);
  }
}

}  // namespace gantry
