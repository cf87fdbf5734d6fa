// URL and ref-name validation, URL parsing for credential binding, known_hosts checking.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "base/base64.h"

#include "base/ascii.h"
#include "git/git.h"
#include "git/internal/remote.h"

namespace gantry::git {
namespace {

bool HasControlOrSpace(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

// The position of "://" when `url` has a scheme made of scheme characters, else npos.
size_t SchemeEnd(std::string_view url) {
  size_t pos = url.find("://");
  if (pos == std::string_view::npos || pos == 0) return std::string_view::npos;
  for (char c : url.substr(0, pos)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return std::string_view::npos;
    }
  }
  return pos;
}

}  // namespace

namespace internal {

Result<ParsedUrl> ParseUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("repository URL {:?}: {}", ScrubUrl(url), why);
  };
  if (url.empty()) return bad("empty");
  if (HasControlOrSpace(url)) return bad("contains whitespace or control characters");
  ParsedUrl p;
  size_t scheme_end = SchemeEnd(url);
  if (scheme_end == std::string_view::npos) {
    // Transport syntax ("ext::cmd", "fd::17") runs commands or uses descriptors: never.
    if (url.find("::") != std::string_view::npos) {
      return bad("transport syntax \"<transport>::\" is refused (ext:: runs commands)");
    }
    // scp-like: [user@]host:path, with no '/' before the ':'.
    size_t colon = url.find(':');
    size_t slash = url.find('/');
    if (colon == std::string_view::npos || (slash != std::string_view::npos && slash < colon)) {
      return bad("local paths are refused; use file:// (when allowed) or a remote URL");
    }
    std::string_view authority = url.substr(0, colon);
    p.scheme = "ssh";
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
      p.user = std::string(authority.substr(0, at));
      authority = authority.substr(at + 1);
    }
    p.host = AsciiLower(authority);
    p.path = std::string(url.substr(colon + 1));
    if (p.host.size() == 1 && std::isalpha(static_cast<unsigned char>(p.host[0]))) {
      return bad("looks like a Windows drive path");
    }
  } else {
    p.scheme = AsciiLower(url.substr(0, scheme_end));
    std::string_view rest = url.substr(scheme_end + 3);
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    p.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
      p.user = std::string(authority.substr(0, at));
      authority = authority.substr(at + 1);
    }
    if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
      size_t close = authority.find(']');
      if (close == std::string_view::npos) return bad("unterminated '[' in the host");
      p.host = AsciiLower(authority.substr(1, close - 1));
      std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':') return bad("junk after ']' in the host");
        p.port = std::string(after.substr(1));
      }
    } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
      p.host = AsciiLower(authority.substr(0, colon));
      p.port = std::string(authority.substr(colon + 1));
    } else {
      p.host = AsciiLower(authority);
    }
    if (!p.port.empty() &&
        (p.port.size() > 5 || !std::all_of(p.port.begin(), p.port.end(), ::isdigit))) {
      return bad("the port is not a number");
    }
  }
  if (p.scheme != "file" && p.host.empty()) return bad("no host");
  if (!p.host.empty() && p.host[0] == '-') return bad("a host beginning with '-' is refused");
  if (p.path.empty() || p.path == "/") return bad("no repository path");
  return p;
}

bool CredentialsApply(const Credentials& credentials, std::string_view repo_scheme,
                      std::string_view request_url) {
  auto request = ParseUrl(request_url);
  if (!request.ok() || request->scheme != repo_scheme) return false;
  std::string want_host = AsciiLower(credentials.host);
  std::string want_port;
  if (size_t colon = want_host.rfind(':');
      colon != std::string::npos && want_host.find(']') == std::string::npos &&
      want_host.find(':') == colon) {
    want_port = want_host.substr(colon + 1);
    want_host.resize(colon);
  }
  if (!want_host.empty() && want_host.front() == '[' && want_host.back() == ']') {
    want_host = want_host.substr(1, want_host.size() - 2);
  }
  if (want_host.empty() || request->host != want_host) return false;
  return want_port.empty() || want_port == request->port;
}

namespace {

// OpenSSH's pattern match: '*' any run, '?' any one character. Greedy with one backtrack point (the
// last '*'), so O(pattern × text) at worst: a recursive match is exponential in the number of
// stars, and a known_hosts line is input (found by fuzz/git_url).
bool WildcardMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, resume = 0;  // the last '*' and where its run ends so far
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool HashedMatch(std::string_view pattern, std::string_view name) {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name))
  std::string_view rest = pattern.substr(3);
  size_t bar = rest.find('|');
  if (bar == std::string_view::npos) return false;
  auto salt = Base64Decode(rest.substr(0, bar));
  auto hash = Base64Decode(rest.substr(bar + 1));
  if (!salt || !hash) return false;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha1(), salt->data(), static_cast<int>(salt->size()),
           reinterpret_cast<const unsigned char*>(name.data()), name.size(), out, &len) == nullptr) {
    return false;
  }
  return hash->size() == len && std::equal(hash->begin(), hash->end(), out,
                                           [](char a, unsigned char b) {
                                             return static_cast<unsigned char>(a) == b;
                                           });
}

// Whether the comma-separated `patterns` of a known_hosts line name `name`.
bool HostMatches(std::string_view patterns, std::string_view name) {
  bool matched = false;
  size_t start = 0;
  while (start <= patterns.size()) {
    size_t end = patterns.find(',', start);
    std::string_view p = patterns.substr(start, end == std::string_view::npos ? end : end - start);
    bool negated = !p.empty() && p[0] == '!';
    if (negated) p.remove_prefix(1);
    bool m = p.starts_with("|1|") ? HashedMatch(p, name) : WildcardMatch(AsciiLower(p), name);
    if (m && negated) return false;
    matched = matched || m;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return matched;
}

}  // namespace

Status CheckKnownHost(std::string_view known_hosts, std::string_view host, int port,
                      std::string_view key_blob) {
  std::string name = port == 22 || port == 0 ? AsciiLower(host) : fmt::format("[{}]:{}", AsciiLower(host), port);
  bool host_known = false;
  bool key_ok = false;
  size_t start = 0;
  while (start < known_hosts.size()) {
    size_t end = known_hosts.find('\n', start);
    std::string_view line =
        known_hosts.substr(start, end == std::string_view::npos ? end : end - start);
    start = end == std::string_view::npos ? known_hosts.size() : end + 1;
    std::vector<std::string_view> fields;
    size_t i = 0;
    while (i < line.size() && fields.size() < 5) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
      if (j > i) fields.push_back(line.substr(i, j - i));
      i = j;
    }
    if (fields.empty() || fields[0][0] == '#') continue;
    std::string_view marker;
    if (fields[0][0] == '@') {
      marker = fields[0];
      fields.erase(fields.begin());
    }
    if (fields.size() < 3 || marker == "@cert-authority") continue;
    if (!HostMatches(fields[0], name)) continue;
    auto key = Base64Decode(fields[2]);
    bool same = key && *key == key_blob;
    if (marker == "@revoked") {
      if (same) return PermissionDeniedError("the SSH host key of {} is revoked in known_hosts", name);
      continue;
    }
    if (!marker.empty()) continue;
    host_known = true;
    key_ok = key_ok || same;
  }
  if (key_ok) return OkStatus();
  if (host_known) {
    return PermissionDeniedError(
        "the SSH host key of {} differs from the one in known_hosts (refusing: the host may be "
        "impersonated, or its key changed)", name);
  }
  return PermissionDeniedError("SSH host {} is not in known_hosts; add its key to trust it", name);
}

}  // namespace internal

Status ValidateUrl(std::string_view url, bool allow_file) {
  GANTRY_ASSIGN_OR_RETURN(internal::ParsedUrl p, internal::ParseUrl(url));
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("repository URL {:?}: {}", ScrubUrl(url), why);
  };
  if (p.scheme == "file") {
    if (!allow_file) return bad("file:// URLs are not allowed here");
    if (!p.host.empty()) return bad("file:// URLs must be file:///absolute/path");
    return OkStatus();
  }
  if (p.scheme == "https" || p.scheme == "http") {
    if (!p.user.empty()) {
      return bad("credentials in the URL are refused; configure them as repository credentials");
    }
    return OkStatus();
  }
  if (p.scheme == "ssh") {
    if (p.user.find(':') != std::string::npos) {
      return bad("a password in the URL is refused; configure an SSH key as credentials");
    }
    if (!p.user.empty() && p.user[0] == '-') return bad("a user beginning with '-' is refused");
    return OkStatus();
  }
  return bad(fmt::format("scheme {:?} is not supported (https, http, ssh{})", p.scheme,
                         allow_file ? ", file" : ""));
}

Status ValidateRefName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("ref name {:?}: {}", std::string(name), why);
  };
  if (name.empty()) return bad("empty");
  if (name[0] == '-') return bad("must not begin with '-'");
  if (name == "@") return bad("\"@\" alone is not a valid name");
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return bad("control characters");
    if (std::string_view(" ~^:?*[\\").find(c) != std::string_view::npos) {
      return bad(fmt::format("the character {:?} is not allowed", c));
    }
  }
  if (name.find("..") != std::string_view::npos) return bad("\"..\" is not allowed");
  if (name.find("@{") != std::string_view::npos) return bad("\"@{\" is not allowed");
  if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string_view::npos) {
    return bad("empty path component (leading, trailing or double '/')");
  }
  if (name.back() == '.') return bad("must not end with '.'");
  size_t start = 0;
  while (true) {
    size_t end = name.find('/', start);
    std::string_view part = name.substr(start, end == std::string_view::npos ? end : end - start);
    if (part[0] == '.') return bad("a component must not begin with '.'");
    if (part.ends_with(".lock")) return bad("a component must not end with \".lock\"");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return OkStatus();
}

std::string ScrubUrl(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    // scp-like user@host:path keeps its user (not a secret); nothing else carries userinfo.
    return std::string(url);
  }
  size_t start = scheme_end + 3;
  size_t slash = url.find('/', start);
  std::string_view authority = url.substr(start, slash == std::string_view::npos ? slash : slash - start);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, start)) + "***@" + std::string(url.substr(start + at + 1));
}

bool PathChanged(const std::vector<std::string>& changed, std::string_view prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  if (prefix.empty() || prefix == ".") return !changed.empty();
  return std::any_of(changed.begin(), changed.end(), [&](const std::string& p) {
    return p == prefix || (p.size() > prefix.size() && p.starts_with(prefix) && p[prefix.size()] == '/');
  });
}

Result<Credentials> ParseCredentials(std::string_view spec) {
  size_t eq = spec.find('=');
  size_t colon = eq == std::string_view::npos ? eq : spec.find(':', eq);
  if (eq == std::string_view::npos || colon == std::string_view::npos || eq == 0) {
    return InvalidArgumentError("git credentials must be host=user:password (the value is not shown)");
  }
  return Credentials{.host = std::string(spec.substr(0, eq)),
                     .username = std::string(spec.substr(eq + 1, colon - eq - 1)),
                     .password = std::string(spec.substr(colon + 1))};
}

std::string HostOf(std::string_view url) {
  std::string_view h = url;
  size_t scheme = h.find("://");
  if (scheme != std::string_view::npos) h.remove_prefix(scheme + 3);
  if (size_t at = h.find('@'); at != std::string_view::npos && at < h.find('/')) h.remove_prefix(at + 1);
  // scp-like host:path has no port: what follows ':' is the path.
  return std::string(h.substr(0, scheme == std::string_view::npos ? h.find_first_of(":/") : h.find('/')));
}

std::optional<Credentials> CredentialsFor(const std::vector<Credentials>& list, std::string_view url) {
  std::string host_port = HostOf(url);
  std::string_view host = std::string_view(host_port).substr(0, host_port.find(':'));
  for (const auto& c : list) {
    if (c.host == host_port || c.host == host) return c;
  }
  return std::nullopt;
}

}  // namespace gantry::git
