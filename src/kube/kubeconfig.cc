// Reading kubeconfig files the way kubectl does (k8s.io/client-go/tools/clientcmd).

#include <cstdlib>
#include <filesystem>
#include <map>

#include "base/path.h"
#include "kube/kube.h"
#include "base/base64.h"

namespace gantry::kube {
namespace fs = std::filesystem;

namespace {

// A named entry (cluster, user, context) and the file that defined it.
struct Named {
  value::Value body;
  fs::path dir;   // relative paths in `body` are relative to this
  std::string file;
};

struct Merged {
  std::map<std::string, Named> clusters, users, contexts;
  std::string current_context;
  std::vector<std::string> files;
};

std::string Pos(const value::Value& v) {
  value::Mark m = v.mark();
  return m.file.empty() ? std::string("kubeconfig") : fmt::format("{}:{}:{}", m.file, m.line, m.column);
}

Status MergeSection(const value::Value& doc, std::string_view section, std::string_view inner,
                    const fs::path& dir, const std::string& file, std::map<std::string, Named>& into) {
  const value::Value* list = doc.Get(section);
  if (list == nullptr || list->IsNull()) return OkStatus();
  if (!list->IsSeq()) return InvalidArgumentError("{}: {} must be a list", Pos(*list), section);
  for (const value::Value& item : list->items()) {
    std::string name = item.IsMap() ? value::StringAt(&item, {"name"}) : "";
    if (name.empty()) return InvalidArgumentError("{}: an entry of {} has no name", Pos(item), section);
    const value::Value* body = item.Get(inner);
    // The first file to define a name wins, as with kubectl.
    into.try_emplace(name, Named{body ? *body : value::Value::Map(), dir, file});
  }
  return OkStatus();
}

Status MergeFile(const std::string& path, Merged& m) {
  auto text = ReadFile(path, 16u << 20);
  if (!text.ok()) return text.status().WithContext("read kubeconfig");
  auto docs = value::ParseYaml(*text, path);
  if (!docs.ok()) return docs.status().WithContext("parse kubeconfig");
  m.files.push_back(path);
  if (docs->empty()) return OkStatus();
  const value::Value& doc = (*docs)[0];
  if (!doc.IsMap()) return InvalidArgumentError("{}: a kubeconfig must be a map", Pos(doc));
  fs::path dir = fs::absolute(path).parent_path();
  GANTRY_RETURN_IF_ERROR(MergeSection(doc, "clusters", "cluster", dir, path, m.clusters));
  GANTRY_RETURN_IF_ERROR(MergeSection(doc, "users", "user", dir, path, m.users));
  GANTRY_RETURN_IF_ERROR(MergeSection(doc, "contexts", "context", dir, path, m.contexts));
  if (m.current_context.empty()) m.current_context = value::StringAt(&doc, {"current-context"});
  return OkStatus();
}

std::string Resolve(const fs::path& dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  if (p.starts_with("~/")) {
    const char* home = std::getenv("HOME");
    return home ? (fs::path(home) / p.substr(2)).string() : p;
  }
  return (dir / p).string();
}

// Inline *-data (base64) wins over the file, as with kubectl.
Result<std::string> DataOrFile(const Named& n, std::string_view data_key, std::string_view file_key) {
  std::string data = value::StringAt(&n.body, {data_key});
  if (!data.empty()) {
    auto decoded = Base64Decode(data);
    if (!decoded) {
      return InvalidArgumentError("{}: {} is not valid base64", Pos(*n.body.Get(data_key)), data_key);
    }
    return *decoded;
  }
  std::string file = value::StringAt(&n.body, {file_key});
  if (file.empty()) return std::string();
  auto text = ReadFile(Resolve(n.dir, file), 1u << 20);
  if (!text.ok()) return text.status().WithContext(fmt::format("{} of {}", file_key, n.file));
  return *text;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

constexpr std::string_view kExecV1 = "client.authentication.k8s.io/v1";
constexpr std::string_view kExecV1beta1 = "client.authentication.k8s.io/v1beta1";
constexpr std::string_view kExecExtension = "client.authentication.k8s.io/exec";

// The `exec` stanza of a user, checked as client-go checks it, and allowed by name.
Result<ExecConfig> ParseExec(const value::Value& exec, const std::string& user_name, const Named& user,
                             const Named& cluster, const LoadOptions& options) {
  ExecConfig out;
  out.user = fmt::format("user {:?} in {}", user_name, user.file);
  std::string command = value::StringAt(&exec, {"command"});
  if (command.empty()) return InvalidArgumentError("{}: exec has no command", Pos(exec));
  std::string base = fs::path(command).filename().string();
  bool allowed = false;
  for (const auto& a : options.allowed_exec_plugins) allowed |= (a == base || a == command);
  if (!allowed) {
    return PermissionDeniedError(
        "user {:?} in {} authenticates with the exec credential plugin {:?}; Gantry runs no "
        "plugin named by a kubeconfig unless it is allowed (--allow-exec-plugin {})",
        user_name, user.file, command, base);
  }
  // As kubectl: a command with a slash is relative to the kubeconfig that names it; a bare name is
  // looked up in PATH when it runs.
  out.command = command.find('/') == std::string::npos ? command : Resolve(user.dir, command);
  out.api_version = value::StringAt(&exec, {"apiVersion"});
  if (out.api_version != kExecV1 && out.api_version != kExecV1beta1) {
    return InvalidArgumentError("{}: exec apiVersion {:?} is not supported; use {} (or {})", Pos(exec),
                                out.api_version, kExecV1, kExecV1beta1);
  }
  if (const value::Value* args = exec.Get("args"); args && !args->IsNull()) {
    if (!args->IsSeq()) return InvalidArgumentError("{}: exec args must be a list of strings", Pos(*args));
    for (const value::Value& a : args->items()) {
      if (!a.IsString()) return InvalidArgumentError("{}: exec args must be strings", Pos(a));
      out.args.emplace_back(a.AsString());
    }
  }
  if (const value::Value* env = exec.Get("env"); env && !env->IsNull()) {
    if (!env->IsSeq()) return InvalidArgumentError("{}: exec env must be a list of {{name, value}}", Pos(*env));
    for (const value::Value& e : env->items()) {
      std::string name = e.IsMap() ? value::StringAt(&e, {"name"}) : "";
      if (name.empty()) return InvalidArgumentError("{}: an exec env entry has no name", Pos(e));
      const value::Value* v = e.Get("value");
      if (v != nullptr && !v->IsNull() && !v->IsString()) {
        return InvalidArgumentError("{}: exec env {} must be a string; quote it", Pos(*v), name);
      }
      out.env.emplace_back(name, v != nullptr && v->IsString() ? std::string(v->AsString()) : "");
    }
  }
  // v1 requires interactiveMode; v1beta1 defaults to IfAvailable. Gantry has no terminal to give.
  std::string mode = value::StringAt(&exec, {"interactiveMode"});
  if (mode.empty() && out.api_version == kExecV1) {
    return InvalidArgumentError("{}: exec of {} sets no interactiveMode, which {} requires (Never or IfAvailable)",
                                Pos(exec), out.user, kExecV1);
  }
  if (mode == "Always") {
    return InvalidArgumentError(
        "{}: exec plugin {:?} of {} has interactiveMode Always, but Gantry runs without a terminal; "
        "configure the plugin to log in non-interactively (a service principal, workload identity or a "
        "cached login) and set interactiveMode to Never or IfAvailable",
        Pos(exec), command, out.user);
  }
  if (!mode.empty() && mode != "Never" && mode != "IfAvailable") {
    return InvalidArgumentError("{}: exec interactiveMode {:?} is not Never, IfAvailable or Always", Pos(exec), mode);
  }
  out.provide_cluster_info = value::BoolAt(&exec, {"provideClusterInfo"});
  out.install_hint = value::StringAt(&exec, {"installHint"});
  if (const value::Value* ext = cluster.body.Get("extensions"); ext && ext->IsSeq()) {
    for (const value::Value& e : ext->items()) {
      if (!e.IsMap() || value::StringAt(&e, {"name"}) != kExecExtension) continue;
      if (const value::Value* body = e.Get("extension"); body && !body->IsNull()) {
        out.cluster_config = value::ToJson(*body);
      }
    }
  }
  out.timeout = options.exec_timeout;
  return out;
}

}  // namespace

std::pair<std::string, std::string> SplitApiVersion(std::string_view api_version) {
  size_t slash = api_version.find('/');
  if (slash == std::string_view::npos) return {"", std::string(api_version)};
  return {std::string(api_version.substr(0, slash)), std::string(api_version.substr(slash + 1))};
}

std::string ObjectRef::ToString() const {
  return namespace_.empty() ? fmt::format("{} {} {}", api_version, kind, name)
                            : fmt::format("{} {} {}/{}", api_version, kind, namespace_, name);
}

std::string ServiceAccountUser(std::string_view namespace_, std::string_view name) {
  return fmt::format("system:serviceaccount:{}:{}", namespace_, name);
}

ObjectRef RefOf(const value::Value& object) {
  ObjectRef ref;
  ref.api_version = value::StringAt(&object, {"apiVersion"});
  ref.kind = value::StringAt(&object, {"kind"});
  if (const value::Value* meta = object.Get("metadata"); meta && meta->IsMap()) {
    ref.namespace_ = value::StringAt(meta, {"namespace"});
    ref.name = value::StringAt(meta, {"name"});
  }
  return ref;
}

Result<RestConfig> LoadConfig(const LoadOptions& options) {
  std::vector<std::string> paths = options.paths;
  if (paths.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env && *env) {
      std::string_view rest(env);
      while (!rest.empty()) {
        size_t colon = rest.find(':');
        std::string_view p = rest.substr(0, colon);
        if (!p.empty()) paths.emplace_back(p);
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
      }
    } else if (const char* home = std::getenv("HOME")) {
      paths.push_back(std::string(home) + "/.kube/config");
    }
  }
  if (paths.empty()) return NotFoundError("no kubeconfig: KUBECONFIG and HOME are unset");

  Merged m;
  for (const std::string& p : paths) {
    // As kubectl: missing files named in KUBECONFIG are skipped; an explicit single file must exist.
    std::error_code ec;
    if (!fs::exists(p, ec) && paths.size() > 1) continue;
    GANTRY_RETURN_IF_ERROR(MergeFile(p, m));
  }
  if (m.files.empty()) return NotFoundError("no kubeconfig file exists among {}", Join(paths));

  std::string context_name = options.context.empty() ? m.current_context : options.context;
  if (context_name.empty()) {
    return NotFoundError("kubeconfig {} has no current-context; pass a context", Join(m.files));
  }
  auto ctx = m.contexts.find(context_name);
  if (ctx == m.contexts.end()) {
    return NotFoundError("context {:?} not found in kubeconfig {}", context_name, Join(m.files));
  }
  const value::Value& c = ctx->second.body;
  std::string cluster_name = options.cluster.empty() ? value::StringAt(&c, {"cluster"}) : options.cluster;
  std::string user_name = options.user.empty() ? value::StringAt(&c, {"user"}) : options.user;

  RestConfig config;
  config.context = context_name;
  config.namespace_ = options.namespace_.empty() ? value::StringAt(&c, {"namespace"}) : options.namespace_;
  if (config.namespace_.empty()) config.namespace_ = "default";

  auto cl = m.clusters.find(cluster_name);
  if (cl == m.clusters.end()) {
    return NotFoundError("cluster {:?} of context {:?} not found in kubeconfig {}", cluster_name,
                         context_name, Join(m.files));
  }
  const Named& cluster = cl->second;
  config.server = value::StringAt(&cluster.body, {"server"});
  while (config.server.ends_with('/')) config.server.pop_back();
  if (config.server.empty()) {
    return InvalidArgumentError("cluster {:?} in {} has no server", cluster_name, cluster.file);
  }
  config.insecure_skip_tls_verify = value::BoolAt(&cluster.body, {"insecure-skip-tls-verify"});
  config.tls_server_name = value::StringAt(&cluster.body, {"tls-server-name"});
  config.proxy_url = value::StringAt(&cluster.body, {"proxy-url"});
  GANTRY_ASSIGN_OR_RETURN(config.ca_pem,
                          DataOrFile(cluster, "certificate-authority-data", "certificate-authority"));
  if (config.insecure_skip_tls_verify && !config.ca_pem.empty()) {
    return InvalidArgumentError(
        "cluster {:?} in {} sets both a certificate authority and insecure-skip-tls-verify",
        cluster_name, cluster.file);
  }

  if (!user_name.empty()) {
    auto us = m.users.find(user_name);
    if (us == m.users.end()) {
      return NotFoundError("user {:?} of context {:?} not found in kubeconfig {}", user_name,
                           context_name, Join(m.files));
    }
    const Named& user = us->second;
    if (const value::Value* exec = user.body.Get("exec"); exec && exec->IsMap()) {
      GANTRY_ASSIGN_OR_RETURN(config.exec, ParseExec(*exec, user_name, user, cluster, options));
      return config;
    }
    if (const value::Value* provider = user.body.Get("auth-provider"); provider != nullptr) {
      std::string name = value::StringAt(provider, {"name"});
      return PermissionDeniedError(
          "user {:?} in {} uses auth-provider {:?}, which Kubernetes removed (kubectl 1.26) and Gantry "
          "does not run; switch the user to its exec credential plugin (gke-gcloud-auth-plugin for GKE, "
          "kubelogin for AKS and OIDC (`kubelogin convert-kubeconfig`), `aws eks get-token` for EKS) and "
          "allow it with --allow-exec-plugin NAME (docs/clusters.md)",
          user_name, user.file, name);
    }
    GANTRY_ASSIGN_OR_RETURN(config.client_cert_pem,
                            DataOrFile(user, "client-certificate-data", "client-certificate"));
    GANTRY_ASSIGN_OR_RETURN(config.client_key_pem, DataOrFile(user, "client-key-data", "client-key"));
    if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
      return InvalidArgumentError("user {:?} in {} has a client certificate without a key, or a key "
                                  "without a certificate", user_name, user.file);
    }
    config.token = value::StringAt(&user.body, {"token"});
    std::string token_file = value::StringAt(&user.body, {"tokenFile"});
    if (config.token.empty() && !token_file.empty()) config.token_file = Resolve(user.dir, token_file);
    config.username = value::StringAt(&user.body, {"username"});
    config.password = value::StringAt(&user.body, {"password"});
  }
  return config;
}

Result<RestConfig> InClusterConfig(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || !*host || !*port) {
    return NotFoundError("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset");
  }
  std::string dir = root + "/var/run/secrets/kubernetes.io/serviceaccount";
  RestConfig config;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
  config.server = fmt::format("https://{}:{}", h, port);
  config.token_file = dir + "/token";
  auto token = ReadFile(config.token_file, 64 << 10);
  if (!token.ok()) return token.status().WithContext("in-cluster service account token");
  config.token = *token;
  while (!config.token.empty() && (config.token.back() == '\n' || config.token.back() == '\r')) {
    config.token.pop_back();
  }
  GANTRY_ASSIGN_OR_RETURN(config.ca_pem, ReadFile(dir + "/ca.crt", 1 << 20));
  auto ns = ReadFile(dir + "/namespace", 4096);
  config.namespace_ = ns.ok() && !ns->empty() ? *ns : "default";
  while (!config.namespace_.empty() && config.namespace_.back() == '\n') config.namespace_.pop_back();
  return config;
}

}  // namespace gantry::kube
