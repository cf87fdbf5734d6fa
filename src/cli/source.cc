#include "cli/source.h"

#include <cstdlib>

#include <CLI/CLI.hpp>

#include "cli/state.h"
#include "git/git.h"

namespace gantry::cli {

void AddSourceFlags(CLI::App* cmd, SourceFlags& f) {
  cmd->add_option("path", f.path, "Directory or file of manifests (with --repo: the path in the repository)");
  cmd->add_option("--repo", f.repo, "Git repository URL to render from (https://, ssh://, git@host:path)");
  cmd->add_option("--revision", f.revision, "Branch, tag, commit or semver range (with --repo; default HEAD)");
  cmd->add_option("--cache-dir", f.cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", f.allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", f.git_username,
                  "User for HTTPS Git; the password or token is read from GANTRY_GIT_PASSWORD");
  cmd->add_option("--ssh-key", f.ssh_key,
                  "Private key file for SSH Git (ssh://, git@host:path); a passphrase is read from "
                  "GANTRY_SSH_KEY_PASSPHRASE");
  cmd->add_option("--ssh-known-hosts", f.ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (default ~/.ssh/known_hosts)");
  cmd->add_option("--renderer", f.renderer, "auto, plain, kustomize or helm")
      ->check(CLI::IsMember({"auto", "plain", "kustomize", "helm"}));
  cmd->add_option("--kustomize-binary", f.kustomize_binary,
                  "kustomize to run (default: $GANTRY_KUSTOMIZE, else PATH, else the tool cache)");
  cmd->add_option("--helm-binary", f.helm_binary, "helm to run (default: $GANTRY_HELM, else PATH, else the tool cache)");
  cmd->add_flag("--no-render-sandbox", f.no_render_sandbox,
                "Run kustomize and helm without the bubblewrap sandbox (only for repositories you trust)");
  cmd->add_option("--image", f.images, "Kustomize image override, e.g. web=registry/web:1.2.3");
  cmd->add_option("--kustomize-remote-host", f.kustomize_remote_hosts,
                  "Git host remote Kustomize bases may come from, e.g. github.com (repeatable); Gantry fetches "
                  "them (anonymously for a local path; with --repo's credentials when on --repo's host)");
  cmd->add_option("--release-name", f.release_name, "Helm release name");
  cmd->add_option("--helm-namespace", f.helm_namespace,
                  "Helm release namespace (default: the destination namespace, -n; for render: default)");
  cmd->add_option("-f,--values", f.value_files, "Helm values file (inside the repository)");
  cmd->add_option("--set", f.helm_set, "Helm value, key=value");
}

// A local path's repository is the enclosing Git work tree (so kustomize bases in ../ work and
// nothing outside it is read); without one, the directory itself.
render::Source LocalSource(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path abs = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) return render::Source{".", path};
  fs::path dir = fs::is_directory(abs, ec) ? abs : abs.parent_path();
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / ".git", ec)) return render::Source{p, fs::relative(abs, p, ec).string()};
    if (p == p.parent_path()) break;
  }
  return render::Source{dir, fs::relative(abs, dir, ec).string()};
}

Status ValidateSourceFlags(const SourceFlags& f) {
  if (f.repo.empty() && f.path.empty()) return InvalidArgumentError("give a directory of manifests, or --repo URL --path P");
  return OkStatus();
}

Result<Loaded> LoadSource(const SourceFlags& f, const Destination* destination) {
  render::Options o;
  o.renderer = render::ParseRenderer(f.renderer).value_or(render::Renderer::kAuto);
  o.kustomize_binary = f.kustomize_binary;
  o.helm_binary = f.helm_binary;
  o.sandbox = f.no_render_sandbox ? render::Sandbox::kNone : render::Sandbox::kRequire;
  o.kustomize.images = f.images;
  o.kustomize.remote_hosts = f.kustomize_remote_hosts;
  o.helm.release_name = f.release_name;
  o.helm.namespace_ = f.helm_namespace;
  o.helm.value_files = f.value_files;
  o.helm.set = f.helm_set;
  if (destination != nullptr) {
    if (o.helm.namespace_.empty()) o.helm.namespace_ = destination->namespace_;
    o.helm.kube_version = destination->capabilities.kube_version;
    o.helm.api_versions = destination->capabilities.api_versions;
  }
  Loaded out;
  GANTRY_RETURN_IF_ERROR(ValidateSourceFlags(f));
  if (f.repo.empty()) {
    // Remote Kustomize bases of a local path: fetched anonymously, through the same mirrors.
    render::GitSources sources({.mirrors_dir = CacheDir(f.cache_dir) / "git", .allow_file = f.allow_file_repo});
    if (!o.kustomize.remote_hosts.empty()) o.kustomize.fetch_remote = sources.RemoteFetcher();
    GANTRY_ASSIGN_OR_RETURN(out.manifests, render::Render(LocalSource(f.path), o));
    return out;
  }
  render::GitSources sources(
      GitSourcesOptionsFor(f.cache_dir, f.repo, f.git_username, f.allow_file_repo, f.ssh_key, f.ssh_known_hosts));
  if (!o.kustomize.remote_hosts.empty()) o.kustomize.fetch_remote = sources.RemoteFetcher();
  GANTRY_ASSIGN_OR_RETURN(auto repo, sources.Open(f.repo));
  GANTRY_RETURN_IF_ERROR(sources.Fetch(*repo, {}));
  GANTRY_ASSIGN_OR_RETURN(render::GitRendered r,
                          render::RenderGit(*repo, f.revision, f.path.empty() ? "." : f.path, o));
  out.manifests = std::move(r.manifests);
  out.revision = r.commit;
  return out;
}

render::GitSourcesOptions GitSourcesOptionsFor(const std::string& cache_dir, const std::string& repo,
                                               const std::string& username, bool allow_file,
                                               const std::string& ssh_key, const std::string& ssh_known_hosts) {
  render::GitSourcesOptions o{.mirrors_dir = CacheDir(cache_dir) / "git", .allow_file = allow_file};
  if (!ssh_key.empty()) {
    git::Credentials c{.host = git::HostOf(repo), .username = username, .ssh_private_key_path = ssh_key,
                       .ssh_known_hosts_path = ssh_known_hosts};
    if (const char* passphrase = std::getenv("GANTRY_SSH_KEY_PASSPHRASE")) c.ssh_key_passphrase = passphrase;
    if (c.ssh_known_hosts_path.empty()) {
      const char* home = std::getenv("HOME");
      c.ssh_known_hosts_path = (std::filesystem::path(home != nullptr ? home : "/") / ".ssh" / "known_hosts").string();
    }
    o.credentials.push_back(std::move(c));
  } else if (const char* password = std::getenv("GANTRY_GIT_PASSWORD"); password && *password) {
    o.credentials.push_back({.host = git::HostOf(repo), .username = username, .password = password});
  }
  return o;
}

}  // namespace gantry::cli
