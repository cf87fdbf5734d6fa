#pragma once
// Durations written by people: in flags ("--timeout 5m"), pipeline files ("timeout: 90s") and
// delivery config ("soak: 1h30m"). Pure; thread-safe.

#include <chrono>
#include <string_view>

#include "base/status.h"

namespace gantry {

// Parses a Go-style duration: one or more <number><unit> with unit ms, s, m or h ("250ms", "90s",
// "1h30m", "1.5h"; fractions of a millisecond are dropped), with an optional leading '+', or a
// bare number of seconds ("90"). The total must fit Go's time.Duration (at most 2562047h, ~292
// years), so adding it to a clock never overflows. InvalidArgument naming the text for anything
// else: empty, negative, an unknown unit ("1d", "5us"), a missing unit ("1h30"), spaces, exponents,
// or too large.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace gantry
