// Fuzzes webhook::Verify past the signature: each input is a body signed correctly for one of the
// providers and event types Gantry acts on (chosen by the first byte), so the payload parsers of
// every provider see hostile JSON. Any input must verify or fail cleanly; a per-repository secret
// (Config::secret_for) must never accept the shared secret for the repository it names.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "webhook/webhook.h"

using gantry::webhook::Config;
using gantry::webhook::Event;
using gantry::webhook::Headers;
using gantry::webhook::HmacSha256Hex;

namespace {

constexpr char kSecret[] = "fuzz-shared-secret";
constexpr char kOwn[] = "fuzz-repository-secret";

Headers Signed(uint8_t pick, const std::string& body, const std::string& secret) {
  std::string sig = HmacSha256Hex(secret, body);
  switch (pick % 9) {
    case 0: return {{"x-github-event", "push"}, {"x-github-delivery", "d"}, {"x-hub-signature-256", "sha256=" + sig}};
    case 1: return {{"x-github-event", "pull_request"}, {"x-github-delivery", "d"}, {"x-hub-signature-256", "sha256=" + sig}};
    case 2: return {{"x-github-event", "ping"}, {"x-github-delivery", "d"}, {"x-hub-signature-256", "sha256=" + sig}};
    case 3: return {{"x-gitea-event", "push"}, {"x-gitea-delivery", "d"}, {"x-gitea-signature", sig}};
    case 4: return {{"x-forgejo-event", "pull_request"}, {"x-forgejo-delivery", "d"}, {"x-forgejo-signature", sig}};
    case 5: return {{"x-gitlab-event", "Push Hook"}, {"x-gitlab-token", secret}, {"x-gitlab-event-uuid", "d"}};
    case 6: return {{"x-gitlab-event", "Merge Request Hook"}, {"x-gitlab-token", secret}, {"x-gitlab-event-uuid", "d"}};
    case 7: return {{"x-event-key", "repo:push"}, {"x-request-uuid", "d"}, {"x-hub-signature", "sha256=" + sig}};
    default: return {{"x-gantry-event", "push"}, {"x-gantry-delivery", "d"}, {"x-gantry-signature", "sha256=" + sig}};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t pick = data[0];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  Config shared{.secret = kSecret};
  auto event = gantry::webhook::Verify(Signed(pick, body, kSecret), body, shared);
  if (!event.ok()) return 0;
  // The same delivery under a per-repository secret for the repository it names: signed with
  // the shared secret it must be refused, signed with the repository's own it must verify.
  Config own{.secret = kSecret, .secret_for = [](const Event&) { return std::string(kOwn); }};
  if (gantry::webhook::Verify(Signed(pick, body, kSecret), body, own).ok()) {
    std::fprintf(stderr, "the shared secret was accepted for a repository with its own\n");
    std::abort();
  }
  if (!gantry::webhook::Verify(Signed(pick, body, kOwn), body, own).ok()) {
    std::fprintf(stderr, "a delivery signed with the repository's own secret was refused\n");
    std::abort();
  }
  return 0;
}
