#include "oci/artifact.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <utime.h>

#include <fstream>

#include "base/path.h"
#include "test/fakes/registry.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(std::string_view name) {
  std::string t = (fs::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
  GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
  return t;
}

void Write(const fs::path& p, std::string_view data, int64_t mtime = 0) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
  ::chmod(p.c_str(), 0644);
  if (mtime != 0) {
    struct utimbuf t{mtime, mtime};
    ::utime(p.c_str(), &t);
  }
}

// A directory of manifests, with a .git directory and a .sourceignore.
void MakeTree(const fs::path& dir, int64_t mtime) {
  Write(dir / "app" / "deploy.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n", mtime);
  Write(dir / "app" / "sub" / "b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n", mtime);
  Write(dir / "app" / "notes.tmp", "scratch", mtime);
  Write(dir / "drafts" / "c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n", mtime);
  Write(dir / "app" / "drafts" / "d.yaml", "kept: the pattern is anchored\n", mtime);
  Write(dir / ".git" / "HEAD", "ref: refs/heads/main\n", mtime);
  Write(dir / ".sourceignore", "# comment\n*.tmp\n/drafts/\n", mtime);
}

class ArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = TempDir("gantry-artifact-test"); }
  void TearDown() override { fs::remove_all(tmp_); }

  Layout NewLayout(const std::string& name) {
    auto l = Layout::Open(tmp_ / name, true);
    GANTRY_CHECK(l.ok());
    return *l;
  }

  fs::path tmp_;
};

TEST_F(ArtifactTest, SameTreeGivesSameDigestWhateverItsMtimesAndPlace) {
  MakeTree(tmp_ / "one", 1'600'000'000);
  MakeTree(tmp_ / "two", 1'700'000'000);
  ArtifactOptions o{.source_url = "https://git.example/app", .revision = "main@sha1:abc"};
  auto a = BuildArtifact(tmp_ / "one", o, NewLayout("l1"), "a");
  auto b = BuildArtifact(tmp_ / "two", o, NewLayout("l2"), "b");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(a->digest, b->digest);

  // Another revision annotation: another manifest, the same layer.
  o.revision = "main@sha1:def";
  auto c = BuildArtifact(tmp_ / "one", o, NewLayout("l1"), "c");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->digest, c->digest);
}

TEST_F(ArtifactTest, ManifestIsFluxsFormat) {
  MakeTree(tmp_ / "src", 0);
  Layout layout = NewLayout("l");
  auto d = BuildArtifact(tmp_ / "src", {.source_url = "https://git.example/app", .revision = "v1", .created = "2026-01-02T03:04:05Z"},
                         layout, "x");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto bytes = layout.ReadBlob(d->digest);
  ASSERT_TRUE(bytes.ok());
  auto m = ParseManifest(*bytes);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->media_type, media::kOciManifest);
  EXPECT_EQ(m->config.media_type, media::kFluxConfig);
  EXPECT_EQ(*layout.ReadBlob(m->config.digest), "{}");
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].media_type, media::kFluxContent);
  EXPECT_EQ(m->annotations["org.opencontainers.image.source"], "https://git.example/app");
  EXPECT_EQ(m->annotations["org.opencontainers.image.revision"], "v1");
  EXPECT_EQ(m->annotations["org.opencontainers.image.created"], "2026-01-02T03:04:05Z");
  EXPECT_TRUE(CheckArtifactManifest(*m).ok());

  // The layer holds the tree without .git and what .sourceignore names.
  fs::path out = tmp_ / "out";
  fs::create_directories(out);
  auto stats = ExtractLayer(layout.BlobPath(m->layers[0].digest), media::kOciLayerGzip, out);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_TRUE(fs::exists(out / "app" / "deploy.yaml"));
  EXPECT_TRUE(fs::exists(out / "app" / "sub" / "b.yaml"));
  EXPECT_TRUE(fs::exists(out / "app" / "drafts" / "d.yaml"));
  EXPECT_TRUE(fs::exists(out / ".sourceignore"));
  EXPECT_FALSE(fs::exists(out / ".git"));
  EXPECT_FALSE(fs::exists(out / "app" / "notes.tmp"));
  EXPECT_FALSE(fs::exists(out / "drafts"));
}

TEST_F(ArtifactTest, SymlinkIsRefusedNamingIt) {
  MakeTree(tmp_ / "src", 0);
  fs::create_symlink("deploy.yaml", tmp_ / "src" / "app" / "link.yaml");
  auto d = BuildArtifact(tmp_ / "src", {}, NewLayout("l"), "x");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
  EXPECT_NE(d.status().message().find("link.yaml"), std::string::npos) << d.status().message();
}

TEST_F(ArtifactTest, BadOptionsAndSources) {
  EXPECT_EQ(BuildArtifact(tmp_ / "absent", {}, NewLayout("l"), "x").status().code(), Code::kNotFound);
  Write(tmp_ / "file", "x");
  EXPECT_EQ(BuildArtifact(tmp_ / "file", {}, NewLayout("l"), "x").status().code(), Code::kFailedPrecondition);
  MakeTree(tmp_ / "src", 0);
  EXPECT_EQ(BuildArtifact(tmp_ / "src", {.layer_media_type = "application/zip"}, NewLayout("l"), "x").status().code(),
            Code::kInvalidArgument);
  Write(tmp_ / "src" / ".sourceignore", "*.tmp\n!keep.tmp\n");
  auto neg = BuildArtifact(tmp_ / "src", {}, NewLayout("l"), "x");
  EXPECT_EQ(neg.status().code(), Code::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("line 2"), std::string::npos) << neg.status().message();
}

TEST(SourceIgnoreTest, Patterns) {
  auto p = SourceIgnorePatterns("# c\n\n*.log\n/top/\na/b\n**/deep\n**/x/y\nname/\n");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, (std::vector<std::string>{"*.log", "/top", "/a/b", "deep", "/x/y", "*/x/y", "name"}));
}

Manifest WithLayers(std::vector<std::string> types) {
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  m.config = {std::string(media::kFluxConfig), Sha256Digest("{}"), 2, {}, {}, {}};
  for (auto& t : types) m.layers.push_back({t, Sha256Digest(t), 10, {}, {}, {}});
  return m;
}

TEST(CheckArtifactManifestTest, AcceptsFluxAndOciTarGzipOnly) {
  EXPECT_TRUE(CheckArtifactManifest(WithLayers({std::string(media::kFluxContent)})).ok());
  EXPECT_TRUE(CheckArtifactManifest(WithLayers({std::string(media::kOciLayerGzip)})).ok());
  Status helm = CheckArtifactManifest(WithLayers({"application/vnd.cncf.helm.chart.content.v1.tar+gzip"}));
  EXPECT_EQ(helm.code(), Code::kInvalidArgument);
  EXPECT_NE(helm.message().find("application/vnd.cncf.helm.chart.content.v1.tar+gzip"), std::string::npos);
  EXPECT_NE(helm.message().find(media::kFluxContent), std::string::npos) << helm.message();
  EXPECT_NE(helm.message().find(media::kOciLayerGzip), std::string::npos);
  EXPECT_EQ(CheckArtifactManifest(WithLayers({})).code(), Code::kInvalidArgument);
  Status two = CheckArtifactManifest(WithLayers({std::string(media::kOciLayerGzip), std::string(media::kOciLayerGzip)}));
  EXPECT_NE(two.message().find("2 layers"), std::string::npos) << two.message();
}

TEST(ArtifactReferenceTest, TagsDigestsAndRefusals) {
  auto tag = ArtifactReference("oci://127.0.0.1:5000/team/app", "v1");
  ASSERT_TRUE(tag.ok()) << tag.status().ToString();
  EXPECT_EQ(tag->registry, "127.0.0.1:5000");
  EXPECT_EQ(tag->repository, "team/app");
  EXPECT_EQ(tag->tag, "v1");
  EXPECT_EQ(ArtifactReference("oci://ghcr.io/team/app", "HEAD")->tag, "latest");
  std::string digest = Sha256Digest("x");
  auto pinned = ArtifactReference("oci://ghcr.io/team/app", digest);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->digest, digest);
  EXPECT_EQ(ArtifactReference("oci://ghcr.io/team/app:v1", "v2").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ArtifactReference("oci://ghcr.io", "v2").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ArtifactReference("oci://ghcr.io/app", "sha256:short").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ArtifactReference("https://ghcr.io/app", "v1").status().code(), Code::kInvalidArgument);
}

class PullTest : public ArtifactTest {
 protected:
  Reference Ref(const std::string& tag = "v1") { return *ArtifactReference("oci://registry.test/team/app", tag); }

  // Puts `manifest_json` (its layers' blobs from `layout`) under tag v1; returns its digest.
  std::string PutRaw(const std::string& manifest_json, std::string_view media_type = media::kOciManifest) {
    auto d = registry_.PutManifest(Ref(), media_type, manifest_json);
    GANTRY_CHECK(d.ok());
    return *d;
  }

  size_t CacheEntries() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp_ / "cache")) ++n;
    return n;
  }

  fakes::FakeRegistry registry_;
};

TEST_F(PullTest, PushThenPullExtractsOnceIntoTheDigestsDirectory) {
  MakeTree(tmp_ / "src", 0);
  auto digest = PushArtifact(registry_, tmp_ / "src", Ref(), {});
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  auto resolved = ResolveArtifact(registry_, Ref());
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, *digest);
  // The same tree again: the same digest, and the registry already has it.
  auto again = PushArtifact(registry_, tmp_ / "src", Ref("v2"), {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *digest);

  // What a pull killed mid-extraction left: removed once it is an hour old, never trusted.
  fs::create_directories(tmp_ / "cache" / ".pull-killed" / "content");
  fs::create_directories(tmp_ / "cache" / ".pull-running");
  fs::last_write_time(tmp_ / "cache" / ".pull-killed", fs::file_time_type::clock::now() - std::chrono::hours(2));
  auto dir = PullArtifact(registry_, Ref(), *digest, tmp_ / "cache");
  EXPECT_FALSE(fs::exists(tmp_ / "cache" / ".pull-killed"));
  ASSERT_TRUE(fs::exists(tmp_ / "cache" / ".pull-running"));
  fs::remove(tmp_ / "cache" / ".pull-running");
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_EQ(*dir, tmp_ / "cache" / digest->substr(7));
  EXPECT_TRUE(fs::exists(*dir / "app" / "deploy.yaml"));
  EXPECT_EQ(CacheEntries(), 1u);  // no temp dir left
  uint64_t requests = registry_.Stats().requests;
  ASSERT_TRUE(PullArtifact(registry_, Ref(), *digest, tmp_ / "cache").ok());
  EXPECT_EQ(registry_.Stats().requests, requests);  // served from the cache
}

TEST_F(PullTest, BadManifestsAreRefusedAndLeaveNothing) {
  fs::create_directories(tmp_ / "cache");
  std::string helm = SerializeManifest(WithLayers({"application/vnd.cncf.helm.chart.content.v1.tar+gzip"}));
  auto r = PullArtifact(registry_, Ref(), PutRaw(helm), tmp_ / "cache");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("registry.test/team/app@sha256:"), std::string::npos) << r.status().message();

  r = PullArtifact(registry_, Ref(), PutRaw(R"({"schemaVersion":2,"layers":"no"})"), tmp_ / "cache");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();

  Index index{std::string(media::kOciIndex), {}, {}};
  r = PullArtifact(registry_, Ref(), PutRaw(SerializeIndex(index), media::kOciIndex), tmp_ / "cache");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("index"), std::string::npos) << r.status().message();

  // A layer the registry does not have.
  r = PullArtifact(registry_, Ref(), PutRaw(SerializeManifest(WithLayers({std::string(media::kFluxContent)}))),
                   tmp_ / "cache");
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  EXPECT_NE(r.status().message().find("fetch layer"), std::string::npos) << r.status().message();
  EXPECT_EQ(CacheEntries(), 0u);
}

TEST_F(PullTest, LayerOverTheLimitIsNotFetched) {
  MakeTree(tmp_ / "src", 0);
  auto digest = PushArtifact(registry_, tmp_ / "src", Ref(), {});
  ASSERT_TRUE(digest.ok());
  fs::create_directories(tmp_ / "cache");
  ExtractLimits tiny{.max_file_bytes = 10, .max_total_bytes = 20, .max_entries = 100};
  auto r = PullArtifact(registry_, Ref(), *digest, tmp_ / "cache", tiny);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_EQ(CacheEntries(), 0u);
}

}  // namespace
}  // namespace gantry::oci
