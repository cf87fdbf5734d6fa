#include "base/path.h"

#include <unistd.h>

#include <gtest/gtest.h>

namespace gantry {
namespace {
namespace fs = std::filesystem;

class PathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gantry-path-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "repo" / "app");
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path repo() { return root_ / "repo"; }
  fs::path root_;
};

TEST_F(PathTest, SafeJoinNormalises) {
  EXPECT_EQ(*SafeJoin("/r", "a/./b/../c"), fs::path("/r/a/c"));
  EXPECT_EQ(*SafeJoin("/r", ""), fs::path("/r"));
}

TEST_F(PathTest, SafeJoinRefusesEscapes) {
  EXPECT_EQ(SafeJoin("/r", "../etc/passwd").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SafeJoin("/r", "a/../../x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SafeJoin("/r", "/etc/passwd").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SafeJoin("/r", std::string_view("a\0b", 3)).status().code(), Code::kInvalidArgument);
}

TEST_F(PathTest, ResolveBeneathFollowsLinksInside) {
  ASSERT_EQ(symlink("app", (repo() / "current").c_str()), 0);
  auto p = ResolveBeneath(repo(), "current/values.yaml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(*p, repo() / "app" / "values.yaml");
}

TEST_F(PathTest, ResolveBeneathRefusesLinksOut) {
  ASSERT_EQ(symlink("/etc/passwd", (repo() / "passwd").c_str()), 0);
  ASSERT_EQ(symlink("../..", (repo() / "app" / "up").c_str()), 0);
  auto abs = ResolveBeneath(repo(), "passwd");
  EXPECT_EQ(abs.status().code(), Code::kPermissionDenied);
  EXPECT_NE(abs.status().message().find("/etc/passwd"), std::string::npos);
  EXPECT_EQ(ResolveBeneath(repo(), "app/up/etc").status().code(), Code::kPermissionDenied);
}

TEST_F(PathTest, ResolveBeneathDetectsLoops) {
  ASSERT_EQ(symlink("b", (repo() / "a").c_str()), 0);
  ASSERT_EQ(symlink("a", (repo() / "b").c_str()), 0);
  EXPECT_EQ(ResolveBeneath(repo(), "a").status().code(), Code::kInvalidArgument);
}

TEST_F(PathTest, AtomicWriteThenBoundedRead) {
  auto f = repo() / "kubeconfig";
  ASSERT_TRUE(WriteFileAtomic(f, "secret", 0600).ok());
  EXPECT_EQ(fs::status(f).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(*ReadFile(f), "secret");
  EXPECT_EQ(ReadFile(f, 3).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(ReadFile(repo() / "missing").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry
