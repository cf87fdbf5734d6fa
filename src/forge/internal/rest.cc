#include "forge/internal/rest.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "value/value.h"

namespace gantry::forge::internal {
namespace {

// The scope or permission a 403 says is missing, "" when it does not say.
std::string Scope(Kind kind, const http::ClientResponse& r) {
  switch (kind) {
    case Kind::kGitHub: {
      // Classic tokens: the scopes the endpoint accepts, beside those the token has.
      if (auto it = r.headers.find("x-accepted-oauth-scopes"); it != r.headers.end() && !it->second.empty()) {
        auto has = r.headers.find("x-oauth-scopes");
        return fmt::format("{} (the token has: {})", it->second,
                           has == r.headers.end() || has->second.empty() ? "none" : has->second);
      }
      // Fine-grained tokens and apps: the permission.
      if (auto it = r.headers.find("x-accepted-github-permissions"); it != r.headers.end()) return it->second;
      return "";
    }
    case Kind::kGitea: {
      // "token does not have at least one of required scope(s), required=[write:repository], ..."
      const std::string message = ForgeMessage(r.body);
      const size_t open = message.find('[');
      const size_t close = message.find(']', open == std::string::npos ? 0 : open);
      if (message.find("scope") == std::string::npos || open == std::string::npos || close == std::string::npos) return "";
      return message.substr(open + 1, close - open - 1);
    }
    case Kind::kGitLab: {
      // {"error":"insufficient_scope", ..., "scope":"api"}
      auto v = value::ParseJson(r.body, "response");
      if (v.ok() && value::StringAt(&*v, {"error"}) == "insufficient_scope") return value::StringAt(&*v, {"scope"});
      return "";
    }
  }
  return "";
}

}  // namespace

http::ClientOptions ClientOptions(const Options& options) {
  return {.connect_timeout = std::min<std::chrono::milliseconds>(options.timeout, std::chrono::seconds(10)),
          .timeout = options.timeout,
          .ca_file = options.ca_file,
          .max_response_bytes = 256 * 1024};
}

void Authorize(const Options& options, http::ClientRequest& req) {
  switch (options.kind) {
    case Kind::kGitea: req.headers["authorization"] = "token " + options.token; break;
    case Kind::kGitHub:
      req.headers["authorization"] = "Bearer " + options.token;
      req.headers["accept"] = "application/vnd.github+json";
      req.headers["x-github-api-version"] = "2022-11-28";
      break;
    case Kind::kGitLab: req.headers["private-token"] = options.token; break;
  }
  if (!req.body.empty()) req.headers["content-type"] = "application/json";
}

std::string Segment(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string ForgeMessage(std::string_view body) {
  auto v = value::ParseJson(body, "response");
  if (v.ok()) {
    for (const char* key : {"message", "error_description", "error"}) {
      std::string m = value::StringAt(&*v, {key});
      if (!m.empty()) return m;
    }
  }
  std::string out(body.substr(0, 300));
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  if (body.size() > 300) out += "...";
  return out;
}

Status Refusal(Kind kind, const http::ClientResponse& r, std::string_view what) {
  const std::string message = ForgeMessage(r.body);
  const std::string_view forge = Name(kind);
  if (r.status == 401) return UnauthenticatedError("{} refused the token (HTTP 401): {}", forge, message);
  if (r.status == 403) {
    std::string scope = Scope(kind, r);
    if (!scope.empty()) {
      return PermissionDeniedError("the {} token lacks the scope {} (HTTP 403: {})", forge, scope, message);
    }
    return PermissionDeniedError("{} refused (HTTP 403): {}", forge, message);
  }
  if (r.status == 404) return NotFoundError("{} has no such repository or {}, or the token cannot see it (HTTP 404): {}", forge, what, message);
  if (r.status >= 500 || r.status == 429 || r.status == 408) {
    return UnavailableError("{} answered HTTP {}: {}", forge, r.status, message);
  }
  return InvalidArgumentError("{} refused (HTTP {}): {}", forge, r.status, message);
}

}  // namespace gantry::forge::internal
