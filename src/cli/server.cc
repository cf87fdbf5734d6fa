// gantry server --listen [HOST]:PORT [--store URL] --webhook-secret-env VAR [--repo URL...] [--data-dir D] ...
//
// The CI server (webhooks, polling, queue, workers, REST API; see ci/server.h and
// server/ci_front.h) and, after a run succeeded, the release flow (release/release.h: image, config
// repository, notify, push deploy). It takes the same --executor flags as `ci run` (cli/ci.h).
// This file is composition: flags → options (exit 2 for a bad flag), then the store, executor,
// registry and mirrors are built from deps and handed to ci::Server and server::Front; it serves
// until SIGINT or SIGTERM. Exit 3 when something cannot be opened or started.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "base/duration.h"
#include "base/path.h"
#include "ci/server.h"
#include "cli/ci.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/state.h"
#include "deliver/deliver.h"
#include "git/git.h"
#include "http/http.h"
#include "http/metrics.h"
#include "notify/notify.h"
#include "oci/registry.h"
#include "render/git_sources.h"
#include "release/release.h"
#include "sign/policy.h"
#include "sign/sign.h"
#include "oidc/oidc.h"
#include "server/browser_login.h"
#include "server/access.h"
#include "server/actions.h"
#include "server/ci_front.h"
#include "server/api_v1.h"
#include "server/console.h"
#include "server/events.h"
#include "server/front.h"
#include "server/links.h"
#include "server/forge_statuses.h"
#include "server/pull_merges.h"
#include "server/previews.h"
#include "server/notifications.h"
#include "server/pull_watch.h"
#include "server/server_metrics.h"
#include "server/worker_api.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_server_stop{false};

void StopServer(int) { g_server_stop.store(true); }

struct ServerFlags {
  std::string listen = "127.0.0.1:8080";
  std::string tls_cert, tls_key;  // PEM files: serve HTTPS
  std::string store;  // "": sqlite in the state directory (cli/state.h), as every command
  std::string webhook_secret_env;
  std::string provider = "auto";
  std::vector<std::string> repos;
  std::string data_dir = "gantry-data";
  std::string secrets_file;
  std::string poll = "0";
  std::vector<std::string> poll_branches = {"main"};
  std::string worker = "gantry";
  std::string run_lease = "15s";
  ExecutorFlags executor;
  bool allow_file = false;
  int workers = 1;
  int untrusted_workers = 1;
  std::string labels;  // k=v,... of this server's own workers
  std::string trusted_timeout = "0";
  std::string untrusted_timeout = "30m";
  std::string max_workspace = "20Gi", max_artifacts = "1Gi", max_log = "64Mi", cache_quota = "5Gi";
  std::string policy;                     // "key=value ..." for every repository
  std::vector<std::string> repo_policies;  // "URL key=value ..."
  std::vector<std::string> protected_branches = {"main"};
  int max_attempts = 3;
  // The release flow after CI (release/release.h).
  std::vector<std::string> config_repos;
  std::vector<std::string> git_credentials_env;
  std::vector<std::string> git_repo_secrets;  // directories (mounted repository Secrets)
  std::string ssh_known_hosts;
  std::string registry_config;
  std::string registry_ca_file;
  std::vector<std::string> insecure_registries;
  std::vector<std::string> registry_credentials_env;
  std::vector<std::string> notify;
  std::string notify_secret_env;
  std::string deliver_config;
  std::string deploy_repo;  // "": the only --config-repo
  std::vector<std::string> kustomize_remote_hosts;
  std::vector<std::string> commit_urls, image_urls;  // PREFIX=TEMPLATE (server/links.h)
  int max_deploys = 4;
  std::string path_template = "envs/{env}";
  std::string health_timeout = "5m";
  std::string api_token_env;
  std::string oidc_issuer, oidc_client_id, oidc_groups_claim = "groups", oidc_ca_file;
  std::string public_url;  // "": http://HOST from each browser's Host header
  std::string metrics_listen;  // "": no /metrics listener
  std::string notifications_config;  // "": no notifications
  std::string signing_key;  // PEM private key: built images are signed and attested ("": not)
  std::string builder_id;   // the provenance's builder id ("": --public-url + "/ci")
  std::string commit_signing_key;  // OpenSSH or PEM Ed25519 key: config commits are signed ("": not)
  std::vector<std::string> forges;   // --forge 'PREFIX type=... token-env=...' (server/forge_statuses.h)
};

// What the flags say, checked: everything but what must be opened or started.
struct ServerOptions {
  std::string listen;  // as given, for messages
  http::Options http;
  std::optional<http::Options> metrics;  // --metrics-listen
  ci::ServerOptions ci;
  server::CiFrontOptions front;
  // The deprecated shared token (--api-token-env, or DATA_DIR/api-token): the bootstrap admin.
  std::string bootstrap_token;
  // OIDC sign-in (gantry login): ID tokens of this issuer for this client are users ("" : off).
  oidc::VerifyOptions oidc;
  std::string oidc_ca_file;
  std::string public_url;  // where browsers reach the server, without a trailing '/' ("": by Host)
  std::string store;  // "": the state directory's
  std::string secrets_file;
  ExecutorFlags executor;
  // Release services without the store, registry, mirrors and cluster connections (Run adds them).
  release::ReleaseServices release;
  oci::RegistryOptions registry;  // without upload_state_dir (Run: DATA_DIR/uploads)
  std::string deliver_config;
  // POST /api/v1/apps/{app}/deploy renders this config repository ("" : API deploys answer 503).
  std::string deploy_repo;
  int max_deploys = 4;
  server::LinkOptions links;  // --commit-url, --image-url
  // --notifications-config (notify/notify.h); nullopt: none.
  std::optional<notify::Config> notifications;
  std::vector<server::ForgeConfig> forges;  // commit statuses (--forge)
};

// "host=user:password" from the variable `env` (never a flag: it would show in ps).
Result<std::string> SecretFromEnv(const std::string& flag, const std::string& env) {
  const char* v = std::getenv(env.c_str());
  if (v == nullptr || *v == '\0') return InvalidArgumentError("{} {}: the variable is not set", flag, env);
  return std::string(v);
}

// The public keys GET /api/v1/signing-keys publishes.
server::SigningKeys SigningKeys(const release::ReleaseServices& s) {
  server::SigningKeys k;
  if (s.signing_key) k.images = s.signing_key->Public().Pem();
  if (s.commit_signer) {
    k.commits = s.commit_signer->PublicKeyLine();
    k.commit_principal = s.author.email;
  }
  return k;
}

// The release flow's options of the flags (release/release.h).
Status ReleaseOptions(const ServerFlags& f, ServerOptions& o) {
  release::ReleaseServices& s = o.release;
  s.config_repos = f.config_repos;
  if (!f.signing_key.empty()) {
    auto pem = ReadFile(f.signing_key, 1 << 20);
    if (!pem.ok()) return pem.status().WithContext("--signing-key");
    auto key = sign::ParsePrivateKey(*pem, f.signing_key);
    if (!key.ok()) return key.status().WithContext("--signing-key");
    s.signing_key = *std::move(key);
  }
  if (!f.commit_signing_key.empty()) {
    auto text = ReadFile(f.commit_signing_key, 1 << 20);
    if (!text.ok()) return text.status().WithContext("--commit-signing-key");
    auto signer = sign::SshSigner::Parse(*text, f.commit_signing_key);
    if (!signer.ok()) return signer.status().WithContext("--commit-signing-key");
    s.commit_signer = *std::move(signer);
  }
  if (!f.builder_id.empty()) {
    s.builder_id = f.builder_id;
  } else if (!f.public_url.empty()) {
    s.builder_id = f.public_url + (f.public_url.ends_with('/') ? "ci" : "/ci");
  }
  for (const auto& url : f.config_repos) GANTRY_RETURN_IF_ERROR(git::ValidateUrl(url, f.allow_file).WithContext("--config-repo"));
  for (const auto& env : f.git_credentials_env) {
    GANTRY_ASSIGN_OR_RETURN(std::string v, SecretFromEnv("--git-credentials-env", env));
    GANTRY_ASSIGN_OR_RETURN(git::Credentials c, git::ParseCredentials(v));
    s.config_credentials.push_back(std::move(c));
  }
  for (const auto& dir : f.git_repo_secrets) {
    auto c = git::ReadRepositorySecret(dir, f.ssh_known_hosts);
    if (!c.ok()) return c.status().WithContext("--git-repo-secret");
    s.config_credentials.push_back(*std::move(c));
  }
  s.config_git.allow_file = f.allow_file;
  o.registry.docker_config = f.registry_config;
  o.registry.ca_file = f.registry_ca_file;
  o.registry.insecure_http_hosts = f.insecure_registries;
  for (const auto& env : f.registry_credentials_env) {
    GANTRY_ASSIGN_OR_RETURN(std::string v, SecretFromEnv("--registry-credentials-env", env));
    GANTRY_ASSIGN_OR_RETURN(git::Credentials c, git::ParseCredentials(v));
    o.registry.credentials.push_back({.host = c.host, .username = c.username, .password = c.password});
  }
  if (!f.notify.empty()) {
    if (f.notify_secret_env.empty()) return InvalidArgumentError("--notify needs --notify-secret-env (agents refuse unsigned webhooks)");
    GANTRY_ASSIGN_OR_RETURN(std::string secret, SecretFromEnv("--notify-secret-env", f.notify_secret_env));
    for (const auto& url : f.notify) s.notify.push_back({.url = url, .secret = secret});
  }
  o.deliver_config = f.deliver_config;
  o.deploy_repo = f.deploy_repo;
  s.render.kustomize.remote_hosts = f.kustomize_remote_hosts;
  if (o.deploy_repo.empty() && f.config_repos.size() == 1) o.deploy_repo = f.config_repos.front();
  if (!o.deploy_repo.empty()) GANTRY_RETURN_IF_ERROR(git::ValidateUrl(o.deploy_repo, f.allow_file).WithContext("--deploy-repo"));
  for (const auto& rule : f.commit_urls) {
    GANTRY_ASSIGN_OR_RETURN(auto r, server::ParseLinkRule("--commit-url", rule, true));
    o.links.commits.push_back(std::move(r));
  }
  for (const auto& rule : f.image_urls) {
    GANTRY_ASSIGN_OR_RETURN(auto r, server::ParseLinkRule("--image-url", rule, false));
    o.links.images.push_back(std::move(r));
  }
  if (f.max_deploys < 1) return InvalidArgumentError("--max-deploys {}: expected at least 1", f.max_deploys);
  o.max_deploys = f.max_deploys;
  s.path_template = f.path_template;
  auto timeout = ParseDuration(f.health_timeout);
  if (!timeout.ok()) return InvalidArgumentError("--health-timeout {:?}: expected a duration such as 5m", f.health_timeout);
  s.health_timeout = *timeout;
  // The app repositories' credential too (one host for all of them; ci::Server takes one).
  if (!f.repos.empty()) o.ci.git.credentials = git::CredentialsFor(s.config_credentials, f.repos.front());
  return OkStatus();
}

// flags → options: InvalidArgument naming the flag (a usage error).
Result<ServerOptions> ToOptions(const ServerFlags& f) {
  ServerOptions o;
  o.listen = f.listen;
  GANTRY_ASSIGN_OR_RETURN(auto listen, http::ParseListen(f.listen, "--listen"));
  o.http.address = listen.host;
  o.http.port = listen.port;
  o.http.tls_cert_file = f.tls_cert;
  o.http.tls_key_file = f.tls_key;
  if (!f.metrics_listen.empty()) {
    GANTRY_ASSIGN_OR_RETURN(auto metrics, http::ParseListen(f.metrics_listen, "--metrics-listen"));
    o.metrics = http::Options{.address = metrics.host, .port = metrics.port};
  }
  ci::ServerOptions& so = o.ci;
  so.repos = f.repos;
  so.data_dir = fs::absolute(f.data_dir);
  so.worker_name = f.worker;
  so.workers = f.workers;
  so.untrusted_workers = f.untrusted_workers;
  auto labels = store::ParseLabels(f.labels);
  if (!labels.ok()) return labels.status().WithContext("--labels");
  so.labels = *std::move(labels);
  so.max_attempts = f.max_attempts;
  so.protected_branches = f.protected_branches;
  for (auto [flag, text, into] : {std::tuple{"--trusted-timeout", &f.trusted_timeout, &so.trusted_step_timeout},
                                  std::tuple{"--untrusted-timeout", &f.untrusted_timeout, &so.untrusted_step_timeout}}) {
    auto d = ParseDuration(*text);
    if (!d.ok()) return InvalidArgumentError("{} {:?}: expected a duration such as 30m (0 = no cap)", flag, *text);
    *into = *d;
  }
  for (auto [flag, text, into] : {std::tuple{"--max-workspace", &f.max_workspace, &so.max_workspace_bytes},
                                  std::tuple{"--max-artifacts", &f.max_artifacts, &so.max_artifact_bytes},
                                  std::tuple{"--max-log", &f.max_log, &so.max_log_bytes},
                                  std::tuple{"--cache-quota", &f.cache_quota, &so.cache_quota_bytes}}) {
    auto n = ci::ParseSize(*text);
    if (!n) return InvalidArgumentError("{} {:?}: expected a size such as 20Gi or 500M (0 = no limit)", flag, *text);
    *into = *n;
  }
  so.git.allow_file = f.allow_file;
  auto poll = ParseDuration(f.poll);
  if (!poll.ok()) return InvalidArgumentError("--poll {:?}: expected a duration such as 60s", f.poll);
  so.poll_interval = *poll;
  so.poll_branches = f.poll_branches;
  auto lease = ParseDuration(f.run_lease);
  if (!lease.ok() || *lease < std::chrono::seconds(1)) {
    return InvalidArgumentError("--run-lease {:?}: expected a duration of at least 1s, such as 15s", f.run_lease);
  }
  so.run_lease = *lease;
  GANTRY_ASSIGN_OR_RETURN(webhook::Provider provider, webhook::ParseProvider(f.provider));
  o.front.webhook.provider = provider;
  so.policy.provider = provider;
  if (!f.policy.empty()) {
    auto p = ci::ParseRepoPolicy("* " + f.policy, so.policy);
    if (!p.ok()) return p.status().WithContext("--policy");
    so.policy = p->second;
  }
  for (const auto& spec : f.repo_policies) {
    GANTRY_ASSIGN_OR_RETURN(auto p, ci::ParseRepoPolicy(spec, so.policy));
    if (std::find(f.repos.begin(), f.repos.end(), p.first) == f.repos.end()) {
      return InvalidArgumentError("--repo-policy {}: not a --repo", p.first);
    }
    so.repo_policies[p.first] = p.second;
  }
  const char* secret = f.webhook_secret_env.empty() ? nullptr : std::getenv(f.webhook_secret_env.c_str());
  if (secret == nullptr || *secret == '\0') {
    return InvalidArgumentError("--webhook-secret-env must name a set, non-empty variable (unsigned webhooks are refused)");
  }
  o.front.webhook.secret = secret;
  // Repositories with a webhook secret of their own (--repo-policy 'URL secret-env=VAR').
  std::vector<std::pair<std::string, std::string>> own_secrets;
  for (const auto& [repo, policy] : so.repo_policies) {
    if (policy.secret_env.empty()) continue;
    const char* own = std::getenv(policy.secret_env.c_str());
    if (own == nullptr || std::string_view(own).size() < 16) {
      return InvalidArgumentError("--repo-policy {}: secret-env={} must name a variable holding at least 16 characters",
                                  repo, policy.secret_env);
    }
    own_secrets.emplace_back(repo, own);
  }
  if (!own_secrets.empty()) {
    o.front.webhook.secret_for = [own_secrets](const webhook::Event& e) {
      for (const auto& [repo, own] : own_secrets) {
        if (ci::SameRepo(repo, e)) return own;
      }
      return std::string();
    };
  }
  // A run belongs to its repository's project (--repo-policy 'URL project=NAME'; --policy for all),
  // recorded on the run when it was queued (a fork's pull request too, whose repo is the fork's).
  o.front.project_of = [policies = so.repo_policies, fallback = so.policy](const store::Run& run) {
    if (!run.project.empty()) return run.project;
    auto it = policies.find(run.repo);
    return it == policies.end() ? fallback.project : it->second.project;
  };
  if (f.oidc_issuer.empty() != f.oidc_client_id.empty()) {
    return InvalidArgumentError("--oidc-issuer and --oidc-client-id go together");
  }
  if (!f.oidc_issuer.empty()) {
    GANTRY_RETURN_IF_ERROR(oidc::CheckIssuerUrl(f.oidc_issuer).WithContext("--oidc-issuer"));
    o.oidc = {.issuer = f.oidc_issuer, .client_id = f.oidc_client_id, .groups_claim = f.oidc_groups_claim};
    o.oidc_ca_file = f.oidc_ca_file;
  }
  if (!f.public_url.empty()) {
    o.public_url = f.public_url;
    while (o.public_url.ends_with('/')) o.public_url.pop_back();
    if (!(o.public_url.starts_with("https://") || o.public_url.starts_with("http://")) ||
        o.public_url.find_first_of("?#", 0) != std::string::npos) {
      return InvalidArgumentError("--public-url {:?}: give the URL browsers reach the server at, "
                                  "like https://gantry.example.com (no query or fragment)", f.public_url);
    }
  }
  if (!f.api_token_env.empty()) {
    const char* token = std::getenv(f.api_token_env.c_str());
    if (token == nullptr || std::string_view(token).size() < 16) {
      return InvalidArgumentError("--api-token-env {}: the variable must hold a token of at least 16 characters",
                                  f.api_token_env);
    }
    o.bootstrap_token = token;
  }
  o.http.max_body_bytes = o.front.webhook.max_body_bytes;
  o.store = f.store;
  o.secrets_file = f.secrets_file;
  o.executor = f.executor;
  GANTRY_RETURN_IF_ERROR(ValidateExecutorFlags(o.executor));
  GANTRY_RETURN_IF_ERROR(ReleaseOptions(f, o));
  if (!f.notifications_config.empty()) {
    auto config = notify::LoadConfig(f.notifications_config);
    if (!config.ok()) return config.status().WithContext("--notifications-config");
    o.notifications = *std::move(config);
  }
  for (const auto& spec : f.forges) {
    GANTRY_ASSIGN_OR_RETURN(server::ForgeConfig c, server::ParseForgeFlag(spec));
    o.forges.push_back(std::move(c));
  }
  return o;
}

// What the release flow needs beyond its options, owned for the server's lifetime.
struct ReleaseParts {
  std::unique_ptr<git::Mirrors> mirrors;
  std::shared_ptr<render::GitSources> remote_bases;  // remote Kustomize bases of push deploys
  std::unique_ptr<oci::Registry> registry;
  std::unique_ptr<sign::ImagePolicy> image_policy;  // over registry: push deploys verify images
};

// Completes o.release (store, config mirrors, registry, push-mode config and connections).
Result<ReleaseParts> SetUpRelease(ServerOptions& o, store::Store& store, const Deps& deps) {
  ReleaseParts parts;
  release::ReleaseServices& s = o.release;
  const fs::path& data_dir = o.ci.data_dir;
  s.store = &store;
  s.clock = deps.clock;
  parts.mirrors = std::make_unique<git::Mirrors>(data_dir / "config-mirrors");
  if (!s.render.kustomize.remote_hosts.empty()) {
    // Mirrors of their own (one Mirrors per directory), with the config repositories' credentials.
    parts.remote_bases = std::make_shared<render::GitSources>(render::GitSourcesOptions{
        .mirrors_dir = data_dir / "remote-base-mirrors", .credentials = s.config_credentials,
        .allow_file = s.config_git.allow_file});
    s.render.kustomize.fetch_remote = [sources = parts.remote_bases, fetch = parts.remote_bases->RemoteFetcher()](
                                          const render::RemoteBase& base, const fs::path& dest) {
      return fetch(base, dest);
    };
  }
  s.open_config_repo = [mirrors = parts.mirrors.get()](const std::string& url, const git::OpenOptions& options) {
    return mirrors->Open(url, options);
  };
  oci::RegistryOptions registry = o.registry;
  registry.upload_state_dir = data_dir / "uploads";
  GANTRY_ASSIGN_OR_RETURN(s.registry_credentials, oci::CredentialHosts(registry));
  GANTRY_ASSIGN_OR_RETURN(parts.registry, oci::NewHttpRegistry(std::move(registry)));
  s.registry = parts.registry.get();
  s.image_dir = data_dir / "images";
  if (!o.deliver_config.empty()) {
    GANTRY_ASSIGN_OR_RETURN(deliver::Config config, deliver::LoadConfigDirIfExists(o.deliver_config));
    GANTRY_RETURN_IF_ERROR(deliver::PromotionOrder(config).status().WithContext("--deliver-config " + o.deliver_config));
    // Push deploys verify images against their projects' verification rules before applying,
    // with the server's registry client; secretRef keys are read from the destination cluster.
    parts.image_policy = std::make_unique<sign::ImagePolicy>(sign::PolicyOptions{.registry = parts.registry.get()});
    config.image_check = [policy = parts.image_policy.get()](const project::Project& p, const std::string& env,
                                                             kube::Client& cluster) {
      return policy->For(p, env, &cluster);
    };
    s.deliver_config = std::move(config);
  }
  s.connect = [&deps](const deliver::Cluster& c) { return deps.connect_cluster(c, {}); };
  return parts;
}

// Serves until SIGINT or SIGTERM; errors for what cannot be opened or started.
Status RunServer(ServerOptions o, const Deps& deps) {
  // An operator who handed the server its admin credential (--api-token-env) has one: no second
  // secret is minted and printed (its stdout is often a log file, as in scripts/quickstart).
  const bool admin_given = !o.bootstrap_token.empty();
  if (o.bootstrap_token.empty()) {
    auto token = server::LoadOrCreateApiToken(o.ci.data_dir);
    if (!token.ok()) return token.status().WithContext("the REST API token");
    o.bootstrap_token = *token;
    fmt::print(deps.out, "the REST API's token is in {0} (clients: export GANTRY_TOKEN=$(cat {0}))\n",
               (o.ci.data_dir / "api-token").string());
  }
  if (!o.secrets_file.empty()) {
    GANTRY_ASSIGN_OR_RETURN(o.ci.secrets, ci::ReadSecretScopesFile(o.secrets_file));
  }
  auto store_url = StoreUrl(o.store, "");
  auto st = store_url.ok() ? deps.open_store(*store_url) : Result<std::unique_ptr<store::Store>>(store_url.status());
  if (!st.ok()) return st.status().WithContext("store " + store::RedactUrl(store_url.value_or(o.store)));
  // The first start on an empty token table makes the admin's token and shows it this once, on
  // standard output only (never in a log).
  std::optional<std::string> admin;
  if (!admin_given) {
    GANTRY_ASSIGN_OR_RETURN(admin, server::CreateBootstrapAdmin(**st));
  }
  if (admin) {
    fmt::print(deps.out,
               "bootstrap admin token (shown once; keep it, e.g. export GANTRY_TOKEN=...; see docs/access.md): {}\n",
               *admin);
    std::fflush(deps.out);
  }
  std::unique_ptr<oidc::Verifier> verifier;
  server::JwtVerifier verify_jwt;
  if (!o.oidc.issuer.empty()) {
    GANTRY_ASSIGN_OR_RETURN(
        verifier, oidc::Verifier::Create({.verify = o.oidc},
                                         oidc::HttpTransport({.timeout = std::chrono::seconds(10), .ca_file = o.oidc_ca_file}),
                                         deps.clock));
    verify_jwt = [v = verifier.get()](std::string_view jwt) -> Result<authz::Principal> {
      GANTRY_ASSIGN_OR_RETURN(oidc::Identity id, v->Verify(jwt));
      return authz::Principal{.name = id.name, .groups = id.groups, .via = authz::Via::kOidc};
    };
  }
  // Every write goes through the observed store, so runs, steps, logs and deploys reach the event
  // bus (/api/v1/events, the metrics). On PostgreSQL, which other replicas may share
  // (docs/scaling.md), it also reads their run state changes every second.
  server::EventBus events;
  server::ReleaseProjects release_projects;
  const bool shared = store::ParseUrl(*store_url).ok() && store::ParseUrl(*store_url)->kind == store::Location::Kind::kPostgres;
  std::unique_ptr<store::Store> observed = server::ObservedStore(
      **st, events, o.front.project_of, [&release_projects](int64_t id) { return release_projects.Of(id); },
      shared ? std::chrono::seconds(1) : std::chrono::seconds(0));
  store::Store& store = *observed;
  http::Registry registry;
  server::ServerMetrics metrics(registry, store, events);
  server::Access access(store, {.bootstrap_token = o.bootstrap_token, .verify_jwt = verify_jwt, .clock = deps.clock});
  o.front.access = &access;
  GANTRY_ASSIGN_OR_RETURN(BuiltExecutor executor, MakeExecutor(o.executor, deps));
  GANTRY_ASSIGN_OR_RETURN(ReleaseParts release_parts, SetUpRelease(o, store, deps));
  o.ci.after_success = [services = &o.release](const ci::SucceededRun& r) {
    return release::ReleaseSucceededRun(*services, r);
  };
  o.ci.clock = deps.clock;

  // Deploys, resumes and rollbacks asked for through the API run here (server/actions.h).
  std::function<deliver::RenderFn()> renderer;
  if (!o.deploy_repo.empty()) {
    git::OpenOptions open = o.release.config_git;
    open.credentials = git::CredentialsFor(o.release.config_credentials, o.deploy_repo);
    renderer = [mirrors = release_parts.mirrors.get(), url = o.deploy_repo, open, render = o.release.render]() -> deliver::RenderFn {
      auto repo = mirrors->Open(url, open);
      if (!repo.ok()) {
        Status error = repo.status().WithContext("--deploy-repo " + git::ScrubUrl(url));
        return [error](std::string_view, const std::string&, const deliver::RenderTarget&) -> Result<render::Rendered> {
          return error;
        };
      }
      return deliver::GitRenderFn(*repo, render);
    };
  }
  // Pull targets' diffs are rendered as their agents render them, from the config repositories only.
  std::unique_ptr<agent::Source> pull_source;
  if (o.release.deliver_config && !o.release.config_repos.empty()) {
    agent::AgentOptions render_as_agent{.cache_dir = (o.ci.data_dir / "pull-render").string(),
                                        .allow_file_repos = o.release.config_git.allow_file,
                                        .git_repo_credentials = o.release.config_credentials};
    GANTRY_ASSIGN_OR_RETURN(pull_source, agent::NewSource(render_as_agent, o.release.render));
  }
  server::Actions actions(store, {.config = o.release.deliver_config,
                                  .renderer = renderer,
                                  .connect = o.release.connect,
                                  .path_template = o.release.path_template,
                                  .health_timeout = o.release.health_timeout,
                                  .clock = deps.clock,
                                  .max_running = o.max_deploys,
                                  .events = &events,
                                  .projects = &release_projects});
  // Notifications (docs/notifications.md): the outbox is in the store, delivered on the notifier's
  // thread, fed from the event bus; neither blocks a run or a deploy.
  std::optional<notify::Notifier> notifier;
  std::optional<server::NotificationFeed> notification_feed;
  if (o.notifications) {
    notifier.emplace(notify::NotifierOptions{
        .store = &**st, .config = *o.notifications, .public_url = o.public_url, .clock = deps.clock, .metrics = &registry,
        .lease_holder = o.ci.worker_name});
    notifier->Start();
    notification_feed.emplace(events, **st, *notifier);
  }
  // Commit statuses on the forges (docs/forges.md): an outbox in the store, fed from the event bus.
  std::unique_ptr<server::ForgeStatuses> forge_statuses;
  if (!o.forges.empty()) {
    GANTRY_ASSIGN_OR_RETURN(forge_statuses,
                            server::ForgeStatuses::Start(events, {.store = &**st,
                                                                  .forges = o.forges,
                                                                  .public_url = o.public_url,
                                                                  .clock = deps.clock,
                                                                  .metrics = &registry,
                                                                  .lease_holder = o.ci.worker_name}));
  }
  // Releases in pull-request mode open their pull requests on the same forges, and auto-merges
  // wait in the store's outbox for their checks (server/pull_merges.h).
  std::unique_ptr<server::PullMerges> pull_merges;
  if (!o.forges.empty()) {
    GANTRY_ASSIGN_OR_RETURN(pull_merges, server::PullMerges::Start(
                                             {.store = &**st, .forges = o.forges, .clock = deps.clock, .metrics = &registry}));
    o.release.open_pull_request = [p = pull_merges.get()](const std::string& url, const forge::PullRequestSpec& spec) {
      return p->Open(url, spec);
    };
  }
  // Pull-request previews of the config repository (docs/forges.md): computed on their own thread,
  // their comments put into the same outbox.
  std::unique_ptr<server::Previews> previews;
  if (forge_statuses && o.release.deliver_config && renderer) {
    previews = std::make_unique<server::Previews>(server::PreviewsOptions{.store = &**st,
                                                                          .config = &*o.release.deliver_config,
                                                                          .renderer = renderer,
                                                                          .connect = o.release.connect,
                                                                          .config_repo = o.deploy_repo,
                                                                          .pull_source = pull_source.get(),
                                                                          .pull_repos = o.release.config_repos,
                                                                          .fork_dir = o.ci.data_dir / "preview-forks",
                                                                          .render_options = o.release.render,
                                                                          .allow_file_repos = o.release.config_git.allow_file,
                                                                          .app_repos = o.ci.repos,
                                                                          .forges = o.forges,
                                                                          .path_template = o.release.path_template,
                                                                          .clock = deps.clock});
    o.front.on_pull_request = [p = previews.get()](const webhook::Event& e) { p->Offer(e); };
  }
  server::Front front("server", o.http);
  front.AddHealth();
  front.CountWebhooks(metrics.webhook_deliveries());
  ci::Server ci_server(store, *executor.executor, o.ci);
  auto project_of = o.front.project_of;
  GANTRY_RETURN_IF_ERROR(server::ServeCi(front, ci_server, std::move(o.front)));
  server::ServeAccess(front, access);
  server::ServeWorkerApi(front, ci_server, access);
  // Pull clusters' Applications, watched (the matrix and the apps routes read them from memory;
  // agent syncs are audited, status changes are "app" events).
  std::optional<server::PullWatch> pull_watch;
  if (o.release.deliver_config) {
    pull_watch.emplace(server::PullWatchOptions{.config = *o.release.deliver_config,
                                                .connect = o.release.connect,
                                                .store = &store,
                                                .events = &events,
                                                .lease_holder = o.ci.worker_name});
  }
  GANTRY_RETURN_IF_ERROR(server::ServeApiV1(front, {.access = &access,
                                                    .ci = &ci_server,
                                                    .events = &events,
                                                    .project_of = project_of,
                                                    .deliver_config = o.release.deliver_config,
                                                    .connect = o.release.connect,
                                                    .pull_applications = pull_watch ? pull_watch->Source() : nullptr,
                                                    .renderer = renderer,
                                                    .path_template = o.release.path_template,
                                                    .pull_source = pull_source.get(),
                                                    .pull_repos = o.release.config_repos,
                                                    .actions = &actions,
                                                    .repos = o.ci.repos,
                                                    .metrics = &registry,
                                                    .config_repo = o.deploy_repo,
                                                    .links = o.links,
                                                    .signing_keys = SigningKeys(o.release)}));
  std::optional<server::Front> metrics_front;
  if (o.metrics) {
    metrics_front.emplace("server metrics", *o.metrics);
    metrics_front->AddMetrics(registry, "/metrics", [&metrics] { metrics.Refresh(); });
    GANTRY_RETURN_IF_ERROR(metrics_front->Start().WithContext("--metrics-listen"));
    fmt::print(deps.out, "gantry server metrics on {}:{}/metrics\n", o.metrics->address, metrics_front->port());
  }
  // Console sign-in through the OIDC provider (code + PKCE); /auth/config says whether there is one.
  server::BrowserLogin browser_login({.verifier = verifier.get(), .public_url = o.public_url, .clock = deps.clock});
  browser_login.Register(front);
  server::ServeConsole(front);
  GANTRY_RETURN_IF_ERROR(ci_server.Start());
  GANTRY_RETURN_IF_ERROR(front.Start().WithContext("listen " + o.listen));
  const std::string& address = o.http.address;
  fmt::print(deps.out, "gantry server listening on {}:{}\n",
             address.find(':') == std::string::npos ? address : "[" + address + "]", front.port());
  std::fflush(deps.out);
  signal(SIGINT, StopServer);
  signal(SIGTERM, StopServer);
  while (!g_server_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  front.Stop();
  if (pull_watch) pull_watch->Stop();
  // Deploys and rollbacks stop at their next step; POST .../resume continues a deploy.
  actions.Stop();
  if (metrics_front) metrics_front->Stop();
  ci_server.Stop();
  if (notification_feed) notification_feed->Stop();
  if (notifier) notifier->Stop();
  if (previews) previews->Stop();
  if (forge_statuses) forge_statuses->Stop();
  if (pull_merges) pull_merges->Stop();
  return OkStatus();
}

}  // namespace

void AddServerCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<ServerFlags>();
  auto* cmd = app.add_subcommand("server", "The Gantry server: webhooks, CI queue and workers, REST API");
  cmd->add_option("--listen", f->listen, "Address to listen on, [HOST]:PORT");
  cmd->add_option("--tls-cert", f->tls_cert, "PEM certificate (chain) to serve HTTPS with; needs --tls-key")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", f->tls_key, "PEM private key of --tls-cert (unencrypted, mode 0600)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--store", f->store,
                  "sqlite:///path/gantry.db or postgresql://... (default: gantry.db in the state directory, "
                  "$GANTRY_HOME or ~/.config/gantry, as the CLI's --db)");
  cmd->add_option("--webhook-secret-env", f->webhook_secret_env, "Variable holding the webhook secret")->required();
  cmd->add_option("--oidc-issuer", f->oidc_issuer, "OIDC issuer whose ID tokens sign users in (gantry login; docs/oidc.md)");
  cmd->add_option("--oidc-client-id", f->oidc_client_id, "The OIDC client the tokens must be issued to (with --oidc-issuer)");
  cmd->add_option("--oidc-groups-claim", f->oidc_groups_claim, "Claim holding the user's groups (default groups)");
  cmd->add_option("--oidc-ca-file", f->oidc_ca_file, "PEM CA bundle for the issuer (default: the system's)");
  cmd->add_option("--public-url", f->public_url,
                  "URL browsers reach the server at (console sign-in redirects to URL/auth/callback; "
                  "default http:// and the browser's Host)");
  cmd->add_option("--api-token-env", f->api_token_env,
                  "Deprecated (use API tokens, docs/access.md): variable holding a shared bearer token that acts as "
                  "the cluster-wide admin; default: DATA_DIR/api-token, generated when missing");
  cmd->add_option("--metrics-listen", f->metrics_listen,
                  "Address for Prometheus /metrics, unauthenticated: keep it private (default \"\": off; docs/api.md)");
  cmd->add_option("--notifications-config", f->notifications_config,
                  "YAML file with a notifications: section (providers, templates, subscriptions; "
                  "docs/notifications.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--forge", f->forges,
                  "'PREFIX type=gitea|github|gitlab token-env=VAR [api=URL] [ca-file=PEM]': set commit statuses on the "
                  "repositories under PREFIX (repeatable; docs/forges.md)");
  cmd->add_option("--webhook-provider", f->provider, "github, gitlab, gitea, forgejo, bitbucket, generic or auto");
  cmd->add_option("--repo", f->repos,
                  "Repository URL to build (repeatable; none: a server for deploys, previews and the console only)");
  cmd->add_option("--data-dir", f->data_dir, "Mirrors, workspaces, artifacts and caches");
  cmd->add_option("--secrets-file", f->secrets_file, "NAME=VALUE lines (mode 0600), scoped by [repo=.. branch=.. protected] headers");
  cmd->add_option("--poll", f->poll, "Poll the repositories' branches this often (0 = off)");
  cmd->add_option("--poll-branch", f->poll_branches, "Branches to poll (default main)");
  cmd->add_option("--worker", f->worker,
                  "This server's name in the store (claims, restart recovery, leases): unique per replica sharing a store");
  cmd->add_option("--run-lease", f->run_lease,
                  "A claimed run is taken over by another replica this long after its server stops renewing it (default 15s)");
  cmd->add_option("--workers", f->workers,
                  "Trusted runs at once (pushes, tags, pull requests from the repository); 0: only remote workers "
                  "(gantry worker) build them")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--untrusted-workers", f->untrusted_workers,
                  "Untrusted runs at once (pull requests from forks), separate from --workers; 0: only remote workers")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--labels", f->labels,
                  "k=v,...: what this server's own workers have; they build runs whose repository asks for no label "
                  "they lack (--repo-policy 'URL labels=...')");
  cmd->add_option("--trusted-timeout", f->trusted_timeout, "Cap on every step's timeout in trusted runs (default 0 = none)");
  cmd->add_option("--untrusted-timeout", f->untrusted_timeout, "Cap on every step's timeout in untrusted runs (default 30m)");
  cmd->add_option("--max-workspace", f->max_workspace, "A run's workspace may hold this much after each step (default 20Gi)");
  cmd->add_option("--max-artifacts", f->max_artifacts, "Artifacts a run may keep (default 1Gi)");
  cmd->add_option("--max-log", f->max_log, "Log a run may store (default 64Mi)");
  cmd->add_option("--cache-quota", f->cache_quota, "All caches together, least recently used evicted first (default 5Gi)");
  cmd->add_option("--policy", f->policy,
                  "Policy of every repository: 'approval=required|none pull-requests=trusted|untrusted network=off|on "
                  "provider=NAME' (default approval=required pull-requests=trusted network=off)");
  cmd->add_option("--repo-policy", f->repo_policies, "'URL key=value ...': --policy keys for one --repo (repeatable)");
  cmd->add_option("--protected-branch", f->protected_branches, "Branch globs whose pushes get [protected] secrets (default main)");
  cmd->add_option("--max-attempts", f->max_attempts, "Re-queue an interrupted run until this many attempts");
  AddExecutorFlags(cmd, f->executor);
  f->executor.server = true;
  cmd->add_option("--step-uid", f->executor.step_uid,
                  "Host uid (and gid) sandboxed steps run as when the server runs as root (default 65533; 0 keeps "
                  "root, which the sandbox's uid then maps to)");
  cmd->add_flag("--allow-file-repos", f->allow_file, "Accept file:// repository URLs (tests, local setups)");
  // After CI: image, config repository, deploy (docs/end-to-end.md).
  cmd->add_option("--config-repo", f->config_repos, "A config repository releases may write to (repeatable)");
  cmd->add_option("--signing-key", f->signing_key,
                  "PEM private key (ECDSA P-256 or Ed25519, mode 0600): sign and attest every image built "
                  "(docs/supply-chain.md)");
  cmd->add_option("--builder-id", f->builder_id, "The builder id of the provenance (default --public-url + /ci)");
  cmd->add_option("--commit-signing-key", f->commit_signing_key,
                  "Ed25519 private key (OpenSSH or PEM, unencrypted, mode 0600): SSH-sign every config commit; the "
                  "public key is served at /api/v1/signing-keys (docs/supply-chain.md)");
  cmd->add_option("--deploy-repo", f->deploy_repo,
                  "Config repository that deploys asked for through the API render (default: the only --config-repo)");
  cmd->add_option("--kustomize-remote-host", f->kustomize_remote_hosts,
                  "Git host remote Kustomize bases of deploys may come from, e.g. github.com (repeatable); the "
                  "server fetches them with the config repositories' credentials, never kustomize");
  cmd->add_option("--commit-url", f->commit_urls,
                  "PREFIX=github|gitlab|gitea|TEMPLATE: how the API links commits of repositories whose URL starts "
                  "with PREFIX, when the host does not say which forge it is; TEMPLATE names {sha} and may name "
                  "{repo} and {path} (repeatable; docs/api.md)");
  cmd->add_option("--image-url", f->image_urls,
                  "PREFIX=TEMPLATE: how the API links images whose name starts with PREFIX; TEMPLATE names {digest} "
                  "or {reference} and may name {registry} and {repository} (repeatable; docs/api.md)");
  cmd->add_option("--max-deploys", f->max_deploys, "Deploys and rollbacks the API runs at once, one per app (default 4)");
  cmd->add_option("--git-credentials-env", f->git_credentials_env, "Variable holding host=user:password for Git (repeatable)");
  cmd->add_option("--git-repo-secret", f->git_repo_secrets,
                  "Directory of a mounted repository Secret in Argo CD's shape (url, and sshPrivateKey or "
                  "username/password), bound to its url's host (repeatable)");
  cmd->add_option("--ssh-known-hosts", f->ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (required for SSH repository secrets)");
  cmd->add_option("--registry-config", f->registry_config, "Docker config.json with registry credentials");
  cmd->add_option("--registry-credentials-env", f->registry_credentials_env,
                  "Variable holding host=user:password for a registry (repeatable)");
  cmd->add_option("--registry-ca-file", f->registry_ca_file, "PEM CA bundle for registries");
  cmd->add_option("--insecure-registry", f->insecure_registries, "Registry host[:port] reached over plain HTTP (repeatable)");
  cmd->add_option("--notify", f->notify, "Pull agent webhook URL told of each config commit (repeatable)");
  cmd->add_option("--notify-secret-env", f->notify_secret_env, "Variable holding the agents' webhook secret");
  cmd->add_option("--deliver-config", f->deliver_config, "Directory of Cluster and Environment objects for push deploys")
      ->envname("GANTRY_DELIVER_CONFIG");
  cmd->add_option("--path-template", f->path_template, "Path of an environment in the config repository (default envs/{env})");
  cmd->add_option("--health-timeout", f->health_timeout, "How long a push deploy waits for health (default 5m)");
  cmd->callback([f, &deps, &exit_code] {
    auto options = ToOptions(*f);
    if (!options.ok()) {
      exit_code = UsageError(options.status(), deps.err);
      return;
    }
    exit_code = Report(RunServer(*std::move(options), deps), deps.err);
  });
}

}  // namespace gantry::cli
