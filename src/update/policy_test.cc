// SelectLatest: the tag policies of Flux's ImagePolicy.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "update/update.h"

namespace gantry::update {
namespace {

using ::testing::HasSubstr;
using Kind = TagPolicy::Kind;

const std::vector<std::string> kTags = {"1.0.0", "v1.2.3", "1.10.0", "1.9.9", "2.0.0-rc.1", "latest",
                                        "1.2.3-alpha", "0.9.0"};

TEST(SelectLatest, SemverRangeSkipsPreReleasesUnlessAsked) {
  auto got = SelectLatest(kTags, {.kind = Kind::kSemver, .range = "^1.0"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "1.10.0");  // numeric order, not alphabetical
  got = SelectLatest(kTags, {.kind = Kind::kSemver, .range = "*"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "1.10.0");  // 2.0.0-rc.1 is a pre-release the range does not ask for
  got = SelectLatest(kTags, {.kind = Kind::kSemver, .range = ">=2.0.0-0"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "2.0.0-rc.1");
  got = SelectLatest(kTags, {.kind = Kind::kSemver, .range = "~1.2"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "v1.2.3");  // the tag as written, "v" kept
}

TEST(SelectLatest, SemverErrors) {
  auto got = SelectLatest(kTags, {.kind = Kind::kSemver, .range = ">=3"});
  EXPECT_EQ(got.status().code(), Code::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("semver >=3"));
  EXPECT_EQ(SelectLatest(kTags, {.kind = Kind::kSemver, .range = ">=x.y!"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SelectLatest({}, {.kind = Kind::kSemver, .range = "*"}).status().code(), Code::kNotFound);
}

TEST(SelectLatest, RegexFilterWithExtraction) {
  std::vector<std::string> tags = {"main-abc1234-1700000100", "main-def5678-1700000200", "feature-x-1800000000",
                                   "main-0000000-999", "latest"};
  TagPolicy policy{.kind = Kind::kNumerical, .pattern = "^main-[a-f0-9]+-(?P<ts>[0-9]+)", .extract = "$ts"};
  auto got = SelectLatest(tags, policy);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "main-def5678-1700000200");  // returns the tag, ordered by the extraction
  policy.extract = "${ts}";
  EXPECT_EQ(SelectLatest(tags, policy).value_or(""), "main-def5678-1700000200");
  policy.ascending = false;
  EXPECT_EQ(SelectLatest(tags, policy).value_or(""), "main-0000000-999");
  // Alphabetical order of the extraction ("999" > "1700000200" as text).
  EXPECT_EQ(SelectLatest(tags, {.kind = Kind::kAlphabetical, .pattern = policy.pattern, .extract = "$1"}).value_or(""),
            "main-0000000-999");
}

TEST(SelectLatest, RegexErrors) {
  auto bad = SelectLatest(kTags, {.kind = Kind::kAlphabetical, .pattern = "(unclosed"});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("bad pattern"));
  auto none = SelectLatest(kTags, {.kind = Kind::kAlphabetical, .pattern = "^release-"});
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("none of 8 tags matches the filter"));
  auto group = SelectLatest(kTags, {.kind = Kind::kAlphabetical, .pattern = "(?P<ts>.*)", .extract = "$nope"});
  EXPECT_EQ(group.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(group.status().message(), HasSubstr("no group \"nope\""));
  EXPECT_EQ(SelectLatest(kTags, {.kind = Kind::kAlphabetical, .extract = "$1"}).status().code(),
            Code::kInvalidArgument);
}

TEST(SelectLatest, AlphabeticalAndNumerical) {
  std::vector<std::string> tags = {"RELEASE.2024-01-02", "RELEASE.2023-12-31", "RELEASE.2024-01-10"};
  EXPECT_EQ(SelectLatest(tags, {.kind = Kind::kAlphabetical}).value_or(""), "RELEASE.2024-01-10");
  EXPECT_EQ(SelectLatest(tags, {.kind = Kind::kAlphabetical, .ascending = false}).value_or(""), "RELEASE.2023-12-31");
  std::vector<std::string> numbers = {"9", "10", "2.5", "x", "-1"};
  EXPECT_EQ(SelectLatest(numbers, {.kind = Kind::kNumerical}).value_or(""), "10");  // not "9" as text would give
  EXPECT_EQ(SelectLatest(numbers, {.kind = Kind::kNumerical, .ascending = false}).value_or(""), "-1");
  EXPECT_EQ(SelectLatest(std::vector<std::string>{"a", "b"}, {.kind = Kind::kNumerical}).status().code(),
            Code::kNotFound);
}

}  // namespace
}  // namespace gantry::update
