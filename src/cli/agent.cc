// The pull agent's commands:
//   gantry install [--print] [--namespace gantry-system] [--image IMAGE]
//   gantry agent [--apps DIR] [--interval 60s] [--workers 4] [--listen :8080] ...
//   gantry app list | sync NAME | refresh NAME

#include <signal.h>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "api/status.h"
#include "base/clock.h"
#include "base/duration.h"
#include "base/log.h"
#include "cli/cluster.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/state.h"

namespace gantry::cli {
namespace {

agent::Agent* g_running = nullptr;

void OnSignal(int) {
  if (g_running) g_running->Stop();
}

}  // namespace

void AddInstallCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  struct Flags {
    ClusterFlags cluster;
    bool print = false;
    std::string ns = "gantry-system";
    std::string image = "ghcr.io/gantry-dev/gantry:latest";
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("install", "Install the Application CRD and the pull agent (RBAC, Deployment) in a cluster");
  AddClusterFlags(cmd, f->cluster);
  cmd->add_flag("--print", f->print, "Print the manifests instead of applying them");
  cmd->add_option("--agent-namespace", f->ns, "Namespace of the agent (default gantry-system)");
  cmd->add_option("--image", f->image, "Image of the agent");
  cmd->callback([f, &exit_code] {
    auto manifests = agent::InstallManifests(f->ns, f->image);
    if (f->print) {
      for (const auto& m : manifests) fmt::print("---\n{}", value::ToYaml(m));
      exit_code = 0;
      return;
    }
    kube::RestConfig config;
    auto client = Connect(f->cluster, &config);
    if (!client.ok()) {
      fmt::print(stderr, "error: {}\n", client.status().message());
      exit_code = 3;
      return;
    }
    for (const auto& m : manifests) {
      auto r = (*client)->Apply(m, {.field_manager = "gantry-install", .force = true});
      if (!r.ok()) {
        fmt::print(stderr, "error: {}\n", r.status().message());
        exit_code = 1;
        return;
      }
      fmt::print("applied {}\n", kube::RefOf(m).ToString());
    }
    exit_code = 0;
  });
}

void AddAgentCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  struct Flags {
    ClusterFlags cluster;
    agent::AgentOptions options{.metrics_listen = "127.0.0.1:9090"};
    std::string interval = "60s";
    std::string lease_duration = "15s";
    std::string kustomize = "kustomize", helm = "helm";
    bool no_leader_election = false;
    bool no_render_sandbox = false;
  };
  auto f = std::make_shared<Flags>();
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
  cmd->add_option("--lease-name", f->options.lease_name, "Lease for leader election (default gantry-agent)");
  cmd->add_option("--lease-duration", f->lease_duration, "Lease duration (default 15s)");
  cmd->add_flag("--no-leader-election", f->no_leader_election, "Run without a Lease (a single replica)");
  cmd->add_option("--identity", f->options.identity, "Identity in the Lease (default hostname-pid)");
  cmd->add_flag("--allow-file-repos", f->options.allow_file_repos, "Accept file:// repository URLs");
  cmd->add_option("--git-credentials-env", f->options.git_credentials,
                  "Environment variable holding host=user:password for HTTPS Git (repeatable)");
  cmd->add_option("--kustomize-binary", f->kustomize, "kustomize to run")->envname("GANTRY_KUSTOMIZE");
  cmd->add_option("--helm-binary", f->helm, "helm to run")->envname("GANTRY_HELM");
  cmd->add_flag("--no-render-sandbox", f->no_render_sandbox,
                "Run kustomize and helm without the bubblewrap sandbox (where user namespaces are not allowed, "
                "as in most Pods); logged, and exported as gantry_agent_render_sandbox 0");
  cmd->callback([f, &exit_code] {
    agent::AgentOptions o = f->options;
    auto interval = ParseDuration(f->interval);
    auto lease = ParseDuration(f->lease_duration);
    for (const auto& [flag, d] : {std::pair{"--interval", &interval}, std::pair{"--lease-duration", &lease}}) {
      if (!d->ok()) {
        fmt::print(stderr, "error: {}: {}\n", flag, d->status().message());
        exit_code = 2;
        return;
      }
    }
    o.interval = *interval;
    o.lease_duration = std::chrono::duration_cast<std::chrono::seconds>(*lease);
    if (f->no_leader_election) o.lease_name.clear();
    // Secrets come from the environment, never from flags (they would show in ps).
    if (!o.webhook_secret.empty()) {
      const char* v = std::getenv(o.webhook_secret.c_str());
      o.webhook_secret = v ? v : "";
    }
    std::vector<std::string> creds;
    for (const auto& env : o.git_credentials) {
      const char* v = std::getenv(env.c_str());
      if (v == nullptr) {
        fmt::print(stderr, "error: --git-credentials-env {}: the variable is not set\n", env);
        exit_code = 2;
        return;
      }
      creds.emplace_back(v);
    }
    o.git_credentials = creds;
    o.cache_dir = CacheDir(o.cache_dir).string();
    kube::RestConfig config;
    auto client = Connect(f->cluster, &config);
    if (!client.ok()) {
      fmt::print(stderr, "error: {}\n", client.status().message());
      exit_code = 3;
      return;
    }
    o.namespace_ = f->cluster.namespace_;
    o.lease_namespace = config.namespace_;
    render::Options ro;
    ro.kustomize_binary = f->kustomize;
    ro.helm_binary = f->helm;
    ro.sandbox = f->no_render_sandbox ? render::Sandbox::kNone : render::Sandbox::kRequire;
    o.render_sandbox = !f->no_render_sandbox;
    auto source = agent::NewGitSource(o, ro);
    if (!source.ok()) {
      fmt::print(stderr, "error: {}\n", source.status().message());
      exit_code = 2;
      return;
    }
    auto a = agent::NewAgent(**client, o, *std::move(source));
    if (!a.ok()) {
      fmt::print(stderr, "error: {}\n", a.status().message());
      exit_code = 2;
      return;
    }
    g_running = a->get();
    ::signal(SIGINT, OnSignal);
    ::signal(SIGTERM, OnSignal);
    Status s = (*a)->Run();
    g_running = nullptr;
    if (!s.ok()) {
      fmt::print(stderr, "error: {}\n", s.message());
      exit_code = 3;
      return;
    }
    exit_code = 0;
  });
}

void AddAppCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto cluster = std::make_shared<ClusterFlags>();
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("app", "Applications of the pull agent: list, sync, refresh");
  cmd->require_subcommand(1);
  AddClusterFlags(cmd, *cluster);

  auto request = [cluster, name, &exit_code](const char* annotation, const char* what) {
    kube::RestConfig config;
    auto client = Connect(*cluster, &config);
    if (!client.ok()) {
      fmt::print(stderr, "error: {}\n", client.status().message());
      exit_code = 3;
      return;
    }
    // A request is an annotation with a fresh value; the agent acts when it sees a new one.
    value::Value patch = value::Value::Map();
    patch.Set("apiVersion", api::kApiVersion);
    patch.Set("kind", api::kKind);
    value::Value meta = value::Value::Map();
    meta.Set("name", *name);
    meta.Set("namespace", config.namespace_);
    value::Value ann = value::Value::Map();
    ann.Set(annotation, Rfc3339(SystemClock().WallNow()) + "/" + std::to_string(::getpid()));
    meta.Set("annotations", ann);
    patch.Set("metadata", meta);
    auto existing = (*client)->Get(kube::RefOf(patch));
    if (!existing.ok()) {
      fmt::print(stderr, "error: {}\n", existing.status().message());
      exit_code = existing.status().code() == Code::kNotFound ? 1 : 3;
      return;
    }
    auto r = (*client)->Apply(patch, {.field_manager = "gantry-app-request", .force = true});
    if (!r.ok()) {
      fmt::print(stderr, "error: {}\n", r.status().message());
      exit_code = 3;
      return;
    }
    fmt::print("{} requested for Application {}/{}\n", what, config.namespace_, *name);
    exit_code = 0;
  };
  auto* sync = cmd->add_subcommand("sync", "Ask the agent to sync an Application now");
  sync->add_option("name", *name, "Application")->required();
  sync->callback([request] { request("gantry.dev/sync-requested", "sync"); });
  auto* refresh = cmd->add_subcommand("refresh", "Ask the agent to fetch from Git and compare now");
  refresh->add_option("name", *name, "Application")->required();
  refresh->callback([request] { request("gantry.dev/refresh-requested", "refresh"); });

  auto* list = cmd->add_subcommand("list", "List Applications with their sync and health");
  list->callback([cluster, &exit_code] {
    kube::RestConfig config;
    auto client = Connect(*cluster, &config);
    if (!client.ok()) {
      fmt::print(stderr, "error: {}\n", client.status().message());
      exit_code = 3;
      return;
    }
    auto apps = (*client)->List(api::kApiVersion, api::kKind, config.namespace_);
    if (!apps.ok()) {
      fmt::print(stderr, "error: {}\n", apps.status().message());
      exit_code = 3;
      return;
    }
    fmt::print("{:<24} {:<10} {:<12} {:<14} {}\n", "NAME", "SYNC", "HEALTH", "REVISION", "MESSAGE");
    for (const auto& a : apps->items) {
      api::ApplicationStatus st = api::ParseStatus(a.Get("status"));
      std::string message;
      for (const api::Condition& c : st.conditions) {
        if (c.status && c.type != api::kConditionReady) message = c.message;
      }
      fmt::print("{:<24} {:<10} {:<12} {:<14} {}\n", value::StringAt(&a, {"metadata", "name"}), st.sync_status,
                 st.health ? health::Name(*st.health) : "", st.sync_revision.substr(0, 12), message);
    }
    exit_code = 0;
  });
}

}  // namespace gantry::cli
