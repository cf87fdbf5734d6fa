// Talking to the provider: discovery, the JWKS cache of Verifier, the device and code grants, and
// the token file of `gantry login`.

#include <openssl/crypto.h>

#include <cstdlib>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "base/log.h"
#include "base/path.h"
#include "base/percent.h"
#include "oidc/oidc.h"
#include "value/value.h"

namespace gantry::oidc {
namespace {

std::string_view TrimSlash(std::string_view s) {
  while (s.ends_with('/')) s.remove_suffix(1);
  return s;
}

std::string Form(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += PercentEncode(k) + "=" + PercentEncode(v);
  }
  return out;
}

Result<http::ClientResponse> PostForm(const Transport& transport, const std::string& url, std::string body) {
  return transport({.method = "POST",
                    .url = url,
                    .headers = {{"content-type", "application/x-www-form-urlencoded"}, {"accept", "application/json"}},
                    .body = std::move(body)});
}

std::string StringField(const value::Value& obj, std::string_view key) {
  const value::Value* v = obj.Get(key);
  return v != nullptr && v->IsString() ? std::string(v->AsString()) : std::string();
}

// The OAuth error of a token or device endpoint answer (RFC 6749 5.2): {"error", "error_description"}.
struct OAuthError {
  std::string error, description;
};
std::optional<OAuthError> ParseOAuthError(std::string_view body) {
  auto v = value::ParseJson(body, "response");
  if (!v.ok() || !v->IsMap()) return std::nullopt;
  OAuthError e{StringField(*v, "error"), StringField(*v, "error_description")};
  if (e.error.empty()) return std::nullopt;
  return e;
}

// A provider's answer that is not what was asked for: Unauthenticated quoting its OAuth error, or
// Unavailable with the HTTP status.
Status AnswerError(const ProviderMetadata& p, std::string_view what, const http::ClientResponse& r) {
  if (auto e = ParseOAuthError(r.body)) {
    return UnauthenticatedError("{} at {}: {}{}{}", what, p.issuer, e->error, e->description.empty() ? "" : ": ",
                                e->description);
  }
  return UnavailableError("{} at {}: HTTP {}", what, p.issuer, r.status);
}

Result<value::Value> JsonObject(const ProviderMetadata& p, std::string_view what, std::string_view body) {
  auto v = value::ParseJson(body, "response");
  if (!v.ok() || !v->IsMap()) return DataLossError("{} at {}: the answer is not a JSON object", what, p.issuer);
  return std::move(*v);
}

std::chrono::seconds Seconds(const value::Value& obj, std::string_view key, std::chrono::seconds fallback) {
  const value::Value* v = obj.Get(key);
  if (v == nullptr || !v->IsInt() || v->AsInt() < 0 || v->AsInt() > 86400 * 366) return fallback;
  return std::chrono::seconds(v->AsInt());
}

Result<Tokens> ParseTokens(const ProviderMetadata& p, std::string_view what, std::string_view body) {
  GANTRY_ASSIGN_OR_RETURN(value::Value v, JsonObject(p, what, body));
  Tokens t{.id_token = StringField(v, "id_token"),
           .access_token = StringField(v, "access_token"),
           .refresh_token = StringField(v, "refresh_token"),
           .token_type = StringField(v, "token_type"),
           .expires_in = Seconds(v, "expires_in", std::chrono::seconds(0))};
  if (t.access_token.empty()) return DataLossError("{} at {}: the answer has no access_token", what, p.issuer);
  return t;
}

}  // namespace

Transport HttpTransport(http::ClientOptions options) {
  auto client = std::make_shared<http::Client>(std::move(options));
  return [client](const http::ClientRequest& r) { return client->Send(r); };
}

Status CheckIssuerUrl(std::string_view url) {
  auto bad = [&](std::string_view why) { return InvalidArgumentError("OIDC URL \"{}\": {}", url, why); };
  std::string_view rest;
  bool https = url.starts_with("https://");
  if (https) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return bad("must start with https://");
  }
  if (url.find_first_of("?# \t\r\n") != std::string_view::npos) return bad("must have no query, fragment or spaces");
  std::string_view host = rest.substr(0, rest.find('/'));
  if (host.empty()) return bad("has no host");
  if (host.find('@') != std::string_view::npos) return bad("must not carry credentials");
  if (!https) {
    std::string_view name = host.starts_with("[") ? host.substr(0, host.find(']') + 1) : host.substr(0, host.find(':'));
    if (name != "127.0.0.1" && name != "localhost" && name != "[::1]") {
      return bad("must be https (plain http is only accepted on a loopback address)");
    }
  }
  return OkStatus();
}

Result<ProviderMetadata> ParseProviderMetadata(std::string_view json, std::string_view issuer) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("discovery document of {}: {}", issuer, why);
  };
  auto v = value::ParseJson(json, "openid-configuration");
  if (!v.ok()) return bad(v.status().message());
  if (!v->IsMap()) return bad("not a JSON object");
  ProviderMetadata m{.issuer = StringField(*v, "issuer"),
                     .authorization_endpoint = StringField(*v, "authorization_endpoint"),
                     .token_endpoint = StringField(*v, "token_endpoint"),
                     .device_authorization_endpoint = StringField(*v, "device_authorization_endpoint"),
                     .jwks_uri = StringField(*v, "jwks_uri"),
                     .userinfo_endpoint = StringField(*v, "userinfo_endpoint"),
                     .code_challenge_methods_supported = {}};
  if (TrimSlash(m.issuer) != TrimSlash(issuer)) return bad(fmt::format("it names issuer \"{}\"", m.issuer));
  if (m.jwks_uri.empty()) return bad("no jwks_uri");
  if (m.token_endpoint.empty()) return bad("no token_endpoint");
  for (auto [name, url] : {std::pair{"issuer", &m.issuer}, {"jwks_uri", &m.jwks_uri}, {"token_endpoint", &m.token_endpoint},
                           {"authorization_endpoint", &m.authorization_endpoint},
                           {"device_authorization_endpoint", &m.device_authorization_endpoint},
                           {"userinfo_endpoint", &m.userinfo_endpoint}}) {
    if (url->empty()) continue;
    if (Status s = CheckIssuerUrl(*url); !s.ok()) return bad(fmt::format("{}: {}", name, s.message()));
  }
  if (const value::Value* methods = v->Get("code_challenge_methods_supported"); methods != nullptr && methods->IsSeq()) {
    for (const auto& x : methods->items()) {
      if (x.IsString()) m.code_challenge_methods_supported.emplace_back(x.AsString());
    }
  }
  return m;
}

Result<ProviderMetadata> Discover(const Transport& transport, std::string_view issuer) {
  GANTRY_RETURN_IF_ERROR(CheckIssuerUrl(issuer));
  std::string url = std::string(TrimSlash(issuer)) + "/.well-known/openid-configuration";
  auto r = transport({.method = "GET", .url = url, .headers = {{"accept", "application/json"}}});
  if (!r.ok()) return r.status().WithContext(fmt::format("OIDC discovery of {}", issuer));
  if (r->status != 200) return UnavailableError("OIDC discovery of {}: GET {}: HTTP {}", issuer, url, r->status);
  return ParseProviderMetadata(r->body, issuer);
}

// --- Verifier ---

Result<std::unique_ptr<Verifier>> Verifier::Create(VerifierOptions options, Transport transport, Clock* clock) {
  const VerifyOptions& v = options.verify;
  GANTRY_RETURN_IF_ERROR(CheckIssuerUrl(v.issuer));
  if (v.client_id.empty()) return InvalidArgumentError("OIDC issuer {}: no client ID (the audience of its tokens)", v.issuer);
  if (v.algorithms.empty()) return InvalidArgumentError("OIDC issuer {}: no signing algorithm allowed", v.issuer);
  for (const auto& a : v.algorithms) {
    if (a != "RS256" && a != "ES256") {
      return InvalidArgumentError("OIDC issuer {}: algorithm {} is not supported (RS256, ES256)", v.issuer, a);
    }
  }
  if (v.leeway < std::chrono::seconds(0) || v.leeway > std::chrono::minutes(5)) {
    return InvalidArgumentError("OIDC issuer {}: leeway must be between 0 and 5 minutes", v.issuer);
  }
  return std::unique_ptr<Verifier>(new Verifier(std::move(options), std::move(transport), clock));
}

Result<std::shared_ptr<const KeySet>> Verifier::FetchKeys() {
  const std::string& issuer = options_.verify.issuer;
  if (!metadata_) {
    GANTRY_ASSIGN_OR_RETURN(ProviderMetadata m, Discover(transport_, issuer));
    metadata_ = std::move(m);
  }
  auto r = transport_({.method = "GET", .url = metadata_->jwks_uri, .headers = {{"accept", "application/json"}}});
  if (!r.ok()) return r.status().WithContext(fmt::format("OIDC keys of {}", issuer));
  if (r->status != 200) return UnavailableError("OIDC keys of {}: GET {}: HTTP {}", issuer, metadata_->jwks_uri, r->status);
  auto set = KeySet::Parse(r->body);
  if (!set.ok()) return UnavailableError("OIDC keys of {}: {}", issuer, set.status().message());
  return std::make_shared<const KeySet>(std::move(*set));
}

Result<std::shared_ptr<const KeySet>> Verifier::Keys(const std::string* refresh_for_kid) {
  const auto now = clock_->Now();
  bool fetch = keys_ == nullptr;
  if (!fetch && now - attempted_at_ >= options_.min_refresh_interval) {
    fetch = now - fetched_at_ >= options_.max_key_age ||
            (refresh_for_kid != nullptr && keys_->Find(*refresh_for_kid) == nullptr);
  }
  if (!fetch) return keys_;
  attempted_at_ = now;
  auto fetched = FetchKeys();
  if (!fetched.ok()) {
    if (keys_ == nullptr) return fetched.status();
    // Keep verifying with the keys we have; the next attempt comes after min_refresh_interval.
    log::Warn("{}; verifying with the keys fetched {}s ago", fetched.status().message(),
              std::chrono::duration_cast<std::chrono::seconds>(now - fetched_at_).count());
    return keys_;
  }
  keys_ = *fetched;
  fetched_at_ = now;
  return keys_;
}

Result<Identity> Verifier::Verify(std::string_view jwt) { return Verify(jwt, ""); }

Result<ProviderMetadata> Verifier::Metadata() {
  MutexLock lock(mu_);
  GANTRY_RETURN_IF_ERROR(Keys(nullptr).status());
  return *metadata_;
}

Result<Identity> Verifier::Verify(std::string_view jwt, std::string_view nonce) {
  VerifyOptions o = options_.verify;
  o.nonce = nonce;
  std::shared_ptr<const KeySet> keys;
  {
    MutexLock lock(mu_);
    auto header = PeekHeader(jwt);
    const std::string* kid = header.ok() && !header->kid.empty() ? &header->kid : nullptr;
    GANTRY_ASSIGN_OR_RETURN(keys, Keys(kid));
    // The provider's own spelling of its issuer is what its tokens carry.
    o.issuer = metadata_->issuer;
  }
  return VerifyJwt(jwt, *keys, o, clock_->WallNow());
}

// --- Device authorization grant ---

Result<DeviceAuthorization> StartDeviceAuthorization(const Transport& transport, const ProviderMetadata& p,
                                                     std::string_view client_id, std::string_view scope) {
  constexpr std::string_view what = "device authorization";
  if (p.device_authorization_endpoint.empty()) {
    return FailedPreconditionError("OIDC provider {} offers no device authorization (no device_authorization_endpoint)",
                                   p.issuer);
  }
  auto r = PostForm(transport, p.device_authorization_endpoint, Form({{"client_id", client_id}, {"scope", scope}}));
  if (!r.ok()) return r.status().WithContext(fmt::format("{} at {}", what, p.issuer));
  if (r->status != 200) return AnswerError(p, what, *r);
  GANTRY_ASSIGN_OR_RETURN(value::Value v, JsonObject(p, what, r->body));
  DeviceAuthorization a{.device_code = StringField(v, "device_code"),
                        .user_code = StringField(v, "user_code"),
                        .verification_uri = StringField(v, "verification_uri"),
                        .verification_uri_complete = StringField(v, "verification_uri_complete"),
                        .expires_in = Seconds(v, "expires_in", std::chrono::seconds(0)),
                        .interval = Seconds(v, "interval", std::chrono::seconds(5))};
  if (a.verification_uri.empty()) a.verification_uri = StringField(v, "verification_url");  // Google's spelling
  if (a.device_code.empty() || a.user_code.empty() || a.verification_uri.empty() || a.expires_in.count() == 0) {
    return DataLossError("{} at {}: the answer lacks device_code, user_code, verification_uri or expires_in", what, p.issuer);
  }
  if (a.interval < std::chrono::seconds(1)) a.interval = std::chrono::seconds(1);
  return a;
}

Result<PollResult> PollDeviceToken(const Transport& transport, const ProviderMetadata& p, std::string_view client_id,
                                   std::string_view device_code) {
  constexpr std::string_view what = "device login";
  auto r = PostForm(transport, p.token_endpoint,
                    Form({{"grant_type", "urn:ietf:params:oauth:grant-type:device_code"},
                          {"device_code", device_code},
                          {"client_id", client_id}}));
  if (!r.ok()) return r.status().WithContext(fmt::format("{} at {}", what, p.issuer));
  if (r->status == 200) {
    GANTRY_ASSIGN_OR_RETURN(Tokens t, ParseTokens(p, what, r->body));
    return PollResult{.state = PollState::kDone, .tokens = std::move(t)};
  }
  auto e = ParseOAuthError(r->body);
  if (e && e->error == "authorization_pending") return PollResult{.state = PollState::kPending, .tokens = {}};
  if (e && e->error == "slow_down") return PollResult{.state = PollState::kSlowDown, .tokens = {}};
  if (e && e->error == "access_denied") {
    return PermissionDeniedError("{} at {}: the login was denied", what, p.issuer).set_reason(kReasonAccessDenied);
  }
  if (e && e->error == "expired_token") {
    return DeadlineExceededError("{} at {}: the code expired before the login was completed; run it again", what, p.issuer)
        .set_reason(kReasonLoginExpired);
  }
  return AnswerError(p, what, *r);
}

Result<Tokens> WaitForDeviceTokens(const Transport& transport, const ProviderMetadata& p, std::string_view client_id,
                                   const DeviceAuthorization& a, Clock& clock) {
  const auto deadline = clock.Now() + a.expires_in;
  auto interval = a.interval;
  while (true) {
    clock.SleepFor(interval);
    if (clock.Now() >= deadline) {
      return DeadlineExceededError("device login at {}: the code expired after {}s before the login was completed; run it again",
                                   p.issuer, a.expires_in.count())
          .set_reason(kReasonLoginExpired);
    }
    GANTRY_ASSIGN_OR_RETURN(PollResult poll, PollDeviceToken(transport, p, client_id, a.device_code));
    switch (poll.state) {
      case PollState::kDone:
        return std::move(poll.tokens);
      case PollState::kSlowDown:
        interval += std::chrono::seconds(5);
        break;
      case PollState::kPending:
        break;
    }
  }
}

// --- Authorization code grant with PKCE ---

Result<AuthorizationRequest> MakeAuthorizationRequest(const ProviderMetadata& p, std::string_view client_id,
                                                      std::string_view redirect_uri, std::string_view scope) {
  if (p.authorization_endpoint.empty()) {
    return FailedPreconditionError("OIDC provider {} has no authorization_endpoint", p.issuer);
  }
  const auto& methods = p.code_challenge_methods_supported;
  if (!methods.empty() && std::find(methods.begin(), methods.end(), "S256") == methods.end()) {
    return FailedPreconditionError("OIDC provider {} does not support PKCE with S256", p.issuer);
  }
  AuthorizationRequest r{.url = "", .state = RandomUrlSafe(32), .nonce = RandomUrlSafe(32),
                         .code_verifier = RandomUrlSafe(32), .redirect_uri = std::string(redirect_uri)};
  const std::string challenge = PkceChallenge(r.code_verifier);
  r.url = p.authorization_endpoint + (p.authorization_endpoint.find('?') == std::string::npos ? "?" : "&") +
          Form({{"response_type", "code"},
                {"client_id", client_id},
                {"redirect_uri", redirect_uri},
                {"scope", scope},
                {"state", r.state},
                {"nonce", r.nonce},
                {"code_challenge", challenge},
                {"code_challenge_method", "S256"}});
  return r;
}

Result<Tokens> ExchangeCode(const Transport& transport, const ProviderMetadata& p, std::string_view client_id,
                            const AuthorizationRequest& request, std::string_view code, std::string_view state) {
  constexpr std::string_view what = "code exchange";
  if (state.size() != request.state.size() || CRYPTO_memcmp(state.data(), request.state.data(), state.size()) != 0) {
    return PermissionDeniedError("{} at {}: the redirect's state is not the one this login sent", what, p.issuer);
  }
  auto r = PostForm(transport, p.token_endpoint,
                    Form({{"grant_type", "authorization_code"},
                          {"code", code},
                          {"redirect_uri", request.redirect_uri},
                          {"client_id", client_id},
                          {"code_verifier", request.code_verifier}}));
  if (!r.ok()) return r.status().WithContext(fmt::format("{} at {}", what, p.issuer));
  if (r->status != 200) return AnswerError(p, what, *r);
  return ParseTokens(p, what, r->body);
}

// --- Token file ---

std::string DefaultTokenFile() {
  namespace fs = std::filesystem;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x == '/') {
    return (fs::path(x) / "gantry" / "token").string();
  }
  const char* home = std::getenv("HOME");
  return (fs::path(home != nullptr && *home != '\0' ? home : "/tmp") / ".config" / "gantry" / "token").string();
}

Status WriteTokenFile(const std::string& path, std::string_view token) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) GANTRY_RETURN_IF_ERROR(MakePrivateDir(p.parent_path()));
  return WriteFileAtomic(p, std::string(token) + "\n", 0600);
}

Result<std::string> ReadTokenFile(const std::string& path) {
  GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 64 * 1024));
  size_t b = text.find_first_not_of(" \t\r\n");
  size_t e = text.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return InvalidArgumentError("token file {} is empty; run gantry login", path);
  return text.substr(b, e - b + 1);
}

}  // namespace gantry::oidc
