#include "server/console.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/client.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A built console of three files; the script has a gzip twin ("GZ" stands in for its bytes).
const ConsoleAsset kAssets[] = {
    {"assets/index-abc123.js", "text/javascript; charset=utf-8", "console.log(1)", "GZ", "\"js-etag\""},
    {"favicon.svg", "image/svg+xml", "<svg/>", "", "\"svg-etag\""},
    {"index.html", "text/html; charset=utf-8", "<!doctype html><div id=root></div>", "", "\"html-etag\""},
};

http::Request Get(std::string target, http::Headers headers = {}) {
  return {.method = "GET", .target = std::move(target), .headers = std::move(headers)};
}

TEST(ConsoleTest, IndexIsRevalidatedAndStrictlyConfined) {
  http::Response r = ServeConsoleRequest(kAssets, Get("/"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kAssets[2].body);
  EXPECT_EQ(r.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_EQ(r.headers["cache-control"], "no-cache");
  EXPECT_EQ(r.headers["etag"], "\"html-etag\"");
  EXPECT_EQ(r.headers["content-security-policy"], kConsoleCsp);
  EXPECT_THAT(r.headers["content-security-policy"], HasSubstr("script-src 'self';"));
  EXPECT_THAT(r.headers["content-security-policy"], Not(HasSubstr("unsafe-inline")));
  EXPECT_EQ(r.headers["x-content-type-options"], "nosniff");
}

TEST(ConsoleTest, HashedAssetsAreImmutableAndGzippedWhenAccepted) {
  http::Response plain = ServeConsoleRequest(kAssets, Get("/assets/index-abc123.js"));
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.body, "console.log(1)");
  EXPECT_EQ(plain.headers["cache-control"], "public, max-age=31536000, immutable");
  EXPECT_EQ(plain.headers["vary"], "Accept-Encoding");
  EXPECT_FALSE(plain.headers.contains("content-encoding"));

  http::Response gz = ServeConsoleRequest(kAssets, Get("/assets/index-abc123.js", {{"accept-encoding", "gzip, deflate, br"}}));
  EXPECT_EQ(gz.body, "GZ");
  EXPECT_EQ(gz.headers["content-encoding"], "gzip");
  EXPECT_EQ(gz.headers["content-type"], "text/javascript; charset=utf-8");
  // gzip;q=0 refuses gzip; a file without a twin is sent as it is.
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/assets/index-abc123.js", {{"accept-encoding", "br, gzip;q=0"}})).body, "console.log(1)");
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/assets/index-abc123.js", {{"accept-encoding", "gzip;q=0.5"}})).body, "GZ");
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/favicon.svg", {{"accept-encoding", "gzip"}})).body, "<svg/>");
}

TEST(ConsoleTest, IfNoneMatchAnswers304) {
  http::Response r = ServeConsoleRequest(kAssets, Get("/", {{"if-none-match", "\"html-etag\""}}));
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/", {{"if-none-match", "\"old\""}})).status, 200);
}

TEST(ConsoleTest, ConsoleRoutesFallBackToIndexButMissingAssetsAndApiPathsAre404) {
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/runs/7")).body, kAssets[2].body);
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/apps/web")).headers["cache-control"], "no-cache");
  EXPECT_EQ(ServeConsoleRequest(kAssets, Get("/favicon.svg")).body, "<svg/>");

  http::Response asset = ServeConsoleRequest(kAssets, Get("/assets/index-old.js"));
  EXPECT_EQ(asset.status, 404);
  EXPECT_THAT(asset.body, HasSubstr("no console file /assets/index-old.js"));

  // An API path no route took is the API's 404, never the console's page.
  http::Response api = ServeConsoleRequest(kAssets, Get("/api/v1/nothing"));
  EXPECT_EQ(api.status, 404);
  EXPECT_THAT(api.headers["content-type"], HasSubstr("json"));
  EXPECT_THAT(api.body, HasSubstr("no API route GET /api/v1/nothing"));
}

TEST(ConsoleTest, ABuildWithoutTheConsoleSaysSo) {
  http::Response r = ServeConsoleRequest({}, Get("/"));
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("built without the web console"));
}

// Through a real listener: the console takes what no longer route takes, and nothing else.
TEST(ConsoleTest, ServedBesideOtherRoutes) {
  Front front("test", {});
  front.AddHealth();
  front.Handle("GET", "/api/runs", [](const http::Request&) { return http::Response::Text(200, "runs\n"); });
  ServeConsole(front, kAssets);
  ASSERT_TRUE(front.Start().ok());
  http::Client client;
  std::string base = "http://127.0.0.1:" + std::to_string(front.port());
  auto get = [&](const std::string& path) {
    auto r = client.Send({.url = base + path});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : http::ClientResponse{};
  };
  EXPECT_EQ(get("/healthz").body, "ok\n");
  EXPECT_EQ(get("/api/runs").body, "runs\n");
  http::ClientResponse page = get("/runs/12");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.body, kAssets[2].body);
  EXPECT_EQ(page.headers["content-security-policy"], kConsoleCsp);
  EXPECT_EQ(get("/api/v1/matrix").status, 404);
}

// The table this binary embeds is well formed: an index.html and hashed assets with content types
// and ETags (empty in a build without the console).
TEST(ConsoleTest, EmbeddedTableIsWellFormed) {
  auto assets = EmbeddedConsole();
  if (assets.empty()) GTEST_SKIP() << "built with GANTRY_BUILD_CONSOLE=OFF";
  bool index = false;
  for (const ConsoleAsset& a : assets) {
    index |= a.path == "index.html";
    EXPECT_FALSE(a.path.starts_with("/")) << a.path;
    EXPECT_FALSE(a.content_type.empty()) << a.path;
    EXPECT_EQ(a.etag.size(), 18u) << a.path;
    if (a.path.ends_with(".js")) {
      EXPECT_FALSE(a.gzip.empty()) << a.path;
    }
  }
  EXPECT_TRUE(index);
  http::Response r = ServeConsoleRequest(assets, Get("/"));
  EXPECT_THAT(r.body, HasSubstr("<div id=\"root\"></div>"));
  EXPECT_THAT(r.body, Not(HasSubstr("<script>")));  // no inline script: the CSP would block it
}

}  // namespace
}  // namespace gantry::server
