// Kubernetes quantities, exact: the value is computed in nano units in 128-bit arithmetic with
// saturation, rounded up and capped as k8s.io/apimachinery's ParseQuantity does.

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "diff/diff.h"

namespace gantry::diff {
namespace {

__extension__ typedef unsigned __int128 U128;

constexpr uint64_t kNanosPerUnit = 1'000'000'000;
// The apiserver caps quantities at 2^63-1 units.
constexpr U128 kCap = static_cast<U128>(INT64_MAX) * kNanosPerUnit;
// Anything above the cap is saturated to this (well above kCap, far from overflow).
constexpr U128 kSat = static_cast<U128>(1) << 100;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

U128 MulAddSat(U128 a, uint64_t mul, uint64_t add) {
  if (a >= kSat / mul) return kSat;
  return a * mul + add;
}

// Decimal exponent and binary exponent of a suffix; false when unknown.
bool InterpretSuffix(std::string_view s, int64_t* exp10, int* exp2) {
  *exp10 = 0;
  *exp2 = 0;
  if (s.empty()) return true;
  if (s.size() == 1) {
    switch (s[0]) {
      case 'n': *exp10 = -9; return true;
      case 'u': *exp10 = -6; return true;
      case 'm': *exp10 = -3; return true;
      case 'k': *exp10 = 3; return true;
      case 'M': *exp10 = 6; return true;
      case 'G': *exp10 = 9; return true;
      case 'T': *exp10 = 12; return true;
      case 'P': *exp10 = 15; return true;
      case 'E': *exp10 = 18; return true;
      default: return false;
    }
  }
  if (s.size() == 2 && s[1] == 'i') {
    static constexpr std::string_view kBinary = "KMGTPE";
    size_t i = kBinary.find(s[0]);
    if (i == std::string_view::npos) return false;
    *exp2 = static_cast<int>(10 * (i + 1));
    return true;
  }
  if (s[0] != 'e' && s[0] != 'E') return false;
  size_t i = 1;
  bool negative = false;
  if (s[i] == '+' || s[i] == '-') negative = s[i++] == '-';
  if (i == s.size()) return false;
  int64_t e = 0;
  for (; i < s.size(); ++i) {
    if (!IsDigit(s[i])) return false;
    // Beyond ±1e12 every nonzero value is either capped or rounded up to 1n; keep it bounded.
    if (e < 1'000'000'000'000) e = e * 10 + (s[i] - '0');
  }
  *exp10 = negative ? -e : e;
  return true;
}

}  // namespace

std::string Quantity::ToString() const {
  std::string out;
  if (units < 0 || nanos < 0) out += '-';
  uint64_t u = units < 0 ? static_cast<uint64_t>(-(units + 1)) + 1 : static_cast<uint64_t>(units);
  out += std::to_string(u);
  if (nanos != 0) {
    std::string frac = fmt::format("{:09d}", nanos < 0 ? -nanos : nanos);
    frac.erase(frac.find_last_not_of('0') + 1);
    out += '.';
    out += frac;
  }
  return out;
}

Result<Quantity> ParseQuantity(std::string_view text) {
  auto malformed = [&](std::string_view why) {
    return InvalidArgumentError("invalid quantity \"{}\": {}", text, why);
  };
  if (text.empty()) return malformed("empty");
  size_t pos = 0;
  bool negative = false;
  if (text[0] == '+' || text[0] == '-') negative = text[pos++] == '-';
  size_t int_begin = pos;
  while (pos < text.size() && IsDigit(text[pos])) ++pos;
  std::string_view int_digits = text.substr(int_begin, pos - int_begin);
  std::string_view frac_digits;
  if (pos < text.size() && text[pos] == '.') {
    size_t frac_begin = ++pos;
    while (pos < text.size() && IsDigit(text[pos])) ++pos;
    frac_digits = text.substr(frac_begin, pos - frac_begin);
  }
  int64_t exp10 = 0;
  int exp2 = 0;
  if (!InterpretSuffix(text.substr(pos), &exp10, &exp2)) {
    return malformed("expected a number with an optional suffix (m, k, Mi, Gi, e3, ...)");
  }

  // value in nano units = digits × 10^(exp10 - |frac| + 9) × 2^exp2, rounded up.
  std::string digits_storage;
  std::string_view digits = int_digits;
  if (!frac_digits.empty()) {
    digits_storage.reserve(int_digits.size() + frac_digits.size());
    digits_storage.append(int_digits).append(frac_digits);
    digits = digits_storage;
  }
  size_t first = digits.find_first_not_of('0');
  if (first == std::string_view::npos) return Quantity{};
  digits.remove_prefix(first);
  int64_t shift = exp10 - static_cast<int64_t>(frac_digits.size()) + 9;
  int64_t n = static_cast<int64_t>(digits.size());
  int64_t int_len = n + shift;  // digits before the nano point (may be < 0 or > n)

  // Integer part (in nanos), saturating.
  U128 whole = 0;
  for (int64_t i = 0; i < int_len && whole < kSat; ++i) {
    whole = MulAddSat(whole, 10, i < n ? static_cast<uint64_t>(digits[i] - '0') : 0);
  }
  if (exp2 > 0) whole = whole >= (kSat >> exp2) ? kSat : whole << exp2;
  // Fractional part × 2^exp2, computed right to left; any remainder rounds up.
  U128 carry = 0;
  bool remainder = false;
  if (int_len < n) {
    const U128 mul = static_cast<U128>(1) << exp2;
    for (int64_t i = n - 1; i >= 0 && i >= int_len; --i) {
      U128 t = static_cast<U128>(digits[i] - '0') * mul + carry;
      remainder |= t % 10 != 0;
      carry = t / 10;
    }
    // Leading zeros between the nano point and the first digit: keep shifting the carry right.
    for (int64_t i = int_len; i < 0 && carry != 0; ++i) {
      remainder |= carry % 10 != 0;
      carry /= 10;
    }
  }
  U128 total = whole >= kSat ? kSat : whole + carry + (remainder ? 1 : 0);
  if (total > kCap) total = kCap;
  Quantity q;
  q.units = static_cast<int64_t>(total / kNanosPerUnit);
  q.nanos = static_cast<int32_t>(total % kNanosPerUnit);
  if (negative) {
    q.units = -q.units;
    q.nanos = -q.nanos;
  }
  return q;
}

}  // namespace gantry::diff
