#include "server/front.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/client.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(HttpStatusTest, OneMappingForEveryCode) {
  struct Case {
    Status status;
    int http;
  };
  for (const Case& c : {Case{OkStatus(), 200}, Case{InvalidArgumentError("x"), 400}, Case{OutOfRangeError("x"), 400},
                        Case{UnauthenticatedError("x"), 401}, Case{PermissionDeniedError("x"), 403},
                        Case{NotFoundError("x"), 404}, Case{AlreadyExistsError("x"), 409}, Case{AbortedError("x"), 409},
                        Case{FailedPreconditionError("x"), 409}, Case{ResourceExhaustedError("x"), 429},
                        Case{ResourceExhaustedError("x").set_reason(webhook::kBodyTooLarge), 413},
                        Case{UnimplementedError("x"), 501}, Case{UnimplementedError("x").set_reason(kMethodNotAllowed), 405},
                        Case{UnavailableError("x"), 503}, Case{DeadlineExceededError("x"), 504},
                        Case{InternalError("x"), 500}, Case{DataLossError("x"), 500}, Case{UnknownError("x"), 500},
                        Case{CancelledError("x"), 500}}) {
    EXPECT_EQ(HttpStatus(c.status), c.http) << c.status.ToString();
  }
}

TEST(ApiErrorTest, IsJsonWithCodeReasonAndMessageAndParsesBack) {
  http::Response r = ApiError(NotFoundError("no run \"7\""));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  EXPECT_EQ(r.body, "{\"error\":{\"code\":\"NotFound\",\"reason\":\"\",\"message\":\"no run \\\"7\\\"\"}}\n");
  for (const Status& s : {NotFoundError("no run 7"), FailedPreconditionError("run 7 is queued"),
                          UnimplementedError("GET /x").set_reason(kMethodNotAllowed), UnavailableError("store: busy")}) {
    http::Response e = ApiError(s);
    EXPECT_EQ(ParseApiError(e.status, e.body), s);
  }
  http::Response unauthenticated = ApiError(UnauthenticatedError("a bearer token is required"));
  EXPECT_EQ(unauthenticated.status, 401);
  EXPECT_EQ(unauthenticated.headers["www-authenticate"], "Bearer realm=\"gantry\"");
}

TEST(ApiErrorTest, ABodyThatIsNotTheApisGetsTheCodeOfItsStatus) {
  EXPECT_TRUE(ParseApiError(201, "{}").ok());
  Status s = ParseApiError(503, "Service Unavailable\n<html>...</html>");
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(s.message(), "Service Unavailable");
  EXPECT_EQ(ParseApiError(404, "").message(), "HTTP 404");
  EXPECT_EQ(ParseApiError(401, "{\"error\":{\"code\":\"Nonsense\"}}").code(), Code::kUnauthenticated);
  EXPECT_EQ(ParseApiError(418, "teapot").code(), Code::kUnknown);
}

TEST(TextErrorTest, IsTheMessageWithTheMappedStatus) {
  http::Response r = TextError(PermissionDeniedError("only sha256 signatures are accepted"));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "only sha256 signatures are accepted\n");
}

TEST(CheckBearerTest, OnlyTheExactTokenPasses) {
  http::Request req;
  EXPECT_EQ(CheckBearer(req, "token-0123456789").code(), Code::kUnauthenticated);
  req.headers["authorization"] = "Bearer token-0123456789";
  EXPECT_TRUE(CheckBearer(req, "token-0123456789").ok());
  EXPECT_EQ(CheckBearer(req, "token-0123456788").code(), Code::kUnauthenticated);
  EXPECT_EQ(CheckBearer(req, "token-012345678").code(), Code::kUnauthenticated);
  req.headers["authorization"] = "Bearer ";
  EXPECT_EQ(CheckBearer(req, "").code(), Code::kUnauthenticated) << "an empty token never matches";
}

TEST(ApiTokenTest, AGeneratedApiTokenIsPrivateAndStable) {
  std::string tmpl = (fs::temp_directory_path() / "front_test.XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = fs::path(tmpl) / "data";
  auto first = LoadOrCreateApiToken(dir);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->size(), 64u);
  struct stat st;
  ASSERT_EQ(::stat((dir / "api-token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto again = LoadOrCreateApiToken(dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *first);
  ::chmod((dir / "api-token").c_str(), 0644);
  EXPECT_EQ(LoadOrCreateApiToken(dir).status().code(), Code::kPermissionDenied);
  fs::remove_all(tmpl);
}

constexpr char kFrontSecret[] = "front-secret";

http::Headers Signed(std::string_view event, std::string_view body) {
  return {{"x-github-event", std::string(event)},
          {"x-github-delivery", "d-1"},
          {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(kFrontSecret, body)}};
}

constexpr char kPush[] =
    R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":"0000000000000000000000000000000000000002","repository":{"full_name":"org/app","clone_url":"https://git.example/org/app"},"commits":[]})";

class FrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    front_.AddHealth("/healthz", [this] { return healthy_.load() ? OkStatus() : UnavailableError("not leading"); });
    front_.AddMetrics(registry_, "/metrics", [this] { gauge_.Set(7); });
    ASSERT_EQ(front_.AddWebhook("/unsigned", {.secret = ""}, nullptr).code(), Code::kInvalidArgument);
    ASSERT_TRUE(front_
                    .AddWebhook("/webhook", {.secret = kFrontSecret, .max_body_bytes = 4096},
                                [this](const webhook::Event& e, const http::Request&) -> Result<http::Response> {
                                  ++calls_;
                                  if (e.sender == "mallory") return PermissionDeniedError("not for you");
                                  return http::Response::Text(202, "took " + e.after + "\n");
                                })
                    .ok());
    ASSERT_TRUE(front_.Start().ok());
  }

  http::ClientResponse Send(std::string method, std::string path, http::Headers headers = {}, std::string body = "") {
    auto r = http::Client().Send({.method = std::move(method), .url = fmt::format("http://127.0.0.1:{}{}", front_.port(), path),
                                  .headers = std::move(headers), .body = std::move(body)});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }

  http::Registry registry_;
  http::Gauge& gauge_ = registry_.AddGauge("gantry_test_gauge", "A gauge set before each scrape");
  std::atomic<bool> healthy_{true};
  std::atomic<int> calls_{0};
  Front front_{"test", {.max_body_bytes = 1 << 20}};
};

TEST_F(FrontTest, HealthAnswersItsCheck) {
  EXPECT_EQ(Send("GET", "/healthz").status, 200);
  healthy_ = false;
  auto r = Send("GET", "/healthz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not leading\n");
}

TEST_F(FrontTest, MetricsAreRenderedAfterTheHook) {
  auto r = Send("GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers["content-type"], HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(r.body, HasSubstr("gantry_test_gauge 7"));
}

TEST_F(FrontTest, WebhookIntakeVerifiesAndMapsEveryRefusalTheSameWay) {
  const std::string body = kPush;
  auto ok = Send("POST", "/webhook", Signed("push", body), body);
  EXPECT_EQ(ok.status, 202);
  EXPECT_EQ(ok.body, "took 0000000000000000000000000000000000000002\n");
  EXPECT_EQ(calls_.load(), 1);

  http::Headers unsigned_headers = {{"x-github-event", "push"}};
  EXPECT_EQ(Send("POST", "/webhook", unsigned_headers, body).status, 401) << "no signature: Unauthenticated";
  http::Headers forged = Signed("push", body);
  forged["x-hub-signature-256"] = "sha256=" + std::string(64, '0');
  EXPECT_EQ(Send("POST", "/webhook", forged, body).status, 401);
  http::Headers sha1 = {{"x-github-event", "push"}, {"x-hub-signature", "sha1=00"}};
  EXPECT_EQ(Send("POST", "/webhook", sha1, body).status, 403) << "a refused signature scheme: PermissionDenied";
  std::string big(8192, ' ');
  EXPECT_EQ(Send("POST", "/webhook", Signed("push", big), big).status, 413);
  auto issue = Send("POST", "/webhook", Signed("issues", body), body);
  EXPECT_EQ(issue.status, 202);
  EXPECT_THAT(issue.body, HasSubstr("ignored: "));
  std::string ping = R"({"zen":"hi","hook_id":1,"repository":{"full_name":"org/app","clone_url":"https://git.example/org/app"}})";
  auto pong = Send("POST", "/webhook", Signed("ping", ping), ping);
  EXPECT_EQ(pong.status, 200);
  EXPECT_EQ(pong.body, "pong\n");
  EXPECT_EQ(calls_.load(), 1) << "neither refusals nor pings reach the function";

  std::string mallory = body;
  mallory.insert(mallory.size() - 1, R"(,"sender":{"login":"mallory"})");
  auto refused = Send("POST", "/webhook", Signed("push", mallory), mallory);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body, "not for you\n");
}

}  // namespace
}  // namespace gantry::server
