#pragma once
// An OCI image layout on disk (image-spec layout.md): a directory with `oci-layout`
// ({"imageLayoutVersion":"1.0.0"}), `index.json` (an Index of the images it holds, each tagged by
// the annotation org.opencontainers.image.ref.name) and `blobs/sha256/<hex>`.
//
// `gantry image build` writes one; `gantry image push` sends one to a registry; a base image pulled
// from a registry is cached as one. skopeo and umoci read and write the same format
// (`skopeo copy oci:DIR:TAG docker://…`), which is how the benchmarks compare like with like.
//
// Blobs are content-addressed and written atomically (a temp file in the blobs directory, digest
// checked, then rename), so concurrent writers of the same blob are harmless and a crash never
// leaves a blob whose bytes do not match its name. index.json is replaced atomically too, but two
// processes tagging in one layout at once may lose one tag: a layout has one writer at a time.
//
// Thread-safety: a Layout may be used from several threads for blobs; index.json operations need
// external serialisation.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "oci/oci.h"

namespace gantry::oci {

inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";

// Streams one blob into a layout. Destroying it without Commit() removes the partial file.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  virtual Status Write(std::string_view chunk) = 0;
  // Bytes written so far.
  virtual uint64_t size() const = 0;
  // Finishes the blob and returns its descriptor with `media_type`. When `expected_digest` is
  // given and differs from what was written: DataLoss, and nothing is kept.
  virtual Result<Descriptor> Commit(std::string_view media_type,
                                    std::string_view expected_digest = {}) = 0;
};

class Layout {
 public:
  // Opens the layout at `dir`. With `create`, an absent or empty directory becomes an empty layout;
  // without it, NotFound. FailedPrecondition when `dir` exists but is not a layout (no oci-layout
  // file, or an imageLayoutVersion other than 1.0.0).
  static Result<Layout> Open(const std::filesystem::path& dir, bool create);

  const std::filesystem::path& dir() const { return dir_; }

  // blobs/sha256/<hex>; the digest must be valid (checked: a programmer error otherwise).
  std::filesystem::path BlobPath(std::string_view digest) const;
  bool HasBlob(std::string_view digest) const;

  // Writes `bytes` as a blob (a no-op when it is there already) and returns its descriptor.
  Result<Descriptor> WriteBlob(std::string_view bytes, std::string_view media_type) const;
  // A writer for a large blob.
  Result<std::unique_ptr<BlobWriter>> NewBlob() const;
  // The bytes of a blob. NotFound when absent; ResourceExhausted when larger than `max_bytes`;
  // DataLoss when its content does not match its digest.
  Result<std::string> ReadBlob(std::string_view digest, uint64_t max_bytes = 64ull << 20) const;

  Result<Index> ReadIndex() const;
  Status WriteIndex(const Index& index) const;

  // Puts `manifest` (a manifest or index descriptor) into index.json under `ref_name`, replacing
  // the entry that had that name.
  Status Tag(Descriptor manifest, std::string_view ref_name) const;
  // The entry tagged `ref_name`; with an empty name, the only entry (FailedPrecondition when there
  // are several). NotFound names the tags that exist.
  Result<Descriptor> Find(std::string_view ref_name) const;

 private:
  explicit Layout(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
};

}  // namespace gantry::oci
