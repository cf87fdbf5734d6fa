// Fuzzes what a registry serves about an image: manifests and indexes (ParseManifest, ParseIndex,
// under each Content-Type a registry may send) and the references and platforms users and
// indexes name (ParseReference, ParsePlatform). Any input must parse or fail cleanly, and a parsed
// manifest or index must survive Serialize → Parse unchanged (its digest is what is pushed).

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz.h"
#include "oci/oci.h"

using namespace gantry;

namespace {

constexpr std::string_view kContentTypes[] = {
    "", oci::media::kOciManifest, oci::media::kOciIndex, oci::media::kDockerManifest,
    oci::media::kDockerManifestList, "application/json"};

bool SameDescriptor(const oci::Descriptor& a, const oci::Descriptor& b) {
  return a.media_type == b.media_type && a.digest == b.digest && a.size == b.size &&
         a.annotations == b.annotations && a.platform == b.platform && a.urls == b.urls;
}

bool SameDescriptors(const std::vector<oci::Descriptor>& a, const std::vector<oci::Descriptor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameDescriptor(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = fuzz::Text(data, size);
  for (std::string_view content_type : kContentTypes) {
    if (auto m = oci::ParseManifest(text, content_type); m.ok()) {
      std::string json = oci::SerializeManifest(*m);
      auto again = oci::ParseManifest(json);
      if (!again.ok()) fuzz::Fail("SerializeManifest output does not parse", again.status().ToString() + "\n" + json);
      if (again->media_type != m->media_type || !SameDescriptor(again->config, m->config) ||
          !SameDescriptors(again->layers, m->layers) || again->annotations != m->annotations) {
        fuzz::Fail("manifest round trip differs", json);
      }
    }
    if (auto index = oci::ParseIndex(text, content_type); index.ok()) {
      std::string json = oci::SerializeIndex(*index);
      auto again = oci::ParseIndex(json);
      if (!again.ok()) fuzz::Fail("SerializeIndex output does not parse", again.status().ToString() + "\n" + json);
      if (again->media_type != index->media_type || !SameDescriptors(again->manifests, index->manifests) ||
          again->annotations != index->annotations) {
        fuzz::Fail("index round trip differs", json);
      }
    }
  }
  if (auto ref = oci::ParseReference(text); ref.ok()) {
    std::string printed = ref->ToString();
    auto again = oci::ParseReference(printed);
    if (!again.ok()) fuzz::Fail("Reference::ToString output does not parse", again.status().ToString() + "\n" + printed);
    if (again->ToString() != printed) fuzz::Fail("reference round trip differs", printed);
  }
  if (auto platform = oci::ParsePlatform(text); platform.ok()) {
    auto again = oci::ParsePlatform(platform->ToString());
    if (!again.ok() || !(*again == *platform)) fuzz::Fail("platform round trip differs", platform->ToString());
  }
  return 0;
}
