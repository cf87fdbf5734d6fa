// Prepare: validation, scope, namespace defaulting and tracking of the desired objects; and the
// helpers the other files of the module share.

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "sync/internal/common.h"
#include "sync/sync.h"
#include "value/position.h"

namespace gantry::sync {
namespace internal {

using value::Value;

std::string GroupOf(std::string_view api_version) { return kube::SplitApiVersion(api_version).first; }

bool SyncOptionSet(const Value& object, std::string_view option) {
  const Value* ann = object.Find({"metadata", "annotations"});
  if (ann == nullptr || !ann->IsMap()) return false;
  for (std::string_view key : {"gantry.dev/sync-options", "argocd.argoproj.io/sync-options"}) {
    const Value* v = ann->Get(key);
    if (v == nullptr || !v->IsString()) continue;
    std::string_view s = v->AsString();
    while (!s.empty()) {
      size_t comma = s.find(',');
      std::string_view part = s.substr(0, comma);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
      if (part == option) return true;
      if (comma == std::string_view::npos) break;
      s.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool PruneDisabled(const Value& live) {
  if (value::StringAt(&live, {"metadata", "annotations", "gantry.dev/prune"}) == "disabled") return true;
  return SyncOptionSet(live, "Prune=false");
}

bool Enabled(Tristate object, Tristate application, bool fallback) {
  if (object != Tristate::kUnset) return object == Tristate::kTrue;
  if (application != Tristate::kUnset) return application == Tristate::kTrue;
  return fallback;
}

PruneMode PruneModeOf(const Value& live, const Options& options) {
  if (PruneDisabled(live)) return PruneMode::kDisabled;
  if (SyncOptionSet(live, "Prune=confirm")) return PruneMode::kConfirm;
  if (SyncOptionSet(live, "Prune=true")) return PruneMode::kPrune;
  return options.object_defaults.prune == PruneMode::kUnset ? PruneMode::kPrune : options.object_defaults.prune;
}

void ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(1, parallelism)));
  if (threads == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
    });
  }
  for (auto& t : pool) t.join();
}

}  // namespace internal

using internal::GroupOf;
using value::Value;

std::string ObjectKey(const kube::ObjectRef& r) {
  return fmt::format("{}/{}/{}/{}", GroupOf(r.api_version), r.kind, r.namespace_, r.name);
}

std::string TrackingId(std::string_view app, const kube::ObjectRef& r) {
  return fmt::format("{}:{}/{}:{}/{}", app, GroupOf(r.api_version), r.kind, r.namespace_, r.name);
}

Result<Prepared> Prepare(kube::Client& client, std::vector<Value> desired, const Options& options) {
  if (options.app.empty()) return InvalidArgumentError("sync: an application name is required");
  Prepared out;
  out.app = options.app;
  std::set<std::string> seen;
  // Kinds defined by CRDs in this sync: their scope is known before the server serves them.
  std::map<std::string, bool> crd_scope;  // "group/Kind" → namespaced
  for (const Value& obj : desired) {
    if (value::StringAt(&obj, {"kind"}) != "CustomResourceDefinition") continue;
    crd_scope[value::StringAt(&obj, {"spec", "group"}) + "/" + value::StringAt(&obj, {"spec", "names", "kind"})] =
        value::StringAt(&obj, {"spec", "scope"}) != "Cluster";
  }
  for (Value& obj : desired) {
    Task t;
    t.source = value::PositionOf(obj);
    t.ref = kube::RefOf(obj);
    if (t.ref.name.empty()) t.generate_name = value::StringAt(&obj, {"metadata", "generateName"});
    std::string at = t.source.empty() ? t.ref.ToString() : t.source;
    if (t.ref.api_version.empty() || t.ref.kind.empty() || (t.ref.name.empty() && t.generate_name.empty())) {
      return InvalidArgumentError("{}: object needs apiVersion, kind and metadata.name", at);
    }
    if (t.ref.api_version.find('/') != std::string::npos &&
        (t.ref.api_version.front() == '/' || t.ref.api_version.back() == '/' ||
         std::count(t.ref.api_version.begin(), t.ref.api_version.end(), '/') > 1)) {
      return InvalidArgumentError("{}: malformed apiVersion {:?}", at, t.ref.api_version);
    }
    GANTRY_ASSIGN_OR_RETURN(t.sync_options, ReadSyncOptions(obj, at));
    bool namespaced;
    auto info = client.Resolve(t.ref.api_version, t.ref.kind);
    if (info.ok()) {
      namespaced = info->namespaced;
    } else if (auto it = crd_scope.find(GroupOf(t.ref.api_version) + "/" + t.ref.kind);
               info.status().code() == Code::kNotFound && it != crd_scope.end()) {
      namespaced = it->second;
    } else if (info.status().code() == Code::kNotFound &&
               internal::Enabled(t.sync_options.skip_dry_run_on_missing, options.object_defaults.skip_dry_run_on_missing)) {
      // Its CRD comes from elsewhere (another application, an operator): unknown kinds count as
      // namespaced, as in Argo CD (IsNamespacedOrUnknown); the apply fails if it is still not served.
      namespaced = true;
      t.kind_missing = true;
    } else if (info.status().code() == Code::kNotFound) {
      return InvalidArgumentError("{}: {} {} is not served by the cluster (unknown apiVersion or kind, "
                                  "and no CRD in this sync defines it; if another application or operator "
                                  "installs its CRD, annotate the object argocd.argoproj.io/sync-options: "
                                  "SkipDryRunOnMissingResource=true)", at, t.ref.api_version, t.ref.kind);
    } else {
      return info.status().WithContext(at);
    }
    t.namespaced = namespaced;
    if (namespaced && t.ref.namespace_.empty()) {
      t.ref.namespace_ = options.default_namespace;
      obj.MutableGet("metadata")->Set("namespace", t.ref.namespace_);
    } else if (!namespaced && !t.ref.namespace_.empty()) {
      return InvalidArgumentError("{}: {} is cluster-scoped but has metadata.namespace {:?}", at, t.ref.kind,
                                  t.ref.namespace_);
    }
    // A generateName hook is known by its generateName until the server names it.
    kube::ObjectRef identity = t.ref;
    if (!t.generate_name.empty()) identity.name = t.generate_name + "*";
    if (!seen.insert(ObjectKey(identity)).second) {
      return InvalidArgumentError("{}: {} is rendered twice", at, identity.ToString());
    }
    if (obj.Find({"metadata", "labels", kInventoryLabel}) != nullptr) {
      // An inventory lists what an application may prune: an application must not write one.
      return InvalidArgumentError("{}: {} carries the label {}, which only Gantry's own inventories may carry", at,
                                  t.ref.ToString(), kInventoryLabel);
    }
    GANTRY_RETURN_IF_ERROR(ReadAnnotations(obj, t));
    if (!t.generate_name.empty() && t.hook == HookPhase::kNone) {
      return InvalidArgumentError(
          "{}: {} has metadata.generateName {:?} and no metadata.name: generateName is only for hooks (annotation "
          "argocd.argoproj.io/hook, helm.sh/hook or gantry.dev/hook), which every sync creates anew; give the "
          "object a metadata.name", at, t.ref.kind, t.generate_name);
    }
    // Tracking: label and annotation naming the application (hooks too, so they can be found).
    Value* meta = obj.MutableGet("metadata");
    Value labels = meta->Get("labels") && meta->Get("labels")->IsMap() ? *meta->Get("labels") : Value::Map();
    labels.Set(kAppLabel, options.app);
    meta->Set("labels", labels);
    Value ann = meta->Get("annotations") && meta->Get("annotations")->IsMap() ? *meta->Get("annotations")
                                                                               : Value::Map();
    ann.Set(kTrackingAnnotation, TrackingId(options.app, identity));
    meta->Set("annotations", ann);
    t.object = std::move(obj);
    out.tasks.push_back(std::move(t));
  }
  if (options.project != nullptr) {
    std::vector<project::Object> objects;
    objects.reserve(out.tasks.size());
    for (const Task& t : out.tasks) objects.push_back({t.ref, t.namespaced, t.source});
    // The destination itself (the cluster, and the namespace objects default to), then each object.
    GANTRY_RETURN_IF_ERROR(project::CheckDestination(*options.project, options.cluster_server, options.cluster_name,
                                                     options.default_namespace));
    GANTRY_RETURN_IF_ERROR(
        project::CheckObjects(*options.project, options.cluster_server, options.cluster_name, objects));
  }
  if (options.check_images) {
    std::vector<Value*> objects;
    objects.reserve(out.tasks.size());
    for (Task& t : out.tasks) objects.push_back(&t.object);
    GANTRY_RETURN_IF_ERROR(options.check_images(objects));
  }
  out.plan = Plan(out.tasks);
  return out;
}

}  // namespace gantry::sync
