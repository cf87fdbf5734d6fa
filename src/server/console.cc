#include "server/console.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "base/status.h"

namespace gantry::server {
namespace {

const ConsoleAsset* Find(std::span<const ConsoleAsset> assets, std::string_view path) {
  auto it = std::find_if(assets.begin(), assets.end(), [&](const ConsoleAsset& a) { return a.path == path; });
  return it == assets.end() ? nullptr : &*it;
}

// True when the Accept-Encoding header `accept` takes gzip: it names gzip or "*" with no q, or a
// q above 0.
bool AcceptsGzip(std::string_view accept) {
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip" && coding != "*") continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = item.substr(semi + 1);
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    double weight = 1;
    std::from_chars(params.data() + q + 2, params.data() + params.size(), weight);
    return weight > 0;
  }
  return false;
}

void SecurityHeaders(http::Response& r) {
  r.headers["content-security-policy"] = std::string(kConsoleCsp);
  r.headers["x-content-type-options"] = "nosniff";
  r.headers["referrer-policy"] = "no-referrer";
}

}  // namespace

http::Response ServeConsoleRequest(std::span<const ConsoleAsset> assets, const http::Request& req) {
  std::string_view path = req.target;
  if (path == "/api" || path.starts_with("/api/")) {
    return ApiError(NotFoundError("no API route {} {}", req.method, req.target));
  }
  if (assets.empty()) {
    http::Response r = TextError(NotFoundError(
        "this gantry was built without the web console (GANTRY_BUILD_CONSOLE=OFF, or npm was missing); see docs/console.md"));
    SecurityHeaders(r);
    return r;
  }
  path.remove_prefix(1);  // the leading '/' (http::Server routes only paths that start with one)
  const ConsoleAsset* asset = Find(assets, path);
  const bool hashed = path.starts_with("assets/");
  if (asset == nullptr && hashed) {
    http::Response r = TextError(NotFoundError("no console file /{}", path));
    SecurityHeaders(r);
    return r;
  }
  if (asset == nullptr) asset = Find(assets, "index.html");  // the console's own routes
  if (asset == nullptr) return TextError(InternalError("the embedded console has no index.html"));
  http::Response r;
  SecurityHeaders(r);
  r.headers["etag"] = std::string(asset->etag);
  r.headers["cache-control"] = hashed ? "public, max-age=31536000, immutable" : "no-cache";
  if (!asset->gzip.empty()) r.headers["vary"] = "Accept-Encoding";
  if (req.Header("if-none-match").find(asset->etag) != std::string_view::npos) {
    r.status = 304;
    return r;
  }
  r.headers["content-type"] = std::string(asset->content_type);
  if (!asset->gzip.empty() && AcceptsGzip(req.Header("accept-encoding"))) {
    r.headers["content-encoding"] = "gzip";
    r.body = std::string(asset->gzip);
  } else {
    r.body = std::string(asset->body);
  }
  return r;
}

void ServeConsole(Front& front, std::span<const ConsoleAsset> assets) {
  front.Handle("GET", "/", [assets](const http::Request& req) { return ServeConsoleRequest(assets, req); });
}

}  // namespace gantry::server
