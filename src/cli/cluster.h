#pragma once
// Flags and helpers shared by the commands that talk to a cluster.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kube/kube.h"

namespace CLI {
class App;
}

namespace gantry::cli {

struct ClusterFlags {
  std::string kubeconfig;
  std::string context;
  std::string namespace_;
  std::vector<std::string> allow_exec;
  bool in_cluster = false;
};

// --kubeconfig, --context, -n/--namespace, --allow-exec-plugin (and --in-cluster when asked).
void AddClusterFlags(CLI::App* cmd, ClusterFlags& flags, bool in_cluster_flag = false);

// A client for the cluster the flags name; `config_out` receives its configuration. This is the
// real Deps::connect, which src/exe/main.cc wires in; commands reach a cluster only through deps.
Result<std::unique_ptr<kube::Client>> Connect(const ClusterFlags& flags, kube::RestConfig* config_out);

// --node-selector values (KEY=VALUE, repeatable) as a Pod's nodeSelector; InvalidArgument naming
// the value and the flag for one without a key or '='.
Result<std::map<std::string, std::string>> ParseNodeSelector(const std::vector<std::string>& values);

}  // namespace gantry::cli
