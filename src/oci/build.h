#pragma once
// Daemonless image build and layer extraction.
//
// BuildImage makes an image from a base image in a Layout (or from scratch) plus one new layer per
// LayerSpec, and tags it in an output Layout. Layers are reproducible: the same files (content,
// modes, names, link structure) and options give the same bytes, whatever the files' mtimes,
// owners, the host path they were read from, or the machine and its number of cores (for one
// libdeflate / libzstd version):
//   - entries sorted by path, parent directories emitted (mode 0755) before their children;
//   - every mtime, and the config's `created` and history dates, set to options.timestamp
//     (seconds since the epoch; default 0, the SOURCE_DATE_EPOCH convention);
//   - owners numeric (options.uid/gid, default 0:0), uname/gname empty; permission bits kept;
//   - symlinks stored as links (never followed); a file with several names in one layer is stored
//     once and then as hard links to the first name in sorted order;
//   - names over 100 bytes in PAX headers with a fixed name; no PAX times, no host paths;
//   - gzip: one member per 1 MiB of tar, by libdeflate at a fixed level (6), with no name and
//     mtime 0; or zstd (level 3) with libzstd's workers. Compressed on several threads, with the
//     same bytes whatever their number.
// Each layer is read once: the tar stream is hashed (the diff_id) and compressed, the compressed
// bytes hashed (the digest) and written to the blob, in one pass with bounded memory.
//
// The config is the base's config JSON, edited: unknown fields are kept; diff_ids and history
// entries appended; entrypoint, cmd, workdir, user, labels, exposed ports set; env merged by key.
// The manifest is always an OCI manifest; Docker media types of base layers are mapped to their
// OCI equivalents (digests unchanged). A base that is an index gives, without options.platform, a
// new index with the new layers on every platform's image; with it, the one image for that platform.
//
// ExtractLayer applies one layer to a directory and never writes outside it; see its comment.
//
// Thread-safety: free functions; concurrent builds into one output Layout may lose a tag (see layout.h).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "oci/layout.h"
#include "oci/oci.h"

namespace gantry::oci {

struct LayerSpec {
  // A directory (its contents go under destination) or a file (it becomes destination; when
  // destination ends in '/', destination + its name) on this machine. A symlink given here is
  // stored as a symlink.
  std::filesystem::path source;
  // Absolute path in the image: "/app", "/usr/local/bin/tool", "/". No ".." components.
  std::string destination = "/";
  // Glob patterns (fnmatch, '*' also matches '/') over the path relative to source, e.g.
  // "node_modules", "*.log", "build/*"; a pattern without '/' also matches any base name, one
  // that starts with '/' only the path from source ("/vendor": vendor at the top, not a/vendor).
  // An excluded directory is skipped with everything under it.
  std::vector<std::string> excludes;
  // A symlink in source is InvalidArgument naming it, instead of being stored as a link (artifacts
  // of manifests, whose readers may not follow links).
  bool refuse_symlinks = false;
};

enum class Compression { kGzip, kZstd };

struct BuildOptions {
  // The base image: the image or index tagged base_ref in *base (base_ref empty: its only image).
  // nullptr: scratch.
  const Layout* base = nullptr;
  std::string base_ref;
  // From an index base: the one platform to build (os/arch and, when given, variant must match).
  // From scratch: the image's platform (default linux and this machine's architecture).
  std::optional<Platform> platform;

  std::vector<LayerSpec> layers;  // one new layer each, in order

  std::optional<std::vector<std::string>> entrypoint;  // set: replaces the base's, and clears its cmd
  std::optional<std::vector<std::string>> cmd;
  std::vector<std::string> env;     // "KEY=VALUE": replaces KEY in the base's env, else appended
  std::optional<std::string> workdir;
  std::optional<std::string> user;
  std::vector<std::string> expose;  // "8080" (tcp) or "53/udp"
  std::map<std::string, std::string> labels;
  std::string source_url;  // org.opencontainers.image.source label and manifest annotation
  std::string revision;    // org.opencontainers.image.revision label and manifest annotation

  int64_t timestamp = 0;  // seconds since the epoch: every mtime, config created, history
  uint32_t uid = 0;
  uint32_t gid = 0;
  Compression compression = Compression::kGzip;
  // Threads that compress a layer; 0: std::thread::hardware_concurrency(), at most 8. The layer's
  // bytes are the same for any value.
  unsigned compression_threads = 0;
};

struct BuildResult {
  Descriptor image;                 // what was tagged: the manifest, or the index of several
  std::vector<Descriptor> manifests;  // the image manifest of each platform built
  std::vector<Descriptor> layers;   // the new layers (shared by every platform)
};

// Builds the image and tags it ref_name in `output` (which may be the base's layout; else the base
// layers are copied into it). Errors: InvalidArgument for a bad option (destination, env, port);
// NotFound for a missing source file, base tag or base blob, or a platform the base index lacks
// (the message lists those it has); FailedPrecondition for a base whose config and manifest
// disagree; InvalidArgument for a device, fifo or socket in a source (with its path); I/O errors
// from the OS with the path.
Result<BuildResult> BuildImage(const BuildOptions& options, const Layout& output, std::string_view ref_name);

// Writes one layer of `spec` into `output`: its descriptor (digest and size of the compressed
// blob) and its diff_id (digest of the uncompressed tar).
struct LayerResult {
  Descriptor descriptor;
  std::string diff_id;
};
Result<LayerResult> WriteLayer(const LayerSpec& spec, const BuildOptions& options, const Layout& output);

// For ExtractLayer, limits of one layer; for UnpackImage, of the whole image (all its layers).
struct ExtractLimits {
  uint64_t max_file_bytes = 4ull << 30;    // one regular file
  uint64_t max_total_bytes = 16ull << 30;  // the uncompressed tar streams (bounds bombs)
  uint64_t max_entries = 1'000'000;
};

struct ExtractStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;         // of regular files written
  uint64_t skipped = 0;       // device and fifo entries, which are never created
  uint64_t tar_bytes = 0;     // of uncompressed tar stream read
};

// Applies the layer in `layer_file` (media type: tar, tar+gzip or tar+zstd, OCI or Docker) to
// the existing directory `dest`, the way a container runtime does: later entries replace earlier
// ones, OCI whiteouts (.wh.NAME removes NAME; .wh..wh..opq empties its directory of what earlier
// layers put there) are applied and never created. Nothing is ever written outside `dest`:
//   - an entry whose path is absolute or has a ".." component: InvalidArgument;
//   - a path through a symlink that leads outside `dest`, or through an absolute symlink (its
//     meaning is the image's root, not this machine's): PermissionDenied;
//   - a symlink whose relative target climbs above `dest`: PermissionDenied; absolute symlink
//     targets are kept as they are (they name paths in the image) and are never followed here;
//   - a hard link whose target is absolute, climbs out, or is not a file already extracted:
//     PermissionDenied / InvalidArgument;
//   - device and fifo entries are skipped (counted in `skipped`);
//   - over a limit: ResourceExhausted.
// Modes are applied without setuid/setgid; owners are not changed; mtimes are set.
// Errors name the entry ("etc/passwd: ..."). On error, what was extracted so far stays in `dest`.
Result<ExtractStats> ExtractLayer(const std::filesystem::path& layer_file, std::string_view media_type,
                                  const std::filesystem::path& dest, const ExtractLimits& limits = {});

// Applies every layer of the image tagged ref_name in `layout` to `dest` (created if absent), in
// order. For an index, `platform` picks the image (NotFound listing the platforms otherwise; with
// one image only, it is used). Limits apply to the image: entries and uncompressed bytes are
// summed over its layers (ResourceExhausted naming the layer that went over).
Result<ExtractStats> UnpackImage(const Layout& layout, std::string_view ref_name, const std::filesystem::path& dest,
                                 const std::optional<Platform>& platform = std::nullopt,
                                 const ExtractLimits& limits = {});

// The manifest of the image tagged ref_name in `layout`: the manifest itself, or for an index the
// entry for `platform` (with one image only, that one). NotFound listing the platforms the index
// has when none matches; the layout's errors.
Result<Manifest> ImageManifest(const Layout& layout, std::string_view ref_name,
                               const std::optional<Platform>& platform = std::nullopt);

// Reads the next bytes of a stream into buf (at most n); 0 at its end.
using ReadFn = std::function<Result<size_t>(char* buf, size_t n)>;

// One path of an image's file system, as WalkImage reports it.
struct ImageEntry {
  std::string path;      // "usr/bin/env": no leading '/', no trailing '/'
  char type = '0';       // as in tar: '0' file, '1' hard link, '2' symlink, '5' directory, '3'/'4'/'6' devices, fifo
  uint32_t mode = 0;     // permission bits
  uint64_t size = 0;     // of a regular file's data
  std::string linkname;  // a symlink's target; a hard link's target path in the same layer
  size_t layer = 0;      // the layer it comes from (0: the lowest)
};
// Called once per entry; `read` streams a regular file's data (nothing for other types).
using WalkFn = std::function<Status(const ImageEntry& entry, const ReadFn& read)>;

// Walks the file system the image tagged ref_name in `layout` unpacks to (UnpackImage's result),
// without writing it anywhere: the layers are read top (last) to bottom, and an entry is reported
// only when no upper layer replaced it, removed it with a whiteout (.wh.NAME, or .wh..wh..opq for
// what lower layers put in a directory) or put a non-directory at one of its parents. Each path is
// reported once, from the layer that wins; whiteouts themselves are never reported. Memory: the
// set of paths seen, never file data. Limits as UnpackImage's (summed over the layers); an entry
// whose path is absolute or has ".." is InvalidArgument naming it; fn's error stops the walk.
Result<ExtractStats> WalkImage(const Layout& layout, std::string_view ref_name, const std::optional<Platform>& platform,
                               const WalkFn& fn, const ExtractLimits& limits = {});

}  // namespace gantry::oci
