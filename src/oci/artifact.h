#pragma once
// OCI artifacts holding a directory of manifests: what Flux's OCIRepository and `flux push
// artifact` / `flux pull artifact`, and Argo CD 3.1's oci:// sources, read and write.
//
// Format (fluxcd/pkg/oci): an OCI image manifest whose config is the blob "{}" of media type
// application/vnd.cncf.flux.config.v1+json and whose one layer is a tar+gzip of the directory, of
// media type application/vnd.cncf.flux.content.v1.tar+gzip (or, for Argo CD, whose repo-server
// accepts the plain OCI layer type by default, application/vnd.oci.image.layer.v1.tar+gzip).
// Manifest annotations org.opencontainers.image.source / revision / created say where it came from.
//
// Building is reproducible: the same directory (names, contents, permission bits) and options give
// the same digest, on any machine (oci::WriteLayer: sorted entries, mtime 0, owners 0:0, gzip
// without name or time). `.git` directories are left out, and the patterns of a `.sourceignore`
// file at the top of the directory (Flux's ignore file; a subset of .gitignore, see
// SourceIgnorePatterns). Symlinks, devices and fifos are refused, naming the path (flux skips
// them silently; a manifest that silently vanishes is worse than an error).
//
// Pulling resolves a tag to the manifest digest (one HEAD), fetches the manifest and its one
// layer, verifies both against their digests, and extracts the layer with oci::ExtractLayer (never
// outside the directory; limits on entries and bytes) into a cache directory named by the
// manifest digest. Extraction goes into a temp directory renamed into place when complete, so a
// crash never leaves a half directory that a later pull trusts (the next pull removes temp
// directories over an hour old). Old digests stay in the cache: nothing removes them yet.
//
// Thread-safety: free functions; concurrent pulls of one digest into one cache are safe (the
// first rename wins, the others use its directory).

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "oci/build.h"
#include "oci/layout.h"
#include "oci/oci.h"
#include "oci/registry.h"

namespace gantry::oci {

namespace media {
inline constexpr std::string_view kFluxConfig = "application/vnd.cncf.flux.config.v1+json";
inline constexpr std::string_view kFluxContent = "application/vnd.cncf.flux.content.v1.tar+gzip";
}  // namespace media

inline constexpr std::string_view kSourceAnnotation = "org.opencontainers.image.source";
inline constexpr std::string_view kRevisionAnnotation = "org.opencontainers.image.revision";
inline constexpr std::string_view kCreatedAnnotation = "org.opencontainers.image.created";

// The layer media types an artifact may have, in the order error messages list them.
std::vector<std::string_view> ArtifactLayerTypes();

struct ArtifactOptions {
  std::string source_url;  // org.opencontainers.image.source ("" : none)
  std::string revision;    // org.opencontainers.image.revision ("" : none)
  std::string created;     // org.opencontainers.image.created, RFC 3339 ("" : none, so digests repeat)
  std::map<std::string, std::string> annotations;  // more manifest annotations
  std::string layer_media_type = std::string(media::kFluxContent);  // one of ArtifactLayerTypes()
  std::vector<std::string> excludes;  // more patterns, as LayerSpec::excludes
};

// The LayerSpec::excludes of a `.sourceignore` file's text: blank lines and '#' comments are
// skipped; "name" matches at any depth, "/name" and "a/b" from the top, a trailing '/' is dropped
// (the pattern then matches files of that name too), "**/" at the start means any depth.
// InvalidArgument naming the line for what is not supported: negation ('!').
Result<std::vector<std::string>> SourceIgnorePatterns(std::string_view text);

// Writes the artifact of `dir` into `layout` and tags it `ref_name`; returns the manifest's
// descriptor. InvalidArgument for a bad option, a symlink, device or fifo in `dir` (naming it) or a
// bad .sourceignore line; NotFound when `dir` is not there; FailedPrecondition when it is not a
// directory.
Result<Descriptor> BuildArtifact(const std::filesystem::path& dir, const ArtifactOptions& options,
                                 const Layout& layout, std::string_view ref_name);

// Builds the artifact of `dir` in a temp layout and pushes it to `dest` (dest.tag; a digest is
// refused); returns the manifest digest. Errors as BuildArtifact's and PushImage's.
Result<std::string> PushArtifact(Registry& registry, const std::filesystem::path& dir, const Reference& dest,
                                 const ArtifactOptions& options);

// The reference of an oci:// source: `repo_url` is oci://host[:port]/repository (no tag or digest;
// InvalidArgument saying to use `revision`), `revision` a tag, or a digest (sha256:...); "" and
// "HEAD" (an Application's default) mean "latest", as Flux's OCIRepository does.
Result<Reference> ArtifactReference(std::string_view repo_url, std::string_view revision);

// The manifest digest `ref` names: its digest when it has one (no request), else the registry's
// answer to a HEAD (a GET when the registry gives no digest). NotFound when the tag is absent.
Result<std::string> ResolveArtifact(Registry& registry, const Reference& ref);

// OK when `manifest` is an artifact Gantry can read: an image manifest (not an index) with exactly
// one layer of a type in ArtifactLayerTypes(). InvalidArgument otherwise, saying what it has and
// listing what is accepted.
Status CheckArtifactManifest(const Manifest& manifest);

// Limits of one artifact's content (ExtractLayer's, smaller by default: manifests, not images).
inline ExtractLimits DefaultArtifactLimits() {
  return {.max_file_bytes = 64ull << 20, .max_total_bytes = 512ull << 20, .max_entries = 100'000};
}

// The directory holding the content of artifact `digest` of `repo` (only registry and repository
// are used): cache_dir/<hex of digest> when a previous pull completed it, else fetched, verified and
// extracted there first. Errors name the reference: NotFound for a missing manifest or layer blob,
// InvalidArgument for a manifest CheckArtifactManifest refuses or that does not parse, DataLoss for
// bytes that do not match their digest, ResourceExhausted over `limits`, PermissionDenied /
// InvalidArgument for entries ExtractLayer refuses; nothing is left in cache_dir on error.
Result<std::filesystem::path> PullArtifact(Registry& registry, const Reference& repo, std::string_view digest,
                                           const std::filesystem::path& cache_dir,
                                           const ExtractLimits& limits = DefaultArtifactLimits());

}  // namespace gantry::oci
