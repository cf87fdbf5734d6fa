// The CI commands:
//
//   gantry ci run [DIR] [--step S]... [--event push|tag|pull_request|manual] [--branch B]
//                 [--secrets-file F] [--no-sandbox] [--parallel N] [--cache-dir D]
//                 [--executor process|kube [--kubeconfig F] [--context C] [--namespace NS] [--image I]]
//       runs DIR/.gantry/pipeline.yaml on DIR (a copy-free local run: DIR is the workspace), with
//       a live progress line per step and a final table; exit 0 when every step succeeded, 1 when
//       one failed, 2 for usage errors, 3 for a bad pipeline file or environment.
//   gantry server --listen :8080 [--store URL] --webhook-secret-env VAR --repo URL... [--data-dir D]
//       the CI server (webhooks, polling, queue, workers, REST API); see ci/server.h and
//       server/ci_front.h. It takes the same --executor flags as `ci run`.
//   gantry runs --server URL            lists runs
//   gantry runs approve ID              lets a run awaiting approval (an untrusted pull request) run
//   gantry logs RUN [-f] --server URL   prints (and follows) a run's logs (on a terminal, escape
//                                       sequences other than colours are removed)

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <optional>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>

#include "base/duration.h"
#include "base/log.h"
#include "base/path.h"
#include "ci/executor.h"
#include "ci/pipeline.h"
#include "ci/runner.h"
#include "ci/secret_scopes.h"
#include "ci/server.h"
#include "deliver/deliver.h"
#include "oci/registry.h"
#include "release/release.h"
#include "server/ci_front.h"
#include "server/front.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/state.h"
#include "cli/terminal.h"
#include "http/client.h"
#include "http/http.h"
#include "kube/kube.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<ci::Runner*> g_runner{nullptr};
std::atomic<bool> g_stop{false};

void OnSignal(int) {
  g_stop.store(true);
  if (ci::Runner* r = g_runner.load()) r->Cancel();
}

std::string Secs(std::chrono::milliseconds d) { return fmt::format("{:.2f}s", static_cast<double>(d.count()) / 1000.0); }

// Where steps run: --executor process (bubblewrap, or the host with --no-sandbox) or kube (a Pod
// per step in --namespace of the cluster of --kubeconfig/--context).
// A host uid no account uses, for the steps of a server run as root (docs/security.md).
constexpr uint32_t kDefaultStepUid = 65533;

struct ExecutorFlags {
  std::string kind = "process";
  bool no_sandbox = false;
  std::vector<std::string> sandbox_paths;
  // gantry server only: the host user of steps (default 65533 when the server runs as root).
  bool server = false;
  std::optional<uint32_t> step_uid;
  std::string kubeconfig;  // "" = $KUBECONFIG, then ~/.kube/config
  std::string context;
  std::string namespace_;  // "" = the context's namespace
  std::string image;       // "" = the executor's default image
};

void AddExecutorFlags(CLI::App* cmd, ExecutorFlags& f) {
  cmd->add_option("--executor", f.kind, "Where steps run: process (bubblewrap sandbox) or kube (a Pod per step)")
      ->check(CLI::IsMember({"process", "kube"}));
  cmd->add_flag("--no-sandbox", f.no_sandbox,
                "Process executor: run steps on the host without bubblewrap (no isolation; never with untrusted "
                "pipelines)");
  cmd->add_option("--sandbox-path", f.sandbox_paths,
                  "Process executor: a host path steps may read, bound read-only at the same place (a toolchain "
                  "outside /usr, e.g. /opt/jdk); repeatable; never a path holding credentials");
  cmd->add_option("--kubeconfig", f.kubeconfig, "Kube executor: kubeconfig file (default $KUBECONFIG, ~/.kube/config)");
  cmd->add_option("--context", f.context, "Kube executor: kubeconfig context (default the current one)");
  cmd->add_option("--namespace", f.namespace_, "Kube executor: namespace of the step Pods (default the context's)");
  cmd->add_option("--image", f.image, "Kube executor: image of steps without image: (default debian:bookworm-slim)");
}

// The executor (and the cluster client it uses) the flags ask for.
struct BuiltExecutor {
  std::unique_ptr<kube::Client> client;  // kube only; outlives executor (declared first)
  std::unique_ptr<ci::Executor> executor;
};

Result<BuiltExecutor> MakeExecutor(const ExecutorFlags& f) {
  BuiltExecutor out;
  if (f.kind == "process") {
    if (!f.kubeconfig.empty() || !f.context.empty() || !f.namespace_.empty() || !f.image.empty()) {
      return InvalidArgumentError("--kubeconfig, --context, --namespace and --image need --executor kube");
    }
    ci::ProcessExecutorOptions eo;
    eo.sandbox = !f.no_sandbox;
    for (const auto& p : f.sandbox_paths) {
      if (!p.starts_with('/')) return InvalidArgumentError("--sandbox-path {:?} must be absolute", p);
    }
    eo.extra_ro_paths = f.sandbox_paths;
    if (f.step_uid && ::geteuid() != 0) {
      return InvalidArgumentError("--step-uid needs a server run as root (steps already run as this user, uid {})",
                                  ::geteuid());
    }
    uint32_t uid = f.step_uid.value_or(kDefaultStepUid);
    if (f.server && !f.no_sandbox && ::geteuid() == 0 && uid != 0) eo.step_user = std::pair{uid, uid};
    if (f.server && !f.no_sandbox && ::geteuid() == 0 && uid == 0) {
      log::Warn("ci: --step-uid 0: steps' uid in the sandbox maps to root on this host");
    }
    GANTRY_ASSIGN_OR_RETURN(out.executor, ci::NewProcessExecutor(eo));
    return out;
  }
  if (f.no_sandbox || !f.sandbox_paths.empty()) {
    return InvalidArgumentError("--no-sandbox and --sandbox-path are for --executor process");
  }
  kube::LoadOptions lo;
  if (!f.kubeconfig.empty()) lo.paths = {f.kubeconfig};
  lo.context = f.context;
  lo.namespace_ = f.namespace_;
  GANTRY_ASSIGN_OR_RETURN(kube::RestConfig config, kube::LoadConfig(lo));
  GANTRY_ASSIGN_OR_RETURN(out.client, kube::NewHttpClient(config));
  ci::KubernetesExecutorOptions ko;
  ko.namespace_ = config.namespace_.empty() ? "default" : config.namespace_;
  if (!f.image.empty()) ko.default_image = f.image;
  out.executor = ci::NewKubernetesExecutor(*out.client, ko);
  return out;
}

struct CiRunFlags {
  std::string dir = ".";
  std::vector<std::string> steps;
  std::string event = "manual";
  std::string branch;
  std::string secrets_file;
  std::vector<std::string> secret_env;
  ExecutorFlags executor;
  bool quiet = false;
  int parallel = 4;
  std::string cache_dir;
};

int RunCi(const CiRunFlags& f) {
  fs::path dir = fs::absolute(f.dir);
  fs::path file = dir / ".gantry" / "pipeline.yaml";
  auto text = ReadFile(file, 1 << 20);
  if (!text.ok()) {
    fmt::print(stderr, "error: {}: {}\n", file.string(), text.status().message());
    return 3;
  }
  auto pipeline = ci::ParsePipeline(*text, ".gantry/pipeline.yaml");
  if (!pipeline.ok()) {
    fmt::print(stderr, "error: {}\n", pipeline.status().message());
    return 3;
  }
  auto executor = MakeExecutor(f.executor);
  if (!executor.ok()) {
    fmt::print(stderr, "error: {}\n", executor.status().message());
    return executor.status().code() == Code::kInvalidArgument ? 2 : 3;
  }
  if (f.executor.kind == "kube") {
    fmt::print(stderr, "note: the kube executor does not ship {} to the cluster: steps start in an empty /workspace\n",
               dir.string());
  }
  ci::RunOptions ro;
  ro.workspace = dir;
  std::string tmpl = (fs::temp_directory_path() / "gantry-ci-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    fmt::print(stderr, "error: cannot create a run directory\n");
    return 3;
  }
  ro.run_dir = tmpl;
  ro.cache_root = f.cache_dir.empty() ? dir / ".gantry" / "cache" : fs::path(f.cache_dir);
  ro.context.event = f.event;
  ro.context.branch = f.branch;
  ro.only_steps = f.steps;
  ro.parallelism = f.parallel;
  if (!f.secrets_file.empty()) {
    // The server's file format; a local run is trusted, of no configured repository, never on a
    // protected branch: it gets the unscoped secrets and those of sections matching its event and
    // branch.
    auto s = ci::ReadSecretScopesFile(f.secrets_file);
    if (!s.ok()) {
      fmt::print(stderr, "error: {}\n", s.status().message());
      return 3;
    }
    ci::SelectedSecrets selected =
        ci::Select(*s, {.event = f.event, .branch = f.branch, .trusted = true});
    for (const auto& [name, why] : selected.out_of_scope) {
      fmt::print(stderr, "note: secret {} is not given to this local run ({})\n", name, why);
    }
    ro.secrets = std::move(selected.in_scope);
  }
  for (const auto& name : f.secret_env) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) {
      fmt::print(stderr, "error: --secret-env {}: the variable is not set\n", name);
      return 3;
    }
    ro.secrets[name] = v;
  }
  bool tty = ::isatty(1) != 0;
  ro.on_progress = [&](const ci::Progress& p) {
    switch (p.kind) {
      case ci::Progress::Kind::kStarted: fmt::print("▶ {} started\n", p.step->name); break;
      case ci::Progress::Kind::kOutput:
        if (!f.quiet) {
          std::string_view d = p.data;
          while (!d.empty()) {
            size_t nl = d.find('\n');
            fmt::print("  {} │ {}\n", p.step->name, d.substr(0, nl));
            if (nl == std::string_view::npos) break;
            d.remove_prefix(nl + 1);
          }
        }
        break;
      case ci::Progress::Kind::kFinished: {
        const ci::StepResult& s = *p.step;
        std::string mark = s.state == store::RunState::kSucceeded ? "✔" : s.state == store::RunState::kSkipped ? "○" : "✘";
        fmt::print("{} {} {} in {} ({})\n", mark, s.name, store::Name(s.state), Secs(s.duration), s.message);
        break;
      }
    }
    if (!tty) std::fflush(stdout);
  };
  ci::Runner runner(*pipeline, *executor->executor, ro);
  g_runner.store(&runner);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  auto result = runner.Run();
  g_runner.store(nullptr);
  std::error_code ec;
  fs::remove_all(ro.run_dir, ec);
  if (!result.ok()) {
    fmt::print(stderr, "error: {}\n", result.status().message());
    return 3;
  }
  size_t w = 4;
  for (const auto& s : result->steps) w = std::max(w, s.name.size());
  fmt::print("\n{}  {}  {}  {}\n", Pad("STEP", w), Pad("STATE", 10), Pad("DURATION", 9), "RESULT");
  for (const auto& s : result->steps) {
    fmt::print("{}  {}  {}  {}\n", Pad(s.name, w), Pad(store::Name(s.state), 10), Pad(Secs(s.duration), 9), s.message);
  }
  fmt::print("\npipeline {} {} in {}\n", pipeline->name, store::Name(result->state), Secs(result->duration));
  return result->state == store::RunState::kSucceeded ? 0 : 1;
}

// --- client side of the REST API -------------------------------------------------------------

// Where the REST API is: the server's URL, and the CA bundle that signed its certificate when it
// is not in the system's (a server with --tls-cert of its own CA).
struct ServerClient {
  std::string server = "http://127.0.0.1:8080";
  std::string ca_file;
};

void AddServerClientFlags(CLI::App* cmd, ServerClient& client) {
  cmd->add_option("--server", client.server, "Server URL")->envname("GANTRY_SERVER");
  cmd->add_option("--ca-file", client.ca_file, "PEM CA bundle for an https server URL (default: the system's)")
      ->envname("GANTRY_CA_FILE");
}

// Sends `method` (GET or POST, without a body) to url with GANTRY_TOKEN as the bearer token,
// handing the response body to `sink` as it arrives. Returns the HTTP status or an error.
Result<long> HttpRequest(const ServerClient& client, const char* method, const std::string& url,
                         std::function<bool(std::string_view)> sink) {
  http::ClientRequest request{.method = method, .url = url};
  if (const char* token = std::getenv("GANTRY_TOKEN"); token != nullptr && *token != '\0') {
    request.headers["authorization"] = std::string("Bearer ") + token;
  }
  // No overall timeout: a followed log lasts as long as its run.
  http::Client http_client({.timeout = std::chrono::milliseconds(0), .ca_file = client.ca_file});
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse response, http_client.Send(request, sink));
  return response.status;
}

Result<long> HttpGet(const ServerClient& client, const std::string& url, std::function<bool(std::string_view)> sink) {
  return HttpRequest(client, "GET", url, std::move(sink));
}

std::string Base(std::string s) {
  while (s.ends_with("/")) s.pop_back();
  if (s.find("://") == std::string::npos) s = "http://" + s;
  return s;
}

// "HTTP 404: no run 7" from the API's error body.
std::string HttpError(long status, std::string_view body) {
  return fmt::format("HTTP {}: {}", status, server::ParseApiError(static_cast<int>(status), body).message());
}

int ListRuns(const ServerClient& client) {
  const std::string& server = client.server;
  std::string body;
  auto code = HttpGet(client, Base(server) + "/api/runs", [&](std::string_view d) { body += d; return true; });
  if (!code.ok() || *code != 200) {
    fmt::print(stderr, "error: {}\n", code.ok() ? HttpError(*code, body) : code.status().message());
    return 3;
  }
  auto v = value::ParseJson(body);
  if (!v.ok() || !v->IsSeq()) {
    fmt::print(stderr, "error: unexpected answer from {}\n", server);
    return 3;
  }
  fmt::print("{}  {}  {}  {}  {}  {}\n", Pad("ID", 6), Pad("STATE", 11), Pad("EVENT", 12), Pad("REF", 24), Pad("COMMIT", 12), "MESSAGE");
  auto str = [](const value::Value& r, const char* k) -> std::string {
    const value::Value* x = r.Get(k);
    if (x == nullptr) return "";
    if (x->IsInt()) return std::to_string(x->AsInt());
    return x->IsString() ? std::string(x->AsString()) : "";
  };
  for (const auto& r : v->items()) {
    fmt::print("{}  {}  {}  {}  {}  {}\n", Pad(str(r, "id"), 6), Pad(str(r, "state"), 11), Pad(str(r, "event"), 12),
               Pad(str(r, "ref"), 24), Pad(str(r, "commit").substr(0, 12), 12), str(r, "message"));
  }
  return 0;
}

// POST /api/runs/ID/approve: the run (awaiting approval) is queued.
int ApproveRun(const ServerClient& client, int64_t run) {
  std::string body;
  auto code = HttpRequest(client, "POST", fmt::format("{}/api/runs/{}/approve", Base(client.server), run), [&](std::string_view d) {
    body += d;
    return true;
  });
  if (!code.ok() || *code != 200) {
    fmt::print(stderr, "error: approve run {}: {}\n", run,
               code.ok() ? HttpError(*code, body) : code.status().message());
    return 3;
  }
  fmt::print("run {} {}", run, body);
  return 0;
}

int ShowLogs(const ServerClient& client, int64_t run, bool follow) {
  std::string url = fmt::format("{}/api/runs/{}/logs{}", Base(client.server), run, follow ? "?follow=1" : "");
  long status = 0;
  std::string err;
  // A step's output is untrusted: on a terminal, only its colours pass (cli/terminal.h).
  const bool tty = ::isatty(1) != 0;
  TerminalFilter filter;
  auto code = HttpGet(client, url, [&](std::string_view d) {
    if (g_stop.load()) return false;
    fmt::print("{}", tty ? filter.Feed(d) : std::string(d));
    std::fflush(stdout);
    return true;
  });
  status = code.ok() ? *code : 0;
  if (!code.ok() || status != 200) {
    fmt::print(stderr, "error: {}\n", code.ok() ? fmt::format("HTTP {}", status) : code.status().message());
    return 3;
  }
  return 0;
}

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
  ExecutorFlags executor;
  bool allow_file = false;
  int workers = 1;
  int untrusted_workers = 1;
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
  std::string registry_config;
  std::string registry_ca_file;
  std::vector<std::string> insecure_registries;
  std::vector<std::string> registry_credentials_env;
  std::vector<std::string> notify;
  std::string notify_secret_env;
  std::string deliver_config;
  std::string path_template = "envs/{env}";
  std::string health_timeout = "5m";
  std::string api_token_env;
};

// "host=user:password" from the variable `env` (never a flag: it would show in ps).
Result<std::string> SecretFromEnv(const std::string& flag, const std::string& env) {
  const char* v = std::getenv(env.c_str());
  if (v == nullptr || *v == '\0') return InvalidArgumentError("{} {}: the variable is not set", flag, env);
  return std::string(v);
}

// The release services of `gantry server`: InvalidArgument for bad flags (exit 2), others exit 3.
struct ReleaseSetup {
  std::unique_ptr<git::Mirrors> mirrors;
  std::unique_ptr<oci::Registry> registry;
  release::ReleaseServices services;
};

Result<std::unique_ptr<ReleaseSetup>> SetUpRelease(const ServerFlags& f, store::Store& store, const fs::path& data_dir) {
  auto setup = std::make_unique<ReleaseSetup>();
  release::ReleaseServices& s = setup->services;
  s.store = &store;
  s.config_repos = f.config_repos;
  for (const auto& url : f.config_repos) GANTRY_RETURN_IF_ERROR(git::ValidateUrl(url, f.allow_file).WithContext("--config-repo"));
  for (const auto& env : f.git_credentials_env) {
    GANTRY_ASSIGN_OR_RETURN(std::string v, SecretFromEnv("--git-credentials-env", env));
    GANTRY_ASSIGN_OR_RETURN(git::Credentials c, git::ParseCredentials(v));
    s.config_credentials.push_back(std::move(c));
  }
  s.config_git.allow_file = f.allow_file;
  setup->mirrors = std::make_unique<git::Mirrors>(data_dir / "config-mirrors");
  s.open_config_repo = [mirrors = setup->mirrors.get()](const std::string& url, const git::OpenOptions& options) {
    return mirrors->Open(url, options);
  };
  oci::RegistryOptions ro;
  ro.docker_config = f.registry_config;
  ro.ca_file = f.registry_ca_file;
  ro.insecure_http_hosts = f.insecure_registries;
  ro.upload_state_dir = data_dir / "uploads";
  for (const auto& env : f.registry_credentials_env) {
    GANTRY_ASSIGN_OR_RETURN(std::string v, SecretFromEnv("--registry-credentials-env", env));
    GANTRY_ASSIGN_OR_RETURN(git::Credentials c, git::ParseCredentials(v));
    ro.credentials.push_back({.host = c.host, .username = c.username, .password = c.password});
  }
  GANTRY_ASSIGN_OR_RETURN(setup->registry, oci::NewHttpRegistry(std::move(ro)));
  s.registry = setup->registry.get();
  s.image_dir = data_dir / "images";
  if (!f.notify.empty()) {
    if (f.notify_secret_env.empty()) return InvalidArgumentError("--notify needs --notify-secret-env (agents refuse unsigned webhooks)");
    GANTRY_ASSIGN_OR_RETURN(std::string secret, SecretFromEnv("--notify-secret-env", f.notify_secret_env));
    for (const auto& url : f.notify) s.notify.push_back({.url = url, .secret = secret});
  }
  if (!f.deliver_config.empty()) {
    GANTRY_ASSIGN_OR_RETURN(deliver::Config config, deliver::LoadConfigDirIfExists(f.deliver_config));
    GANTRY_RETURN_IF_ERROR(deliver::PromotionOrder(config).status().WithContext("--deliver-config " + f.deliver_config));
    s.deliver_config = std::move(config);
  }
  s.connect = [](const deliver::Cluster& c) { return deliver::Connect(c); };
  if (const char* k = std::getenv("GANTRY_KUSTOMIZE"); k != nullptr && *k != '\0') s.render.kustomize_binary = k;
  if (const char* h = std::getenv("GANTRY_HELM"); h != nullptr && *h != '\0') s.render.helm_binary = h;
  s.path_template = f.path_template;
  auto timeout = ParseDuration(f.health_timeout);
  if (!timeout.ok()) return InvalidArgumentError("--health-timeout {:?}: expected a duration such as 5m", f.health_timeout);
  s.health_timeout = *timeout;
  return setup;
}

int RunServer(const ServerFlags& f) {
  http::Options ho;
  auto listen = http::ParseListen(f.listen, "--listen");
  if (!listen.ok()) {
    fmt::print(stderr, "error: {}\n", listen.status().message());
    return 2;
  }
  ho.address = listen->host;
  ho.port = listen->port;
  ho.tls_cert_file = f.tls_cert;
  ho.tls_key_file = f.tls_key;
  ci::ServerOptions so;
  server::CiFrontOptions front_options;
  so.repos = f.repos;
  so.data_dir = fs::absolute(f.data_dir);
  so.worker_name = f.worker;
  so.workers = f.workers;
  so.untrusted_workers = f.untrusted_workers;
  so.max_attempts = f.max_attempts;
  so.protected_branches = f.protected_branches;
  for (auto [flag, text, into] : {std::tuple{"--trusted-timeout", &f.trusted_timeout, &so.trusted_step_timeout},
                                  std::tuple{"--untrusted-timeout", &f.untrusted_timeout, &so.untrusted_step_timeout}}) {
    auto d = ParseDuration(*text);
    if (!d.ok()) {
      fmt::print(stderr, "error: {} {:?}: expected a duration such as 30m (0 = no cap)\n", flag, *text);
      return 2;
    }
    *into = *d;
  }
  for (auto [flag, text, into] : {std::tuple{"--max-workspace", &f.max_workspace, &so.max_workspace_bytes},
                                  std::tuple{"--max-artifacts", &f.max_artifacts, &so.max_artifact_bytes},
                                  std::tuple{"--max-log", &f.max_log, &so.max_log_bytes},
                                  std::tuple{"--cache-quota", &f.cache_quota, &so.cache_quota_bytes}}) {
    auto n = ci::ParseSize(*text);
    if (!n) {
      fmt::print(stderr, "error: {} {:?}: expected a size such as 20Gi or 500M (0 = no limit)\n", flag, *text);
      return 2;
    }
    *into = *n;
  }
  so.git.allow_file = f.allow_file;
  auto poll = ParseDuration(f.poll);
  if (!poll.ok()) {
    fmt::print(stderr, "error: --poll {:?}: expected a duration such as 60s\n", f.poll);
    return 2;
  }
  so.poll_interval = *poll;
  so.poll_branches = f.poll_branches;
  auto provider = webhook::ParseProvider(f.provider);
  if (!provider.ok()) {
    fmt::print(stderr, "error: {}\n", provider.status().message());
    return 2;
  }
  front_options.webhook.provider = *provider;
  so.policy.provider = *provider;
  if (!f.policy.empty()) {
    auto p = ci::ParseRepoPolicy("* " + f.policy, so.policy);
    if (!p.ok()) {
      fmt::print(stderr, "error: --policy: {}\n", p.status().message());
      return 2;
    }
    so.policy = p->second;
  }
  for (const auto& spec : f.repo_policies) {
    auto p = ci::ParseRepoPolicy(spec, so.policy);
    if (!p.ok() || std::find(f.repos.begin(), f.repos.end(), p->first) == f.repos.end()) {
      fmt::print(stderr, "error: {}\n", p.ok() ? fmt::format("--repo-policy {}: not a --repo", p->first) : p.status().message());
      return 2;
    }
    so.repo_policies[p->first] = p->second;
  }
  const char* secret = f.webhook_secret_env.empty() ? nullptr : std::getenv(f.webhook_secret_env.c_str());
  if (secret == nullptr || *secret == '\0') {
    fmt::print(stderr, "error: --webhook-secret-env must name a set, non-empty variable (unsigned webhooks are refused)\n");
    return 2;
  }
  front_options.webhook.secret = secret;
  if (!f.api_token_env.empty()) {
    const char* token = std::getenv(f.api_token_env.c_str());
    if (token == nullptr || std::string_view(token).size() < 16) {
      fmt::print(stderr, "error: --api-token-env {}: the variable must hold a token of at least 16 characters\n", f.api_token_env);
      return 2;
    }
    front_options.api_token = token;
  } else {
    auto token = server::LoadOrCreateApiToken(so.data_dir);
    if (!token.ok()) {
      fmt::print(stderr, "error: the REST API token: {}\n", token.status().message());
      return 3;
    }
    front_options.api_token = *token;
    fmt::print("the REST API's token is in {0} (clients: export GANTRY_TOKEN=$(cat {0}))\n", (so.data_dir / "api-token").string());
  }
  ho.max_body_bytes = front_options.webhook.max_body_bytes;
  if (!f.secrets_file.empty()) {
    auto s = ci::ReadSecretScopesFile(f.secrets_file);
    if (!s.ok()) {
      fmt::print(stderr, "error: {}\n", s.status().message());
      return 3;
    }
    so.secrets = std::move(*s);
  }
  auto store_url = StoreUrl(f.store, "");
  auto st = store_url.ok() ? store::Open(*store_url) : Result<std::unique_ptr<store::Store>>(store_url.status());
  if (!st.ok()) {
    fmt::print(stderr, "error: store {}: {}\n", store::RedactUrl(store_url.value_or(f.store)), st.status().message());
    return 3;
  }
  auto executor = MakeExecutor(f.executor);
  if (!executor.ok()) {
    fmt::print(stderr, "error: {}\n", executor.status().message());
    return executor.status().code() == Code::kInvalidArgument ? 2 : 3;
  }
  auto release = SetUpRelease(f, **st, so.data_dir);
  if (!release.ok()) {
    fmt::print(stderr, "error: {}\n", release.status().message());
    return release.status().code() == Code::kInvalidArgument ? 2 : 3;
  }
  // The app repositories' credential too (one host for all of them; ci::Server takes one).
  if (!f.repos.empty()) so.git.credentials = git::CredentialsFor((*release)->services.config_credentials, f.repos.front());
  so.after_success = [services = &(*release)->services](const ci::SucceededRun& r) -> Status {
    release::ReleaseRequest req{.run_id = r.run.id, .repo = r.run.repo, .commit = r.commit, .ref = r.run.ref,
                               .workspace = r.workspace, .log = r.log, .cancel = r.cancel};
    auto result = release::RunRelease(*services, r.pipeline, req);
    if (!result.ok()) return result.status();
    if (result->deploy_phase && *result->deploy_phase != deliver::Phase::kSucceeded) {
      return FailedPreconditionError("deploy: release {} ended {}", result->release_id, deliver::Name(*result->deploy_phase));
    }
    return OkStatus();
  };
  server::Front front("server", ho);
  front.AddHealth();
  ci::Server ci_server(**st, *executor->executor, so);
  if (Status s = server::ServeCi(front, ci_server, std::move(front_options)); !s.ok()) {
    fmt::print(stderr, "error: {}\n", s.message());
    return 3;
  }
  if (Status s = ci_server.Start(); !s.ok()) {
    fmt::print(stderr, "error: {}\n", s.message());
    return 3;
  }
  if (Status s = front.Start(); !s.ok()) {
    fmt::print(stderr, "error: listen {}: {}\n", f.listen, s.message());
    return 3;
  }
  fmt::print("gantry server listening on {}:{}\n", ho.address.find(':') == std::string::npos ? ho.address : "[" + ho.address + "]",
             front.port());
  std::fflush(stdout);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  front.Stop();
  ci_server.Stop();
  return 0;
}

}  // namespace

void AddCiCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto* ci_cmd = app.add_subcommand("ci", "Run CI pipelines (.gantry/pipeline.yaml)");
  ci_cmd->require_subcommand(1);
  auto f = std::make_shared<CiRunFlags>();
  auto* run = ci_cmd->add_subcommand("run", "Run a repository's pipeline locally, with live progress");
  run->add_option("dir", f->dir, "Repository directory (default .)");
  run->add_option("--step", f->steps, "Run only this step and what it needs (repeatable)");
  run->add_option("--event", f->event, "Event for triggers and when: filters")
      ->check(CLI::IsMember({"push", "tag", "pull_request", "manual"}));
  run->add_option("--branch", f->branch, "Branch for when: filters");
  run->add_option("--secrets-file", f->secrets_file, "NAME=VALUE lines (mode 0600) with the secrets steps may ask for");
  run->add_option("--secret-env", f->secret_env, "Take secret NAME from this process's environment (repeatable)");
  run->add_option("--parallel", f->parallel, "Steps run at once")->check(CLI::Range(1, 64));
  run->add_option("--cache-dir", f->cache_dir, "Cache root (default DIR/.gantry/cache)");
  AddExecutorFlags(run, f->executor);
  run->add_flag("-q,--quiet", f->quiet, "Do not print step output, only progress");
  run->callback([f, &exit_code] { exit_code = RunCi(*f); });
}

void AddServerCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
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
  cmd->add_option("--api-token-env", f->api_token_env,
                  "Variable holding the bearer token the REST API requires (clients: GANTRY_TOKEN); default: "
                  "DATA_DIR/api-token, generated when missing");
  cmd->add_option("--webhook-provider", f->provider, "github, gitlab, gitea, forgejo, bitbucket, generic or auto");
  cmd->add_option("--repo", f->repos, "Repository URL to build (repeatable)")->required();
  cmd->add_option("--data-dir", f->data_dir, "Mirrors, workspaces, artifacts and caches");
  cmd->add_option("--secrets-file", f->secrets_file, "NAME=VALUE lines (mode 0600), scoped by [repo=.. branch=.. protected] headers");
  cmd->add_option("--poll", f->poll, "Poll the repositories' branches this often (0 = off)");
  cmd->add_option("--poll-branch", f->poll_branches, "Branches to poll (default main)");
  cmd->add_option("--worker", f->worker, "This server's name in the store (claims, restart recovery)");
  cmd->add_option("--workers", f->workers, "Trusted runs at once (pushes, tags, pull requests from the repository)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--untrusted-workers", f->untrusted_workers, "Untrusted runs at once (pull requests from forks), separate from --workers")
      ->check(CLI::Range(1, 64));
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
  cmd->add_option("--git-credentials-env", f->git_credentials_env, "Variable holding host=user:password for Git (repeatable)");
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
  cmd->callback([f, &exit_code] { exit_code = RunServer(*f); });
}

void AddRunsCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto client = std::make_shared<ServerClient>();
  auto run = std::make_shared<int64_t>(0);
  auto* cmd = app.add_subcommand("runs", "List CI runs of a server");
  AddServerClientFlags(cmd, *client);
  auto* approve = cmd->add_subcommand("approve", "Let a run that awaits approval (an untrusted pull request) run");
  approve->add_option("run", *run, "Run id")->required();
  AddServerClientFlags(approve, *client);
  approve->callback([client, run, &exit_code] { exit_code = ApproveRun(*client, *run); });
  cmd->callback([client, approve, &exit_code] {
    if (!approve->parsed()) exit_code = ListRuns(*client);
  });
}

void AddLogsCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  struct LogsFlags {
    ServerClient client;
    int64_t run = 0;
    bool follow = false;
  };
  auto f = std::make_shared<LogsFlags>();
  auto* cmd = app.add_subcommand("logs", "Print the logs of a CI run");
  cmd->add_option("run", f->run, "Run id")->required();
  cmd->add_flag("-f,--follow", f->follow, "Follow until the run ends");
  AddServerClientFlags(cmd, f->client);
  cmd->callback([f, &exit_code] {
    signal(SIGINT, OnSignal);
    exit_code = ShowLogs(f->client, f->run, f->follow);
  });
}

}  // namespace gantry::cli
