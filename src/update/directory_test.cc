// UpdateDirectory on a temporary working tree; UpdateRepository's dry run on a fake repository.

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/fakes/git_repository.h"
#include "update/update.h"

namespace gantry::update {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr std::string_view kDeployment = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.local/web:1.0.0 # pinned
)";

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "update-dir-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    root_ = t;
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& rel, std::string_view data, int mode = 0644) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << data;
    ::chmod(p.c_str(), static_cast<mode_t>(mode));
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(root_ / rel, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::vector<ImageRule> Rules() {
    auto rule = ParseImageRule("registry.local/web=registry.local/web:2.0.0");
    EXPECT_TRUE(rule.ok()) << rule.status().ToString();
    return {*rule};
  }

  fs::path root_;
};

TEST_F(DirectoryTest, RewritesInPlaceKeepingModeAndOtherBytes) {
  Write("dev/deploy.yaml", kDeployment, 0640);
  Write("dev/notes.txt", "registry.local/web:1.0.0\n");
  auto r = UpdateDirectory(root_, Rules(), /*dry_run=*/false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files, 1u);
  ASSERT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(r->changes[0].file, "dev/deploy.yaml");
  EXPECT_EQ(r->changes[0].new_text, "registry.local/web:2.0.0");
  EXPECT_TRUE(r->skipped.empty());
  EXPECT_THAT(Read("dev/deploy.yaml"), HasSubstr("image: registry.local/web:2.0.0 # pinned\n"));
  EXPECT_EQ(Read("dev/notes.txt"), "registry.local/web:1.0.0\n");
  struct stat st{};
  ASSERT_EQ(::stat((root_ / "dev/deploy.yaml").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);

  // A second run has nothing left to do.
  r = UpdateDirectory(root_, Rules(), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->files, 0u);
  EXPECT_TRUE(r->changes.empty());
}

TEST_F(DirectoryTest, DryRunWritesNothing) {
  Write("deploy.yaml", kDeployment);
  auto r = UpdateDirectory(root_, Rules(), /*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files, 1u);
  EXPECT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(Read("deploy.yaml"), kDeployment);
}

TEST_F(DirectoryTest, UnparsableFileIsSkippedAndTheOthersUpdated) {
  Write("a/broken.yaml", "image: registry.local/web:1.0.0\n  bad: [indent\n");
  Write("b/deploy.yaml", kDeployment);
  auto r = UpdateDirectory(root_, Rules(), false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_THAT(r->skipped[0], HasSubstr("a/broken.yaml"));
  EXPECT_EQ(r->files, 1u);
  EXPECT_THAT(Read("b/deploy.yaml"), HasSubstr("registry.local/web:2.0.0"));
}

TEST_F(DirectoryTest, GitDirectoriesAndSymlinksAreLeftAlone) {
  Write(".git/config.yaml", kDeployment);
  Write("outside/deploy.yaml", kDeployment);
  fs::create_directories(root_ / "tree");
  fs::create_symlink(root_ / "outside/deploy.yaml", root_ / "tree/link.yaml");
  auto r = UpdateDirectory(root_ / "tree", Rules(), false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files, 0u);
  r = UpdateDirectory(root_, Rules(), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->files, 1u);
  EXPECT_EQ(Read(".git/config.yaml"), kDeployment);
}

TEST_F(DirectoryTest, NotADirectory) {
  auto r = UpdateDirectory(root_ / "missing", Rules(), false);
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("missing"));
  Write("file.yaml", kDeployment);
  r = UpdateDirectory(root_ / "file.yaml", Rules(), false);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
}

TEST(GitUpdateTest, DryRunComputesTheChangesAndPushesNothing) {
  fakes::FakeRepository repo;
  std::string tip = repo.Commit("main", {{"envs/dev/deploy.yaml", std::string(kDeployment)}}, "init");
  GitUpdateOptions options;
  options.path = "envs/dev";
  options.dry_run = true;
  auto rule = ParseImageRule("registry.local/web=registry.local/web:2.0.0");
  ASSERT_TRUE(rule.ok());
  options.rules = {*rule};
  auto r = UpdateRepository(repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->committed);
  EXPECT_EQ(r->commit, tip);
  ASSERT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(r->changes[0].file, "envs/dev/deploy.yaml");
  EXPECT_EQ(repo.pushes(), 0);
  EXPECT_EQ(repo.Tip("main"), tip);

  // The same options without dry_run commit exactly those changes.
  options.dry_run = false;
  r = UpdateRepository(repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->committed);
  EXPECT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(repo.pushes(), 1);
}

}  // namespace
}  // namespace gantry::update
