#pragma once
// Where Gantry keeps things on this machine, the same for every command:
//   - the state directory (the ledger gantry.db, clusters/, config/): --state-dir, else
//     $GANTRY_HOME, else ~/.config/gantry;
//   - the cache directory (Git mirrors): --cache-dir, else $GANTRY_CACHE, else ~/.cache/gantry.

#include <filesystem>
#include <memory>
#include <string>

#include "base/status.h"
#include "store/store.h"

namespace gantry::cli {

// The state directory: `flag` when not empty, else $GANTRY_HOME, else ~/.config/gantry.
std::filesystem::path StateDir(const std::string& flag);

// The cache directory: `flag` when not empty, else $GANTRY_CACHE, else ~/.cache/gantry.
std::filesystem::path CacheDir(const std::string& flag);

// The ledger's URL: `url` when not empty, else SQLite at StateDir(state_dir)/gantry.db (absolute),
// the directory created with mode 0700. An error (with errno's code) when it cannot be created.
Result<std::string> StoreUrl(const std::string& url, const std::string& state_dir);

}  // namespace gantry::cli
