// The Boost.Beast adapter behind http::Server: the only file of Gantry that includes Beast or
// Asio, and the place where their exceptions stop.
//
// Threads: one I/O thread runs the io_context (acceptor, every socket, every timer), so session
// state (and the connection counts the caps use) needs no locks; handlers run on a net::thread_pool and hand their Response back to the I/O
// thread with net::post; each streaming response runs on a detached thread of its own, which
// writes by posting chunks to the I/O thread and waiting for each to be written.
//
// Descriptors: the listening socket is created with SOCK_CLOEXEC and connections are accepted with
// accept4(SOCK_CLOEXEC), so no process the server's host spawns inherits them, not even for the
// instant between accept and fcntl. A Session is a template over its stream, plain TCP or TLS.

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <array>
#include <atomic>
#include <future>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>

#include "base/log.h"

#include "base/ascii.h"
#include "base/mutex.h"
#include "http/http.h"
#include "http/metrics.h"

namespace gantry::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using SteadyClock = std::chrono::steady_clock;

std::string_view SV(beast::string_view s) { return {s.data(), s.size()}; }

Response CallHandler(const Handler& handler, const Request& request) {
  try {
    return handler(request);
  } catch (const std::exception& e) {
    log::Error("http: {} {}: handler failed: {}", request.method, request.target, e.what());
  } catch (...) {
    log::Error("http: {} {}: handler failed with an unknown exception", request.method,
               request.target);
  }
  return Response::Text(500, "internal server error\n");
}

}  // namespace

std::string_view Request::Header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

int HttpStatus(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument:
    case Code::kOutOfRange: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kAborted:
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return s.reason() == kReasonBodyTooLarge ? 413 : 429;
    case Code::kUnimplemented: return s.reason() == kReasonMethodNotAllowed ? 405 : 501;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

Response TextError(const Status& s) { return Response::Text(HttpStatus(s), s.message() + "\n"); }

Response Response::Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers["content-type"] = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers["content-type"] = "application/json";
  r.body = std::move(body);
  return r;
}

// What the server needs of a connection, whatever its stream.
class SessionBase {
 public:
  explicit SessionBase(std::string address) : address(std::move(address)) {}
  virtual ~SessionBase() = default;
  virtual void Close() = 0;
  virtual bool idle() const = 0;
  const std::string address;  // the client's IP address, for the per-address cap
};

class ServerImpl {
 public:
  explicit ServerImpl(Options o) : options(std::move(o)) {}

  // Routing (any thread).
  struct Route {
    std::string method;
    std::string path;
    std::shared_ptr<const Handler> handler;
  };
  struct Match {
    std::shared_ptr<const Handler> handler;  // null: 404 when allow is empty, else 405
    std::string allow;
    std::string route;  // the matching route's path
    std::map<std::string, std::string, std::less<>> params;
  };
  Match Find(std::string_view method, std::string_view path) const;

  // Sessions (I/O thread).
  void DoAccept();
  void Admit(tcp::socket socket);
  void Register(const std::shared_ptr<SessionBase>& s);
  void Unregister(SessionBase* s);
  void CloseSessions(bool idle_only);
  Status SetUpTls();

  // Accounting for Stop() (any thread).
  bool TryAddStream();
  void StreamDone();
  void SessionClosed();

  const Options options;
  std::atomic<bool> stopping{false};

  mutable Mutex routes_mu;
  std::vector<Route> routes GUARDED_BY(routes_mu);

  net::io_context io{1};
  tcp::acceptor acceptor{io};
  tcp protocol = tcp::v4();  // of the acceptor, for the sockets it accepts
  std::optional<ssl::context> tls;  // set when options.tls_cert_file is
  net::steady_timer accept_retry{io};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::unique_ptr<net::thread_pool> pool;
  std::thread io_thread;
  std::atomic<uint16_t> port{0};

  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;  // I/O thread only
  std::unordered_map<std::string, size_t> per_address;                  // I/O thread only
  SteadyClock::time_point last_refusal_log;                                    // I/O thread only

  Mutex lifecycle_mu;
  bool started GUARDED_BY(lifecycle_mu) = false;
  bool stopped GUARDED_BY(lifecycle_mu) = false;

  Mutex count_mu;
  CondVar count_cv;
  size_t open_sessions GUARDED_BY(count_mu) = 0;
  size_t open_streams GUARDED_BY(count_mu) = 0;
};

// One connection over `Stream`: beast::tcp_stream, or TlsStream after a TLS handshake. Lives while
// an operation or a posted task holds a shared_ptr to it; its state is touched only on the I/O
// thread, except `gone_`, which streams read.
template <typename Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `tls_context...` is the ssl::context for a TlsStream, nothing for plain TCP.
  template <typename... TlsContext>
  Session(ServerImpl* server, tcp::socket socket, std::string address, std::string remote,
          TlsContext&... tls_context)
      : SessionBase(std::move(address)),
        server_(server),
        stream_(std::move(socket), tls_context...),
        remote_(std::move(remote)) {}

  void Start() {
    if constexpr (kTls) {
      state_ = State::kHandshake;
      lowest().expires_after(server_->options.read_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (self->state_ == State::kClosed) return;
                                if (ec) {
                                  log::Debug("http: {}: TLS handshake: {}", self->remote_, ec.message());
                                  return self->Close();
                                }
                                self->ReadHeader();
                              });
    } else {
      ReadHeader();
    }
  }
  bool idle() const override { return state_ == State::kReading || state_ == State::kHandshake; }
  bool gone() const { return gone_.load(); }

  // Closes the socket now; pending operations complete with errors.
  void Close() override {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    gone_ = true;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
    server_->Unregister(this);
    server_->SessionClosed();
  }

  // Called on the I/O thread by a stream's writer: writes one chunk, then sets `done`.
  void WriteChunk(std::shared_ptr<std::string> data, std::shared_ptr<std::promise<bool>> done) {
    if (state_ != State::kStreaming) {
      done->set_value(false);
      return;
    }
    lowest().expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk(net::buffer(*data)),
                     [self = this->shared_from_this(), data, done](beast::error_code ec, size_t) {
                       done->set_value(!ec);
                       if (ec) self->Close();
                     });
  }

  // Called on the I/O thread when a stream's function has returned.
  void FinishStream() {
    if (state_ != State::kStreaming) return;
    lowest().expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk_last(),
                     [self = this->shared_from_this()](beast::error_code, size_t) { self->Close(); });
  }

 private:
  enum class State { kHandshake, kReading, kHandling, kWriting, kStreaming, kClosing, kClosed };

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void ReadHeader() {
    state_ = State::kReading;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(
        std::min<size_t>(server_->options.max_header_bytes, UINT32_MAX)));
    parser_->body_limit(server_->options.max_body_bytes);
    lowest().expires_after(server_->options.read_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = this->shared_from_this()](beast::error_code ec, size_t) {
                               self->OnHeader(ec);
                             });
  }

  void OnHeader(beast::error_code ec) {
    if (state_ == State::kClosed) return;
    if (ec) return OnReadError(ec);
    auto& req = parser_->get();
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored (a 1.0 client
    // cannot read an interim response); the body simply follows.
    if (!parser_->is_done() && req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue")) {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, 11);
      lowest().expires_after(server_->options.write_timeout);
      bhttp::async_write(stream_, *cont,
                         [self = this->shared_from_this(), cont](beast::error_code wec, size_t) {
                           if (wec) return self->Close();
                           self->ReadBody();
                         });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (state_ == State::kClosed) return;
    lowest().expires_after(server_->options.read_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        self->OnBody(ec);
                      });
  }

  void OnBody(beast::error_code ec) {
    if (state_ == State::kClosed) return;
    if (ec) return OnReadError(ec);
    Dispatch();
  }

  void OnReadError(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) return SendError(431, "request headers too large\n");
    if (ec == bhttp::error::body_limit) return SendError(413, "request body too large\n");
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
        ec.category() != bhttp::make_error_code(bhttp::error::bad_method).category()) {
      // The client went away or was too slow (beast::error::timeout): nobody to answer.
      if (ec == beast::error::timeout) {
        log::Debug("http: {}: read timed out", remote_);
      }
      return Close();
    }
    log::Debug("http: {}: malformed request: {}", remote_, ec.message());
    SendError(400, "malformed request\n");
  }

  void Dispatch() {
    auto req = parser_->release();
    parser_.reset();
    Request r;
    r.method = std::string(SV(req.method_string()));
    std::string_view target = SV(req.target());
    size_t q = target.find('?');
    r.target = std::string(target.substr(0, q));
    if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
    for (const auto& field : req) {
      std::string name = AsciiLower(SV(field.name_string()));
      auto [it, inserted] = r.headers.emplace(std::move(name), std::string(SV(field.value())));
      if (!inserted) {
        it->second += ", ";
        it->second += SV(field.value());
      }
    }
    r.body = std::move(req.body());
    r.remote_addr = remote_;
    keep_alive_ = req.keep_alive();

    ServerImpl::Match match = server_->Find(r.method, r.target);
    if (match.handler == nullptr) {
      const int status = match.allow.empty() ? 404 : 405;
      Response resp = server_->options.unrouted       ? server_->options.unrouted(r, status)
                      : status == 404                 ? Response::Text(404, "not found\n")
                                                      : Response::Text(405, "method not allowed\n");
      resp.status = status;
      if (!match.allow.empty()) resp.headers["allow"] = match.allow;
      return Send(std::move(resp));
    }
    r.route = std::move(match.route);
    r.params = std::move(match.params);
    state_ = State::kHandling;
    net::post(*server_->pool, [self = this->shared_from_this(), handler = std::move(match.handler),
                               request = std::move(r)]() mutable {
      Response resp = CallHandler(*handler, request);
      log::Debug("http: {} {} {} from {}", request.method, request.target, resp.status,
                 request.remote_addr);
      auto executor = self->stream_.get_executor();
      net::post(executor, [self = std::move(self), resp = std::move(resp)]() mutable {
        self->Send(std::move(resp));
      });
    });
  }

  // Writes `resp`; then reads the next request or closes.
  void Send(Response resp) {
    if (state_ == State::kClosed) return;
    if (resp.stream) return StartStream(std::move(resp));
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(resp.status >= 100 && resp.status <= 599 ? resp.status : 500));
    // 1xx, 204 and 304 have no body (Beast throws on one, which left the connection hanging).
    if (res->result_int() < 200 || res->result_int() == 204 || res->result_int() == 304) resp.body.clear();
    SetHeaders(*res, resp.headers, !resp.body.empty());
    bool keep_alive = keep_alive_ && !server_->stopping.load();
    res->keep_alive(keep_alive);
    res->body() = std::move(resp.body);
    res->prepare_payload();
    Write(std::move(res), keep_alive);
  }

  template <typename Message>
  void SetHeaders(Message& res, const Headers& headers, bool has_body) {
    for (const auto& [name, value] : headers) {
      // Never let data split the response.
      if (name.empty() || HasCrLf(name) || HasCrLf(value)) {
        log::Warn("http: dropping response header {:?} with a line break", name);
        continue;
      }
      res.set(name, value);
    }
    if (has_body && res.find(bhttp::field::content_type) == res.end()) {
      res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    }
  }

  // An error response after which the connection closes without reading the rest of the request.
  void SendError(int status, std::string body) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(status));
    res->set(bhttp::field::content_type, "text/plain; charset=utf-8");
    res->keep_alive(false);
    res->body() = std::move(body);
    res->prepare_payload();
    Write(std::move(res), false);
  }

  void Write(std::shared_ptr<bhttp::response<bhttp::string_body>> res, bool keep_alive) {
    state_ = State::kWriting;
    lowest().expires_after(server_->options.write_timeout);
    bhttp::async_write(stream_, *res,
                       [self = this->shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                         if (self->state_ == State::kClosed) return;
                         if (ec) return self->Close();
                         if (keep_alive && !self->server_->stopping.load()) return self->ReadHeader();
                         self->LingeringClose();
                       });
  }

  // Half-closes, then discards what the client still sends for up to a second before closing, so
  // that the client reads the response instead of a reset (e.g. a 413 while it is still sending).
  void LingeringClose() {
    state_ = State::kClosing;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    lowest().expires_after(std::chrono::seconds(1));
    Drain();
  }

  void Drain() {
    // The raw socket: after our half-close a TLS stream could not be read any more.
    lowest().async_read_some(net::buffer(drain_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (self->state_ == State::kClosed) return;
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  void StartStream(Response resp) {
    if (!server_->TryAddStream()) {
      return Send(Response::Text(503, "too many streams\n"));
    }
    auto res = std::make_shared<bhttp::response<bhttp::empty_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(resp.status >= 100 && resp.status <= 599 ? resp.status : 500));
    SetHeaders(*res, resp.headers, true);
    res->keep_alive(false);  // a stream ends with the connection
    res->chunked(true);
    auto sr = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res);
    state_ = State::kStreaming;
    lowest().expires_after(server_->options.write_timeout);
    bhttp::async_write_header(
        stream_, *sr,
        [self = this->shared_from_this(), res, sr, fn = std::move(resp.stream)](beast::error_code ec,
                                                                          size_t) mutable {
          if (ec || self->state_ != State::kStreaming) {
            self->Close();
            self->server_->StreamDone();
            return;
          }
          self->WatchClient();
          std::thread(RunStream, std::move(self), std::move(fn)).detach();
        });
  }

  // While streaming, a read notices the client leaving (and discards anything it sends).
  void WatchClient() {
    lowest().expires_never();
    stream_.async_read_some(net::buffer(drain_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (self->state_ != State::kStreaming) return;
                              if (ec) return self->Close();
                              self->WatchClient();
                            });
  }

  class Writer final : public StreamWriter {
   public:
    explicit Writer(std::shared_ptr<Session> s) : s_(std::move(s)) {}
    bool Write(std::string_view data) override {
      if (!Alive()) return false;
      if (data.empty()) return true;
      auto done = std::make_shared<std::promise<bool>>();
      std::future<bool> written = done->get_future();
      net::post(s_->stream_.get_executor(),
                [s = s_, d = std::make_shared<std::string>(data), done]() mutable {
                  s->WriteChunk(std::move(d), std::move(done));
                });
      if (!written.get()) failed_ = true;
      return !failed_;
    }
    bool Alive() const override {
      return !failed_ && !s_->gone() && !s_->server_->stopping.load();
    }

   private:
    std::shared_ptr<Session> s_;
    bool failed_ = false;
  };

  static void RunStream(std::shared_ptr<Session> self, std::function<void(StreamWriter&)> fn) {
    {
      Writer writer(self);
      try {
        fn(writer);
      } catch (const std::exception& e) {
        log::Error("http: stream to {} failed: {}", self->remote_, e.what());
      } catch (...) {
        log::Error("http: stream to {} failed with an unknown exception", self->remote_);
      }
    }
    fn = nullptr;
    ServerImpl* server = self->server_;
    auto executor = self->stream_.get_executor();
    // Hand the session back to the I/O thread before saying the stream is done: Stop() may
    // tear the server down as soon as StreamDone() returns.
    net::post(executor, [self = std::move(self)] { self->FinishStream(); });
    server->StreamDone();
  }

  ServerImpl* server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::array<char, 4096> drain_;
  std::string remote_;
  bool keep_alive_ = false;
  State state_ = State::kReading;
  std::atomic<bool> gone_{false};
};

namespace {

// The number of literal segments of template `route` when it matches `path` (each "{name}" taking
// one non-empty segment, stored in `params` when given); -1 when it does not.
int MatchTemplate(std::string_view route, std::string_view path, std::map<std::string, std::string, std::less<>>* params) {
  int literal = 0;
  for (;;) {
    size_t rs = route.find('/'), ps = path.find('/');
    std::string_view r = route.substr(0, rs), p = path.substr(0, ps);
    if (r.size() >= 2 && r.front() == '{' && r.back() == '}') {
      if (p.empty()) return -1;
      if (params != nullptr) (*params)[std::string(r.substr(1, r.size() - 2))] = std::string(p);
    } else if (r != p) {
      return -1;
    } else {
      ++literal;
    }
    if ((rs == std::string_view::npos) != (ps == std::string_view::npos)) return -1;
    if (rs == std::string_view::npos) return literal;
    route.remove_prefix(rs + 1);
    path.remove_prefix(ps + 1);
  }
}

bool IsTemplate(std::string_view route) { return route.find('{') != std::string_view::npos; }

}  // namespace

ServerImpl::Match ServerImpl::Find(std::string_view method, std::string_view path) const {
  MutexLock lock(routes_mu);
  // Candidates from the most specific path down: the exact path, templates (more literal segments
  // first), then prefixes, longest first.
  struct Candidate {
    const Route* route;
    int rank;  // exact: INT_MAX; template: 1000000 + literal segments; prefix: its length
  };
  std::vector<Candidate> candidates;
  for (const Route& r : routes) {
    if (r.path == path) {
      candidates.push_back({&r, INT_MAX});
    } else if (IsTemplate(r.path)) {
      if (int literal = MatchTemplate(r.path, path, nullptr); literal >= 0) candidates.push_back({&r, 1000000 + literal});
    } else if (r.path.ends_with('/') && path.starts_with(r.path)) {
      candidates.push_back({&r, static_cast<int>(r.path.size())});
    }
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.rank > b.rank; });
  Match m;
  for (const Candidate& c : candidates) {
    if (c.route->method == method) {
      m.handler = c.route->handler;
      m.route = c.route->path;
      if (IsTemplate(c.route->path)) MatchTemplate(c.route->path, path, &m.params);
      return m;
    }
  }
  std::vector<std::string_view> methods;
  for (const Candidate& c : candidates) methods.push_back(c.route->method);
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  for (std::string_view mth : methods) {
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += mth;
  }
  return m;
}

void ServerImpl::DoAccept() {
  // Asio's accept does not set close-on-exec: wait for a connection, then accept4 it ourselves.
  acceptor.async_wait(tcp::acceptor::wait_read, [this](beast::error_code ec) {
    if (!acceptor.is_open() || stopping.load()) return;
    int fd = -1;
    if (!ec) {
      fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED ||
                     errno == EINTR)) {
        return DoAccept();  // the client gave up before we got to it
      }
      if (fd < 0) ec = beast::error_code(errno, boost::system::system_category());
    }
    if (fd < 0) {
      // Out of file descriptors and the like: try again shortly instead of spinning.
      log::Warn("http: accept on port {}: {}", port.load(), ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code wec) {
        if (!wec) DoAccept();
      });
      return;
    }
    tcp::socket socket(io);
    if (socket.assign(protocol, fd, ec); ec) {
      ::close(fd);
    } else {
      Admit(std::move(socket));
    }
    DoAccept();
  });
}

// Starts a session for `socket`. At the connection cap it first makes room by closing one idle
// connection (waiting for a request: what slow clients hold) of the address that has the most
// open, when that is more than the newcomer's address has: so clients spread over a few addresses
// cannot lock everyone else out until read_timeout. A connection whose request is being handled,
// answered or streamed is never closed. Without such room, or at the address's own cap, the new
// connection is closed at once.
void ServerImpl::Admit(tcp::socket socket) {
  beast::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return;  // gone already
  std::string address = ep.address().to_string();
  std::string refused;
  auto own = per_address.find(address);
  const size_t own_count = own == per_address.end() ? 0 : own->second;
  if (own_count >= options.max_connections_per_address) {
    refused = fmt::format("{} has its maximum of {} connections open", address, options.max_connections_per_address);
  } else if (sessions.size() >= options.max_connections) {
    std::shared_ptr<SessionBase> victim;
    size_t victim_count = own_count;
    for (const auto& [raw, weak] : sessions) {
      auto n = per_address.find(raw->address);
      if (!raw->idle() || n == per_address.end() || n->second <= victim_count) continue;
      if (auto s = weak.lock()) {
        victim = std::move(s);
        victim_count = n->second;
      }
    }
    if (victim) {
      log::Debug("http: port {}: at {} connections, closing an idle one of {} ({} open) for {}", port.load(),
                 options.max_connections, victim->address, victim_count, address);
      victim->Close();
    } else {
      refused = fmt::format("the server has its maximum of {} connections open", options.max_connections);
    }
  }
  if (!refused.empty()) {
    // Under attack this happens for every connection: say so at most every 10 seconds.
    if (SteadyClock::now() - last_refusal_log >= std::chrono::seconds(10)) {
      log::Warn("http: port {}: closing new connections from {}: {}", port.load(), address, refused);
      last_refusal_log = SteadyClock::now();
    }
    socket.close(ec);
    return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  std::string remote = address + ":" + std::to_string(ep.port());
  if (tls) {
    auto session = std::make_shared<Session<TlsStream>>(this, std::move(socket), std::move(address),
                                                        std::move(remote), *tls);
    Register(session);
    session->Start();
  } else {
    auto session = std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket),
                                                                 std::move(address), std::move(remote));
    Register(session);
    session->Start();
  }
}

void ServerImpl::Register(const std::shared_ptr<SessionBase>& s) {
  sessions.emplace(s.get(), s);
  ++per_address[s->address];
  MutexLock lock(count_mu);
  ++open_sessions;
}

void ServerImpl::Unregister(SessionBase* s) {
  if (sessions.erase(s) == 0) return;
  if (auto it = per_address.find(s->address); it != per_address.end() && --it->second == 0) {
    per_address.erase(it);
  }
}

Status ServerImpl::SetUpTls() {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) return OkStatus();
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return InvalidArgumentError("http server: TLS needs both a certificate and a key file");
  }
  tls.emplace(ssl::context::tls_server);
  SSL_CTX* ctx = tls->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  beast::error_code ec;
  if (tls->use_certificate_chain_file(options.tls_cert_file, ec); ec) {
    tls.reset();
    return InvalidArgumentError("http server: TLS certificate {}: {} (expected PEM)",
                                options.tls_cert_file, ec.message());
  }
  if (tls->use_private_key_file(options.tls_key_file, ssl::context::pem, ec); ec) {
    tls.reset();
    return InvalidArgumentError("http server: TLS key {}: {} (expected PEM, unencrypted)",
                                options.tls_key_file, ec.message());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    tls.reset();
    return InvalidArgumentError("http server: TLS key {} does not match the certificate {}",
                                options.tls_key_file, options.tls_cert_file);
  }
  return OkStatus();
}

void ServerImpl::SessionClosed() {
  MutexLock lock(count_mu);
  --open_sessions;
  count_cv.NotifyAll();
}

void ServerImpl::CloseSessions(bool idle_only) {
  std::vector<std::shared_ptr<SessionBase>> doomed;
  for (auto& [ptr, weak] : sessions) {
    if (auto s = weak.lock(); s != nullptr && (!idle_only || s->idle())) doomed.push_back(s);
  }
  for (auto& s : doomed) s->Close();
}

bool ServerImpl::TryAddStream() {
  MutexLock lock(count_mu);
  if (open_streams >= options.max_streams) return false;
  ++open_streams;
  return true;
}

void ServerImpl::StreamDone() {
  MutexLock lock(count_mu);
  --open_streams;
  count_cv.NotifyAll();
}

Server::Server(Options options) : impl_(std::make_unique<ServerImpl>(std::move(options))) {}

Server::~Server() { Stop(); }

void Server::Handle(std::string method, std::string path, Handler handler) {
  GANTRY_CHECK(!method.empty() && path.starts_with('/') && handler != nullptr);
  auto h = std::make_shared<const Handler>(std::move(handler));
  MutexLock lock(impl_->routes_mu);
  for (auto& r : impl_->routes) {
    if (r.method == method && r.path == path) {
      r.handler = std::move(h);
      return;
    }
  }
  impl_->routes.push_back({std::move(method), std::move(path), std::move(h)});
}

std::vector<Server::RouteInfo> Server::Routes() const {
  MutexLock lock(impl_->routes_mu);
  std::vector<RouteInfo> out;
  for (const auto& r : impl_->routes) out.push_back({r.method, r.path});
  return out;
}

void Server::ServeMetrics(const Registry& registry, std::string path) {
  Handle("GET", std::move(path), [&registry](const Request&) {
    Response r;
    r.headers["content-type"] = std::string(Registry::kContentType);
    r.body = registry.Render();
    return r;
  });
}

Status Server::Start() {
  ServerImpl& s = *impl_;
  MutexLock lock(s.lifecycle_mu);
  if (s.started) return FailedPreconditionError("http server already started");
  beast::error_code ec;
  auto address = net::ip::make_address(s.options.address, ec);
  if (ec) {
    return InvalidArgumentError("http server: {:?} is not an IP address", s.options.address);
  }
  GANTRY_RETURN_IF_ERROR(s.SetUpTls());
  tcp::endpoint endpoint(address, s.options.port);
  std::string where = fmt::format("{}:{}", s.options.address, s.options.port);
  s.protocol = endpoint.protocol();
  int fd = ::socket(s.protocol.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
  if (fd < 0) {
    return UnavailableError("http server: open socket for {}: {}", where, std::strerror(errno));
  }
  if (s.acceptor.assign(s.protocol, fd, ec); ec) {
    ::close(fd);
    return UnavailableError("http server: open socket for {}: {}", where, ec.message());
  }
  if (s.acceptor.set_option(net::socket_base::reuse_address(true), ec); ec) {
    return UnavailableError("http server: SO_REUSEADDR on {}: {}", where, ec.message());
  }
  // The error is read before close(), which resets `ec` (the message said "Success").
  if (s.acceptor.bind(endpoint, ec); ec) {
    std::string why = ec.message();
    s.acceptor.close(ec);
    return UnavailableError("http server: bind {}: {}", where, why);
  }
  if (s.acceptor.listen(net::socket_base::max_listen_connections, ec); ec) {
    std::string why = ec.message();
    s.acceptor.close(ec);
    return UnavailableError("http server: listen on {}: {}", where, why);
  }
  s.port = s.acceptor.local_endpoint(ec).port();
  s.started = true;
  s.pool = std::make_unique<net::thread_pool>(static_cast<size_t>(std::max(1, s.options.threads)));
  s.work.emplace(net::make_work_guard(s.io));
  s.DoAccept();
  s.io_thread = std::thread([&s] {
    for (;;) {
      try {
        s.io.run();
        return;
      } catch (const std::exception& e) {
        log::Error("http: I/O thread: {}", e.what());
      } catch (...) {
        log::Error("http: I/O thread: unknown exception");
      }
    }
  });
  log::Debug("http: listening on {}:{}{}", s.options.address, s.port.load(), s.tls ? " (TLS)" : "");
  return OkStatus();
}

uint16_t Server::port() const { return impl_->port.load(); }

void Server::Stop() {
  ServerImpl& s = *impl_;
  {
    MutexLock lock(s.lifecycle_mu);
    if (!s.started || s.stopped) return;
    s.stopped = true;
  }
  s.stopping = true;
  // Stop accepting and drop idle connections; requests in flight go on.
  net::post(s.io, [&s] {
    beast::error_code ec;
    s.acceptor.close(ec);
    s.accept_retry.cancel();
    s.CloseSessions(/*idle_only=*/true);
  });
  {
    MutexLock lock(s.count_mu);
    s.count_cv.WaitFor(s.count_mu, s.options.shutdown_timeout,
                       [&s]() REQUIRES(s.count_mu) { return s.open_sessions == 0 && s.open_streams == 0; });
  }
  // Past the deadline: close what is left. Streams see their writes fail and return; they must.
  net::post(s.io, [&s] { s.CloseSessions(/*idle_only=*/false); });
  {
    MutexLock lock(s.count_mu);
    s.count_cv.Wait(s.count_mu, [&s]() REQUIRES(s.count_mu) { return s.open_streams == 0; });
  }
  s.pool->join();  // handlers still running finish; their responses find closed sessions
  std::promise<void> closed;
  net::post(s.io, [&s, &closed] {
    s.CloseSessions(/*idle_only=*/false);
    closed.set_value();
  });
  closed.get_future().wait();
  s.work.reset();
  s.io.stop();
  s.io_thread.join();
}

}  // namespace gantry::http
