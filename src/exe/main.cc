// The gantry binary: the one place that builds real implementations and wires them together.
#include "cli/cli.h"

int main(int argc, char** argv) { return gantry::cli::Main(argc, argv); }
