#pragma once
// The command line: one file per command (flags → options → validate → run(options, deps)),
// dispatched by Main(). Exit codes: cli/exit.h.

#include "cli/deps.h"

namespace gantry::cli {

// Parses `argv`, runs the chosen command with `deps` and returns the process exit code. Parse
// errors print CLI11's message to deps.err and return 2.
int Main(int argc, const char* const* argv, const Deps& deps);

}  // namespace gantry::cli
