#include "ci/server.h"

#include <charconv>

#include "base/clock.h"
#include "base/log.h"
#include "base/path.h"
#include "ci/mask.h"
#include "ci/runner.h"
#include "value/value.h"

namespace gantry::ci {
namespace fs = std::filesystem;
using store::RunState;
using value::Value;

namespace {

std::string TimeText(const std::optional<store::Time>& t) { return t ? Rfc3339(*t) : ""; }

Value RunJson(const store::Run& r) {
  Value v = Value::Map();
  v.Set("id", r.id);
  v.Set("repo", git::ScrubUrl(r.repo));
  v.Set("pipeline", git::ScrubUrl(r.pipeline));
  v.Set("commit", r.commit);
  v.Set("ref", r.ref);
  v.Set("event", store::Name(r.event));
  v.Set("state", store::Name(r.state));
  v.Set("attempt", r.attempt);
  v.Set("message", r.message);
  v.Set("created_at", Rfc3339(r.created_at));
  v.Set("started_at", TimeText(r.started_at));
  v.Set("finished_at", TimeText(r.finished_at));
  if (!r.steps.empty()) {
    Value steps = Value::Seq();
    for (const auto& s : r.steps) {
      Value sv = Value::Map();
      sv.Set("name", s.name);
      sv.Set("state", store::Name(s.state));
      sv.Set("exit_code", s.exit_code ? Value(*s.exit_code) : Value());
      sv.Set("started_at", TimeText(s.started_at));
      sv.Set("finished_at", TimeText(s.finished_at));
      steps.Append(sv);
    }
    v.Set("steps", steps);
  }
  return v;
}

// Which paths a push changed, from the webhook payload, kept beside the store so that `when:
// paths:` still filters after a restart re-queues the run: <data_dir>/changed-paths/<run id>.
fs::path ChangedPathsFile(const fs::path& data_dir, int64_t run_id) {
  return data_dir / "changed-paths" / (std::to_string(run_id) + ".json");
}

bool SameRepo(std::string_view configured, const webhook::Event& e) {
  auto strip = [](std::string_view s) {
    if (s.ends_with(".git")) s.remove_suffix(4);
    while (s.ends_with("/")) s.remove_suffix(1);
    return s;
  };
  std::string_view c = strip(configured);
  if (!e.clone_url.empty() && strip(e.clone_url) == c) return true;
  if (!e.repo_full_name.empty()) {
    std::string suffix = "/" + e.repo_full_name;
    if (c.ends_with(suffix)) return true;
  }
  return false;
}

}  // namespace

Server::Server(store::Store& store, http::Server& http, Executor& executor, ServerOptions options)
    : store_(store), http_(http), executor_(executor), options_(std::move(options)) {}

Server::~Server() { Stop(); }

Status Server::Start() {
  if (options_.webhook.secret.empty()) {
    return InvalidArgumentError("a webhook secret is required (--webhook-secret-env): Gantry never accepts unsigned webhooks");
  }
  for (const auto& r : options_.repos) GANTRY_RETURN_IF_ERROR(git::ValidateUrl(r, options_.git.allow_file));
  std::error_code ec;
  fs::create_directories(options_.data_dir / "mirrors", ec);
  if (ec) return InternalError("create {}: {}", options_.data_dir.string(), ec.message());
  mirrors_ = std::make_unique<git::Mirrors>(options_.data_dir / "mirrors");

  GANTRY_ASSIGN_OR_RETURN(auto interrupted, store_.MarkUnfinishedInterrupted(options_.worker_name));
  for (const auto& r : interrupted) {
    if (options_.requeue_interrupted && r.attempt < options_.max_attempts) {
      Status s = store_.UpdateRun(r.id, RunState::kQueued,
                                  fmt::format("re-queued after a restart interrupted attempt {}", r.attempt));
      log::Info("ci: run {} was interrupted by a restart; {}", r.id, s.ok() ? "re-queued" : s.message());
    } else {
      fs::remove(ChangedPathsFile(options_.data_dir, r.id), ec);
      log::Info("ci: run {} was interrupted by a restart; left interrupted (attempt {} of {})", r.id, r.attempt,
                options_.max_attempts);
    }
  }
  http_.Handle("POST", "/webhook", [this](const http::Request& r) { return HandleWebhook(r); });
  http_.Handle("GET", "/api/runs", [this](const http::Request& r) { return HandleRuns(r); });
  http_.Handle("GET", "/api/runs/", [this](const http::Request& r) { return HandleRuns(r); });
  http_.Handle("POST", "/api/runs/", [this](const http::Request& r) { return HandleRuns(r); });
  for (int i = 0; i < std::max(1, options_.workers); ++i) threads_.emplace_back([this] { WorkerLoop(); });
  if (options_.poll_interval.count() > 0) threads_.emplace_back([this] { PollLoop(); });
  return OkStatus();
}

void Server::Stop() {
  if (stop_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [_, r] : running_) r->Cancel();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

http::Response Server::HandleWebhook(const http::Request& req) {
  auto ev = webhook::Verify(req.headers, req.body, options_.webhook);
  if (!ev.ok()) {
    const Status& s = ev.status();
    int code = 400;
    switch (s.code()) {
      case Code::kUnimplemented: return http::Response::Text(202, "ignored: " + s.message() + "\n");
      case Code::kResourceExhausted: code = 413; break;
      case Code::kUnauthenticated: code = 401; break;
      case Code::kPermissionDenied: code = 403; break;
      case Code::kFailedPrecondition: code = 500; break;
      default: code = 400;
    }
    log::Warn("ci: webhook from {} refused: {}", req.remote_addr, s.message());
    return http::Response::Text(code, s.message() + "\n");
  }
  const webhook::Event& e = *ev;
  if (e.kind == webhook::Kind::kPing) return http::Response::Text(200, "pong\n");
  if (!e.delivery_id.empty()) {
    auto fresh = store_.RecordDelivery(webhook::ProviderName(e.provider), e.delivery_id);
    if (!fresh.ok()) return http::Response::Text(503, fresh.status().message() + "\n");
    if (!*fresh) return http::Response::Text(200, "duplicate delivery, ignored\n");
  }
  const std::string* repo = nullptr;
  for (const auto& r : options_.repos) {
    if (SameRepo(r, e)) repo = &r;
  }
  if (repo == nullptr) return http::Response::Text(202, "ignored: repository is not configured\n");
  if (e.deleted) return http::Response::Text(202, "ignored: the ref was deleted\n");
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
      return http::Response::Text(202, "ignored: pull request " + pr.action + "\n");
    }
    run.event = store::RunEvent::kPullRequest;
    run.commit = pr.head_sha;
    run.ref = "refs/heads/" + pr.base_ref;
    if (pr.from_fork) {
      // Build the fork's commit from the fork; a repo not in Options::repos never gets secrets.
      run.repo = pr.head_clone_url.empty() ? "fork:unknown" : pr.head_clone_url;
      run.message = "pull request from a fork: secrets withheld";
    }
  }
  auto id = store_.CreateRun(run);
  if (!id.ok()) {
    if (id.status().code() == Code::kAlreadyExists) return http::Response::Text(200, "duplicate delivery, ignored\n");
    return http::Response::Text(503, id.status().message() + "\n");
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
  log::Info("ci: run {} queued for {} {} ({})", *id, git::ScrubUrl(*repo), run.ref, webhook::KindName(e.kind));
  return http::Response::Json(201, fmt::format("{{\"run\":{}}}\n", *id));
}

http::Response Server::HandleRuns(const http::Request& req) {
  if (!options_.api_token.empty()) {
    std::string_view auth = req.Header("authorization");
    std::string want = "Bearer " + options_.api_token;
    // Constant time in the token's length: a mismatch position must not show in the timing.
    bool ok = auth.size() == want.size();
    unsigned char diff = 0;
    for (size_t i = 0; ok && i < want.size(); ++i) diff |= static_cast<unsigned char>(auth[i] ^ want[i]);
    if (!ok || diff != 0) {
      http::Response r = http::Response::Text(401, "a bearer token is required (gantry: set GANTRY_TOKEN)\n");
      r.headers["www-authenticate"] = "Bearer realm=\"gantry\"";
      return r;
    }
  }
  std::string_view path = req.target;
  if (path == "/api/runs" || path == "/api/runs/") {
    store::RunFilter f;
    f.limit = 100;
    auto runs = store_.ListRuns(f);
    if (!runs.ok()) return http::Response::Text(503, runs.status().message() + "\n");
    Value list = Value::Seq();
    for (const auto& r : *runs) list.Append(RunJson(r));
    return http::Response::Json(200, value::ToJson(list) + "\n");
  }
  path.remove_prefix(std::string_view("/api/runs/").size());
  std::string_view id_text = path.substr(0, path.find('/'));
  std::string_view rest = path.substr(id_text.size());
  int64_t id = 0;
  auto [p, err] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (err != std::errc() || p != id_text.data() + id_text.size()) return http::Response::Text(404, "no such run\n");
  auto run = store_.GetRun(id);
  if (!run.ok()) return http::Response::Text(run.status().code() == Code::kNotFound ? 404 : 503, run.status().message() + "\n");
  if (req.method == "POST" && rest == "/cancel") {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = running_.find(id);
      if (it != running_.end()) {
        it->second->Cancel();
        return http::Response::Text(202, "cancelling\n");
      }
      if (auto r = releasing_.find(id); r != releasing_.end()) {
        r->second->store(true);
        return http::Response::Text(202, "cancelling the release\n");
      }
    }
    if (run->state == RunState::kQueued || run->state == RunState::kInterrupted) {
      Status s = store_.UpdateRun(id, RunState::kCancelled, "cancelled before it ran");
      return http::Response::Text(s.ok() ? 200 : 409, s.ok() ? "cancelled\n" : s.message() + "\n");
    }
    return http::Response::Text(409, "run is not running here\n");
  }
  if (req.method != "GET") return http::Response::Text(405, "method not allowed\n");
  if (rest.empty()) return http::Response::Json(200, value::ToJson(RunJson(*run)) + "\n");
  if (rest != "/logs") return http::Response::Text(404, "not found\n");
  bool follow = req.query.find("follow=1") != std::string::npos;
  http::Response resp;
  resp.headers["content-type"] = "text/plain; charset=utf-8";
  resp.stream = [this, id, follow](http::StreamWriter& w) {
    std::map<std::string, int64_t> next;  // step → next seq
    std::string current;
    for (;;) {
      auto r = store_.GetRun(id);
      if (!r.ok()) return;
      bool final = store::IsFinal(r->state) || r->state == RunState::kInterrupted;
      bool wrote = false;
      for (const auto& s : r->steps) {
        for (;;) {
          auto chunks = store_.ReadLog(id, s.name, next[s.name], 256);
          if (!chunks.ok() || chunks->empty()) break;
          for (const auto& c : *chunks) {
            if (current != s.name) {
              if (!w.Write(fmt::format("==> {} <==\n", s.name))) return;
              current = s.name;
            }
            if (!w.Write(c.data)) return;
            next[s.name] = c.seq + 1;
            wrote = true;
          }
        }
      }
      if (!follow || (final && !wrote)) return;
      if (!w.Alive()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  };
  return resp;
}

void Server::WorkerLoop() {
  while (!stop_.load()) {
    auto claimed = store_.ClaimNextQueuedRun(options_.worker_name);
    if (!claimed.ok()) {
      log::Warn("ci: claim a run: {}", claimed.status().message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (!claimed->has_value()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    Execute(**claimed);
  }
}

// Runs options_.after_success, its stages logged as steps of the run (masked like step logs).
Status Server::Release(const store::Run& run, const Pipeline& pipeline, const fs::path& workspace, const std::string& commit) {
  std::atomic<bool> cancel{false};
  {
    std::lock_guard<std::mutex> lock(mu_);
    releasing_[run.id] = &cancel;
  }
  Masker masker([&] {
    std::vector<std::string> v;
    for (const auto& [_, value] : options_.secrets) v.push_back(value);
    return v;
  }());
  std::mutex log_mu;
  std::map<std::string, int64_t, std::less<>> seq;  // GUARDED_BY(log_mu): stage → next chunk
  std::string current;                               // GUARDED_BY(log_mu): the stage logging last
  auto set_state = [&](const std::string& stage, RunState state) {
    store::Step step{.name = stage, .state = state};
    if (Status s = store_.UpsertStep(run.id, step); !s.ok()) log::Warn("ci: run {}: step {}: {}", run.id, stage, s.message());
  };
  auto log_line = [&](std::string_view stage, std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    auto it = seq.find(stage);
    if (it == seq.end()) {
      if (!current.empty()) set_state(current, RunState::kSucceeded);
      it = seq.emplace(std::string(stage), 0).first;
      set_state(it->first, RunState::kRunning);
    }
    current = it->first;
    std::string chunk = masker.MaskAll(std::string(line) + "\n");
    if (Status s = store_.AppendLogChunk(run.id, stage, it->second++, chunk.substr(0, store::kMaxLogChunkBytes)); !s.ok()) {
      log::Warn("ci: run {}: log of {}: {}", run.id, stage, s.message());
    }
  };
  Status result = options_.after_success(SucceededRun{run, pipeline, workspace, commit, log_line, &cancel});
  {
    std::lock_guard<std::mutex> lock(log_mu);
    if (!current.empty()) {
      set_state(current, result.ok() ? RunState::kSucceeded : result.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed);
    }
  }
  if (!result.ok()) log_line(current.empty() ? "release" : current, "error: " + result.message());
  std::lock_guard<std::mutex> lock(mu_);
  releasing_.erase(run.id);
  return result;
}

void Server::Execute(const store::Run& run) {
  fs::path changed_paths_file = ChangedPathsFile(options_.data_dir, run.id);
  auto fail = [&](RunState state, const std::string& message) {
    std::error_code ec;
    fs::remove(changed_paths_file, ec);  // the run is final
    Status s = store_.UpdateRun(run.id, state, message);
    if (!s.ok()) log::Warn("ci: run {}: store: {}", run.id, s.message());
    log::Info("ci: run {} {}: {}", run.id, store::Name(state), message);
  };
  bool trusted = std::find(options_.repos.begin(), options_.repos.end(), run.repo) != options_.repos.end();
  auto repo = mirrors_->Open(run.repo, options_.git);
  if (!repo.ok()) return fail(RunState::kFailed, "open " + git::ScrubUrl(run.repo) + ": " + repo.status().message());
  if (auto f = (*repo)->Fetch(); !f.ok()) return fail(RunState::kFailed, "fetch: " + f.status().message());
  // The payload is a hint: build its commit only when the mirror has it, else the ref's tip.
  auto commit = run.commit.empty() ? Result<std::string>(NotFoundError("no commit")) : (*repo)->Resolve(run.commit);
  if (!commit.ok()) commit = (*repo)->Resolve(run.ref);
  if (!commit.ok()) return fail(RunState::kFailed, "resolve " + run.ref + ": " + commit.status().message());
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
  ro.secrets = options_.secrets;
  ro.withhold_secrets = !trusted;
  ro.parallelism = options_.parallelism;
  ro.store = &store_;
  ro.run_id = run.id;
  Context& c = ro.context;
  c.event = run.event == store::RunEvent::kPullRequest ? "pull_request" : run.event == store::RunEvent::kManual ? "manual" : "push";
  if (run.ref.starts_with("refs/tags/")) {
    c.event = run.event == store::RunEvent::kPush ? "tag" : c.event;
    c.tag = run.ref.substr(10);
  } else if (run.ref.starts_with("refs/heads/")) {
    c.branch = run.ref.substr(11);
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
    std::lock_guard<std::mutex> lock(mu_);
    running_[run.id] = &runner;
  }
  auto result = runner.Run();
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(run.id);
  }
  if (!result.ok()) return fail(RunState::kFailed, result.status().message());
  if (result->state == RunState::kSucceeded && trusted && run.event == store::RunEvent::kPush && pipeline->image &&
      options_.after_success) {
    if (Status s = Release(run, *pipeline, workspace, *commit); !s.ok()) {
      fs::remove_all(workspace, ec);
      return fail(s.code() == Code::kCancelled ? RunState::kCancelled : RunState::kFailed, s.message());
    }
  }
  int failed = 0;
  for (const auto& s : result->steps) failed += s.state == RunState::kFailed;
  fail(result->state, result->state == RunState::kSucceeded ? fmt::format("{} steps succeeded", result->steps.size())
                      : result->state == RunState::kCancelled ? std::string("cancelled")
                                                              : fmt::format("{} step(s) failed", failed));
  fs::remove_all(workspace, ec);  // artifacts stay in run_dir
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
