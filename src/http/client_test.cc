// http::Client against the project's own http::Server on loopback.

#include "http/client.h"

#include <stdlib.h>

#include <filesystem>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/process.h"
#include "http/http.h"

namespace gantry::http {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Handle("GET", "/hello", [](const Request&) {
      Response r = Response::Text(200, "hello\n");
      r.headers["x-answer"] = "42";
      return r;
    });
    server_.Handle("POST", "/echo", [](const Request& req) {
      return Response::Text(200, req.method + " " + std::string(req.Header("x-test")) + " " +
                                     std::string(req.Header("content-type")) + " " + req.body);
    });
    server_.Handle("PUT", "/echo", [](const Request& req) { return Response::Text(200, req.method + " " + req.body); });
    server_.Handle("DELETE", "/echo", [](const Request& req) { return Response::Text(204, req.method); });
    server_.Handle("GET", "/slow", [](const Request&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      return Response::Text(200, "late\n");
    });
    server_.Handle("GET", "/big", [](const Request&) { return Response::Text(200, std::string(100'000, 'x')); });
    server_.Handle("GET", "/stream", [](const Request&) {
      Response r;
      r.stream = [](StreamWriter& w) {
        for (int i = 0; i < 5 && w.Write("chunk " + std::to_string(i) + "\n"); ++i) {
        }
      };
      return r;
    });
    for (const auto& redirect : {std::pair{"/a", "/b"}, std::pair{"/b", "/hello"}}) {
      server_.Handle("GET", redirect.first, [to = redirect.second](const Request&) {
        Response r = Response::Text(302, "");
        r.headers["location"] = to;
        return r;
      });
    }
    ASSERT_TRUE(server_.Start().ok());
  }

  std::string Url(std::string_view path) const { return fmt::format("http://127.0.0.1:{}{}", server_.port(), path); }

  Server server_;
};

TEST_F(ClientTest, SendsMethodHeadersAndBodyAndReturnsTheResponse) {
  Client client;
  auto got = client.Send({.url = Url("/hello")});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "hello\n");
  EXPECT_EQ(got->headers["x-answer"], "42");
  EXPECT_EQ(got->headers["content-type"], "text/plain; charset=utf-8");

  auto posted = client.Send({.method = "POST", .url = Url("/echo"),
                             .headers = {{"X-Test", "yes"}, {"Content-Type", "application/json"}}, .body = "{}"});
  ASSERT_TRUE(posted.ok()) << posted.status().ToString();
  EXPECT_EQ(posted->body, "POST yes application/json {}");
  auto bare = client.Send({.method = "POST", .url = Url("/echo")});
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->body, "POST   ") << "no body, and no form content type made up by the client";
  auto put = client.Send({.method = "PUT", .url = Url("/echo"), .body = "data"});
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->body, "PUT data");
  auto del = client.Send({.method = "DELETE", .url = Url("/echo")});
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  EXPECT_EQ(del->status, 204);
}

// http::Server: a handler answering 204 with a body made Beast throw on the I/O thread, and the
// client waited for a response until its timeout.
TEST_F(ClientTest, A204WithABodyNoLongerHangsTheConnection) {
  auto del = Client({.timeout = std::chrono::seconds(2)}).Send({.method = "DELETE", .url = Url("/echo")});
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  EXPECT_EQ(del->status, 204);
  EXPECT_EQ(del->body, "") << "204 has no body";
}

TEST_F(ClientTest, AnHttpErrorIsAResponseNotAStatus) {
  auto got = Client().Send({.url = Url("/nowhere")});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->status, 404);
}

TEST_F(ClientTest, NoServerIsUnavailable) {
  const std::string url = Url("/hello");
  server_.Stop();
  auto got = Client().Send({.url = url});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnavailable) << got.status().ToString();
  EXPECT_THAT(got.status().message(), HasSubstr("GET " + url));
}

TEST_F(ClientTest, NoAnswerInTimeIsDeadlineExceeded) {
  auto got = Client({.timeout = std::chrono::milliseconds(150)}).Send({.url = Url("/slow")});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kDeadlineExceeded) << got.status().ToString();
}

TEST_F(ClientTest, ABodyOverTheLimitIsResourceExhausted) {
  auto got = Client({.max_response_bytes = 10'000}).Send({.url = Url("/big")});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kResourceExhausted) << got.status().ToString();
  EXPECT_THAT(got.status().message(), HasSubstr("10000 bytes"));
  auto fits = Client({.max_response_bytes = 100'000}).Send({.url = Url("/big")});
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(fits->body.size(), 100'000u);
}

TEST_F(ClientTest, ASinkGetsTheBodyAsItArrivesAndMayStop) {
  std::string seen;
  auto got = Client({.max_response_bytes = 1}).Send({.url = Url("/stream")}, [&](std::string_view d) {
    seen += d;
    return true;
  });
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(seen, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n") << "the limit is for kept bodies only";
  EXPECT_TRUE(got->body.empty());
  auto stopped = Client().Send({.url = Url("/stream")}, [](std::string_view) { return false; });
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), Code::kCancelled);
}

TEST_F(ClientTest, RedirectsAreFollowedOnlyWhenAllowedAndOnlySoFar) {
  auto plain = Client().Send({.url = Url("/b")});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->status, 302);
  EXPECT_EQ(plain->headers["location"], "/hello");
  auto followed = Client({.max_redirects = 2}).Send({.url = Url("/a")});
  ASSERT_TRUE(followed.ok()) << followed.status().ToString();
  EXPECT_EQ(followed->status, 200);
  EXPECT_EQ(followed->body, "hello\n");
  EXPECT_EQ(followed->headers.count("location"), 0u) << "the headers are the last response's";
  auto too_many = Client({.max_redirects = 1}).Send({.url = Url("/a")});
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), Code::kFailedPrecondition) << too_many.status().ToString();
}

TEST(ClientRequestTest, WhatIsNotAnHttpRequestIsInvalidArgument) {
  Client client;
  for (const char* url : {"ftp://127.0.0.1/x", "127.0.0.1:8080/api", "file:///etc/passwd", ""}) {
    auto got = client.Send({.url = url});
    ASSERT_FALSE(got.ok()) << url;
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument) << url;
  }
  EXPECT_EQ(client.Send({.method = "GET /x", .url = "http://127.0.0.1:1/"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(client.Send({.url = "http://127.0.0.1:1/", .headers = {{"x-bad", "a\r\nInjected: 1"}}}).status().code(),
            Code::kInvalidArgument);
  auto credentials = client.Send({.url = "ftp://user:hunter2@127.0.0.1/"});
  EXPECT_EQ(credentials.status().message().find("hunter2"), std::string::npos) << credentials.status().message();
}

// A server with a certificate of its own CA: refused as untrusted, reached with the CA file.
TEST(ClientTlsTest, AnUntrustedCertificateIsFailedPreconditionAndTheCaFileTrustsIt) {
  std::string tmpl = (fs::temp_directory_path() / "client_test.XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = tmpl;
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  auto made = RunChecked({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key,
                          "-out", cert},
                         {.inherit_env = true});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  Server server({.tls_cert_file = cert, .tls_key_file = key});
  server.Handle("GET", "/hello", [](const Request&) { return Response::Text(200, "over tls\n"); });
  ASSERT_TRUE(server.Start().ok());
  const std::string url = fmt::format("https://127.0.0.1:{}/hello", server.port());
  auto untrusted = Client().Send({.url = url});
  ASSERT_FALSE(untrusted.ok());
  EXPECT_EQ(untrusted.status().code(), Code::kFailedPrecondition) << untrusted.status().ToString();
  EXPECT_THAT(untrusted.status().message(), HasSubstr("certificate"));
  auto trusted = Client({.ca_file = cert}).Send({.url = url});
  ASSERT_TRUE(trusted.ok()) << trusted.status().ToString();
  EXPECT_EQ(trusted->body, "over tls\n");
  server.Stop();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gantry::http
