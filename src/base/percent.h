#pragma once
// Percent-encoding (RFC 3986 §2.1): every byte but the unreserved characters (letters, digits,
// - . _ ~) written as %XX with upper-case hex. Safe as a URL path segment, a query value and a
// package URL component ("a/b c" → "a%2Fb%20c"). Thread-safe.

#include <string>
#include <string_view>

namespace gantry {

std::string PercentEncode(std::string_view text);

}  // namespace gantry
