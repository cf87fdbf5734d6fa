#include "server/app_resources.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "api/status.h"
#include "diff/diff.h"
#include "git/git.h"
#include "health/health.h"
#include "project/project.h"
#include "sync/sync.h"

namespace gantry::server {
namespace {

using value::Value;

// Kinds whose objects own the children the tree shows (Deployment → ReplicaSet → Pod, ...).
constexpr std::pair<const char*, const char*> kChildKinds[] = {{"apps/v1", "ReplicaSet"}, {"v1", "Pod"}};

Value HealthJson(const health::Health& h) {
  Value v = Value::Map();
  v.Set("status", health::Name(h.status));
  v.Set("message", h.message);
  return v;
}

Value NodeJson(const kube::ObjectRef& ref, std::string_view uid, const Value& owners, std::string_view sync,
               const health::Health& h) {
  auto [group, version] = kube::SplitApiVersion(ref.api_version);
  Value v = Value::Map();
  v.Set("group", group);
  v.Set("version", version);
  v.Set("kind", ref.kind);
  v.Set("namespace", ref.namespace_);
  v.Set("name", ref.name);
  v.Set("uid", uid);
  v.Set("owners", owners);
  v.Set("sync", sync);
  v.Set("health", HealthJson(h));
  return v;
}

Value OwnerUids(const Value& object) {
  Value owners = Value::Seq();
  if (const Value* refs = object.Find({"metadata", "ownerReferences"})) {
    for (const auto& r : refs->items()) {
      std::string uid = value::StringAt(&r, {"uid"});
      if (!uid.empty()) owners.Append(uid);
    }
  }
  return owners;
}

}  // namespace

Result<PushDesired> DesiredOf(kube::Client& client, const PushTarget& t) {
  GANTRY_CHECK(t.config != nullptr && t.cluster != nullptr);
  if (!t.render) return UnavailableError("this server has no config repository to render {} from (--deploy-repo)", t.app);
  PushDesired c;
  GANTRY_ASSIGN_OR_RETURN(c.project, t.config->ProjectNamed(t.project));
  GANTRY_ASSIGN_OR_RETURN(std::string path, deliver::ExpandPathTemplate(t.path_template, t.app, t.environment));
  deliver::RenderTarget target{.namespace_ = t.default_namespace};
  auto rendered = t.render(t.config_revision, path, target);
  if (rendered.ok() && rendered->renderer == render::Renderer::kHelm) {
    GANTRY_ASSIGN_OR_RETURN(target.capabilities, kube::ReadCapabilities(client));
    rendered = t.render(t.config_revision, path, target);
  }
  if (!rendered.ok()) {
    return rendered.status().WithContext(fmt::format("render {} for {} at {}", path, t.environment, t.config_revision));
  }
  c.objects = std::move(rendered->objects);
  c.options.app = deliver::TrackingKey(t.project, t.app);
  c.options.cluster_name = t.cluster->name;
  if (auto rest = kube::LoadConfig({.paths = {t.cluster->kubeconfig}, .context = t.cluster->context}); rest.ok()) {
    c.options.cluster_server = rest->server;
  }
  c.options.default_namespace = t.default_namespace;
  return c;
}

Result<Value> PushResources(kube::Client& client, const PushTarget& target) {
  GANTRY_ASSIGN_OR_RETURN(PushDesired c, DesiredOf(client, target));
  c.options.project = &c.project;
  GANTRY_ASSIGN_OR_RETURN(sync::Prepared prepared, sync::Prepare(client, std::move(c.objects), c.options));
  GANTRY_ASSIGN_OR_RETURN(sync::Live live, sync::ReadLive(client, prepared, c.options));
  GANTRY_ASSIGN_OR_RETURN(sync::Comparison comparison, sync::Compare(prepared, live, c.options));
  Value items = Value::Seq();
  std::set<std::string> namespaces;
  std::set<std::string> parents;  // uids whose children are looked for
  for (const auto& e : comparison.entries) {
    const std::string key = sync::ObjectKey(e.ref);
    const Value* obj = nullptr;
    if (auto it = live.objects.find(key); it != live.objects.end()) obj = &it->second;
    if (auto it = live.extra.find(key); it != live.extra.end()) obj = &it->second;
    const std::string uid = obj == nullptr ? "" : value::StringAt(obj, {"metadata", "uid"});
    if (!uid.empty()) parents.insert(uid);
    if (!e.ref.namespace_.empty()) namespaces.insert(e.ref.namespace_);
    items.Append(NodeJson(e.ref, uid, Value::Seq(), diff::Name(e.status), e.health));
  }
  // Owned children, level by level (ReplicaSets, then their Pods), in the app's namespaces.
  std::vector<Value> candidates;
  for (const auto& ns : namespaces) {
    for (const auto& [api_version, kind] : kChildKinds) {
      auto list = client.List(api_version, kind, ns);
      if (!list.ok()) {
        if (list.status().code() == Code::kNotFound || list.status().code() == Code::kPermissionDenied) continue;
        return list.status().WithContext(fmt::format("list {} in {}", kind, ns));
      }
      for (auto& item : list->items) candidates.push_back(std::move(item));
    }
  }
  bool added = true;
  std::set<std::string> shown;
  while (added) {
    added = false;
    for (const auto& obj : candidates) {
      const std::string uid = value::StringAt(&obj, {"metadata", "uid"});
      if (uid.empty() || shown.contains(uid) || parents.contains(uid)) continue;
      Value owners = OwnerUids(obj);
      bool owned = false;
      for (const auto& o : owners.items()) owned = owned || parents.contains(std::string(o.AsString()));
      if (!owned) continue;
      shown.insert(uid);
      parents.insert(uid);
      added = true;
      items.Append(NodeJson(kube::RefOf(obj), uid, owners, "", health::Assess(&obj)));
    }
  }
  Value doc = Value::Map();
  doc.Set("items", items);
  return doc;
}

namespace {

// Each object of `entries` that is not in sync, applied as a server-side dry run: its entry's text
// becomes the diff of the live object against what the server would store, an entry the server
// would store as it is becomes Synced, and a refusal is kept in `refused`. Returns "" or, when the
// credentials may not write (403 on the first dry run), why the entries stay compared with the
// live objects.
std::string DryRun(kube::Client& client, const std::vector<Value>& desired, const sync::Options& options,
                   std::vector<sync::DiffEntry>& entries, std::map<std::string, std::string>& refused) {
  auto prepared = sync::Prepare(client, desired, options);
  if (!prepared.ok()) return std::string(prepared.status().message());
  std::map<std::string, const sync::Task*> tasks;
  for (const sync::Task& t : prepared->tasks) tasks[sync::ObjectKey(t.ref)] = &t;
  bool wrote = false;  // a dry run went through: later refusals are the objects', not the credentials'
  std::set<std::string> created_namespaces;  // Namespaces the sync creates: their objects cannot be dry-run yet
  for (const auto& e : entries) {
    if (e.ref.kind == "Namespace" && e.status == diff::SyncStatus::kMissing) created_namespaces.insert(e.ref.name);
  }
  if (options.create_namespace) {  // CreateNamespace=true: the sync creates a missing destination namespace
    auto ns = client.Get({"v1", "Namespace", "", options.default_namespace});
    if (!ns.ok() && ns.status().code() == Code::kNotFound) created_namespaces.insert(options.default_namespace);
  }
  for (auto& e : entries) {
    const bool differs = e.status == diff::SyncStatus::kMissing || e.status == diff::SyncStatus::kOutOfSync;
    if (e.hook != sync::HookPhase::kNone || !differs) continue;
    auto task = tasks.find(sync::ObjectKey(e.ref));
    if (task == tasks.end() || task->second->kind_missing || created_namespaces.contains(e.ref.namespace_)) continue;
    auto dry = client.Apply(task->second->object, {.force = options.force, .dry_run = true});
    if (!dry.ok() && dry.status().code() == Code::kPermissionDenied && !wrote) {
      return fmt::format("a server-side dry run of {} was refused ({}), so objects are compared with the live ones",
                         e.ref.ToString(), dry.status().message());
    }
    if (!dry.ok()) {
      refused[sync::ObjectKey(e.ref)] = std::string(dry.status().message());
      continue;
    }
    wrote = true;
    if (e.status == diff::SyncStatus::kMissing) continue;  // shown as rendered: the server accepts it
    auto live = client.Get(e.ref);
    if (!live.ok()) continue;
    auto compared = diff::Compare(&*dry, &*live, options.diff);
    if (compared.ok() && compared->status == diff::SyncStatus::kSynced) {
      e.status = diff::SyncStatus::kSynced;
      e.text.clear();
    } else if (auto text = diff::RenderDiff(&*dry, &*live, {.compare = options.diff}); text.ok()) {
      e.text = *std::move(text);
    }
  }
  return "";
}

}  // namespace

Result<Value> DiffAgainst(kube::Client& client, const std::vector<Value>& desired, const sync::Options& options,
                          bool dry_run) {
  GANTRY_ASSIGN_OR_RETURN(auto entries, sync::Diff(client, desired, options, /*color=*/false));
  std::map<std::string, std::string> refused;  // ObjectKey → the server's refusal in a dry run
  const std::string not_dry = dry_run ? DryRun(client, desired, options, entries, refused) : "";
  Value items = Value::Seq();
  for (const auto& e : entries) {
    auto [group, version] = kube::SplitApiVersion(e.ref.api_version);
    Value v = Value::Map();
    v.Set("group", group);
    v.Set("version", version);
    v.Set("kind", e.ref.kind);
    v.Set("namespace", e.ref.namespace_);
    v.Set("name", e.ref.name);
    v.Set("sync", diff::Name(e.status));
    v.Set("health", HealthJson(e.health));
    v.Set("diff", e.text);
    if (auto it = refused.find(sync::ObjectKey(e.ref)); it != refused.end()) v.Set("refused", it->second);
    auto live = client.Get(e.ref);
    if (live.ok()) {
      Value shown = diff::Redact(*live);
      if (Value* meta = shown.MutableGet("metadata")) meta->Erase("managedFields");
      v.Set("live", shown);
    } else if (live.status().code() == Code::kNotFound) {
      v.Set("live", Value());
    } else {
      return live.status().WithContext("read " + e.ref.ToString());
    }
    items.Append(v);
  }
  Value doc = Value::Map();
  doc.Set("items", items);
  if (dry_run) {
    doc.Set("compared", not_dry.empty() ? "dry run" : "live");
    if (!not_dry.empty()) doc.Set("compared_note", not_dry);
  }
  return doc;
}

Result<Value> PushDiff(kube::Client& client, const PushTarget& target) {
  GANTRY_ASSIGN_OR_RETURN(PushDesired c, DesiredOf(client, target));
  c.options.project = &c.project;
  return DiffAgainst(client, c.objects, c.options, /*dry_run=*/false);
}

Result<Value> PullDiff(kube::Client& client, const PullTarget& t) {
  GANTRY_CHECK(t.source != nullptr);
  GANTRY_ASSIGN_OR_RETURN(api::Application app, api::ParseApplication(t.application));
  const std::string where = fmt::format("Application {}/{} on cluster {}", app.namespace_, app.name, t.cluster_name);
  if (std::find(t.repos.begin(), t.repos.end(), app.source.repo_url) == t.repos.end()) {
    return FailedPreconditionError("{}: its source {} is not a config repository of this server (--config-repo), so "
                                   "the server does not fetch it to render the diff",
                                   where, git::ScrubUrl(app.source.repo_url));
  }
  const std::string revision = api::ParseStatus(t.application.Get("status")).sync_revision;
  if (revision.empty()) {
    return FailedPreconditionError("{}: its agent has not compared it with the cluster yet (no status.sync.revision)", where);
  }
  // The mirror is fetched at most every 30 s; the revision is the one the agent compared, which an
  // older mirror may lack until then.
  GANTRY_RETURN_IF_ERROR(
      t.source->Resolve(app, std::chrono::steady_clock::now() - std::chrono::seconds(30)).status().WithContext(where));
  const auto allow = [&t](std::string_view url) -> Status {
    if (std::find(t.repos.begin(), t.repos.end(), url) != t.repos.end()) return OkStatus();
    return PermissionDeniedError("{} is not a config repository of this server", git::ScrubUrl(url));
  };
  auto rendered = t.source->Render(app, revision, allow);
  if (!rendered.ok()) return rendered.status().WithContext(fmt::format("{}: render at {}", where, revision));
  GANTRY_ASSIGN_OR_RETURN(sync::Options options,
                          agent::SyncOptionsFor(app, {.home_namespace = app.namespace_,
                                                      .cluster_server = t.cluster_server,
                                                      .cluster_name = t.cluster_name},
                                                nullptr, nullptr));
  const project::Project project = project::DefaultProject();
  options.project = &project;
  return DiffAgainst(client, rendered->objects, options, /*dry_run=*/false);
}

Value PullResources(const Value& application) {
  api::ApplicationStatus st = api::ParseStatus(application.Get("status"));
  Value items = Value::Seq();
  for (const auto& r : st.resources) {
    kube::ObjectRef ref{.api_version = r.group.empty() ? r.version : r.group + "/" + r.version,
                       .kind = r.kind, .namespace_ = r.namespace_, .name = r.name};
    items.Append(NodeJson(ref, "", Value::Seq(), r.status, {r.health, r.health_message}));
  }
  Value doc = Value::Map();
  doc.Set("items", items);
  return doc;
}

Result<Value> EventsOf(kube::Client& client, const Value& nodes) {
  std::set<std::tuple<std::string, std::string, std::string>> wanted;  // kind, namespace, name
  std::set<std::string> namespaces;
  for (const auto& n : nodes.items()) {
    std::string ns = value::StringAt(&n, {"namespace"});
    wanted.insert({value::StringAt(&n, {"kind"}), ns, value::StringAt(&n, {"name"})});
    if (!ns.empty()) namespaces.insert(ns);
  }
  std::vector<Value> events;
  for (const auto& ns : namespaces) {
    GANTRY_ASSIGN_OR_RETURN(kube::ObjectList list, client.List("v1", "Event", ns));
    for (auto& e : list.items) {
      const Value* io = e.Get("involvedObject");
      std::tuple<std::string, std::string, std::string> key{value::StringAt(io, {"kind"}), value::StringAt(io, {"namespace"}),
                                                            value::StringAt(io, {"name"})};
      if (wanted.contains(key)) events.push_back(std::move(e));
    }
  }
  auto last = [](const Value& e) {
    std::string t = value::StringAt(&e, {"lastTimestamp"});
    return t.empty() ? value::StringAt(&e, {"eventTime"}) : t;
  };
  std::stable_sort(events.begin(), events.end(), [&](const Value& a, const Value& b) { return last(a) > last(b); });
  Value items = Value::Seq();
  for (const auto& e : events) {
    Value v = Value::Map();
    v.Set("type", value::StringAt(&e, {"type"}));
    v.Set("reason", value::StringAt(&e, {"reason"}));
    v.Set("message", value::StringAt(&e, {"message"}));
    v.Set("count", value::IntAt(&e, {"count"}));
    std::string first = value::StringAt(&e, {"firstTimestamp"});
    std::string at = last(e);
    v.Set("first_time", first.empty() ? Value() : Value(first));
    v.Set("last_time", at.empty() ? Value() : Value(at));
    Value obj = Value::Map();
    const Value* io = e.Get("involvedObject");
    obj.Set("kind", value::StringAt(io, {"kind"}));
    obj.Set("namespace", value::StringAt(io, {"namespace"}));
    obj.Set("name", value::StringAt(io, {"name"}));
    v.Set("object", obj);
    items.Append(v);
  }
  Value doc = Value::Map();
  doc.Set("items", items);
  return doc;
}

}  // namespace gantry::server
