// gantry sync PATH and gantry diff PATH: the delivery engine on a directory of manifests.
//
//   gantry diff PATH --app NAME [--context C]    exit 0 in sync, 1 when not (as kubectl diff)
//   gantry sync PATH --app NAME [--context C] [--prune] [--dry-run] [--wait] [--timeout 5m]
// PATH may be replaced by --repo URL [--revision REV] [--path P] (see source.h).

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "base/duration.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/cluster.h"
#include "cli/source.h"
#include "cli/terminal.h"
#include "kube/kube.h"
#include "render/render.h"
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
  std::string timeout = "5m";
  int parallelism = 32;
};

// Loads the manifests and everything both commands need; prints the error and returns the exit
// code on failure.
struct Prepared {
  std::unique_ptr<kube::Client> client;
  std::vector<value::Value> objects;
  sync::Options options;
};

std::optional<Prepared> Prepare(const SyncFlags& f, int& exit_code) {
  auto loaded = LoadSource(f.source);
  if (!loaded.ok()) {
    fmt::print(stderr, "error: {}\n", loaded.status().message());
    exit_code = 3;
    return std::nullopt;
  }
  kube::RestConfig config;
  auto client = Connect(f.cluster, &config);
  if (!client.ok()) {
    fmt::print(stderr, "error: {}\n", client.status().message());
    exit_code = 3;
    return std::nullopt;
  }
  Prepared p;
  p.client = std::move(client).value();
  for (auto& m : loaded->manifests) p.objects.push_back(std::move(m.object));
  p.options.app = f.app;
  p.options.default_namespace = config.namespace_;
  p.options.prune = f.prune;
  p.options.prune_dangerous = f.prune_dangerous;
  p.options.allow_empty = f.allow_empty;
  p.options.dry_run = f.dry_run;
  p.options.wait_for_health = f.wait;
  p.options.force = f.force;
  p.options.create_namespace = f.create_namespace;
  p.options.apply_out_of_sync_only = !f.apply_all;
  p.options.parallelism = f.parallelism;
  auto timeout = ParseDuration(f.timeout);
  if (!timeout.ok()) {
    fmt::print(stderr, "error: --timeout: {}\n", timeout.status().message());
    exit_code = 2;
    return std::nullopt;
  }
  p.options.timeout = *timeout;
  return p;
}

void PrintTable(const sync::State& state) {
  size_t wk = 4, wn = 4, wa = 6, wh = 6;
  for (const auto& r : state.results) {
    wk = std::max(wk, r.ref.kind.size());
    wn = std::max(wn, r.ref.namespace_.size() + r.ref.name.size() + 1);
    wa = std::max(wa, sync::Name(r.action).size() + (r.failed ? 7 : 0));
    wh = std::max(wh, health::Name(r.health.status).size());
  }
  fmt::print("\n{}  {}  {}  {}  {}\n", Pad("KIND", wk), Pad("NAME", wn), Pad("ACTION", wa), Pad("HEALTH", wh), "MESSAGE");
  for (const auto& r : state.results) {
    std::string name = r.ref.namespace_.empty() ? r.ref.name : r.ref.namespace_ + "/" + r.ref.name;
    std::string action(sync::Name(r.action));
    if (r.failed) action += " (failed)";
    std::string message = r.message.empty() ? r.health.message : r.message;
    fmt::print("{}  {}  {}  {}  {}\n", Pad(r.ref.kind, wk), Pad(name, wn), Pad(action, wa),
               Pad(health::Name(r.health.status), wh), message);
  }
}

void AddCommonSyncFlags(CLI::App* cmd, SyncFlags& f) {
  AddSourceFlags(cmd, f.source);
  cmd->add_option("--app", f.app, "Application name: labels what is applied, and scopes prune")->required();
  AddClusterFlags(cmd, f.cluster);
}

}  // namespace

void AddSyncCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
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
  cmd->add_option("--parallelism", f->parallelism, "Objects applied at once within a wave")->check(CLI::Range(1, 1024));
  cmd->callback([f, &exit_code] {
    auto p = Prepare(*f, exit_code);
    if (!p) return;
    bool tty = ::isatty(1);
    auto op = sync::Operation::Create(*p->client, std::move(p->objects), p->options,
                                      [tty](const sync::Progress& step) {
                                        fmt::print("{}{}\n", tty ? "\033[1m==>\033[0m " : "==> ", step.line);
                                        std::fflush(stdout);
                                      });
    if (!op.ok()) {
      fmt::print(stderr, "error: {}\n", op.status().message());
      exit_code = 3;
      return;
    }
    const sync::State& state = (*op)->Run();
    PrintTable(state);
    fmt::print("\n{} (api requests={})\n", state.message, state.requests);
    if (state.phase != sync::Phase::kSucceeded) {
      fmt::print(stderr, "\nerror: sync {}: {}\n", f->app, state.message);
      exit_code = 1;
      return;
    }
    exit_code = 0;
  });
}

void AddDiffCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SyncFlags>();
  auto* cmd = app.add_subcommand("diff", "Show how the cluster differs from the manifests (exit 1 when it does)");
  AddCommonSyncFlags(cmd, *f);
  auto color = std::make_shared<std::string>("auto");
  cmd->add_option("--color", *color, "auto, always or never")->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->callback([f, color, &exit_code] {
    auto p = Prepare(*f, exit_code);
    if (!p) return;
    bool use_color = *color == "always" || (*color == "auto" && ::isatty(1));
    auto entries = sync::Diff(*p->client, std::move(p->objects), p->options, use_color);
    if (!entries.ok()) {
      fmt::print(stderr, "error: diff {}: {}\n", f->app, entries.status().message());
      exit_code = 3;
      return;
    }
    int out_of_sync = 0;
    for (const auto& e : *entries) {
      if (e.status == diff::SyncStatus::kSynced) continue;
      ++out_of_sync;
      fmt::print("{} {}\n{}", diff::Name(e.status), e.ref.ToString(), e.text);
    }
    fmt::print(stderr, "{} of {} objects differ\n", out_of_sync, entries->size());
    exit_code = out_of_sync == 0 ? 0 : 1;
  });
}

}  // namespace gantry::cli
