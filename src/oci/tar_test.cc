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
  }, 6);
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
  }, 3);
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

}  // namespace
}  // namespace gantry::oci::internal
