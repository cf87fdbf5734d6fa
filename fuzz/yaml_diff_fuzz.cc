// Differential fuzzing of ParseYaml's two paths: Gantry's own scanner (taken by default, falling
// back to libyaml for what it leaves) against libyaml alone. Any input must give the same
// documents with the same marks on every node and key, or the same error.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "value/value.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  gantry::value::ParseOptions options;
  options.max_alias_nodes = 20000;  // keep each run fast
  auto own = gantry::value::ParseYaml(text, "fuzz.yaml", options);
  options.use_libyaml = true;
  auto libyaml = gantry::value::ParseYaml(text, "fuzz.yaml", options);
  std::string diff = gantry::value::DiffParses(own, libyaml);
  if (!diff.empty()) {
    std::fprintf(stderr, "own scanner vs libyaml: %s\n", diff.c_str());
    std::abort();
  }
  return 0;
}
