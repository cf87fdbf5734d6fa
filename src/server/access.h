#pragma once
// server/access: who a REST API request comes from (authentication), whether they may do it
// (authz::Authorizer over the store's role bindings), and the audit row every mutating request
// leaves, plus the routes that manage access: /api/tokens, /api/roles, /api/audit. docs/access.md
// is the user's view.
//
// Authenticate(request) reads "Authorization: Bearer <credential>":
//   gty_<64 hex>            an API token: its SHA-256 is looked up in the store on every request
//                           (no cache, so a revoked token fails with the next request); expired
//                           and revoked tokens are refused with when and by whom
//   <b64url>.<b64url>.<b64url>  a JWT: handed to AccessOptions::verify_jwt (the OIDC module's
//                           verifier); without one, 401 "OIDC is not configured"
//   the bootstrap token     the deprecated shared token (--api-token-env, DATA_DIR/api-token):
//                           principal "admin", via bootstrap, cluster-wide admin
// and fails with Unauthenticated saying why: missing, malformed, unknown, expired, revoked.
//
// Serve() runs one API request: authenticate, then the route's function with the principal; for
// a mutating method (anything but GET and HEAD) it then writes exactly one audit row (actor,
// action, object, project, the client's address, "ok" or the error), refusals included.
//
//   POST   /api/tokens        {"name", "expires_in_seconds"?, "project"?, "roles"?}: 201 with the
//                             secret, shown this once ({"id", ..., "token": "gty_..."}); with
//                             "project" a robot token of that project, else the caller's own
//   GET    /api/tokens        the caller's tokens; ?project=P robot tokens of P; ?all=1 every token
//   DELETE /api/tokens/ID     revokes (ID "t-12" or "12")
//   GET    /api/roles         the bindings on projects where the caller has roles.manage
//   POST   /api/roles         {"user" | "group", "role", "project"}: grants
//   DELETE /api/roles?user=|group=&role=&project=   revokes
//   GET    /api/audit?actor=&action=&project=&since=&until=&limit=&before=   newest first; since
//                             and until in Unix seconds, limit 1..1000 (default 100)
//
// Thread-safety: Access is safe to use from the server's handler threads.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authz/authz.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "http/http.h"
#include "server/front.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::server {

// Verifies an OIDC ID token (signature, issuer, audience, expiry) and returns its principal (via
// oidc, with its groups); Unauthenticated saying why not.
using JwtVerifier = std::function<Result<authz::Principal>(std::string_view jwt)>;

inline constexpr std::string_view kTokenPrefix = "gty_";

// A new API token secret: "gty_" and 32 random bytes as 64 lowercase hex characters. Internal
// when the system has no randomness to give.
Result<std::string> NewTokenSecret();
// "t-12", and back ("t-12" or "12"; InvalidArgument otherwise).
std::string TokenId(int64_t id);
Result<int64_t> ParseTokenId(std::string_view text);

// Creates the bootstrap admin when the store has no API token: a user token of "admin" and the
// binding of "admin" to admin on "*". Returns the token's secret (to be shown once), or nullopt
// when tokens exist (so it happens once per store, even with servers starting together).
Result<std::optional<std::string>> CreateBootstrapAdmin(store::Store& store);

// The string field `key` of a request's JSON body: `fallback` when absent or null, InvalidArgument
// when it is not a string.
Result<std::string> StringField(const value::Value& body, std::string_view key, std::string fallback = "");

// The parameters of a query string ("a=1&b=x%20y"), percent-decoded; a repeated name keeps the last.
std::map<std::string, std::string> ParseQuery(std::string_view query);

struct AccessOptions {
  std::string bootstrap_token;  // the deprecated shared token; "" = none
  JwtVerifier verify_jwt;       // nullptr: JWTs are refused, "OIDC is not configured"
  Clock* clock = nullptr;       // nullptr: SystemClock()
  // A token's last_used_at is written at most this often.
  std::chrono::seconds touch_interval{60};
};

// What an audit row says about a request; a route fills it as it learns (the project of a run
// once the run is read).
struct AuditNote {
  std::string action;  // "runs.cancel", "tokens.create", ...
  std::string object;  // "run 7", "token t-3", "user alice role deployer"
  std::string project;
  std::string details;
};

class Access {
 public:
  // `store` must outlive the Access.
  Access(store::Store& store, AccessOptions options);

  // The principal of `request`, as in the file comment; Unauthenticated with the reason;
  // Unavailable when the store cannot be read.
  Result<authz::Principal> Authenticate(const http::Request& request);

  // OK when `principal` holds `permission` on `project` under the store's current bindings;
  // PermissionDenied naming the permission (authz::Authorizer::Check).
  Status Authorize(const authz::Principal& principal, authz::Permission permission, std::string_view project);
  // The authorizer of the store's current bindings, for a listing that filters many objects.
  Result<authz::Authorizer> LoadAuthorizer();

  // One API request: Authenticate, then `fn`; its result or error (`error`: ApiError for /api/,
  // ProblemJson for /api/v1). For a mutating request, one audit row from `note` (as `fn` left it)
  // and the outcome.
  using RouteFn = std::function<Result<http::Response>(const authz::Principal&, AuditNote&)>;
  http::Response Serve(const http::Request& request, AuditNote note, const RouteFn& fn,
                       http::Response (*error)(const Status&) = ApiError);

  store::Store& store() { return store_; }
  Clock& clock() { return clock_; }

 private:
  Result<authz::Principal> FromToken(std::string_view secret);
  void Touch(int64_t token_id);

  store::Store& store_;
  const AccessOptions options_;
  Clock& clock_;
  Mutex mu_;
  std::map<int64_t, std::chrono::steady_clock::time_point> touched_ GUARDED_BY(mu_);
};

// An audit row's result: "ok", or the error as "Code: message" ("PermissionDenied: user bob lacks ...").
std::string AuditResult(const Status& s);

// The token operations of /api/tokens, which /api/v1/tokens shares (same rules, same audit notes).
// CreateApiToken: `body` as POST /api/tokens takes it; the stored token and its secret (to be
// shown once). InvalidArgument naming the bad field; PermissionDenied (a robot token needs
// tokens.manage on its project, a user token tokens.manage-own).
struct NewToken {
  store::ApiToken token;
  std::string secret;
};
Result<NewToken> CreateApiToken(Access& access, const value::Value& body, const authz::Principal& who, AuditNote& note);
// The tokens `query` selects, as GET /api/tokens: the caller's own; project=P robot tokens of P
// (tokens.manage on P); all=1 every token (tokens.manage on "*"). Newest first.
Result<std::vector<store::ApiToken>> ListApiTokens(Access& access, const std::map<std::string, std::string>& query,
                                                   const authz::Principal& who);
// Revokes token `id_text` ("t-12" or "12"): one's own user token, a robot token with
// tokens.manage on its project, anyone's with tokens.manage on "*". NotFound; PermissionDenied.
Status RevokeApiToken(Access& access, std::string_view id_text, const authz::Principal& who, AuditNote& note);

// Registers /api/tokens, /api/roles and /api/audit on `front`; `access` must outlive its serving.
void ServeAccess(Front& front, Access& access);

}  // namespace gantry::server
