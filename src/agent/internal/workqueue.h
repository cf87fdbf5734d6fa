#pragma once
// A work queue of application keys, as client-go's: a key is queued at most once (flags of repeated
// adds are merged), a key being processed is never handed to a second worker (an add meanwhile
// queues it again after Done), and AddAfter delays an add. Thread-safe.

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

  // Queues `key` now; `fetch` asks the reconcile to refresh from Git.
  void Add(const std::string& key, bool fetch) {
    std::lock_guard<std::mutex> lock(mu_);
    AddLocked(key, fetch);
    cv_.notify_one();
  }

  void AddAfter(const std::string& key, bool fetch, std::chrono::milliseconds delay) {
    if (delay.count() <= 0) return Add(key, fetch);
    std::lock_guard<std::mutex> lock(mu_);
    auto at = Clock::now() + delay;
    // Keep only the earliest pending delayed add of a key.
    auto it = delayed_index_.find(key);
    if (it != delayed_index_.end()) {
      if (it->second.first <= at) {
        it->second.second |= fetch;
        return;
      }
      delayed_.erase({it->second.first, key});
    }
    delayed_index_[key] = {at, fetch};
    delayed_.insert({at, key});
    cv_.notify_one();
  }

  // Blocks until a key is ready or the queue shuts down (nullopt).
  std::optional<std::pair<std::string, bool>> Get() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (shutdown_) return std::nullopt;
      PromoteDueLocked();
      if (!queue_.empty()) {
        std::string key = queue_.front();
        queue_.pop_front();
        bool fetch = flags_[key];
        flags_.erase(key);
        processing_.insert(key);
        return std::pair{key, fetch};
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
      bool fetch = it->second;
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
    return queue_.size();
  }

 private:
  void AddLocked(const std::string& key, bool fetch) {
    if (processing_.count(key)) {
      dirty_[key] |= fetch;
      return;
    }
    auto [it, inserted] = flags_.try_emplace(key, fetch);
    if (!inserted) {
      it->second |= fetch;
      return;
    }
    queue_.push_back(key);
  }

  void PromoteDueLocked() {
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      std::string key = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      bool fetch = delayed_index_[key].second;
      delayed_index_.erase(key);
      AddLocked(key, fetch);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::map<std::string, bool> flags_;  // queued keys and their fetch flag
  std::set<std::string> processing_;
  std::map<std::string, bool> dirty_;  // added while processing
  std::set<std::pair<Clock::time_point, std::string>> delayed_;
  std::map<std::string, std::pair<Clock::time_point, bool>> delayed_index_;
  bool shutdown_ = false;
};

}  // namespace gantry::agent::internal
