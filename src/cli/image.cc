#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace gantry::cli {

// `gantry image …`: build (image_build.cc), push / pull / inspect / latest (image_registry.cc).
void AddImageCommand(CLI::App& app, int& exit_code) {
  auto* image = app.add_subcommand("image", "Build, push and inspect OCI images (no Docker daemon)");
  image->require_subcommand(1);
  AddImageBuildCommand(*image, exit_code);
  AddImageRegistryCommands(*image, exit_code);
}

}  // namespace gantry::cli
