#include "server/pull_merges.h"

#include <random>

#include <fmt/format.h>

#include "base/log.h"
#include "base/retry.h"

namespace gantry::server {

using store::NotificationState;

Result<std::unique_ptr<PullMerges>> PullMerges::Start(PullMergeOptions options, bool start) {
  std::vector<Forge> forges;
  for (const ForgeConfig& c : options.forges) {
    GANTRY_ASSIGN_OR_RETURN(auto client, forge::New(c.options));
    forges.push_back({c, std::move(client)});
  }
  std::unique_ptr<PullMerges> p(new PullMerges(std::move(options), std::move(forges)));
  if (start) {
    p->thread_ = std::thread([m = p.get()] {
      while (true) {
        m->MergeDue();
        MutexLock lock(m->mu_);
        if (m->stop_) return;
        m->cv_.WaitFor(m->mu_, std::min(m->options_.poll, m->options_.initial_backoff));
        if (m->stop_) return;
      }
    });
  }
  return p;
}

PullMerges::PullMerges(PullMergeOptions options, std::vector<Forge> forges)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock()),
      forges_(std::move(forges)) {
  if (options_.metrics != nullptr) {
    counters_ = &options_.metrics->AddCounterFamily(
        "gantry_pull_merges_total",
        "Looks at pull requests of releases to merge, by forge and result (merged, waiting, retried, failed).",
        {"forge", "result"});
  }
}

PullMerges::~PullMerges() { Stop(); }

void PullMerges::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.NotifyAll();
  }
  if (thread_.joinable()) thread_.join();
}

Result<release::OpenedPullRequest> PullMerges::Open(const std::string& repo_url, const forge::PullRequestSpec& spec) const {
  for (const Forge& f : forges_) {
    auto path = forge::RepoPath(f.config.prefix, repo_url);
    if (!path) continue;
    // The forge sees a push a moment after it: until Gitea has processed the first push to a new
    // repository it counts the repository as empty and answers 404 on all of its pull requests. So
    // a pull request not found, like a forge that is down, is asked again with backoff until
    // open_wait has passed; the last answer was a 404 → NotFound, still.
    Status not_found;
    auto pr = RetryResult<forge::PullRequest>(
        {.initial = options_.initial_backoff, .max_delay = 8 * options_.initial_backoff, .max_attempts = 1000,
         .max_elapsed = options_.open_wait},
        [&]() -> Result<forge::PullRequest> {
          auto r = f.client->OpenOrUpdatePullRequest(*path, spec);
          not_found = r.ok() || r.status().code() != Code::kNotFound ? OkStatus() : r.status();
          if (!not_found.ok()) return UnavailableError("{}", not_found.message());
          return r;
        },
        clock_);
    if (!pr.ok()) return not_found.ok() ? pr.status() : NotFoundError("{}", pr.status().message());
    return release::OpenedPullRequest{.forge = f.config.prefix, .repo = *path, .pull = *std::move(pr)};
  }
  return FailedPreconditionError("no --forge covers the config repository {} (a pull request needs its forge)",
                                 git::ScrubUrl(repo_url));
}

PullMerges::Outcome PullMerges::Look(const Forge& f, const store::PullMerge& m) const {
  // A failure of the forge: tried again when it may pass, else final.
  auto failed = [](const Status& s) {
    return Outcome{forge::Retryable(s) ? NotificationState::kPending : NotificationState::kFailed,
                   std::string(s.message()), forge::Retryable(s)};
  };
  auto pr = f.client->GetPullRequest(m.repo, m.number);
  if (!pr.ok()) return failed(pr.status());
  if (pr->merged) return {NotificationState::kDelivered, "merged"};
  if (!pr->open) return {NotificationState::kFailed, "the pull request was closed without merging"};
  // Forges take a moment to see a push; and a head someone else pushed is never merged.
  if (pr->head_sha != m.sha) {
    return {NotificationState::kPending,
            fmt::format("the pull request's head is {}, not {} that Gantry pushed: waiting for the forge to see the "
                        "push (a change Gantry did not make is never merged)",
                        pr->head_sha.substr(0, 12), m.sha.substr(0, 12))};
  }
  auto checks = f.client->Checks(m.repo, m.sha);
  if (!checks.ok()) return failed(checks.status());
  const forge::Verdict verdict = forge::Evaluate(*checks, m.required_checks);
  if (verdict.kind == forge::Verdict::kFail) return {NotificationState::kFailed, verdict.reason};
  if (verdict.kind == forge::Verdict::kWait) return {NotificationState::kPending, verdict.reason};
  const auto method = forge::ParseMergeMethod(m.method);
  if (!method) return {NotificationState::kFailed, fmt::format("unknown merge method {:?}", m.method)};
  Status merged = f.client->MergePullRequest(m.repo, m.number, m.sha, *method);
  if (merged.ok()) return {NotificationState::kDelivered, "merged"};
  // Not mergeable yet (the forge is still computing it), or the head just moved: look again.
  if (merged.code() == Code::kFailedPrecondition || merged.code() == Code::kAborted) {
    return {NotificationState::kPending, std::string(merged.message())};
  }
  return failed(merged);
}

void PullMerges::MergeDue() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  constexpr int kBatch = 20;
  auto due = options_.store->ListPullMerges(clock_.WallNow(), kBatch);
  if (!due.ok()) {
    log::Warn("pull merges: read the outbox: {}", due.status().ToString());
    return;
  }
  for (const store::PullMerge& m : *due) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    const Forge* f = nullptr;
    for (const Forge& candidate : forges_)
      if (candidate.config.prefix == m.forge) f = &candidate;
    Outcome out = f == nullptr ? Outcome{NotificationState::kFailed, fmt::format("the forge {} is no longer configured (--forge)", m.forge)}
                               : Look(*f, m);
    const auto now = clock_.WallNow();
    auto next = now + options_.poll;
    if (out.retry) {
      next = now + BackoffDelay({.initial = options_.initial_backoff, .max_delay = options_.max_backoff}, m.attempts + 1,
                                std::uniform_real_distribution<double>(0, 1)(rng));
    }
    if (out.state == NotificationState::kPending && next > m.deadline) {
      out.state = NotificationState::kFailed;
      out.note = fmt::format("gave up at the deadline after {} looks: {}", m.attempts + 1, out.note);
    }
    const std::string what = fmt::format("pull request {} of {} (release {})", m.number, m.repo, m.release_id);
    if (out.state == NotificationState::kDelivered) log::Info("pull merges: merged {} at {}", what, m.sha.substr(0, 12));
    if (out.state == NotificationState::kFailed) log::Warn("pull merges: not merging {}: {}", what, out.note);
    Status recorded = options_.store->RecordPullMergeAttempt(m.id, m.version, out.state, out.note, next);
    if (!recorded.ok() && recorded.code() != Code::kAborted) {
      log::Warn("pull merges: {}", recorded.ToString());
      return;  // the store is unwell: try again at the next poll
    }
    Count(m.forge, out.state == NotificationState::kDelivered ? "merged"
                   : out.state == NotificationState::kFailed  ? "failed"
                   : out.retry                                ? "retried"
                                                              : "waiting");
  }
}

void PullMerges::Count(std::string_view forge, std::string_view result) {
  if (counters_ != nullptr) counters_->With({std::string(forge), std::string(result)}).Inc();
}

}  // namespace gantry::server
