#pragma once
// The pull agent: Gantry's GitOps controller. It keeps one cluster in sync with the Applications
// it is given (custom resources of kind gantry.dev/v1alpha1 Application, or files).
//
// Reconcile (one Application), the skeleton every reconciler shares:
//   guards      suspended → nothing; dependsOn not Healthy → wait (condition DependencyNotReady)
//   fetch       the Git mirror (when a refresh is due: interval, webhook, refresh request, new spec)
//               and the target revision → commit; failure → condition FetchFailed, last state kept
//   render      the path at that commit; failure → condition RenderFailed; nothing is pruned
//   diff        every rendered object against the cluster → sync status per resource
//   sync        when automated and the revision is new, or the cluster drifted and selfHeal is on,
//               or a manual sync was requested: the shared engine (sync::Operation) with prune as
//               the policy says. A failed sync is retried with backoff (syncPolicy.retry).
//   status      one place writes status: sync and health, conditions, resources, the operation,
//               the last 10 syncs.
// Before a sync starts, status.operationState records it as Running with its revision, so an agent
// killed mid-sync resumes it after restart (the engine is idempotent: server-side apply).
//
// Agent runs the loop: a list+watch of Applications, a work queue with per-application backoff and
// a pool of workers (one broken application never blocks the others), a periodic refresh with
// jitter, watches of the objects it manages (drift is seen within seconds), leader election through
// a coordination.k8s.io Lease (only the leader reconciles), an HTTP listener for push webhooks and
// /healthz (HTTPS with a certificate), and one for /metrics, on loopback unless configured.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/application.h"
#include "base/status.h"
#include "kube/kube.h"
#include "render/render.h"
#include "sync/sync.h"
#include "value/value.h"

namespace gantry::agent {

// The rendered desired state of an Application at a commit.
struct Rendered {
  std::string revision;  // commit id
  std::vector<value::Value> objects;
  // Equal keys mean equal objects (the render cache key: the source's content and the render
  // options); "" when unknown.
  std::string content_key;
};

// Renders an Application's source, first fetching its repository unless a fetch of it began at or
// after `fetch_after` (the epoch: no fetch, except the first of a repository). So a fetch serves
// every application that asked for one before it began. Provided by the wiring (Git + render);
// tests may pass their own.
using RenderFn =
    std::function<Result<Rendered>(const Application& app, std::chrono::steady_clock::time_point fetch_after)>;

struct ReconcileOptions {
  std::string field_manager = "gantry";
  std::chrono::milliseconds health_timeout{std::chrono::minutes(5)};
  int history_limit = 10;
  int parallelism = 16;
};

// What a reconcile decided and wrote.
struct ReconcileResult {
  value::Value status;       // the status written
  bool synced = false;       // a sync operation ran
  bool failed = false;       // fetch, render or sync failed (retry with backoff)
  std::chrono::milliseconds requeue_after{0};  // 0: at the next interval
  std::string content_key;   // Rendered::content_key of the source reconciled ("" when not rendered)
};

// Reconciles one Application (parsed from `object`, whose current status is read from it) and
// writes its status through `client` (the status subresource, or nowhere for file Applications when
// `write_status` is false). `fetch_after` is passed to `render` (a spec the last reconcile did not
// see, or a refresh request, fetches now). The returned status is what was written.
Result<ReconcileResult> Reconcile(kube::Client& client, const value::Value& object, const RenderFn& render,
                                  std::chrono::steady_clock::time_point fetch_after,
                                  const ReconcileOptions& options, bool write_status = true);

struct AgentOptions {
  std::string namespace_;  // Applications are read here ("" : all namespaces)
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
  std::string lease_namespace;
  std::string identity;    // default: hostname + pid
  std::chrono::seconds lease_duration{15};
  bool allow_file_repos = false;
  // Whether the RenderFn runs renderers in the sandbox; false (--no-render-sandbox) is exported as
  // gantry_agent_render_sandbox 0 and logged at start.
  bool render_sandbox = true;
  std::vector<std::string> git_credentials;  // "host=user:password" (tokens as password)
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

Result<std::unique_ptr<Agent>> NewAgent(kube::Client& client, AgentOptions options, RenderFn render);

// The RenderFn of a real agent: Git mirrors under options.cache_dir (credentials from
// options.git_credentials, bound to their host) and render::RenderGit with `render_options`
// (binaries, sandbox, limits), cached by repository tree. InvalidArgument for malformed credentials.
Result<RenderFn> GitRenderFn(const AgentOptions& options, const render::Options& render_options);

}  // namespace gantry::agent
