#include "cli/cli.h"

#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/exit.h"

namespace gantry::cli {
namespace {

// An option a subcommand does not know goes to its parent (and on up): flags of a group and the
// global ones work wherever they are written after it.
void FallThrough(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (!sub->get_name().empty()) sub->fallthrough();  // not option groups: they are part of their command
    FallThrough(*sub);
  }
}

}  // namespace

void AddCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  for (const auto& add : Commands()) add(app, deps, exit_code);
  FallThrough(app);
}

int Main(int argc, const char* const* argv, const Deps& deps) {
  CLI::App app{"gantry: CI/CD from commit to Kubernetes clusters, by push or by pull (GitOps)"};
  app.require_subcommand(1);
  std::string level = "info";
  app.add_option("--log-level", level, "debug, info, warn, error or off")->envname("GANTRY_LOG_LEVEL");
  app.parse_complete_callback([&] {
    log::Level l;
    if (!log::ParseLevel(level, &l)) throw CLI::ValidationError("--log-level", "unknown level " + level);
    log::SetLevel(l);
  });

  int exit_code = 0;
  AddCommands(app, deps, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    int rc = app.exit(e, out, err);
    std::fputs(out.str().c_str(), deps.out);
    std::fputs(err.str().c_str(), deps.err);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return exit_code;
}

}  // namespace gantry::cli
