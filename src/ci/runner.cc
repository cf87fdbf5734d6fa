#include "ci/runner.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <set>
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

namespace {

// The byte budget of a run's logs, shared by its steps.
struct LogBudget {
  uint64_t max = 0;  // 0 = unlimited
  std::atomic<uint64_t> used{0};
};

// Log of one step: masks, batches into chunks for the store, forwards to the progress callback.
// Output beyond the run's budget is dropped after one line saying so.
class StepLog {
 public:
  StepLog(const std::vector<std::string>& secrets, store::Store* st, int64_t run_id, std::string step,
          const std::function<void(std::string_view)>& live, LogBudget& budget)
      : masker_(secrets), store_(st), run_id_(run_id), step_(std::move(step)), live_(live), budget_(budget) {}

  void Write(std::string_view raw) {
    MutexLock lock(mu_);
    Emit(masker_.Write(raw));
    if (buf_.size() >= kChunk) FlushLocked();
  }
  // Sends what is buffered to the store (periodically and at the end).
  void Flush(bool final) {
    MutexLock lock(mu_);
    if (final) Emit(masker_.Flush());
    FlushLocked();
  }
  std::string Mask(std::string_view s) const {
    MutexLock lock(mu_);  // a Masker is not thread-safe, even where MaskAll() is const
    return masker_.MaskAll(s);
  }

 private:
  static constexpr size_t kChunk = 16 * 1024;
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
  void FlushLocked() REQUIRES(mu_) {
    while (!buf_.empty()) {
      size_t n = std::min(buf_.size(), store::kMaxLogChunkBytes);
      if (store_ != nullptr) {
        Status s = store_->AppendLogChunk(run_id_, step_, seq_, std::string_view(buf_).substr(0, n));
        if (!s.ok()) log::Warn("ci: run {} step {}: store log chunk: {}", run_id_, step_, s.message());
      }
      ++seq_;
      buf_.erase(0, n);
    }
  }

  mutable Mutex mu_;
  Masker masker_ GUARDED_BY(mu_);
  store::Store* store_;
  int64_t run_id_;
  std::string step_;
  const std::function<void(std::string_view)>& live_;
  LogBudget& budget_;
  std::string buf_ GUARDED_BY(mu_);
  int64_t seq_ GUARDED_BY(mu_) = 0;
  bool truncated_ GUARDED_BY(mu_) = false;
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

}  // namespace

Runner::Runner(const Pipeline& pipeline, Executor& executor, RunOptions options)
    : pipeline_(pipeline), executor_(executor), options_(std::move(options)) {}

Result<RunResult> Runner::Run() {
  Clock& clock = options_.clock ? *options_.clock : SystemClock();
  const auto run_start = clock.Now();
  std::error_code ec;
  if (!fs::is_directory(options_.workspace, ec)) {
    return FailedPreconditionError("workspace {} is not a directory", options_.workspace.string());
  }
  fs::path artifacts = options_.run_dir / "artifacts";
  fs::create_directories(artifacts, ec);
  if (ec) return InternalError("create {}: {}", artifacts.string(), ec.message());
  std::vector<std::string> selected;
  if (options_.only_steps.empty()) {
    for (const auto& s : pipeline_.steps) selected.push_back(s.name);
  } else {
    GANTRY_ASSIGN_OR_RETURN(selected, SelectSteps(pipeline_, options_.only_steps));
  }
  std::vector<std::string> secret_values;
  for (const auto& [_, v] : options_.secrets) secret_values.push_back(v);

  std::vector<const Step*> steps;
  for (const auto& s : pipeline_.steps) {
    if (std::find(selected.begin(), selected.end(), s.name) != selected.end()) steps.push_back(&s);
  }
  RunResult result;
  result.steps.resize(steps.size());
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < steps.size(); ++i) {
    result.steps[i].name = steps[i]->name;
    index[steps[i]->name] = i;
  }
  Mutex mu;  // guards result, running, progress calls
  std::atomic<uint64_t> artifact_bytes{0};  // kept by the run so far (steps may run in parallel)
  CondVar cv;
  std::vector<std::unique_ptr<StepLog>> logs(steps.size());
  LogBudget log_budget{.max = options_.max_log_bytes};
  std::vector<std::thread> threads;
  int running = 0;

  auto progress = [&](Progress::Kind kind, const StepResult* sr, std::string_view data) {
    if (options_.on_progress) options_.on_progress(Progress{kind, sr, data});
  };
  auto write_step = [&](const StepResult& sr) {
    if (options_.store == nullptr) return;
    store::Step st{.name = sr.name, .state = sr.state, .exit_code = sr.exit_code};
    Status s = options_.store->UpsertStep(options_.run_id, st);
    if (!s.ok()) log::Warn("ci: run {} step {}: store: {}", options_.run_id, sr.name, s.message());
  };
  if (options_.store != nullptr) {
    for (const auto& sr : result.steps) write_step(sr);
  }

  auto run_step = [&](size_t i) {
    const Step& step = *steps[i];
    StepResult& sr = result.steps[i];
    StepLog& slog = *logs[i];
    const auto start = clock.Now();
    StepRequest req;
    req.run_label = options_.run_id > 0 ? fmt::format("run-{}", options_.run_id) : "local";
    req.step = step.name;
    req.argv = step.argv;
    req.workspace = options_.workspace;
    req.artifacts = artifacts;
    req.network = step.network && options_.allow_network;
    if (step.network && !options_.allow_network) slog.Write("gantry: network off for this run (untrusted)\n");
    req.limits = step.limits;
    req.timeout = step.timeout;
    if (options_.max_step_timeout.count() > 0 && req.timeout > options_.max_step_timeout) {
      req.timeout = options_.max_step_timeout;
      slog.Write(fmt::format("gantry: timeout {} capped at {} for this run\n", Millis(step.timeout),
                             Millis(req.timeout)));
    }
    req.image = step.image;
    req.trusted = options_.trusted;
    req.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
               {"HOME", "/tmp"},
               {"LANG", "C.UTF-8"},
               {"CI", "true"},
               {"GANTRY_WORKSPACE", executor_.WorkspacePath(options_.workspace)},
               {"GANTRY_ARTIFACTS", executor_.ArtifactsPath(artifacts)},
               {"GANTRY_STEP", step.name},
               {"GANTRY_PIPELINE", pipeline_.name},
               {"GANTRY_EVENT", options_.context.event},
               {"GANTRY_BRANCH", options_.context.branch},
               {"GANTRY_COMMIT", options_.commit},
               {"GANTRY_RUN_ID", std::to_string(options_.run_id)}};
    for (const auto& [k, v] : step.env) req.env[k] = v;
    std::string failure;
    for (const auto& name : step.secrets) {
      if (options_.withhold_secrets) {
        slog.Write(fmt::format("gantry: secret {} withheld: this run is for a pull request from a fork\n", name));
        continue;
      }
      auto it = options_.secrets.find(name);
      if (it == options_.secrets.end()) {
        failure = fmt::format("secret {} is not configured (runner environment or --secrets-file)", name);
        break;
      }
      req.env[name] = it->second;
      req.secret_names.insert(name);
    }
    // Caches in: the run's own scope, else (untrusted runs) the trusted scope, read only.
    if (failure.empty() && !options_.cache_root.empty()) {
      for (const auto& c : step.caches) {
        fs::path dir = OwnScope(options_) / EntryName(pipeline_, c);
        std::error_code e;
        if (!options_.trusted && !fs::is_directory(dir, e)) dir = TrustedScope(options_) / EntryName(pipeline_, c);
        if (!fs::is_directory(dir, e)) continue;
        if (dir.parent_path() == OwnScope(options_)) Touch(dir);
        for (const auto& p : c.paths) {
          auto copied = CopyTreeBeneath(dir, p, options_.workspace, p);
          if (copied.status().code() == Code::kNotFound) continue;  // not in this cache
          slog.Write(copied.ok() ? fmt::format("gantry: cache {} restored {}\n", c.key, p)
                                 : fmt::format("gantry: cache {} not restored: {}\n", c.key, copied.status().message()));
        }
      }
    }
    StepOutcome outcome;
    if (failure.empty()) {
      for (int attempt = 0; attempt <= step.retry; ++attempt) {
        sr.attempts = attempt + 1;
        if (attempt > 0) slog.Write(fmt::format("gantry: retry {}/{} after {}\n", attempt, step.retry, outcome.Describe()));
        auto r = executor_.Run(req, [&](std::string_view d) { slog.Write(d); }, cancel_);
        if (!r.ok()) {
          failure = slog.Mask(r.status().message());
          break;
        }
        outcome = *r;
        if (outcome.success() || outcome.timed_out || outcome.cancelled) break;
      }
    }
    if (failure.empty() && outcome.success() && options_.max_workspace_bytes > 0) {
      // By descriptor: a step still running in parallel may swap a directory for a link to "/".
      auto used = TreeBytesBeneath(options_.workspace);
      if (!used.ok()) {
        failure = "measure the workspace: " + used.status().message();
      } else if (*used > options_.max_workspace_bytes) {
        failure = fmt::format("the workspace holds {} bytes after this step, above the limit of {} bytes", *used,
                              options_.max_workspace_bytes);
      }
      if (!failure.empty()) slog.Write("gantry: " + failure + "\n");
    }
    // Caches out, into this run's own scope only: written beside the old entry, then renamed over it.
    if (failure.empty() && outcome.success() && !options_.cache_root.empty()) {
      static std::atomic<uint64_t> seq{0};
      for (const auto& c : step.caches) {
        fs::path dir = OwnScope(options_) / EntryName(pipeline_, c);
        fs::path tmp = dir.string() + fmt::format(".tmp-{}-{}", ::getpid(), seq.fetch_add(1));
        std::error_code e;
        fs::create_directories(tmp, e);
        Status saved = e ? ErrnoError(e.value(), "create " + tmp.string()) : OkStatus();
        uint64_t files = 0, bytes = 0;
        size_t found = 0;
        for (size_t k = 0; saved.ok() && k < c.paths.size(); ++k) {
          // A cache larger than the whole quota would only be evicted: refuse it while copying.
          auto copied = CopyTreeBeneath(options_.workspace, c.paths[k], tmp, c.paths[k],
                                        {.max_bytes = options_.cache_quota_bytes});
          if (copied.status().code() == Code::kNotFound) continue;  // the step did not make it
          saved = copied.status();
          if (!copied.ok()) break;
          ++found;
          files += copied->files;
          bytes += copied->bytes;
          if (options_.cache_quota_bytes > 0 && bytes > options_.cache_quota_bytes) {
            saved = ResourceExhaustedError("more than the cache quota of {} bytes", options_.cache_quota_bytes);
          }
        }
        if (saved.ok() && found == 0) saved = NotFoundError("none of its paths exist");
        if (saved.ok()) {
          fs::remove_all(dir, e);
          if (::rename(tmp.c_str(), dir.c_str()) != 0) saved = ErrnoError(errno, "rename to " + dir.string());
          Touch(dir);
        }
        fs::remove_all(tmp, e);
        slog.Write(saved.ok() ? fmt::format("gantry: cache {} saved ({} files, {} bytes)\n", c.key, files, bytes)
                              : fmt::format("gantry: cache {} not saved: {}\n", c.key, saved.message()));
        if (saved.ok() && options_.cache_quota_bytes > 0) {
          int removed = EvictCaches(options_.cache_root, options_.cache_quota_bytes);
          if (removed > 0) {
            slog.Write(fmt::format("gantry: cache quota of {} bytes: removed {} least recently used cache(s)\n",
                                   options_.cache_quota_bytes, removed));
          }
        }
      }
    }
    if (!step.artifacts.empty() && !outcome.cancelled) {
      fs::path dest_root = artifacts / StepDirName(step.name);
      size_t n = 0, refused = 0;
      std::error_code e;
      for (auto it = fs::recursive_directory_iterator(options_.workspace, e); !e && it != fs::recursive_directory_iterator();
           it.increment(e)) {
        std::error_code entry_error;
        if (!fs::is_regular_file(it->symlink_status(entry_error))) continue;  // links are never kept
        std::string rel = it->path().lexically_relative(options_.workspace).generic_string();
        bool match = false;
        for (const auto& g : step.artifacts) match = match || GlobMatch(g, rel);
        if (!match) continue;
        // The listing may be stale by now: the copy itself refuses any link on the way.
        fs::create_directories(dest_root, entry_error);
        CopyLimits limits;
        if (options_.max_artifact_bytes > 0) {
          uint64_t kept = artifact_bytes.load();
          limits.max_bytes = kept < options_.max_artifact_bytes ? options_.max_artifact_bytes - kept : 0;
        }
        // Checked before copying, so that a file over the budget leaves nothing behind (the copy's
        // own limit still bounds a file that grows meanwhile).
        uint64_t size = it->file_size(entry_error);
        auto copied = options_.max_artifact_bytes > 0 && (entry_error || size > limits.max_bytes)
                          ? Result<CopyStats>(ResourceExhaustedError("the run's artifacts would pass their limit of {} bytes",
                                                                     options_.max_artifact_bytes))
                          : CopyTreeBeneath(options_.workspace, rel, dest_root, rel, limits);
        if (copied.ok()) {
          artifact_bytes += copied->bytes;
          ++n;
        } else if (++refused <= 5) {
          slog.Write(fmt::format("gantry: artifact {} not kept: {}\n", rel, copied.status().message()));
        }
      }
      slog.Write(fmt::format("gantry: {} artifact file(s) kept{}\n", n,
                             refused > 0 ? fmt::format(", {} not kept", refused) : ""));
    }
    slog.Flush(true);
    MutexLock lock(mu);
    sr.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - start);
    if (!failure.empty()) {
      sr.state = RunState::kFailed;
      sr.message = failure;
    } else {
      sr.state = outcome.success() ? RunState::kSucceeded : outcome.cancelled ? RunState::kCancelled : RunState::kFailed;
      if (outcome.term_signal == 0 && !outcome.timed_out && !outcome.cancelled) sr.exit_code = outcome.exit_code;
      sr.message = outcome.Describe();
    }
    write_step(sr);
    progress(Progress::Kind::kFinished, &sr, {});
    --running;
    cv.NotifyAll();
  };

  MutexLock lock(mu);
  std::vector<StepResult> live_names(steps.size());
  std::vector<std::function<void(std::string_view)>> live(steps.size());
  for (;;) {
    bool progress_made = true;
    while (progress_made) {
      progress_made = false;
      for (size_t i = 0; i < steps.size(); ++i) {
        StepResult& sr = result.steps[i];
        if (sr.state != RunState::kQueued) continue;
        std::string blocked;
        bool ready = true;
        for (const auto& n : steps[i]->needs) {
          auto it = index.find(n);
          if (it == index.end()) continue;
          RunState ns = result.steps[it->second].state;
          if (ns == RunState::kQueued || ns == RunState::kRunning) ready = false;
          else if (ns != RunState::kSucceeded && blocked.empty()) blocked = fmt::format("needs {} ({})", n, store::Name(ns));
        }
        if (cancel_.load()) blocked = "run cancelled";
        else if (blocked.empty() && ready && !WhenMatches(steps[i]->when, options_.context)) blocked = "when: does not match";
        if (!blocked.empty()) {
          sr.state = RunState::kSkipped;
          sr.message = "skipped: " + blocked;
          write_step(sr);
          progress(Progress::Kind::kFinished, &sr, {});
          progress_made = true;
          continue;
        }
        if (!ready || running >= std::max(1, options_.parallelism)) continue;
        sr.state = RunState::kRunning;
        write_step(sr);
        progress(Progress::Kind::kStarted, &sr, {});
        live_names[i].name = sr.name;
        const StepResult* name_only = &live_names[i];
        live[i] = [&, name_only](std::string_view d) {
          MutexLock l(mu);
          progress(Progress::Kind::kOutput, name_only, d);
        };
        logs[i] = std::make_unique<StepLog>(secret_values, options_.store, options_.run_id, sr.name,
                                            live[i], log_budget);
        ++running;
        progress_made = true;
        threads.emplace_back([&, i] { run_step(i); });
      }
    }
    if (running == 0) break;
    cv.WaitFor(mu, std::chrono::milliseconds(250));
    lock.Unlock();
    for (auto& l : logs) {
      if (l) l->Flush(false);
    }
    lock.Lock();
  }
  lock.Unlock();
  for (auto& t : threads) t.join();

  bool any_failed = false, any_cancelled = cancel_.load();
  for (const auto& sr : result.steps) {
    any_failed = any_failed || sr.state == RunState::kFailed;
    any_cancelled = any_cancelled || sr.state == RunState::kCancelled;
  }
  result.state = any_cancelled ? RunState::kCancelled : any_failed ? RunState::kFailed : RunState::kSucceeded;
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - run_start);
  return result;
}

}  // namespace gantry::ci
