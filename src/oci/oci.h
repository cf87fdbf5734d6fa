#pragma once
// oci: OCI images and the registries that hold them.
//
// This header holds the value types every part of the module shares: image references, digests,
// descriptors, manifests and indexes (OCI image spec v1.1 and Docker schema 2, which differ only in
// media types), and platforms. The registry client is in registry.h, the on-disk OCI image layout
// in layout.h, the daemonless image build in build.h.
//
// Manifests are kept as parsed values and also as the exact bytes they were read from: a digest is
// over bytes, so a manifest read from a registry is pushed back byte for byte, never re-serialised.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::oci {

namespace media {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
}  // namespace media

// True for the media types of an image manifest (OCI or Docker), resp. of an index / manifest list.
bool IsManifestType(std::string_view media_type);
bool IsIndexType(std::string_view media_type);

// "sha256:" + 64 lower-case hex digits of the SHA-256 of `bytes`.
std::string Sha256Digest(std::string_view bytes);

// OK when `digest` is "sha256:<64 lower-case hex>" (the only algorithm Gantry accepts; sha512 is
// refused with a message saying so); InvalidArgument naming what is wrong otherwise.
Status ValidateDigest(std::string_view digest);

// An image reference, normalised as Docker does: "nginx" → registry "docker.io", repository
// "library/nginx", tag "latest" (the tag defaults to "latest" only when there is no digest).
// A first component with '.' or ':' or equal to "localhost" is a registry host[:port].
struct Reference {
  std::string registry;    // "docker.io", "registry.local:5000", "127.0.0.1:34567"
  std::string repository;  // "library/nginx", "team/web"
  std::string tag;         // "" when only a digest was given
  std::string digest;      // "" or "sha256:…"

  // The tag, else the digest: what goes into /v2/<repository>/manifests/<reference>.
  std::string Identifier() const { return digest.empty() ? tag : digest; }
  // "registry/repository[:tag][@digest]".
  std::string ToString() const;
};

// Parses a reference; InvalidArgument saying which part is malformed (repository components are
// lower-case [a-z0-9] separated by '.', '_', '__' or '-'*; tags match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127};
// digests as ValidateDigest).
Result<Reference> ParseReference(std::string_view text);

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64"
  std::string variant;       // "v8", or ""
  // "linux/arm64/v8" or "linux/amd64".
  std::string ToString() const;
  friend bool operator==(const Platform&, const Platform&) = default;
};
// Parses "os/arch[/variant]"; InvalidArgument otherwise.
Result<Platform> ParsePlatform(std::string_view text);
// Whether an index entry's platform `have` is the one asked for: same OS and architecture, and the
// same variant unless `want` names none. An entry without a platform matches nothing.
bool PlatformMatches(const Platform& want, const std::optional<Platform>& have);

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;  // in an index's entries
  std::vector<std::string> urls;     // foreign layers; kept, never fetched
};

// An image manifest (OCI or Docker schema 2). media_type is the manifest's own type: taken from
// its mediaType field, else from the Content-Type it was served with.
struct Manifest {
  std::string media_type;
  std::string artifact_type;  // OCI 1.1 artifactType; "" when absent
  Descriptor config;
  std::vector<Descriptor> layers;
  // OCI 1.1: the manifest this one refers to (a signature's image); a registry with the referrers
  // API lists this manifest under the subject's digest.
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
};

// An image index (OCI) or manifest list (Docker).
struct Index {
  std::string media_type;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Parse the JSON of a manifest / index. `media_type` is the Content-Type it came with (may be
// empty; then the document's mediaType field decides). InvalidArgument with the field that is
// missing or malformed (e.g. "layers[2].digest: not a sha256 digest").
Result<Manifest> ParseManifest(std::string_view json, std::string_view media_type = {});
Result<Index> ParseIndex(std::string_view json, std::string_view media_type = {});

// Compact JSON with schemaVersion 2, mediaType and fields in the order the OCI spec lists them.
// Deterministic: equal values give equal bytes (so equal digests).
std::string SerializeManifest(const Manifest& manifest);
std::string SerializeIndex(const Index& index);

}  // namespace gantry::oci
