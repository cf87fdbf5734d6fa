// The agent's Source of OCI artifacts (api::SourceKind::kOci): Resolve is one HEAD of the tag (or
// the pinned digest as is), Render pulls the artifact into the cache by its manifest digest once
// (oci::PullArtifact) and renders the application's path in it, cached by that digest.

#include "agent/internal/oci_source.h"

#include "agent/internal/sources.h"

#include <map>

#include "base/mutex.h"
#include "oci/artifact.h"

namespace gantry::agent::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

class OciSource final : public Source {
 public:
  OciSource(std::unique_ptr<oci::Registry> registry, std::filesystem::path cache_dir, render::Options base,
            kube::Client* cluster)
      : registry_(std::move(registry)), cache_dir_(std::move(cache_dir)), cache_(internal::NewRenderCache()),
        base_(std::move(base)), capabilities_(cluster) {}

  Result<std::string> Resolve(const api::Application& app, SteadyClock::time_point fetch_after) override {
    GANTRY_ASSIGN_OR_RETURN(oci::Reference ref, Reference(app));
    if (!ref.digest.empty()) return ref.digest;  // pinned: nothing to ask
    const std::string key = ref.ToString();
    {
      MutexLock lock(mu_);
      auto it = resolved_.find(key);
      // One HEAD serves every application of the tag that asked before it began.
      if (it != resolved_.end() && (fetch_after == SteadyClock::time_point{} || it->second.began >= fetch_after)) {
        return it->second.digest;
      }
    }
    SteadyClock::time_point began = SteadyClock::now();
    auto digest = oci::ResolveArtifact(*registry_, ref);
    if (!digest.ok()) return Status(digest.status()).set_reason(kReasonFetchFailed);
    MutexLock lock(mu_);
    Resolved& r = resolved_[key];
    if (began >= r.began) r = {began, *digest};
    return *digest;
  }

  // An artifact is immutable: the same digest renders the same objects, any other may not.
  Result<bool> MayDiffer(const api::Application&, std::string_view from, std::string_view to) override {
    return from != to;
  }

  Result<Rendered> Render(const api::Application& app, std::string_view digest,
                          const render::RepositoryCheck& allow_repository) override {
    GANTRY_ASSIGN_OR_RETURN(oci::Reference ref, Reference(app));
    auto dir = oci::PullArtifact(*registry_, ref, digest, cache_dir_);
    if (!dir.ok()) return Status(dir.status()).set_reason(kReasonFetchFailed);
    const api::Source& s = app.source;
    render::Options o = RenderOptionsFor(app, base_, allow_repository);
    GANTRY_RETURN_IF_ERROR(capabilities_.Apply(o));
    size_t misses = cache_.stats().misses;
    auto manifests = render::Render(render::Source{*dir, s.path}, o, &cache_, digest);
    if (!manifests.ok()) {
      return manifests.status().WithContext(fmt::format("render {} of {}", s.path, ref.ToString()));
    }
    if (cache_.stats().misses != misses) ++renders_;
    Rendered out;
    out.commit = std::string(digest);
    out.objects.reserve(manifests->size());
    for (auto& m : *manifests) out.objects.push_back(std::move(m.object));
    return out;
  }

  uint64_t renders() const override { return renders_.load(); }

 private:
  struct Resolved {
    SteadyClock::time_point began;
    std::string digest;
  };

  static Result<oci::Reference> Reference(const api::Application& app) {
    auto ref = oci::ArtifactReference(app.source.repo_url, app.source.target_revision);
    if (!ref.ok()) return Status(ref.status()).set_reason(kReasonFetchFailed);
    return ref;
  }

  std::unique_ptr<oci::Registry> registry_;
  const std::filesystem::path cache_dir_;
  render::RenderCache cache_;
  render::Options base_;
  ClusterCapabilities capabilities_;
  std::atomic<uint64_t> renders_{0};
  Mutex mu_;
  std::map<std::string, Resolved> resolved_ GUARDED_BY(mu_);  // by reference (registry/repository:tag)
};

}  // namespace

Result<std::unique_ptr<Source>> NewOciSource(oci::RegistryOptions registry, std::filesystem::path cache_dir,
                                             render::Options render_options, kube::Client* cluster) {
  GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<oci::Registry> client, oci::NewHttpRegistry(std::move(registry)));
  return NewOciSource(std::move(client), std::move(cache_dir), std::move(render_options), cluster);
}

std::unique_ptr<Source> NewOciSource(std::unique_ptr<oci::Registry> registry, std::filesystem::path cache_dir,
                                     render::Options render_options, kube::Client* cluster) {
  return std::make_unique<OciSource>(std::move(registry), std::move(cache_dir), std::move(render_options), cluster);
}

}  // namespace gantry::agent::internal
