#pragma once
// The pure parts of registry authentication (no I/O, unit-tested): WWW-Authenticate challenges,
// Docker's config.json, credentials bound to hosts, the token endpoint's URL and answer, and the
// token cache. HttpRegistry (registry.cc) does the requests.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "oci/registry.h"

namespace gantry::oci::internal {

// One challenge of a WWW-Authenticate header: scheme lower-cased ("bearer", "basic"), parameter
// names lower-cased, values unquoted.
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? "" : it->second;
  }
};

// Parses a header value holding one or more challenges (RFC 7235: auth-params with quoted or token
// values, challenges separated by commas). InvalidArgument naming the offset of the first thing
// that is not a challenge.
Result<std::vector<Challenge>> ParseWwwAuthenticate(std::string_view header);

// The host a Docker config key stands for: "https://index.docker.io/v1/" → "docker.io",
// "https://ghcr.io" → "ghcr.io", "localhost:5000/v2/" → "localhost:5000"; lower-cased.
std::string NormalizeRegistryHost(std::string_view key);

// What Gantry reads of Docker's config.json.
struct DockerConfig {
  std::string path;                                 // where it was read from ("" when none)
  std::map<std::string, Credential> auths;          // by normalised host
  std::string creds_store;                          // unsupported; reported in errors
  std::map<std::string, std::string> cred_helpers;  // by normalised host; unsupported
};

// Parses the JSON of a config.json read from `path`. `auths` entries take `auth` (base64
// "user:password") or `username`/`password`; `identitytoken` is used as the password. Entries
// with neither are skipped. InvalidArgument naming the entry that is malformed.
Result<DockerConfig> ParseDockerConfig(std::string_view json, std::string_view path);

// The config.json to read: `flag` when set ("none": no file), else $DOCKER_CONFIG/config.json,
// else $HOME/.docker/config.json. Absent default files give an empty config.
Result<DockerConfig> LoadDockerConfig(std::string_view flag);

// Credentials by host: Gantry's own first, then the Docker config. Thread-safe (immutable).
class CredentialSet {
 public:
  CredentialSet(std::vector<Credential> own, DockerConfig docker);
  // Credentials bound to exactly `host` (a Reference's registry, e.g. "docker.io").
  std::optional<Credential> For(std::string_view host) const;
  // When no credentials are known for `host` but the Docker config delegates it to a credential
  // helper or store: a sentence saying that Gantry does not support them and what to do. Else "".
  std::string UnsupportedHint(std::string_view host) const;

 private:
  std::map<std::string, Credential> own_;
  DockerConfig docker_;
};

// The token endpoint URL for a Bearer challenge: realm?service=…&scope=…&scope=… (each scope
// once, escaped). InvalidArgument when the realm is missing or not http(s); a realm over plain
// http only when `allow_http`.
Result<std::string> TokenUrl(const Challenge& bearer, const std::vector<std::string>& scopes,
                             bool allow_http);

struct Token {
  std::string value;
  std::chrono::seconds expires_in{60};
};
// The token endpoint's JSON answer: `token` or `access_token`, `expires_in` (default 60 s, as the
// token spec says; at most kMaxTokenLife). Unauthenticated when neither token field is there.
inline constexpr double kMaxTokenLife = 86400;  // seconds
Result<Token> ParseTokenResponse(std::string_view body);

// Bearer tokens by (host, scope list), until 10 s before they expire. Thread-safe.
class TokenCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  std::optional<std::string> Get(const std::string& key, TimePoint now) const;
  void Put(const std::string& key, const Token& token, TimePoint now);

 private:
  mutable Mutex mu_;
  std::map<std::string, std::pair<std::string, TimePoint>> tokens_ GUARDED_BY(mu_);
};

// The target of the rel="next" entry of a Link header (`<url>; rel="next"`), or "".
std::string NextLink(std::string_view link);

// "repository:NAME:ACTIONS" scope strings.
std::string RepositoryScope(std::string_view repository, std::string_view actions);

}  // namespace gantry::oci::internal
