#pragma once
// Base64 (RFC 4648, standard alphabet, padding optional, whitespace ignored). Thread-safe.

#include <optional>
#include <string>
#include <string_view>

namespace gantry {

std::optional<std::string> Base64Decode(std::string_view in);
std::string Base64Encode(std::string_view in);

}  // namespace gantry
