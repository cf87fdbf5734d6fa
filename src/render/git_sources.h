#pragma once
// GitSources: where the agent and the deployer get an application's desired objects from Git.
//
// One bare mirror per repository URL under one cache directory (git::Mirrors), opened with the
// credentials bound to the URL's host; fetched on request, with one fetch serving every caller of
// that URL that asked before it began (a push webhook for a monorepo of a hundred applications
// fetches once, not a hundred times); rendered with RenderGit through one RenderCache; returned as
// objects only (the manifests' source positions are dropped: the callers keep many of them).
//
// Thread-safe. The mirrors are one trust domain (see git::Mirrors).

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "git/git.h"
#include "render/render.h"
#include "value/value.h"

namespace gantry::render {

// The reason (Status::reason) of every error of GitSources::Open and Fetch: the source could not
// be reached, as opposed to a render that failed on what it read.
inline constexpr std::string_view kFetchFailed = "FetchFailed";

// The desired objects of an application path at a commit.
struct Rendered {
  std::string commit;
  std::vector<value::Value> objects;
  // Equal keys mean equal objects (GitRendered::content_key); "" when unknown.
  std::string content_key;
  Renderer renderer = Renderer::kAuto;  // the renderer used; kAuto when unknown
};

struct GitSourcesOptions {
  std::filesystem::path mirrors_dir;          // one bare mirror per URL under it
  std::vector<git::Credentials> credentials;  // each sent only to its own host
  bool allow_file = false;                    // accept file:// URLs (tests, local setups)
  size_t render_cache_bytes = 0;              // rendered results kept for unchanged sources; 0: none
  Clock* clock = nullptr;                     // when fetches began; null: SystemClock()
  // A remote Kustomize base's repository is fetched again when its last fetch began longer ago.
  std::chrono::seconds remote_base_max_age{60};
};

class GitSources {
 public:
  explicit GitSources(GitSourcesOptions options);
  GitSources(const GitSources&) = delete;
  GitSources& operator=(const GitSources&) = delete;

  // The mirror of `url`, created if missing, not fetched; one handle per URL, kept and shared by
  // later calls and threads. Errors (reason kFetchFailed):
  // InvalidArgument for a refused URL (git::ValidateUrl), Internal when the cache cannot be written.
  Result<std::shared_ptr<git::Repository>> Open(const std::string& url);

  // Brings `repo` up to date unless a fetch of its URL by this GitSources began at or after
  // `fetch_after`; the epoch means: only if it was never fetched; time_point::max(): always. Concurrent callers for one URL
  // take turns, so the later ones find the earlier one's fetch. Errors: git's, with "fetch <url>: "
  // in front and reason kFetchFailed.
  Status Fetch(git::Repository& repo, std::chrono::steady_clock::time_point fetch_after);

  // repo.Resolve(revision), remembered until the next fetch of its URL through this GitSources
  // (the only writer of its mirror): reading a ref from disk was a third of an unchanged refresh's
  // CPU. Errors: repo.Resolve's.
  Result<std::string> Resolve(git::Repository& repo, const std::string& revision);

  // A KustomizeOptions::fetch_remote over these mirrors: opens the remote base's repository (with
  // the credentials bound to its host, as for any repository here), fetches it unless a fetch of
  // it began less than options.remote_base_max_age ago, resolves the ref and materializes that
  // commit. Errors as Open's, Fetch's, Resolve's and Materialize's, with the URL and ref. The
  // GitSources must outlive the function.
  KustomizeOptions::FetchRemote RemoteFetcher();

  // Open, Fetch, then RenderGit of `path` at `revision` with `options` through the render cache;
  // remote Kustomize bases (from options.kustomize.remote_hosts) through RemoteFetcher() unless
  // options.kustomize.fetch_remote is set.
  // Errors: Open's with "fetch: " in front, Fetch's, and RenderGit's as they are.
  Result<Rendered> Render(const std::string& url, std::string_view revision, const std::string& path,
                          const Options& options, std::chrono::steady_clock::time_point fetch_after);

 private:
  struct Fetches;  // of one URL
  std::shared_ptr<Fetches> FetchesOf(const std::string& url);

  GitSourcesOptions options_;
  Clock& clock_;
  git::Mirrors mirrors_;
  RenderCache cache_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Fetches>> fetches_;  // GUARDED_BY(mu_), by URL
  // Open's handles, by URL: validating the URL and hashing it into the mirror's directory name
  // was a quarter of an unchanged refresh's CPU. Handles are safe to share between threads.
  std::map<std::string, std::shared_ptr<git::Repository>> repos_;  // GUARDED_BY(mu_)
};

// RenderGit of `path` at `revision` (fetching is the caller's), as objects. Errors: RenderGit's.
Result<Rendered> RenderGitObjects(git::Repository& repo, std::string_view revision, const std::string& path,
                                  const Options& options = {}, RenderCache* cache = nullptr);

}  // namespace gantry::render
