#pragma once
// Mutex, MutexLock and CondVar: std::mutex, std::lock_guard and std::condition_variable with Clang's
// thread-safety annotations (base/thread_annotations.h), so that `-Wthread-safety` can check the
// GUARDED_BY members they protect. Use them wherever threads share state.
//
//   Mutex mu_;
//   std::deque<Job> queue_ GUARDED_BY(mu_);
//   CondVar cv_;
//
//   void Push(Job j) EXCLUDES(mu_) { MutexLock lock(mu_); queue_.push_back(std::move(j)); cv_.NotifyOne(); }
//   Job Pop() EXCLUDES(mu_) {
//     MutexLock lock(mu_);
//     cv_.Wait(mu_, [&]() REQUIRES(mu_) { return !queue_.empty(); });
//     ...
//
// A predicate reading guarded members must say REQUIRES(mu_) itself, as above: the analysis checks
// each lambda on its own and does not know that CondVar calls it with the mutex held.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "base/thread_annotations.h"

namespace gantry {

// A non-recursive mutex. Thread-safe, of course; not copyable or movable.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // True when it took the mutex; false, at once, when another thread holds it.
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds the mutex, where it cannot see that (no runtime check).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex from construction to destruction, like std::lock_guard. Unlock() and Lock() let go
// of it and take it again in between (to wait or call out without it); the destructor unlocks only
// if it is held.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() {
    mu_.Unlock();
    held_ = false;
  }
  void Lock() ACQUIRE() {
    mu_.Lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

// A condition variable waited on with a Mutex held. Every wait may also return spuriously; the
// predicate forms loop until the predicate holds (or the deadline passes). Deadlines are on the
// real steady clock: a thread blocked here cannot be woken by a FakeClock.
class CondVar {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

  // Unlocks `mu`, blocks until notified, locks `mu` again.
  void Wait(Mutex& mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // As Wait(); false when it returned because `deadline` passed.
  bool WaitUntil(Mutex& mu, TimePoint deadline) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    const bool notified = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return notified;
  }
  bool WaitFor(Mutex& mu, std::chrono::nanoseconds d) REQUIRES(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + d);
  }

  // Waits until `done()` is true; `done` is called with `mu` held.
  template <typename Pred>
  void Wait(Mutex& mu, Pred done) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
    while (!done()) Wait(mu);
  }
  // Waits until `done()` is true or `deadline` passes; returns `done()`.
  template <typename Pred>
  bool WaitUntil(Mutex& mu, TimePoint deadline, Pred done) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
    while (!done()) {
      if (!WaitUntil(mu, deadline)) return done();
    }
    return true;
  }
  template <typename Pred>
  bool WaitFor(Mutex& mu, std::chrono::nanoseconds d, Pred done) REQUIRES(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + d, std::move(done));
  }

 private:
  std::condition_variable cv_;
};

}  // namespace gantry
