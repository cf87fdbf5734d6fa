// The pure parts of ci/server: which repository a webhook is about, provider pinning, policies.

#include "ci/server.h"

#include <gtest/gtest.h>

namespace gantry::ci {
namespace {

using webhook::Provider;

TEST(ServerRepoTest, LocatesHostAndPathOfEveryUrlForm) {
  EXPECT_EQ(LocateRepo("https://Git.Example:8443/org/app.git/"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("ssh://git@git.example/org/app.git"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("git@git.example:org/app.git"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("file:///srv/git/app"), (RepoLocation{"", "srv/git/app"}));
}

TEST(ServerRepoTest, SameRepoComparesTheHostNotOnlyThePath) {
  const std::string configured = "https://git.example/org/app";
  webhook::Event e;
  e.repo_full_name = "org/app";
  e.clone_url = "https://evil.example/org/app";
  EXPECT_FALSE(SameRepo(configured, e)) << "another host's org/app";
  e.clone_url = "https://git.example/org/app.git";
  EXPECT_TRUE(SameRepo(configured, e));
  e.clone_url = "https://git.example/org/app-fork";
  EXPECT_FALSE(SameRepo(configured, e));
  // No clone URL (Bitbucket): the full name decides, but a host the event names must match.
  e.clone_url.clear();
  e.web_url = "https://evil.example/org/app";
  EXPECT_FALSE(SameRepo(configured, e));
  e.web_url = "https://git.example/org/app";
  EXPECT_TRUE(SameRepo(configured, e));
  e.repo_full_name = "g/app";
  EXPECT_FALSE(SameRepo(configured, e)) << "the end of a path segment is not the repository";
}

TEST(ServerProviderTest, GitLabsPlainTokenOnlyWhenPinned) {
  RepoPolicy any;
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", any, Provider::kGitHub).ok());
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", any, Provider::kGitea).ok());
  Status s = CheckProvider("https://git.example/org/app", any, Provider::kGitLab);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("provider=gitlab"), std::string::npos) << s.message();
  // Detected from the host.
  EXPECT_EQ(CheckProvider("https://github.com/org/app", any, Provider::kGitLab).code(), Code::kPermissionDenied);
  EXPECT_TRUE(CheckProvider("https://github.com/org/app", any, Provider::kGitHub).ok());
  EXPECT_EQ(CheckProvider("https://github.com/org/app", any, Provider::kGitea).code(), Code::kPermissionDenied);
  EXPECT_TRUE(CheckProvider("https://gitlab.com/org/app", any, Provider::kGitLab).ok());
  // Pinned.
  RepoPolicy gitlab{.provider = Provider::kGitLab};
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", gitlab, Provider::kGitLab).ok());
  EXPECT_EQ(CheckProvider("https://git.example/org/app", gitlab, Provider::kGitHub).code(), Code::kPermissionDenied);
  RepoPolicy gitea{.provider = Provider::kGitea};
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", gitea, Provider::kForgejo).ok());
}

TEST(ServerPolicyTest, RepoPolicyChangesOnlyTheKeysItNames) {
  RepoPolicy defaults{.require_approval = true, .trust_pull_requests = true, .untrusted_network = false};
  auto p = ParseRepoPolicy("https://git.example/org/app approval=none network=on provider=gitea", defaults);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->first, "https://git.example/org/app");
  EXPECT_FALSE(p->second.require_approval);
  EXPECT_TRUE(p->second.untrusted_network);
  EXPECT_TRUE(p->second.trust_pull_requests);
  EXPECT_EQ(p->second.provider, Provider::kGitea);
  EXPECT_FALSE(ParseRepoPolicy("https://x/y approval=maybe", defaults).ok());
  EXPECT_FALSE(ParseRepoPolicy("https://x/y colour=red", defaults).ok());
  EXPECT_FALSE(ParseRepoPolicy("", defaults).ok());
}

}  // namespace
}  // namespace gantry::ci
