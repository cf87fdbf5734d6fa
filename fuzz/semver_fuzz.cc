// Fuzzes semantic versions and ranges, which come from Git tags, registry tags and the ranges users
// write in Applications and image policies: ParseVersion, VersionRange::Parse / Matches / Highest,
// and update::SelectLatest over the tags. The first line of the input is the range (and the tag
// filter pattern); every other line is a version or tag. Any input must parse or fail cleanly; a
// version must survive ToString → ParseVersion, precedence must be antisymmetric, and Highest must
// pick a matching version that no other matching one exceeds.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/semver.h"
#include "fuzz/fuzz.h"
#include "update/update.h"

using namespace gantry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = fuzz::Text(data, size);
  std::vector<std::string_view> lines;
  for (std::string_view rest = text;;) {
    size_t nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos || lines.size() == 64) break;
    rest.remove_prefix(nl + 1);
  }

  std::vector<semver::Version> versions;
  std::vector<std::string> tags;
  for (size_t i = 1; i < lines.size(); ++i) {
    tags.emplace_back(lines[i]);
    auto v = semver::ParseVersion(lines[i]);
    if (!v.ok()) continue;
    std::string printed = v->ToString();
    auto again = semver::ParseVersion(printed);
    if (!again.ok() || *again != *v || again->build != v->build) fuzz::Fail("version round trip differs", printed);
    for (const semver::Version& w : versions) {
      std::strong_ordering vw = semver::Compare(*v, w), wv = semver::Compare(w, *v);
      if ((vw < 0) != (wv > 0) || (vw == 0) != (wv == 0)) {
        fuzz::Fail("precedence is not antisymmetric", printed + " vs " + w.ToString());
      }
    }
    versions.push_back(*std::move(v));
  }

  if (auto range = semver::VersionRange::Parse(lines[0]); range.ok()) {
    std::optional<semver::Version> highest = range->Highest(versions);
    for (const semver::Version& v : versions) {
      if (range->Matches(v) && (!highest || *highest < v)) {
        fuzz::Fail("Highest missed a higher matching version", v.ToString());
      }
    }
    if (highest && !range->Matches(*highest)) fuzz::Fail("Highest picked a version out of range", highest->ToString());
  }

  using Kind = update::TagPolicy::Kind;
  (void)update::SelectLatest(tags, {.kind = Kind::kSemver, .range = std::string(lines[0])});
  (void)update::SelectLatest(tags, {.kind = Kind::kNumerical, .pattern = std::string(lines[0]), .extract = "$1"});
  (void)update::SelectLatest(tags, {.kind = Kind::kAlphabetical, .ascending = false, .pattern = std::string(lines[0])});
  return 0;
}
