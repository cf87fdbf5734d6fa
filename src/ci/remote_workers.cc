// ci::Server's side of remote workers (`gantry worker`): see "remote" in server.h.

#include <thread>

#include "base/log.h"
#include "ci/runner.h"
#include "ci/server.h"

namespace gantry::ci {
using store::RunState;

Result<std::optional<Job>> Server::WorkerClaim(std::string_view worker, const store::Labels& labels, bool untrusted,
                                               std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const std::optional<bool> trusted = untrusted ? std::nullopt : std::optional<bool>(true);
  for (;;) {
    auto claimed = store_.ClaimNextQueuedRun(worker, trusted, options_.run_lease, labels);
    if (!claimed.ok()) return UnavailableError("claim a run: {}", claimed.status().message());
    if (claimed->has_value()) {
      log::Info("ci: run {} claimed by remote worker {} (attempt {})", (*claimed)->id, worker, (*claimed)->attempt);
      return std::optional<Job>(JobOf(**claimed));
    }
    if (stop_.load() || std::chrono::steady_clock::now() >= deadline) return std::optional<Job>();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Status Server::CheckHolder(int64_t id, std::string_view worker, int attempt) {
  GANTRY_ASSIGN_OR_RETURN(store::Run run, GetRun(id));
  if (run.state == RunState::kRunning && run.worker == worker && run.attempt == attempt) return OkStatus();
  return AbortedError("run {} is no longer {}'s attempt {}: it is {} (attempt {} by {})", id, worker, attempt,
                      store::Name(run.state), run.attempt, run.worker.empty() ? "nobody" : run.worker);
}

Result<store::Renewal> Server::WorkerRenew(int64_t id, std::string_view worker, int attempt) {
  auto renewed = store_.RenewRunLease(id, worker, attempt, options_.run_lease);
  if (!renewed.ok() && renewed.status().code() == Code::kNotFound) return NotFoundError("no run {}", id);
  if (!renewed.ok()) return UnavailableError("renew the lease of run {}: {}", id, renewed.status().message());
  return renewed;
}

Status Server::WorkerStep(int64_t id, std::string_view worker, int attempt, const store::Step& step) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  Status s = store_.UpsertStep(id, step);
  if (s.code() == Code::kInvalidArgument || s.code() == Code::kFailedPrecondition) return s;
  if (!s.ok()) return UnavailableError("write step {} of run {}: {}", step.name, id, s.message());
  return OkStatus();
}

Result<int64_t> Server::WorkerLog(int64_t id, std::string_view worker, int attempt, std::string_view step, int64_t seq,
                                  std::string_view data) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  if (data.size() > store::kMaxLogChunkBytes) {
    return InvalidArgumentError("a log chunk holds at most {} bytes, not {}", store::kMaxLogChunkBytes, data.size());
  }
  auto stored = AppendStepLog(store_, id, step, seq, data);
  if (!stored.ok() && stored.status().code() != Code::kInvalidArgument) {
    return UnavailableError("write the log of step {} of run {}: {}", step, id, stored.status().message());
  }
  return stored;
}

Status Server::WorkerCommit(int64_t id, std::string_view worker, int attempt, std::string_view commit) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  Status s = store_.BindRunCommit(id, commit);
  if (s.ok() || s.code() == Code::kAlreadyExists) return s;
  return UnavailableError("{}", s.message());
}

Status Server::WorkerFinish(int64_t id, std::string_view worker, int attempt, RunState state, std::string_view message) {
  if (!store::IsFinal(state) || state == RunState::kSkipped) {
    return InvalidArgumentError("a run ends succeeded, failed or cancelled, not {}", store::Name(state));
  }
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  // Fenced by the attempt in the store too: a takeover between the check and the write refuses it.
  Status s = store_.UpdateRun(id, state, message, attempt);
  if (s.code() == Code::kAborted || s.code() == Code::kFailedPrecondition) return AbortedError("{}", s.message());
  if (!s.ok()) return UnavailableError("end run {}: {}", id, s.message());
  log::Info("ci: run {} {} on remote worker {}: {}", id, store::Name(state), worker, message);
  return OkStatus();
}

}  // namespace gantry::ci
