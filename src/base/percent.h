#pragma once
// Percent-encoding (RFC 3986 §2.1): every byte but the unreserved characters (letters, digits,
// - . _ ~) written as %XX with upper-case hex. Safe as a URL path segment, a query value and a
// package URL component ("a/b c" → "a%2Fb%20c"). And its decoding, strict for a path segment,
// lenient for a query string. Thread-safe.

#include <string>
#include <string_view>

#include "base/status.h"

namespace gantry {

std::string PercentEncode(std::string_view text);

// A path segment decoded ("https%3A%2F%2Fgit.example" → "https://git.example"); InvalidArgument
// naming the text when a '%' is not followed by two hex digits. A '+' stays a '+'.
Result<std::string> PercentDecode(std::string_view text);

// A query string's name or value decoded as browsers and curl encode forms
// (application/x-www-form-urlencoded): '+' is a space, %XX a byte, and a '%' not followed by two
// hex digits is kept as it is (a query is never refused for it).
std::string FormDecode(std::string_view text);

}  // namespace gantry
