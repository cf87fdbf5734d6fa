// The pull agent's commands:
//   gantry install [--print] [--namespace gantry-system] [--image IMAGE] [--replicas N]
//   gantry agent [--apps DIR] [--interval 60s] [--workers 4] [--listen :8080] ...
//   gantry app list | sync NAME | refresh NAME

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "api/status.h"
#include "base/clock.h"
#include "base/duration.h"
#include "base/log.h"
#include "cli/cluster.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/state.h"
#include "git/git.h"

namespace gantry::cli {
namespace {

// ---------------------------------------------------------------------------------------------
// install

struct InstallOptions {
  ClusterFlags cluster;
  bool print = false;
  std::string ns = "gantry-system";
  std::string image = "ghcr.io/gantry-dev/gantry:latest";
  std::vector<std::string> node_selector;  // KEY=VALUE
  agent::InstallPlacement placement;
};

// Prints the manifests (--print) or applies them, naming each; a refused apply is kReasonFailed.
Status RunInstall(const InstallOptions& o, const Deps& deps) {
  agent::InstallPlacement placement = o.placement;
  GANTRY_ASSIGN_OR_RETURN(placement.node_selector, ParseNodeSelector(o.node_selector));
  auto manifests = agent::InstallManifests(o.ns, o.image, placement);
  if (o.print) {
    for (const auto& m : manifests) fmt::print(deps.out, "---\n{}", value::ToYaml(m));
    return OkStatus();
  }
  kube::RestConfig config;
  GANTRY_ASSIGN_OR_RETURN(auto client, deps.connect(o.cluster, &config));
  for (const auto& m : manifests) {
    // A custom resource (the default Project) right after its CRD: the server serves its kind once
    // the CRD is established, a moment later.
    kube::ObjectRef ref = kube::RefOf(m);
    for (int i = 0; i < 60 && client->Resolve(ref.api_version, ref.kind).status().code() == Code::kNotFound; ++i) {
      client->InvalidateDiscovery();
      deps.clock->SleepFor(std::chrono::milliseconds(500));
    }
    auto r = client->Apply(m, {.field_manager = "gantry-install", .force = true});
    if (!r.ok()) return Status(r.status()).set_reason(kReasonFailed);
    fmt::print(deps.out, "applied {}\n", kube::RefOf(m).ToString());
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// agent

struct AgentFlags {
  ClusterFlags cluster;
  agent::AgentOptions options{.metrics_listen = "127.0.0.1:9090"};
  std::string interval = "60s";
  std::string lease_duration = "15s";
  std::string kustomize, helm, jsonnet, sops;  // "" : render::FindRenderer's / FindSops's search
  std::string sops_age_key_file;  // "" : SOPS-encrypted objects are errors
  std::vector<std::string> kustomize_remote_hosts;
  bool no_leader_election = false;
  bool no_render_sandbox = false;
  std::vector<std::string> git_repo_secrets;  // directories (mounted repository Secrets)
  std::string ssh_known_hosts;
  std::vector<std::string> registry_credentials_env;  // variables holding host=user:password
};

struct AgentCommandOptions {
  ClusterFlags cluster;
  agent::AgentOptions agent;  // namespace_ and lease_namespace are filled in by the run
  render::Options render;
};

// Usage errors: malformed durations, an --interval under 1s, a secret's variable that is not set
// or does not hold host=user:password, a --git-repo-secret directory git::ReadRepositorySecret
// refuses, a --registry-credentials-env variable that is not set or malformed.
Result<AgentCommandOptions> Validate(const AgentFlags& f) {
  AgentCommandOptions o{.cluster = f.cluster, .agent = f.options};
  auto interval = ParseDuration(f.interval);
  if (!interval.ok()) return InvalidArgumentError("--interval: {}", interval.status().message());
  if (*interval < std::chrono::seconds(1)) return InvalidArgumentError("--interval {}: must be at least 1s", f.interval);
  auto lease = ParseDuration(f.lease_duration);
  if (!lease.ok()) return InvalidArgumentError("--lease-duration: {}", lease.status().message());
  o.agent.interval = *interval;
  o.agent.lease_duration = std::chrono::duration_cast<std::chrono::seconds>(*lease);
  if (f.no_leader_election) o.agent.lease_name.clear();
  // Secrets come from the environment, never from flags (they would show in ps).
  if (!o.agent.webhook_secret.empty()) {
    const char* v = std::getenv(o.agent.webhook_secret.c_str());
    o.agent.webhook_secret = v ? v : "";
  }
  o.agent.git_credentials.clear();
  for (const auto& env : f.options.git_credentials) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr) return InvalidArgumentError("--git-credentials-env {}: the variable is not set", env);
    GANTRY_RETURN_IF_ERROR(git::ParseCredentials(v).status().WithContext("--git-credentials-env " + env));
    o.agent.git_credentials.emplace_back(v);
  }
  for (const auto& dir : f.git_repo_secrets) {
    auto c = git::ReadRepositorySecret(dir, f.ssh_known_hosts);
    if (!c.ok()) return c.status().WithContext("--git-repo-secret");
    o.agent.git_repo_credentials.push_back(*std::move(c));
  }
  for (const auto& env : f.registry_credentials_env) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr) return InvalidArgumentError("--registry-credentials-env {}: the variable is not set", env);
    auto c = git::ParseCredentials(v);
    if (!c.ok()) return c.status().WithContext("--registry-credentials-env " + env);
    o.agent.registry.credentials.push_back({.host = c->host, .username = c->username, .password = c->password});
  }
  o.agent.cache_dir = CacheDir(o.agent.cache_dir).string();
  o.render.kustomize_binary = f.kustomize;
  o.render.helm_binary = f.helm;
  o.render.jsonnet_binary = f.jsonnet;
  o.render.sops.binary = f.sops;
  if (!f.sops_age_key_file.empty()) {
    auto keys = render::ReadAgeKeyFile(f.sops_age_key_file);
    if (!keys.ok()) return keys.status().WithContext("--sops-age-key-file");
    o.render.sops.age_keys = *std::move(keys);
  }
  o.render.kustomize.remote_hosts = f.kustomize_remote_hosts;
  o.render.sandbox = f.no_render_sandbox ? render::Sandbox::kNone : render::Sandbox::kRequire;
  o.agent.render_sandbox = !f.no_render_sandbox;
  return o;
}

agent::Agent* g_agent = nullptr;

void StopAgent(int) {
  if (g_agent) g_agent->Stop();
}

// Runs the agent over deps.connect's client until SIGINT or SIGTERM.
Status RunAgent(const AgentCommandOptions& o, const Deps& deps) {
  kube::RestConfig config;
  GANTRY_ASSIGN_OR_RETURN(auto client, deps.connect(o.cluster, &config));
  agent::AgentOptions options = o.agent;
  options.namespace_ = o.cluster.namespace_;
  options.lease_namespace = config.namespace_;
  options.reconcile.cluster_server = config.server;
  GANTRY_ASSIGN_OR_RETURN(auto source, agent::NewSource(options, o.render, client.get()));
  GANTRY_ASSIGN_OR_RETURN(auto a, agent::NewAgent(*client, std::move(options), std::move(source)));
  g_agent = a.get();
  ::signal(SIGINT, StopAgent);
  ::signal(SIGTERM, StopAgent);
  Status s = a->Run();
  g_agent = nullptr;
  return s;
}

// ---------------------------------------------------------------------------------------------
// app

struct AppOptions {
  ClusterFlags cluster;
  std::string name;
};

// A request is an annotation with a fresh value on the Application; the agent acts when it sees a
// new one. NotFound (no such Application) is kReasonFailed.
Status RunAppRequest(const AppOptions& o, const Deps& deps, std::string_view annotation, std::string_view what) {
  kube::RestConfig config;
  GANTRY_ASSIGN_OR_RETURN(auto client, deps.connect(o.cluster, &config));
  value::Value patch = value::Value::Map();
  patch.Set("apiVersion", api::kApiVersion);
  patch.Set("kind", api::kKind);
  value::Value meta = value::Value::Map();
  meta.Set("name", o.name);
  meta.Set("namespace", config.namespace_);
  value::Value ann = value::Value::Map();
  std::string now = Rfc3339(deps.clock->WallNow());
  if (annotation == "gantry.dev/prune-approved") {
    // The approval is a time (prunes pending since before it go ahead); it comes with a sync request
    // so that they happen now.
    ann.Set(annotation, now);
    ann.Set("gantry.dev/sync-requested", now + "/" + std::to_string(::getpid()));
  } else {
    ann.Set(annotation, now + "/" + std::to_string(::getpid()));
  }
  meta.Set("annotations", ann);
  patch.Set("metadata", meta);
  auto existing = client->Get(kube::RefOf(patch));
  if (!existing.ok()) {
    Status s = existing.status();
    if (s.code() == Code::kNotFound) s.set_reason(kReasonFailed);
    return s;
  }
  GANTRY_RETURN_IF_ERROR(client->Apply(patch, {.field_manager = "gantry-app-request", .force = true}));
  fmt::print(deps.out, "{} requested for Application {}/{}\n", what, config.namespace_, o.name);
  return OkStatus();
}

Status RunAppList(const AppOptions& o, const Deps& deps) {
  kube::RestConfig config;
  GANTRY_ASSIGN_OR_RETURN(auto client, deps.connect(o.cluster, &config));
  GANTRY_ASSIGN_OR_RETURN(kube::ObjectList apps, client->List(api::kApiVersion, api::kKind, config.namespace_));
  fmt::print(deps.out, "{:<24} {:<10} {:<12} {:<14} {}\n", "NAME", "SYNC", "HEALTH", "REVISION", "MESSAGE");
  for (const auto& a : apps.items) {
    api::ApplicationStatus st = api::ParseStatus(a.Get("status"));
    std::string message;
    for (const api::Condition& c : st.conditions) {
      if (c.status && c.type != api::kConditionReady) message = c.message;
    }
    fmt::print(deps.out, "{:<24} {:<10} {:<12} {:<14} {}\n", value::StringAt(&a, {"metadata", "name"}), st.sync_status,
               st.health ? health::Name(*st.health) : "", st.sync_revision.substr(0, 12), message);
  }
  return OkStatus();
}

}  // namespace

void AddInstallCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto o = std::make_shared<InstallOptions>();
  auto* cmd = app.add_subcommand("install", "Install the Application CRD and the pull agent (RBAC, Deployment) in a cluster");
  AddClusterFlags(cmd, o->cluster);
  cmd->add_flag("--print", o->print, "Print the manifests instead of applying them");
  cmd->add_option("--agent-namespace", o->ns, "Namespace of the agent (default gantry-system)");
  cmd->add_option("--image", o->image, "Image of the agent");
  cmd->add_option("--replicas", o->placement.replicas,
                  "Sharded agent replicas, each reconciling its share of the Applications (default: 2 replicas "
                  "with leader election, one reconciling)")
      ->check(CLI::Range(1, 100));
  cmd->add_option("--node-selector", o->node_selector, "KEY=VALUE label the agent's nodes must carry; repeatable");
  cmd->add_option("--tolerate", o->placement.tolerate_taints,
                  "A taint key the agent's Pods tolerate (operator Exists, any effect); repeatable");
  cmd->add_option("--agent-arg", o->placement.extra_args,
                  "An argument added to the agent's command line (e.g. --interval=30s); repeatable");
  cmd->callback([o, &deps, &exit_code] { exit_code = Report(RunInstall(*o, deps), deps.err); });
}

void AddAgentCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<AgentFlags>();
  auto* cmd = app.add_subcommand("agent", "Run the pull agent: keep this cluster in sync with its Applications");
  AddClusterFlags(cmd, f->cluster, /*in_cluster_flag=*/true);
  cmd->add_option("--apps", f->options.apps_dir, "Read Applications from this directory instead of the cluster");
  cmd->add_option("--cache-dir", f->options.cache_dir, "Git mirrors and caches")->envname("GANTRY_CACHE");
  cmd->add_option("--interval", f->interval, "Refresh from Git this often (default 60s, ±10% jitter)");
  cmd->add_option("--workers", f->options.workers, "Applications reconciled at once")->check(CLI::Range(1, 256));
  cmd->add_option("--listen", f->options.listen, "Address for webhooks and /healthz, e.g. :8080");
  cmd->add_option("--tls-cert", f->options.tls_cert_file, "PEM certificate (chain): --listen serves HTTPS; needs --tls-key")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", f->options.tls_key_file, "PEM private key of --tls-cert (unencrypted)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--metrics-listen", f->options.metrics_listen,
                  "Address for /metrics, unauthenticated (default 127.0.0.1:9090; \"\" : off)");
  cmd->add_option("--webhook-secret-env", f->options.webhook_secret,
                  "Environment variable holding the webhook secret");
  cmd->add_option("--app-namespaces", f->options.app_namespaces,
                  "Further namespaces (globs, comma-separated) whose Applications it serves; their projects must "
                  "list them in sourceNamespaces")
      ->delimiter(',');
  cmd->add_option("--environment", f->options.reconcile.environment,
                  "This cluster's environment (dev, prod...), for the projects' sync windows");
  cmd->add_option("--lease-name", f->options.lease_name, "Lease for leader election (default gantry-agent)");
  cmd->add_option("--lease-duration", f->lease_duration, "Lease duration (default 15s)");
  cmd->add_flag("--no-leader-election", f->no_leader_election, "Run without a Lease (a single replica)");
  cmd->add_flag("--shard", f->options.shard,
                "Share the Applications with the other replicas (member Leases LEASE-NAME-member-IDENTITY) "
                "instead of electing a leader");
  cmd->add_option("--identity", f->options.identity, "Identity in the Lease (default hostname-pid)");
  cmd->add_flag("--allow-file-repos", f->options.allow_file_repos, "Accept file:// repository URLs");
  cmd->add_option("--git-credentials-env", f->options.git_credentials,
                  "Environment variable holding host=user:password for HTTPS Git (repeatable)");
  cmd->add_option("--git-repo-secret", f->git_repo_secrets,
                  "Directory of a mounted repository Secret in Argo CD's shape (url, and sshPrivateKey or "
                  "username/password), bound to its url's host (repeatable)");
  cmd->add_option("--helm-repo-ca-file", f->options.chart_ca_file,
                  "PEM CA bundle Helm chart repositories' TLS certificates are checked against (default: the "
                  "system's)");
  cmd->add_option("--ssh-known-hosts", f->ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (required for SSH repository secrets)");
  cmd->add_option("--registry-credentials-env", f->registry_credentials_env,
                  "Environment variable holding host=user:password for a registry of oci:// sources, sent only to "
                  "that host (repeatable)");
  cmd->add_option("--registry-config", f->options.registry.docker_config,
                  "Docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or "
                  "~/.docker/config.json; \"none\" to read none)");
  cmd->add_option("--registry-ca-file", f->options.registry.ca_file, "PEM CA bundle for registries");
  cmd->add_option("--insecure-registry", f->options.registry.insecure_http_hosts,
                  "Registry host[:port] reached over plain HTTP (repeatable; loopback hosts fall back to HTTP "
                  "by themselves)");
  cmd->add_option("--registry-connect-to", f->options.registry.connect_to,
                  "REGISTRY:PORT=ADDRESS:PORT: reach that registry at another address, its name unchanged (an agent "
                  "in a Pod reaching a registry named 127.0.0.1:PORT on its node; repeatable)");
  cmd->add_option("--kustomize-binary", f->kustomize,
                  "kustomize to run (default: $GANTRY_KUSTOMIZE, else PATH, else the tool cache)");
  cmd->add_option("--helm-binary", f->helm, "helm to run (default: $GANTRY_HELM, else PATH, else the tool cache)");
  cmd->add_option("--jsonnet-binary", f->jsonnet,
                  "jsonnet to run (default: $GANTRY_JSONNET, else PATH, else the tool cache)");
  cmd->add_option("--sops-binary", f->sops, "sops to run (default: $GANTRY_SOPS, else PATH, else the tool cache)");
  cmd->add_option("--sops-age-key-file", f->sops_age_key_file,
                  "age key file (e.g. a mounted Secret's key) to decrypt SOPS-encrypted objects with")
      ->envname("GANTRY_SOPS_AGE_KEY_FILE");
  cmd->add_option("--kustomize-remote-host", f->kustomize_remote_hosts,
                  "Git host remote Kustomize bases may come from, e.g. github.com (repeatable); the agent fetches "
                  "them through its own mirrors and credentials, never kustomize");
  cmd->add_flag("--no-render-sandbox", f->no_render_sandbox,
                "Run kustomize and helm without the bubblewrap sandbox (where user namespaces are not allowed, "
                "as in most Pods); logged, and exported as gantry_agent_render_sandbox 0");
  cmd->callback([f, &deps, &exit_code] {
    auto options = Validate(*f);
    exit_code = options.ok() ? Report(RunAgent(*options, deps), deps.err) : UsageError(options.status(), deps.err);
  });
}

void AddAppCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto o = std::make_shared<AppOptions>();
  auto* cmd = app.add_subcommand("app", "Applications of the pull agent: list, sync, refresh, terminate, confirm-prune");
  cmd->require_subcommand(1);
  AddClusterFlags(cmd, o->cluster);

  auto* sync = cmd->add_subcommand("sync", "Ask the agent to sync an Application now");
  sync->add_option("name", o->name, "Application")->required();
  sync->callback([o, &deps, &exit_code] {
    exit_code = Report(RunAppRequest(*o, deps, "gantry.dev/sync-requested", "sync"), deps.err);
  });
  auto* refresh = cmd->add_subcommand("refresh", "Ask the agent to fetch from Git and compare now");
  refresh->add_option("name", o->name, "Application")->required();
  refresh->callback([o, &deps, &exit_code] {
    exit_code = Report(RunAppRequest(*o, deps, "gantry.dev/refresh-requested", "refresh"), deps.err);
  });
  auto* terminate = cmd->add_subcommand("terminate", "Ask the agent to stop the Application's running sync");
  terminate->add_option("name", o->name, "Application")->required();
  terminate->callback([o, &deps, &exit_code] {
    exit_code = Report(RunAppRequest(*o, deps, api::kTerminateRequested, "terminate"), deps.err);
  });
  auto* confirm = cmd->add_subcommand(
      "confirm-prune", "Approve the prunes waiting for confirmation (sync option Prune=confirm) and sync now");
  confirm->add_option("name", o->name, "Application")->required();
  confirm->callback([o, &deps, &exit_code] {
    exit_code = Report(RunAppRequest(*o, deps, "gantry.dev/prune-approved", "prune confirmation and sync"), deps.err);
  });
  auto* list = cmd->add_subcommand("list", "List Applications with their sync and health");
  list->callback([o, &deps, &exit_code] { exit_code = Report(RunAppList(*o, deps), deps.err); });
}

}  // namespace gantry::cli
