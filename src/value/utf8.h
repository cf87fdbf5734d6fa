#pragma once
// UTF-8 validity, apart from value.h so that its few users do not make every includer of value.h
// rebuild when it changes.

#include <string_view>

namespace gantry::value {

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
// what a YAML stream must be, so a key or value that is not can never be found in or written to one.
bool IsValidUtf8(std::string_view text);

}  // namespace gantry::value
