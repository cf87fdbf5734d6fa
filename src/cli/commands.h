#pragma once
// Registration of the commands: each command file defines one Add<Name>Command function that adds
// its subcommand to the app and, when the subcommand runs, stores the process exit code.

#include <functional>
#include <vector>

namespace CLI {
class App;
}

namespace gantry::cli {

struct Deps;

using AddCommand = std::function<void(CLI::App& app, const Deps& deps, int& exit_code)>;

void AddVersionCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddValidateCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddRenderCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddSyncCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddDiffCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddPreviewCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddInstallCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddAgentCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddAppCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddCiCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddServerCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddWorkerCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddRunsCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddLogsCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddTokenCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddRoleCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddAuditCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddNotificationsCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddDeliverCommands(CLI::App& app, const Deps& deps, int& exit_code);
void AddUpdateCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddImageCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddLoginCommand(CLI::App& app, const Deps& deps, int& exit_code);
void AddPushCommand(CLI::App& app, const Deps& deps, int& exit_code);
// Hidden: `gantry internal …`, run by Gantry in its own image (internal.cc).
void AddInternalCommand(CLI::App& app, const Deps& deps, int& exit_code);
// Subcommands of `image`, each in a file of its own.
void AddImageBuildCommand(CLI::App& image, const Deps& deps, int& exit_code);
void AddImageRegistryCommands(CLI::App& image, const Deps& deps, int& exit_code);
void AddImageSignCommands(CLI::App& image, const Deps& deps, int& exit_code);
void AddImageSbomCommand(CLI::App& image, const Deps& deps, int& exit_code);

inline std::vector<AddCommand> Commands() { return {AddVersionCommand, AddValidateCommand, AddRenderCommand, AddDiffCommand, AddPreviewCommand, AddSyncCommand,
          AddInstallCommand, AddAgentCommand, AddAppCommand,
          AddCiCommand, AddServerCommand, AddWorkerCommand, AddRunsCommand, AddLogsCommand, AddTokenCommand, AddRoleCommand, AddAuditCommand, AddNotificationsCommand, AddDeliverCommands,
          AddImageCommand, AddUpdateCommand, AddLoginCommand, AddPushCommand, AddInternalCommand}; }

}  // namespace gantry::cli
