#pragma once
// server/pull_watch: the Applications of every pull cluster, kept in memory by a watch, so that
// the matrix, the apps routes and `GET /api/v1/apps/...` read them without a request to the
// cluster (deliver::GatherStatus lists them on every call otherwise).
//
// One thread per pull cluster of the configuration: it connects through deliver's connect (the
// cluster's kubeconfig), starts a kube::Cache list+watch of gantry.dev Applications and then
// handles what the watch reports:
//   - an "app" event on the EventBus whenever an Application's sync status, revision, health or
//     operation phase changes, or it is deleted: {"app", "namespace", "cluster", "environment",
//     "sync", "health", "revision", "phase", "deleted"}, in the project of its spec.project;
//   - one audit row per sync the agent finished (status.operationState once its phase is
//     Succeeded or Failed, and each status.history entry): actor "agent:CLUSTER", action
//     "apps.sync", object "NAMESPACE/APP", details "revision R finished at T", result the phase
//     (": message" when it has one), source "agent", the Application's project. A sync is known by
//     its revision and finishedAt: rows already in the store (read when the watch starts) are not
//     written again, so a restarted server does not duplicate them.
// A cluster that cannot be connected to or whose first list fails is retried with exponential
// backoff (with jitter); until its watch is synced, Applications() answers Unavailable with the
// reason, which GatherStatus turns into the matrix's warning for that cluster. The kube::Cache
// itself resumes a broken watch (and relists); while it relists the cluster is "not synced".
//
// Thread-safe. The store and the event bus must outlive it; Stop() (or the destructor) ends and
// joins every thread.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "deliver/deliver.h"
#include "server/events.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::server {

struct PullWatchOptions {
  deliver::Config config;      // its pull clusters are watched
  deliver::ConnectFn connect;  // required
  store::Store* store = nullptr;   // where agent syncs are audited; nullptr: not audited
  EventBus* events = nullptr;      // where "app" events go; nullptr: none
  std::chrono::milliseconds first_list_wait{10'000};  // a first list slower than this is retried
  std::chrono::milliseconds backoff_initial{1'000};   // after a failure; doubles up to backoff_max
  std::chrono::milliseconds backoff_max{30'000};
  // Servers sharing a store: only the holder of the store's lease "pull-audit/CLUSTER" audits that
  // cluster's syncs (renewed at each change of its Applications; taken over `lease` after the last
  // renewal, the new holder reading the rows already written first). "" : no lease.
  std::string lease_holder;
  std::chrono::milliseconds lease{15'000};
};

class PullWatch {
 public:
  // Starts one watching thread per pull cluster of options.config.
  explicit PullWatch(PullWatchOptions options);
  ~PullWatch();
  PullWatch(const PullWatch&) = delete;
  PullWatch& operator=(const PullWatch&) = delete;

  // Ends every watch and joins the threads; idempotent.
  void Stop();

  // The cached Applications of the pull cluster named `cluster.name`, sorted by namespace and
  // name. NotFound for a cluster that is not watched (not a pull cluster of the configuration);
  // Unavailable "unreachable: WHY" while it cannot be connected to, "watch not synced yet" before
  // the first list and while the watch relists.
  Result<std::vector<value::Value>> Applications(const deliver::Cluster& cluster) const;

  // Applications() as GatherStatus takes it. The PullWatch must outlive the function.
  deliver::ApplicationsFn Source() const;

  // True once every watched cluster's watch is synced and its first list's changes are handled
  // (audit rows written, events published); false when `timeout` passes first. For tests and for
  // a caller that wants a complete first answer.
  bool WaitSynced(std::chrono::milliseconds timeout) const;

 private:
  struct Watched;
  void Run(Watched& w);
  PullWatchOptions options_;
  std::vector<std::unique_ptr<Watched>> watched_;
};

}  // namespace gantry::server
