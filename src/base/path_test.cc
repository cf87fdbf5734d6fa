#include "base/path.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

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

TEST_F(PathTest, WriteFileAtomicIgnoresAPlantedTempSymlink) {
  // The old temp name was predictable (<file>.tmp.<pid>), so a repository could commit a link under
  // it and have the write go wherever the link pointed.
  auto canary = root_ / "canary";
  { std::ofstream(canary) << "untouched"; }
  auto f = repo() / "values.yaml";
  ASSERT_EQ(symlink(canary.c_str(), (f.string() + ".tmp." + std::to_string(getpid())).c_str()), 0);
  ASSERT_TRUE(WriteFileAtomic(f, "new: 1\n", 0644).ok());
  EXPECT_EQ(*ReadFile(canary), "untouched");
  EXPECT_FALSE(fs::is_symlink(f));
  EXPECT_EQ(*ReadFile(f), "new: 1\n");
  size_t temps = 0;
  for (const auto& e : fs::directory_iterator(repo())) temps += e.path().filename().string().find(".tmp.") != std::string::npos;
  EXPECT_EQ(temps, 1u);  // only the planted link: no temp file left behind
}

class CopyTest : public PathTest {
 protected:
  void SetUp() override {
    PathTest::SetUp();
    fs::create_directories(src() / "x" / "sub");
    fs::create_directories(dst());
    fs::create_directories(outside());
    Write(src() / "x" / "sub" / "file", "data");
    Write(root_ / "canary", "host secret");
  }
  fs::path src() { return root_ / "src"; }
  fs::path dst() { return root_ / "dst"; }
  fs::path outside() { return root_ / "outside"; }
  static void Write(const fs::path& p, const std::string& data) { std::ofstream(p) << data; }
  bool OutsideEmpty() { return fs::is_empty(outside()); }
};

TEST_F(CopyTest, CopiesDirectoriesFilesAndLinksWithoutFollowingThem) {
  Write(src() / "x" / "tool", "#!/bin/sh\n");
  ASSERT_EQ(chmod((src() / "x" / "tool").c_str(), 04750), 0);
  ASSERT_EQ(symlink((root_ / "canary").c_str(), (src() / "x" / "leak").c_str()), 0);
  ASSERT_EQ(symlink("sub/file", (src() / "x" / "rel").c_str()), 0);
  ASSERT_EQ(mkfifo((src() / "x" / "fifo").c_str(), 0600), 0);
  auto r = CopyTreeBeneath(src(), "x", dst(), "cache/x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files, 2u);
  EXPECT_EQ(r->links, 2u);
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_EQ(*ReadFile(dst() / "cache/x/sub/file"), "data");
  EXPECT_EQ(fs::status(dst() / "cache/x/tool").permissions(), static_cast<fs::perms>(0750));  // no setuid
  EXPECT_TRUE(fs::is_symlink(dst() / "cache/x/leak"));  // a link, not the canary's content
  EXPECT_EQ(fs::read_symlink(dst() / "cache/x/leak"), root_ / "canary");
  EXPECT_EQ(fs::read_symlink(dst() / "cache/x/rel"), "sub/file");
  EXPECT_FALSE(fs::exists(dst() / "cache/x/fifo"));
  // A single file, and the whole root merged into an existing directory.
  ASSERT_TRUE(CopyTreeBeneath(src(), "x/sub/file", dst(), "one/f").ok());
  EXPECT_EQ(*ReadFile(dst() / "one/f"), "data");
  ASSERT_TRUE(CopyTreeBeneath(src(), "", dst(), "").ok());
  EXPECT_EQ(*ReadFile(dst() / "x/sub/file"), "data");
  EXPECT_EQ(*ReadFile(dst() / "one/f"), "data");
}

TEST_F(CopyTest, RefusesPathsThatLeaveTheRootsOrDoNotExist) {
  EXPECT_EQ(CopyTreeBeneath(src(), "../canary", dst(), "c").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CopyTreeBeneath(src(), "x", dst(), "a/../../c").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CopyTreeBeneath(src(), "/etc", dst(), "c").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CopyTreeBeneath(src(), "missing/x", dst(), "c").status().code(), Code::kNotFound);
  EXPECT_EQ(CopyTreeBeneath(src(), "x/sub/file", dst(), "").status().code(), Code::kInvalidArgument);
}

TEST_F(CopyTest, ASourceComponentThatIsALinkIsNotRead) {
  ASSERT_EQ(symlink("/", (src() / "root").c_str()), 0);
  ASSERT_EQ(symlink((root_ / "canary").c_str(), (src() / "file").c_str()), 0);
  ASSERT_EQ(symlink(root_.c_str(), (src() / "x" / "up").c_str()), 0);
  for (const char* rel : {"root", "root/etc", "file", "x/up/canary"}) {
    auto r = CopyTreeBeneath(src(), rel, dst(), "c");
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << rel;
    EXPECT_NE(r.status().message().find("is a symbolic link"), std::string::npos) << r.status().message();
  }
  EXPECT_TRUE(fs::is_empty(dst()));
}

TEST_F(CopyTest, ADestinationComponentThatIsALinkIsNotWrittenThrough) {
  ASSERT_EQ(symlink(outside().c_str(), (dst() / "x").c_str()), 0);
  auto top = CopyTreeBeneath(src(), "x", dst(), "x");
  EXPECT_EQ(top.status().code(), Code::kPermissionDenied);
  EXPECT_NE(top.status().message().find((dst() / "x").string()), std::string::npos) << top.status().message();
  EXPECT_EQ(CopyTreeBeneath(src(), "x/sub/file", dst(), "x/sub/file").status().code(), Code::kPermissionDenied);
  // A directory deeper in the tree.
  fs::remove(dst() / "x");
  fs::create_directories(dst() / "x");
  ASSERT_EQ(symlink(outside().c_str(), (dst() / "x" / "sub").c_str()), 0);
  EXPECT_EQ(CopyTreeBeneath(src(), "x", dst(), "x").status().code(), Code::kPermissionDenied);
  EXPECT_TRUE(OutsideEmpty());
}

TEST_F(CopyTest, ALinkWhereAFileGoesIsReplacedNotWrittenThrough) {
  fs::create_directories(dst() / "x" / "sub");
  ASSERT_EQ(symlink((root_ / "canary").c_str(), (dst() / "x" / "sub" / "file").c_str()), 0);
  ASSERT_TRUE(CopyTreeBeneath(src(), "x", dst(), "x").ok());
  EXPECT_EQ(*ReadFile(root_ / "canary"), "host secret");
  EXPECT_FALSE(fs::is_symlink(dst() / "x" / "sub" / "file"));
  EXPECT_EQ(*ReadFile(dst() / "x" / "sub" / "file"), "data");
}

TEST_F(CopyTest, NeverWritesOutsideWhileAComponentIsSwappedForALink) {
  // Another process keeps exchanging dst/x (a directory) with a link to `outside`: each copy lands
  // in the real directory or fails, never in `outside`.
  fs::create_directories(dst() / "x");
  ASSERT_EQ(symlink(outside().c_str(), (dst() / "alt").c_str()), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      swaps += ::renameat2(AT_FDCWD, (dst() / "x").c_str(), AT_FDCWD, (dst() / "alt").c_str(), RENAME_EXCHANGE) == 0;
    }
  });
  // At least 300 copies, and until both outcomes were seen (the race was really run), within 20 s:
  // on a loaded machine the swapper may not be scheduled during the first few hundred.
  int ok = 0, refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 300 || ((ok == 0 || refused == 0) && std::chrono::steady_clock::now() < deadline); ++i) {
    auto r = CopyTreeBeneath(src(), "x", dst(), "x");
    ok += r.ok();
    refused += r.status().code() == Code::kPermissionDenied;
    if (i % 64 == 63) std::this_thread::yield();
  }
  stop.store(true);
  swapper.join();
  EXPECT_TRUE(OutsideEmpty());
  EXPECT_GT(swaps.load(), 0);
  EXPECT_GT(refused, 0) << ok << " copies succeeded";  // the race was really run
}

TEST_F(CopyTest, LimitsAreEnforced) {
  Write(src() / "x" / "big", std::string(1000, 'b'));
  EXPECT_EQ(CopyTreeBeneath(src(), "x", dst(), "a", {.max_bytes = 500}).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(CopyTreeBeneath(src(), "x", dst(), "b", {.max_entries = 2}).status().code(), Code::kResourceExhausted);
  fs::path deep = src() / "deep";
  for (int i = 0; i < 5; ++i) deep /= "d";
  fs::create_directories(deep);
  EXPECT_EQ(CopyTreeBeneath(src(), "deep", dst(), "c", {.max_depth = 3}).status().code(), Code::kResourceExhausted);
  EXPECT_TRUE(CopyTreeBeneath(src(), "deep", dst(), "c", {.max_depth = 5}).ok());
}


// The process executor gives a workspace to the steps' host user before each step, while other
// steps of the run may be swapping its directories for links.
TEST_F(PathTest, ChownTreeBeneathChangesTheTreeAndNeverWhatALinkPointsTo) {
  if (::geteuid() != 0) GTEST_SKIP() << "changing owners needs root";
  fs::create_directories(root_ / "ws" / "a" / "b");
  fs::create_directories(root_ / "outside");
  std::ofstream(root_ / "ws" / "a" / "b" / "f") << "x";
  std::ofstream(root_ / "outside" / "host-file") << "y";
  fs::create_symlink(root_ / "outside", root_ / "ws" / "link");
  ASSERT_TRUE(ChownTreeBeneath(root_ / "ws", 65533, 65533).ok());
  struct stat st;
  for (const char* p : {"ws", "ws/a", "ws/a/b", "ws/a/b/f"}) {
    ASSERT_EQ(::lstat((root_ / p).c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, 65533u) << p;
  }
  ASSERT_EQ(::lstat((root_ / "ws" / "link").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65533u);  // the link itself
  for (const char* p : {"outside", "outside/host-file"}) {
    ASSERT_EQ(::lstat((root_ / p).c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, 0u) << p << " was given away through the link";
  }
  EXPECT_EQ(ChownTreeBeneath(root_ / "ws" / "link", 65533, 65533).code(), Code::kInvalidArgument);
}


// The workspace limit is measured while a parallel step may point a directory at "/".
TEST_F(PathTest, TreeBytesBeneathCountsOnlyWhatIsBeneath) {
  fs::create_directories(root_ / "ws" / "a");
  fs::create_directories(root_ / "outside");
  std::ofstream(root_ / "ws" / "a" / "f") << std::string(100, 'x');
  std::ofstream(root_ / "outside" / "big") << std::string(10000, 'y');
  fs::create_symlink(root_ / "outside", root_ / "ws" / "link");
  fs::create_symlink(root_ / "outside" / "big", root_ / "ws" / "file-link");
  auto bytes = TreeBytesBeneath(root_ / "ws");
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*bytes, 100u);
  EXPECT_EQ(TreeBytesBeneath(root_ / "ws" / "link").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace gantry
