// Fuzzes the package databases an SBOM reads from an image's file system, which come from whoever
// built the base image: a dpkg status file (ParseDpkgStatus) and an apk installed database
// (ParseApkInstalled), both fed the same input. Any input must parse or fail cleanly; every package
// parsed must have a name and a version, and a PURL of its type that holds no character a PURL
// must percent-encode (spaces, controls, '#', '?' and '@' beyond the one after the name).

#include <cstdint>
#include <string>

#include "fuzz/fuzz.h"
#include "sign/sbom.h"

using namespace gantry;

namespace {

void CheckPackages(const Result<std::vector<sign::SbomPackage>>& packages, std::string_view type) {
  if (!packages.ok()) return;
  for (const sign::SbomPackage& p : *packages) {
    if (p.name.empty() || p.version.empty()) fuzz::Fail("a package without name or version", p.purl);
    if (!p.purl.starts_with(type)) fuzz::Fail("a PURL of another type", p.purl);
    std::string_view path(p.purl);
    path = path.substr(0, path.find('?'));  // the qualifiers follow the one '?'
    size_t at = path.find('@');
    if (at == std::string_view::npos || path.find('@', at + 1) != std::string_view::npos) {
      fuzz::Fail("a PURL without exactly one '@' before its qualifiers", p.purl);
    }
    for (unsigned char c : p.purl) {
      if (c <= ' ' || c >= 0x7f || c == '#') fuzz::Fail("a PURL with a character it must percent-encode", p.purl);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = fuzz::Text(data, size);
  CheckPackages(sign::ParseDpkgStatus(text, "debian"), "pkg:deb/debian/");
  CheckPackages(sign::ParseApkInstalled(text, "alpine"), "pkg:apk/alpine/");
  sign::OsReleaseId(text);
  return 0;
}
