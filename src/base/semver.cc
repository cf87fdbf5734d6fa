#include "base/semver.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace gantry::semver {
namespace {

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsIdentifier(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
  });
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

std::optional<uint64_t> ParseNumber(std::string_view s) {
  if (!IsDigits(s) || (s.size() > 1 && s[0] == '0') || s.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) n = n * 10 + static_cast<uint64_t>(c - '0');
  return n;
}

// A version where components may be missing or wildcards (nullopt).
struct Partial {
  std::optional<uint64_t> major, minor, patch;
  std::vector<std::string> prerelease;
  std::string build;

  int Known() const { return !major ? 0 : !minor ? 1 : !patch ? 2 : 3; }
  Version Filled() const {
    Version v{major.value_or(0), minor.value_or(0), patch.value_or(0), {}, {}};
    if (Known() == 3) v.prerelease = prerelease;
    return v;
  }
};

Result<Partial> ParsePartial(std::string_view text, bool allow_wildcards) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("version {:?}: {}", std::string(text), why);
  };
  std::string_view s = text;
  if (!s.empty() && (s[0] == 'v' || s[0] == 'V')) s.remove_prefix(1);
  Partial p;
  if (size_t plus = s.find('+'); plus != std::string_view::npos) {
    std::string_view build = s.substr(plus + 1);
    for (std::string_view id : Split(build, '.')) {
      if (!IsIdentifier(id)) return bad("bad build metadata");
    }
    p.build = std::string(build);
    s = s.substr(0, plus);
  }
  std::string_view core = s;
  if (size_t dash = s.find('-'); dash != std::string_view::npos) {
    core = s.substr(0, dash);
    for (std::string_view id : Split(s.substr(dash + 1), '.')) {
      if (!IsIdentifier(id)) return bad("bad pre-release identifier");
      if (IsDigits(id) && id.size() > 1 && id[0] == '0') {
        return bad("numeric pre-release identifier with a leading zero");
      }
      p.prerelease.emplace_back(id);
    }
  }
  std::vector<std::string_view> parts = Split(core, '.');
  if (parts.size() > 3) return bad("more than three components");
  std::optional<uint64_t>* fields[] = {&p.major, &p.minor, &p.patch};
  bool wildcard = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    if (part == "x" || part == "X" || part == "*") {
      if (!allow_wildcards) return bad("wildcards are allowed only in ranges");
      wildcard = true;
      continue;
    }
    if (wildcard) return bad("a number after a wildcard");
    auto n = ParseNumber(part);
    if (!n) return bad(part.empty() ? "empty component" : "components must be numbers without leading zeros");
    *fields[i] = *n;
  }
  if (!p.prerelease.empty() && p.Known() != 3) return bad("a pre-release needs MAJOR.MINOR.PATCH");
  return p;
}

int CompareIdentifiers(const std::string& a, const std::string& b) {
  bool na = IsDigits(a), nb = IsDigits(b);
  if (na && nb) {
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return a.compare(b) < 0 ? -1 : a == b ? 0 : 1;
  }
  if (na != nb) return na ? -1 : 1;  // numeric identifiers sort first
  return a.compare(b) < 0 ? -1 : a == b ? 0 : 1;
}

using Op = VersionRange::Op;
using Comparator = VersionRange::Comparator;

Version Next(uint64_t major, uint64_t minor, uint64_t patch) { return Version{major, minor, patch, {}, {}}; }

// The comparators `op partial` stands for, appended to `set`.
Status Desugar(std::string_view op, const Partial& p, std::string_view token,
               std::vector<Comparator>& set) {
  int known = p.Known();
  Version v = p.Filled();
  uint64_t ma = v.major, mi = v.minor, pa = v.patch;
  auto add = [&](Op o, Version x) { set.push_back(Comparator{o, std::move(x)}); };
  const Version kNone = Next(0, 0, 0);  // "< 0.0.0": matches nothing
  if (op.empty() || op == "=") {
    if (known == 3) return add(Op::kEq, v), OkStatus();
    if (known == 0) return add(Op::kGe, kNone), OkStatus();
    add(Op::kGe, v);
    add(Op::kLt, known == 1 ? Next(ma + 1, 0, 0) : Next(ma, mi + 1, 0));
  } else if (op == "!=") {
    if (known != 3) return InvalidArgumentError("{:?}: != needs a full version", std::string(token));
    add(Op::kNe, v);
  } else if (op == ">") {
    if (known == 3) add(Op::kGt, v);
    else if (known == 0) add(Op::kLt, kNone);
    else add(Op::kGe, known == 1 ? Next(ma + 1, 0, 0) : Next(ma, mi + 1, 0));
  } else if (op == ">=") {
    add(Op::kGe, v);
  } else if (op == "<") {
    add(Op::kLt, known == 0 ? kNone : v);
  } else if (op == "<=") {
    if (known == 3) add(Op::kLe, v);
    else if (known == 0) add(Op::kGe, kNone);
    else add(Op::kLt, known == 1 ? Next(ma + 1, 0, 0) : Next(ma, mi + 1, 0));
  } else if (op == "~" || op == "~>") {
    add(Op::kGe, v);
    if (known == 1) add(Op::kLt, Next(ma + 1, 0, 0));
    if (known >= 2) add(Op::kLt, Next(ma, mi + 1, 0));
  } else if (op == "^") {
    add(Op::kGe, v);
    if (known == 0) return OkStatus();
    if (ma > 0 || known == 1) add(Op::kLt, Next(ma + 1, 0, 0));
    else if (mi > 0 || known == 2) add(Op::kLt, Next(0, mi + 1, 0));
    else add(Op::kLt, Next(0, 0, pa + 1));
  } else {
    return InvalidArgumentError("{:?}: unknown operator {:?}", std::string(token), std::string(op));
  }
  return OkStatus();
}

bool Satisfies(const Comparator& c, const Version& v) {
  auto o = Compare(v, c.version);
  switch (c.op) {
    case Op::kEq: return o == 0;
    case Op::kNe: return o != 0;
    case Op::kGt: return o > 0;
    case Op::kGe: return o >= 0;
    case Op::kLt: return o < 0;
    case Op::kLe: return o <= 0;
  }
  return false;
}

// Splits "op version" into its operator and the rest.
std::pair<std::string_view, std::string_view> SplitOp(std::string_view token) {
  size_t n = 0;
  while (n < token.size() && (token[n] == '<' || token[n] == '>' || token[n] == '=' ||
                              token[n] == '~' || token[n] == '^' || token[n] == '!')) {
    ++n;
  }
  return {token.substr(0, n), token.substr(n)};
}

Result<std::vector<Comparator>> ParseSet(std::string_view text) {
  // Tokens separated by spaces or commas; an operator standing alone joins the next token.
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == ',') flush();
    else current.push_back(c);
  }
  flush();
  if (tokens.empty()) return InvalidArgumentError("empty comparator set");
  std::vector<std::string> joined;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (SplitOp(tokens[i]).second.empty() && tokens[i] != "-" && i + 1 < tokens.size()) {
      joined.push_back(tokens[i] + tokens[i + 1]);
      ++i;
    } else {
      joined.push_back(tokens[i]);
    }
  }
  std::vector<Comparator> set;
  if (joined.size() == 3 && joined[1] == "-") {  // hyphen range A - B
    GANTRY_ASSIGN_OR_RETURN(Partial low, ParsePartial(joined[0], true));
    GANTRY_ASSIGN_OR_RETURN(Partial high, ParsePartial(joined[2], true));
    GANTRY_RETURN_IF_ERROR(Desugar(">=", low, joined[0], set));
    GANTRY_RETURN_IF_ERROR(Desugar("<=", high, joined[2], set));
    return set;
  }
  for (const std::string& token : joined) {
    auto [op, rest] = SplitOp(token);
    if (token == "-") return InvalidArgumentError("a hyphen range is \"A - B\" alone in its set");
    if (rest.empty()) return InvalidArgumentError("{:?}: operator without a version", token);
    GANTRY_ASSIGN_OR_RETURN(Partial p, ParsePartial(rest, true));
    GANTRY_RETURN_IF_ERROR(Desugar(op, p, token, set));
  }
  return set;
}

}  // namespace

std::string Version::ToString() const {
  std::string s = fmt::format("{}.{}.{}", major, minor, patch);
  for (size_t i = 0; i < prerelease.size(); ++i) s += (i == 0 ? "-" : ".") + prerelease[i];
  if (!build.empty()) s += "+" + build;
  return s;
}

std::strong_ordering Compare(const Version& a, const Version& b) {
  if (auto c = std::tie(a.major, a.minor, a.patch) <=> std::tie(b.major, b.minor, b.patch); c != 0) {
    return c;
  }
  if (a.prerelease.empty() && b.prerelease.empty()) return std::strong_ordering::equal;
  if (a.prerelease.empty()) return std::strong_ordering::greater;  // 1.0.0 > 1.0.0-rc.1
  if (b.prerelease.empty()) return std::strong_ordering::less;
  for (size_t i = 0; i < std::min(a.prerelease.size(), b.prerelease.size()); ++i) {
    int c = CompareIdentifiers(a.prerelease[i], b.prerelease[i]);
    if (c != 0) return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
  }
  return a.prerelease.size() <=> b.prerelease.size();
}

Result<Version> ParseVersion(std::string_view text) {
  GANTRY_ASSIGN_OR_RETURN(Partial p, ParsePartial(text, false));
  if (p.Known() == 0) return InvalidArgumentError("version {:?}: no MAJOR number", std::string(text));
  Version v = p.Filled();
  v.prerelease = p.prerelease;
  v.build = p.build;
  return v;
}

Result<VersionRange> VersionRange::Parse(std::string_view text) {
  VersionRange range;
  range.text_ = std::string(text);
  if (text.find_first_of(std::string_view("\0\n\r", 3)) != std::string_view::npos) {
    return InvalidArgumentError("version range {:?}: control characters", range.text_);
  }
  size_t start = 0;
  while (true) {
    size_t end = text.find("||", start);
    std::string_view part = text.substr(start, end == std::string_view::npos ? end : end - start);
    auto set = ParseSet(part);
    if (!set.ok()) return set.status().WithContext(fmt::format("version range {:?}", range.text_));
    range.sets_.push_back(std::move(set).value());
    if (end == std::string_view::npos) break;
    start = end + 2;
  }
  return range;
}

bool VersionRange::Matches(const Version& version) const {
  for (const auto& set : sets_) {
    bool ok = std::all_of(set.begin(), set.end(),
                          [&](const Comparator& c) { return Satisfies(c, version); });
    if (ok && !version.prerelease.empty()) {
      ok = std::any_of(set.begin(), set.end(), [&](const Comparator& c) {
        return !c.version.prerelease.empty() && c.version.major == version.major &&
               c.version.minor == version.minor && c.version.patch == version.patch;
      });
    }
    if (ok) return true;
  }
  return false;
}

std::optional<Version> VersionRange::Highest(const std::vector<Version>& versions) const {
  std::optional<Version> best;
  for (const Version& v : versions) {
    if (Matches(v) && (!best || v > *best)) best = v;
  }
  return best;
}

}  // namespace gantry::semver
