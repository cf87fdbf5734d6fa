#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

#ifndef GANTRY_VERSION
#define GANTRY_VERSION "0.0.0-dev"
#endif

namespace gantry::cli {

void AddVersionCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("version", "Print the version of gantry");
  cmd->callback([&exit_code] {
    fmt::print("gantry {}\n", GANTRY_VERSION);
    exit_code = 0;
  });
}

}  // namespace gantry::cli
