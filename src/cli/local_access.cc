#include "cli/local_access.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include <CLI/CLI.hpp>

#include "server/access.h"

namespace gantry::cli {

authz::Principal LocalOperator() {
  std::string user;
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) user = pw->pw_name;
  if (user.empty()) {
    const char* env = std::getenv("USER");
    user = env != nullptr && *env != '\0' ? env : std::to_string(::geteuid());
  }
  return authz::Principal{.name = "local:" + user};
}

Status RunAudited(store::Store& store, LocalAction action, const std::function<Status(LocalAction&)>& fn) {
  const authz::Principal who = LocalOperator();
  const authz::Authorizer local({{.subject = who.name, .role = authz::Role::kAdmin, .project = std::string(authz::kAllProjects)}});
  Status outcome = local.Check(who, action.permission, action.project);
  if (outcome.ok()) outcome = fn(action);
  auto row = store.Audit({.actor = who.name,
                          .action = action.action,
                          .object = action.object,
                          .details = action.details,
                          .source = "cli",
                          .result = server::AuditResult(outcome),
                          .project = action.project});
  if (!row.ok() && outcome.ok()) {
    return row.status().WithContext(fmt::format("{} of {} was done, but its audit row was not written", action.action, action.object));
  }
  return outcome;
}

void AddWindowFlags(CLI::App* cmd, WindowFlags& flags) {
  cmd->add_flag("--override-window", flags.override_window,
                "Pass the project's closed sync windows that allow manual syncs (manualSync: true); needs --reason");
  cmd->add_option("--reason", flags.reason, "Why the sync windows are overridden (recorded in the audit log)");
}

Result<std::string> WindowOverride(const WindowFlags& flags) {
  if (flags.override_window && flags.reason.empty()) {
    return InvalidArgumentError("--override-window needs --reason WHY (it is recorded in the audit log)");
  }
  if (!flags.override_window && !flags.reason.empty()) return InvalidArgumentError("--reason is for --override-window");
  return flags.override_window ? flags.reason : "";
}

void AddOverride(value::Value& body, const WindowFlags& flags) {
  if (!flags.override_window) return;
  body.Set("override_window", true);
  body.Set("reason", flags.reason);
}

}  // namespace gantry::cli
