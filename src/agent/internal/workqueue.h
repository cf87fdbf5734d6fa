#pragma once
// A work queue of application keys, as client-go's: a key is queued at most once (the fetch
// requests of repeated adds are merged: the latest wins), a key being processed is never handed to
// a second worker (an add meanwhile queues it again after Done), and AddAfter delays an add.
// A fetch request is a time: the reconcile wants a Git fetch that began at or after it (the
// epoch: no fetch). Thread-safe.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace gantry::agent::internal {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Queues `key` now; `fetch` asks the reconcile to refresh from Git (with a fetch begun from now).
  void Add(const std::string& key, bool fetch) { Add(key, fetch ? Clock::now() : Clock::time_point{}); }
  void Add(const std::string& key, Clock::time_point fetch_after) {
    std::lock_guard<std::mutex> lock(mu_);
    AddLocked(key, fetch_after);
    cv_.notify_one();
  }

  // As Add after `delay`; a fetch asked for is one begun from then, or up to `fetch_slack` before.
  void AddAfter(const std::string& key, bool fetch, std::chrono::milliseconds delay,
                std::chrono::milliseconds fetch_slack = {}) {
    if (delay.count() <= 0) return Add(key, fetch ? Clock::now() - fetch_slack : Clock::time_point{});
    std::lock_guard<std::mutex> lock(mu_);
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
    cv_.notify_one();
  }

  // Queues `key` behind every key added otherwise: it is handed out (with no fetch request) only
  // when no other key is ready. An Add or a due AddAfter of a deferred key queues it as usual.
  void Defer(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    if (processing_.count(key) || flags_.count(key)) return;
    if (deferred_set_.insert(key).second) deferred_.push_back(key);
    cv_.notify_one();
  }

  // Blocks until a key is ready or the queue shuts down (nullopt). Returns the key and its fetch
  // request.
  std::optional<std::pair<std::string, Clock::time_point>> Get() {
    std::unique_lock<std::mutex> lock(mu_);
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
      if (delayed_.empty()) cv_.wait(lock);
      else cv_.wait_until(lock, delayed_.begin()->first);
    }
  }

  // Marks `key` processed; an add that came meanwhile is queued now.
  void Done(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    processing_.erase(key);
    if (auto it = dirty_.find(key); it != dirty_.end()) {
      Clock::time_point fetch = it->second;
      dirty_.erase(it);
      AddLocked(key, fetch);
      cv_.notify_one();
    }
  }

  void ShutDown() {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    cv_.notify_all();
  }

  size_t Depth() {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size() + deferred_set_.size();
  }

 private:
  void AddLocked(const std::string& key, Clock::time_point fetch) {
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

  void PromoteDueLocked() {
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      std::string key = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      Clock::time_point fetch = delayed_index_[key].second;
      delayed_index_.erase(key);
      AddLocked(key, fetch);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::map<std::string, Clock::time_point> flags_;  // queued keys and their fetch requests
  std::set<std::string> processing_;
  std::map<std::string, Clock::time_point> dirty_;  // added while processing
  std::deque<std::string> deferred_;                // may hold keys no longer deferred
  std::set<std::string> deferred_set_;
  std::set<std::pair<Clock::time_point, std::string>> delayed_;
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> delayed_index_;  // due, fetch
  bool shutdown_ = false;
};

}  // namespace gantry::agent::internal
