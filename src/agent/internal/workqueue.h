#pragma once
// A work queue of application keys, as client-go's: a key is queued at most once (the fetch
// requests of repeated adds are merged: the latest wins), a key being processed is never handed to
// a second worker (an add meanwhile queues it again after Done), and AddAfter delays an add.
// A fetch request is a time: the reconcile wants a Git fetch that began at or after it (the
// epoch: no fetch). Thread-safe.

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "base/mutex.h"

namespace gantry::agent::internal {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Queues `key` now; `fetch` asks the reconcile to refresh from Git (with a fetch begun from now).
  void Add(const std::string& key, bool fetch) { Add(key, fetch ? Clock::now() : Clock::time_point{}); }
  void Add(const std::string& key, Clock::time_point fetch_after) {
    MutexLock lock(mu_);
    AddLocked(key, fetch_after);
    cv_.NotifyOne();
  }

  // As Add after `delay`; a fetch asked for is one begun from then, or up to `fetch_slack` before.
  void AddAfter(const std::string& key, bool fetch, std::chrono::milliseconds delay,
                std::chrono::milliseconds fetch_slack = {}) {
    if (delay.count() <= 0) return Add(key, fetch ? Clock::now() - fetch_slack : Clock::time_point{});
    MutexLock lock(mu_);
    auto at = Clock::now() + delay;
    Clock::time_point fetch_after = fetch ? at - fetch_slack : Clock::time_point{};
    // Keep only the earliest pending delayed add of a key.
    auto it = delayed_index_.find(key);
    if (it != delayed_index_.end()) {
      if (it->second.first <= at) {
        it->second.second = std::max(it->second.second, fetch_after);
        return;
      }
      delayed_.erase({it->second.first, key});
    }
    delayed_index_[key] = {at, fetch_after};
    delayed_.insert({at, key});
    cv_.NotifyOne();
  }

  // Queues `key` behind every key added otherwise: it is handed out (with no fetch request) only
  // when no other key is ready. An Add or a due AddAfter of a deferred key queues it as usual.
  void Defer(const std::string& key) {
    MutexLock lock(mu_);
    if (processing_.count(key) || flags_.count(key)) return;
    if (deferred_set_.insert(key).second) deferred_.push_back(key);
    cv_.NotifyOne();
  }

  // Blocks until a key is ready or the queue shuts down (nullopt). Returns the key and its fetch
  // request.
  std::optional<std::pair<std::string, Clock::time_point>> Get() {
    MutexLock lock(mu_);
    while (true) {
      if (shutdown_) return std::nullopt;
      PromoteDueLocked();
      if (!queue_.empty()) {
        std::string key = queue_.front();
        queue_.pop_front();
        Clock::time_point fetch = flags_[key];
        flags_.erase(key);
        processing_.insert(key);
        return std::pair{key, fetch};
      }
      while (!deferred_.empty()) {
        std::string key = std::move(deferred_.front());
        deferred_.pop_front();
        if (deferred_set_.erase(key) == 0) continue;  // queued as usual since
        processing_.insert(key);
        return std::pair{key, Clock::time_point{}};
      }
      if (delayed_.empty()) cv_.Wait(mu_);
      else cv_.WaitUntil(mu_, delayed_.begin()->first);
    }
  }

  // Marks `key` processed; an add that came meanwhile is queued now.
  void Done(const std::string& key) {
    MutexLock lock(mu_);
    processing_.erase(key);
    if (auto it = dirty_.find(key); it != dirty_.end()) {
      Clock::time_point fetch = it->second;
      dirty_.erase(it);
      AddLocked(key, fetch);
      cv_.NotifyOne();
    }
  }

  void ShutDown() {
    MutexLock lock(mu_);
    shutdown_ = true;
    cv_.NotifyAll();
  }

  size_t Depth() {
    MutexLock lock(mu_);
    return queue_.size() + deferred_set_.size();
  }

 private:
  void AddLocked(const std::string& key, Clock::time_point fetch) REQUIRES(mu_) {
    if (processing_.count(key)) {
      auto& d = dirty_[key];
      d = std::max(d, fetch);
      return;
    }
    deferred_set_.erase(key);
    auto [it, inserted] = flags_.try_emplace(key, fetch);
    if (!inserted) {
      it->second = std::max(it->second, fetch);
      return;
    }
    queue_.push_back(key);
  }

  void PromoteDueLocked() REQUIRES(mu_) {
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      std::string key = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      Clock::time_point fetch = delayed_index_[key].second;
      delayed_index_.erase(key);
      AddLocked(key, fetch);
    }
  }

  Mutex mu_;
  CondVar cv_;
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::map<std::string, Clock::time_point> flags_ GUARDED_BY(mu_);  // queued keys and their fetch requests
  std::set<std::string> processing_ GUARDED_BY(mu_);
  std::map<std::string, Clock::time_point> dirty_ GUARDED_BY(mu_);  // added while processing
  std::deque<std::string> deferred_ GUARDED_BY(mu_);                // may hold keys no longer deferred
  std::set<std::string> deferred_set_ GUARDED_BY(mu_);
  std::set<std::pair<Clock::time_point, std::string>> delayed_ GUARDED_BY(mu_);
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> delayed_index_ GUARDED_BY(mu_);  // due, fetch
  bool shutdown_ GUARDED_BY(mu_) = false;
};

}  // namespace gantry::agent::internal
