#include <gtest/gtest.h>

#include "agent/internal/leader.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/stepped_clock.h"

namespace gantry::agent::internal {
namespace {

const kube::ObjectRef kLease{"coordination.k8s.io/v1", "Lease", "gantry-system", "gantry-agent"};

// A candidate for kLease with a lease of 15 s on `clock`.
LeaderElector::Options Candidate(const std::string& identity, Clock& clock) {
  return {.lease = kLease, .identity = identity, .duration = std::chrono::seconds(15), .clock = &clock};
}

TEST(LeaderElector, OneLeadsAndTheOtherTakesOverOnlyAfterTheLeaseExpires) {
  FakeClock clock;
  clock.Advance(std::chrono::hours(1000));
  fakes::FakeKubeClient client({.clock = &clock});
  const kube::ObjectRef lease = kLease;
  LeaderElector a(client, Candidate("a", clock));
  LeaderElector b(client, Candidate("b", clock));

  EXPECT_TRUE(a.Tick());
  EXPECT_FALSE(b.Tick());
  for (int i = 0; i < 10; ++i) {  // a renews every retry period; b never gets it
    clock.Advance(a.retry_period());
    EXPECT_TRUE(a.Tick());
    EXPECT_FALSE(b.Tick());
  }
  // a stops renewing: b takes over once the lease it observed is a duration old, not before.
  clock.Advance(std::chrono::seconds(10));
  EXPECT_FALSE(b.Tick());
  clock.Advance(std::chrono::seconds(6));
  EXPECT_TRUE(b.Tick());
  auto got = client.Get(lease);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(value::StringAt(&*got, {"spec", "holderIdentity"}), "b");
  EXPECT_EQ(value::IntAt(&*got, {"spec", "leaseTransitions"}), 1);
  // a, back, sees b's fresh renewals and has lost leadership.
  EXPECT_FALSE(a.Tick());
  EXPECT_FALSE(a.leading());
}

TEST(LeaderElector, ReleasedLeaseIsTakenOverAtTheNextTickNotALeaseDurationLater) {
  FakeClock clock;
  clock.Advance(std::chrono::hours(1000));
  fakes::FakeKubeClient client({.clock = &clock});
  const kube::ObjectRef lease = kLease;
  LeaderElector a(client, Candidate("a", clock));
  LeaderElector b(client, Candidate("b", clock));
  EXPECT_TRUE(a.Tick());
  EXPECT_FALSE(b.Tick());
  ASSERT_TRUE(b.Release().ok()) << "a candidate that does not hold the Lease leaves it alone";
  auto held = client.Get(lease);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(value::StringAt(&*held, {"spec", "holderIdentity"}), "a");

  ASSERT_TRUE(a.Release().ok());  // SIGTERM
  EXPECT_FALSE(a.leading());
  auto released = client.Get(lease);
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(value::StringAt(&*released, {"spec", "holderIdentity"}), "");
  EXPECT_EQ(value::IntAt(&*released, {"spec", "leaseDurationSeconds"}), 1);
  clock.Advance(b.retry_period());
  EXPECT_TRUE(b.Tick()) << "b waited for a lease that was given up";
  auto taken = client.Get(lease);
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(value::StringAt(&*taken, {"spec", "holderIdentity"}), "b");
  EXPECT_EQ(value::IntAt(&*taken, {"spec", "leaseTransitions"}), 1);
}

// Clock steps (issue 21): the wall clock that stamps the Lease's renewTime jumps an hour back and
// two forward while `a` leads. Leadership is judged on the steady clock (when a renewal was sent,
// when a change of the record was observed), so `a` keeps leading through the steps, `b` never takes
// over while `a` renews, and once `a` stops, `b` takes over a lease duration of steady time later:
// not at once after the forward step, not an hour late after the backward one.
TEST(LeaderElector, WallClockStepsNeitherEndALeadershipNorHandItOverEarly) {
  fakes::SteppedClock clock;
  clock.Advance(std::chrono::hours(1000));
  fakes::FakeKubeClient client({.clock = &clock});
  LeaderElector a(client, Candidate("a", clock));
  LeaderElector b(client, Candidate("b", clock));
  EXPECT_TRUE(a.Tick());
  EXPECT_FALSE(b.Tick());
  for (auto step : {-std::chrono::hours(1), std::chrono::hours(2), -std::chrono::hours(1)}) {
    clock.StepWall(step);
    for (int i = 0; i < 3; ++i) {
      clock.Advance(a.retry_period());
      EXPECT_TRUE(a.Tick()) << "a lost the lease after a wall step of " << step.count() << " h";
      EXPECT_FALSE(b.Tick()) << "b took the lease after a wall step of " << step.count() << " h";
    }
  }
  clock.StepWall(-std::chrono::hours(1));  // a stops renewing, and the wall clock goes back again
  clock.Advance(std::chrono::seconds(10));
  EXPECT_FALSE(b.Tick());
  clock.Advance(std::chrono::seconds(6));
  EXPECT_TRUE(b.Tick()) << "b did not take over a lease duration after a's last renewal";
  EXPECT_FALSE(a.Tick());
}

}  // namespace
}  // namespace gantry::agent::internal
