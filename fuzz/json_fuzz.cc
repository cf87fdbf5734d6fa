// Fuzzes ParseJson: any input must parse or fail cleanly, and every parsed value must survive
// ToJson → ParseJson and ToYaml → ParseYaml unchanged.

#include <cstdint>
#include <string>

#include "fuzz/fuzz.h"
#include "value/value.h"

using gantry::fuzz::Fail;
using gantry::value::Value;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto v = gantry::value::ParseJson(std::string_view(reinterpret_cast<const char*>(data), size),
                                    "fuzz.json");
  if (!v.ok()) return 0;
  std::string json = gantry::value::ToJson(*v);
  auto again = gantry::value::ParseJson(json);
  if (!again.ok()) Fail("ToJson output does not parse", again.status().ToString() + "\n" + json);
  if (!(*again == *v)) Fail("ToJson round trip differs", json);
  std::string yaml = gantry::value::ToYaml(*v);
  auto docs = gantry::value::ParseYaml(yaml);
  if (!docs.ok()) Fail("ToYaml output does not parse", docs.status().ToString() + "\n" + yaml);
  Value back = docs->empty() ? Value() : (*docs)[0];
  if (!(back == *v)) Fail("ToYaml round trip differs", yaml);
  return 0;
}
