// What oci::BuildImage writes is an image other tools accept: `skopeo inspect` reads the layout
// with the digest and labels Gantry reports, and `umoci unpack --rootless` (Debian's umoci)
// recreates the source files with the same contents, modes, symlink, hard link and long name.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/process.h"
#include "oci/build.h"
#include "oci/layout.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, std::string_view content, fs::perms mode) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  fs::permissions(path, mode);
}

Result<std::string> RunTool(const std::vector<std::string>& argv) {
  ProcessOptions options;
  options.inherit_env = true;
  options.timeout = std::chrono::minutes(2);
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunChecked(argv, options));
  return r.out;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every entry under `want` is under `got` with the same type, permission bits, contents and link
// target.
void ExpectSameTree(const fs::path& want, const fs::path& got) {
  int entries = 0;
  for (auto it = fs::recursive_directory_iterator(want); it != fs::recursive_directory_iterator(); ++it) {
    ++entries;
    fs::path rel = it->path().lexically_relative(want);
    SCOPED_TRACE(rel.string());
    fs::path other = got / rel;
    struct stat a {}, b {};
    ASSERT_EQ(::lstat(it->path().c_str(), &a), 0);
    ASSERT_EQ(::lstat(other.c_str(), &b), 0) << other << " is missing";
    EXPECT_EQ(a.st_mode & S_IFMT, b.st_mode & S_IFMT);
    if (S_ISLNK(a.st_mode)) {
      EXPECT_EQ(fs::read_symlink(it->path()), fs::read_symlink(other));
      continue;
    }
    EXPECT_EQ(a.st_mode & 07777, b.st_mode & 07777) << std::oct << (a.st_mode & 07777) << " vs "
                                                    << (b.st_mode & 07777);
    if (S_ISREG(a.st_mode)) {
      EXPECT_EQ(ReadAll(it->path()), ReadAll(other));
    }
  }
  EXPECT_GE(entries, 6);
}

TEST(OciBuildTest, SkopeoAndUmociAcceptTheBuiltImage) {
  testenv::ScopedTempDir tmp;
  fs::path src = fs::path(tmp.path()) / "src";
  WriteFile(src / "hello.txt", "hello\n", fs::perms(0644));
  WriteFile(src / "bin/run.sh", "#!/bin/sh\necho hi\n", fs::perms(0755));
  WriteFile(src / "secret.conf", "token=1\n", fs::perms(0600));
  WriteFile(src / "data/empty", "", fs::perms(0644));
  // Over 100 bytes: a PAX header in the tar.
  WriteFile(src / "data" / (std::string(120, 'n') + ".txt"), "long name\n", fs::perms(0640));
  fs::permissions(src / "data", fs::perms(0750));
  fs::create_symlink("hello.txt", src / "current");
  fs::create_hard_link(src / "hello.txt", src / "data/hello-again.txt");  // stored as a tar hard link

  auto layout = Layout::Open(tmp.path() + "/layout", true);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  BuildOptions options;
  options.platform = Platform{"linux", "amd64", ""};
  options.layers = {{.source = src, .destination = "/app"}};
  options.cmd = std::vector<std::string>{"/app/bin/run.sh"};
  options.labels = {{"org.example.team", "ci"}};
  options.revision = "0123456789abcdef";
  options.timestamp = 1'700'000'000;
  auto built = BuildImage(options, *layout, "v1");
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  ASSERT_EQ(built->layers.size(), 1u);

  auto inspected = RunTool({"skopeo", "inspect", "oci:" + tmp.path() + "/layout:v1"});
  ASSERT_TRUE(inspected.ok()) << inspected.status().ToString();
  auto doc = value::ParseJson(*inspected, "skopeo inspect");
  ASSERT_TRUE(doc.ok()) << doc.status().ToString() << "\n" << *inspected;
  ASSERT_TRUE(doc->Get("Digest") && doc->Get("Digest")->IsString()) << *inspected;
  EXPECT_EQ(doc->Get("Digest")->AsString(), built->image.digest);
  const value::Value* labels = doc->Get("Labels");
  ASSERT_TRUE(labels && labels->IsMap()) << *inspected;
  ASSERT_TRUE(labels->Get("org.example.team")) << *inspected;
  EXPECT_EQ(labels->Get("org.example.team")->AsString(), "ci");
  ASSERT_TRUE(labels->Get("org.opencontainers.image.revision")) << *inspected;
  EXPECT_EQ(labels->Get("org.opencontainers.image.revision")->AsString(), "0123456789abcdef");
  const value::Value* layers = doc->Get("Layers");
  ASSERT_TRUE(layers && layers->IsSeq() && layers->items().size() == 1) << *inspected;
  EXPECT_EQ(layers->items()[0].AsString(), built->layers[0].digest);
  EXPECT_EQ(doc->Get("Architecture")->AsString(), "amd64");

  std::string bundle = tmp.path() + "/bundle";
  auto unpacked = RunTool({"umoci", "unpack", "--rootless", "--image", tmp.path() + "/layout:v1", bundle});
  ASSERT_TRUE(unpacked.ok()) << unpacked.status().ToString();
  fs::path rootfs = fs::path(bundle) / "rootfs/app";
  ExpectSameTree(src, rootfs);
  EXPECT_TRUE(fs::equivalent(rootfs / "hello.txt", rootfs / "data/hello-again.txt"));
  // The runtime config umoci derives carries the image's cmd.
  auto config = value::ParseJson(ReadAll(fs::path(bundle) / "config.json"), "config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_NE(value::ToJson(*config).find("/app/bin/run.sh"), std::string::npos);
}

}  // namespace
}  // namespace gantry::oci
