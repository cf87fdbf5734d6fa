#pragma once
// The local operator, and the sync window override flags.
//
// A command run without --server acts with the caller's own ledger and kubeconfigs: whoever can
// open the database and the clusters' credentials can change them, so the local operator is an
// admin on every project. Its mutating commands (deploy, resume, rollback, approve, sync) still go
// through the one authorizer (authz::Authorizer, as every API request does) and leave one audit
// row each in the ledger: actor "local:<unix user>", source "cli", the action, target and
// project, and the result, refusals (a project's, a sync window's) included. docs/access.md is
// the user's view.

#include <functional>
#include <string>

#include "authz/authz.h"
#include "base/status.h"
#include "store/store.h"
#include "value/value.h"

namespace CLI {
class App;
}

namespace gantry::cli {

// The principal "local:<unix user>" (the effective user's name, else $USER, else the uid).
authz::Principal LocalOperator();

// What a local command does, for its authorization and its audit row.
struct LocalAction {
  std::string action;  // as the API's: "apps.deploy", "apps.sync", ...
  authz::Permission permission;
  std::string project = "default";
  std::string object;   // "app web"
  std::string details;  // e.g. the environment, the window override's reason
};

// Authorizes `action` for the local operator (admin on "*"), runs `fn` when allowed (fn may add
// to the action's details as it learns), and appends one audit row with the outcome: "ok", or the
// error as "Code: message". Returns the refusal or fn's error; when fn succeeded but the row
// cannot be written, that error, saying the action was done.
Status RunAudited(store::Store& store, LocalAction action, const std::function<Status(LocalAction&)>& fn);

// --override-window and --reason (deploy, rollback, sync): a person passing the project's closed
// sync windows that allow manual syncs (manualSync: true), saying why; audited.
struct WindowFlags {
  bool override_window = false;
  std::string reason;
};
void AddWindowFlags(CLI::App* cmd, WindowFlags& flags);
// The override's reason ("" : no override). InvalidArgument for --override-window without
// --reason, and for --reason without --override-window.
Result<std::string> WindowOverride(const WindowFlags& flags);
// Sets "override_window" and "reason" in an API request body when an override is asked.
void AddOverride(value::Value& body, const WindowFlags& flags);

}  // namespace gantry::cli
