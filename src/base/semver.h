#pragma once
// Semantic versions (semver.org 2.0) and version ranges in the npm / Masterminds syntax, as Git
// revisions ("the highest tag matching ^1.4") and image tag policies (update) use them.
//
// A version is MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD] with an optional leading "v"; missing
// components are 0 ("v1.2" is 1.2.0), leading zeros are refused. Precedence follows semver.org:
// build metadata is ignored, a pre-release sorts before its release, pre-release identifiers
// compare numerically when both are numbers and as ASCII otherwise.
//
// A range is comparator sets joined by "||" (OR); the comparators of a set are separated by spaces
// or commas (AND). Comparators: =V, !=V, >V, >=V, <V, <=V, ~V (~> too), ^V, "A - B" (inclusive),
// and x-ranges (1.2.x, 1.*, 1.2, *). Partial versions widen as npm does: ~1.4 is >=1.4.0 <1.5.0,
// ^2 is >=2.0.0 <3.0.0, ^0.2.3 is >=0.2.3 <0.3.0, <=1.2 is <1.3.0, >1.2 is >=1.3.0.
// A pre-release version matches only a set that names a pre-release of the same MAJOR.MINOR.PATCH
// (">=1.2.3-rc.1" admits 1.2.3-rc.2 but not 1.2.4-rc.1), so ranges select releases by default.
// Pure functions of values; thread-safe.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::semver {

struct Version {
  uint64_t major = 0, minor = 0, patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers; empty for a release
  std::string build;                    // ignored by comparisons

  // "1.2.3-rc.1+build.5" (without any "v").
  std::string ToString() const;
};

// semver.org precedence (build metadata ignored).
std::strong_ordering Compare(const Version& a, const Version& b);
inline bool operator==(const Version& a, const Version& b) { return Compare(a, b) == 0; }
inline std::strong_ordering operator<=>(const Version& a, const Version& b) { return Compare(a, b); }

// Parses a version as described above. InvalidArgument naming the text and what is wrong.
Result<Version> ParseVersion(std::string_view text);

// A parsed range; Matches() is cheap. A value: copyable, thread-safe for concurrent readers.
class VersionRange {
 public:
  enum class Op { kEq, kNe, kGt, kGe, kLt, kLe };
  struct Comparator {
    Op op;
    Version version;
  };

  // Parses `text` as described above. InvalidArgument naming the text and the offending part.
  static Result<VersionRange> Parse(std::string_view text);

  // Whether `version` satisfies the range (including the pre-release rule).
  bool Matches(const Version& version) const;

  // The highest of `versions` that matches, or nullopt.
  std::optional<Version> Highest(const std::vector<Version>& versions) const;

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::vector<std::vector<Comparator>> sets_;  // OR of ANDs
};

}  // namespace gantry::semver
