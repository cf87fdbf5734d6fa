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
// status.resources, as its agent reports them (the server does not render pull sources).
//
// Every object shown is passed through diff::Redact: no Secret value leaves the server.
//
// Pure functions over a kube::Client; thread-compatible.

#include <string>
#include <vector>

#include "base/status.h"
#include "deliver/deliver.h"
#include "kube/kube.h"
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

// The resource tree of a push target: {"items": [node...]} where a node is {"group", "version",
// "kind", "namespace", "name", "uid", "owners": [uid...], "sync" ("Synced", "OutOfSync",
// "Missing", "Extra"; "" for a child the app does not render), "health": {"status", "message"}}.
// Errors: the render's, the project's refusal, the cluster's (Unavailable naming it).
Result<value::Value> PushResources(kube::Client& client, const PushTarget& target);

// The diff of a push target: {"items": [{"group", "version", "kind", "namespace", "name",
// "sync", "health", "diff" (unified text, "" when Synced), "live" (the live object without
// managedFields, Secrets redacted, or null)}]}.
Result<value::Value> PushDiff(kube::Client& client, const PushTarget& target);

// The tree of a pull target from its Application's status.resources (no uids, no children).
value::Value PullResources(const value::Value& application);

// The Kubernetes Events whose involvedObject is one of `nodes` (as the trees above), newest
// first: {"items": [{"type", "reason", "message", "count", "first_time", "last_time", "object":
// {"kind", "namespace", "name"}}]}. One list of Events per namespace of the nodes.
Result<value::Value> EventsOf(kube::Client& client, const value::Value& nodes);

}  // namespace gantry::server
