#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"

#ifndef GANTRY_VERSION
#define GANTRY_VERSION "0.0.0-dev"
#endif

namespace gantry::cli {

void AddVersionCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand("version", "Print the version of gantry");
  cmd->callback([&deps, &exit_code] {
    fmt::print(deps.out, "gantry {}\n", GANTRY_VERSION);
    exit_code = kExitOk;
  });
}

}  // namespace gantry::cli
