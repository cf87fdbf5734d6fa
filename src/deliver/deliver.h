#pragma once
// deliver: push mode. A release of an application is rendered once per environment, applied with
// the shared sync engine to every cluster of the environment (in parallel, bounded), gated, and
// promoted environment by environment (dev → staging → prod), with every step recorded in the
// release ledger (store::Store).
//
// Configuration is two kinds of objects (apiVersion gantry.dev/v1alpha1), from files, a directory
// or the CLI:
//   kind: Cluster      spec: {kubeconfig, context, environment, labels, mode: push|pull}
//   kind: Environment  spec: {after: NAME | [NAMES], clusters: [NAMES], gates: {healthy, approval, soak}}
// An Environment without `clusters` takes every Cluster whose spec.environment names it. The
// promotion order is a topological order of `after:` (ties broken by declaration order).
//
// A deploy (Deployment) is a step-driven state object. Start() creates the Release and a pending
// Target for every (environment, cluster) of the plan; each Step() then does one of:
//   apply ENV: for each cluster in parallel: target → applying; render ENV's path at the release's
//              revision; sync (wait for health); target → healthy | failed (with the sync summary);
//   gate ENV:  every target healthy (else: stop, or roll ENV back first with rollback_on_failure),
//              then approval (store::IsApproved; if missing the deploy ends WaitingApproval), then
//              soak (its end time is recorded in the audit log, so a resumed deploy does not
//              restart it; a soak Step() sleeps at most one second so Terminate() is prompt).
// Each ledger write happens before and after the work it describes, so a crash leaves targets
// pending or applying, never a lie (or, between the release and its targets, some targets not yet
// written: the release's plan names them all, and Resume() writes the missing ones pending);
// Resume() takes the newest release of the app that still has pending, applying or unwritten
// targets and continues at the first environment not yet healthy everywhere
// (re-applying is safe: the engine is idempotent); when that environment's predecessor has a soak
// and nothing of it has begun, or every environment is healthy but the last one's soak has not
// reached its recorded end, at that soak. Starting a new release supersedes the pending and
// applying targets of older ones (and what is left of their soaks), so only the newest unfinished
// release is ever resumed, never an older one over it.
//
// Rollback of an environment re-deploys the release that ran there before (the newest older release
// whose target there is healthy, or the one asked for) and marks the newer releases' targets there
// rolled_back, which is what makes the older release "running" again (see store.h).
//
// Thread-safety: free functions are pure or only use their arguments. A Deployment is driven by one
// thread; Terminate() may be called from any thread (or a signal handler's helper thread).

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/application.h"
#include "base/clock.h"
#include "base/status.h"
#include "kube/kube.h"
#include "render/git_sources.h"
#include "render/render.h"
#include "project/project.h"
#include "sign/policy.h"
#include "store/store.h"
#include "sync/sync.h"
#include "value/value.h"

namespace gantry::deliver {

using api::kApiVersion;  // one API version for every Gantry object (api/application.h)

// ---------------------------------------------------------------------------------------------
// Configuration

struct Cluster {
  std::string name;
  std::string kubeconfig;  // path to a kubeconfig file
  std::string context;     // "" : its current-context
  // Exec credential plugins its kubeconfig may run, by name (spec.allowExecPlugins; kube.h
  // LoadOptions::allowed_exec_plugins): how EKS, GKE and AKS clusters are reached.
  std::vector<std::string> allow_exec_plugins;
  std::string environment;
  std::map<std::string, std::string> labels;
  bool pull = false;       // spec.mode: pull — an agent delivers; deploy skips it, status reads it
  std::string source;      // file:line it was read from, for messages
};

struct Gates {
  bool healthy = true;
  bool approval = false;
  std::chrono::milliseconds soak{0};
};

struct Environment {
  std::string name;
  std::vector<std::string> after;
  std::vector<std::string> clusters;  // explicit; empty: Clusters whose environment is this one
  Gates gates;
  std::string source;
};

struct Config {
  std::vector<Cluster> clusters;
  std::vector<Environment> environments;  // in declaration order
  std::vector<project::Project> projects;  // kind: Project (project/project.h), the same YAML as a pull cluster's
  // Not from YAML: verifies the images a deploy applies to a cluster against the project's
  // verification rules for the environment, reading secretRef keys through the destination's client
  // (sign::ImagePolicy::For; `gantry server` sets it). Empty: images are not verified.
  std::function<sync::ImageCheck(const project::Project&, const std::string& env, kube::Client& cluster)> image_check;

  // The project named `name`: the configured one, else project::DefaultProject() for "default";
  // NotFound naming the known projects otherwise.
  Result<project::Project> ProjectNamed(std::string_view name) const;

  const Cluster* FindCluster(std::string_view name) const;
  const Environment* FindEnvironment(std::string_view name) const;
  // The push-mode clusters of `env`: its explicit list, else those naming it (sorted by name).
  std::vector<const Cluster*> ClustersOf(const Environment& env) const;
};

// Parses Cluster, Environment and Project objects. InvalidArgument with "file:line:column: " for an unknown
// kind or apiVersion, a missing or malformed field (a bad soak duration, after: of the wrong type),
// or a name defined twice.
Result<Config> ParseConfig(const std::vector<value::Value>& objects);

// Reads every .yaml/.yml file of a directory (sorted, not recursive) or one file, and parses it as
// above. NotFound when `path` does not exist; a missing directory-less state is an empty Config
// only through LoadConfigDirIfExists.
Result<Config> LoadConfig(const std::filesystem::path& path);
Result<Config> LoadConfigDirIfExists(const std::filesystem::path& dir);

// Checks cross references: every Environment's after: and clusters: name existing objects, no
// cycles in after:, no cluster in two environments. Returns the environments in promotion order.
// InvalidArgument naming the object, its source, and the cycle ("dev → staging → dev").
Result<std::vector<std::string>> PromotionOrder(const Config& config);

// The objects a Config is saved as (the CLI writes them under the state directory).
value::Value ToObject(const Cluster& cluster);
value::Value ToObject(const Environment& env);

// "apps/{app}/envs/{env}" with {app} and {env} replaced. InvalidArgument for an unknown
// placeholder or an unterminated brace.
Result<std::string> ExpandPathTemplate(std::string_view tmpl, std::string_view app, std::string_view env);

// ---------------------------------------------------------------------------------------------
// Clusters

struct ConnectOptions {
  std::chrono::milliseconds timeout{5'000};  // connect and request timeout of the check
  bool check = true;                         // GET /version before returning the client
};

// Loads the cluster's kubeconfig and context, refuses an expired (or not yet valid) client
// certificate, creates a client and, with options.check, asks the server for /version. Errors, each
// naming the cluster: NotFound for a missing kubeconfig file or context; FailedPrecondition "client
// certificate expired at TIME" (or not valid before TIME); Unavailable "cannot reach SERVER: ..."
// when the server does not answer; Unauthenticated / PermissionDenied when it refuses us. Never
// includes a credential in a message.
Result<std::unique_ptr<kube::Client>> Connect(const Cluster& cluster, const ConnectOptions& options = {});

// A self-contained kubeconfig (inline base64 CA, client certificate and key, token) for the
// cluster's context, for copying into the state directory with mode 0600. Errors as LoadConfig's.
Result<std::string> FlattenKubeconfig(const Cluster& cluster);

// ---------------------------------------------------------------------------------------------
// Deploying

// Whom a render is for (as Argo CD renders for an Application's destination).
struct RenderTarget {
  std::string namespace_;  // the destination namespace: Helm's release namespace ("" : default)
  // The cluster's version and APIs, Helm's .Capabilities (kube::ReadCapabilities); nullopt before
  // a cluster is reached (helm's built-in ones).
  std::optional<kube::Capabilities> capabilities;
  // Checks the config commit before anything of it is rendered: the project's verification rules
  // with commitKeys for the environment (sign::CheckCommit). Empty: not checked.
  std::function<Status(std::string_view commit, const sign::CommitSource& source)> check_commit;
};

// The objects of an application path at a revision, for `target`. `revision` is what the user
// asked for (or the commit recorded in the release); the result names the commit it resolved to.
// A deploy renders each environment once before applying anything, and renders a Helm chart
// again for each cluster, with that cluster's Capabilities, once it has reached it.
using RenderFn = std::function<Result<render::Rendered>(std::string_view revision, const std::string& path,
                                                        const RenderTarget& target)>;

// A RenderFn over a local directory (the revision is recorded, not checked out: rollback to
// another revision needs a Git source).
RenderFn DirRenderFn(std::filesystem::path dir, render::Options options = {});
// A RenderFn over `url` in `sources`: its first use fetches (as does the next one after a failed
// fetch), then each revision is resolved in the mirror.
RenderFn GitRenderFn(std::shared_ptr<render::GitSources> sources, std::string url, render::Options options = {});
// The same over a repository the caller opened (fetched on the first use).
RenderFn GitRenderFn(std::shared_ptr<git::Repository> repo, render::Options options = {});

using ConnectFn = std::function<Result<std::unique_ptr<kube::Client>>(const Cluster&)>;

// An app's releases all belong to one project: the one its first release was made under ("" or
// "default" for releases from before projects). PermissionDenied (reason project::kReasonDenied)
// naming the app's project when `project` is another, so one project's pipeline or deployer
// cannot release (and so roll out or roll back) another project's app. The store's errors.
Status CheckAppProject(store::Store& store, std::string_view app, std::string_view project);

struct DeployOptions {
  std::string app;                              // required
  std::string revision;                         // required for Start()
  std::string config_revision;                  // recorded in the release ("" : the commit)
  std::string source_revision;                  // the app commit it was built from ("" : the commit)
  std::optional<int64_t> run_id;                // the CI run that built it
  std::map<std::string, std::string> image_digests;
  std::map<std::string, store::ImageSupplyChain> supply_chain;  // of images of image_digests, when signed
  std::string only_env;                         // deploy to this environment only
  std::string through;                          // deploy up to and including this one ("" : all)
  std::string path_template = "envs/{env}";
  std::string started_by = "cli";
  std::string project = "default";              // bounds what it may deploy where (Config::ProjectNamed)
  // A person overriding the project's closed sync windows, saying why ("" : no override). Only
  // windows with manualSync: true are passed; each override is audited (action
  // "windows.override", actor started_by, the reason in details). CI releases never override.
  std::string window_override;
  std::string default_namespace = "default";
  bool create_namespace = true;
  bool prune = false;
  bool rollback_on_failure = false;             // roll the failing environment back
  std::chrono::milliseconds health_timeout{300'000};
  int cluster_parallelism = 4;                  // clusters of one environment at once
  Clock* clock = nullptr;                       // health waits and soaks; nullptr: SystemClock()
};

enum class Phase { kRunning, kSucceeded, kFailed, kWaitingApproval, kTerminated };
std::string_view Name(Phase phase);

// Called with one line per event ("staging/eu-1: applying", "staging: waiting for approval").
using ProgressFn = std::function<void(std::string_view)>;

struct DeployState {
  Phase phase = Phase::kRunning;
  std::string message;                 // why it stopped, or what it is doing
  int64_t release_id = 0;
  std::string commit;
  std::vector<std::string> environments;  // the plan, in order
  size_t next_env = 0;                 // index into environments of the work to do
  std::vector<store::Target> targets;  // as last written, ordered by plan then cluster
};

class Deployment {
 public:
  // Creates the release and its pending targets (superseding older releases' pending and applying
  // targets).
  // InvalidArgument for bad options or an environment not in the config; the store's errors.
  static Result<std::unique_ptr<Deployment>> Start(store::Store& store, Config config, RenderFn render,
                                                   ConnectFn connect, DeployOptions options,
                                                   ProgressFn progress = nullptr);
  // Continues the newest release of options.app that has work left: pending, applying or unwritten
  // targets, or the rest of its last environment's soak (see the file comment; HasWorkLeft()); the
  // plan (environments, path template) is read from the release. NotFound when no release of the
  // app is unfinished.
  static Result<std::unique_ptr<Deployment>> Resume(store::Store& store, Config config, RenderFn render,
                                                    ConnectFn connect, DeployOptions options,
                                                    ProgressFn progress = nullptr);
  ~Deployment();

  // Does the next piece of work; false when the deployment has ended (see state().phase).
  bool Step();
  const DeployState& state() const { return state_; }
  // Stops at the next step boundary; a running sync stops at its next check (sync::Options::stop:
  // within 250 ms also while it waits for health), applying nothing more. The ledger keeps
  // pending/applying targets, so Resume() continues. Thread-safe.
  void Terminate() { terminate_.store(true); }
  const DeployState& Run() {
    while (Step()) {
    }
    return state_;
  }

 private:
  struct Impl;
  Deployment(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  DeployState state_;
  std::atomic<bool> terminate_{false};
};

// Whether Deployment::Resume() would continue `release`: a target of it is pending or applying, or
// one its plan names was never written (a start cut short by a crash), or, when it is the app's
// newest release, its last environment is healthy but that environment's soak (as `config` sets
// it) ends after the clock's now (a crash during the last soak). A release rolled back somewhere
// has nothing left. `clock`: nullptr for SystemClock(). The store's errors.
Result<bool> HasWorkLeft(store::Store& store, const store::Release& release, const Config& config,
                         Clock* clock = nullptr);

struct RollbackOptions {
  std::string app;
  std::string env;
  int64_t to_release = 0;  // 0: the release that ran there before the current one
  std::string path_template = "envs/{env}";
  std::string started_by = "cli";
  std::string project = "default";
  std::string window_override;  // as DeployOptions::window_override
  std::string default_namespace = "default";
  bool prune = false;
  std::chrono::milliseconds health_timeout{300'000};
  int cluster_parallelism = 4;
  Clock* clock = nullptr;  // health waits; nullptr: SystemClock()
  // Set (from any thread): the rollback's syncs stop at their next check (as a deploy's), leaving the older
  // release's targets applying; running the same rollback again (with to_release) continues.
  const std::atomic<bool>* cancel = nullptr;
  // Called once the releases are known (from, to), before any cluster is touched.
  std::function<void(int64_t from_release, int64_t to_release)> planned;
};

struct RollbackResult {
  int64_t from_release = 0;
  int64_t to_release = 0;
  bool ok = false;
  std::vector<store::Target> targets;  // of to_release in env, as written
  std::string message;
};

// Re-deploys the older release to every cluster of the environment and marks the newer releases'
// targets there rolled_back (only when every cluster became healthy). NotFound when there is no
// release to roll back to; InvalidArgument for an unknown environment or a `to` newer than what
// runs there; the store's errors. A failed cluster is reported in the result, not as an error.
Result<RollbackResult> Rollback(store::Store& store, const Config& config, const RenderFn& render,
                                const ConnectFn& connect, const RollbackOptions& options,
                                const ProgressFn& progress = nullptr);

// ---------------------------------------------------------------------------------------------
// Status

// One cell of `gantry status`.
struct StatusRow {
  std::string app;
  std::string env;
  std::string cluster;
  std::string mode;        // "push" or "pull"
  int64_t release = 0;     // running release (push), or the one matching the pull revision; 0: none
  std::string revision;    // its source revision (pull: status.sync.revision)
  std::string state;       // latest target state (push) or sync status (pull)
  std::string health;      // "Healthy", "Degraded", ... (push: from the state)
  int64_t behind = 0;      // releases newer than what runs here
  std::string message;
};

// Push rows from the ledger, for one app. Pure over the store's answer.
std::vector<StatusRow> PushRows(std::string_view app, const std::vector<store::TargetStatus>& targets);

// The rows of a pull cluster's Applications (listed through its kubeconfig), matched against the
// app's releases (newest first) to compute `behind`. Pure.
std::vector<StatusRow> PullRows(const Cluster& cluster, const std::vector<value::Value>& applications,
                                const std::map<std::string, std::vector<store::Release>>& releases_by_app);

// The most any cluster of an environment is behind, per (app, environment) of `rows`. Pure.
std::map<std::pair<std::string, std::string>, int64_t> BehindByEnv(const std::vector<StatusRow>& rows);

// What `gantry status` shows.
struct StatusReport {
  std::vector<StatusRow> rows;  // by app, then environment in promotion order (unknown ones last)
  std::map<std::pair<std::string, std::string>, int64_t> behind;  // BehindByEnv(rows)
  std::vector<std::string> warnings;  // "pull cluster NAME: why", for each that could not be listed
};

// The tracking key (sync::Options::app) of a push app's objects: its name in the default project,
// PROJECT_APP in another, so a pipeline of one project naming another project's app cannot take
// over its objects.
std::string TrackingKey(std::string_view project, std::string_view app);

// The Applications of a pull cluster from somewhere other than a list through its kubeconfig (the
// server's watch of them, server/pull_watch.h). An error (the cluster is unreachable, its watch
// is not synced) becomes the cluster's warning.
using ApplicationsFn = std::function<Result<std::vector<value::Value>>(const Cluster&)>;

// The status of `app` ("": of every application with a release in the ledger): its push targets
// from `store`, and the Applications of each pull cluster of `config`, from `applications` or,
// without it, listed through `connect`. A pull cluster that cannot be reached or listed is a
// warning, not an error. Errors: the store's.
Result<StatusReport> GatherStatus(store::Store& store, const Config& config, std::string_view app,
                                  const ConnectFn& connect, const ApplicationsFn& applications = nullptr);

// Approves release `release` of `app` (0: its newest) for `env` in the ledger as `by`, and audits
// it; returns the release approved. NotFound when `app` has no releases or there is no such
// release; InvalidArgument when the release is of another application; the store's errors.
Result<int64_t> Approve(store::Store& store, std::string_view app, std::string_view env, int64_t release,
                        std::string_view by);

}  // namespace gantry::deliver
