#include "server/api_v1.h"

#include <charconv>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include <fmt/ranges.h>

#include "base/clock.h"
#include "base/hash.h"
#include "git/git.h"
#include "server/ci_front.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::server {

// api/openapi.json's bytes, generated at build time (src/server/CMakeLists.txt).
extern const char kOpenApiJson[];
extern const size_t kOpenApiJsonSize;

std::string_view OpenApiDocument() { return {kOpenApiJson, kOpenApiJsonSize}; }

namespace {

using value::Value;

constexpr int kMaxLimit = 500;
constexpr auto kKeepAlive = std::chrono::seconds(15);

Value TimeOrNull(const std::optional<store::Time>& t) { return t ? Value(Rfc3339(*t)) : Value(); }

Result<int64_t> ParseId(std::string_view text, std::string_view what) {
  int64_t id = 0;
  auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (err != std::errc() || p != text.data() + text.size() || id < 1) return NotFoundError("no {} {:?}", what, text);
  return id;
}

std::string ParamOf(const http::Request& req, std::string_view name) {
  auto it = req.params.find(name);
  return it == req.params.end() ? std::string() : it->second;
}

// The project a run's permissions are checked on: "*" for a run of no project.
std::string RunProject(const ApiV1Options& o, const store::Run& run) {
  std::string project = o.project_of ? o.project_of(run) : "";
  return project.empty() ? std::string(authz::kAllProjects) : project;
}

Value RunJson(const ApiV1Options& o, const store::Run& r, bool with_steps) {
  Value v = Value::Map();
  v.Set("id", r.id);
  v.Set("pipeline", git::ScrubUrl(r.pipeline));
  v.Set("repo", git::ScrubUrl(r.repo));
  v.Set("ref", r.ref);
  v.Set("commit", r.commit);
  v.Set("event", store::Name(r.event));
  v.Set("state", store::Name(r.state));
  v.Set("message", r.message);
  v.Set("created_at", Rfc3339(r.created_at));
  v.Set("started_at", TimeOrNull(r.started_at));
  v.Set("finished_at", TimeOrNull(r.finished_at));
  v.Set("approved_by", r.approved_by);
  v.Set("project", o.project_of ? o.project_of(r) : "");
  if (with_steps) {
    Value steps = Value::Seq();
    for (const auto& s : r.steps) {
      Value sv = Value::Map();
      sv.Set("name", s.name);
      sv.Set("state", store::Name(s.state));
      sv.Set("exit_code", s.exit_code ? Value(*s.exit_code) : Value());
      sv.Set("started_at", TimeOrNull(s.started_at));
      sv.Set("finished_at", TimeOrNull(s.finished_at));
      steps.Append(sv);
    }
    v.Set("steps", steps);
  }
  return v;
}

Value DigestsJson(const std::map<std::string, std::string>& digests) {
  Value v = Value::Map();
  for (const auto& [repo, digest] : digests) v.Set(repo, digest);
  return v;
}

Value RunningJson(const store::Release& r) {
  Value v = Value::Map();
  v.Set("release", r.id);
  v.Set("config_revision", r.config_revision);
  v.Set("source_revision", r.source_revision);
  v.Set("image_digests", DigestsJson(r.image_digests));
  return v;
}

Value LatestJson(int64_t release, std::string_view state, std::string_view message) {
  Value v = Value::Map();
  v.Set("release", release);
  v.Set("state", state);
  v.Set("message", message);
  return v;
}

// A weak ETag of a response body.
std::string ETagOf(std::string_view body) { return "W/\"" + Sha256Hex(body).substr(0, 32) + "\""; }

// True when If-None-Match names `etag` (or is "*").
bool NotModified(const http::Request& req, std::string_view etag) {
  std::string_view inm = req.Header("if-none-match");
  while (!inm.empty()) {
    size_t comma = inm.find(',');
    std::string_view one = inm.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    // Weak comparison (RFC 9110 13.1.2): W/ is ignored on either side.
    auto strip = [](std::string_view t) { return t.starts_with("W/") ? t.substr(2) : t; };
    if (one == "*" || strip(one) == strip(etag)) return true;
    if (comma == std::string_view::npos) break;
    inm.remove_prefix(comma + 1);
  }
  return false;
}

// 200 with `body` and its ETag, or 304 when the client has it.
http::Response WithETag(const http::Request& req, std::string body) {
  const std::string etag = ETagOf(body);
  http::Response r = NotModified(req, etag) ? http::Response::Text(304, "") : http::Response::Json(200, std::move(body));
  r.headers["etag"] = etag;
  r.headers["cache-control"] = "private, no-cache";
  return r;
}

// GET /api/v1/matrix.
Result<http::Response> Matrix(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, authz::kAllProjects));
  store::Store& store = o.access->store();
  const deliver::Config config = o.deliver_config.value_or(deliver::Config{});
  GANTRY_ASSIGN_OR_RETURN(deliver::StatusReport report, deliver::GatherStatus(store, config, "", o.connect, o.pull_applications));
  // Environments: promotion order, then any the ledger knows that the configuration does not.
  std::vector<std::string> environments;
  if (auto order = deliver::PromotionOrder(config); order.ok()) environments = *order;
  std::set<std::string> known(environments.begin(), environments.end());
  for (const auto& row : report.rows) {
    if (known.insert(row.env).second) environments.push_back(row.env);
  }
  std::map<std::string, std::vector<store::TargetStatus>> push;  // app → the ledger's targets
  std::map<std::string, std::optional<store::Release>> newest;    // app → its newest release
  Value apps = Value::Seq();
  Value app_json;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) apps.Append(app_json);
  };
  for (const auto& row : report.rows) {
    if (row.app != current) {
      flush();
      current = row.app;
      app_json = Value::Map();
      app_json.Set("app", row.app);
      app_json.Set("cells", Value::Seq());
    }
    Value cell = Value::Map();
    cell.Set("environment", row.env);
    cell.Set("cluster", row.cluster);
    cell.Set("mode", row.mode);
    if (row.mode == "push") {
      if (!push.contains(row.app)) {
        GANTRY_ASSIGN_OR_RETURN(push[row.app], store.CurrentByTarget(row.app));
      }
      for (const auto& t : push[row.app]) {
        if (t.env != row.env || t.cluster != row.cluster) continue;
        cell.Set("running", t.running ? RunningJson(*t.running) : Value());
        cell.Set("latest", LatestJson(t.latest.id, store::Name(t.latest_target.state), t.latest_target.message));
      }
    } else {
      // A pull cell: what runs is the release whose revision the Application synced; the latest is
      // the app's newest release, pending until the agent has it, then as the Application's health.
      std::optional<store::Release> running;
      if (row.release != 0) {
        GANTRY_ASSIGN_OR_RETURN(running, store.GetRelease(row.release));
      }
      if (!newest.contains(row.app)) {
        GANTRY_ASSIGN_OR_RETURN(auto list, store.ListReleases(row.app, 1));
        newest[row.app] = list.empty() ? std::nullopt : std::optional<store::Release>(list.front());
      }
      cell.Set("running", running ? RunningJson(*running) : Value());
      std::string_view state = row.behind > 0                ? "pending"
                               : row.health == "Healthy"     ? "healthy"
                               : row.health == "Progressing" ? "applying"
                               : row.health == "Degraded" || row.health == "Missing" ? "failed"
                                                                                     : "pending";
      const auto& latest = newest[row.app];
      cell.Set("latest", latest ? LatestJson(latest->id, state, fmt::format("{}, {}", row.state, row.health)) : Value());
    }
    if (cell.Get("latest") == nullptr) cell.Set("latest", Value());
    if (cell.Get("running") == nullptr) cell.Set("running", Value());
    cell.Set("behind", row.behind);
    Value* cells = app_json.MutableGet("cells");
    cells->Append(cell);
  }
  flush();
  Value envs = Value::Seq();
  for (const auto& e : environments) envs.Append(e);
  Value warnings = Value::Seq();
  for (const auto& w : report.warnings) warnings.Append(w);
  Value doc = Value::Map();
  doc.Set("environments", envs);
  doc.Set("apps", apps);
  doc.Set("warnings", warnings);
  return WithETag(req, value::ToJson(doc) + "\n");
}

// GET /api/v1/apps/{app}/releases.
Result<http::Response> Releases(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, authz::kAllProjects));
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  const std::string app = ParamOf(req, "app");
  store::Store& store = o.access->store();
  GANTRY_ASSIGN_OR_RETURN(auto releases, store.ListReleases(app, page.limit + 1, page.before_id));
  std::optional<int64_t> next;
  if (releases.size() > static_cast<size_t>(page.limit)) {
    releases.resize(page.limit);
    next = releases.back().id;
  }
  Value items = Value::Seq();
  for (const auto& r : releases) {
    Value v = Value::Map();
    v.Set("id", r.id);
    v.Set("app", r.app);
    v.Set("config_revision", r.config_revision);
    v.Set("source_revision", r.source_revision);
    v.Set("image_digests", DigestsJson(r.image_digests));
    v.Set("started_by", r.started_by);
    v.Set("run", r.run_id ? Value(*r.run_id) : Value());
    v.Set("created_at", Rfc3339(r.created_at));
    GANTRY_ASSIGN_OR_RETURN(auto targets, store.ListTargets(r.id));
    Value tv = Value::Seq();
    for (const auto& t : targets) {
      Value one = Value::Map();
      one.Set("environment", t.env);
      one.Set("cluster", t.cluster);
      one.Set("state", store::Name(t.state));
      one.Set("message", t.message);
      one.Set("finished_at", TimeOrNull(t.finished_at));
      tv.Append(one);
    }
    v.Set("targets", tv);
    items.Append(v);
  }
  return ListResponse(req, items, next);
}

// GET /api/v1/runs: the runs the caller may read.
Result<http::Response> Runs(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kRunsRead)) {
    return authz.Check(who, authz::Permission::kRunsRead, authz::kAllProjects);
  }
  GANTRY_ASSIGN_OR_RETURN(auto runs, o.access->store().ListRuns({.before_id = page.before_id, .limit = page.limit + 1}));
  std::optional<int64_t> next;
  if (runs.size() > static_cast<size_t>(page.limit)) {
    runs.resize(page.limit);
    next = runs.back().id;
  }
  Value items = Value::Seq();
  for (const auto& r : runs) {
    if (authz.Allowed(who, authz::Permission::kRunsRead, RunProject(o, r))) items.Append(RunJson(o, r, false));
  }
  return ListResponse(req, items, next);
}

// /api/v1/runs/{id}[/logs|/cancel|/approve].
Result<http::Response> Run(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                           AuditNote& note, std::string_view action) {
  GANTRY_ASSIGN_OR_RETURN(int64_t id, ParseId(ParamOf(req, "id"), "run"));
  GANTRY_ASSIGN_OR_RETURN(store::Run run, o.ci->GetRun(id));
  const std::string project = RunProject(o, run);
  note.project = project == authz::kAllProjects ? "" : project;
  if (action == "approve") {
    GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kRunsApprove, project));
    GANTRY_RETURN_IF_ERROR(o.ci->Approve(id, who.name));
    GANTRY_ASSIGN_OR_RETURN(run, o.ci->GetRun(id));
    return http::Response::Json(200, value::ToJson(RunJson(o, run, true)) + "\n");
  }
  if (action == "cancel") {
    GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kRunsCancel, project));
    GANTRY_ASSIGN_OR_RETURN(ci::Cancelled cancelled, o.ci->Cancel(id));
    GANTRY_ASSIGN_OR_RETURN(run, o.ci->GetRun(id));
    return http::Response::Json(cancelled == ci::Cancelled::kBeforeItRan ? 200 : 202,
                                value::ToJson(RunJson(o, run, true)) + "\n");
  }
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kRunsRead, project));
  if (action == "logs") return StreamLogs(*o.ci, id, ParseQuery(req.query)["follow"] == "1");
  return http::Response::Json(200, value::ToJson(RunJson(o, run, true)) + "\n");
}

// GET /api/v1/events: Server-Sent Events the caller may read, until the client or the server goes.
Result<http::Response> Events(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  if (o.events == nullptr) return UnavailableError("this server publishes no events");
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kRunsRead) &&
      !authz.AllowedSomewhere(who, authz::Permission::kAppsRead)) {
    return authz.Check(who, authz::Permission::kRunsRead, authz::kAllProjects);
  }
  std::optional<int64_t> last_id;
  if (std::string_view text = req.Header("last-event-id"); !text.empty()) {
    int64_t id = 0;
    auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (err != std::errc() || p != text.data() + text.size() || id < 0) {
      return InvalidArgumentError("Last-Event-ID {:?}: expected the id of an event (a number)", text);
    }
    last_id = id;
  }
  std::shared_ptr<EventBus::Subscription> sub = o.events->Subscribe(last_id);
  http::Response resp;
  resp.headers["content-type"] = "text/event-stream";
  resp.headers["cache-control"] = "no-cache";
  resp.headers["x-accel-buffering"] = "no";
  resp.stream = [sub, authz = std::move(authz), who](http::StreamWriter& w) {
    if (!w.Write("retry: 3000\n\n")) return;
    auto last_write = std::chrono::steady_clock::now();
    while (w.Alive()) {
      std::optional<Event> e = sub->Next(std::chrono::seconds(1));
      if (!e) {
        if (sub->dropped()) return;  // too slow: it reconnects with Last-Event-ID
        if (std::chrono::steady_clock::now() - last_write >= kKeepAlive) {
          if (!w.Write(": keep-alive\n\n")) return;
          last_write = std::chrono::steady_clock::now();
        }
        continue;
      }
      const std::string project = e->project.empty() ? std::string(authz::kAllProjects) : e->project;
      const authz::Permission needs =
          e->type == "release" || e->type == "action" || e->type == "app" ? authz::Permission::kAppsRead : authz::Permission::kRunsRead;
      if (e->type != "reset" && !authz.Allowed(who, needs, project)) continue;
      if (!w.Write(fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e->id, e->type, e->data))) return;
      last_write = std::chrono::steady_clock::now();
    }
  };
  return resp;
}

// The JSON object of a request body ("" is {}); InvalidArgument otherwise.
Result<Value> BodyObject(const http::Request& req) {
  if (req.body.empty()) return Value::Map();
  auto doc = value::ParseJson(req.body, "the request body");
  if (!doc.ok() || !doc->IsMap()) {
    return InvalidArgumentError("the request body must be a JSON object{}", doc.ok() ? "" : ": " + doc.status().message());
  }
  return *doc;
}

// The string field `key` of `body` (`fallback` when absent or null); InvalidArgument otherwise.
Result<std::string> StringField(const Value& body, std::string_view key, std::string fallback = "") {
  const Value* v = body.Get(key);
  if (v == nullptr || v->IsNull()) return fallback;
  if (!v->IsString()) return InvalidArgumentError("{:?} must be a string", key);
  return std::string(v->AsString());
}

Result<int64_t> IntField(const Value& body, std::string_view key) {
  const Value* v = body.Get(key);
  if (v == nullptr || v->IsNull()) return 0;
  if (!v->IsInt() || v->AsInt() < 1) return InvalidArgumentError("{:?} must be a release id (a positive integer)", key);
  return v->AsInt();
}

Result<bool> BoolField(const Value& body, std::string_view key) {
  const Value* v = body.Get(key);
  if (v == nullptr || v->IsNull()) return false;
  if (!v->IsBool()) return InvalidArgumentError("{:?} must be true or false", key);
  return v->AsBool();
}

// Rejects a field the route does not take (a typo would otherwise be ignored silently).
Status KnownFields(const Value& body, std::initializer_list<std::string_view> known) {
  for (const auto& e : body.entries()) {
    const std::string_view key = e.key.AsString();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgumentError("unknown field {:?} in the request body (known: {})", key, fmt::join(known, ", "));
    }
  }
  return OkStatus();
}

// POST /api/v1/apps/{app}/deploy | resume | rollback | approve.
Result<http::Response> AppAction(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                                 AuditNote& note, std::string_view action) {
  const std::string app = ParamOf(req, "app");
  note.object = "app " + app;
  GANTRY_ASSIGN_OR_RETURN(Value body, BodyObject(req));
  GANTRY_ASSIGN_OR_RETURN(std::string project, StringField(body, "project", "default"));
  if (project.empty()) project = "default";
  note.project = project;
  const authz::Permission needs = action == "rollback"  ? authz::Permission::kAppsRollback
                                  : action == "approve" ? authz::Permission::kReleasesApprove
                                                        : authz::Permission::kAppsDeploy;
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, needs, project));
  if (action == "approve") {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"environment", "release", "project"}));
    GANTRY_ASSIGN_OR_RETURN(std::string env, StringField(body, "environment"));
    if (env.empty()) return InvalidArgumentError("\"environment\" is required (the environment whose gate to approve)");
    GANTRY_ASSIGN_OR_RETURN(int64_t release, IntField(body, "release"));
    if (o.deliver_config && o.deliver_config->FindEnvironment(env) == nullptr) {
      return InvalidArgumentError("unknown environment {:?}", env);
    }
    GANTRY_ASSIGN_OR_RETURN(int64_t approved, deliver::Approve(o.access->store(), app, env, release, who.name));
    note.details = fmt::format("release {} in {}", approved, env);
    Value v = Value::Map();
    v.Set("app", app);
    v.Set("environment", env);
    v.Set("release", approved);
    v.Set("approved_by", who.name);
    return http::Response::Json(200, value::ToJson(v) + "\n");
  }
  if (o.actions == nullptr) return UnavailableError("this server runs no deploys");
  const int64_t last_event = o.events != nullptr ? o.events->last_id() : 0;
  Result<Started> started = UnavailableError("");
  std::string env;
  if (action == "deploy") {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"revision", "through", "environment", "project", "prune"}));
    DeployRequest d{.app = app, .project = project, .started_by = who.name};
    GANTRY_ASSIGN_OR_RETURN(d.revision, StringField(body, "revision"));
    GANTRY_ASSIGN_OR_RETURN(d.through, StringField(body, "through"));
    GANTRY_ASSIGN_OR_RETURN(d.environment, StringField(body, "environment"));
    GANTRY_ASSIGN_OR_RETURN(d.prune, BoolField(body, "prune"));
    if (!d.through.empty() && !d.environment.empty()) return InvalidArgumentError("give \"through\" or \"environment\", not both");
    env = d.environment;
    started = o.actions->Deploy(d);
  } else if (action == "resume") {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"project"}));
    started = o.actions->Resume(app, project, who.name);
  } else {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"environment", "to_release", "project"}));
    RollbackRequest r{.app = app, .project = project, .started_by = who.name};
    GANTRY_ASSIGN_OR_RETURN(r.environment, StringField(body, "environment"));
    GANTRY_ASSIGN_OR_RETURN(r.to_release, IntField(body, "to_release"));
    env = r.environment;
    started = o.actions->Rollback(r);
  }
  if (!started.ok()) return started.status();
  note.details = fmt::format("release {}", started->release);
  Value v = Value::Map();
  v.Set("action", started->action);
  v.Set("app", app);
  v.Set("release", started->release);
  v.Set("from_release", started->from_release == 0 ? Value() : Value(started->from_release));
  v.Set("environment", env);
  v.Set("state", "running");
  v.Set("last_event_id", last_event);
  return http::Response::Json(202, value::ToJson(v) + "\n");
}

using RouteFn = std::function<Result<http::Response>(const ApiV1Options&, const http::Request&,
                                                     const authz::Principal&, AuditNote&)>;

}  // namespace

Result<Page> ParsePage(std::string_view query) {
  Page page;
  auto q = ParseQuery(query);
  if (auto it = q.find("limit"); it != q.end()) {
    int n = 0;
    auto [p, err] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
    if (err != std::errc() || p != it->second.data() + it->second.size() || n < 1 || n > kMaxLimit) {
      return InvalidArgumentError("limit {:?}: expected a number from 1 to {}", it->second, kMaxLimit);
    }
    page.limit = n;
  }
  if (auto it = q.find("cursor"); it != q.end() && !it->second.empty()) {
    int64_t id = 0;
    auto [p, err] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), id);
    if (err != std::errc() || p != it->second.data() + it->second.size() || id < 1) {
      return InvalidArgumentError("cursor {:?}: not a cursor this API gave (use the \"next\" of the previous page)",
                                  it->second);
    }
    page.before_id = id;
  }
  return page;
}

http::Response ListResponse(const http::Request& request, const value::Value& items, std::optional<int64_t> next) {
  Value doc = Value::Map();
  doc.Set("items", items);
  doc.Set("next", next ? Value(std::to_string(*next)) : Value());
  return WithETag(request, value::ToJson(doc) + "\n");
}

Status ServeApiV1(Front& front, ApiV1Options options) {
  if (options.access == nullptr || options.ci == nullptr) {
    return InvalidArgumentError("the REST API /api/v1 needs Access and the CI server");
  }
  auto o = std::make_shared<const ApiV1Options>(std::move(options));
  http::Family<http::Histogram>* latency =
      o->metrics == nullptr ? nullptr
                            : &o->metrics->AddHistogramFamily("gantry_api_request_duration_seconds",
                                                              "REST API requests by route, method and status code.",
                                                              {"route", "method", "code"}, http::DefaultBuckets());
  // Every route: authenticated and audited by Access, errors as problem+json, timed by route.
  auto add = [&front, o, latency](std::string method, std::string path, std::string action, RouteFn fn) {
    front.Handle(method, path, [o, latency, action, fn = std::move(fn)](const http::Request& req) {
      const auto start = std::chrono::steady_clock::now();
      AuditNote note{.action = action};
      if (auto id = req.params.find("id"); id != req.params.end()) note.object = "run " + id->second;
      http::Response r = o->access->Serve(
          req, note, [&](const authz::Principal& who, AuditNote& n) { return fn(*o, req, who, n); }, ProblemJson);
      if (latency != nullptr) {
        std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        latency->With({req.route, req.method, std::to_string(r.status)}).Observe(took.count());
      }
      return r;
    });
  };
  auto read = [](auto f) {
    return [f](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote&) {
      return f(opt, req, who);
    };
  };
  add("GET", "/api/v1/matrix", "apps.read", read(Matrix));
  add("GET", "/api/v1/apps/{app}/releases", "releases.read", read(Releases));
  add("GET", "/api/v1/runs", "runs.read", read(Runs));
  add("GET", "/api/v1/events", "events.read", read(Events));
  for (std::string action : {"", "logs", "cancel", "approve"}) {
    const bool post = action == "cancel" || action == "approve";
    add(post ? "POST" : "GET", action.empty() ? "/api/v1/runs/{id}" : "/api/v1/runs/{id}/" + action,
        post ? "runs." + action : "runs.read",
        [action](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote& note) {
          return Run(opt, req, who, note, action);
        });
  }
  for (std::string action : {"deploy", "resume", "rollback", "approve"}) {
    add("POST", "/api/v1/apps/{app}/" + action, action == "approve" ? "releases.approve" : "apps." + action,
        [action](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote& note) {
          return AppAction(opt, req, who, note, action);
        });
  }
  front.Handle("GET", "/api/v1/openapi.json", [](const http::Request& req) {
    http::Response r = WithETag(req, std::string(OpenApiDocument()));
    r.headers["cache-control"] = "no-cache";
    return r;
  });
  return OkStatus();
}

}  // namespace gantry::server
