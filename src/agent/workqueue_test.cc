#include "agent/internal/workqueue.h"

#include <thread>

#include <gtest/gtest.h>

namespace gantry::agent::internal {
namespace {

TEST(WorkQueue, DeduplicatesAndMergesFetchFlags) {
  WorkQueue q;
  q.Add("ns/a", false);
  q.Add("ns/b", false);
  q.Add("ns/a", true);
  EXPECT_EQ(q.Depth(), 2u);
  auto a = q.Get();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first, "ns/a");
  EXPECT_TRUE(a->second);
  auto b = q.Get();
  EXPECT_EQ(b->first, "ns/b");
  EXPECT_FALSE(b->second);
}

TEST(WorkQueue, AKeyBeingProcessedIsNotHandedOutTwice) {
  WorkQueue q;
  q.Add("ns/a", false);
  auto first = q.Get();
  q.Add("ns/a", true);  // arrives while a worker holds it
  EXPECT_EQ(q.Depth(), 0u);
  q.Done("ns/a");
  EXPECT_EQ(q.Depth(), 1u);
  auto again = q.Get();
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->second);
}

TEST(WorkQueue, DelayedAddsComeDueAndTheEarliestWins) {
  WorkQueue q;
  q.AddAfter("ns/a", false, std::chrono::milliseconds(5000));
  q.AddAfter("ns/a", true, std::chrono::milliseconds(20));
  auto start = std::chrono::steady_clock::now();
  auto item = q.Get();
  ASSERT_TRUE(item);
  EXPECT_EQ(item->first, "ns/a");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(WorkQueue, ShutDownWakesWaiters) {
  WorkQueue q;
  std::thread t([&] { EXPECT_FALSE(q.Get()); });
  q.ShutDown();
  t.join();
}

}  // namespace
}  // namespace gantry::agent::internal
