// Fuzzes what an image layer or a workspace archive holds: tar streams, plain or inside gzip or
// zstd (ExtractLayer with each media type; the first byte of the input picks it), and plain tar
// as a tree copy (ExtractTreeTar). Any input must extract or fail cleanly, within the limits, and
// nothing may ever be created outside the destination directory.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/path.h"
#include "fuzz/fuzz.h"
#include "oci/build.h"
#include "oci/oci.h"
#include "oci/tree_tar.h"

using namespace gantry;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMediaTypes[] = {oci::media::kOciLayer, oci::media::kOciLayerGzip,
                                            oci::media::kOciLayerZstd, oci::media::kDockerLayerGzip};

constexpr oci::ExtractLimits kLimits = {.max_file_bytes = 1 << 20, .max_total_bytes = 8 << 20, .max_entries = 2000};

// scratch/layer holds the input, scratch/box/dest is where it goes; scratch and box must hold
// nothing else afterwards.
void CheckNothingOutside(const fs::path& scratch, const std::string& what) {
  for (const fs::path& dir : {scratch, scratch / "box"}) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      std::string name = e.path().filename().string();
      if (name != "layer" && name != "box" && name != "dest") {
        fuzz::Fail("extraction created something outside its destination", what + ": " + e.path().string());
      }
    }
  }
}

void CheckStats(const Result<oci::ExtractStats>& stats, const std::string& what) {
  if (stats.ok() && stats->entries > kLimits.max_entries) fuzz::Fail("more entries than the limit", what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fs::path& scratch = fuzz::ScratchDir();
  const fs::path dest = scratch / "box" / "dest";
  std::string_view archive = fuzz::Text(data + 1, size - 1);
  std::string_view media_type = kMediaTypes[data[0] % std::size(kMediaTypes)];

  std::error_code ec;
  fs::create_directories(dest, ec);
  if (Status s = WriteFileAtomic(scratch / "layer", archive, 0644, /*sync=*/false); !s.ok()) fuzz::Fail("write the layer", s.ToString());
  CheckStats(oci::ExtractLayer(scratch / "layer", media_type, dest, kLimits), std::string(media_type));
  CheckNothingOutside(scratch, std::string(media_type));
  fs::remove_all(dest, ec);

  // The same bytes as a workspace tar, read in small chunks.
  fs::create_directories(dest, ec);
  std::string_view rest = archive;
  oci::ReadFn read = [&rest](char* buf, size_t n) -> Result<size_t> {
    size_t k = std::min({n, rest.size(), size_t{4096}});
    if (k > 0) std::memcpy(buf, rest.data(), k);
    rest.remove_prefix(k);
    return k;
  };
  CheckStats(oci::ExtractTreeTar(read, dest, kLimits), "tree tar");
  CheckNothingOutside(scratch, "tree tar");
  fs::remove_all(dest, ec);
  return 0;
}
