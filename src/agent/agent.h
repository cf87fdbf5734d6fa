#pragma once
// The pull agent: Gantry's GitOps controller. It keeps one cluster in sync with the Applications
// it is given (custom resources of kind gantry.dev/v1alpha1 Application, or files).
//
// Reconcile (one Application, one pass): guards, then sub-reconcilers in order, sharing one
// context; the first that ends the pass decides; one place writes status.
//   guards      invalid spec → InvalidSpec; suspended → nothing; dependsOn not Healthy → wait
//               (DependencyNotReady)
//   fetch       the Git mirror (when a refresh is due: interval, webhook, refresh request, new spec)
//               and the target revision → commit; failure → FetchFailed, last state kept. When the
//               application was in sync at the previous commit and no file its render may read
//               changed (Source::MayDiffer), it is marked at the new commit without rendering.
//   render      the path at that commit, once; failure → RenderFailed; nothing is pruned
//   compare     one live read (from the watch cache; the API only for kinds not cached yet) and
//               one comparison of every rendered object → sync status per resource
//   sync        when automated and the revision is new, or the cluster drifted and selfHeal is on,
//               or a manual sync was requested: the shared engine (sync::Operation, started on the
//               same live read and comparison) with prune as the policy says. A failed sync is
//               retried with backoff (syncPolicy.retry). The status after it comes from the
//               operation's results, not from reading again. A terminate request (annotation
//               gantry.dev/terminate-requested, a new value) stops the running sync at its next
//               check, within 250 ms also in a health wait: operationState.phase Terminated, the
//               SyncFailed condition with reason Terminated, an Event, status.lastTerminateRequest;
//               it is not synced again at the same revision and spec until a sync request.
//   assess      sync status and health of the whole, conditions.
// Before a sync starts, status.operationState records it as Running with its revision, so an agent
// killed mid-sync resumes it after restart (the engine is idempotent: server-side apply). A pass
// that changes nothing writes nothing.
//
// Agent runs the loop: a list+watch of Applications, a work queue with per-application backoff and
// a pool of workers (one broken application never blocks the others), a periodic refresh with
// jitter, one shared watch cache of the objects it manages (live reads come from it, and its events
// re-queue the owning application: drift is seen within a second), leader election through
// a coordination.k8s.io Lease (only the leader reconciles) or sharding over replicas (each
// reconciles its share, AgentOptions::shard), an HTTP listener for push webhooks and
// /healthz (HTTPS with a certificate), and one for /metrics, on loopback unless configured.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/application.h"
#include "api/status.h"
#include "base/clock.h"
#include "base/status.h"
#include "git/git.h"
#include "kube/cache.h"
#include "kube/kube.h"
#include "oci/registry.h"
#include "project/project.h"
#include "render/git_sources.h"
#include "render/render.h"
#include "sign/policy.h"
#include "sync/sync.h"
#include "value/value.h"

namespace gantry::agent {

using api::Application;

// Reasons of the Status a Source returns.
inline constexpr std::string_view kReasonFetchFailed = render::kFetchFailed;  // could not open or fetch

// The rendered desired state of an Application at a commit (content_key is not used here).
using Rendered = render::Rendered;

// Where Applications' manifests come from. The real one is Git + render (NewSource); tests may
// give their own. Thread-safe.
class Source {
 public:
  virtual ~Source() = default;
  // Fetches the application's repository unless a fetch of it began at or after `fetch_after` (the
  // epoch: no fetch, except the first of a repository), so one fetch serves every application that
  // asked before it began; then resolves the target revision to a commit. Fetch failures carry
  // reason kReasonFetchFailed.
  virtual Result<std::string> Resolve(const Application& app, std::chrono::steady_clock::time_point fetch_after) = 0;
  // Whether rendering `app` at commit `to` may give other objects than at `from`: false only when
  // no file the render may read changed (a plain path: files under it; Kustomize and Helm: under
  // the manifest-generate-paths annotation's paths, else anywhere), as far as this source knows.
  virtual Result<bool> MayDiffer(const Application& app, std::string_view from, std::string_view to) = 0;
  // Renders `app` at a commit Resolve returned, fetching a repository beyond its source (chart
  // dependencies, helmCharts, remote Kustomize bases) only when `allow_repository` allows it (see
  // render::Options::allow_repository; empty: any).
  virtual Result<Rendered> Render(const Application& app, std::string_view commit,
                                  const render::RepositoryCheck& allow_repository) = 0;
  // The signature of `commit` (from Resolve), for verification rules with commitKeys
  // (sign::CheckCommit). This default is for sources that are not Git (git false); Git sources
  // read the commit's signature from their mirror (NotFound when the commit is not there).
  virtual Result<sign::CommitSource> CommitOf(const Application& app, std::string_view /*commit*/) {
    return sign::CommitSource{.repository = app.source.repo_url, .git = false, .signature = std::nullopt};
  }
  // Renders that ran a renderer (not served from the render cache), for metrics.
  virtual uint64_t renders() const = 0;
  // Whether the last render of `app` read what its commit does not pin (a remote Kustomize base,
  // whose branch may move): then an unchanged commit is no reason to skip rendering it.
  virtual bool Unpinned(const Application& /*app*/) { return false; }
};

struct ReconcileOptions {
  std::string field_manager = "gantry";
  // The agent's own namespace: its Applications track their objects by name, Applications of
  // other namespaces by NAMESPACE_NAME (TrackingKey); its Projects live here. "" : every
  // Application tracks by name (the agent serves one namespace or all, as before projects).
  std::string home_namespace;
  std::string environment;                    // of this cluster, for sync windows ("" : none)
  std::string cluster_server;                 // this cluster's API URL, for project destinations
  std::string cluster_name = "in-cluster";    // ... and its name
  // The agent's Git credentials (AgentOptions::git_credentials and git_repo_credentials): an Application whose
  // repository's host has one may use it only when its project lists the credential, named by that
  // host (credentials: ["git.example.com"]); otherwise it is refused, never fetched anonymously
  // from a mirror another project's credentials filled.
  std::vector<git::Credentials> credentials;
  // The registry hosts the agent holds credentials for (oci::CredentialHosts of
  // AgentOptions::registry): an oci:// Application of such a host must have it in its project's
  // credentials (credentials: ["ghcr.io"]), as for Git.
  std::vector<std::string> registry_credentials;
  std::chrono::milliseconds health_timeout{std::chrono::minutes(5)};
  int history_limit = 10;
  int parallelism = 16;
};

// What a reconcile reads and writes through. Only client and source are required.
struct ReconcileDeps {
  kube::Client& client;
  Source& source;
  kube::Cache* objects = nullptr;      // live objects Gantry manages (label gantry.dev/app)
  kube::Cache* inventories = nullptr;  // inventory ConfigMaps (label gantry.dev/inventory)
  // Reads another Application (dependsOn); default: client.Get.
  std::function<Result<value::Value>(const kube::ObjectRef&)> get_application;
  Clock* clock = nullptr;  // nullptr: SystemClock()
  // The Project an Application names (spec.project); default: project::DefaultProject() for
  // "default", NotFound for any other.
  std::function<Result<project::Project>(const Application& app)> get_project;
  // A client acting as `user` (kube::Client::Impersonate), kept by the caller; default:
  // client.Impersonate on every call.
  std::function<Result<kube::Client*>(const std::string& user)> tenant;
  // Verifies the images of an application's objects against its project's verification rules, for
  // this cluster's environment, before anything is applied (sign/policy.h); nullptr: not verified.
  sign::ImagePolicy* image_policy = nullptr;
  // When it becomes true, a running sync stops at its next check (sync::Options::stop: also in the
  // middle of a health wait); its operation stays Running in the status and the next reconcile
  // resumes it.
  const std::atomic<bool>* stop = nullptr;
  // The Application's terminate request (annotation api::kTerminateRequested) as the caller knows it
  // now, which may be newer than `object`'s: the agent's watch. Asked while the sync runs; a value
  // other than status.lastTerminateRequest stops it. Default: the annotation of `object`.
  std::function<std::string()> terminate_request;
};

// What a reconcile decided and wrote.
struct ReconcileResult {
  api::ApplicationStatus status;  // the status written (or kept)
  value::Value object;            // the object as written back (null when nothing was written)
  bool rendered = false;          // the source was rendered and compared
  bool synced = false;            // a sync operation ran
  bool failed = false;            // fetch, render, compare or sync failed (retry with backoff)
  std::chrono::milliseconds requeue_after{0};  // 0: at the next interval
  // What this pass's sync wrote: sync::ObjectKey → resourceVersion. The watch events of these
  // writes are not drift.
  std::map<std::string, std::string> written;
};

// Reconciles one Application (parsed from `object`, whose current status is read from it) and
// writes its status through deps.client (the status subresource, or nowhere for file Applications
// when `write_status` is false). `fetch_after` is passed to the source (a spec the last reconcile
// did not see, or a refresh request, fetches now).
Result<ReconcileResult> Reconcile(const ReconcileDeps& deps, const value::Value& object,
                                  std::chrono::steady_clock::time_point fetch_after,
                                  const ReconcileOptions& options, bool write_status = true);

// The sync options an agent with `options` compares and syncs `app` with: its tracking key,
// destination namespace, syncPolicy and syncOptions, ignoreDifferences and the approval of pending
// prunes (the caller sets the project). InvalidArgument naming the option for an unknown or
// malformed sync option; `warnings` (may be null) gets a line for each option accepted without
// Argo CD's effect.
Result<sync::Options> SyncOptionsFor(const Application& app, const ReconcileOptions& options, Clock* clock,
                                     std::vector<std::string>* warnings);

// The value of the label gantry.dev/app (and the first part of tracking ids and the inventory's
// name) of an Application: its name in the agent's home namespace (or when there is none),
// NAMESPACE_NAME elsewhere, so same-named Applications of two namespaces never share objects.
std::string TrackingKey(std::string_view home_namespace, std::string_view ns, std::string_view name);

struct AgentOptions {
  std::string namespace_;  // Applications are read here ("" : all namespaces); its Projects live here
  // Further namespaces (globs) whose Applications it serves (Argo CD's --application-namespaces);
  // an Application there must be allowed by its project's sourceNamespaces.
  std::vector<std::string> app_namespaces;
  std::string apps_dir;    // non-empty: Applications from files (no CRD needed)
  std::string cache_dir;   // Git mirrors and render cache
  std::chrono::milliseconds interval{60'000};  // refresh from Git, with ±10% jitter
  int workers = 4;
  std::string listen;      // ":8080" or "127.0.0.1:0": webhooks and /healthz ("" : none)
  std::string tls_cert_file, tls_key_file;  // PEM files: `listen` serves HTTPS only
  // /metrics, unauthenticated, on a listener of its own ("" : none). `gantry agent` defaults it to
  // 127.0.0.1:9090; ":9090" exposes it to whoever reaches the Pod.
  std::string metrics_listen;
  std::string webhook_secret;
  std::string lease_name = "gantry-agent";  // "" : no leader election
  // Sharded replicas instead of leader election (internal/shard.h): each replica holds a Lease
  // LEASE_NAME-member-IDENTITY, and reconciles the Applications that rendezvous hashing gives it
  // among the live replicas, one replica per Application at a time (annotation gantry.dev/shard-owner).
  bool shard = false;
  std::string lease_namespace;
  std::string identity;    // default: hostname + pid
  std::chrono::seconds lease_duration{15};
  bool allow_file_repos = false;
  // Whether the RenderFn runs renderers in the sandbox; false (--no-render-sandbox) is exported as
  // gantry_agent_render_sandbox 0 and logged at start.
  bool render_sandbox = true;
  std::vector<std::string> git_credentials;  // "host=user:password" (tokens as password)
  // Credentials read from repository Secrets (git::ReadRepositorySecret: SSH keys, passwords),
  // bound to their URL's host like git_credentials.
  std::vector<git::Credentials> git_repo_credentials;
  // Registries of oci:// sources: credentials (each bound to its host), Docker config, CA, hosts
  // reached over plain HTTP. Pulled artifacts are kept under cache_dir/oci by manifest digest.
  oci::RegistryOptions registry;
  // PEM bundle trusted for Helm chart repositories (https:// and oci://) instead of the system's.
  std::string chart_ca_file;
  ReconcileOptions reconcile;
};

class Agent {
 public:
  virtual ~Agent() = default;
  // Runs until Stop(); an error when it cannot start (bad options, unreachable cluster).
  virtual Status Run() = 0;
  virtual void Stop() = 0;
  // The ports of the HTTP and metrics listeners once running (for tests with port 0).
  virtual int port() const = 0;
  virtual int metrics_port() const = 0;
  virtual bool is_leader() const = 0;
};

// An agent over `client` and `source` (both must outlive it).
Result<std::unique_ptr<Agent>> NewAgent(kube::Client& client, AgentOptions options, std::unique_ptr<Source> source);

// The Source of a real agent, one per kind of spec.source (api::SourceKind), each application
// served by the one of its kind:
//   - Git: mirrors under options.cache_dir (credentials from options.git_credentials and
//     git_repo_credentials, bound to their host) and render::RenderGit with `render_options`
//     (binaries, sandbox, limits), cached by repository tree;
//   - charts of Helm repositories (spec.source.chart): render::ChartRepos under cache_dir/charts,
//     with the same credentials bound to their host and chart_ca_file;
//   - OCI artifacts: options.registry, pulled under options.cache_dir/oci by manifest digest,
//     rendered as Git paths are (internal/oci_source.h).
// Helm renders for `cluster` (when not null; it must outlive the Source): the destination namespace
// is the release namespace, and .Capabilities are the cluster's version and served APIs
// (kube::ReadCapabilities). InvalidArgument for malformed credentials or registry options.
Result<std::unique_ptr<Source>> NewSource(const AgentOptions& options, const render::Options& render_options,
                                          kube::Client* cluster = nullptr);

// Where and how `gantry install` runs the agent, beyond its image.
struct InstallPlacement {
  // Agent replicas, sharded (`gantry agent --shard`): each reconciles its share of the Applications.
  // 0: two replicas with leader election (one reconciles, the other waits to take over).
  int replicas = 0;
  std::map<std::string, std::string> node_selector;  // the Pods' nodeSelector
  std::vector<std::string> tolerate_taints;           // taint keys tolerated (operator Exists)
  std::vector<std::string> extra_args;                // appended to `gantry agent ...`
};

// Everything `gantry install` applies: the CRD, the namespace, the agent's ServiceAccount, RBAC and
// Deployment running `image`, placed as `placement` says.
std::vector<value::Value> InstallManifests(const std::string& namespace_, const std::string& image,
                                           const InstallPlacement& placement = {});

}  // namespace gantry::agent
