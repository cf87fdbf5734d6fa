// Fuzzes ParseQuantity, which reads the Kubernetes quantities (cpu: 500m, memory: 1Gi) of the
// manifests Gantry compares with the cluster: any input must parse or fail cleanly, and a parsed
// quantity must survive ToString → ParseQuantity with the same value.

#include <cstdint>
#include <string>

#include "diff/diff.h"
#include "fuzz/fuzz.h"

using namespace gantry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto q = diff::ParseQuantity(fuzz::Text(data, size));
  if (!q.ok()) return 0;
  if (q->nanos <= -1'000'000'000 || q->nanos >= 1'000'000'000 || (q->units < 0 && q->nanos > 0) ||
      (q->units > 0 && q->nanos < 0)) {
    fuzz::Fail("quantity out of its normal form", q->ToString());
  }
  std::string printed = q->ToString();
  auto again = diff::ParseQuantity(printed);
  if (!again.ok()) fuzz::Fail("Quantity::ToString output does not parse", again.status().ToString());
  if (*again != *q) fuzz::Fail("quantity round trip differs", printed);
  return 0;
}
