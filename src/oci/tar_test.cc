#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <fstream>

#include "base/path.h"
#include "base/process.h"
#include "oci/internal/tar_format.h"
#include "oci/oci.h"

namespace gantry::oci::internal {
namespace {

namespace fs = std::filesystem;

class StringSource : public Source {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min(n, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

std::string WriteTar(const std::vector<std::pair<TarHeader, std::string>>& entries) {
  std::string out;
  TarWriter w([&](std::string_view d) {
    out.append(d);
    return OkStatus();
  });
  for (const auto& [h, data] : entries) {
    EXPECT_TRUE(w.WriteHeader(h).ok());
    if (!data.empty()) {
      EXPECT_TRUE(w.WriteData(data).ok());
    }
  }
  EXPECT_TRUE(w.Finish().ok());
  return out;
}

std::vector<std::pair<TarHeader, std::string>> Sample() {
  std::string long_dir(120, 'd');
  return {
      {{.name = "app", .type = '5', .mode = 0755}, ""},
      {{.name = "app/run.sh", .mode = 0755, .uid = 1000, .gid = 1000, .mtime = 1700000000, .size = 5}, "echo\n"},
      {{.name = "app/link", .type = '2', .mode = 0777, .linkname = "run.sh"}, ""},
      {{.name = "app/" + long_dir + "/file", .mode = 0600, .size = 3}, "abc"},
      {{.name = "app/longlink", .type = '2', .mode = 0777, .linkname = long_dir + "/file"}, ""},
      {{.name = "app/hard", .type = '1', .mode = 0755, .linkname = "app/run.sh"}, ""},
  };
}

TEST(TarWriterTest, ReadsBackEntriesModesLinksAndLongNames) {
  auto entries = Sample();
  std::string tar = WriteTar(entries);
  EXPECT_EQ(tar.size() % 512, 0u);
  StringSource src(tar);
  TarReader reader(src, 1 << 20);
  for (const auto& [want, data] : entries) {
    TarHeader h;
    auto more = reader.Next(h);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    ASSERT_TRUE(*more);
    EXPECT_EQ(h.name, want.type == '5' ? want.name + "/" : want.name);
    EXPECT_EQ(h.type, want.type);
    EXPECT_EQ(h.mode, want.mode);
    EXPECT_EQ(h.uid, want.uid);
    EXPECT_EQ(h.mtime, want.mtime);
    EXPECT_EQ(h.linkname, want.linkname);
    std::string got(h.size, '\0');
    if (h.size) {
      ASSERT_EQ(*reader.ReadData(got.data(), got.size()), h.size);
    }
    EXPECT_EQ(got, data);
  }
  TarHeader h;
  EXPECT_FALSE(*reader.Next(h));
}

TEST(TarWriterTest, GnuTarAgreesAndSeesNoOwnerNames) {
  std::string t = (fs::temp_directory_path() / "oci-tar-XXXXXX").string();
  ASSERT_NE(::mkdtemp(t.data()), nullptr);
  std::ofstream(t + "/a.tar") << WriteTar(Sample());
  ProcessOptions po;
  po.inherit_env = true;
  auto r = gantry::Run({"tar", "-tvf", t + "/a.tar"}, po);
  fs::remove_all(t);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(r->out.find("-rwxr-xr-x 1000/1000"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("app/" + std::string(120, 'd') + "/file"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("app/link -> run.sh"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("app/hard link to app/run.sh"), std::string::npos) << r->out;
  EXPECT_EQ(r->out.find("PaxHeaders"), std::string::npos) << r->out;
}

TEST(TarWriterTest, Deterministic) {
  EXPECT_EQ(WriteTar(Sample()), WriteTar(Sample()));
  auto other = Sample();
  other[1].first.mtime = 1;
  EXPECT_NE(WriteTar(Sample()), WriteTar(other));
}

TEST(TarWriterTest, RefusesDataBeyondTheSize) {
  TarWriter w([](std::string_view) { return OkStatus(); });
  ASSERT_TRUE(w.WriteHeader({.name = "f", .size = 2}).ok());
  EXPECT_FALSE(w.WriteData("abc").ok());
  EXPECT_FALSE(w.Finish().ok());
}

TEST(TarReaderTest, TotalLimitBoundsTheStream) {
  std::string tar = WriteTar({{{.name = "big", .size = 100000}, std::string(100000, 'x')}});
  StringSource src(tar);
  TarReader reader(src, 50000);
  TarHeader h;
  ASSERT_TRUE(*reader.Next(h));
  std::string buf(100000, '\0');
  auto n = reader.ReadData(buf.data(), buf.size());
  EXPECT_EQ(n.status().code(), Code::kResourceExhausted);
}

TEST(TarReaderTest, CorruptHeaderIsAnError) {
  std::string tar = WriteTar(Sample());
  tar[10] ^= 1;
  StringSource src(tar);
  TarReader reader(src, 1 << 20);
  TarHeader h;
  auto r = reader.Next(h);
  EXPECT_FALSE(r.ok());
}

TEST(CompressionTest, GzipHeaderHasNoTimeNoNameAndRoundTrips) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data += std::to_string(i * 7919 % 1000);
  std::string gz;
  auto c = NewGzipCompressor([&](std::string_view d) {
    gz.append(d);
    return OkStatus();
  }, 6, 1);
  ASSERT_TRUE(c->Write(data.substr(0, 1000)).ok());
  ASSERT_TRUE(c->Write(data.substr(1000)).ok());
  ASSERT_TRUE(c->Finish().ok());
  ASSERT_GT(gz.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_EQ(gz[3], 0) << "no FNAME/FCOMMENT/FEXTRA flags";
  EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0')) << "mtime 0";
  EXPECT_EQ(static_cast<unsigned char>(gz[9]), 255) << "OS unknown";
  EXPECT_LT(gz.size(), data.size() / 2);

  std::string t = (fs::temp_directory_path() / "oci-gz-XXXXXX").string();
  ASSERT_NE(::mkdtemp(t.data()), nullptr);
  for (auto [type, bytes] : {std::pair{media::kOciLayerGzip, gz}}) {
    std::ofstream(t + "/l") << bytes;
    auto src = OpenLayer(t + "/l", type);
    ASSERT_TRUE(src.ok());
    std::string back(data.size() + 10, '\0');
    size_t got = 0;
    while (true) {
      auto n = (*src)->Read(back.data() + got, back.size() - got);
      ASSERT_TRUE(n.ok());
      if (*n == 0) break;
      got += *n;
    }
    EXPECT_EQ(back.substr(0, got), data);
  }
  // Truncated stream: an error, not a short read taken as the end.
  std::ofstream(t + "/l", std::ios::trunc) << gz.substr(0, gz.size() / 2);
  auto src = OpenLayer(t + "/l", media::kOciLayerGzip);
  std::string buf(1 << 20, '\0');
  Status last;
  while (true) {
    auto n = (*src)->Read(buf.data(), buf.size());
    if (!n.ok()) {
      last = n.status();
      break;
    }
    if (*n == 0) break;
  }
  EXPECT_EQ(last.code(), Code::kDataLoss);
  EXPECT_EQ(OpenLayer(t + "/l", "application/x-whatever").status().code(), Code::kInvalidArgument);
  fs::remove_all(t);
}

TEST(CompressionTest, ZstdRoundTrips) {
  std::string data(3 << 20, 'z');
  std::string zs;
  auto c = NewZstdCompressor([&](std::string_view d) {
    zs.append(d);
    return OkStatus();
  }, 3, 1);
  ASSERT_TRUE(c->Write(data).ok());
  ASSERT_TRUE(c->Finish().ok());
  std::string t = (fs::temp_directory_path() / "oci-zst-XXXXXX").string();
  ASSERT_NE(::mkdtemp(t.data()), nullptr);
  std::ofstream(t + "/l") << zs;
  auto src = OpenLayer(t + "/l", media::kOciLayerZstd);
  ASSERT_TRUE(src.ok());
  std::string back;
  std::string buf(1 << 16, '\0');
  while (true) {
    auto n = (*src)->Read(buf.data(), buf.size());
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    if (*n == 0) break;
    back.append(buf.data(), *n);
  }
  fs::remove_all(t);
  EXPECT_EQ(back, data);
}

// Half text, half noise, like a real tree: deterministic, `size` bytes.
std::string MixedData(size_t size) {
  std::string out;
  uint64_t x = 7;
  while (out.size() < size) {
    for (int i = 0; i < 4000 && out.size() < size; ++i) out += fmt::format("{} {} ", i * 7919 % 1000, "word");
    for (int i = 0; i < 30000 && out.size() < size; ++i) {
      out += static_cast<char>((x = x * 6364136223846793005u + 1442695040888963407u) >> 56);
    }
  }
  return out;
}

// Compresses `data` given in writes of `piece` bytes.
std::string Compress(bool zstd, std::string_view data, unsigned threads, size_t piece = 1 << 16) {
  std::string out;
  Sink sink = [&](std::string_view d) {
    out.append(d);
    return OkStatus();
  };
  auto c = zstd ? NewZstdCompressor(sink, 3, threads) : NewGzipCompressor(sink, 6, threads);
  for (size_t i = 0; i < data.size(); i += piece) EXPECT_TRUE(c->Write(data.substr(i, piece)).ok());
  EXPECT_TRUE(c->Finish().ok());
  return out;
}

// What `gzip -dc` makes of `gz` (after `gzip -t` accepts it).
std::string GunzipWithGzip(const std::string& gz) {
  std::string t = (fs::temp_directory_path() / "oci-gunzip-XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
  std::ofstream(t + "/l.gz", std::ios::binary) << gz;
  ProcessOptions po;
  po.inherit_env = true;
  auto test = gantry::Run({"gzip", "-t", t + "/l.gz"}, po);
  auto dc = gantry::Run({"gzip", "-dc", t + "/l.gz"}, po);
  fs::remove_all(t);
  EXPECT_TRUE(test.ok() && test->exit_code == 0) << (test.ok() ? test->err : test.status().ToString());
  EXPECT_TRUE(dc.ok() && dc->exit_code == 0) << (dc.ok() ? dc->err : dc.status().ToString());
  return dc.ok() ? dc->out : "";
}

TEST(CompressionTest, GzipBytesDoNotDependOnThreadsOrWriteSizes) {
  std::string data = MixedData(5 * kGzipMemberBytes + 12345);
  std::string one = Compress(false, data, 1);
  EXPECT_EQ(Compress(false, data, 4), one) << "1 vs 4 threads";
  EXPECT_EQ(Compress(false, data, 3, 511), one) << "3 threads, odd writes";
  EXPECT_EQ(Compress(false, data, 16, data.size()), one) << "16 threads, one write";
  EXPECT_EQ(GunzipWithGzip(one), data);
}

TEST(CompressionTest, GzipIsOneMemberPerBlock) {
  // Empty: one empty member, which gzip accepts (an empty file it would not).
  std::string empty = Compress(false, "", 4);
  EXPECT_EQ(empty.substr(0, 2), "\x1f\x8b");
  EXPECT_LT(empty.size(), 30u);
  EXPECT_EQ(GunzipWithGzip(empty), "");
  // Less than one block: one member.
  std::string small = MixedData(100000);
  EXPECT_EQ(Compress(false, small, 4), Compress(false, small, 1));
  EXPECT_EQ(GunzipWithGzip(Compress(false, small, 4)), small);
  // Exactly 3 blocks: 3 members, each the gzip of its block, and no empty member after them.
  std::string three = MixedData(3 * kGzipMemberBytes);
  std::string members;
  for (size_t i = 0; i < 3; ++i) members += Compress(false, std::string_view(three).substr(i * kGzipMemberBytes, kGzipMemberBytes), 1);
  EXPECT_EQ(Compress(false, three, 4), members);
  EXPECT_EQ(GunzipWithGzip(members), three);
  // One byte more: a fourth member.
  std::string more = three + "x";
  EXPECT_EQ(Compress(false, more, 4), members + Compress(false, "x", 1));
}

TEST(CompressionTest, GzipDigestOfAFixedInputIsPinned) {
  // Changes only with the format (block size, level, header) or the libdeflate version; if it
  // changes, every layer digest gantry builds changes: say so in the release notes.
  std::string data = MixedData(2 * kGzipMemberBytes + 777);
  EXPECT_EQ(Sha256Digest(Compress(false, data, 4)), "sha256:755c2b400a137fa6fc2e3d27e9a0d7468db5896f0bc0e757d46331343291b241");
}

TEST(CompressionTest, MultiMemberGzipLayerReadsBack) {
  std::string data = MixedData(3 * kGzipMemberBytes + 5);
  std::string t = (fs::temp_directory_path() / "oci-mm-XXXXXX").string();
  ASSERT_NE(::mkdtemp(t.data()), nullptr);
  std::ofstream(t + "/l", std::ios::binary) << Compress(false, data, 4);
  auto src = OpenLayer(t + "/l", media::kOciLayerGzip);
  ASSERT_TRUE(src.ok());
  std::string back, buf(100000, '\0');
  while (true) {
    auto n = (*src)->Read(buf.data(), buf.size());
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    if (*n == 0) break;
    back.append(buf.data(), *n);
  }
  fs::remove_all(t);
  EXPECT_EQ(back, data);
}

TEST(CompressionTest, ZstdBytesDoNotDependOnThreads) {
  // Over 20 MiB: several libzstd jobs (8 MiB each at level 3).
  std::string data = MixedData(21 << 20);
  std::string one = Compress(true, data, 1);
  EXPECT_EQ(Compress(true, data, 4), one);
  EXPECT_EQ(Compress(true, data, 3, 1 << 20), one);
}

}  // namespace
}  // namespace gantry::oci::internal
