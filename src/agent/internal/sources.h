#pragma once
// What the agent's Sources share: the render options an Application asks for, the destination
// cluster's Capabilities for Helm, and the Source of charts from Helm repositories (helm_source.cc).

#include <chrono>
#include <memory>
#include <string>

#include "agent/agent.h"
#include "base/mutex.h"
#include "kube/kube.h"
#include "render/chart_repo.h"
#include "render/render.h"

namespace gantry::agent::internal {

// Each Source's cache of rendered manifests (render::RenderCache). An unchanged application is not
// rendered at all (the agent's steady-state memo), so the cache serves re-renders at the same
// commit (a changed spec, a retried sync), a few at a time: 4 MiB as the cache counts, which is
// what the parsed objects occupy, and nothing kept unused for 5 minutes. Without that age bound
// the renders of superseded commits, never asked for again, filled it to its bound and the
// agent's memory grew with every commit for hours (the soak, bench/soak/run.sh).
inline render::RenderCache NewRenderCache() { return render::RenderCache(4u << 20, std::chrono::minutes(5)); }

// `base` with the renderer and the Kustomize, Helm and Jsonnet options of `app` (release name, value
// files, values, parameters, CRDs, the destination namespace as release namespace; TLAs, external
// variables, libraries), fetching beyond the source only what `allow_repository` allows. Every Source
// of the agent renders with these.
render::Options RenderOptionsFor(const Application& app, const render::Options& base,
                                 const render::RepositoryCheck& allow_repository);

// The destination cluster's Capabilities for Helm. Its version is read again every 10 minutes; its
// APIs come from the client's discovery cache each time, so a CRD a sync just created counts at
// once. Thread-safe.
class ClusterCapabilities {
 public:
  explicit ClusterCapabilities(kube::Client* cluster) : cluster_(cluster) {}
  // Sets o.helm.kube_version and api_versions; nothing when there is no cluster.
  Status Apply(render::Options& o);

 private:
  kube::Client* const cluster_;  // null: Helm's built-in Capabilities
  Mutex mu_;
  std::string kube_version_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point version_read_ GUARDED_BY(mu_);
};

// The Source of applications whose spec.source names a chart (api::SourceKind::kHelm): fetched by
// `charts` (index.yaml or oci://; shared with the Git source, for chart dependencies), rendered with render::Render on the extracted chart. Resolve's
// revision is FetchedChart::Revision() ("redis@18.6.1 sha256:..."); a range is resolved again on each
// fetch. Fetch errors carry kReasonFetchFailed.
std::unique_ptr<Source> NewHelmSource(std::shared_ptr<render::ChartRepos> charts, render::Options base,
                                      kube::Client* cluster);

}  // namespace gantry::agent::internal
