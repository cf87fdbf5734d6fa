#pragma once
// server/app_resources: what GET /api/v1/apps/{app}/resources, /diff and /events answer for one
// target of an application, read from its cluster on each request.
//
// A push target's desired state is what its running release renders for the environment (the
// config revision the ledger recorded, at the deploy's path template); it is prepared, read and
// compared by the sync engine exactly as a deploy does before applying (sync::Prepare, ReadLive,
// Compare; sync::Diff for the text), so the resource tree's sync states and the diff are the
// engine's, not a second diff. The tree adds each object's owned children found by their
// ownerReferences (ReplicaSets of a Deployment, Pods of a ReplicaSet, StatefulSet, DaemonSet or
// Job), with their health (src/health). A pull target's tree is its Application's
// status.resources, as its agent reports them. A pull target's diff is rendered as its agent
// renders it (agent::Source, at the revision the agent last compared, status.sync.revision, with
// the agent's sync options) and compared with the cluster by the same engine; only sources in the
// server's own config repositories are fetched.
//
// Every object shown is passed through diff::Redact: no Secret value leaves the server.
//
// Pure functions over a kube::Client; thread-compatible.

#include <string>
#include <vector>

#include "agent/agent.h"
#include "base/status.h"
#include "deliver/deliver.h"
#include "kube/kube.h"
#include "project/project.h"
#include "sync/sync.h"
#include "value/value.h"

namespace gantry::server {

// One push target and how to reach and render it.
struct PushTarget {
  std::string app;
  std::string project;  // the app's project ("default" when none)
  const deliver::Config* config = nullptr;
  const deliver::Cluster* cluster = nullptr;
  std::string environment;
  std::string config_revision;  // of the release running there
  deliver::RenderFn render;
  std::string path_template = "envs/{env}";
  std::string default_namespace = "default";
};

// What a push target should hold, as a deploy prepares it: the app's project, the sync options of
// the target (tracking, cluster, default namespace; options.project is for the caller to set, as
// the project moves with the value) and the objects its release renders (a Helm chart for the
// cluster's version and APIs). Errors: the render's (naming the path, environment and revision),
// an unknown project.
struct PushDesired {
  project::Project project;
  sync::Options options;
  std::vector<value::Value> objects;
};
Result<PushDesired> DesiredOf(kube::Client& client, const PushTarget& target);

// The resource tree of a push target: {"items": [node...]} where a node is {"group", "version",
// "kind", "namespace", "name", "uid", "owners": [uid...], "sync" ("Synced", "OutOfSync",
// "Missing", "Extra"; "" for a child the app does not render), "health": {"status", "message"}}.
// Errors: the render's, the project's refusal, the cluster's (Unavailable naming it).
Result<value::Value> PushResources(kube::Client& client, const PushTarget& target);

// The diff of `desired` against the cluster, compared by the sync engine with `options` (sync::Diff):
// {"items": [...]} as PushDiff's. With dry_run, each object that is not in sync is then applied as a
// server-side dry run (field manager "gantry"): a changed object's "diff" is the live object
// against what the server would store (its defaults and admission applied), one the server would
// store unchanged is "Synced", and one it refuses carries "refused" (its message); an added object
// keeps its rendered diff. The document's "compared" is "dry run", or "live" with "compared_note"
// saying why when the credentials may not (the first dry run answered 403). Errors: sync::Diff's
// and those of reading the live objects.
Result<value::Value> DiffAgainst(kube::Client& client, const std::vector<value::Value>& desired,
                                 const sync::Options& options, bool dry_run);

// The diff of a push target: {"items": [{"group", "version", "kind", "namespace", "name",
// "sync", "health", "diff" (unified text, "" when Synced), "live" (the live object without
// managedFields, Secrets redacted, or null)}]}.
Result<value::Value> PushDiff(kube::Client& client, const PushTarget& target);

// One pull target: its Application as watched, and a Source that renders as its agent does.
struct PullTarget {
  value::Value application;
  agent::Source* source = nullptr;
  // The repositories the server may fetch for it (its --config-repo): the Application's source
  // and anything its render fetches beyond it must be one.
  std::vector<std::string> repos;
  std::string cluster_name;
  std::string cluster_server;  // its API URL, for the project's destinations
};

// The diff of a pull target, as PushDiff's. FailedPrecondition when its source is not one of
// `repos` or its agent has not compared it yet; the fetch's and render's errors, naming it.
// Helm charts render without the cluster's capabilities (the Source has no cluster).
Result<value::Value> PullDiff(kube::Client& client, const PullTarget& target);

// The tree of a pull target from its Application's status.resources (no uids, no children).
value::Value PullResources(const value::Value& application);

// The Kubernetes Events whose involvedObject is one of `nodes` (as the trees above), newest
// first: {"items": [{"type", "reason", "message", "count", "first_time", "last_time", "object":
// {"kind", "namespace", "name"}}]}. One list of Events per namespace of the nodes.
Result<value::Value> EventsOf(kube::Client& client, const value::Value& nodes);

}  // namespace gantry::server
