#pragma once
// Where Gantry keeps things on this machine, the same for every command:
//   - the state directory (the ledger gantry.db, clusters/, config/): --state-dir, else
//     $GANTRY_HOME, else ~/.config/gantry;
//   - the cache directory (Git mirrors): --cache-dir, else $GANTRY_CACHE, else ~/.cache/gantry.
// In the state directory, config/ holds the Cluster and Environment objects the `cluster` and
// `env` commands save (one KIND-NAME.yaml each, mode 0600) and clusters/ the kubeconfigs copied
// for them (NAME.kubeconfig, mode 0600); both directories are mode 0700.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::cli {

// The state directory: `flag` when not empty, else $GANTRY_HOME, else ~/.config/gantry.
std::filesystem::path StateDir(const std::string& flag);

// The cache directory: `flag` when not empty, else $GANTRY_CACHE, else ~/.cache/gantry.
std::filesystem::path CacheDir(const std::string& flag);

// The ledger's URL: `url` when not empty, else SQLite at StateDir(state_dir)/gantry.db (absolute),
// the directory created with mode 0700. An error (with errno's code) when it cannot be created.
Result<std::string> StoreUrl(const std::string& url, const std::string& state_dir);

// Writes `object` to STATE_DIR/config/KIND-NAME.yaml (kind: "cluster" or "environment"),
// replacing it. Errors with errno's code when the directory or file cannot be written.
Status SaveConfigObject(const std::filesystem::path& state_dir, std::string_view kind, std::string_view name,
                        const value::Value& object);

// Removes STATE_DIR/config/KIND-NAME.yaml; NotFound "no KIND NAME in DIR" when there is none.
Status RemoveConfigObject(const std::filesystem::path& state_dir, std::string_view kind, std::string_view name);

// Writes `kubeconfig` to STATE_DIR/clusters/NAME.kubeconfig and returns its path.
Result<std::filesystem::path> SaveKubeconfig(const std::filesystem::path& state_dir, std::string_view name,
                                             std::string_view kubeconfig);

// Removes STATE_DIR/clusters/NAME.kubeconfig if it is there.
void RemoveKubeconfig(const std::filesystem::path& state_dir, std::string_view name);

}  // namespace gantry::cli
