// The agent's Source: a router to one Source per kind of spec.source (OCI artifacts: oci_source.cc).
// The Git one:
// render::GitSources (mirrors under the cache directory, credentials bound to their host, fetches
// shared by the applications of one repository), render::RenderGit with a render cache shared by
// all applications, and the changed paths between two commits.

#include <map>
#include <set>
#include <memory>

#include "agent/agent.h"
#include "agent/internal/oci_source.h"
#include "agent/internal/sources.h"
#include "base/mutex.h"
#include "git/git.h"
#include "kube/kube.h"
#include "render/git_sources.h"
#include "render/render.h"

namespace gantry::agent {

namespace internal {

render::Options RenderOptionsFor(const Application& app, const render::Options& base,
                                 const render::RepositoryCheck& allow_repository) {
  const api::Source& s = app.source;
  render::Options o = base;
  o.allow_repository = allow_repository;
  o.renderer = render::ParseRenderer(s.renderer).value_or(render::Renderer::kAuto);
  o.kustomize.images = s.kustomize_images;
  o.helm.release_name = s.helm_release_name;
  o.helm.namespace_ = app.destination_namespace;
  o.helm.value_files = s.helm_value_files;
  o.helm.values = s.helm_values;
  o.helm.set = s.helm_set;
  o.helm.set_string = s.helm_set_string;
  o.helm.include_crds = s.helm_include_crds;
  o.jsonnet.recurse = s.directory_recurse;
  o.jsonnet.libs = s.jsonnet_libs;
  for (const api::JsonnetVar& v : s.jsonnet_tlas) o.jsonnet.tlas.push_back({v.name, v.value, v.code});
  for (const api::JsonnetVar& v : s.jsonnet_ext_vars) o.jsonnet.ext_vars.push_back({v.name, v.value, v.code});
  if (o.renderer == render::Renderer::kAuto &&
      (!s.jsonnet_tlas.empty() || !s.jsonnet_ext_vars.empty() || !s.jsonnet_libs.empty())) {
    o.renderer = render::Renderer::kJsonnet;  // as Argo CD: a directory with Jsonnet settings
  }
  return o;
}

Status ClusterCapabilities::Apply(render::Options& o) {
  if (cluster_ == nullptr) return OkStatus();
  static constexpr auto kVersionTtl = std::chrono::minutes(10);
  std::string known;
  {
    MutexLock lock(mu_);
    if (std::chrono::steady_clock::now() - version_read_ < kVersionTtl) known = kube_version_;
  }
  GANTRY_ASSIGN_OR_RETURN(kube::Capabilities caps, kube::ReadCapabilities(*cluster_, known));
  if (known.empty()) {
    MutexLock lock(mu_);
    kube_version_ = caps.kube_version;
    version_read_ = std::chrono::steady_clock::now();
  }
  o.helm.kube_version = std::move(caps.kube_version);
  o.helm.api_versions = std::move(caps.api_versions);
  return OkStatus();
}

}  // namespace internal

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string Normalize(std::string path) {
  while (path.starts_with("./")) path.erase(0, 2);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path == "." ? "" : path;
}

// Whether repository path `file` is `dir` or lies under it ("" : the root, everything).
bool Under(std::string_view file, std::string_view dir) {
  return dir.empty() || file == dir || (file.starts_with(dir) && file.size() > dir.size() && file[dir.size()] == '/');
}

class GitSource final : public Source {
 public:
  GitSource(render::GitSourcesOptions sources, std::shared_ptr<render::ChartRepos> charts, render::Options base,
            kube::Client* cluster)
      : credentials_(sources.credentials),
        sources_(std::move(sources)),
        charts_(std::move(charts)),
        cache_(internal::NewRenderCache()),
        base_(std::move(base)),
        capabilities_(cluster) {
    base_.charts = charts_.get();  // chart dependencies not vendored in charts/
  }

  Result<std::string> Resolve(const api::Application& app, SteadyClock::time_point fetch_after) override {
    GANTRY_ASSIGN_OR_RETURN(std::shared_ptr<git::Repository> repo, Open(app));
    // One fetch serves every application of the repository that asked for one before it began.
    GANTRY_RETURN_IF_ERROR(sources_.Fetch(*repo, fetch_after));
    auto commit = sources_.Resolve(*repo, app.source.target_revision);
    if (!commit.ok()) {
      return commit.status().WithContext(fmt::format("resolve {} in {}", app.source.target_revision,
                                                     git::ScrubUrl(app.source.repo_url)));
    }
    return commit;
  }

  Result<bool> MayDiffer(const api::Application& app, std::string_view from, std::string_view to) override {
    if (from == to) return false;
    std::vector<std::string> roots;
    {
      MutexLock lock(mu_);
      auto it = renderers_.find(RenderKey(app));
      // Unknown (not rendered by this process yet): anything may differ.
      if (it == renderers_.end()) return true;
      if (it->second == render::Renderer::kPlain) {
        roots.push_back(Normalize(app.source.path));  // a plain render reads only its path
      } else if (!app.source.generate_paths.empty()) {
        roots = app.source.generate_paths;
      } else {
        return true;  // Kustomize bases and Helm value files may be anywhere in the repository
      }
    }
    GANTRY_ASSIGN_OR_RETURN(std::shared_ptr<const std::vector<std::string>> changed,
                            ChangedPaths(app, std::string(from), std::string(to)));
    for (const std::string& file : *changed) {
      for (const std::string& root : roots) {
        if (Under(file, root)) return true;
      }
    }
    return false;
  }

  Result<sign::CommitSource> CommitOf(const api::Application& app, std::string_view commit) override {
    GANTRY_ASSIGN_OR_RETURN(std::shared_ptr<git::Repository> repo, Open(app));
    GANTRY_ASSIGN_OR_RETURN(std::optional<git::CommitSignature> signature, repo->ReadSignature(commit));
    return sign::CommitSource{.repository = git::ScrubUrl(app.source.repo_url), .git = true,
                              .signature = std::move(signature)};
  }

  Result<Rendered> Render(const api::Application& app, std::string_view commit,
                          const render::RepositoryCheck& allow_repository) override {
    GANTRY_ASSIGN_OR_RETURN(std::shared_ptr<git::Repository> repo, Open(app));
    render::Options o = internal::RenderOptionsFor(app, base_, allow_repository);
    if (!o.kustomize.remote_hosts.empty() && !o.kustomize.fetch_remote) o.kustomize.fetch_remote = RemoteFetcher(app);
    GANTRY_RETURN_IF_ERROR(capabilities_.Apply(o));
    auto r = render::RenderGit(*repo, commit, app.source.path, o, &cache_);
    if (!r.ok()) return r.status();
    renders_ += r->cache_hit ? 0 : 1;
    {
      MutexLock lock(mu_);
      renderers_[RenderKey(app)] = r->renderer;
      if (r->unpinned) {
        unpinned_.insert(RenderKey(app));
      } else {
        unpinned_.erase(RenderKey(app));
      }
    }
    Rendered out;
    out.commit = r->commit;
    out.objects.reserve(r->manifests.size());
    for (auto& m : r->manifests) out.objects.push_back(std::move(m.object));
    return out;
  }

  uint64_t renders() const override { return renders_.load(); }

  bool Unpinned(const api::Application& app) override {
    MutexLock lock(mu_);
    return unpinned_.count(RenderKey(app)) > 0;
  }

 private:
  // Remote Kustomize bases through the agent's mirrors. The project checked the credential of the
  // application's own repository host only: a base on another host that has credentials is refused
  // (it would read a private repository the project was never granted).
  render::KustomizeOptions::FetchRemote RemoteFetcher(const api::Application& app) {
    return [this, app_host = git::HostOf(app.source.repo_url), fetch = sources_.RemoteFetcher()](
               const render::RemoteBase& base, const std::filesystem::path& dest) -> Result<std::string> {
      if (base.host != app_host && git::CredentialsFor(credentials_, base.repo_url)) {
        return PermissionDeniedError("{} is on {}, whose Git credentials only applications with their repository "
                                     "on that host may use; this application's repository is on {}",
                                     git::ScrubUrl(base.repo_url), base.host, app_host);
      }
      return fetch(base, dest);
    };
  }

  static std::string RenderKey(const api::Application& app) {
    return app.source.repo_url + "\n" + app.source.path + "\n" + app.source.renderer;
  }

  Result<std::shared_ptr<git::Repository>> Open(const api::Application& app) {
    auto repo = sources_.Open(app.source.repo_url);
    if (!repo.ok()) return repo.status().WithContext("fetch");
    return repo;
  }

  // The paths changed between two commits, remembered for the last few pairs: every application
  // of a monorepo asks about the same push.
  Result<std::shared_ptr<const std::vector<std::string>>> ChangedPaths(const api::Application& app,
                                                                        const std::string& from,
                                                                        const std::string& to) {
    std::string key = app.source.repo_url + "\n" + from + "\n" + to;
    {
      MutexLock lock(mu_);
      for (const auto& [k, v] : changed_) {
        if (k == key) return v;
      }
    }
    GANTRY_ASSIGN_OR_RETURN(std::shared_ptr<git::Repository> repo, Open(app));
    GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> paths, repo->ChangedPaths(from, to));
    auto shared = std::make_shared<const std::vector<std::string>>(std::move(paths));
    MutexLock lock(mu_);
    changed_.emplace_back(key, shared);
    if (changed_.size() > 8) changed_.erase(changed_.begin());
    return shared;
  }

  const std::vector<git::Credentials> credentials_;  // those of sources_
  render::GitSources sources_;  // mirrors, credentials, shared fetches
  std::shared_ptr<render::ChartRepos> charts_;
  render::RenderCache cache_;
  render::Options base_;
  internal::ClusterCapabilities capabilities_;  // of the destination
  std::atomic<uint64_t> renders_{0};
  Mutex mu_;
  std::map<std::string, render::Renderer> renderers_ GUARDED_BY(mu_);  // by RenderKey
  std::set<std::string> unpinned_ GUARDED_BY(mu_);  // RenderKeys whose last render was Unpinned
  std::vector<std::pair<std::string, std::shared_ptr<const std::vector<std::string>>>> changed_ GUARDED_BY(mu_);
};

// Sends each application to the Source of its kind (api::SourceKind); a kind without one is
// Unimplemented, naming the source.
class Router final : public Source {
 public:
  Router(std::unique_ptr<Source> git, std::unique_ptr<Source> helm, std::unique_ptr<Source> oci)
      : git_(std::move(git)), helm_(std::move(helm)), oci_(std::move(oci)) {}

  Result<std::string> Resolve(const api::Application& app, SteadyClock::time_point fetch_after) override {
    GANTRY_ASSIGN_OR_RETURN(Source * s, For(app));
    return s->Resolve(app, fetch_after);
  }
  Result<bool> MayDiffer(const api::Application& app, std::string_view from, std::string_view to) override {
    GANTRY_ASSIGN_OR_RETURN(Source * s, For(app));
    return s->MayDiffer(app, from, to);
  }
  Result<sign::CommitSource> CommitOf(const api::Application& app, std::string_view commit) override {
    GANTRY_ASSIGN_OR_RETURN(Source * s, For(app));
    return s->CommitOf(app, commit);
  }
  Result<Rendered> Render(const api::Application& app, std::string_view commit,
                          const render::RepositoryCheck& allow_repository) override {
    GANTRY_ASSIGN_OR_RETURN(Source * s, For(app));
    return s->Render(app, commit, allow_repository);
  }
  uint64_t renders() const override { return git_->renders() + helm_->renders() + oci_->renders(); }
  bool Unpinned(const api::Application& app) override {
    auto s = For(app);
    return s.ok() && (*s)->Unpinned(app);
  }

 private:
  Result<Source*> For(const api::Application& app) {
    switch (app.source.kind()) {
      case api::SourceKind::kGit:
        return git_.get();
      case api::SourceKind::kHelm:
        return helm_.get();
      case api::SourceKind::kOci:
        return oci_.get();
    }
    return InternalError("unknown source kind");
  }

  std::unique_ptr<Source> git_;
  std::unique_ptr<Source> helm_;
  std::unique_ptr<Source> oci_;
};

}  // namespace

Result<std::unique_ptr<Source>> NewSource(const AgentOptions& options, const render::Options& render_options,
                                          kube::Client* cluster) {
  render::GitSourcesOptions so{.mirrors_dir = std::filesystem::path(options.cache_dir) / "git",
                               .allow_file = options.allow_file_repos};
  for (const std::string& c : options.git_credentials) {
    GANTRY_ASSIGN_OR_RETURN(git::Credentials parsed, git::ParseCredentials(c));
    so.credentials.push_back(std::move(parsed));
  }
  for (const git::Credentials& c : options.git_repo_credentials) so.credentials.push_back(c);
  // Charts use the same credentials, bound to their host the same way.
  auto charts = std::make_shared<render::ChartRepos>(
      render::ChartRepoOptions{.cache_dir = std::filesystem::path(options.cache_dir) / "charts",
                               .credentials = so.credentials,
                               .ca_file = options.chart_ca_file});
  GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<Source> oci,
                          internal::NewOciSource(options.registry, std::filesystem::path(options.cache_dir) / "oci",
                                                 render_options, cluster));
  return std::unique_ptr<Source>(
      std::make_unique<Router>(std::make_unique<GitSource>(std::move(so), charts, render_options, cluster),
                               internal::NewHelmSource(charts, render_options, cluster), std::move(oci)));
}

}  // namespace gantry::agent
