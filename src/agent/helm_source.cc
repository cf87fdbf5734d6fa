// The agent's Source of charts from Helm repositories (HTTP(S) index.yaml and oci://): see
// internal/sources.h.

#include <atomic>
#include <map>

#include "agent/internal/sources.h"
#include "git/git.h"

namespace gantry::agent::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

class HelmSource final : public Source {
 public:
  HelmSource(std::shared_ptr<render::ChartRepos> charts, render::Options base, kube::Client* cluster)
      : charts_(std::move(charts)), cache_(internal::NewRenderCache()), base_(std::move(base)), capabilities_(cluster) {
    base_.charts = charts_.get();  // the chart's own dependencies, when it does not vendor them
  }

  Result<std::string> Resolve(const Application& app, SteadyClock::time_point fetch_after) override {
    GANTRY_ASSIGN_OR_RETURN(render::FetchedChart chart, Fetch(app, Wanted(app), fetch_after));
    std::string revision = chart.Revision();
    MutexLock lock(mu_);
    fetched_[Key(app, revision)] = std::move(chart);
    if (fetched_.size() > 256) fetched_.erase(fetched_.begin());
    return revision;
  }

  // A chart revision names one archive by digest: the same revision renders the same objects.
  Result<bool> MayDiffer(const Application&, std::string_view from, std::string_view to) override {
    return from != to;
  }

  Result<Rendered> Render(const Application& app, std::string_view revision,
                          const render::RepositoryCheck& allow_repository) override {
    render::FetchedChart chart;
    {
      MutexLock lock(mu_);
      auto it = fetched_.find(Key(app, revision));
      if (it != fetched_.end()) chart = it->second;
    }
    if (chart.dir.empty()) {
      // Not resolved by this process (a restart): fetch the exact version the revision names.
      std::string_view rest = revision.substr(revision.find('@') == std::string_view::npos ? 0 : revision.find('@') + 1);
      std::string version(rest.substr(0, rest.find(' ')));
      GANTRY_ASSIGN_OR_RETURN(chart, Fetch(app, version, SteadyClock::time_point()));
      if (chart.Revision() != revision) {
        return FailedPreconditionError("chart {} from {}: revision {:?} is no longer in the repository (it now has {})",
                                       app.source.chart, git::ScrubUrl(app.source.repo_url), revision,
                                       chart.Revision());
      }
    }
    render::Options o = RenderOptionsFor(app, base_, allow_repository);
    o.renderer = render::Renderer::kHelm;
    if (o.helm.release_name.empty()) o.helm.release_name = app.name;
    GANTRY_RETURN_IF_ERROR(capabilities_.Apply(o));
    render::Source src{chart.dir.parent_path(), chart.dir.filename().string()};
    std::string content_key = app.source.repo_url + "\n" + std::string(revision);
    size_t hits = cache_.stats().hits;
    auto r = render::Render(src, o, &cache_, content_key);
    if (!r.ok()) return r.status().WithContext(fmt::format("chart {}", revision));
    if (cache_.stats().hits == hits) renders_ += 1;  // approximate under concurrent renders
    Rendered out;
    out.commit = std::string(revision);
    out.content_key = render::CacheKey(content_key, src.path, render::Renderer::kHelm, o);
    out.renderer = render::Renderer::kHelm;
    out.objects.reserve(r->size());
    for (auto& m : *r) out.objects.push_back(std::move(m.object));
    return out;
  }

  uint64_t renders() const override { return renders_.load(); }

 private:
  // The version the application asks for: targetRevision, where Argo CD's default HEAD and "" mean
  // the newest release.
  static std::string Wanted(const Application& app) {
    const std::string& r = app.source.target_revision;
    return r == "HEAD" ? "" : r;
  }
  static std::string Key(const Application& app, std::string_view revision) {
    return app.source.repo_url + "\n" + std::string(revision);
  }

  Result<render::FetchedChart> Fetch(const Application& app, const std::string& version,
                                     SteadyClock::time_point fetch_after) {
    auto chart = charts_->Fetch({.repo_url = app.source.repo_url, .chart = app.source.chart, .version = version},
                               fetch_after);
    if (!chart.ok()) {
      Status s = chart.status().WithContext("fetch");
      if (s.reason().empty() && s.code() != Code::kInvalidArgument) s.set_reason(kReasonFetchFailed);
      return s;
    }
    return chart;
  }

  std::shared_ptr<render::ChartRepos> charts_;
  render::RenderCache cache_;
  render::Options base_;
  ClusterCapabilities capabilities_;
  std::atomic<uint64_t> renders_{0};
  Mutex mu_;
  std::map<std::string, render::FetchedChart> fetched_ GUARDED_BY(mu_);  // by Key
};

}  // namespace

std::unique_ptr<Source> NewHelmSource(std::shared_ptr<render::ChartRepos> charts, render::Options base,
                                      kube::Client* cluster) {
  return std::make_unique<HelmSource>(std::move(charts), std::move(base), cluster);
}

}  // namespace gantry::agent::internal
