#include "server/browser_login.h"

#include <cctype>

#include "base/log.h"
#include "server/access.h"
#include "value/value.h"

namespace gantry::server {
namespace {

using value::Value;

// Percent-encodes a fragment or query value (RFC 3986 unreserved characters stay).
std::string Encode(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

void Private(http::Response& r) {
  r.headers["cache-control"] = "no-store";
  r.headers["referrer-policy"] = "no-referrer";
  r.headers["x-content-type-options"] = "nosniff";
}

http::Response Redirect(const std::string& location) {
  http::Response r = http::Response::Text(302, "");
  r.headers["location"] = location;
  Private(r);
  return r;
}

// A page that says why the sign-in did not happen, with a way back. No script (the console's CSP).
http::Response Failed(int status, std::string_view why) {
  http::Response r = http::Response::Text(
      status, fmt::format("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed - "
                          "Gantry</title></head><body><main><h1>Sign-in failed</h1><p>{}</p><p><a href=\"/\">Back to "
                          "the console</a></p></main></body></html>\n",
                          HtmlEscape(why)));
  r.headers["content-type"] = "text/html; charset=utf-8";
  r.headers["content-security-policy"] = "default-src 'none'; frame-ancestors 'none'";
  Private(r);
  return r;
}

// Only a path of this server: "/runs/7" yes; "//evil.example", "https://...", "/\\x" no.
std::string SafeReturn(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.starts_with("//") || p.find('\\') != std::string_view::npos ||
      p.size() > 1024) {
    return "/";
  }
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20) return "/";
  }
  return std::string(p);
}

}  // namespace

BrowserLogin::BrowserLogin(BrowserLoginOptions options)
    : options_(std::move(options)), clock_(options_.clock != nullptr ? options_.clock : &SystemClock()) {}

void BrowserLogin::Register(Front& front) {
  front.Handle("GET", "/auth/config", [this](const http::Request&) { return Config(); });
  if (options_.verifier == nullptr) return;
  front.Handle("GET", "/auth/login", [this](const http::Request& req) { return Login(req); });
  front.Handle("GET", "/auth/callback", [this](const http::Request& req) { return Callback(req); });
}

http::Response BrowserLogin::Config() const {
  Value doc = Value::Map();
  if (options_.verifier == nullptr) {
    doc.Set("oidc", Value());
  } else {
    Value o = Value::Map();
    o.Set("issuer", options_.verifier->options().verify.issuer);
    o.Set("login", "/auth/login");
    doc.Set("oidc", o);
  }
  http::Response r = http::Response::Json(200, value::ToJson(doc));
  r.headers["cache-control"] = "no-cache";
  return r;
}

http::Response BrowserLogin::Login(const http::Request& req) {
  auto provider = options_.verifier->Metadata();
  if (!provider.ok()) return Failed(502, provider.status().message());
  // Without --public-url, the server is where this browser reached it.
  const std::string base =
      options_.public_url.empty() ? fmt::format("http://{}", req.Header("host")) : options_.public_url;
  auto request = oidc::MakeAuthorizationRequest(*provider, options_.verifier->options().verify.client_id,
                                                base + "/auth/callback");
  if (!request.ok()) return Failed(502, request.status().message());
  const auto query = ParseQuery(req.query);
  const auto ret = query.find("return");
  const std::string url = request->url;
  {
    MutexLock lock(mu_);
    const auto now = clock_->Now();
    std::erase_if(pending_, [&](const auto& p) { return now - p.second.started > options_.pending_ttl; });
    while (pending_.size() >= options_.max_pending) {
      auto oldest = pending_.begin();
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (it->second.started < oldest->second.started) oldest = it;
      }
      pending_.erase(oldest);
    }
    std::string state = request->state;  // before the request is moved into the entry
    pending_.emplace(std::move(state), Pending{.request = std::move(*request),
                                             .return_to = SafeReturn(ret == query.end() ? "/" : ret->second),
                                             .started = now});
  }
  return Redirect(url);
}

http::Response BrowserLogin::Callback(const http::Request& req) {
  const auto query = ParseQuery(req.query);
  auto get = [&](const char* name) {
    auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  };
  const std::string state = get("state");
  std::optional<Pending> pending;
  {
    MutexLock lock(mu_);
    if (auto it = pending_.find(state); it != pending_.end()) {
      if (clock_->Now() - it->second.started <= options_.pending_ttl) pending = std::move(it->second);
      pending_.erase(it);  // one use, whatever comes next
    }
  }
  if (const std::string error = get("error"); !error.empty()) {
    const std::string description = get("error_description");
    return Failed(400, fmt::format("The identity provider refused the sign-in: {}{}", error,
                                   description.empty() ? "" : " (" + description + ")"));
  }
  if (!pending) {
    return Failed(400, "This sign-in is unknown or more than ten minutes old (or was already used, or the server "
                       "restarted). Start again from the console.");
  }
  const std::string code = get("code");
  if (code.empty()) return Failed(400, "The identity provider's redirect has no code.");
  auto provider = options_.verifier->Metadata();
  if (!provider.ok()) return Failed(502, provider.status().message());
  auto tokens = oidc::ExchangeCode(options_.verifier->transport(), *provider,
                                   options_.verifier->options().verify.client_id, pending->request, code, state);
  if (!tokens.ok()) return Failed(502, tokens.status().message());
  if (tokens->id_token.empty()) return Failed(502, "The identity provider answered without an ID token.");
  auto identity = options_.verifier->Verify(tokens->id_token, pending->request.nonce);
  if (!identity.ok()) return Failed(502, identity.status().message());
  log::Info("console sign-in of {} through {}", identity->name, identity->issuer);
  return Redirect(fmt::format("/login#id_token={}&return={}", Encode(tokens->id_token), Encode(pending->return_to)));
}

}  // namespace gantry::server
