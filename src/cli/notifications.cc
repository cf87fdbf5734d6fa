// gantry notifications list [--failed] [--limit N] [--server URL] [--ca-file F]
//
// The server's notifications outbox (GET /api/v1/notifications; docs/notifications.md), newest
// first: what was sent to whom, what is still being retried and what failed, with the reason.
// The server, its CA and the token: cli/server_client.h. Exit codes: 0 done, 2 usage, 3 the
// server could not be reached or refused.

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/server_client.h"
#include "cli/terminal.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

struct NotificationsFlags {
  ServerClient client;
  bool failed = false;
  int limit = 50;
};

Status ListNotifications(const NotificationsFlags& f, const Deps& deps) {
  if (f.limit < 1 || f.limit > 500) return InvalidArgumentError("--limit {}: expected 1 to 500", f.limit);
  std::string path = fmt::format("/api/v1/notifications?limit={}", f.limit);
  if (f.failed) path += "&state=failed";
  GANTRY_ASSIGN_OR_RETURN(std::string body, CallApi(f.client, "GET", path));
  auto v = value::ParseJson(body);
  const value::Value* items = v.ok() ? v->Get("items") : nullptr;
  if (items == nullptr || !items->IsSeq()) return DataLossError("unexpected answer from {}", f.client.server);
  auto str = [](const value::Value& r, const char* k) -> std::string {
    const value::Value* x = r.Get(k);
    if (x == nullptr) return "";
    if (x->IsInt()) return std::to_string(x->AsInt());
    return x->IsString() ? std::string(x->AsString()) : "";
  };
  fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}\n", Pad("ID", 6), Pad("STATE", 9), Pad("TRIGGER", 19),
             Pad("SUBSCRIPTION", 16), Pad("PROVIDER", 12), Pad("TRIES", 5), "SUBJECT / LAST ERROR");
  for (const auto& n : items->items()) {
    std::string what = str(n, "subject");
    if (!str(n, "last_error").empty()) what += " — " + str(n, "last_error");
    fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}\n", Pad(str(n, "id"), 6), Pad(str(n, "state"), 9),
               Pad(str(n, "trigger"), 19), Pad(str(n, "subscription"), 16), Pad(str(n, "provider"), 12),
               Pad(str(n, "attempts"), 5), what);
  }
  return OkStatus();
}

}  // namespace

void AddNotificationsCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* group = app.add_subcommand("notifications", "Notifications the server sent, retries and failures");
  group->require_subcommand(1);
  auto f = std::make_shared<NotificationsFlags>();
  auto* list = group->add_subcommand("list", "The notifications outbox, newest first (docs/notifications.md)");
  list->add_flag("--failed", f->failed, "Only those that failed for good (with the reason)");
  list->add_option("--limit", f->limit, "At most this many (default 50, at most 500)");
  AddServerClientFlags(list, f->client);
  list->callback([f, &deps, &exit_code] { exit_code = Report(ListNotifications(*f, deps), deps.err); });
}

}  // namespace gantry::cli
