#include "ci/server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "base/log.h"
#include "base/mutex.h"
#include "base/path.h"
#include "ci/mask.h"
#include "ci/runner.h"
#include "value/value.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using store::RunState;
using value::Value;

namespace {

// Which paths a push changed, from the webhook payload, kept beside the store so that `when:
// paths:` still filters after a restart re-queues the run: <data_dir>/changed-paths/<run id>.
fs::path ChangedPathsFile(const fs::path& data_dir, int64_t run_id) {
  return data_dir / "changed-paths" / (std::to_string(run_id) + ".json");
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Runs of a configured repository's own code build in its mirror; a fork's, in a mirror of their
// own, removed when the run ends (fork mirrors are not shared, so nothing of them outlives a run).
fs::path ForkMirrorDir(const fs::path& data_dir, int64_t run_id) {
  return data_dir / "fork-mirrors" / std::to_string(run_id);
}

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
      return FailedPreconditionError("steps run as host uid {} (the server runs as root), and it cannot reach the "
                                     "workspaces under {}: {} is not searchable by others (mode {:o}); chmod o+x it, "
                                     "choose a --data-dir whose parents are, or --step-uid 0 (steps then map to root)",
                                     uid, abs.string(), p.string(), st.st_mode & 0777);
    }
    if (p == p.parent_path()) break;
  }
  return OkStatus();
}

// A store failure is not the request's: Unavailable, saying what was being done, whatever the
// store's own code.
Status StoreUnavailable(const Status& s, std::string_view what) {
  return UnavailableError("{}: {}", what, s.message());
}

}  // namespace

RepoLocation LocateRepo(std::string_view url) {
  RepoLocation out;
  std::string_view rest = url;
  size_t scheme = rest.find("://");
  if (scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    if (authority.starts_with('[')) {
      authority = authority.substr(0, authority.find(']') + 1);  // [::1]:port
    } else if (size_t colon = authority.find(':'); colon != std::string_view::npos) {
      authority = authority.substr(0, colon);
    }
    out.host = Lower(authority);
  } else if (size_t colon = rest.find(':'); colon != std::string_view::npos && rest.find('/') > colon) {
    std::string_view host = rest.substr(0, colon);  // scp-like user@host:path
    if (size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
    out.host = Lower(host);
    rest.remove_prefix(colon + 1);
  }
  while (rest.starts_with('/')) rest.remove_prefix(1);
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.ends_with(".git")) rest.remove_suffix(4);
  out.path = std::string(rest);
  return out;
}

bool SameRepo(std::string_view configured, const webhook::Event& e) {
  const RepoLocation c = LocateRepo(configured);
  if (!e.clone_url.empty()) return LocateRepo(e.clone_url) == c;
  if (e.repo_full_name.empty()) return false;
  if (c.path != e.repo_full_name && !c.path.ends_with("/" + e.repo_full_name)) return false;
  for (const std::string* named : {&e.web_url, &e.ssh_url}) {
    if (!named->empty() && LocateRepo(*named).host != c.host) return false;
  }
  return true;
}

webhook::Provider PinnedProvider(std::string_view repo, const RepoPolicy& policy) {
  if (policy.provider != webhook::Provider::kAuto) return policy.provider;
  const std::string host = LocateRepo(repo).host;
  if (host == "github.com") return webhook::Provider::kGitHub;
  if (host == "gitlab.com") return webhook::Provider::kGitLab;
  if (host == "bitbucket.org") return webhook::Provider::kBitbucket;
  if (host == "codeberg.org") return webhook::Provider::kForgejo;
  return webhook::Provider::kAuto;
}

Status CheckProvider(std::string_view repo, const RepoPolicy& policy, webhook::Provider got) {
  using webhook::Provider;
  const Provider pinned = PinnedProvider(repo, policy);
  auto family = [](Provider p) { return p == Provider::kForgejo ? Provider::kGitea : p; };  // Forgejo sends Gitea's headers too
  if (pinned == Provider::kAuto) {
    if (got != Provider::kGitLab) return OkStatus();
    return PermissionDeniedError(
        "GitLab webhooks carry a plain token, not a signature: they are accepted for {} only when it is pinned to "
        "GitLab (--repo-policy '{} provider=gitlab' or --webhook-provider gitlab)",
        git::ScrubUrl(repo), git::ScrubUrl(repo));
  }
  if (family(pinned) == family(got)) return OkStatus();
  return PermissionDeniedError("{} accepts only {} webhooks, not {}", git::ScrubUrl(repo), webhook::ProviderName(pinned),
                               webhook::ProviderName(got));
}

Result<std::pair<std::string, RepoPolicy>> ParseRepoPolicy(std::string_view spec, const RepoPolicy& defaults) {
  std::pair<std::string, RepoPolicy> out{"", defaults};
  std::string_view rest = spec;
  while (!rest.empty()) {
    size_t space = rest.find(' ');
    std::string_view word = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    if (word.empty()) continue;
    if (out.first.empty()) {
      out.first = std::string(word);
      continue;
    }
    size_t eq = word.find('=');
    std::string_view key = word.substr(0, eq), value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
    RepoPolicy& p = out.second;
    auto choose = [&](bool& field, std::string_view yes, std::string_view no) -> Status {
      if (value != yes && value != no) {
        return InvalidArgumentError("--repo-policy {:?}: {}= takes {} or {}", spec, key, yes, no);
      }
      field = value == yes;
      return OkStatus();
    };
    if (key == "approval") {
      GANTRY_RETURN_IF_ERROR(choose(p.require_approval, "required", "none"));
    } else if (key == "pull-requests") {
      GANTRY_RETURN_IF_ERROR(choose(p.trust_pull_requests, "trusted", "untrusted"));
    } else if (key == "network") {
      GANTRY_RETURN_IF_ERROR(choose(p.untrusted_network, "on", "off"));
    } else if (key == "project") {
      if (value.empty()) return InvalidArgumentError("--repo-policy {:?}: project= needs a Project's name", spec);
      p.project = std::string(value);
    } else if (key == "secret-env") {
      if (value.empty()) return InvalidArgumentError("--repo-policy {:?}: secret-env= needs a variable's name", spec);
      p.secret_env = std::string(value);
    } else if (key == "provider") {
      auto provider = webhook::ParseProvider(value);
      if (!provider.ok()) return provider.status().WithContext(fmt::format("--repo-policy {:?}", spec));
      p.provider = *provider;
    } else {
      return InvalidArgumentError("--repo-policy {:?}: unknown key {:?} (approval, pull-requests, network, provider, project, secret-env)", spec,
                                  key);
    }
  }
  if (out.first.empty()) return InvalidArgumentError("--repo-policy: expected 'URL key=value ...'");
  return out;
}

Server::Server(store::Store& store, Executor& executor, ServerOptions options)
    : store_(store), executor_(executor), options_(std::move(options)) {}

Server::~Server() { Stop(); }

Status Server::Start() {
  for (const auto& r : options_.repos) GANTRY_RETURN_IF_ERROR(git::ValidateUrl(r, options_.git.allow_file));
  GANTRY_RETURN_IF_ERROR(MakePrivateDir(options_.data_dir));
  std::error_code ec;
  if (auto user = executor_.StepUser()) {
    GANTRY_RETURN_IF_ERROR(CheckSearchable(options_.data_dir, user->first, user->second));
    // Steps run as a host user of their own, and bubblewrap (started as it) must reach the
    // workspaces: the data directory and runs/ become traversable (0711), not listable. Everything
    // else in them stays private; workspaces and artifacts are that user's.
    fs::create_directories(options_.data_dir / "runs", ec);
    for (const fs::path& dir : {options_.data_dir, options_.data_dir / "runs"}) {
      if (::chmod(dir.c_str(), 0711) != 0) return ErrnoError(errno, "chmod 711 " + dir.string());
    }
    log::Info("ci: steps run as host uid {} (gid {})", user->first, user->second);
  }
  for (const char* sub : {"mirrors", "caches", "changed-paths"}) GANTRY_RETURN_IF_ERROR(MakePrivateDir(options_.data_dir / sub));
  fs::remove_all(options_.data_dir / "fork-mirrors", ec);  // left by runs a crash ended; re-queued runs fetch again
  GANTRY_RETURN_IF_ERROR(MakePrivateDir(options_.data_dir / "fork-mirrors"));
  mirrors_ = std::make_unique<git::Mirrors>(options_.data_dir / "mirrors");

  GANTRY_ASSIGN_OR_RETURN(auto interrupted, store_.MarkUnfinishedInterrupted(options_.worker_name));
  Requeue(interrupted, "a restart");
  for (int i = 0; i < std::max(1, options_.workers); ++i) threads_.emplace_back([this] { WorkerLoop(true); });
  for (int i = 0; i < std::max(1, options_.untrusted_workers); ++i) threads_.emplace_back([this] { WorkerLoop(false); });
  if (options_.poll_interval.count() > 0) threads_.emplace_back([this] { PollLoop(); });
  threads_.emplace_back([this] { LeaseLoop(); });
  return OkStatus();
}

void Server::Requeue(const std::vector<store::Run>& interrupted, std::string_view why) {
  for (const auto& r : interrupted) {
    if (options_.requeue_interrupted && r.attempt < options_.max_attempts) {
      Status s = store_.UpdateRun(r.id, RunState::kQueued, fmt::format("re-queued after {} interrupted attempt {}", why, r.attempt));
      log::Info("ci: run {} was interrupted by {}; {}", r.id, why, s.ok() ? "re-queued" : s.message());
    } else {
      std::error_code ec;
      fs::remove(ChangedPathsFile(options_.data_dir, r.id), ec);
      log::Info("ci: run {} was interrupted by {}; left interrupted (attempt {} of {})", r.id, why, r.attempt,
                options_.max_attempts);
    }
  }
}

// During Stop() it goes on renewing until the workers are done: a release left to finish keeps
// its lease.
void Server::LeaseLoop() {
  const auto period = std::max(std::chrono::milliseconds(100), options_.run_lease / 3);
  auto held = [this] {
    std::vector<std::pair<int64_t, int>> out;
    MutexLock lock(mu_);
    for (const auto& [id, a] : active_) {
      if (!a.lost.load()) out.emplace_back(id, a.attempt);
    }
    return out;
  };
  while (true) {
    const auto runs = held();
    if (stop_.load() && runs.empty()) return;
    for (const auto& [id, attempt] : runs) {
      auto renewed = store_.RenewRunLease(id, options_.worker_name, attempt, options_.run_lease);
      if (!renewed.ok()) {
        // The lease still runs until it expires; the next renewal may get through.
        log::Warn("ci: run {}: renew its lease: {}", id, renewed.status().message());
        continue;
      }
      if (*renewed) continue;
      log::Warn("ci: run {}: attempt {} lost its lease (another server has taken the run over): stopping it", id, attempt);
      MutexLock lock(mu_);
      if (auto it = active_.find(id); it != active_.end() && it->second.attempt == attempt) {
        it->second.lost.store(true);
        it->second.cancel.store(true);
        if (it->second.runner != nullptr) it->second.runner->Cancel();
      }
    }
    if (!stop_.load()) {
      auto expired = store_.MarkExpiredInterrupted();
      if (expired.ok()) {
        Requeue(*expired, "an expired lease (its server stopped renewing it)");
      } else {
        log::Warn("ci: take over runs whose lease expired: {}", expired.status().message());
      }
    }
    for (auto waited = std::chrono::milliseconds(0); waited < period; waited += std::chrono::milliseconds(50)) {
      if (stop_.load() && held().empty()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

void Server::Stop() {
  if (stop_.exchange(true)) return;
  {
    // Runs still preparing start no step; a release under way is left to finish (as before a
    // stop was asked), so it is not told to stop.
    MutexLock lock(mu_);
    for (auto& [_, a] : active_) {
      if (a.releasing) continue;
      a.cancel.store(true);
      if (a.runner != nullptr) a.runner->Cancel();
    }
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

Result<Accepted> Server::Accept(const webhook::Event& e) {
  auto ignored = [](std::string note) { return Accepted{.outcome = Accepted::Outcome::kIgnored, .note = std::move(note)}; };
  auto duplicate = [](std::string note) { return Accepted{.outcome = Accepted::Outcome::kDuplicate, .note = std::move(note)}; };
  if (e.kind == webhook::Kind::kPing) return ignored("a ping");
  const std::string* repo = nullptr;
  for (const auto& r : options_.repos) {
    if (SameRepo(r, e)) repo = &r;
  }
  if (repo == nullptr) return ignored("repository is not configured");
  const RepoPolicy& policy = PolicyFor(*repo);
  GANTRY_RETURN_IF_ERROR(CheckProvider(*repo, policy, e.provider));
  if (!e.delivery_id.empty()) {
    auto fresh = store_.RecordDelivery(webhook::ProviderName(e.provider), e.delivery_id);
    if (!fresh.ok()) return StoreUnavailable(fresh.status(), "record the delivery");
    if (!*fresh) return duplicate("duplicate delivery, ignored");
  }
  if (e.deleted) return ignored("the ref was deleted");
  store::Run run;
  run.pipeline = *repo;
  run.repo = *repo;
  run.delivery_id = e.delivery_id;
  run.ref = e.ref;
  run.commit = e.after;
  run.event = store::RunEvent::kPush;
  if (e.kind == webhook::Kind::kPullRequest) {
    const auto& pr = *e.pull_request;
    if (pr.normalized_action != webhook::PrAction::kOpened && pr.normalized_action != webhook::PrAction::kSynchronized &&
        pr.normalized_action != webhook::PrAction::kReopened) {
      return ignored("pull request " + pr.action);
    }
    run.event = store::RunEvent::kPullRequest;
    run.commit = pr.head_sha;
    run.head_ref = pr.head_ref;
    run.ref = "refs/heads/" + pr.base_ref;
    if (pr.from_fork) {
      // Build the fork's commit from the fork; a repo not in Options::repos never gets secrets.
      run.repo = pr.head_clone_url.empty() ? "fork:unknown" : pr.head_clone_url;
      run.message = "pull request from a fork: secrets withheld";
    }
    run.trusted = !pr.from_fork && policy.trust_pull_requests;
    if (!run.trusted && policy.require_approval) {
      run.state = RunState::kAwaitingApproval;
      run.message = fmt::format("{}: awaits approval by a maintainer (gantry runs approve ID)",
                                pr.from_fork ? "pull request from a fork" : "untrusted pull request");
    }
  }
  auto id = store_.CreateRun(run);
  if (!id.ok()) {
    if (id.status().code() == Code::kAlreadyExists) return duplicate("duplicate, ignored: " + id.status().message());
    return StoreUnavailable(id.status(), "create the run");
  }
  if (e.changed_files_known) {
    Value paths = Value::Seq();
    for (const auto& f : e.changed_files) paths.Append(f);
    fs::path file = ChangedPathsFile(options_.data_dir, *id);
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (Status s = WriteFileAtomic(file, value::ToJson(paths), 0600); !s.ok()) {
      // Without it the run's `when: paths:` filters match (they cannot tell), as for a poll.
      log::Warn("ci: run {}: keep changed paths: {}", *id, s.message());
    }
  }
  log::Info("ci: run {} {} for {} {} ({})", *id, store::Name(run.state), git::ScrubUrl(*repo), run.ref,
            webhook::KindName(e.kind));
  return Accepted{.outcome = Accepted::Outcome::kQueued, .run = *id, .state = run.state};
}

const RepoPolicy& Server::PolicyFor(const std::string& repo) const {
  auto it = options_.repo_policies.find(repo);
  return it == options_.repo_policies.end() ? options_.policy : it->second;
}

Result<std::vector<store::Run>> Server::ListRuns(int limit) {
  auto runs = store_.ListRuns({.limit = limit});
  if (!runs.ok()) return StoreUnavailable(runs.status(), "list runs");
  return runs;
}

Result<store::Run> Server::GetRun(int64_t id) {
  auto run = store_.GetRun(id);
  if (!run.ok() && run.status().code() == Code::kNotFound) return NotFoundError("no run {}", id);
  if (!run.ok()) return StoreUnavailable(run.status(), fmt::format("read run {}", id));
  return run;
}

Result<std::vector<store::LogChunk>> Server::ReadLog(int64_t id, std::string_view step, int64_t seq, int max) {
  auto chunks = store_.ReadLog(id, step, seq, max);
  if (!chunks.ok() && chunks.status().code() != Code::kNotFound) {
    return StoreUnavailable(chunks.status(), fmt::format("read the log of run {}", id));
  }
  return chunks;
}

// The audit entry names `by` (the front's identity of the caller: one API token per server today).
Status Server::Approve(int64_t id, std::string_view by) {
  GANTRY_ASSIGN_OR_RETURN(store::Run run, GetRun(id));
  Status s = store_.ApproveRun(run.id, by);
  if (s.code() == Code::kFailedPrecondition || s.code() == Code::kNotFound) return s;
  if (!s.ok()) return StoreUnavailable(s, fmt::format("approve run {}", id));
  // The caller (the API front) writes the audit row, with the request's source and result.
  log::Info("ci: run {} approved by {}", run.id, by);
  return OkStatus();
}

Result<store::Run> Server::Retry(int64_t id, std::string_view by) {
  GANTRY_ASSIGN_OR_RETURN(store::Run old, GetRun(id));
  if (!store::IsFinal(old.state)) {
    return FailedPreconditionError("run {} is {}: only a finished run (succeeded, failed or cancelled) can be retried", id,
                                   store::Name(old.state));
  }
  store::Run run;
  run.repo = old.repo;
  run.pipeline = old.pipeline;
  run.commit = old.commit;
  run.ref = old.ref;
  run.head_ref = old.head_ref;
  run.event = old.event;
  run.trusted = old.trusted;
  run.retry_of = old.id;
  run.message = fmt::format("retry of run {} by {}", old.id, by);
  if (!run.trusted && PolicyFor(run.pipeline).require_approval) {
    run.state = RunState::kAwaitingApproval;
    run.message += ": untrusted, awaits approval by a maintainer (gantry runs approve ID)";
  }
  auto created = store_.CreateRun(run);
  if (!created.ok() && created.status().code() == Code::kNotFound) return NotFoundError("no run {}", id);
  if (!created.ok()) return StoreUnavailable(created.status(), fmt::format("retry run {}", id));
  log::Info("ci: run {} retries run {} ({}), by {}", *created, id, store::Name(run.state), by);
  return GetRun(*created);
}

// mu_ is held throughout: a worker claims a run and registers it in active_ under mu_, so the
// store's "running" below is another server's run, never one this server is just starting or
// finishing.
Result<Cancelled> Server::Cancel(int64_t id) {
  MutexLock lock(mu_);
  if (auto it = active_.find(id); it != active_.end()) {
    Active& a = it->second;
    if (a.outcome) {
      return FailedPreconditionError("run {} is already ending as {}: too late to cancel it", id, store::Name(*a.outcome));
    }
    a.cancel.store(true);
    if (a.runner != nullptr) a.runner->Cancel();
    return a.releasing ? Cancelled::kStoppingRelease : Cancelled::kStopping;
  }
  GANTRY_ASSIGN_OR_RETURN(store::Run run, GetRun(id));
  if (run.state != RunState::kQueued && run.state != RunState::kInterrupted && run.state != RunState::kAwaitingApproval) {
    if (run.state == RunState::kRunning) {
      return FailedPreconditionError("run {} is not running here (another server, {}, has it): cancel it there", id,
                                     run.worker.empty() ? "unnamed" : run.worker);
    }
    return FailedPreconditionError("run {} is {}: only a run that has not ended can be cancelled", id, store::Name(run.state));
  }
  Status s = store_.UpdateRun(id, RunState::kCancelled, "cancelled before it ran");
  if (s.code() == Code::kFailedPrecondition || s.code() == Code::kAborted) return s;  // claimed or ended meanwhile
  if (!s.ok()) return StoreUnavailable(s, fmt::format("cancel run {}", id));
  return Cancelled::kBeforeItRan;
}

void Server::WorkerLoop(bool trusted) {
  while (!stop_.load()) {
    Result<std::optional<store::Run>> claimed = std::optional<store::Run>();
    Active* active = nullptr;
    {
      // Claimed and registered at once: see Cancel(). Stop() sets stop_ before it cancels what is
      // in active_, so a run claimed here is either cancelled by it or never claimed.
      MutexLock lock(mu_);
      if (stop_.load()) return;
      claimed = store_.ClaimNextQueuedRun(options_.worker_name, trusted, options_.run_lease);
      if (claimed.ok() && claimed->has_value()) {
        active = &active_.try_emplace((*claimed)->id).first->second;
        active->attempt = (*claimed)->attempt;
      }
    }
    if (!claimed.ok()) {
      log::Warn("ci: claim a run: {}", claimed.status().message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (active == nullptr) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    Execute(**claimed, *active);
    MutexLock lock(mu_);
    active_.erase((*claimed)->id);
  }
}

// Runs options_.after_success, its stages logged as steps of the run (masked like step logs).
Status Server::Release(const store::Run& run, const Pipeline& pipeline, const fs::path& workspace, const std::string& commit,
                       const Active& active) {
  Masker masker(options_.secrets.AllValues());
  struct {
    Mutex mu;
    std::map<std::string, int64_t, std::less<>> seq GUARDED_BY(mu);  // stage → next chunk
    std::string current GUARDED_BY(mu);                               // the stage logging last
  } stages;
  auto set_state = [&](const std::string& stage, RunState state) {
    if (active.lost.load()) return;
    store::Step step{.name = stage, .state = state};
    if (Status s = store_.UpsertStep(run.id, step); !s.ok()) log::Warn("ci: run {}: step {}: {}", run.id, stage, s.message());
  };
  auto log_line = [&](std::string_view stage, std::string_view line) {
    MutexLock lock(stages.mu);
    auto it = stages.seq.find(stage);
    if (it == stages.seq.end()) {
      if (!stages.current.empty()) set_state(stages.current, RunState::kSucceeded);
      it = stages.seq.emplace(std::string(stage), 0).first;
      set_state(it->first, RunState::kRunning);
    }
    stages.current = it->first;
    if (active.lost.load()) return;
    std::string chunk = masker.MaskAll(std::string(line) + "\n");
    auto stored = AppendStepLog(store_, run.id, stage, it->second, chunk.substr(0, store::kMaxLogChunkBytes));
    if (stored.ok()) {
      it->second = *stored + 1;
    } else {
      log::Warn("ci: run {}: log of {}: {}", run.id, stage, stored.status().message());
    }
  };
  Status result = options_.after_success(SucceededRun{run, pipeline, workspace, commit, log_line, &active.cancel, PolicyFor(run.repo).project});
  std::string last;
  {
    MutexLock lock(stages.mu);
    last = stages.current;
    if (!last.empty()) {
      set_state(last, result.ok() ? RunState::kSucceeded : result.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed);
    }
  }
  if (!result.ok()) log_line(last.empty() ? "release" : last, "error: " + result.message());
  return result;
}

void Server::Execute(const store::Run& run, Active& active) {
  fs::path changed_paths_file = ChangedPathsFile(options_.data_dir, run.id);
  std::string notes;  // what the run's final message says before its outcome
  // Writes the run's final state (whatever the outcome, despite the name), refusing cancels from
  // now on.
  auto fail = [&](RunState state, const std::string& message) {
    {
      MutexLock lock(mu_);
      active.outcome = state;
    }
    std::error_code ec;
    fs::remove(changed_paths_file, ec);  // the run is final
    std::string text = notes.empty() ? message : notes + "; " + message;
    if (active.lost.load()) {
      log::Warn("ci: run {}: attempt {} ended {} after another server took it over: not recorded", run.id, run.attempt,
                store::Name(state));
      return;
    }
    Status s = store_.UpdateRun(run.id, state, text, run.attempt);
    if (!s.ok()) log::Warn("ci: run {}: store: {}", run.id, s.message());
    log::Info("ci: run {} {}: {}", run.id, store::Name(state), text);
  };
  const bool configured = std::find(options_.repos.begin(), options_.repos.end(), run.repo) != options_.repos.end();
  const bool trusted = run.trusted && configured;
  if (!trusted && !executor_.Isolates()) {
    return fail(RunState::kFailed, fmt::format("refused: this run is untrusted and steps run on this host without a "
                                               "sandbox ({}); start the server without --no-sandbox to build it",
                                               executor_.name()));
  }
  // A fork's mirror lives as long as its run.
  std::unique_ptr<git::Mirrors> fork_mirrors;
  struct RemoveWhenDone {
    fs::path dir;
    ~RemoveWhenDone() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } fork_dir;
  if (!configured) {
    fork_dir.dir = ForkMirrorDir(options_.data_dir, run.id);
    fork_mirrors = std::make_unique<git::Mirrors>(fork_dir.dir);
  }
  auto repo = (configured ? *mirrors_ : *fork_mirrors).Open(run.repo, options_.git);
  if (!repo.ok()) return fail(RunState::kFailed, "open " + git::ScrubUrl(run.repo) + ": " + repo.status().message());
  if (auto f = (*repo)->Fetch(); !f.ok()) return fail(RunState::kFailed, "fetch: " + f.status().message());
  Result<std::string> commit = NotFoundError("no commit");
  if (run.event == store::RunEvent::kPullRequest) {
    // The head commit the provider named (the ref is the base branch's), which must be on the
    // pull request's branch: the signed payload is a hint, not a way to build any commit the
    // repository holds. It is built even when the branch has moved on since (what a maintainer
    // approved is that commit; the newer one comes with its own event).
    commit = (*repo)->Resolve(run.commit);
    if (!commit.ok()) return fail(RunState::kFailed, "the pull request's head " + run.commit + ": " + commit.status().message());
    if (!run.head_ref.empty()) {
      auto tip = (*repo)->Resolve("refs/heads/" + run.head_ref);
      if (!tip.ok()) {
        return fail(RunState::kFailed, fmt::format("refused: the pull request's branch {} is not in {}: {}", run.head_ref,
                                                   git::ScrubUrl(run.repo), tip.status().message()));
      }
      auto on_branch = (*repo)->Contains(*tip, *commit);
      if (!on_branch.ok() || !*on_branch) {
        return fail(RunState::kFailed,
                    fmt::format("refused: {} is not on the pull request's branch {} (its tip is {}){}", commit->substr(0, 12),
                                run.head_ref, tip->substr(0, 12),
                                on_branch.ok() ? "" : ": " + on_branch.status().message()));
      }
      if (*tip != *commit) {
        notes = fmt::format("the branch {} has moved on to {}; {} was built, as the event named it", run.head_ref,
                            tip->substr(0, 12), commit->substr(0, 12));
      }
    }
  } else {
    // The ref is the truth, the payload a hint: build what the ref points to after the fetch.
    commit = (*repo)->Resolve(run.ref);
    if (!commit.ok()) return fail(RunState::kFailed, "resolve " + run.ref + ": " + commit.status().message());
    if (!run.commit.empty() && *commit != run.commit) {
      notes = fmt::format("stale payload: it named {} but {} points to {}, which was built", run.commit.substr(0, 12), run.ref,
                          commit->substr(0, 12));
      log::Warn("ci: run {}: {}", run.id, notes);
      if (Status b = store_.BindRunCommit(run.id, *commit); !b.ok()) {
        if (b.code() == Code::kAlreadyExists) {
          notes.clear();
          return fail(RunState::kCancelled, fmt::format("superseded: {} points to {}, and {}", run.ref, commit->substr(0, 12), b.message()));
        }
        log::Warn("ci: run {}: {}", run.id, b.message());
      }
    }
  }
  fs::path run_dir = options_.data_dir / "runs" / std::to_string(run.id);
  fs::path workspace = run_dir / "workspace";
  std::error_code ec;
  fs::remove_all(run_dir, ec);  // a previous, interrupted attempt
  fs::create_directories(run_dir, ec);
  if (Status s = (*repo)->Materialize(*commit, "", workspace); !s.ok()) return fail(RunState::kFailed, "checkout: " + s.message());
  auto text = ReadFile(workspace / ".gantry" / "pipeline.yaml", 1 << 20);
  if (!text.ok()) return fail(RunState::kFailed, ".gantry/pipeline.yaml: " + text.status().message());
  auto pipeline = ParsePipeline(*text, ".gantry/pipeline.yaml");
  if (!pipeline.ok()) return fail(RunState::kFailed, pipeline.status().message());

  RunOptions ro;
  ro.workspace = workspace;
  ro.run_dir = run_dir;
  ro.cache_root = options_.data_dir / "caches";
  ro.commit = *commit;
  ro.withhold_secrets = !trusted;
  ro.trusted = trusted;
  ro.cache_repository = run.pipeline;  // the configured repository (a fork's pull request: its base)
  ro.cache_source = run.repo;
  ro.allow_network = trusted || PolicyFor(run.pipeline).untrusted_network;
  ro.max_step_timeout = trusted ? options_.trusted_step_timeout : options_.untrusted_step_timeout;
  ro.max_workspace_bytes = options_.max_workspace_bytes;
  ro.max_artifact_bytes = options_.max_artifact_bytes;
  ro.max_log_bytes = options_.max_log_bytes;
  ro.cache_quota_bytes = options_.cache_quota_bytes;
  ro.parallelism = options_.parallelism;
  ro.store = &store_;
  ro.run_id = run.id;
  ro.fenced = &active.lost;
  ro.clock = options_.clock;
  Context& c = ro.context;
  c.event = run.event == store::RunEvent::kPullRequest ? "pull_request" : run.event == store::RunEvent::kManual ? "manual" : "push";
  if (run.ref.starts_with("refs/tags/")) {
    c.event = run.event == store::RunEvent::kPush ? "tag" : c.event;
    c.tag = run.ref.substr(10);
  } else if (run.ref.starts_with("refs/heads/")) {
    c.branch = run.ref.substr(11);
  }
  SelectedSecrets secrets = Select(options_.secrets, {.repo = run.pipeline, .event = c.event, .branch = c.branch, .tag = c.tag,
                                                      .trusted = trusted, .protected_branches = options_.protected_branches});
  ro.secrets = secrets.in_scope;
  if (trusted) {
    // The runner fails a step naming a secret it was not given; say here which scope kept it out.
    std::vector<std::string> refused;
    for (const auto& step : pipeline->steps) {
      for (const auto& name : step.secrets) {
        auto it = secrets.out_of_scope.find(name);
        if (it == secrets.out_of_scope.end()) continue;
        std::string line = fmt::format("step {}: secret {} is out of scope for {} {} ({})", step.name, name, c.event,
                                       c.branch.empty() ? c.tag : c.branch, it->second);
        log::Warn("ci: run {}: {}", run.id, line);
        refused.push_back(std::move(line));
      }
    }
    for (auto& line : refused) notes += (notes.empty() ? "" : "; ") + line;
  }
  if (auto saved = ReadFile(changed_paths_file, 16 << 20); saved.ok()) {
    auto paths = value::ParseJson(*saved, changed_paths_file.string());
    if (paths.ok() && paths->IsSeq()) {
      for (const auto& p : paths->items()) {
        if (p.IsString()) c.changed_paths.emplace_back(p.AsString());
      }
      c.changed_paths_known = true;
    } else {
      log::Warn("ci: run {}: {} unreadable; when: paths: filters match", run.id, changed_paths_file.string());
    }
  }
  if (!TriggerMatches(pipeline->triggers, c)) {
    return fail(RunState::kCancelled, fmt::format("not triggered: the pipeline's on: does not match {} {}", c.event, run.ref));
  }
  Runner runner(*pipeline, executor_, ro);
  {
    MutexLock lock(mu_);
    active.runner = &runner;
    if (active.cancel.load()) runner.Cancel();  // cancelled while it was being prepared: no step starts
  }
  auto result = runner.Run();
  const bool release = result.ok() && result->state == RunState::kSucceeded && trusted &&
                       run.event == store::RunEvent::kPush && pipeline->image && options_.after_success;
  {
    // Until fail() settles the outcome, a cancel stops the release (before it starts, too); with no
    // release to follow, the steps' outcome is the run's.
    MutexLock lock(mu_);
    active.runner = nullptr;
    active.releasing = release;
    if (!release) active.outcome = result.ok() ? result->state : RunState::kFailed;
  }
  if (!result.ok()) return fail(RunState::kFailed, result.status().message());
  if (release) {
    // A cancel that came as the last step ended (too late to stop it) still keeps the release from
    // starting: what the user stopped is the deploy.
    Status s = active.cancel.load() ? CancelledError("cancelled before the release started")
                                    : Release(run, *pipeline, workspace, *commit, active);
    if (!s.ok()) {
      fs::remove_all(workspace, ec);
      return fail(s.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed, s.message());
    }
  }
  int failed = 0;
  for (const auto& s : result->steps) failed += s.state == RunState::kFailed;
  std::string late = active.cancel.load() && result->state == RunState::kSucceeded ? " (the cancel came after the last one ended)" : "";
  fail(result->state, result->state == RunState::kSucceeded ? fmt::format("{} steps succeeded{}", result->steps.size(), late)
                      : result->state == RunState::kCancelled ? std::string("cancelled")
                                                              : fmt::format("{} step(s) failed", failed));
  fs::remove_all(workspace, ec);  // artifacts stay in run_dir
}

Result<git::CommitInfo> Server::Commit(std::string_view repo, std::string_view commit) {
  if (std::find(options_.repos.begin(), options_.repos.end(), repo) == options_.repos.end()) {
    return NotFoundError("{} is not a repository this server builds", git::ScrubUrl(repo));
  }
  if (mirrors_ == nullptr) return UnavailableError("the CI server is not started: it has no mirrors yet");
  GANTRY_ASSIGN_OR_RETURN(auto mirror, mirrors_->Open(std::string(repo), options_.git));
  auto log = mirror->Log(commit, "", 1);
  if (!log.ok() || log->empty() || log->front().id != commit) {
    return NotFoundError("commit {} of {} is not in this server's mirror", commit, git::ScrubUrl(repo));
  }
  return std::move(log->front());
}

void Server::PollLoop() {
  while (!stop_.load()) {
    for (const auto& url : options_.repos) {
      auto repo = mirrors_->Open(url, options_.git);
      if (!repo.ok() || !(*repo)->Fetch().ok()) continue;
      for (const auto& branch : options_.poll_branches) {
        auto tip = (*repo)->Resolve("refs/heads/" + branch);
        if (!tip.ok()) continue;
        store::Run run;
        run.pipeline = url;
        run.repo = url;
        run.ref = "refs/heads/" + branch;
        run.commit = *tip;
        run.delivery_id = "poll:" + branch + ":" + *tip;
        auto id = store_.CreateRun(run);
        if (id.ok()) log::Info("ci: run {} queued by polling {} {}", *id, git::ScrubUrl(url), branch);
      }
    }
    for (auto waited = std::chrono::milliseconds(0); waited < options_.poll_interval && !stop_.load();
         waited += std::chrono::milliseconds(100)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace gantry::ci
