// gantry preview --repo URL|PATH --base REV --head REV [--app NAME]... [--env ENV]: what a change
// of a config repository would do to each cluster of the topology, as the pull-request preview
// comment shows it (server/previews.h, docs/forges.md), printed in the terminal.
//
// The topology (Cluster and Environment objects) is --config's or the state directory's, as for
// `gantry deploy`; the applications are --app's, else every application of the ledger (--db or
// the state directory's). Pull-mode clusters are previewed through their Applications of --repo,
// rendered as their agents render them (mirrors under --cache-dir). Exit codes: 0 printed; 1
// printed, but a target could not be previewed (its reason is in the report); 2 usage; 3 the
// repository, topology or ledger cannot be read.

#include <cstdint>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "cli/commands.h"
#include "cli/deliver.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/source.h"
#include "server/previews.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct PreviewFlags {
  StateFlags state;
  std::string repo, base, head, env, cache_dir, git_username;
  bool allow_file_repo = false;
  std::vector<std::string> apps;
  std::string project = "default";
  std::string path_template = "envs/{env}";
  std::string default_namespace = "default";
  std::string format = "plain";
  size_t max_bytes = 0;
};

// Prints the preview; kReasonFailed when a target could not be previewed.
Status RunPreview(const PreviewFlags& f, const Deps& deps) {
  std::string repo = f.repo;
  bool allow_file = f.allow_file_repo;
  // A local repository is named by its path.
  if (std::error_code ec; repo.find("://") == std::string::npos && fs::is_directory(repo, ec)) {
    repo = "file://" + fs::absolute(repo).lexically_normal().string();
    allow_file = true;
  }
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(f.state));
  server::PreviewRequest q{.config = &config, .base = f.base, .head = f.head, .path_template = f.path_template,
                           .only_env = f.env, .default_namespace = f.default_namespace};
  for (const std::string& app : f.apps) q.apps.emplace_back(app, f.project);
  bool pull_clusters = false;
  for (const deliver::Cluster& c : config.clusters) pull_clusters = pull_clusters || c.pull;
  if (q.apps.empty()) {
    GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(f.state, deps));
    GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> apps, store->ListApps());
    for (const std::string& app : apps) {
      auto newest = store->ListReleases(app, 1);
      const std::string project = newest.ok() && !newest->empty() ? newest->front().project : "";
      q.apps.emplace_back(app, project.empty() ? "default" : project);
    }
    if (q.apps.empty() && !pull_clusters) {
      return InvalidArgumentError("the ledger has no application: name one with --app");
    }
  }
  const render::GitSourcesOptions git = GitSourcesOptionsFor(f.cache_dir, repo, f.git_username, allow_file);
  std::unique_ptr<agent::Source> pull_source;
  if (pull_clusters) {
    const agent::AgentOptions render_as_agent{.cache_dir = (git.mirrors_dir.parent_path() / "pull-render").string(),
                                              .allow_file_repos = allow_file,
                                              .git_repo_credentials = git.credentials};
    GANTRY_ASSIGN_OR_RETURN(pull_source, agent::NewSource(render_as_agent, {}));
    q.pull_source = pull_source.get();
    q.config_repo = repo;
  }
  auto sources = std::make_shared<render::GitSources>(git);
  GANTRY_RETURN_IF_ERROR(sources->Open(repo).status().WithContext("--repo"));
  q.render = deliver::GitRenderFn(std::move(sources), repo);
  q.connect = [&deps](const deliver::Cluster& c) { return deps.connect_cluster(c, {}); };
  GANTRY_ASSIGN_OR_RETURN(server::Preview preview, server::ComputePreview(q));
  const bool markdown = f.format == "markdown";
  const size_t max = f.max_bytes > 0 ? f.max_bytes : markdown ? size_t{64} * 1024 : SIZE_MAX;
  fmt::print(deps.out, "{}", server::Report(preview, {.markdown = markdown, .max_bytes = max}));
  std::fflush(deps.out);
  for (const auto& t : preview.targets) {
    if (!t.error.empty()) {
      return FailedPreconditionError("{} / {} could not be previewed: {}", t.environment, t.cluster, t.error)
          .set_reason(kReasonFailed);
    }
  }
  return OkStatus();
}

}  // namespace

void AddPreviewCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<PreviewFlags>();
  auto* cmd = app.add_subcommand(
      "preview", "Show what a change of the config repository would do to each cluster (the pull-request preview)");
  cmd->add_option("--repo", f->repo, "Config repository: a Git URL or a local repository's path")->required();
  cmd->add_option("--base", f->base, "Revision the change is made on (branch, tag, SHA)")->required();
  cmd->add_option("--head", f->head, "Revision with the change")->required();
  cmd->add_option("--app", f->apps, "Application to preview (repeatable; default: every application of the ledger)");
  cmd->add_option("--project", f->project, "Project of the --app applications (default: default)");
  cmd->add_option("--env", f->env, "Preview this environment only");
  cmd->add_option("--path-template", f->path_template, "Path of each environment's overlay (default envs/{env})");
  cmd->add_option("--namespace", f->default_namespace, "Namespace for objects without one (default: default)");
  cmd->add_option("--format", f->format, "plain or markdown (the pull-request comment)")
      ->check(CLI::IsMember({"plain", "markdown"}));
  cmd->add_option("--max-bytes", f->max_bytes, "Bound of the report (default: 64 KiB for markdown, none for plain)");
  cmd->add_option("--cache-dir", f->cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", f->allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", f->git_username, "User for HTTPS Git; the password or token is read from GANTRY_GIT_PASSWORD");
  AddStateFlags(cmd, f->state);
  cmd->callback([f, &deps, &exit_code] { exit_code = Report(RunPreview(*f, deps), deps.err); });
}

}  // namespace gantry::cli
