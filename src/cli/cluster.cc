#include "cli/cluster.h"

#include <CLI/CLI.hpp>

namespace gantry::cli {

void AddClusterFlags(CLI::App* cmd, ClusterFlags& f, bool in_cluster_flag) {
  cmd->add_option("--kubeconfig", f.kubeconfig, "Kubeconfig file (default: $KUBECONFIG or ~/.kube/config)");
  cmd->add_option("--context", f.context, "Kubeconfig context (default: current-context)");
  cmd->add_option("-n,--namespace", f.namespace_, "Namespace (default: the context's)");
  cmd->add_option("--allow-exec-plugin", f.allow_exec, "Exec credential plugin allowed to run (by name)");
  if (in_cluster_flag) {
    cmd->add_flag("--in-cluster", f.in_cluster, "Use the Pod's service account instead of a kubeconfig");
  }
}

Result<std::unique_ptr<kube::Client>> Connect(const ClusterFlags& f, kube::RestConfig* config_out) {
  kube::RestConfig config;
  if (f.in_cluster) {
    GANTRY_ASSIGN_OR_RETURN(config, kube::InClusterConfig());
    if (!f.namespace_.empty()) config.namespace_ = f.namespace_;
  } else {
    kube::LoadOptions lo{.context = f.context, .namespace_ = f.namespace_, .allowed_exec_plugins = f.allow_exec};
    if (!f.kubeconfig.empty()) lo.paths = {f.kubeconfig};
    GANTRY_ASSIGN_OR_RETURN(config, kube::LoadConfig(lo));
  }
  *config_out = config;
  return kube::NewHttpClient(config);
}

}  // namespace gantry::cli
