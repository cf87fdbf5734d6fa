#include "ci/runner.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <tuple>

#include "base/hash.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/path.h"
#include "ci/mask.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using store::RunState;

std::string StepDirName(std::string_view step) {
  std::string out;
  for (char c : step) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out;
}

Result<int64_t> AppendStepLog(store::Store& store, int64_t run_id, std::string_view step, int64_t seq,
                              std::string_view data) {
  Status s = store.AppendLogChunk(run_id, step, seq, data);
  if (s.code() == Code::kAlreadyExists) {
    // An earlier attempt of the run (before a restart, or on a server whose lease expired) logged
    // this step: this attempt's log goes on after it.
    for (auto more = store.ReadLog(run_id, step, seq); more.ok() && !more->empty(); more = store.ReadLog(run_id, step, seq)) {
      seq = more->back().seq + 1;
    }
    s = store.AppendLogChunk(run_id, step, seq, data);
  }
  if (!s.ok()) return s;
  return seq;
}

namespace {

// The store as a run's Recorder.
class StoreRecorder : public Recorder {
 public:
  StoreRecorder(store::Store& store, int64_t run_id) : store_(store), run_id_(run_id) {}
  Status WriteStep(const store::Step& step) override { return store_.UpsertStep(run_id_, step); }
  Result<int64_t> AppendLog(std::string_view step, int64_t seq, std::string_view data) override {
    return AppendStepLog(store_, run_id_, step, seq, data);
  }

 private:
  store::Store& store_;
  const int64_t run_id_;
};

// The byte budget of a run's logs, shared by its steps.
struct LogBudget {
  uint64_t max = 0;  // 0 = unlimited
  std::atomic<uint64_t> used{0};
};

// Log of one step: masks, batches into chunks for the store, forwards to the progress callback.
// Output beyond the run's budget is dropped after one line saying so.
class StepLog {
 public:
  StepLog(const std::vector<std::string>& secrets, Recorder* recorder, const std::atomic<bool>* fenced, int64_t run_id,
          std::string step, std::function<void(std::string_view)> live, LogBudget& budget, int64_t first_seq)
      : masker_(secrets), recorder_(recorder), fenced_(fenced), run_id_(run_id), step_(std::move(step)),
        live_(std::move(live)), budget_(budget), seq_(first_seq) {}

  void Write(std::string_view raw) {
    MutexLock lock(mu_);
    Emit(masker_.Write(raw));
    if (buf_.size() >= kChunk) FlushLocked(false);
  }
  // Sends what is buffered to the store (periodically and at the end). A chunk the store refuses
  // (a full disk, a lost connection) stays buffered and is sent again, with the same number, at a
  // flush a second or more later, so the stored log keeps every byte in order. What still cannot
  // be stored at the step's end, or past kMaxPending bytes waiting, is dropped, and lost() says
  // why: the step then fails rather than end with a hole in its log.
  void Flush(bool final) {
    MutexLock lock(mu_);
    if (final) Emit(masker_.Flush());
    FlushLocked(final);
  }
  // Why part of the log could not be stored; "" when all of it was.
  std::string lost() const {
    MutexLock lock(mu_);
    return lost_;
  }
  std::string Mask(std::string_view s) const {
    MutexLock lock(mu_);  // a Masker is not thread-safe, even where MaskAll() is const
    return masker_.MaskAll(s);
  }

 private:
  static constexpr size_t kChunk = 16 * 1024;
  static constexpr size_t kMaxPending = 8 << 20;
  static constexpr std::chrono::seconds kRetryAfter{1};
  void Emit(const std::string& masked) REQUIRES(mu_) {
    if (masked.empty() || truncated_) return;
    std::string text = masked;
    if (budget_.max > 0) {
      uint64_t before = budget_.used.fetch_add(text.size());
      if (before + text.size() > budget_.max) {
        text.resize(before >= budget_.max ? 0 : budget_.max - before);
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += fmt::format("gantry: log truncated at {} bytes\n", budget_.max);
        truncated_ = true;
      }
    }
    if (live_) live_(text);
    buf_ += text;
  }
  void FlushLocked(bool final) REQUIRES(mu_) {
    const auto now = std::chrono::steady_clock::now();
    if (!final && now < retry_at_ && buf_.size() < kMaxPending) return;
    while (!buf_.empty()) {
      size_t n = std::min(buf_.size(), store::kMaxLogChunkBytes);
      if (recorder_ != nullptr && (fenced_ == nullptr || !fenced_->load())) {
        auto stored = recorder_->AppendLog(step_, seq_, std::string_view(buf_).substr(0, n));
        if (!stored.ok() && !final && buf_.size() < kMaxPending) {
          if (retry_at_ == std::chrono::steady_clock::time_point()) {
            log::Warn("ci: run {} step {}: store log chunk {} (kept, sent again): {}", run_id_, step_, seq_,
                      stored.status().message());
          }
          retry_at_ = now + kRetryAfter;
          return;
        }
        retry_at_ = {};
        if (stored.ok()) {
          seq_ = *stored;
        } else {
          log::Warn("ci: run {} step {}: log chunk {} lost: {}", run_id_, step_, seq_, stored.status().message());
          if (lost_.empty()) lost_ = stored.status().message();
        }
      }
      ++seq_;
      buf_.erase(0, n);
    }
  }

  mutable Mutex mu_;
  Masker masker_ GUARDED_BY(mu_);
  Recorder* recorder_;
  const std::atomic<bool>* fenced_;
  int64_t run_id_;
  std::string step_;
  const std::function<void(std::string_view)> live_;
  LogBudget& budget_;
  std::string buf_ GUARDED_BY(mu_);
  int64_t seq_ GUARDED_BY(mu_);
  bool truncated_ GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point retry_at_ GUARDED_BY(mu_);  // after a refused chunk
  std::string lost_ GUARDED_BY(mu_);
};

// A directory name for an untrusted string (a repository URL, a cache key).
std::string Key(std::string_view s) { return Sha256Hex(s).substr(0, 24); }

// <cache_root>/<repository>/trusted: what trusted runs of the repository read and write.
fs::path TrustedScope(const RunOptions& o) { return o.cache_root / Key(o.cache_repository) / "trusted"; }

// Where this run saves: the trusted scope, or for an untrusted run
// <cache_root>/<repository>/untrusted/<source>, which trusted runs never read.
fs::path OwnScope(const RunOptions& o) {
  if (o.trusted) return TrustedScope(o);
  return o.cache_root / Key(o.cache_repository) / "untrusted" / Key(o.cache_source);
}

std::string EntryName(const Pipeline& p, const CacheSpec& c) { return Key(p.name + '\0' + c.key); }

// Marks a cache entry as used now (eviction removes the least recently used first).
void Touch(const fs::path& entry) { ::utimensat(AT_FDCWD, entry.c_str(), nullptr, 0); }

// Removes cache entries until those under `root` total at most `quota` bytes: untrusted entries
// first, then trusted ones, each least recently used (directory mtime) first. Saves in progress in
// this process are left alone; those a dead process left behind count as entries. Returns how many
// entries were removed.
int EvictCaches(const fs::path& root, uint64_t quota) {
  static Mutex mu;  // one eviction at a time in this process
  MutexLock lock(mu);
  struct Entry {
    bool trusted;
    fs::file_time_type used;
    fs::path path;
    uint64_t bytes;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  const std::string ours = fmt::format(".tmp-{}-", ::getpid());
  auto add_scope = [&](const fs::path& scope, bool trusted) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(scope, ec)) {
      if (e.is_symlink(ec) || !e.is_directory(ec) || e.path().filename().string().find(ours) != std::string::npos) {
        continue;
      }
      entries.push_back({trusted, e.last_write_time(ec), e.path(), TreeBytesBeneath(e.path()).value_or(0)});
      total += entries.back().bytes;
    }
  };
  std::error_code ec;
  for (const auto& repo : fs::directory_iterator(root, ec)) {
    add_scope(repo.path() / "trusted", true);
    std::error_code ec2;
    for (const auto& source : fs::directory_iterator(repo.path() / "untrusted", ec2)) add_scope(source.path(), false);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.trusted, a.used) < std::tie(b.trusted, b.used);
  });
  static std::atomic<uint64_t> seq{0};
  int removed = 0;
  for (const Entry& e : entries) {
    if (total <= quota) break;
    // Out of sight at once (a rename), then deleted.
    fs::path gone = e.path.string() + fmt::format(".evict-{}-{}", ::getpid(), seq.fetch_add(1));
    if (::rename(e.path.c_str(), gone.c_str()) != 0) continue;
    fs::remove_all(gone, ec);
    total -= e.bytes;
    ++removed;
  }
  return removed;
}

std::string Millis(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? fmt::format("{}s", d.count() / 1000) : fmt::format("{}ms", d.count());
}


// What the steps of one run share. Read-only, but for artifact_bytes.
struct Shared {
  const Pipeline& pipeline;
  Executor& executor;
  const RunOptions& options;
  Clock& clock;
  const std::atomic<bool>& cancel;
  fs::path artifacts;                        // <run_dir>/artifacts
  std::atomic<uint64_t> artifact_bytes{0};   // kept by the run so far (steps may run in parallel)
};

// The environment every step starts from, then the pipeline's and step's env: (matrix included).
std::map<std::string, std::string> StepEnv(const Shared& run, const Step& step) {
  const RunOptions& o = run.options;
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOME", "/tmp"},
      {"LANG", "C.UTF-8"},
      {"CI", "true"},
      {"GANTRY_WORKSPACE", run.executor.WorkspacePath(o.workspace)},
      {"GANTRY_ARTIFACTS", run.executor.ArtifactsPath(run.artifacts)},
      {"GANTRY_STEP", step.name},
      {"GANTRY_PIPELINE", run.pipeline.name},
      {"GANTRY_EVENT", o.context.event},
      {"GANTRY_BRANCH", o.context.branch},
      {"GANTRY_COMMIT", o.commit},
      {"GANTRY_RUN_ID", std::to_string(o.run_id)}};
  for (const auto& [k, v] : step.env) env[k] = v;
  return env;
}

// What the executor is asked to run, with this run's bounds (network, timeout) applied; the log
// says where they changed what the step asked for. Without secrets (AddSecrets).
StepRequest BuildRequest(const Shared& run, const Step& step, StepLog& log) {
  const RunOptions& o = run.options;
  StepRequest req;
  req.run_label = o.run_id > 0 ? fmt::format("run-{}", o.run_id) : "local";
  req.step = step.name;
  req.argv = step.argv;
  req.workspace = o.workspace;
  req.artifacts = run.artifacts;
  req.network = step.network && o.allow_network;
  if (step.network && !o.allow_network) log.Write("gantry: network off for this run (untrusted)\n");
  req.limits = step.limits;
  req.timeout = step.timeout;
  if (o.max_step_timeout.count() > 0 && req.timeout > o.max_step_timeout) {
    req.timeout = o.max_step_timeout;
    log.Write(fmt::format("gantry: timeout {} capped at {} for this run\n", Millis(step.timeout), Millis(req.timeout)));
  }
  req.image = step.image;
  req.trusted = o.trusted;
  req.env = StepEnv(run, step);
  return req;
}

// Adds the secrets the step names to `req` (unless withheld, which the log says). Returns why the
// step fails when one is not configured, "" otherwise.
std::string AddSecrets(const RunOptions& o, const Step& step, StepRequest& req, StepLog& log) {
  for (const auto& name : step.secrets) {
    if (o.withhold_secrets) {
      log.Write(fmt::format("gantry: secret {} withheld: this run is for a pull request from a fork\n", name));
      continue;
    }
    auto it = o.secrets.find(name);
    if (it == o.secrets.end()) {
      return fmt::format("secret {} is not configured (runner environment or --secrets-file)", name);
    }
    req.env[name] = it->second;
    req.secret_names.insert(name);
  }
  return "";
}

// Caches in: the run's own scope, else (untrusted runs) the trusted scope, read only.
void RestoreCaches(const Shared& run, const Step& step, StepLog& log) {
  const RunOptions& o = run.options;
  for (const auto& c : step.caches) {
    fs::path dir = OwnScope(o) / EntryName(run.pipeline, c);
    std::error_code e;
    if (!o.trusted && !fs::is_directory(dir, e)) dir = TrustedScope(o) / EntryName(run.pipeline, c);
    if (!fs::is_directory(dir, e)) continue;
    if (dir.parent_path() == OwnScope(o)) Touch(dir);
    for (const auto& p : c.paths) {
      auto copied = CopyTreeBeneath(dir, p, o.workspace, p);
      if (copied.status().code() == Code::kNotFound) continue;  // not in this cache
      log.Write(copied.ok() ? fmt::format("gantry: cache {} restored {}\n", c.key, p)
                            : fmt::format("gantry: cache {} not restored: {}\n", c.key, copied.status().message()));
    }
  }
}

// The attempts of a step: its outcome, or why it could not be started.
struct Attempts {
  StepOutcome outcome;
  int count = 0;
  std::string failure;  // masked; "" when the executor ran the step
};

// Runs the step, again after a failed attempt `retry:` times (not after a timeout or a
// cancellation, and not once the run is cancelled).
Attempts RunAttempts(const Shared& run, const Step& step, const StepRequest& req, StepLog& log) {
  Attempts a;
  for (int attempt = 0; attempt <= step.retry; ++attempt) {
    if (attempt > 0) {
      if (run.cancel.load()) break;
      log.Write(fmt::format("gantry: retry {}/{} after {}\n", attempt, step.retry, a.outcome.Describe()));
    }
    a.count = attempt + 1;
    auto r = run.executor.Run(req, [&](std::string_view d) { log.Write(d); }, run.cancel);
    if (!r.ok()) {
      a.failure = log.Mask(r.status().message());
      break;
    }
    a.outcome = *r;
    if (a.outcome.success() || a.outcome.timed_out || a.outcome.cancelled) break;
  }
  return a;
}

// Why the step fails for what it left in the workspace (more than max_workspace_bytes), "" if
// nothing. Measured by descriptor: a step still running in parallel may swap a directory for a
// link to "/".
std::string CheckWorkspace(const RunOptions& o, StepLog& log) {
  if (o.max_workspace_bytes == 0) return "";
  auto used = TreeBytesBeneath(o.workspace);
  std::string failure;
  if (!used.ok()) {
    failure = "measure the workspace: " + used.status().message();
  } else if (*used > o.max_workspace_bytes) {
    failure = fmt::format("the workspace holds {} bytes after this step, above the limit of {} bytes", *used,
                          o.max_workspace_bytes);
  }
  if (!failure.empty()) log.Write("gantry: " + failure + "\n");
  return failure;
}

// Copies the paths of cache `c` that exist in the workspace to `tmp`. NotFound when none does;
// ResourceExhausted above the cache quota.
Result<CopyStats> CopyCache(const RunOptions& o, const CacheSpec& c, const fs::path& tmp) {
  CopyStats total;
  size_t found = 0;
  for (const auto& p : c.paths) {
    // A cache larger than the whole quota would only be evicted: refuse it while copying.
    auto copied = CopyTreeBeneath(o.workspace, p, tmp, p, {.max_bytes = o.cache_quota_bytes});
    if (copied.status().code() == Code::kNotFound) continue;  // the step did not make it
    if (!copied.ok()) return copied.status();
    ++found;
    total.files += copied->files;
    total.bytes += copied->bytes;
    if (o.cache_quota_bytes > 0 && total.bytes > o.cache_quota_bytes) {
      return ResourceExhaustedError("more than the cache quota of {} bytes", o.cache_quota_bytes);
    }
  }
  if (found == 0) return NotFoundError("none of its paths exist");
  return total;
}

// Saves cache `c` into this run's own scope only: written beside the old entry, then renamed over it.
Result<CopyStats> SaveCache(const Shared& run, const CacheSpec& c) {
  static std::atomic<uint64_t> seq{0};
  const fs::path dir = OwnScope(run.options) / EntryName(run.pipeline, c);
  const fs::path tmp = dir.string() + fmt::format(".tmp-{}-{}", ::getpid(), seq.fetch_add(1));
  std::error_code e;
  fs::create_directories(tmp, e);
  Result<CopyStats> saved = e ? Result<CopyStats>(ErrnoError(e.value(), "create " + tmp.string()))
                              : CopyCache(run.options, c, tmp);
  if (saved.ok()) {
    fs::remove_all(dir, e);
    if (::rename(tmp.c_str(), dir.c_str()) != 0) saved = ErrnoError(errno, "rename to " + dir.string());
    Touch(dir);
  }
  fs::remove_all(tmp, e);
  return saved;
}

// Caches out, after the step succeeded; then the cache quota is enforced.
void SaveCaches(const Shared& run, const Step& step, StepLog& log) {
  const uint64_t quota = run.options.cache_quota_bytes;
  for (const auto& c : step.caches) {
    auto saved = SaveCache(run, c);
    log.Write(saved.ok() ? fmt::format("gantry: cache {} saved ({} files, {} bytes)\n", c.key, saved->files, saved->bytes)
                         : fmt::format("gantry: cache {} not saved: {}\n", c.key, saved.status().message()));
    if (!saved.ok() || quota == 0) continue;
    if (int removed = EvictCaches(run.options.cache_root, quota); removed > 0) {
      log.Write(fmt::format("gantry: cache quota of {} bytes: removed {} least recently used cache(s)\n", quota, removed));
    }
  }
}

// Copies one regular file of the workspace (`rel`) to `dest_root`, within the run's artifact budget.
Result<CopyStats> KeepArtifact(Shared& run, const fs::directory_entry& file, const std::string& rel,
                               const fs::path& dest_root) {
  const RunOptions& o = run.options;
  std::error_code e;
  fs::create_directories(dest_root, e);
  CopyLimits limits;
  if (o.max_artifact_bytes > 0) {
    uint64_t kept = run.artifact_bytes.load();
    limits.max_bytes = kept < o.max_artifact_bytes ? o.max_artifact_bytes - kept : 0;
    // Checked before copying, so that a file over the budget leaves nothing behind (the copy's own
    // limit still bounds a file that grows meanwhile).
    uint64_t size = file.file_size(e);
    if (e || size > limits.max_bytes) {
      return ResourceExhaustedError("the run's artifacts would pass their limit of {} bytes", o.max_artifact_bytes);
    }
  }
  // The listing may be stale by now: the copy itself refuses any link on the way.
  auto copied = CopyTreeBeneath(o.workspace, rel, dest_root, rel, limits);
  if (copied.ok()) run.artifact_bytes += copied->bytes;
  return copied;
}

// Copies the regular files matching the step's `artifacts:` to <run_dir>/artifacts/<step>/; the
// log says how many were kept and why (the first five) others were not.
void KeepArtifacts(Shared& run, const Step& step, StepLog& log) {
  const fs::path& workspace = run.options.workspace;
  const fs::path dest_root = run.artifacts / StepDirName(step.name);
  size_t n = 0, refused = 0;
  std::error_code e;
  for (auto it = fs::recursive_directory_iterator(workspace, e); !e && it != fs::recursive_directory_iterator();
       it.increment(e)) {
    std::error_code entry_error;
    if (!fs::is_regular_file(it->symlink_status(entry_error))) continue;  // links are never kept
    std::string rel = it->path().lexically_relative(workspace).generic_string();
    if (std::none_of(step.artifacts.begin(), step.artifacts.end(), [&](const auto& g) { return GlobMatch(g, rel); })) {
      continue;
    }
    auto copied = KeepArtifact(run, *it, rel, dest_root);
    if (copied.ok()) {
      ++n;
    } else if (++refused <= 5) {
      log.Write(fmt::format("gantry: artifact {} not kept: {}\n", rel, copied.status().message()));
    }
  }
  log.Write(fmt::format("gantry: {} artifact file(s) kept{}\n", n, refused > 0 ? fmt::format(", {} not kept", refused) : ""));
}

// What a step's thread reports when the step has ended.
struct Ended {
  size_t index = 0;
  RunState state = RunState::kFailed;
  std::optional<int> exit_code;
  int attempts = 0;
  std::chrono::milliseconds duration{0};
  std::string message;
};

Ended Conclude(size_t index, const Attempts& a, const std::string& failure, std::chrono::milliseconds duration) {
  Ended e{.index = index, .attempts = a.count, .duration = duration};
  const StepOutcome& o = a.outcome;
  if (!failure.empty()) {
    e.message = failure;
    return e;
  }
  e.state = o.success() ? RunState::kSucceeded : o.cancelled ? RunState::kCancelled : RunState::kFailed;
  if (o.term_signal == 0 && !o.timed_out && !o.cancelled) e.exit_code = o.exit_code;
  e.message = o.Describe();
  return e;
}

// Everything one step does, on its own thread: the request, caches in, the attempts, the workspace
// check, caches out, artifacts, the log's last flush.
Ended RunStep(Shared& run, size_t index, const Step& step, StepLog& log) {
  const auto start = run.clock.Now();
  StepRequest req = BuildRequest(run, step, log);
  std::string failure = AddSecrets(run.options, step, req, log);
  Attempts a;
  if (failure.empty()) {
    if (!run.options.cache_root.empty()) RestoreCaches(run, step, log);
    a = RunAttempts(run, step, req, log);
    failure = a.failure;
  }
  if (failure.empty() && a.outcome.success()) {
    failure = CheckWorkspace(run.options, log);
    if (failure.empty() && !run.options.cache_root.empty()) SaveCaches(run, step, log);
  }
  if (!step.artifacts.empty() && !a.outcome.cancelled) KeepArtifacts(run, step, log);
  log.Flush(true);
  if (std::string lost = log.lost(); !lost.empty() && failure.empty() && a.outcome.success()) {
    failure = "its log could not be stored: " + lost;
  }
  return Conclude(index, a, failure, std::chrono::duration_cast<std::chrono::milliseconds>(run.clock.Now() - start));
}

// Whether a queued step can start now.
enum class Readiness { kWaiting, kReady, kBlocked };

}  // namespace

// The run's machinery. Everything but `ended` belongs to the thread driving the runner; a step's
// thread touches only its StepLog, `shared` and, at its end, `ended`.
struct Runner::Impl {
  Impl(const Pipeline& pipeline, Executor& executor, RunOptions opts, const std::atomic<bool>& cancel)
      : options(std::move(opts)),
        clock(options.clock ? *options.clock : SystemClock()),
        shared{pipeline, executor, options, clock, cancel, options.run_dir / "artifacts"},
        budget{.max = options.max_log_bytes} {
    if (options.recorder != nullptr) {
      recorder = options.recorder;
    } else if (options.store != nullptr) {
      own_recorder = std::make_unique<StoreRecorder>(*options.store, options.run_id);
      recorder = own_recorder.get();
    }
  }

  Status Prepare();
  std::pair<Readiness, std::string> Check(size_t i) const;  // the string: why it is blocked
  bool SkipOrStart();
  void Skip(size_t i, std::string why);
  void Start(size_t i);
  void AwaitEnded();
  void Record(const Ended& e);
  void Finish();
  void WriteStep(const StepResult& sr);
  void Report(Progress::Kind kind, const StepResult* sr, std::string_view data) EXCLUDES(progress_mu);

  RunOptions options;
  Clock& clock;
  Shared shared;
  std::unique_ptr<Recorder> own_recorder;
  Recorder* recorder = nullptr;  // options.recorder, own_recorder or none
  LogBudget budget;
  std::chrono::steady_clock::time_point started;
  bool prepared = false, over = false;
  RunResult result;
  Status error;
  std::vector<const ci::Step*> steps;  // selected, pipeline order; result.steps[i] is steps[i]
  std::map<std::string, size_t> index;
  std::vector<std::string> secret_values;
  std::vector<StepResult> output_names;  // the name only, for kOutput (read by the steps' threads)
  std::vector<std::unique_ptr<StepLog>> logs;
  std::vector<std::thread> threads;
  int running = 0;
  Mutex progress_mu;  // one progress call at a time
  Mutex mu;
  CondVar cv;
  std::deque<Ended> ended GUARDED_BY(mu);
};

Status Runner::Impl::Prepare() {
  std::error_code ec;
  if (!fs::is_directory(options.workspace, ec)) {
    return FailedPreconditionError("workspace {} is not a directory", options.workspace.string());
  }
  fs::create_directories(shared.artifacts, ec);
  if (ec) return InternalError("create {}: {}", shared.artifacts.string(), ec.message());
  std::vector<std::string> selected;
  if (options.only_steps.empty()) {
    for (const auto& s : shared.pipeline.steps) selected.push_back(s.name);
  } else {
    GANTRY_ASSIGN_OR_RETURN(selected, SelectSteps(shared.pipeline, options.only_steps));
  }
  for (const auto& s : shared.pipeline.steps) {
    if (std::find(selected.begin(), selected.end(), s.name) == selected.end()) continue;
    index[s.name] = steps.size();
    steps.push_back(&s);
    result.steps.push_back(StepResult{.name = s.name});
    output_names.push_back(StepResult{.name = s.name});
  }
  for (const auto& [_, v] : options.secrets) secret_values.push_back(v);
  logs.resize(steps.size());
  threads.resize(steps.size());
  for (const auto& sr : result.steps) WriteStep(sr);
  return OkStatus();
}

std::pair<Readiness, std::string> Runner::Impl::Check(size_t i) const {
  if (shared.cancel.load()) return {Readiness::kBlocked, "run cancelled"};
  bool waiting = false;
  for (const auto& n : steps[i]->needs) {
    auto it = index.find(n);
    if (it == index.end()) continue;
    RunState ns = result.steps[it->second].state;
    if (ns == RunState::kQueued || ns == RunState::kRunning) {
      waiting = true;
    } else if (ns != RunState::kSucceeded) {
      return {Readiness::kBlocked, fmt::format("needs {} ({})", n, store::Name(ns))};
    }
  }
  if (waiting) return {Readiness::kWaiting, ""};
  if (!WhenMatches(steps[i]->when, options.context)) return {Readiness::kBlocked, "when: does not match"};
  return {Readiness::kReady, ""};
}

// Passes over the queued steps until nothing changes (a skip may block a later step): skips the
// blocked ones, starts the ready ones while there is room. True when anything changed.
bool Runner::Impl::SkipOrStart() {
  bool changed = false;
  for (bool pass = true; pass;) {
    pass = false;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (result.steps[i].state != RunState::kQueued) continue;
      auto [readiness, why] = Check(i);
      if (readiness == Readiness::kBlocked) {
        Skip(i, std::move(why));
      } else if (readiness == Readiness::kReady && running < std::max(1, options.parallelism)) {
        Start(i);
      } else {
        continue;
      }
      pass = changed = true;
    }
  }
  return changed;
}

void Runner::Impl::Skip(size_t i, std::string why) {
  StepResult& sr = result.steps[i];
  sr.state = RunState::kSkipped;
  sr.message = "skipped: " + why;
  WriteStep(sr);
  Report(Progress::Kind::kFinished, &sr, {});
}

void Runner::Impl::Start(size_t i) {
  StepResult& sr = result.steps[i];
  sr.state = RunState::kRunning;
  WriteStep(sr);
  Report(Progress::Kind::kStarted, &sr, {});
  auto live = [this, name_only = &output_names[i]](std::string_view d) { Report(Progress::Kind::kOutput, name_only, d); };
  logs[i] = std::make_unique<StepLog>(secret_values, recorder, options.fenced, options.run_id, sr.name, live, budget,
                                      FirstLogSeq(options.attempt));
  ++running;
  threads[i] = std::thread([this, i] {
    Ended e = RunStep(shared, i, *steps[i], *logs[i]);
    MutexLock lock(mu);
    ended.push_back(std::move(e));
    cv.NotifyAll();
  });
}

// Waits for a running step to end and records it; the logs are flushed every kFlushInterval
// meanwhile, and once more after.
void Runner::Impl::AwaitEnded() {
  std::optional<Ended> e;
  while (!e) {
    {
      MutexLock lock(mu);
      cv.WaitFor(mu, kFlushInterval, [&]() REQUIRES(mu) { return !ended.empty(); });
      if (!ended.empty()) {
        e = std::move(ended.front());
        ended.pop_front();
      }
    }
    for (auto& l : logs) {
      if (l) l->Flush(false);
    }
  }
  Record(*e);
}

void Runner::Impl::Record(const Ended& e) {
  threads[e.index].join();  // it has nothing left to do but return
  --running;
  StepResult& sr = result.steps[e.index];
  sr.state = e.state;
  sr.exit_code = e.exit_code;
  sr.attempts = e.attempts;
  sr.duration = e.duration;
  sr.message = e.message;
  WriteStep(sr);
  Report(Progress::Kind::kFinished, &sr, {});
}

void Runner::Impl::Finish() {
  bool any_failed = false, any_cancelled = shared.cancel.load();
  for (const auto& sr : result.steps) {
    any_failed = any_failed || sr.state == RunState::kFailed;
    any_cancelled = any_cancelled || sr.state == RunState::kCancelled;
  }
  result.state = any_cancelled ? RunState::kCancelled : any_failed ? RunState::kFailed : RunState::kSucceeded;
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - started);
  over = true;
}

void Runner::Impl::WriteStep(const StepResult& sr) {
  if (recorder == nullptr || (options.fenced != nullptr && options.fenced->load())) return;
  store::Step st{.name = sr.name, .state = sr.state, .exit_code = sr.exit_code, .attempts = sr.attempts};
  if (auto it = index.find(sr.name); it != index.end()) st.needs = steps[it->second]->needs;
  Status s = recorder->WriteStep(st);
  if (!s.ok()) log::Warn("ci: run {} step {}: store: {}", options.run_id, sr.name, s.message());
}

void Runner::Impl::Report(Progress::Kind kind, const StepResult* sr, std::string_view data) {
  if (!options.on_progress) return;
  MutexLock lock(progress_mu);
  options.on_progress(Progress{kind, sr, data});
}

Runner::Runner(const Pipeline& pipeline, Executor& executor, RunOptions options)
    : impl_(std::make_unique<Impl>(pipeline, executor, std::move(options), cancel_)) {}

Runner::~Runner() {
  cancel_.store(true);
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

const RunResult& Runner::state() const { return impl_->result; }
const Status& Runner::error() const { return impl_->error; }

bool Runner::Step() {
  Impl& r = *impl_;
  if (r.over) return false;
  if (!r.prepared) {
    r.prepared = true;
    r.started = r.clock.Now();
    r.error = r.Prepare();
    r.result.state = r.error.ok() ? RunState::kRunning : RunState::kFailed;
    r.over = !r.error.ok();
    return !r.over;
  }
  if (r.SkipOrStart()) return true;
  if (r.running > 0) {
    r.AwaitEnded();
    return true;
  }
  r.Finish();
  return false;
}

Result<RunResult> Runner::Run() {
  while (Step()) {
  }
  if (!impl_->error.ok()) return impl_->error;
  return impl_->result;
}

}  // namespace gantry::ci
