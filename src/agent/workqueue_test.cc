#include "agent/internal/workqueue.h"

#include <thread>
#include <vector>

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
  EXPECT_NE(a->second, WorkQueue::Clock::time_point{});
  auto b = q.Get();
  EXPECT_EQ(b->first, "ns/b");
  EXPECT_EQ(b->second, WorkQueue::Clock::time_point{});
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
  EXPECT_NE(again->second, WorkQueue::Clock::time_point{});
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

TEST(WorkQueue, TheLatestFetchRequestWins) {
  WorkQueue q;
  auto webhook = WorkQueue::Clock::now();
  q.Add("ns/a", webhook - std::chrono::seconds(5));
  q.Add("ns/a", webhook);
  q.Add("ns/a", false);
  auto a = q.Get();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->second, webhook);
}

TEST(WorkQueue, DeferredKeysWaitForTheOthers) {
  WorkQueue q;
  q.Defer("ns/a");
  q.Add("ns/b", false);
  q.Defer("ns/c");
  q.Defer("ns/d");
  q.Add("ns/d", true);  // queued as usual again
  EXPECT_EQ(q.Depth(), 4u);
  std::vector<std::string> order;
  while (q.Depth() > 0) {
    auto item = q.Get();
    ASSERT_TRUE(item);
    order.push_back(item->first);
    q.Done(item->first);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"ns/b", "ns/d", "ns/a", "ns/c"}));
}

TEST(WorkQueue, ShutDownWakesWaiters) {
  WorkQueue q;
  std::thread t([&] { EXPECT_FALSE(q.Get()); });
  q.ShutDown();
  t.join();
}

}  // namespace
}  // namespace gantry::agent::internal
