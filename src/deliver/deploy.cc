// The Deployment state object and Rollback (see deliver.h for the algorithm).

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "base/clock.h"
#include "deliver/deliver.h"
#include "sync/sync.h"

namespace gantry::deliver {
namespace {

using namespace std::chrono_literals;

// How long an apply waits for the first list of each kind it watches before reading that kind
// from the API instead.
constexpr std::chrono::milliseconds kFirstListWait{10'000};
// How often a soaking environment's health is looked at (and once more as its soak ends).
constexpr std::chrono::seconds kSoakLookEvery{30};

// The plan a release was started with, kept in Release::note so Resume() needs no flags.
struct Plan {
  std::vector<std::string> environments;
  std::string path_template;
  std::string revision;  // as the user asked
  // Every (environment, cluster) the release is for. The release is written before its targets,
  // so a crash in between leaves some unwritten: Resume() writes them from here. Empty in plans
  // from before it was recorded.
  std::vector<std::pair<std::string, std::string>> targets;
};

std::string EncodePlan(const Plan& plan) {
  value::Value v = value::Value::Map();
  value::Value envs = value::Value::Seq();
  for (const auto& e : plan.environments) envs.Append(e);
  v.Set("environments", envs);
  v.Set("pathTemplate", plan.path_template);
  v.Set("revision", plan.revision);
  value::Value targets = value::Value::Seq();
  for (const auto& [env, cluster] : plan.targets) {
    value::Value t = value::Value::Map();
    t.Set("env", env);
    t.Set("cluster", cluster);
    targets.Append(t);
  }
  v.Set("targets", targets);
  return value::ToJson(v);
}

Result<Plan> DecodePlan(const store::Release& r) {
  auto v = value::ParseJson(r.note, "release note");
  if (!v.ok()) return FailedPreconditionError("release {} was not started by gantry deploy (its note is not a plan)", r.id);
  Plan p;
  if (const value::Value* envs = v->Get("environments"); envs != nullptr)
    for (const auto& e : envs->items())
      if (e.IsString()) p.environments.emplace_back(e.AsString());
  if (const value::Value* t = v->Get("pathTemplate"); t != nullptr && t->IsString()) p.path_template = t->AsString();
  if (const value::Value* t = v->Get("revision"); t != nullptr && t->IsString()) p.revision = t->AsString();
  if (const value::Value* targets = v->Get("targets"); targets != nullptr)
    for (const auto& t : targets->items())
      p.targets.emplace_back(value::StringAt(&t, {"env"}), value::StringAt(&t, {"cluster"}));
  if (p.environments.empty() || p.path_template.empty())
    return FailedPreconditionError("release {} has no deploy plan in its note", r.id);
  return p;
}

// The targets of `plan` that `written` (release `id`'s) lacks: those a start cut short by a crash
// never wrote.
std::vector<store::Target> Unwritten(int64_t id, const Plan& plan, const std::vector<store::Target>& written) {
  std::vector<store::Target> out;
  for (const auto& want : plan.targets) {
    if (std::none_of(written.begin(), written.end(),
                     [&](const store::Target& t) { return t.env == want.first && t.cluster == want.second; }))
      out.push_back({.release_id = id, .env = want.first, .cluster = want.second});
  }
  return out;
}

// The JSON summary of a sync kept in Target::sync_result; `requests`: API requests of the whole
// apply (reading the cluster included).
std::string Summary(const sync::State& s, uint64_t requests) {
  value::Value v = value::Value::Map();
  v.Set("phase", sync::Name(s.phase));
  v.Set("message", s.message);
  int64_t failed = 0, changed = 0;
  value::Value failures = value::Value::Seq();
  for (const auto& r : s.results) {
    if (r.action == sync::Action::kCreate || r.action == sync::Action::kUpdate || r.action == sync::Action::kApply ||
        r.action == sync::Action::kPrune)
      ++changed;
    bool bad = r.failed || r.health.status == health::HealthStatus::kDegraded;
    if (!bad) continue;
    ++failed;
    if (failures.size() < 10) {
      value::Value f = value::Value::Map();
      f.Set("object", r.ref.ToString());
      f.Set("message", r.message.empty() ? r.health.message : r.message);
      failures.Append(f);
    }
  }
  v.Set("objects", static_cast<int64_t>(s.results.size()));
  v.Set("changed", changed);
  v.Set("failed", failed);
  v.Set("requests", static_cast<int64_t>(requests));
  v.Set("failures", failures);
  return value::ToJson(v);
}

// The first failing object's reason, for the one-line message of a failed target.
std::string Reason(const sync::State& s) {
  for (const auto& r : s.results) {
    if (r.failed || r.health.status == health::HealthStatus::kDegraded) {
      std::string why = r.message.empty() ? r.health.message : r.message;
      return fmt::format("{}: {}", r.ref.ToString(), why.empty() ? std::string(health::Name(r.health.status)) : why);
    }
  }
  return s.message;
}

// Appended to a window refusal that a person's override would pass.
constexpr std::string_view kOverrideHint =
    "; its windows allow a manual override (manualSync: true): give --override-window --reason WHY "
    "(API: \"override_window\": true, \"reason\")";

struct ApplyContext {
  store::Store& store;
  const ConnectFn& connect;
  const ProgressFn& progress;
  const std::atomic<bool>& terminate;
  std::string app;
  const project::Project& project;
  std::string window_override;  // why a person overrides closed sync windows; "" : no override
  std::string env;
  std::string default_namespace;
  bool create_namespace = true;
  bool prune = false;
  bool wait_for_health = true;
  std::chrono::milliseconds health_timeout{300'000};
  int parallelism = 4;
  Clock* clock = nullptr;
  std::string started_by;  // who: the audit row of a window override
  // Config::image_check: the images of each cluster's objects are verified before they are applied.
  std::function<sync::ImageCheck(const project::Project&, const std::string&, kube::Client&)> image_check = nullptr;
  // Renders again for a cluster's Capabilities (a Helm chart); null when the objects do not
  // depend on the cluster.
  std::function<Result<std::vector<value::Value>>(const kube::Capabilities&)> render_for = nullptr;
};

// What ApplyContext::render_for is for `rendered`: null unless Helm rendered it.
std::function<Result<std::vector<value::Value>>(const kube::Capabilities&)> RenderFor(
    const render::Rendered& rendered, const RenderFn& render, std::string revision, std::string path,
    std::string namespace_) {
  if (rendered.renderer != render::Renderer::kHelm) return nullptr;
  return [&render, revision = std::move(revision), path = std::move(path),
          namespace_ = std::move(namespace_)](const kube::Capabilities& caps) -> Result<std::vector<value::Value>> {
    GANTRY_ASSIGN_OR_RETURN(render::Rendered r, render(revision, path, RenderTarget{namespace_, caps}));
    return std::move(r.objects);
  };
}

void Say(const ProgressFn& progress, std::string_view line) {
  if (progress) progress(line);
}

// Writes a target, re-reading its version once when another writer got there first.
Result<store::Target> Write(store::Store& store, store::Target t, store::TargetState state, std::string message,
                            std::string sync_result = {}) {
  t.state = state;
  t.message = std::move(message);
  if (!sync_result.empty()) t.sync_result = std::move(sync_result);
  auto written = store.UpsertTarget(t);
  if (written.ok() || written.status().code() != Code::kAborted) return written;
  GANTRY_ASSIGN_OR_RETURN(auto all, store.ListTargets(t.release_id));
  for (const auto& cur : all)
    if (cur.env == t.env && cur.cluster == t.cluster) t.version = cur.version;
  return store.UpsertTarget(t);
}

// The engine's options for `cluster` that applying and reading share: the application's tracking
// key and project, the cluster's name and server, the default namespace, the clock.
sync::Options BaseOptions(const ApplyContext& ctx, const Cluster& cluster) {
  sync::Options so;
  so.app = TrackingKey(ctx.project.name, ctx.app);
  so.project = &ctx.project;
  so.cluster_name = cluster.name;
  if (auto rest = kube::LoadConfig({.paths = {cluster.kubeconfig}, .context = cluster.context,
                                    .allowed_exec_plugins = cluster.allow_exec_plugins});
      rest.ok()) {
    so.cluster_server = rest->server;
  }
  so.default_namespace = ctx.default_namespace;
  so.clock = ctx.clock;
  return so;
}

// A soak's look at one cluster: the desired objects (hooks aside) that are Degraded or Missing
// there now, each as "REF: why". An error when the cluster cannot be read.
Result<std::vector<std::string>> UnhealthyOn(const ApplyContext& ctx, const Cluster& cluster,
                                             const std::vector<value::Value>& objects) {
  GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<kube::Client> client, ctx.connect(cluster));
  std::vector<value::Value> desired;
  if (ctx.render_for) {
    GANTRY_ASSIGN_OR_RETURN(kube::Capabilities caps, kube::ReadCapabilities(*client));
    GANTRY_ASSIGN_OR_RETURN(desired, ctx.render_for(caps));
  } else {
    desired = objects;
  }
  const sync::Options so = BaseOptions(ctx, cluster);
  GANTRY_ASSIGN_OR_RETURN(sync::Prepared prepared, sync::Prepare(*client, std::move(desired), so));
  GANTRY_ASSIGN_OR_RETURN(sync::Live live, sync::ReadLive(*client, prepared, so));
  GANTRY_ASSIGN_OR_RETURN(sync::Comparison compared, sync::Compare(prepared, live, so));
  // A Job with spec.ttlSecondsAfterFinished is deleted by Kubernetes' TTL controller once it has
  // finished: gone is then what it should be. (It passed the health gate, so it had finished well.)
  std::set<kube::ObjectRef> removed_when_finished;
  for (const sync::Task& t : prepared.tasks) {
    if (t.ref.api_version == "batch/v1" && t.ref.kind == "Job" &&
        t.object.Find({"spec", "ttlSecondsAfterFinished"}) != nullptr) {
      removed_when_finished.insert(t.ref);
    }
  }
  std::vector<std::string> bad;
  for (const sync::DiffEntry& e : compared.entries) {
    if (e.status == diff::SyncStatus::kExtra) continue;
    const health::HealthStatus h = e.health.status;
    if (h != health::HealthStatus::kDegraded && h != health::HealthStatus::kMissing) continue;
    if (h == health::HealthStatus::kMissing && removed_when_finished.contains(e.ref)) continue;
    bad.push_back(fmt::format("{}: {}", e.ref.ToString(),
                              e.health.message.empty() ? std::string(health::Name(h)) : e.health.message));
  }
  return bad;
}

// Applies `objects` to one cluster and records the target's way through applying to healthy|failed.
store::Target ApplyCluster(const ApplyContext& ctx, const Cluster& cluster, store::Target target,
                           const std::vector<value::Value>& objects) {
  std::string where = target.env + "/" + cluster.name;
  auto fail = [&](const std::string& why, std::string sync_result = {}) {
    Say(ctx.progress, fmt::format("{}: failed: {}", where, why));
    auto w = Write(ctx.store, target, store::TargetState::kFailed, why, std::move(sync_result));
    if (w.ok()) return *w;
    target.state = store::TargetState::kFailed;
    target.message = why + " (not recorded: " + w.status().message() + ")";
    return target;
  };
  Say(ctx.progress, fmt::format("{}: applying", where));
  auto applying = Write(ctx.store, target, store::TargetState::kApplying, "applying");
  if (!applying.ok()) {
    target.message = "ledger: " + applying.status().message();
    target.state = store::TargetState::kFailed;
    return target;
  }
  target = *applying;
  auto client = ctx.connect(cluster);
  if (!client.ok()) return fail(client.status().message());
  const uint64_t requests_at_start = (*client)->request_count();
  // A Helm chart is rendered for this cluster's version and APIs.
  const std::vector<value::Value>* apply = &objects;
  std::vector<value::Value> for_cluster;
  if (ctx.render_for) {
    auto caps = kube::ReadCapabilities(**client);
    if (!caps.ok()) return fail(caps.status().message());
    auto r = ctx.render_for(*caps);
    if (!r.ok()) return fail(r.status().WithContext("render for cluster " + cluster.name).message());
    for_cluster = *std::move(r);
    apply = &for_cluster;
  }
  sync::Options so = BaseOptions(ctx, cluster);
  // The project's sync windows. A person may override those that allow manual syncs, giving a
  // reason: the override is said in the progress and audited (who, why, which window).
  const project::WindowScope scope{ctx.app, ctx.env, cluster.name, ctx.default_namespace, so.cluster_server};
  const auto now = (ctx.clock ? *ctx.clock : SystemClock()).WallNow();
  const bool override_asked = !ctx.window_override.empty();
  project::WindowDecision window = project::CheckWindows(ctx.project, scope, now, override_asked);
  if (!window.allowed) {
    if (!override_asked && project::CheckWindows(ctx.project, scope, now, true).allowed) {
      return fail(window.message + std::string(kOverrideHint));
    }
    return fail(window.message);
  }
  if (window.manual_override) {
    Say(ctx.progress, fmt::format("{}: sync window override by {} ({}): {}", where, ctx.started_by, ctx.window_override,
                                  window.message));
    auto audited = ctx.store.Audit({.actor = ctx.started_by, .action = "windows.override",
                                    .object = fmt::format("app/{} env/{} cluster/{}", ctx.app, ctx.env, cluster.name),
                                    .details = fmt::format("reason: {}; {}", ctx.window_override, window.message),
                                    .project = ctx.project.name});
    if (!audited.ok()) return fail("audit the sync window override: " + audited.status().message());
  }
  // The application's writes go as the project's ServiceAccount for this destination, if it names one.
  std::unique_ptr<kube::Client> tenant;
  std::string account = project::ServiceAccountFor(ctx.project, so.cluster_server, ctx.default_namespace);
  if (!account.empty()) {
    auto impersonated = (*client)->Impersonate({.user = account});
    if (!impersonated.ok()) return fail(impersonated.status().message());
    tenant = *std::move(impersonated);
    so.tenant = tenant.get();
  } else if (!ctx.project.service_accounts.empty()) {
    return fail(fmt::format("project {}: no destinationServiceAccounts entry matches namespace {} of cluster {}",
                            ctx.project.name, ctx.default_namespace, cluster.name));
  }
  so.create_namespace = ctx.create_namespace;
  so.prune = ctx.prune;
  so.wait_for_health = ctx.wait_for_health;
  so.timeout = ctx.health_timeout;
  // Terminate() reaches the operation in the middle of its health waits, not only between steps.
  so.stop = [&terminate = ctx.terminate] { return terminate.load(); };
  if (ctx.image_check) so.check_images = ctx.image_check(ctx.project, ctx.env, **client);
  // The engine's path, as the agent takes it: prepare, read (from a watch of each kind the app
  // has, started for this apply), compare, then the operation, whose health waits end on the
  // watch's events. The cache is declared after the client: it stops first.
  auto prepared = sync::Prepare(**client, *apply, so);
  if (!prepared.ok()) return fail(prepared.status().message());
  std::unique_ptr<kube::Cache> cache = sync::WatchApplication(**client, *prepared, so, kFirstListWait);
  auto live = sync::ReadLive(**client, *prepared, so, {.objects = cache.get()});
  if (!live.ok()) return fail(live.status().WithContext("read the cluster").message());
  auto comparison = sync::Compare(*prepared, *live, so);
  if (!comparison.ok()) return fail(comparison.status().WithContext("compare").message());
  bool said_waiting = false;
  auto op = sync::Operation::Start(
      **client, *std::move(prepared), *std::move(live), *std::move(comparison), so,
      [&](const sync::Progress& p) {
        // Once a step applied something, what follows is waiting for it to become healthy.
        if (ctx.wait_for_health && !said_waiting && !p.step.empty() && p.step != "prune" && p.applied + p.unchanged > 0) {
          said_waiting = true;
          Say(ctx.progress, fmt::format("{}: waiting for health", where));
        }
      },
      cache.get());
  const sync::State& s = op->Run();
  const uint64_t requests = (*client)->request_count() - requests_at_start;
  if (s.phase == sync::Phase::kTerminated) {
    // Left applying in the ledger: a resumed deploy applies it again.
    Say(ctx.progress, fmt::format("{}: interrupted", where));
    return target;
  }
  if (s.phase != sync::Phase::kSucceeded) return fail(Reason(s), Summary(s, requests));
  std::string msg = fmt::format("{} objects{}", s.results.size(), ctx.wait_for_health ? ", healthy" : " applied");
  auto healthy = Write(ctx.store, target, store::TargetState::kHealthy, msg, Summary(s, requests));
  if (!healthy.ok()) return fail("ledger: " + healthy.status().message());
  Say(ctx.progress, fmt::format("{}: healthy ({})", where, msg));
  return *healthy;
}

// Applies to every given cluster, at most ctx.parallelism at once; returns the targets in order.
std::vector<store::Target> ApplyAll(const ApplyContext& ctx, const std::vector<std::pair<const Cluster*, store::Target>>& work,
                                    const std::vector<value::Value>& objects) {
  std::vector<store::Target> out(work.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < work.size(); i = next++) out[i] = ApplyCluster(ctx, *work[i].first, work[i].second, objects);
  };
  size_t n = std::min<size_t>(std::max(1, ctx.parallelism), work.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i) threads.emplace_back(worker);
  if (n > 0) worker();
  for (auto& t : threads) t.join();
  return out;
}

bool Unfinished(store::TargetState s) { return s == store::TargetState::kPending || s == store::TargetState::kApplying; }

std::string SoakObject(std::string_view app, std::string_view env, int64_t release) {
  return fmt::format("app/{} env/{} release/{}", app, env, release);
}

// When the soak of `env` for `release` began: its audit row (action "soak"), written once as it
// begins; nullopt when it has not begun. The store's errors.
Result<std::optional<store::Time>> SoakBegan(store::Store& store, const store::Release& release, std::string_view env) {
  const std::string object = SoakObject(release.app, env, release.id);
  store::AuditFilter filter{.action = "soak", .since = release.created_at, .limit = 200};
  std::optional<store::Time> began;
  for (;;) {
    GANTRY_ASSIGN_OR_RETURN(auto rows, store.ListAudit(filter));
    for (const auto& a : rows)
      if (a.object == object) began = a.at;  // newest first: the first row is the last one seen
    if (rows.size() < static_cast<size_t>(filter.limit)) return began;
    filter.before_id = rows.back().id;
  }
}

}  // namespace

std::string_view Name(Phase phase) {
  switch (phase) {
    case Phase::kRunning: return "Running";
    case Phase::kSucceeded: return "Succeeded";
    case Phase::kFailed: return "Failed";
    case Phase::kWaitingApproval: return "WaitingApproval";
    case Phase::kTerminated: return "Terminated";
  }
  return "Unknown";
}

namespace {

// `options` for `target`: its namespace is the release namespace unless the options name one.
render::Options For(render::Options options, const RenderTarget& target) {
  if (options.helm.namespace_.empty()) options.helm.namespace_ = target.namespace_;
  if (target.capabilities) {
    options.helm.kube_version = target.capabilities->kube_version;
    options.helm.api_versions = target.capabilities->api_versions;
  }
  if (target.check_commit) {
    options.check_commit = [check = target.check_commit](const std::string& repository, std::string_view commit,
                                                          const std::optional<git::CommitSignature>& signature) {
      return check(commit, sign::CommitSource{.repository = repository, .git = true, .signature = signature});
    };
  }
  return options;
}

// RenderTarget::check_commit for `project` in `env`.
std::function<Status(std::string_view, const sign::CommitSource&)> CommitCheck(const project::Project& project,
                                                                               const std::string& env, Clock* clock) {
  if (project::CommitRulesFor(project, env).empty()) return nullptr;
  return [&project, env, clock](std::string_view commit, const sign::CommitSource& source) {
    return sign::CheckCommit(project, env, commit, source, clock);
  };
}

}  // namespace

RenderFn DirRenderFn(std::filesystem::path dir, render::Options options) {
  return [dir = std::move(dir), options = std::move(options)](std::string_view revision, const std::string& path,
                                                               const RenderTarget& target) -> Result<render::Rendered> {
    if (target.check_commit) {
      GANTRY_RETURN_IF_ERROR(target.check_commit(revision, sign::CommitSource{.repository = dir.string(), .git = false}));
    }
    render::Options o = For(options, target);
    auto manifests = render::Render({dir, path}, o);
    if (!manifests.ok()) return manifests.status().WithContext(fmt::format("render {}/{}", dir.string(), path));
    render::Rendered r{.commit = std::string(revision), .objects = {}, .content_key = {}, .renderer = o.renderer};
    std::error_code ec;
    if (r.renderer == render::Renderer::kAuto) {
      r.renderer = std::filesystem::is_directory(dir / path, ec) ? render::Detect(dir / path) : render::Renderer::kPlain;
    }
    for (auto& m : *manifests) r.objects.push_back(std::move(m.object));
    return r;
  };
}

RenderFn GitRenderFn(std::shared_ptr<render::GitSources> sources, std::string url, render::Options options) {
  auto used = std::make_shared<std::atomic<bool>>(false);
  return [sources = std::move(sources), url = std::move(url), options = std::move(options),
          used](std::string_view revision, const std::string& path, const RenderTarget& target) -> Result<render::Rendered> {
    // max(): fetch now. The epoch: only if no fetch of the URL succeeded yet.
    using TimePoint = std::chrono::steady_clock::time_point;
    return sources->Render(url, revision, path, For(options, target),
                           used->exchange(true) ? TimePoint{} : TimePoint::max());
  };
}

RenderFn GitRenderFn(std::shared_ptr<git::Repository> repo, render::Options options) {
  auto fetched = std::make_shared<std::once_flag>();
  auto fetch_status = std::make_shared<Status>();
  return [repo, options = std::move(options), fetched, fetch_status](
             std::string_view revision, const std::string& path, const RenderTarget& target) -> Result<render::Rendered> {
    std::call_once(*fetched, [&] {
      auto f = repo->Fetch();
      if (!f.ok()) *fetch_status = f.status().WithContext("fetch " + git::ScrubUrl(repo->url()));
    });
    if (!fetch_status->ok()) return *fetch_status;
    return render::RenderGitObjects(*repo, revision, path, For(options, target));
  };
}

struct Deployment::Impl {
  store::Store& store;
  Config config;
  RenderFn render;
  ConnectFn connect;
  DeployOptions options;
  ProgressFn progress;
  std::string path_template;
  project::Project project;  // options.project, resolved in the config
  std::map<std::string, render::Rendered> rendered;  // env → objects (for no cluster in particular)
  enum class Stage { kApprove, kApply, kGate, kSoak } stage = Stage::kApprove;
  std::optional<store::Time> soak_until;
  std::chrono::steady_clock::time_point next_soak_look;  // on clock(); set as the soak begins (or resumes)

  Clock& clock() const { return options.clock ? *options.clock : SystemClock(); }

  Impl(store::Store& s, Config c, RenderFn r, ConnectFn cn, DeployOptions o, ProgressFn p)
      : store(s), config(std::move(c)), render(std::move(r)), connect(std::move(cn)), options(std::move(o)),
        progress(std::move(p)) {}

  Result<render::Rendered> RenderEnv(const std::string& env, std::string_view revision, std::string* commit) {
    GANTRY_ASSIGN_OR_RETURN(std::string path, ExpandPathTemplate(path_template, options.app, env));
    auto r = render(revision, path,
                    RenderTarget{options.default_namespace, std::nullopt, CommitCheck(project, env, options.clock)});
    if (!r.ok()) return r.status().WithContext(fmt::format("render {} for {} at {}", path, env, revision));
    if (commit != nullptr) *commit = r->commit;
    // Rendered again per cluster (ApplyContext::render_for) at the commit, not a moving revision.
    revisions[env] = r->commit.empty() ? std::string(revision) : r->commit;
    paths[env] = path;
    return r;
  }
  std::map<std::string, std::string> revisions, paths;  // env → what RenderEnv rendered
};

Deployment::Deployment(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Deployment::~Deployment() = default;

Status CheckAppProject(store::Store& store, std::string_view app, std::string_view project) {
  auto norm = [](std::string_view p) { return p.empty() ? std::string_view("default") : p; };
  GANTRY_ASSIGN_OR_RETURN(auto newest, store.ListReleases(app, 1));
  if (newest.empty() || norm(newest.front().project) == norm(project)) return OkStatus();
  return PermissionDeniedError("app {} belongs to project {} (release {} was made under it); a release under project {} "
                               "is refused",
                               app, norm(newest.front().project), newest.front().id, norm(project))
      .set_reason(project::kReasonDenied);
}

// Each push-mode Cluster entry is a credential (its kubeconfig) named by the cluster's name: a
// project deploys only to clusters its `credentials` list, checked for every cluster of `envs`
// before anything is applied.
static Status CheckClusterCredentials(const project::Project& p, const Config& config,
                                      const std::vector<std::string>& envs) {
  for (const auto& e : envs) {
    const Environment* env = config.FindEnvironment(e);
    if (env == nullptr) continue;
    for (const Cluster* c : config.ClustersOf(*env)) {
      GANTRY_RETURN_IF_ERROR(project::CheckCredential(p, c->name).WithContext(fmt::format("cluster {}", c->name)));
    }
  }
  return OkStatus();
}

static Status CheckOptions(const DeployOptions& o) {
  if (o.app.empty()) return InvalidArgumentError("deploy: the application name is required");
  if (o.cluster_parallelism < 1) return InvalidArgumentError("deploy: cluster parallelism must be at least 1");
  return OkStatus();
}

Result<std::unique_ptr<Deployment>> Deployment::Start(store::Store& store, Config config, RenderFn render, ConnectFn connect,
                                                      DeployOptions options, ProgressFn progress) {
  GANTRY_RETURN_IF_ERROR(CheckOptions(options));
  if (options.revision.empty()) return InvalidArgumentError("deploy {}: --revision is required", options.app);
  GANTRY_ASSIGN_OR_RETURN(auto order, PromotionOrder(config));
  if (order.empty()) return FailedPreconditionError("deploy {}: no environments are configured", options.app);
  std::vector<std::string> envs;
  if (!options.only_env.empty()) {
    if (config.FindEnvironment(options.only_env) == nullptr)
      return InvalidArgumentError("deploy {}: unknown environment {:?} (known: {})", options.app, options.only_env, fmt::join(order, ", "));
    envs = {options.only_env};
  } else if (!options.through.empty()) {
    auto it = std::find(order.begin(), order.end(), options.through);
    if (it == order.end())
      return InvalidArgumentError("deploy {}: unknown environment {:?} (known: {})", options.app, options.through, fmt::join(order, ", "));
    envs.assign(order.begin(), it + 1);
  } else {
    envs = order;
  }
  for (const auto& e : envs)
    if (config.ClustersOf(*config.FindEnvironment(e)).empty())
      return FailedPreconditionError("deploy {}: environment {} has no push-mode clusters", options.app, e);

  GANTRY_ASSIGN_OR_RETURN(project::Project project, config.ProjectNamed(options.project));
  GANTRY_RETURN_IF_ERROR(CheckAppProject(store, options.app, options.project).WithContext("deploy"));
  GANTRY_RETURN_IF_ERROR(CheckClusterCredentials(project, config, envs).WithContext("deploy"));
  auto impl = std::make_unique<Impl>(store, std::move(config), std::move(render), std::move(connect), options, std::move(progress));
  impl->project = std::move(project);
  impl->path_template = options.path_template;
  GANTRY_RETURN_IF_ERROR(ExpandPathTemplate(options.path_template, options.app, "x").status());
  // Render every environment first: a broken overlay fails the deploy before anything is applied.
  std::string commit;
  for (const auto& e : envs) {
    std::string c;
    GANTRY_ASSIGN_OR_RETURN(impl->rendered[e], impl->RenderEnv(e, options.revision, &c));
    if (commit.empty()) commit = c;
  }
  // What older releases left unfinished will never run: it is superseded by this one. Their pending
  // targets, and those a crash or Terminate() left applying: resumed, an older release would apply
  // its objects over this one's. Targets a start cut short never wrote would otherwise make it look
  // unfinished for ever.
  GANTRY_ASSIGN_OR_RETURN(auto older, store.ListReleases(options.app, 100));
  for (const auto& r : older) {
    GANTRY_ASSIGN_OR_RETURN(auto targets, store.ListTargets(r.id));
    if (auto plan = DecodePlan(r); plan.ok())
      for (auto& t : Unwritten(r.id, *plan, targets)) targets.push_back(std::move(t));
    for (const auto& t : targets) {
      if (Unfinished(t.state)) {
        GANTRY_RETURN_IF_ERROR(Write(store, t, store::TargetState::kSuperseded, "superseded by a newer release").status());
      }
    }
  }
  store::Release rel;
  rel.app = options.app;
  rel.source_revision = options.source_revision.empty() ? commit : options.source_revision;
  rel.config_revision = options.config_revision.empty() ? commit : options.config_revision;
  rel.run_id = options.run_id;
  rel.image_digests = options.image_digests;
  rel.supply_chain = options.supply_chain;
  rel.started_by = options.started_by;
  Plan plan{envs, options.path_template, options.revision, {}};
  for (const auto& e : envs)
    for (const Cluster* c : impl->config.ClustersOf(*impl->config.FindEnvironment(e))) plan.targets.emplace_back(e, c->name);
  rel.note = EncodePlan(plan);
  rel.project = options.project == "default" ? "" : options.project;
  GANTRY_ASSIGN_OR_RETURN(int64_t id, store.CreateRelease(rel));
  std::unique_ptr<Deployment> d(new Deployment(std::move(impl)));
  d->state_.release_id = id;
  d->state_.commit = commit;
  d->state_.environments = envs;
  for (const auto& [env, cluster] : plan.targets) {
    store::Target t{.release_id = id, .env = env, .cluster = cluster, .state = store::TargetState::kPending, .message = "pending"};
    GANTRY_ASSIGN_OR_RETURN(t, store.UpsertTarget(t));
    d->state_.targets.push_back(t);
  }
  GANTRY_RETURN_IF_ERROR(store.Audit({.actor = options.started_by, .action = "deploy",
                                      .object = fmt::format("app/{} release/{}", options.app, id),
                                      .details = fmt::format("revision {} ({}) to {}", options.revision, commit, fmt::join(envs, ", "))})
                             .status());
  Say(d->impl_->progress, fmt::format("release {} of {} at {}: {}", id, options.app, commit.substr(0, 12), fmt::join(envs, " → ")));
  return d;
}

namespace {

// What a release has left to do, as the ledger says (Resume() and HasWorkLeft() read it here).
struct WorkLeft {
  std::vector<store::Target> targets;    // as written
  std::vector<store::Target> unwritten;  // named by its plan, never written (a start cut short)
  bool unfinished = false;               // a target pending or applying
  bool last_soak = false;                // every target healthy, the last environment's soak not ended
  bool any() const { return !unwritten.empty() || unfinished || last_soak; }
};

// Whether the soak of the plan's last environment, whose targets are all healthy, ends after
// `now`: at the end recorded when it began, or, if it never began (a crash before that was
// recorded), a whole soak after its targets became healthy. Nothing comes after that soak in the
// ledger, so only its audit row and the time say it is not over.
Result<bool> LastSoakLeft(store::Store& store, const Config& config, const store::Release& release, const Plan& plan,
                          const std::vector<store::Target>& targets, store::Time now) {
  const std::string& last = plan.environments.back();
  const Environment* env = config.FindEnvironment(last);
  if (env == nullptr || env->gates.soak.count() <= 0) return false;
  std::optional<store::Time> healthy_at;
  for (const auto& t : targets) {
    if (t.env != last) continue;
    if (t.state != store::TargetState::kHealthy) return false;
    healthy_at = std::max(healthy_at.value_or(t.updated_at), t.updated_at);
  }
  if (!healthy_at) return false;
  GANTRY_ASSIGN_OR_RETURN(auto began, SoakBegan(store, release, last));
  return now < began.value_or(*healthy_at) + env->gates.soak;
}

// `newest`: no newer release of the app exists. Starting one supersedes what this one had left,
// its soak included; a release rolled back somewhere was given up on. Both have nothing left.
Result<WorkLeft> ReadWorkLeft(store::Store& store, const Config& config, const store::Release& release, bool newest,
                              store::Time now) {
  WorkLeft w;
  GANTRY_ASSIGN_OR_RETURN(w.targets, store.ListTargets(release.id));
  if (std::any_of(w.targets.begin(), w.targets.end(),
                  [](const store::Target& t) { return t.state == store::TargetState::kRolledBack; }))
    return w;
  w.unfinished = std::any_of(w.targets.begin(), w.targets.end(), [](const store::Target& t) { return Unfinished(t.state); });
  auto plan = DecodePlan(release);
  if (!plan.ok()) return w;
  w.unwritten = Unwritten(release.id, *plan, w.targets);
  if (newest && !w.any()) {
    GANTRY_ASSIGN_OR_RETURN(w.last_soak, LastSoakLeft(store, config, release, *plan, w.targets, now));
  }
  return w;
}

}  // namespace

Result<bool> HasWorkLeft(store::Store& store, const store::Release& release, const Config& config, Clock* clock) {
  GANTRY_ASSIGN_OR_RETURN(auto newest, store.ListReleases(release.app, 1));
  const bool is_newest = !newest.empty() && newest.front().id == release.id;
  GANTRY_ASSIGN_OR_RETURN(WorkLeft left,
                          ReadWorkLeft(store, config, release, is_newest, (clock ? *clock : SystemClock()).WallNow()));
  return left.any();
}

Result<std::unique_ptr<Deployment>> Deployment::Resume(store::Store& store, Config config, RenderFn render, ConnectFn connect,
                                                       DeployOptions options, ProgressFn progress) {
  GANTRY_RETURN_IF_ERROR(CheckOptions(options));
  GANTRY_ASSIGN_OR_RETURN(auto releases, store.ListReleases(options.app, 100));
  const store::Time now = (options.clock ? *options.clock : SystemClock()).WallNow();
  for (size_t r = 0; r < releases.size(); ++r) {
    const store::Release& rel = releases[r];
    GANTRY_ASSIGN_OR_RETURN(WorkLeft left, ReadWorkLeft(store, config, rel, r == 0, now));
    if (!left.any()) continue;
    std::vector<store::Target>& targets = left.targets;
    std::vector<store::Target>& unwritten = left.unwritten;
    GANTRY_ASSIGN_OR_RETURN(Plan plan, DecodePlan(rel));
    GANTRY_ASSIGN_OR_RETURN(project::Project project, config.ProjectNamed(options.project));
    GANTRY_RETURN_IF_ERROR(CheckAppProject(store, options.app, options.project).WithContext("resume"));
    GANTRY_RETURN_IF_ERROR(CheckClusterCredentials(project, config, plan.environments).WithContext("resume"));
    // The targets a start cut short never wrote (another server resuming it may write them first).
    for (auto& t : unwritten) {
      t.state = store::TargetState::kPending;
      t.message = "pending";
      auto written = store.UpsertTarget(t);
      if (!written.ok() && written.status().code() != Code::kAlreadyExists)
        return written.status().WithContext(fmt::format("resume release {}: write the target {}/{}", rel.id, t.env, t.cluster));
    }
    if (!unwritten.empty()) {
      GANTRY_ASSIGN_OR_RETURN(targets, store.ListTargets(rel.id));
    }
    auto impl = std::make_unique<Impl>(store, std::move(config), std::move(render), std::move(connect), options, std::move(progress));
    impl->project = std::move(project);
    impl->path_template = plan.path_template;
    std::unique_ptr<Deployment> d(new Deployment(std::move(impl)));
    d->state_.release_id = rel.id;
    d->state_.commit = rel.config_revision;
    d->state_.environments = plan.environments;
    // Targets in plan order; the first environment not healthy everywhere is where work resumes.
    d->state_.next_env = plan.environments.size();
    for (size_t i = 0; i < plan.environments.size(); ++i) {
      bool all_healthy = true;
      for (const auto& t : targets) {
        if (t.env != plan.environments[i]) continue;
        d->state_.targets.push_back(t);
        if (t.state != store::TargetState::kHealthy) all_healthy = false;
      }
      if (!all_healthy && d->state_.next_env == plan.environments.size()) d->state_.next_env = i;
    }
    // Nothing of the next environment begun: the one before may have been soaking. Its gate runs
    // again, so its soak goes on to the end recorded when it began (or begins, if the crash came
    // before that was recorded) instead of being skipped.
    if (size_t next = d->state_.next_env; next > 0 && next < plan.environments.size()) {
      const Environment* before = d->impl_->config.FindEnvironment(plan.environments[next - 1]);
      const bool begun = std::any_of(targets.begin(), targets.end(), [&](const store::Target& t) {
        return t.env == plan.environments[next] && t.state != store::TargetState::kPending;
      });
      if (before != nullptr && before->gates.soak.count() > 0 && !begun) {
        d->state_.next_env = next - 1;
        d->impl_->stage = Impl::Stage::kGate;
      }
    }
    // Every environment done but the last one's soak, which nothing follows: its gate runs again
    // too, so the deploy ends at that soak's recorded end, not at once.
    if (left.last_soak && d->state_.next_env == plan.environments.size()) {
      d->state_.next_env = plan.environments.size() - 1;
      d->impl_->stage = Impl::Stage::kGate;
    }
    for (size_t i = d->state_.next_env; i < plan.environments.size(); ++i) {
      const auto& e = plan.environments[i];
      if (d->impl_->config.FindEnvironment(e) == nullptr)
        return FailedPreconditionError("resume release {}: environment {} is no longer configured", rel.id, e);
      GANTRY_ASSIGN_OR_RETURN(d->impl_->rendered[e], d->impl_->RenderEnv(e, rel.config_revision, nullptr));
    }
    GANTRY_RETURN_IF_ERROR(store.Audit({.actor = options.started_by, .action = "resume",
                                        .object = fmt::format("app/{} release/{}", options.app, rel.id)})
                               .status());
    Say(d->impl_->progress, fmt::format("resuming release {} of {} at {}", rel.id, options.app,
                                        d->state_.next_env < plan.environments.size() ? plan.environments[d->state_.next_env] : "the end"));
    return d;
  }
  return NotFoundError("resume {}: no release of {} is unfinished", options.app, options.app);
}

namespace {

// Looks at the health of `targets` (one environment's, soaking) on their clusters; each found with
// an object Degraded or Missing is written failed. Whether any was.
bool SoakLook(const ApplyContext& ctx, const std::vector<store::Target*>& targets, const std::vector<value::Value>& objects,
              const Config& config) {
  bool failed = false;
  for (store::Target* t : targets) {
    const Cluster* c = config.FindCluster(t->cluster);
    if (c == nullptr) continue;
    const std::string where = t->env + "/" + t->cluster;
    auto bad = UnhealthyOn(ctx, *c, objects);
    if (!bad.ok()) {
      Say(ctx.progress, fmt::format("{}: soak: could not read the cluster, looking again later: {}", where, bad.status().message()));
      continue;
    }
    if (bad->empty()) continue;
    std::string why = fmt::format("unhealthy while soaking: {}", fmt::join(*bad, "; "));
    Say(ctx.progress, fmt::format("{}: {}", where, why));
    auto written = Write(ctx.store, *t, store::TargetState::kFailed, why);
    if (written.ok()) {
      *t = *written;
    } else {
      t->state = store::TargetState::kFailed;
      t->message = why + " (not recorded: " + written.status().message() + ")";
    }
    failed = true;
  }
  return failed;
}

}  // namespace

bool Deployment::Step() {
  Impl& m = *impl_;
  DeployState& s = state_;
  if (s.phase != Phase::kRunning) return false;
  if (terminate_.load()) {
    s.phase = Phase::kTerminated;
    s.message = fmt::format("interrupted; continue with: gantry deploy {} --resume", m.options.app);
    return false;
  }
  if (s.next_env >= s.environments.size()) {
    s.phase = Phase::kSucceeded;
    s.message = fmt::format("release {} is healthy in {}", s.release_id, fmt::join(s.environments, ", "));
    return false;
  }
  const std::string& env_name = s.environments[s.next_env];
  const Environment* env = m.config.FindEnvironment(env_name);
  if (env == nullptr) {
    s.phase = Phase::kFailed;
    s.message = fmt::format("environment {} is no longer configured", env_name);
    return false;
  }
  auto targets_of_env = [&] {
    std::vector<store::Target*> out;
    for (auto& t : s.targets)
      if (t.env == env_name) out.push_back(&t);
    return out;
  };
  auto context = [&] {
    ApplyContext ctx{m.store, m.connect, m.progress, terminate_, m.options.app, m.project, m.options.window_override,
                     env->name, m.options.default_namespace,
                     m.options.create_namespace, m.options.prune, env->gates.healthy, m.options.health_timeout,
                     m.options.cluster_parallelism, m.options.clock, m.options.started_by};
    ctx.image_check = m.config.image_check;
    ctx.render_for = RenderFor(m.rendered[env_name], m.render, m.revisions[env_name], m.paths[env_name],
                               m.options.default_namespace);
    return ctx;
  };
  switch (m.stage) {
    case Impl::Stage::kApprove: {
      if (env->gates.approval) {
        auto approved = m.store.IsApproved(s.release_id, env_name);
        if (!approved.ok()) {
          s.phase = Phase::kFailed;
          s.message = approved.status().message();
          return false;
        }
        if (!*approved) {
          s.phase = Phase::kWaitingApproval;
          s.message = fmt::format("{} needs approval: run `gantry approve {} --env {} --release {}`, then `gantry deploy {} --resume`",
                                  env_name, m.options.app, env_name, s.release_id, m.options.app);
          Say(m.progress, fmt::format("{}: waiting for approval", env_name));
          return false;
        }
        Say(m.progress, fmt::format("{}: approved", env_name));
      }
      m.stage = Impl::Stage::kApply;
      return true;
    }
    case Impl::Stage::kApply: {
      ApplyContext ctx = context();
      std::vector<std::pair<const Cluster*, store::Target>> work;
      for (store::Target* t : targets_of_env()) {
        if (t->state == store::TargetState::kHealthy) continue;  // done before an interruption
        const Cluster* c = m.config.FindCluster(t->cluster);
        if (c == nullptr) {
          t->state = store::TargetState::kFailed;
          t->message = "cluster is no longer configured";
          continue;
        }
        work.emplace_back(c, *t);
      }
      auto done = ApplyAll(ctx, work, m.rendered[env_name].objects);
      for (auto& t : done)
        for (store::Target* cur : targets_of_env())
          if (cur->cluster == t.cluster) *cur = t;
      m.stage = Impl::Stage::kGate;
      return true;
    }
    case Impl::Stage::kGate: {
      if (terminate_.load()) return Step();
      std::vector<std::string> failed;
      for (store::Target* t : targets_of_env())
        if (t->state != store::TargetState::kHealthy) failed.push_back(fmt::format("{}: {}", t->cluster, t->message));
      if (!failed.empty()) {
        s.phase = Phase::kFailed;
        s.message = fmt::format("{} failed, stopping before the next environment:\n  {}", env_name, fmt::join(failed, "\n  "));
        if (m.options.rollback_on_failure) {
          RollbackOptions ro{.app = m.options.app, .env = env_name, .path_template = m.path_template,
                             .started_by = m.options.started_by, .project = m.options.project,
                             .window_override = m.options.window_override, .default_namespace = m.options.default_namespace,
                             .prune = m.options.prune, .health_timeout = m.options.health_timeout,
                             .cluster_parallelism = m.options.cluster_parallelism, .clock = m.options.clock};
          auto rb = Rollback(m.store, m.config, m.render, m.connect, ro, m.progress);
          if (!rb.ok()) {
            s.message += fmt::format("\nrollback of {} failed: {}", env_name, rb.status().message());
          } else {
            s.message += fmt::format("\n{}", rb->message);
            auto now = m.store.ListTargets(s.release_id);
            if (now.ok())
              for (auto& t : *now)
                for (store::Target* cur : targets_of_env())
                  if (cur->cluster == t.cluster) *cur = t;
          }
        }
        Say(m.progress, fmt::format("{}: failed", env_name));
        return false;
      }
      Say(m.progress, fmt::format("{}: healthy", env_name));
      if (env->gates.soak.count() > 0) {
        // The soak's end is recorded once, so a resumed deploy continues the same soak.
        if (auto release = m.store.GetRelease(s.release_id); release.ok()) {
          auto began = SoakBegan(m.store, *release, env_name);
          if (began.ok() && *began) m.soak_until = **began + env->gates.soak;
        }
        if (!m.soak_until) {
          auto id = m.store.Audit({.actor = m.options.started_by, .action = "soak",
                                   .object = SoakObject(m.options.app, env_name, s.release_id),
                                   .details = fmt::format("{} ms", env->gates.soak.count())});
          if (!id.ok()) {
            s.phase = Phase::kFailed;
            s.message = id.status().message();
            return false;
          }
          m.soak_until = m.clock().WallNow() + env->gates.soak;
        }
        Say(m.progress, fmt::format("{}: soaking until {}", env_name, Rfc3339(*m.soak_until)));
        m.next_soak_look = m.clock().Now() + kSoakLookEvery;
        m.stage = Impl::Stage::kSoak;
        return true;
      }
      ++s.next_env;
      m.stage = Impl::Stage::kApprove;
      return true;
    }
    case Impl::Stage::kSoak: {
      auto now = m.clock().WallNow();
      const bool ended = now >= *m.soak_until;
      // An environment gated on health must stay healthy while it soaks: it is looked at every
      // kSoakLookEvery and as the soak ends. An object Degraded or Missing fails its target, and
      // the gate then stops the release there (rolling the environment back when asked). A
      // cluster that cannot be read is said and looked at again; it does not fail the soak.
      if (env->gates.healthy && (ended || m.clock().Now() >= m.next_soak_look)) {
        m.next_soak_look = m.clock().Now() + kSoakLookEvery;
        if (SoakLook(context(), targets_of_env(), m.rendered[env_name].objects, m.config)) {
          m.soak_until.reset();
          m.stage = Impl::Stage::kGate;
          return true;
        }
      }
      if (!ended) {
        m.clock().SleepFor(std::min<std::chrono::nanoseconds>(1s, *m.soak_until - now));
        return true;
      }
      Say(m.progress, fmt::format("{}: soak done", env_name));
      m.soak_until.reset();
      ++s.next_env;
      m.stage = Impl::Stage::kApprove;
      return true;
    }
  }
  return false;
}

Result<RollbackResult> Rollback(store::Store& store, const Config& config, const RenderFn& render, const ConnectFn& connect,
                                const RollbackOptions& options, const ProgressFn& progress) {
  const Environment* env = config.FindEnvironment(options.env);
  if (env == nullptr) return InvalidArgumentError("rollback {}: unknown environment {:?}", options.app, options.env);
  GANTRY_RETURN_IF_ERROR(CheckAppProject(store, options.app, options.project).WithContext("rollback"));
  {
    GANTRY_ASSIGN_OR_RETURN(project::Project project, config.ProjectNamed(options.project));
    GANTRY_RETURN_IF_ERROR(CheckClusterCredentials(project, config, {options.env}).WithContext("rollback"));
  }
  GANTRY_ASSIGN_OR_RETURN(auto releases, store.ListReleases(options.app, 500));
  // Releases newest first, with their targets in env.
  std::vector<std::pair<store::Release, std::vector<store::Target>>> here;
  for (const auto& r : releases) {
    GANTRY_ASSIGN_OR_RETURN(auto targets, store.ListTargets(r.id));
    std::vector<store::Target> in_env;
    for (auto& t : targets)
      if (t.env == options.env) in_env.push_back(std::move(t));
    if (!in_env.empty()) here.emplace_back(r, std::move(in_env));
  }
  auto touched = [](const std::vector<store::Target>& ts) {
    return std::any_of(ts.begin(), ts.end(), [](const store::Target& t) {
      return t.state == store::TargetState::kHealthy || t.state == store::TargetState::kFailed ||
             t.state == store::TargetState::kApplying;
    });
  };
  auto all_healthy = [](const std::vector<store::Target>& ts) {
    return std::all_of(ts.begin(), ts.end(), [](const store::Target& t) { return t.state == store::TargetState::kHealthy; });
  };
  // The current release there: the newest one that was applied there and not rolled back.
  size_t cur = here.size();
  for (size_t i = 0; i < here.size(); ++i)
    if (touched(here[i].second)) {
      cur = i;
      break;
    }
  if (cur == here.size()) return NotFoundError("rollback {}: nothing was deployed to {}", options.app, options.env);
  size_t to = here.size();
  if (options.to_release != 0) {
    for (size_t i = cur + 1; i < here.size(); ++i)
      if (here[i].first.id == options.to_release) to = i;
    if (to == here.size()) {
      for (size_t i = 0; i <= cur; ++i)
        if (here[i].first.id == options.to_release)
          return InvalidArgumentError("rollback {} in {}: release {} is not older than the current release {}", options.app,
                                      options.env, options.to_release, here[cur].first.id);
      GANTRY_ASSIGN_OR_RETURN(auto r, store.GetRelease(options.to_release));
      if (r.app != options.app) return InvalidArgumentError("release {} is of {}, not {}", r.id, r.app, options.app);
      return NotFoundError("rollback {}: release {} never ran in {}", options.app, options.to_release, options.env);
    }
  } else {
    for (size_t i = cur + 1; i < here.size() && to == here.size(); ++i)
      if (all_healthy(here[i].second)) to = i;
    if (to == here.size())
      return NotFoundError("rollback {}: no earlier release was healthy in {} (current: release {})", options.app, options.env,
                           here[cur].first.id);
  }
  const store::Release& target_release = here[to].first;
  RollbackResult result{.from_release = here[cur].first.id, .to_release = target_release.id};
  if (options.planned) options.planned(result.from_release, result.to_release);
  std::string tmpl = options.path_template;
  if (auto plan = DecodePlan(target_release); plan.ok()) tmpl = plan->path_template;
  GANTRY_ASSIGN_OR_RETURN(std::string path, ExpandPathTemplate(tmpl, options.app, options.env));
  Say(progress, fmt::format("{}: rolling back from release {} to release {} ({})", options.env, result.from_release,
                            result.to_release, target_release.config_revision.substr(0, 12)));
  GANTRY_ASSIGN_OR_RETURN(project::Project project, config.ProjectNamed(options.project));
  auto rendered = render(target_release.config_revision, path,
                         RenderTarget{options.default_namespace, std::nullopt,
                                      CommitCheck(project, options.env, options.clock)});
  if (!rendered.ok())
    return rendered.status().WithContext(fmt::format("rollback {} in {}: render release {}", options.app, options.env, target_release.id));

  std::atomic<bool> never{false};
  ApplyContext ctx{store, connect, progress, options.cancel != nullptr ? *options.cancel : never, options.app, project, options.window_override, options.env,
                   options.default_namespace, true,
                   options.prune, env->gates.healthy, options.health_timeout, options.cluster_parallelism,
                   options.clock, options.started_by};
  ctx.image_check = config.image_check;
  std::vector<std::pair<const Cluster*, store::Target>> work;
  for (const Cluster* c : config.ClustersOf(*env)) {
    store::Target t{.release_id = target_release.id, .env = options.env, .cluster = c->name};
    for (const auto& existing : here[to].second)
      if (existing.cluster == c->name) t = existing;
    if (store::IsFinal(t.state)) continue;
    work.emplace_back(c, t);
  }
  ctx.render_for = RenderFor(*rendered, render, rendered->commit.empty() ? target_release.config_revision : rendered->commit,
                             path, options.default_namespace);
  result.targets = ApplyAll(ctx, work, rendered->objects);
  result.ok = std::all_of(result.targets.begin(), result.targets.end(),
                          [](const store::Target& t) { return t.state == store::TargetState::kHealthy; });
  if (!result.ok) {
    result.message = fmt::format("rollback of {} to release {} failed; newer releases are left as they are", options.env, target_release.id);
    return result;
  }
  for (size_t i = 0; i < to; ++i) {
    for (const auto& t : here[i].second) {
      if (store::IsFinal(t.state)) continue;
      GANTRY_RETURN_IF_ERROR(
          Write(store, t, store::TargetState::kRolledBack, fmt::format("rolled back to release {}", target_release.id)).status());
    }
  }
  GANTRY_RETURN_IF_ERROR(store.Audit({.actor = options.started_by, .action = "rollback",
                                      .object = fmt::format("app/{} env/{}", options.app, options.env),
                                      .details = fmt::format("release {} → release {}", result.from_release, result.to_release)})
                             .status());
  result.message = fmt::format("{} rolled back to release {} (from release {})", options.env, result.to_release, result.from_release);
  Say(progress, result.message);
  return result;
}

}  // namespace gantry::deliver
