#include "value/internal/resolve.h"

#include <array>
#include <charconv>
#include <initializer_list>
#include <cmath>
#include <limits>
#include <string>

namespace gantry::value {
namespace internal {
namespace {

using Type = Value::Type;

Resolved Null() { return Resolved{Type::kNull}; }
Resolved Bool(bool b) {
  Resolved r{Type::kBool};
  r.b = b;
  return r;
}
Resolved Double(double d) {
  Resolved r{Type::kDouble};
  r.d = d;
  return r;
}

// The fixed words of go-yaml v2's resolve table, looked up by length and first letter (keys and
// values of every manifest pass through here).
bool LookupWord(std::string_view s, Resolved* out) {
  auto any = [&](std::initializer_list<std::string_view> words) {
    for (std::string_view w : words) {
      if (s == w) return true;
    }
    return false;
  };
  auto inf = [&](std::string_view t) { return t == ".inf" || t == ".Inf" || t == ".INF"; };
  // The first letter picks the candidates (keys such as "name" and "type" would otherwise be
  // compared with every word of their length).
  char c = static_cast<char>(s[0] | 0x20);  // lower case for letters; '.', '+', '-', '~' stay apart
  switch (s.size()) {
    case 1:
      if (c == 'y') return *out = Bool(true), true;
      if (c == 'n') return *out = Bool(false), true;
      if (s[0] == '~') return *out = Null(), true;
      return false;
    case 2:
      if (c == 'o' && any({"on", "On", "ON"})) return *out = Bool(true), true;
      if (c == 'n' && any({"no", "No", "NO"})) return *out = Bool(false), true;
      return false;
    case 3:
      if (c == 'y' && any({"yes", "Yes", "YES"})) return *out = Bool(true), true;
      if (c == 'o' && any({"off", "Off", "OFF"})) return *out = Bool(false), true;
      return false;
    case 4:
      if (c == 't' && any({"true", "True", "TRUE"})) return *out = Bool(true), true;
      if (c == 'n' && any({"null", "Null", "NULL"})) return *out = Null(), true;
      if (s[0] != '.') return false;
      if (any({".nan", ".NaN", ".NAN"})) {
        return *out = Double(std::numeric_limits<double>::quiet_NaN()), true;
      }
      if (inf(s)) return *out = Double(std::numeric_limits<double>::infinity()), true;
      return false;
    case 5:
      if (c == 'f' && any({"false", "False", "FALSE"})) return *out = Bool(false), true;
      if ((s[0] == '+' || s[0] == '-') && inf(s.substr(1))) {
        return *out = Double((s[0] == '-' ? -1 : 1) * std::numeric_limits<double>::infinity()),
               true;
      }
      return false;
    default:
      return false;
  }
}

int DigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

// Go's strconv.ParseInt(s, 0, 64) / ParseUint(s, 0, 64) on a string without '_'.
// Sets *negative, *signed_prefix and the magnitude; false when not an integer literal or the
// magnitude overflows uint64.
bool ParseGoInt(std::string_view s, bool* negative, bool* has_sign, uint64_t* magnitude) {
  *negative = *has_sign = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    *negative = s[0] == '-';
    *has_sign = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  int base = 10;
  if (s[0] == '0' && s.size() > 1) {
    char p = s[1];
    if (p == 'x' || p == 'X') {
      base = 16;
      s.remove_prefix(2);
    } else if (p == 'o' || p == 'O') {
      base = 8;
      s.remove_prefix(2);
    } else if (p == 'b' || p == 'B') {
      base = 2;
      s.remove_prefix(2);
    } else {
      base = 8;
      s.remove_prefix(1);
    }
    if (s.empty()) return false;
  }
  uint64_t v = 0;
  for (char c : s) {
    int d = DigitValue(c);
    if (d >= base) return false;
    if (v > (std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(d)) /
                static_cast<uint64_t>(base)) {
      return false;
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  *magnitude = v;
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
bool MatchesYamlFloat(std::string_view s) {
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < n && s[i] == '.') {
    ++i;
    size_t start = i;
    while (i < n && IsDigit(s[i])) ++i;
    if (i == start) return false;
  } else {
    size_t start = i;
    while (i < n && IsDigit(s[i])) ++i;
    if (i == start) return false;
    if (i < n && s[i] == '.') {
      ++i;
      while (i < n && IsDigit(s[i])) ++i;
    }
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t start = i;
    while (i < n && IsDigit(s[i])) ++i;
    if (i == start) return false;
  }
  return i == n;
}

bool ParseDouble(std::string_view s, double* out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// What the first byte of a plain scalar allows: a word of the table, a number, or (for '.') a
// float or .inf/.nan; anything else is a string.
enum Hint : uint8_t { kStringHint = 0, kWordHint, kNumberHint, kDotHint };
constexpr std::array<uint8_t, 256> MakeHints() {
  std::array<uint8_t, 256> t{};
  for (char c : std::string_view("yYnNtTfFoO~")) t[static_cast<unsigned char>(c)] = kWordHint;
  for (char c : std::string_view("0123456789+-")) t[static_cast<unsigned char>(c)] = kNumberHint;
  t[static_cast<unsigned char>('.')] = kDotHint;
  return t;
}
constexpr std::array<uint8_t, 256> kHints = MakeHints();

}  // namespace

Resolved ResolvePlain(std::string_view s) {
  if (s.empty()) return Null();
  char c = s[0];
  uint8_t hint = kHints[static_cast<unsigned char>(c)];
  if (hint == kStringHint) return Resolved{};
  bool number_hint = hint == kNumberHint;
  Resolved r;
  if (LookupWord(s, &r)) return r;
  if (c == '.') {
    double d;
    if (MatchesYamlFloat(s) && ParseDouble(s, &d)) return Double(d);
    return Resolved{};
  }
  if (!number_hint) return Resolved{};

  std::string without_underscores;
  std::string_view plain = s;
  if (s.find('_') != std::string_view::npos) {
    without_underscores.reserve(s.size());
    for (char ch : s) {
      if (ch != '_') without_underscores.push_back(ch);
    }
    plain = without_underscores;
  }
  bool negative, has_sign;
  uint64_t mag;
  if (ParseGoInt(plain, &negative, &has_sign, &mag)) {
    constexpr uint64_t kMaxPos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (!negative && mag <= kMaxPos) {
      r.type = Type::kInt;
      r.i = static_cast<int64_t>(mag);
      return r;
    }
    if (negative && mag <= kMaxPos + 1) {
      r.type = Type::kInt;
      r.i = mag == kMaxPos + 1 ? std::numeric_limits<int64_t>::min()
                               : -static_cast<int64_t>(mag);
      return r;
    }
    if (!has_sign) return Double(static_cast<double>(mag));  // go-yaml: uint64
  }
  double d;
  if (MatchesYamlFloat(plain) && ParseDouble(plain, &d)) return Double(d);
  return Resolved{};
}

Value ToValue(const Resolved& r, std::string_view text, SourceFile* arena) {
  if (!arena) {
    switch (r.type) {
      case Type::kNull:
        return Value();
      case Type::kBool:
        return Value(r.b);
      case Type::kInt:
        return Value(r.i);
      case Type::kDouble:
        return Value(r.d);
      default:
        return Value(text);
    }
  }
  return Node::Wrap(NewNode(r, text, arena));
}

Node* NewNode(const Resolved& r, std::string_view text, SourceFile* arena) {
  if (r.type == Type::kString) return StringNode::Make(text, arena);
  auto* n = New<ScalarNode>(arena, r.type);
  if (r.type == Type::kBool) n->b = r.b;
  if (r.type == Type::kInt) n->i = r.i;
  if (r.type == Type::kDouble) n->d = r.d;
  return n;
}

void AppendDouble(std::string& out, double d, bool yaml) {
  if (std::isnan(d)) {
    out += yaml ? ".nan" : "nan";
    return;
  }
  if (std::isinf(d)) {
    out += d > 0 ? (yaml ? ".inf" : "inf") : (yaml ? "-.inf" : "-inf");
    return;
  }
  char buf[64];
  // Exponent form for very large and very small magnitudes, as Go and JavaScript print them.
  double mag = std::fabs(d);
  auto [ptr, ec] = mag >= 1e21 || (mag != 0 && mag < 1e-6)
                       ? std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific)
                       : std::to_chars(buf, buf + sizeof buf, d);
  std::string_view s(buf, static_cast<size_t>(ptr - buf));
  out += s;
  if (s.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

}  // namespace internal

Value ResolvePlainScalar(std::string_view text) {
  return internal::ToValue(internal::ResolvePlain(text), text);
}

}  // namespace gantry::value
