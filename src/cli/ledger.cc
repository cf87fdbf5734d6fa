// gantry approve APP --env ENV [--release N], gantry status [APP], gantry history APP: the ledger
// of push mode (deliver::Approve, deliver::GatherStatus, the store's releases).

#include <CLI/CLI.hpp>

#include "base/clock.h"
#include "base/percent.h"
#include "cli/deliver.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/local_access.h"
#include "cli/server_client.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

struct ApproveOptions {
  StateFlags state;
  std::string app, env;
  int64_t release = 0;
  std::string project = "default";
  ServerClient client{.server = ""};  // --server: approve through the server (releases.approve)
};

// POST /api/v1/apps/APP/approve, as the caller's token.
Status RunRemoteApprove(const ApproveOptions& o, const Deps& deps) {
  value::Value body = value::Value::Map();
  body.Set("environment", o.env);
  if (o.release != 0) body.Set("release", o.release);
  body.Set("project", o.project);
  GANTRY_ASSIGN_OR_RETURN(std::string answer,
                          CallApi(o.client, "POST", fmt::format("/api/v1/apps/{}/approve", PercentEncode(o.app)), value::ToJson(body)));
  auto doc = value::ParseJson(answer, "the server's answer");
  const value::Value* id = doc.ok() ? doc->Get("release") : nullptr;
  if (id == nullptr || !id->IsInt()) return UnavailableError("the server answered {:?}, not an approval", answer);
  fmt::print(deps.out, "release {} of {} approved for {}; continue with: gantry deploy {} --resume --server {}\n", id->AsInt(),
             o.app, o.env, o.app, o.client.server);
  return OkStatus();
}

Status RunApprove(const ApproveOptions& o, const Deps& deps) {
  if (!o.client.server.empty()) return RunRemoteApprove(o, deps);
  GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(o.state, deps));
  return RunAudited(*store,
                    {.action = "releases.approve", .permission = authz::Permission::kReleasesApprove, .project = o.project,
                     .object = "app " + o.app, .details = "environment " + o.env},
                    [&](LocalAction&) -> Status {
                      GANTRY_ASSIGN_OR_RETURN(int64_t approved, deliver::Approve(*store, o.app, o.env, o.release, User("cli")));
                      fmt::print(deps.out, "release {} of {} approved for {}; continue with: gantry deploy {} --resume\n",
                                 approved, o.app, o.env, o.app);
                      return OkStatus();
                    });
}

struct StatusOptions {
  StateFlags state;
  std::string app;
};

// Pull clusters that cannot be reached are warnings on deps.err, not errors.
Status RunStatus(const StatusOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(o.state));
  GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(o.state, deps));
  GANTRY_ASSIGN_OR_RETURN(deliver::StatusReport report,
                          deliver::GatherStatus(*store, config, o.app, [&deps](const deliver::Cluster& c) {
                            return deps.connect_cluster(c, {.timeout = std::chrono::seconds(3)});
                          }));
  std::vector<std::vector<std::string>> table{
      {"APP", "ENVIRONMENT", "CLUSTER", "MODE", "RELEASE", "REVISION", "HEALTH", "BEHIND", "NOTE"}};
  for (const auto& r : report.rows) {
    table.push_back({r.app, r.env, r.cluster, r.mode, r.release ? std::to_string(r.release) : "-",
                     r.revision.empty() ? "-" : r.revision.substr(0, 12), r.health,
                     r.behind > 0 ? fmt::format("{} behind", r.behind) : "up to date", r.message});
  }
  Table(deps.out, table);
  bool any_behind = false;
  for (const auto& [key, n] : report.behind) {
    if (n == 0) continue;
    any_behind = true;
    fmt::print(deps.out, "\n{}: environment {} is {} release{} behind the newest", key.first, key.second, n,
               n == 1 ? "" : "s");
  }
  if (any_behind) fmt::print(deps.out, "\n");
  for (const auto& w : report.warnings) fmt::print(deps.err, "warning: {}\n", w);
  return OkStatus();
}

struct HistoryOptions {
  StateFlags state;
  std::string app;
  int limit = 20;
};

// What was signed of a release's images: "sig+prov+sbom" per image (the parts present), "-" for
// none. The digests themselves are in the API's release JSON (supply_chain).
std::string SupplyChainSummary(const store::Release& r) {
  std::vector<std::string> out;
  for (const auto& [name, c] : r.supply_chain) {
    std::vector<std::string> parts;
    if (!c.signature.empty()) parts.push_back("sig");
    if (!c.provenance.empty()) parts.push_back("prov");
    if (!c.sbom.empty()) parts.push_back("sbom");
    out.push_back(fmt::format("{}", fmt::join(parts, "+")));
  }
  return out.empty() ? "-" : fmt::format("{}", fmt::join(out, " "));
}

// The ledger: app commit → CI run → image digest → config commit → where it went.
Status RunHistory(const HistoryOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(o.state, deps));
  GANTRY_ASSIGN_OR_RETURN(std::vector<store::Release> releases, store->ListReleases(o.app, o.limit));
  std::vector<std::vector<std::string>> table{
      {"RELEASE", "CREATED", "REVISION", "RUN", "IMAGE", "SIGNED", "CONFIG", "BY", "PULL REQUEST", "TARGETS"}};
  for (const auto& r : releases) {
    auto targets = store->ListTargets(r.id);
    std::vector<std::string> parts;
    if (targets.ok())
      for (const auto& t : *targets) parts.push_back(fmt::format("{}/{}={}", t.env, t.cluster, store::Name(t.state)));
    std::vector<std::string> images;
    for (const auto& [name, digest] : r.image_digests) {
      images.push_back(fmt::format("{}@{}", name.substr(name.rfind('/') + 1), digest.substr(0, 19)));
    }
    table.push_back({std::to_string(r.id), Rfc3339(r.created_at), r.source_revision.substr(0, 12),
                     r.run_id ? std::to_string(*r.run_id) : "-", images.empty() ? "-" : fmt::format("{}", fmt::join(images, " ")),
                     SupplyChainSummary(r),
                     r.config_revision == r.source_revision ? "-" : r.config_revision.substr(0, 12), r.started_by,
                     r.pull_request == 0 ? "-" : r.pull_request_url.empty() ? fmt::format("#{}", r.pull_request) : r.pull_request_url,
                     fmt::format("{}", fmt::join(parts, " "))});
  }
  Table(deps.out, table);
  return OkStatus();
}

}  // namespace

void AddLedgerCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  auto a = std::make_shared<ApproveOptions>();
  auto* approve = app.add_subcommand("approve", "Approve a release for an environment with an approval gate");
  AddStateFlags(approve, a->state);
  approve->add_option("APP", a->app, "Application name")->required();
  approve->add_option("--env", a->env, "Environment")->required();
  approve->add_option("--release", a->release, "Release (default: the newest of APP)");
  approve->add_option("--project", a->project, "The project whose roles apply, recorded in the audit log (default: default)");
  approve->add_option("--server", a->client.server, "Approve through this Gantry server (authorized and audited there)")
      ->envname("GANTRY_SERVER");
  approve->add_option("--ca-file", a->client.ca_file, "PEM CA bundle for an https --server")->envname("GANTRY_CA_FILE");
  approve->callback([a, &deps, &exit_code] { exit_code = Report(RunApprove(*a, deps), deps.err); });

  auto st = std::make_shared<StatusOptions>();
  auto* status = app.add_subcommand("status", "Which release runs where, its health, and which environments are behind");
  AddStateFlags(status, st->state);
  status->add_option("APP", st->app, "Only this application");
  status->callback([st, &deps, &exit_code] { exit_code = Report(RunStatus(*st, deps), deps.err); });

  auto h = std::make_shared<HistoryOptions>();
  auto* history = app.add_subcommand("history", "Releases of an application and what happened to each");
  AddStateFlags(history, h->state);
  history->add_option("APP", h->app, "Application name")->required();
  history->add_option("--limit", h->limit, "Releases shown (default 20)")->check(CLI::Range(1, 10000));
  history->callback([h, &deps, &exit_code] { exit_code = Report(RunHistory(*h, deps), deps.err); });
}

}  // namespace gantry::cli
