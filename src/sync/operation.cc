// The sync operation: prepare, then one stage per Step() (see sync.h for the algorithm).

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "sync/sync.h"

namespace gantry::sync {
namespace {

using value::Value;
using Clock = std::chrono::steady_clock;

std::string StringAt(const Value* v, std::string_view key) {
  if (v == nullptr) return "";
  const Value* f = v->Get(key);
  return f && f->IsString() ? std::string(f->AsString()) : "";
}

std::string Where(const Value& v) {
  value::Mark m = v.mark();
  return m.file.empty() ? std::string() : fmt::format("{}:{}:{}", m.file, m.line, m.column);
}

std::string GroupOf(std::string_view api_version) { return kube::SplitApiVersion(api_version).first; }

std::string TrackingId(const std::string& app, const kube::ObjectRef& r) {
  return fmt::format("{}:{}/{}:{}/{}", app, GroupOf(r.api_version), r.kind, r.namespace_, r.name);
}

// Identity of an object independent of its API version.
std::string Key(const kube::ObjectRef& r) {
  return fmt::format("{}/{}/{}/{}", GroupOf(r.api_version), r.kind, r.namespace_, r.name);
}

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
  const Value* ann = live.Find({"metadata", "annotations"});
  const Value* p = ann && ann->IsMap() ? ann->Get("gantry.dev/prune") : nullptr;
  if (p && p->IsString() && p->AsString() == "disabled") return true;
  return SyncOptionSet(live, "Prune=false");
}

// Runs fn(i) for i in [0, n) on up to `parallelism` threads.
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

class OperationImpl final : public Operation {
 public:
  OperationImpl(kube::Client& client, Options options, ProgressFn progress)
      : client_(client), options_(std::move(options)), progress_(std::move(progress)) {
    if (options_.inventory_namespace.empty()) options_.inventory_namespace = options_.default_namespace;
    requests_at_start_ = client_.request_count();
  }

  Status Prepare(std::vector<Value> desired) {
    if (options_.app.empty()) return InvalidArgumentError("sync: an application name is required");
    std::set<std::string> seen;
    // Kinds defined by CRDs in this sync: their scope is known before the server serves them.
    std::map<std::string, bool> crd_scope;  // "group/Kind" → namespaced
    for (const Value& obj : desired) {
      if (StringAt(&obj, "kind") != "CustomResourceDefinition") continue;
      const Value* spec = obj.Get("spec");
      std::string group = StringAt(spec, "group");
      std::string kind = spec ? StringAt(spec->Get("names"), "kind") : "";
      crd_scope[group + "/" + kind] = StringAt(spec, "scope") != "Cluster";
    }
    std::vector<Task> tasks;
    for (Value& obj : desired) {
      Task t;
      t.source = Where(obj);
      t.ref = kube::RefOf(obj);
      std::string at = t.source.empty() ? t.ref.ToString() : t.source;
      if (t.ref.api_version.empty() || t.ref.kind.empty() || t.ref.name.empty()) {
        return InvalidArgumentError("{}: object needs apiVersion, kind and metadata.name", at);
      }
      if (t.ref.api_version.find('/') != std::string::npos &&
          (t.ref.api_version.front() == '/' || t.ref.api_version.back() == '/' ||
           std::count(t.ref.api_version.begin(), t.ref.api_version.end(), '/') > 1)) {
        return InvalidArgumentError("{}: malformed apiVersion {:?}", at, t.ref.api_version);
      }
      bool namespaced;
      auto info = client_.Resolve(t.ref.api_version, t.ref.kind);
      if (info.ok()) {
        namespaced = info->namespaced;
      } else if (auto it = crd_scope.find(GroupOf(t.ref.api_version) + "/" + t.ref.kind);
                 info.status().code() == Code::kNotFound && it != crd_scope.end()) {
        namespaced = it->second;
      } else if (info.status().code() == Code::kNotFound) {
        return InvalidArgumentError("{}: {} {} is not served by the cluster (unknown apiVersion or kind, "
                                    "and no CRD in this sync defines it)", at, t.ref.api_version, t.ref.kind);
      } else {
        return info.status().WithContext(at);
      }
      if (namespaced && t.ref.namespace_.empty()) {
        t.ref.namespace_ = options_.default_namespace;
        obj.MutableGet("metadata")->Set("namespace", t.ref.namespace_);
      } else if (!namespaced && !t.ref.namespace_.empty()) {
        return InvalidArgumentError("{}: {} is cluster-scoped but has metadata.namespace {:?}", at, t.ref.kind,
                                    t.ref.namespace_);
      }
      if (!seen.insert(Key(t.ref)).second) {
        return InvalidArgumentError("{}: {} is rendered twice", at, t.ref.ToString());
      }
      GANTRY_RETURN_IF_ERROR(ReadAnnotations(obj, t));
      // Tracking: label and annotation naming the application (hooks too, so they can be found).
      Value* meta = obj.MutableGet("metadata");
      Value labels = meta->Get("labels") && meta->Get("labels")->IsMap() ? *meta->Get("labels") : Value::Map();
      labels.Set(kAppLabel, options_.app);
      meta->Set("labels", labels);
      Value ann = meta->Get("annotations") && meta->Get("annotations")->IsMap() ? *meta->Get("annotations")
                                                                                 : Value::Map();
      ann.Set(kTrackingAnnotation, TrackingId(options_.app, t.ref));
      meta->Set("annotations", ann);
      t.object = std::move(obj);
      tasks.push_back(std::move(t));
    }
    desired_count_ = tasks.size();
    for (const Task& t : tasks) {
      if (t.hook == HookPhase::kNone) desired_keys_.insert(Key(t.ref));
      desired_refs_.push_back(t.ref);
    }
    plan_ = Plan(std::move(tasks));
    BuildStages();
    return OkStatus();
  }

  bool Step() override {
    if (state_.phase != Phase::kRunning) return false;
    if (terminate_) {
      state_.phase = Phase::kTerminated;
      state_.message = "terminated";
      return false;
    }
    if (next_ >= stages_.size()) {
      state_.phase = Phase::kSucceeded;
      state_.message = Summary();
      Report(state_.message);
      return false;
    }
    Stage& stage = stages_[next_++];
    state_.message = stage.name;
    Status s = stage.run();
    state_.requests = client_.request_count() - requests_at_start_;
    if (!s.ok()) {
      RunSyncFailHooks();
      state_.phase = Phase::kFailed;
      state_.message = fmt::format("{}: {}", stage.name, s.message());
      Report("failed: " + state_.message);
      return false;
    }
    return true;
  }

  const State& state() const override { return state_; }
  void Terminate() override { terminate_ = true; }

  // The diff of every desired object, and of inventory objects no longer desired (Extra).
  Result<std::vector<DiffEntry>> DiffOnly(bool color) {
    GANTRY_RETURN_IF_ERROR(ReadLive());
    std::vector<DiffEntry> out;
    diff::RenderOptions render{.color = color, .compare = options_.diff};
    for (const auto& step : plan_.steps) {
      for (const Task& t : step) {
        if (t.hook != HookPhase::kNone) continue;
        auto live = live_.find(Key(t.ref));
        const Value* live_obj = live == live_.end() ? nullptr : &live->second;
        if (live_obj == nullptr) {
          // Not labelled as ours: it may still exist (created by hand or another tool).
          auto got = client_.Get(t.ref);
          if (got.ok()) live_obj = &(live_[Key(t.ref)] = std::move(got).value());
          else if (got.status().code() != Code::kNotFound) return got.status();
        }
        GANTRY_ASSIGN_OR_RETURN(diff::ObjectDiff d, diff::Compare(&t.object, live_obj, options_.diff));
        DiffEntry e{t.ref, d.status, "", health::Assess(live_obj)};
        if (d.status != diff::SyncStatus::kSynced) {
          GANTRY_ASSIGN_OR_RETURN(e.text, diff::RenderDiff(&t.object, live_obj, render));
        }
        out.push_back(std::move(e));
      }
    }
    for (const auto& r : inventory_) {
      if (desired_keys_.count(Key(r))) continue;
      auto live = client_.Get(r);
      if (!live.ok()) {
        if (live.status().code() == Code::kNotFound) continue;
        return live.status();
      }
      if (StringAt(live->Find({"metadata", "annotations"}), kTrackingAnnotation) != TrackingId(options_.app, r)) {
        continue;
      }
      DiffEntry e{r, diff::SyncStatus::kExtra, "", health::Assess(&live.value())};
      GANTRY_ASSIGN_OR_RETURN(e.text, diff::RenderDiff(nullptr, &live.value(), render));
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  struct Stage {
    std::string name;
    std::function<Status()> run;
  };

  void Report(std::string_view line) {
    if (progress_) progress_(line);
  }

  std::string Summary() const {
    std::map<Action, int> counts;
    for (const auto& r : state_.results) ++counts[r.action];
    std::string s = fmt::format("synced {} objects", desired_count_);
    for (auto [a, n] : counts) s += fmt::format(", {} {}", n, Name(a));
    return s;
  }

  void BuildStages() {
    if (options_.create_namespace) {
      stages_.push_back({"create namespace " + options_.default_namespace, [this] { return CreateNamespace(); }});
    }
    stages_.push_back({"read the cluster", [this] { return ReadLive(); }});
    bool inventory_written = false;
    auto write_inventory = [&] {
      stages_.push_back({"record inventory", [this] { return WriteInventory(/*after_prune=*/false); }});
      inventory_written = true;
    };
    for (size_t i = 0; i < plan_.steps.size(); ++i) {
      const std::string& name = plan_.step_names[i];
      bool is_hooks = plan_.steps[i].front().hook != HookPhase::kNone &&
                      plan_.steps[i].front().hook != HookPhase::kSync;
      bool is_first = plan_.steps[i].front().is_namespace_or_crd;
      if (!is_hooks && !is_first && !inventory_written) write_inventory();
      if (plan_.steps[i].front().hook == HookPhase::kPostSync && options_.prune && !options_.prune_last) {
        stages_.push_back({"prune", [this] { return Prune(); }});
      }
      stages_.push_back({name, [this, i] { return ApplyStep(i); }});
      bool more = i + 1 < plan_.steps.size();
      if (is_first) {
        stages_.push_back({"wait for CRDs", [this, i] { return WaitEstablished(i); }});
      } else if (!is_hooks && more && !options_.dry_run) {
        stages_.push_back({"wait for " + name + " to be healthy", [this, i] { return WaitHealthy(StepRefs(i)); }});
      }
    }
    if (!inventory_written) write_inventory();
    bool pruned = std::any_of(stages_.begin(), stages_.end(), [](const Stage& s) { return s.name == "prune"; });
    if (options_.prune && !pruned) stages_.push_back({"prune", [this] { return Prune(); }});
    if (!options_.dry_run) {
      stages_.push_back({"record inventory", [this] { return WriteInventory(/*after_prune=*/true); }});
    }
    if (options_.wait_for_health && !options_.dry_run) {
      stages_.push_back({"wait for health", [this] { return WaitHealthy(AllRefs()); }});
    }
  }

  std::vector<kube::ObjectRef> StepRefs(size_t i) const {
    std::vector<kube::ObjectRef> out;
    for (const Task& t : plan_.steps[i]) {
      if (t.hook == HookPhase::kNone) out.push_back(t.ref);
    }
    return out;
  }

  std::vector<kube::ObjectRef> AllRefs() const {
    std::vector<kube::ObjectRef> out;
    for (size_t i = 0; i < plan_.steps.size(); ++i) {
      for (const Task& t : plan_.steps[i]) {
        if (t.hook == HookPhase::kNone) out.push_back(t.ref);
      }
    }
    return out;
  }

  Status CreateNamespace() {
    Value ns = Value::Map();
    ns.Set("apiVersion", "v1");
    ns.Set("kind", "Namespace");
    Value meta = Value::Map();
    meta.Set("name", options_.default_namespace);
    ns.Set("metadata", meta);
    auto got = client_.Get(kube::RefOf(ns));
    if (got.ok()) return OkStatus();
    if (got.status().code() != Code::kNotFound) return got.status();
    auto created = client_.Apply(ns, {.dry_run = options_.dry_run});
    return created.status();
  }

  // One labelled list per kind and namespace of the desired objects, so diffs need no per-object
  // request.
  Status ReadLive() {
    std::set<std::tuple<std::string, std::string, std::string>> lists;
    for (const auto& step : plan_.steps) {
      for (const Task& t : step) {
        if (t.hook == HookPhase::kNone) lists.emplace(t.ref.api_version, t.ref.kind, t.ref.namespace_);
      }
    }
    for (const auto& [api_version, kind, ns] : lists) {
      auto list = client_.List(api_version, kind, ns, {.label_selector = std::string(kAppLabel) + "=" + options_.app});
      if (!list.ok()) {
        // A kind whose CRD is created by this sync is not served yet: nothing of it exists.
        if (list.status().code() == Code::kNotFound) continue;
        return list.status();
      }
      for (Value& item : list->items) live_[Key(kube::RefOf(item))] = std::move(item);
    }
    GANTRY_ASSIGN_OR_RETURN(inventory_, ReadInventory());
    return OkStatus();
  }

  kube::ObjectRef InventoryRef() const {
    return {"v1", "ConfigMap", options_.inventory_namespace, "gantry-inventory-" + options_.app};
  }

  Result<std::vector<kube::ObjectRef>> ReadInventory() {
    auto cm = client_.Get(InventoryRef());
    if (!cm.ok()) {
      if (cm.status().code() == Code::kNotFound) return std::vector<kube::ObjectRef>{};
      return cm.status().WithContext("read inventory");
    }
    std::vector<kube::ObjectRef> out;
    std::string text = StringAt(cm->Get("data"), "objects");
    stored_inventory_ = text;
    if (text.empty()) return out;
    auto list = value::ParseJson(text, "inventory");
    if (!list.ok() || !list->IsSeq()) {
      // An unreadable inventory must not make prune guess: fail loudly.
      return DataLossError("inventory {} is corrupt; delete it to start over (nothing will be pruned "
                           "until the next sync records a new one)", InventoryRef().ToString());
    }
    for (const Value& e : list->items()) {
      if (!e.IsSeq() || e.size() != 4) continue;
      out.push_back({std::string(e.At(0)->AsString()), std::string(e.At(1)->AsString()),
                     std::string(e.At(2)->AsString()), std::string(e.At(3)->AsString())});
    }
    return out;
  }

  // Before applying: what was there plus what is about to be applied, so a crash in between never
  // loses track of an object. After pruning: what is desired plus what could not be pruned.
  Status WriteInventory(bool after_prune) {
    if (options_.dry_run) return OkStatus();
    std::map<std::string, kube::ObjectRef> entries;
    if (!after_prune) {
      for (const auto& r : inventory_) entries.emplace(Key(r), r);
    } else {
      for (const auto& r : inventory_) {
        if (kept_after_prune_.count(Key(r))) entries.emplace(Key(r), r);
      }
    }
    for (const auto& step : plan_.steps) {
      for (const Task& t : step) {
        if (t.hook == HookPhase::kNone) entries.emplace(Key(t.ref), t.ref);
      }
    }
    Value list = Value::Seq();
    for (const auto& [k, r] : entries) {
      Value e = Value::Seq();
      e.Append(r.api_version);
      e.Append(r.kind);
      e.Append(r.namespace_);
      e.Append(r.name);
      list.Append(e);
    }
    Value cm = Value::Map();
    cm.Set("apiVersion", "v1");
    cm.Set("kind", "ConfigMap");
    Value meta = Value::Map();
    meta.Set("name", InventoryRef().name);
    meta.Set("namespace", InventoryRef().namespace_);
    Value labels = Value::Map();
    labels.Set("gantry.dev/inventory", options_.app);
    meta.Set("labels", labels);
    cm.Set("metadata", meta);
    Value data = Value::Map();
    data.Set("objects", value::ToJson(list));
    cm.Set("data", data);
    // Nothing to write when the cluster already holds this inventory (a no-op sync writes nothing).
    if (value::ToJson(list) == stored_inventory_) return OkStatus();
    std::string json = value::ToJson(cm);
    if (json == last_inventory_) return OkStatus();
    auto r = client_.Apply(cm, {.force = true});
    if (!r.ok()) return r.status().WithContext("record inventory");
    last_inventory_ = json;
    if (after_prune) {
      inventory_.clear();
      for (const auto& [k, ref] : entries) inventory_.push_back(ref);
    }
    return OkStatus();
  }

  Status ApplyStep(size_t i) {
    std::vector<Task>& step = plan_.steps[i];
    std::vector<ObjectResult> results(step.size());
    std::atomic<int> failures{0};
    bool hooks = step.front().hook != HookPhase::kNone;
    ParallelFor(step.size(), options_.parallelism, [&](size_t k) {
      Task& t = step[k];
      ObjectResult& r = results[k];
      r.ref = t.ref;
      r.step = plan_.step_names[i];
      if (t.hook != HookPhase::kNone) {
        Status s = RunHook(t, r);
        if (!s.ok()) {
          r.failed = true;
          r.message = s.message();
          ++failures;
        }
        return;
      }
      auto live = live_.find(Key(t.ref));
      const Value* live_obj = live == live_.end() ? nullptr : &live->second;
      if (options_.apply_out_of_sync_only && live_obj) {
        auto d = diff::Compare(&t.object, live_obj, options_.diff);
        if (d.ok() && d->status == diff::SyncStatus::kSynced) {
          r.action = Action::kUnchanged;
          r.health = health::Assess(live_obj);
          return;
        }
      }
      r.action = live_obj ? Action::kUpdate : Action::kCreate;
      auto applied = client_.Apply(t.object, {.force = options_.force || SyncOptionSet(t.object, "Force=true"),
                                              .dry_run = options_.dry_run});
      if (!applied.ok()) {
        r.failed = true;
        r.message = t.source.empty() ? applied.status().message()
                                     : fmt::format("{} ({})", applied.status().message(), t.source);
        ++failures;
        return;
      }
      r.health = health::Assess(&applied.value());
      r.message = options_.dry_run ? "dry run" : "";
    });
    int applied = 0, unchanged = 0;
    for (auto& r : results) {
      if (r.action == Action::kUnchanged) ++unchanged;
      else if (!r.failed) ++applied;
      state_.results.push_back(std::move(r));
    }
    Report(fmt::format("{}: {} {}{}, {} unchanged{}", plan_.step_names[i], hooks ? "ran" : "applied", applied,
                       hooks ? " hooks" : "", unchanged,
                       failures ? fmt::format(", {} failed", failures.load()) : ""));
    if (failures > 0) {
      for (const auto& r : state_.results) {
        if (!r.failed) continue;
        Status s = InternalError("{}", r.message);
        return failures > 1 ? s.WithContext(fmt::format("{} objects failed, first", failures.load())) : s;
      }
    }
    return OkStatus();
  }

  // Applies a hook, waits for it to finish, and deletes it as its policies say.
  Status RunHook(Task& t, ObjectResult& r) {
    r.action = Action::kHook;
    auto has = [&](std::string_view p) {
      return std::find(t.hook_delete_policies.begin(), t.hook_delete_policies.end(), p) !=
             t.hook_delete_policies.end();
    };
    if (options_.dry_run) {
      auto dry = client_.Apply(t.object, {.dry_run = true});
      return dry.status();
    }
    if (has("BeforeHookCreation")) {
      Status del = client_.Delete(t.ref, {.propagation = kube::Propagation::kForeground});
      if (!del.ok() && del.code() != Code::kNotFound) return del;
      GANTRY_RETURN_IF_ERROR(WaitGone(t.ref));
    }
    auto applied = client_.Apply(t.object, {.force = true});
    if (!applied.ok()) return applied.status();
    auto deadline = Clock::now() + options_.timeout;
    health::Health h{health::HealthStatus::kProgressing, ""};
    while (Clock::now() < deadline && !terminate_) {
      auto live = client_.Get(t.ref);
      if (!live.ok()) return live.status();
      h = health::Assess(&live.value());
      if (h.status == health::HealthStatus::kHealthy || h.status == health::HealthStatus::kDegraded) break;
      SystemClock().SleepFor(std::chrono::milliseconds(250));
    }
    r.health = h;
    bool ok = h.status == health::HealthStatus::kHealthy;
    if ((ok && has("HookSucceeded")) || (!ok && has("HookFailed"))) {
      Status del = client_.Delete(t.ref, {.propagation = kube::Propagation::kBackground});
      if (!del.ok() && del.code() != Code::kNotFound) return del;
    }
    if (h.status == health::HealthStatus::kDegraded) return AbortedError("hook failed: {}", h.message);
    if (!ok) return DeadlineExceededError("hook did not finish within {} s", options_.timeout.count() / 1000);
    return OkStatus();
  }

  Status WaitGone(const kube::ObjectRef& ref) {
    auto deadline = Clock::now() + options_.timeout;
    while (Clock::now() < deadline) {
      auto got = client_.Get(ref);
      if (!got.ok() && got.status().code() == Code::kNotFound) return OkStatus();
      if (!got.ok()) return got.status();
      SystemClock().SleepFor(std::chrono::milliseconds(200));
    }
    return DeadlineExceededError("{} was not deleted within {} s", ref.ToString(), options_.timeout.count() / 1000);
  }

  void RunSyncFailHooks() {
    for (Task& t : plan_.sync_fail_hooks) {
      ObjectResult r;
      r.ref = t.ref;
      r.step = "SyncFail hooks";
      Status s = RunHook(t, r);
      if (!s.ok()) {
        r.failed = true;
        r.message = s.message();
      }
      state_.results.push_back(std::move(r));
    }
  }

  Status WaitEstablished(size_t i) {
    if (options_.dry_run) return OkStatus();
    auto deadline = Clock::now() + options_.timeout;
    bool established = false;
    for (const Task& t : plan_.steps[i]) {
      if (t.ref.kind != "CustomResourceDefinition") continue;
      while (true) {
        auto live = client_.Get(t.ref);
        if (!live.ok()) return live.status();
        health::Health h = health::Assess(&live.value());
        if (h.status == health::HealthStatus::kHealthy) break;
        if (h.status == health::HealthStatus::kDegraded) {
          return FailedPreconditionError("{}: {}", t.ref.ToString(), h.message);
        }
        if (Clock::now() > deadline) {
          return DeadlineExceededError("{} not Established within {} s: {}", t.ref.ToString(),
                                       options_.timeout.count() / 1000, h.message);
        }
        SystemClock().SleepFor(std::chrono::milliseconds(100));
      }
      established = true;
      // Established comes before discovery lists the new kinds (the apiserver updates discovery
      // asynchronously): wait until every served version of the kind resolves.
      auto live = client_.Get(t.ref);
      if (!live.ok()) return live.status();
      const Value* spec = live->Get("spec");
      std::string group = StringAt(spec, "group");
      std::string kind = spec ? StringAt(spec->Get("names"), "kind") : "";
      const Value* versions = spec ? spec->Get("versions") : nullptr;
      for (size_t v = 0; versions != nullptr && v < versions->size(); ++v) {
        const Value* ver = versions->At(v);
        const Value* served = ver->Get("served");
        if (served == nullptr || !served->IsBool() || !served->AsBool()) continue;
        std::string api_version = group + "/" + StringAt(ver, "name");
        while (true) {
          client_.InvalidateDiscovery();
          auto info = client_.Resolve(api_version, kind);
          if (info.ok()) break;
          if (info.status().code() != Code::kNotFound) return info.status();
          if (Clock::now() > deadline) {
            return DeadlineExceededError("{} is Established but the server does not serve {} {} within {} s",
                                         t.ref.ToString(), api_version, kind, options_.timeout.count() / 1000);
          }
          SystemClock().SleepFor(std::chrono::milliseconds(100));
        }
      }
    }
    if (established) client_.InvalidateDiscovery();
    return OkStatus();
  }

  // Polls (one list per kind and namespace) until every object is Healthy; Degraded fails.
  Status WaitHealthy(const std::vector<kube::ObjectRef>& refs) {
    std::map<std::tuple<std::string, std::string, std::string>, std::vector<kube::ObjectRef>> groups;
    for (const auto& r : refs) groups[{r.api_version, r.kind, r.namespace_}].push_back(r);
    auto deadline = Clock::now() + options_.timeout;
    std::map<std::string, health::Health> last;
    while (true) {
      bool all = true;
      for (const auto& [g, members] : groups) {
        const auto& [api_version, kind, ns] = g;
        auto list = client_.List(api_version, kind, ns, {.label_selector = std::string(kAppLabel) + "=" + options_.app});
        if (!list.ok()) return list.status();
        std::map<std::string, const Value*> by_key;
        for (const Value& item : list->items) by_key[Key(kube::RefOf(item))] = &item;
        for (const auto& r : members) {
          auto it = by_key.find(Key(r));
          health::Health h = health::Assess(it == by_key.end() ? nullptr : it->second);
          last[Key(r)] = h;
          if (h.status == health::HealthStatus::kDegraded) {
            UpdateHealth(last);
            return AbortedError("{} is Degraded: {}", r.ToString(), h.message);
          }
          if (h.status != health::HealthStatus::kHealthy && h.status != health::HealthStatus::kSuspended) {
            all = false;
          }
        }
      }
      UpdateHealth(last);
      if (all) return OkStatus();
      if (Clock::now() > deadline || terminate_) {
        for (const auto& r : refs) {
          const health::Health& h = last[Key(r)];
          if (h.status != health::HealthStatus::kHealthy && h.status != health::HealthStatus::kSuspended) {
            return DeadlineExceededError("{} not healthy after {} s: {} {}", r.ToString(),
                                         options_.timeout.count() / 1000, health::Name(h.status), h.message);
          }
        }
      }
      SystemClock().SleepFor(std::chrono::milliseconds(250));
    }
  }

  void UpdateHealth(const std::map<std::string, health::Health>& h) {
    for (auto& r : state_.results) {
      if (r.action == Action::kPrune || r.action == Action::kHook) continue;
      if (auto it = h.find(Key(r.ref)); it != h.end()) r.health = it->second;
    }
  }

  Status Prune() {
    std::vector<kube::ObjectRef> candidates;
    for (const auto& r : inventory_) {
      if (!desired_keys_.count(Key(r))) candidates.push_back(r);
    }
    for (const auto& r : inventory_) {
      if (desired_keys_.count(Key(r))) kept_after_prune_.insert(Key(r));
    }
    if (candidates.empty()) return OkStatus();
    if (desired_keys_.empty() && !options_.allow_empty) {
      for (const auto& r : candidates) kept_after_prune_.insert(Key(r));
      return FailedPreconditionError(
          "refusing to prune all {} objects of {}: the render is empty (allow it explicitly to prune "
          "everything)", candidates.size(), options_.app);
    }
    std::vector<ObjectResult> results(candidates.size());
    std::atomic<int> failures{0};
    ParallelFor(candidates.size(), options_.parallelism, [&](size_t k) {
      const kube::ObjectRef& ref = candidates[k];
      ObjectResult& r = results[k];
      r.ref = ref;
      r.step = "prune";
      r.action = Action::kPrune;
      auto live = client_.Get(ref);
      if (!live.ok()) {
        if (live.status().code() == Code::kNotFound) {
          r.message = "already gone";
          r.health = {health::HealthStatus::kMissing, ""};
          return;
        }
        r.failed = true;
        r.message = live.status().message();
        ++failures;
        return;
      }
      auto skip = [&](std::string why) {
        r.action = Action::kPruneSkipped;
        r.message = std::move(why);
        std::lock_guard<std::mutex> lock(mu_);
        kept_after_prune_.insert(Key(ref));
      };
      const Value* ann = live->Find({"metadata", "annotations"});
      std::string tracking = StringAt(ann, kTrackingAnnotation);
      if (tracking != TrackingId(options_.app, ref)) {
        r.action = Action::kPruneSkipped;
        r.message = tracking.empty() ? "no longer tracked by Gantry" : "now tracked by " + tracking;
        return;  // not ours any more: dropped from the inventory, left in the cluster
      }
      if (PruneDisabled(*live)) return skip("prune disabled by annotation");
      if (!options_.prune_dangerous &&
          (ref.kind == "Namespace" || ref.kind == "PersistentVolumeClaim" || ref.kind == "CustomResourceDefinition")) {
        return skip(fmt::format("a {} is pruned only with explicit confirmation", ref.kind));
      }
      const Value* uid = live->Find({"metadata", "uid"});
      Status s = client_.Delete(ref, {.dry_run = options_.dry_run,
                                      .precondition_uid = uid && uid->IsString() ? std::optional<std::string>(uid->AsString())
                                                                                  : std::nullopt});
      if (!s.ok() && s.code() != Code::kNotFound) {
        r.failed = true;
        r.message = s.message();
        std::lock_guard<std::mutex> lock(mu_);
        kept_after_prune_.insert(Key(ref));
        ++failures;
        return;
      }
      r.health = {health::HealthStatus::kMissing, "pruned"};
      r.message = options_.dry_run ? "dry run" : "pruned";
    });
    int pruned = 0, skipped = 0;
    for (auto& r : results) {
      if (r.action == Action::kPrune && !r.failed) ++pruned;
      if (r.action == Action::kPruneSkipped) ++skipped;
      state_.results.push_back(std::move(r));
    }
    Report(fmt::format("prune: {} pruned, {} kept", pruned, skipped));
    if (failures > 0) return InternalError("{} objects could not be pruned", failures.load());
    return OkStatus();
  }

  kube::Client& client_;
  Options options_;
  ProgressFn progress_;
  State state_;
  SyncPlan plan_;
  std::vector<Stage> stages_;
  size_t next_ = 0;
  bool terminate_ = false;
  size_t desired_count_ = 0;
  uint64_t requests_at_start_ = 0;
  std::set<std::string> desired_keys_;
  std::vector<kube::ObjectRef> desired_refs_;
  std::map<std::string, Value> live_;           // by Key(), from ReadLive
  std::vector<kube::ObjectRef> inventory_;
  std::mutex mu_;
  std::set<std::string> kept_after_prune_;      // GUARDED_BY(mu_) during Prune
  std::string last_inventory_;
  std::string stored_inventory_;  // data.objects of the inventory as read from the cluster
};

}  // namespace

std::string_view Name(Action a) {
  switch (a) {
    case Action::kCreate: return "created";
    case Action::kUpdate: return "updated";
    case Action::kUnchanged: return "unchanged";
    case Action::kApply: return "applied";
    case Action::kPrune: return "pruned";
    case Action::kPruneSkipped: return "prune skipped";
    case Action::kHook: return "hook";
  }
  return "?";
}

std::string_view Name(Phase p) {
  switch (p) {
    case Phase::kRunning: return "Running";
    case Phase::kSucceeded: return "Succeeded";
    case Phase::kFailed: return "Failed";
    case Phase::kTerminated: return "Terminated";
  }
  return "?";
}

Result<std::unique_ptr<Operation>> Operation::Create(kube::Client& client, std::vector<Value> desired,
                                                     Options options, ProgressFn progress) {
  auto op = std::make_unique<OperationImpl>(client, std::move(options), std::move(progress));
  GANTRY_RETURN_IF_ERROR(op->Prepare(std::move(desired)));
  return std::unique_ptr<Operation>(std::move(op));
}

Result<std::vector<DiffEntry>> Diff(kube::Client& client, std::vector<Value> desired, const Options& options,
                                    bool color) {
  OperationImpl op(client, options, nullptr);
  GANTRY_RETURN_IF_ERROR(op.Prepare(std::move(desired)));
  return op.DiffOnly(color);
}

}  // namespace gantry::sync
