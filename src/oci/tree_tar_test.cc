// Workspace trees as tar (tree_tar.h): a round trip keeps files, directories, modes and links
// (whatever they point at) and .wh. names; a hostile stream never writes outside the destination.

#include "oci/tree_tar.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "base/path.h"
#include "oci/internal/tar_format.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

class TreeTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gantry-tree-tar-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  static std::string Read(const fs::path& p) {
    auto r = ReadFile(p);
    return r.ok() ? *r : "<" + r.status().message() + ">";
  }
  // Extracts `tar` into dir_/out.
  Result<ExtractStats> Extract(const std::string& tar) {
    size_t pos = 0;
    return ExtractTreeTar(
        [&](char* buf, size_t n) -> Result<size_t> {
          size_t k = std::min(n, tar.size() - pos);
          std::memcpy(buf, tar.data() + pos, k);
          pos += k;
          return k;
        },
        dir_ / "out");
  }
  static std::string HostileTar(const std::vector<internal::TarHeader>& entries) {
    std::string out;
    internal::TarWriter w([&](std::string_view d) {
      out.append(d);
      return OkStatus();
    });
    for (const auto& h : entries) {
      EXPECT_TRUE(w.WriteHeader(h).ok());
      if (h.type == '0') {
        EXPECT_TRUE(w.WriteData(std::string(h.size, 'x')).ok());
      }
    }
    EXPECT_TRUE(w.Finish().ok());
    return out;
  }
  fs::path dir_;
};

TEST_F(TreeTarTest, RoundTripKeepsFilesModesLinksAndWhiteoutNames) {
  fs::path ws = dir_ / "ws";
  Write(ws / "src/main.c", "int main() {}\n");
  Write(ws / "build.sh", "#!/bin/sh\n");
  ::chmod((ws / "build.sh").c_str(), 0755);
  Write(ws / ".wh.notes", "a file, not a whiteout\n");
  fs::create_directories(ws / "empty");
  fs::create_symlink("src/main.c", ws / "main-link");
  fs::create_symlink("/etc/passwd", ws / "abs-link");
  fs::create_symlink("../../outside", ws / "src/climbing-link");
  Write(dir_ / "arts/build/report.txt", "report\n");
  std::string tar;
  auto written = WriteTreesTar({{ws, "workspace"}, {dir_ / "arts", "artifacts"}, {dir_ / "missing", "none"}},
                               [&](std::string_view d) {
                                 tar.append(d);
                                 return OkStatus();
                               });
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(written->bytes, 14u + 10 + 23 + 7);
  auto got = Extract(tar);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  fs::path out = dir_ / "out";
  EXPECT_EQ(Read(out / "workspace/src/main.c"), "int main() {}\n");
  EXPECT_EQ(Read(out / "workspace/.wh.notes"), "a file, not a whiteout\n");
  EXPECT_EQ(fs::status(out / "workspace/build.sh").permissions() & fs::perms::owner_exec, fs::perms::owner_exec);
  EXPECT_TRUE(fs::is_directory(out / "workspace/empty"));
  EXPECT_EQ(fs::read_symlink(out / "workspace/main-link"), "src/main.c");
  EXPECT_EQ(fs::read_symlink(out / "workspace/abs-link"), "/etc/passwd");
  EXPECT_EQ(fs::read_symlink(out / "workspace/src/climbing-link"), "../../outside");
  EXPECT_EQ(Read(out / "artifacts/build/report.txt"), "report\n");
  EXPECT_TRUE(fs::is_directory(out / "none"));
}

// The shapes a release's workspace upload takes (release::WorkspaceTrees): a directory and a file
// at their paths in the workspace, a whole tree at the top; a prefix that climbs is refused.
TEST_F(TreeTarTest, PrefixesOfSeveralComponentsFilesAndTheTop) {
  Write(dir_ / "ws/build/out/index.html", "hi\n");
  Write(dir_ / "ws/bin/server", "elf\n");
  Write(dir_ / "top/a.txt", "a\n");
  std::string tar;
  auto sink = [&](std::string_view d) {
    tar.append(d);
    return OkStatus();
  };
  auto written = WriteTreesTar({{dir_ / "ws/build/out", "dist/app"}, {dir_ / "ws/bin/server", "bin/server"}, {dir_ / "top", ""}}, sink);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  ASSERT_TRUE(Extract(tar).ok());
  EXPECT_EQ(Read(dir_ / "out/dist/app/index.html"), "hi\n");
  EXPECT_EQ(Read(dir_ / "out/bin/server"), "elf\n");
  EXPECT_EQ(Read(dir_ / "out/a.txt"), "a\n");
  for (const char* bad : {"../x", "a/../b", "a//b", "./a", "/abs"}) {
    EXPECT_EQ(WriteTreesTar({{dir_ / "top", bad}}, sink).status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(WriteTreesTar({{dir_ / "ws/bin/server", ""}}, sink).status().code(), Code::kInvalidArgument);
}

TEST_F(TreeTarTest, WriterStopsAtItsLimit) {
  Write(dir_ / "ws/big", std::string(1000, 'b'));
  auto written = WriteTreesTar({{dir_ / "ws", "workspace"}}, [](std::string_view) { return OkStatus(); }, 999);
  EXPECT_EQ(written.status().code(), Code::kResourceExhausted) << written.status().ToString();
}

TEST_F(TreeTarTest, HostileStreamsNeverWriteOutside) {
  using H = internal::TarHeader;
  fs::create_directories(dir_ / "victim");
  // A name climbing out.
  EXPECT_EQ(Extract(HostileTar({H{.name = "workspace/../../victim/x", .size = 1}})).status().code(),
            Code::kInvalidArgument);
  // A link to outside, then a file through it.
  auto through = Extract(HostileTar({H{.name = "workspace/esc", .type = '2', .linkname = (dir_ / "victim").string()},
                                     H{.name = "workspace/esc/z", .size = 1}}));
  EXPECT_EQ(through.status().code(), Code::kPermissionDenied) << through.status().ToString();
  EXPECT_FALSE(fs::exists(dir_ / "victim/z"));
  auto relative = Extract(HostileTar({H{.name = "workspace/up", .type = '2', .linkname = "../../victim"},
                                      H{.name = "workspace/up/w", .size = 1}}));
  EXPECT_EQ(relative.status().code(), Code::kPermissionDenied) << relative.status().ToString();
  EXPECT_FALSE(fs::exists(dir_ / "victim/w"));
  // A hard link to a file outside.
  auto hard = Extract(HostileTar({H{.name = "workspace/h", .type = '1', .linkname = "/etc/passwd"}}));
  EXPECT_FALSE(hard.ok());
  // A file written over a link replaces the link, not its target.
  std::ofstream(dir_ / "victim/keep") << "keep";
  auto over = Extract(HostileTar({H{.name = "workspace/k", .type = '2', .linkname = (dir_ / "victim/keep").string()},
                                  H{.name = "workspace/k", .size = 3}}));
  ASSERT_TRUE(over.ok()) << over.status().ToString();
  EXPECT_EQ(Read(dir_ / "victim/keep"), "keep");
  EXPECT_EQ(Read(dir_ / "out/workspace/k"), "xxx");
  EXPECT_TRUE(fs::is_empty(dir_ / "victim") || fs::exists(dir_ / "victim/keep"));
}

}  // namespace
}  // namespace gantry::oci
