#include "base/mutex.h"

#include <gtest/gtest.h>

#include <thread>

namespace gantry {
namespace {

using std::chrono::milliseconds;

struct Box {
  Mutex mu;
  CondVar cv;
  int value GUARDED_BY(mu) = 0;
};

TEST(CondVar, PredicateWaitReturnsOnceAnotherThreadMakesItTrue) {
  Box box;
  std::thread writer([&] {
    MutexLock lock(box.mu);
    box.value = 42;
    box.cv.NotifyAll();
  });
  {
    MutexLock lock(box.mu);
    box.cv.Wait(box.mu, [&]() REQUIRES(box.mu) { return box.value == 42; });
    EXPECT_EQ(box.value, 42);
  }
  writer.join();
}

TEST(CondVar, TimedWaitsSayWhetherTheyTimedOut) {
  Box box;
  MutexLock lock(box.mu);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(box.cv.WaitFor(box.mu, milliseconds(20), [&]() REQUIRES(box.mu) { return box.value == 1; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(20));
  box.value = 1;
  EXPECT_TRUE(box.cv.WaitFor(box.mu, milliseconds(0), [&]() REQUIRES(box.mu) { return box.value == 1; }));
}

TEST(MutexLock, UnlockLetsAnotherThreadInAndLockTakesItBack) {
  Box box;
  MutexLock lock(box.mu);
  lock.Unlock();
  std::thread other([&] {
    MutexLock l(box.mu);
    box.value = 7;
  });
  other.join();  // would deadlock if Unlock() had not released the mutex
  lock.Lock();
  EXPECT_EQ(box.value, 7);
  bool other_took_it = false;
  std::thread([&] {
    if (box.mu.TryLock()) {
      other_took_it = true;
      box.mu.Unlock();
    }
  }).join();
  EXPECT_FALSE(other_took_it);  // held again
}

}  // namespace
}  // namespace gantry
