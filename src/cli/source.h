#pragma once
// The flags every command that reads manifests shares (render, validate, diff, sync), and loading
// them: a local directory (PATH), a Git repository (--repo URL --revision REV --path P) or an OCI
// artifact (--repo oci://host/repository --revision TAG|DIGEST --path P, pulled under the cache
// directory by manifest digest), rendered as plain YAML, Kustomize or Helm, or a chart of a Helm
// repository (--repo URL --chart NAME --revision VERSION-OR-RANGE; render::ChartRepos, cached
// under the cache directory).

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kube/kube.h"
#include "render/git_sources.h"
#include "render/render.h"
#include "value/value.h"

namespace CLI {
class App;
}

namespace gantry::cli {

struct SourceFlags {
  std::string path;      // local directory or file; with --repo, the path inside the repository
  std::string repo;      // Git URL, oci://host/repository, or with chart a Helm repository (https://, oci://)
  std::string chart;     // a chart of the Helm repository --repo; revision is its version or range
  std::string ca_file;   // PEM bundle trusted by the Helm repository's TLS instead of the system's
  std::string revision = "HEAD";  // for oci://: a tag or digest, HEAD means latest; for a chart: a version or range
  std::string cache_dir;  // Git mirrors, artifacts and charts (default: $GANTRY_CACHE or ~/.cache/gantry)
  bool allow_file_repo = false;
  std::string git_username;  // with GANTRY_GIT_PASSWORD (never a flag: it would show in ps)
  std::string ssh_key;         // private key file for ssh:// and scp-like --repo URLs
  std::string ssh_known_hosts;  // "" : ~/.ssh/known_hosts
  std::string renderer = "auto";
  std::string kustomize_binary;  // "" : render::FindRenderer's search
  std::string helm_binary;
  bool no_render_sandbox = false;
  std::vector<std::string> images;       // kustomize image overrides
  std::vector<std::string> kustomize_remote_hosts;  // Git hosts remote Kustomize bases may come from
  std::string release_name;
  std::string helm_namespace;
  std::vector<std::string> value_files;
  std::vector<std::string> helm_set;
  // Registries of oci:// sources; credentials from the Docker config.
  std::string registry_config;
  std::string registry_ca_file;
  std::vector<std::string> insecure_registries;
  std::string jsonnet_binary;
  std::vector<std::string> jsonnet_tla, jsonnet_tla_code, jsonnet_ext_str, jsonnet_ext_code;  // name=value
  std::vector<std::string> jsonnet_libs;
  bool jsonnet_recurse = false;
  std::string sops_age_key_file;  // "" : $GANTRY_SOPS_AGE_KEY_FILE; none: encrypted objects are errors
  std::string sops_binary;
};

// Adds the flags; `path_required` makes PATH a required positional unless --repo is given.
void AddSourceFlags(CLI::App* cmd, SourceFlags& flags);

struct Loaded {
  std::vector<render::Manifest> manifests;
  std::string revision;  // the commit (Git), the manifest digest (OCI artifacts), "chart@version sha256:..." (charts)
};

// InvalidArgument (a usage error) when the flags name no source: neither PATH nor --repo.
Status ValidateSourceFlags(const SourceFlags& flags);

// The cluster a render is for (diff, sync): its namespace is the Helm release namespace unless
// --helm-namespace names another, and Helm's .Capabilities are the cluster's version and APIs.
struct Destination {
  std::string namespace_;
  kube::Capabilities capabilities;
};

// Renders the source the flags describe, for `destination` when given. Errors name the source.
Result<Loaded> LoadSource(const SourceFlags& flags, const Destination* destination = nullptr);

// The Git access of a command's --repo: mirrors under CacheDir(cache_dir)/git (cli/state.h) and, when
// GANTRY_GIT_PASSWORD is set, that password or token with `username`, sent only to `repo`'s host.
// With `ssh_key`, that private key (its passphrase, if any, from GANTRY_SSH_KEY_PASSPHRASE) for
// `repo`'s host, the host key checked against `ssh_known_hosts` ("" : $HOME/.ssh/known_hosts).
render::GitSourcesOptions GitSourcesOptionsFor(const std::string& cache_dir, const std::string& repo,
                                               const std::string& username, bool allow_file,
                                               const std::string& ssh_key = "",
                                               const std::string& ssh_known_hosts = "");

}  // namespace gantry::cli
