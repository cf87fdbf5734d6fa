#pragma once
// http: a small embedded HTTP/1.1 server for webhooks, the REST API, live log streams and /metrics
// (this header; ParseListen reads the address it listens on), and the one client for simple
// outgoing requests (client.h).
//
// A Server listens on one address (127.0.0.1 by default, port 0 picks a free one) and routes each
// request by method and path to a Handler: a route path is matched exactly; when it has segments
// in braces ("/api/v1/runs/{id}/logs") as a template, each "{name}" matching one non-empty segment
// (Request::params holds them); when it ends with '/' ("/api/"), as a prefix. Exact routes win over
// templates (those with more literal segments first), templates over prefixes, and longer prefixes
// over shorter ones. A path no route matches gets 404; a path whose routes take other methods gets
// 405 with Allow. Routes() lists what is registered (the API's OpenAPI test reads it).
//
// One I/O thread accepts and reads/writes every connection (Boost.Beast, kept inside server.cc);
// handlers run on a small pool of worker threads, so a slow handler never stalls the acceptor or
// other connections' I/O. A handler that returns Response::stream runs that function on a thread of
// its own (a log stream may last hours without holding a worker): the status line and headers go
// out with Transfer-Encoding: chunked, each StreamWriter::Write() is one chunk, and the response
// ends when the function returns.
//
// Limits, each a behaviour a client can observe:
//   - headers beyond max_header_bytes → 431 and the connection closes;
//   - a body beyond max_body_bytes → 413 as soon as the headers (Content-Length) or the chunks
//     read so far show it, without reading or buffering the rest; the connection closes;
//   - a request that is not valid HTTP/1.x → 400 and the connection closes;
//   - headers or body not complete within read_timeout of the start of their read (slowloris), or
//     no new request on a kept-alive connection within it → the connection closes;
//   - a handler that throws → 500;
//   - with max_connections open, a new connection is accepted and closed at once (the client sees
//     the connection closed before any response), as is a new connection from an IP address that
//     has max_connections_per_address open; the connections already open are not affected, and a
//     new one is served as soon as one of those closes (an idle one does within read_timeout).
// Connections are kept alive as HTTP/1.1 says; "Expect: 100-continue" is answered.
//
// TLS: with tls_cert_file and tls_key_file (PEM), every connection is TLS 1.2 or later, and a
// client that does not complete the handshake within read_timeout is closed; plain HTTP to that
// port fails the handshake. Sockets are close-on-exec: a process spawned by the host inherits none.
//
// Stop() is graceful: it stops accepting, closes idle connections, tells streams to end (their
// Write() returns false), lets requests in flight finish and their responses go out until
// shutdown_timeout, then closes what is left and joins every thread.
//
// Thread-safety: Server's methods may be called from any thread. Handlers are called concurrently
// from several threads and must be thread-safe themselves.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::http {

// Header names are lower-case; a header sent several times holds its values joined by ", ".
// std::less<> allows lookups by string_view.
using Headers = std::map<std::string, std::string, std::less<>>;

struct Request {
  std::string method;       // "GET", "POST", ...
  std::string target;       // the path, as sent (not percent-decoded): "/api/apps"
  std::string query;        // the raw query without '?': "watch=1&limit=5", or ""
  Headers headers;
  std::string body;         // the raw bytes exactly as received (webhook HMACs are over these)
  std::string remote_addr;  // "127.0.0.1:53412"
  // The segments a template route's "{name}"s matched, as sent (not percent-decoded).
  std::map<std::string, std::string, std::less<>> params;
  // The route that matched: its path as registered ("/api/v1/runs/{id}"), for metrics by route.
  std::string route;

  // The value of header `name` (lower-case), or "" when absent.
  std::string_view Header(std::string_view name) const;
};

// Writes the chunks of a streaming response. Used by one thread: the one running the stream.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Sends `data` as one chunk (empty data is skipped) and waits until it is written. False when
  // the client has gone, the write timed out or the server is stopping: the stream should return.
  virtual bool Write(std::string_view data) = 0;
  // False once Write() would return false; a stream waiting for data polls this.
  virtual bool Alive() const = 0;
};

struct Response {
  int status = 200;
  Headers headers;   // Content-Type defaults to text/plain; charset=utf-8 when there is a body
  std::string body;  // ignored when `stream` is set
  // When set, a streaming response: the headers are sent, then this runs on a thread of its own
  // and writes chunks until it returns.
  std::function<void(StreamWriter&)> stream;

  static Response Text(int status, std::string body);
  static Response Json(int status, std::string body);
};

using Handler = std::function<Response(const Request&)>;

struct Options {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: pick a free port; port() tells which
  size_t max_body_bytes = size_t{1} << 20;
  size_t max_header_bytes = size_t{16} << 10;
  std::chrono::milliseconds read_timeout = std::chrono::seconds(30);
  std::chrono::milliseconds write_timeout = std::chrono::seconds(30);
  std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(10);
  int threads = 2;          // workers for handlers
  size_t max_streams = 64;  // concurrent streaming responses; beyond → 503
  size_t max_connections = 512;             // open at once; beyond, new ones are closed
  size_t max_connections_per_address = 64;  // open at once from one client IP address
  // The response for a request no route takes: `status` 404, or 405 (the Allow header is added).
  // nullptr: "not found" / "method not allowed" as text.
  std::function<Response(const Request& request, int status)> unrouted;
  // PEM files; both set: serve HTTPS only. The key must not be encrypted.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Where a listener binds, from a flag such as --listen: "HOST:PORT" (an IPv4 address),
// ":PORT" (every IPv4 interface: host "0.0.0.0") or "[IPV6]:PORT" (host without the brackets).
// The port is 0 to 65535 (0 picks a free one). InvalidArgument naming `flag` and the value for
// anything else: no port, a port that is not a number in range, a host name instead of an
// address, an IPv6 address without brackets.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
Result<ListenAddress> ParseListen(std::string_view listen, std::string_view flag);

class Registry;  // metrics.h
class ServerImpl;  // server.cc

// The server. Owns its threads and connections; stopping happens at the latest in the destructor.
class Server {
 public:
  explicit Server(Options options = {});
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Routes `method` ("GET", "POST", ...) on `path` to `handler`; a path ending in '/' is a prefix,
  // one with "{name}" segments a template (file comment). Registering the same method and path
  // twice replaces the handler. Routes may be added at any time, also while serving.
  void Handle(std::string method, std::string path, Handler handler);

  // Every route registered, in the order of registration.
  struct RouteInfo {
    std::string method;
    std::string path;
  };
  std::vector<RouteInfo> Routes() const;

  // Serves registry.Render() on GET `path` in the Prometheus text format 0.0.4. The registry must
  // outlive the server.
  void ServeMetrics(const Registry& registry, std::string path = "/metrics");

  // Binds, listens and starts the threads. Unavailable when the address cannot be bound (in use,
  // not local, ...), InvalidArgument when it is not an IP address or the TLS certificate or key
  // cannot be read (or only one is given, or they do not match), FailedPrecondition when called
  // twice.
  Status Start();

  // The bound port; 0 before Start().
  uint16_t port() const;

  // Graceful stop as described in the file comment; idempotent.
  void Stop();

 private:
  std::unique_ptr<ServerImpl> impl_;
};

// Reasons (Status::reason) the status mapping reads.
inline constexpr std::string_view kReasonBodyTooLarge = "BodyTooLarge";  // → 413 (webhook::Verify uses it too)
inline constexpr std::string_view kReasonMethodNotAllowed = "MethodNotAllowed";  // → 405

// The one mapping from a non-OK Status to the HTTP status every Gantry listener answers (200 for
// OK): InvalidArgument and OutOfRange 400, Unauthenticated 401, PermissionDenied 403, NotFound
// 404, AlreadyExists, Aborted and FailedPrecondition 409, ResourceExhausted 429 (413 with
// kReasonBodyTooLarge), Unimplemented 501 (405 with kReasonMethodNotAllowed), Unavailable 503,
// DeadlineExceeded 504, anything else 500. Why 409 and 403: server/front.h.
int HttpStatus(const Status& status);

// The error response of webhooks and probes: HttpStatus(status), the message and a newline.
Response TextError(const Status& status);

}  // namespace gantry::http
