// http::Server on 127.0.0.1:0 against libcurl and raw sockets: routing, 404/405, the body and
// header limits, keep-alive, 50 concurrent requests, malformed bytes, a slow client, streaming
// responses, a graceful Stop(), the connection caps, TLS with a certificate made by `openssl req`,
// and sockets that a spawned process does not inherit.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/http.h"
#include "http/metrics.h"

namespace gantry::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::AllOf;
using testing::HasSubstr;
using testing::Not;
using testing::StartsWith;

struct CurlInit {
  CurlInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};
const CurlInit curl_init;

struct Reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::string headers;  // raw header block, lower-cased
  long new_connections = 0;
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One request with `curl` (reused for keep-alive when given).
Reply Fetch(CURL* curl, const std::string& url, const std::string& method = "GET",
            const std::string* body = nullptr, std::vector<std::string> extra_headers = {}) {
  Reply r;
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (body != nullptr) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  curl_slist* list = nullptr;
  for (const auto& h : extra_headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  r.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &r.new_connections);
  curl_slist_free_all(list);
  for (char& c : r.headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

Reply Fetch(const std::string& url, const std::string& method = "GET",
            const std::string* body = nullptr, std::vector<std::string> extra_headers = {}) {
  CURL* curl = curl_easy_init();
  Reply r = Fetch(curl, url, method, body, std::move(extra_headers));
  curl_easy_cleanup(curl);
  return r;
}

// A raw TCP connection for bytes curl would never send; from 127.0.0.1, or from the loopback
// address `from` ("127.0.0.2") to look like another client.
class RawClient {
 public:
  explicit RawClient(uint16_t port, const char* from = nullptr)
      : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      inet_pton(AF_INET, from, &local.sin_addr);
      if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { close(fd_); }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until the server closes the connection (true) or `timeout` passes (false).
  bool ReadUntilClosed(std::string* out, milliseconds timeout) {
    auto deadline = steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;  // closed (or reset)
      out->append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Waits for `cond` with a deadline instead of sleeping.
template <typename F>
bool WaitFor(F cond, milliseconds timeout = milliseconds(5000)) {
  auto deadline = steady_clock::now() + timeout;
  while (steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return cond();
}

class HttpServerTest : public testing::Test {
 protected:
  void StartServer(Options options = {}) {
    server_ = std::make_unique<Server>(options);
    server_->Handle("GET", "/hello", [](const Request&) { return Response::Text(200, "hi\n"); });
    server_->Handle("POST", "/echo", [](const Request& r) {
      Response resp = Response::Text(200, r.body);
      resp.headers["x-method"] = r.method;
      resp.headers["x-query"] = r.query;
      resp.headers["x-custom"] = std::string(r.Header("x-custom"));
      return resp;
    });
    server_->Handle("GET", "/api/", [](const Request& r) {
      return Response::Text(200, "api:" + r.target);
    });
    server_->Handle("GET", "/api/exact", [](const Request&) {
      return Response::Text(200, "exact");
    });
    server_->Handle("GET", "/throw", [](const Request&) -> Response {
      throw std::runtime_error("boom");
    });
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

  std::unique_ptr<Server> server_;
};

TEST_F(HttpServerTest, RoutesByExactPathAndPrefix) {
  StartServer();
  Reply r = Fetch(Url("/hello"));
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hi\n");
  EXPECT_THAT(r.headers, HasSubstr("content-type: text/plain; charset=utf-8"));

  EXPECT_EQ(Fetch(Url("/api/apps/web")).body, "api:/api/apps/web");
  EXPECT_EQ(Fetch(Url("/api/exact")).body, "exact");
  EXPECT_EQ(Fetch(Url("/api/exact?x=1")).body, "exact");
}

TEST_F(HttpServerTest, TemplatesMatchOneSegmentEachBetweenExactAndPrefixRoutes) {
  StartServer();
  auto echo = [](const Request& r) {
    std::string out = r.route;
    for (const auto& [name, value] : r.params) out += " " + name + "=" + value;
    return Response::Text(200, out);
  };
  server_->Handle("GET", "/api/apps/{app}/releases", echo);
  server_->Handle("GET", "/api/apps/{app}/{what}", echo);
  server_->Handle("POST", "/api/runs/{id}", echo);
  EXPECT_EQ(Fetch(Url("/api/apps/web/releases")).body, "/api/apps/{app}/releases app=web")
      << "more literal segments win";
  EXPECT_EQ(Fetch(Url("/api/apps/web/tree?x=1")).body, "/api/apps/{app}/{what} app=web what=tree");
  EXPECT_EQ(Fetch(Url("/api/apps//releases")).body, "api:/api/apps//releases") << "an empty segment is no match";
  EXPECT_EQ(Fetch(Url("/api/apps/web/releases/7")).body, "api:/api/apps/web/releases/7") << "the prefix takes the rest";
  Reply wrong = Fetch(Url("/api/runs/7"), "DELETE");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_THAT(wrong.headers, HasSubstr("allow: get, post"));
  std::vector<std::string> routes;
  for (const auto& r : server_->Routes()) routes.push_back(r.method + " " + r.path);
  EXPECT_THAT(routes, testing::Contains("GET /api/apps/{app}/releases"));
  EXPECT_THAT(routes, testing::Contains("GET /hello"));
}

TEST_F(HttpServerTest, UnroutedRequestsGetTheConfiguredAnswer) {
  StartServer({.unrouted = [](const Request& r, int status) {
    return Response::Json(status, "{\"path\":\"" + r.target + "\"}");
  }});
  Reply missing = Fetch(Url("/nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "{\"path\":\"/nope\"}");
  Reply wrong = Fetch(Url("/echo"), "GET");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_THAT(wrong.headers, HasSubstr("allow: post"));
}

TEST_F(HttpServerTest, PassesRawBodyQueryAndLowerCasedHeaders) {
  StartServer();
  std::string body("a\0b\r\n{\"x\": 1}\xff", 14);
  Reply r = Fetch(Url("/echo?watch=1&limit=5"), "POST", &body, {"X-Custom: Value"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
  EXPECT_THAT(r.headers, HasSubstr("x-method: post"));
  EXPECT_THAT(r.headers, HasSubstr("x-query: watch=1&limit=5"));
  EXPECT_THAT(r.headers, HasSubstr("x-custom: value"));
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405) {
  StartServer();
  EXPECT_EQ(Fetch(Url("/nope")).status, 404);
  EXPECT_EQ(Fetch(Url("/api")).status, 404);  // "/api/" is a prefix; "/api" is not under it
  Reply r = Fetch(Url("/echo"), "GET");
  EXPECT_EQ(r.status, 405);
  EXPECT_THAT(r.headers, HasSubstr("allow: post"));
}

TEST_F(HttpServerTest, HandlerThatThrowsGives500AndServerLives) {
  StartServer();
  EXPECT_EQ(Fetch(Url("/throw")).status, 500);
  EXPECT_EQ(Fetch(Url("/hello")).status, 200);
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  StartServer();
  std::string big(2 << 20, 'x');
  Reply r = Fetch(Url("/echo"), "POST", &big);
  EXPECT_EQ(r.status, 413);
  // Still serving.
  EXPECT_EQ(Fetch(Url("/hello")).status, 200);
}

TEST_F(HttpServerTest, BodyOverLimitIs413BeforeTheBodyIsSent) {
  StartServer();
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  // Only the headers: the server must answer without waiting for 2 MiB that never come.
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n"));
  std::string got;
  EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000)));
  EXPECT_THAT(got, StartsWith("HTTP/1.1 413"));
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitIs413) {
  Options options;
  options.max_body_bytes = 1000;
  StartServer(options);
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  std::string chunk(600, 'y');
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "258\r\n" + chunk + "\r\n258\r\n" + chunk + "\r\n"));
  std::string got;
  EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000)));
  EXPECT_THAT(got, StartsWith("HTTP/1.1 413"));
}

TEST_F(HttpServerTest, HeadersOverLimitAre431) {
  Options options;
  options.max_header_bytes = 1024;
  StartServer(options);
  Reply r = Fetch(Url("/hello"), "GET", nullptr, {"X-Big: " + std::string(4000, 'z')});
  EXPECT_EQ(r.status, 431);
}

TEST_F(HttpServerTest, ExpectContinueIsAnswered) {
  StartServer();
  std::string body(200000, 'e');
  auto start = steady_clock::now();
  // curl waits a second for "100 Continue" before sending the body anyway.
  Reply r = Fetch(Url("/echo"), "POST", &body, {"Expect: 100-continue"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), body.size());
  EXPECT_LT(steady_clock::now() - start, milliseconds(900));
}

// Found by fuzz/http_request_fuzz: an HTTP/1.0 request's 100-continue was answered.
TEST_F(HttpServerTest, ExpectContinueInAnHttp10RequestIsIgnored) {
  StartServer();
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"));
  std::string got;
  EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000)));
  EXPECT_THAT(got, Not(HasSubstr("100 Continue")));
  EXPECT_THAT(got, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(got, HasSubstr("hello"));
}

TEST_F(HttpServerTest, KeepAliveReusesTheConnection) {
  StartServer();
  CURL* curl = curl_easy_init();
  Reply first = Fetch(curl, Url("/hello"));
  std::string body = "again";
  Reply second = Fetch(curl, Url("/echo"), "POST", &body);
  Reply third = Fetch(curl, Url("/nope"));
  curl_easy_cleanup(curl);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.new_connections, 1);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "again");
  EXPECT_EQ(second.new_connections, 0);
  EXPECT_EQ(third.status, 404);
  EXPECT_EQ(third.new_connections, 0);
}

TEST_F(HttpServerTest, PipelinedRequestsOnOneConnection) {
  StartServer();
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  std::string got;
  EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000)));
  size_t first = got.find("HTTP/1.1 200");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(got.find("HTTP/1.1 200", first + 1), std::string::npos);
}

TEST_F(HttpServerTest, FiftyConcurrentRequests) {
  Options options;
  options.threads = 4;
  StartServer(options);
  std::atomic<int> in_handler{0}, max_in_handler{0};
  server_->Handle("GET", "/slow", [&](const Request& r) {
    int now = ++in_handler;
    int seen = max_in_handler.load();
    while (now > seen && !max_in_handler.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(milliseconds(20));  // work, not synchronisation
    --in_handler;
    return Response::Text(200, r.query);
  });
  std::vector<std::future<Reply>> replies;
  for (int i = 0; i < 50; ++i) {
    replies.push_back(std::async(std::launch::async, [this, i] {
      return Fetch(Url("/slow?" + std::to_string(i)));
    }));
  }
  for (int i = 0; i < 50; ++i) {
    Reply r = replies[i].get();
    EXPECT_EQ(r.code, CURLE_OK) << i;
    EXPECT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.body, std::to_string(i));
  }
  EXPECT_GE(max_in_handler.load(), 2);  // handlers did run in parallel
  EXPECT_LE(max_in_handler.load(), 4);  // on the pool, not one thread each
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndClose) {
  StartServer();
  for (std::string bad : {std::string("GARBAGE\r\n\r\n"),
                          std::string("GET /hello HTTP/9.Z\r\n\r\n"),
                          std::string("GET /hello HTTP/1.1\r\nBad Header\r\n\r\n"),
                          std::string("POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
                          std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)}) {
    RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(bad));
    std::string got;
    EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000))) << bad;
    EXPECT_THAT(got, StartsWith("HTTP/1.1 400")) << bad;
  }
  EXPECT_EQ(Fetch(Url("/hello")).status, 200);
}

TEST_F(HttpServerTest, SlowClientIsCutOffAfterReadTimeout) {
  Options options;
  options.read_timeout = milliseconds(300);
  StartServer(options);
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  auto start = steady_clock::now();
  ASSERT_TRUE(c.Send("GET /hello HTTP/1.1\r\nHost: x\r\n"));
  // Trickle a header byte every 50 ms: the deadline covers the whole header, not each byte.
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    c.Send("X");
  }
  std::string got;
  EXPECT_TRUE(c.ReadUntilClosed(&got, milliseconds(5000)));
  auto elapsed = steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(3000));
  EXPECT_EQ(got.find("200"), std::string::npos);
}

TEST_F(HttpServerTest, StreamingResponseIsChunked) {
  StartServer();
  server_->Handle("GET", "/logs", [](const Request&) {
    Response r;
    r.headers["content-type"] = "text/plain";
    r.stream = [](StreamWriter& w) {
      for (int i = 0; i < 5 && w.Write("line " + std::to_string(i) + "\n"); ++i) {
      }
    };
    return r;
  });
  Reply r = Fetch(Url("/logs"));
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("transfer-encoding: chunked"));
  EXPECT_EQ(r.body, "line 0\nline 1\nline 2\nline 3\nline 4\n");
}

TEST_F(HttpServerTest, StreamEndsWhenTheClientGoes) {
  StartServer();
  std::atomic<bool> stream_returned{false};
  server_->Handle("GET", "/follow", [&](const Request&) {
    Response r;
    r.stream = [&](StreamWriter& w) {
      w.Write("first\n");
      // A follower waits for data and checks the client is still there.
      while (w.Alive()) std::this_thread::sleep_for(milliseconds(10));
      stream_returned = true;
    };
    return r;
  });
  {
    RawClient c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send("GET /follow HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string got;
    EXPECT_FALSE(c.ReadUntilClosed(&got, milliseconds(300)));
    EXPECT_THAT(got, HasSubstr("first\n"));
  }  // the client hangs up
  EXPECT_TRUE(WaitFor([&] { return stream_returned.load(); }));
}

TEST_F(HttpServerTest, ServesMetrics) {
  Registry registry;
  registry.AddCounter("gantry_test_total", "A test counter.").Add(3);
  StartServer();
  server_->ServeMetrics(registry);
  Reply r = Fetch(Url("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("content-type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_EQ(r.body,
            "# HELP gantry_test_total A test counter.\n"
            "# TYPE gantry_test_total counter\n"
            "gantry_test_total 3\n");
}

TEST_F(HttpServerTest, StartTwiceAndBadAddressFail) {
  StartServer();
  EXPECT_EQ(server_->Start().code(), Code::kFailedPrecondition);
  Options taken;
  taken.port = server_->port();
  Server second(taken);
  EXPECT_EQ(second.Start().code(), Code::kUnavailable);
  Options bad;
  bad.address = "not-an-ip";
  Server third(bad);
  EXPECT_EQ(third.Start().code(), Code::kInvalidArgument);
}

TEST_F(HttpServerTest, StopFinishesRequestsInFlightAndEndsStreams) {
  StartServer();
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  server_->Handle("GET", "/busy", [&](const Request&) {
    std::unique_lock lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return Response::Text(200, "done");
  });
  std::atomic<bool> stream_started{false};
  server_->Handle("GET", "/forever", [&](const Request&) {
    Response r;
    r.stream = [&](StreamWriter& w) {
      stream_started = true;
      while (w.Write("tick\n")) std::this_thread::sleep_for(milliseconds(10));
    };
    return r;
  });
  CURL* idle = curl_easy_init();
  ASSERT_EQ(Fetch(idle, Url("/hello")).status, 200);  // leaves an idle keep-alive connection

  auto busy = std::async(std::launch::async, [&] { return Fetch(Url("/busy")); });
  auto forever = std::async(std::launch::async, [&] { return Fetch(Url("/forever")); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return entered; }));
  }
  ASSERT_TRUE(WaitFor([&] { return stream_started.load(); }));

  auto stopped = std::async(std::launch::async, [&] { server_->Stop(); });
  // The stream ends by itself; the request in flight holds Stop() until it is answered.
  Reply streamed = forever.get();
  EXPECT_EQ(streamed.code, CURLE_OK);
  EXPECT_THAT(streamed.body, StartsWith("tick\n"));
  EXPECT_EQ(stopped.wait_for(milliseconds(100)), std::future_status::timeout);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  Reply r = busy.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "done");
  EXPECT_THAT(r.headers, HasSubstr("connection: close"));
  EXPECT_EQ(stopped.wait_for(std::chrono::seconds(5)), std::future_status::ready);

  // Nothing listens any more; the idle connection was closed too.
  EXPECT_NE(Fetch(idle, Url("/hello")).code, CURLE_OK);
  curl_easy_cleanup(idle);
  server_->Stop();  // idempotent
}

TEST_F(HttpServerTest, StopGivesUpOnSlowHandlersAtTheDeadline) {
  Options options;
  options.shutdown_timeout = milliseconds(200);
  StartServer(options);
  std::atomic<bool> entered{false};
  server_->Handle("GET", "/stuck", [&](const Request&) {
    entered = true;
    std::this_thread::sleep_for(milliseconds(1500));  // a handler that ignores shutdown
    return Response::Text(200, "late");
  });
  auto stuck = std::async(std::launch::async, [&] { return Fetch(Url("/stuck")); });
  ASSERT_TRUE(WaitFor([&] { return entered.load(); }));
  server_->Stop();
  // The connection was closed at the deadline: the client got no response.
  Reply r = stuck.get();
  EXPECT_NE(r.status, 200);
}

}  // namespace
}  // namespace gantry::http

namespace gantry::http {
namespace {

// A GET of /hello on `c` that asks the server to close afterwards; the whole reply.
std::string GetHelloAndClose(RawClient& c) {
  std::string got;
  if (!c.Send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) return got;
  c.ReadUntilClosed(&got, milliseconds(5000));
  return got;
}

// True when the server closes `c` within `within` without sending a byte.
bool ClosedAtOnce(RawClient& c, milliseconds within = milliseconds(1000)) {
  std::string got;
  return c.connected() && c.ReadUntilClosed(&got, within) && got.empty();
}

// The design: with max_connections open, a newcomer from an address with fewer connections than
// the busiest one takes the place of one of that address's idle connections (so a few addresses
// full of slow clients cannot lock everyone out until read_timeout); a newcomer from the busiest
// address is closed at once. Connections with a request in progress are never cut.
TEST_F(HttpServerTest, ConnectionCapMakesRoomByClosingAnIdleConnectionOfTheBusiestAddress) {
  Options options;
  options.max_connections = 8;
  options.max_connections_per_address = 8;
  options.read_timeout = milliseconds(20000);
  StartServer(options);
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 8; ++i) {
    idle.push_back(std::make_unique<RawClient>(server_->port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  // The ninth from the same, busiest address is closed at once, well before read_timeout.
  RawClient same(server_->port());
  auto start = steady_clock::now();
  EXPECT_TRUE(ClosedAtOnce(same));
  EXPECT_LT(steady_clock::now() - start, milliseconds(1000));
  // From another address it is served, long before read_timeout, in place of one idle connection.
  start = steady_clock::now();
  RawClient other(server_->port(), "127.0.0.2");
  EXPECT_THAT(GetHelloAndClose(other), AllOf(StartsWith("HTTP/1.1 200"), HasSubstr("hi\n")));
  EXPECT_LT(steady_clock::now() - start, milliseconds(5000));
  int closed = 0;
  for (auto& c : idle) {
    std::string got;
    closed += c->ReadUntilClosed(&got, milliseconds(200)) ? 1 : 0;
  }
  EXPECT_EQ(closed, 1) << "exactly one idle connection of the busiest address made room";
  // The others are untouched: one of them is served.
  for (auto& c : idle) {
    std::string got;
    if (c->ReadUntilClosed(&got, milliseconds(10))) continue;
    EXPECT_THAT(GetHelloAndClose(*c), StartsWith("HTTP/1.1 200"));
    break;
  }
}

TEST_F(HttpServerTest, PerAddressCapLeavesRoomForOtherClients) {
  Options options;
  options.max_connections = 100;
  options.max_connections_per_address = 4;
  options.read_timeout = milliseconds(5000);
  StartServer(options);
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<RawClient>(server_->port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  RawClient fifth(server_->port());
  EXPECT_TRUE(ClosedAtOnce(fifth));
  // Another address is served, and so are the connections 127.0.0.1 has open.
  RawClient other(server_->port(), "127.0.0.2");
  EXPECT_THAT(GetHelloAndClose(other), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(GetHelloAndClose(*idle[3]), StartsWith("HTTP/1.1 200"));
  // Once that one is closed, 127.0.0.1 may open another.
  idle.pop_back();
  EXPECT_TRUE(WaitFor([&] {
    RawClient c(server_->port());
    return GetHelloAndClose(c).starts_with("HTTP/1.1 200");
  }));
}

// A temporary directory, removed at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gantry-http-XXXXXX").string();
    GANTRY_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST_F(HttpServerTest, ServesTlsWithTheGivenCertificate) {
  TempDir dir;
  std::string cert = (dir.path / "cert.pem").string(), key = (dir.path / "key.pem").string();
  std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                    "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + key +
                    " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Options options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  options.read_timeout = milliseconds(2000);
  StartServer(options);
  std::string https = "https://127.0.0.1:" + std::to_string(server_->port());

  // curl trusting exactly this certificate gets the answer, over TLS 1.2 or later.
  CURL* curl = curl_easy_init();
  Reply r;
  curl_easy_setopt(curl, CURLOPT_URL, (https + "/hello").c_str());
  curl_easy_setopt(curl, CURLOPT_CAINFO, cert.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  r.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(curl);
  EXPECT_EQ(r.code, CURLE_OK) << curl_easy_strerror(r.code);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hi\n");

  // Without trusting it, curl refuses the server; plain HTTP to the port gets no HTTP answer.
  Reply untrusted = Fetch(https + "/hello");
  EXPECT_NE(untrusted.code, CURLE_OK);
  Reply plain = Fetch(Url("/hello"));
  EXPECT_NE(plain.code, CURLE_OK);
  EXPECT_EQ(plain.status, 0);
  // A client that never starts the handshake is closed at read_timeout.
  RawClient silent(server_->port());
  std::string got;
  EXPECT_TRUE(silent.ReadUntilClosed(&got, milliseconds(5000)));

  // A key that does not belong to the certificate, or a missing file, is refused at Start().
  std::string other_key = (dir.path / "other.pem").string();
  ASSERT_EQ(std::system(("openssl genrsa -out " + other_key + " 2048 2>/dev/null").c_str()), 0);
  Server mismatched(Options{.tls_cert_file = cert, .tls_key_file = other_key});
  EXPECT_EQ(mismatched.Start().code(), Code::kInvalidArgument);
  Server missing(Options{.tls_cert_file = cert + ".missing", .tls_key_file = key});
  Status s = missing.Start();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("cert.pem.missing"));
  Server half(Options{.tls_cert_file = cert});
  EXPECT_EQ(half.Start().code(), Code::kInvalidArgument);
}

// The socket inodes ("socket:[123]") of this process's descriptors.
std::set<std::string> SocketsOfThisProcess() {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.starts_with("socket:")) out.insert(target);
  }
  return out;
}

// Regression: the listening socket and accepted connections were not close-on-exec, so every
// process spawned by the server (pipeline steps) inherited them and could accept API requests.
TEST_F(HttpServerTest, SpawnedProcessesInheritNoServerSocket) {
  std::set<std::string> before = SocketsOfThisProcess();
  StartServer();
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got;
  c.ReadUntilClosed(&got, milliseconds(500));  // kept alive: the server holds the connection
  ASSERT_THAT(got, StartsWith("HTTP/1.1 200"));
  std::set<std::string> server_sockets;
  std::string own = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(c.fd())).string();
  for (const std::string& sock : SocketsOfThisProcess()) {
    if (!before.contains(sock) && sock != own) server_sockets.insert(sock);
  }
  ASSERT_GE(server_sockets.size(), 2u) << "the listener and the accepted connection";

  FILE* p = popen("ls -l /proc/self/fd", "r");
  ASSERT_NE(p, nullptr);
  std::string listing;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) listing.append(buf, n);
  pclose(p);
  for (const std::string& sock : server_sockets) EXPECT_THAT(listing, Not(HasSubstr(sock)));
}

}  // namespace
}  // namespace gantry::http
