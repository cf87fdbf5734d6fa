// pods/exec over WebSocket (exec_stream.h), with Boost.Beast: TLS from the kubeconfig's CA and
// client certificate (or a bearer token header), synchronous reads and writes on the caller's
// thread, and a watchdog that shuts the socket down when the session passes its timeout.

#include "kube/exec_stream.h"

#include <sys/socket.h>

#include <condition_variable>
#include <charconv>
#include <mutex>
#include <span>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>

#include "base/percent.h"
#include "value/value.h"

namespace gantry::kube {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

std::string StatusMessage(std::string_view body) {
  auto v = value::ParseJson(body);
  if (v.ok()) {
    if (const value::Value* m = v->Get("message"); m != nullptr && m->IsString()) return std::string(m->AsString());
  }
  return std::string(body.substr(0, 512));
}

// The error of an HTTP answer refusing the upgrade, as the HTTP client maps them.
Status HttpError(unsigned code, std::string_view body, const std::string& what) {
  std::string msg = fmt::format("{}: HTTP {}: {}", what, code, StatusMessage(body));
  switch (code) {
    case 400:
    case 422: return InvalidArgumentError("{}", msg);
    case 401: return UnauthenticatedError("{}", msg);
    case 403: return PermissionDeniedError("{}", msg);
    case 404: return NotFoundError("{}", msg);
    case 429: return ResourceExhaustedError("{}", msg);
    default: return UnavailableError("{}", msg);
  }
}

// Shuts the socket down when the session passes its deadline (the blocking reads then fail).
class Watchdog {
 public:
  Watchdog(int fd, std::chrono::milliseconds timeout)
      : thread_([this, fd, timeout] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, timeout, [this] { return done_; })) {
            fired_ = true;
            ::shutdown(fd, SHUT_RDWR);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lock(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

template <class Ws>
Result<int> Session(Ws& ws, const std::string& host, const std::string& path, const WebSocketTarget& target,
                    const ExecStreams& streams, const std::string& what) {
  ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
    req.set(beast::http::field::sec_websocket_protocol, std::string(kExecProtocol));
    req.set(beast::http::field::user_agent, "gantry/0.1");
    for (const std::string& h : target.headers) {
      size_t colon = h.find(':');
      if (colon == std::string::npos) continue;
      std::string_view v = std::string_view(h).substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      req.insert(h.substr(0, colon), std::string(v));
    }
  }));
  ws.read_message_max(64u << 20);
  websocket::response_type res;
  beast::error_code ec;
  ws.handshake(res, host, path, ec);
  if (ec) {
    if (res.result_int() != 0 && res.result_int() != 101) return HttpError(res.result_int(), res.body(), what);
    return UnavailableError("{}: WebSocket handshake: {}", what, ec.message());
  }
  const std::string protocol(res[beast::http::field::sec_websocket_protocol]);
  if (protocol != kExecProtocol) {
    return FailedPreconditionError("{}: the server does not speak {} (it answered {:?}; Kubernetes 1.30 or later needed)",
                                   what, kExecProtocol, protocol);
  }
  ws.binary(true);
  // One frame per message: the apiserver's stream reader (x/net/websocket) takes every frame for a
  // message of its own, so a continuation frame's first data byte would be read as a channel.
  ws.auto_fragment(false);
  if (streams.write_stdin) {
    auto send = [&](std::string_view data) -> Status {
      constexpr size_t kChunk = 256 << 10;
      do {
        std::string_view part = data.substr(0, kChunk);
        data.remove_prefix(part.size());
        ws.write(net::buffer(ExecFrame(kExecStdin, part)), ec);
        if (ec) return UnavailableError("{}: send stdin: {}", what, ec.message());
      } while (!data.empty());
      return OkStatus();
    };
    if (Status s = streams.write_stdin(send); !s.ok()) return s;
    ws.write(net::buffer(ExecCloseStdin()), ec);
    if (ec) return UnavailableError("{}: close stdin: {}", what, ec.message());
  }
  std::optional<Result<int>> exit;
  std::string stderr_tail;  // for errors
  beast::flat_buffer buf;
  for (;;) {
    buf.clear();
    ws.read(buf, ec);
    if (ec == websocket::error::closed || ec == net::error::eof || ec == net::ssl::error::stream_truncated) break;
    // The server may close the connection right after its close frame, so that answering it fails
    // (EPIPE): after the command's status, that is the end of the session.
    if (ec && exit) break;
    if (ec) return UnavailableError("{}: read: {}{}", what, ec.message(), stderr_tail.empty() ? "" : "; stderr: " + stderr_tail);
    std::string_view msg(static_cast<const char*>(buf.data().data()), buf.size());
    if (msg.empty()) continue;
    auto channel = static_cast<unsigned char>(msg[0]);
    msg.remove_prefix(1);
    if (msg.empty()) continue;  // a channel's opening message
    if (channel == kExecStdout) {
      if (streams.on_stdout) {
        if (Status s = streams.on_stdout(msg); !s.ok()) return s;
      }
    } else if (channel == kExecStderr) {
      if (stderr_tail.size() < 2048) stderr_tail.append(msg.substr(0, 2048 - stderr_tail.size()));
      if (streams.on_stderr) streams.on_stderr(msg);
    } else if (channel == kExecError) {
      exit = ExecExitCode(msg);
    }
  }
  if (!exit) return UnavailableError("{}: the stream ended without the command's status", what);
  if (!exit->ok()) return exit->status().WithContext(what);
  return *exit;
}

}  // namespace

std::string ExecFrame(unsigned char channel, std::string_view data) {
  std::string out;
  out.reserve(data.size() + 1);
  out += static_cast<char>(channel);
  out += data;
  return out;
}

std::string ExecCloseStdin() { return std::string{static_cast<char>(kExecClose), static_cast<char>(kExecStdin)}; }

Result<int> ExecExitCode(std::string_view status_json) {
  auto v = value::ParseJson(status_json, "exec status");
  if (!v.ok() || !v->IsMap()) {
    return InvalidArgumentError("exec status is not a Status: {:?}", std::string(status_json.substr(0, 200)));
  }
  auto str = [&](std::initializer_list<value::Value::PathElem> path) {
    const value::Value* x = v->Find(path);
    return x != nullptr && x->IsString() ? std::string(x->AsString()) : std::string();
  };
  std::string status = str({"status"});
  if (status == "Success") return 0;
  if (str({"reason"}) == "NonZeroExitCode") {
    const value::Value* causes = v->Find({"details", "causes"});
    for (const auto& c : causes != nullptr && causes->IsSeq() ? causes->items() : std::span<const value::Value>()) {
      const value::Value* reason = c.Get("reason");
      const value::Value* message = c.Get("message");
      if (reason == nullptr || !reason->IsString() || reason->AsString() != "ExitCode") continue;
      if (message == nullptr || !message->IsString()) break;
      int code = 0;
      std::string_view m = message->AsString();
      auto [end, err] = std::from_chars(m.data(), m.data() + m.size(), code);
      if (err == std::errc() && end == m.data() + m.size()) return code;
    }
  }
  std::string message = str({"message"});
  return UnknownError("the command failed: {}", message.empty() ? std::string(status_json.substr(0, 200)) : message);
}

Result<std::string> ExecPath(const ExecRequest& r, bool with_stdin) {
  if (r.namespace_.empty() || r.pod.empty()) return InvalidArgumentError("exec: no namespace or Pod name");
  if (r.command.empty()) return InvalidArgumentError("exec into {}/{}: empty command", r.namespace_, r.pod);
  std::string path = fmt::format("/api/v1/namespaces/{}/pods/{}/exec?", PercentEncode(r.namespace_), PercentEncode(r.pod));
  if (!r.container.empty()) path += "container=" + PercentEncode(r.container) + "&";
  for (const auto& a : r.command) path += "command=" + PercentEncode(a) + "&";
  path += with_stdin ? "stdin=true&stdout=true&stderr=true" : "stdout=true&stderr=true";
  return path;
}

Result<int> ExecOverWebSocket(const WebSocketTarget& target, const ExecRequest& request, const ExecStreams& streams) {
  GANTRY_ASSIGN_OR_RETURN(std::string path, ExecPath(request, static_cast<bool>(streams.write_stdin)));
  const std::string what = fmt::format("exec into {}/{} ({})", request.namespace_, request.pod, request.container);
  bool tls = target.server.starts_with("https://");
  if (!tls && !target.server.starts_with("http://")) {
    return InvalidArgumentError("{}: server {:?} is not an http(s) URL", what, target.server);
  }
  std::string rest = target.server.substr(tls ? 8 : 7);
  std::string hostport = rest.substr(0, rest.find('/'));
  std::string prefix = rest.substr(hostport.size());
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  size_t colon = hostport.rfind(':');
  bool has_port = colon != std::string::npos && hostport.find(']', colon) == std::string::npos;
  std::string host = has_port ? hostport.substr(0, colon) : hostport;
  std::string port = has_port ? hostport.substr(colon + 1) : (tls ? "443" : "80");
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    net::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return UnavailableError("{}: resolve {}: {}", what, host, ec.message());
    if (!tls) {
      websocket::stream<tcp::socket> ws(ioc);
      net::connect(ws.next_layer(), endpoints, ec);
      if (ec) return UnavailableError("{}: connect to {}: {}", what, hostport, ec.message());
      Watchdog dog(ws.next_layer().native_handle(), streams.timeout);
      auto r = Session(ws, hostport, prefix + path, target, streams, what);
      if (dog.fired()) return DeadlineExceededError("{}: no end after {} ms", what, streams.timeout.count());
      return r;
    }
    net::ssl::context ctx(net::ssl::context::tls_client);
    if (!target.ca_pem.empty()) {
      ctx.add_certificate_authority(net::buffer(target.ca_pem), ec);
      if (ec) return InvalidArgumentError("{}: the cluster's CA: {}", what, ec.message());
    } else {
      ctx.set_default_verify_paths();
    }
    const std::string name = target.tls_server_name.empty() ? host : target.tls_server_name;
    if (target.insecure_skip_tls_verify) {
      ctx.set_verify_mode(net::ssl::verify_none);
    } else {
      ctx.set_verify_mode(net::ssl::verify_peer);
      ctx.set_verify_callback(net::ssl::host_name_verification(name));
    }
    if (!target.client_cert_pem.empty()) {
      ctx.use_certificate_chain(net::buffer(target.client_cert_pem), ec);
      if (!ec) ctx.use_private_key(net::buffer(target.client_key_pem), net::ssl::context::pem, ec);
      if (ec) return InvalidArgumentError("{}: the client certificate or key: {}", what, ec.message());
    }
    websocket::stream<beast::ssl_stream<tcp::socket>> ws(ioc, ctx);
    net::connect(beast::get_lowest_layer(ws), endpoints, ec);
    if (ec) return UnavailableError("{}: connect to {}: {}", what, hostport, ec.message());
    Watchdog dog(beast::get_lowest_layer(ws).native_handle(), streams.timeout);
    SSL_set_tlsext_host_name(ws.next_layer().native_handle(), name.c_str());
    ws.next_layer().handshake(net::ssl::stream_base::client, ec);
    if (ec) {
      if (dog.fired()) return DeadlineExceededError("{}: TLS handshake: no answer after {} ms", what, streams.timeout.count());
      return UnavailableError("{}: TLS handshake with {}: {}", what, hostport, ec.message());
    }
    auto r = Session(ws, hostport, prefix + path, target, streams, what);
    if (dog.fired()) return DeadlineExceededError("{}: no end after {} ms", what, streams.timeout.count());
    return r;
  } catch (const std::exception& e) {
    return UnavailableError("{}: {}", what, e.what());
  }
}

}  // namespace gantry::kube
