#include "base/semver.h"

#include <gtest/gtest.h>

namespace gantry::semver {
namespace {

Version V(std::string_view text) {
  auto v = ParseVersion(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status().ToString();
  return v.value_or(Version{});
}

TEST(SemverTest, ParsesVersions) {
  EXPECT_EQ(V("1.2.3").ToString(), "1.2.3");
  EXPECT_EQ(V("v1.2.3").ToString(), "1.2.3");
  EXPECT_EQ(V("V10.20.30").ToString(), "10.20.30");
  EXPECT_EQ(V("v1.2").ToString(), "1.2.0");
  EXPECT_EQ(V("2").ToString(), "2.0.0");
  EXPECT_EQ(V("1.0.0-rc.1+build.5").ToString(), "1.0.0-rc.1+build.5");
  EXPECT_EQ(V("1.0.0-alpha-beta.x-y").prerelease, (std::vector<std::string>{"alpha-beta", "x-y"}));
}

TEST(SemverTest, RefusesMalformedVersions) {
  for (std::string_view bad :
       {"", "v", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+",
        "1.2.x", "*", "a.b.c", "1..3", "1.2.3-rc$", "99999999999999999999.0.0", "1.2-rc.1",
        "main", "latest"}) {
    auto v = ParseVersion(bad);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(SemverTest, OrdersBySemverPrecedence) {
  // semver.org's example chain.
  std::vector<std::string_view> chain = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                         "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
                                         "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0",
                                         "10.0.0"};
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    EXPECT_LT(V(chain[i]), V(chain[i + 1])) << chain[i] << " < " << chain[i + 1];
  }
  EXPECT_EQ(V("1.0.0+a"), V("1.0.0+b"));  // build metadata is ignored
  EXPECT_EQ(V("v1.0"), V("1.0.0"));
}

struct Case {
  std::string_view range;
  std::string_view version;
  bool matches;
};

TEST(SemverTest, RangeTable) {
  const Case cases[] = {
      // The examples.
      {">=1.2.0 <2.0.0", "1.2.0", true},
      {">=1.2.0 <2.0.0", "1.9.99", true},
      {">=1.2.0 <2.0.0", "2.0.0", false},
      {">=1.2.0 <2.0.0", "1.1.9", false},
      {"~1.4", "1.4.0", true},
      {"~1.4", "1.4.7", true},
      {"~1.4", "1.5.0", false},
      {"~1.4", "1.3.9", false},
      {"^2", "2.0.0", true},
      {"^2", "2.99.1", true},
      {"^2", "3.0.0", false},
      {"^2", "1.9.9", false},
      // Caret on zero versions.
      {"^0.2.3", "0.2.3", true},
      {"^0.2.3", "0.2.9", true},
      {"^0.2.3", "0.3.0", false},
      {"^0.2.3", "0.2.2", false},
      {"^0.0.3", "0.0.3", true},
      {"^0.0.3", "0.0.4", false},
      {"^1.2.3", "1.9.0", true},
      {"^1.2.3", "1.2.2", false},
      {"^0", "0.9.9", true},
      {"^0", "1.0.0", false},
      {"^0.0", "0.0.9", true},
      {"^0.0", "0.1.0", false},
      {"^1.x", "1.5.0", true},
      // Tilde.
      {"~1.2.3", "1.2.9", true},
      {"~1.2.3", "1.3.0", false},
      {"~1", "1.9.0", true},
      {"~1", "2.0.0", false},
      {"~>1.2", "1.2.5", true},
      // X-ranges and partial versions.
      {"1.2.x", "1.2.7", true},
      {"1.2.x", "1.3.0", false},
      {"1.2", "1.2.0", true},
      {"1", "1.9.9", true},
      {"1", "2.0.0", false},
      {"*", "3.1.4", true},
      {"x", "0.0.0", true},
      {"=1.2.3", "1.2.3", true},
      {"1.2.3", "1.2.4", false},
      {"v1.2.3", "1.2.3", true},
      // Comparators with partial versions.
      {">1.2", "1.2.9", false},
      {">1.2", "1.3.0", true},
      {"<=1.2", "1.2.9", true},
      {"<=1.2", "1.3.0", false},
      {"<1.2", "1.1.9", true},
      {"<1.2", "1.2.0", false},
      {">=1", "1.0.0", true},
      {"!=1.2.3", "1.2.3", false},
      {"!=1.2.3", "1.2.4", true},
      // AND with commas and spaced operators, OR, hyphens.
      {">=1.0.0, <1.5.0", "1.4.0", true},
      {">= 1.0.0 < 1.5.0", "1.5.0", false},
      {"<1.0.0 || >=2.0.0", "0.5.0", true},
      {"<1.0.0 || >=2.0.0", "1.5.0", false},
      {"<1.0.0 || >=2.0.0", "2.5.0", true},
      {"1.2.3 - 2.3.4", "2.3.4", true},
      {"1.2.3 - 2.3.4", "2.3.5", false},
      {"1.2.3 - 2.3.4", "1.2.2", false},
      {"1.2 - 2.3", "2.3.9", true},
      {"1.2 - 2.3", "2.4.0", false},
      // Pre-releases: excluded unless the set names one of the same MAJOR.MINOR.PATCH.
      {"^1.0.0", "1.2.0-rc.1", false},
      {">=1.0.0", "2.0.0-beta", false},
      {"*", "1.0.0-rc.1", false},
      {">=1.2.3-rc.1", "1.2.3-rc.2", true},
      {">=1.2.3-rc.1", "1.2.3-rc.0", false},
      {">=1.2.3-rc.1", "1.2.4-rc.1", false},
      {">=1.2.3-rc.1", "1.2.4", true},
      {"~1.2.3-beta.2", "1.2.3-beta.4", true},
      {"1.0.0-rc.1", "1.0.0-rc.1", true},
  };
  for (const Case& c : cases) {
    auto range = VersionRange::Parse(c.range);
    ASSERT_TRUE(range.ok()) << c.range << ": " << range.status().ToString();
    EXPECT_EQ(range->Matches(V(c.version)), c.matches) << c.range << " vs " << c.version;
  }
}

TEST(SemverTest, RefusesMalformedRanges) {
  for (std::string_view bad : {"", "||", ">=", "~", "1.2.3 -", "- 1.2.3", "1 - 2 - 3", "=>1.0.0",
                               ">=1.0.0 <", "!=1.2", "1.x.3", "main", ">=1.0\n", "^v", "1.2.3.4"}) {
    auto r = VersionRange::Parse(bad);
    EXPECT_FALSE(r.ok()) << "\"" << bad << "\" parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(SemverTest, HighestPicksTheLargestMatch) {
  std::vector<Version> tags = {V("1.2.0"), V("v1.4.2"), V("1.4.10"), V("1.5.0"), V("2.0.0"),
                               V("2.1.0-rc.1"), V("0.9.0")};
  auto pick = [&](std::string_view text) {
    auto r = VersionRange::Parse(text);
    EXPECT_TRUE(r.ok()) << text;
    auto best = r->Highest(tags);
    return best ? best->ToString() : "none";
  };
  EXPECT_EQ(pick("~1.4"), "1.4.10");  // numerically, not as text
  EXPECT_EQ(pick("^1"), "1.5.0");
  EXPECT_EQ(pick(">=1.2.0 <2.0.0"), "1.5.0");
  EXPECT_EQ(pick("^2"), "2.0.0");  // the release candidate of 2.1.0 is not picked
  EXPECT_EQ(pick(">=2.1.0-rc.0"), "2.1.0-rc.1");
  EXPECT_EQ(pick("^3"), "none");
  EXPECT_EQ(pick("*"), "2.0.0");
}

}  // namespace
}  // namespace gantry::semver
