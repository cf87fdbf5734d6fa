// SPDX 2.3 SBOMs of images (sbom.h).

#include "sign/sbom.h"

#include <fmt/ranges.h>
#include <openssl/evp.h>

#include <cctype>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>

#include "base/percent.h"
#include "sign/sign.h"
#include "value/value.h"

namespace gantry::sign {
namespace {

using value::Value;

constexpr std::string_view kDpkgStatus = "var/lib/dpkg/status";
constexpr std::string_view kApkInstalled = "lib/apk/db/installed";
constexpr std::string_view kOsRelease[] = {"etc/os-release", "usr/lib/os-release"};

std::string Quote(std::string_view s) { return value::ToJson(Value(s)); }

std::string Hex(const unsigned char* data, unsigned len) {
  return fmt::format("{:02x}", fmt::join(std::span<const unsigned char>(data, len), ""));
}

// SHA-1 and SHA-256 of one stream at once.
class Checksums {
 public:
  Checksums() {
    GANTRY_CHECK(EVP_DigestInit_ex(sha1_.get(), EVP_sha1(), nullptr) == 1);
    GANTRY_CHECK(EVP_DigestInit_ex(sha256_.get(), EVP_sha256(), nullptr) == 1);
  }
  void Update(std::string_view data) {
    GANTRY_CHECK(EVP_DigestUpdate(sha1_.get(), data.data(), data.size()) == 1);
    GANTRY_CHECK(EVP_DigestUpdate(sha256_.get(), data.data(), data.size()) == 1);
  }
  // The "checksums" array of an SPDX file.
  std::string FinishJson() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    GANTRY_CHECK(EVP_DigestFinal_ex(sha1_.get(), md, &len) == 1);
    std::string sha1 = Hex(md, len);
    GANTRY_CHECK(EVP_DigestFinal_ex(sha256_.get(), md, &len) == 1);
    return fmt::format(R"([{{"algorithm":"SHA1","checksumValue":"{}"}},{{"algorithm":"SHA256","checksumValue":"{}"}}])",
                       sha1, Hex(md, len));
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> sha1_{EVP_MD_CTX_new()};
  std::unique_ptr<EVP_MD_CTX, Free> sha256_{EVP_MD_CTX_new()};
};

std::string Purl(std::string_view type, std::string_view distro, const SbomPackage& p) {
  std::string purl = fmt::format("pkg:{}/{}/{}@{}", type, PercentEncode(distro), PercentEncode(p.name), PercentEncode(p.version));
  if (!p.arch.empty()) purl += "?arch=" + PercentEncode(p.arch);
  return purl;
}

// A package database's format: blank-line separated paragraphs of "Key: value" (dpkg) or
// "K:value" (apk) lines; continuation lines (a leading space) carry nothing we read.
struct DatabaseFormat {
  std::string_view purl_type;
  std::string_view name, version, arch;  // the keys
  std::string_view status;               // dpkg: the key whose value must end in " installed"
  std::string_view what;
};
constexpr DatabaseFormat kDpkg{"deb", "Package", "Version", "Architecture", "Status", "an installed package"};
constexpr DatabaseFormat kApk{"apk", "P", "V", "A", "", "a package"};

Result<std::vector<SbomPackage>> ParsePackages(std::string_view text, std::string_view distro, const DatabaseFormat& format) {
  std::vector<SbomPackage> out;
  std::map<std::string, std::string, std::less<>> fields;
  size_t line_no = 0, first = 0;
  auto paragraph = [&]() -> Status {
    auto get = [&](std::string_view k) { auto it = fields.find(k); return it == fields.end() ? std::string() : it->second; };
    if (fields.empty() || (!format.status.empty() && !get(format.status).ends_with(" installed"))) {
      fields.clear();  // nothing, or a package removed, config-files only, half-installed
      return OkStatus();
    }
    SbomPackage p{.name = get(format.name), .version = get(format.version), .arch = get(format.arch)};
    fields.clear();
    if (p.name.empty() || p.version.empty()) {
      return InvalidArgumentError("line {}: {} without {}:", first, format.what, p.name.empty() ? format.name : format.version);
    }
    p.purl = Purl(format.purl_type, distro, p);
    out.push_back(std::move(p));
    return OkStatus();
  };
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      GANTRY_RETURN_IF_ERROR(paragraph());
      continue;
    }
    size_t colon = line.find(':');
    if (line[0] == ' ' || line[0] == '\t' || colon == std::string_view::npos) continue;
    if (fields.empty()) first = line_no;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    fields.emplace(std::string(line.substr(0, colon)), std::string(v));
  }
  GANTRY_RETURN_IF_ERROR(paragraph());
  return out;
}

// A package of the SPDX document.
std::string PackageJson(std::string_view id, const SbomPackage& p, std::string_view purpose, std::string_view comment) {
  Value ref = Value::Map();
  ref.Set("referenceCategory", "PACKAGE-MANAGER");
  ref.Set("referenceType", "purl");
  ref.Set("referenceLocator", p.purl);
  Value refs = Value::Seq();
  refs.Append(std::move(ref));
  Value v = Value::Map();
  v.Set("name", p.name);
  v.Set("SPDXID", id);
  v.Set("versionInfo", p.version);
  v.Set("downloadLocation", "NOASSERTION");
  v.Set("filesAnalyzed", false);
  if (!purpose.empty()) v.Set("primaryPackagePurpose", purpose);
  if (!comment.empty()) v.Set("comment", comment);
  v.Set("externalRefs", std::move(refs));
  return value::ToJson(v);
}

std::string Relationship(std::string_view from, std::string_view type, std::string_view to) {
  return fmt::format(R"({{"spdxElementId":{},"relationshipType":"{}","relatedSpdxElement":{}}})", Quote(from), type,
                     Quote(to));
}

// Buffers the document and hands it to the sink in chunks.
class Writer {
 public:
  explicit Writer(const std::function<Status(std::string_view)>& sink) : sink_(sink) {}
  Status Write(std::string_view s) {
    buf_.append(s);
    return buf_.size() >= (64u << 10) ? Flush() : OkStatus();
  }
  Status Flush() {
    if (buf_.empty()) return OkStatus();
    Status s = sink_(buf_);
    buf_.clear();
    return s;
  }

 private:
  const std::function<Status(std::string_view)>& sink_;
  std::string buf_;
};

}  // namespace

std::string OsReleaseId(std::string_view text) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.starts_with("ID=")) continue;
    std::string_view id = line.substr(3);
    if (id.size() >= 2 && (id.front() == '"' || id.front() == '\'') && id.back() == id.front()) id = id.substr(1, id.size() - 2);
    return std::string(id);
  }
  return "";
}

Result<std::vector<SbomPackage>> ParseDpkgStatus(std::string_view text, std::string_view distro) {
  return ParsePackages(text, distro, kDpkg);
}

Result<std::vector<SbomPackage>> ParseApkInstalled(std::string_view text, std::string_view distro) {
  return ParsePackages(text, distro, kApk);
}

Result<SbomStats> WriteSbom(const oci::Layout& layout, std::string_view ref_name, const SbomOptions& o,
                            const std::function<Status(std::string_view)>& sink) {
  GANTRY_RETURN_IF_ERROR(oci::ValidateDigest(o.digest));
  const std::string repo = o.image.registry + "/" + o.image.repository;
  const std::string name = repo + "@" + o.digest;
  Writer w(sink);
  GANTRY_RETURN_IF_ERROR(w.Write(fmt::format(
      R"({{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":{},)"
      R"("documentNamespace":{},"creationInfo":{{"created":{},"creators":["Tool: gantry"]}},"files":[)",
      Quote(name), Quote("https://gantry.dev/spdx/" + name), Quote(o.created))));

  SbomStats stats;
  std::map<std::string, std::string, std::less<>> databases;  // path → content, of kDpkgStatus etc.
  std::unordered_map<std::string, std::string> layer_files;   // path → checksums, of the current layer
  size_t current_layer = SIZE_MAX;
  std::vector<char> buf(1 << 20);
  auto file = [&](const std::string& path, const std::string& checksums) -> Status {
    ++stats.files;
    return w.Write(fmt::format(R"({}{{"fileName":{},"SPDXID":"SPDXRef-File-{}","checksums":{}}})", stats.files > 1 ? "," : "",
                               Quote("./" + path), stats.files, checksums));
  };
  auto walked = oci::WalkImage(layout, ref_name, o.platform, [&](const oci::ImageEntry& e, const oci::ReadFn& read) -> Status {
    if (e.layer != current_layer) {
      layer_files.clear();  // hard links name files of their own layer only
      current_layer = e.layer;
    }
    if (e.type == '1') {
      auto it = layer_files.find(e.linkname);
      if (it == layer_files.end()) {
        ++stats.links_left_out;
        return OkStatus();
      }
      return file(e.path, it->second);
    }
    if (e.type != '0') return OkStatus();
    bool keep = e.path == kDpkgStatus || e.path == kApkInstalled || e.path == kOsRelease[0] || e.path == kOsRelease[1];
    if (keep && e.size > o.max_database_bytes) {
      return ResourceExhaustedError("{} bytes, more than the limit of {} for a package database", e.size, o.max_database_bytes);
    }
    std::string* content = keep ? &databases[e.path] : nullptr;
    Checksums sums;
    while (true) {
      GANTRY_ASSIGN_OR_RETURN(size_t n, read(buf.data(), buf.size()));
      if (n == 0) break;
      std::string_view chunk(buf.data(), n);
      sums.Update(chunk);
      if (content != nullptr) content->append(chunk);
      stats.bytes_hashed += n;
    }
    std::string checksums = sums.FinishJson();
    GANTRY_RETURN_IF_ERROR(file(e.path, checksums));
    layer_files[e.path] = std::move(checksums);
    return OkStatus();
  });
  if (!walked.ok()) return walked.status().WithContext("sbom of " + name);
  layer_files.clear();

  std::string distro;
  for (std::string_view p : kOsRelease) {
    if (auto it = databases.find(p); it != databases.end() && distro.empty()) distro = OsReleaseId(it->second);
  }
  std::vector<SbomPackage> packages;
  if (auto it = databases.find(kDpkgStatus); it != databases.end()) {
    auto parsed = ParseDpkgStatus(it->second, distro.empty() ? "debian" : distro);
    if (!parsed.ok()) return parsed.status().WithContext(fmt::format("sbom of {}: /{}", name, kDpkgStatus));
    packages = *std::move(parsed);
    stats.package_database = kDpkgStatus;
  } else if (auto apk = databases.find(kApkInstalled); apk != databases.end()) {
    auto parsed = ParseApkInstalled(apk->second, distro.empty() ? "alpine" : distro);
    if (!parsed.ok()) return parsed.status().WithContext(fmt::format("sbom of {}: /{}", name, kApkInstalled));
    packages = *std::move(parsed);
    stats.package_database = kApkInstalled;
  }
  stats.packages = packages.size();

  // The image itself is a package (purpose CONTAINER) with an OCI PURL; the database's packages follow.
  SbomPackage image{.name = repo, .version = o.digest,
                    .purl = fmt::format("pkg:oci/{}@{}?repository_url={}",
                                        PercentEncode(o.image.repository.substr(o.image.repository.rfind('/') + 1)),
                                        PercentEncode(o.digest), PercentEncode(repo))};
  GANTRY_RETURN_IF_ERROR(w.Write("],\"packages\":["));
  GANTRY_RETURN_IF_ERROR(w.Write(PackageJson("SPDXRef-Image", image, "CONTAINER", "")));
  std::string comment = stats.package_database.empty() ? "" : "from /" + stats.package_database;
  for (size_t i = 0; i < packages.size(); ++i) {
    GANTRY_RETURN_IF_ERROR(w.Write("," + PackageJson(fmt::format("SPDXRef-Package-{}", i + 1), packages[i], "", comment)));
  }
  GANTRY_RETURN_IF_ERROR(w.Write("],\"relationships\":[" + Relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")));
  for (size_t i = 0; i < packages.size(); ++i) {
    GANTRY_RETURN_IF_ERROR(w.Write("," + Relationship("SPDXRef-Image", "CONTAINS", fmt::format("SPDXRef-Package-{}", i + 1))));
  }
  GANTRY_RETURN_IF_ERROR(w.Write("]}\n"));
  GANTRY_RETURN_IF_ERROR(w.Flush());
  return stats;
}

std::string SbomStatement(const oci::Reference& image, std::string_view digest, std::string_view document) {
  // The statement with a null predicate, then the document put in its place: the document is
  // taken byte for byte, never parsed into memory as a tree.
  std::string statement = Statement(image, digest, kSpdxDocument, Value());
  constexpr std::string_view kNull = "\"predicate\":null}";
  GANTRY_CHECK(statement.ends_with(kNull));
  statement.resize(statement.size() - 5);  // drop "null}"
  while (!document.empty() && (document.back() == '\n' || document.back() == ' ')) document.remove_suffix(1);
  statement.append(document);
  statement += '}';
  return statement;
}

}  // namespace gantry::sign
