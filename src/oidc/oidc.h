#pragma once
// oidc: Gantry as an OpenID Connect relying party. It finds a provider's endpoints (discovery),
// verifies the JWTs the provider signs (ID tokens, JWT access tokens) against its published keys,
// and runs the two logins a person does: the device authorization grant for `gantry login`
// (RFC 8628) and the authorization code grant with PKCE for a browser (RFC 7636).
//
// Verification of a token (VerifyJwt, Verifier::Verify), in this order, each failure Unauthenticated
// with reason kReasonInvalidToken (kReasonExpired for exp) and a message naming the issuer and
// what failed:
//   1. shape: three base64url parts (no padding, no whitespace), at most 16 KiB in all; header and
//      claims are JSON objects without duplicate names;
//   2. header: "alg" is in the allow-list (RS256 and ES256 by default; "none", HS* and anything
//      else are never accepted, whatever the options say); no "crit";
//   3. key: the JWKS key with the header's "kid" (without a kid: the only key of the alg's type);
//      its type fits the alg (RSA of at least 2048 bits for RS256, EC P-256 for ES256) and its own
//      "alg"/"use", when given, agree; the signature verifies (ES256: raw 64-byte r||s);
//   4. claims: "iss" equals the issuer exactly; "aud" (a string or a list) contains the client ID,
//      and with several audiences "azp" is the client ID; "exp" is required and not passed, "iat" is
//      required and not in the future, "nbf" when present has come, each with `leeway`; exp - iat is
//      at most `max_lifetime`; "sub" is a non-empty string; "nonce" equals the expected one when
//      one is expected (the code flow).
// The claims then give an Identity: sub, preferred_username (else email, else sub) as the name,
// email, and the groups from a configurable claim (a list of strings or one string).
//
// Everything that talks to the provider takes a Transport (HttpTransport() in production, a
// function in tests). The issuer must be https, or http on a loopback address (tests, a provider on
// the same host); TLS is verified by the http client (ca_file for a private CA).
//
// Thread-safety: free functions are; a Verifier may be shared by any number of threads.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "http/client.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace gantry::oidc {

// Reasons (Status::reason()) callers branch on.
inline constexpr std::string_view kReasonInvalidToken = "InvalidToken";  // Unauthenticated
inline constexpr std::string_view kReasonExpired = "TokenExpired";       // Unauthenticated
inline constexpr std::string_view kReasonAccessDenied = "AccessDenied";  // PermissionDenied: the user said no
inline constexpr std::string_view kReasonLoginExpired = "LoginExpired";  // DeadlineExceeded: device code expired

// Sends one request and returns the response (every HTTP status is a response); errors as
// http::Client::Send.
using Transport = std::function<Result<http::ClientResponse>(const http::ClientRequest&)>;

// A Transport over http::Client with `options` (timeouts, ca_file).
Transport HttpTransport(http::ClientOptions options = {});

// InvalidArgument unless `issuer` is an https:// URL, or http:// on 127.0.0.1, [::1] or localhost,
// without query or fragment.
Status CheckIssuerUrl(std::string_view issuer);

// What /.well-known/openid-configuration says (the fields Gantry uses).
struct ProviderMetadata {
  std::string issuer;
  std::string authorization_endpoint;
  std::string token_endpoint;
  std::string device_authorization_endpoint;  // "" when the provider has no device grant
  std::string jwks_uri;
  std::string userinfo_endpoint;
  std::vector<std::string> code_challenge_methods_supported;
};

// Parses a discovery document fetched for `issuer`. InvalidArgument naming the field when it is not
// a JSON object, when "issuer" differs from `issuer` (compared without a trailing '/'; OIDC
// Discovery 4.3), when jwks_uri or token_endpoint is missing, or when an endpoint is not a URL
// CheckIssuerUrl would accept.
Result<ProviderMetadata> ParseProviderMetadata(std::string_view json, std::string_view issuer);

// GETs ISSUER/.well-known/openid-configuration and parses it. Errors name the issuer: the
// transport's, Unavailable for a status other than 200, ParseProviderMetadata's.
Result<ProviderMetadata> Discover(const Transport& transport, std::string_view issuer);

// One public key of a JWKS.
struct JsonWebKey {
  std::string kid;
  std::string kty;  // "RSA" or "EC"
  std::string alg;  // "" when the key does not say
  std::string use;  // "" when the key does not say
  std::shared_ptr<evp_pkey_st> key;
};

// The signing keys of a provider. Keys of other types (oct, OKP, EC on other curves) and
// encryption keys are skipped, not errors; a malformed RSA or EC key is.
class KeySet {
 public:
  // InvalidArgument naming the key (index and kid) when `json` is not a JWKS or a key of a type
  // Gantry uses is malformed.
  static Result<KeySet> Parse(std::string_view json);
  const std::vector<JsonWebKey>& keys() const { return keys_; }
  const JsonWebKey* Find(std::string_view kid) const;

 private:
  std::vector<JsonWebKey> keys_;
};

struct VerifyOptions {
  std::string issuer;                                   // the expected "iss"
  std::string client_id;                                // must be in "aud"
  std::string groups_claim = "groups";                  // "" = no groups
  std::vector<std::string> algorithms = {"RS256", "ES256"};  // a subset of these two
  std::chrono::seconds leeway{60};                      // clock skew allowed for exp, nbf, iat
  std::chrono::seconds max_lifetime{std::chrono::hours(24)};  // exp - iat
  std::string nonce;                                    // "" = not checked (the device flow)
};

// Who a verified token says the bearer is.
struct Identity {
  std::string issuer;
  std::string subject;
  std::string name;  // preferred_username, else email, else subject
  std::string email;
  std::vector<std::string> groups;
  std::chrono::system_clock::time_point expires_at;
};

// The "kid" and "alg" of a JWT's header, unverified: which key to look for. InvalidToken errors.
struct JwtHeader {
  std::string alg;
  std::string kid;
};
Result<JwtHeader> PeekHeader(std::string_view jwt);

// Verifies `jwt` with `keys` at time `now` as the file comment says and returns its Identity.
// InvalidArgument when `options` asks for an algorithm other than RS256/ES256 or has no issuer or
// client ID (a programmer's or configuration error, not the token's).
Result<Identity> VerifyJwt(std::string_view jwt, const KeySet& keys, const VerifyOptions& options,
                           std::chrono::system_clock::time_point now);

struct VerifierOptions {
  VerifyOptions verify;
  // A token whose kid is not in the cached keys makes the Verifier fetch the JWKS again, at most
  // once per this interval (so garbage tokens cannot make it hammer the provider).
  std::chrono::seconds min_refresh_interval{30};
  // Cached keys older than this are fetched again before use (key rotation without new kids).
  std::chrono::seconds max_key_age{std::chrono::hours(1)};
};

// Verifies tokens of one issuer for one client: discovers the provider and fetches its JWKS on
// first use, caches both, refetches the JWKS on an unknown kid (bounded) or when the keys are old.
// The server plugs `[&v](std::string_view jwt) { return v.Verify(jwt); }` into its authenticator.
// Thread-safe; a fetch holds the Verifier's lock, so concurrent calls wait for it.
class Verifier {
 public:
  // InvalidArgument for bad options (CheckIssuerUrl, no client ID, algorithms). No network.
  static Result<std::unique_ptr<Verifier>> Create(VerifierOptions options, Transport transport, Clock* clock);

  // The token's Identity, or: Unauthenticated (kReasonInvalidToken / kReasonExpired) for a token
  // that fails a check; Unavailable naming the issuer when discovery or the JWKS cannot be fetched.
  Result<Identity> Verify(std::string_view jwt);
  // The same, for the ID token of a browser sign-in: its "nonce" claim must be `nonce`.
  Result<Identity> Verify(std::string_view jwt, std::string_view nonce);

  // The provider's metadata (discovered on first use, then cached); Unavailable as Verify.
  Result<ProviderMetadata> Metadata();
  const Transport& transport() const { return transport_; }

  const VerifierOptions& options() const { return options_; }

 private:
  Verifier(VerifierOptions options, Transport transport, Clock* clock)
      : options_(std::move(options)), transport_(std::move(transport)), clock_(clock) {}
  // The current keys: fetched when there are none; else, at most once per min_refresh_interval
  // (counted from the last attempt, failed or not), when they are older than max_key_age or lack
  // `refresh_for_kid`. When a refetch fails, the keys we have stay in use.
  Result<std::shared_ptr<const KeySet>> Keys(const std::string* refresh_for_kid) REQUIRES(mu_);
  // Discovery (once) and the JWKS.
  Result<std::shared_ptr<const KeySet>> FetchKeys() REQUIRES(mu_);

  const VerifierOptions options_;
  const Transport transport_;
  Clock* const clock_;
  Mutex mu_;
  std::optional<ProviderMetadata> metadata_ GUARDED_BY(mu_);
  std::shared_ptr<const KeySet> keys_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point fetched_at_ GUARDED_BY(mu_);    // of keys_
  std::chrono::steady_clock::time_point attempted_at_ GUARDED_BY(mu_);  // the last fetch, failed or not
};

// What a token endpoint returns.
struct Tokens {
  std::string id_token;
  std::string access_token;
  std::string refresh_token;
  std::string token_type;
  std::chrono::seconds expires_in{0};
};

// --- Device authorization grant (RFC 8628), for `gantry login` ---

struct DeviceAuthorization {
  std::string device_code;
  std::string user_code;
  std::string verification_uri;
  std::string verification_uri_complete;  // "" when the provider gives none
  std::chrono::seconds expires_in{0};
  std::chrono::seconds interval{5};  // 5 s when the provider gives none (RFC 8628 3.2)
};

// POSTs client_id and `scope` to the provider's device_authorization_endpoint. FailedPrecondition
// when the provider has none; Unauthenticated with the provider's error for a refused client;
// Unavailable / DataLoss naming the issuer when it cannot be reached or answers nonsense.
Result<DeviceAuthorization> StartDeviceAuthorization(const Transport& transport, const ProviderMetadata& provider,
                                                     std::string_view client_id,
                                                     std::string_view scope = "openid profile email offline_access");

enum class PollState { kPending, kSlowDown, kDone };
struct PollResult {
  PollState state = PollState::kPending;
  Tokens tokens;  // when kDone
};

// Asks the token endpoint once. kPending for authorization_pending, kSlowDown for slow_down, kDone
// with the tokens; PermissionDenied (kReasonAccessDenied) when the user denied;
// DeadlineExceeded (kReasonLoginExpired) for expired_token; Unauthenticated for another OAuth
// error (its error and description quoted); Unavailable / DataLoss as above.
Result<PollResult> PollDeviceToken(const Transport& transport, const ProviderMetadata& provider,
                                   std::string_view client_id, std::string_view device_code);

// Polls every `interval` (5 s more after each slow_down, RFC 8628 3.5) until the tokens come or
// the device code expires (DeadlineExceeded, kReasonLoginExpired); PollDeviceToken's errors.
// Waits with `clock`.
Result<Tokens> WaitForDeviceTokens(const Transport& transport, const ProviderMetadata& provider,
                                   std::string_view client_id, const DeviceAuthorization& authorization,
                                   Clock& clock);

// --- Authorization code grant with PKCE (RFC 7636), for a browser ---

// `bytes` random bytes from OpenSSL's CSPRNG, base64url without padding.
std::string RandomUrlSafe(size_t bytes);

// BASE64URL(SHA256(verifier)): the S256 code challenge.
std::string PkceChallenge(std::string_view verifier);

// One login in a browser: where to send it, and what to keep until it comes back.
struct AuthorizationRequest {
  std::string url;            // authorization_endpoint?response_type=code&client_id&redirect_uri&scope&state&nonce&code_challenge&code_challenge_method=S256
  std::string state;          // 32 random bytes, base64url
  std::string nonce;          // 32 random bytes, base64url
  std::string code_verifier;  // 32 random bytes, base64url (43 characters)
  std::string redirect_uri;
};

// A fresh request. FailedPrecondition when the provider lists code_challenge_methods_supported
// without S256.
Result<AuthorizationRequest> MakeAuthorizationRequest(const ProviderMetadata& provider, std::string_view client_id,
                                                      std::string_view redirect_uri,
                                                      std::string_view scope = "openid profile email");

// Exchanges the `code` the redirect brought for tokens, after checking (in constant time) that the
// redirect's `state` is the request's: PermissionDenied when it is not (a forged redirect).
// Unauthenticated with the provider's OAuth error (invalid_grant: a wrong verifier, a used code);
// Unavailable / DataLoss as above. Verify the ID token with options.nonce = request.nonce.
Result<Tokens> ExchangeCode(const Transport& transport, const ProviderMetadata& provider, std::string_view client_id,
                            const AuthorizationRequest& request, std::string_view code, std::string_view state);

// --- Where `gantry login` keeps the token ---

// $XDG_CONFIG_HOME/gantry/token, else $HOME/.config/gantry/token.
std::string DefaultTokenFile();

// Writes `token` to `path` atomically with mode 0600 (the directory made 0700 when missing).
Status WriteTokenFile(const std::string& path, std::string_view token);

// The token in `path` without surrounding whitespace; NotFound when there is no file,
// InvalidArgument when it is empty.
Result<std::string> ReadTokenFile(const std::string& path);

}  // namespace gantry::oidc
