#include "project/glob.h"

#include <gtest/gtest.h>

namespace gantry::project {
namespace {

struct MatchCase {
  const char* pattern;
  const char* text;
  bool match;
};

TEST(GlobMatch, Table) {
  const MatchCase cases[] = {
      {"team-a", "team-a", true},
      {"team-a", "team-ab", false},
      {"team-a-*", "team-a-dev", true},
      {"team-a-*", "team-a-", true},
      {"team-a-*", "team-a", false},
      // '*' stays within a path segment, '**' crosses them.
      {"https://git.example.com/team-a/*", "https://git.example.com/team-a/web", true},
      {"https://git.example.com/team-a/*", "https://git.example.com/team-a/sub/web", false},
      {"https://git.example.com/team-a/**", "https://git.example.com/team-a/sub/web", true},
      // A lone "*" matches everything, '/' included (server URLs).
      {"*", "https://kubernetes.default.svc", true},
      {"*", "", true},
      {"*.svc", "https://kubernetes.default.svc", false},
      // "**/" matches no directory too; a trailing "/**" the directory itself.
      {"apps/**/kustomization.yaml", "apps/kustomization.yaml", true},
      {"apps/**/kustomization.yaml", "apps/a/b/kustomization.yaml", true},
      {"apps/**/kustomization.yaml", "apps/xkustomization.yaml", false},
      {"apps/team-a/**", "apps/team-a", true},
      {"apps/team-a/**", "apps/team-a/web/prod", true},
      {"apps/team-a/**", "apps/team-ab", false},
      {"apps/**", "apps", true},
      {"a**b", "a/x/b", true},
      // '?' is one character other than '/'.
      {"v?", "v1", true},
      {"v?", "v10", false},
      {"a?b", "a/b", false},
      // Classes, negated classes, ranges, escapes.
      {"team-[ab]", "team-a", true},
      {"team-[ab]", "team-c", false},
      {"team-[!ab]", "team-c", true},
      {"team-[^ab]", "team-a", false},
      {"v[0-9]", "v7", true},
      {"v[0-9]", "vx", false},
      {"[]]", "]", true},
      {"a\\*", "a*", true},
      {"a\\*", "ab", false},
      {"", "", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(GlobMatch(c.pattern, c.text), c.match) << c.pattern << " vs " << c.text;
  }
}

TEST(GlobMatch, HostilePatternStaysPolynomial) {
  std::string text(3000, 'a');
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*a*a*b", text));
  EXPECT_FALSE(GlobMatch("**a**a**a**a**a**a**a**b", text));
}

TEST(ValidateGlob, Errors) {
  EXPECT_TRUE(ValidateGlob("team-[a-c]-*").ok());
  EXPECT_TRUE(ValidateGlob("[]]").ok());
  EXPECT_EQ(ValidateGlob("").message(), "is an empty pattern");
  EXPECT_EQ(ValidateGlob("team-[ab").message(), "\"team-[ab\" has an unterminated class at character 6 ('[' without ']')");
  EXPECT_EQ(ValidateGlob("a[!]").code(), Code::kInvalidArgument);  // "[!]" has an unterminated class
  EXPECT_EQ(ValidateGlob("a\\").message(), "\"a\\\\\" ends with a lone backslash");
}

TEST(GlobsIntersect, LiteralsGlobsAndBoth) {
  EXPECT_TRUE(GlobsIntersect("prod", "prod"));
  EXPECT_FALSE(GlobsIntersect("prod", "staging"));
  EXPECT_TRUE(GlobsIntersect("web-*", "web-1"));
  EXPECT_TRUE(GlobsIntersect("web-1", "web-*"));
  EXPECT_FALSE(GlobsIntersect("web-*", "db"));
  EXPECT_TRUE(GlobsIntersect("web-*", "db-*"));  // two globs: taken to intersect
}

}  // namespace
}  // namespace gantry::project
