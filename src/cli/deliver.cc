// Push mode on the command line (see docs/push-mode.md and cli/deliver.h):
//
//   gantry cluster add NAME --kubeconfig FILE [--context C] --env ENV [--label k=v] [--reference] [--mode pull]
//   gantry cluster list | cluster remove NAME
//   gantry env add NAME [--after ENV]... [--cluster C]... [--approval] [--soak 10m] [--no-health-gate]
//   gantry env list | env remove NAME
//   gantry deploy APP --revision REV (--repo URL | --dir DIR) [--env ENV | --through ENV] [--prune]
//                 [--rollback-on-failure] [--path-template T] [--timeout 5m] [--parallel N]
//   gantry deploy APP --resume (--repo URL | --dir DIR)
//   gantry approve APP --env ENV --release N
//   gantry status [APP] | gantry history APP | gantry rollback APP --env ENV [--to N]

#include "cli/deliver.h"

#include <algorithm>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/state.h"
#include "oci/registry.h"
#include "sign/policy.h"
#include "cli/terminal.h"

namespace gantry::cli {

void AddStateFlags(CLI::App* cmd, StateFlags& f) {
  cmd->add_option("--state-dir", f.state_dir, "Gantry's state: gantry.db, clusters/, config/ (default ~/.config/gantry)")
      ->envname("GANTRY_HOME");
  cmd->add_option("--config", f.config_dir, "Load Cluster and Environment objects from this file or directory instead");
  cmd->add_option("--db", f.db, "Ledger URL (default sqlite STATE_DIR/gantry.db; postgresql://... to share)")->envname("GANTRY_DB");
}

std::filesystem::path StateDir(const StateFlags& f) { return StateDir(f.state_dir); }

Result<deliver::Config> LoadState(const StateFlags& f) {
  auto config = !f.config_dir.empty() ? deliver::LoadConfig(f.config_dir)
                                      : deliver::LoadConfigDirIfExists(StateDir(f) / "config");
  if (!config.ok()) return config;
  if (std::all_of(config->projects.begin(), config->projects.end(),
                  [](const project::Project& p) { return p.verification.empty(); })) {
    return config;
  }
  // Deploys from the command line verify images as the server's do (registry credentials from the
  // Docker config).
  struct Policy {
    std::unique_ptr<oci::Registry> registry;
    std::unique_ptr<sign::ImagePolicy> policy;
  };
  auto policy = std::make_shared<Policy>();
  GANTRY_ASSIGN_OR_RETURN(policy->registry, oci::NewHttpRegistry({}));
  policy->policy = std::make_unique<sign::ImagePolicy>(sign::PolicyOptions{.registry = policy->registry.get()});
  config->image_check = [policy](const project::Project& p, const std::string& env, kube::Client& cluster) {
    return policy->policy->For(p, env, &cluster);
  };
  return config;
}

Result<std::unique_ptr<store::Store>> OpenStore(const StateFlags& f, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(std::string url, StoreUrl(f.db, f.state_dir));
  return deps.open_store(url);
}

void Table(std::FILE* out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) line += (i + 1 < r.size() ? Pad(r[i], w[i] + 2) : r[i]);
    fmt::print(out, "{}\n", line);
  }
}

std::string User(const std::string& otherwise) {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : otherwise;
}

void AddDeliverCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  AddClusterCommands(app, deps, exit_code);
  AddEnvCommands(app, deps, exit_code);
  AddDeployCommands(app, deps, exit_code);
  AddLedgerCommands(app, deps, exit_code);
}

}  // namespace gantry::cli
