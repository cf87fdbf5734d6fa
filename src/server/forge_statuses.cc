#include "server/forge_statuses.h"

#include <cstdlib>
#include <random>

#include <fmt/format.h>

#include "base/log.h"
#include "base/retry.h"
#include "server/previews.h"
#include "value/value.h"

namespace gantry::server {
namespace {

using forge::State;

std::vector<std::string_view> Words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t start = s.find_first_not_of(" \t", at);
    if (start == std::string_view::npos) break;
    const size_t end = std::min(s.find_first_of(" \t", start), s.size());
    out.push_back(s.substr(start, end - start));
    at = end;
  }
  return out;
}

// The run's state on the forge, and the description.
std::pair<State, std::string> RunStatus(const store::Run& run) {
  switch (run.state) {
    case store::RunState::kQueued: return {State::kPending, "queued"};
    case store::RunState::kAwaitingApproval: return {State::kPending, "waiting for approval (untrusted code)"};
    case store::RunState::kInterrupted: return {State::kPending, "interrupted; it runs again"};
    case store::RunState::kRunning: return {State::kRunning, "running"};
    case store::RunState::kSucceeded: return {State::kSuccess, "all steps succeeded"};
    case store::RunState::kCancelled: return {State::kError, "cancelled"};
    case store::RunState::kSkipped: return {State::kSuccess, "skipped"};
    case store::RunState::kFailed: break;
  }
  for (const store::Step& step : run.steps) {
    if (step.state != store::RunState::kFailed) continue;
    return {State::kFailure, step.exit_code ? fmt::format("step {} failed (exit {})", step.name, *step.exit_code)
                                            : fmt::format("step {} failed", step.name)};
  }
  return {State::kFailure, run.message.empty() ? "failed" : run.message};
}

// The environment's state over its clusters, and the description.
std::pair<State, std::string> DeployStatus(const std::vector<store::Target>& targets, std::string_view env) {
  size_t total = 0, healthy = 0;
  for (const store::Target& t : targets) {
    if (t.env != env || t.state == store::TargetState::kSuperseded) continue;
    ++total;
    if (t.state == store::TargetState::kFailed) {
      return {State::kFailure, fmt::format("{}: {}", t.cluster, t.message.empty() ? "failed" : t.message)};
    }
    if (t.state == store::TargetState::kRolledBack) return {State::kError, fmt::format("{}: rolled back", t.cluster)};
    if (t.state == store::TargetState::kHealthy) ++healthy;
  }
  if (total > 0 && healthy == total) return {State::kSuccess, fmt::format("healthy on {} cluster(s)", total)};
  return {State::kPending, fmt::format("deploying: {} of {} cluster(s) healthy", healthy, total)};
}

}  // namespace

Result<ForgeConfig> ParseForgeFlag(std::string_view spec) {
  const auto words = Words(spec);
  auto bad = [&](std::string_view why) { return InvalidArgumentError("--forge {:?}: {}", spec, why); };
  if (words.empty() || words[0].find('=') != std::string_view::npos) {
    return bad("expected 'PREFIX type=gitea|github|gitlab token-env=VAR [api=URL] [ca-file=PEM]'");
  }
  ForgeConfig c;
  c.prefix = std::string(words[0]);
  if (!c.prefix.ends_with('/')) c.prefix += '/';
  if (!c.prefix.starts_with("https://") && !c.prefix.starts_with("http://")) {
    return bad("the prefix must be the forge's http(s):// URL, like https://gitea.example/");
  }
  std::optional<forge::Kind> kind;
  std::string token_env;
  for (size_t i = 1; i < words.size(); ++i) {
    const size_t eq = words[i].find('=');
    if (eq == std::string_view::npos) return bad(fmt::format("{:?} is not KEY=VALUE", words[i]));
    const std::string_view key = words[i].substr(0, eq), value = words[i].substr(eq + 1);
    if (key == "type") {
      kind = forge::ParseKind(value);
      if (!kind) return bad(fmt::format("unknown type {:?} (gitea, github or gitlab)", value));
    } else if (key == "token-env") {
      token_env = std::string(value);
    } else if (key == "api") {
      c.options.api_url = std::string(value);
    } else if (key == "ca-file") {
      c.options.ca_file = std::string(value);
    } else {
      return bad(fmt::format("unknown key {:?} (type, token-env, api, ca-file)", key));
    }
  }
  if (!kind) return bad("type= is required");
  if (token_env.empty()) return bad("token-env= is required (the token is never a flag)");
  const char* token = std::getenv(token_env.c_str());
  if (token == nullptr || *token == '\0') return bad(fmt::format("token-env={}: the variable is not set", token_env));
  c.options.kind = *kind;
  c.options.token = token;
  if (c.options.api_url.empty()) {
    c.options.api_url = *kind == forge::Kind::kGitHub ? "https://api.github.com"
                        : *kind == forge::Kind::kGitLab ? c.prefix + "api/v4"
                                                        : c.prefix + "api/v1";
  }
  GANTRY_RETURN_IF_ERROR(forge::New(c.options).status().WithContext(fmt::format("--forge {}", c.prefix)));
  return c;
}

Result<std::unique_ptr<ForgeStatuses>> ForgeStatuses::Start(EventBus& bus, ForgeStatusOptions options, bool start) {
  std::vector<Forge> forges;
  for (const ForgeConfig& c : options.forges) {
    GANTRY_ASSIGN_OR_RETURN(auto client, forge::New(c.options));
    forges.push_back({c, std::move(client)});
  }
  std::unique_ptr<ForgeStatuses> f(new ForgeStatuses(bus, std::move(options), std::move(forges)));
  if (start) {
    f->feed_ = std::thread([p = f.get()] {
      while (true) {
        {
          MutexLock lock(p->mu_);
          if (p->stop_) return;
        }
        if (p->subscription_->dropped()) {
          log::Warn("forge statuses: the event feed fell behind; events were missed");
          p->subscription_ = p->bus_.Subscribe();
        }
        auto e = p->subscription_->Next(std::chrono::milliseconds(200));
        if (!e) continue;
        auto s = p->Translate(*e);
        if (!s) continue;
        if (auto put = p->options_.store->PutForgeStatus(*s); !put.ok()) {
          log::Warn("forge statuses: {} of {} on {}: {}", s->context, s->sha, s->repo, put.status().ToString());
          continue;
        }
        MutexLock lock(p->mu_);
        p->work_ = true;
        p->cv_.NotifyAll();
      }
    });
    f->delivery_ = std::thread([p = f.get()] {
      while (true) {
        p->DeliverDue();
        MutexLock lock(p->mu_);
        if (p->stop_) return;
        if (!p->work_) p->cv_.WaitFor(p->mu_, p->options_.poll);
        p->work_ = false;
        if (p->stop_) return;
      }
    });
  }
  return f;
}

ForgeStatuses::ForgeStatuses(EventBus& bus, ForgeStatusOptions options, std::vector<Forge> forges)
    : bus_(bus),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock()),
      forges_(std::move(forges)),
      subscription_(bus.Subscribe()) {
  if (options_.metrics != nullptr) {
    counters_ = &options_.metrics->AddCounterFamily(
        "gantry_forge_statuses_total", "Commit statuses set on forges by forge and result (delivered, retried, failed).",
        {"forge", "result"});
  }
}

ForgeStatuses::~ForgeStatuses() { Stop(); }

void ForgeStatuses::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.NotifyAll();
  }
  if (feed_.joinable()) feed_.join();
  if (delivery_.joinable()) delivery_.join();
}

std::optional<std::pair<const ForgeStatuses::Forge*, std::string>> ForgeStatuses::Locate(std::string_view repo_url) const {
  for (const Forge& f : forges_) {
    if (auto path = forge::RepoPath(f.config.prefix, repo_url)) return std::pair{&f, *std::move(path)};
  }
  return std::nullopt;
}

const ForgeStatuses::Forge* ForgeStatuses::Find(std::string_view prefix) const {
  for (const Forge& f : forges_) {
    if (f.config.prefix == prefix) return &f;
  }
  return nullptr;
}

std::optional<store::ForgeStatus> ForgeStatuses::Translate(const Event& event) {
  if (event.type != "run" && event.type != "release") return std::nullopt;
  auto data = value::ParseJson(event.data, "event");
  if (!data.ok()) return std::nullopt;
  const auto now = clock_.WallNow();
  store::ForgeStatus s{.next_attempt_at = now, .deadline = now + options_.deadline};
  const std::string& base = options_.public_url;
  store::Run run;
  std::pair<State, std::string> status;
  if (event.type == "run") {
    auto r = options_.store->GetRun(value::IntAt(&*data, {"id"}));
    if (!r.ok()) return std::nullopt;
    run = *std::move(r);
    status = RunStatus(run);
    s.context = "gantry/ci";
    s.sha = run.commit;
    if (!base.empty()) s.target_url = fmt::format("{}/runs/{}", base, run.id);
  } else {
    const int64_t id = value::IntAt(&*data, {"release"});
    const std::string env = value::StringAt(&*data, {"environment"});
    auto release = options_.store->GetRelease(id);
    if (!release.ok() || !release->run_id || env.empty()) return std::nullopt;
    auto r = options_.store->GetRun(*release->run_id);
    auto targets = options_.store->ListTargets(id);
    if (!r.ok() || !targets.ok()) return std::nullopt;
    run = *std::move(r);
    status = DeployStatus(*targets, env);
    s.context = "gantry/deploy/" + env;
    s.sha = release->source_revision.empty() ? run.commit : release->source_revision;
    if (!base.empty()) s.target_url = fmt::format("{}/apps/{}/releases/{}", base, release->app, id);
  }
  auto where = Locate(run.repo);
  if (!where || s.sha.empty()) return std::nullopt;
  s.forge = where->first->config.prefix;
  s.repo = where->second;
  s.state = std::string(forge::Name(status.first));
  s.description = std::move(status.second);
  return s;
}

void ForgeStatuses::DeliverDue() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  while (true) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    auto due = options_.store->ListForgeStatuses({.due_by = clock_.WallNow(), .limit = 20});
    if (!due.ok()) {
      log::Warn("forge statuses: read the outbox: {}", due.status().ToString());
      return;
    }
    for (const store::ForgeStatus& s : *due) {
      const Forge* f = Find(s.forge);
      Status sent;
      bool retryable = false;
      if (f == nullptr) {
        sent = NotFoundError("the forge {} is no longer configured (--forge)", s.forge);
      } else if (s.context == kCommentContext) {
        // A pull request's preview comment (server/previews.h), keyed "pull/N".
        sent = f->client->PutComment(s.repo, std::atoll(s.sha.c_str() + s.sha.find('/') + 1), kMarker, s.description)
                   .status();
        retryable = forge::Retryable(sent);
      } else {
        sent = f->client->SetCommitStatus(
            s.repo, {.sha = s.sha, .state = forge::ParseState(s.state).value_or(State::kError), .context = s.context,
                     .description = s.description, .target_url = s.target_url});
        retryable = forge::Retryable(sent);
      }
      const auto after = clock_.WallNow();
      auto delivery = store::NotificationState::kDelivered;
      auto next = after;
      std::string error;
      if (!sent.ok()) {
        error = std::string(sent.message());
        next = after + BackoffDelay({.initial = options_.initial_backoff, .max_delay = options_.max_backoff},
                                    s.attempts + 1, std::uniform_real_distribution<double>(0, 1)(rng));
        if (!retryable || next > s.deadline) {
          delivery = store::NotificationState::kFailed;
          if (retryable) error += fmt::format(" (gave up after {} attempts)", s.attempts + 1);
          log::Warn("forge status {} of {} on {}: {}", s.context, s.sha, s.repo, error);
        } else {
          delivery = store::NotificationState::kPending;
        }
      }
      Status recorded = options_.store->RecordForgeStatusAttempt(s.id, s.version, delivery, error, next);
      if (!recorded.ok() && recorded.code() != Code::kAborted) {
        log::Warn("forge statuses: {}", recorded.ToString());
        return;  // the store is unwell: try again at the next poll
      }
      Count(s.forge, delivery == store::NotificationState::kDelivered ? "delivered"
                     : delivery == store::NotificationState::kFailed  ? "failed"
                                                                      : "retried");
    }
    if (due->size() < 20) return;
  }
}

void ForgeStatuses::Count(std::string_view forge, std::string_view result) {
  if (counters_ != nullptr) counters_->With({std::string(forge), std::string(result)}).Inc();
}

}  // namespace gantry::server
