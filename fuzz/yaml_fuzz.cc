// Fuzzes ParseYaml: any input must parse or fail cleanly, and every parsed document must survive
// ToYaml → ParseYaml unchanged and give JSON that ParseJson accepts.

#include <cstdint>
#include <string>

#include "fuzz/fuzz.h"
#include "value/value.h"

using gantry::fuzz::Fail;
using gantry::value::ParseOptions;
using gantry::value::Value;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ParseOptions options;
  options.max_alias_nodes = 20000;  // keep each run fast; the limit itself is what is tested
  auto docs = gantry::value::ParseYaml(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml", options);
  if (!docs.ok()) return 0;
  ParseOptions roomy;
  roomy.max_alias_nodes = 1 << 30;
  for (const Value& doc : *docs) {
    std::string yaml = gantry::value::ToYaml(doc);
    auto again = gantry::value::ParseYaml(yaml, "again.yaml", roomy);
    if (!again.ok()) Fail("ToYaml output does not parse", again.status().ToString() + "\n" + yaml);
    if (again->size() != 1 || !((*again)[0] == doc)) Fail("ToYaml round trip differs", yaml);
    std::string json = gantry::value::ToJson(doc);
    auto parsed = gantry::value::ParseJson(json, "again.json", roomy);
    if (!parsed.ok()) Fail("ToJson output does not parse", parsed.status().ToString() + "\n" + json);
  }
  return 0;
}
