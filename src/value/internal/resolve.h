#pragma once
// Scalar resolution shared by the YAML parser and the writers. Private to src/value.

#include <cstdint>
#include <string_view>

#include "value/value.h"
#include "value/internal/node.h"

namespace gantry::value::internal {

// What an untagged plain scalar means (see value.h for the rules).
struct Resolved {
  Value::Type type = Value::Type::kString;
  bool b = false;
  int64_t i = 0;
  double d = 0;
};
Resolved ResolvePlain(std::string_view text);
// The Value of a resolution; with an arena, allocated there and null as a node of its own (so it
// can carry a Mark).
Value ToValue(const Resolved& r, std::string_view text, SourceFile* arena = nullptr);
// The same as a new node in `arena` (null included).
Node* NewNode(const Resolved& r, std::string_view text, SourceFile* arena);

// Shortest text of `d` that reads back as the same double (always with '.', 'e', "inf" or "nan").
// yaml selects .inf/.nan spelling; otherwise "inf"/"nan" (callers map them).
void AppendDouble(std::string& out, double d, bool yaml);

// Decodes the UTF-8 character at s[i] into *cp; returns its length, or 0 when it is invalid
// (overlong, surrogate, beyond U+10FFFF, truncated).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp);

}  // namespace gantry::value::internal
