#pragma once
// http/client: Gantry's one client for simple outgoing HTTP requests (the REST API from the CLI,
// webhooks to pull agents, forge APIs): one request, one response, through libcurl, which stays
// inside client.cc.
//
//   http::Client client({.timeout = std::chrono::seconds(5)});
//   auto r = client.Send({.method = "POST", .url = url, .headers = {{"content-type", "application/json"}},
//                         .body = body});
//   if (!r.ok()) ...                 // the request did not get an answer (below)
//   else if (r->status != 200) ...   // it did: every HTTP status is a response, not an error
//
// A request has a method, an absolute http:// or https:// URL, headers and a body. The response
// holds the status, the headers (lower-case names, repeated ones joined by ", ") and the body, or
// the body goes to a sink as it arrives (a log followed for hours). Failures, each a Status:
//   InvalidArgument      the URL is malformed, not http(s), or the method is empty;
//   Unavailable          the host cannot be resolved or reached, the connection broke, TLS could
//                        not be set up, or the server closed without answering;
//   DeadlineExceeded     no connection within connect_timeout, or no complete response within
//                        timeout;
//   FailedPrecondition   the server's certificate is not trusted (ca_file), or more redirects than
//                        max_redirects;
//   ResourceExhausted    the body (without a sink) exceeds max_response_bytes;
//   Cancelled            the sink returned false.
// Messages name the method and the URL without its credentials ("GET http://host/api/runs:
// Couldn't connect to server").
//
// Redirects are not followed unless max_redirects > 0 (a 3xx is a response then); when followed,
// only to http(s), and libcurl does not send an Authorization header to another host.
//
// Connections are not kept between calls: each Send() opens its own. The Kubernetes client
// (kube/http_client.cc, HTTP/2 multiplexing through curl multi, watches) and the registry client
// (oci/registry.cc, resumable chunked uploads, token auth) keep transports of their own: what they
// need is more than one request and one response.
//
// Thread-safety: a Client holds only its options; Send() may be called from several threads at once.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "http/http.h"

namespace gantry::http {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  // The whole exchange, connection to last byte; 0 = none (a followed log stream).
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  std::string ca_file;  // PEM bundle trusted for https instead of the system's ("" = the system's)
  size_t max_response_bytes = size_t{16} << 20;  // a body kept in ClientResponse::body
  int max_redirects = 0;                         // 0: a 3xx is returned as it is
  std::string user_agent = "gantry";
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;   // names in any case; "content-length" and "host" are set by the client
  std::string body;  // sent when not empty, or when the method is POST, PUT or PATCH
};

struct ClientResponse {
  int status = 0;
  Headers headers;   // of the last response when redirects were followed
  std::string body;  // empty when a sink took it
};

// Receives the body as it arrives; return false to stop (Send then fails with Cancelled).
using BodySink = std::function<bool(std::string_view chunk)>;

class Client {
 public:
  explicit Client(ClientOptions options = {});

  // Sends `request` and waits for the whole response; the errors are in the file comment.
  Result<ClientResponse> Send(const ClientRequest& request) const;
  // The same, with the body handed to `sink` as it arrives instead of kept (max_response_bytes
  // does not apply).
  Result<ClientResponse> Send(const ClientRequest& request, const BodySink& sink) const;

  const ClientOptions& options() const { return options_; }

 private:
  ClientOptions options_;
};

}  // namespace gantry::http
