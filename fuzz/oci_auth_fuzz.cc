// Fuzzes what a registry (or the user's Docker config) hands the registry client before any
// credential is sent: a WWW-Authenticate header (ParseWwwAuthenticate, then TokenUrl for each
// Bearer challenge), a token endpoint's answer (ParseTokenResponse) and a Docker config.json
// (ParseDockerConfig, NormalizeRegistryHost of its keys). Any input must parse or fail cleanly; a
// token URL is never built for a realm that is not http(s), nor over plain http when refused.

#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz.h"
#include "oci/internal/auth_flow.h"

using namespace gantry;
using namespace gantry::oci::internal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = fuzz::Text(data, size);
  if (auto challenges = ParseWwwAuthenticate(text); challenges.ok()) {
    const std::vector<std::string> scopes = {"repository:team/web:pull", "repository:team/web:pull,push"};
    for (const Challenge& c : *challenges) {
      if (c.scheme != "bearer") continue;
      auto url = TokenUrl(c, scopes, /*allow_http=*/false);
      if (!url.ok()) continue;
      std::string scheme = url->substr(0, 8);
      for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (scheme != "https://") fuzz::Fail("a token URL that is not https", *url);
      (void)TokenUrl(c, {}, /*allow_http=*/true);
    }
  }
  (void)ParseTokenResponse(text);
  if (auto config = ParseDockerConfig(text, "config.json"); config.ok()) {
    for (const auto& [host, credential] : config->auths) (void)NormalizeRegistryHost(host);
  }
  (void)NormalizeRegistryHost(text);
  return 0;
}
