#include "server/worker_api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>

#include "base/base64.h"
#include "base/log.h"
#include "value/value.h"

namespace gantry::server {
namespace {

using value::Value;

// A request of a worker: who sent it (the name its claims carry) and its body.
struct WorkerRequest {
  std::string worker;  // "<principal>/<name>"
  // The project whose runs its token builds (a project's worker pool); nullopt: every project's.
  std::optional<std::string> project;
  Value body;
  int64_t run = 0;  // the {id} of /runs/ routes
  int attempt = 0;
  std::string_view data;  // an upload's bytes: the request's body
};

Result<std::string> Text(const Value& body, std::string_view key) {
  const Value* v = body.Get(key);
  if (v == nullptr || !v->IsString()) return InvalidArgumentError("{:?} must be a string", key);
  return std::string(v->AsString());
}

Result<int64_t> Int(const Value& body, std::string_view key, int64_t min) {
  const Value* v = body.Get(key);
  if (v == nullptr || !v->IsInt() || v->AsInt() < min) return InvalidArgumentError("{:?} must be an integer >= {}", key, min);
  return v->AsInt();
}

Status CheckName(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (!ok) return InvalidArgumentError("\"name\" {:?}: 1 to 63 letters, digits, '.', '_' or '-'", name);
  return OkStatus();
}

// Authenticates and authorizes (runs.work on "*", or on the one project of a robot token: a
// project's worker pool) the request and reads its body: the worker's name, and for /runs/{id}/
// routes the run and the claim's attempt. A run of another project than the token's is NotFound,
// as if it did not exist.
Result<WorkerRequest> Read(ci::Server& ci, Access& access, const http::Request& req, authz::Principal& who) {
  GANTRY_ASSIGN_OR_RETURN(who, access.Authenticate(req));
  WorkerRequest out;
  if (Status all = access.Authorize(who, authz::Permission::kRunsWork, authz::kAllProjects); !all.ok()) {
    if (!who.robot()) return all;
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, authz::Permission::kRunsWork, who.robot_project));
    out.project = who.robot_project;
  }
  if (req.method == "PUT") {
    // An upload: the body is data, the fields are in the query (numbers as integers).
    out.body = Value::Map();
    out.data = req.body;
    for (const auto& [key, text] : ParseQuery(req.query)) {
      int64_t n = 0;
      auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (key != "name" && err == std::errc() && p == text.data() + text.size()) {
        out.body.Set(key, n);
      } else {
        out.body.Set(key, text);
      }
    }
  } else {
    auto body = value::ParseJson(req.body, "the request body");
    if (!body.ok() || !body->IsMap()) {
      return InvalidArgumentError("the request body must be a JSON object{}", body.ok() ? "" : ": " + body.status().message());
    }
    out.body = *std::move(body);
  }
  GANTRY_ASSIGN_OR_RETURN(std::string name, Text(out.body, "name"));
  GANTRY_RETURN_IF_ERROR(CheckName(name));
  out.worker = who.name + "/" + name;
  if (auto id = req.params.find("id"); id != req.params.end()) {
    const std::string& text = id->second;
    auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), out.run);
    if (err != std::errc() || p != text.data() + text.size() || out.run < 1) return NotFoundError("no run {:?}", text);
    GANTRY_ASSIGN_OR_RETURN(int64_t attempt, Int(out.body, "attempt", 1));
    out.attempt = static_cast<int>(attempt);
    if (out.project) {
      GANTRY_ASSIGN_OR_RETURN(store::Run run, ci.GetRun(out.run));
      if (run.project != *out.project) return NotFoundError("no run {} in project {}", out.run, *out.project);
    }
  }
  return out;
}

void AuditRow(Access& access, const authz::Principal& who, const http::Request& req, std::string action, int64_t run,
              std::string details) {
  auto row = access.store().Audit({.actor = who.name,
                                   .action = std::move(action),
                                   .object = fmt::format("run {}", run),
                                   .details = std::move(details),
                                   .source = req.remote_addr});
  if (!row.ok()) log::Warn("server: audit {} of run {}: {}", req.route, run, row.status().message());
}

Result<store::Labels> LabelsOf(const Value& body) {
  store::Labels labels;
  const Value* v = body.Get("labels");
  if (v == nullptr || v->IsNull()) return labels;
  if (!v->IsMap()) return InvalidArgumentError("\"labels\" must be an object of strings");
  std::string text;
  for (const auto& e : v->entries()) {
    if (!e.value.IsString()) return InvalidArgumentError("\"labels\" must be an object of strings");
    text += fmt::format("{}{}={}", text.empty() ? "" : ",", e.key.AsString(), e.value.AsString());
  }
  return store::ParseLabels(text);
}

// POST /api/v1/worker/claim: a streamed long poll.
Result<http::Response> Claim(ci::Server& ci, Access& access, const http::Request& req) {
  authz::Principal who;
  GANTRY_ASSIGN_OR_RETURN(WorkerRequest w, Read(ci, access, req, who));
  GANTRY_ASSIGN_OR_RETURN(store::Labels labels, LabelsOf(w.body));
  bool untrusted = false;
  if (const Value* u = w.body.Get("untrusted"); u != nullptr && !u->IsNull()) {
    if (!u->IsBool()) return InvalidArgumentError("\"untrusted\" must be true or false");
    untrusted = u->AsBool();
  }
  int64_t wait = 25;
  if (w.body.Get("wait_seconds") != nullptr) {
    GANTRY_ASSIGN_OR_RETURN(wait, Int(w.body, "wait_seconds", 0));
    if (wait > 30) return InvalidArgumentError("\"wait_seconds\" must be at most 30");
  }
  http::Response resp = http::Response::Json(200, "");
  resp.stream = [&ci, &access, req, who, w = std::move(w), labels = std::move(labels), untrusted, wait](http::StreamWriter& out) {
    // A worker that went away claims nothing more: the claim asks before each look.
    auto got = ci.WorkerClaim(w.worker, labels, untrusted, std::chrono::seconds(wait), w.project,
                              [&out] { return out.Alive(); });
    const std::optional<ci::Job> job = got.ok() ? *std::move(got) : std::nullopt;
    Value answer = Value::Map();
    if (!got.ok()) {
      answer.Set("error", got.status().message());
    } else if (job) {
      AuditRow(access, who, req, "runs.claim", job->run.id, fmt::format("{} attempt {}", w.worker, job->run.attempt));
      answer.Set("job", ci::JobJson(*job));
    } else {
      answer.Set("job", Value());
    }
    // A claimed run whose answer cannot reach its worker (it went away while the run was being
    // claimed) is queued again at once rather than after its lease. An answer written to a
    // connection that then fails is not known here: that run waits for its lease.
    if (!out.Write(value::ToJson(answer) + "\n") && job) {
      Status s = ci.WorkerUnclaim(job->run.id, w.worker, job->run.attempt);
      log::Warn("server: run {}: the claim's answer did not reach {}: {}", job->run.id, w.worker,
                s.ok() ? "re-queued" : "not re-queued (" + s.message() + "); its lease will expire");
    }
  };
  return resp;
}

Result<http::Response> Lease(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(store::Renewal renewal, ci.WorkerRenew(w.run, w.worker, w.attempt));
  if (renewal == store::Renewal::kLost) {
    return AbortedError("run {}: {} no longer holds attempt {} (its lease expired and the run was taken over, or it ended)",
                        w.run, w.worker, w.attempt);
  }
  return http::Response::Json(
      200, fmt::format("{{\"state\":\"{}\"}}\n", renewal == store::Renewal::kCancelRequested ? "cancel_requested" : "renewed"));
}

Result<http::Response> Steps(ci::Server& ci, const WorkerRequest& w) {
  const Value* s = w.body.Get("step");
  if (s == nullptr || !s->IsMap()) return InvalidArgumentError("\"step\" must be an object");
  store::Step step;
  GANTRY_ASSIGN_OR_RETURN(step.name, Text(*s, "name"));
  GANTRY_ASSIGN_OR_RETURN(std::string state, Text(*s, "state"));
  auto parsed = store::ParseRunState(state);
  if (!parsed) return InvalidArgumentError("\"step\": unknown state {:?}", state);
  step.state = *parsed;
  if (const Value* code = s->Get("exit_code"); code != nullptr && !code->IsNull()) {
    if (!code->IsInt()) return InvalidArgumentError("\"step\": \"exit_code\" must be an integer or null");
    step.exit_code = static_cast<int>(code->AsInt());
  }
  if (s->Get("attempts") != nullptr) {
    GANTRY_ASSIGN_OR_RETURN(int64_t attempts, Int(*s, "attempts", 0));
    step.attempts = static_cast<int>(attempts);
  }
  if (const Value* needs = s->Get("needs"); needs != nullptr) {
    for (const auto& n : needs->items()) {
      if (!n.IsString()) return InvalidArgumentError("\"step\": \"needs\" must be a list of strings");
      step.needs.emplace_back(n.AsString());
    }
  }
  GANTRY_RETURN_IF_ERROR(ci.WorkerStep(w.run, w.worker, w.attempt, step));
  return http::Response{.status = 204};
}

Result<http::Response> Logs(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(std::string step, Text(w.body, "step"));
  GANTRY_ASSIGN_OR_RETURN(int64_t seq, Int(w.body, "seq", 0));
  // The bytes the step printed, in base64 (they need not be UTF-8); "data", a JSON string, from
  // workers of earlier versions.
  std::string data;
  if (const Value* b = w.body.Get("data_base64"); b != nullptr) {
    std::optional<std::string> decoded = b->IsString() ? Base64Decode(b->AsString()) : std::nullopt;
    if (!decoded) return InvalidArgumentError("\"data_base64\" must be a base64 string");
    data = *std::move(decoded);
  } else {
    GANTRY_ASSIGN_OR_RETURN(data, Text(w.body, "data"));
  }
  GANTRY_ASSIGN_OR_RETURN(int64_t took, ci.WorkerLog(w.run, w.worker, w.attempt, step, seq, data));
  return http::Response::Json(200, fmt::format("{{\"seq\":{}}}\n", took));
}

Result<http::Response> Commit(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(std::string commit, Text(w.body, "commit"));
  GANTRY_RETURN_IF_ERROR(ci.WorkerCommit(w.run, w.worker, w.attempt, commit));
  return http::Response{.status = 204};
}

Result<http::Response> Finish(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(std::string state, Text(w.body, "state"));
  GANTRY_ASSIGN_OR_RETURN(std::string message, Text(w.body, "message"));
  auto parsed = store::ParseRunState(state);
  if (!parsed) return InvalidArgumentError("unknown state {:?}", state);
  GANTRY_RETURN_IF_ERROR(ci.WorkerFinish(w.run, w.worker, w.attempt, *parsed, message));
  return http::Response{.status = 204};
}

Result<http::Response> Workspace(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(int64_t offset, Int(w.body, "offset", 0));
  auto held = ci.WorkerUpload(w.run, w.worker, w.attempt, static_cast<uint64_t>(offset), w.data);
  if (!held.ok() && held.status().code() == Code::kResourceExhausted) {
    Status too_large = held.status();
    too_large.set_reason(http::kReasonBodyTooLarge);  // 413, not 429: sending it again does not help
    return too_large;
  }
  if (!held.ok()) return held.status();
  return http::Response::Json(200, fmt::format("{{\"offset\":{}}}\n", *held));
}

Result<http::Response> Release(ci::Server& ci, const WorkerRequest& w) {
  GANTRY_ASSIGN_OR_RETURN(std::string digest, Text(w.body, "digest"));
  GANTRY_ASSIGN_OR_RETURN(std::string message, Text(w.body, "message"));
  GANTRY_RETURN_IF_ERROR(ci.WorkerRelease(w.run, w.worker, w.attempt, digest, message));
  return http::Response::Json(202, "{\"state\":\"releasing\"}\n");
}

}  // namespace

void ServeWorkerApi(Front& front, ci::Server& ci, Access& access) {
  front.Handle("POST", "/api/v1/worker/claim", [&ci, &access](const http::Request& req) {
    auto r = Claim(ci, access, req);
    return r.ok() ? *std::move(r) : ProblemJson(r.status());
  });
  using Fn = Result<http::Response> (*)(ci::Server&, const WorkerRequest&);
  struct Route {
    const char* method;
    const char* name;
    Fn fn;
    const char* audit;  // the action of its audit row; nullptr: none
  };
  const Route routes[] = {{"POST", "lease", Lease, nullptr},        {"POST", "steps", Steps, nullptr},
                          {"POST", "logs", Logs, nullptr},          {"POST", "commit", Commit, nullptr},
                          {"POST", "finish", Finish, "runs.finish"}, {"PUT", "workspace", Workspace, nullptr},
                          {"POST", "release", Release, "runs.release"}};
  for (const Route& route : routes) {
    front.Handle(route.method, fmt::format("/api/v1/worker/runs/{{id}}/{}", route.name),
                 [&ci, &access, route](const http::Request& req) {
                   authz::Principal who;
                   auto w = Read(ci, access, req, who);
                   if (!w.ok()) return ProblemJson(w.status());
                   auto r = route.fn(ci, *w);
                   if (route.audit != nullptr) {
                     AuditRow(access, who, req, route.audit, w->run,
                              fmt::format("{} attempt {}: {}", w->worker, w->attempt,
                                          r.ok() ? "ok" : AuditResult(r.status())));
                   }
                   return r.ok() ? *std::move(r) : ProblemJson(r.status());
                 });
  }
}

}  // namespace gantry::server
