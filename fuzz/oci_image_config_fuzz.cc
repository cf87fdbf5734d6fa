// Fuzzes the image config JSON of a base image, which comes from whatever registry the base was
// pulled from: BuildImage over a base whose config blob is the input (with as many layers as its
// rootfs.diff_ids names, so the build reaches the config), and options that edit every field a
// build touches (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Labels, rootfs, history).
// Any input must build or fail cleanly; a built image's config must parse, keep the base's
// diff_ids and hold the edits.

#include <cstdint>
#include <filesystem>
#include <string>

#include "fuzz/fuzz.h"
#include "oci/build.h"
#include "oci/layout.h"
#include "value/value.h"

using namespace gantry;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view config = fuzz::Text(data, size);
  const fs::path dir = fuzz::ScratchDir() / "layout";
  std::error_code ec;
  fs::remove_all(dir, ec);
  auto layout = oci::Layout::Open(dir, /*create=*/true);
  if (!layout.ok()) fuzz::Fail("open the layout", layout.status().ToString());

  // The base: a manifest naming the input as its config and one small layer per diff_id.
  size_t diff_ids = 0;
  if (auto doc = value::ParseJson(config, "config"); doc.ok()) {
    const value::Value* ids = doc->Find({"rootfs", "diff_ids"});
    if (ids != nullptr && ids->IsSeq()) diff_ids = ids->size();
  }
  if (diff_ids > 64) return 0;
  auto config_desc = layout->WriteBlob(config, oci::media::kOciConfig);
  auto layer_desc = layout->WriteBlob("layer", oci::media::kOciLayer);
  if (!config_desc.ok() || !layer_desc.ok()) fuzz::Fail("write the base blobs", "");
  oci::Manifest base{.media_type = std::string(oci::media::kOciManifest), .config = *config_desc};
  base.layers.assign(diff_ids, *layer_desc);
  auto base_desc = layout->WriteBlob(oci::SerializeManifest(base), oci::media::kOciManifest);
  if (!base_desc.ok() || !layout->Tag(*base_desc, "base").ok()) fuzz::Fail("tag the base", "");

  oci::BuildOptions options{.base = &*layout, .base_ref = "base"};
  options.entrypoint = std::vector<std::string>{"/app/server", "--port=8080"};
  options.env = {"PATH=/usr/local/bin:/usr/bin", "GANTRY_FUZZ=1"};
  options.workdir = "/app";
  options.user = "65532:65532";
  options.expose = {"8080", "53/udp"};
  options.labels = {{"org.opencontainers.image.title", "web"}};
  options.source_url = "https://git.example.com/team/web";
  options.timestamp = 1830297600;
  auto built = oci::BuildImage(options, *layout, "out");
  if (!built.ok()) return 0;

  auto manifest_bytes = layout->ReadBlob(built->image.digest);
  auto manifest = manifest_bytes.ok() ? oci::ParseManifest(*manifest_bytes) : manifest_bytes.status();
  if (!manifest.ok()) fuzz::Fail("the built manifest does not parse", manifest.status().ToString());
  auto out_bytes = layout->ReadBlob(manifest->config.digest);
  auto out = out_bytes.ok() ? value::ParseJson(*out_bytes, "built config") : out_bytes.status();
  if (!out.ok()) fuzz::Fail("the built config does not parse", out.status().ToString());
  const value::Value* ids = out->Find({"rootfs", "diff_ids"});
  if (ids == nullptr || !ids->IsSeq() || ids->size() != diff_ids || manifest->layers.size() != diff_ids) {
    fuzz::Fail("the built image lost or gained layers", *out_bytes);
  }
  if (value::StringAt(&*out, {"config", "WorkingDir"}) != "/app" || value::StringAt(&*out, {"config", "User"}) != "65532:65532") {
    fuzz::Fail("the built config misses an edit", *out_bytes);
  }
  return 0;
}
