#include "ci/server.h"

#include "base/ascii.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <tuple>

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

// Runs of a configured repository's own code build in its mirror; a fork's, in a mirror of their
// own, removed when the run ends (fork mirrors are not shared, so nothing of them outlives a run).
fs::path ForkMirrorDir(const fs::path& data_dir, int64_t run_id) {
  return data_dir / "fork-mirrors" / std::to_string(run_id);
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
    out.host = AsciiLower(authority);
  } else if (size_t colon = rest.find(':'); colon != std::string_view::npos && rest.find('/') > colon) {
    std::string_view host = rest.substr(0, colon);  // scp-like user@host:path
    if (size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
    out.host = AsciiLower(host);
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
    } else if (key == "labels") {
      auto labels = store::ParseLabels(value);
      if (!labels.ok()) return labels.status().WithContext(fmt::format("--repo-policy {:?}: labels=", spec));
      p.labels = *std::move(labels);
    } else if (key == "provider") {
      auto provider = webhook::ParseProvider(value);
      if (!provider.ok()) return provider.status().WithContext(fmt::format("--repo-policy {:?}", spec));
      p.provider = *provider;
    } else {
      return InvalidArgumentError("--repo-policy {:?}: unknown key {:?} (approval, pull-requests, network, provider, project, secret-env, labels)", spec,
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
  GANTRY_RETURN_IF_ERROR(PrepareDataDir(options_.data_dir, executor_));
  std::error_code ec;
  fs::remove_all(options_.data_dir / "fork-mirrors", ec);  // left by runs a crash ended; re-queued runs fetch again
  GANTRY_RETURN_IF_ERROR(MakePrivateDir(options_.data_dir / "fork-mirrors"));
  mirrors_ = std::make_unique<git::Mirrors>(options_.data_dir / "mirrors");

  GANTRY_ASSIGN_OR_RETURN(auto interrupted, store_.MarkUnfinishedInterrupted(options_.worker_name));
  Requeue(interrupted, "a restart");
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { WorkerLoop(true); });
  for (int i = 0; i < options_.untrusted_workers; ++i) threads_.emplace_back([this] { WorkerLoop(false); });
  if (options_.poll_interval.count() > 0) threads_.emplace_back([this] { PollLoop(); });
  threads_.emplace_back([this] { LeaseLoop(); });
  return OkStatus();
}

void Server::Requeue(const std::vector<store::Run>& interrupted, std::string_view why) {
  for (const auto& r : interrupted) {
    if (r.cancel_requested) {
      // Its server or worker was lost before it saw the cancel: what the user asked for stands.
      Status s = store_.UpdateRun(r.id, RunState::kCancelled, fmt::format("cancelled (attempt {} was interrupted by {})", r.attempt, why));
      log::Info("ci: run {} was interrupted by {} after a cancel was asked; {}", r.id, why, s.ok() ? "cancelled" : s.message());
    } else if (options_.requeue_interrupted && r.attempt < options_.max_attempts) {
      Status s = store_.UpdateRun(r.id, RunState::kQueued, fmt::format("re-queued after {} interrupted attempt {}", why, r.attempt));
      log::Info("ci: run {} was interrupted by {}; {}", r.id, why, s.ok() ? "re-queued" : s.message());
    } else {
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
    std::vector<std::tuple<int64_t, int, std::string>> out;
    MutexLock lock(mu_);
    for (const auto& [id, a] : active_) {
      if (!a.lost.load()) out.emplace_back(id, a.attempt, a.holder.empty() ? options_.worker_name : a.holder);
    }
    return out;
  };
  while (true) {
    const auto runs = held();
    if (stop_.load() && runs.empty()) return;
    for (const auto& [id, attempt, holder] : runs) {
      auto renewed = store_.RenewRunLease(id, holder, attempt, options_.run_lease);
      if (!renewed.ok()) {
        // The lease still runs until it expires; the next renewal may get through.
        log::Warn("ci: run {}: renew its lease: {}", id, renewed.status().message());
        continue;
      }
      if (*renewed == store::Renewal::kRenewed) continue;
      MutexLock lock(mu_);
      auto it = active_.find(id);
      if (it == active_.end() || it->second.attempt != attempt) continue;
      if (*renewed == store::Renewal::kCancelRequested) {
        // Asked on another replica (Cancel): as if asked here.
        if (!it->second.outcome && !it->second.cancel.exchange(true)) {
          log::Info("ci: run {}: cancelled through another server", id);
          if (it->second.runner != nullptr) it->second.runner->Cancel();
        }
        continue;
      }
      log::Warn("ci: run {}: attempt {} lost its lease (another server has taken the run over): stopping it", id, attempt);
      it->second.lost.store(true);
      it->second.cancel.store(true);
      if (it->second.runner != nullptr) it->second.runner->Cancel();
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
  std::vector<ReleaseThread> releases;
  {
    MutexLock lock(mu_);
    releases.swap(release_threads_);
  }
  for (auto& r : releases) r.thread.join();
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
  if (e.changed_files_known) run.changed_paths = e.changed_files;
  run.labels = policy.labels;
  run.project = policy.project;
  auto id = store_.CreateRun(run);
  if (!id.ok()) {
    if (id.status().code() == Code::kAlreadyExists) return duplicate("duplicate, ignored: " + id.status().message());
    return StoreUnavailable(id.status(), "create the run");
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
  run.labels = PolicyFor(run.pipeline).labels;
  run.project = PolicyFor(run.pipeline).project;
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
      // Another server or a remote worker has it: it sees the request at its next renewal.
      Status s = store_.RequestRunCancel(id);
      if (s.code() == Code::kFailedPrecondition) return s;  // it ended meanwhile
      if (!s.ok()) return StoreUnavailable(s, fmt::format("cancel run {}", id));
      return Cancelled::kRequested;
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
      claimed = store_.ClaimNextQueuedRun(options_.worker_name, trusted, options_.run_lease, options_.labels);
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
    // stage → next chunk; from FirstLogSeq(run.attempt), as a step's, so that a release resumed
    // by a later attempt printing what the dead one printed is not taken for a retry of its chunks
    std::map<std::string, int64_t, std::less<>> seq GUARDED_BY(mu);
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
      it = stages.seq.emplace(std::string(stage), FirstLogSeq(run.attempt)).first;
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

Job Server::JobOf(const store::Run& run) const {
  const bool configured = std::find(options_.repos.begin(), options_.repos.end(), run.repo) != options_.repos.end();
  Job job;
  job.run = run;
  job.trusted = run.trusted && configured;
  job.allow_network = job.trusted || PolicyFor(run.pipeline).untrusted_network;
  job.max_step_timeout = job.trusted ? options_.trusted_step_timeout : options_.untrusted_step_timeout;
  job.max_workspace_bytes = options_.max_workspace_bytes;
  job.max_artifact_bytes = options_.max_artifact_bytes;
  job.max_log_bytes = options_.max_log_bytes;
  job.cache_quota_bytes = options_.cache_quota_bytes;
  job.parallelism = options_.parallelism;
  job.releases = options_.after_success != nullptr;
  job.lease = options_.run_lease;
  const Context c = ContextOf(run);
  SelectedSecrets secrets = Select(options_.secrets, {.repo = run.pipeline, .event = c.event, .branch = c.branch, .tag = c.tag,
                                                      .trusted = job.trusted, .protected_branches = options_.protected_branches});
  if (job.trusted) {
    job.secrets = std::move(secrets.in_scope);
    job.out_of_scope = std::move(secrets.out_of_scope);
  }
  return job;
}

void Server::Execute(const store::Run& run, Active& active) {
  std::string notes;  // what the run's final message says before its outcome
  // Writes the run's final state (whatever the outcome, despite the name), refusing cancels from
  // now on.
  auto fail = [&](RunState state, const std::string& message) {
    End(run, active, state, notes.empty() ? message : notes + "; " + message);
  };
  const Job job = JobOf(run);
  if (Status s = CheckIsolation(job, executor_); !s.ok()) {
    return fail(RunState::kFailed, s.message() + "; start the server without --no-sandbox to build it");
  }
  // A fork's mirror lives as long as its run.
  const bool configured = std::find(options_.repos.begin(), options_.repos.end(), run.repo) != options_.repos.end();
  auto source = RunRepository::Open(*mirrors_, run, !configured, ForkMirrorDir(options_.data_dir, run.id), options_.git);
  if (!source.ok()) return fail(RunState::kFailed, source.status().message());
  const fs::path run_dir = options_.data_dir / "runs" / std::to_string(run.id);
  auto checked_out = CheckOut((*source)->repo(), run, run_dir, [&](const std::string& commit) { return store_.BindRunCommit(run.id, commit); });
  if (!checked_out.ok()) {
    return fail(checked_out.status().code() == Code::kAborted ? RunState::kCancelled : RunState::kFailed,
                checked_out.status().message());
  }
  const CheckedOut& co = *checked_out;
  notes = co.notes;
  RunOptions ro = RunOptionsOf(job, co, run_dir, options_.data_dir / "caches");
  ro.store = &store_;
  ro.fenced = &active.lost;
  ro.clock = options_.clock;
  for (auto& line : OutOfScopeNotes(job, co.pipeline, ro.context)) notes += (notes.empty() ? "" : "; ") + line;
  if (!TriggerMatches(co.pipeline.triggers, ro.context)) {
    return fail(RunState::kCancelled,
                fmt::format("not triggered: the pipeline's on: does not match {} {}", ro.context.event, run.ref));
  }
  Runner runner(co.pipeline, executor_, ro);
  {
    MutexLock lock(mu_);
    active.runner = &runner;
    if (active.cancel.load()) runner.Cancel();  // cancelled while it was being prepared: no step starts
  }
  auto result = runner.Run();
  const bool release = result.ok() && result->state == RunState::kSucceeded && job.trusted &&
                       run.event == store::RunEvent::kPush && co.pipeline.image && options_.after_success;
  {
    // Until fail() settles the outcome, a cancel stops the release (before it starts, too); with no
    // release to follow, the steps' outcome is the run's.
    MutexLock lock(mu_);
    active.runner = nullptr;
    active.releasing = release;
    if (!release) active.outcome = result.ok() ? result->state : RunState::kFailed;
  }
  std::error_code ec;
  if (!result.ok()) return fail(RunState::kFailed, result.status().message());
  if (release) {
    // A cancel that came as the last step ended (too late to stop it) still keeps the release from
    // starting: what the user stopped is the deploy.
    Status s = active.cancel.load() ? CancelledError("cancelled before the release started")
                                    : Release(run, co.pipeline, co.workspace, co.commit, active);
    if (!s.ok()) {
      fs::remove_all(co.workspace, ec);
      return fail(s.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed, s.message());
    }
  }
  fail(result->state, RunOutcome(*result, active.cancel.load()));
  fs::remove_all(co.workspace, ec);  // artifacts stay in run_dir
}

void Server::End(const store::Run& run, Active& active, RunState state, const std::string& message) {
  {
    MutexLock lock(mu_);
    active.outcome = state;
  }
  if (active.lost.load()) {
    log::Warn("ci: run {}: attempt {} ended {} after another server took it over: not recorded", run.id, active.attempt,
              store::Name(state));
    return;
  }
  Status s = store_.UpdateRun(run.id, state, message, active.attempt);
  if (!s.ok()) {
    // Not recorded: the run stays running until its lease expires and it is taken over.
    log::Warn("ci: run {} ended {} but the store did not record it: {}", run.id, store::Name(state), s.message());
    return;
  }
  log::Info("ci: run {} {}: {}", run.id, store::Name(state), message);
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
        run.labels = PolicyFor(url).labels;
        run.project = PolicyFor(url).project;
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
