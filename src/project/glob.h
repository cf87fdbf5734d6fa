#pragma once
// Globs of Projects: the patterns in sourceRepos, destinations, releases, credentials, resource
// lists and sync windows. Pure; thread-safe.
//
//   *      any run of characters except '/'; a pattern that is exactly "*" matches everything,
//          '/' included (so `server: "*"` matches https://kubernetes.default.svc)
//   **     any run of characters, '/' included; "**/" also matches no directory at all and
//          a trailing "/**" also matches the directory itself ("apps/**" matches "apps")
//   ?      one character other than '/'
//   [abc] [a-z] [!a-z] [^a-z]   one character of (or not of) a class
//   \c     the character c itself
// Everything else matches itself. Matching is O(|pattern| * |text|) whatever the pattern.

#include <string_view>

#include "base/status.h"

namespace gantry::project {

// OK, or InvalidArgument saying what is wrong with `pattern` (empty, an unterminated or empty
// class, a trailing backslash). The message does not name the field: the caller prefixes it.
Status ValidateGlob(std::string_view pattern);

// Whether `pattern` (valid per ValidateGlob) matches all of `text`.
bool GlobMatch(std::string_view pattern, std::string_view text);

// Whether `pattern` has any of * ? [ \ (a pattern without them matches only itself).
bool HasGlobChars(std::string_view pattern);

// Whether some string could match both patterns: exact for two literals and for a literal and a
// glob; any two globs are taken to intersect (conservative, as the window overlap rule asks).
bool GlobsIntersect(std::string_view a, std::string_view b);

}  // namespace gantry::project
