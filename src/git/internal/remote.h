#pragma once
// Private to gantry::git: URL parsing for credential binding, and known_hosts checking. Pure
// functions of their inputs; thread-safe.

#include <string>
#include <string_view>

#include "base/status.h"
#include "git/git.h"

namespace gantry::git::internal {

struct ParsedUrl {
  std::string scheme;  // lower case: "https", "http", "ssh", "file"; scp-like URLs are "ssh"
  std::string user;    // ssh only
  std::string host;    // lower case, without brackets
  std::string port;    // empty when not given
  std::string path;
};

// Parses a URL ValidateUrl() accepts (with allow_file); InvalidArgument otherwise.
Result<ParsedUrl> ParseUrl(std::string_view url);

// Whether `credentials` may be given to a request for `request_url` of a repository whose URL
// has scheme `repo_scheme`: same scheme, same host, and same port when the credentials name one.
bool CredentialsApply(const Credentials& credentials, std::string_view repo_scheme,
                      std::string_view request_url);

// Whether `known_hosts` (the text of an OpenSSH known_hosts file: plain, wildcard, negated,
// [host]:port and hashed |1| entries, @revoked lines; @cert-authority lines are ignored) accepts
// `key_blob` (the raw SSH public key blob) for host:port. PermissionDenied saying whether the host
// is unknown, its key differs, or the key is revoked.
Status CheckKnownHost(std::string_view known_hosts, std::string_view host, int port,
                      std::string_view key_blob);

}  // namespace gantry::git::internal
