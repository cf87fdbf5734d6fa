#include "server/api_v1.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include <fmt/ranges.h>

#include "base/clock.h"
#include "api/application.h"
#include "api/status.h"
#include "base/hash.h"
#include "base/percent.h"
#include "git/git.h"
#include "server/app_resources.h"
#include "server/cluster_probe.h"
#include "server/ci_front.h"
#include "project/project.h"
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

// A run's steps: the DAG (each step's needs) and how each went.
Value StepsJson(const std::vector<store::Step>& steps) {
  Value out = Value::Seq();
  for (const auto& s : steps) {
    Value sv = Value::Map();
    sv.Set("name", s.name);
    sv.Set("state", store::Name(s.state));
    sv.Set("exit_code", s.exit_code ? Value(*s.exit_code) : Value());
    sv.Set("started_at", TimeOrNull(s.started_at));
    sv.Set("finished_at", TimeOrNull(s.finished_at));
    Value needs = Value::Seq();
    for (const auto& n : s.needs) needs.Append(n);
    sv.Set("needs", needs);
    sv.Set("attempts", s.attempts);
    out.Append(sv);
  }
  return out;
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
  v.Set("retry_of", r.retry_of == 0 ? Value() : Value(r.retry_of));
  v.Set("project", o.project_of ? o.project_of(r) : "");
  if (with_steps) v.Set("steps", StepsJson(r.steps));
  return v;
}

Value DigestsJson(const std::map<std::string, std::string>& digests) {
  Value v = Value::Map();
  for (const auto& [repo, digest] : digests) v.Set(repo, digest);
  return v;
}

// The pull request of a release in pull-request mode, with its merge from the outbox when the
// release asked for one (server/pull_merges.h); null for other releases.
Result<Value> PullRequestJson(store::Store& store, const store::Release& r) {
  if (r.pull_request == 0) return Value();
  Value v = Value::Map();
  v.Set("number", r.pull_request);
  v.Set("url", r.pull_request_url);
  GANTRY_ASSIGN_OR_RETURN(std::optional<store::PullMerge> m, store.PullMergeOfRelease(r.id));
  Value merge;
  if (m) {
    merge = Value::Map();
    merge.Set("state", m->state == store::NotificationState::kDelivered ? "merged"
                       : m->state == store::NotificationState::kFailed ? "failed"
                                                                         : "waiting");
    merge.Set("method", m->method);
    merge.Set("message", m->last_error);
  }
  v.Set("merge", std::move(merge));
  return v;
}

Value SupplyChainJson(const store::ImageSupplyChain& c) {
  Value v = Value::Map();
  v.Set("signature", c.signature);
  v.Set("provenance", c.provenance);
  v.Set("sbom", c.sbom);
  return v;
}

Value SupplyChainsJson(const std::map<std::string, store::ImageSupplyChain>& chains) {
  Value v = Value::Map();
  for (const auto& [repo, c] : chains) v.Set(repo, SupplyChainJson(c));
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

Value UrlOrNull(const std::optional<std::string>& url) { return url ? Value(*url) : Value(); }

// The CI run that built `r`, if it names one the store still has.
Result<std::optional<store::Run>> RunOf(store::Store& store, const store::Release& r) {
  if (!r.run_id) return std::optional<store::Run>();
  Result<store::Run> run = store.GetRun(*r.run_id);
  if (!run.ok()) {
    if (run.status().code() == Code::kNotFound) return std::optional<store::Run>();
    return run.status();
  }
  return std::optional<store::Run>(*std::move(run));
}

// A release's links: {"source": its commit's page, "config": its config commit's page, "images":
// {name: page}}, each null when it cannot be derived (server/links.h).
Value ReleaseLinks(const ApiV1Options& o, const store::Release& r, const std::optional<store::Run>& run) {
  Value v = Value::Map();
  v.Set("source", UrlOrNull(run ? CommitUrl(o.links, run->repo, r.source_revision) : std::nullopt));
  v.Set("config", UrlOrNull(CommitUrl(o.links, o.config_repo, r.config_revision)));
  Value images = Value::Map();
  for (const auto& [name, digest] : r.image_digests) images.Set(name, UrlOrNull(ImageUrl(o.links, name, digest)));
  v.Set("images", images);
  return v;
}

// The source commit of `r` as the mirror its CI run fetched has it; nullopt when there is none
// (another server's run, a fork's, a release not built here).
std::optional<git::CommitInfo> SourceCommit(const ApiV1Options& o, const store::Release& r,
                                            const std::optional<store::Run>& run) {
  if (!run) return std::nullopt;
  Result<git::CommitInfo> c = o.ci->Commit(run->repo, r.source_revision);
  if (!c.ok()) return std::nullopt;
  return *std::move(c);
}

// {"title" (the message's first line), "author": {"name", "email"}, "authored_at"} of a commit
// into `v`.
void SetCommitSummary(Value& v, const git::CommitInfo& c) {
  const std::string_view message = c.message;
  v.Set("title", message.substr(0, message.find('\n')));
  Value author = Value::Map();
  author.Set("name", c.author.name);
  author.Set("email", c.author.email);
  v.Set("author", author);
  v.Set("authored_at", Rfc3339(store::Time(std::chrono::seconds(c.time))));
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
    v.Set("supply_chain", SupplyChainsJson(r.supply_chain));
    v.Set("started_by", r.started_by);
    v.Set("run", r.run_id ? Value(*r.run_id) : Value());
    v.Set("created_at", Rfc3339(r.created_at));
    GANTRY_ASSIGN_OR_RETURN(Value pull_request, PullRequestJson(store, r));
    v.Set("pull_request", std::move(pull_request));
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
    GANTRY_ASSIGN_OR_RETURN(std::optional<store::Run> run, RunOf(store, r));
    v.Set("links", ReleaseLinks(o, r, run));
    Value commit;
    if (auto c = SourceCommit(o, r, run)) {
      commit = Value::Map();
      SetCommitSummary(commit, *c);
    }
    v.Set("commit", commit);
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

// GET /api/v1/notifications[?state=pending|delivered|failed]: the outbox, newest first, each
// notification only to those who may read its project's runs.
Result<http::Response> Notifications(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  store::NotificationFilter filter{.before_id = page.before_id, .limit = page.limit + 1};
  auto q = ParseQuery(req.query);
  if (auto it = q.find("state"); it != q.end() && !it->second.empty()) {
    filter.state = store::ParseNotificationState(it->second);
    if (!filter.state) {
      return InvalidArgumentError("state {:?}: expected pending, delivered or failed", it->second);
    }
  }
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kRunsRead)) {
    return authz.Check(who, authz::Permission::kRunsRead, authz::kAllProjects);
  }
  GANTRY_ASSIGN_OR_RETURN(auto list, o.access->store().ListNotifications(filter));
  std::optional<int64_t> next;
  if (list.size() > static_cast<size_t>(page.limit)) {
    list.resize(page.limit);
    next = list.back().id;
  }
  Value items = Value::Seq();
  for (const auto& n : list) {
    const std::string project = n.project.empty() ? std::string(authz::kAllProjects) : n.project;
    if (!authz.Allowed(who, authz::Permission::kRunsRead, project)) continue;
    Value v = Value::Map();
    v.Set("id", n.id);
    v.Set("event_id", n.event_id);
    v.Set("subscription", n.subscription);
    v.Set("provider", n.provider);
    v.Set("trigger", n.trigger);
    v.Set("project", n.project);
    v.Set("app", n.app);
    v.Set("environment", n.environment);
    v.Set("subject", n.subject);
    v.Set("state", store::Name(n.state));
    v.Set("attempts", n.attempts);
    v.Set("last_error", n.last_error);
    v.Set("created_at", Rfc3339(n.created_at));
    v.Set("next_attempt_at", n.state == store::NotificationState::kPending ? Value(Rfc3339(n.next_attempt_at)) : Value());
    v.Set("finished_at", TimeOrNull(n.finished_at));
    items.Append(v);
  }
  return ListResponse(req, items, next);
}

// /api/v1/runs/{id}[/logs|/cancel|/approve|/retry].
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
  if (action == "retry") {
    // Retrying builds the commit again: who may start that may retry (runs.approve, as a run
    // awaiting approval is started by approving it).
    GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kRunsApprove, project));
    GANTRY_ASSIGN_OR_RETURN(store::Run retry, o.ci->Retry(id, who.name));
    note.details = fmt::format("new run {}{}", retry.id,
                               retry.state == store::RunState::kAwaitingApproval ? " (awaiting approval)" : "");
    http::Response r = http::Response::Json(201, value::ToJson(RunJson(o, retry, true)) + "\n");
    r.headers["location"] = fmt::format("/api/v1/runs/{}", retry.id);
    return r;
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
  // "override_window": true passes closed sync windows that allow manual syncs; "reason" (why) is
  // required with it and goes into the audit rows.
  GANTRY_ASSIGN_OR_RETURN(const bool override_window, BoolField(body, "override_window"));
  GANTRY_ASSIGN_OR_RETURN(const std::string reason, StringField(body, "reason"));
  if (override_window && reason.empty()) {
    return InvalidArgumentError("\"override_window\" needs a \"reason\" (why the sync windows are overridden; it is audited)");
  }
  if (!override_window && !reason.empty()) return InvalidArgumentError("\"reason\" is for \"override_window\"");
  const std::string window_override = override_window ? reason : "";
  if (override_window) note.details = "window override requested: " + reason;
  const int64_t last_event = o.events != nullptr ? o.events->last_id() : 0;
  Result<Started> started = UnavailableError("");
  std::string env;
  if (action == "deploy") {
    GANTRY_RETURN_IF_ERROR(
        KnownFields(body, {"revision", "through", "environment", "project", "prune", "override_window", "reason"}));
    DeployRequest d{.app = app, .project = project, .started_by = who.name, .window_override = window_override};
    GANTRY_ASSIGN_OR_RETURN(d.revision, StringField(body, "revision"));
    GANTRY_ASSIGN_OR_RETURN(d.through, StringField(body, "through"));
    GANTRY_ASSIGN_OR_RETURN(d.environment, StringField(body, "environment"));
    GANTRY_ASSIGN_OR_RETURN(d.prune, BoolField(body, "prune"));
    if (!d.through.empty() && !d.environment.empty()) return InvalidArgumentError("give \"through\" or \"environment\", not both");
    env = d.environment;
    started = o.actions->Deploy(d);
  } else if (action == "resume") {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"project", "override_window", "reason"}));
    started = o.actions->Resume(app, project, who.name, window_override);
  } else {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"environment", "to_release", "project", "override_window", "reason"}));
    RollbackRequest r{.app = app, .project = project, .started_by = who.name, .window_override = window_override};
    GANTRY_ASSIGN_OR_RETURN(r.environment, StringField(body, "environment"));
    GANTRY_ASSIGN_OR_RETURN(r.to_release, IntField(body, "to_release"));
    env = r.environment;
    started = o.actions->Rollback(r);
  }
  if (!started.ok()) return started.status();
  note.details = fmt::format("release {}{}", started->release,
                             override_window ? "; window override requested: " + reason : "");
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

// ---------------------------------------------------------------------------------------------
// Applications: /api/v1/apps, /api/v1/apps/{app} and its sync, refresh and terminate.

// What the apps routes read: `gantry status`'s rows and the pull clusters' Applications they came
// from (read once per request, from the watch when the server has one).
struct AppsView {
  deliver::StatusReport report;
  std::map<std::string, std::vector<Value>> applications;  // pull cluster → its Applications
};

Result<AppsView> GatherApps(const ApiV1Options& o, std::string_view app) {
  AppsView view;
  const deliver::Config config = o.deliver_config.value_or(deliver::Config{});
  deliver::ApplicationsFn source = [&](const deliver::Cluster& c) -> Result<std::vector<Value>> {
    Result<std::vector<Value>> items = UnavailableError("no way to reach pull clusters");
    if (o.pull_applications) {
      items = o.pull_applications(c);
    } else if (o.connect) {
      auto client = o.connect(c);
      if (!client.ok()) return client.status();
      GANTRY_ASSIGN_OR_RETURN(kube::ObjectList list, (*client)->List(api::kApiVersion, api::kKind, ""));
      items = std::move(list.items);
    }
    if (items.ok()) view.applications[c.name] = *items;
    return items;
  };
  GANTRY_ASSIGN_OR_RETURN(view.report, deliver::GatherStatus(o.access->store(), config, app, o.connect, source));
  return view;
}

// The Application of `app` on pull cluster `cluster`, or nullptr.
const Value* FindApplication(const AppsView& view, std::string_view cluster, std::string_view app) {
  auto it = view.applications.find(std::string(cluster));
  if (it == view.applications.end()) return nullptr;
  for (const auto& a : it->second) {
    if (value::StringAt(&a, {"metadata", "name"}) == app) return &a;
  }
  return nullptr;
}

// An app's project: its newest release's, else its Applications' spec.project, else "default".
Result<std::string> AppProject(const ApiV1Options& o, const AppsView& view, std::string_view app) {
  GANTRY_ASSIGN_OR_RETURN(auto newest, o.access->store().ListReleases(app, 1));
  if (!newest.empty()) return newest.front().project.empty() ? std::string("default") : newest.front().project;
  for (const auto& [cluster, apps] : view.applications) {
    if (const Value* a = FindApplication(view, cluster, app)) {
      std::string project = value::StringAt(a, {"spec", "project"});
      return project.empty() ? std::string("default") : project;
    }
  }
  return std::string("default");
}

// A push target's sync status from the ledger: Synced when the newest release runs there healthy.
std::string PushSync(const deliver::StatusRow& row) {
  return row.behind == 0 && row.release != 0 && row.state == "healthy" ? api::kSynced : api::kOutOfSync;
}

Value TargetJson(const deliver::StatusRow& row) {
  Value t = Value::Map();
  t.Set("environment", row.env);
  t.Set("cluster", row.cluster);
  t.Set("mode", row.mode);
  t.Set("release", row.release == 0 ? Value() : Value(row.release));
  t.Set("revision", row.revision);
  t.Set("sync", row.mode == "push" ? PushSync(row) : row.state);
  t.Set("health", row.health);
  t.Set("behind", row.behind);
  t.Set("message", row.message);
  return t;
}

// Whether `row` passes the list's filters (environment, cluster, health, sync; "" : any).
bool TargetMatches(const deliver::StatusRow& row, const std::map<std::string, std::string>& q) {
  auto want = [&](const char* key, std::string_view have) {
    auto it = q.find(key);
    return it == q.end() || it->second.empty() || it->second == have;
  };
  return want("environment", row.env) && want("cluster", row.cluster) && want("health", row.health) &&
         want("sync", row.mode == "push" ? PushSync(row) : row.state) && want("mode", row.mode);
}

Status KnownParams(const std::map<std::string, std::string>& q, std::initializer_list<std::string_view> known) {
  for (const auto& [key, v] : q) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgumentError("unknown query parameter {:?} (known: {})", key, fmt::join(known, ", "));
    }
  }
  return OkStatus();
}

// GET /api/v1/apps: the apps the caller may read, each with the targets that pass the filters.
Result<http::Response> Apps(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  const auto q = ParseQuery(req.query);
  GANTRY_RETURN_IF_ERROR(KnownParams(q, {"project", "environment", "cluster", "health", "sync", "mode", "limit", "cursor"}));
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kAppsRead)) {
    return authz.Check(who, authz::Permission::kAppsRead, authz::kAllProjects);
  }
  GANTRY_ASSIGN_OR_RETURN(AppsView view, GatherApps(o, ""));
  std::map<std::string, std::vector<const deliver::StatusRow*>> by_app;  // sorted by name
  for (const auto& row : view.report.rows) by_app[row.app].push_back(&row);
  const std::string want_project = q.contains("project") ? q.at("project") : "";
  // The cursor is the position of the next app in the filtered list (opaque to clients).
  const int64_t skip = page.before_id == 0 ? 0 : page.before_id - 1;
  int64_t position = 0;
  std::optional<int64_t> next;
  Value items = Value::Seq();
  for (const auto& [app, rows] : by_app) {
    GANTRY_ASSIGN_OR_RETURN(std::string project, AppProject(o, view, app));
    if (!want_project.empty() && project != want_project) continue;
    if (!authz.Allowed(who, authz::Permission::kAppsRead, project)) continue;
    Value targets = Value::Seq();
    for (const auto* row : rows) {
      if (TargetMatches(*row, q)) targets.Append(TargetJson(*row));
    }
    if (targets.size() == 0) continue;
    ++position;
    if (position <= skip) continue;
    if (static_cast<int>(items.size()) == page.limit) {
      next = position;
      break;
    }
    Value v = Value::Map();
    v.Set("app", app);
    v.Set("project", project);
    v.Set("targets", targets);
    items.Append(v);
  }
  Value doc = Value::Map();
  doc.Set("items", items);
  doc.Set("next", next ? Value(std::to_string(*next)) : Value());
  Value warnings = Value::Seq();
  for (const auto& w : view.report.warnings) warnings.Append(w);
  doc.Set("warnings", warnings);
  return WithETag(req, value::ToJson(doc) + "\n");
}

// The last operation of a target: a pull Application's operationState, a push target's newest
// release there.
Result<Value> LastOperation(const ApiV1Options& o, const AppsView& view, const deliver::StatusRow& row,
                            const std::vector<store::TargetStatus>& push) {
  Value v = Value::Map();
  if (row.mode == "pull") {
    const Value* a = FindApplication(view, row.cluster, row.app);
    api::ApplicationStatus st = api::ParseStatus(a == nullptr ? nullptr : a->Get("status"));
    if (!st.operation) return Value();
    v.Set("release", Value());
    v.Set("phase", st.operation->phase);
    v.Set("revision", st.operation->revision);
    v.Set("trigger", st.operation->trigger);
    v.Set("started_at", st.operation->started_at.empty() ? Value() : Value(st.operation->started_at));
    v.Set("finished_at", st.operation->finished_at.empty() ? Value() : Value(st.operation->finished_at));
    v.Set("message", st.operation->message);
    return v;
  }
  (void)o;
  for (const auto& t : push) {
    if (t.env != row.env || t.cluster != row.cluster) continue;
    v.Set("release", t.latest.id);
    v.Set("phase", store::Name(t.latest_target.state));
    v.Set("revision", t.latest.source_revision);
    v.Set("trigger", t.latest.started_by);
    v.Set("started_at", Rfc3339(t.latest.created_at));
    v.Set("finished_at", TimeOrNull(t.latest_target.finished_at));
    v.Set("message", t.latest_target.message);
    return v;
  }
  return Value();
}

// GET /api/v1/apps/{app}.
Result<http::Response> AppDetail(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  const std::string app = ParamOf(req, "app");
  GANTRY_ASSIGN_OR_RETURN(AppsView view, GatherApps(o, app));
  GANTRY_ASSIGN_OR_RETURN(std::string project, AppProject(o, view, app));
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, project));
  std::vector<const deliver::StatusRow*> rows;
  for (const auto& row : view.report.rows) {
    if (row.app == app) rows.push_back(&row);
  }
  GANTRY_ASSIGN_OR_RETURN(auto newest, o.access->store().ListReleases(app, 1));
  if (rows.empty() && newest.empty()) return NotFoundError("no application {:?}: no release in the ledger and no Application on a pull cluster", app);
  GANTRY_ASSIGN_OR_RETURN(auto push, o.access->store().CurrentByTarget(app));
  Value targets = Value::Seq();
  for (const auto* row : rows) {
    Value t = TargetJson(*row);
    GANTRY_ASSIGN_OR_RETURN(Value op, LastOperation(o, view, *row, push));
    t.Set("last_operation", op);
    if (row->mode == "pull") {
      const Value* a = FindApplication(view, row->cluster, app);
      t.Set("namespace", a == nullptr ? "" : value::StringAt(a, {"metadata", "namespace"}));
    } else {
      t.Set("namespace", "");
    }
    targets.Append(t);
  }
  Value v = Value::Map();
  v.Set("app", app);
  v.Set("project", project);
  v.Set("latest_release", newest.empty() ? Value() : Value(newest.front().id));
  v.Set("targets", targets);
  Value warnings = Value::Seq();
  for (const auto& w : view.report.warnings) warnings.Append(w);
  v.Set("warnings", warnings);
  return WithETag(req, value::ToJson(v) + "\n");
}

// The targets of `app` an action addresses: those in `env` and `cluster` ("" : any). NotFound
// naming the filter when none is.
Result<std::vector<const deliver::StatusRow*>> SelectTargets(const AppsView& view, std::string_view app,
                                                             std::string_view env, std::string_view cluster) {
  std::vector<const deliver::StatusRow*> out;
  for (const auto& row : view.report.rows) {
    if (row.app == app && (env.empty() || row.env == env) && (cluster.empty() || row.cluster == cluster)) {
      out.push_back(&row);
    }
  }
  if (out.empty()) {
    return NotFoundError("{} has no target{}{}{}", app, env.empty() ? "" : " in environment " + std::string(env),
                         cluster.empty() ? "" : " on cluster " + std::string(cluster),
                         view.report.warnings.empty() ? "" : fmt::format(" ({})", fmt::join(view.report.warnings, "; ")));
  }
  return out;
}

// Asks the agent of a pull target to sync or refresh now, as `gantry app sync|refresh` does: the
// request annotation on its Application, with a value that identifies this request.
Status AnnotateApplication(const ApiV1Options& o, const AppsView& view, const deliver::StatusRow& row,
                           std::string_view annotation, std::string_view request_id) {
  const Value* existing = FindApplication(view, row.cluster, row.app);
  if (existing == nullptr) return NotFoundError("no Application {} on cluster {}", row.app, row.cluster);
  const deliver::Cluster* cluster = o.deliver_config ? o.deliver_config->FindCluster(row.cluster) : nullptr;
  if (cluster == nullptr || !o.connect) return UnavailableError("cluster {} is not reachable from this server", row.cluster);
  GANTRY_ASSIGN_OR_RETURN(auto client, o.connect(*cluster));
  Value patch = Value::Map();
  patch.Set("apiVersion", api::kApiVersion);
  patch.Set("kind", api::kKind);
  Value meta = Value::Map();
  meta.Set("name", row.app);
  meta.Set("namespace", value::StringAt(existing, {"metadata", "namespace"}));
  Value ann = Value::Map();
  ann.Set(annotation, request_id);
  meta.Set("annotations", ann);
  patch.Set("metadata", meta);
  return client->Apply(patch, {.field_manager = "gantry-app-request", .force = true})
      .status()
      .WithContext(fmt::format("request {} of Application {} on cluster {}", annotation, row.app, row.cluster));
}

// The push target of `row` as its current release renders it, and the cluster's client: Unavailable
// when the server has no client for the cluster, NotFound when no release runs there.
struct LivePushTarget {
  PushTarget target;
  std::unique_ptr<kube::Client> client;
};
Result<LivePushTarget> ConnectPushTarget(const ApiV1Options& o, const deliver::StatusRow& row, std::string_view app,
                                         const std::string& project) {
  const deliver::Cluster* cluster = o.deliver_config ? o.deliver_config->FindCluster(row.cluster) : nullptr;
  if (cluster == nullptr || !o.connect) return UnavailableError("cluster {} is not reachable from this server", row.cluster);
  if (row.release == 0) return NotFoundError("no release of {} runs in {} on {}", app, row.env, row.cluster);
  GANTRY_ASSIGN_OR_RETURN(store::Release running, o.access->store().GetRelease(row.release));
  LivePushTarget out{.target = {.app = std::string(app),
                                .project = project,
                                .config = &*o.deliver_config,
                                .cluster = cluster,
                                .environment = row.env,
                                .config_revision = running.config_revision,
                                .render = o.renderer ? o.renderer() : nullptr,
                                .path_template = o.path_template}};
  GANTRY_ASSIGN_OR_RETURN(out.client, o.connect(*cluster));
  return out;
}

// The diff of a pull target `row`, rendered as its agent does (server/app_resources.h): 501 when
// the server has no Source for pull targets.
Result<Value> PullTargetDiff(const ApiV1Options& o, const AppsView& view, const deliver::StatusRow& row,
                             kube::Client& client) {
  if (o.pull_source == nullptr) {
    return UnimplementedError("this server renders no pull sources (it has no --config-repo): the agent of {} computes "
                              "its diff; its resources' sync states are in GET /api/v1/apps/{}/resources",
                              row.cluster, row.app);
  }
  const Value* application = FindApplication(view, row.cluster, row.app);
  if (application == nullptr) return NotFoundError("no Application {} on cluster {}", row.app, row.cluster);
  PullTarget target{.application = *application, .source = o.pull_source, .repos = o.pull_repos, .cluster_name = row.cluster};
  const deliver::Cluster* cluster = o.deliver_config ? o.deliver_config->FindCluster(row.cluster) : nullptr;
  if (cluster != nullptr) {
    if (auto rest = kube::LoadConfig({.paths = {cluster->kubeconfig}, .context = cluster->context}); rest.ok()) {
      target.cluster_server = rest->server;
    }
  }
  return PullDiff(client, target);
}

// GET /api/v1/apps/{app}/resources | diff | events: one target, from its cluster.
Result<http::Response> AppLive(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                               std::string_view what) {
  const std::string app = ParamOf(req, "app");
  const auto q = ParseQuery(req.query);
  GANTRY_RETURN_IF_ERROR(KnownParams(q, {"environment", "cluster"}));
  GANTRY_ASSIGN_OR_RETURN(AppsView view, GatherApps(o, app));
  GANTRY_ASSIGN_OR_RETURN(std::string project, AppProject(o, view, app));
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, project));
  const std::string env = q.contains("environment") ? q.at("environment") : "";
  const std::string cluster_name = q.contains("cluster") ? q.at("cluster") : "";
  GANTRY_ASSIGN_OR_RETURN(auto selected, SelectTargets(view, app, env, cluster_name));
  if (selected.size() != 1) {
    std::vector<std::string> names;
    for (const auto* row : selected) names.push_back(row->env + "/" + row->cluster);
    return InvalidArgumentError("{} has {} targets ({}): name one with ?environment= and ?cluster=", app, selected.size(),
                                fmt::join(names, ", "));
  }
  const deliver::StatusRow& row = *selected.front();
  const deliver::Cluster* cluster = o.deliver_config ? o.deliver_config->FindCluster(row.cluster) : nullptr;
  if (cluster == nullptr || !o.connect) return UnavailableError("cluster {} is not reachable from this server", row.cluster);
  Value doc;
  if (row.mode == "pull" && what == "diff") {
    GANTRY_ASSIGN_OR_RETURN(auto client, o.connect(*cluster));
    GANTRY_ASSIGN_OR_RETURN(doc, PullTargetDiff(o, view, row, *client));
  } else if (row.mode == "pull") {
    const Value* application = FindApplication(view, row.cluster, app);
    if (application == nullptr) return NotFoundError("no Application {} on cluster {}", app, row.cluster);
    doc = PullResources(*application);
    if (what == "events") {
      GANTRY_ASSIGN_OR_RETURN(auto client, o.connect(*cluster));
      GANTRY_ASSIGN_OR_RETURN(doc, EventsOf(*client, *doc.Get("items")));
    }
  } else {
    GANTRY_ASSIGN_OR_RETURN(LivePushTarget live, ConnectPushTarget(o, row, app, project));
    if (what == "diff") {
      GANTRY_ASSIGN_OR_RETURN(doc, PushDiff(*live.client, live.target));
    } else {
      GANTRY_ASSIGN_OR_RETURN(doc, PushResources(*live.client, live.target));
      if (what == "events") {
        GANTRY_ASSIGN_OR_RETURN(doc, EventsOf(*live.client, *doc.Get("items")));
      }
    }
  }
  doc.Set("environment", row.env);
  doc.Set("cluster", row.cluster);
  doc.Set("mode", row.mode);
  return WithETag(req, value::ToJson(doc) + "\n");
}

// POST /api/v1/apps/{app}/sync with "dry_run": true: what the sync would change, applying
// nothing. A push sync deploys the running release to every cluster of the environment, so each
// push target of `push_envs` is compared (as GET .../diff does); each selected pull target is
// compared as its agent would (as GET .../diff does), its "items" null and "message" why when the
// server cannot.
Result<http::Response> SyncPreview(const ApiV1Options& o, const AppsView& view, std::string_view app, const std::string& project,
                                   const std::vector<const deliver::StatusRow*>& selected,
                                   const std::set<std::string>& push_envs, bool prune, AuditNote& note) {
  Value targets = Value::Seq();
  for (const auto* row : selected) {
    if (row->mode != "pull") continue;
    const deliver::Cluster* cluster = o.deliver_config ? o.deliver_config->FindCluster(row->cluster) : nullptr;
    Result<Value> diff = UnavailableError("cluster {} is not reachable from this server", row->cluster);
    if (cluster != nullptr && o.connect) {
      auto client = o.connect(*cluster);
      diff = client.ok() ? PullTargetDiff(o, view, *row, **client) : Result<Value>(client.status());
    }
    Value t = Value::Map();
    t.Set("environment", row->env);
    t.Set("cluster", row->cluster);
    t.Set("mode", row->mode);
    t.Set("release", row->release == 0 ? Value() : Value(row->release));
    t.Set("items", diff.ok() ? *diff->Get("items") : Value());
    t.Set("message", diff.ok() ? "" : diff.status().message());
    targets.Append(t);
  }
  for (const auto& row : view.report.rows) {
    if (row.app != app || row.mode != "push" || !push_envs.contains(row.env)) continue;
    GANTRY_ASSIGN_OR_RETURN(LivePushTarget live, ConnectPushTarget(o, row, app, project));
    GANTRY_ASSIGN_OR_RETURN(Value diff, PushDiff(*live.client, live.target));
    Value t = Value::Map();
    t.Set("environment", row.env);
    t.Set("cluster", row.cluster);
    t.Set("mode", row.mode);
    t.Set("release", row.release);
    t.Set("items", *diff.Get("items"));
    t.Set("message", "");
    targets.Append(t);
  }
  note.details = fmt::format("dry run, {} target(s){}", targets.size(), prune ? ", prune" : "");
  Value v = Value::Map();
  v.Set("action", "sync");
  v.Set("app", app);
  v.Set("dry_run", true);
  v.Set("prune", prune);
  v.Set("targets", targets);
  return http::Response::Json(200, value::ToJson(v) + "\n");
}

// POST /api/v1/apps/{app}/terminate: stops the app's deploy, resume or rollback the server runs at
// its next check (its end is an "action" event with phase "terminated"), and asks the agent of each
// pull target whose Application has a running sync to stop it (annotation
// gantry.dev/terminate-requested; the "app" event with phase Terminated says it did). NotFound when
// nothing of the app runs.
Result<http::Response> Terminate(const ApiV1Options& o, const AppsView& view, std::string_view app, const Value& body,
                                 const authz::Principal& who, AuditNote& note) {
  GANTRY_RETURN_IF_ERROR(KnownFields(body, {}));
  const int64_t last_event = o.events != nullptr ? o.events->last_id() : 0;
  Result<std::string> stopping = o.actions != nullptr ? o.actions->Terminate(app)
                                                      : Result<std::string>(UnavailableError("this server runs no deploys"));
  bool pushed = false;
  Value pulls = Value::Seq();
  std::vector<std::string> pull_clusters;
  const std::string request_id = fmt::format("{}/{}", Rfc3339(SystemClock().WallNow()), who.name);
  for (const deliver::StatusRow& row : view.report.rows) {
    if (row.app != app) continue;
    pushed = pushed || row.mode == "push";
    const Value* application = row.mode == "pull" ? FindApplication(view, row.cluster, row.app) : nullptr;
    if (application == nullptr ||
        value::StringAt(application, {"status", "operationState", "phase"}) != api::kPhaseRunning) {
      continue;
    }
    GANTRY_RETURN_IF_ERROR(AnnotateApplication(o, view, row, api::kTerminateRequested, request_id));
    Value target = Value::Map();
    target.Set("environment", row.env);
    target.Set("cluster", row.cluster);
    pulls.Append(target);
    pull_clusters.push_back(row.cluster);
  }
  if (!stopping.ok() && pulls.size() == 0) {
    if (pushed && stopping.status().code() != Code::kNotFound) return stopping.status();
    return NotFoundError("no deploy, resume or rollback of {} runs in the server, and no sync of it runs on its pull "
                         "clusters", app);
  }
  note.details = fmt::format("terminate {}{}", stopping.ok() ? *stopping : "",
                             pull_clusters.empty() ? "" : fmt::format("{}sync on {}", stopping.ok() ? ", " : "",
                                                                      fmt::join(pull_clusters, ", ")));
  Value v = Value::Map();
  v.Set("action", "terminate");
  v.Set("app", app);
  v.Set("stopping", stopping.ok() ? *stopping : "sync");
  v.Set("pull_targets", pulls);
  v.Set("last_event_id", last_event);
  return http::Response::Json(202, value::ToJson(v) + "\n");
}

// POST /api/v1/apps/{app}/sync | refresh | terminate.
Result<http::Response> AppOperation(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                                    AuditNote& note, std::string_view action) {
  const std::string app = ParamOf(req, "app");
  note.object = "app " + app;
  GANTRY_ASSIGN_OR_RETURN(Value body, BodyObject(req));
  GANTRY_ASSIGN_OR_RETURN(AppsView view, GatherApps(o, app));
  GANTRY_ASSIGN_OR_RETURN(std::string project, AppProject(o, view, app));
  note.project = project;
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsSync, project));
  if (action == "terminate") return Terminate(o, view, app, body, who, note);
  const bool sync = action == "sync";
  if (sync) {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"environment", "cluster", "prune", "dry_run"}));
  } else {
    GANTRY_RETURN_IF_ERROR(KnownFields(body, {"environment", "cluster"}));
  }
  GANTRY_ASSIGN_OR_RETURN(std::string env, StringField(body, "environment"));
  GANTRY_ASSIGN_OR_RETURN(std::string cluster, StringField(body, "cluster"));
  GANTRY_ASSIGN_OR_RETURN(bool prune, BoolField(body, "prune"));
  GANTRY_ASSIGN_OR_RETURN(bool dry_run, BoolField(body, "dry_run"));
  if (dry_run && !sync) return InvalidArgumentError("dry_run is for sync");
  GANTRY_ASSIGN_OR_RETURN(auto selected, SelectTargets(view, app, env, cluster));
  const std::string request_id = fmt::format("{}/{}", Rfc3339(SystemClock().WallNow()), who.name);
  const int64_t last_event = o.events != nullptr ? o.events->last_id() : 0;
  // Push targets are deployed per environment: one deploy of the running release's config
  // revision to that environment (every cluster of it), as `gantry deploy --environment`.
  std::set<std::string> push_envs;
  for (const auto* row : selected) {
    if (row->mode == "push") push_envs.insert(row->env);
    if (row->mode == "pull" && prune) {
      return InvalidArgumentError("prune: a pull target prunes as its Application's spec.syncPolicy.prune says "
                                  "({} on cluster {})", app, row->cluster);
    }
  }
  if (sync && push_envs.size() > 1) {
    return InvalidArgumentError("{} has push targets in {}: name one \"environment\" (a push sync deploys one environment)",
                                app, fmt::join(push_envs, ", "));
  }
  if (dry_run) return SyncPreview(o, view, app, project, selected, push_envs, prune, note);
  Value results = Value::Seq();
  for (const auto* row : selected) {
    Value r = Value::Map();
    r.Set("environment", row->env);
    r.Set("cluster", row->cluster);
    r.Set("mode", row->mode);
    r.Set("release", Value());
    if (row->mode == "pull") {
      GANTRY_RETURN_IF_ERROR(AnnotateApplication(o, view, *row, sync ? "gantry.dev/sync-requested" : "gantry.dev/refresh-requested",
                                                 request_id));
      r.Set("result", "requested");
    } else if (!sync) {
      // The ledger is the push side's state and every read of live objects goes to the cluster:
      // there is no cache to refresh.
      r.Set("result", "nothing to refresh");
    } else if (!push_envs.empty()) {
      if (o.actions == nullptr) return UnavailableError("this server runs no deploys");
      GANTRY_ASSIGN_OR_RETURN(auto releases, o.access->store().ListReleases(app, 1));
      int64_t release_id = row->release != 0 ? row->release : (releases.empty() ? 0 : releases.front().id);
      if (release_id == 0) return NotFoundError("{} has no release to sync to {}", app, row->env);
      GANTRY_ASSIGN_OR_RETURN(store::Release rel, o.access->store().GetRelease(release_id));
      GANTRY_ASSIGN_OR_RETURN(Started started, o.actions->Deploy({.app = app,
                                                                  .revision = rel.config_revision,
                                                                  .environment = row->env,
                                                                  .project = project,
                                                                  .prune = prune,
                                                                  .started_by = who.name}));
      r.Set("release", started.release);
      r.Set("result", "deploying");
      push_envs.clear();  // one deploy covers the environment's clusters
    } else {
      r.Set("result", "deploying");  // in the deploy started for its environment above
    }
    results.Append(r);
  }
  note.details = fmt::format("{} target(s){}", results.size(), prune ? ", prune" : "");
  Value v = Value::Map();
  v.Set("action", std::string(action));
  v.Set("app", app);
  v.Set("targets", results);
  v.Set("last_event_id", last_event);
  return http::Response::Json(202, value::ToJson(v) + "\n");
}

// ---------------------------------------------------------------------------------------------
// Clusters and environments: /api/v1/clusters, /api/v1/environments.

// Keeps the page of `all` that `page` asks for, a list in a fixed order (clusters by name,
// environments in promotion order) whose cursor is the 1-based position of the page's first item;
// the cursor of the next page, if there is one.
template <typename T>
std::optional<int64_t> PageOf(std::vector<T>& all, const Page& page) {
  const size_t skip = page.before_id == 0 ? 0 : static_cast<size_t>(page.before_id - 1);
  all.erase(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min(skip, all.size())));
  if (all.size() <= static_cast<size_t>(page.limit)) return std::nullopt;
  all.resize(page.limit);
  return static_cast<int64_t>(skip) + page.limit + 1;
}

// The clusters of an environment, push and pull: its explicit list, else those naming it (by name).
std::vector<const deliver::Cluster*> ClustersIn(const deliver::Config& config, const deliver::Environment& env) {
  std::vector<const deliver::Cluster*> out;
  if (!env.clusters.empty()) {
    for (const auto& name : env.clusters) {
      if (const deliver::Cluster* c = config.FindCluster(name)) out.push_back(c);
    }
    return out;
  }
  for (const auto& c : config.clusters) {
    if (c.environment == env.name) out.push_back(&c);
  }
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  return out;
}

// Every app's row of `gantry status`, and how reading each pull cluster's Applications went (from
// the watch when the server has one).
struct ClusterView {
  deliver::StatusReport report;
  std::map<std::string, Status> pull;  // pull cluster → OK, or why its Applications cannot be read
};

Result<ClusterView> GatherClusters(const ApiV1Options& o, const deliver::Config& config) {
  ClusterView view;
  deliver::ApplicationsFn source = [&](const deliver::Cluster& c) -> Result<std::vector<Value>> {
    Result<std::vector<Value>> items = UnavailableError("no way to reach pull clusters");
    if (o.pull_applications) {
      items = o.pull_applications(c);
    } else if (o.connect) {
      auto client = o.connect(c);
      if (!client.ok()) {
        items = client.status();
      } else if (auto list = (*client)->List(api::kApiVersion, api::kKind, ""); list.ok()) {
        items = std::move(list->items);
      } else {
        items = list.status();
      }
    }
    view.pull[c.name] = items.status();
    return items;
  };
  GANTRY_ASSIGN_OR_RETURN(view.report, deliver::GatherStatus(o.access->store(), config, "", o.connect, source));
  return view;
}

// GET /api/v1/clusters.
Result<http::Response> Clusters(const ApiV1Options& o, ProbeCache& probes, const http::Request& req,
                                const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, authz::kAllProjects));
  GANTRY_RETURN_IF_ERROR(KnownParams(ParseQuery(req.query), {"limit", "cursor"}));
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  const deliver::Config config = o.deliver_config.value_or(deliver::Config{});
  GANTRY_ASSIGN_OR_RETURN(ClusterView view, GatherClusters(o, config));
  std::vector<const deliver::Cluster*> clusters;
  for (const auto& c : config.clusters) clusters.push_back(&c);
  std::sort(clusters.begin(), clusters.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  const std::optional<int64_t> next = PageOf(clusters, page);  // only this page's clusters are probed
  const std::vector<ClusterProbe> probed = probes.Get(clusters);
  Value items = Value::Seq();
  for (size_t i = 0; i < clusters.size(); ++i) {
    const deliver::Cluster& c = *clusters[i];
    const ClusterProbe& p = probed[i];
    Value v = Value::Map();
    v.Set("name", c.name);
    v.Set("environment", c.environment);
    v.Set("mode", c.pull ? "pull" : "push");
    v.Set("server", p.server.empty() ? Value() : Value(p.server));
    // A pull cluster is reachable when its Applications can be read (the watch's state); a push
    // cluster when it answers /version.
    bool reachable = p.reachable;
    std::string error = p.error;
    if (c.pull) {
      auto it = view.pull.find(c.name);
      const Status s = it == view.pull.end() ? UnavailableError("its Applications were not read") : it->second;
      reachable = s.ok();
      error = s.ok() ? "" : s.message();
    }
    v.Set("reachable", reachable);
    v.Set("kube_version", p.kube_version.empty() ? Value() : Value(p.kube_version));
    Value labels = Value::Map();
    for (const auto& [k, val] : c.labels) labels.Set(k, val);
    v.Set("labels", labels);
    Value apps = Value::Seq();
    for (const auto& row : view.report.rows) {
      if (row.cluster != c.name) continue;
      Value a = Value::Map();
      a.Set("app", row.app);
      a.Set("environment", row.env);
      a.Set("release", row.release == 0 ? Value() : Value(row.release));
      a.Set("revision", row.revision);
      a.Set("state", row.state);
      a.Set("health", row.health);
      a.Set("behind", row.behind);
      apps.Append(a);
    }
    v.Set("apps", apps);
    v.Set("last_error", error.empty() ? Value() : Value(error));
    items.Append(v);
  }
  return ListResponse(req, items, next);
}

// How bad a health is, for an environment's summary of an app over its clusters.
int HealthRank(std::string_view health) {
  if (health == "Degraded") return 5;
  if (health == "Missing") return 4;
  if (health == "Progressing") return 3;
  if (health == "Unknown" || health.empty()) return 2;
  if (health == "Suspended") return 1;
  return 0;  // Healthy
}

// The releases waiting on `env`'s approval gate: per app, the newest unfinished release (the one
// `gantry deploy --resume` continues) whose first environment not healthy everywhere is `env`,
// with nothing started there and no approval recorded for it.
Result<Value> WaitingOn(store::Store& store, const std::vector<std::string>& order, const deliver::Environment& env) {
  Value out = Value::Seq();
  if (!env.gates.approval) return out;
  GANTRY_ASSIGN_OR_RETURN(auto apps, store.ListApps());
  for (const auto& app : apps) {
    GANTRY_ASSIGN_OR_RETURN(auto releases, store.ListReleases(app, 20));
    for (const auto& rel : releases) {
      GANTRY_ASSIGN_OR_RETURN(auto targets, store.ListTargets(rel.id));
      auto unfinished = [](const store::Target& t) {
        return t.state == store::TargetState::kPending || t.state == store::TargetState::kApplying;
      };
      if (std::none_of(targets.begin(), targets.end(), unfinished)) continue;
      if (std::any_of(targets.begin(), targets.end(),
                      [](const store::Target& t) { return t.state == store::TargetState::kRolledBack; })) {
        continue;
      }
      // The release's first environment, in promotion order, that is not healthy everywhere.
      std::string first;
      for (const auto& e : order) {
        bool has = false, healthy = true;
        for (const auto& t : targets) {
          if (t.env != e) continue;
          has = true;
          healthy = healthy && t.state == store::TargetState::kHealthy;
        }
        if (has && !healthy) {
          first = e;
          break;
        }
      }
      if (first == env.name &&
          std::all_of(targets.begin(), targets.end(),
                      [&](const store::Target& t) { return t.env != env.name || t.state == store::TargetState::kPending; })) {
        GANTRY_ASSIGN_OR_RETURN(bool approved, store.IsApproved(rel.id, env.name));
        if (!approved) {
          Value w = Value::Map();
          w.Set("app", app);
          w.Set("release", rel.id);
          w.Set("project", rel.project.empty() ? "default" : rel.project);
          w.Set("source_revision", rel.source_revision);
          w.Set("config_revision", rel.config_revision);
          w.Set("created_at", Rfc3339(rel.created_at));
          out.Append(w);
        }
      }
      break;  // only the newest unfinished release waits
    }
  }
  return out;
}

// GET /api/v1/environments.
Result<http::Response> Environments(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, authz::kAllProjects));
  GANTRY_RETURN_IF_ERROR(KnownParams(ParseQuery(req.query), {"limit", "cursor"}));
  GANTRY_ASSIGN_OR_RETURN(Page page, ParsePage(req.query));
  const deliver::Config config = o.deliver_config.value_or(deliver::Config{});
  auto order = deliver::PromotionOrder(config);
  if (!order.ok()) return order.status().WithContext("the deliver configuration's environments");
  const std::vector<std::string> all_environments = *order;  // WaitingOn needs the whole order
  const std::optional<int64_t> next = PageOf(*order, page);
  GANTRY_ASSIGN_OR_RETURN(ClusterView view, GatherClusters(o, config));
  Value items = Value::Seq();
  for (const auto& name : *order) {
    const deliver::Environment& env = *config.FindEnvironment(name);
    Value v = Value::Map();
    v.Set("name", env.name);
    Value after = Value::Seq();
    for (const auto& a : env.after) after.Append(a);
    v.Set("after", after);
    Value clusters = Value::Seq();
    for (const auto* c : ClustersIn(config, env)) {
      Value cv = Value::Map();
      cv.Set("name", c->name);
      cv.Set("mode", c->pull ? "pull" : "push");
      clusters.Append(cv);
    }
    v.Set("clusters", clusters);
    Value gate = Value::Map();
    gate.Set("approval", env.gates.approval);
    gate.Set("healthy", env.gates.healthy);
    gate.Set("soak_seconds", static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(env.gates.soak).count()));
    v.Set("gate", gate);
    GANTRY_ASSIGN_OR_RETURN(Value waiting, WaitingOn(o.access->store(), all_environments, env));
    v.Set("waiting", waiting);
    // Each app here: its worst health over the environment's clusters, the oldest release running
    // and how far behind the furthest cluster is.
    struct AppHere {
      std::string health = "Healthy";
      int64_t release = 0;
      int64_t behind = 0;
    };
    std::map<std::string, AppHere> here;
    for (const auto& row : view.report.rows) {
      if (row.env != env.name) continue;
      AppHere& a = here[row.app];
      if (HealthRank(row.health) > HealthRank(a.health)) a.health = row.health.empty() ? "Unknown" : row.health;
      if (row.release != 0 && (a.release == 0 || row.release < a.release)) a.release = row.release;
      a.behind = std::max(a.behind, row.behind);
    }
    Value apps = Value::Seq();
    std::map<std::string, int64_t> counts;
    for (const auto& [app, a] : here) {
      Value av = Value::Map();
      av.Set("app", app);
      av.Set("health", a.health);
      av.Set("release", a.release == 0 ? Value() : Value(a.release));
      av.Set("behind", a.behind);
      apps.Append(av);
      ++counts[a.health];
    }
    v.Set("apps", apps);
    Value summary = Value::Map();
    for (const auto& [health, n] : counts) summary.Set(health, n);
    v.Set("summary", summary);
    items.Append(v);
  }
  return ListResponse(req, items, next);
}

// ---------------------------------------------------------------------------------------------
// The release flow: /api/v1/apps/{app}/releases/{id}.

// A pull cluster's state for release `id` from the status row of its Application: "synced" when
// it runs this release, "behind" when it runs an older one or none, "superseded" when a newer one.
std::string PullStateFor(const deliver::StatusRow& row, int64_t id) {
  if (row.release == id) return "synced";
  if (row.release > id) return "superseded";
  return "behind";
}

// GET /api/v1/apps/{app}/releases/{id}: the release joined with its CI run, its images, its config
// commit and, per environment in promotion order, its gate and each cluster's state.
Result<http::Response> ReleaseFlow(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  const std::string app = ParamOf(req, "app");
  GANTRY_ASSIGN_OR_RETURN(int64_t id, ParseId(ParamOf(req, "id"), "release"));
  store::Store& store = o.access->store();
  GANTRY_ASSIGN_OR_RETURN(store::Release rel, store.GetRelease(id));
  if (rel.app != app) return NotFoundError("no release {} of {} (release {} is {}'s)", id, app, id, rel.app);
  const std::string project = rel.project.empty() ? std::string("default") : rel.project;
  GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kAppsRead, project));
  GANTRY_ASSIGN_OR_RETURN(std::optional<store::Run> run, RunOf(store, rel));
  GANTRY_ASSIGN_OR_RETURN(auto targets, store.ListTargets(id));
  GANTRY_ASSIGN_OR_RETURN(AppsView view, GatherApps(o, app));
  const deliver::Config config = o.deliver_config.value_or(deliver::Config{});
  std::vector<std::string> order;
  if (auto po = deliver::PromotionOrder(config); po.ok()) order = *po;
  for (const auto& t : targets) {
    if (std::find(order.begin(), order.end(), t.env) == order.end()) order.push_back(t.env);
  }

  Value v = Value::Map();
  v.Set("id", rel.id);
  v.Set("app", rel.app);
  v.Set("project", project);
  v.Set("started_by", rel.started_by);
  v.Set("note", rel.note);
  v.Set("created_at", Rfc3339(rel.created_at));
  GANTRY_ASSIGN_OR_RETURN(Value pull_request, PullRequestJson(store, rel));
  v.Set("pull_request", std::move(pull_request));
  Value commit = Value::Map();
  commit.Set("repo", run ? Value(git::ScrubUrl(run->repo)) : Value());
  commit.Set("ref", run ? Value(run->ref) : Value());
  commit.Set("revision", rel.source_revision);
  commit.Set("url", UrlOrNull(run ? CommitUrl(o.links, run->repo, rel.source_revision) : std::nullopt));
  // Its message, title and author from the mirror the run fetched; null when there is none.
  if (auto c = SourceCommit(o, rel, run)) {
    commit.Set("message", c->message);
    SetCommitSummary(commit, *c);
  } else {
    for (const char* key : {"message", "title", "author", "authored_at"}) commit.Set(key, Value());
  }
  v.Set("commit", commit);
  if (run) {
    Value r = Value::Map();
    r.Set("id", run->id);
    r.Set("pipeline", git::ScrubUrl(run->pipeline));
    r.Set("state", store::Name(run->state));
    r.Set("started_at", TimeOrNull(run->started_at));
    r.Set("finished_at", TimeOrNull(run->finished_at));
    if (run->started_at && run->finished_at) {
      r.Set("duration_seconds", std::chrono::duration<double>(*run->finished_at - *run->started_at).count());
    } else {
      r.Set("duration_seconds", Value());
    }
    v.Set("run", r);
  } else {
    v.Set("run", Value());
  }
  Value images = Value::Seq();
  for (const auto& [name, digest] : rel.image_digests) {
    Value im = Value::Map();
    im.Set("name", name);
    im.Set("digest", digest);
    im.Set("reference", name + "@" + digest);
    im.Set("url", UrlOrNull(ImageUrl(o.links, name, digest)));
    auto chain = rel.supply_chain.find(name);
    im.Set("supply_chain", chain == rel.supply_chain.end() ? Value() : SupplyChainJson(chain->second));
    images.Append(im);
  }
  v.Set("images", images);
  Value cfg = Value::Map();
  cfg.Set("repo", o.config_repo.empty() ? Value() : Value(git::ScrubUrl(o.config_repo)));
  cfg.Set("revision", rel.config_revision);
  cfg.Set("url", UrlOrNull(CommitUrl(o.links, o.config_repo, rel.config_revision)));
  v.Set("config", cfg);

  // Whether every environment before `e` in promotion order with targets of this release is
  // healthy everywhere (what a deploy waits for before it reaches `e`'s gate).
  const bool rolled_back = std::any_of(targets.begin(), targets.end(),
                                       [](const store::Target& t) { return t.state == store::TargetState::kRolledBack; });
  bool earlier_healthy = true;
  Value envs = Value::Seq();
  for (const auto& name : order) {
    const deliver::Environment* env = config.FindEnvironment(name);
    Value ev = Value::Map();
    ev.Set("name", name);
    Value gate = Value::Map();
    gate.Set("approval", env != nullptr && env->gates.approval);
    gate.Set("healthy", env != nullptr && env->gates.healthy);
    gate.Set("soak_seconds", env == nullptr ? int64_t{0}
                                            : static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(env->gates.soak).count()));
    ev.Set("gate", gate);
    bool approved = false;
    if (env != nullptr && env->gates.approval) {
      GANTRY_ASSIGN_OR_RETURN(approved, store.IsApproved(id, name));
    }
    ev.Set("approved", approved);
    // Clusters: the configured ones of the environment, then any other the ledger has a target on.
    std::vector<std::pair<std::string, bool>> clusters;  // name, pull
    if (env != nullptr) {
      for (const auto* c : ClustersIn(config, *env)) clusters.push_back({c->name, c->pull});
    }
    for (const auto& t : targets) {
      if (t.env != name) continue;
      if (std::none_of(clusters.begin(), clusters.end(), [&](const auto& c) { return c.first == t.cluster; })) {
        clusters.push_back({t.cluster, false});
      }
    }
    bool all_pending = true, all_healthy = true, any = false;
    Value cv = Value::Seq();
    for (const auto& [cluster, pull] : clusters) {
      Value c = Value::Map();
      c.Set("name", cluster);
      c.Set("mode", pull ? "pull" : "push");
      std::string state = pull ? "behind" : "not_started";
      std::string message, health, sync;
      Value when;
      int64_t behind = 0;
      const deliver::StatusRow* row = nullptr;
      for (const auto& r : view.report.rows) {
        if (r.env == name && r.cluster == cluster) row = &r;
      }
      if (pull) {
        if (row != nullptr) {
          state = PullStateFor(*row, id);
          message = row->message;
          health = row->health;
          sync = row->state;
          behind = row->behind;
          const Value* a = FindApplication(view, cluster, app);
          api::ApplicationStatus st = api::ParseStatus(a == nullptr ? nullptr : a->Get("status"));
          if (st.operation && !st.operation->finished_at.empty()) when = Value(st.operation->finished_at);
        } else {
          message = "no Application of this app on the cluster (or it was not read)";
        }
        any = true;
        all_healthy = all_healthy && state == "synced" && health == "Healthy";
      } else {
        for (const auto& t : targets) {
          if (t.env != name || t.cluster != cluster) continue;
          state = std::string(store::Name(t.state));
          message = t.message;
          when = Value(Rfc3339(t.finished_at.value_or(t.updated_at)));
          any = true;
          all_pending = all_pending && t.state == store::TargetState::kPending;
          all_healthy = all_healthy && t.state == store::TargetState::kHealthy;
        }
        if (row != nullptr) {
          health = row->health;
          sync = PushSync(*row);
          behind = row->behind;
        }
        if (state == "not_started") all_healthy = false;
      }
      c.Set("state", state);
      c.Set("message", message);
      c.Set("health", health.empty() ? Value() : Value(health));
      c.Set("sync", sync.empty() ? Value() : Value(sync));
      c.Set("behind", behind);
      c.Set("at", when);
      cv.Append(c);
    }
    ev.Set("clusters", cv);
    // Waiting for approval: the gate asks for one, none is recorded, nothing of the release has
    // started here and every environment before is healthy everywhere.
    const bool waiting = env != nullptr && env->gates.approval && !approved && !rolled_back && earlier_healthy &&
                         all_pending && std::any_of(targets.begin(), targets.end(), [&](const store::Target& t) {
                           return t.env == name && t.state == store::TargetState::kPending;
                         });
    ev.Set("waiting_approval", waiting);
    envs.Append(ev);
    if (any) earlier_healthy = earlier_healthy && all_healthy;
  }
  v.Set("environments", envs);
  return WithETag(req, value::ToJson(v) + "\n");
}

// ---------------------------------------------------------------------------------------------
// Pipelines: the repositories the CI server builds, with the steps of their newest run.

// How many of a pipeline's newest runs are searched for one that has steps (a queued run has none).
constexpr int kPipelineRunsSearched = 20;

// One pipeline: the repository, its project, its newest run and the steps (with needs) of the
// newest run that wrote any.
Result<Value> PipelineJson(const ApiV1Options& o, const std::string& repo) {
  GANTRY_ASSIGN_OR_RETURN(auto runs, o.access->store().ListRuns({.pipeline = repo, .limit = kPipelineRunsSearched}));
  store::Run probe;
  probe.pipeline = repo;
  probe.repo = repo;
  Value v = Value::Map();
  v.Set("repo", git::ScrubUrl(repo));
  v.Set("project", o.project_of ? o.project_of(probe) : "");
  v.Set("last_run", runs.empty() ? Value() : RunJson(o, runs.front(), false));
  Value steps = Value::Seq();
  Value from = Value();
  for (const auto& r : runs) {
    GANTRY_ASSIGN_OR_RETURN(store::Run full, o.ci->GetRun(r.id));
    if (full.steps.empty()) continue;
    steps = StepsJson(full.steps);
    from = Value(full.id);
    break;
  }
  v.Set("steps", steps);
  v.Set("steps_from_run", from);
  return v;
}

// The project a pipeline's permissions are checked on ("*" for none), as its runs'.
std::string PipelineProject(const ApiV1Options& o, const std::string& repo) {
  store::Run probe;
  probe.pipeline = repo;
  probe.repo = repo;
  return RunProject(o, probe);
}

// GET /api/v1/pipelines: the pipelines whose runs the caller may read.
Result<http::Response> Pipelines(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(KnownParams(ParseQuery(req.query), {}));
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kRunsRead)) {
    return authz.Check(who, authz::Permission::kRunsRead, authz::kAllProjects);
  }
  std::vector<std::string> repos = o.repos;
  std::sort(repos.begin(), repos.end(), [](const auto& a, const auto& b) { return git::ScrubUrl(a) < git::ScrubUrl(b); });
  Value items = Value::Seq();
  for (const auto& repo : repos) {
    if (!authz.Allowed(who, authz::Permission::kRunsRead, PipelineProject(o, repo))) continue;
    GANTRY_ASSIGN_OR_RETURN(Value v, PipelineJson(o, repo));
    items.Append(v);
  }
  return ListResponse(req, items, std::nullopt);
}

// GET /api/v1/pipelines/{repo}: {repo} is the repository's URL as the list gives it, percent-encoded.
Result<http::Response> PipelineDetail(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_ASSIGN_OR_RETURN(std::string want, PercentDecode(ParamOf(req, "repo")));
  for (const auto& repo : o.repos) {
    if (git::ScrubUrl(repo) != want && repo != want) continue;
    GANTRY_RETURN_IF_ERROR(o.access->Authorize(who, authz::Permission::kRunsRead, PipelineProject(o, repo)));
    GANTRY_ASSIGN_OR_RETURN(Value v, PipelineJson(o, repo));
    return WithETag(req, value::ToJson(v) + "\n");
  }
  return NotFoundError("no pipeline {:?}: this server builds {}", want,
                       o.repos.empty() ? std::string("no repository") : fmt::format("{} repositories (GET /api/v1/pipelines)", o.repos.size()));
}

// ---------------------------------------------------------------------------------------------
// Projects: the deliver configuration's Projects (and the built-in default), with who has roles.

Value StringsJson(const std::vector<std::string>& list) {
  Value out = Value::Seq();
  for (const auto& s : list) out.Append(s);
  return out;
}

// The projects the server knows: the configuration's, and "default" (built in) unless defined.
std::vector<project::Project> KnownProjects(const ApiV1Options& o) {
  std::vector<project::Project> out = o.deliver_config ? o.deliver_config->projects : std::vector<project::Project>{};
  if (std::none_of(out.begin(), out.end(), [](const auto& p) { return p.name == "default"; })) {
    out.push_back(project::DefaultProject());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

// A project as JSON; its role bindings only for a caller with roles.manage there (as GET
// /api/roles), else null.
Value ProjectJson(const ApiV1Options& o, const project::Project& p, const authz::Authorizer& authz,
                  const authz::Principal& who, const std::vector<store::RoleBinding>& bindings, bool detail) {
  Value v = Value::Map();
  v.Set("name", p.name);
  v.Set("description", p.description);
  v.Set("built_in", p.source.empty() && p.name == "default" &&
                        (!o.deliver_config || std::none_of(o.deliver_config->projects.begin(), o.deliver_config->projects.end(),
                                                           [](const auto& q) { return q.name == "default"; })));
  v.Set("source_repos", StringsJson(p.source_repos));
  Value dests = Value::Seq();
  for (const auto& d : p.destinations) {
    Value dv = Value::Map();
    dv.Set("server", d.server);
    dv.Set("name", d.name);
    dv.Set("namespace", d.namespace_);
    dests.Append(dv);
  }
  v.Set("destinations", dests);
  Value ci = Value::Seq();
  for (const auto& repo : o.repos) {
    store::Run probe;
    probe.pipeline = repo;
    probe.repo = repo;
    if (o.project_of && o.project_of(probe) == p.name) ci.Append(git::ScrubUrl(repo));
  }
  v.Set("ci_repos", ci);
  if (detail) {
    v.Set("source_namespaces", StringsJson(p.source_namespaces));
    v.Set("image_repos", StringsJson(p.image_repos));
    v.Set("config_paths", StringsJson(p.config_paths));
    v.Set("credentials", StringsJson(p.credentials));
    Value windows = Value::Seq();
    for (const auto& w : p.windows) {
      Value wv = Value::Map();
      wv.Set("kind", w.kind == project::WindowKind::kAllow ? "allow" : "deny");
      wv.Set("schedule", w.schedule);
      wv.Set("duration_minutes", static_cast<int64_t>(w.duration.count()));
      wv.Set("environments", StringsJson(w.environments));
      wv.Set("applications", StringsJson(w.applications));
      wv.Set("clusters", StringsJson(w.clusters));
      wv.Set("namespaces", StringsJson(w.namespaces));
      wv.Set("manual_sync", w.manual_sync);
      windows.Append(wv);
    }
    v.Set("windows", windows);
  }
  if (authz.Allowed(who, authz::Permission::kRolesManage, p.name)) {
    Value roles = Value::Seq();
    for (const auto& b : bindings) {
      if (b.project != p.name && b.project != authz::kAllProjects) continue;
      Value rv = Value::Map();
      rv.Set("subject_kind", b.subject_kind == store::SubjectKind::kUser ? "user" : "group");
      rv.Set("subject", b.subject);
      rv.Set("role", b.role);
      rv.Set("project", b.project);
      roles.Append(rv);
    }
    v.Set("roles", roles);
  } else {
    v.Set("roles", Value());
  }
  return v;
}

// GET /api/v1/projects: the projects where the caller may read apps.
Result<http::Response> Projects(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  GANTRY_RETURN_IF_ERROR(KnownParams(ParseQuery(req.query), {}));
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  if (!authz.AllowedSomewhere(who, authz::Permission::kAppsRead)) {
    return authz.Check(who, authz::Permission::kAppsRead, authz::kAllProjects);
  }
  GANTRY_ASSIGN_OR_RETURN(auto bindings, o.access->store().ListRoleBindings());
  Value items = Value::Seq();
  for (const auto& p : KnownProjects(o)) {
    if (authz.Allowed(who, authz::Permission::kAppsRead, p.name)) items.Append(ProjectJson(o, p, authz, who, bindings, false));
  }
  return ListResponse(req, items, std::nullopt);
}

// GET /api/v1/projects/{name}.
Result<http::Response> ProjectDetail(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  const std::string name = ParamOf(req, "name");
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer authz, o.access->LoadAuthorizer());
  GANTRY_RETURN_IF_ERROR(authz.Check(who, authz::Permission::kAppsRead, name));
  for (const auto& p : KnownProjects(o)) {
    if (p.name != name) continue;
    GANTRY_ASSIGN_OR_RETURN(auto bindings, o.access->store().ListRoleBindings());
    return WithETag(req, value::ToJson(ProjectJson(o, p, authz, who, bindings, true)) + "\n");
  }
  return NotFoundError("no project {:?} (GET /api/v1/projects lists them)", name);
}

// ---------------------------------------------------------------------------------------------
// Tokens: as /api/tokens (server/access.h), never with a secret but the new one's.

Value TokenJson(const store::ApiToken& t) {
  Value v = Value::Map();
  v.Set("id", TokenId(t.id));
  v.Set("name", t.name);
  v.Set("kind", store::Name(t.kind));
  v.Set("owner", t.owner);
  v.Set("roles", StringsJson(t.roles));
  v.Set("created_by", t.created_by);
  v.Set("created_at", Rfc3339(t.created_at));
  v.Set("expires_at", TimeOrNull(t.expires_at));
  v.Set("last_used_at", TimeOrNull(t.last_used_at));
  v.Set("revoked_at", TimeOrNull(t.revoked_at));
  v.Set("revoked_by", t.revoked_by);
  return v;
}

// GET /api/v1/tokens[?project=P|?all=1].
Result<http::Response> Tokens(const ApiV1Options& o, const http::Request& req, const authz::Principal& who) {
  const auto q = ParseQuery(req.query);
  GANTRY_RETURN_IF_ERROR(KnownParams(q, {"project", "all"}));
  GANTRY_ASSIGN_OR_RETURN(auto tokens, ListApiTokens(*o.access, q, who));
  Value items = Value::Seq();
  for (const auto& t : tokens) items.Append(TokenJson(t));
  return ListResponse(req, items, std::nullopt);
}

// POST /api/v1/tokens → 201 with the secret, this once.
Result<http::Response> CreateToken(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                                   AuditNote& note) {
  GANTRY_ASSIGN_OR_RETURN(Value body, BodyObject(req));
  GANTRY_RETURN_IF_ERROR(KnownFields(body, {"name", "expires_in_seconds", "project", "roles"}));
  GANTRY_ASSIGN_OR_RETURN(NewToken created, CreateApiToken(*o.access, body, who, note));
  Value v = TokenJson(created.token);
  v.Set("token", created.secret);
  http::Response r = http::Response::Json(201, value::ToJson(v) + "\n");
  r.headers["cache-control"] = "no-store";
  return r;
}

// DELETE /api/v1/tokens/{id} → 200 with the revoked token.
Result<http::Response> RevokeToken(const ApiV1Options& o, const http::Request& req, const authz::Principal& who,
                                   AuditNote& note) {
  const std::string id_text = ParamOf(req, "id");
  auto id = ParseTokenId(id_text);
  if (!id.ok()) return NotFoundError("no token {:?} (ids look like t-12)", id_text);
  GANTRY_RETURN_IF_ERROR(RevokeApiToken(*o.access, id_text, who, note));
  GANTRY_ASSIGN_OR_RETURN(store::ApiToken t, o.access->store().GetToken(*id));
  return http::Response::Json(200, value::ToJson(TokenJson(t)) + "\n");
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
      if (auto id = req.params.find("id"); id != req.params.end()) {
        note.object = (req.route.starts_with("/api/v1/tokens/") ? "token " : "run ") + id->second;
      }
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
  add("GET", "/api/v1/apps/{app}/releases/{id}", "releases.read", read(ReleaseFlow));
  add("GET", "/api/v1/apps", "apps.read", read(Apps));
  add("GET", "/api/v1/apps/{app}", "apps.read", read(AppDetail));
  for (std::string what : {"resources", "diff", "events"}) {
    add("GET", "/api/v1/apps/{app}/" + what, "apps.read",
        [what](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote&) {
          return AppLive(opt, req, who, what);
        });
  }
  for (std::string action : {"sync", "refresh", "terminate"}) {
    add("POST", "/api/v1/apps/{app}/" + action, "apps." + action,
        [action](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote& note) {
          return AppOperation(opt, req, who, note, action);
        });
  }
  auto probes = std::make_shared<ProbeCache>(
      o->probe ? o->probe : ProbeFn([](const deliver::Cluster& c) { return ProbeVersion(c, std::chrono::seconds(2)); }),
      o->probe_ttl);
  add("GET", "/api/v1/clusters", "apps.read",
      [probes](const ApiV1Options& opt, const http::Request& req, const authz::Principal& who, AuditNote&) {
        return Clusters(opt, *probes, req, who);
      });
  add("GET", "/api/v1/environments", "apps.read", read(Environments));
  add("GET", "/api/v1/runs", "runs.read", read(Runs));
  add("GET", "/api/v1/events", "events.read", read(Events));
  add("GET", "/api/v1/notifications", "runs.read", read(Notifications));
  for (std::string action : {"", "logs", "cancel", "approve", "retry"}) {
    const bool post = action == "cancel" || action == "approve" || action == "retry";
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
  add("GET", "/api/v1/pipelines", "runs.read", read(Pipelines));
  add("GET", "/api/v1/pipelines/{repo}", "runs.read", read(PipelineDetail));
  add("GET", "/api/v1/projects", "apps.read", read(Projects));
  add("GET", "/api/v1/projects/{name}", "apps.read", read(ProjectDetail));
  add("GET", "/api/v1/tokens", "tokens", read(Tokens));
  add("POST", "/api/v1/tokens", "tokens.create", CreateToken);
  add("DELETE", "/api/v1/tokens/{id}", "tokens.revoke", RevokeToken);
  front.Handle("GET", "/api/v1/signing-keys", [o](const http::Request& req) {
    const SigningKeys& k = o->signing_keys;
    Value images;
    if (!k.images.empty()) {
      images = Value::Map();
      images.Set("format", "cosign");
      images.Set("public_key", k.images);
    }
    Value commits;
    if (!k.commits.empty()) {
      commits = Value::Map();
      commits.Set("format", "ssh");
      commits.Set("public_key", k.commits);
      commits.Set("allowed_signers", fmt::format("{} namespaces=\"git\" {}", k.commit_principal, k.commits));
    }
    Value doc = Value::Map();
    doc.Set("images", images);
    doc.Set("commits", commits);
    return WithETag(req, value::ToJson(doc) + "\n");
  });
  front.Handle("GET", "/api/v1/openapi.json", [](const http::Request& req) {
    http::Response r = WithETag(req, std::string(OpenApiDocument()));
    r.headers["cache-control"] = "no-cache";
    return r;
  });
  return OkStatus();
}

}  // namespace gantry::server
