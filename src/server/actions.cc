#include "server/actions.h"

#include <future>
#include <utility>
#include <vector>

#include "value/value.h"

namespace gantry::server {
namespace {

std::string_view PhaseName(deliver::Phase phase) {
  switch (phase) {
    case deliver::Phase::kRunning: return "running";
    case deliver::Phase::kSucceeded: return "succeeded";
    case deliver::Phase::kFailed: return "failed";
    case deliver::Phase::kWaitingApproval: return "waiting_approval";
    case deliver::Phase::kTerminated: return "terminated";
  }
  return "failed";
}

}  // namespace

void ReleaseProjects::Set(int64_t release, std::string project) {
  MutexLock lock(mu_);
  projects_[release] = std::move(project);
}

std::string ReleaseProjects::Of(int64_t release) const {
  MutexLock lock(mu_);
  auto it = projects_.find(release);
  return it == projects_.end() ? std::string() : it->second;
}

Actions::Actions(store::Store& store, ActionsOptions options) : store_(store), options_(std::move(options)) {}

Actions::~Actions() { Stop(); }

Status Actions::Configured() const {
  if (!options_.config) return UnavailableError("this server has no push-mode configuration (gantry server --deliver-config)");
  if (!options_.renderer) return UnavailableError("this server has no config repository to deploy from (gantry server --deploy-repo)");
  return OkStatus();
}

Result<Actions::Job*> Actions::Reserve(std::string_view app, std::string_view action) {
  if (app.empty()) return InvalidArgumentError("the application name is empty");
  MutexLock lock(mu_);
  if (stopped_) return UnavailableError("the server is stopping");
  size_t running = 0;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->second->done) {
      if (it->second->thread.joinable()) it->second->thread.join();
      it = jobs_.erase(it);
      continue;
    }
    ++running;
    ++it;
  }
  if (auto it = jobs_.find(app); it != jobs_.end()) {
    return AbortedError("{} of {} is running in the server; wait for it to end (its release events say when)",
                        it->second->action, app);
  }
  if (running >= static_cast<size_t>(std::max(1, options_.max_running))) {
    return AbortedError("{} deploys and rollbacks are running in the server, as many as it runs at once; try again later",
                        running);
  }
  auto job = std::make_unique<Job>();
  job->action = std::string(action);
  Job* raw = job.get();
  jobs_.emplace(std::string(app), std::move(job));
  return raw;
}

void Actions::Release(std::string_view app) {
  MutexLock lock(mu_);
  if (auto it = jobs_.find(app); it != jobs_.end() && !it->second->thread.joinable()) jobs_.erase(it);
}

void Actions::Finished(const std::string& action, const std::string& app, int64_t release, std::string_view env,
                       std::string_view phase, std::string_view message, const std::string& project) {
  if (options_.events == nullptr) return;
  value::Value v = value::Value::Map();
  v.Set("action", action);
  v.Set("app", app);
  v.Set("release", release);
  v.Set("environment", env);
  v.Set("phase", phase);
  v.Set("message", message);
  options_.events->Publish("action", v, project);
}

Result<Started> Actions::Run(std::string_view action, std::unique_ptr<deliver::Deployment> deployment, Job* job,
                             const std::string& app, const std::string& project) {
  const int64_t id = deployment->state().release_id;
  if (options_.projects != nullptr) options_.projects->Set(id, project);
  MutexLock lock(mu_);
  if (stopped_) {
    jobs_.erase(app);
    return UnavailableError("the server is stopping; POST /api/v1/apps/{}/resume continues release {}", app, id);
  }
  job->deployment = deployment.get();
  if (job->cancel.load()) deployment->Terminate();  // terminated while it started
  job->thread = std::thread([this, job, d = std::move(deployment), action = std::string(action), app, project] {
    const deliver::DeployState& s = d->Run();
    {
      // Done before the "action" event: a client that reacts to it may start the app's next action.
      MutexLock done(mu_);
      job->deployment = nullptr;
      job->done = true;
    }
    Finished(action, app, s.release_id, "", PhaseName(s.phase), s.message, project);
  });
  return Started{.action = std::string(action), .release = id};
}

Result<Started> Actions::Deploy(const DeployRequest& r) {
  GANTRY_RETURN_IF_ERROR(Configured());
  if (r.revision.empty()) return InvalidArgumentError("\"revision\" is required (a branch, tag or commit of the config repository)");
  GANTRY_ASSIGN_OR_RETURN(Job * job, Reserve(r.app, "deploy"));
  deliver::DeployOptions d{.app = r.app,
                           .revision = r.revision,
                           .only_env = r.environment,
                           .through = r.through,
                           .path_template = options_.path_template,
                           .started_by = r.started_by,
                           .project = r.project.empty() ? "default" : r.project,
                           .window_override = r.window_override,
                           .prune = r.prune,
                           .health_timeout = options_.health_timeout,
                           .clock = options_.clock};
  auto started = deliver::Deployment::Start(store_, *options_.config, options_.renderer(), options_.connect, d);
  if (!started.ok()) {
    Release(r.app);
    return started.status();
  }
  return Run("deploy", *std::move(started), job, r.app, d.project);
}

Result<Started> Actions::Resume(std::string_view app, std::string_view project, std::string_view started_by,
                                std::string_view window_override) {
  GANTRY_RETURN_IF_ERROR(Configured());
  GANTRY_ASSIGN_OR_RETURN(Job * job, Reserve(app, "resume"));
  deliver::DeployOptions d{.app = std::string(app),
                           .path_template = options_.path_template,
                           .started_by = std::string(started_by),
                           .project = project.empty() ? "default" : std::string(project),
                           .window_override = std::string(window_override),
                           .health_timeout = options_.health_timeout,
                           .clock = options_.clock};
  auto resumed = deliver::Deployment::Resume(store_, *options_.config, options_.renderer(), options_.connect, d);
  if (!resumed.ok()) {
    Release(app);
    return resumed.status();
  }
  return Run("resume", *std::move(resumed), job, d.app, d.project);
}

Result<Started> Actions::Rollback(const RollbackRequest& r) {
  GANTRY_RETURN_IF_ERROR(Configured());
  if (r.environment.empty()) return InvalidArgumentError("\"environment\" is required (the environment to roll back)");
  GANTRY_ASSIGN_OR_RETURN(Job * job, Reserve(r.app, "rollback"));
  struct Plan {
    std::promise<Result<std::pair<int64_t, int64_t>>> promise;
    std::atomic<bool> told{false};
    std::atomic<int64_t> to{0};
    void Tell(Result<std::pair<int64_t, int64_t>> r) {
      if (!told.exchange(true)) promise.set_value(std::move(r));
    }
  };
  auto plan = std::make_shared<Plan>();
  auto answer = plan->promise.get_future();
  const std::string project = r.project.empty() ? "default" : r.project;
  deliver::RollbackOptions ro{.app = r.app,
                              .env = r.environment,
                              .to_release = r.to_release,
                              .path_template = options_.path_template,
                              .started_by = r.started_by,
                              .project = project,
                              .window_override = r.window_override,
                              .health_timeout = options_.health_timeout,
                              .clock = options_.clock,
                              .cancel = &job->cancel};
  ro.planned = [this, plan, project](int64_t from, int64_t to) {
    if (options_.projects != nullptr) options_.projects->Set(to, project);
    plan->to.store(to);
    plan->Tell(std::pair(from, to));
  };
  {
    MutexLock lock(mu_);
    if (stopped_) {
      jobs_.erase(r.app);
      return UnavailableError("the server is stopping");
    }
    job->thread = std::thread([this, job, plan, ro, project, render = options_.renderer()] {
      auto result = deliver::Rollback(store_, *options_.config, render, options_.connect, ro);
      const bool planned = plan->told.load();
      const bool stopped = job->cancel.load();
      {
        // Done before the "action" event (as a deploy's), and the job is not touched after.
        MutexLock done(mu_);
        job->done = true;
      }
      if (!result.ok()) {
        plan->Tell(result.status());
        if (planned) Finished("rollback", ro.app, plan->to.load(), ro.env, "failed", result.status().message(), project);
      } else {
        Finished("rollback", ro.app, result->to_release, ro.env,
                 result->ok ? "succeeded" : stopped ? "terminated" : "failed", result->message, project);
      }
    });
  }
  GANTRY_ASSIGN_OR_RETURN(auto releases, answer.get());
  return Started{.action = "rollback", .release = releases.second, .from_release = releases.first};
}

Result<std::string> Actions::Terminate(std::string_view app) {
  MutexLock lock(mu_);
  auto it = jobs_.find(app);
  if (it == jobs_.end() || it->second->done) return NotFoundError("no deploy, resume or rollback of {} runs in the server", app);
  Job& job = *it->second;
  job.cancel.store(true);
  if (job.deployment != nullptr) job.deployment->Terminate();
  return job.action;
}

void Actions::Stop() {
  std::vector<Job*> jobs;
  {
    MutexLock lock(mu_);
    stopped_ = true;
    for (auto& [app, job] : jobs_) {
      job->cancel.store(true);
      if (job->deployment != nullptr) job->deployment->Terminate();
      jobs.push_back(job.get());
    }
  }
  for (Job* job : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
}

size_t Actions::running() const {
  MutexLock lock(mu_);
  size_t n = 0;
  for (const auto& [app, job] : jobs_) n += job->done ? 0 : 1;
  return n;
}

}  // namespace gantry::server
