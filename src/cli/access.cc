// Access to a server (docs/access.md), from the command line:
//
//   gantry token create [--name N] [--expires 30d] [--project P --role R...]   a token of your own,
//                                   or a robot token of project P; prints the secret (once) on
//                                   stdout and what was created on stderr
//   gantry token list [--all | --project P]
//   gantry token revoke ID          ID: t-12 (or 12)
//   gantry role grant SUBJECT ROLE --project P [--group]
//   gantry role revoke SUBJECT ROLE --project P [--group]
//   gantry role list
//   gantry audit [--actor A] [--action X] [--project P] [--since 1h] [--until 10m] [--limit N]
//
// The server and the token: cli/server_client.h. Exit codes: 0 done, 2 usage (bad flags, caught
// before anything is sent), 3 the server could not be reached or refused (its message is printed:
// 401 with the reason, 403 naming the permission).

#include <charconv>
#include <tuple>

#include <CLI/CLI.hpp>

#include "authz/authz.h"
#include "base/duration.h"
#include "base/percent.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/server_client.h"
#include "cli/terminal.h"
#include "server/access.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

using value::Value;

// "30d", "12h", "90m", "1h30m": ParseDuration's forms and whole days.
Result<std::chrono::seconds> ParseAge(std::string_view flag, std::string_view text) {
  if (text.size() > 1 && text.back() == 'd') {
    int64_t days = 0;
    auto [p, err] = std::from_chars(text.data(), text.data() + text.size() - 1, days);
    if (err == std::errc() && p == text.data() + text.size() - 1 && days > 0 && days <= 3660) {
      return std::chrono::seconds(days * 24 * 3600);
    }
  } else if (auto d = ParseDuration(text); d.ok() && d->count() >= 1000) {
    return std::chrono::duration_cast<std::chrono::seconds>(*d);
  }
  return InvalidArgumentError("{} {:?}: expected a duration such as 30d, 12h or 90m (at least 1s)", flag, text);
}

std::string Str(const Value& v, std::string_view key) {
  const Value* x = v.Get(key);
  if (x == nullptr) return "";
  if (x->IsInt()) return std::to_string(x->AsInt());
  if (x->IsSeq()) {
    std::string out;
    for (const Value& item : x->items()) out += (out.empty() ? "" : ",") + std::string(item.IsString() ? item.AsString() : "");
    return out;
  }
  return x->IsString() ? std::string(x->AsString()) : "";
}

Result<Value> ParseList(const std::string& body, const ServerClient& client) {
  auto v = value::ParseJson(body);
  if (!v.ok() || !v->IsSeq()) return DataLossError("unexpected answer from {}", client.server);
  return *std::move(v);
}

std::string OrDash(std::string s) { return s.empty() ? "-" : s; }

// ---------------------------------------------------------------------------------------------
// token

struct TokenCreateFlags {
  ServerClient client;
  std::string name = "cli";
  std::string expires;
  std::string project;
  std::vector<std::string> roles;
};

struct TokenCreateOptions {
  ServerClient client;
  std::string body;  // the JSON of POST /api/tokens
};

Result<TokenCreateOptions> ToOptions(const TokenCreateFlags& f) {
  if (f.name.empty()) return InvalidArgumentError("--name must not be empty");
  Value body = Value::Map();
  body.Set("name", f.name);
  if (!f.expires.empty()) {
    GANTRY_ASSIGN_OR_RETURN(std::chrono::seconds age, ParseAge("--expires", f.expires));
    body.Set("expires_in_seconds", static_cast<int64_t>(age.count()));
  }
  if (f.project.empty() != f.roles.empty()) {
    return InvalidArgumentError("--project and --role go together: a robot token acts in one project with its roles");
  }
  if (!f.project.empty()) {
    if (f.project == authz::kAllProjects) return InvalidArgumentError("--project: a robot token acts in one project, not \"*\"");
    GANTRY_RETURN_IF_ERROR(authz::ValidateProject(f.project, "--project"));
    Value roles = Value::Seq();
    for (const auto& r : f.roles) {
      if (!authz::ParseRole(r)) return InvalidArgumentError("--role {:?}: expected viewer, deployer, admin or worker", r);
      roles.Append(Value(r));
    }
    body.Set("project", f.project);
    body.Set("roles", roles);
  }
  return TokenCreateOptions{.client = f.client, .body = value::ToJson(body)};
}

Status CreateToken(const TokenCreateOptions& o, const Deps& deps) {
  auto answer = CallApi(o.client, "POST", "/api/tokens", o.body);
  if (!answer.ok()) return answer.status().WithContext("create token");
  auto v = value::ParseJson(*answer);
  if (!v.ok() || v->Get("token") == nullptr) return DataLossError("unexpected answer from {}", o.client.server);
  const std::string expires = Str(*v, "expires_at");
  fmt::print(deps.err, "created token {} {:?}: {} token of {}{}{} (the secret below is shown once)\n", Str(*v, "id"),
             Str(*v, "name"), Str(*v, "kind"), Str(*v, "owner"),
             Str(*v, "roles").empty() ? "" : " as " + Str(*v, "roles"), expires.empty() ? "" : ", expires " + expires);
  fmt::print(deps.out, "{}\n", Str(*v, "token"));
  return OkStatus();
}

struct TokenListOptions {
  ServerClient client;
  bool all = false;
  std::string project;
};

Status ListTokens(const TokenListOptions& o, const Deps& deps) {
  std::string path = "/api/tokens";
  if (o.all) path += "?all=1";
  if (!o.project.empty()) path += (o.all ? "&project=" : "?project=") + PercentEncode(o.project);
  GANTRY_ASSIGN_OR_RETURN(std::string body, CallApi(o.client, "GET", path));
  GANTRY_ASSIGN_OR_RETURN(Value list, ParseList(body, o.client));
  fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}  {}\n", Pad("ID", 6), Pad("NAME", 16), Pad("KIND", 5), Pad("OWNER", 12),
             Pad("ROLES", 10), Pad("EXPIRES", 20), Pad("LAST USED", 20), "REVOKED");
  for (const Value& t : list.items()) {
    std::string revoked = Str(t, "revoked_at");
    if (!revoked.empty()) revoked += " by " + Str(t, "revoked_by");
    fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}  {}\n", Pad(Str(t, "id"), 6), Pad(Str(t, "name"), 16),
               Pad(Str(t, "kind"), 5), Pad(Str(t, "owner"), 12), Pad(OrDash(Str(t, "roles")), 10),
               Pad(OrDash(Str(t, "expires_at")), 20), Pad(OrDash(Str(t, "last_used_at")), 20), OrDash(revoked));
  }
  return OkStatus();
}

struct TokenRevokeOptions {
  ServerClient client;
  std::string id;  // "t-12"
};

Status RevokeToken(const TokenRevokeOptions& o, const Deps& deps) {
  auto answer = CallApi(o.client, "DELETE", "/api/tokens/" + o.id);
  if (!answer.ok()) return answer.status().WithContext("revoke token " + o.id);
  fmt::print(deps.out, "{}", *answer);
  return OkStatus();
}

void AddToken(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand("token", "API tokens of a server: create, list, revoke (docs/access.md)");
  cmd->require_subcommand(1);

  auto create = std::make_shared<TokenCreateFlags>();
  auto* c = cmd->add_subcommand("create", "Create a token of your own, or a robot token of a project; prints its secret once");
  c->add_option("--name", create->name, "What the token is for (default cli)");
  c->add_option("--expires", create->expires, "Expire after this long: 30d, 12h, 90m (default: never)");
  c->add_option("--project", create->project, "Make a robot token acting in this project (needs --role)");
  c->add_option("--role", create->roles, "The robot token's role in --project: viewer, deployer or admin (repeatable); worker alone "
                "for `gantry worker` (with --project '*': any project's runs; with one project: its runs only)");
  AddServerClientFlags(c, create->client);
  c->callback([create, &deps, &exit_code] {
    auto o = ToOptions(*create);
    exit_code = o.ok() ? Report(CreateToken(*o, deps), deps.err) : UsageError(o.status(), deps.err);
  });

  auto list = std::make_shared<TokenListOptions>();
  auto* l = cmd->add_subcommand("list", "List your tokens (--all: every token; --project: a project's robot tokens)");
  auto* all = l->add_flag("--all", list->all, "Every token (cluster-wide admins)");
  l->add_option("--project", list->project, "The robot tokens of this project (its admins)")->excludes(all);
  AddServerClientFlags(l, list->client);
  l->callback([list, &deps, &exit_code] {
    if (!list->project.empty()) {
      if (Status s = authz::ValidateProject(list->project, "--project"); !s.ok()) {
        exit_code = UsageError(s, deps.err);
        return;
      }
    }
    exit_code = Report(ListTokens(*list, deps), deps.err);
  });

  auto revoke = std::make_shared<TokenRevokeOptions>();
  auto* r = cmd->add_subcommand("revoke", "Revoke a token: it stops working at once");
  r->add_option("id", revoke->id, "Token id (t-12)")->required();
  AddServerClientFlags(r, revoke->client);
  r->callback([revoke, &deps, &exit_code] {
    if (auto id = server::ParseTokenId(revoke->id); !id.ok()) {
      exit_code = UsageError(id.status(), deps.err);
      return;
    }
    exit_code = Report(RevokeToken(*revoke, deps), deps.err);
  });
}

// ---------------------------------------------------------------------------------------------
// role

struct RoleFlags {
  ServerClient client;
  std::string subject, role, project;
  bool group = false;
};

Status ValidateRoleFlags(const RoleFlags& f) {
  if (f.subject.empty()) return InvalidArgumentError("the user (or --group) is empty");
  if (!authz::ParseRole(f.role)) return InvalidArgumentError("role {:?}: expected viewer, deployer or admin", f.role);
  return authz::ValidateProject(f.project, "--project");
}

Status GrantRole(const RoleFlags& f, const Deps& deps) {
  Value body = Value::Map();
  body.Set(f.group ? "group" : "user", f.subject);
  body.Set("role", f.role);
  body.Set("project", f.project);
  auto answer = CallApi(f.client, "POST", "/api/roles", value::ToJson(body));
  if (!answer.ok()) return answer.status().WithContext("grant role");
  fmt::print(deps.out, "{}", *answer);
  return OkStatus();
}

Status RevokeRole(const RoleFlags& f, const Deps& deps) {
  auto answer = CallApi(f.client, "DELETE",
                        fmt::format("/api/roles?{}={}&role={}&project={}", f.group ? "group" : "user", PercentEncode(f.subject),
                                    PercentEncode(f.role), PercentEncode(f.project)));
  if (!answer.ok()) return answer.status().WithContext("revoke role");
  fmt::print(deps.out, "{}", *answer);
  return OkStatus();
}

Status ListRoles(const ServerClient& client, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(std::string body, CallApi(client, "GET", "/api/roles"));
  GANTRY_ASSIGN_OR_RETURN(Value list, ParseList(body, client));
  fmt::print(deps.out, "{}  {}  {}  {}  {}\n", Pad("KIND", 5), Pad("SUBJECT", 20), Pad("ROLE", 8), Pad("PROJECT", 16),
             "GRANTED BY");
  for (const Value& b : list.items()) {
    const bool group = b.Get("group") != nullptr;
    fmt::print(deps.out, "{}  {}  {}  {}  {}\n", Pad(group ? "group" : "user", 5), Pad(Str(b, group ? "group" : "user"), 20),
               Pad(Str(b, "role"), 8), Pad(Str(b, "project"), 16), OrDash(Str(b, "created_by")));
  }
  return OkStatus();
}

void AddRole(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand("role", "Role bindings of a server: grant, revoke, list (docs/access.md)");
  cmd->require_subcommand(1);
  for (bool grant : {true, false}) {
    auto f = std::make_shared<RoleFlags>();
    auto* c = cmd->add_subcommand(grant ? "grant" : "revoke",
                                  grant ? "Grant a role to a user or group on a project ('*': every project)"
                                        : "Revoke a role of a user or group on a project");
    c->add_option("subject", f->subject, "User name (a group's with --group)")->required();
    c->add_option("role", f->role, "viewer, deployer or admin")->required();
    c->add_option("--project", f->project, "Project, or '*' for every project")->required();
    c->add_flag("--group", f->group, "The subject is a group (from the OIDC groups claim)");
    AddServerClientFlags(c, f->client);
    c->callback([f, grant, &deps, &exit_code] {
      if (Status s = ValidateRoleFlags(*f); !s.ok()) {
        exit_code = UsageError(s, deps.err);
        return;
      }
      exit_code = Report(grant ? GrantRole(*f, deps) : RevokeRole(*f, deps), deps.err);
    });
  }
  auto client = std::make_shared<ServerClient>();
  auto* l = cmd->add_subcommand("list", "List the role bindings you may manage");
  AddServerClientFlags(l, *client);
  l->callback([client, &deps, &exit_code] { exit_code = Report(ListRoles(*client, deps), deps.err); });
}

// ---------------------------------------------------------------------------------------------
// audit

struct AuditFlags {
  ServerClient client;
  std::string actor, action, project, since, until;
  int limit = 50;
};

struct AuditOptions {
  ServerClient client;
  std::string path;  // /api/audit?...
};

Result<AuditOptions> ToOptions(const AuditFlags& f, Clock& clock) {
  if (f.limit < 1 || f.limit > 1000) return InvalidArgumentError("--limit {}: expected 1 to 1000", f.limit);
  std::string query = fmt::format("limit={}", f.limit);
  for (auto [key, value] : {std::pair{"actor", &f.actor}, std::pair{"action", &f.action}, std::pair{"project", &f.project}}) {
    if (!value->empty()) query += fmt::format("&{}={}", key, PercentEncode(*value));
  }
  if (!f.project.empty()) GANTRY_RETURN_IF_ERROR(authz::ValidateProject(f.project, "--project"));
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(clock.WallNow().time_since_epoch());
  for (auto [flag, key, text] : {std::tuple{"--since", "since", &f.since}, std::tuple{"--until", "until", &f.until}}) {
    if (text->empty()) continue;
    GANTRY_ASSIGN_OR_RETURN(std::chrono::seconds ago, ParseAge(flag, *text));
    query += fmt::format("&{}={}", key, (now - ago).count());
  }
  return AuditOptions{.client = f.client, .path = "/api/audit?" + query};
}

Status ShowAudit(const AuditOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(std::string body, CallApi(o.client, "GET", o.path));
  GANTRY_ASSIGN_OR_RETURN(Value list, ParseList(body, o.client));
  fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}\n", Pad("TIME", 20), Pad("ACTOR", 14), Pad("ACTION", 14), Pad("OBJECT", 24),
             Pad("PROJECT", 10), Pad("SOURCE", 21), "RESULT");
  for (const Value& e : list.items()) {
    fmt::print(deps.out, "{}  {}  {}  {}  {}  {}  {}\n", Pad(Str(e, "at"), 20), Pad(Str(e, "actor"), 14),
               Pad(Str(e, "action"), 14), Pad(Str(e, "object"), 24), Pad(OrDash(Str(e, "project")), 10),
               Pad(OrDash(Str(e, "source")), 21), Str(e, "result"));
  }
  return OkStatus();
}

void AddAudit(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<AuditFlags>();
  auto* cmd = app.add_subcommand("audit", "Who did what: the server's audit log, newest first (docs/access.md)");
  cmd->add_option("--actor", f->actor, "Only this user (robot tokens: robot:NAME)");
  cmd->add_option("--action", f->action, "Only this action (runs.cancel, tokens.create, deploy, ...)");
  cmd->add_option("--project", f->project, "Only this project (needs audit.read there)");
  cmd->add_option("--since", f->since, "Only the last 1h, 30m, 7d, ...");
  cmd->add_option("--until", f->until, "Only until this long ago");
  cmd->add_option("--limit", f->limit, "At most this many entries (default 50, at most 1000)");
  AddServerClientFlags(cmd, f->client);
  cmd->callback([f, &deps, &exit_code] {
    auto o = ToOptions(*f, deps.clock != nullptr ? *deps.clock : SystemClock());
    exit_code = o.ok() ? Report(ShowAudit(*o, deps), deps.err) : UsageError(o.status(), deps.err);
  });
}

}  // namespace

void AddTokenCommand(CLI::App& app, const Deps& deps, int& exit_code) { AddToken(app, deps, exit_code); }
void AddRoleCommand(CLI::App& app, const Deps& deps, int& exit_code) { AddRole(app, deps, exit_code); }
void AddAuditCommand(CLI::App& app, const Deps& deps, int& exit_code) { AddAudit(app, deps, exit_code); }

}  // namespace gantry::cli
