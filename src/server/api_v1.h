#pragma once
// server/api_v1: the versioned REST API, /api/v1, that the web console and scripts use. The
// routes, their JSON and their errors are described by api/openapi.json (served, as built into the
// binary, at GET /api/v1/openapi.json) and docs/api.md:
//
//   GET  /api/v1/matrix                  apps × environments × clusters: running and latest
//                                        release, how far behind; push cells from the ledger
//                                        (store::Store::CurrentByTarget), pull cells from the
//                                        Applications' status (deliver::GatherStatus, as `gantry
//                                        status`)
//   GET  /api/v1/apps                    apps with their targets (push: ledger; pull: the
//                                        Applications), filtered by ?project, environment,
//                                        cluster, health, sync, mode
//   GET  /api/v1/apps/{app}              one app: project, targets, last operation of each
//   POST /api/v1/apps/{app}/sync         {"environment"?, "cluster"?, "prune"?} → 202: pull targets
//                                        through the Application's sync-requested annotation,
//                                        push targets by a deploy of the running release;
//                                        "dry_run": true → 200 with each target's diff
//   POST /api/v1/apps/{app}/refresh      {"environment"?, "cluster"?} → 202 (pull targets only)
//   POST /api/v1/apps/{app}/terminate    → 202: stops the app's deploy, resume or rollback the
//                                        server runs (Actions::Terminate) and each pull target's
//                                        running sync (the Application's terminate-requested
//                                        annotation, which its agent acts on); 404: none runs
//   GET  /api/v1/apps/{app}/resources    ?environment=&cluster=: one target's resource tree
//   GET  /api/v1/apps/{app}/diff         ... its live vs desired objects (pull targets rendered
//                                        as their agent does, server/app_resources.h)
//   GET  /api/v1/apps/{app}/events       ... the Kubernetes Events of its objects
//                                        (server/app_resources.h)
//   GET  /api/v1/apps/{app}/releases     the app's releases, newest first, with their targets
//                                        and links (commit, config commit, images)
//   GET  /api/v1/apps/{app}/releases/{id} one release's flow: commit → CI run → images → config
//                                        commit → each environment in promotion order with its
//                                        gate and each cluster's state (push: ledger; pull: the
//                                        Application)
//   GET  /api/v1/clusters                each cluster of the deliver configuration: mode, server,
//                                        reachability (push: a cached /version probe,
//                                        server/cluster_probe.h; pull: whether the watch reads its
//                                        Applications), Kubernetes version, labels, its apps
//   GET  /api/v1/environments            the environments in promotion order: clusters, gate,
//                                        releases waiting for its approval, its apps' health
//   GET  /api/v1/runs                    CI runs, newest first
//   GET  /api/v1/runs/{id}               one run with its steps
//   GET  /api/v1/runs/{id}/logs          text/plain, as /api/runs/ID/logs (?follow=1 streams)
//   POST /api/v1/runs/{id}/cancel        → the run (202 while it stops, 200 when cancelled)
//   POST /api/v1/runs/{id}/approve       → the run, queued
//   POST /api/v1/runs/{id}/retry         → 201, a new run of the same repository, commit, ref,
//                                        event and pipeline, with retry_of (ci::Server::Retry);
//                                        409 while the run has not finished
//   GET  /api/v1/pipelines               the repositories the CI server builds: project, newest
//                                        run, and the steps (with needs) of the newest run that
//                                        has steps
//   GET  /api/v1/pipelines/{repo}        one, by its URL as listed, percent-encoded
//   GET  /api/v1/projects                the deliver configuration's Projects (and the built-in
//   GET  /api/v1/projects/{name}         default): destinations, source repos, CI repos, and the
//                                        role bindings when the caller has roles.manage there
//   GET  /api/v1/tokens                  API tokens as GET /api/tokens (?project=, ?all=1), never
//                                        a secret
//   POST /api/v1/tokens                  as POST /api/tokens: 201 with the secret, shown once
//   DELETE /api/v1/tokens/{id}           revokes now (the next request with it is refused)
//   POST /api/v1/apps/{app}/deploy       {"revision", "through"?, "environment"?, "project"?,
//                                        "prune"?} → 202 {"release", "state": "running", ...}: a
//                                        push deploy the server runs (server/actions.h)
//   POST /api/v1/apps/{app}/resume       {"project"?} → 202: continues the app's unfinished release
//   POST /api/v1/apps/{app}/rollback     {"environment", "to_release"?, "project"?} → 202
//   POST /api/v1/apps/{app}/approve      {"environment", "release"?, "project"?} → 200: the
//                                        approval gate of that environment (deliver::Approve)
//   GET  /api/v1/events                  Server-Sent Events (server/events.h), resumable with
//                                        Last-Event-ID; a comment line every 15 s
//   GET  /api/v1/openapi.json            the OpenAPI 3.1 document (no authentication)
//   GET  /api/v1/signing-keys            the public keys of the image and config-commit signatures
//                                        (no authentication: they are public), with an
//                                        allowed_signers line for `git verify-commit`
//
// Every route but openapi.json and signing-keys goes through server::Access: 401 without valid credentials; reads
// need runs.read / apps.read on the object's project, cancel runs.cancel, approve and retry
// runs.approve; tokens as /api/tokens (server/access.h);
// deploy and resume apps.deploy, rollback apps.rollback, an app's approve releases.approve, on the
// body's "project" (default "default"); sync, refresh and terminate apps.sync on the app's project; each POST leaves one audit row. Errors are application/problem+json (ProblemJson, front.h).
// Lists answer {"items": [...], "next": cursor | null}: ?limit=N (1..500, default 50) and
// ?cursor= from the previous page's "next"; each list has an ETag (a hash of its body), and a
// request whose If-None-Match names it gets 304 without a body.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent.h"
#include "base/status.h"
#include "ci/server.h"
#include "deliver/deliver.h"
#include "http/metrics.h"
#include "server/access.h"
#include "server/actions.h"
#include "server/cluster_probe.h"
#include "server/events.h"
#include "server/front.h"
#include "server/links.h"

namespace gantry::server {

// The public keys of what the server signs (GET /api/v1/signing-keys); "" for what it does not sign.
struct SigningKeys {
  std::string images;            // PKIX PEM of --signing-key's public key (cosign verify --key)
  std::string commits;           // "ssh-ed25519 AAAA…" of --commit-signing-key
  std::string commit_principal;  // the commits' author email, the allowed_signers principal
};

struct ApiV1Options {
  Access* access = nullptr;  // required
  ci::Server* ci = nullptr;  // required
  EventBus* events = nullptr;  // nullptr: /api/v1/events answers 503
  // A run's project ("" : none, so only cluster-wide grants reach it), as CiFrontOptions'.
  std::function<std::string(const store::Run&)> project_of;
  // Environments, clusters and their modes (push/pull) for the matrix; nullopt: the ledger's
  // environments only, no pull clusters.
  std::optional<deliver::Config> deliver_config;
  deliver::ConnectFn connect;  // reaches pull clusters for the matrix
  // Where pull clusters' Applications are read from (PullWatch::Source(), server/pull_watch.h);
  // nullptr: listed through `connect` on every request.
  deliver::ApplicationsFn pull_applications;
  // Renders push targets' desired state for /resources and /diff (as ActionsOptions::renderer);
  // nullptr: those routes answer 503 for push targets.
  std::function<deliver::RenderFn()> renderer;
  std::string path_template = "envs/{env}";
  // Renders pull targets' desired state for /diff and the sync dry run as their agents do
  // (agent::NewSource over the server's data directory); nullptr: those answer 501 for them.
  agent::Source* pull_source = nullptr;
  // The repositories pull_source may fetch (--config-repo): an Application whose source is
  // elsewhere gets no diff from the server.
  std::vector<std::string> pull_repos;
  // Runs deploys, resumes and rollbacks; nullptr: those routes answer 503 (approve still works).
  Actions* actions = nullptr;
  // Probes clusters' /version for GET /api/v1/clusters (server/cluster_probe.h); nullptr:
  // ProbeVersion with a 2 s timeout. Each answer is kept for probe_ttl.
  ProbeFn probe;
  std::chrono::milliseconds probe_ttl{30'000};
  // The repositories the CI server builds (ci::ServerOptions::repos), for /api/v1/pipelines.
  std::vector<std::string> repos;
  // API latency by route (gantry_api_request_duration_seconds{route,method,code}); nullptr: none.
  http::Registry* metrics = nullptr;
  // The config repository releases' config revisions are commits of (--deploy-repo), for links;
  // "": releases get no config commit link.
  std::string config_repo;
  // How commit and image links are built (server/links.h).
  LinkOptions links;
  SigningKeys signing_keys;
};

// The OpenAPI document built into the binary (api/openapi.json).
std::string_view OpenApiDocument();

// Registers the routes above on `front`; the pointers in `options` must outlive its serving.
// InvalidArgument when access or ci is missing.
Status ServeApiV1(Front& front, ApiV1Options options);

// The pagination of a list request: ?limit (1..500, default 50) and ?cursor (a previous "next").
// InvalidArgument naming the parameter and the value otherwise.
struct Page {
  int limit = 50;
  int64_t before_id = 0;  // 0: from the newest
};
Result<Page> ParsePage(std::string_view query);

// A list response: {"items": items, "next": next or null}, with an ETag; 304 when the request's
// If-None-Match names that ETag.
http::Response ListResponse(const http::Request& request, const value::Value& items, std::optional<int64_t> next);

}  // namespace gantry::server
