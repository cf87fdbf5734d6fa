#include <gtest/gtest.h>

#include "agent/internal/shard.h"
#include "test/fakes/kube_client.h"

namespace gantry::agent::internal {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> Keys(int n) {
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back(fmt::format("team-{}/app-{}", i % 7, i));
  return keys;
}

TEST(ShardOwner, BalancesAndMovesOnlyWhatTheChangedMemberHad) {
  const std::vector<std::string> three = {"agent-a", "agent-b", "agent-c"};
  const std::vector<std::string> four = {"agent-a", "agent-b", "agent-c", "agent-d"};
  const std::vector<std::string> two = {"agent-a", "agent-c"};
  std::map<std::string, int> counts;
  int moved_join = 0, moved_leave = 0;
  for (const std::string& key : Keys(3000)) {
    std::string owner = ShardOwner(key, three);
    ++counts[owner];
    std::string joined = ShardOwner(key, four);
    if (joined != owner) {
      ++moved_join;
      EXPECT_EQ(joined, "agent-d") << key << ": a join moves applications only to the new member";
    }
    std::string left = ShardOwner(key, two);
    if (left != owner) {
      ++moved_leave;
      EXPECT_EQ(owner, "agent-b") << key << ": a leave moves only the leaver's applications";
    }
  }
  for (const auto& [member, n] : counts) EXPECT_NEAR(n, 1000, 100) << member;
  EXPECT_NEAR(moved_join, 750, 100);
  EXPECT_EQ(moved_leave, counts["agent-b"]);
  // The order of the members does not matter.
  EXPECT_EQ(ShardOwner("ns/x", {"agent-c", "agent-a", "agent-b"}), ShardOwner("ns/x", three));
}

TEST(MemberLeaseName, IsAValidNameForAnyIdentity) {
  EXPECT_EQ(MemberLeaseName("gantry-agent", "gantry-agent-7d9f-x2-1"), "gantry-agent-member-gantry-agent-7d9f-x2-1");
  EXPECT_EQ(MemberLeaseName("gantry-agent", "Host_A:42/"), "gantry-agent-member-host-a-42");
}

class MembershipTest : public ::testing::Test {
 protected:
  MembershipTest() { clock_.Advance(1000h); }
  Membership::Options For(const std::string& identity) {
    return {.namespace_ = "gantry-system", .group = "gantry-agent", .identity = identity, .duration = 15s,
            .clock = &clock_};
  }
  FakeClock clock_;
  fakes::FakeKubeClient client_{{.clock = &clock_}};
};

TEST_F(MembershipTest, MembersJoinAndAKilledOneIsDeadOnlyALeaseDurationAfterItsLastRenewalWasSeen) {
  Membership a(client_, For("a")), b(client_, For("b"));
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_TRUE(a.member());
  EXPECT_EQ(a.members(), std::vector<std::string>({"a"}));
  ASSERT_TRUE(b.Tick().ok());
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_EQ(a.members(), std::vector<std::string>({"a", "b"}));
  EXPECT_EQ(b.members(), std::vector<std::string>({"a", "b"}));
  EXPECT_FALSE(a.Dead("b"));
  // Leases of another group are not members.
  Membership other(client_, {.namespace_ = "gantry-system", .group = "other", .identity = "z", .duration = 15s,
                             .clock = &clock_});
  ASSERT_TRUE(other.Tick().ok());
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_EQ(a.members(), std::vector<std::string>({"a", "b"}));

  // b stops renewing (kill -9): a keeps it for a lease duration from when it saw b's last renewal.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(a.retry_period());
    ASSERT_TRUE(a.Tick().ok());
    EXPECT_FALSE(a.Dead("b"));
  }
  // b's membership lapses (2/3 of the duration plus a retry period: 13 s) before anyone may call
  // it dead (15 s).
  clock_.Advance(2s);
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_FALSE(b.member());
  EXPECT_FALSE(a.Dead("b"));
  clock_.Advance(2s);
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_TRUE(a.Dead("b"));
  EXPECT_EQ(a.members(), std::vector<std::string>({"a"}));

  // b comes back: a new term (its claims must be taken again), and a member again.
  uint64_t term = b.term();
  ASSERT_TRUE(b.Tick().ok());
  EXPECT_TRUE(b.member());
  EXPECT_GT(b.term(), term);
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_FALSE(a.Dead("b"));
  EXPECT_EQ(a.members(), std::vector<std::string>({"a", "b"}));
}

TEST_F(MembershipTest, ReleasedMemberIsDeadAtOnceAndAnUnknownOneOnlyAfterALeaseDuration) {
  Membership a(client_, For("a")), b(client_, For("b"));
  ASSERT_TRUE(a.Tick().ok());
  ASSERT_TRUE(b.Tick().ok());
  ASSERT_TRUE(a.Tick().ok());
  ASSERT_TRUE(b.Release().ok());
  EXPECT_FALSE(b.member());
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_TRUE(a.Dead("b"));
  EXPECT_EQ(a.members(), std::vector<std::string>({"a"}));
  // A claim by an identity a never saw (its Lease may be about to show up): not dead yet.
  EXPECT_FALSE(a.Dead("ghost"));
  clock_.Advance(10s);
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_FALSE(a.Dead("ghost"));
  clock_.Advance(6s);
  ASSERT_TRUE(a.Tick().ok());
  EXPECT_TRUE(a.Dead("ghost"));
  // b's Lease is deleted once b is gone for 20 lease durations; a's own stays.
  kube::ObjectRef b_lease{"coordination.k8s.io/v1", "Lease", "gantry-system", "gantry-agent-member-b"};
  EXPECT_TRUE(client_.Get(b_lease).ok());
  for (int i = 0; i < 110; ++i) {
    clock_.Advance(a.retry_period());
    ASSERT_TRUE(a.Tick().ok());
  }
  EXPECT_EQ(client_.Get(b_lease).status().code(), Code::kNotFound);
  EXPECT_TRUE(client_.Get({"coordination.k8s.io/v1", "Lease", "gantry-system", "gantry-agent-member-a"}).ok());
  EXPECT_TRUE(a.Dead("b"));
}

}  // namespace
}  // namespace gantry::agent::internal
