// The CI server's REST API from the command line:
//
//   gantry runs [--server URL] [--ca-file F]            lists runs
//   gantry runs approve ID                              lets a run awaiting approval (an untrusted
//                                                       pull request) run
//   gantry runs retry ID                                queues a new run of a finished run's
//                                                       commit (POST /api/v1/runs/ID/retry); an
//                                                       untrusted run's retry awaits approval
//   gantry logs RUN [-f] [--server URL] [--ca-file F]   prints (and follows) a run's logs (on a
//                                                       terminal, escape sequences other than
//                                                       colours are removed: cli/terminal.h)
//
// The server, its CA and the bearer token: cli/server_client.h (GANTRY_SERVER, GANTRY_CA_FILE,
// GANTRY_TOKEN or the token file). Exit codes: 0 done, 2 usage, 3 the server could not be reached
// or refused (its message is printed).

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/server_client.h"
#include "cli/terminal.h"
#include "http/client.h"
#include "server/front.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

std::atomic<bool> g_stop_following{false};

void StopFollowing(int) { g_stop_following.store(true); }

struct RunsOptions {
  ServerClient client;
};

Status ListRuns(const RunsOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(std::string body, CallApi(o.client, "GET", "/api/runs"));
  auto v = value::ParseJson(body);
  if (!v.ok() || !v->IsSeq()) return DataLossError("unexpected answer from {}", o.client.server);
  fmt::print(deps.out, "{}  {}  {}  {}  {}  {}\n", Pad("ID", 6), Pad("STATE", 11), Pad("EVENT", 12), Pad("REF", 24),
             Pad("COMMIT", 12), "MESSAGE");
  auto str = [](const value::Value& r, const char* k) -> std::string {
    const value::Value* x = r.Get(k);
    if (x == nullptr) return "";
    if (x->IsInt()) return std::to_string(x->AsInt());
    return x->IsString() ? std::string(x->AsString()) : "";
  };
  for (const auto& r : v->items()) {
    fmt::print(deps.out, "{}  {}  {}  {}  {}  {}\n", Pad(str(r, "id"), 6), Pad(str(r, "state"), 11),
               Pad(str(r, "event"), 12), Pad(str(r, "ref"), 24), Pad(str(r, "commit").substr(0, 12), 12),
               str(r, "message"));
  }
  return OkStatus();
}

struct ApproveRunOptions {
  ServerClient client;
  int64_t run = 0;
};

// POST /api/runs/ID/approve: the run (awaiting approval) is queued.
Status ApproveRun(const ApproveRunOptions& o, const Deps& deps) {
  auto body = CallApi(o.client, "POST", fmt::format("/api/runs/{}/approve", o.run));
  if (!body.ok()) return body.status().WithContext(fmt::format("approve run {}", o.run));
  fmt::print(deps.out, "run {} {}", o.run, *body);
  return OkStatus();
}

// POST /api/v1/runs/ID/retry: a new run of what run ID built.
Status RetryRun(const ApproveRunOptions& o, const Deps& deps) {
  auto body = CallApi(o.client, "POST", fmt::format("/api/v1/runs/{}/retry", o.run));
  if (!body.ok()) return body.status().WithContext(fmt::format("retry run {}", o.run));
  auto run = value::ParseJson(*body, "the server's answer");
  if (!run.ok() || run->Get("id") == nullptr || !run->Get("id")->IsInt()) {
    return UnavailableError("the server answered {:?}, not a run (is {} a Gantry server?)", *body, o.client.server);
  }
  fmt::print(deps.out, "run {} retries run {}: {}\n", run->Get("id")->AsInt(), o.run, value::StringAt(&*run, {"state"}));
  return OkStatus();
}

struct LogsOptions {
  ServerClient client;
  int64_t run = 0;
  bool follow = false;
};

Status ShowLogs(const LogsOptions& o, const Deps& deps) {
  // A step's output is untrusted: on a terminal, only its colours pass (cli/terminal.h).
  const bool tty = ::isatty(::fileno(deps.out)) != 0;
  TerminalFilter filter;
  GANTRY_ASSIGN_OR_RETURN(http::ClientRequest request,
                          ApiRequest(o.client, "GET", fmt::format("/api/runs/{}/logs{}", o.run, o.follow ? "?follow=1" : "")));
  auto response = ApiClient(o.client).Send(request, [&](std::string_view d) {
    if (g_stop_following.load()) return false;
    fmt::print(deps.out, "{}", tty ? filter.Feed(d) : std::string(d));
    std::fflush(deps.out);
    return true;
  });
  if (!response.ok()) return response.status();
  // The body went to the output as it came: an error's is there too.
  if (response->status != 200) return UnavailableError("HTTP {}", response->status);
  return OkStatus();
}

}  // namespace

void AddRunsCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto list = std::make_shared<RunsOptions>();
  auto approve = std::make_shared<ApproveRunOptions>();
  auto* cmd = app.add_subcommand("runs", "List CI runs of a server");
  AddServerClientFlags(cmd, list->client);
  auto* approve_cmd = cmd->add_subcommand("approve", "Let a run that awaits approval (an untrusted pull request) run");
  approve_cmd->add_option("run", approve->run, "Run id")->required();
  AddServerClientFlags(approve_cmd, approve->client);
  approve_cmd->callback([approve, &deps, &exit_code] { exit_code = Report(ApproveRun(*approve, deps), deps.err); });
  auto retry = std::make_shared<ApproveRunOptions>();
  auto* retry_cmd = cmd->add_subcommand("retry", "Queue a new run of a finished run's commit (an untrusted run's retry awaits approval)");
  retry_cmd->add_option("run", retry->run, "Run id")->required();
  AddServerClientFlags(retry_cmd, retry->client);
  retry_cmd->callback([retry, &deps, &exit_code] { exit_code = Report(RetryRun(*retry, deps), deps.err); });
  cmd->callback([list, approve_cmd, retry_cmd, &deps, &exit_code] {
    if (!approve_cmd->parsed() && !retry_cmd->parsed()) exit_code = Report(ListRuns(*list, deps), deps.err);
  });
}

void AddLogsCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto o = std::make_shared<LogsOptions>();
  auto* cmd = app.add_subcommand("logs", "Print the logs of a CI run");
  cmd->add_option("run", o->run, "Run id")->required();
  cmd->add_flag("-f,--follow", o->follow, "Follow until the run ends");
  AddServerClientFlags(cmd, o->client);
  cmd->callback([o, &deps, &exit_code] {
    signal(SIGINT, StopFollowing);
    exit_code = Report(ShowLogs(*o, deps), deps.err);
  });
}

}  // namespace gantry::cli
