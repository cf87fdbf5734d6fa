#include "ci/secret_scopes.h"

#include <gtest/gtest.h>

namespace gantry::ci {
namespace {

constexpr char kFile[] = R"(# global
NPM_TOKEN=npm
[repo=https://git.example/org/*]
REGISTRY=reg
[repo=https://git.example/org/app branch=main,release/*]
STAGING=stage
[protected]
PROD=prod
[branch=feature/* event=push]
NPM_TOKEN=npm-feature
)";

SecretRequest Push(std::string branch) {
  return {.repo = "https://git.example/org/app", .event = "push", .branch = std::move(branch), .trusted = true,
          .protected_branches = {"main"}};
}

TEST(SecretScopesTest, APlainNameValueFileIsOneGlobalScope) {
  auto s = ParseSecretScopes("A=1\n# c\n\nB=x=y\r\n", "f");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto sel = Select(*s, {.repo = "any", .event = "pull_request"});
  EXPECT_EQ(sel.in_scope, (std::map<std::string, std::string>{{"A", "1"}, {"B", "x=y"}}));
  EXPECT_TRUE(sel.out_of_scope.empty());
}

TEST(SecretScopesTest, ProductionSecretsOnlyForTrustedPushesToProtectedBranches) {
  auto s = ParseSecretScopes(kFile, "secrets.env");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto main = Select(*s, Push("main"));
  EXPECT_EQ(main.in_scope.at("PROD"), "prod");
  EXPECT_EQ(main.in_scope.at("STAGING"), "stage");
  EXPECT_EQ(main.in_scope.at("REGISTRY"), "reg");
  EXPECT_EQ(main.in_scope.at("NPM_TOKEN"), "npm");

  auto feature = Select(*s, Push("feature/x"));
  EXPECT_EQ(feature.in_scope.count("PROD"), 0u);
  EXPECT_EQ(feature.in_scope.count("STAGING"), 0u);
  EXPECT_EQ(feature.in_scope.at("NPM_TOKEN"), "npm-feature");  // the later matching section wins
  EXPECT_EQ(feature.out_of_scope.at("PROD"), "scoped to [protected]");
  EXPECT_EQ(feature.out_of_scope.at("STAGING"), "scoped to [repo=https://git.example/org/app branch=main,release/*]");

  SecretRequest pr = Push("main");
  pr.event = "pull_request";
  EXPECT_EQ(Select(*s, pr).in_scope.count("PROD"), 0u) << "a pull request into main is not a push to main";
  SecretRequest untrusted = Push("main");
  untrusted.trusted = false;
  EXPECT_EQ(Select(*s, untrusted).in_scope.count("PROD"), 0u);
  SecretRequest other = Push("main");
  other.repo = "https://git.example/other/app";
  auto o = Select(*s, other);
  EXPECT_EQ(o.in_scope.count("REGISTRY"), 0u);
  EXPECT_EQ(o.in_scope.at("PROD"), "prod");  // [protected] has no repo= : every repository's main
}

TEST(SecretScopesTest, MalformedFilesNameTheLineNotTheValue) {
  auto bad = ParseSecretScopes("A=1\n[colour=blue]\n", "s.env");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("s.env:2"), std::string::npos) << bad.status().message();
  auto noeq = ParseSecretScopes("supersecretvalue\n", "s.env");
  ASSERT_FALSE(noeq.ok());
  EXPECT_EQ(noeq.status().message().find("supersecretvalue"), std::string::npos);
  EXPECT_FALSE(ParseSecretScopes("[branch=]\n", "s").ok());
  EXPECT_FALSE(ParseSecretScopes("[branch=main\n", "s").ok());
}

}  // namespace
}  // namespace gantry::ci
