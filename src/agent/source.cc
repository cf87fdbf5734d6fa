// The agent's RenderFn: Git mirrors plus render::RenderGit, with a render cache shared by all
// applications and fetches shared by the applications of one repository.

#include <map>
#include <memory>
#include <mutex>

#include "agent/agent.h"
#include "git/git.h"
#include "render/render.h"

namespace gantry::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Fetch bookkeeping of one repository URL.
struct RepoFetches {
  std::mutex mu;  // held while fetching: callers of one URL take turns and share the result
  bool fetched = false;                            // GUARDED_BY(mu): at least once by this process
  Clock::time_point began{};                      // GUARDED_BY(mu): when the last good fetch began
};

struct GitRenderState {
  explicit GitRenderState(const AgentOptions& o)
      : mirrors(std::filesystem::path(o.cache_dir) / "git"), allow_file(o.allow_file_repos),
        cache(kRenderCacheBytes) {}
  // Rendered manifests kept for unchanged sources (Kustomize and Helm runs are what is worth
  // saving); bytes as the cache counts them, which is what the parsed objects occupy.
  static constexpr size_t kRenderCacheBytes = 16u << 20;
  git::Mirrors mirrors;
  bool allow_file;
  std::vector<git::Credentials> credentials;
  render::RenderCache cache;
  render::Options base;
  std::mutex mu;
  std::map<std::string, std::shared_ptr<RepoFetches>> fetches;  // GUARDED_BY(mu), by URL

  std::shared_ptr<RepoFetches> FetchesOf(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu);
    auto& f = fetches[url];
    if (!f) f = std::make_shared<RepoFetches>();
    return f;
  }
};

}  // namespace

Result<RenderFn> GitRenderFn(const AgentOptions& options, const render::Options& render_options) {
  auto state = std::make_shared<GitRenderState>(options);
  state->base = render_options;
  for (const std::string& c : options.git_credentials) {
    GANTRY_ASSIGN_OR_RETURN(git::Credentials parsed, git::ParseCredentials(c));
    state->credentials.push_back(std::move(parsed));
  }
  return RenderFn([state](const Application& app, Clock::time_point fetch_after) -> Result<Rendered> {
    const Source& s = app.source;
    git::OpenOptions oo{.allow_file = state->allow_file};
    oo.credentials = git::CredentialsFor(state->credentials, s.repo_url);
    auto repo = state->mirrors.Open(s.repo_url, oo);
    if (!repo.ok()) return repo.status().WithContext("fetch");
    // One fetch serves every application of the repository that asked for one before it began:
    // a push webhook for a monorepo of a hundred applications fetches once, not a hundred times.
    {
      auto f = state->FetchesOf(s.repo_url);
      std::lock_guard<std::mutex> lock(f->mu);
      if (!f->fetched || (fetch_after != Clock::time_point{} && f->began < fetch_after)) {
        auto began = Clock::now();
        auto r = (*repo)->Fetch();
        if (!r.ok()) return r.status().WithContext("fetch " + git::ScrubUrl(s.repo_url));
        f->fetched = true;
        f->began = began;
      }
    }
    render::Options o = state->base;
    o.renderer = render::ParseRenderer(s.renderer).value_or(render::Renderer::kAuto);
    o.kustomize.images = s.kustomize_images;
    o.helm.release_name = s.helm_release_name;
    o.helm.namespace_ = app.destination_namespace;
    o.helm.value_files = s.helm_value_files;
    o.helm.values = s.helm_values;
    o.helm.include_crds = s.helm_include_crds;
    auto r = render::RenderGit(**repo, s.target_revision, s.path, o, &state->cache);
    if (!r.ok()) return r.status();
    Rendered out;
    out.revision = r->commit;
    out.content_key = r->content_key;
    out.objects.reserve(r->manifests.size());
    for (auto& m : r->manifests) out.objects.push_back(std::move(m.object));
    return out;
  });
}

}  // namespace gantry::agent
