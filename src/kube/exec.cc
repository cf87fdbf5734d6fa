// Exec credential plugins (internal/exec.h), as client-go's plugin/pkg/client/auth/exec runs them.

#include "kube/internal/exec.h"

#include <cstdlib>
#include <string_view>

#include "base/base64.h"
#include "base/log.h"
#include "base/process.h"

extern char** environ;

namespace gantry::kube::internal {
namespace {

// What a plugin may see of Gantry's own environment: where programs and the user's configuration
// are, proxies, locale, and the cloud SDKs' settings (profiles, workload identity token files).
// Nothing else: Gantry's secrets (database URLs, tokens) stay out of a program a kubeconfig named.
bool PassedThrough(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR",
      "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"};
  static constexpr std::string_view kPrefixes[] = {"AWS_", "AZURE_", "AAD_", "GOOGLE_", "CLOUDSDK_"};
  for (std::string_view n : kNames) {
    if (name == n) return true;
  }
  for (std::string_view p : kPrefixes) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

// The last `n` lines of `text`, for an error message.
std::string Tail(std::string_view text, int n) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  size_t pos = text.size();
  for (int i = 0; i < n && pos != std::string_view::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return std::string(pos == std::string_view::npos ? text : text.substr(pos + 1));
}

}  // namespace

std::string ExecInfo(const RestConfig& config) {
  const ExecConfig& exec = *config.exec;
  value::Value spec = value::Value::Map();
  spec.Set("interactive", false);
  if (exec.provide_cluster_info) {
    value::Value cluster = value::Value::Map();
    cluster.Set("server", config.server);
    if (!config.tls_server_name.empty()) cluster.Set("tls-server-name", config.tls_server_name);
    if (config.insecure_skip_tls_verify) cluster.Set("insecure-skip-tls-verify", true);
    if (!config.ca_pem.empty()) cluster.Set("certificate-authority-data", Base64Encode(config.ca_pem));
    if (!config.proxy_url.empty()) cluster.Set("proxy-url", config.proxy_url);
    if (!exec.cluster_config.empty()) {
      if (auto c = value::ParseJson(exec.cluster_config, "exec extension"); c.ok()) cluster.Set("config", *c);
    }
    spec.Set("cluster", cluster);
  }
  value::Value info = value::Value::Map();
  info.Set("apiVersion", exec.api_version);
  info.Set("kind", "ExecCredential");
  info.Set("spec", spec);
  return value::ToJson(info);
}

Result<ExecCredential> ParseExecOutput(std::string_view out, std::string_view api_version) {
  auto doc = value::ParseJson(out, "exec plugin output");
  if (!doc.ok() || !doc->IsMap()) {
    std::string shown(out.substr(0, 200));
    return InvalidArgumentError("its output is not an ExecCredential in JSON: {:?}", shown);
  }
  std::string kind = value::StringAt(&*doc, {"kind"});
  std::string version = value::StringAt(&*doc, {"apiVersion"});
  if (kind != "ExecCredential") return InvalidArgumentError("it printed kind {:?}, not ExecCredential", kind);
  if (version != api_version) {
    return InvalidArgumentError("it printed apiVersion {:?}, but the kubeconfig asks for {:?}", version, api_version);
  }
  const value::Value* status = doc->Get("status");
  if (status == nullptr || !status->IsMap()) return InvalidArgumentError("its ExecCredential has no status");
  ExecCredential c;
  c.token = value::StringAt(status, {"token"});
  c.client_cert_pem = value::StringAt(status, {"clientCertificateData"});
  c.client_key_pem = value::StringAt(status, {"clientKeyData"});
  if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
    return InvalidArgumentError("its ExecCredential has a client certificate without a key, or a key without a certificate");
  }
  if (c.token.empty() && c.client_cert_pem.empty()) {
    return InvalidArgumentError("its ExecCredential status has neither a token nor a client certificate and key");
  }
  std::string expiry = value::StringAt(status, {"expirationTimestamp"});
  if (!expiry.empty()) {
    c.expiry = ParseRfc3339(expiry);
    if (!c.expiry) return InvalidArgumentError("its expirationTimestamp {:?} is not an RFC 3339 time", expiry);
  }
  return c;
}

Result<ExecCredential> RunExecPlugin(const RestConfig& config) {
  const ExecConfig& exec = *config.exec;
  std::string what = fmt::format("exec credential plugin {:?} of {}", exec.command, exec.user);
  ProcessOptions po;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos && PassedThrough(kv.substr(0, eq))) {
      po.env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& [k, v] : exec.env) po.env[k] = v;
  po.env["KUBERNETES_EXEC_INFO"] = ExecInfo(config);
  po.timeout = exec.timeout;
  po.max_output_bytes = 1 << 20;
  po.die_with_parent = true;
  std::vector<std::string> argv{exec.command};
  argv.insert(argv.end(), exec.args.begin(), exec.args.end());
  auto run = Run(argv, po);
  if (!run.ok()) {
    if (run.status().code() == Code::kNotFound || run.status().code() == Code::kPermissionDenied) {
      std::string hint = exec.install_hint.empty() ? "" : "\n" + exec.install_hint;
      while (!hint.empty() && hint.back() == '\n') hint.pop_back();
      return Status(run.status().code(), fmt::format("{}: {}{}", what, run.status().message(), hint));
    }
    return run.status().WithContext(what);
  }
  // The plugin's stderr is for the person running Gantry (kubectl shows it): pass it to the log.
  std::string_view err = run->err;
  while (!err.empty()) {
    size_t nl = err.find('\n');
    std::string_view line = err.substr(0, nl);
    if (!line.empty()) log::Info("kube: {}: {}", exec.command, line);
    if (nl == std::string_view::npos) break;
    err.remove_prefix(nl + 1);
  }
  if (run->timed_out) {
    return DeadlineExceededError("{}: killed after {} ms without an answer", what, exec.timeout.count());
  }
  if (!run->success()) {
    std::string tail = Tail(run->err, 5);
    return UnauthenticatedError("{}: {}{}", what, run->Describe(), tail.empty() ? "" : ": " + tail);
  }
  auto cred = ParseExecOutput(run->out, exec.api_version);
  if (!cred.ok()) return UnauthenticatedError("{}: {}", what, cred.status().message());
  return cred;
}

Result<std::shared_ptr<const ExecCredential>> ExecCredentials::Get() {
  MutexLock lock(mu_);
  if (current_ && (!current_->expiry || clock_.WallNow() + kRefreshBefore < *current_->expiry)) return current_;
  return RunLocked();
}

Result<std::shared_ptr<const ExecCredential>> ExecCredentials::Refresh(
    const std::shared_ptr<const ExecCredential>& used) {
  MutexLock lock(mu_);
  if (current_ && current_ != used) return current_;
  return RunLocked();
}

int ExecCredentials::runs() const {
  MutexLock lock(mu_);
  return runs_;
}

Result<std::shared_ptr<const ExecCredential>> ExecCredentials::RunLocked() {
  ++runs_;
  current_.reset();
  GANTRY_ASSIGN_OR_RETURN(ExecCredential c, RunExecPlugin(config_));
  current_ = std::make_shared<const ExecCredential>(std::move(c));
  return current_;
}

}  // namespace gantry::kube::internal
