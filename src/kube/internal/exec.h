#pragma once
// ExecCredentials: the credential of an exec plugin (kube.h ExecConfig), run as kubectl runs it
// and cached until shortly before it expires. Private to the kube module: HttpClient holds one per
// cluster connection and asks it for the credential of each request.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "kube/kube.h"

namespace gantry::kube::internal {

struct ExecCredential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::optional<std::chrono::system_clock::time_point> expiry;  // none: valid until a 401
};

// The KUBERNETES_EXEC_INFO the plugin of `config` is given (an ExecCredential as JSON).
std::string ExecInfo(const RestConfig& config);

// Reads a plugin's stdout: an ExecCredential of `api_version` whose status has a token or both a
// client certificate and key. InvalidArgument naming what is wrong otherwise.
Result<ExecCredential> ParseExecOutput(std::string_view out, std::string_view api_version);

// Runs the plugin of `config` once (config.exec must be set). NotFound with the install hint when
// the command does not exist; DeadlineExceeded when it runs past its timeout (it is killed);
// Unauthenticated when it fails (with the tail of its stderr) or prints no usable credential.
// Its stderr goes to the log either way.
Result<ExecCredential> RunExecPlugin(const RestConfig& config);

// The cached credential of one cluster. Thread-safe: concurrent callers wait for one run.
class ExecCredentials {
 public:
  explicit ExecCredentials(RestConfig config, Clock* clock = nullptr)
      : config_(std::move(config)), clock_(clock ? *clock : SystemClock()) {}

  // The credential to send: the cached one while it has more than kRefreshBefore left, else a
  // fresh one from the plugin.
  Result<std::shared_ptr<const ExecCredential>> Get();

  // The server refused `used` (401): runs the plugin again unless another caller already replaced
  // `used`, and returns the credential to retry with.
  Result<std::shared_ptr<const ExecCredential>> Refresh(const std::shared_ptr<const ExecCredential>& used);

  // How many times the plugin ran (for tests).
  int runs() const;

  static constexpr std::chrono::seconds kRefreshBefore{10};

 private:
  Result<std::shared_ptr<const ExecCredential>> RunLocked() REQUIRES(mu_);

  const RestConfig config_;
  Clock& clock_;
  mutable Mutex mu_;
  std::shared_ptr<const ExecCredential> current_ GUARDED_BY(mu_);
  int runs_ GUARDED_BY(mu_) = 0;
};

}  // namespace gantry::kube::internal
