#pragma once
// ci/server: the CI part of `gantry server` (first version).
//
//   webhook POST /webhook → webhook::Verify (HMAC over the raw body, body limit) → Store::
//   RecordDelivery (a redelivery answers 200 "duplicate" and does nothing) → the repository must be
//   one of Options::repos → a queued run (Store::CreateRun, deduplicated by delivery id).
//   poller   every poll_interval, for each repo and poll branch: Fetch, Resolve, and a queued run
//            for a tip no run was created for (delivery id "poll:<branch>:<sha>", so never twice).
//   workers  Store::ClaimNextQueuedRun → fetch the mirror → Materialize the commit into
//            <data_dir>/runs/<id>/workspace → parse .gantry/pipeline.yaml → triggers → Runner.
//   restart  Start() marks this worker's unfinished runs interrupted and re-queues those with
//            attempt < max_attempts (requeue_interrupted), so none is ever left running.
//   REST     GET /api/runs, GET /api/runs/ID, GET /api/runs/ID/logs[?follow=1] (a streamed text
//            response that ends when the run is final), POST /api/runs/ID/cancel.
//
// Pull requests from forks build the fork's head commit (run.repo is the fork's clone URL) and
// never receive secrets: a run whose repo is not one of Options::repos runs with secrets withheld.
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

struct ServerOptions {
  std::vector<std::string> repos;  // clone URLs accepted from webhooks and polled
  webhook::Config webhook;         // secret required
  std::filesystem::path data_dir;  // mirrors/, runs/, caches/
  std::map<std::string, std::string> secrets;
  std::chrono::milliseconds poll_interval{0};  // 0 = no polling
  std::vector<std::string> poll_branches = {"main"};
  int workers = 1;
  int parallelism = 4;
  std::string worker_name = "gantry";
  bool requeue_interrupted = true;
  int max_attempts = 3;
  git::OpenOptions git;
  // When set, every /api/ request needs "Authorization: Bearer <api_token>" (401 otherwise).
  // Webhooks are authenticated by their signatures instead.
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
  // a bad repo URL.
  Status Start();
  // Cancels running steps, marks their runs cancelled, joins the threads. Idempotent.
  void Stop();

 private:
  http::Response HandleWebhook(const http::Request& req);
  http::Response HandleRuns(const http::Request& req);
  void WorkerLoop();
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

}  // namespace gantry::ci
