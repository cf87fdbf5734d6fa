#include "server/ci_front.h"

#include <charconv>
#include <chrono>
#include <map>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "git/git.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::server {
namespace {

using store::RunState;
using value::Value;

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
  v.Set("trusted", r.trusted);
  v.Set("approved_by", r.approved_by);
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

}  // namespace

http::Response StreamLogs(ci::Server& ci, int64_t id, bool follow) {
  http::Response resp;
  resp.headers["content-type"] = "text/plain; charset=utf-8";
  resp.stream = [&ci, id, follow](http::StreamWriter& w) {
    std::map<std::string, int64_t> next;  // step → next seq
    std::string current;
    for (;;) {
      auto r = ci.GetRun(id);
      if (!r.ok()) return;
      bool final = store::IsFinal(r->state) || r->state == RunState::kInterrupted;
      bool wrote = false;
      for (const auto& s : r->steps) {
        for (;;) {
          auto chunks = ci.ReadLog(id, s.name, next[s.name], 256);
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

namespace {

// The project a run's permissions are checked on: "*" for a run of no project.
std::string ProjectOf(const CiFrontOptions& o, const store::Run& run) {
  std::string project = o.project_of ? o.project_of(run) : "";
  return project.empty() ? std::string(authz::kAllProjects) : project;
}

// /api/runs and /api/runs/...: the routes of the file comment, for the principal `who`.
Result<http::Response> ServeRuns(ci::Server& ci, Access& access, const CiFrontOptions& o, const http::Request& req,
                            const authz::Principal& who, AuditNote& note) {
  std::string_view path = req.target;
  if (path == "/api/runs" || path == "/api/runs/") {
    if (req.method != "GET") return MethodNotAllowed(req, "GET");
    GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, access.LoadAuthorizer());
    if (!authz.AllowedSomewhere(who, authz::Permission::kRunsRead)) {
      return authz.Check(who, authz::Permission::kRunsRead, authz::kAllProjects);
    }
    GANTRY_ASSIGN_OR_RETURN(auto runs, ci.ListRuns(100));
    Value list = Value::Seq();
    for (const auto& r : runs) {
      if (authz.Allowed(who, authz::Permission::kRunsRead, ProjectOf(o, r))) list.Append(RunJson(r));
    }
    return http::Response::Json(200, value::ToJson(list) + "\n");
  }
  path.remove_prefix(std::string_view("/api/runs/").size());
  std::string_view id_text = path.substr(0, path.find('/'));
  std::string_view rest = path.substr(id_text.size());
  int64_t id = 0;
  auto [p, err] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (err != std::errc() || p != id_text.data() + id_text.size()) return NotFoundError("no run {:?}", id_text);
  const bool mutate = rest == "/approve" || rest == "/cancel";
  if (mutate && req.method != "POST") return MethodNotAllowed(req, "POST");
  if (!mutate && !rest.empty() && rest != "/logs") return NotFoundError("no such resource {}", req.target);
  if (!mutate && req.method != "GET") return MethodNotAllowed(req, "GET");
  GANTRY_ASSIGN_OR_RETURN(store::Run run, ci.GetRun(id));
  const std::string project = ProjectOf(o, run);
  note.project = project == authz::kAllProjects ? "" : project;
  if (rest == "/approve") {
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, authz::Permission::kRunsApprove, project));
    GANTRY_RETURN_IF_ERROR(ci.Approve(id, who.name));
    return http::Response::Text(200, "approved: queued\n");
  }
  if (rest == "/cancel") {
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, authz::Permission::kRunsCancel, project));
    GANTRY_ASSIGN_OR_RETURN(ci::Cancelled cancelled, ci.Cancel(id));
    switch (cancelled) {
      case ci::Cancelled::kStopping: return http::Response::Text(202, "cancelling\n");
      case ci::Cancelled::kStoppingRelease: return http::Response::Text(202, "cancelling the release\n");
      case ci::Cancelled::kBeforeItRan: return http::Response::Text(200, "cancelled\n");
      case ci::Cancelled::kRequested:
        return http::Response::Text(202, fmt::format("cancelling: {} stops it at its next lease renewal\n", run.worker));
    }
    return InternalError("ci: unknown outcome of a cancel");
  }
  GANTRY_RETURN_IF_ERROR(access.Authorize(who, authz::Permission::kRunsRead, project));
  if (rest.empty()) return http::Response::Json(200, value::ToJson(RunJson(run)) + "\n");
  return StreamLogs(ci, id, req.query.find("follow=1") != std::string::npos);
}

// The audit note of a request before anything is read: "runs.cancel" of "run 7".
AuditNote NoteOf(const http::Request& req) {
  std::string_view path = req.target;
  if (!path.starts_with("/api/runs/")) return {};
  path.remove_prefix(std::string_view("/api/runs/").size());
  std::string_view id = path.substr(0, path.find('/'));
  std::string_view rest = path.substr(id.size());
  std::string action = rest == "/approve" ? "runs.approve" : rest == "/cancel" ? "runs.cancel" : fmt::format("runs{}", rest);
  return {.action = std::move(action), .object = fmt::format("run {}", id)};
}

// The answer to a webhook by what ci::Server::Accept did with it.
Result<http::Response> Respond(const ci::Accepted& a) {
  switch (a.outcome) {
    case ci::Accepted::Outcome::kQueued:
      return http::Response::Json(201, fmt::format("{{\"run\":{},\"state\":\"{}\"}}\n", a.run, store::Name(a.state)));
    case ci::Accepted::Outcome::kDuplicate: return http::Response::Text(200, a.note + "\n");
    case ci::Accepted::Outcome::kIgnored: return http::Response::Text(202, "ignored: " + a.note + "\n");
  }
  return InternalError("ci: unknown outcome of a webhook");
}

}  // namespace

Status ServeCi(Front& front, ci::Server& ci, CiFrontOptions options) {
  if (options.access == nullptr) {
    return InvalidArgumentError("authentication is required: the REST API (runs, logs, cancel, approve) never answers without it");
  }
  if (options.webhook.secret.empty()) {
    return InvalidArgumentError("a webhook secret is required (--webhook-secret-env): Gantry never accepts unsigned webhooks");
  }
  // A webhook that queues a run is a mutating action of its sender: one audit row (who: the
  // provider of the verified delivery; source: its address). Duplicates and ignored events change
  // nothing and leave none; refused deliveries are logged by the front.
  GANTRY_RETURN_IF_ERROR(front.AddWebhook(
      "/webhook", std::move(options.webhook),
      [&ci, access = options.access, project_of = options.project_of, on_pull_request = options.on_pull_request](
          const webhook::Event& e, const http::Request& req) -> Result<http::Response> {
        if (on_pull_request && e.kind == webhook::Kind::kPullRequest) on_pull_request(e);
        GANTRY_ASSIGN_OR_RETURN(ci::Accepted a, ci.Accept(e));
        if (a.outcome == ci::Accepted::Outcome::kQueued) {
          std::string project;
          if (auto run = ci.GetRun(a.run); run.ok() && project_of) project = project_of(*run);
          auto row = access->store().Audit({.actor = fmt::format("webhook:{}", webhook::ProviderName(e.provider)),
                                            .action = "runs.create",
                                            .object = fmt::format("run {}", a.run),
                                            .details = fmt::format("{} {} {}", e.repo_full_name, e.ref, e.after),
                                            .source = req.remote_addr,
                                            .project = project});
          if (!row.ok()) log::Warn("server: audit the run webhook {} queued: {}", a.run, row.status().message());
        }
        return Respond(a);
      }));
  auto api = [&ci, o = std::move(options)](const http::Request& req) {
    return o.access->Serve(req, NoteOf(req), [&](const authz::Principal& who, AuditNote& note) {
      return ServeRuns(ci, *o.access, o, req, who, note);
    });
  };
  front.Handle("GET", "/api/runs", api);
  front.Handle("GET", "/api/runs/", api);
  front.Handle("POST", "/api/runs/", api);
  return OkStatus();
}

}  // namespace gantry::server
