#pragma once
// ASCII helpers that do not depend on the C locale: for protocol text (header names, URL schemes
// and hosts, keywords), where a locale must not change the answer.

#include <string>
#include <string_view>

namespace gantry {

// `s` with A-Z turned into a-z; every other byte (UTF-8 included) unchanged.
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Whether `s` holds a CR or LF: text that would end or split a header line.
inline bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace gantry
