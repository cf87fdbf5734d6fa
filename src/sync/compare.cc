// Compare: the pure comparison of a prepared application with its live state; Diff: the same with
// the text of each difference, for people.

#include "sync/internal/common.h"
#include "sync/sync.h"

namespace gantry::sync {

using value::Value;

diff::SyncStatus Comparison::StatusOf(const kube::ObjectRef& ref) const {
  auto it = index.find(ObjectKey(ref));
  return it == index.end() ? diff::SyncStatus::kMissing : entries[it->second].status;
}

Result<Comparison> Compare(const Prepared& prepared, const Live& live, const Options& options) {
  Comparison out;
  out.entries.reserve(prepared.tasks.size() + live.extra.size());
  for (const auto& step : prepared.plan.steps) {  // in the order of the plan
   for (const Task& t : step) {
    if (t.hook != HookPhase::kNone) continue;
    auto it = live.objects.find(ObjectKey(t.ref));
    const Value* live_obj = it == live.objects.end() ? nullptr : &it->second;
    GANTRY_ASSIGN_OR_RETURN(diff::ObjectDiff d, diff::Compare(&t.object, live_obj, options.diff));
    out.index[ObjectKey(t.ref)] = out.entries.size();
    out.entries.push_back({t.ref, d.status, "", health::Assess(live_obj)});
   }
  }
  for (const auto& r : live.inventory) {
    auto it = live.extra.find(ObjectKey(r));
    if (it == live.extra.end()) continue;
    out.index[ObjectKey(r)] = out.entries.size();
    out.entries.push_back({r, diff::SyncStatus::kExtra, "", health::Assess(&it->second)});
  }
  for (const auto& e : out.entries) out.out_of_sync += e.status != diff::SyncStatus::kSynced;
  return out;
}

Status CheckOwnership(const Prepared& prepared, const Live& live) {
  std::string first;
  int refused = 0;
  for (const auto& step : prepared.plan.steps) {
    for (const Task& t : step) {
      if (t.hook != HookPhase::kNone) continue;
      auto it = live.objects.find(ObjectKey(t.ref));
      if (it == live.objects.end()) continue;
      std::string id = value::StringAt(&it->second, {"metadata", "annotations", kTrackingAnnotation});
      if (id.empty()) continue;  // unmanaged: adopted, its fields are guarded by server-side apply
      std::string_view owner = std::string_view(id).substr(0, id.find(':'));
      if (owner == prepared.app) continue;
      if (refused++ == 0) {
        first = fmt::format("{}{} belongs to application {} (tracking id {:?}); an application never takes over "
                            "another's objects: remove it from one of them, or delete the annotation {} from the "
                            "live object to hand it over",
                            t.source.empty() ? "" : t.source + ": ", t.ref.ToString(), owner, id, kTrackingAnnotation);
      }
    }
  }
  if (refused == 0) return OkStatus();
  if (refused > 1) first += fmt::format(" (and {} more objects of other applications)", refused - 1);
  return PermissionDeniedError("{}", first).set_reason(kReasonOwnedByOther);
}

Result<std::vector<DiffEntry>> Diff(kube::Client& client, std::vector<Value> desired, const Options& options,
                                    bool color) {
  GANTRY_ASSIGN_OR_RETURN(Prepared prepared, Prepare(client, std::move(desired), options));
  GANTRY_ASSIGN_OR_RETURN(Live live, ReadLive(client, prepared, options));
  GANTRY_ASSIGN_OR_RETURN(Comparison c, Compare(prepared, live, options));
  diff::RenderOptions render{.color = color, .compare = options.diff};
  std::map<std::string, const Task*> tasks;
  for (const Task& t : prepared.tasks) tasks[ObjectKey(t.ref)] = &t;
  for (DiffEntry& e : c.entries) {
    if (e.status == diff::SyncStatus::kSynced) continue;
    std::string key = ObjectKey(e.ref);
    const Value* want = e.status == diff::SyncStatus::kExtra ? nullptr : &tasks.at(key)->object;
    const Value* have = nullptr;
    if (auto it = live.objects.find(key); it != live.objects.end()) have = &it->second;
    if (auto it = live.extra.find(key); it != live.extra.end()) have = &it->second;
    GANTRY_ASSIGN_OR_RETURN(e.text, diff::RenderDiff(want, have, render));
  }
  // Hooks are not compared: every sync creates them anew (a generateName hook under a new name).
  for (const Task& t : prepared.tasks) {
    if (t.hook == HookPhase::kNone || t.hook == HookPhase::kSkipped) continue;
    kube::ObjectRef ref = t.ref;
    if (ref.name.empty()) ref.name = t.generate_name + "*";
    std::string when = t.hook == HookPhase::kSyncFail ? "if the sync fails" : "by the sync";
    c.entries.push_back({.ref = ref,
                         .status = diff::SyncStatus::kMissing,
                         .text = fmt::format("{} hook: will be created {}{}\n", Name(t.hook), when,
                                             t.generate_name.empty() ? ""
                                                                     : fmt::format(" (named by the server from "
                                                                                   "generateName {:?})", t.generate_name)),
                         .health = {health::HealthStatus::kMissing, ""},
                         .hook = t.hook});
  }
  return std::move(c.entries);
}

}  // namespace gantry::sync
