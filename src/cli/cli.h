#pragma once
// The command line: one file per command (flags → options → validate → run(options, deps)),
// dispatched by Main(). Exit codes: cli/exit.h.

#include "cli/deps.h"

namespace CLI {
class App;
}

namespace gantry::cli {

// Adds every command to `app`. Options of a command group (and the global ones) are accepted
// after its subcommands too, as with kubectl: `gantry app list -n NS` is `gantry app -n NS list`.
void AddCommands(CLI::App& app, const Deps& deps, int& exit_code);

// Parses `argv`, runs the chosen command with `deps` and returns the process exit code. Parse
// errors print CLI11's message to deps.err and return 2.
int Main(int argc, const char* const* argv, const Deps& deps);

}  // namespace gantry::cli
