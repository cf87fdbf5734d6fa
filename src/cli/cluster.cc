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

Result<std::map<std::string, std::string>> ParseNodeSelector(const std::vector<std::string>& values) {
  std::map<std::string, std::string> out;
  for (const std::string& kv : values) {
    size_t eq = kv.find('=');
    if (eq == 0 || eq == std::string::npos) {
      return InvalidArgumentError("--node-selector {:?}: want KEY=VALUE (a node label)", kv);
    }
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

}  // namespace gantry::cli
