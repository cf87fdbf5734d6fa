#include "base/duration.h"

#include <cstdint>
#include <limits>

namespace gantry {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  // What fits in int64 nanoseconds (Go's time.Duration and std::chrono's clocks).
  constexpr int64_t kMaxMs = std::numeric_limits<int64_t>::max() / 1'000'000;
  auto not_a_duration = [&] {
    return InvalidArgumentError("{:?} is not a duration (such as 90s, 10m, 1h30m, 250ms)", text);
  };
  auto too_large = [&] { return InvalidArgumentError("duration {:?} is too large (at most 2562047h)", text); };
  std::string_view s = text;
  if (s.starts_with('+')) s.remove_prefix(1);
  if (s.empty()) return not_a_duration();
  int64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    // <whole>[.<fraction>]: at least one digit on either side of the point, as in Go.
    size_t begin = i;
    int64_t whole = 0;
    for (; i < s.size() && IsDigit(s[i]); ++i) {
      if (whole > (kMaxMs - (s[i] - '0')) / 10) return too_large();
      whole = whole * 10 + (s[i] - '0');
    }
    bool has_whole = i > begin;
    int64_t fraction = 0, scale = 1;  // fraction / scale, 12 digits kept: far below a millisecond
    bool has_fraction = false;
    if (i < s.size() && s[i] == '.') {
      for (++i; i < s.size() && IsDigit(s[i]); ++i, has_fraction = true) {
        if (scale < 1'000'000'000'000) fraction = fraction * 10 + (s[i] - '0'), scale *= 10;
      }
    }
    if (!has_whole && !has_fraction) return not_a_duration();
    size_t unit_begin = i;
    while (i < s.size() && !IsDigit(s[i]) && s[i] != '.') ++i;
    std::string_view unit = s.substr(unit_begin, i - unit_begin);
    int64_t mult = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000 : 0;
    if (unit.empty() && begin == 0 && i == s.size()) mult = 1000;  // a bare number of seconds
    if (mult == 0) {
      if (unit.empty()) {
        return InvalidArgumentError("duration {:?}: {} has no unit (ms, s, m or h)", text,
                                    s.substr(begin, i - begin));
      }
      return InvalidArgumentError("duration {:?}: unknown unit {:?} (use ms, s, m or h)", text, unit);
    }
    if (whole > (kMaxMs - total) / mult) return too_large();
    total += whole * mult;
    int64_t part = fraction * mult / scale;  // < 1e12 * 3.6e6: no overflow
    if (part > kMaxMs - total) return too_large();
    total += part;
  }
  return std::chrono::milliseconds(total);
}

}  // namespace gantry
