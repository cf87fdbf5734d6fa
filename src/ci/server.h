#pragma once
// ci/server: the CI part of `gantry server`.
//
//   webhook POST /webhook → webhook::Verify (HMAC over the raw body, body limit) → the repository
//            must be one of Options::repos (host and path of the clone URL) and the provider the one
//            pinned for it → Store::RecordDelivery (a redelivery answers 200 "duplicate") → a run
//            (Store::CreateRun, which refuses a second run of one (repo, ref, commit, event), so a
//            replay with a new delivery id is a duplicate too). Untrusted runs (below) are created
//            awaiting_approval unless the repository's policy says otherwise.
//   poller   every poll_interval, for each repo and poll branch: Fetch, Resolve, and a queued run
//            for the tip (CreateRun refuses it when a webhook or an earlier poll queued it).
//   workers  `workers` threads claim trusted runs only, `untrusted_workers` untrusted runs only
//            (Store::ClaimNextQueuedRun), so pull requests from forks never delay pushes → fetch
//            → for a push or tag, the commit the ref points to now (a payload whose `after` is not
//            the tip is stale: the tip is built, Store::BindRunCommit, and the run says so) →
//            Materialize into <data_dir>/runs/<id>/workspace → .gantry/pipeline.yaml → triggers →
//            Runner.
//   restart  Start() marks this worker's unfinished runs interrupted and re-queues those with
//            attempt < max_attempts (requeue_interrupted), so none is ever left running.
//   REST     GET /api/runs, GET /api/runs/ID, GET /api/runs/ID/logs[?follow=1] (a streamed text
//            response that ends when the run is final), POST /api/runs/ID/cancel,
//            POST /api/runs/ID/approve. Every /api/ request needs the bearer token api_token.
//
// Trust: a push or tag of a configured repository is trusted; a pull request from a branch of it is
// trusted unless its policy says `pull-requests=untrusted`; a pull request from a fork never is (it
// builds the fork's head commit: run.repo is the fork's clone URL, fetched into a mirror of its
// own under <data_dir>/fork-mirrors/<run id>, removed when the run ends). Untrusted runs get no
// secrets, no network unless the policy allows it, steps capped at untrusted_step_timeout, their
// own cache scope (RunOptions::trusted), and no release.
//
// Secrets are scoped (ci/secret_scopes.h): a run is given only the secrets in its scope; a step
// naming one out of scope fails before it starts, and the run's message names the secret and its
// scope.
// Which paths a push changed is known only from the webhook payload; it is kept in
// <data_dir>/changed-paths/<run id>.json until the run is final, so a run re-queued after a restart
// still filters `when: paths:` (runs queued by polling do not know their changed paths: their path
// filters match).
//
// Thread-safety: Start/Stop from one thread; everything else runs on the server's own threads.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string_view>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "ci/executor.h"
#include "ci/pipeline.h"
#include "ci/secret_scopes.h"
#include "git/git.h"
#include "http/http.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace gantry::ci {

class Runner;

// What the release hook is given: a run whose steps all succeeded, its pipeline (with image:) and
// workspace (the steps' outputs are still there).
struct SucceededRun {
  const store::Run& run;
  const Pipeline& pipeline;
  const std::filesystem::path& workspace;
  const std::string& commit;
  // One line of progress of `stage`: stored (masked) as the log of a step named `stage`, which is
  // created running at its first line and ends with the hook.
  std::function<void(std::string_view stage, std::string_view line)> log;
  const std::atomic<bool>* cancel;  // set by POST /api/runs/ID/cancel
};

// What a repository lets untrusted code do, and who may send its webhooks.
struct RepoPolicy {
  bool require_approval = true;     // untrusted runs wait for POST /api/runs/ID/approve
  bool trust_pull_requests = true;  // pull requests from the repository's own branches are trusted
  bool untrusted_network = false;   // untrusted runs' steps may use the network
  // The only provider whose webhooks are accepted for the repository. kAuto: the one its URL's host
  // implies (github.com, gitlab.com, bitbucket.org, codeberg.org), else any provider that signs
  // the body — never GitLab's plain token, which must be pinned.
  webhook::Provider provider = webhook::Provider::kAuto;
};

struct ServerOptions {
  std::vector<std::string> repos;  // clone URLs accepted from webhooks and polled
  webhook::Config webhook;         // secret required
  std::filesystem::path data_dir;  // mirrors/, fork-mirrors/, runs/, caches/ (created 0700)
  SecretScopes secrets;
  std::vector<std::string> protected_branches = {"main"};  // globs, for [protected] secrets
  RepoPolicy policy;                                // every repository's, unless overridden
  std::map<std::string, RepoPolicy> repo_policies;  // by URL as in `repos`
  std::chrono::milliseconds poll_interval{0};  // 0 = no polling
  std::vector<std::string> poll_branches = {"main"};
  int workers = 1;            // threads for trusted runs
  int untrusted_workers = 1;  // threads for untrusted runs
  std::chrono::milliseconds trusted_step_timeout{0};  // caps every step's timeout; 0 = no cap
  std::chrono::milliseconds untrusted_step_timeout{std::chrono::minutes(30)};
  // Per run (RunOptions): workspace after each step, artifacts kept, logs; all caches together.
  uint64_t max_workspace_bytes = 20ull << 30;
  uint64_t max_artifact_bytes = 1ull << 30;
  uint64_t max_log_bytes = 64ull << 20;
  uint64_t cache_quota_bytes = 5ull << 30;
  int parallelism = 4;
  std::string worker_name = "gantry";
  bool requeue_interrupted = true;
  int max_attempts = 3;
  git::OpenOptions git;
  // Every /api/ request needs "Authorization: Bearer <api_token>" (401 otherwise); Start() refuses
  // an empty one. Webhooks are authenticated by their signatures instead.
  std::string api_token;
  // Called for push and tag runs of `repos` (never pull requests, never forks) whose steps all
  // succeeded and whose pipeline has image:, before the run is final: the rest of the flow
  // (server/release.h). An error fails the run (its message becomes the run's) and the stage that
  // was logging last.
  std::function<Status(const SucceededRun&)> after_success;
};

class Server {
 public:
  // `store`, `http` and `executor` must outlive the Server.
  Server(store::Store& store, http::Server& http, Executor& executor, ServerOptions options);
  ~Server();  // Stop()

  // Recovers unfinished runs, registers the routes and starts the workers and the poller.
  // (The http server is started by the caller.) InvalidArgument for a missing webhook secret or
  // API token, or a bad repo URL.
  Status Start();
  // Cancels running steps, marks their runs cancelled, joins the threads. Idempotent.
  void Stop();

 private:
  http::Response HandleWebhook(const http::Request& req);
  http::Response HandleRuns(const http::Request& req);
  http::Response Approve(const store::Run& run);
  const RepoPolicy& PolicyFor(const std::string& repo) const;
  void WorkerLoop(bool trusted);
  void PollLoop();
  void Execute(const store::Run& run);
  Status Release(const store::Run& run, const Pipeline& pipeline, const std::filesystem::path& workspace,
                 const std::string& commit);

  store::Store& store_;
  http::Server& http_;
  Executor& executor_;
  ServerOptions options_;
  std::unique_ptr<git::Mirrors> mirrors_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<int64_t, Runner*> running_;  // GUARDED_BY(mu_)
  std::map<int64_t, std::atomic<bool>*> releasing_;  // GUARDED_BY(mu_): runs in after_success
};

// The host (lower-case, without user and port; "" for file://) and path (without leading '/',
// trailing '/' and ".git") of a clone URL: scheme://, scp-like user@host:path, file://.
struct RepoLocation {
  std::string host;
  std::string path;
  bool operator==(const RepoLocation&) const = default;
};
RepoLocation LocateRepo(std::string_view url);

// Whether webhook event `e` is about configured repository `configured`: the host and path of its
// clone URL must be those of `configured`. Only when the event has no clone URL (Bitbucket) does
// its full name ("org/app") decide, as the end of the configured path, and then a host the event
// does name (web or SSH URL) must be the configured one.
bool SameRepo(std::string_view configured, const webhook::Event& e);

// The provider whose webhooks `repo` accepts under `policy` (kAuto: any provider that signs).
webhook::Provider PinnedProvider(std::string_view repo, const RepoPolicy& policy);
// OK when a webhook verified as `got` may speak for `repo`; PermissionDenied saying what to pin
// otherwise.
Status CheckProvider(std::string_view repo, const RepoPolicy& policy, webhook::Provider got);

// "URL key=value ..." (a --repo-policy flag): `defaults` with the keys changed. Keys:
// approval=required|none, pull-requests=trusted|untrusted, network=off|on (for untrusted runs),
// provider=github|gitlab|gitea|forgejo|bitbucket|generic. InvalidArgument naming a bad key/value.
Result<std::pair<std::string, RepoPolicy>> ParseRepoPolicy(std::string_view spec, const RepoPolicy& defaults);

// The REST API's token when none is given: <data_dir>/api-token, created (0600, 32 random bytes as
// hex) when missing. PermissionDenied when the file is readable by others; Internal when it cannot
// be written.
Result<std::string> LoadOrCreateApiToken(const std::filesystem::path& data_dir);

}  // namespace gantry::ci
