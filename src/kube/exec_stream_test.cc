// pods/exec over WebSocket (exec_stream.h): the channel framing, the exit status, the request
// path, and a whole session against a Beast WebSocket server playing the apiserver (the real one
// is in test/integration/real_node_test.cc).

#include "kube/exec_stream.h"

#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::kube {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;

TEST(ExecFrameTest, ChannelByteThenData) {
  EXPECT_EQ(ExecFrame(kExecStdin, "abc"), std::string("\0abc", 4));
  EXPECT_EQ(ExecFrame(kExecStderr, ""), std::string("\2", 1));
  EXPECT_EQ(ExecCloseStdin(), std::string("\xff\0", 2));
}

TEST(ExecExitCodeTest, SuccessNonZeroAndFailures) {
  EXPECT_EQ(ExecExitCode(R"({"metadata":{},"status":"Success"})").value(), 0);
  EXPECT_EQ(ExecExitCode(R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit 7",)"
                         R"("reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}})")
                .value(),
            7);
  auto internal = ExecExitCode(R"j({"status":"Failure","message":"container not found (\"x\")","reason":"InternalError"})j");
  ASSERT_FALSE(internal.ok());
  EXPECT_THAT(internal.status().message(), HasSubstr("container not found"));
  EXPECT_EQ(ExecExitCode("not json").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(ExecExitCode(R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}})").ok());
}

TEST(ExecPathTest, EscapesEveryArgument) {
  auto p = ExecPath({"ns", "pod-1", "gantry-in", {"/usr/local/bin/gantry", "a b&c=d", "--x"}}, true);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p,
            "/api/v1/namespaces/ns/pods/pod-1/exec?container=gantry-in&command=%2Fusr%2Flocal%2Fbin%2Fgantry&"
            "command=a%20b%26c%3Dd&command=--x&stdin=true&stdout=true&stderr=true");
  EXPECT_EQ(*ExecPath({"ns", "p", "", {"ls"}}, false), "/api/v1/namespaces/ns/pods/p/exec?command=ls&stdout=true&stderr=true");
  EXPECT_EQ(ExecPath({"ns", "p", "c", {}}, true).status().code(), Code::kInvalidArgument);
}

// One connection of a fake apiserver: accepts the WebSocket upgrade with `protocol`, records the
// request target and headers, reads stdin until the close message, then answers `script`.
class FakeExecServer {
 public:
  struct Seen {
    std::string target, authorization, protocol, stdin_data;
    bool stdin_closed = false;
  };
  using Script = std::function<void(websocket::stream<tcp::socket>&, const Seen&)>;

  FakeExecServer(std::string protocol, Script script, bool read_stdin = true)
      : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, protocol, script, read_stdin] {
      try {
        tcp::socket socket(ioc_);
        acceptor_.accept(socket);
        beast::flat_buffer buffer;
        beast::http::request<beast::http::string_body> req;
        beast::http::read(socket, buffer, req);
        seen_.target = std::string(req.target());
        seen_.authorization = std::string(req[beast::http::field::authorization]);
        seen_.protocol = std::string(req[beast::http::field::sec_websocket_protocol]);
        websocket::stream<tcp::socket> ws(std::move(socket));
        ws.set_option(websocket::stream_base::decorator([protocol](websocket::response_type& res) {
          if (!protocol.empty()) res.set(beast::http::field::sec_websocket_protocol, protocol);
        }));
        ws.accept(req);
        ws.binary(true);
        while (read_stdin && !seen_.stdin_closed) {
          beast::flat_buffer msg;
          ws.read(msg);
          std::string m = beast::buffers_to_string(msg.data());
          if (m.size() == 2 && static_cast<unsigned char>(m[0]) == kExecClose && m[1] == 0) {
            seen_.stdin_closed = true;
          } else if (!m.empty() && m[0] == 0) {
            seen_.stdin_data += m.substr(1);
          }
        }
        script(ws, seen_);
        ws.close(websocket::close_code::normal);
      } catch (const std::exception& e) {
        error_ = e.what();
      }
    });
  }
  ~FakeExecServer() {
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const Seen& seen() const { return seen_; }
  const std::string& error() const { return error_; }
  void Join() { thread_.join(); }

 private:
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::thread thread_;
  Seen seen_;
  std::string error_;
};

void Send(websocket::stream<tcp::socket>& ws, unsigned char channel, std::string_view data) {
  ws.write(net::buffer(ExecFrame(channel, data)));
}

TEST(ExecOverWebSocketTest, StreamsStdinOutErrAndTheExitCode) {
  FakeExecServer server(std::string(kExecProtocol), [](websocket::stream<tcp::socket>& ws, const FakeExecServer::Seen& s) {
    Send(ws, kExecStdout, "");  // channel openings carry no data
    Send(ws, kExecStdout, "got " + std::to_string(s.stdin_data.size()) + " bytes: ");
    Send(ws, kExecStdout, s.stdin_data.substr(0, 5));
    Send(ws, kExecStderr, "a warning\n");
    Send(ws, kExecError,
         R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})");
  });
  std::string out, err;
  ExecStreams streams;
  std::string big(600 << 10, 'z');  // more than one stdin message
  big.replace(0, 5, "hello");
  streams.write_stdin = [&](const std::function<Status(std::string_view)>& send) { return send(big); };
  streams.on_stdout = [&](std::string_view d) {
    out += d;
    return OkStatus();
  };
  streams.on_stderr = [&](std::string_view d) { err += d; };
  auto code = ExecOverWebSocket({.server = server.url(), .headers = {"Authorization: Bearer t0k"}},
                                {"ns", "pod", "c", {"gantry", "internal", "untar", "/gantry"}}, streams);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 3);
  EXPECT_EQ(out, "got " + std::to_string(big.size()) + " bytes: hello");
  EXPECT_EQ(err, "a warning\n");
  server.Join();
  EXPECT_EQ(server.error(), "");
  EXPECT_EQ(server.seen().protocol, kExecProtocol);
  EXPECT_EQ(server.seen().authorization, "Bearer t0k");
  EXPECT_TRUE(server.seen().stdin_closed);
  EXPECT_EQ(server.seen().stdin_data, big);
  EXPECT_THAT(server.seen().target, HasSubstr("/api/v1/namespaces/ns/pods/pod/exec?container=c&command=gantry&"));
}

TEST(ExecOverWebSocketTest, AServerWithoutV5IsRefused) {
  FakeExecServer server("v4.channel.k8s.io", [](websocket::stream<tcp::socket>&, const FakeExecServer::Seen&) {},
                        /*read_stdin=*/false);
  auto code = ExecOverWebSocket({.server = server.url()}, {"ns", "pod", "c", {"true"}}, {});
  EXPECT_EQ(code.status().code(), Code::kFailedPrecondition) << code.status().ToString();
  EXPECT_THAT(code.status().message(), HasSubstr("v5.channel.k8s.io"));
}

TEST(ExecOverWebSocketTest, AnEndWithoutStatusIsAnError) {
  FakeExecServer server(std::string(kExecProtocol),
                        [](websocket::stream<tcp::socket>& ws, const FakeExecServer::Seen&) { Send(ws, kExecStdout, "x"); },
                        /*read_stdin=*/false);
  ExecStreams streams;
  streams.on_stdout = [](std::string_view) { return OkStatus(); };
  auto code = ExecOverWebSocket({.server = server.url()}, {"ns", "pod", "c", {"true"}}, streams);
  EXPECT_EQ(code.status().code(), Code::kUnavailable) << code.status().ToString();
}

TEST(ExecOverWebSocketTest, AStdoutErrorEndsTheSession) {
  FakeExecServer server(std::string(kExecProtocol),
                        [](websocket::stream<tcp::socket>& ws, const FakeExecServer::Seen&) {
                          Send(ws, kExecStdout, "too much");
                          Send(ws, kExecError, R"({"status":"Success"})");
                        },
                        /*read_stdin=*/false);
  ExecStreams streams;
  streams.on_stdout = [](std::string_view) { return ResourceExhaustedError("over the limit"); };
  auto code = ExecOverWebSocket({.server = server.url()}, {"ns", "pod", "c", {"true"}}, streams);
  EXPECT_EQ(code.status().code(), Code::kResourceExhausted) << code.status().ToString();
}

TEST(ExecOverWebSocketTest, ASilentServerTimesOut) {
  FakeExecServer server(std::string(kExecProtocol),
                        [](websocket::stream<tcp::socket>& ws, const FakeExecServer::Seen&) {
                          beast::flat_buffer b;
                          beast::error_code ec;
                          ws.read(b, ec);  // until the client gives up
                        },
                        /*read_stdin=*/false);
  ExecStreams streams;
  streams.timeout = std::chrono::milliseconds(300);
  auto code = ExecOverWebSocket({.server = server.url()}, {"ns", "pod", "c", {"sleep"}}, streams);
  EXPECT_EQ(code.status().code(), Code::kDeadlineExceeded) << code.status().ToString();
}

}  // namespace
}  // namespace gantry::kube
