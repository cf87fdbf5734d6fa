#include "project/glob.h"

#include <vector>

namespace gantry::project {
namespace {

// The end of the class starting at pattern[i] == '[' (the index of its ']'), or npos.
size_t ClassEnd(std::string_view p, size_t i) {
  size_t j = i + 1;
  if (j < p.size() && (p[j] == '!' || p[j] == '^')) ++j;
  if (j < p.size() && p[j] == ']') ++j;  // a leading ']' is a member, as in fnmatch
  for (; j < p.size(); ++j) {
    if (p[j] == '\\') {
      ++j;
    } else if (p[j] == ']') {
      return j;
    }
  }
  return std::string_view::npos;
}

// Whether c is in the class p[begin..end] ('[' at begin, ']' at end).
bool InClass(std::string_view p, size_t begin, size_t end, char c) {
  size_t j = begin + 1;
  bool negate = p[j] == '!' || p[j] == '^';
  if (negate) ++j;
  bool in = false;
  bool first = true;
  while (j < end) {
    char lo = p[j];
    if (lo == '\\') lo = p[++j];
    else if (lo == ']' && !first) break;
    first = false;
    char hi = lo;
    if (j + 2 < end && p[j + 1] == '-') {
      hi = p[j + 2];
      if (hi == '\\' && j + 3 < end) hi = p[j + 3], ++j;
      j += 2;
    }
    if (c >= lo && c <= hi) in = true;
    ++j;
  }
  return in != negate;
}

}  // namespace

Status ValidateGlob(std::string_view p) {
  if (p.empty()) return InvalidArgumentError("is an empty pattern");
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\') {
      if (i + 1 == p.size()) return InvalidArgumentError("{:?} ends with a lone backslash", p);
      ++i;
    } else if (p[i] == '[') {
      size_t end = ClassEnd(p, i);
      if (end == std::string_view::npos) {
        return InvalidArgumentError("{:?} has an unterminated class at character {} ('[' without ']')", p, i + 1);
      }
      size_t body = i + 1 + ((p[i + 1] == '!' || p[i + 1] == '^') ? 1 : 0);
      if (body == end) return InvalidArgumentError("{:?} has an empty class at character {}", p, i + 1);
      i = end;
    }
  }
  return OkStatus();
}

bool HasGlobChars(std::string_view p) { return p.find_first_of("*?[\\") != std::string_view::npos; }

bool GlobMatch(std::string_view pat, std::string_view s) {
  if (pat == "*") return true;
  // One pass per pattern token over a row of "the pattern so far matches s[0, j)": O(|pat| * |s|)
  // time, O(|s|) memory, no recursion (the text may come from a tenant).
  std::vector<char> row(s.size() + 1, 0), next(s.size() + 1, 0);
  row[0] = 1;
  size_t i = 0;
  while (i < pat.size()) {
    std::string_view rest = pat.substr(i);
    if (rest == "/**") {  // "dir/**": the directory itself or anything below it
      bool seen = false;  // some k < j with row[k] and s[k] == '/'
      for (size_t j = 0; j <= s.size(); ++j) {
        next[j] = row[j] || seen;
        if (j < s.size() && row[j] && s[j] == '/') seen = true;
      }
      i = pat.size();
    } else if (rest.starts_with("**")) {
      size_t stars = rest.find_first_not_of('*');
      if (stars == std::string_view::npos) stars = rest.size();
      bool slash = stars < rest.size() && rest[stars] == '/';
      bool any = false;  // row[k] for some k <= j
      for (size_t j = 0; j <= s.size(); ++j) {
        any = any || row[j];
        // "**/" matches nothing or any run ending in '/'; a bare "**" any run at all.
        next[j] = slash ? (row[j] || (j > 0 && s[j - 1] == '/' && any)) : any;
      }
      i += stars + (slash ? 1 : 0);
    } else if (pat[i] == '*') {
      for (size_t j = 0; j <= s.size(); ++j) {
        next[j] = row[j] || (j > 0 && next[j - 1] && s[j - 1] != '/');
      }
      ++i;
    } else {
      // One character: a literal, an escaped literal, '?' or a class.
      size_t len = 1, class_end = 0;
      if (pat[i] == '[') {
        class_end = ClassEnd(pat, i);
        if (class_end == std::string_view::npos) return false;  // invalid: ValidateGlob refuses it
        len = class_end - i + 1;
      } else if (pat[i] == '\\' && i + 1 < pat.size()) {
        len = 2;
      }
      next[0] = 0;
      for (size_t j = 1; j <= s.size(); ++j) {
        char c = s[j - 1];
        bool ok = pat[i] == '?'    ? c != '/'
                  : pat[i] == '[' ? InClass(pat, i, class_end, c)
                  : pat[i] == '\\' && len == 2 ? pat[i + 1] == c
                                             : pat[i] == c;
        next[j] = row[j - 1] && ok;
      }
      i += len;
    }
    row.swap(next);
  }
  return row[s.size()] != 0;
}

bool GlobsIntersect(std::string_view a, std::string_view b) {
  bool ga = HasGlobChars(a), gb = HasGlobChars(b);
  if (ga && gb) return true;
  if (ga) return GlobMatch(a, b);
  if (gb) return GlobMatch(b, a);
  return a == b;
}

}  // namespace gantry::project
