#pragma once
// server/actions: push-mode deploys and rollbacks that `gantry server` runs for its REST API
// (POST /api/v1/apps/{app}/deploy, /resume, /rollback; server/api_v1.h), each in a thread the
// server owns.
//
// Deploy() creates the ledger release (deliver::Deployment::Start: it fetches the config
// repository and renders every environment, so a bad revision or overlay fails the request before
// anything is applied) and then drives the Deployment in a thread of its own; Resume() does the same
// with deliver::Deployment::Resume; Rollback() runs deliver::Rollback in a thread and returns once
// it knows which release it goes back to. At most `max_running` actions run at once, and at most
// one per application: another is refused with Aborted (409) naming the one that runs.
//
// Progress reaches clients as the event bus's "release" events (the target writes through the
// observed store, server/events.h; each release an action started is tagged with its project
// through ReleaseProjects); when an action ends, one "action" event says how:
//   {"action": "deploy" | "resume" | "rollback", "app", "release", "environment", "phase", "message"}
// with phase "succeeded", "failed", "waiting_approval" or "terminated".
//
// Stop() (and the destructor) terminates every running action at its next step boundary and joins
// its thread: a deploy's ledger keeps its pending and applying targets, so POST .../resume
// continues it; a rollback stopped half-way is continued by asking for it again with to_release.
//
// Thread-safety: every method may be called from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "deliver/deliver.h"
#include "server/events.h"
#include "store/store.h"

namespace gantry::server {

// The project of each release an action started, for tagging its events. Thread-safe.
class ReleaseProjects {
 public:
  void Set(int64_t release, std::string project);
  // "" when the release was not started here (a CI release: its events stay cluster-wide).
  std::string Of(int64_t release) const;

 private:
  mutable Mutex mu_;
  std::map<int64_t, std::string> projects_ GUARDED_BY(mu_);
};

struct ActionsOptions {
  // The push-mode configuration (--deliver-config); nullopt: every action is Unavailable.
  std::optional<deliver::Config> config;
  // A render function over the config repository (--deploy-repo), made anew for each action so
  // that each fetches the repository once; nullptr: every action is Unavailable.
  std::function<deliver::RenderFn()> renderer;
  deliver::ConnectFn connect;
  std::string path_template = "envs/{env}";
  std::chrono::milliseconds health_timeout{300'000};
  Clock* clock = nullptr;  // nullptr: SystemClock()
  int max_running = 4;
  EventBus* events = nullptr;             // the "action" events; nullptr: none
  ReleaseProjects* projects = nullptr;    // nullptr: release events stay untagged
};

struct DeployRequest {
  std::string app;
  std::string revision;     // required
  std::string through;      // "" : every environment
  std::string environment;  // deploy to this one only
  std::string project = "default";
  bool prune = false;
  std::string started_by;   // the principal's name
  std::string window_override;  // why the caller overrides closed sync windows (deliver::DeployOptions)
};

struct RollbackRequest {
  std::string app;
  std::string environment;  // required
  int64_t to_release = 0;   // 0: the one that ran before
  std::string project = "default";
  std::string started_by;
  std::string window_override;  // as DeployRequest's
};

// What an action answered when it started.
struct Started {
  std::string action;  // "deploy", "resume", "rollback"
  int64_t release = 0;  // the release deployed (rollback: gone back to)
  int64_t from_release = 0;  // rollback: the release rolled back
};

class Actions {
 public:
  // `store` (the observed store, so targets become events) must outlive the Actions.
  Actions(store::Store& store, ActionsOptions options);
  ~Actions();  // Stop()
  Actions(const Actions&) = delete;
  Actions& operator=(const Actions&) = delete;

  // Starts a deploy: InvalidArgument for a missing revision or a bad environment; Aborted when
  // the app has an action running or max_running are; Unavailable without configuration or after
  // Stop(); Deployment::Start's errors.
  Result<Started> Deploy(const DeployRequest& request);
  // Continues the app's newest unfinished release (one waiting for approval, or one a stop
  // interrupted): NotFound when there is none; otherwise as Deploy.
  Result<Started> Resume(std::string_view app, std::string_view project, std::string_view started_by,
                         std::string_view window_override = "");
  // Starts a rollback and returns once its releases are known: deliver::Rollback's errors
  // (NotFound: nothing to roll back to); otherwise as Deploy.
  Result<Started> Rollback(const RollbackRequest& request);

  // Terminates the app's running action at its next step boundary, as Stop() does for all, and
  // returns at once with its name ("deploy", "resume", "rollback"): its end is the "action" event
  // with phase "terminated" (a deploy's pending targets stay pending: Resume() continues it).
  // NotFound when none runs for the app.
  Result<std::string> Terminate(std::string_view app);
  // Terminates every running action and waits for their threads. Idempotent.
  void Stop();
  // Actions running now.
  size_t running() const;

 private:
  struct Job {
    std::thread thread;
    std::atomic<bool> cancel{false};
    deliver::Deployment* deployment = nullptr;  // GUARDED_BY(mu_) while set
    bool done = false;                          // GUARDED_BY(mu_)
    std::string action;
  };
  // Reserves the app's slot (Aborted / Unavailable as above) and joins finished jobs.
  Result<Job*> Reserve(std::string_view app, std::string_view action);
  void Release(std::string_view app);  // frees a slot whose job never started
  void Finished(const std::string& action, const std::string& app, int64_t release, std::string_view env,
                std::string_view phase, std::string_view message, const std::string& project);
  Status Configured() const;
  Result<Started> Run(std::string_view action, std::unique_ptr<deliver::Deployment> deployment, Job* job,
                      const std::string& app, const std::string& project);

  store::Store& store_;
  const ActionsOptions options_;
  mutable Mutex mu_;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<Job>, std::less<>> jobs_ GUARDED_BY(mu_);
};

}  // namespace gantry::server
