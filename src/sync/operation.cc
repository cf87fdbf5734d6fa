// The sync operation: prepare, then one stage per Step() (see sync.h for the algorithm).

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/mutex.h"
#include "sync/internal/common.h"
#include "sync/sync.h"

namespace gantry::sync {
namespace {

using value::Value;

using internal::ParallelFor;

std::string Key(const kube::ObjectRef& r) { return ObjectKey(r); }

bool SyncOptionSetLive(const Value& live, std::string_view option) { return internal::SyncOptionSet(live, option); }

// On a namespace CreateNamespace created: the managedNamespaceMetadata last applied (JSON).
constexpr char kNamespaceMetadataAnnotation[] = "gantry.dev/managed-namespace-metadata";

// How long an object must stay Degraded before a health wait gives up on it (see WaitHealthy).
constexpr std::chrono::seconds kDegradedGrace{2};

class OperationImpl final : public Operation {
 public:
  OperationImpl(kube::Client& client, Prepared prepared, Options options, ProgressFn progress, kube::Cache* cache)
      : client_(client), options_(std::move(options)), progress_(std::move(progress)), cache_(cache),
        plan_(std::move(prepared.plan)) {
    if (options_.inventory_namespace.empty()) options_.inventory_namespace = options_.default_namespace;
    requests_at_start_ = client_.request_count();
    desired_count_ = prepared.tasks.size();
    for (const Task& t : prepared.tasks) {
      if (t.hook == HookPhase::kNone) desired_keys_.insert(Key(t.ref));
    }
    prepared_tasks_ = std::move(prepared.tasks);
    BuildStages();
  }

  // The live state and comparison of the caller (the agent's pass): the operation does not read or
  // compare again.
  void UseLive(Live live, Comparison comparison) {
    live_ = std::move(live);
    comparison_ = std::move(comparison);
    have_live_ = true;
  }

  bool Step() override {
    if (state_.phase != Phase::kRunning) return false;
    if (next_ >= stages_.size()) {  // done: a stop asked after the last stage changes nothing
      state_.phase = Phase::kSucceeded;
      state_.message = Summary();
      Report({.line = state_.message});
      return false;
    }
    if (Stopping()) {
      state_.phase = Phase::kTerminated;
      state_.message = "terminated before " + stages_[next_].name;
      return false;
    }
    Stage& stage = stages_[next_++];
    state_.message = stage.name;
    Status s = stage.run();
    state_.requests = client_.request_count() - requests_at_start_;
    if (!s.ok() && (Stopping() || stopped_inside_)) {
      // Stopped inside the stage (a wait): terminated, not failed; no SyncFail hooks.
      state_.phase = Phase::kTerminated;
      state_.message = "terminated during " + stage.name;
      Report({.line = state_.message});
      return false;
    }
    if (!s.ok()) {
      RunSyncFailHooks();
      state_.phase = Phase::kFailed;
      state_.error = s.WithContext(stage.name);
      state_.message = state_.error.message();
      Report({.line = "failed: " + state_.message});
      return false;
    }
    return true;
  }

  const State& state() const override { return state_; }
  void Terminate() override { terminate_ = true; }

 private:
  // Terminate() was called or Options::stop says so.
  bool Stopping() const { return terminate_ || (options_.stop && options_.stop()); }
  // What a wait returns when it stops for Stopping().
  static Status Stopped() { return AbortedError("terminated"); }

  struct Stage {
    std::string name;
    std::function<Status()> run;
  };

  void Report(const Progress& p) {
    if (progress_) progress_(p);
  }

  std::string Summary() const {
    std::map<Action, int> counts;
    for (const auto& r : state_.results) ++counts[r.action];
    std::string s = fmt::format("synced {} objects", desired_count_);
    for (auto [a, n] : counts) s += fmt::format(", {} {}", n, Name(a));
    return s;
  }

  void BuildStages() {
    if (!plan_.skipped.empty()) stages_.push_back({"skipped objects", [this] { return Skip(); }});
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
      bool first_post_sync = plan_.steps[i].front().hook == HookPhase::kPostSync &&
                             (i == 0 || plan_.steps[i - 1].front().hook != HookPhase::kPostSync);
      if (first_post_sync && options_.prune && !options_.prune_last) {
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
    if (options_.prune && !options_.prune_last) {
      stages_.push_back({"prune last", [this] { return PruneLast(); }});
    }
    // Without a prune the inventory written before applying stands: objects no longer rendered
    // stay in it (and in the cluster, reported Extra) until a sync with prune deletes them.
    if (!options_.dry_run && (options_.prune || pruned)) {
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

  // Objects a sync never applies (HookPhase::kSkipped): reported, never applied.
  Status Skip() {
    for (const Task& t : plan_.skipped) {
      state_.results.push_back({.ref = Shown(t),
                                .action = Action::kSkipped,
                                .message = t.skip_reason,
                                .step = "skipped"});
    }
    Report({.step = "skipped", .unchanged = static_cast<int>(plan_.skipped.size()),
            .line = fmt::format("skipped {} object{} a sync never applies (hook Skip, Helm test, delete "
                                "or rollback hooks)", plan_.skipped.size(), plan_.skipped.size() == 1 ? "" : "s")});
    return OkStatus();
  }

  // How a task is shown: a generateName hook not created yet is "GENERATENAME*".
  static kube::ObjectRef Shown(const Task& t) {
    kube::ObjectRef ref = t.ref;
    if (ref.name.empty()) ref.name = t.generate_name + "*";
    return ref;
  }

  // In a dry run, why the server cannot validate an object: its namespace or its CRD does not
  // exist yet because this sync creates it ("" : it can). A real sync creates them first.
  std::string Unvalidated(const Task& t) const {
    if (!options_.dry_run) return "";
    if (t.kind_missing) {
      return fmt::format("the cluster does not serve {} {} (SkipDryRunOnMissingResource)", t.ref.api_version,
                         t.ref.kind);
    }
    if (!t.ref.namespace_.empty() && pending_namespaces_.count(t.ref.namespace_)) {
      return fmt::format("namespace {} is created by this sync", t.ref.namespace_);
    }
    if (auto it = pending_kinds_.find(internal::GroupOf(t.ref.api_version) + "/" + t.ref.kind);
        it != pending_kinds_.end()) {
      return fmt::format("CRD {} is created by this sync", it->second);
    }
    return "";
  }

  Status CreateNamespace() {
    Value ns = Value::Map();
    ns.Set("apiVersion", "v1");
    ns.Set("kind", "Namespace");
    Value meta = Value::Map();
    meta.Set("name", options_.default_namespace);
    // managedNamespaceMetadata, and a record of it (so that a label removed from it is removed
    // from the namespace, and an unchanged one is not written again).
    bool managed = !options_.namespace_labels.empty() || !options_.namespace_annotations.empty();
    Value record = Value::Map();
    if (managed) {
      Value labels = Value::Map(), annotations = Value::Map();
      for (const auto& [k, v] : options_.namespace_labels) labels.Set(k, v);
      for (const auto& [k, v] : options_.namespace_annotations) annotations.Set(k, v);
      record.Set("labels", labels);
      record.Set("annotations", annotations);
      if (!options_.namespace_labels.empty()) meta.Set("labels", labels);
      annotations.Set(kNamespaceMetadataAnnotation, value::ToJson(record));
      meta.Set("annotations", annotations);
    }
    ns.Set("metadata", meta);
    auto got = client_.Get(kube::RefOf(ns));
    if (got.ok()) {
      std::string had = value::StringAt(&*got, {"metadata", "annotations", kNamespaceMetadataAnnotation});
      if (had == (managed ? value::ToJson(record) : "")) return OkStatus();
      // Server-side apply: the fields Gantry applied before and no longer does are removed.
      auto updated = client_.Apply(ns, {.dry_run = options_.dry_run});
      return updated.status().WithContext("apply managedNamespaceMetadata");
    }
    if (got.status().code() != Code::kNotFound) return got.status();
    auto created = client_.Apply(ns, {.dry_run = options_.dry_run});
    if (created.ok() && options_.dry_run) pending_namespaces_.insert(options_.default_namespace);
    return created.status();
  }

  // The live state and its comparison, unless the caller gave them.
  Status ReadLive() {
    if (!have_live_) {
      Prepared p{options_.app, prepared_tasks_, {}};
      GANTRY_ASSIGN_OR_RETURN(live_, sync::ReadLive(client_, p, options_, {.objects = cache_}));
      GANTRY_ASSIGN_OR_RETURN(comparison_, sync::Compare(PreparedView(), live_, options_));
      have_live_ = true;
    }
    inventory_ = live_.inventory;
    if (options_.dry_run) {
      // Namespaces and CRDs this sync creates: a dry run persists nothing, so what depends on them
      // cannot be validated by the server (Unvalidated).
      for (const auto& step : plan_.steps) {
        for (const Task& t : step) {
          if (!t.is_namespace_or_crd || live_.objects.count(Key(t.ref))) continue;
          if (t.ref.kind == "Namespace") {
            pending_namespaces_.insert(t.ref.name);
          } else {
            pending_kinds_[value::StringAt(&t.object, {"spec", "group"}) + "/" +
                           value::StringAt(&t.object, {"spec", "names", "kind"})] = t.ref.name;
          }
        }
      }
    }
    return CheckOwnership(PreparedView(), live_);
  }

  // Compare iterates the plan; a view of it without copying the tasks again.
  Prepared PreparedView() const { return Prepared{options_.app, {}, plan_}; }

  // Before applying: what was there plus what is about to be applied, so a crash in between never
  // loses track of an object. After pruning: what is desired plus what could not be pruned.
  Status WriteInventory(bool after_prune) {
    if (options_.dry_run) return OkStatus();
    std::map<std::string, kube::ObjectRef> entries;
    if (!after_prune) {
      for (const auto& r : inventory_) entries.emplace(Key(r), r);
    } else {
      MutexLock lock(mu_);
      for (const auto& r : inventory_) {
        if (kept_after_prune_.count(Key(r))) entries.emplace(Key(r), r);
      }
    }
    for (const auto& step : plan_.steps) {
      for (const Task& t : step) {
        if (t.hook == HookPhase::kNone) entries.emplace(Key(t.ref), t.ref);
      }
    }
    std::vector<kube::ObjectRef> refs;
    for (const auto& [k, r] : entries) refs.push_back(r);
    std::string text;
    Value cm = internal::InventoryObject(options_, refs, &text);
    // Nothing to write when the cluster already holds this inventory (a no-op sync writes nothing).
    if (text == live_.stored_inventory) return OkStatus();
    std::string json = value::ToJson(cm);
    if (json == last_inventory_) return OkStatus();
    auto r = client_.Apply(cm, {.force = true});
    if (!r.ok()) return r.status().WithContext("record inventory");
    last_inventory_ = json;
    if (cache_ != nullptr) cache_->Observe(*r);
    if (after_prune) {
      inventory_.clear();
      for (const auto& [k, ref] : entries) inventory_.push_back(ref);
    }
    return OkStatus();
  }

  Status ApplyStep(size_t i) {
    std::vector<Task>& step = plan_.steps[i];
    std::vector<ObjectResult> results(step.size());
    int failures = 0;  // guarded by mu_ with first_error (a local cannot be annotated)
    Status first_error;
    bool hooks = step.front().hook != HookPhase::kNone;
    std::vector<char> skipped(step.size(), 0);  // not applied: the operation was stopped first
    ParallelFor(step.size(), options_.parallelism, [&](size_t k) {
      Task& t = step[k];
      ObjectResult& r = results[k];
      r.ref = Shown(t);
      r.step = plan_.step_names[i];
      if (t.hook != HookPhase::kNone) {
        Status s = RunHook(t, r);
        if (!s.ok()) {
          r.failed = true;
          r.message = s.message();
          MutexLock lock(mu_);
          if (failures++ == 0) first_error = s.WithContext(r.ref.ToString());
        }
        return;
      }
      if (Stopping()) {
        // Asked to stop while the step runs (a lapsed lease: another replica may be applying by
        // now): what has not begun is not applied. A wave of 1,000 objects is one step.
        skipped[k] = 1;
        stopped_inside_ = true;
        return;
      }
      auto live = live_.objects.find(Key(t.ref));
      const Value* live_obj = live == live_.objects.end() ? nullptr : &live->second;
      if (std::string why = Unvalidated(t); !why.empty()) {
        r.action = Action::kCreate;
        r.message = fmt::format("would be created (not validated by the server: {})", why);
        return;
      }
      // Compared once, before the operation: an object found in sync is not applied again.
      if (options_.apply_out_of_sync_only && live_obj && comparison_.StatusOf(t.ref) == diff::SyncStatus::kSynced) {
        r.action = Action::kUnchanged;
        r.health = health::Assess(live_obj);
        return;
      }
      r.action = live_obj ? Action::kUpdate : Action::kCreate;
      // Fields other managers own are taken only when asked, or, with force_owned, on an object
      // that already carries this application's tracking id (correcting drift of our own object).
      bool ours = live_obj != nullptr && options_.force_owned &&
                  value::StringAt(live_obj, {"metadata", "annotations", kTrackingAnnotation}) ==
                      value::StringAt(&t.object, {"metadata", "annotations", kTrackingAnnotation});
      if (live_obj != nullptr && !options_.dry_run && live_.client_side_applied.count(Key(t.ref))) {
        Status adopted = AdoptInCluster(t.ref, *live_obj);
        if (!adopted.ok()) {
          r.failed = true;
          r.message = adopted.message();
          MutexLock lock(mu_);
          if (failures++ == 0) first_error = adopted.WithContext(t.source.empty() ? t.ref.ToString() : t.source);
          return;
        }
      }
      auto applied = Write(t, live_obj, ours);
      if (!applied.ok()) {
        r.failed = true;
        r.message = t.source.empty() ? applied.status().message()
                                     : fmt::format("{} ({})", applied.status().message(), t.source);
        MutexLock lock(mu_);
        if (failures++ == 0) first_error = applied.status().WithContext(t.source.empty() ? t.ref.ToString() : t.source);
        return;
      }
      if (cache_ != nullptr && !options_.dry_run) cache_->Observe(*applied);
      r.health = health::Assess(&applied.value());
      r.resource_version = value::StringAt(&applied.value(), {"metadata", "resourceVersion"});
      r.message = options_.dry_run ? "dry run" : "";
    });
    int applied = 0, unchanged = 0;
    for (size_t k = 0; k < results.size(); ++k) {
      if (skipped[k]) continue;
      ObjectResult& r = results[k];
      if (r.action == Action::kUnchanged) ++unchanged;
      else if (!r.failed) ++applied;
      state_.results.push_back(std::move(r));
    }
    Report({.step = plan_.step_names[i], .applied = applied, .unchanged = unchanged, .failed = failures,
            .line = fmt::format("{}: {} {}{}, {} unchanged{}", plan_.step_names[i], hooks ? "ran" : "applied", applied,
                                hooks ? " hooks" : "", unchanged, failures ? fmt::format(", {} failed", failures) : "")});
    if (failures > 1) return first_error.WithContext(fmt::format("{} objects failed, first", failures));
    if (!first_error.ok()) return first_error;
    if (std::count(skipped.begin(), skipped.end(), 1) > 0) return Stopped();
    return OkStatus();
  }

  // Writes one object as its sync options say: server-side apply (Force=true: taking conflicting
  // fields, and deleting and recreating it when the server refuses a change to an immutable
  // field, as `kubectl apply --force`), or with Replace=true a create or replace (PUT), or with
  // Replace=true and Force=true a delete and create (`kubectl replace --force`). Validate=false
  // has the server drop unknown fields; RespectIgnoreDifferences keeps the ignored fields' live values.
  Result<Value> Write(const Task& t, const Value* live_obj, bool ours) {
    const ObjectSyncOptions& so = t.sync_options;
    const ObjectSyncOptions& app = options_.object_defaults;
    bool force = internal::Enabled(so.force, app.force, options_.force);
    bool replace = internal::Enabled(so.replace, app.replace);
    bool validate = internal::Enabled(so.validate, app.validate, true);
    const Value* object = &t.object;
    Value respected;
    if (options_.respect_ignore_differences && live_obj != nullptr && !options_.diff.ignore.empty()) {
      respected = RespectIgnoreDifferences(t.object, *live_obj, options_.diff.ignore);
      object = &respected;
    }
    // Strict as `kubectl apply` (and so Argo CD) by default: a field the schema does not know is
    // an error, not silently dropped.
    kube::ApplyOptions apply{.force = force || ours, .dry_run = options_.dry_run,
                             .field_validation = validate ? kube::ApplyOptions::FieldValidation::kStrict
                                                          : kube::ApplyOptions::FieldValidation::kIgnore};
    if (!replace || options_.dry_run) {
      // A dry run of a replace is validated as an apply: the server has no dry run of a recreate.
      auto applied = writer_.Apply(*object, apply);
      // Only a change the server refuses as immutable is recreated: any other invalid object
      // would be refused by the create too, after the delete.
      if (applied.ok() || !force || replace || live_obj == nullptr || options_.dry_run ||
          applied.status().code() != Code::kInvalidArgument ||
          applied.status().message().find("immutable") == std::string::npos) {
        return applied;
      }
      log::Info("sync {}: {}: {}; Force=true: deleting and recreating it", options_.app, t.ref.ToString(),
                applied.status().message());
      GANTRY_RETURN_IF_ERROR(Recreate(t.ref));
      return writer_.Apply(*object, apply);
    }
    if (live_obj != nullptr && force) {
      GANTRY_RETURN_IF_ERROR(Recreate(t.ref));
      live_obj = nullptr;
    }
    if (live_obj == nullptr) return writer_.Create(*object, {.field_manager = "gantry"});
    // At the version read: a write made since is a conflict, not overwritten.
    Value put = *object;
    put.MutableGet("metadata")->Set("resourceVersion", value::StringAt(live_obj, {"metadata", "resourceVersion"}));
    return writer_.Replace(put);
  }

  // Deletes an object (foreground: its dependents first) and waits until it is gone.
  Status Recreate(const kube::ObjectRef& ref) {
    Status del = writer_.Delete(ref, {.propagation = kube::Propagation::kForeground});
    if (!del.ok() && del.code() != Code::kNotFound) return del.WithContext("delete to recreate");
    return WaitGone(ref);
  }

  // Writes the managedFields AdoptClientSideApply rewrote in `live` (ReadLive), so that the apply
  // that follows owns what `kubectl apply` owned and removes what Git no longer has. The patch
  // replaces metadata.resourceVersion with the one read, as csaupgrade's does, so it never
  // overwrites a write made since: on that conflict the object is read and adopted again, once.
  // The patch's errors otherwise (and a second conflict), with what was being done.
  Status AdoptInCluster(const kube::ObjectRef& ref, const Value& live) {
    constexpr char kWhat[] = "adopt the fields kubectl apply (client-side) manages";
    auto patched = writer_.JsonPatch(ref, AdoptionPatch(live));
    if (!patched.ok() && patched.status().code() == Code::kFailedPrecondition) {
      auto fresh = client_.Get(ref);
      if (!fresh.ok()) return fresh.status().WithContext(kWhat);
      if (!AdoptClientSideApply(*fresh, kube::ApplyOptions{}.field_manager)) return OkStatus();
      patched = writer_.JsonPatch(ref, AdoptionPatch(*fresh));
    }
    if (!patched.ok()) return patched.status().WithContext(kWhat);
    log::Info("sync {}: adopted {} from client-side apply (its fields are now managed by gantry)", options_.app,
              ref.ToString());
    return OkStatus();
  }

  // The JSON patch that writes `live`'s managedFields if it is still at its resourceVersion.
  static std::string AdoptionPatch(const Value& live) {
    const Value* managed = live.Find({"metadata", "managedFields"});
    Value replace_fields = Value::Map();
    replace_fields.Set("op", "replace");
    replace_fields.Set("path", "/metadata/managedFields");
    replace_fields.Set("value", managed != nullptr ? *managed : Value::Seq());
    Value replace_rv = Value::Map();
    replace_rv.Set("op", "replace");
    replace_rv.Set("path", "/metadata/resourceVersion");
    replace_rv.Set("value", value::StringAt(&live, {"metadata", "resourceVersion"}));
    Value patch = Value::Seq();
    patch.Append(std::move(replace_fields));
    patch.Append(std::move(replace_rv));
    return value::ToJson(patch);
  }

  // Applies a hook, waits for it to finish, and deletes it as its policies say.
  Status RunHook(Task& t, ObjectResult& r) {
    r.action = Action::kHook;
    auto has = [&](std::string_view p) {
      return std::find(t.hook_delete_policies.begin(), t.hook_delete_policies.end(), p) !=
             t.hook_delete_policies.end();
    };
    bool generated = !t.generate_name.empty();
    if (options_.dry_run) {
      if (std::string why = Unvalidated(t); !why.empty()) {
        r.message = fmt::format("would be created (not validated by the server: {})", why);
        return OkStatus();
      }
      auto dry = generated ? writer_.Create(t.object, {.field_manager = "gantry", .dry_run = true})
                           : writer_.Apply(t.object, {.dry_run = true});
      if (dry.ok()) r.message = "dry run";
      return dry.status();
    }
    if (has("BeforeHookCreation")) {
      if (generated) {
        // Each run has a new name: the earlier runs of this hook are found by its tracking id.
        GANTRY_RETURN_IF_ERROR(DeleteEarlierRuns(t));
      } else {
        Status del = writer_.Delete(t.ref, {.propagation = kube::Propagation::kForeground});
        if (!del.ok() && del.code() != Code::kNotFound) return del;
        GANTRY_RETURN_IF_ERROR(WaitGone(t.ref));
      }
    }
    auto applied = generated ? writer_.Create(t.object, {.field_manager = "gantry"})
                             : writer_.Apply(t.object, {.force = true});
    if (!applied.ok()) return applied.status();
    kube::ObjectRef ref = t.ref;
    if (generated) {
      ref.name = value::StringAt(&applied.value(), {"metadata", "name"});
      r.ref = ref;
    }
    auto deadline = clock_.Now() + options_.timeout;
    health::Health h{health::HealthStatus::kProgressing, ""};
    while (clock_.Now() < deadline && !Stopping()) {
      auto live = client_.Get(ref);
      if (!live.ok()) return live.status();
      h = health::Assess(&live.value());
      if (h.status == health::HealthStatus::kHealthy || h.status == health::HealthStatus::kDegraded) break;
      clock_.SleepFor(std::chrono::milliseconds(250));
    }
    r.health = h;
    bool ok = h.status == health::HealthStatus::kHealthy;
    if ((ok && has("HookSucceeded")) || (!ok && has("HookFailed"))) {
      Status del = writer_.Delete(ref, {.propagation = kube::Propagation::kBackground});
      if (!del.ok() && del.code() != Code::kNotFound) return del;
    }
    if (h.status == health::HealthStatus::kDegraded) return AbortedError("hook failed: {}", h.message);
    if (!ok && Stopping()) return Stopped();
    if (!ok) return DeadlineExceededError("hook did not finish within {} s", options_.timeout.count() / 1000);
    return OkStatus();
  }

  // Deletes the objects earlier syncs created for a generateName hook: those of its kind and
  // namespace that carry its tracking id (which ends in "GENERATENAME*").
  Status DeleteEarlierRuns(const Task& t) {
    std::string id = value::StringAt(&t.object, {"metadata", "annotations", kTrackingAnnotation});
    auto list = client_.List(t.ref.api_version, t.ref.kind, t.ref.namespace_,
                             {.label_selector = std::string(kAppLabel) + "=" + options_.app});
    if (!list.ok()) return list.status().WithContext("find earlier runs of the hook");
    for (const Value& item : list->items) {
      if (value::StringAt(&item, {"metadata", "annotations", kTrackingAnnotation}) != id) continue;
      Status del = writer_.Delete(kube::RefOf(item), {.propagation = kube::Propagation::kBackground});
      if (!del.ok() && del.code() != Code::kNotFound) return del;
    }
    return OkStatus();
  }

  Status WaitGone(const kube::ObjectRef& ref) {
    auto deadline = clock_.Now() + options_.timeout;
    while (clock_.Now() < deadline) {
      auto got = client_.Get(ref);
      if (!got.ok() && got.status().code() == Code::kNotFound) return OkStatus();
      if (!got.ok()) return got.status();
      if (Stopping()) return Stopped();
      clock_.SleepFor(std::chrono::milliseconds(200));
    }
    return DeadlineExceededError("{} was not deleted within {} s", ref.ToString(), options_.timeout.count() / 1000);
  }

  void RunSyncFailHooks() {
    for (Task& t : plan_.sync_fail_hooks) {
      ObjectResult r;
      r.ref = Shown(t);
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
    auto deadline = clock_.Now() + options_.timeout;
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
        if (clock_.Now() > deadline) {
          return DeadlineExceededError("{} not Established within {} s: {}", t.ref.ToString(),
                                       options_.timeout.count() / 1000, h.message);
        }
        if (Stopping()) return Stopped();
        clock_.SleepFor(std::chrono::milliseconds(100));
      }
      established = true;
      // Established comes before discovery lists the new kinds (the apiserver updates discovery
      // asynchronously): wait until every served version of the kind resolves.
      auto live = client_.Get(t.ref);
      if (!live.ok()) return live.status();
      const Value* spec = live->Get("spec");
      std::string group = value::StringAt(spec, {"group"});
      std::string kind = value::StringAt(spec, {"names", "kind"});
      const Value* versions = spec ? spec->Get("versions") : nullptr;
      for (size_t v = 0; versions != nullptr && v < versions->size(); ++v) {
        const Value* ver = versions->At(v);
        const Value* served = ver->Get("served");
        if (served == nullptr || !served->IsBool() || !served->AsBool()) continue;
        std::string api_version = group + "/" + value::StringAt(ver, {"name"});
        while (true) {
          client_.InvalidateDiscovery();
          auto info = client_.Resolve(api_version, kind);
          if (info.ok()) break;
          if (info.status().code() != Code::kNotFound) return info.status();
          if (clock_.Now() > deadline) {
            return DeadlineExceededError("{} is Established but the server does not serve {} {} within {} s",
                                         t.ref.ToString(), api_version, kind, options_.timeout.count() / 1000);
          }
          clock_.SleepFor(std::chrono::milliseconds(100));
        }
      }
    }
    if (established) client_.InvalidateDiscovery();
    return OkStatus();
  }

  // Waits until every object is Healthy; Degraded fails. Objects of kinds the cache holds are read
  // from it, and the wait for them ends on the watch event that changes them; the others are
  // polled (one list per kind and namespace, every 250 ms).
  Status WaitHealthy(const std::vector<kube::ObjectRef>& refs) {
    std::map<std::tuple<std::string, std::string, std::string>, std::vector<kube::ObjectRef>> groups;
    for (const auto& r : refs) groups[{r.api_version, r.kind, r.namespace_}].push_back(r);
    auto deadline = clock_.Now() + options_.timeout;
    std::map<std::string, health::Health> last;
    // Since when each object has been Degraded without a break. Degraded ends the wait only once it
    // has lasted kDegradedGrace: a controller may report a state once more before it re-evaluates
    // our write (a Deployment rolled back to an existing ReplicaSet after its progress deadline
    // passed reports ProgressDeadlineExceeded at the new generation, then progresses), and the
    // watch shows every such state.
    std::map<std::string, std::chrono::steady_clock::time_point> degraded_since;
    while (true) {
      bool all = true;
      std::optional<std::chrono::steady_clock::time_point> look_again;  // when a Degraded one is final
      bool polled = false;  // a group was read from the API: the cache cannot tell when it changes
      uint64_t generation = cache_ ? cache_->Generation() : 0;
      for (const auto& [g, members] : groups) {
        const auto& [api_version, kind, ns] = g;
        Result<kube::ObjectList> list = kube::ObjectList{};
        if (auto cached = cache_ ? cache_->ByIndex(api_version, kind, ns, options_.app)
                                 : Result<std::vector<Value>>(FailedPreconditionError("no cache"));
            cached.ok()) {
          list->items = *std::move(cached);
        } else {
          polled = true;
          list = client_.List(api_version, kind, ns, {.label_selector = std::string(kAppLabel) + "=" + options_.app});
        }
        if (!list.ok()) return list.status();
        std::map<std::string, const Value*> by_key;
        for (const Value& item : list->items) by_key[Key(kube::RefOf(item))] = &item;
        for (const auto& r : members) {
          auto it = by_key.find(Key(r));
          health::Health h = health::Assess(it == by_key.end() ? nullptr : it->second);
          last[Key(r)] = h;
          if (h.status == health::HealthStatus::kDegraded) {
            auto since = degraded_since.try_emplace(Key(r), clock_.Now()).first->second;
            if (clock_.Now() - since >= kDegradedGrace) {
              UpdateHealth(last);
              return AbortedError("{} is Degraded: {}", r.ToString(), h.message);
            }
            look_again = std::min(look_again.value_or(since + kDegradedGrace), since + kDegradedGrace);
          } else {
            degraded_since.erase(Key(r));
          }
          if (h.status != health::HealthStatus::kHealthy && h.status != health::HealthStatus::kSuspended) {
            all = false;
          }
        }
      }
      UpdateHealth(last);
      if (all) return OkStatus();
      if (Stopping()) return Stopped();
      if (clock_.Now() >= deadline) {
        for (const auto& r : refs) {
          const health::Health& h = last[Key(r)];
          if (h.status != health::HealthStatus::kHealthy && h.status != health::HealthStatus::kSuspended) {
            return DeadlineExceededError("{} not healthy after {} s: {} {}", r.ToString(),
                                         options_.timeout.count() / 1000, health::Name(h.status), h.message);
          }
        }
      }
      if (polled) {
        clock_.SleepFor(std::chrono::milliseconds(250));
      } else {
        // Every object is read from the cache: the next change to it is the next event. The wait
        // is cut into slices only to look again at a cache that may have stopped being synced;
        // a stopped cache (it changes no more) is polled. With Options::stop the slices are short,
        // so that a stop is seen within 250 ms.
        auto slice = options_.stop ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
        auto until = std::min({deadline, clock_.Now() + slice,
                               look_again.value_or(std::chrono::steady_clock::time_point::max())});
        if (!cache_->WaitForChange(generation, clock_, until) && clock_.Now() < until) {
          clock_.SleepFor(std::chrono::milliseconds(250));
        }
      }
    }
  }

  void UpdateHealth(const std::map<std::string, health::Health>& h) {
    for (auto& r : state_.results) {
      if (r.action == Action::kPrune || r.action == Action::kHook) continue;
      if (auto it = h.find(Key(r.ref)); it != h.end()) r.health = it->second;
    }
  }

  // Prunes what the inventory has and the render no longer does. Objects annotated PruneLast=true
  // wait for PruneLast(), unless the whole prune is already last.
  Status Prune() {
    std::vector<kube::ObjectRef> candidates;
    for (const auto& r : inventory_) {
      if (!desired_keys_.count(Key(r))) candidates.push_back(r);
    }
    return PruneObjects(std::move(candidates), /*last=*/options_.prune_last, "prune");
  }

  // The prune of the objects annotated PruneLast=true, after the PostSync hooks.
  Status PruneLast() {
    std::vector<kube::ObjectRef> last;
    {
      MutexLock lock(mu_);
      last.swap(prune_last_);
      for (const auto& r : last) kept_after_prune_.erase(Key(r));
    }
    if (last.empty()) return OkStatus();
    return PruneObjects(std::move(last), /*last=*/true, "prune last");
  }

  // Prune=confirm: whether a live object may be pruned now. The first time, it is marked with the
  // time its prune became pending (a JSON patch adding kPrunePendingAnnotation); it may be pruned
  // once options_.prune_approved_at is at or after that mark. A dry run marks nothing.
  Result<bool> PruneConfirmed(const kube::ObjectRef& ref, const Value& live) {
    std::string pending = value::StringAt(&live, {"metadata", "annotations", kPrunePendingAnnotation});
    if (pending.empty()) {
      if (options_.dry_run) return false;
      std::string key = kPrunePendingAnnotation;
      size_t slash = key.find('/');
      key.replace(slash, 1, "~1");
      Value op = Value::Map();
      op.Set("op", "add");
      op.Set("path", "/metadata/annotations/" + key);
      op.Set("value", Rfc3339(clock_.WallNow()));
      Value patch = Value::Seq();
      patch.Append(std::move(op));
      auto patched = writer_.JsonPatch(ref, value::ToJson(patch));
      if (!patched.ok()) return patched.status().WithContext("mark the prune as waiting for confirmation");
      return false;
    }
    auto since = ParseRfc3339(pending);
    if (!since) {
      return InvalidArgumentError("annotation {} is not an RFC 3339 time: {:?}", kPrunePendingAnnotation, pending);
    }
    return options_.prune_approved_at.has_value() && *options_.prune_approved_at >= *since;
  }

  Status PruneObjects(std::vector<kube::ObjectRef> candidates, bool last, std::string_view step) {
    {
      MutexLock lock(mu_);
      for (const auto& r : inventory_) {
        if (desired_keys_.count(Key(r))) kept_after_prune_.insert(Key(r));
      }
    }
    if (candidates.empty()) return OkStatus();
    if (desired_keys_.empty() && !options_.allow_empty) {
      MutexLock lock(mu_);
      for (const auto& r : candidates) kept_after_prune_.insert(Key(r));
      return FailedPreconditionError(
                 "refusing to prune all {} objects of {}: the render is empty (allow it explicitly to prune "
                 "everything)", candidates.size(), options_.app)
          .set_reason(kReasonPruneBlocked);
    }
    std::vector<ObjectResult> results(candidates.size());
    std::atomic<int> failures{0};
    ParallelFor(candidates.size(), options_.parallelism, [&](size_t k) {
      const kube::ObjectRef& ref = candidates[k];
      ObjectResult& r = results[k];
      r.ref = ref;
      r.step = std::string(step);
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
        MutexLock lock(mu_);
        kept_after_prune_.insert(Key(ref));
      };
      const Value* ann = live->Find({"metadata", "annotations"});
      std::string tracking = value::StringAt(ann, {kTrackingAnnotation});
      if (tracking != TrackingId(options_.app, ref)) {
        r.action = Action::kPruneSkipped;
        r.message = tracking.empty() ? "no longer tracked by Gantry" : "now tracked by " + tracking;
        return;  // not ours any more: dropped from the inventory, left in the cluster
      }
      PruneMode mode = internal::PruneModeOf(*live, options_);
      if (mode == PruneMode::kDisabled) return skip("prune disabled (Prune=false)");
      if (!last && SyncOptionSetLive(*live, "PruneLast=true")) {
        MutexLock lock(mu_);
        prune_last_.push_back(ref);
        kept_after_prune_.insert(Key(ref));
        r.action = Action::kPruneSkipped;
        r.message = "PruneLast: pruned after the other objects";
        return;
      }
      if (!options_.prune_dangerous &&
          (ref.kind == "Namespace" || ref.kind == "PersistentVolumeClaim" || ref.kind == "CustomResourceDefinition")) {
        return skip(fmt::format("a {} is pruned only with explicit confirmation", ref.kind));
      }
      if (mode == PruneMode::kConfirm) {
        auto confirmed = PruneConfirmed(ref, *live);
        if (!confirmed.ok()) {
          r.failed = true;
          r.message = confirmed.status().message();
          MutexLock lock(mu_);
          kept_after_prune_.insert(Key(ref));
          ++failures;
          return;
        }
        if (!*confirmed) {
          return skip(fmt::format("waiting for confirmation (Prune=confirm): gantry app confirm-prune {}", options_.app));
        }
      }
      const Value* uid = live->Find({"metadata", "uid"});
      Status s = writer_.Delete(ref, {.propagation = options_.prune_propagation,
                                      .dry_run = options_.dry_run,
                                      .precondition_uid = uid && uid->IsString() ? std::optional<std::string>(uid->AsString())
                                                                                  : std::nullopt});
      if (!s.ok() && s.code() != Code::kNotFound) {
        r.failed = true;
        r.message = s.message();
        MutexLock lock(mu_);
        kept_after_prune_.insert(Key(ref));
        ++failures;
        return;
      }
      // Foreground: the object stays (with the foregroundDeletion finalizer) until the garbage
      // collector has deleted its dependents; the prune waits for that, within the timeout, so
      // "pruned" means gone and what runs after the prune (PostSync hooks, PruneLast) comes after.
      if (!options_.dry_run && s.ok() && options_.prune_propagation == kube::Propagation::kForeground) {
        Status gone = WaitGone(ref);
        if (gone.code() == Code::kDeadlineExceeded) {
          r.health = {health::HealthStatus::kProgressing, "deleting"};
          r.message = fmt::format("deletion started; its dependents were not deleted within {} s (foreground)",
                                  options_.timeout.count() / 1000);
          return;
        }
      }
      if (cache_ != nullptr && !options_.dry_run) cache_->ObserveDeleted(ref);
      r.health = {health::HealthStatus::kMissing, "pruned"};
      r.message = options_.dry_run ? "dry run" : "pruned";
    });
    int pruned = 0, skipped = 0;
    std::set<std::string> deferred;
    {
      MutexLock lock(mu_);
      for (const auto& d : prune_last_) deferred.insert(Key(d));
    }
    for (auto& r : results) {
      if (r.action == Action::kPrune && !r.failed) ++pruned;
      if (r.action == Action::kPruneSkipped && !deferred.count(Key(r.ref))) ++skipped;
      // A PruneLast object is reported once, by the prune that deletes it.
      if (!deferred.count(Key(r.ref))) state_.results.push_back(std::move(r));
    }
    Report({.step = std::string(step), .applied = pruned, .unchanged = skipped, .failed = failures.load(),
            .line = fmt::format("{}: {} pruned, {} kept", step, pruned, skipped)});
    if (failures > 0) return InternalError("{} objects could not be pruned", failures.load());
    return OkStatus();
  }

  kube::Client& client_;
  Options options_;
  // The application's own writes (apply, hooks, prune) go through the tenant client when there is
  // one, so the server's RBAC bounds them; reads, the inventory and the namespace stay Gantry's.
  kube::Client& writer_ = options_.tenant ? *options_.tenant : client_;
  ProgressFn progress_;
  kube::Cache* cache_ = nullptr;  // optional: records writes, serves health waits
  Clock& clock_ = options_.clock ? *options_.clock : SystemClock();
  State state_;
  SyncPlan plan_;
  std::vector<Stage> stages_;
  size_t next_ = 0;
  std::atomic<bool> terminate_{false};
  std::atomic<bool> stopped_inside_{false};  // a step left objects unapplied for Stopping()
  size_t desired_count_ = 0;
  uint64_t requests_at_start_ = 0;
  std::set<std::string> desired_keys_;
  std::vector<Task> prepared_tasks_;
  Live live_;                                   // from ReadLive, or the caller
  Comparison comparison_;
  bool have_live_ = false;
  std::vector<kube::ObjectRef> inventory_;
  // Dry run: namespaces and CRDs ("group/Kind" → CRD name) this sync creates that do not exist yet.
  std::set<std::string> pending_namespaces_;
  std::map<std::string, std::string> pending_kinds_;
  Mutex mu_;
  std::set<std::string> kept_after_prune_ GUARDED_BY(mu_);
  std::vector<kube::ObjectRef> prune_last_ GUARDED_BY(mu_);  // annotated PruneLast=true: pruned by PruneLast()
  std::string last_inventory_;
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
    case Action::kSkipped: return "skipped";
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
  GANTRY_ASSIGN_OR_RETURN(Prepared prepared, Prepare(client, std::move(desired), options));
  return std::unique_ptr<Operation>(
      std::make_unique<OperationImpl>(client, std::move(prepared), std::move(options), std::move(progress), nullptr));
}

std::unique_ptr<Operation> Operation::Start(kube::Client& client, Prepared prepared, Live live, Comparison comparison,
                                            Options options, ProgressFn progress, kube::Cache* cache) {
  auto op = std::make_unique<OperationImpl>(client, std::move(prepared), std::move(options), std::move(progress), cache);
  op->UseLive(std::move(live), std::move(comparison));
  return op;
}

}  // namespace gantry::sync
