// Reaching a configured cluster: kubeconfig, client certificate validity, a /version check.

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/base64.h"
#include "deliver/deliver.h"

namespace gantry::deliver {
namespace {

std::string Asn1TimeString(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  ASN1_TIME_print(bio, t);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

// FailedPrecondition when the PEM client certificate is expired or not yet valid.
Status CheckCertificate(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return InternalError("out of memory");
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return InvalidArgumentError("the client certificate is not a PEM certificate");
  Status result;
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    result = FailedPreconditionError("client certificate expired at {} (renew it, or point the cluster at a fresh kubeconfig)",
                                     Asn1TimeString(X509_get0_notAfter(cert)));
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    result = FailedPreconditionError("client certificate is not valid before {}", Asn1TimeString(X509_get0_notBefore(cert)));
  }
  X509_free(cert);
  return result;
}

Result<kube::RestConfig> Load(const Cluster& cluster) {
  kube::LoadOptions lo{.paths = {cluster.kubeconfig}, .context = cluster.context,
                       .allowed_exec_plugins = cluster.allow_exec_plugins};
  std::error_code ec;
  if (cluster.kubeconfig.empty()) return InvalidArgumentError("no kubeconfig file given");
  if (!std::filesystem::exists(cluster.kubeconfig, ec))
    return NotFoundError("kubeconfig {} does not exist", cluster.kubeconfig);
  return kube::LoadConfig(lo);
}

}  // namespace

Result<std::unique_ptr<kube::Client>> Connect(const Cluster& cluster, const ConnectOptions& options) {
  std::string what = "cluster " + cluster.name;
  auto config = Load(cluster);
  if (!config.ok()) return config.status().WithContext(what);
  if (!config->client_cert_pem.empty()) {
    GANTRY_RETURN_IF_ERROR(CheckCertificate(config->client_cert_pem).WithContext(what));
  }
  kube::ClientOptions co;
  co.connect_timeout = options.timeout;
  if (options.check) {
    kube::ClientOptions check_options = co;
    check_options.request_timeout = options.timeout;
    check_options.max_attempts = 1;
    auto probe = kube::NewHttpClient(*config, check_options);
    if (!probe.ok()) return probe.status().WithContext(what);
    auto version = (*probe)->GetRaw("/version");
    if (!version.ok()) {
      const Status& s = version.status();
      if (s.code() == Code::kUnavailable || s.code() == Code::kDeadlineExceeded)
        return UnavailableError("{}: cannot reach {}: {}", what, config->server, s.message());
      return s.WithContext(fmt::format("{}: {}", what, config->server));
    }
  }
  auto client = kube::NewHttpClient(*config, co);
  if (!client.ok()) return client.status().WithContext(what);
  return client;
}

Result<std::string> FlattenKubeconfig(const Cluster& cluster) {
  auto loaded = Load(cluster);
  if (!loaded.ok()) return loaded.status().WithContext("cluster " + cluster.name);
  const kube::RestConfig& c = *loaded;
  if (!c.username.empty()) return InvalidArgumentError("cluster {}: basic auth is not supported; use --reference", cluster.name);
  value::Value cl = value::Value::Map();
  cl.Set("server", c.server);
  if (!c.ca_pem.empty()) cl.Set("certificate-authority-data", Base64Encode(c.ca_pem));
  if (c.insecure_skip_tls_verify) cl.Set("insecure-skip-tls-verify", true);
  if (!c.tls_server_name.empty()) cl.Set("tls-server-name", c.tls_server_name);
  if (!c.proxy_url.empty()) cl.Set("proxy-url", c.proxy_url);
  value::Value user = value::Value::Map();
  if (!c.client_cert_pem.empty()) user.Set("client-certificate-data", Base64Encode(c.client_cert_pem));
  if (!c.client_key_pem.empty()) user.Set("client-key-data", Base64Encode(c.client_key_pem));
  if (!c.token_file.empty()) {
    user.Set("tokenFile", c.token_file);
  } else if (!c.token.empty()) {
    user.Set("token", c.token);
  }
  if (c.exec) {
    // The plugin is kept, not its credential (which expires): the copy runs it as the original.
    value::Value exec = value::Value::Map();
    exec.Set("apiVersion", c.exec->api_version);
    exec.Set("command", c.exec->command);
    value::Value args = value::Value::Seq();
    for (const auto& a : c.exec->args) args.Append(a);
    exec.Set("args", args);
    value::Value env = value::Value::Seq();
    for (const auto& [k, v] : c.exec->env) {
      value::Value e = value::Value::Map();
      e.Set("name", k);
      e.Set("value", v);
      env.Append(e);
    }
    exec.Set("env", env);
    exec.Set("interactiveMode", "Never");
    if (c.exec->provide_cluster_info) exec.Set("provideClusterInfo", true);
    if (!c.exec->install_hint.empty()) exec.Set("installHint", c.exec->install_hint);
    user.Set("exec", exec);
    if (!c.exec->cluster_config.empty()) {
      auto config = value::ParseJson(c.exec->cluster_config, "exec extension");
      if (!config.ok()) return config.status().WithContext("cluster " + cluster.name);
      value::Value ext = value::Value::Map();
      ext.Set("name", "client.authentication.k8s.io/exec");
      ext.Set("extension", *config);
      value::Value exts = value::Value::Seq();
      exts.Append(ext);
      cl.Set("extensions", exts);
    }
  }
  auto named = [](const std::string& name, std::string_view key, value::Value v) {
    value::Value m = value::Value::Map();
    m.Set("name", name);
    m.Set(key, std::move(v));
    value::Value s = value::Value::Seq();
    s.Append(std::move(m));
    return s;
  };
  value::Value ctx = value::Value::Map();
  ctx.Set("cluster", cluster.name);
  ctx.Set("user", cluster.name);
  if (!c.namespace_.empty()) ctx.Set("namespace", c.namespace_);
  value::Value doc = value::Value::Map();
  doc.Set("apiVersion", "v1");
  doc.Set("kind", "Config");
  doc.Set("clusters", named(cluster.name, "cluster", cl));
  doc.Set("users", named(cluster.name, "user", user));
  doc.Set("contexts", named(cluster.name, "context", ctx));
  doc.Set("current-context", cluster.name);
  return value::ToYaml(doc);
}

}  // namespace gantry::deliver
