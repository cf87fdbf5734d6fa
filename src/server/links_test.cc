#include "server/links.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

constexpr char kShortSha[] = "9f3c2e1d";

TEST(LinksTest, CommitPagesOfTheKnownForgesInEveryUrlForm) {
  const LinkOptions none;
  EXPECT_THAT(CommitUrl(none, "https://github.com/org/app.git", kShortSha), Optional(std::string("https://github.com/org/app/commit/9f3c2e1d")));
  EXPECT_THAT(CommitUrl(none, "git@github.com:org/app.git", kShortSha), Optional(std::string("https://github.com/org/app/commit/9f3c2e1d")));
  EXPECT_THAT(CommitUrl(none, "https://user:secret@github.com/org/app", kShortSha),
              Optional(std::string("https://github.com/org/app/commit/9f3c2e1d")))
      << "credentials never reach a link";
  EXPECT_THAT(CommitUrl(none, "https://gitlab.com/group/sub/app.git", kShortSha),
              Optional(std::string("https://gitlab.com/group/sub/app/-/commit/9f3c2e1d")));
  EXPECT_THAT(CommitUrl(none, "ssh://git@gitlab.corp.example:2222/group/app.git", kShortSha),
              Optional(std::string("https://gitlab.corp.example/group/app/-/commit/9f3c2e1d")))
      << "an ssh port is not the web server's";
  EXPECT_THAT(CommitUrl(none, "https://gitea.example:3000/org/app.git", kShortSha),
              Optional(std::string("https://gitea.example:3000/org/app/commit/9f3c2e1d")));
  EXPECT_THAT(CommitUrl(none, "https://codeberg.org/org/app", kShortSha), Optional(std::string("https://codeberg.org/org/app/commit/9f3c2e1d")));
}

TEST(LinksTest, PlainGitHostingNeedsARuleAndRulesComeFirst) {
  EXPECT_EQ(CommitUrl({}, "https://git.example/org/app", kShortSha), std::nullopt);
  EXPECT_EQ(CommitUrl({}, "file:///srv/app.git", kShortSha), std::nullopt);
  EXPECT_EQ(CommitUrl({}, "https://github.com/org/app", ""), std::nullopt);
  LinkOptions o;
  o.commits.push_back(*ParseLinkRule("--commit-url", "https://git.example/=gitlab", true));
  o.commits.push_back(*ParseLinkRule("--commit-url", "https://cgit.example/=https://cgit.example/{path}/commit/?id={sha}", true));
  EXPECT_THAT(CommitUrl(o, "https://git.example/org/app.git", kShortSha), Optional(std::string("https://git.example/org/app/-/commit/9f3c2e1d")));
  EXPECT_THAT(CommitUrl(o, "https://cgit.example/app.git", kShortSha), Optional(std::string("https://cgit.example/app/commit/?id=9f3c2e1d")));
}

TEST(LinksTest, ImagePagesOfKnownRegistriesAndByRule) {
  const std::string digest = "sha256:0123";
  EXPECT_THAT(ImageUrl({}, "quay.io/org/web", digest), Optional(std::string("https://quay.io/repository/org/web/manifest/sha256:0123")));
  EXPECT_THAT(ImageUrl({}, "ghcr.io/org/web", digest), Optional(std::string("https://ghcr.io/org/web")));
  EXPECT_THAT(ImageUrl({}, "nginx", digest), Optional(std::string("https://hub.docker.com/_/nginx")));
  EXPECT_THAT(ImageUrl({}, "org/web", digest), Optional(std::string("https://hub.docker.com/r/org/web")));
  EXPECT_EQ(ImageUrl({}, "registry.internal:5000/web", digest), std::nullopt);
  LinkOptions o;
  o.images.push_back(*ParseLinkRule("--image-url", "registry.internal:5000/=https://ui.internal/{repository}/{digest}", false));
  EXPECT_THAT(ImageUrl(o, "registry.internal:5000/team/web", digest), Optional(std::string("https://ui.internal/team/web/sha256:0123")));
}

TEST(LinksTest, ABadRuleSaysWhichFlagAndWhy) {
  EXPECT_THAT(ParseLinkRule("--commit-url", "https://git.example", true).status().message(), HasSubstr("--commit-url \"https://git.example\": expected PREFIX=TEMPLATE"));
  EXPECT_THAT(ParseLinkRule("--commit-url", "https://git.example/=https://x/{id}", true).status().message(), HasSubstr("no {sha}"));
  EXPECT_THAT(ParseLinkRule("--image-url", "r.example/=https://x/", false).status().message(), HasSubstr("neither {digest}"));
}

}  // namespace
}  // namespace gantry::server
