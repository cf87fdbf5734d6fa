// The agent's RenderFn: Git mirrors plus render::RenderGit, with a render cache shared by all
// applications.

#include <map>
#include <mutex>
#include <set>

#include "agent/agent.h"
#include "git/git.h"
#include "render/render.h"

namespace gantry::agent {
namespace {

struct GitRenderState {
  explicit GitRenderState(const AgentOptions& o)
      : mirrors(std::filesystem::path(o.cache_dir) / "git"), allow_file(o.allow_file_repos),
        cache(64u << 20) {}
  git::Mirrors mirrors;
  bool allow_file;
  std::vector<git::Credentials> credentials;
  render::RenderCache cache;
  render::Options base;
  std::mutex mu;
  std::set<std::string> fetched;  // GUARDED_BY(mu): URLs fetched at least once by this process
};

std::string HostOf(const std::string& url) {
  std::string h = url;
  if (size_t scheme = h.find("://"); scheme != std::string::npos) h = h.substr(scheme + 3);
  if (size_t at = h.find('@'); at != std::string::npos && at < h.find('/')) h = h.substr(at + 1);
  return h.substr(0, h.find_first_of("/:"));
}

}  // namespace

Result<RenderFn> GitRenderFn(const AgentOptions& options, const render::Options& render_options) {
  auto state = std::make_shared<GitRenderState>(options);
  state->base = render_options;
  for (const std::string& c : options.git_credentials) {
    // host=user:password
    size_t eq = c.find('='), colon = c.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || colon == std::string::npos || eq == 0) {
      return InvalidArgumentError("git credentials must be host=user:password (the value is not shown)");
    }
    state->credentials.push_back(git::Credentials{.host = c.substr(0, eq),
                                                  .username = c.substr(eq + 1, colon - eq - 1),
                                                  .password = c.substr(colon + 1)});
  }
  return RenderFn([state](const Application& app, bool fetch) -> Result<Rendered> {
    const Source& s = app.source;
    git::OpenOptions oo{.allow_file = state->allow_file};
    std::string host = HostOf(s.repo_url);
    for (const auto& c : state->credentials) {
      if (c.host == host || c.host.starts_with(host + ":")) oo.credentials = c;
    }
    auto repo = state->mirrors.Open(s.repo_url, oo);
    if (!repo.ok()) return repo.status().WithContext("fetch");
    bool first;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      first = !state->fetched.count(s.repo_url);
    }
    if (fetch || first) {
      auto f = (*repo)->Fetch();
      if (!f.ok()) return f.status().WithContext("fetch " + git::ScrubUrl(s.repo_url));
      std::lock_guard<std::mutex> lock(state->mu);
      state->fetched.insert(s.repo_url);
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
    out.objects.reserve(r->manifests.size());
    for (auto& m : r->manifests) out.objects.push_back(std::move(m.object));
    return out;
  });
}

}  // namespace gantry::agent
