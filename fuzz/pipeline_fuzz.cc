// Fuzzes ParsePipeline: a pipeline file comes from the repository being built, which may be a
// fork's. Any input must parse or fail cleanly.

#include <cstdint>
#include <string_view>

#include "ci/pipeline.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)gantry::ci::ParsePipeline(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
