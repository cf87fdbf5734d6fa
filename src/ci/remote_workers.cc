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

Result<uint64_t> Server::WorkerUpload(int64_t id, std::string_view worker, int attempt, uint64_t offset,
                                      std::string_view data) {
  GANTRY_RETURN_IF_ERROR(CheckHolder(id, worker, attempt));
  const fs::path path = UploadPath(options_.data_dir, id, attempt);
  std::error_code ec;
  uint64_t held = offset == 0 ? 0 : fs::file_size(path, ec);
  if (ec) held = 0;
  if (offset != held) {
    return FailedPreconditionError("run {}: this server holds {} bytes of the workspace upload of attempt {}, not {} (the "
                                   "earlier parts went to another server, or were lost): start it over at 0",
                                   id, held, attempt, offset);
  }
  if (options_.max_workspace_bytes > 0 && offset + data.size() > options_.max_workspace_bytes) {  // 0: no limit
    return ResourceExhaustedError("run {}: the workspace upload exceeds the run's workspace limit of {} bytes (--max-workspace)",
                                  id, options_.max_workspace_bytes);
  }
  fs::create_directories(path.parent_path(), ec);
  File f = Open(path, offset == 0 ? "wbe" : "abe");
  if (f == nullptr || std::fwrite(data.data(), 1, data.size(), f.get()) != data.size() || std::fflush(f.get()) != 0) {
    return UnavailableError("run {}: write the workspace upload {}: {}", id, path.string(), std::strerror(errno));
  }
  return offset + data.size();
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
  const fs::path upload = UploadPath(options_.data_dir, id, attempt);
  File f = Open(upload, "rbe");
  if (f == nullptr) {
    return FailedPreconditionError("run {}: nothing of attempt {} was uploaded to this server (PUT .../workspace first)", id,
                                   attempt);
  }
  oci::ReadFn read = [&f](char* buf, size_t n) -> Result<size_t> {
    size_t got = std::fread(buf, 1, n, f.get());
    if (got == 0 && std::ferror(f.get())) return ErrnoError(errno, "read the workspace upload");
    return got;
  };
  Sha256 sha;
  std::string buf(1 << 20, '\0');
  for (;;) {
    GANTRY_ASSIGN_OR_RETURN(size_t n, read(buf.data(), buf.size()));
    if (n == 0) break;
    sha.Update(std::string_view(buf.data(), n));
  }
  std::error_code ec;
  if (const std::string got = "sha256:" + sha.FinishHex(); got != digest) {
    fs::remove(upload, ec);
    return InvalidArgumentError("run {}: the workspace upload's digest is {}, not {:?}: it was damaged on the way; upload it again",
                                id, got, digest);
  }
  std::rewind(f.get());
  GANTRY_ASSIGN_OR_RETURN(Pipeline pipeline, PipelineAt(run));
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
