#include "cli/ci.h"

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "cli/cluster.h"

namespace gantry::cli {
namespace {

// A host uid no account uses, for the steps of a server run as root (docs/security.md).
constexpr uint32_t kDefaultStepUid = 65533;

}  // namespace

void AddExecutorFlags(CLI::App* cmd, ExecutorFlags& f) {
  cmd->add_option("--executor", f.kind, "Where steps run: process (bubblewrap sandbox) or kube (a Pod per step)")
      ->check(CLI::IsMember({"process", "kube"}));
  cmd->add_flag("--no-sandbox", f.no_sandbox,
                "Process executor: run steps on the host without bubblewrap (no isolation; never with untrusted "
                "pipelines)");
  cmd->add_option("--sandbox-path", f.sandbox_paths,
                  "Process executor: a host path steps may read, bound read-only at the same place (a toolchain "
                  "outside /usr, e.g. /opt/jdk); repeatable; never a path holding credentials");
  cmd->add_option("--kubeconfig", f.kubeconfig, "Kube executor: kubeconfig file (default $KUBECONFIG, ~/.kube/config)");
  cmd->add_option("--context", f.context, "Kube executor: kubeconfig context (default the current one)");
  cmd->add_option("--namespace", f.namespace_, "Kube executor: namespace of the step Pods (default the context's)");
  cmd->add_option("--image", f.image, "Kube executor: image of steps without image: (default debian:bookworm-slim)");
  cmd->add_option("--helper-image", f.helper_image,
                  "Kube executor: Gantry's own image (deploy/build-image.sh), whose helper containers ship the "
                  "workspace into step Pods and back (default: none, steps start in an empty /workspace)");
  cmd->add_option("--node-selector", f.node_selector,
                  "Kube executor: KEY=VALUE label step Pods' nodes must carry (their nodeSelector); repeatable");
  cmd->add_option("--tolerate", f.tolerate,
                  "Kube executor: a taint key step Pods tolerate (operator Exists, any effect); repeatable");
}

Status ValidateExecutorFlags(const ExecutorFlags& f) {
  if (f.kind == "process") {
    std::vector<std::string> given;
    for (const auto& [flag, set] : {std::pair{"--kubeconfig", !f.kubeconfig.empty()}, {"--context", !f.context.empty()},
                                    {"--namespace", !f.namespace_.empty()}, {"--image", !f.image.empty()},
                                    {"--helper-image", !f.helper_image.empty()},
                                    {"--node-selector", !f.node_selector.empty()}, {"--tolerate", !f.tolerate.empty()}}) {
      if (set) given.emplace_back(flag);
    }
    if (!given.empty()) {
      return InvalidArgumentError("{} {} for the kube executor: add --executor kube", fmt::join(given, ", "),
                                  given.size() == 1 ? "is" : "are");
    }
    for (const auto& p : f.sandbox_paths) {
      if (!p.starts_with('/')) return InvalidArgumentError("--sandbox-path {:?} must be absolute", p);
    }
    if (f.step_uid && ::geteuid() != 0) {
      return InvalidArgumentError("--step-uid needs a server run as root (steps already run as this user, uid {})",
                                  ::geteuid());
    }
    return OkStatus();
  }
  if (f.no_sandbox || !f.sandbox_paths.empty()) {
    return InvalidArgumentError("--no-sandbox and --sandbox-path are for --executor process");
  }
  return OkStatus();
}

Result<BuiltExecutor> MakeExecutor(const ExecutorFlags& f, const Deps& deps) {
  BuiltExecutor out;
  if (f.kind == "process") {
    ci::ProcessExecutorOptions eo;
    eo.sandbox = !f.no_sandbox;
    eo.extra_ro_paths = f.sandbox_paths;
    uint32_t uid = f.step_uid.value_or(kDefaultStepUid);
    if (f.server && !f.no_sandbox && ::geteuid() == 0 && uid != 0) eo.step_user = std::pair{uid, uid};
    if (f.server && !f.no_sandbox && ::geteuid() == 0 && uid == 0) {
      log::Warn("ci: --step-uid 0: steps' uid in the sandbox maps to root on this host");
    }
    GANTRY_ASSIGN_OR_RETURN(out.executor, ci::NewProcessExecutor(eo));
    return out;
  }
  kube::RestConfig config;
  GANTRY_ASSIGN_OR_RETURN(out.client, deps.connect(ClusterFlags{.kubeconfig = f.kubeconfig, .context = f.context,
                                                                .namespace_ = f.namespace_},
                                                   &config));
  ci::KubernetesExecutorOptions ko;
  ko.namespace_ = config.namespace_.empty() ? "default" : config.namespace_;
  if (!f.image.empty()) ko.default_image = f.image;
  ko.helper_image = f.helper_image;
  GANTRY_ASSIGN_OR_RETURN(ko.node_selector, ParseNodeSelector(f.node_selector));
  ko.tolerate_taints = f.tolerate;
  out.executor = ci::NewKubernetesExecutor(*out.client, ko);
  return out;
}

}  // namespace gantry::cli
