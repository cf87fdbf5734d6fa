// Fuzzes what users and repository Secrets tell Gantry about Git remotes: repository URLs
// (ValidateUrl, ParseUrl, HostOf, ScrubUrl, CredentialsFor / CredentialsApply), branch and tag
// names (ValidateRefName), credentials specs (ParseCredentials) and known_hosts files
// (CheckKnownHost). The first line of the input is the URL, ref name and credentials spec; the
// rest is a known_hosts text. Any input must be accepted or refused cleanly; a URL ValidateUrl
// accepts must parse, and credentials never apply to a URL of another scheme.

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz.h"
#include "git/git.h"
#include "git/internal/remote.h"

using namespace gantry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string_view> fields = fuzz::Fields(fuzz::Text(data, size), 2);
  std::string_view line = fields[0];

  if (git::ValidateUrl(line, /*allow_file=*/true).ok()) {
    auto parsed = git::internal::ParseUrl(line);
    if (!parsed.ok()) fuzz::Fail("a URL ValidateUrl accepts does not parse", std::string(line));
    const git::Credentials credentials{.host = git::HostOf(line), .username = "u", .password = "p"};
    if (git::internal::CredentialsApply(credentials, parsed->scheme == "ssh" ? "https" : "ssh", line)) {
      fuzz::Fail("credentials applied to a URL of another scheme", std::string(line));
    }
    (void)git::internal::CredentialsApply(credentials, parsed->scheme, line);
  }
  (void)git::ValidateUrl(line, /*allow_file=*/false);
  (void)git::ScrubUrl(line);
  (void)git::ValidateRefName(line);
  if (auto credentials = git::ParseCredentials(line); credentials.ok()) {
    (void)git::CredentialsFor({*credentials}, "https://git.example.com:8443/team/app.git");
    (void)git::CredentialsFor({*credentials}, "git@git.example.com:team/app.git");
  }

  if (fields.size() == 2) {
    constexpr std::string_view kKey("\0\0\0\x0bssh-ed25519 fuzz key", 24);
    for (int port : {22, 2222}) {
      (void)git::internal::CheckKnownHost(fields[1], "git.example.com", port, kKey);
      (void)git::internal::CheckKnownHost(fields[1], "192.0.2.10", port, kKey);
    }
  }
  return 0;
}
