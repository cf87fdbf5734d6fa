#include "oci/layout.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "base/path.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

class LayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "oci-layout-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(LayoutTest, CreateThenOpen) {
  EXPECT_EQ(Layout::Open(dir_ / "absent", false).status().code(), Code::kNotFound);
  auto created = Layout::Open(dir_ / "l", true);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(*ReadFile(dir_ / "l" / "oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");
  EXPECT_TRUE(fs::is_directory(dir_ / "l" / "blobs" / "sha256"));
  auto opened = Layout::Open(dir_ / "l", false);
  ASSERT_TRUE(opened.ok());
  auto index = opened->ReadIndex();
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE(index->manifests.empty());
}

TEST_F(LayoutTest, RefusesADirectoryThatIsNotALayout) {
  fs::create_directories(dir_ / "x");
  std::ofstream(dir_ / "x" / "file") << "hi";
  EXPECT_EQ(Layout::Open(dir_ / "x", true).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(Layout::Open(dir_ / "x", false).status().code(), Code::kFailedPrecondition);
  fs::create_directories(dir_ / "y");
  std::ofstream(dir_ / "y" / "oci-layout") << R"({"imageLayoutVersion":"2.0.0"})";
  EXPECT_EQ(Layout::Open(dir_ / "y", false).status().code(), Code::kFailedPrecondition);
}

TEST_F(LayoutTest, BlobWriteReadAndStreaming) {
  auto layout = Layout::Open(dir_, true);
  ASSERT_TRUE(layout.ok());
  auto d = layout->WriteBlob("hello", "text/plain");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->digest, Sha256Digest("hello"));
  EXPECT_EQ(d->size, 5);
  EXPECT_TRUE(layout->HasBlob(d->digest));
  EXPECT_EQ(*layout->ReadBlob(d->digest), "hello");
  EXPECT_EQ(layout->ReadBlob(d->digest, 4).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(layout->ReadBlob(Sha256Digest("other")).status().code(), Code::kNotFound);

  auto w = layout->NewBlob();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("hel").ok());
  ASSERT_TRUE((*w)->Write("lo!").ok());
  EXPECT_EQ((*w)->size(), 6u);
  auto streamed = (*w)->Commit("text/plain", Sha256Digest("hello!"));
  ASSERT_TRUE(streamed.ok()) << streamed.status().ToString();
  EXPECT_EQ(*layout->ReadBlob(streamed->digest), "hello!");
}

TEST_F(LayoutTest, DigestMismatchIsDataLossAndKeepsNothing) {
  auto layout = Layout::Open(dir_, true);
  ASSERT_TRUE(layout.ok());
  auto w = layout->NewBlob();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("abc").ok());
  auto r = (*w)->Commit("x", Sha256Digest("abd"));
  EXPECT_EQ(r.status().code(), Code::kDataLoss);
  w->reset();
  EXPECT_TRUE(fs::is_empty(dir_ / "blobs" / "sha256"));
  // An abandoned writer leaves nothing either.
  {
    auto w2 = layout->NewBlob();
    ASSERT_TRUE((*w2)->Write("partial").ok());
  }
  EXPECT_TRUE(fs::is_empty(dir_ / "blobs" / "sha256"));
}

TEST_F(LayoutTest, CorruptBlobIsDataLoss) {
  auto layout = Layout::Open(dir_, true);
  auto d = layout->WriteBlob("good", "x");
  ASSERT_TRUE(d.ok());
  fs::permissions(layout->BlobPath(d->digest), fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(layout->BlobPath(d->digest)) << "evil";
  EXPECT_EQ(layout->ReadBlob(d->digest).status().code(), Code::kDataLoss);
}

TEST_F(LayoutTest, TagAndFind) {
  auto layout = Layout::Open(dir_, true);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->Find("").status().code(), Code::kNotFound);
  auto a = layout->WriteBlob("{\"a\":1}", media::kOciManifest);
  auto b = layout->WriteBlob("{\"b\":1}", media::kOciManifest);
  ASSERT_TRUE(layout->Tag(*a, "v1").ok());
  auto only = layout->Find("");
  ASSERT_TRUE(only.ok());
  EXPECT_EQ(only->digest, a->digest);
  ASSERT_TRUE(layout->Tag(*b, "v2").ok());
  ASSERT_TRUE(layout->Tag(*b, "v1").ok());  // moves v1
  auto v1 = layout->Find("v1");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->digest, b->digest);
  EXPECT_EQ(v1->annotations.at(std::string(kRefNameAnnotation)), "v1");
  EXPECT_EQ(layout->ReadIndex()->manifests.size(), 2u);
  EXPECT_EQ(layout->Find("").status().code(), Code::kFailedPrecondition);
  auto missing = layout->Find("v3");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("v1, v2"), std::string::npos) << missing.status().message();
}

}  // namespace
}  // namespace gantry::oci
