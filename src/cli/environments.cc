// gantry cluster add | list | remove, gantry env add | list | remove: the Cluster and Environment
// objects of push mode, kept in the state directory (cli/state.h) or read from --config.

#include <CLI/CLI.hpp>

#include "base/duration.h"
#include "cli/deliver.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/state.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

// The reason of an environment that would break the promotion order (a cycle, an unknown name):
// the command line is wrong, a usage error.
constexpr std::string_view kReasonBadOrder = "BadPromotionOrder";

// The objects are written to the state directory, never to --config (a repository's files).
Status Writable(const StateFlags& f) {
  if (!f.config_dir.empty()) return FailedPreconditionError("--config {} is read-only here: edit its files instead", f.config_dir);
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// cluster

struct ClusterAddFlags {
  StateFlags state;
  std::string name, kubeconfig, context, env, mode = "push";
  std::vector<std::string> labels;
  std::vector<std::string> allow_exec;
  bool reference = false, no_check = false;
};

struct ClusterAddOptions {
  StateFlags state;
  deliver::Cluster cluster;
  bool reference = false, check = true;
};

// flags → options: InvalidArgument for a bad --label or a cluster a config file could not hold.
Result<ClusterAddOptions> ToOptions(const ClusterAddFlags& f) {
  ClusterAddOptions o{.state = f.state, .reference = f.reference, .check = !f.no_check};
  deliver::Cluster& c = o.cluster;
  c = {.name = f.name, .kubeconfig = fs::absolute(f.kubeconfig).string(), .context = f.context, .environment = f.env,
       .pull = f.mode == "pull"};
  c.allow_exec_plugins = f.allow_exec;
  for (const auto& l : f.labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgumentError("--label {:?}: expected key=value", l);
    c.labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  // Validates the name and fields as a config file would be.
  GANTRY_RETURN_IF_ERROR(deliver::ParseConfig({deliver::ToObject(c)}).status());
  return o;
}

Status RunClusterAdd(ClusterAddOptions o, const Deps& deps) {
  deliver::Cluster& c = o.cluster;
  GANTRY_RETURN_IF_ERROR(Writable(o.state));
  GANTRY_ASSIGN_OR_RETURN(deliver::Config existing, LoadState(o.state));
  if (existing.FindCluster(c.name) != nullptr) return AlreadyExistsError("cluster {} exists; remove it first", c.name);
  GANTRY_RETURN_IF_ERROR(deps.connect_cluster(c, {.check = o.check}).status());
  if (!o.reference) {
    GANTRY_ASSIGN_OR_RETURN(std::string flat, deliver::FlattenKubeconfig(c));
    GANTRY_ASSIGN_OR_RETURN(fs::path file, SaveKubeconfig(StateDir(o.state), c.name, flat));
    c.kubeconfig = file.string();
    c.context = "";
  }
  GANTRY_RETURN_IF_ERROR(SaveConfigObject(StateDir(o.state), "cluster", c.name, deliver::ToObject(c)));
  fmt::print(deps.out, "cluster {} added to environment {}{}\n", c.name, c.environment, o.check ? " (reachable)" : "");
  return OkStatus();
}

Status RunClusterList(const StateFlags& state, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(state));
  std::vector<std::vector<std::string>> rows{{"NAME", "ENVIRONMENT", "MODE", "CONTEXT", "KUBECONFIG", "LABELS"}};
  for (const auto& c : config.clusters) {
    std::vector<std::string> labels;
    for (const auto& [k, v] : c.labels) labels.push_back(k + "=" + v);
    rows.push_back({c.name, c.environment, c.pull ? "pull" : "push", c.context.empty() ? "-" : c.context, c.kubeconfig,
                    fmt::format("{}", fmt::join(labels, ","))});
  }
  Table(deps.out, rows);
  return OkStatus();
}

struct RemoveOptions {
  StateFlags state;
  std::string name;
};

Status RunClusterRemove(const RemoveOptions& o, const Deps& deps) {
  GANTRY_RETURN_IF_ERROR(RemoveConfigObject(StateDir(o.state), "cluster", o.name));
  RemoveKubeconfig(StateDir(o.state), o.name);
  fmt::print(deps.out, "cluster {} removed\n", o.name);
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// env

struct EnvAddFlags {
  StateFlags state;
  std::string name, soak;
  std::vector<std::string> after, clusters;
  bool approval = false, no_health = false;
};

struct EnvAddOptions {
  StateFlags state;
  deliver::Environment env;
};

// flags → options: InvalidArgument for a bad --soak.
Result<EnvAddOptions> ToOptions(const EnvAddFlags& f) {
  EnvAddOptions o{.state = f.state, .env = {.name = f.name, .after = f.after, .clusters = f.clusters}};
  o.env.gates.approval = f.approval;
  o.env.gates.healthy = !f.no_health;
  if (!f.soak.empty()) {
    auto d = ParseDuration(f.soak);
    if (!d.ok()) return d.status().WithContext("--soak");
    o.env.gates.soak = *d;
  }
  return o;
}

// Saves the environment when the promotion order stays valid with it; kReasonBadOrder when not.
Status RunEnvAdd(const EnvAddOptions& o, const Deps& deps) {
  const deliver::Environment& e = o.env;
  GANTRY_RETURN_IF_ERROR(Writable(o.state));
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(o.state));
  std::erase_if(config.environments, [&](const deliver::Environment& x) { return x.name == e.name; });
  config.environments.push_back(e);
  if (auto order = deliver::PromotionOrder(config); !order.ok()) return Status(order.status()).set_reason(kReasonBadOrder);
  GANTRY_RETURN_IF_ERROR(SaveConfigObject(StateDir(o.state), "environment", e.name, deliver::ToObject(e)));
  fmt::print(deps.out, "environment {} saved\n", e.name);
  return OkStatus();
}

Status RunEnvList(const StateFlags& state, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(state));
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> order, deliver::PromotionOrder(config));
  std::vector<std::vector<std::string>> rows{{"ENVIRONMENT", "AFTER", "CLUSTERS", "GATES"}};
  for (const auto& name : order) {
    const deliver::Environment& e = *config.FindEnvironment(name);
    std::vector<std::string> clusters, gates;
    for (const auto* c : config.ClustersOf(e)) clusters.push_back(c->name);
    if (e.gates.healthy) gates.push_back("healthy");
    if (e.gates.approval) gates.push_back("approval");
    if (e.gates.soak.count() > 0) gates.push_back(fmt::format("soak {}s", e.gates.soak.count() / 1000));
    rows.push_back({e.name, e.after.empty() ? "-" : fmt::format("{}", fmt::join(e.after, ",")),
                    fmt::format("{}", fmt::join(clusters, ",")), fmt::format("{}", fmt::join(gates, ","))});
  }
  Table(deps.out, rows);
  return OkStatus();
}

Status RunEnvRemove(const RemoveOptions& o, const Deps& deps) {
  if (Status s = RemoveConfigObject(StateDir(o.state), "environment", o.name); !s.ok()) {
    return NotFoundError("no environment {}", o.name);
  }
  fmt::print(deps.out, "environment {} removed\n", o.name);
  return OkStatus();
}

}  // namespace

void AddClusterCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cluster = app.add_subcommand("cluster", "Clusters push mode deploys to");
  cluster->require_subcommand(1);

  auto a = std::make_shared<ClusterAddFlags>();
  auto* add = cluster->add_subcommand("add", "Add a cluster (its kubeconfig is copied, 0600, unless --reference)");
  AddStateFlags(add, a->state);
  add->add_option("NAME", a->name, "Cluster name")->required();
  add->add_option("--kubeconfig", a->kubeconfig, "Kubeconfig file")->required();
  add->add_option("--context", a->context, "Context in it (default: its current-context)");
  add->add_option("--env", a->env, "Environment the cluster belongs to")->required();
  add->add_option("--label", a->labels, "Label key=value (repeatable)");
  add->add_option("--allow-exec-plugin", a->allow_exec,
                  "Exec credential plugin its kubeconfig may run, by name (repeatable; docs/clusters.md)");
  add->add_option("--mode", a->mode, "push (deploy applies) or pull (an agent does; status reads it)")
      ->check(CLI::IsMember({"push", "pull"}));
  add->add_flag("--reference", a->reference, "Reference the kubeconfig file where it is instead of copying it");
  add->add_flag("--no-check", a->no_check, "Do not check that the cluster answers");
  add->callback([a, &deps, &exit_code] {
    auto options = ToOptions(*a);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    exit_code = Report(RunClusterAdd(*std::move(options), deps), deps.err);
  });

  auto ls = std::make_shared<StateFlags>();
  auto* list = cluster->add_subcommand("list", "List clusters");
  AddStateFlags(list, *ls);
  list->callback([ls, &deps, &exit_code] { exit_code = Report(RunClusterList(*ls, deps), deps.err); });

  auto rm = std::make_shared<RemoveOptions>();
  auto* remove = cluster->add_subcommand("remove", "Remove a cluster (and its copied kubeconfig); the ledger keeps its history");
  AddStateFlags(remove, rm->state);
  remove->add_option("NAME", rm->name, "Cluster name")->required();
  remove->callback([rm, &deps, &exit_code] { exit_code = Report(RunClusterRemove(*rm, deps), deps.err); });
}

void AddEnvCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* env = app.add_subcommand("env", "Environments: promotion order and gates");
  env->require_subcommand(1);

  auto a = std::make_shared<EnvAddFlags>();
  auto* add = env->add_subcommand("add", "Add or replace an environment");
  AddStateFlags(add, a->state);
  add->add_option("NAME", a->name, "Environment name")->required();
  add->add_option("--after", a->after, "Environment(s) this one is promoted from");
  add->add_option("--cluster", a->clusters, "Its clusters (default: those added with --env NAME)");
  add->add_flag("--approval", a->approval, "Require `gantry approve` before deploying here");
  add->add_option("--soak", a->soak, "Wait this long after it is healthy before the next environment (e.g. 10m)");
  add->add_flag("--no-health-gate", a->no_health, "Do not wait for health (apply only)");
  add->callback([a, &deps, &exit_code] {
    auto options = ToOptions(*a);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    Status s = RunEnvAdd(*options, deps);
    exit_code = s.reason() == kReasonBadOrder ? UsageError(s, deps.err) : Report(s, deps.err);
  });

  auto ls = std::make_shared<StateFlags>();
  auto* list = env->add_subcommand("list", "List environments in promotion order");
  AddStateFlags(list, *ls);
  list->callback([ls, &deps, &exit_code] { exit_code = Report(RunEnvList(*ls, deps), deps.err); });

  auto rm = std::make_shared<RemoveOptions>();
  auto* remove = env->add_subcommand("remove", "Remove an environment");
  AddStateFlags(remove, rm->state);
  remove->add_option("NAME", rm->name, "Environment name")->required();
  remove->callback([rm, &deps, &exit_code] { exit_code = Report(RunEnvRemove(*rm, deps), deps.err); });
}

}  // namespace gantry::cli
