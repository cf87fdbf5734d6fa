// ci::Server's side of remote workers (`gantry worker`): see "remote" in server.h.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "base/hash.h"
#include "base/log.h"
#include "ci/runner.h"
#include "ci/server.h"
#include "oci/tree_tar.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using store::RunState;

namespace {

fs::path UploadPath(const fs::path& data_dir, int64_t id, int attempt) {
  return data_dir / "runs" / std::to_string(id) / fmt::format("upload-{}.tar", attempt);
}

using File = std::unique_ptr<FILE, int (*)(FILE*)>;

File Open(const fs::path& path, const char* mode) { return File(std::fopen(path.c_str(), mode), &std::fclose); }

}  // namespace

Result<std::optional<Job>> Server::WorkerClaim(std::string_view worker, const store::Labels& labels, bool untrusted,
                                               std::chrono::milliseconds wait, std::optional<std::string_view> project,
                                               const std::function<bool()>& wanted) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const std::optional<bool> trusted = untrusted ? std::nullopt : std::optional<bool>(true);
  for (;;) {
    if (wanted && !wanted()) return std::optional<Job>();
    auto claimed = store_.ClaimNextQueuedRun(worker, trusted, options_.run_lease, labels, project);
    if (!claimed.ok()) return UnavailableError("claim a run: {}", claimed.status().message());
    if (claimed->has_value()) {
      log::Info("ci: run {} claimed by remote worker {} (attempt {})", (*claimed)->id, worker, (*claimed)->attempt);
      return std::optional<Job>(JobOf(**claimed));
    }
    if (stop_.load() || std::chrono::steady_clock::now() >= deadline) return std::optional<Job>();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Status Server::WorkerUnclaim(int64_t id, std::string_view worker, int attempt) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  // Fenced by the attempt in the store: a run taken over meanwhile is left to its new holder.
  Status s = store_.UpdateRun(id, RunState::kQueued,
                              fmt::format("re-queued: the claim of attempt {} never reached {}", attempt, worker), attempt);
  if (s.code() == Code::kAborted || s.code() == Code::kFailedPrecondition) return AbortedError("{}", s.message());
  if (!s.ok()) return UnavailableError("re-queue run {}: {}", id, s.message());
  log::Info("ci: run {} re-queued: the claim of attempt {} never reached remote worker {}", id, attempt, worker);
  return OkStatus();
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

Result<uint64_t> Server::WorkerUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                      std::string_view data) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  if (options_.max_workspace_bytes > 0 && offset + data.size() > options_.max_workspace_bytes) {  // 0: no limit
    return ResourceExhaustedError("run {}: the workspace upload exceeds the run's workspace limit of {} bytes (--max-workspace)",
                                  id, options_.max_workspace_bytes);
  }
  // The store holds the parts, so that a part may reach any server sharing it, and checks the
  // claim again in the transaction that appends it.
  auto held = store_.AppendRunUpload(id, worker, attempt, offset, data);
  if (held.ok()) return held;
  if (held.status().code() == Code::kFailedPrecondition) {
    return FailedPreconditionError("run {}: {} (the earlier parts were lost): start it over at 0", id, held.status().message());
  }
  if (held.status().code() == Code::kAborted || held.status().code() == Code::kNotFound) return held.status();
  return UnavailableError("run {}: store a part of the workspace upload: {}", id, held.status().message());
}

// Copies the upload of run `id` at `attempt` from the store into `path`; returns its digest.
Result<std::string> Server::FetchUpload(int64_t id, int attempt, const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  File f = Open(path, "wbe");
  if (f == nullptr) return UnavailableError("run {}: create {}: {}", id, path.string(), std::strerror(errno));
  Sha256 sha;
  uint64_t offset = 0;
  for (;;) {
    auto part = store_.ReadRunUpload(id, attempt, offset);
    if (!part.ok()) return UnavailableError("run {}: read the workspace upload: {}", id, part.status().message());
    if (part->empty()) break;
    sha.Update(*part);
    if (std::fwrite(part->data(), 1, part->size(), f.get()) != part->size()) {
      return UnavailableError("run {}: write {}: {}", id, path.string(), std::strerror(errno));
    }
    offset += part->size();
  }
  if (offset == 0) {
    return FailedPreconditionError("run {}: nothing of attempt {} was uploaded (PUT .../workspace first)", id, attempt);
  }
  if (std::fflush(f.get()) != 0) return UnavailableError("run {}: write {}: {}", id, path.string(), std::strerror(errno));
  return "sha256:" + sha.FinishHex();
}

Result<Pipeline> Server::PipelineAt(const store::Run& run) {
  if (mirrors_ == nullptr) return UnavailableError("the CI server is not started: it has no mirrors yet");
  auto repo = mirrors_->Open(run.repo, options_.git);
  if (!repo.ok()) return UnavailableError("open {}: {}", git::ScrubUrl(run.repo), repo.status().message());
  if (!(*repo)->Resolve(run.commit).ok()) {
    if (auto f = (*repo)->Fetch(); !f.ok()) return UnavailableError("fetch {}: {}", git::ScrubUrl(run.repo), f.status().message());
  }
  auto tree = (*repo)->ReadTree(run.commit, ".gantry/pipeline.yaml");
  if (!tree.ok()) return FailedPreconditionError(".gantry/pipeline.yaml at {}: {}", run.commit, tree.status().message());
  if (tree->files.size() != 1 || tree->files[0].is_symlink()) {
    return FailedPreconditionError(".gantry/pipeline.yaml at {} is not a file", run.commit);
  }
  return ParsePipeline(tree->files[0].content);
}

Status Server::WorkerRelease(int64_t id, std::string_view worker, int attempt, std::string_view digest,
                             std::string_view message) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  GANTRY_ASSIGN_OR_RETURN(store::Run run, GetRun(id));
  if (!JobOf(run).trusted || run.event != store::RunEvent::kPush || !options_.after_success) {
    return FailedPreconditionError("run {} is not released by this server: only trusted pushes are, by a server with a "
                                   "release flow (--config-repo, registries)", id);
  }
  // From the store to this server's disk (the parts may have reached any server sharing it).
  const fs::path upload = UploadPath(options_.data_dir, id, attempt);
  std::error_code ec;
  auto fetched = FetchUpload(id, attempt, upload);
  if (!fetched.ok()) fs::remove(upload, ec);
  GANTRY_RETURN_IF_ERROR(fetched.status());
  if (*fetched != digest) {
    fs::remove(upload, ec);
    store_.DeleteRunUploads(id).IgnoreError();  // upload it again; dropped with the run's end anyway
    return InvalidArgumentError("run {}: the workspace upload's digest is {}, not {:?}: it was damaged on the way; upload it again",
                                id, *fetched, digest);
  }
  File f = Open(upload, "rbe");
  if (f == nullptr) return UnavailableError("run {}: open {}: {}", id, upload.string(), std::strerror(errno));
  oci::ReadFn read = [&f](char* buf, size_t n) -> Result<size_t> {
    size_t got = std::fread(buf, 1, n, f.get());
    if (got == 0 && std::ferror(f.get())) return ErrnoError(errno, "read the workspace upload");
    return got;
  };
  auto pipeline_at = PipelineAt(run);
  if (!pipeline_at.ok()) fs::remove(upload, ec);  // fetched again at the next request
  GANTRY_ASSIGN_OR_RETURN(Pipeline pipeline, std::move(pipeline_at));
  if (!pipeline.image) return FailedPreconditionError("run {}: its pipeline has no image: to release", id);
  const fs::path workspace = upload.parent_path() / "workspace";
  fs::remove_all(workspace, ec);
  fs::create_directories(workspace, ec);
  // With no workspace limit (--max-workspace 0), ExtractLimits' own bounds against bombs.
  oci::ExtractLimits limits;
  if (options_.max_workspace_bytes > 0) {
    limits.max_file_bytes = limits.max_total_bytes = options_.max_workspace_bytes;
  }
  auto extracted = oci::ExtractTreeTar(read, workspace, limits);
  f.reset();
  fs::remove(upload, ec);
  store_.DeleteRunUploads(id).IgnoreError();  // else dropped when the run ends
  if (!extracted.ok()) {
    fs::remove_all(workspace, ec);
    return Status(extracted.status().code() == Code::kResourceExhausted ? Code::kResourceExhausted : Code::kInvalidArgument,
                  fmt::format("run {}: the workspace upload: {}", id, extracted.status().message()));
  }
  MutexLock lock(mu_);
  if (stop_.load()) return UnavailableError("this server is stopping: the run is taken over when its lease expires");
  std::erase_if(release_threads_, [](ReleaseThread& t) {
    if (!t.done->load()) return false;
    t.thread.join();
    return true;
  });
  auto [it, fresh] = active_.try_emplace(id);
  if (!fresh) return AbortedError("run {} is being released by this server already", id);
  Active& active = it->second;
  active.attempt = attempt;
  active.holder = std::string(worker);
  active.releasing = true;
  auto done = std::make_shared<std::atomic<bool>>(false);
  release_threads_.push_back({std::thread([this, run, pipeline = std::move(pipeline), message = std::string(message), &active, done] {
                                ReleaseRemote(run, pipeline, message, active);
                                done->store(true);
                              }),
                              done});
  return OkStatus();
}

void Server::ReleaseRemote(const store::Run& run, const Pipeline& pipeline, const std::string& message, Active& active) {
  const fs::path run_dir = options_.data_dir / "runs" / std::to_string(run.id);
  log::Info("ci: run {}: releasing what remote worker {} built", run.id, active.holder);
  Status s = active.cancel.load() ? CancelledError("cancelled before the release started")
                                  : Release(run, pipeline, run_dir / "workspace", run.commit, active);
  std::error_code ec;
  fs::remove_all(run_dir, ec);
  End(run, active, s.ok() ? RunState::kSucceeded : s.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed,
      s.ok() ? message : s.message());
  MutexLock lock(mu_);
  active_.erase(run.id);
}

}  // namespace gantry::ci
