// Tag policies: SelectLatest, as Flux's ImagePolicy orders tags.

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>
#include <re2/re2.h>

#include "base/semver.h"
#include "update/update.h"

namespace gantry::update {
namespace {

std::string_view KindName(TagPolicy::Kind kind) {
  switch (kind) {
    case TagPolicy::Kind::kSemver: return "semver";
    case TagPolicy::Kind::kAlphabetical: return "alphabetical";
    case TagPolicy::Kind::kNumerical: return "numerical";
  }
  return "?";
}

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Expands $name, ${name} and $N in `tmpl` with the groups of one match, as Go's Regexp.Expand
// (used by Flux for `extract`). InvalidArgument for a group the pattern does not have.
Result<std::string> Expand(std::string_view tmpl, const RE2& re, const std::vector<re2::StringPiece>& groups) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '$') {
      out += tmpl[i];
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    std::string_view name;
    size_t next;
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      size_t close = tmpl.find('}', i + 2);
      if (close == std::string_view::npos) return InvalidArgumentError("extract \"{}\": unclosed ${{", tmpl);
      name = tmpl.substr(i + 2, close - i - 2);
      next = close + 1;
    } else {
      size_t j = i + 1;
      while (j < tmpl.size() && IsWordChar(tmpl[j])) ++j;
      name = tmpl.substr(i + 1, j - i - 1);
      next = j;
    }
    if (name.empty()) return InvalidArgumentError("extract \"{}\": '$' without a group name", tmpl);
    int index = -1;
    if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      std::from_chars(name.data(), name.data() + name.size(), index);
    } else {
      auto it = re.NamedCapturingGroups().find(std::string(name));
      if (it != re.NamedCapturingGroups().end()) index = it->second;
    }
    if (index < 0 || index >= static_cast<int>(groups.size())) {
      return InvalidArgumentError("extract \"{}\": the pattern has no group \"{}\"", tmpl, name);
    }
    const re2::StringPiece& g = groups[static_cast<size_t>(index)];
    out.append(g.data(), g.size());
    i = next - 1;
  }
  return out;
}

}  // namespace

Result<std::string> SelectLatest(std::span<const std::string> tags, const TagPolicy& policy) {
  std::string what = std::string(KindName(policy.kind));
  if (policy.kind == TagPolicy::Kind::kSemver) what += " " + policy.range;
  if (!policy.pattern.empty()) what += fmt::format(" with filter {}", policy.pattern);
  std::string context = fmt::format("tag policy {}", what);

  // The key each tag is ordered by (the tag, or its extraction).
  std::vector<std::pair<std::string, std::string>> keyed;  // (key, tag)
  if (policy.pattern.empty()) {
    if (!policy.extract.empty()) return InvalidArgumentError("{}: extract needs a filter pattern", context);
    for (const std::string& t : tags) keyed.emplace_back(t, t);
  } else {
    RE2::Options options;
    options.set_log_errors(false);
    RE2 re(policy.pattern, options);
    if (!re.ok()) return InvalidArgumentError("{}: bad pattern: {}", context, re.error());
    std::vector<re2::StringPiece> groups(static_cast<size_t>(re.NumberOfCapturingGroups()) + 1);
    for (const std::string& t : tags) {
      if (!re.Match(t, 0, t.size(), RE2::UNANCHORED, groups.data(), static_cast<int>(groups.size()))) continue;
      if (policy.extract.empty()) {
        keyed.emplace_back(t, t);
      } else {
        auto key = Expand(policy.extract, re, groups);
        if (!key.ok()) return key.status().WithContext(context);
        keyed.emplace_back(std::move(*key), t);
      }
    }
    if (keyed.empty()) return NotFoundError("{}: none of {} tags matches the filter", context, tags.size());
  }

  if (keyed.empty()) return NotFoundError("{}: there are no tags", context);
  switch (policy.kind) {
    case TagPolicy::Kind::kSemver: {
      auto range = semver::VersionRange::Parse(policy.range.empty() ? "*" : policy.range);
      if (!range.ok()) return range.status().WithContext(context);
      std::optional<semver::Version> best;
      std::string best_tag;
      for (const auto& [key, tag] : keyed) {
        auto v = semver::ParseVersion(key);
        if (!v.ok() || !range->Matches(*v)) continue;
        // Equal versions (v1.2.3 and 1.2.3): the alphabetically greater tag, so the choice is stable.
        if (!best || *v > *best || (*v == *best && tag > best_tag)) {
          best = std::move(*v);
          best_tag = tag;
        }
      }
      if (!best) return NotFoundError("{}: no tag is a version in the range (of {} tags)", context, keyed.size());
      return best_tag;
    }
    case TagPolicy::Kind::kAlphabetical: {
      auto it = policy.ascending ? std::max_element(keyed.begin(), keyed.end()) : std::min_element(keyed.begin(), keyed.end());
      return it->second;
    }
    case TagPolicy::Kind::kNumerical: {
      std::optional<double> best;
      std::string best_tag;
      for (const auto& [key, tag] : keyed) {
        double d = 0;
        auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), d);
        if (ec != std::errc() || end != key.data() + key.size() || !std::isfinite(d)) continue;
        bool better = !best || (policy.ascending ? d > *best : d < *best) || (d == *best && tag > best_tag);
        if (better) {
          best = d;
          best_tag = tag;
        }
      }
      if (!best) return NotFoundError("{}: no tag is a number (of {} tags)", context, keyed.size());
      return best_tag;
    }
  }
  return InternalError("{}: unknown policy kind", context);
}

}  // namespace gantry::update
