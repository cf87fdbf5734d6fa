#pragma once
// kube/exec_stream: pods/exec over WebSocket with the v5.channel.k8s.io subprotocol, as kubectl
// exec and client-go's remotecommand speak it. Every WebSocket message is binary: its first byte
// is the channel, the rest the data. 0 stdin (client to server), 1 stdout, 2 stderr, 3 error (one
// metav1.Status as JSON when the command ends: "Success", or "Failure" with reason
// NonZeroExitCode and a cause ExitCode holding the code), 4 resize (unused here); v5 adds 255,
// "close": {255, 0} closes the command's stdin. Client::Exec of the HTTP client (http_client.cc)
// uses ExecOverWebSocket with its cluster's address and credentials.

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/kube.h"

namespace gantry::kube {

inline constexpr std::string_view kExecProtocol = "v5.channel.k8s.io";

enum ExecChannel : unsigned char {
  kExecStdin = 0,
  kExecStdout = 1,
  kExecStderr = 2,
  kExecError = 3,
  kExecResize = 4,
  kExecClose = 255,
};

// One message of `channel`.
std::string ExecFrame(unsigned char channel, std::string_view data);
// The v5 message that closes the command's stdin.
std::string ExecCloseStdin();

// The exit code a channel-3 Status means: 0 for "Success", N for NonZeroExitCode with an
// ExitCode cause; any other Status is an error with its message (InvalidArgument for text that is
// not a Status).
Result<int> ExecExitCode(std::string_view status_json);

// The request path: /api/v1/namespaces/NS/pods/POD/exec?container=C&command=A&command=B...
// &stdin=true&stdout=true&stderr=true (stdin only when `with_stdin`). InvalidArgument for an empty
// command, namespace or Pod name.
Result<std::string> ExecPath(const ExecRequest& request, bool with_stdin);

// Where and as whom a session connects.
struct WebSocketTarget {
  std::string server;           // https://host:port, or http://host:port (tests)
  std::string tls_server_name;  // the name checked in the certificate ("" : the host)
  std::string ca_pem;           // "" : the system trust store
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem, client_key_pem;
  std::vector<std::string> headers;  // "Name: value" (Authorization, Impersonate-*)
};

// Runs one exec session (see Client::Exec in kube.h for streams and errors).
Result<int> ExecOverWebSocket(const WebSocketTarget& target, const ExecRequest& request, const ExecStreams& streams);

}  // namespace gantry::kube
