#pragma once
// The command line: one file per command (flags → options → validate → run), dispatched by Main().
// Exit codes: 0 success, 1 the command ran and found a difference or failure it reports (as
// `kubectl diff`), 2 usage errors, 3 environment errors (I/O, network, bad input files).

namespace gantry::cli {

int Main(int argc, char** argv);

}  // namespace gantry::cli
