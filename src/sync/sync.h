#pragma once
// sync: the engine shared by the push deployer and the pull agent. It applies the rendered
// manifests of one application to one cluster, prunes what the application no longer renders, and
// waits for health.
//
// The algorithm (after gitops-engine's pkg/sync):
//  1. Prepare: every desired object gets the tracking label `gantry.dev/app: APP` and annotation
//     `gantry.dev/tracking-id: APP:GROUP/KIND:NAMESPACE/NAME`; namespaced objects without a namespace
//     get the destination namespace. Invalid objects (no kind, bad apiVersion, a cluster-scoped kind
//     with a namespace, duplicates) fail the whole sync before anything is applied.
//     A hook may have metadata.generateName instead of a name: it is created (POST) and known by
//     the name the server gives it; its tracking id ends in "GENERATENAME*".
//     The application's project (Options::project) is checked here, for every object, before
//     anything is applied: one place for push, pull and `gantry sync`; then the images of the
//     objects against its verification rules (Options::check_images), which pins them to digests.
//  2. Plan (pure, Plan()): objects are ordered into steps. Hooks (annotation gantry.dev/hook,
//     argocd.argoproj.io/hook or helm.sh/hook: PreSync, Sync, PostSync, SyncFail, Helm's pre-/post-
//     install/upgrade) run in their phase, wave by wave; Helm test hooks are skipped. Within the sync
//     phase, Namespaces and CustomResourceDefinitions come first (and CRDs must be Established before
//     anything else is applied), then waves (gantry.dev/sync-wave or argocd.argoproj.io/sync-wave,
//     else helm.sh/hook-weight; an integer, default 0) in ascending order, and within a wave a kind order (Namespaces,
//     policies, ServiceAccounts, Secrets, ConfigMaps, storage, RBAC, Services before workloads) then
//     namespace and name. Objects of one step are applied in parallel.
//  3. Apply: server-side apply with field manager "gantry" (force only when asked); with
//     apply_out_of_sync_only, objects the diff finds Synced are skipped, so a no-op re-sync writes
//     nothing. Objects whose CRD was created in the same sync are resolved after discovery refreshes.
//     An object `kubectl apply` (client-side) manages is adopted first (AdoptClientSideApply), so
//     the apply removes the fields Git no longer has.
//  4. Prune: the inventory (a ConfigMap `gantry-inventory-APP` in the inventory namespace, listing
//     every object the application applied) minus what is desired now. Nothing is pruned when the
//     render is empty (unless allow_empty), when the object is annotated gantry.dev/prune: disabled
//     (or argocd.argoproj.io/sync-options: Prune=false), when it no longer carries this
//     application's tracking id, or — for Namespaces, PersistentVolumeClaims and CRDs — without
//     prune_dangerous. Pruning runs after all waves are applied (and healthy when waiting), before
//     the PostSync hooks; with prune_last it runs after the PostSync hooks instead.
//  5. Wait: after each wave, and at the end with wait_for_health, until every object is Healthy;
//     Degraded ends the wait with an error; a timeout bounds it. Kinds a cache holds are read from
//     it and the wait ends on the watch event that changes them; other kinds are polled (one list
//     per kind and namespace every 250 ms).
//
// The operation is a step-driven state object: Step() does one bounded piece of work and returns,
// State() tells where it is, Terminate() stops it between steps, and Options::stop also inside a
// step's waits (a health wait ends within 250 ms of it). Run() loops Step() to the end.
// Not thread-safe: one thread drives an Operation (it uses a worker pool internally).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "diff/diff.h"
#include "health/health.h"
#include "kube/cache.h"
#include "kube/kube.h"
#include "project/project.h"
#include "value/value.h"

namespace gantry::sync {

inline constexpr char kAppLabel[] = "gantry.dev/app";
inline constexpr char kTrackingAnnotation[] = "gantry.dev/tracking-id";
inline constexpr char kInventoryLabel[] = "gantry.dev/inventory";

// Reasons of the Status of a failed operation (State::error).
inline constexpr char kReasonPruneBlocked[] = "PruneBlocked";  // prune refused (empty render)
inline constexpr char kReasonOwnedByOther[] = "OwnedByOtherApp";  // an object carries another app's tracking id

// kSkipped: never applied, never pruned, reported as skipped with Task::skip_reason: a Helm test
// hook (helm.sh/hook: test, test-success, test-failure), which runs only on `helm test`; a Helm
// delete or rollback hook (pre-delete, post-delete, pre-rollback, post-rollback), which a sync never
// runs (Argo CD ignores them too); an Argo CD PostDelete hook (Gantry does not act on an
// application's deletion); and an object annotated with the hook Skip.
enum class HookPhase { kNone, kPreSync, kSync, kPostSync, kSyncFail, kSkipped };
std::string_view Name(HookPhase p);  // "PreSync", ..., "skipped"

enum class Action {
  kCreate,     // not in the cluster
  kUpdate,     // in the cluster, out of sync
  kUnchanged,  // in sync: skipped (apply_out_of_sync_only)
  kApply,      // applied without looking first
  kPrune,      // in the inventory, no longer rendered
  kPruneSkipped,
  kHook,
  kSkipped,    // not applied: a Helm test hook
};
std::string_view Name(Action a);

// Sync options: Argo CD's, under the same names, on an object (annotation
// argocd.argoproj.io/sync-options or gantry.dev/sync-options, comma-separated "Name=value") or on
// an application (Argo CD's spec.syncPolicy.syncOptions; `gantry sync --sync-option`), where an
// object-level option is the default for every object of the application. An object's own
// annotation wins over its application. docs/argo-cd-compatibility.md says what each one does.
//   Replace=true            create, or replace (PUT) instead of server-side apply; with Force=true
//                           delete and recreate (kubectl replace --force)
//   Force=true              apply taking the fields other managers own (with Replace: recreate)
//   ServerSideApply=true|false  accepted; Gantry always applies server-side (false: a warning)
//   Validate=false          sent as fieldValidation=Ignore (else Strict, as kubectl apply); the
//                           apiserver's server-side apply still refuses undeclared fields
//   SkipDryRunOnMissingResource=true  a custom resource whose kind the cluster does not serve yet
//                           (and no CRD in the sync defines) is accepted: not validated before
//                           the sync, applied when the sync reaches it
//   Prune=false|confirm     never pruned | pruned only once a person confirms (Options::prune_approved_at)
//   Delete=false|confirm    accepted: Gantry never deletes an application's objects when the
//                           application is deleted (there is no cascading delete to opt out of)
//   PruneLast=true          (object) pruned after every other prune and the PostSync hooks
//   Application only: CreateNamespace=true, PruneLast=true, ApplyOutOfSyncOnly=true|false,
//   FailOnSharedResource=true (always Gantry's behaviour: CheckOwnership), RespectIgnoreDifferences=true,
//   PrunePropagationPolicy=foreground|background|orphan, Prune=true (gantry: prune), ForceConflicts=true|false
//   (gantry: force, force_owned).
enum class Tristate { kUnset, kFalse, kTrue };
enum class PruneMode { kUnset, kPrune, kDisabled, kConfirm };
struct ObjectSyncOptions {
  Tristate replace = Tristate::kUnset;
  Tristate force = Tristate::kUnset;
  Tristate validate = Tristate::kUnset;
  Tristate skip_dry_run_on_missing = Tristate::kUnset;
  Tristate prune_last = Tristate::kUnset;
  PruneMode prune = PruneMode::kUnset;
  PruneMode delete_ = PruneMode::kUnset;  // kDisabled (Delete=false), kConfirm (Delete=confirm)
};

// The annotation's options of one object. InvalidArgument naming the annotation, the object
// (`where`) and the option when one is unknown, malformed, or only valid on an application
// (e.g. CreateNamespace=true on an object).
Result<ObjectSyncOptions> ReadSyncOptions(const value::Value& object, std::string_view where);

struct Options;
// Reads an application's sync options into `options` (see the list above). InvalidArgument naming
// the option and `where` ("spec.syncPolicy.syncOptions of Application NS/NAME") for an unknown or
// malformed option. A known option that Gantry accepts without the effect it has in Argo CD
// (ServerSideApply=false) adds a line to `warnings`.
Status ReadSyncOptions(const std::vector<std::string>& list, std::string_view where, Options& options,
                       std::vector<std::string>* warnings);

// RespectIgnoreDifferences (pure): `desired` with the fields the ignoreDifferences rules that match
// it name by JSON pointer set to their value in `live` (removed when live has none), so that
// applying it does not revert them. Only fields under a parent desired writes are taken; rules by
// managers are not (which fields a manager owns is not a value the apply can carry).
value::Value RespectIgnoreDifferences(const value::Value& desired, const value::Value& live,
                                      const std::vector<diff::IgnoreRule>& rules);

// The time a person approves pending prunes with (annotation gantry.dev/prune-approved or
// argocd.argoproj.io/deletion-approved of an Application, RFC 3339). The live object of a
// Prune=confirm prune is marked with annotation kPrunePendingAnnotation the first time a sync
// would prune it; it is pruned by the first sync whose approval is at or after that mark.
inline constexpr char kPrunePendingAnnotation[] = "gantry.dev/prune-pending-since";

// One object in the plan.
struct Task {
  value::Value object;        // desired (tracking added), or the live object for prunes
  kube::ObjectRef ref;        // a hook with metadata.generateName has no name until it is created
  std::string generate_name;  // metadata.generateName of such a hook
  std::string source;         // file:line of the manifest, when known
  HookPhase hook = HookPhase::kNone;
  std::vector<std::string> hook_delete_policies;  // HookSucceeded, HookFailed, BeforeHookCreation
  std::string skip_reason;    // why a kSkipped task is not applied
  int wave = 0;
  int step = 0;               // index of the step it belongs to (filled by Plan)
  bool is_namespace_or_crd = false;
  bool namespaced = true;     // the kind's scope (Prepare)
  ObjectSyncOptions sync_options;  // its annotation's (Prepare)
  // SkipDryRunOnMissingResource: the cluster does not serve its kind (nor does a CRD of this sync
  // define it): not validated, applied when the sync reaches it.
  bool kind_missing = false;
};

// Tasks grouped into the ordered steps of the algorithm above. Pure.
struct SyncPlan {
  std::vector<std::vector<Task>> steps;  // applied one step after another
  std::vector<std::string> step_names;   // "namespaces and CRDs", "wave 0", "PreSync hooks"...
  std::vector<Task> sync_fail_hooks;     // run only when the sync fails
  std::vector<Task> skipped;             // kSkipped tasks: never applied
};
SyncPlan Plan(std::vector<Task> tasks);

// The position of a kind in the apply order (lower first); unknown kinds after all known ones.
int KindOrder(std::string_view kind);

// Reads the wave, hook phase and delete policies of an object from its gantry.dev/ or Argo CD
// annotations. InvalidArgument naming the annotation for a malformed value.
Status ReadAnnotations(const value::Value& object, Task& task);

// Checks (and may rewrite) the images of a sync's objects before anything is applied
// (Options::check_images; sign::ImagePolicy::For makes one).
using ImageCheck = std::function<Status(std::span<value::Value* const> objects)>;

struct Options {
  // Required: the application's tracking key: its name, or NAMESPACE_NAME for a pull-mode
  // Application outside the agent's own namespace (names and namespaces have no '_'). It is the
  // value of the label gantry.dev/app and the first part of every tracking id.
  std::string app;
  std::string default_namespace = "default";
  std::string inventory_namespace;     // default: default_namespace
  bool prune = false;
  bool prune_last = false;
  bool prune_dangerous = false;        // allows pruning Namespaces, PVCs and CRDs
  bool allow_empty = false;            // allows pruning everything when the render is empty
  bool dry_run = false;                // server-side dry run: nothing is persisted
  bool apply_out_of_sync_only = true;
  bool create_namespace = false;       // create default_namespace when missing
  bool force = false;                  // take over fields other managers own, on every object
  bool force_owned = false;            // ... only on objects that already carry this app's tracking id
                                       // (self-heal: correcting drift of our own objects)
  // The application's writes (apply, hooks, prune) go through this client when set: one that
  // impersonates the project's ServiceAccount (kube::Client::Impersonate), so the server's RBAC
  // bounds what the application can do. Reads, the inventory and create_namespace use the client.
  kube::Client* tenant = nullptr;
  // The application's project: Prepare refuses the whole sync (PermissionDenied, reason
  // project::kReasonDenied, naming the object, the rule and the project) when an object's kind or
  // namespace is outside it, before anything touches the cluster. Push, pull and `gantry sync` all
  // pass one (project::DefaultProject() when none is configured); nullptr only in engine tests.
  const project::Project* project = nullptr;
  // Checks the images the objects run before anything is applied, and may rewrite their image
  // fields (pinning a verified tag to its digest): the project's verification rules
  // (sign::ImagePolicy::For). Prepare calls it once with every object after the project's checks;
  // an error fails the whole sync (its reason is project::kReasonImageVerification). Empty: none.
  ImageCheck check_images;
  std::string cluster_server;  // the destination cluster's API URL, for the project's destinations
  std::string cluster_name;    // ... and its name ("in-cluster" for a pull agent's own)
  // Sync options (see ReadSyncOptions): the defaults of every object, which its annotation overrides.
  ObjectSyncOptions object_defaults;
  // Whether an object of a kind that is not served is refused (false) or accepted (see
  // SkipDryRunOnMissingResource) is in object_defaults/the object's annotation.
  bool respect_ignore_differences = false;  // fields diff.ignore matches keep their live value
  kube::Propagation prune_propagation = kube::Propagation::kForeground;  // of prunes
  // When a person approved pending prunes (Prune=confirm); unset: none approved.
  std::optional<std::chrono::system_clock::time_point> prune_approved_at;
  // CreateNamespace's managedNamespaceMetadata: labels and annotations of the namespace it creates,
  // applied (server-side, so only these fields are Gantry's) on every sync.
  std::map<std::string, std::string> namespace_labels;
  std::map<std::string, std::string> namespace_annotations;
  bool wait_for_health = false;        // wait for every object to be Healthy at the end
  std::chrono::milliseconds timeout{300'000};  // for each health wait
  int parallelism = 32;
  diff::Options diff;
  Clock* clock = nullptr;              // waits and timeouts; nullptr: SystemClock()
  // Asked while the operation runs: before each step, before each object of a wave is applied,
  // in every health wait (at least every 250 ms), between the polls of a hook, a CRD or a
  // deletion. True stops it as Terminate() does, without waiting for the step to end: the state
  // becomes Terminated and nothing more is applied (the objects being applied at that moment are
  // finished first). Called from the thread that drives the operation and from its apply threads,
  // so it must be thread-safe (read atomics). nullptr: only Terminate().
  std::function<bool()> stop;
};

// What happened to one object.
struct ObjectResult {
  kube::ObjectRef ref;
  Action action = Action::kApply;
  bool failed = false;
  health::Health health{health::HealthStatus::kUnknown, ""};
  std::string message;
  std::string step;
  std::string resource_version;  // of the object as this operation wrote it ("" : not written)
};

enum class Phase { kRunning, kSucceeded, kFailed, kTerminated };
std::string_view Name(Phase p);

struct State {
  Phase phase = Phase::kRunning;
  std::string message;       // what it is doing, or why it failed
  Status error;              // why it failed (with a reason, e.g. kReasonPruneBlocked), OK otherwise
  std::vector<ObjectResult> results;  // in plan order
  uint64_t requests = 0;     // API requests made by this operation
};

// Identity of an object independent of its API version: "group/Kind/namespace/name".
std::string ObjectKey(const kube::ObjectRef& ref);
// The tracking id Prepare writes: "APP:GROUP/KIND:NAMESPACE/NAME".
std::string TrackingId(std::string_view app, const kube::ObjectRef& ref);

// The desired state of one application, validated, tracked and planned (step 1 and 2 above).
struct Prepared {
  std::string app;
  std::vector<Task> tasks;  // in input order: every object, hooks included
  SyncPlan plan;
};

// Step 1 and 2: validates the desired objects (their Marks name the source in errors), resolves
// their scope (Resolve; kinds defined by CRDs in the same render count as served), defaults
// namespaces and adds tracking. InvalidArgument naming the object; nothing touches the cluster
// but discovery.
Result<Prepared> Prepare(kube::Client& client, std::vector<value::Value> desired, const Options& options);

// Where live objects may be read from besides the API: caches (kube/cache.h) of the objects
// Gantry manages (label gantry.dev/app, indexed by it) and of inventories (label
// gantry.dev/inventory, indexed by it). A kind a cache has not synced is read from the API.
struct LiveSources {
  kube::Cache* objects = nullptr;
  kube::Cache* inventories = nullptr;
};

// A watch cache (kube/cache.h) of one application for one sync, for push mode (the agent keeps
// caches of every application for as long as it runs): the objects labelled gantry.dev/app=APP,
// indexed by that label, of every kind `prepared` applies (hooks excepted), in the one namespace
// of its namespaced objects when they share one (so the credentials need no more than that
// namespace), else in all namespaces. The watches start together; it waits up to `wait` for their
// first lists. A kind the server does not serve yet (its CRD comes with the application) or whose
// first list is late (or refused) is read from the API by ReadLive and the operation, as without
// a cache. Destroy it before `client`.
std::unique_ptr<kube::Cache> WatchApplication(kube::Client& client, const Prepared& prepared, const Options& options,
                                              std::chrono::milliseconds wait);

// What the cluster holds of one application.
struct Live {
  std::map<std::string, value::Value> objects;  // by ObjectKey: desired objects that exist
  std::map<std::string, value::Value> extra;    // by ObjectKey: inventory objects no longer desired, still ours
  std::vector<kube::ObjectRef> inventory;       // as recorded
  std::string stored_inventory;                 // data.objects of the inventory ConfigMap ("" : none)
  // ObjectKeys of objects that `kubectl apply` (client-side) managed: their managedFields in
  // `objects` are already rewritten by AdoptClientSideApply (so Compare sees what Gantry will own);
  // the operation writes that rewrite (a JSON patch with the read resourceVersion as precondition)
  // before it applies the object.
  std::set<std::string> client_side_applied;
};

// Adopting what `kubectl apply` created. Client-side apply records its fields in managedFields
// entries of operation Update with the managers in kClientSideApplyManagers (`kubectl apply`
// without --server-side, older kubectl, and the fields an object had before its first server-side
// apply). Server-side apply as Gantry would leave them the owners of every field, so a field
// removed from Git would stay in the cluster. AdoptClientSideApply rewrites `live`'s managedFields
// as client-go's csaupgrade.UpgradeManagedFields does: for each such manager, its entries (no
// subresource) are folded into `field_manager`'s Apply entry (the union of the field sets of the
// entry of the same apiVersion; when Gantry has no Apply entry yet, the most recent such entry
// becomes it) and removed. The last-applied-configuration annotation is among the fields it then
// owns, so the next apply removes it. True when it changed anything; pure.
inline constexpr const char* kClientSideApplyManagers[] = {"kubectl-client-side-apply", "kubectl",
                                                           "before-first-apply"};
bool AdoptClientSideApply(value::Value& live, std::string_view field_manager);

// Reads the live state of a prepared application: labelled objects (from the cache, else one
// labelled list per kind and namespace), desired objects not found labelled (one Get each: they
// may exist unlabelled), the inventory and the inventory objects no longer desired.
// Desired objects managed by client-side apply are adopted in memory (AdoptClientSideApply, as the
// field manager of kube::ApplyOptions) and listed in Live::client_side_applied.
Result<Live> ReadLive(kube::Client& client, const Prepared& prepared, const Options& options,
                      const LiveSources& sources = {});

// One entry per desired object (hooks excepted) and per extra object, with its sync status and the
// health of its live object.
struct DiffEntry {
  kube::ObjectRef ref;
  diff::SyncStatus status;
  std::string text;  // RenderDiff output (Diff only; empty when Synced)
  health::Health health{health::HealthStatus::kUnknown, ""};  // of the live object (Missing: none)
  // Diff only: a hook, which every sync creates anew (status Missing, text says so). Not a
  // difference: an application whose objects are in sync is in sync whatever its hooks.
  HookPhase hook = HookPhase::kNone;
};
struct Comparison {
  std::vector<DiffEntry> entries;
  size_t out_of_sync = 0;
  // The sync status of an object by ObjectKey (kMissing when unknown).
  diff::SyncStatus StatusOf(const kube::ObjectRef& ref) const;
  std::map<std::string, size_t> index;  // ObjectKey → entries[i]
};

// Compares (pure): desired against live, object by object, with options.diff.
Result<Comparison> Compare(const Prepared& prepared, const Live& live, const Options& options);

// No silent takeover (pure): PermissionDenied with reason kReasonOwnedByOther, naming the object,
// its source and its owner, when a desired object exists with another application's tracking id.
// An object without a tracking id is adopted (server-side apply still reports field conflicts).
// Every operation checks it after reading the cluster, before applying anything.
Status CheckOwnership(const Prepared& prepared, const Live& live);

// Called at each step boundary with what happened.
struct Progress {
  std::string step;        // "wave 0", "prune", ... ("" for the final line)
  int applied = 0;         // objects applied (or hooks run, or objects pruned)
  int unchanged = 0;       // skipped as in sync (or kept by prune)
  int failed = 0;
  std::string line;        // for the user: "wave 0: applied 12, 3 unchanged"
};
using ProgressFn = std::function<void(const Progress&)>;

class Operation {
 public:
  // Prepares an operation over the desired objects; it reads the cluster in its first step.
  // InvalidArgument when the objects or options are invalid, before anything touches the cluster.
  static Result<std::unique_ptr<Operation>> Create(kube::Client& client,
                                                   std::vector<value::Value> desired,
                                                   Options options, ProgressFn progress = nullptr);
  // An operation over an application already prepared, read and compared (the agent's pass): it
  // neither reads nor compares again. `cache` (optional) records the writes at once and serves
  // health waits. `live` and `comparison` must come from `prepared`.
  static std::unique_ptr<Operation> Start(kube::Client& client, Prepared prepared, Live live,
                                          Comparison comparison, Options options,
                                          ProgressFn progress = nullptr, kube::Cache* cache = nullptr);
  virtual ~Operation() = default;
  // Does the next piece of work; false when the operation has ended.
  virtual bool Step() = 0;
  virtual const State& state() const = 0;
  // Stops before the next step; the state becomes Terminated. Options::stop stops it from
  // another thread, also in the middle of a wait.
  virtual void Terminate() = 0;
  // Steps to the end and returns the final state.
  const State& Run() {
    while (Step()) {
    }
    return state();
  }
};

// The diff of an application against the cluster, without changing it: Prepare, ReadLive,
// Compare, and the text of each difference; then one entry per hook (DiffEntry::hook set, status
// Missing), which the sync would create.
Result<std::vector<DiffEntry>> Diff(kube::Client& client, std::vector<value::Value> desired,
                                    const Options& options, bool color);

// The items of a comma-separated annotation value ("PreSync, PostSync"), trimmed of spaces and
// tabs, empty items dropped: views into `s`.
std::vector<std::string_view> SplitCommaList(std::string_view s);

}  // namespace gantry::sync
