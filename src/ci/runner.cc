#include "ci/runner.h"

#include <sys/stat.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "base/hash.h"
#include "base/log.h"
#include "base/path.h"
#include "ci/mask.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using store::RunState;
using SteadyClock = std::chrono::steady_clock;

std::string StepDirName(std::string_view step) {
  std::string out;
  for (char c : step) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out;
}

Result<std::map<std::string, std::string>> ReadSecretsFile(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, "secrets file " + path.string());
  if ((st.st_mode & 077) != 0) {
    return PermissionDeniedError("secrets file {} is readable by others (mode {:o}); chmod 600 it", path.string(),
                                 st.st_mode & 0777);
  }
  GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  std::map<std::string, std::string> out;
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError("{}:{}: expected NAME=VALUE", path.string(), line_no);  // never echo the line
    }
    out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

namespace {

// Log of one step: masks, batches into chunks for the store, forwards to the progress callback.
class StepLog {
 public:
  StepLog(const std::vector<std::string>& secrets, store::Store* st, int64_t run_id, std::string step,
          const std::function<void(std::string_view)>& live)
      : masker_(secrets), store_(st), run_id_(run_id), step_(std::move(step)), live_(live) {}

  void Write(std::string_view raw) {
    std::lock_guard<std::mutex> lock(mu_);
    Emit(masker_.Write(raw));
    if (buf_.size() >= kChunk) FlushLocked();
  }
  // Sends what is buffered to the store (periodically and at the end).
  void Flush(bool final) {
    std::lock_guard<std::mutex> lock(mu_);
    if (final) Emit(masker_.Flush());
    FlushLocked();
  }
  std::string Mask(std::string_view s) const { return masker_.MaskAll(s); }

 private:
  static constexpr size_t kChunk = 16 * 1024;
  void Emit(const std::string& masked) {
    if (masked.empty()) return;
    if (live_) live_(masked);
    buf_ += masked;
  }
  void FlushLocked() {
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

  std::mutex mu_;
  Masker masker_;  // GUARDED_BY(mu_)
  store::Store* store_;
  int64_t run_id_;
  std::string step_;
  const std::function<void(std::string_view)>& live_;
  std::string buf_;  // GUARDED_BY(mu_)
  int64_t seq_ = 0;  // GUARDED_BY(mu_)
};

Status CopyTree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  fs::file_status st = fs::symlink_status(from, ec);
  if (fs::is_directory(st)) {
    fs::create_directories(to, ec);
    fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks | fs::copy_options::overwrite_existing, ec);
  } else {
    fs::copy(from, to, fs::copy_options::copy_symlinks | fs::copy_options::overwrite_existing, ec);
  }
  if (ec) return InternalError("copy {} to {}: {}", from.string(), to.string(), ec.message());
  return OkStatus();
}

fs::path CacheDir(const fs::path& root, const Pipeline& p, const CacheSpec& c) {
  return root / Sha256Hex(p.name + '\0' + c.key).substr(0, 24);
}

}  // namespace

Runner::Runner(const Pipeline& pipeline, Executor& executor, RunOptions options)
    : pipeline_(pipeline), executor_(executor), options_(std::move(options)) {}

Result<RunResult> Runner::Run() {
  SteadyClock::time_point run_start = SteadyClock::now();
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
  std::mutex mu;  // guards result, running, progress calls
  std::condition_variable cv;
  std::vector<std::unique_ptr<StepLog>> logs(steps.size());
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
    SteadyClock::time_point start = SteadyClock::now();
    StepRequest req;
    req.run_label = options_.run_id > 0 ? fmt::format("run-{}", options_.run_id) : "local";
    req.step = step.name;
    req.argv = step.argv;
    req.workspace = options_.workspace;
    req.artifacts = artifacts;
    req.network = step.network;
    req.limits = step.limits;
    req.timeout = step.timeout;
    req.image = step.image;
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
    // Caches in.
    if (failure.empty() && !options_.cache_root.empty()) {
      for (const auto& c : step.caches) {
        fs::path dir = CacheDir(options_.cache_root, pipeline_, c);
        for (const auto& p : c.paths) {
          std::error_code e;
          if (!fs::exists(fs::symlink_status(dir / p, e))) continue;
          auto dest = SafeJoin(options_.workspace, p);
          if (!dest.ok()) continue;
          Status s = CopyTree(dir / p, *dest);
          slog.Write(s.ok() ? fmt::format("gantry: cache {} restored {}\n", c.key, p)
                            : fmt::format("gantry: cache {} not restored: {}\n", c.key, s.message()));
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
    if (failure.empty() && outcome.success() && !options_.cache_root.empty()) {
      for (const auto& c : step.caches) {
        fs::path dir = CacheDir(options_.cache_root, pipeline_, c);
        fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(i);
        std::error_code e;
        fs::remove_all(tmp, e);
        bool ok = true;
        for (const auto& p : c.paths) {
          auto src = SafeJoin(options_.workspace, p);
          if (!src.ok() || !fs::exists(fs::symlink_status(*src, e))) continue;
          ok = ok && CopyTree(*src, tmp / p).ok();
        }
        if (ok) {
          fs::remove_all(dir, e);
          fs::create_directories(dir.parent_path(), e);
          fs::rename(tmp, dir, e);
          slog.Write(fmt::format("gantry: cache {} saved\n", c.key));
        }
        fs::remove_all(tmp, e);
      }
    }
    if (!step.artifacts.empty() && !outcome.cancelled) {
      fs::path dest_root = artifacts / StepDirName(step.name);
      size_t n = 0;
      std::error_code e;
      for (auto it = fs::recursive_directory_iterator(options_.workspace, e); !e && it != fs::recursive_directory_iterator();
           it.increment(e)) {
        if (!it->is_regular_file(e) || it->is_symlink(e)) continue;
        std::string rel = fs::relative(it->path(), options_.workspace, e).generic_string();
        bool match = false;
        for (const auto& g : step.artifacts) match = match || GlobMatch(g, rel);
        if (!match) continue;
        fs::create_directories((dest_root / rel).parent_path(), e);
        fs::copy_file(it->path(), dest_root / rel, fs::copy_options::overwrite_existing, e);
        ++n;
      }
      slog.Write(fmt::format("gantry: {} artifact file(s) kept\n", n));
    }
    slog.Flush(true);
    std::lock_guard<std::mutex> lock(mu);
    sr.duration = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
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
    cv.notify_all();
  };

  std::unique_lock<std::mutex> lock(mu);
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
          std::lock_guard<std::mutex> l(mu);
          progress(Progress::Kind::kOutput, name_only, d);
        };
        logs[i] = std::make_unique<StepLog>(secret_values, options_.store, options_.run_id, sr.name,
                                            live[i]);
        ++running;
        progress_made = true;
        threads.emplace_back([&, i] { run_step(i); });
      }
    }
    if (running == 0) break;
    cv.wait_for(lock, std::chrono::milliseconds(250));
    lock.unlock();
    for (auto& l : logs) {
      if (l) l->Flush(false);
    }
    lock.lock();
  }
  lock.unlock();
  for (auto& t : threads) t.join();

  bool any_failed = false, any_cancelled = cancel_.load();
  for (const auto& sr : result.steps) {
    any_failed = any_failed || sr.state == RunState::kFailed;
    any_cancelled = any_cancelled || sr.state == RunState::kCancelled;
  }
  result.state = any_cancelled ? RunState::kCancelled : any_failed ? RunState::kFailed : RunState::kSucceeded;
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - run_start);
  return result;
}

}  // namespace gantry::ci
