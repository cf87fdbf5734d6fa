#pragma once
// Private to gantry::render: RenderPlain, also reporting the bytes it read (for the cache).

#include <filesystem>
#include <string_view>
#include <vector>

#include "render/render.h"

namespace gantry::render::internal {

struct PlainResult {
  std::vector<Manifest> manifests;
  size_t bytes = 0;  // of the files read
};
// Documents are named `name_prefix` + their path relative to root (in sources and errors).
Result<PlainResult> ReadPlain(const std::filesystem::path& root, const Limits& limits,
                              std::string_view name_prefix);

// True for names the plain renderer reads: *.yaml, *.yml, *.json.
bool IsManifestName(std::string_view name);

// Parses one manifest file's text (JSON when `name` ends in .json, else a YAML stream) and appends
// its objects (List items expanded, each validated) to `out`.
Status AppendFile(std::string_view text, const std::string& name, const Limits& limits, std::vector<Manifest>& out);

}  // namespace gantry::render::internal
