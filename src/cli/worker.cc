// gantry worker --server URL --token-env VAR [--name N] [--labels k=v,...] [--untrusted] [--data-dir D] ...
//
// A remote CI worker: it claims runs from `gantry server` over its worker API
// (server/worker_api.h; docs/scaling.md) and builds them on this machine with the same executors
// and the same Runner as the server's own workers (it takes the --executor flags of `ci run`):
//
//   claim     POST /api/v1/worker/claim, a long poll (25 s), with this worker's labels: the run and
//             its Job (ci/job.h: the secrets of its scope, the limits its trust sets, the lease)
//   lease     a thread renews the claim every third of the lease; "cancel_requested" cancels the
//             run's steps (it ends cancelled); a refused renewal (409: the lease expired and the
//             run was taken over) cancels them and nothing more of the run is written
//   build     ci::CheckOut into DATA_DIR/runs/ID (the commit it built, when the ref moved, is told
//             to the server), the trigger check, a Runner whose step states and log chunks go to
//             the server (a Recorder over the API)
//   finish    POST .../finish with the run's state and message
//
// One run at a time; run several workers for more. The release (image push, config commit,
// deploy) is the server's, which holds the registry and config repository credentials and the
// workspace it releases from: a run that would be released ends failed here, saying so (route such
// repositories to the server's own workers with labels). SIGINT or SIGTERM: no new claim; a run
// under way is finished first; idle, it exits at once. Exit 2 for a bad flag, 3 when the executor or the data directory
// cannot be set up.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "base/mutex.h"
#include "ci/job.h"
#include "ci/runner.h"
#include "cli/ci.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "git/git.h"
#include "http/client.h"
#include "server/front.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;
using store::RunState;
using value::Value;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_building{false};

// Idle (waiting for a claim's answer), the worker exits at once: a run the server claimed for it
// in that moment is taken over when its lease expires. Building, it finishes the run first.
void OnSignal(int) {
  g_stop.store(true);
  if (!g_building.load()) ::_exit(0);
}

struct WorkerFlags {
  std::string server;
  std::string ca_file;
  std::string token_env;
  std::string name;
  std::string labels;
  bool untrusted = false;
  std::string data_dir = "gantry-worker";
  ExecutorFlags executor;
  bool allow_file = false;
  std::string git_credentials_env;
};

struct WorkerOptions {
  std::string server;  // without a trailing '/'
  std::string ca_file;
  std::string token;
  std::string name;
  store::Labels labels;
  bool untrusted = false;
  fs::path data_dir;
  ExecutorFlags executor;
  git::OpenOptions git;
};

Result<WorkerOptions> ToOptions(const WorkerFlags& f) {
  WorkerOptions o;
  o.server = f.server;
  while (o.server.ends_with('/')) o.server.pop_back();
  if (!o.server.starts_with("http://") && !o.server.starts_with("https://")) {
    return InvalidArgumentError("--server {:?}: expected the server's http:// or https:// URL", f.server);
  }
  o.ca_file = f.ca_file;
  const char* token = f.token_env.empty() ? nullptr : std::getenv(f.token_env.c_str());
  if (token == nullptr || *token == '\0') {
    return InvalidArgumentError("--token-env {:?}: must name a set variable holding a worker token "
                                "(gantry token create --project '*' --role worker)", f.token_env);
  }
  o.token = token;
  o.name = f.name;
  if (o.name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) o.name = host;
  }
  auto labels = store::ParseLabels(f.labels);
  if (!labels.ok()) return labels.status().WithContext("--labels");
  o.labels = *std::move(labels);
  o.untrusted = f.untrusted;
  o.data_dir = fs::absolute(f.data_dir);
  o.executor = f.executor;
  GANTRY_RETURN_IF_ERROR(ValidateExecutorFlags(o.executor));
  o.git.allow_file = f.allow_file;
  if (!f.git_credentials_env.empty()) {
    const char* v = std::getenv(f.git_credentials_env.c_str());
    if (v == nullptr || *v == '\0') return InvalidArgumentError("--git-credentials-env {}: the variable is not set", f.git_credentials_env);
    auto c = git::ParseCredentials(v);
    if (!c.ok()) return c.status().WithContext("--git-credentials-env");
    o.git.credentials = *std::move(c);
  }
  return o;
}

// The worker API of one server, as this worker (its token and name).
class Api {
 public:
  explicit Api(const WorkerOptions& o)
      : o_(o), client_({.timeout = std::chrono::seconds(60), .ca_file = o.ca_file}) {}

  // POSTs `body` (with this worker's name) to `path`: the answer's body for a 2xx; the API's error
  // as its Status (ParseApiError: 409 is Aborted or AlreadyExists); the client's errors.
  Result<std::string> Post(const std::string& path, Value body) const {
    body.Set("name", o_.name);
    auto r = client_.Send({.method = "POST",
                           .url = o_.server + path,
                           .headers = {{"authorization", "Bearer " + o_.token}, {"content-type", "application/json"}},
                           .body = value::ToJson(body)});
    if (!r.ok()) return r.status();
    if (r->status / 100 != 2) return server::ParseApiError(r->status, r->body);
    return std::move(r->body);
  }
  // POST /api/v1/worker/runs/ID/WHAT for the claim `attempt`.
  Result<std::string> PostRun(const store::Run& run, std::string_view what, Value body) const {
    body.Set("attempt", run.attempt);
    return Post(fmt::format("/api/v1/worker/runs/{}/{}", run.id, what), std::move(body));
  }

 private:
  const WorkerOptions& o_;
  http::Client client_;
};

// The claim on one run: what the lease thread learns and the runner obeys.
struct Claim {
  std::atomic<bool> cancel{false};  // asked through the server, or the claim was lost
  std::atomic<bool> lost{false};    // taken over: write nothing more of the run
  Mutex mu;
  ci::Runner* runner GUARDED_BY(mu) = nullptr;

  void Stop(bool lost_it) {
    if (lost_it) lost.store(true);
    cancel.store(true);
    MutexLock lock(mu);
    if (runner != nullptr) runner->Cancel();
  }
};

// The server as the runner's Recorder: step states and log chunks through the API. A write the
// server refuses because the claim is lost stops the run.
class ApiRecorder : public ci::Recorder {
 public:
  ApiRecorder(const Api& api, const store::Run& run, Claim& claim) : api_(api), run_(run), claim_(claim) {}

  Status WriteStep(const store::Step& step) override {
    Value s = Value::Map();
    s.Set("name", step.name);
    s.Set("state", store::Name(step.state));
    s.Set("exit_code", step.exit_code ? Value(*step.exit_code) : Value());
    s.Set("attempts", step.attempts);
    Value needs = Value::Seq();
    for (const auto& n : step.needs) needs.Append(n);
    s.Set("needs", needs);
    Value body = Value::Map();
    body.Set("step", s);
    return Lost(api_.PostRun(run_, "steps", body).status());
  }
  Result<int64_t> AppendLog(std::string_view step, int64_t seq, std::string_view data) override {
    Value body = Value::Map();
    body.Set("step", step);
    body.Set("seq", seq);
    body.Set("data", data);
    auto answer = api_.PostRun(run_, "logs", body);
    if (!answer.ok()) return Lost(answer.status());
    auto v = value::ParseJson(*answer);
    const Value* took = v.ok() ? v->Get("seq") : nullptr;
    if (took == nullptr || !took->IsInt()) return DataLossError("the server's answer to a log chunk has no seq: {}", *answer);
    return took->AsInt();
  }

 private:
  Status Lost(Status s) {
    if (s.code() == Code::kAborted) {
      log::Warn("worker: run {}: {}: stopping it", run_.id, s.message());
      claim_.Stop(true);
    }
    return s;
  }
  const Api& api_;
  const store::Run& run_;
  Claim& claim_;
};

// Renews the claim every third of the lease until `done`.
void RenewLoop(const Api& api, const ci::Job& job, Claim& claim, const std::atomic<bool>& done) {
  const auto period = std::max(std::chrono::milliseconds(100), job.lease / 3);
  while (!done.load() && !claim.lost.load()) {
    for (auto waited = std::chrono::milliseconds(0); waited < period && !done.load(); waited += std::chrono::milliseconds(50)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (done.load()) return;
    auto answer = api.PostRun(job.run, "lease", Value::Map());
    if (!answer.ok() && answer.status().code() == Code::kAborted) {
      log::Warn("worker: run {}: its lease was refused ({}): stopping it, writing nothing more", job.run.id,
                answer.status().message());
      claim.Stop(true);
      return;
    }
    if (!answer.ok()) {
      // The lease still runs until it expires; the next renewal may get through.
      log::Warn("worker: run {}: renew its lease: {}", job.run.id, answer.status().message());
      continue;
    }
    if (answer->find("cancel_requested") != std::string::npos && !claim.cancel.load()) {
      log::Info("worker: run {}: cancelled through the server", job.run.id);
      claim.Stop(false);
    }
  }
}

// Builds `job` and reports its end; the run's final state and message.
std::pair<RunState, std::string> Build(const WorkerOptions& o, const Api& api, ci::Executor& executor, git::Mirrors& mirrors,
                                       const ci::Job& job, Claim& claim) {
  const store::Run& run = job.run;
  if (Status s = ci::CheckIsolation(job, executor); !s.ok()) {
    return {RunState::kFailed, s.message() + "; start this worker without --no-sandbox to build it"};
  }
  // A fork's pull request is fetched into a mirror of its own, removed with the run.
  auto source = ci::RunRepository::Open(mirrors, run, run.repo != run.pipeline,
                                        o.data_dir / "fork-mirrors" / std::to_string(run.id), o.git);
  if (!source.ok()) return {RunState::kFailed, source.status().message()};
  const fs::path run_dir = o.data_dir / "runs" / std::to_string(run.id);
  auto co = ci::CheckOut((*source)->repo(), run, run_dir, [&](const std::string& commit) {
    Value body = Value::Map();
    body.Set("commit", commit);
    return api.PostRun(run, "commit", body).status();
  });
  if (!co.ok()) return {co.status().code() == Code::kAborted ? RunState::kCancelled : RunState::kFailed, co.status().message()};
  std::string notes = co->notes;
  ci::RunOptions ro = ci::RunOptionsOf(job, *co, run_dir, o.data_dir / "caches");
  ApiRecorder recorder(api, run, claim);
  ro.recorder = &recorder;
  ro.fenced = &claim.lost;
  for (auto& line : ci::OutOfScopeNotes(job, co->pipeline, ro.context)) notes += (notes.empty() ? "" : "; ") + line;
  auto with_notes = [&](std::string message) { return notes.empty() ? message : notes + "; " + message; };
  if (!ci::TriggerMatches(co->pipeline.triggers, ro.context)) {
    return {RunState::kCancelled,
            with_notes(fmt::format("not triggered: the pipeline's on: does not match {} {}", ro.context.event, run.ref))};
  }
  ci::Runner runner(co->pipeline, executor, ro);
  {
    MutexLock lock(claim.mu);
    claim.runner = &runner;
    if (claim.cancel.load()) runner.Cancel();
  }
  auto result = runner.Run();
  {
    MutexLock lock(claim.mu);
    claim.runner = nullptr;
  }
  std::error_code ec;
  fs::remove_all(co->workspace, ec);  // artifacts stay in run_dir
  if (!result.ok()) return {RunState::kFailed, with_notes(result.status().message())};
  if (result->state == RunState::kSucceeded && job.releases && job.trusted && run.event == store::RunEvent::kPush &&
      co->pipeline.image) {
    return {RunState::kFailed,
            with_notes(fmt::format("{}, but not released: a release runs on the server, from the workspace of its own "
                                   "workers, and this run was built on remote worker {} (give the repository labels "
                                   "only the server has: docs/scaling.md)",
                                   ci::RunOutcome(*result, false), o.name))};
  }
  return {result->state, with_notes(ci::RunOutcome(*result, claim.cancel.load()))};
}

// Claims and builds runs until a signal asks it to stop.
Status RunWorker(const WorkerOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(BuiltExecutor executor, MakeExecutor(o.executor, deps));
  GANTRY_RETURN_IF_ERROR(ci::PrepareDataDir(o.data_dir, *executor.executor));
  std::error_code ec;
  fs::remove_all(o.data_dir / "fork-mirrors", ec);  // left by runs a crash ended
  git::Mirrors mirrors(o.data_dir / "mirrors");
  Api api(o);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  fmt::print(deps.out, "gantry worker {} claiming runs from {} (labels: {})\n", o.name, o.server,
             o.labels.empty() ? "none" : store::FormatLabels(o.labels));
  std::fflush(deps.out);
  Value claim_body = Value::Map();
  Value labels = Value::Map();
  for (const auto& [k, v] : o.labels) labels.Set(k, v);
  claim_body.Set("labels", labels);
  claim_body.Set("untrusted", o.untrusted);
  while (!g_stop.load()) {
    auto answer = api.Post("/api/v1/worker/claim", claim_body);
    Result<Value> parsed = answer.ok() ? value::ParseJson(*answer) : Result<Value>(answer.status());
    const Value* job_json = parsed.ok() ? parsed->Get("job") : nullptr;
    if (!parsed.ok() || job_json == nullptr) {
      const std::string why = !parsed.ok() ? parsed.status().message()
                              : parsed->Get("error") != nullptr && parsed->Get("error")->IsString()
                                  ? std::string(parsed->Get("error")->AsString())
                                  : "no job in the answer";
      log::Warn("worker: claim a run from {}: {}", o.server, why);
      if (parsed.status().code() == Code::kPermissionDenied || parsed.status().code() == Code::kUnauthenticated) {
        return parsed.status().WithContext("claim a run");
      }
      for (int i = 0; i < 20 && !g_stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (job_json->IsNull()) continue;
    auto job = ci::ParseJob(*job_json);
    if (!job.ok()) {
      // Claimed but unreadable (a server of another version): its lease expires and another takes it.
      log::Warn("worker: the server's job is unreadable: {}", job.status().message());
      continue;
    }
    g_building.store(true);
    log::Info("worker: run {} (attempt {}) of {} {}", job->run.id, job->run.attempt, git::ScrubUrl(job->run.repo), job->run.ref);
    Claim claim;
    std::atomic<bool> done{false};
    std::thread renew([&] { RenewLoop(api, *job, claim, done); });
    auto [state, message] = Build(o, api, *executor.executor, mirrors, *job, claim);
    done.store(true);
    renew.join();
    if (claim.lost.load()) {
      log::Warn("worker: run {}: attempt {} ended {} after it was taken over: not recorded", job->run.id, job->run.attempt,
                store::Name(state));
      g_building.store(false);
      continue;
    }
    Value end = Value::Map();
    end.Set("state", store::Name(state));
    end.Set("message", message);
    auto finished = api.PostRun(job->run, "finish", end);
    if (!finished.ok()) {
      log::Warn("worker: run {}: record its end ({}): {}", job->run.id, store::Name(state), finished.status().message());
    } else {
      log::Info("worker: run {} {}: {}", job->run.id, store::Name(state), message);
    }
    g_building.store(false);
  }
  return OkStatus();
}

}  // namespace

void AddWorkerCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<WorkerFlags>();
  auto* cmd = app.add_subcommand("worker", "A remote CI worker: claims runs from gantry server and builds them here");
  cmd->add_option("--server", f->server, "The server's URL (http:// or https://)")->required();
  cmd->add_option("--ca-file", f->ca_file, "PEM CA bundle the server's certificate is checked against");
  cmd->add_option("--token-env", f->token_env,
                  "Variable holding a worker token (gantry token create --project '*' --role worker)")
      ->required();
  cmd->add_option("--name", f->name, "This worker's name, unique among the token's workers (default: the host name)");
  cmd->add_option("--labels", f->labels,
                  "What this worker has, k=v,...: it builds runs whose repository asks for no label it lacks");
  cmd->add_flag("--untrusted", f->untrusted, "Build untrusted runs (pull requests from forks) too; they get no secrets");
  cmd->add_option("--data-dir", f->data_dir, "Mirrors, workspaces, artifacts and caches (default gantry-worker)");
  cmd->add_flag("--allow-file-repos", f->allow_file, "Accept file:// repository URLs (tests, local setups)");
  cmd->add_option("--git-credentials-env", f->git_credentials_env, "Variable holding host=user:password for Git");
  AddExecutorFlags(cmd, f->executor);
  f->executor.server = true;  // as the server: steps of a root worker run as a host user of their own
  cmd->add_option("--step-uid", f->executor.step_uid,
                  "Host uid (and gid) sandboxed steps run as when the worker runs as root (default 65533)");
  cmd->callback([f, &deps, &exit_code] {
    auto options = ToOptions(*f);
    if (!options.ok()) {
      exit_code = UsageError(options.status(), deps.err);
      return;
    }
    exit_code = Report(RunWorker(*options, deps), deps.err);
  });
}

}  // namespace gantry::cli
