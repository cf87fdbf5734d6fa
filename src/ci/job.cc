#include "ci/job.h"

#include <sys/stat.h>

#include "base/log.h"
#include "base/path.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using value::Value;

namespace {

Value StringMap(const std::map<std::string, std::string>& m) {
  Value v = Value::Map();
  for (const auto& [k, x] : m) v.Set(k, x);
  return v;
}

// Reads the fields of one JSON object, remembering the first that is missing or of the wrong type.
class Fields {
 public:
  explicit Fields(const Value& v) : v_(v) {}
  std::string Text(std::string_view key) {
    const Value* x = v_.Get(key);
    if (x != nullptr && x->IsString()) return std::string(x->AsString());
    Bad(key, "a string");
    return "";
  }
  int64_t Int(std::string_view key) {
    const Value* x = v_.Get(key);
    if (x != nullptr && x->IsInt()) return x->AsInt();
    Bad(key, "an integer");
    return 0;
  }
  bool Bool(std::string_view key) {
    const Value* x = v_.Get(key);
    if (x != nullptr && x->IsBool()) return x->AsBool();
    Bad(key, "true or false");
    return false;
  }
  std::map<std::string, std::string> Strings(std::string_view key) {
    std::map<std::string, std::string> out;
    const Value* x = v_.Get(key);
    if (x == nullptr || !x->IsMap()) {
      Bad(key, "an object of strings");
      return out;
    }
    for (const auto& e : x->entries()) {
      if (!e.value.IsString()) Bad(key, "an object of strings");
      if (e.value.IsString()) out.emplace(e.key.AsString(), e.value.AsString());
    }
    return out;
  }
  // null or absent: nullopt.
  std::optional<std::vector<std::string>> OptStrings(std::string_view key) {
    const Value* x = v_.Get(key);
    if (x == nullptr || x->IsNull()) return std::nullopt;
    std::vector<std::string> out;
    if (!x->IsSeq()) Bad(key, "a list of strings or null");
    for (const auto& i : x->items()) {
      if (!i.IsString()) Bad(key, "a list of strings or null");
      if (i.IsString()) out.emplace_back(i.AsString());
    }
    return out;
  }
  Status status() const { return status_; }

 private:
  void Bad(std::string_view key, std::string_view want) {
    if (status_.ok()) status_ = InvalidArgumentError("job: {:?} must be {}", key, want);
  }
  const Value& v_;
  Status status_;
};

// FailedPrecondition naming the first directory above `dir` that `uid`:`gid` may not search
// (bubblewrap, started as that user, must reach the workspaces beneath it).
Status CheckSearchable(const fs::path& dir, uint32_t uid, uint32_t gid) {
  fs::path abs = fs::absolute(dir);
  for (fs::path p = abs.parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return ErrnoError(errno, "stat " + p.string());
    bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
              (st.st_gid == gid && (st.st_mode & S_IXGRP));
    if (!ok) {
      return FailedPreconditionError("steps run as host uid {} (Gantry runs as root), and it cannot reach the "
                                     "workspaces under {}: {} is not searchable by others (mode {:o}); chmod o+x it, "
                                     "choose a --data-dir whose parents are, or --step-uid 0 (steps then map to root)",
                                     uid, abs.string(), p.string(), st.st_mode & 0777);
    }
    if (p == p.parent_path()) break;
  }
  return OkStatus();
}

}  // namespace

Status PrepareDataDir(const fs::path& data_dir, const Executor& executor) {
  GANTRY_RETURN_IF_ERROR(MakePrivateDir(data_dir));
  if (auto user = executor.StepUser()) {
    GANTRY_RETURN_IF_ERROR(CheckSearchable(data_dir, user->first, user->second));
    // Steps run as a host user of their own, and bubblewrap (started as it) must reach the
    // workspaces: the data directory and runs/ become traversable (0711), not listable. Everything
    // else in them stays private; workspaces and artifacts are that user's.
    std::error_code ec;
    fs::create_directories(data_dir / "runs", ec);
    for (const fs::path& dir : {data_dir, data_dir / "runs"}) {
      if (::chmod(dir.c_str(), 0711) != 0) return ErrnoError(errno, "chmod 711 " + dir.string());
    }
    log::Info("ci: steps run as host uid {} (gid {})", user->first, user->second);
  }
  for (const char* sub : {"mirrors", "caches"}) GANTRY_RETURN_IF_ERROR(MakePrivateDir(data_dir / sub));
  return OkStatus();
}

Value JobJson(const Job& job) {
  const store::Run& r = job.run;
  Value run = Value::Map();
  run.Set("id", r.id);
  run.Set("attempt", r.attempt);
  run.Set("repo", r.repo);
  run.Set("pipeline", r.pipeline);
  run.Set("commit", r.commit);
  run.Set("ref", r.ref);
  run.Set("head_ref", r.head_ref);
  run.Set("event", store::Name(r.event));
  run.Set("labels", StringMap(r.labels));
  if (r.changed_paths) {
    Value paths = Value::Seq();
    for (const auto& p : *r.changed_paths) paths.Append(p);
    run.Set("changed_paths", paths);
  } else {
    run.Set("changed_paths", Value());
  }
  Value v = Value::Map();
  v.Set("run", run);
  v.Set("trusted", job.trusted);
  v.Set("secrets", StringMap(job.secrets));
  v.Set("out_of_scope", StringMap(job.out_of_scope));
  v.Set("allow_network", job.allow_network);
  v.Set("max_step_timeout_ms", static_cast<int64_t>(job.max_step_timeout.count()));
  v.Set("max_workspace_bytes", static_cast<int64_t>(job.max_workspace_bytes));
  v.Set("max_artifact_bytes", static_cast<int64_t>(job.max_artifact_bytes));
  v.Set("max_log_bytes", static_cast<int64_t>(job.max_log_bytes));
  v.Set("cache_quota_bytes", static_cast<int64_t>(job.cache_quota_bytes));
  v.Set("parallelism", job.parallelism);
  v.Set("releases", job.releases);
  v.Set("lease_ms", static_cast<int64_t>(job.lease.count()));
  return v;
}

Result<Job> ParseJob(const Value& v) {
  const Value* run = v.Get("run");
  if (run == nullptr || !run->IsMap()) return InvalidArgumentError("job: \"run\" must be an object");
  Job job;
  Fields rf(*run);
  store::Run& r = job.run;
  r.id = rf.Int("id");
  r.attempt = static_cast<int>(rf.Int("attempt"));
  r.repo = rf.Text("repo");
  r.pipeline = rf.Text("pipeline");
  r.commit = rf.Text("commit");
  r.ref = rf.Text("ref");
  r.head_ref = rf.Text("head_ref");
  const std::string event = rf.Text("event");
  r.labels = rf.Strings("labels");
  r.changed_paths = rf.OptStrings("changed_paths");
  GANTRY_RETURN_IF_ERROR(rf.status());
  auto parsed_event = store::ParseRunEvent(event);
  if (!parsed_event) return InvalidArgumentError("job: unknown event {:?}", event);
  r.event = *parsed_event;
  r.state = store::RunState::kRunning;
  Fields f(v);
  job.trusted = f.Bool("trusted");
  r.trusted = job.trusted;
  job.secrets = f.Strings("secrets");
  job.out_of_scope = f.Strings("out_of_scope");
  job.allow_network = f.Bool("allow_network");
  job.max_step_timeout = std::chrono::milliseconds(f.Int("max_step_timeout_ms"));
  job.max_workspace_bytes = static_cast<uint64_t>(f.Int("max_workspace_bytes"));
  job.max_artifact_bytes = static_cast<uint64_t>(f.Int("max_artifact_bytes"));
  job.max_log_bytes = static_cast<uint64_t>(f.Int("max_log_bytes"));
  job.cache_quota_bytes = static_cast<uint64_t>(f.Int("cache_quota_bytes"));
  job.parallelism = static_cast<int>(f.Int("parallelism"));
  job.releases = f.Bool("releases");
  job.lease = std::chrono::milliseconds(f.Int("lease_ms"));
  GANTRY_RETURN_IF_ERROR(f.status());
  return job;
}

Context ContextOf(const store::Run& run) {
  Context c;
  c.event = run.event == store::RunEvent::kPullRequest ? "pull_request" : run.event == store::RunEvent::kManual ? "manual" : "push";
  if (run.ref.starts_with("refs/tags/")) {
    c.event = run.event == store::RunEvent::kPush ? "tag" : c.event;
    c.tag = run.ref.substr(10);
  } else if (run.ref.starts_with("refs/heads/")) {
    c.branch = run.ref.substr(11);
  }
  if (run.changed_paths) {
    c.changed_paths = *run.changed_paths;
    c.changed_paths_known = true;
  }
  return c;
}

Status CheckIsolation(const Job& job, const Executor& executor) {
  if (job.trusted || executor.Isolates()) return OkStatus();
  return FailedPreconditionError("refused: this run is untrusted and steps run on this host without a sandbox ({})",
                                 executor.name());
}

std::string RunOutcome(const RunResult& result, bool cancel_came) {
  if (result.state == store::RunState::kCancelled) return "cancelled";
  if (result.state == store::RunState::kSucceeded) {
    return fmt::format("{} steps succeeded{}", result.steps.size(),
                       cancel_came ? " (the cancel came after the last one ended)" : "");
  }
  int failed = 0;
  for (const auto& s : result.steps) failed += s.state == store::RunState::kFailed;
  return fmt::format("{} step(s) failed", failed);
}

Result<std::unique_ptr<RunRepository>> RunRepository::Open(git::Mirrors& mirrors, const store::Run& run, bool fork,
                                                           const fs::path& fork_dir, const git::OpenOptions& options) {
  auto out = std::unique_ptr<RunRepository>(new RunRepository());
  if (fork) {
    out->fork_dir_ = fork_dir;
    out->fork_mirrors_ = std::make_unique<git::Mirrors>(fork_dir);
  }
  auto repo = (fork ? *out->fork_mirrors_ : mirrors).Open(run.repo, options);
  if (!repo.ok()) return repo.status().WithContext("open " + git::ScrubUrl(run.repo));
  out->repo_ = *std::move(repo);
  return out;
}

RunRepository::~RunRepository() {
  repo_.reset();
  fork_mirrors_.reset();
  std::error_code ec;
  if (!fork_dir_.empty()) fs::remove_all(fork_dir_, ec);
}

Result<CheckedOut> CheckOut(git::Repository& repo, const store::Run& run, const fs::path& run_dir,
                            const std::function<Status(const std::string& commit)>& bind) {
  CheckedOut out;
  if (auto f = repo.Fetch(); !f.ok()) return UnavailableError("fetch: {}", f.status().message());
  Result<std::string> commit = NotFoundError("no commit");
  if (run.event == store::RunEvent::kPullRequest) {
    // The head commit the provider named (the ref is the base branch's), which must be on the
    // pull request's branch: the signed payload is a hint, not a way to build any commit the
    // repository holds. It is built even when the branch has moved on since (what a maintainer
    // approved is that commit; the newer one comes with its own event).
    commit = repo.Resolve(run.commit);
    if (!commit.ok()) return NotFoundError("the pull request's head {}: {}", run.commit, commit.status().message());
    if (!run.head_ref.empty()) {
      auto tip = repo.Resolve("refs/heads/" + run.head_ref);
      if (!tip.ok()) {
        return PermissionDeniedError("refused: the pull request's branch {} is not in {}: {}", run.head_ref,
                                     git::ScrubUrl(run.repo), tip.status().message());
      }
      auto on_branch = repo.Contains(*tip, *commit);
      if (!on_branch.ok() || !*on_branch) {
        return PermissionDeniedError("refused: {} is not on the pull request's branch {} (its tip is {}){}",
                                     commit->substr(0, 12), run.head_ref, tip->substr(0, 12),
                                     on_branch.ok() ? "" : ": " + on_branch.status().message());
      }
      if (*tip != *commit) {
        out.notes = fmt::format("the branch {} has moved on to {}; {} was built, as the event named it", run.head_ref,
                                tip->substr(0, 12), commit->substr(0, 12));
      }
    }
  } else {
    // The ref is the truth, the payload a hint: build what the ref points to after the fetch.
    commit = repo.Resolve(run.ref);
    if (!commit.ok()) return NotFoundError("resolve {}: {}", run.ref, commit.status().message());
    if (!run.commit.empty() && *commit != run.commit) {
      out.notes = fmt::format("stale payload: it named {} but {} points to {}, which was built", run.commit.substr(0, 12),
                              run.ref, commit->substr(0, 12));
      log::Warn("ci: run {}: {}", run.id, out.notes);
      if (Status b = bind(*commit); !b.ok()) {
        if (b.code() == Code::kAlreadyExists) {
          return AbortedError("superseded: {} points to {}, and {}", run.ref, commit->substr(0, 12), b.message());
        }
        log::Warn("ci: run {}: {}", run.id, b.message());
      }
    }
  }
  out.commit = *commit;
  out.workspace = run_dir / "workspace";
  std::error_code ec;
  fs::remove_all(run_dir, ec);  // a previous, interrupted attempt
  fs::create_directories(run_dir, ec);
  if (Status s = repo.Materialize(out.commit, "", out.workspace); !s.ok()) return InternalError("checkout: {}", s.message());
  auto text = ReadFile(out.workspace / ".gantry" / "pipeline.yaml", 1 << 20);
  if (!text.ok()) return NotFoundError(".gantry/pipeline.yaml: {}", text.status().message());
  GANTRY_ASSIGN_OR_RETURN(out.pipeline, ParsePipeline(*text, ".gantry/pipeline.yaml"));
  return out;
}

std::vector<std::string> OutOfScopeNotes(const Job& job, const Pipeline& pipeline, const Context& c) {
  std::vector<std::string> notes;
  if (!job.trusted) return notes;
  for (const auto& step : pipeline.steps) {
    for (const auto& name : step.secrets) {
      auto it = job.out_of_scope.find(name);
      if (it == job.out_of_scope.end()) continue;
      notes.push_back(fmt::format("step {}: secret {} is out of scope for {} {} ({})", step.name, name, c.event,
                                  c.branch.empty() ? c.tag : c.branch, it->second));
      log::Warn("ci: run {}: {}", job.run.id, notes.back());
    }
  }
  return notes;
}

RunOptions RunOptionsOf(const Job& job, const CheckedOut& co, const fs::path& run_dir, const fs::path& cache_root) {
  RunOptions ro;
  ro.workspace = co.workspace;
  ro.run_dir = run_dir;
  ro.cache_root = cache_root;
  ro.commit = co.commit;
  ro.context = ContextOf(job.run);
  ro.secrets = job.secrets;
  ro.withhold_secrets = !job.trusted;
  ro.trusted = job.trusted;
  ro.cache_repository = job.run.pipeline;  // the configured repository (a fork's pull request: its base)
  ro.cache_source = job.run.repo;
  ro.allow_network = job.allow_network;
  ro.max_step_timeout = job.max_step_timeout;
  ro.max_workspace_bytes = job.max_workspace_bytes;
  ro.max_artifact_bytes = job.max_artifact_bytes;
  ro.max_log_bytes = job.max_log_bytes;
  ro.cache_quota_bytes = job.cache_quota_bytes;
  ro.parallelism = job.parallelism;
  ro.run_id = job.run.id;
  ro.attempt = job.run.attempt;
  return ro;
}

}  // namespace gantry::ci
