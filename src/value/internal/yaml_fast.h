#pragma once
// Gantry's own YAML scanner and parser for the value model (yaml_fast.cc) and the libyaml path it
// falls back to (yaml_parser.cc). Private to src/value.

#include <string_view>
#include <vector>

#include "value/value.h"

namespace gantry::value::internal {

// Parses the block and flow YAML that manifests use straight from the bytes, in one pass, into
// the same Values and marks as ParseYamlLibyaml. Fails with FailedPrecondition "left to libyaml:
// <why>" at the first construct it does not take and on any error (the caller then runs
// ParseYamlLibyaml, whose errors are the reported ones).
Result<std::vector<Value>> ParseYamlFast(std::string_view text, std::string_view filename,
                                         const ParseOptions& options);

// ParseYaml through libyaml's event parser.
Result<std::vector<Value>> ParseYamlLibyaml(std::string_view text, std::string_view filename,
                                            const ParseOptions& options);

}  // namespace gantry::value::internal
