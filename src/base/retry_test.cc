#include "base/retry.h"

#include <gtest/gtest.h>

namespace gantry {
namespace {

using std::chrono::milliseconds;

TEST(Retry, RetriesTransientFailuresThenSucceeds) {
  FakeClock clock;
  int calls = 0;
  Status s = Retry({}, [&] { return ++calls < 3 ? UnavailableError("busy") : OkStatus(); }, clock);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 3);
}

TEST(Retry, NeverRetriesAuthOrValidationErrors) {
  FakeClock clock;
  for (Status err : {UnauthenticatedError("bad token"), PermissionDeniedError("forbidden"),
                     InvalidArgumentError("invalid field")}) {
    int calls = 0;
    Status s = Retry({}, [&] { ++calls; return err; }, clock);
    EXPECT_EQ(calls, 1) << err.ToString();
    EXPECT_EQ(s, err);
  }
}

TEST(Retry, BoundedAttemptsSayHowManyWereMade) {
  FakeClock clock;
  int calls = 0;
  Status s = Retry({.max_attempts = 4}, [&] { ++calls; return UnavailableError("down"); }, clock);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("gave up after 4 attempts"), std::string::npos);
}

TEST(Retry, HonoursRetryAfter) {
  FakeClock clock;
  auto start = clock.Now();
  int calls = 0;
  Status s = Retry(
      {.initial = milliseconds(1)},
      [&] {
        if (++calls == 2) return OkStatus();
        Status busy = ResourceExhaustedError("429 Too Many Requests");
        busy.set_retry_after(milliseconds(5000));
        return busy;
      },
      clock);
  EXPECT_TRUE(s.ok());
  EXPECT_GE(clock.Now() - start, milliseconds(5000));
}

TEST(Retry, StopsAtElapsedBudget) {
  FakeClock clock;
  int calls = 0;
  Status s = Retry({.initial = milliseconds(1000), .max_delay = milliseconds(1000), .max_attempts = 100,
                    .max_elapsed = milliseconds(3000)},
                   [&] {
                     ++calls;
                     Status busy = UnavailableError("down");
                     busy.set_retry_after(milliseconds(1000));
                     return busy;
                   },
                   clock);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_LE(calls, 4);
}

TEST(BackoffDelay, GrowsExponentiallyWithinCapAndJitter) {
  BackoffPolicy p{.initial = milliseconds(100), .max_delay = milliseconds(1000), .multiplier = 2};
  EXPECT_EQ(BackoffDelay(p, 1, 0.999999).count(), 99);
  EXPECT_EQ(BackoffDelay(p, 3, 0.5).count(), 200);
  EXPECT_EQ(BackoffDelay(p, 10, 0.5).count(), 500);  // capped at 1000, halved by jitter
  EXPECT_EQ(BackoffDelay(p, 3, 0.0).count(), 0);
}

TEST(RetryResult, ReturnsTheValue) {
  FakeClock clock;
  int calls = 0;
  Result<int> r = RetryResult<int>({}, [&]() -> Result<int> {
    if (++calls < 2) return UnavailableError("x");
    return 42;
  }, clock);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
}

}  // namespace
}  // namespace gantry
