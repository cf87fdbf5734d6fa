#pragma once
// SBOMs of images: an SPDX 2.3 JSON document listing every regular file of the image's final file
// system (whiteouts applied) with its SHA-1 (which SPDX 2.3 requires) and SHA-256, and the
// packages of its package database: Debian's /var/lib/dpkg/status or Alpine's
// /lib/apk/db/installed, each with name, version and PURL (namespace from /etc/os-release's ID).
//
// The document is written as the layers are read (oci::WalkImage, top layer first), through a
// sink in chunks, so memory stays bounded by the number of paths, never by file data: files come
// first, then the packages found on the way, then the relationships (the document DESCRIBES the
// image, which CONTAINS each package). The same image and creation time give the same bytes.
//
// Attested as cosign does with `cosign attest --type spdxjson`: an in-toto Statement v1 whose
// predicateType is https://spdx.dev/Document and whose predicate is the document
// (SbomStatement), signed in a DSSE envelope by sign::AttestImage.
// Thread-safe: functions share nothing.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "oci/build.h"
#include "oci/oci.h"

namespace gantry::sign {

inline constexpr std::string_view kSpdxDocument = "https://spdx.dev/Document";

// A package of an image's package database.
struct SbomPackage {
  std::string name;
  std::string version;
  std::string arch;  // "" when the database does not say
  std::string purl;  // "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64"
};

// The installed packages of a dpkg status file (paragraphs whose Status ends in "installed"), with
// PURLs of type deb in namespace `distro` ("debian", "ubuntu"). InvalidArgument naming the line of
// an installed paragraph without Package or Version.
Result<std::vector<SbomPackage>> ParseDpkgStatus(std::string_view text, std::string_view distro);
// The packages of an apk installed database (P:, V:, A: lines, blank-line separated), with PURLs
// of type apk in namespace `distro` ("alpine"). InvalidArgument naming the line of a package
// without P: or V:.
Result<std::vector<SbomPackage>> ParseApkInstalled(std::string_view text, std::string_view distro);
// The ID= of an os-release file ("debian"), or "" when it has none.
std::string OsReleaseId(std::string_view text);

struct SbomOptions {
  oci::Reference image;  // its registry and repository name the document and the image package
  std::string digest;    // the image's digest (the manifest's, or the index's)
  std::string created;   // RFC 3339 UTC to the second ("2026-12-07T00:00:00Z")
  std::optional<oci::Platform> platform;  // picks the image of an index (see oci::ImageManifest)
  oci::ExtractLimits limits;
  // Database files larger than this are refused (ResourceExhausted naming the file).
  uint64_t max_database_bytes = 64ull << 20;
};

struct SbomStats {
  uint64_t files = 0;         // file entries written (regular files and hard links)
  uint64_t packages = 0;      // packages of the package database
  uint64_t bytes_hashed = 0;
  // Hard links whose target an upper layer replaced: their data cannot be read any more without
  // unpacking, so they are left out (and counted here).
  uint64_t links_left_out = 0;
  std::string package_database;  // "var/lib/dpkg/status", "lib/apk/db/installed" or ""
};

// Writes the SPDX 2.3 JSON document of the image tagged `ref_name` in `layout` to `sink`, in
// chunks of about 64 KiB. Errors: those of oci::WalkImage (limits, malformed layers, naming the
// layer and entry), of the database parsers (naming the file), and the sink's.
Result<SbomStats> WriteSbom(const oci::Layout& layout, std::string_view ref_name, const SbomOptions& options,
                            const std::function<Status(std::string_view)>& sink);

// The in-toto Statement v1 with `image`@`digest` as subject, kSpdxDocument as predicate type and
// `document` (an SPDX JSON document, taken as it is) as predicate.
std::string SbomStatement(const oci::Reference& image, std::string_view digest, std::string_view document);

}  // namespace gantry::sign
