#pragma once
// Where a parsed node came from, for messages. Apart from value.h so that its users alone rebuild
// when it changes.

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "value/value.h"

namespace gantry::value {

// "file:line:column" of `v`, or `otherwise` for a node without a file (built in code, or parsed
// without a file name).
inline std::string PositionOf(const Value& v, std::string_view otherwise = {}) {
  const Mark m = v.mark();
  if (m.file.empty()) return std::string(otherwise);
  return fmt::format("{}:{}:{}", m.file, m.line, m.column);
}

// "file:line:column: " to start a message with, or "" for a node without a file.
inline std::string PositionPrefix(const Value& v) {
  std::string where = PositionOf(v);
  if (!where.empty()) where += ": ";
  return where;
}

}  // namespace gantry::value
