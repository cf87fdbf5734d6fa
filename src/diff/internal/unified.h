#pragma once
// Line diff (Myers' O(ND) algorithm) in unified format. Private to src/diff.

#include <string>
#include <string_view>

namespace gantry::diff::internal {

// `diff -u` of two texts split at '\n': "--- old_name", "+++ new_name", then @@ hunks with
// `context` lines of context. Empty when the texts are equal. When more than kMaxEdits lines
// change, the changed middle (after the common head and tail) is one delete-all/insert-all hunk.
// With color, '-' lines are red, '+' lines green, @@ lines cyan and the headers bold.
std::string UnifiedDiff(std::string_view old_text, std::string_view new_text,
                        std::string_view old_name, std::string_view new_name, int context,
                        bool color);

inline constexpr int kMaxEdits = 1000;

}  // namespace gantry::diff::internal
