// SPDX SBOMs of images built into a layout: the document's required SPDX 2.3 fields, one entry per
// file with the right checksums, the package databases, and the statement cosign's spdxjson reads.

#include "sign/sbom.h"

#include "base/percent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include "base/hash.h"
#include "sign/sign.h"
#include "value/value.h"

namespace gantry::sign {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using value::Value;

constexpr std::string_view kDpkgStatus = R"(Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: removed-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u4
Depends: libgcc-s1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 1:2024a-0+deb12u1
)";

void Write(const fs::path& p, std::string_view content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
}

class SbomTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gantry-sbom-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    image_ = *oci::ParseReference("registry.test/team/web:v1");
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // Builds an image of `layers` (directories, lowest first) tagged "v1"; returns its digest.
  std::string Build(const std::vector<fs::path>& layers) {
    auto layout = oci::Layout::Open(tmp_ / "layout", true);
    EXPECT_TRUE(layout.ok()) << layout.status().ToString();
    oci::BuildOptions b;
    b.platform = oci::Platform{"linux", "amd64", ""};
    for (const auto& l : layers) b.layers.push_back({.source = l});
    auto built = oci::BuildImage(b, *layout, "v1");
    EXPECT_TRUE(built.ok()) << built.status().ToString();
    layout_.emplace(*std::move(layout));
    return built->image.digest;
  }

  // The SBOM as one string, and how many chunks the sink got.
  Result<std::string> Sbom(const std::string& digest, size_t* chunks = nullptr) {
    std::string doc;
    size_t n = 0;
    auto stats = WriteSbom(*layout_, "v1", {.image = image_, .digest = digest, .created = "2026-12-07T00:00:00Z"},
                           [&](std::string_view chunk) {
                             doc.append(chunk);
                             ++n;
                             return OkStatus();
                           });
    if (!stats.ok()) return stats.status();
    stats_ = *stats;
    if (chunks != nullptr) *chunks = n;
    return doc;
  }

  fs::path tmp_;
  oci::Reference image_;
  std::optional<oci::Layout> layout_;
  SbomStats stats_;
};

// Every field SPDX 2.3 requires of a document, its files, packages and relationships, with the
// JSON schema's patterns; returns the files by name.
std::map<std::string, const Value*> CheckSpdx23(const Value& doc) {
  const std::regex id("^SPDXRef-[a-zA-Z0-9.-]+$");
  const std::regex date("^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$");
  EXPECT_EQ(value::StringAt(&doc, {"spdxVersion"}), "SPDX-2.3");
  EXPECT_EQ(value::StringAt(&doc, {"dataLicense"}), "CC0-1.0");
  EXPECT_EQ(value::StringAt(&doc, {"SPDXID"}), "SPDXRef-DOCUMENT");
  EXPECT_FALSE(value::StringAt(&doc, {"name"}).empty());
  EXPECT_THAT(value::StringAt(&doc, {"documentNamespace"}), ::testing::StartsWith("https://"));
  EXPECT_TRUE(std::regex_match(value::StringAt(&doc, {"creationInfo", "created"}), date));
  const Value* creators = doc.Find({"creationInfo", "creators"});
  EXPECT_TRUE(creators != nullptr && creators->size() >= 1 && !value::StringAt(creators, {0}).empty());
  std::set<std::string> ids{"SPDXRef-DOCUMENT"};
  std::map<std::string, const Value*> files;
  const Value* fl = doc.Get("files");
  EXPECT_TRUE(fl != nullptr && fl->IsSeq());
  for (size_t i = 0; fl != nullptr && i < fl->size(); ++i) {
    const Value* f = fl->At(i);
    std::string sid = value::StringAt(f, {"SPDXID"});
    EXPECT_TRUE(std::regex_match(sid, id)) << sid;
    EXPECT_TRUE(ids.insert(sid).second) << sid << " twice";
    std::string name = value::StringAt(f, {"fileName"});
    EXPECT_THAT(name, ::testing::StartsWith("./"));
    const Value* sums = f->Get("checksums");
    EXPECT_TRUE(sums != nullptr && sums->size() == 2) << name;
    std::map<std::string, std::string> by_algo;
    for (size_t j = 0; sums != nullptr && j < sums->size(); ++j) {
      by_algo[value::StringAt(sums->At(j), {"algorithm"})] = value::StringAt(sums->At(j), {"checksumValue"});
    }
    EXPECT_TRUE(std::regex_match(by_algo["SHA1"], std::regex("^[0-9a-f]{40}$"))) << name << ": SHA1 is required";
    EXPECT_TRUE(std::regex_match(by_algo["SHA256"], std::regex("^[0-9a-f]{64}$"))) << name;
    EXPECT_EQ(files.count(name), 0u) << name << " listed twice";
    files[name] = f;
  }
  const Value* pk = doc.Get("packages");
  EXPECT_TRUE(pk != nullptr && pk->size() >= 1);
  for (size_t i = 0; pk != nullptr && i < pk->size(); ++i) {
    const Value* p = pk->At(i);
    std::string sid = value::StringAt(p, {"SPDXID"});
    EXPECT_TRUE(std::regex_match(sid, id)) << sid;
    EXPECT_TRUE(ids.insert(sid).second) << sid << " twice";
    EXPECT_FALSE(value::StringAt(p, {"name"}).empty());
    EXPECT_FALSE(value::StringAt(p, {"downloadLocation"}).empty());
  }
  const Value* rel = doc.Get("relationships");
  EXPECT_NE(rel, nullptr);
  bool describes = false;
  for (size_t i = 0; rel != nullptr && i < rel->size(); ++i) {
    const Value* r = rel->At(i);
    EXPECT_EQ(ids.count(value::StringAt(r, {"spdxElementId"})), 1u);
    EXPECT_EQ(ids.count(value::StringAt(r, {"relatedSpdxElement"})), 1u);
    EXPECT_FALSE(value::StringAt(r, {"relationshipType"}).empty());
    describes |= value::StringAt(r, {"spdxElementId"}) == "SPDXRef-DOCUMENT" &&
                 value::StringAt(r, {"relationshipType"}) == "DESCRIBES";
  }
  EXPECT_TRUE(describes) << "the document must DESCRIBE something";
  return files;
}

std::string Sha256Of(const Value* file) {
  const Value* sums = file != nullptr ? file->Get("checksums") : nullptr;
  for (size_t j = 0; sums != nullptr && j < sums->size(); ++j) {
    if (value::StringAt(sums->At(j), {"algorithm"}) == "SHA256") return value::StringAt(sums->At(j), {"checksumValue"});
  }
  return "";
}

TEST_F(SbomTest, DebianImageHasEveryFileAndTheInstalledPackages) {
  Write(tmp_ / "base/var/lib/dpkg/status", kDpkgStatus);
  Write(tmp_ / "base/usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n");
  fs::create_directories(tmp_ / "base/etc");
  fs::create_symlink("../usr/lib/os-release", tmp_ / "base/etc/os-release");
  Write(tmp_ / "base/usr/bin/tool", "old tool");
  Write(tmp_ / "base/usr/share/a file with \"quotes\"", "q");
  ASSERT_EQ(::link((tmp_ / "base/usr/share/a file with \"quotes\"").c_str(), (tmp_ / "base/usr/share/linked").c_str()), 0);
  for (int i = 0; i < 700; ++i) Write(tmp_ / fmt::format("base/srv/data/{:04}", i), std::to_string(i));
  Write(tmp_ / "app/usr/bin/tool", "new tool");  // the upper layer replaces it
  Write(tmp_ / "app/app/server", "#!/bin/sh\n");
  std::string digest = Build({tmp_ / "base", tmp_ / "app"});

  size_t chunks = 0;
  auto doc = Sbom(digest, &chunks);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_GT(chunks, 1u) << "streamed in chunks, not as one string";
  auto parsed = value::ParseJson(*doc, "sbom");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto files = CheckSpdx23(*parsed);

  // Each regular file once, with the data of the layer that wins; symlinks and directories are no files.
  EXPECT_EQ(files.size(), 700u + 6u);
  EXPECT_EQ(stats_.files, files.size());
  EXPECT_EQ(Sha256Of(files["./usr/bin/tool"]), Sha256Hex("new tool"));
  EXPECT_EQ(Sha256Of(files["./app/server"]), Sha256Hex("#!/bin/sh\n"));
  EXPECT_EQ(Sha256Of(files["./srv/data/0042"]), Sha256Hex("42"));
  EXPECT_EQ(Sha256Of(files["./usr/share/a file with \"quotes\""]), Sha256Hex("q"));
  EXPECT_EQ(Sha256Of(files["./usr/share/linked"]), Sha256Hex("q")) << "a hard link has its target's data";
  EXPECT_EQ(files.count("./etc/os-release"), 0u);

  // The installed packages (not the removed one), with PURLs; the image is a CONTAINER package.
  EXPECT_EQ(stats_.package_database, "var/lib/dpkg/status");
  EXPECT_EQ(stats_.packages, 3u);
  std::map<std::string, std::string> purls;
  const Value* packages = parsed->Get("packages");
  for (size_t i = 0; i < packages->size(); ++i) {
    purls[value::StringAt(packages->At(i), {"name"})] = value::StringAt(packages->At(i), {"externalRefs", 0, "referenceLocator"});
  }
  EXPECT_EQ(purls, (std::map<std::string, std::string>{
                       {"registry.test/team/web", "pkg:oci/web@sha256%3A" + digest.substr(7) +
                                                      "?repository_url=registry.test%2Fteam%2Fweb"},
                       {"base-files", "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64"},
                       {"libc6", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"},
                       {"tzdata", "pkg:deb/debian/tzdata@1%3A2024a-0%2Bdeb12u1?arch=all"}}));
  EXPECT_EQ(value::StringAt(packages, {0, "primaryPackagePurpose"}), "CONTAINER");
  EXPECT_EQ(value::StringAt(packages, {0, "versionInfo"}), digest);

  // The same image and time give the same bytes.
  auto again = Sbom(digest);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *doc);

  // The statement cosign's --type spdxjson checks: subject, predicate type, the document as predicate.
  auto statement = value::ParseJson(SbomStatement(image_, digest, *doc), "statement");
  ASSERT_TRUE(statement.ok()) << statement.status().ToString();
  EXPECT_EQ(value::StringAt(&*statement, {"_type"}), kInTotoStatementV1);
  EXPECT_EQ(value::StringAt(&*statement, {"predicateType"}), "https://spdx.dev/Document");
  EXPECT_EQ(value::StringAt(&*statement, {"subject", 0, "digest", "sha256"}), digest.substr(7));
  ASSERT_NE(statement->Get("predicate"), nullptr);
  EXPECT_EQ(value::ToJson(*statement->Get("predicate")), value::ToJson(*parsed));
}

TEST_F(SbomTest, AlpineDatabaseAndNoDatabase) {
  Write(tmp_ / "root/lib/apk/db/installed",
        "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nT:the musl c library\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n");
  Write(tmp_ / "root/etc/os-release", "NAME=\"Alpine Linux\"\nID=alpine\n");
  std::string digest = Build({tmp_ / "root"});
  auto doc = Sbom(digest);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  auto parsed = value::ParseJson(*doc, "sbom");
  ASSERT_TRUE(parsed.ok());
  CheckSpdx23(*parsed);
  EXPECT_EQ(stats_.package_database, "lib/apk/db/installed");
  EXPECT_THAT(*doc, HasSubstr("\"pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64\""));
  EXPECT_THAT(*doc, HasSubstr("\"pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64\""));

  fs::remove_all(tmp_ / "layout");
  Write(tmp_ / "plain/app/bin", "x");
  auto plain = Sbom(Build({tmp_ / "plain"}));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  auto p = value::ParseJson(*plain, "sbom");
  ASSERT_TRUE(p.ok());
  CheckSpdx23(*p);
  EXPECT_EQ(stats_.packages, 0u);
  EXPECT_EQ(stats_.package_database, "");
}

TEST_F(SbomTest, MalformedDatabaseIsAnErrorNamingFileAndLine) {
  Write(tmp_ / "root/var/lib/dpkg/status", "Package: ok\nStatus: install ok installed\nVersion: 1\n\nPackage: broken\nStatus: install ok installed\n");
  std::string digest = Build({tmp_ / "root"});
  auto doc = Sbom(digest);
  ASSERT_EQ(doc.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(doc.status().message(), HasSubstr("/var/lib/dpkg/status: line 5: an installed package without Version:"));

  EXPECT_EQ(ParseApkInstalled("P:x\n\nV:1\n", "alpine").status().message(), "line 1: a package without V:");
  EXPECT_EQ(WriteSbom(*layout_, "v1", {.image = image_, .digest = "sha256:short"}, [](std::string_view) { return OkStatus(); })
                .status()
                .code(),
            Code::kInvalidArgument);
}

TEST(SbomParseTest, OsReleaseAndPurls) {
  EXPECT_EQ(OsReleaseId("NAME=x\nID=\"ubuntu\"\nID_LIKE=debian\n"), "ubuntu");
  EXPECT_EQ(OsReleaseId("NAME=x\n"), "");
  EXPECT_EQ(PercentEncode("1:2.3+dfsg~1 x/y"), "1%3A2.3%2Bdfsg~1%20x%2Fy");
  auto ubuntu = ParseDpkgStatus("Package: bash\nStatus: install ok installed\nVersion: 5.2\n", "ubuntu");
  ASSERT_TRUE(ubuntu.ok());
  ASSERT_EQ(ubuntu->size(), 1u);
  EXPECT_EQ((*ubuntu)[0].purl, "pkg:deb/ubuntu/bash@5.2");
}

}  // namespace
}  // namespace gantry::sign
