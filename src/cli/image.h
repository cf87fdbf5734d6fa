#pragma once
// What the `gantry image` subcommands share.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cli/exit.h"
#include "oci/registry.h"

namespace CLI {
class App;
}

namespace gantry::cli {

// An OCI layout named on the command line: "oci:DIR[:TAG]".
struct OciTarget {
  std::filesystem::path dir;
  std::string tag;  // "" when not given
};

// Parses "oci:DIR[:TAG]"; the tag is what follows the last ':' after the last '/'.
// InvalidArgument without the oci: prefix or a directory.
Result<OciTarget> ParseOciTarget(std::string_view text);

// The registry flags of the commands that push and pull (image push/pull/inspect/tags/latest,
// push artifact).
struct RegistryFlags {
  std::string registry_config;
  std::string ca_file;
  std::vector<std::string> insecure_http;
  std::string username;
  bool password_stdin = false;
};
void AddRegistryFlags(CLI::App* cmd, RegistryFlags& f);

// flags → a registry client; the --username/--password-stdin credentials are bound to `host`.
// InvalidArgument for flags that do not go together or an unreadable Docker config.
Result<std::unique_ptr<oci::Registry>> OpenRegistry(const RegistryFlags& f, const std::string& host);

struct Deps;
// Prints "error: MESSAGE" to deps.err and returns `code`: kExitUsage for bad input (references,
// flags, the registry options), kExitFailed when `latest` finds no tag, kExitError otherwise.
int Fail(const Deps& deps, const Status& s, int code = kExitError);

}  // namespace gantry::cli
