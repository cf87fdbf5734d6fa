#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/image.h"

namespace gantry::cli {

Result<OciTarget> ParseOciTarget(std::string_view text) {
  if (!text.starts_with("oci:")) return InvalidArgumentError("{:?}: expected oci:DIR[:TAG]", text);
  std::string rest(text.substr(4));
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    return OciTarget{rest.substr(0, colon), rest.substr(colon + 1)};
  }
  if (rest.empty()) return InvalidArgumentError("{:?}: no directory", text);
  return OciTarget{rest, ""};
}

// `gantry image …`: build (image_build.cc), push / pull / inspect / latest (image_registry.cc),
// sign / verify / attest / verify-attestation (image_sign.cc).
void AddImageCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* image = app.add_subcommand("image", "Build, push and inspect OCI images (no Docker daemon)");
  image->require_subcommand(1);
  AddImageBuildCommand(*image, deps, exit_code);
  AddImageRegistryCommands(*image, deps, exit_code);
  AddImageSignCommands(*image, deps, exit_code);
  AddImageSbomCommand(*image, deps, exit_code);
}

}  // namespace gantry::cli
