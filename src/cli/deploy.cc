// gantry deploy APP --revision REV | --resume (--repo URL | --dir DIR) ..., gantry rollback APP --env ENV:
// push-mode deploys (deliver::Deployment, deliver::Rollback), recorded in the ledger.
// Exit codes: 0 every environment healthy; 1 a cluster failed; 2 usage; 3 bad configuration or
// unreachable ledger (or the server refused); 4 waiting for approval (docs/push-mode.md).
//
// With --server URL (or GANTRY_SERVER) they ask `gantry server` to do it (POST
// /api/v1/apps/APP/deploy | resume | rollback, authorized and audited there) and follow its events
// to the end (--no-wait: return once started). Without, they act locally with the caller's own
// ledger and kubeconfigs, as the local operator (an admin: cli/local_access.h), and leave one audit
// row in that ledger (source "cli"). --override-window --reason WHY passes the project's closed
// sync windows that allow manual syncs; the engine audits each window passed.
//
// gantry terminate APP [--server URL]: stops the deploy, resume or rollback the server runs for
// APP at its next step (POST /api/v1/apps/APP/terminate); a local deploy stops with SIGINT.

#include <signal.h>
#include <unistd.h>

#include <atomic>

#include <CLI/CLI.hpp>

#include "base/duration.h"
#include "base/percent.h"
#include "cli/deliver.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/local_access.h"
#include "cli/server_client.h"
#include "cli/source.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct SourceFlags {
  std::string repo, dir, cache_dir, git_username, ssh_key, ssh_known_hosts;
  bool allow_file_repo = false;
  std::vector<std::string> kustomize_remote_hosts;
};

void AddDeploySourceFlags(CLI::App* cmd, SourceFlags& s) {
  cmd->add_option("--repo", s.repo, "Config repository (Git URL)");
  cmd->add_option("--dir", s.dir, "Local config directory instead of --repo (no rollback to other revisions)");
  cmd->add_option("--cache-dir", s.cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", s.allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--kustomize-remote-host", s.kustomize_remote_hosts,
                  "Git host remote Kustomize bases may come from (with --repo; repeatable)");
  cmd->add_option("--git-username", s.git_username, "User for HTTPS Git; the password or token is read from GANTRY_GIT_PASSWORD");
  cmd->add_option("--ssh-key", s.ssh_key,
                  "Private key file for SSH Git; a passphrase is read from GANTRY_SSH_KEY_PASSPHRASE");
  cmd->add_option("--ssh-known-hosts", s.ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (default ~/.ssh/known_hosts)");
}

// The render function of --repo or --dir: InvalidArgument unless exactly one is given; a refused
// repository URL fails here, before any work.
Result<deliver::RenderFn> MakeRender(const SourceFlags& s, const std::string& revision) {
  if (s.repo.empty() == s.dir.empty()) return InvalidArgumentError("give exactly one of --repo URL and --dir DIR");
  if (!s.dir.empty()) {
    // A directory has one revision: the one named on the command line.
    auto dir_render = deliver::DirRenderFn(fs::absolute(s.dir));
    return deliver::RenderFn([dir_render, revision](std::string_view rev, const std::string& path,
                                                    const deliver::RenderTarget& target) -> Result<render::Rendered> {
      if (!revision.empty() && rev != revision)
        return FailedPreconditionError("--dir holds revision {}, not {}: rendering another revision needs --repo", revision, rev);
      return dir_render(rev, path, target);
    });
  }
  auto sources = std::make_shared<render::GitSources>(
      GitSourcesOptionsFor(s.cache_dir, s.repo, s.git_username, s.allow_file_repo, s.ssh_key, s.ssh_known_hosts));
  GANTRY_RETURN_IF_ERROR(sources->Open(s.repo).status());
  render::Options options;
  options.kustomize.remote_hosts = s.kustomize_remote_hosts;  // fetched through `sources`
  return deliver::GitRenderFn(std::move(sources), s.repo, std::move(options));
}

std::atomic<deliver::Deployment*> g_deployment{nullptr};

void TerminateDeployment(int) {
  if (deliver::Deployment* d = g_deployment.load()) d->Terminate();
}

deliver::ProgressFn Progress(std::FILE* out) {
  bool tty = ::isatty(::fileno(out));
  return [tty, out](std::string_view line) {
    fmt::print(out, "{}{}\n", tty ? "\033[1m==>\033[0m " : "==> ", line);
    std::fflush(out);
  };
}

void PrintTargets(std::FILE* out, const std::vector<store::Target>& targets) {
  std::vector<std::vector<std::string>> rows{{"ENVIRONMENT", "CLUSTER", "STATE", "MESSAGE"}};
  for (const auto& t : targets) rows.push_back({t.env, t.cluster, std::string(store::Name(t.state)), t.message});
  fmt::print(out, "\n");
  Table(out, rows);
}

deliver::ConnectFn ConnectFn(const Deps& deps) {
  return [&deps](const deliver::Cluster& c) { return deps.connect_cluster(c, {}); };
}

// --server, --ca-file and --no-wait: the server mode of deploy and rollback.
struct RemoteFlags {
  ServerClient client{.server = ""};
  bool no_wait = false;
};

void AddRemoteFlags(CLI::App* cmd, RemoteFlags& r) {
  cmd->add_option("--server", r.client.server,
                  "Ask this Gantry server to do it (authorized and audited there) instead of acting locally")
      ->envname("GANTRY_SERVER");
  cmd->add_option("--ca-file", r.client.ca_file, "PEM CA bundle for an https --server")->envname("GANTRY_CA_FILE");
  cmd->add_flag("--no-wait", r.no_wait, "With --server: return once the server started it");
}

// InvalidArgument naming a local-only flag given with --server.
Status LocalOnly(const SourceFlags& s, const StateFlags&) {
  if (!s.repo.empty() || !s.dir.empty()) {
    return InvalidArgumentError("--repo and --dir are for local deploys: with --server the server renders its --deploy-repo");
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// deploy

struct DeployFlags {
  StateFlags state;
  SourceFlags source;
  deliver::DeployOptions options;
  std::string timeout = "5m";
  bool resume = false;
  std::vector<std::string> digests;
  RemoteFlags remote;
  WindowFlags window;
};

// Deploy (or --resume) through the server.
Status RunRemoteDeploy(const DeployFlags& f, const Deps& deps) {
  value::Value body = value::Value::Map();
  if (!f.options.project.empty()) body.Set("project", f.options.project);
  if (!f.resume) {
    body.Set("revision", f.options.revision);
    if (!f.options.through.empty()) body.Set("through", f.options.through);
    if (!f.options.only_env.empty()) body.Set("environment", f.options.only_env);
    if (f.options.prune) body.Set("prune", true);
  }
  AddOverride(body, f.window);
  return RunServerAction(f.remote.client, f.options.app, f.resume ? "resume" : "deploy", value::ToJson(body),
                         !f.remote.no_wait, deps.out);
}

struct DeployOptions {
  StateFlags state;
  deliver::RenderFn render;
  deliver::DeployOptions deploy;
  bool resume = false;
};

// flags → options: InvalidArgument for a missing --revision, a bad --timeout or --image-digest,
// and a source MakeRender refuses.
Result<DeployOptions> ToOptions(const DeployFlags& f) {
  DeployOptions o{.state = f.state, .deploy = f.options, .resume = f.resume};
  if (!f.resume && f.options.revision.empty()) return InvalidArgumentError("--revision is required (or --resume)");
  auto timeout = ParseDuration(f.timeout);
  if (!timeout.ok()) return timeout.status().WithContext("--timeout");
  o.deploy.health_timeout = *timeout;
  if (o.deploy.started_by == "cli") o.deploy.started_by = User("cli");
  GANTRY_ASSIGN_OR_RETURN(o.deploy.window_override, WindowOverride(f.window));
  for (const auto& d : f.digests) {
    size_t eq = d.find('=');
    if (eq == std::string::npos) return InvalidArgumentError("--image-digest {:?}: expected IMAGE=sha256:...", d);
    o.deploy.image_digests[d.substr(0, eq)] = d.substr(eq + 1);
  }
  GANTRY_ASSIGN_OR_RETURN(o.render, MakeRender(f.source, f.options.revision));
  return o;
}

// RunDeploy's work, once authorized.
Status DeployAs(const DeployOptions& o, const deliver::Config& config, store::Store& store, const Deps& deps) {
  auto d = o.resume ? deliver::Deployment::Resume(store, config, o.render, ConnectFn(deps), o.deploy, Progress(deps.out))
                    : deliver::Deployment::Start(store, config, o.render, ConnectFn(deps), o.deploy, Progress(deps.out));
  if (!d.ok()) return d.status();
  g_deployment.store(d->get());
  struct sigaction sa {};
  sa.sa_handler = TerminateDeployment;
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const deliver::DeployState& s = (*d)->Run();
  g_deployment.store(nullptr);
  PrintTargets(deps.out, s.targets);
  fmt::print(deps.out, "\nrelease {}: {}\n", s.release_id, s.message);
  if (s.phase == deliver::Phase::kSucceeded) return OkStatus();
  Status outcome = FailedPreconditionError("release {} of {}: {}", s.release_id, o.deploy.app, deliver::Name(s.phase));
  return outcome.set_reason(s.phase == deliver::Phase::kWaitingApproval ? kReasonBlocked : kReasonFailed);
}

// Runs the deployment to its end (or until SIGINT/SIGTERM: Terminate, for --resume); the targets
// and the outcome are printed. kReasonFailed when a cluster failed, kReasonBlocked when waiting
// for approval.
Status RunDeploy(DeployOptions o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(o.state));
  GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(o.state, deps));
  o.deploy.clock = deps.clock;
  const LocalAction action{.action = o.resume ? "apps.resume" : "apps.deploy",
                           .permission = authz::Permission::kAppsDeploy,
                           .project = o.deploy.project.empty() ? "default" : o.deploy.project,
                           .object = "app " + o.deploy.app,
                           .details = o.deploy.window_override.empty() ? "" : "window override requested: " + o.deploy.window_override};
  return RunAudited(*store, action, [&](LocalAction&) { return DeployAs(o, config, *store, deps); });
}

// ---------------------------------------------------------------------------------------------
// rollback

struct RollbackFlags {
  StateFlags state;
  SourceFlags source;
  deliver::RollbackOptions options;
  std::string timeout = "5m";
  RemoteFlags remote;
  WindowFlags window;
};

// Rollback through the server.
Status RunRemoteRollback(const RollbackFlags& f, const Deps& deps) {
  value::Value body = value::Value::Map();
  body.Set("environment", f.options.env);
  if (f.options.to_release != 0) body.Set("to_release", f.options.to_release);
  if (!f.options.project.empty()) body.Set("project", f.options.project);
  AddOverride(body, f.window);
  return RunServerAction(f.remote.client, f.options.app, "rollback", value::ToJson(body), !f.remote.no_wait, deps.out);
}

struct RollbackOptions {
  StateFlags state;
  deliver::RenderFn render;
  deliver::RollbackOptions rollback;
};

// flags → options: InvalidArgument for a bad --timeout and a source MakeRender refuses.
Result<RollbackOptions> ToOptions(const RollbackFlags& f) {
  RollbackOptions o{.state = f.state, .rollback = f.options};
  auto timeout = ParseDuration(f.timeout);
  if (!timeout.ok()) return timeout.status().WithContext("--timeout");
  o.rollback.health_timeout = *timeout;
  o.rollback.started_by = User(o.rollback.started_by);
  GANTRY_ASSIGN_OR_RETURN(o.rollback.window_override, WindowOverride(f.window));
  GANTRY_ASSIGN_OR_RETURN(o.render, MakeRender(f.source, ""));
  return o;
}

// RunRollback's work, once authorized.
Status RollbackAs(const RollbackOptions& o, const deliver::Config& config, store::Store& store, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::RollbackResult result,
                          deliver::Rollback(store, config, o.render, ConnectFn(deps), o.rollback, Progress(deps.out)));
  PrintTargets(deps.out, result.targets);
  fmt::print(deps.out, "\n{}\n", result.message);
  if (!result.ok) {
    return FailedPreconditionError("rollback of {} in {} failed", o.rollback.app, o.rollback.env).set_reason(kReasonFailed);
  }
  return OkStatus();
}

// Rolls back and prints the targets; kReasonFailed when a cluster did not become healthy.
Status RunRollback(RollbackOptions o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(deliver::Config config, LoadState(o.state));
  GANTRY_ASSIGN_OR_RETURN(auto store, OpenStore(o.state, deps));
  o.rollback.clock = deps.clock;
  std::string details = "environment " + o.rollback.env;
  if (!o.rollback.window_override.empty()) details += "; window override requested: " + o.rollback.window_override;
  const LocalAction action{.action = "apps.rollback",
                           .permission = authz::Permission::kAppsRollback,
                           .project = o.rollback.project.empty() ? "default" : o.rollback.project,
                           .object = "app " + o.rollback.app,
                           .details = details};
  return RunAudited(*store, action, [&](LocalAction&) { return RollbackAs(o, config, *store, deps); });
}

// Asks the server to stop the app's running deploy, resume or rollback, and its pull targets'
// running syncs (POST .../terminate).
Status RunTerminate(const ServerClient& client, const std::string& app, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(std::string answer,
                          CallApi(client, "POST", fmt::format("/api/v1/apps/{}/terminate", PercentEncode(app))));
  GANTRY_ASSIGN_OR_RETURN(value::Value v, value::ParseJson(answer, "the server's answer"));
  std::string stopping = value::StringAt(&v, {"stopping"});
  if (stopping != "sync") {
    fmt::print(deps.out, "stopping the {} of {} at its next step (gantry deploy {} --resume continues a deploy)\n",
               stopping, app, app);
  }
  const value::Value* pulls = v.Get("pull_targets");
  for (size_t i = 0; pulls != nullptr && i < pulls->size(); ++i) {
    fmt::print(deps.out, "asked the agent of cluster {} to stop the sync of {}\n", value::StringAt(pulls, {i, "cluster"}), app);
  }
  return OkStatus();
}

}  // namespace

void AddDeployCommands(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<DeployFlags>();
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
  cmd->add_option("--project", f->options.project,
                  "Project (kind: Project in the configuration) that bounds what it may deploy (default: default)");
  cmd->add_option("--image-digest", f->digests, "Recorded in the release: IMAGE=sha256:... (repeatable)");
  cmd->add_option("--started-by", f->options.started_by, "Who or what started it (default: $USER)");
  cmd->add_flag("--resume", f->resume, "Continue the newest unfinished release of APP");
  AddWindowFlags(cmd, f->window);
  AddRemoteFlags(cmd, f->remote);
  cmd->callback([f, &deps, &exit_code] {
    if (!f->remote.client.server.empty()) {
      Status usage = LocalOnly(f->source, f->state);
      if (usage.ok() && !f->resume && f->options.revision.empty()) usage = InvalidArgumentError("--revision is required (or --resume)");
      if (usage.ok()) usage = WindowOverride(f->window).status();
      if (!usage.ok()) return void(exit_code = UsageError(usage, deps.err));
      return void(exit_code = Report(RunRemoteDeploy(*f, deps), deps.err));
    }
    auto options = ToOptions(*f);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    exit_code = Report(RunDeploy(*std::move(options), deps), deps.err);
  });

  auto r = std::make_shared<RollbackFlags>();
  auto* rb = app.add_subcommand("rollback", "Re-deploy the previous (or a given) release to an environment");
  AddStateFlags(rb, r->state);
  AddDeploySourceFlags(rb, r->source);
  rb->add_option("APP", r->options.app, "Application name")->required();
  rb->add_option("--env", r->options.env, "Environment to roll back")->required();
  rb->add_option("--to", r->options.to_release, "Release to go back to (default: the one before the current)");
  rb->add_option("--timeout", r->timeout, "Health wait per cluster (default 5m)");
  rb->add_flag("--prune", r->options.prune, "Delete objects the newer release added");
  rb->add_option("--project", r->options.project, "Project whose roles and bounds apply (default: default)");
  AddWindowFlags(rb, r->window);
  AddRemoteFlags(rb, r->remote);
  rb->callback([r, &deps, &exit_code] {
    if (!r->remote.client.server.empty()) {
      Status usage = LocalOnly(r->source, r->state);
      if (usage.ok()) usage = WindowOverride(r->window).status();
      if (!usage.ok()) return void(exit_code = UsageError(usage, deps.err));
      return void(exit_code = Report(RunRemoteRollback(*r, deps), deps.err));
    }
    auto options = ToOptions(*r);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    exit_code = Report(RunRollback(*std::move(options), deps), deps.err);
  });

  auto t = std::make_shared<std::pair<ServerClient, std::string>>();
  auto* tm = app.add_subcommand("terminate", "Stop the deploy, resume or rollback a Gantry server runs for an app, "
                                             "and its pull targets' running syncs");
  tm->add_option("APP", t->second, "Application name")->required();
  AddServerClientFlags(tm, t->first);
  tm->callback([t, &deps, &exit_code] { exit_code = Report(RunTerminate(t->first, t->second, deps), deps.err); });
}

}  // namespace gantry::cli
