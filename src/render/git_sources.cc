#include "render/git_sources.h"

#include <utility>

namespace gantry::render {

struct GitSources::Fetches {
  std::mutex mu;  // held while fetching: callers of one URL take turns and share the result
  bool fetched = false;                              // GUARDED_BY(mu): at least once
  std::chrono::steady_clock::time_point began{};     // GUARDED_BY(mu): when the last good fetch began
  std::mutex resolved_mu;                            // not held while fetching
  std::map<std::string, std::string> resolved;       // GUARDED_BY(resolved_mu): revision → commit
};

GitSources::GitSources(GitSourcesOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock()),
      mirrors_(options_.mirrors_dir),
      cache_(options_.render_cache_bytes) {}

std::shared_ptr<GitSources::Fetches> GitSources::FetchesOf(const std::string& url) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = fetches_[url];
  if (!f) f = std::make_shared<Fetches>();
  return f;
}

Result<std::shared_ptr<git::Repository>> GitSources::Open(const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = repos_.find(url); it != repos_.end()) return it->second;
  }
  git::OpenOptions oo{.allow_file = options_.allow_file};
  oo.credentials = git::CredentialsFor(options_.credentials, url);
  auto repo = mirrors_.Open(url, oo);
  if (!repo.ok()) return Status(repo.status()).set_reason(kFetchFailed);
  std::lock_guard<std::mutex> lock(mu_);
  return repos_.emplace(url, *std::move(repo)).first->second;
}

Status GitSources::Fetch(git::Repository& repo, std::chrono::steady_clock::time_point fetch_after) {
  auto f = FetchesOf(repo.url());
  std::lock_guard<std::mutex> lock(f->mu);
  if (f->fetched && (fetch_after == std::chrono::steady_clock::time_point{} || f->began >= fetch_after)) {
    return OkStatus();
  }
  auto began = clock_.Now();
  Status s = repo.Fetch().status();
  {
    std::lock_guard<std::mutex> resolved_lock(f->resolved_mu);  // refs may have moved
    f->resolved.clear();
  }
  // The repository's error already says "fetch URL" (URLs carry no credentials: ValidateUrl).
  if (!s.ok()) return std::move(s).set_reason(kFetchFailed);
  f->fetched = true;
  f->began = began;
  return OkStatus();
}

Result<std::string> GitSources::Resolve(git::Repository& repo, const std::string& revision) {
  auto f = FetchesOf(repo.url());
  {
    std::lock_guard<std::mutex> lock(f->resolved_mu);
    if (auto it = f->resolved.find(revision); it != f->resolved.end()) return it->second;
  }
  GANTRY_ASSIGN_OR_RETURN(std::string commit, repo.Resolve(revision));
  std::lock_guard<std::mutex> lock(f->resolved_mu);
  f->resolved.emplace(revision, commit);
  return commit;
}

KustomizeOptions::FetchRemote GitSources::RemoteFetcher() {
  return [this, max_age = options_.remote_base_max_age](const RemoteBase& base,
                                                        const std::filesystem::path& dest) -> Result<std::string> {
    std::string what = fmt::format("fetch {} at {}", git::ScrubUrl(base.repo_url), base.ref);
    auto repo = Open(base.repo_url);
    if (!repo.ok()) return repo.status().WithContext(what);
    GANTRY_RETURN_IF_ERROR(Fetch(**repo, clock_.Now() - max_age));
    auto commit = Resolve(**repo, base.ref);
    if (!commit.ok()) return commit.status().WithContext(what);
    if (Status s = (*repo)->Materialize(*commit, "", dest); !s.ok()) return s.WithContext(what);
    return commit;
  };
}

Result<Rendered> GitSources::Render(const std::string& url, std::string_view revision, const std::string& path,
                                    const Options& options, std::chrono::steady_clock::time_point fetch_after) {
  auto repo = Open(url);
  if (!repo.ok()) return repo.status().WithContext("fetch");
  GANTRY_RETURN_IF_ERROR(Fetch(**repo, fetch_after));
  if (!options.kustomize.remote_hosts.empty() && !options.kustomize.fetch_remote) {
    Options o = options;
    o.kustomize.fetch_remote = RemoteFetcher();
    return RenderGitObjects(**repo, revision, path, o, options_.render_cache_bytes > 0 ? &cache_ : nullptr);
  }
  return RenderGitObjects(**repo, revision, path, options, options_.render_cache_bytes > 0 ? &cache_ : nullptr);
}

Result<Rendered> RenderGitObjects(git::Repository& repo, std::string_view revision, const std::string& path,
                                  const Options& options, RenderCache* cache) {
  GANTRY_ASSIGN_OR_RETURN(GitRendered r, RenderGit(repo, revision, path, options, cache));
  Rendered out{.commit = std::move(r.commit), .objects = {}, .content_key = std::move(r.content_key),
               .renderer = r.renderer};
  out.objects.reserve(r.manifests.size());
  for (auto& m : r.manifests) out.objects.push_back(std::move(m.object));
  return out;
}

}  // namespace gantry::render
