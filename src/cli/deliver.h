#pragma once
// What the push-mode commands share (docs/push-mode.md): environments.cc (cluster, env),
// deploy.cc (deploy, rollback), ledger.cc (approve, status, history).
//
// Every command takes --state-dir (default $GANTRY_HOME or ~/.config/gantry: gantry.db, clusters/,
// config/; cli/state.h), --config DIR (Cluster/Environment YAML from a repository instead of
// config/) and --db URL. Exit codes: 0 done; 1 a deploy or rollback failed (the reason per cluster
// is printed); 2 usage; 3 environment errors (unreachable store, bad config, unreachable cluster
// on add); 4 a deploy is waiting for approval.

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cli/deps.h"
#include "deliver/deliver.h"
#include "store/store.h"

namespace CLI {
class App;
}

namespace gantry::cli {

struct StateFlags {
  std::string state_dir;
  std::string config_dir;
  std::string db;
};

void AddStateFlags(CLI::App* cmd, StateFlags& flags);

// The state directory of the flags (cli/state.h).
std::filesystem::path StateDir(const StateFlags& flags);

// The Cluster and Environment objects: --config's, else the state directory's config/ (none when
// it does not exist). deliver::LoadConfig's errors.
Result<deliver::Config> LoadState(const StateFlags& flags);

// The ledger of --db, else of the state directory, through deps.open_store.
Result<std::unique_ptr<store::Store>> OpenStore(const StateFlags& flags, const Deps& deps);

// Prints rows as an aligned table to `out` (the first row is the header).
void Table(std::FILE* out, const std::vector<std::vector<std::string>>& rows);

// $USER, or `otherwise` when it is not set.
std::string User(const std::string& otherwise);

void AddClusterCommands(CLI::App& app, const Deps& deps, int& exit_code);
void AddEnvCommands(CLI::App& app, const Deps& deps, int& exit_code);
void AddDeployCommands(CLI::App& app, const Deps& deps, int& exit_code);
void AddLedgerCommands(CLI::App& app, const Deps& deps, int& exit_code);

}  // namespace gantry::cli
