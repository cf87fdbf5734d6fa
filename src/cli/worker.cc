// gantry worker --server URL --token-env VAR [--name N] [--labels k=v,...] [--untrusted] [--concurrency N]
//               [--data-dir D] ...
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
//   release   a run the server releases (a trusted push whose pipeline has image:, Job::releases):
//             what the release reads from the workspace (release::WorkspaceTrees) goes to the
//             server as one tar stream in parts (PUT .../workspace), then POST .../release with
//             its digest; the server, which holds the registry and config repository credentials
//             and the signing keys, releases it and ends the run
//   finish    otherwise, POST .../finish with the run's state and message
//
// --concurrency N runs as many claim loops, each with its own runs and lease renewals. SIGINT or
// SIGTERM: no new claim; runs under way are finished first; idle, it exits at once. Exit 2 for a
// bad flag, 3 when the executor or the data directory cannot be set up.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <optional>
#include <utility>
#include <vector>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/base64.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/percent.h"
#include "ci/job.h"
#include "ci/runner.h"
#include "cli/ci.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "git/git.h"
#include "http/client.h"
#include "oci/tree_tar.h"
#include "release/release.h"
#include "server/front.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;
using store::RunState;
using value::Value;

std::atomic<bool> g_worker_stop{false};
std::atomic<int> g_building{0};  // the runs being built now

// Idle (every claim loop waiting for a claim's answer), the worker exits at once: a run the server
// claimed for it in that moment is taken over when its lease expires. Building, it finishes its
// runs first.
void StopWorker(int) {
  g_worker_stop.store(true);
  if (g_building.load() == 0) ::_exit(0);
}

struct WorkerFlags {
  std::string server;
  std::string ca_file;
  std::string token_env;
  std::string name;
  std::string labels;
  bool untrusted = false;
  int concurrency = 1;
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
  int concurrency = 1;
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
  if (f.concurrency < 1 || f.concurrency > 64) {
    return InvalidArgumentError("--concurrency {}: expected 1 to 64 runs at a time", f.concurrency);
  }
  o.concurrency = f.concurrency;
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
    return Send("POST", path, "application/json", value::ToJson(body));
  }
  // POST /api/v1/worker/runs/ID/WHAT for the claim `attempt`.
  Result<std::string> PostRun(const store::Run& run, std::string_view what, Value body) const {
    body.Set("attempt", run.attempt);
    return Post(fmt::format("/api/v1/worker/runs/{}/{}", run.id, what), std::move(body));
  }
  // PUT /api/v1/worker/runs/ID/workspace: `data` at byte `offset` of the upload.
  Result<std::string> PutWorkspace(const store::Run& run, uint64_t offset, std::string data) const {
    return Send("PUT",
                fmt::format("/api/v1/worker/runs/{}/workspace?name={}&attempt={}&offset={}", run.id, PercentEncode(o_.name),
                            run.attempt, offset),
                "application/x-tar", std::move(data));
  }

 private:
  Result<std::string> Send(const char* method, const std::string& path, const char* type, std::string body) const {
    auto r = client_.Send({.method = method,
                           .url = o_.server + path,
                           .headers = {{"authorization", "Bearer " + o_.token}, {"content-type", type}},
                           .body = std::move(body)});
    if (!r.ok()) return r.status();
    if (r->status / 100 != 2) return server::ParseApiError(r->status, r->body);
    return std::move(r->body);
  }

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
    body.Set("data_base64", Base64Encode(data));  // the bytes as printed: a step's output need not be UTF-8
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

// Uploads what the release reads from `workspace` (release::WorkspaceTrees) to the server as one
// tar stream in parts below its body limit, then asks it to release the run with `message`: OK
// when the server took the release (it ends the run). The parts may reach any of the servers
// sharing a store (they keep them there); an upload whose earlier parts were lost
// (FailedPrecondition: the offset is not what the store holds) is started over, twice at most.
Status UploadAndRelease(const Api& api, const ci::Job& job, const fs::path& workspace, const ci::ImageSpec& image,
                        const std::string& message) {
  constexpr size_t kPart = 512 << 10;  // under the server's default body limit (1 MiB)
  GANTRY_ASSIGN_OR_RETURN(std::vector<oci::TarTree> trees, release::WorkspaceTrees(workspace, image));
  Status status;
  for (int round = 0; round < 3; ++round) {
    Sha256 sha;
    std::string part;
    uint64_t sent = 0;
    auto send = [&](size_t n) -> Status {
      GANTRY_RETURN_IF_ERROR(api.PutWorkspace(job.run, sent, part.substr(0, n)).status());
      sent += n;
      part.erase(0, n);
      return OkStatus();
    };
    auto written = oci::WriteTreesTar(
        trees,
        [&](std::string_view data) -> Status {
          sha.Update(data);
          part.append(data);
          while (part.size() >= kPart) GANTRY_RETURN_IF_ERROR(send(kPart));
          return OkStatus();
        },
        job.max_workspace_bytes);
    status = written.status();
    if (status.ok() && !part.empty()) status = send(part.size());
    if (status.ok()) {
      Value body = Value::Map();
      body.Set("digest", "sha256:" + sha.FinishHex());
      body.Set("message", message);
      return api.PostRun(job.run, "release", body).status();
    }
    if (status.code() != Code::kFailedPrecondition) break;
    log::Warn("worker: run {}: upload for the release: {}: starting over", job.run.id, status.message());
  }
  return status.WithContext("upload the workspace for the release");
}

// A run's final state and message.
using Outcome = std::pair<RunState, std::string>;

// Builds `job` and reports its end; nullopt when its release was handed to the server (it ends
// the run), or the server did not answer the hand-over (the run's lease decides).
std::optional<Outcome> Build(const WorkerOptions& o, const Api& api, ci::Executor& executor, git::Mirrors& mirrors,
                             const ci::Job& job, Claim& claim) {
  const store::Run& run = job.run;
  if (Status s = ci::CheckIsolation(job, executor); !s.ok()) {
    return Outcome{RunState::kFailed, s.message() + "; start this worker without --no-sandbox to build it"};
  }
  // A fork's pull request is fetched into a mirror of its own, removed with the run.
  auto source = ci::RunRepository::Open(mirrors, run, run.repo != run.pipeline,
                                        o.data_dir / "fork-mirrors" / std::to_string(run.id), o.git);
  if (!source.ok()) return Outcome{RunState::kFailed, source.status().message()};
  const fs::path run_dir = o.data_dir / "runs" / std::to_string(run.id);
  auto co = ci::CheckOut((*source)->repo(), run, run_dir, [&](const std::string& commit) {
    Value body = Value::Map();
    body.Set("commit", commit);
    return api.PostRun(run, "commit", body).status();
  });
  if (!co.ok()) return Outcome{co.status().code() == Code::kAborted ? RunState::kCancelled : RunState::kFailed, co.status().message()};
  std::string notes = co->notes;
  ci::RunOptions ro = ci::RunOptionsOf(job, *co, run_dir, o.data_dir / "caches");
  ApiRecorder recorder(api, run, claim);
  ro.recorder = &recorder;
  ro.fenced = &claim.lost;
  for (auto& line : ci::OutOfScopeNotes(job, co->pipeline, ro.context)) notes += (notes.empty() ? "" : "; ") + line;
  auto with_notes = [&](std::string message) { return notes.empty() ? message : notes + "; " + message; };
  if (!ci::TriggerMatches(co->pipeline.triggers, ro.context)) {
    return Outcome{RunState::kCancelled,
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
  if (result.ok() && result->state == RunState::kSucceeded && job.releases && job.trusted &&
      run.event == store::RunEvent::kPush && co->pipeline.image) {
    if (claim.cancel.load()) {
      // As on a server: a cancel that came as the last step ended still keeps the release from starting.
      fs::remove_all(co->workspace, ec);
      return Outcome{RunState::kCancelled, with_notes("cancelled before the release started")};
    }
    Status released = UploadAndRelease(api, job, co->workspace, *co->pipeline.image, with_notes(ci::RunOutcome(*result, false)));
    fs::remove_all(co->workspace, ec);
    if (released.ok()) return std::nullopt;
    if (released.code() == Code::kDeadlineExceeded || released.code() == Code::kUnavailable) {
      // The server may have taken the release and its answer been lost, or be stopping: ending the
      // run here could end it under its release. Its lease decides: the server renews it while it
      // releases, else it expires and the run is built again.
      log::Warn("worker: run {}: {}: left to its lease", run.id, released.message());
      return std::nullopt;
    }
    if (released.code() == Code::kAborted) claim.Stop(true);  // the claim is lost: nothing more is written
    return Outcome{RunState::kFailed, with_notes(fmt::format("{}, but not released: {}", ci::RunOutcome(*result, false),
                                                               released.message()))};
  }
  fs::remove_all(co->workspace, ec);  // artifacts stay in run_dir
  if (!result.ok()) return Outcome{RunState::kFailed, with_notes(result.status().message())};
  return Outcome{result->state, with_notes(ci::RunOutcome(*result, claim.cancel.load()))};
}

// One claim loop: claims and builds runs, one at a time, until a signal asks it to stop. The
// token's refusal (PermissionDenied, Unauthenticated) ends it with that error.
Status ClaimLoop(const WorkerOptions& o, const Api& api, ci::Executor& executor, git::Mirrors& mirrors,
                 const Value& claim_body) {
  while (!g_worker_stop.load()) {
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
      for (int i = 0; i < 20 && !g_worker_stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (job_json->IsNull()) continue;
    auto job = ci::ParseJob(*job_json);
    if (!job.ok()) {
      // Claimed but unreadable (a server of another version): its lease expires and another takes it.
      log::Warn("worker: the server's job is unreadable: {}", job.status().message());
      continue;
    }
    ++g_building;
    log::Info("worker: run {} (attempt {}) of {} {}", job->run.id, job->run.attempt, git::ScrubUrl(job->run.repo), job->run.ref);
    Claim claim;
    std::atomic<bool> done{false};
    std::thread renew([&] { RenewLoop(api, *job, claim, done); });
    std::optional<Outcome> outcome = Build(o, api, executor, mirrors, *job, claim);
    done.store(true);
    renew.join();
    if (!outcome) {
      log::Info("worker: run {}: built; its release is the server's", job->run.id);
    } else if (claim.lost.load()) {
      log::Warn("worker: run {}: attempt {} ended {} after it was taken over: not recorded", job->run.id, job->run.attempt,
                store::Name(outcome->first));
    } else {
      Value end = Value::Map();
      end.Set("state", store::Name(outcome->first));
      end.Set("message", outcome->second);
      auto finished = api.PostRun(job->run, "finish", end);
      if (!finished.ok()) {
        log::Warn("worker: run {}: record its end ({}): {}", job->run.id, store::Name(outcome->first), finished.status().message());
      } else {
        log::Info("worker: run {} {}: {}", job->run.id, store::Name(outcome->first), outcome->second);
      }
    }
    --g_building;
  }
  return OkStatus();
}

// Runs o.concurrency claim loops until a signal asks them to stop, or one ends with an error
// (which stops the others after their runs and is returned).
Status RunWorker(const WorkerOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(BuiltExecutor executor, MakeExecutor(o.executor, deps));
  GANTRY_RETURN_IF_ERROR(ci::PrepareDataDir(o.data_dir, *executor.executor));
  std::error_code ec;
  fs::remove_all(o.data_dir / "fork-mirrors", ec);  // left by runs a crash ended
  git::Mirrors mirrors(o.data_dir / "mirrors");
  Api api(o);
  signal(SIGINT, StopWorker);
  signal(SIGTERM, StopWorker);
  fmt::print(deps.out, "gantry worker {} claiming runs from {} (labels: {}; {} at a time)\n", o.name, o.server,
             o.labels.empty() ? "none" : store::FormatLabels(o.labels), o.concurrency);
  std::fflush(deps.out);
  Value claim_body = Value::Map();
  Value labels = Value::Map();
  for (const auto& [k, v] : o.labels) labels.Set(k, v);
  claim_body.Set("labels", labels);
  claim_body.Set("untrusted", o.untrusted);
  std::vector<Status> ended(static_cast<size_t>(o.concurrency));
  std::vector<std::thread> loops;
  for (size_t i = 0; i < ended.size(); ++i) {
    loops.emplace_back([&, i] {
      ended[i] = ClaimLoop(o, api, *executor.executor, mirrors, claim_body);
      if (!ended[i].ok()) g_worker_stop.store(true);
    });
  }
  for (auto& t : loops) t.join();
  for (const Status& s : ended) GANTRY_RETURN_IF_ERROR(s);
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
  cmd->add_option("--concurrency", f->concurrency, "Runs built at a time, each with its own lease (default 1, at most 64)");
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
