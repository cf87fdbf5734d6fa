// Push mode on the command line (see docs/push-mode.md):
//
//   gantry cluster add NAME --kubeconfig FILE [--context C] --env ENV [--label k=v] [--reference] [--mode pull]
//   gantry cluster list | cluster remove NAME
//   gantry env add NAME [--after ENV]... [--cluster C]... [--approval] [--soak 10m] [--no-health-gate]
//   gantry env list | env remove NAME
//   gantry deploy APP --revision REV (--repo URL | --dir DIR) [--env ENV | --through ENV] [--prune]
//                 [--rollback-on-failure] [--path-template T] [--timeout 5m] [--parallel N]
//   gantry deploy APP --resume (--repo URL | --dir DIR)
//   gantry approve APP --env ENV --release N
//   gantry status [APP] | gantry history APP | gantry rollback APP --env ENV [--to N]
//
// Every command takes --state-dir (default $GANTRY_HOME or ~/.config/gantry: gantry.db, clusters/,
// config/), --config DIR (Cluster/Environment YAML from a repository instead of config/) and --db URL.
// Exit codes: 0 done; 1 a deploy or rollback failed (the reason per cluster is printed); 2 usage;
// 3 environment errors (unreachable store, bad config, unreachable cluster on add); 4 a deploy is
// waiting for approval.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <tuple>

#include <CLI/CLI.hpp>

#include "base/clock.h"
#include "base/duration.h"
#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/source.h"
#include "cli/state.h"
#include "cli/terminal.h"
#include "deliver/deliver.h"
#include "git/git.h"
#include "store/store.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct StateFlags {
  std::string state_dir;
  std::string config_dir;
  std::string db;
};

void AddStateFlags(CLI::App* cmd, StateFlags& f) {
  cmd->add_option("--state-dir", f.state_dir, "Gantry's state: gantry.db, clusters/, config/ (default ~/.config/gantry)")
      ->envname("GANTRY_HOME");
  cmd->add_option("--config", f.config_dir, "Load Cluster and Environment objects from this file or directory instead");
  cmd->add_option("--db", f.db, "Ledger URL (default sqlite STATE_DIR/gantry.db; postgresql://... to share)")->envname("GANTRY_DB");
}

fs::path StateDir(const StateFlags& f) { return cli::StateDir(f.state_dir); }

Result<deliver::Config> LoadState(const StateFlags& f) {
  if (!f.config_dir.empty()) return deliver::LoadConfig(f.config_dir);
  return deliver::LoadConfigDirIfExists(StateDir(f) / "config");
}

Result<std::unique_ptr<store::Store>> OpenStore(const StateFlags& f) {
  GANTRY_ASSIGN_OR_RETURN(std::string url, StoreUrl(f.db, f.state_dir));
  return store::Open(url);
}

int Fail(const Status& s, int code = 3) {
  fmt::print(stderr, "error: {}\n", s.message());
  return code;
}

// Prints rows as an aligned table (the first row is the header).
void Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) line += (i + 1 < r.size() ? Pad(r[i], w[i] + 2) : r[i]);
    fmt::print("{}\n", line);
  }
}

Status WriteObject(const StateFlags& f, std::string_view kind, const std::string& name, const value::Value& obj) {
  if (!f.config_dir.empty()) return FailedPreconditionError("--config {} is read-only here: edit its files instead", f.config_dir);
  fs::path dir = StateDir(f) / "config";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoError(ec.value(), "create " + dir.string());
  ::chmod(dir.c_str(), 0700);
  return WriteFileAtomic(dir / fmt::format("{}-{}.yaml", kind, name), value::ToYaml(obj), 0600);
}

// ---------------------------------------------------------------------------------------------
// cluster

void AddClusterCommands(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto* cluster = app.add_subcommand("cluster", "Clusters push mode deploys to");
  cluster->require_subcommand(1);

  struct AddFlags {
    StateFlags state;
    std::string name, kubeconfig, context, env, mode = "push";
    std::vector<std::string> labels;
    bool reference = false, no_check = false;
  };
  auto a = std::make_shared<AddFlags>();
  auto* add = cluster->add_subcommand("add", "Add a cluster (its kubeconfig is copied, 0600, unless --reference)");
  AddStateFlags(add, a->state);
  add->add_option("NAME", a->name, "Cluster name")->required();
  add->add_option("--kubeconfig", a->kubeconfig, "Kubeconfig file")->required();
  add->add_option("--context", a->context, "Context in it (default: its current-context)");
  add->add_option("--env", a->env, "Environment the cluster belongs to")->required();
  add->add_option("--label", a->labels, "Label key=value (repeatable)");
  add->add_option("--mode", a->mode, "push (deploy applies) or pull (an agent does; status reads it)")
      ->check(CLI::IsMember({"push", "pull"}));
  add->add_flag("--reference", a->reference, "Reference the kubeconfig file where it is instead of copying it");
  add->add_flag("--no-check", a->no_check, "Do not check that the cluster answers");
  add->callback([a, &exit_code] {
    deliver::Cluster c{.name = a->name, .kubeconfig = fs::absolute(a->kubeconfig).string(), .context = a->context,
                       .environment = a->env, .pull = a->mode == "pull"};
    for (const auto& l : a->labels) {
      size_t eq = l.find('=');
      if (eq == std::string::npos || eq == 0) {
        exit_code = Fail(InvalidArgumentError("--label {:?}: expected key=value", l), 2);
        return;
      }
      c.labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
    // Validates the name and fields as a config file would be.
    auto parsed = deliver::ParseConfig({deliver::ToObject(c)});
    if (!parsed.ok()) {
      exit_code = Fail(parsed.status(), 2);
      return;
    }
    auto existing = LoadState(a->state);
    if (!existing.ok()) {
      exit_code = Fail(existing.status());
      return;
    }
    if (existing->FindCluster(c.name) != nullptr) {
      exit_code = Fail(AlreadyExistsError("cluster {} exists; remove it first", c.name));
      return;
    }
    auto client = deliver::Connect(c, {.check = !a->no_check});
    if (!client.ok()) {
      exit_code = Fail(client.status());
      return;
    }
    if (!a->reference) {
      auto flat = deliver::FlattenKubeconfig(c);
      if (!flat.ok()) {
        exit_code = Fail(flat.status());
        return;
      }
      fs::path dir = StateDir(a->state) / "clusters";
      std::error_code ec;
      fs::create_directories(dir, ec);
      ::chmod(dir.c_str(), 0700);
      fs::path file = dir / (c.name + ".kubeconfig");
      if (Status s = WriteFileAtomic(file, *flat, 0600); !s.ok()) {
        exit_code = Fail(s);
        return;
      }
      c.kubeconfig = file.string();
      c.context = "";
    }
    if (Status s = WriteObject(a->state, "cluster", c.name, deliver::ToObject(c)); !s.ok()) {
      exit_code = Fail(s);
      return;
    }
    fmt::print("cluster {} added to environment {}{}\n", c.name, c.environment, a->no_check ? "" : " (reachable)");
    exit_code = 0;
  });

  auto ls = std::make_shared<StateFlags>();
  auto* list = cluster->add_subcommand("list", "List clusters");
  AddStateFlags(list, *ls);
  list->callback([ls, &exit_code] {
    auto config = LoadState(*ls);
    if (!config.ok()) {
      exit_code = Fail(config.status());
      return;
    }
    std::vector<std::vector<std::string>> rows{{"NAME", "ENVIRONMENT", "MODE", "CONTEXT", "KUBECONFIG", "LABELS"}};
    for (const auto& c : config->clusters) {
      std::vector<std::string> labels;
      for (const auto& [k, v] : c.labels) labels.push_back(k + "=" + v);
      rows.push_back({c.name, c.environment, c.pull ? "pull" : "push", c.context.empty() ? "-" : c.context, c.kubeconfig,
                      fmt::format("{}", fmt::join(labels, ","))});
    }
    Table(rows);
    exit_code = 0;
  });

  struct RemoveFlags {
    StateFlags state;
    std::string name;
  };
  auto rm = std::make_shared<RemoveFlags>();
  auto* remove = cluster->add_subcommand("remove", "Remove a cluster (and its copied kubeconfig); the ledger keeps its history");
  AddStateFlags(remove, rm->state);
  remove->add_option("NAME", rm->name, "Cluster name")->required();
  remove->callback([rm, &exit_code] {
    fs::path dir = StateDir(rm->state);
    std::error_code ec;
    if (!fs::remove(dir / "config" / ("cluster-" + rm->name + ".yaml"), ec)) {
      exit_code = Fail(NotFoundError("no cluster {} in {}", rm->name, (dir / "config").string()));
      return;
    }
    fs::remove(dir / "clusters" / (rm->name + ".kubeconfig"), ec);
    fmt::print("cluster {} removed\n", rm->name);
    exit_code = 0;
  });
}

// ---------------------------------------------------------------------------------------------
// env

void AddEnvCommands(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto* env = app.add_subcommand("env", "Environments: promotion order and gates");
  env->require_subcommand(1);
  struct AddFlags {
    StateFlags state;
    std::string name, soak;
    std::vector<std::string> after, clusters;
    bool approval = false, no_health = false;
  };
  auto a = std::make_shared<AddFlags>();
  auto* add = env->add_subcommand("add", "Add or replace an environment");
  AddStateFlags(add, a->state);
  add->add_option("NAME", a->name, "Environment name")->required();
  add->add_option("--after", a->after, "Environment(s) this one is promoted from");
  add->add_option("--cluster", a->clusters, "Its clusters (default: those added with --env NAME)");
  add->add_flag("--approval", a->approval, "Require `gantry approve` before deploying here");
  add->add_option("--soak", a->soak, "Wait this long after it is healthy before the next environment (e.g. 10m)");
  add->add_flag("--no-health-gate", a->no_health, "Do not wait for health (apply only)");
  add->callback([a, &exit_code] {
    deliver::Environment e{.name = a->name, .after = a->after, .clusters = a->clusters};
    e.gates.approval = a->approval;
    e.gates.healthy = !a->no_health;
    if (!a->soak.empty()) {
      auto d = ParseDuration(a->soak);
      if (!d.ok()) {
        exit_code = Fail(d.status().WithContext("--soak"), 2);
        return;
      }
      e.gates.soak = *d;
    }
    auto config = LoadState(a->state);
    if (!config.ok()) {
      exit_code = Fail(config.status());
      return;
    }
    std::erase_if(config->environments, [&](const deliver::Environment& x) { return x.name == e.name; });
    config->environments.push_back(e);
    if (auto order = deliver::PromotionOrder(*config); !order.ok()) {
      exit_code = Fail(order.status(), 2);
      return;
    }
    if (Status s = WriteObject(a->state, "environment", e.name, deliver::ToObject(e)); !s.ok()) {
      exit_code = Fail(s);
      return;
    }
    fmt::print("environment {} saved\n", e.name);
    exit_code = 0;
  });

  auto ls = std::make_shared<StateFlags>();
  auto* list = env->add_subcommand("list", "List environments in promotion order");
  AddStateFlags(list, *ls);
  list->callback([ls, &exit_code] {
    auto config = LoadState(*ls);
    if (!config.ok()) {
      exit_code = Fail(config.status());
      return;
    }
    auto order = deliver::PromotionOrder(*config);
    if (!order.ok()) {
      exit_code = Fail(order.status());
      return;
    }
    std::vector<std::vector<std::string>> rows{{"ENVIRONMENT", "AFTER", "CLUSTERS", "GATES"}};
    for (const auto& name : *order) {
      const deliver::Environment& e = *config->FindEnvironment(name);
      std::vector<std::string> clusters, gates;
      for (const auto* c : config->ClustersOf(e)) clusters.push_back(c->name);
      if (e.gates.healthy) gates.push_back("healthy");
      if (e.gates.approval) gates.push_back("approval");
      if (e.gates.soak.count() > 0) gates.push_back(fmt::format("soak {}s", e.gates.soak.count() / 1000));
      rows.push_back({e.name, e.after.empty() ? "-" : fmt::format("{}", fmt::join(e.after, ",")),
                      fmt::format("{}", fmt::join(clusters, ",")), fmt::format("{}", fmt::join(gates, ","))});
    }
    Table(rows);
    exit_code = 0;
  });

  struct RemoveFlags {
    StateFlags state;
    std::string name;
  };
  auto rm = std::make_shared<RemoveFlags>();
  auto* remove = env->add_subcommand("remove", "Remove an environment");
  AddStateFlags(remove, rm->state);
  remove->add_option("NAME", rm->name, "Environment name")->required();
  remove->callback([rm, &exit_code] {
    std::error_code ec;
    if (!fs::remove(StateDir(rm->state) / "config" / ("environment-" + rm->name + ".yaml"), ec)) {
      exit_code = Fail(NotFoundError("no environment {}", rm->name));
      return;
    }
    fmt::print("environment {} removed\n", rm->name);
    exit_code = 0;
  });
}

// ---------------------------------------------------------------------------------------------
// deploy, rollback

struct SourceOpts {
  std::string repo, dir, cache_dir, git_username;
  bool allow_file_repo = false;
};

void AddDeploySourceFlags(CLI::App* cmd, SourceOpts& s) {
  cmd->add_option("--repo", s.repo, "Config repository (Git URL)");
  cmd->add_option("--dir", s.dir, "Local config directory instead of --repo (no rollback to other revisions)");
  cmd->add_option("--cache-dir", s.cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", s.allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", s.git_username, "User for HTTPS Git; the password or token is read from GANTRY_GIT_PASSWORD");
}

Result<deliver::RenderFn> MakeRender(const SourceOpts& s, const std::string& revision) {
  if (s.repo.empty() == s.dir.empty()) return InvalidArgumentError("give exactly one of --repo URL and --dir DIR");
  if (!s.dir.empty()) {
    // A directory has one revision: the one named on the command line.
    auto dir_render = deliver::DirRenderFn(fs::absolute(s.dir));
    return deliver::RenderFn([dir_render, revision](std::string_view rev, const std::string& path) -> Result<render::Rendered> {
      if (!revision.empty() && rev != revision)
        return FailedPreconditionError("--dir holds revision {}, not {}: rendering another revision needs --repo", revision, rev);
      return dir_render(rev, path);
    });
  }
  auto sources = std::make_shared<render::GitSources>(
      GitSourcesOptionsFor(s.cache_dir, s.repo, s.git_username, s.allow_file_repo));
  GANTRY_RETURN_IF_ERROR(sources->Open(s.repo).status());  // a refused URL fails before any work
  return deliver::GitRenderFn(std::move(sources), s.repo);
}

std::atomic<deliver::Deployment*> g_running{nullptr};

void OnSignal(int) {
  if (deliver::Deployment* d = g_running.load()) d->Terminate();
}

deliver::ProgressFn Progress() {
  bool tty = ::isatty(1);
  return [tty](std::string_view line) {
    fmt::print("{}{}\n", tty ? "\033[1m==>\033[0m " : "==> ", line);
    std::fflush(stdout);
  };
}

void PrintTargets(const std::vector<store::Target>& targets) {
  std::vector<std::vector<std::string>> rows{{"ENVIRONMENT", "CLUSTER", "STATE", "MESSAGE"}};
  for (const auto& t : targets) rows.push_back({t.env, t.cluster, std::string(store::Name(t.state)), t.message});
  fmt::print("\n");
  Table(rows);
}

void AddDeployCommands(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  struct Flags {
    StateFlags state;
    SourceOpts source;
    deliver::DeployOptions options;
    std::string timeout = "5m";
    bool resume = false;
    std::vector<std::string> digests;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("deploy", "Deploy a release environment by environment, health-gated, recorded in the ledger");
  AddStateFlags(cmd, f->state);
  AddDeploySourceFlags(cmd, f->source);
  cmd->add_option("APP", f->options.app, "Application name (tracking label gantry.dev/app)")->required();
  cmd->add_option("--revision", f->options.revision, "Revision of the config to deploy (branch, tag, SHA)");
  auto* env_opt = cmd->add_option("--env", f->options.only_env, "Deploy to this environment only");
  cmd->add_option("--through", f->options.through, "Promote up to and including this environment")->excludes(env_opt);
  cmd->add_option("--path-template", f->options.path_template, "Path of each environment's overlay (default envs/{env})");
  cmd->add_flag("--prune", f->options.prune, "Delete objects the application applied before and no longer renders");
  cmd->add_flag("--rollback-on-failure", f->options.rollback_on_failure, "Roll a failing environment back to its previous release");
  cmd->add_option("--timeout", f->timeout, "Health wait per cluster (default 5m)");
  cmd->add_option("--parallel", f->options.cluster_parallelism, "Clusters of one environment deployed at once")->check(CLI::Range(1, 256));
  cmd->add_option("--namespace", f->options.default_namespace, "Namespace for objects without one (default: default)");
  cmd->add_option("--image-digest", f->digests, "Recorded in the release: IMAGE=sha256:... (repeatable)");
  cmd->add_option("--started-by", f->options.started_by, "Who or what started it (default: $USER)");
  cmd->add_flag("--resume", f->resume, "Continue the newest unfinished release of APP");
  cmd->callback([f, &exit_code] {
    if (!f->resume && f->options.revision.empty()) {
      exit_code = Fail(InvalidArgumentError("--revision is required (or --resume)"), 2);
      return;
    }
    auto timeout = ParseDuration(f->timeout);
    if (!timeout.ok()) {
      exit_code = Fail(timeout.status().WithContext("--timeout"), 2);
      return;
    }
    f->options.health_timeout = *timeout;
    if (f->options.started_by == "cli")
      if (const char* user = std::getenv("USER"); user && *user) f->options.started_by = user;
    for (const auto& d : f->digests) {
      size_t eq = d.find('=');
      if (eq == std::string::npos) {
        exit_code = Fail(InvalidArgumentError("--image-digest {:?}: expected IMAGE=sha256:...", d), 2);
        return;
      }
      f->options.image_digests[d.substr(0, eq)] = d.substr(eq + 1);
    }
    auto config = LoadState(f->state);
    if (!config.ok()) {
      exit_code = Fail(config.status());
      return;
    }
    auto render = MakeRender(f->source, f->options.revision);
    if (!render.ok()) {
      exit_code = Fail(render.status(), 2);
      return;
    }
    auto store = OpenStore(f->state);
    if (!store.ok()) {
      exit_code = Fail(store.status());
      return;
    }
    deliver::ConnectFn connect = [](const deliver::Cluster& c) { return deliver::Connect(c); };
    auto d = f->resume ? deliver::Deployment::Resume(**store, *config, *render, connect, f->options, Progress())
                       : deliver::Deployment::Start(**store, *config, *render, connect, f->options, Progress());
    if (!d.ok()) {
      exit_code = Fail(d.status());
      return;
    }
    g_running.store(d->get());
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    const deliver::DeployState& s = (*d)->Run();
    g_running.store(nullptr);
    PrintTargets(s.targets);
    fmt::print("\nrelease {}: {}\n", s.release_id, s.message);
    exit_code = s.phase == deliver::Phase::kSucceeded ? 0 : s.phase == deliver::Phase::kWaitingApproval ? 4 : 1;
  });

  struct RollbackFlags {
    StateFlags state;
    SourceOpts source;
    deliver::RollbackOptions options;
    std::string timeout = "5m";
  };
  auto r = std::make_shared<RollbackFlags>();
  auto* rb = app.add_subcommand("rollback", "Re-deploy the previous (or a given) release to an environment");
  AddStateFlags(rb, r->state);
  AddDeploySourceFlags(rb, r->source);
  rb->add_option("APP", r->options.app, "Application name")->required();
  rb->add_option("--env", r->options.env, "Environment to roll back")->required();
  rb->add_option("--to", r->options.to_release, "Release to go back to (default: the one before the current)");
  rb->add_option("--timeout", r->timeout, "Health wait per cluster (default 5m)");
  rb->add_flag("--prune", r->options.prune, "Delete objects the newer release added");
  rb->callback([r, &exit_code] {
    auto timeout = ParseDuration(r->timeout);
    if (!timeout.ok()) {
      exit_code = Fail(timeout.status().WithContext("--timeout"), 2);
      return;
    }
    r->options.health_timeout = *timeout;
    if (const char* user = std::getenv("USER"); user && *user) r->options.started_by = user;
    auto config = LoadState(r->state);
    auto store = config.ok() ? OpenStore(r->state) : Result<std::unique_ptr<store::Store>>(config.status());
    if (!store.ok()) {
      exit_code = Fail(store.status());
      return;
    }
    auto render = MakeRender(r->source, "");
    if (!render.ok()) {
      exit_code = Fail(render.status(), 2);
      return;
    }
    deliver::ConnectFn connect = [](const deliver::Cluster& c) { return deliver::Connect(c); };
    auto result = deliver::Rollback(**store, *config, *render, connect, r->options, Progress());
    if (!result.ok()) {
      exit_code = Fail(result.status());
      return;
    }
    PrintTargets(result->targets);
    fmt::print("\n{}\n", result->message);
    exit_code = result->ok ? 0 : 1;
  });
}

// ---------------------------------------------------------------------------------------------
// approve, status, history

void AddLedgerCommands(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  struct ApproveFlags {
    StateFlags state;
    std::string app, env;
    int64_t release = 0;
  };
  auto a = std::make_shared<ApproveFlags>();
  auto* approve = app.add_subcommand("approve", "Approve a release for an environment with an approval gate");
  AddStateFlags(approve, a->state);
  approve->add_option("APP", a->app, "Application name")->required();
  approve->add_option("--env", a->env, "Environment")->required();
  approve->add_option("--release", a->release, "Release (default: the newest of APP)");
  approve->callback([a, &exit_code] {
    auto store = OpenStore(a->state);
    if (!store.ok()) {
      exit_code = Fail(store.status());
      return;
    }
    const char* user = std::getenv("USER");
    auto approved = deliver::Approve(**store, a->app, a->env, a->release, user && *user ? user : "cli");
    if (!approved.ok()) {
      exit_code = Fail(approved.status());
      return;
    }
    fmt::print("release {} of {} approved for {}; continue with: gantry deploy {} --resume\n", *approved, a->app, a->env, a->app);
    exit_code = 0;
  });

  struct StatusFlags {
    StateFlags state;
    std::string app;
  };
  auto st = std::make_shared<StatusFlags>();
  auto* status = app.add_subcommand("status", "Which release runs where, its health, and which environments are behind");
  AddStateFlags(status, st->state);
  status->add_option("APP", st->app, "Only this application");
  status->callback([st, &exit_code] {
    auto config = LoadState(st->state);
    auto store = config.ok() ? OpenStore(st->state) : Result<std::unique_ptr<store::Store>>(config.status());
    if (!store.ok()) {
      exit_code = Fail(store.status());
      return;
    }
    auto report = deliver::GatherStatus(**store, *config, st->app, [](const deliver::Cluster& c) {
      return deliver::Connect(c, {.timeout = std::chrono::seconds(3)});
    });
    if (!report.ok()) {
      exit_code = Fail(report.status());
      return;
    }
    std::vector<std::vector<std::string>> table{{"APP", "ENVIRONMENT", "CLUSTER", "MODE", "RELEASE", "REVISION", "HEALTH", "BEHIND", "NOTE"}};
    for (const auto& r : report->rows) {
      table.push_back({r.app, r.env, r.cluster, r.mode, r.release ? std::to_string(r.release) : "-",
                       r.revision.empty() ? "-" : r.revision.substr(0, 12), r.health,
                       r.behind > 0 ? fmt::format("{} behind", r.behind) : "up to date", r.message});
    }
    Table(table);
    bool any_behind = false;
    for (const auto& [key, n] : report->behind) {
      if (n == 0) continue;
      any_behind = true;
      fmt::print("\n{}: environment {} is {} release{} behind the newest", key.first, key.second, n, n == 1 ? "" : "s");
    }
    if (any_behind) fmt::print("\n");
    for (const auto& w : report->warnings) fmt::print(stderr, "warning: {}\n", w);
    exit_code = 0;
  });

  struct HistoryFlags {
    StateFlags state;
    std::string app;
    int limit = 20;
  };
  auto h = std::make_shared<HistoryFlags>();
  auto* history = app.add_subcommand("history", "Releases of an application and what happened to each");
  AddStateFlags(history, h->state);
  history->add_option("APP", h->app, "Application name")->required();
  history->add_option("--limit", h->limit, "Releases shown (default 20)")->check(CLI::Range(1, 10000));
  history->callback([h, &exit_code] {
    auto store = OpenStore(h->state);
    if (!store.ok()) {
      exit_code = Fail(store.status());
      return;
    }
    auto rels = (*store)->ListReleases(h->app, h->limit);
    if (!rels.ok()) {
      exit_code = Fail(rels.status());
      return;
    }
    // The ledger: app commit → CI run → image digest → config commit → where it went.
    std::vector<std::vector<std::string>> table{{"RELEASE", "CREATED", "REVISION", "RUN", "IMAGE", "CONFIG", "BY", "TARGETS"}};
    for (const auto& r : *rels) {
      auto targets = (*store)->ListTargets(r.id);
      std::vector<std::string> parts;
      if (targets.ok())
        for (const auto& t : *targets) parts.push_back(fmt::format("{}/{}={}", t.env, t.cluster, store::Name(t.state)));
      std::vector<std::string> images;
      for (const auto& [name, digest] : r.image_digests) {
        images.push_back(fmt::format("{}@{}", name.substr(name.rfind('/') + 1), digest.substr(0, 19)));
      }
      table.push_back({std::to_string(r.id), Rfc3339(r.created_at), r.source_revision.substr(0, 12),
                       r.run_id ? std::to_string(*r.run_id) : "-", images.empty() ? "-" : fmt::format("{}", fmt::join(images, " ")),
                       r.config_revision == r.source_revision ? "-" : r.config_revision.substr(0, 12), r.started_by,
                       fmt::format("{}", fmt::join(parts, " "))});
    }
    Table(table);
    exit_code = 0;
  });
}

}  // namespace

void AddDeliverCommands(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  AddClusterCommands(app, deps, exit_code);
  AddEnvCommands(app, deps, exit_code);
  AddDeployCommands(app, deps, exit_code);
  AddLedgerCommands(app, deps, exit_code);
}

}  // namespace gantry::cli
