// gantry sync PATH and gantry diff PATH: the delivery engine on a directory of manifests.
//
//   gantry diff PATH --app NAME [--context C]    exit 0 in sync, 1 when not (as kubectl diff)
//   gantry sync PATH --app NAME [--context C] [--prune] [--dry-run] [--wait] [--timeout 5m]
//               [--project P --project-file F] [--env ENV] [--override-window --reason WHY]
// PATH may be replaced by --repo URL [--revision REV] [--path P] (see source.h).
//
// A sync (not a dry run) honours the project's sync windows as push deploys do (--env names the
// environment for windows that list environments), runs as the local operator and leaves one
// audit row in the ledger of --state-dir / --db (cli/local_access.h), refusals included.

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "base/duration.h"
#include "base/path.h"
#include "cli/cluster.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/local_access.h"
#include "cli/source.h"
#include "cli/state.h"
#include "cli/terminal.h"
#include "kube/kube.h"
#include "sync/sync.h"

namespace gantry::cli {
namespace {

struct SyncFlags {
  ClusterFlags cluster;
  SourceFlags source;
  std::string app;
  bool prune = false;
  bool prune_dangerous = false;
  bool allow_empty = false;
  bool dry_run = false;
  bool wait = false;
  bool force = false;
  bool create_namespace = false;
  bool apply_all = false;
  bool confirm_prune = false;
  std::vector<std::string> sync_options;  // --sync-option, Argo CD's names
  std::string timeout = "5m";
  int parallelism = 32;
  std::string color = "auto";  // diff
  std::string project = "default";
  std::string project_file;
  std::string env;                 // sync: the environment sync windows see
  std::string state_dir, db;       // sync: the ledger of its audit row
  WindowFlags window;
};

struct SyncOptions {
  ClusterFlags cluster;
  SourceFlags source;
  std::string project;       // its name
  std::string project_file;  // where Projects are defined ("" : only the built-in default)
  sync::Options sync;  // default_namespace and clock are filled in by the run
  std::string color;
  std::string env;
  std::string state_dir, db;
  std::string window_override;  // the reason; "" : no override
  bool confirm_prune = false;   // approve the prunes pending before this run (Prune=confirm)
  std::vector<std::string> warnings;  // sync options accepted without Argo CD's effect
};

// Usage errors: no source, a malformed --timeout.
Result<SyncOptions> Validate(const SyncFlags& f) {
  GANTRY_RETURN_IF_ERROR(ValidateSourceFlags(f.source));
  auto timeout = ParseDuration(f.timeout);
  if (!timeout.ok()) return InvalidArgumentError("--timeout: {}", timeout.status().message());
  SyncOptions o{.cluster = f.cluster, .source = f.source, .project = f.project, .project_file = f.project_file,
                .color = f.color, .env = f.env, .state_dir = f.state_dir, .db = f.db};
  GANTRY_ASSIGN_OR_RETURN(o.window_override, WindowOverride(f.window));
  o.sync.app = f.app;
  o.sync.prune = f.prune;
  o.sync.prune_dangerous = f.prune_dangerous;
  o.sync.allow_empty = f.allow_empty;
  o.sync.dry_run = f.dry_run;
  o.sync.wait_for_health = f.wait;
  o.sync.force = f.force;
  o.sync.create_namespace = f.create_namespace;
  o.sync.apply_out_of_sync_only = !f.apply_all;
  o.sync.parallelism = f.parallelism;
  o.sync.timeout = *timeout;
  o.confirm_prune = f.confirm_prune;
  GANTRY_RETURN_IF_ERROR(sync::ReadSyncOptions(f.sync_options, "--sync-option", o.sync, &o.warnings));
  return o;
}

// What both commands work on: the rendered objects and a client of the cluster.
struct Prepared {
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<kube::Client> tenant;  // the project's ServiceAccount, when it names one
  std::vector<value::Value> objects;
  std::unique_ptr<project::Project> project;
  sync::Options options;
};

// The project named by --project, from --project-file (or the built-in permissive default).
Result<project::Project> LoadProject(const SyncOptions& o) {
  if (!o.project_file.empty()) {
    GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(o.project_file));
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(text, o.project_file));
    GANTRY_ASSIGN_OR_RETURN(auto projects, project::ParseProjects(docs));
    for (auto& p : projects) {
      if (p.name == o.project) return std::move(p);
    }
  }
  if (o.project == "default") return project::DefaultProject();
  return NotFoundError("--project: no Project {:?} in {}", o.project,
                       o.project_file.empty() ? "(no --project-file given)" : o.project_file);
}

Result<Prepared> Prepare(const SyncOptions& o, const Deps& deps) {
  kube::RestConfig config;
  Prepared p;
  GANTRY_ASSIGN_OR_RETURN(p.client, deps.connect(o.cluster, &config));
  // Rendered for the destination: its namespace is the Helm release namespace, Helm sees its
  // version and APIs (as Argo CD renders for an Application's destination).
  Destination destination{.namespace_ = config.namespace_, .capabilities = {}};
  GANTRY_ASSIGN_OR_RETURN(destination.capabilities, kube::ReadCapabilities(*p.client));
  GANTRY_ASSIGN_OR_RETURN(Loaded loaded, LoadSource(o.source, &destination));
  for (auto& m : loaded.manifests) p.objects.push_back(std::move(m.object));
  GANTRY_ASSIGN_OR_RETURN(project::Project project, LoadProject(o));
  p.project = std::make_unique<project::Project>(std::move(project));
  p.options = o.sync;
  p.options.default_namespace = config.namespace_;
  p.options.clock = deps.clock;
  p.options.project = p.project.get();
  p.options.cluster_server = config.server;
  p.options.cluster_name = config.context;
  std::string account = project::ServiceAccountFor(*p.project, config.server, config.namespace_);
  if (!account.empty()) {
    GANTRY_ASSIGN_OR_RETURN(p.tenant, p.client->Impersonate({.user = account}));
    p.options.tenant = p.tenant.get();
  } else if (!p.project->service_accounts.empty()) {
    return Status(Code::kPermissionDenied,
                  fmt::format("project {}: no destinationServiceAccounts entry matches namespace {} of {}",
                              p.project->name, config.namespace_, config.server))
        .set_reason(project::kReasonDenied);
  }
  return p;
}

bool IsTerminal(std::FILE* f) {
  int fd = ::fileno(f);
  return fd >= 0 && ::isatty(fd);
}

void PrintTable(std::FILE* out, const sync::State& state) {
  size_t wk = 4, wn = 4, wa = 6, wh = 6;
  for (const auto& r : state.results) {
    wk = std::max(wk, r.ref.kind.size());
    wn = std::max(wn, r.ref.namespace_.size() + r.ref.name.size() + 1);
    wa = std::max(wa, sync::Name(r.action).size() + (r.failed ? 7 : 0));
    wh = std::max(wh, health::Name(r.health.status).size());
  }
  fmt::print(out, "\n{}  {}  {}  {}  {}\n", Pad("KIND", wk), Pad("NAME", wn), Pad("ACTION", wa), Pad("HEALTH", wh),
             "MESSAGE");
  for (const auto& r : state.results) {
    std::string name = r.ref.namespace_.empty() ? r.ref.name : r.ref.namespace_ + "/" + r.ref.name;
    std::string action(sync::Name(r.action));
    if (r.failed) action += " (failed)";
    std::string message = r.message.empty() ? r.health.message : r.message;
    fmt::print(out, "{}  {}  {}  {}  {}\n", Pad(r.ref.kind, wk), Pad(name, wn), Pad(action, wa),
               Pad(health::Name(r.health.status), wh), message);
  }
}

// The project's sync windows for this sync: OK, or FailedPrecondition (reason
// project::kReasonOutsideWindow) saying when syncs open and, where a person may override, how.
// A passed override is added to the audit row's details.
Status CheckSyncWindows(const SyncOptions& o, const Prepared& p, const Deps& deps, LocalAction& audit) {
  const project::WindowScope scope{.application = o.sync.app, .environment = o.env, .cluster = p.options.cluster_name,
                                   .namespace_ = p.options.default_namespace, .cluster_server = p.options.cluster_server};
  const auto now = (deps.clock != nullptr ? *deps.clock : SystemClock()).WallNow();
  const bool override_asked = !o.window_override.empty();
  project::WindowDecision window = project::CheckWindows(*p.project, scope, now, override_asked);
  if (!window.allowed) {
    if (!override_asked && project::CheckWindows(*p.project, scope, now, true).allowed) {
      window.message += "; its windows allow a manual override (manualSync: true): give --override-window --reason WHY";
    }
    return Status(project::ToStatus(window)).set_reason(kReasonFailed);
  }
  if (window.manual_override) {
    audit.details += fmt::format("{}window override: {}; {}", audit.details.empty() ? "" : "; ", o.window_override,
                                 window.message);
    fmt::print(deps.err, "sync window override ({}): {}\n", o.window_override, window.message);
  }
  return OkStatus();
}

// Syncs and prints the progress and the final table to deps.out. A failed sync is kReasonFailed.
Status SyncNow(const SyncOptions& o, const Deps& deps, LocalAction& audit) {
  GANTRY_ASSIGN_OR_RETURN(Prepared p, Prepare(o, deps));
  for (const std::string& w : o.warnings) fmt::print(deps.err, "warning: {}\n", w);
  // A person running the sync with --confirm-prune approves what was pending before it started.
  if (o.confirm_prune) p.options.prune_approved_at = (deps.clock != nullptr ? *deps.clock : SystemClock()).WallNow();
  if (!o.sync.dry_run) GANTRY_RETURN_IF_ERROR(CheckSyncWindows(o, p, deps, audit));
  const char* arrow = IsTerminal(deps.out) ? "\033[1m==>\033[0m " : "==> ";
  std::FILE* out = deps.out;
  auto created = sync::Operation::Create(*p.client, std::move(p.objects), p.options,
                                         [arrow, out](const sync::Progress& step) {
                                           fmt::print(out, "{}{}\n", arrow, step.line);
                                           std::fflush(out);
                                         });
  // The project refusing an object is the sync's own failure (exit 1), not the environment's.
  if (!created.ok() && created.status().reason() == project::kReasonDenied) {
    return Status(created.status()).set_reason(kReasonFailed);
  }
  GANTRY_ASSIGN_OR_RETURN(auto op, std::move(created));
  const sync::State& state = op->Run();
  PrintTable(deps.out, state);
  fmt::print(deps.out, "\n{} (api requests={})\n", state.message, state.requests);
  if (state.phase == sync::Phase::kSucceeded) return OkStatus();
  std::fflush(deps.out);
  fmt::print(deps.err, "\n");
  Code code = state.error.ok() ? Code::kAborted : state.error.code();
  return Status(code, fmt::format("sync {}: {}", o.sync.app, state.message)).set_reason(kReasonFailed);
}

// A sync (not a dry run) as the local operator: one audit row in the ledger, refusals included.
Status RunSync(const SyncOptions& o, const Deps& deps) {
  if (o.sync.dry_run) {
    LocalAction unrecorded;
    return SyncNow(o, deps, unrecorded);
  }
  GANTRY_ASSIGN_OR_RETURN(std::string url, StoreUrl(o.db, o.state_dir));
  GANTRY_ASSIGN_OR_RETURN(auto store, deps.open_store(url));
  LocalAction action{.action = "apps.sync", .permission = authz::Permission::kAppsSync, .project = o.project,
                     .object = "app " + o.sync.app};
  if (!o.env.empty()) action.details = "environment " + o.env;
  return RunAudited(*store, action, [&](LocalAction& a) { return SyncNow(o, deps, a); });
}

// Prints each object that differs to deps.out and the count to deps.err; kReasonFailed when any
// differs.
Status RunDiff(const SyncOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(Prepared p, Prepare(o, deps));
  bool color = o.color == "always" || (o.color == "auto" && IsTerminal(deps.out));
  auto entries = sync::Diff(*p.client, std::move(p.objects), p.options, color);
  if (!entries.ok()) return entries.status().WithContext(fmt::format("diff {}", o.sync.app));
  size_t out_of_sync = 0, objects = 0;
  for (const auto& e : *entries) {
    // A hook is created by every sync: shown, but not a difference.
    if (e.hook != sync::HookPhase::kNone) {
      fmt::print(deps.out, "Hook {}: {}", e.ref.ToString(), e.text);
      continue;
    }
    ++objects;
    if (e.status == diff::SyncStatus::kSynced) continue;
    ++out_of_sync;
    fmt::print(deps.out, "{} {}\n{}", diff::Name(e.status), e.ref.ToString(), e.text);
  }
  std::fflush(deps.out);
  if (out_of_sync == 0) {
    fmt::print(deps.err, "0 of {} objects differ\n", objects);
    return OkStatus();
  }
  return AbortedError("{} of {} objects differ", out_of_sync, objects).set_reason(kReasonFailed);
}

void AddCommonSyncFlags(CLI::App* cmd, SyncFlags& f) {
  AddSourceFlags(cmd, f.source);
  cmd->add_option("--app", f.app, "Application name: labels what is applied, and scopes prune")->required();
  AddClusterFlags(cmd, f.cluster);
  cmd->add_option("--project", f.project, "Project that bounds what may be applied (default: default, permissive)");
  cmd->add_option("--project-file", f.project_file, "YAML file with Project objects (kind: Project)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--sync-option", f.sync_options,
                  "An Argo CD sync option for every object, e.g. Replace=true, Validate=false, "
                  "PrunePropagationPolicy=orphan, RespectIgnoreDifferences=true (repeatable; an object's "
                  "argocd.argoproj.io/sync-options annotation wins)");
}

}  // namespace

void AddSyncCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SyncFlags>();
  auto* cmd = app.add_subcommand("sync", "Apply manifests to a cluster with server-side apply, prune, and wait for health");
  AddCommonSyncFlags(cmd, *f);
  cmd->add_flag("--prune", f->prune, "Delete objects this application applied before and no longer renders");
  cmd->add_flag("--prune-dangerous", f->prune_dangerous, "Also prune Namespaces, PersistentVolumeClaims and CRDs");
  cmd->add_flag("--allow-empty", f->allow_empty, "Allow prune to delete everything when nothing is rendered");
  cmd->add_flag("--dry-run", f->dry_run, "Server-side dry run: validate and show what would change, persist nothing");
  cmd->add_flag("--wait", f->wait, "Wait until every object is Healthy");
  cmd->add_option("--timeout", f->timeout, "Limit for each wait (default 5m)");
  cmd->add_flag("--force-conflicts", f->force, "Take over fields owned by other field managers");
  cmd->add_flag("--create-namespace", f->create_namespace, "Create the destination namespace when missing");
  cmd->add_flag("--apply-all", f->apply_all, "Apply every object, also those already in sync");
  cmd->add_flag("--confirm-prune", f->confirm_prune,
                "Prune the objects annotated Prune=confirm that an earlier sync left waiting for confirmation");
  cmd->add_option("--parallelism", f->parallelism, "Objects applied at once within a wave")->check(CLI::Range(1, 1024));
  cmd->add_option("--env", f->env, "The environment this sync is for: sync windows that list environments apply to it");
  AddWindowFlags(cmd, f->window);
  cmd->add_option("--state-dir", f->state_dir, "Where the ledger that records the sync is (default ~/.config/gantry)")
      ->envname("GANTRY_HOME");
  cmd->add_option("--db", f->db, "Ledger URL for the sync's audit row (default sqlite STATE_DIR/gantry.db)")->envname("GANTRY_DB");
  cmd->callback([f, &deps, &exit_code] {
    auto options = Validate(*f);
    exit_code = options.ok() ? Report(RunSync(*options, deps), deps.err) : UsageError(options.status(), deps.err);
  });
}

void AddDiffCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SyncFlags>();
  auto* cmd = app.add_subcommand("diff", "Show how the cluster differs from the manifests (exit 1 when it does)");
  AddCommonSyncFlags(cmd, *f);
  cmd->add_option("--color", f->color, "auto, always or never")->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->callback([f, &deps, &exit_code] {
    auto options = Validate(*f);
    exit_code = options.ok() ? Report(RunDiff(*options, deps), deps.err) : UsageError(options.status(), deps.err);
  });
}

}  // namespace gantry::cli
