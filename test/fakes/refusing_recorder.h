#pragma once
// A ci::Recorder that keeps step states and log chunks in memory and refuses log chunks as a store
// on a full disk does ("database or disk is full"), for unit tests of what the runner does with a
// chunk it could not store. Chunks follow the store's rules: the same (step, seq) again with the
// same bytes is accepted, with other bytes AlreadyExists. Thread-safe.

#include <atomic>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "base/mutex.h"
#include "ci/runner.h"

namespace gantry::fakes {

class RefusingRecorder final : public ci::Recorder {
 public:
  Status WriteStep(const store::Step&) override { return OkStatus(); }
  Result<int64_t> AppendLog(std::string_view step, int64_t seq, std::string_view data) override {
    MutexLock lock(mu_);
    ++calls_;
    if (refusals_left_ != 0) {
      if (refusals_left_ > 0) --refusals_left_;
      return ResourceExhaustedError("database or disk is full");
    }
    auto [it, added] = chunks_.try_emplace({std::string(step), seq}, data);
    if (!added && it->second != data) return AlreadyExistsError("chunk {} of {} exists", seq, step);
    return seq;
  }
  // The next `n` chunks are refused; -1: every one from now on.
  void Refuse(int n) {
    MutexLock lock(mu_);
    refusals_left_ = n;
  }
  // The stored log of `step`: its chunks in seq order.
  std::string Log(std::string_view step) {
    MutexLock lock(mu_);
    std::string out;
    for (const auto& [key, data] : chunks_) {
      if (key.first == step) out += data;
    }
    return out;
  }
  int calls() {
    MutexLock lock(mu_);
    return calls_;
  }

 private:
  Mutex mu_;
  std::map<std::pair<std::string, int64_t>, std::string> chunks_ GUARDED_BY(mu_);
  int refusals_left_ GUARDED_BY(mu_) = 0;
  int calls_ GUARDED_BY(mu_) = 0;
};

}  // namespace gantry::fakes
