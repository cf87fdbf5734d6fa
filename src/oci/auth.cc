// Registry authentication without I/O: challenges, Docker config, host-bound credentials, tokens.

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "base/base64.h"

#include "base/ascii.h"
#include "base/mutex.h"
#include "base/path.h"
#include "base/percent.h"
#include "oci/internal/auth_flow.h"
#include "value/value.h"

namespace gantry::oci::internal {
namespace {

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~/=").find(c) != std::string_view::npos;
}

std::string StringField(const value::Value& v, std::string_view key) {
  const value::Value* f = v.Get(key);
  return f && f->IsString() ? std::string(f->AsString()) : std::string();
}

}  // namespace

Result<std::vector<Challenge>> ParseWwwAuthenticate(std::string_view h) {
  std::vector<Challenge> out;
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  auto fail = [&](std::string_view what) {
    return InvalidArgumentError("WWW-Authenticate {:?}: {} at offset {}", h, what, i);
  };
  while (true) {
    skip_ws();
    while (i < h.size() && h[i] == ',') {
      ++i;
      skip_ws();
    }
    if (i >= h.size()) break;
    size_t start = i;
    while (i < h.size() && IsTokenChar(h[i]) && h[i] != '=') ++i;
    if (i == start) return fail("expected an auth scheme");
    Challenge c;
    c.scheme = AsciiLower(h.substr(start, i - start));
    // auth-params: name=value pairs separated by commas, until the next scheme (a token not
    // followed by '=').
    while (true) {
      skip_ws();
      size_t save = i;
      while (i < h.size() && h[i] == ',') {
        ++i;
        skip_ws();
      }
      size_t name_start = i;
      while (i < h.size() && IsTokenChar(h[i]) && h[i] != '=') ++i;
      std::string name = AsciiLower(h.substr(name_start, i - name_start));
      skip_ws();
      if (name.empty() || i >= h.size() || h[i] != '=') {
        if (name.empty() && i < h.size()) return fail("expected name=value");
        i = save;  // the next challenge's scheme (or the end)
        break;
      }
      ++i;  // '='
      skip_ws();
      std::string val;
      if (i < h.size() && h[i] == '"') {
        ++i;
        bool closed = false;
        while (i < h.size()) {
          char ch = h[i++];
          if (ch == '\\' && i < h.size()) {
            val += h[i++];
          } else if (ch == '"') {
            closed = true;
            break;
          } else {
            val += ch;
          }
        }
        if (!closed) return fail("unterminated quoted string");
      } else {
        size_t vs = i;
        while (i < h.size() && h[i] != ',' && h[i] != ' ' && h[i] != '\t') ++i;
        val = std::string(h.substr(vs, i - vs));
      }
      c.params[name] = std::move(val);
      skip_ws();
      if (i < h.size() && h[i] != ',') return fail("expected ',' between parameters");
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) return InvalidArgumentError("WWW-Authenticate header is empty");
  return out;
}

std::string NormalizeRegistryHost(std::string_view key) {
  std::string_view k = key;
  for (std::string_view scheme : {"https://", "http://"}) {
    if (k.size() >= scheme.size() && AsciiLower(k.substr(0, scheme.size())) == scheme) {
      k.remove_prefix(scheme.size());
    }
  }
  if (size_t slash = k.find('/'); slash != std::string_view::npos) k = k.substr(0, slash);
  std::string host = AsciiLower(k);
  if (host == "index.docker.io" || host == "registry-1.docker.io" || host == "registry.hub.docker.com")
    host = "docker.io";
  return host;
}

Result<DockerConfig> ParseDockerConfig(std::string_view json, std::string_view path) {
  GANTRY_ASSIGN_OR_RETURN(value::Value doc, value::ParseJson(json, path));
  DockerConfig config;
  config.path = std::string(path);
  if (!doc.IsMap()) return InvalidArgumentError("{}: not a JSON object", path);
  if (const value::Value* auths = doc.Get("auths")) {
    if (!auths->IsMap()) return InvalidArgumentError("{}: auths is not an object", path);
    for (const value::MapEntry& e : auths->entries()) {
      std::string key(e.key.AsString());
      if (!e.value.IsMap()) return InvalidArgumentError("{}: auths[{:?}] is not an object", path, key);
      Credential cred;
      cred.host = NormalizeRegistryHost(key);
      if (std::string auth = StringField(e.value, "auth"); !auth.empty()) {
        std::optional<std::string> decoded = Base64Decode(auth);
        size_t colon = decoded ? decoded->find(':') : std::string::npos;
        if (colon == std::string::npos)
          return InvalidArgumentError("{}: auths[{:?}].auth is not base64 of user:password", path,
                                      key);
        cred.username = decoded->substr(0, colon);
        cred.password = decoded->substr(colon + 1);
      } else {
        cred.username = StringField(e.value, "username");
        cred.password = StringField(e.value, "password");
      }
      if (std::string token = StringField(e.value, "identitytoken"); !token.empty()) {
        if (cred.username.empty()) cred.username = "<token>";
        cred.password = token;
      }
      if (cred.username.empty() && cred.password.empty()) continue;
      // The most specific key wins when several normalise to the same host: keep the first
      // with credentials (Docker itself writes one per host).
      config.auths.emplace(cred.host, std::move(cred));
    }
  }
  config.creds_store = StringField(doc, "credsStore");
  if (const value::Value* helpers = doc.Get("credHelpers"); helpers && helpers->IsMap()) {
    for (const value::MapEntry& e : helpers->entries()) {
      config.cred_helpers[NormalizeRegistryHost(e.key.AsString())] =
          e.value.IsString() ? std::string(e.value.AsString()) : "";
    }
  }
  return config;
}

Result<DockerConfig> LoadDockerConfig(std::string_view flag) {
  if (flag == "none") return DockerConfig{};
  std::filesystem::path path;
  bool explicit_path = !flag.empty();
  if (explicit_path) {
    path = std::string(flag);
  } else if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir) {
    path = std::filesystem::path(dir) / "config.json";
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    path = std::filesystem::path(home) / ".docker" / "config.json";
  } else {
    return DockerConfig{};
  }
  Result<std::string> text = ReadFile(path, 4 << 20);
  if (!text.ok()) {
    if (!explicit_path && text.status().code() == Code::kNotFound) return DockerConfig{};
    return text.status().WithContext("registry config");
  }
  return ParseDockerConfig(*text, path.string());
}

CredentialSet::CredentialSet(std::vector<Credential> own, DockerConfig docker)
    : docker_(std::move(docker)) {
  for (Credential& c : own) {
    c.host = NormalizeRegistryHost(c.host);
    own_[c.host] = std::move(c);
  }
}

std::optional<Credential> CredentialSet::For(std::string_view host) const {
  std::string h = NormalizeRegistryHost(host);
  if (auto it = own_.find(h); it != own_.end()) return it->second;
  if (auto it = docker_.auths.find(h); it != docker_.auths.end()) return it->second;
  return std::nullopt;
}

std::string CredentialSet::UnsupportedHint(std::string_view host) const {
  if (For(host)) return "";
  std::string h = NormalizeRegistryHost(host);
  if (auto it = docker_.cred_helpers.find(h); it != docker_.cred_helpers.end()) {
    return fmt::format(
        "{} delegates {} to credential helper {:?} (credHelpers), which Gantry does not support: "
        "put the credentials under auths, or pass --username/--password-stdin",
        docker_.path, h, it->second);
  }
  if (!docker_.creds_store.empty()) {
    return fmt::format(
        "{} keeps credentials in credsStore {:?}, which Gantry does not support: put them under "
        "auths, or pass --username/--password-stdin",
        docker_.path, docker_.creds_store);
  }
  return "";
}

Result<std::string> TokenUrl(const Challenge& bearer, const std::vector<std::string>& scopes,
                             bool allow_http) {
  std::string realm = bearer.Param("realm");
  if (realm.empty()) return InvalidArgumentError("Bearer challenge without a realm");
  std::string lower = AsciiLower(realm);
  if (!lower.starts_with("https://") && !(allow_http && lower.starts_with("http://")))
    return InvalidArgumentError("token realm {:?} is not an https URL", realm);
  std::string url = realm;
  char sep = realm.find('?') == std::string::npos ? '?' : '&';
  if (std::string service = bearer.Param("service"); !service.empty()) {
    url += sep + std::string("service=") + PercentEncode(service);
    sep = '&';
  }
  std::vector<std::string> seen;
  for (const std::string& s : scopes) {
    if (s.empty() || std::find(seen.begin(), seen.end(), s) != seen.end()) continue;
    seen.push_back(s);
    url += sep + std::string("scope=") + PercentEncode(s);
    sep = '&';
  }
  return url;
}

Result<Token> ParseTokenResponse(std::string_view body) {
  Result<value::Value> doc = value::ParseJson(body, "token response");
  if (!doc.ok() || !doc->IsMap())
    return UnauthenticatedError("token endpoint answered with something other than a JSON object");
  Token t;
  t.value = StringField(*doc, "token");
  if (t.value.empty()) t.value = StringField(*doc, "access_token");
  if (t.value.empty())
    return UnauthenticatedError("token endpoint answered without token or access_token");
  // Capped at a day: converting a huge double to an integer is undefined, and a huge life would
  // overflow the cache's deadline; a longer-lived token only costs one request a day more.
  if (const value::Value* e = doc->Get("expires_in"); e && e->IsNumber()) {
    double secs = e->IsInt() ? static_cast<double>(e->AsInt()) : e->AsDouble();
    if (secs >= 1) t.expires_in = std::chrono::seconds(static_cast<int64_t>(std::min(secs, kMaxTokenLife)));
  }
  return t;
}

std::optional<std::string> TokenCache::Get(const std::string& key, TimePoint now) const {
  MutexLock lock(mu_);
  auto it = tokens_.find(key);
  if (it == tokens_.end() || now >= it->second.second) return std::nullopt;
  return it->second.first;
}

void TokenCache::Put(const std::string& key, const Token& token, TimePoint now) {
  auto life = token.expires_in - std::chrono::seconds(10);
  if (life <= std::chrono::seconds(0)) life = token.expires_in / 2;
  MutexLock lock(mu_);
  tokens_[key] = {token.value, now + life};
}

std::string NextLink(std::string_view link) {
  size_t i = 0;
  while (i < link.size()) {
    size_t open = link.find('<', i);
    if (open == std::string_view::npos) break;
    size_t close = link.find('>', open);
    if (close == std::string_view::npos) break;
    size_t end = link.find('<', close);  // the next entry
    std::string params = AsciiLower(link.substr(close + 1, end == std::string_view::npos ? end : end - close - 1));
    if (params.find("rel=\"next\"") != std::string::npos || params.find("rel=next") != std::string::npos)
      return std::string(link.substr(open + 1, close - open - 1));
    i = close + 1;
  }
  return "";
}

std::string RepositoryScope(std::string_view repository, std::string_view actions) {
  return fmt::format("repository:{}:{}", repository, actions);
}

}  // namespace gantry::oci::internal
