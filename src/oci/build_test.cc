#include "oci/build.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "base/hash.h"
#include "base/path.h"
#include "oci/internal/tar_format.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(std::string_view name) {
  std::string t = (fs::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
  GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
  return t;
}

void Write(const fs::path& p, std::string_view data, int mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
  ::chmod(p.c_str(), static_cast<mode_t>(mode));
}

// A workspace: app/ with files, a subdirectory, a symlink, a hard link, a long name, a log to exclude.
void MakeWorkspace(const fs::path& ws, int64_t mtime, uid_t owner) {
  Write(ws / "app" / "server.sh", "#!/bin/sh\necho hi\n", 0755);
  Write(ws / "app" / "conf" / "app.yaml", "port: 8080\n", 0640);
  Write(ws / "app" / "debug.log", "noise");
  Write(ws / "app" / std::string(150, 'n'), "long");
  fs::create_symlink("server.sh", ws / "app" / "start");
  fs::create_hard_link(ws / "app" / "server.sh", ws / "app" / "z-hard");
  for (const auto& e : fs::recursive_directory_iterator(ws)) {
    struct timespec t[2] = {{mtime, 0}, {mtime, 0}};
    ::utimensat(AT_FDCWD, e.path().c_str(), t, AT_SYMLINK_NOFOLLOW);
    if (::lchown(e.path().c_str(), owner, owner) != 0) { /* not root: mtimes still differ */ }
  }
}

std::string SlurpLayer(const fs::path& file, std::string_view media_type) {
  auto src = internal::OpenLayer(file, media_type);
  GANTRY_CHECK(src.ok());
  std::string out, buf(1 << 16, '\0');
  while (true) {
    auto n = (*src)->Read(buf.data(), buf.size());
    GANTRY_CHECK(n.ok());
    if (*n == 0) break;
    out.append(buf.data(), *n);
  }
  return out;
}

std::vector<internal::TarHeader> Entries(const std::string& tar) {
  struct S : internal::Source {
    explicit S(const std::string& d) : data(d) {}
    Result<size_t> Read(char* b, size_t n) override {
      size_t k = std::min(n, data.size() - pos);
      std::memcpy(b, data.data() + pos, k);
      pos += k;
      return k;
    }
    const std::string& data;
    size_t pos = 0;
  } src(tar);
  internal::TarReader r(src, 1ull << 32);
  std::vector<internal::TarHeader> out;
  internal::TarHeader h;
  while (*r.Next(h)) out.push_back(h);
  return out;
}

struct Image {
  Manifest manifest;
  value::Value config;
};

Image ReadImage(const Layout& layout, const Descriptor& d) {
  auto m = ParseManifest(*layout.ReadBlob(d.digest), d.media_type);
  GANTRY_CHECK(m.ok());
  auto c = value::ParseJson(*layout.ReadBlob(m->config.digest));
  GANTRY_CHECK(c.ok());
  return {*m, *c};
}

class BuildTest : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = TempDir("oci-build"); }
  void TearDown() override {
    if (!getenv("KEEP")) fs::remove_all(tmp_);
  }

  Result<BuildResult> BuildApp(const fs::path& ws, const fs::path& out_dir, BuildOptions o = {}) {
    auto out = Layout::Open(out_dir, true);
    if (!out.ok()) return out.status();
    o.layers.push_back({ws / "app", "/srv/app", {"*.log"}});
    if (!o.platform && !o.base) o.platform = Platform{"linux", "amd64", ""};
    return BuildImage(o, *out, "v1");
  }
  fs::path tmp_;
};

TEST_F(BuildTest, FromScratch) {
  MakeWorkspace(tmp_ / "ws", 1234567, 0);
  BuildOptions o;
  o.entrypoint = {{"/srv/app/server.sh"}};
  o.env = {"A=1", "B=2", "A=3"};
  o.expose = {"8080", "53/udp"};
  o.workdir = "/srv/app";
  o.user = "1000:1000";
  o.labels = {{"team", "web"}};
  o.source_url = "https://git.example/app";
  o.revision = "0123abc";
  auto r = BuildApp(tmp_ / "ws", tmp_ / "out", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto layout = *Layout::Open(tmp_ / "out", false);
  EXPECT_EQ(layout.Find("v1")->digest, r->image.digest);
  Image img = ReadImage(layout, r->image);
  EXPECT_EQ(img.manifest.media_type, media::kOciManifest);
  ASSERT_EQ(img.manifest.layers.size(), 1u);
  EXPECT_EQ(img.manifest.layers[0].media_type, media::kOciLayerGzip);
  EXPECT_EQ(img.manifest.annotations.at("org.opencontainers.image.revision"), "0123abc");
  EXPECT_EQ(img.manifest.annotations.at("org.opencontainers.image.source"), "https://git.example/app");

  // The layer digest is over the blob; the diff_id over its decompressed tar.
  const Descriptor& l = img.manifest.layers[0];
  std::string blob = *ReadFile(layout.BlobPath(l.digest));
  EXPECT_EQ(Sha256Digest(blob), l.digest);
  EXPECT_EQ(static_cast<int64_t>(blob.size()), l.size);
  std::string tar = SlurpLayer(layout.BlobPath(l.digest), l.media_type);
  ASSERT_EQ(img.config.Find({"rootfs", "diff_ids"})->size(), 1u);
  EXPECT_EQ(img.config.Find({"rootfs", "diff_ids", 0})->AsString(), Sha256Digest(tar));

  std::vector<std::string> names;
  for (const auto& h : Entries(tar)) {
    names.push_back(h.name);
    EXPECT_EQ(h.mtime, 0) << h.name;
    EXPECT_EQ(h.uid, 0u);
    if (h.name == "srv/app/server.sh") {
      EXPECT_EQ(h.mode, 0755u);
    }
    if (h.name == "srv/app/conf/app.yaml") {
      EXPECT_EQ(h.mode, 0640u);
    }
    if (h.name == "srv/app/start") {
      EXPECT_EQ(h.type, '2');
      EXPECT_EQ(h.linkname, "server.sh");
    }
    if (h.name == "srv/app/z-hard") {
      EXPECT_EQ(h.type, '1');
      EXPECT_EQ(h.linkname, "srv/app/server.sh");
    }
    EXPECT_EQ(h.name.find(tmp_.string()), std::string::npos);
  }
  std::vector<std::string> want = {"srv/", "srv/app/", "srv/app/conf/", "srv/app/conf/app.yaml",
                                   "srv/app/" + std::string(150, 'n'), "srv/app/server.sh", "srv/app/start",
                                   "srv/app/z-hard"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(blob.find(tmp_.string()), std::string::npos);

  const value::Value& c = *img.config.Get("config");
  EXPECT_EQ(value::ToJson(*c.Get("Entrypoint")), R"(["/srv/app/server.sh"])");
  EXPECT_EQ(value::ToJson(*c.Get("Env")), R"(["A=3","B=2"])");
  EXPECT_EQ(value::ToJson(*c.Get("ExposedPorts")), R"({"8080/tcp":{},"53/udp":{}})");
  EXPECT_EQ(c.Get("WorkingDir")->AsString(), "/srv/app");
  EXPECT_EQ(c.Get("User")->AsString(), "1000:1000");
  EXPECT_EQ(c.Find({"Labels", "org.opencontainers.image.source"})->AsString(), "https://git.example/app");
  EXPECT_EQ(c.Find({"Labels", "team"})->AsString(), "web");
  EXPECT_EQ(img.config.Get("created")->AsString(), "1970-01-01T00:00:00Z");
  EXPECT_EQ(img.config.Get("architecture")->AsString(), "amd64");
  EXPECT_EQ(img.config.Get("history")->size(), 1u);
}

TEST_F(BuildTest, ReproducibleAcrossDirectoriesMtimesAndOwners) {
  MakeWorkspace(tmp_ / "ws1", 1000, 0);
  MakeWorkspace(tmp_ / "ws2", 2000000000, 4242);
  auto a = BuildApp(tmp_ / "ws1", tmp_ / "out1");
  auto b = BuildApp(tmp_ / "ws2", tmp_ / "out2");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->image.digest, b->image.digest);
  EXPECT_EQ(a->layers[0].digest, b->layers[0].digest);
  // The options do matter: another timestamp or owner is another image.
  BuildOptions later;
  later.timestamp = 1700000000;
  auto c = BuildApp(tmp_ / "ws1", tmp_ / "out3", later);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->image.digest, a->image.digest);
  BuildOptions owner;
  owner.uid = owner.gid = 1000;
  auto d = BuildApp(tmp_ / "ws1", tmp_ / "out4", owner);
  ASSERT_TRUE(d.ok());
  EXPECT_NE(d->layers[0].digest, a->layers[0].digest);
  // And zstd is another layer type.
  BuildOptions z;
  z.compression = Compression::kZstd;
  auto e = BuildApp(tmp_ / "ws1", tmp_ / "out5", z);
  ASSERT_TRUE(e.ok());
  auto layout = *Layout::Open(tmp_ / "out5", false);
  Image img = ReadImage(layout, e->image);
  EXPECT_EQ(img.manifest.layers[0].media_type, media::kOciLayerZstd);
  EXPECT_EQ(img.config.Find({"rootfs", "diff_ids", 0})->AsString(),
            Sha256Digest(SlurpLayer(layout.BlobPath(img.manifest.layers[0].digest), media::kOciLayerZstd)));
  EXPECT_EQ(img.config.Find({"rootfs", "diff_ids", 0})->AsString(),
            value::ToJson(*ReadImage(*Layout::Open(tmp_ / "out1", false), a->image).config.Find({"rootfs", "diff_ids", 0})).substr(1, 71));
}

TEST_F(BuildTest, LayerBytesDoNotDependOnTheThreadCount) {
  MakeWorkspace(tmp_ / "ws", 1000, 0);
  // Over several gzip members: 2.5 MiB of text and 1 MiB of noise.
  std::string text, noise;
  for (int i = 0; text.size() < (5 << 19); ++i) text += fmt::format("line {} of the log {}\n", i, i * 7919 % 613);
  uint64_t x = 42;
  for (size_t i = 0; i < (1 << 20); ++i) noise += static_cast<char>((x = x * 6364136223846793005u + 1442695040888963407u) >> 56);
  Write(tmp_ / "ws" / "app" / "text.txt", text);
  Write(tmp_ / "ws" / "app" / "noise.bin", noise);
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    std::vector<Descriptor> layers;
    for (unsigned threads : {1u, 4u, 0u}) {
      BuildOptions o;
      o.compression = c;
      o.compression_threads = threads;
      auto r = BuildApp(tmp_ / "ws", tmp_ / fmt::format("out-{}-{}", static_cast<int>(c), threads), o);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      layers.push_back(r->layers[0]);
    }
    EXPECT_EQ(layers[0].digest, layers[1].digest) << "1 vs 4 threads, compression " << static_cast<int>(c);
    EXPECT_EQ(layers[0].digest, layers[2].digest) << "1 vs this machine's cores, compression " << static_cast<int>(c);
    EXPECT_EQ(layers[0].size, layers[1].size);
  }
}

// A Docker-typed base image written by hand into `dir`, tagged "base", with one layer.
Descriptor MakeDockerBase(const fs::path& tmp, const Layout& base, const std::string& arch) {
  Write(tmp / ("base-" + arch) / "etc" / "os-release", "ID=test-" + arch + "\n");
  BuildOptions o;
  auto layer = WriteLayer({tmp / ("base-" + arch), "/", {}}, o, base);
  GANTRY_CHECK(layer.ok());
  std::string config = R"({"architecture":")" + arch +
                       R"(","os":"linux","x-custom":{"keep":true},"config":{"Env":["PATH=/usr/bin","LANG=C"],"Cmd":["sh"],"Labels":{"base":"yes"}},"rootfs":{"type":"layers","diff_ids":[")" +
                       layer->diff_id + R"("]},"history":[{"created_by":"base"}]})";
  auto cd = base.WriteBlob(config, media::kDockerConfig);
  Manifest m;
  m.media_type = std::string(media::kDockerManifest);
  m.config = *cd;
  Descriptor ld = layer->descriptor;
  ld.media_type = std::string(media::kDockerLayerGzip);
  m.layers.push_back(ld);
  auto md = base.WriteBlob(SerializeManifest(m), media::kDockerManifest);
  GANTRY_CHECK(md.ok());
  return *md;
}

TEST_F(BuildTest, OnADockerBaseKeepsLayersAndMergesConfig) {
  auto base = *Layout::Open(tmp_ / "base", true);
  Descriptor md = MakeDockerBase(tmp_, base, "amd64");
  ASSERT_TRUE(base.Tag(md, "base").ok());
  Image base_img = ReadImage(base, md);
  MakeWorkspace(tmp_ / "ws", 5, 0);
  BuildOptions o;
  o.base = &base;
  o.base_ref = "base";
  o.env = {"LANG=C.UTF-8", "APP=1"};
  auto r = BuildApp(tmp_ / "ws", tmp_ / "out", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto out = *Layout::Open(tmp_ / "out", false);
  Image img = ReadImage(out, r->image);
  EXPECT_EQ(img.manifest.media_type, media::kOciManifest);
  EXPECT_EQ(img.manifest.config.media_type, media::kOciConfig);
  ASSERT_EQ(img.manifest.layers.size(), 2u);
  EXPECT_EQ(img.manifest.layers[0].media_type, media::kOciLayerGzip);
  EXPECT_EQ(img.manifest.layers[0].digest, base_img.manifest.layers[0].digest);
  EXPECT_TRUE(out.HasBlob(img.manifest.layers[0].digest)) << "base layer copied into the output";
  EXPECT_EQ(img.manifest.annotations.at("org.opencontainers.image.base.digest"), md.digest);
  // diff_ids: the base's, then the new layer's, each the hash of its decompressed blob.
  const value::Value& ids = *img.config.Find({"rootfs", "diff_ids"});
  ASSERT_EQ(ids.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Descriptor& l = img.manifest.layers[i];
    EXPECT_EQ(ids.At(i)->AsString(), Sha256Digest(SlurpLayer(out.BlobPath(l.digest), l.media_type)));
  }
  EXPECT_EQ(value::ToJson(*img.config.Get("x-custom")), R"({"keep":true})");
  EXPECT_EQ(value::ToJson(*img.config.Find({"config", "Env"})), R"(["PATH=/usr/bin","LANG=C.UTF-8","APP=1"])");
  EXPECT_EQ(value::ToJson(*img.config.Find({"config", "Cmd"})), R"(["sh"])");
  EXPECT_EQ(img.config.Find({"config", "Labels", "base"})->AsString(), "yes");
  EXPECT_EQ(img.config.Get("history")->size(), 2u);

  // Unpacking the result gives the base's files and the new ones.
  auto stats = UnpackImage(out, "v1", tmp_ / "rootfs");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(*ReadFile(tmp_ / "rootfs" / "etc" / "os-release"), "ID=test-amd64\n");
  EXPECT_EQ(*ReadFile(tmp_ / "rootfs" / "srv" / "app" / "start"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(fs::read_symlink(tmp_ / "rootfs" / "srv" / "app" / "start"), "server.sh");
  EXPECT_EQ(fs::status(tmp_ / "rootfs" / "srv" / "app" / "conf" / "app.yaml").permissions(), fs::perms(0640));
  EXPECT_EQ(fs::hard_link_count(tmp_ / "rootfs" / "srv" / "app" / "z-hard"), 2u);
  EXPECT_FALSE(fs::exists(tmp_ / "rootfs" / "srv" / "app" / "debug.log"));
}

TEST_F(BuildTest, MultiPlatformBase) {
  auto base = *Layout::Open(tmp_ / "base", true);
  Index index;
  index.media_type = std::string(media::kDockerManifestList);
  for (std::string arch : {"amd64", "arm64"}) {
    Descriptor d = MakeDockerBase(tmp_, base, arch);
    d.platform = Platform{"linux", arch, arch == "arm64" ? "v8" : ""};
    index.manifests.push_back(d);
  }
  Descriptor attestation = index.manifests[0];
  attestation.platform = Platform{"unknown", "unknown", ""};
  index.manifests.push_back(attestation);
  auto id = base.WriteBlob(SerializeIndex(index), media::kDockerManifestList);
  ASSERT_TRUE(base.Tag(*id, "multi").ok());
  MakeWorkspace(tmp_ / "ws", 5, 0);

  BuildOptions all;
  all.base = &base;
  all.base_ref = "multi";
  auto r = BuildApp(tmp_ / "ws", tmp_ / "out", all);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->image.media_type, media::kOciIndex);
  auto out = *Layout::Open(tmp_ / "out", false);
  auto built = ParseIndex(*out.ReadBlob(r->image.digest));
  ASSERT_TRUE(built.ok());
  ASSERT_EQ(built->manifests.size(), 2u) << "the attestation entry is left out";
  EXPECT_EQ(built->manifests[1].platform->ToString(), "linux/arm64/v8");
  for (const auto& d : built->manifests) {
    Image img = ReadImage(out, d);
    ASSERT_EQ(img.manifest.layers.size(), 2u);
    EXPECT_EQ(img.manifest.layers[1].digest, r->layers[0].digest) << "the same new layer on every platform";
    EXPECT_EQ(img.config.Get("architecture")->AsString(), d.platform->architecture);
  }

  BuildOptions one = all;
  one.platform = Platform{"linux", "arm64", ""};
  auto r1 = BuildApp(tmp_ / "ws", tmp_ / "out1", one);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->image.media_type, media::kOciManifest);
  EXPECT_EQ(ReadImage(*Layout::Open(tmp_ / "out1", false), r1->image).config.Get("architecture")->AsString(), "arm64");
  EXPECT_EQ(*ReadFile(tmp_ / "base-arm64" / "etc" / "os-release"), "ID=test-arm64\n");

  BuildOptions missing = all;
  missing.platform = Platform{"linux", "s390x", ""};
  auto r2 = BuildApp(tmp_ / "ws", tmp_ / "out2", missing);
  ASSERT_EQ(r2.status().code(), Code::kNotFound);
  EXPECT_NE(r2.status().message().find("linux/amd64, linux/arm64/v8"), std::string::npos) << r2.status().message();
}

TEST_F(BuildTest, BadOptionsAreInvalidArgument) {
  MakeWorkspace(tmp_ / "ws", 5, 0);
  BuildOptions o;
  o.expose = {"http"};
  EXPECT_EQ(BuildApp(tmp_ / "ws", tmp_ / "o1", o).status().code(), Code::kInvalidArgument);
  BuildOptions e;
  e.env = {"NOVALUE"};
  EXPECT_EQ(BuildApp(tmp_ / "ws", tmp_ / "o2", e).status().code(), Code::kInvalidArgument);
  auto out = *Layout::Open(tmp_ / "o3", true);
  BuildOptions d;
  d.platform = Platform{"linux", "amd64", ""};
  d.layers.push_back({tmp_ / "ws" / "app", "/srv/../etc", {}});
  EXPECT_EQ(BuildImage(d, out, "x").status().code(), Code::kInvalidArgument);
}

// ---- extraction of hostile archives ----

class ExtractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = TempDir("oci-extract");
    fs::create_directories(tmp_ / "d1" / "d2" / "dest");
    dest_ = tmp_ / "d1" / "d2" / "dest";
  }
  void TearDown() override {
    if (!getenv("KEEP")) fs::remove_all(tmp_);
  }

  // Writes the entries as a gzip layer and extracts it.
  Result<ExtractStats> Extract(const std::vector<std::pair<internal::TarHeader, std::string>>& entries,
                               ExtractLimits limits = {}) {
    std::ofstream(tmp_ / "layer.tgz", std::ios::trunc | std::ios::binary) << Gzip(entries);
    return ExtractLayer(tmp_ / "layer.tgz", media::kOciLayerGzip, dest_, limits);
  }

  // The entries as a gzip-compressed tar.
  static std::string Gzip(const std::vector<std::pair<internal::TarHeader, std::string>>& entries) {
    std::string gz;
    auto c = internal::NewGzipCompressor([&](std::string_view d) {
      gz.append(d);
      return OkStatus();
    }, 6, 2);
    internal::TarWriter w([&](std::string_view d) { return c->Write(d); });
    for (const auto& [h, data] : entries) {
      GANTRY_CHECK(w.WriteHeader(h).ok());
      for (size_t i = 0; i < data.size(); i += 1 << 20) GANTRY_CHECK(w.WriteData(std::string_view(data).substr(i, 1 << 20)).ok());
    }
    GANTRY_CHECK(w.Finish().ok());
    GANTRY_CHECK(c->Finish().ok());
    return gz;
  }

  using LayerEntries = std::vector<std::pair<internal::TarHeader, std::string>>;
  // An image of these layers (gzip, lowest first) tagged `tag` in `layout`.
  static Status TagImage(const Layout& layout, const std::vector<LayerEntries>& layers, std::string_view tag) {
    Manifest m;
    m.media_type = std::string(media::kOciManifest);
    for (const auto& entries : layers) {
      GANTRY_ASSIGN_OR_RETURN(Descriptor layer, layout.WriteBlob(Gzip(entries), media::kOciLayerGzip));
      m.layers.push_back(layer);
    }
    GANTRY_ASSIGN_OR_RETURN(m.config, layout.WriteBlob(R"({"architecture":"amd64","os":"linux"})", media::kOciConfig));
    GANTRY_ASSIGN_OR_RETURN(Descriptor manifest, layout.WriteBlob(SerializeManifest(m), media::kOciManifest));
    return layout.Tag(manifest, tag);
  }

  // Nothing but dest and the layer file anywhere under tmp_.
  void ExpectNothingOutsideDest() {
    std::vector<std::string> seen;
    for (const auto& e : fs::recursive_directory_iterator(tmp_)) {
      std::string p = e.path().lexically_relative(tmp_).string();
      if (p.starts_with("d1/d2/dest/") || p == "d1/d2/dest" || p == "d1" || p == "d1/d2" || p == "layer.tgz") continue;
      seen.push_back(p);
    }
    std::string all;
    for (const auto& p : seen) all += p + " ";
    EXPECT_TRUE(seen.empty()) << all;
  }

  fs::path tmp_, dest_;
};

internal::TarHeader File(std::string name, uint64_t size) { return {.name = std::move(name), .size = size}; }
internal::TarHeader Link(std::string name, char type, std::string target) {
  return {.name = std::move(name), .type = type, .mode = 0777, .linkname = std::move(target)};
}

TEST_F(ExtractTest, DotDotIsRefused) {
  auto r = Extract({{File("ok", 1), "a"}, {File("../../x", 1), "x"}});
  ASSERT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("../../x"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(tmp_ / "d1" / "x"));
  ExpectNothingOutsideDest();
}

TEST_F(ExtractTest, AbsolutePathIsRefused) {
  std::string target = (tmp_ / "abs-x").string();
  auto r = Extract({{File(target, 1), "x"}});
  ASSERT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("absolute"), std::string::npos);
  EXPECT_FALSE(fs::exists(target));
  ExpectNothingOutsideDest();
}

TEST_F(ExtractTest, WriteThroughAnAbsoluteSymlinkIsRefused) {
  fs::create_directories(tmp_ / "victim");
  auto r = Extract({{Link("a", '2', (tmp_ / "victim").string()), ""}, {File("a/passwd", 4), "evil"}});
  ASSERT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("a/passwd"), std::string::npos) << r.status().message();
  EXPECT_TRUE(fs::is_empty(tmp_ / "victim"));
  auto etc = Extract({{Link("e", '2', "/etc"), ""}, {File("e/gantry-extract-test", 4), "evil"}});
  EXPECT_EQ(etc.status().code(), Code::kPermissionDenied);
  EXPECT_FALSE(fs::exists("/etc/gantry-extract-test"));
  fs::remove_all(tmp_ / "victim");
  ExpectNothingOutsideDest();
}

TEST_F(ExtractTest, RelativeSymlinkOutOfDestIsRefused) {
  auto r = Extract({{Link("a", '2', "../../x"), ""}});
  ASSERT_EQ(r.status().code(), Code::kPermissionDenied);
  auto nested = Extract({{Link("sub/b", '2', "../../y"), ""}, {File("sub/b/f", 1), "z"}});
  ASSERT_EQ(nested.status().code(), Code::kPermissionDenied);
  // Inside dest it is fine, and so is writing through it.
  auto ok = Extract({{Link("c", '2', "sub"), ""}, {File("c/f", 2), "ok"}});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ReadFile(dest_ / "sub" / "f"), "ok");
  ExpectNothingOutsideDest();
}

TEST_F(ExtractTest, HardLinkOutOfDestIsRefused) {
  Write(tmp_ / "d1" / "secret", "s");
  auto r = Extract({{Link("h", '1', "../../secret"), ""}});
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(fs::exists(dest_ / "h"));
  auto via_link = Extract({{Link("l", '2', (tmp_ / "d1" / "secret").string()), ""}, {Link("h2", '1', "l"), ""}});
  EXPECT_EQ(via_link.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(fs::hard_link_count(tmp_ / "d1" / "secret"), 1u);
  fs::remove(tmp_ / "d1" / "secret");
  ExpectNothingOutsideDest();
}

TEST_F(ExtractTest, ReplacingASymlinkDoesNotWriteThroughIt) {
  Write(tmp_ / "target", "orig");
  auto r = Extract({{Link("f", '2', (tmp_ / "target").string()), ""}, {File("f", 3), "new"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*ReadFile(tmp_ / "target"), "orig");
  EXPECT_EQ(*ReadFile(dest_ / "f"), "new");
  fs::remove(tmp_ / "target");
}

TEST_F(ExtractTest, DecompressionBombIsBoundedByTheTotal) {
  ExtractLimits limits;
  limits.max_total_bytes = 8 << 20;
  auto r = Extract({{File("bomb", 64 << 20), std::string(64 << 20, '\0')}}, limits);
  ASSERT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_LT(fs::file_size(tmp_ / "layer.tgz"), 1u << 20) << "a bomb: small compressed";
  ExtractLimits per_file;
  per_file.max_file_bytes = 1000;
  auto f = Extract({{File("big", 2000), std::string(2000, 'x')}}, per_file);
  EXPECT_EQ(f.status().code(), Code::kResourceExhausted);
  EXPECT_FALSE(fs::exists(dest_ / "big"));
}

TEST_F(ExtractTest, TooManyEntries) {
  std::vector<std::pair<internal::TarHeader, std::string>> entries;
  for (int i = 0; i < 20; ++i) entries.push_back({File("f" + std::to_string(i), 0), ""});
  ExtractLimits limits;
  limits.max_entries = 10;
  auto r = Extract(entries, limits);
  ASSERT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_FALSE(fs::exists(dest_ / "f10"));
}

// Regression: the limits applied to each layer, so an image of many layers each under the limit
// could unpack many times the limit.
TEST_F(ExtractTest, UnpackImageLimitsAreForTheWholeImage) {
  auto layout = Layout::Open(tmp_ / "layout", true);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  std::vector<LayerEntries> layers(3);
  for (int l = 0; l < 3; ++l) {
    for (int i = 0; i < 5; ++i) layers[static_cast<size_t>(l)].push_back({File(fmt::format("l{}/f{}", l, i), 3 << 20), std::string(3 << 20, 'x')});
  }
  ASSERT_TRUE(TagImage(*layout, layers, "v1").ok());

  // Entries: 5 per layer is under 12, the image's 15 is not.
  ExtractLimits entries;
  entries.max_entries = 12;
  auto r = UnpackImage(*layout, "v1", tmp_ / "rootfs-entries", std::nullopt, entries);
  ASSERT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("layer 2"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(tmp_ / "rootfs-entries" / "l2" / "f2"));

  // Bytes: 15 MiB per layer is under 40 MiB, the image's 45 MiB is not.
  ExtractLimits bytes;
  bytes.max_total_bytes = 40 << 20;
  r = UnpackImage(*layout, "v1", tmp_ / "rootfs-bytes", std::nullopt, bytes);
  ASSERT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("layer 2"), std::string::npos) << r.status().message();

  // Within both, everything is there and counted.
  auto ok = UnpackImage(*layout, "v1", tmp_ / "rootfs-ok", std::nullopt,
                        ExtractLimits{.max_total_bytes = 46 << 20, .max_entries = 15});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->entries, 15u);
  EXPECT_EQ(ok->bytes, 45u << 20);
  fs::remove_all(tmp_ / "layout");
}

TEST_F(ExtractTest, DevicesSkippedAndWhiteoutsApplied) {
  auto first = Extract({{File("a/x", 1), "x"}, {File("a/y", 1), "y"}, {File("b", 1), "b"},
                        {{.name = "dev/null", .type = '3', .mode = 0666}, ""}, {{.name = "fifo", .type = '6'}, ""}});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->skipped, 2u);
  EXPECT_FALSE(fs::exists(dest_ / "fifo"));
  auto second = Extract({{File("a/.wh..wh..opq", 0), ""}, {File("a/z", 1), "z"}, {File(".wh.b", 0), ""}});
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(fs::exists(dest_ / "b"));
  EXPECT_FALSE(fs::exists(dest_ / "a" / "x"));
  EXPECT_FALSE(fs::exists(dest_ / "a" / "y"));
  EXPECT_TRUE(fs::exists(dest_ / "a" / "z"));
  EXPECT_FALSE(fs::exists(dest_ / ".wh.b"));
  EXPECT_FALSE(fs::exists(dest_ / "a" / ".wh..wh..opq"));
}

// WalkImage reports exactly the regular files, links and directories UnpackImage leaves, with the
// same contents: whiteouts, opaque directories and a file replacing a directory are honoured.
TEST_F(ExtractTest, WalkImageSeesWhatUnpackWrites) {
  auto layout = Layout::Open(tmp_ / "layout", true);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  const std::vector<LayerEntries> layers = {
      {{{.name = "a", .type = '5', .mode = 0755}, ""}, {File("a/x", 1), "x"}, {File("a/y", 1), "y"}, {File("b", 2), "bb"},
       {{.name = "c", .type = '5', .mode = 0755}, ""}, {File("c/d", 1), "d"}, {File("keep", 4), "keep"},
       {Link("h", '1', "keep"), ""}, {{.name = "dev/null", .type = '3', .mode = 0666}, ""}},
      {{File("a/.wh..wh..opq", 0), ""}, {File("a/z", 1), "z"}, {File(".wh.b", 0), ""}, {File("c", 6), "c-file"},
       {Link("l", '2', "keep"), ""}, {File("keep", 5), "kept2"}},
  };
  ASSERT_TRUE(TagImage(*layout, layers, "v1").ok());

  std::map<std::string, std::string> walked;  // path → type and content
  std::map<std::string, size_t> from_layer;
  auto stats = WalkImage(*layout, "v1", std::nullopt, [&](const ImageEntry& e, const ReadFn& read) -> Status {
    EXPECT_EQ(walked.count(e.path), 0u) << e.path << " reported twice";
    std::string content(1, e.type);
    char buf[3];
    while (true) {
      GANTRY_ASSIGN_OR_RETURN(size_t n, read(buf, sizeof buf));
      if (n == 0) break;
      content.append(buf, n);
    }
    if (e.type == '1' || e.type == '2') content += ">" + e.linkname;
    walked[e.path] = content;
    from_layer[e.path] = e.layer;
    return OkStatus();
  });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  // The layer that wins: "keep" from the top, the hard link to the lower "keep" from below.
  EXPECT_EQ(walked, (std::map<std::string, std::string>{{"a", "5"}, {"a/z", "0z"}, {"c", "0c-file"}, {"dev/null", "3"},
                                                        {"h", "1>keep"}, {"keep", "0kept2"}, {"l", "2>keep"}}));
  EXPECT_EQ(from_layer["h"], 0u);
  EXPECT_EQ(from_layer["keep"], 1u);

  // The same paths as UnpackImage writes (devices are not created; the hard link shares the lower
  // layer's data, which the upper "keep" replaced by a new file).
  auto unpacked = UnpackImage(*layout, "v1", tmp_ / "rootfs");
  ASSERT_TRUE(unpacked.ok()) << unpacked.status().ToString();
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(tmp_ / "rootfs")) {
    std::string p = e.path().lexically_relative(tmp_ / "rootfs").string();
    if (e.is_symlink()) files[p] = "2>" + fs::read_symlink(e.path()).string();
    else if (e.is_directory()) files[p] = "5";
    else files[p] = "0" + *ReadFile(e.path(), 1 << 10);
  }
  EXPECT_EQ(files, (std::map<std::string, std::string>{{"a", "5"}, {"a/z", "0z"}, {"c", "0c-file"}, {"dev", "5"},
                                                       {"h", "0keep"}, {"keep", "0kept2"}, {"l", "2>keep"}}));

  // Limits are the image's, as UnpackImage's.
  auto limited = WalkImage(*layout, "v1", std::nullopt, [](const ImageEntry&, const ReadFn&) { return OkStatus(); },
                           ExtractLimits{.max_entries = 8});
  ASSERT_EQ(limited.status().code(), Code::kResourceExhausted) << limited.status().ToString();
  EXPECT_NE(limited.status().message().find("layer 0"), std::string::npos) << limited.status().message();
  fs::remove_all(tmp_ / "layout");
}

}  // namespace
}  // namespace gantry::oci
