#pragma once
// What `gantry ci run` (ci_run.cc) and `gantry server` (server.cc) share: the flags that choose
// where pipeline steps run, and the executor they build.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "ci/executor.h"
#include "cli/deps.h"
#include "kube/kube.h"

namespace CLI {
class App;
}

namespace gantry::cli {

// --executor process (bubblewrap, or the host with --no-sandbox) or kube (a Pod per step in
// --namespace of the cluster of --kubeconfig/--context).
struct ExecutorFlags {
  std::string kind = "process";
  bool no_sandbox = false;
  std::vector<std::string> sandbox_paths;
  // gantry server only: the host user of steps (default 65533 when the server runs as root).
  bool server = false;
  std::optional<uint32_t> step_uid;
  std::string kubeconfig;  // "" = $KUBECONFIG, then ~/.kube/config
  std::string context;
  std::string namespace_;  // "" = the context's namespace
  std::string image;       // "" = the executor's default image
  std::string helper_image;  // "" = the workspace is not shipped to step Pods
  std::vector<std::string> node_selector;  // KEY=VALUE
  std::vector<std::string> tolerate;       // taint keys
};

void AddExecutorFlags(CLI::App* cmd, ExecutorFlags& flags);

// InvalidArgument naming the flag for a combination that cannot work (kube flags with the process
// executor, a relative --sandbox-path, --step-uid without root): a usage error.
Status ValidateExecutorFlags(const ExecutorFlags& flags);

// The executor (and the cluster client it uses) the flags ask for.
struct BuiltExecutor {
  std::unique_ptr<kube::Client> client;  // kube only; outlives executor (declared first)
  std::unique_ptr<ci::Executor> executor;
};

// Builds the executor of validated flags; the kube executor's client comes from deps.connect, its
// namespace from the context when --namespace is not given. The executor's and connect's errors.
Result<BuiltExecutor> MakeExecutor(const ExecutorFlags& flags, const Deps& deps);

}  // namespace gantry::cli
