// ReadLive: what the cluster holds of one application, from the caches when they have it; and
// the inventory ConfigMap's format.

#include <algorithm>
#include <set>
#include <tuple>

#include "base/log.h"
#include "sync/internal/common.h"
#include "sync/sync.h"

namespace gantry::sync {
namespace internal {

using value::Value;

kube::ObjectRef InventoryRef(const Options& options) {
  // "NAMESPACE_NAME" (an Application outside the agent's own namespace) cannot be part of a
  // ConfigMap's name; namespaces have no dots, so "gantry-inventory.NAMESPACE.NAME" is unambiguous.
  std::string name = "gantry-inventory-" + options.app;
  if (size_t u = options.app.find('_'); u != std::string::npos) {
    name = "gantry-inventory." + options.app.substr(0, u) + "." + options.app.substr(u + 1);
  }
  return {"v1", "ConfigMap", options.inventory_namespace.empty() ? options.default_namespace : options.inventory_namespace,
          std::move(name)};
}

Result<std::vector<kube::ObjectRef>> ParseInventory(std::string_view text, const kube::ObjectRef& where) {
  std::vector<kube::ObjectRef> out;
  if (text.empty()) return out;
  auto list = value::ParseJson(text, "inventory");
  if (!list.ok() || !list->IsSeq()) {
    // An unreadable inventory must not make prune guess: fail loudly.
    return DataLossError("inventory {} is corrupt; delete it to start over (nothing will be pruned "
                         "until the next sync records a new one)", where.ToString());
  }
  for (const Value& e : list->items()) {
    if (!e.IsSeq() || e.size() != 4) continue;
    out.push_back({std::string(e.At(0)->AsString()), std::string(e.At(1)->AsString()),
                   std::string(e.At(2)->AsString()), std::string(e.At(3)->AsString())});
  }
  return out;
}

Value InventoryObject(const Options& options, const std::vector<kube::ObjectRef>& refs, std::string* text) {
  Value list = Value::Seq();
  for (const auto& r : refs) {
    Value e = Value::Seq();
    e.Append(r.api_version);
    e.Append(r.kind);
    e.Append(r.namespace_);
    e.Append(r.name);
    list.Append(e);
  }
  kube::ObjectRef ref = InventoryRef(options);
  Value cm = Value::Map();
  cm.Set("apiVersion", "v1");
  cm.Set("kind", "ConfigMap");
  Value meta = Value::Map();
  meta.Set("name", ref.name);
  meta.Set("namespace", ref.namespace_);
  Value labels = Value::Map();
  labels.Set(kInventoryLabel, options.app);
  meta.Set("labels", labels);
  cm.Set("metadata", meta);
  Value data = Value::Map();
  *text = value::ToJson(list);
  data.Set("objects", *text);
  cm.Set("data", data);
  return cm;
}

}  // namespace internal

using value::Value;

std::unique_ptr<kube::Cache> WatchApplication(kube::Client& client, const Prepared& prepared, const Options& options,
                                              std::chrono::milliseconds wait) {
  std::set<std::pair<std::string, std::string>> kinds;
  std::set<std::string> namespaces;
  for (const Task& t : prepared.tasks) {
    if (t.hook != HookPhase::kNone) continue;
    kinds.emplace(t.ref.api_version, t.ref.kind);
    if (!t.ref.namespace_.empty()) namespaces.insert(t.ref.namespace_);
  }
  auto cache = kube::NewCache(client, {.label_selector = std::string(kAppLabel) + "=" + options.app,
                                       .index_label = kAppLabel,
                                       .namespace_ = namespaces.size() == 1 ? *namespaces.begin() : ""});
  // Every first list starts at once; then each is waited for, within one deadline.
  for (const auto& [api_version, kind] : kinds) (void)cache->Watch(api_version, kind, std::chrono::milliseconds(0));
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (const auto& [api_version, kind] : kinds) {
    auto left = std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                           deadline - std::chrono::steady_clock::now()));
    Status s = cache->Watch(api_version, kind, left);
    if (!s.ok() && s.code() != Code::kNotFound) log::Debug("sync {}: {}; read from the API instead", options.app, s.message());
  }
  return cache;
}

namespace {

// Adds every path of the field set `from` (managedFields' fieldsV1: nested maps of "f:", "k:",
// "v:", "i:" keys, "." for the member itself) to `into`.
void UnionFields(Value& into, const Value& from) {
  if (!into.IsMap() || !from.IsMap()) return;
  for (const value::MapEntry& e : from.entries()) {
    std::string_view key = e.key.AsString();
    if (Value* have = into.MutableGet(key)) {
      UnionFields(*have, e.value);
    } else {
      into.Set(key, e.value);
    }
  }
}

bool IsEntry(const Value& entry, std::string_view manager, std::string_view operation) {
  return value::StringAt(&entry, {"manager"}) == manager && value::StringAt(&entry, {"operation"}) == operation &&
         value::StringAt(&entry, {"subresource"}).empty();
}

}  // namespace

bool AdoptClientSideApply(Value& live, std::string_view field_manager) {
  Value* meta = live.MutableGet("metadata");
  Value* managed = meta != nullptr ? meta->MutableGet("managedFields") : nullptr;
  if (managed == nullptr || !managed->IsSeq() || field_manager.empty()) return false;
  std::vector<Value> entries(managed->items().begin(), managed->items().end());
  bool changed = false;
  for (std::string_view csa : kClientSideApplyManagers) {
    auto first = [&](auto&& pred) {
      auto it = std::find_if(entries.begin(), entries.end(), pred);
      return it == entries.end() ? -1 : static_cast<int>(it - entries.begin());
    };
    int target = first([&](const Value& e) { return IsEntry(e, field_manager, "Apply"); });
    if (target < 0) {
      // Entries are sorted most recent first: the most recent one of this manager becomes ours.
      target = first([&](const Value& e) { return IsEntry(e, csa, "Update"); });
      if (target < 0) continue;
      entries[target].Set("manager", field_manager);
      entries[target].Set("operation", "Apply");
    } else if (first([&](const Value& e) { return IsEntry(e, csa, "Update"); }) < 0) {
      continue;
    }
    changed = true;
    std::string api_version = value::StringAt(&entries[target], {"apiVersion"});
    int from = first([&](const Value& e) {
      return IsEntry(e, csa, "Update") && value::StringAt(&e, {"apiVersion"}) == api_version;
    });
    if (from >= 0) {
      Value fields = entries[target].Get("fieldsV1") ? *entries[target].Get("fieldsV1") : Value::Map();
      if (const Value* more = entries[from].Get("fieldsV1")) UnionFields(fields, *more);
      entries[target].Set("fieldsType", "FieldsV1");
      entries[target].Set("fieldsV1", std::move(fields));
    }
    // Entries of other apiVersions cannot be folded in (their paths may differ): dropped, as
    // csaupgrade does.
    std::erase_if(entries, [&](const Value& e) { return IsEntry(e, csa, "Update"); });
  }
  if (!changed) return false;
  Value out = Value::Seq();
  for (Value& e : entries) out.Append(std::move(e));
  *managed = std::move(out);
  return true;
}

Result<Live> ReadLive(kube::Client& client, const Prepared& prepared, const Options& options,
                      const LiveSources& sources) {
  Live live;
  std::string selector = std::string(kAppLabel) + "=" + options.app;
  std::set<std::tuple<std::string, std::string, std::string>> lists;
  for (const Task& t : prepared.tasks) {
    if (t.hook == HookPhase::kNone) lists.emplace(t.ref.api_version, t.ref.kind, t.ref.namespace_);
  }
  for (const auto& [api_version, kind, ns] : lists) {
    if (sources.objects != nullptr) {
      auto cached = sources.objects->ByIndex(api_version, kind, ns, options.app);
      if (cached.ok()) {
        for (Value& item : *cached) live.objects[ObjectKey(kube::RefOf(item))] = std::move(item);
        continue;
      }
    }
    auto list = client.List(api_version, kind, ns, {.label_selector = selector});
    if (!list.ok()) {
      // A kind whose CRD is created by this sync is not served yet: nothing of it exists.
      if (list.status().code() == Code::kNotFound) continue;
      return list.status();
    }
    for (Value& item : list->items) live.objects[ObjectKey(kube::RefOf(item))] = std::move(item);
  }
  // Desired objects not labelled as ours may still exist (created by hand or another tool): one
  // Get each, options.parallelism at a time as the apply goes. Before the first sync that is every
  // object: one after the other, 1,000 Gets summed 184 s on an apiserver under load (issue 21).
  std::vector<const Task*> unlabelled;
  for (const Task& t : prepared.tasks) {
    if (t.hook == HookPhase::kNone && !live.objects.count(ObjectKey(t.ref))) unlabelled.push_back(&t);
  }
  std::vector<Result<Value>> found(unlabelled.size(), Result<Value>(NotFoundError("not read")));
  internal::ParallelFor(unlabelled.size(), options.parallelism,
                        [&](size_t i) { found[i] = client.Get(unlabelled[i]->ref); });
  for (size_t i = 0; i < unlabelled.size(); ++i) {
    if (found[i].ok()) live.objects[ObjectKey(unlabelled[i]->ref)] = *std::move(found[i]);
    else if (found[i].status().code() != Code::kNotFound) return found[i].status();
  }
  // Objects `kubectl apply` managed: adopted (in memory here, in the cluster before the apply).
  const std::string field_manager = kube::ApplyOptions{}.field_manager;
  for (auto& [key, obj] : live.objects) {
    if (AdoptClientSideApply(obj, field_manager)) live.client_side_applied.insert(key);
  }

  // The inventory.
  kube::ObjectRef inv = internal::InventoryRef(options);
  std::optional<Value> cm;
  bool from_cache = false;
  if (sources.inventories != nullptr) {
    auto cached = sources.inventories->ByIndex("v1", "ConfigMap", inv.namespace_, options.app);
    if (cached.ok()) {
      from_cache = true;
      for (Value& c : *cached) {
        if (value::StringAt(&c, {"metadata", "name"}) == inv.name) cm = std::move(c);
      }
    }
  }
  if (!from_cache) {
    auto got = client.Get(inv);
    if (got.ok()) cm = *std::move(got);
    else if (got.status().code() != Code::kNotFound) return got.status().WithContext("read inventory");
  }
  if (cm) {
    live.stored_inventory = value::StringAt(&*cm, {"data", "objects"});
    GANTRY_ASSIGN_OR_RETURN(live.inventory, internal::ParseInventory(live.stored_inventory, inv));
  }

  // Inventory objects no longer desired that are still ours: what prune would delete.
  std::set<std::string> desired;
  for (const Task& t : prepared.tasks) {
    if (t.hook == HookPhase::kNone) desired.insert(ObjectKey(t.ref));
  }
  for (const auto& r : live.inventory) {
    std::string key = ObjectKey(r);
    if (desired.count(key)) continue;
    std::optional<Value> obj;
    if (sources.objects != nullptr && sources.objects->Synced(r.api_version, r.kind)) {
      obj = sources.objects->Get(r);
    } else {
      auto got = client.Get(r);
      if (got.ok()) obj = *std::move(got);
      else if (got.status().code() != Code::kNotFound) return got.status();
    }
    if (!obj) continue;
    if (value::StringAt(&*obj, {"metadata", "annotations", kTrackingAnnotation}) != TrackingId(options.app, r)) {
      continue;
    }
    live.extra[key] = *std::move(obj);
  }
  return live;
}

}  // namespace gantry::sync
