#pragma once
// What the `gantry image` subcommands share.

#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"

namespace gantry::cli {

// An OCI layout named on the command line: "oci:DIR[:TAG]".
struct OciTarget {
  std::filesystem::path dir;
  std::string tag;  // "" when not given
};

// Parses "oci:DIR[:TAG]"; the tag is what follows the last ':' after the last '/'.
// InvalidArgument without the oci: prefix or a directory.
Result<OciTarget> ParseOciTarget(std::string_view text);

}  // namespace gantry::cli
