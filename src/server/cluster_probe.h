#pragma once
// server/cluster_probe: what GET /api/v1/clusters says of a cluster's API server: the URL its
// kubeconfig names, whether it answers GET /version within a short timeout, and the Kubernetes
// version it reports. Answers are remembered per cluster for a while (30 s in `gantry server`), so
// a page load does not send a request to every cluster; the clusters not in the cache are probed
// in parallel, so one unreachable cluster costs one timeout, not one per cluster.

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "deliver/deliver.h"

namespace gantry::server {

struct ClusterProbe {
  std::string server;        // the kubeconfig's server URL; "" when the kubeconfig could not be read
  bool reachable = false;    // /version answered
  std::string kube_version;  // "v1.31.2" (kube::KubeVersionOf); "" unless reachable
  std::string error;         // why it is not reachable; "" when it is
};

using ProbeFn = std::function<ClusterProbe(const deliver::Cluster&)>;

// Reads the cluster's kubeconfig (as deliver::Connect does) and sends one GET /version, `timeout`
// for connecting and for the answer, without retries. Never includes a credential in `error`.
ClusterProbe ProbeVersion(const deliver::Cluster& cluster, std::chrono::milliseconds timeout);

// `probe`'s answers, each kept for `ttl`. Thread-safe; two requests that miss the cache at once
// may both probe a cluster.
class ProbeCache {
 public:
  // `clock` nullptr: SystemClock().
  ProbeCache(ProbeFn probe, std::chrono::milliseconds ttl, Clock* clock = nullptr);

  // The probes of `clusters`, in their order: cached ones as they were, the others probed now.
  std::vector<ClusterProbe> Get(const std::vector<const deliver::Cluster*>& clusters) EXCLUDES(mu_);

 private:
  struct Entry {
    ClusterProbe probe;
    std::chrono::steady_clock::time_point at;
  };
  const ProbeFn probe_;
  const std::chrono::milliseconds ttl_;
  Clock& clock_;
  Mutex mu_;
  std::map<std::string, Entry> cache_ GUARDED_BY(mu_);
};

}  // namespace gantry::server
