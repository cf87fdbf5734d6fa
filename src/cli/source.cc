#include "cli/source.h"

#include <cstdlib>

#include <CLI/CLI.hpp>

#include "cli/state.h"
#include "git/git.h"
#include "oci/artifact.h"
#include "render/chart_repo.h"

namespace gantry::cli {

void AddSourceFlags(CLI::App* cmd, SourceFlags& f) {
  cmd->add_option("path", f.path, "Directory or file of manifests (with --repo: the path in the repository)");
  cmd->add_option("--repo", f.repo,
                  "Git repository URL to render from (https://, ssh://, git@host:path), an OCI artifact "
                  "(oci://host/repository, as gantry push artifact and flux push artifact publish), or with "
                  "--chart a Helm repository (https://... with an index.yaml, or oci://host/path)");
  cmd->add_option("--revision", f.revision,
                  "Branch, tag, commit or semver range (with --repo; default HEAD); for an oci:// artifact, a tag "
                  "or sha256 digest (default latest); with --chart, the chart's version or semver range (default: "
                  "the newest release)");
  cmd->add_option("--chart", f.chart,
                  "Chart of the Helm repository --repo (https://... with an index.yaml, or oci://host/path)");
  cmd->add_option("--ca-file", f.ca_file, "PEM CA bundle the Helm repository's TLS certificate is checked against");
  cmd->add_option("--cache-dir", f.cache_dir, "Where Git mirrors, pulled artifacts and charts are kept")
      ->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", f.allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", f.git_username,
                  "User for HTTPS Git and Helm repositories; the password or token is read from GANTRY_GIT_PASSWORD");
  cmd->add_option("--ssh-key", f.ssh_key,
                  "Private key file for SSH Git (ssh://, git@host:path); a passphrase is read from "
                  "GANTRY_SSH_KEY_PASSPHRASE");
  cmd->add_option("--ssh-known-hosts", f.ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (default ~/.ssh/known_hosts)");
  cmd->add_option("--renderer", f.renderer, "auto, plain, kustomize, helm or jsonnet")
      ->check(CLI::IsMember({"auto", "plain", "kustomize", "helm", "jsonnet"}));
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
  cmd->add_option("--registry-config", f.registry_config,
                  "With an oci:// --repo: Docker config.json with registry credentials (default "
                  "$DOCKER_CONFIG/config.json or ~/.docker/config.json)");
  cmd->add_option("--registry-ca-file", f.registry_ca_file, "With an oci:// --repo: PEM CA bundle for the registry");
  cmd->add_option("--insecure-registry", f.insecure_registries,
                  "With an oci:// --repo: registry host[:port] reached over plain HTTP (repeatable)");
  cmd->add_option("--jsonnet-binary", f.jsonnet_binary,
                  "jsonnet to run (default: $GANTRY_JSONNET, else PATH, else the tool cache)");
  cmd->add_option("--jsonnet-tla", f.jsonnet_tla, "Jsonnet top-level argument, name=string");
  cmd->add_option("--jsonnet-tla-code", f.jsonnet_tla_code, "Jsonnet top-level argument, name=code");
  cmd->add_option("--jsonnet-ext-str", f.jsonnet_ext_str, "Jsonnet external variable, name=string");
  cmd->add_option("--jsonnet-ext-code", f.jsonnet_ext_code, "Jsonnet external variable, name=code");
  cmd->add_option("--jsonnet-lib", f.jsonnet_libs, "Jsonnet library directory (-J), relative to the repository root");
  cmd->add_flag("--jsonnet-recurse", f.jsonnet_recurse, "Evaluate *.jsonnet files in subdirectories too");
  cmd->add_option("--sops-age-key-file", f.sops_age_key_file,
                  "age key file to decrypt SOPS-encrypted objects with (e.g. a mounted Secret)")
      ->envname("GANTRY_SOPS_AGE_KEY_FILE");
  cmd->add_option("--sops-binary", f.sops_binary, "sops to run (default: $GANTRY_SOPS, else PATH, else the tool cache)");
}

// An oci:// source: the tag resolved to its digest, the artifact pulled under the cache (once per
// digest) and `path` rendered inside it.
Result<Loaded> LoadArtifact(const SourceFlags& f, const render::Options& o) {
  GANTRY_ASSIGN_OR_RETURN(oci::Reference ref, oci::ArtifactReference(f.repo, f.revision));
  oci::RegistryOptions ro{.docker_config = f.registry_config, .ca_file = f.registry_ca_file,
                          .insecure_http_hosts = f.insecure_registries};
  GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<oci::Registry> registry, oci::NewHttpRegistry(std::move(ro)));
  GANTRY_ASSIGN_OR_RETURN(std::string digest, oci::ResolveArtifact(*registry, ref));
  GANTRY_ASSIGN_OR_RETURN(std::filesystem::path dir, oci::PullArtifact(*registry, ref, digest, CacheDir(f.cache_dir) / "oci"));
  std::string path = f.path.empty() ? "." : f.path;
  auto manifests = render::Render(render::Source{dir, path}, o);
  if (!manifests.ok()) return manifests.status().WithContext(fmt::format("render {} of {}@{}", path, f.repo, digest));
  return Loaded{*std::move(manifests), digest};
}

namespace {

Status AddJsonnetVars(const std::vector<std::string>& entries, bool code, const char* flag,
                      std::vector<render::JsonnetVar>& out) {
  for (const std::string& e : entries) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgumentError("{} {:?}: must be name=value", flag, e);
    out.push_back({e.substr(0, eq), e.substr(eq + 1), code});
  }
  return OkStatus();
}

}  // namespace

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
  if (!f.chart.empty() && f.repo.empty()) return InvalidArgumentError("--chart needs --repo, the Helm repository");
  if (!f.chart.empty() && !f.path.empty()) {
    return InvalidArgumentError("--chart renders the chart of a Helm repository: give no path (value files are paths "
                                "inside the chart)");
  }
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
  o.jsonnet_binary = f.jsonnet_binary;
  GANTRY_RETURN_IF_ERROR(AddJsonnetVars(f.jsonnet_tla, false, "--jsonnet-tla", o.jsonnet.tlas));
  GANTRY_RETURN_IF_ERROR(AddJsonnetVars(f.jsonnet_tla_code, true, "--jsonnet-tla-code", o.jsonnet.tlas));
  GANTRY_RETURN_IF_ERROR(AddJsonnetVars(f.jsonnet_ext_str, false, "--jsonnet-ext-str", o.jsonnet.ext_vars));
  GANTRY_RETURN_IF_ERROR(AddJsonnetVars(f.jsonnet_ext_code, true, "--jsonnet-ext-code", o.jsonnet.ext_vars));
  o.jsonnet.libs = f.jsonnet_libs;
  o.jsonnet.recurse = f.jsonnet_recurse;
  o.sops.binary = f.sops_binary;
  if (!f.sops_age_key_file.empty()) {
    GANTRY_ASSIGN_OR_RETURN(o.sops.age_keys, render::ReadAgeKeyFile(f.sops_age_key_file));
  }
  if (destination != nullptr) {
    if (o.helm.namespace_.empty()) o.helm.namespace_ = destination->namespace_;
    o.helm.kube_version = destination->capabilities.kube_version;
    o.helm.api_versions = destination->capabilities.api_versions;
  }
  Loaded out;
  GANTRY_RETURN_IF_ERROR(ValidateSourceFlags(f));
  // Charts (--chart) and the chart dependencies a chart does not vendor, with --repo's password.
  render::ChartRepoOptions co{.cache_dir = CacheDir(f.cache_dir) / "charts", .ca_file = f.ca_file};
  if (const char* password = std::getenv("GANTRY_GIT_PASSWORD"); password && *password && !f.repo.empty()) {
    co.credentials.push_back({.host = git::HostOf(f.repo), .username = f.git_username, .password = password});
  }
  render::ChartRepos charts(std::move(co));
  o.charts = &charts;
  if (f.repo.empty()) {
    // Remote Kustomize bases of a local path: fetched anonymously, through the same mirrors.
    render::GitSources sources({.mirrors_dir = CacheDir(f.cache_dir) / "git", .allow_file = f.allow_file_repo});
    if (!o.kustomize.remote_hosts.empty()) o.kustomize.fetch_remote = sources.RemoteFetcher();
    GANTRY_ASSIGN_OR_RETURN(out.manifests, render::Render(LocalSource(f.path), o));
    return out;
  }
  if (!f.chart.empty()) {
    std::string version = f.revision == "HEAD" ? "" : f.revision;
    GANTRY_ASSIGN_OR_RETURN(render::FetchedChart chart,
                            charts.Fetch({.repo_url = f.repo, .chart = f.chart, .version = version}));
    o.renderer = render::Renderer::kHelm;
    GANTRY_ASSIGN_OR_RETURN(out.manifests,
                            render::Render(render::Source{chart.dir.parent_path(), chart.dir.filename().string()}, o));
    out.revision = chart.Revision();
    return out;
  }
  if (f.repo.starts_with("oci://")) return LoadArtifact(f, o);
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
