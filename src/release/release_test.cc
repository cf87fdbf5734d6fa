#include "release/release.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::release {
namespace {

using ::testing::HasSubstr;

ReleaseRequest Request() {
  ReleaseRequest r;
  r.run_id = 42;
  r.repo = "http://git.local/app.git";
  r.commit = "0123456789abcdef0123456789abcdef01234567";
  r.ref = "refs/heads/main";
  return r;
}

TEST(ExpandTag, Placeholders) {
  EXPECT_EQ(*ExpandTag("{short_commit}", Request()), "0123456789ab");
  EXPECT_EQ(*ExpandTag("{branch}-{run}-{commit}", Request()), "main-42-0123456789abcdef0123456789abcdef01234567");
  ReleaseRequest tagged = Request();
  tagged.ref = "refs/tags/v1.2.0";
  EXPECT_EQ(*ExpandTag("{tag}", tagged), "v1.2.0");
}

TEST(ExpandTag, UnknownPlaceholderAndInvalidTagsAreErrors) {
  auto unknown = ExpandTag("{sha}", Request());
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown placeholder {sha}"));
  // A branch with a slash makes no valid tag; the message says which tag and why.
  ReleaseRequest feature = Request();
  feature.ref = "refs/heads/feature/x";
  auto bad = ExpandTag("{branch}", feature);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"feature/x\""));
  // On a tag push {branch} is empty: an empty tag is refused, not pushed as "".
  ReleaseRequest tagged = Request();
  tagged.ref = "refs/tags/v1";
  EXPECT_FALSE(ExpandTag("{branch}", tagged).ok());
}

// A step may leave symlinks in the workspace; a layer must never pick up the server's own files
// through one.
TEST(LayerSource, RefusesPathsWhoseLinksLeaveTheWorkspace) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("gantry-layer-source-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "ws" / "dist");
  fs::create_directories(root / "secret");
  fs::create_symlink(root / "secret", root / "ws" / "escape");  // absolute, outside
  fs::create_symlink("../secret", root / "ws" / "up");          // relative, outside
  fs::create_symlink("dist", root / "ws" / "alias");            // inside: fine

  EXPECT_EQ(*LayerSource(root / "ws", "dist"), root / "ws" / "dist");
  EXPECT_EQ(*LayerSource(root / "ws", "."), root / "ws");
  EXPECT_TRUE(LayerSource(root / "ws", "alias").ok());
  EXPECT_EQ(LayerSource(root / "ws", "escape").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(LayerSource(root / "ws", "escape/x").status().code(), Code::kPermissionDenied);
  auto up = LayerSource(root / "ws", "up");
  EXPECT_EQ(up.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(up.status().message(), HasSubstr("layer src up"));
  auto missing = LayerSource(root / "ws", "build");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("after the steps"));
  fs::remove_all(root);
}

// The payload is what pull agents verify and read: a GitHub push event naming the config repo.
TEST(PushEventPayload, IsAGitHubPushEventAgentsAccept) {
  std::string body = PushEventPayload("http://git.local/config.git", "main", "", std::string(40, 'a'), {"envs/dev/k.yaml"});
  webhook::Headers h{{"x-github-event", "push"},
                     {"x-github-delivery", "d-1"},
                     {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex("s3cret", body)},
                     {"content-type", "application/json"}};
  auto event = webhook::Verify(h, body, {.secret = "s3cret"});
  ASSERT_TRUE(event.ok()) << event.status().message();
  EXPECT_EQ(event->branch, "main");
  EXPECT_EQ(event->after, std::string(40, 'a'));
  EXPECT_EQ(event->clone_url, "http://git.local/config.git");
}

}  // namespace
}  // namespace gantry::release
