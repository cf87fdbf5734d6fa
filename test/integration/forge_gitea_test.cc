// The Gitea forge client against a real Gitea (test/env/gitea.sh): statuses set and read back,
// a token without the scope named, an unknown repository, a refused token. A binary of its own with
// few dependencies (test/integration/CMakeLists.txt), so it builds without the whole of Gantry.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "forge/forge.h"
#include "test/env/gitea.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

using ::testing::HasSubstr;

testenv::Gitea& Forge() {
  static testenv::Gitea* gitea = new testenv::Gitea(testenv::Shared("gitea.sh"));
  return *gitea;
}

TEST(GiteaForge, SetsStatusesAndNamesTheMissingScope) {
  testenv::ScopedTempDir tmp;
  auto& g = Forge();
  ASSERT_TRUE(g.CreateOrg("scopes").ok());
  ASSERT_TRUE(g.CreateRepo("scopes", "web").ok());
  auto pushed = g.Push("scopes", "web", tmp.path() + "/work", {{"README.md", "hello\n"}}, "first");
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string sha = *pushed;
  ASSERT_TRUE(g.CreateUser("reader", "reader-password-1").ok());
  auto reader = g.CreateToken("reader", "reader-password-1", "read-only", {"read:repository"});
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();

  auto f = forge::New({.kind = forge::Kind::kGitea, .api_url = g.url() + "/api/v1", .token = g.admin_token()});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->SetCommitStatus("scopes/web", {.sha = sha, .state = forge::State::kRunning, .context = "gantry/ci",
                                                    .description = "running", .target_url = "https://gantry.example/runs/1"})
                  .ok());
  ASSERT_TRUE((*f)->SetCommitStatus("scopes/web", {.sha = sha, .state = forge::State::kSuccess, .context = "gantry/ci",
                                                    .description = "all steps succeeded"})
                  .ok());
  auto got = g.Statuses("scopes", "web", sha);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].state, "success");
  EXPECT_EQ((*got)[1].state, "pending");  // running is pending on Gitea
  EXPECT_EQ((*got)[1].target_url, "https://gantry.example/runs/1");

  // A token that may only read: one clear error naming the scope.
  auto ro = forge::New({.kind = forge::Kind::kGitea, .api_url = g.url() + "/api/v1", .token = *reader});
  Status s = (*ro)->SetCommitStatus("scopes/web", {.sha = sha, .state = forge::State::kFailure, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("lacks the scope write:repository"));
  EXPECT_FALSE(forge::Retryable(s));
  // No such repository.
  s = (*f)->SetCommitStatus("scopes/nothing", {.sha = sha, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kNotFound) << s.ToString();
  // A wrong token.
  auto wrong = forge::New({.kind = forge::Kind::kGitea, .api_url = g.url() + "/api/v1", .token = "0123456789abcdef"});
  EXPECT_EQ((*wrong)->SetCommitStatus("scopes/web", {.sha = sha, .context = "gantry/ci"}).code(), Code::kUnauthenticated);
}

}  // namespace
}  // namespace gantry
