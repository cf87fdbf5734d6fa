// Fuzzes ParseDuration, which reads the durations of flags, pipeline files and delivery configs:
// any input must parse or fail cleanly, and a parsed duration is never negative nor beyond Go's
// time.Duration (2562047h), so adding it to a clock cannot overflow.

#include <chrono>
#include <cstdint>
#include <string>

#include "base/duration.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto d = gantry::ParseDuration(gantry::fuzz::Text(data, size));
  if (d.ok() && (d->count() < 0 || *d > std::chrono::hours(2562048))) {
    gantry::fuzz::Fail("duration out of range", std::to_string(d->count()) + "ms");
  }
  return 0;
}
