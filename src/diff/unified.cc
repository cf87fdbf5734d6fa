#include "diff/internal/unified.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace gantry::diff::internal {
namespace {

enum class Op : char { kEqual = ' ', kDelete = '-', kInsert = '+' };

struct Edit {
  Op op;
  size_t old_line;  // index into the old lines (kEqual, kDelete)
  size_t new_line;  // index into the new lines (kEqual, kInsert)
};

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(std::min(text.size(), nl + 1));
  }
  return lines;
}

// Edit script turning a[a0, a1) into b[b0, b1), appended to `out`. Myers' greedy forward search,
// keeping each round's frontier for the walk back; gives up beyond kMaxEdits (one big replace).
void Myers(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b,
           size_t a0, size_t a1, size_t b0, size_t b1, std::vector<Edit>& out) {
  const long n = static_cast<long>(a1 - a0), m = static_cast<long>(b1 - b0);
  const long max_d = std::min<long>(n + m, kMaxEdits);
  const long offset = max_d + 1;
  std::vector<int> v(static_cast<size_t>(2 * offset + 1), 0);
  std::vector<std::vector<int>> trace;  // trace[d] = v[-d..d] before round d
  long found = -1;
  for (long d = 0; d <= max_d && found < 0; ++d) {
    trace.emplace_back(v.begin() + (offset - d), v.begin() + (offset + d + 1));
    for (long k = -d; k <= d; k += 2) {
      bool down = k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]);
      long x = down ? v[offset + k + 1] : v[offset + k - 1] + 1L;
      long y = x - k;
      while (x < n && y < m && a[a0 + x] == b[b0 + y]) ++x, ++y;
      v[offset + k] = static_cast<int>(x);
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) {
    for (size_t i = a0; i < a1; ++i) out.push_back({Op::kDelete, i, b0});
    for (size_t j = b0; j < b1; ++j) out.push_back({Op::kInsert, a1, j});
    return;
  }
  std::vector<Edit> rev;
  long x = n, y = m;
  for (long d = found; d > 0; --d) {
    const std::vector<int>& t = trace[static_cast<size_t>(d)];  // v before round d: index k+d
    auto at = [&](long k) { return static_cast<long>(t[static_cast<size_t>(k + d)]); };
    long k = x - y;
    long prev_k = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    long prev_x = at(prev_k), prev_y = prev_x - prev_k;
    while (x > prev_x && y > prev_y) {
      --x, --y;
      rev.push_back({Op::kEqual, a0 + x, b0 + y});
    }
    if (x == prev_x) {
      rev.push_back({Op::kInsert, a0 + x, b0 + prev_y});
    } else {
      rev.push_back({Op::kDelete, a0 + prev_x, b0 + y});
    }
    x = prev_x, y = prev_y;
  }
  while (x > 0 && y > 0) {
    --x, --y;
    rev.push_back({Op::kEqual, a0 + x, b0 + y});
  }
  out.insert(out.end(), rev.rbegin(), rev.rend());
}

std::string Range(size_t start, size_t count) {
  // GNU diff: "start,count", "start" when count is 1, the line before when count is 0.
  if (count == 1) return std::to_string(start + 1);
  return fmt::format("{},{}", count == 0 ? start : start + 1, count);
}

}  // namespace

std::string UnifiedDiff(std::string_view old_text, std::string_view new_text,
                        std::string_view old_name, std::string_view new_name, int context,
                        bool color) {
  if (old_text == new_text) return "";
  const std::vector<std::string_view> a = SplitLines(old_text), b = SplitLines(new_text);
  size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) ++head;
  size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head &&
         a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) {
    ++tail;
  }
  std::vector<Edit> edits;
  for (size_t i = 0; i < head; ++i) edits.push_back({Op::kEqual, i, i});
  Myers(a, b, head, a.size() - tail, head, b.size() - tail, edits);
  for (size_t i = tail; i > 0; --i) {
    edits.push_back({Op::kEqual, a.size() - i, b.size() - i});
  }

  const char* red = color ? "\x1b[31m" : "";
  const char* green = color ? "\x1b[32m" : "";
  const char* cyan = color ? "\x1b[36m" : "";
  const char* bold = color ? "\x1b[1m" : "";
  const char* reset = color ? "\x1b[0m" : "";
  std::string out = fmt::format("{}--- {}{}\n{}+++ {}{}\n", bold, old_name, reset, bold, new_name,
                                reset);
  const size_t ctx = static_cast<size_t>(std::max(context, 0));
  size_t i = 0;
  while (i < edits.size()) {
    if (edits[i].op == Op::kEqual) {
      ++i;
      continue;
    }
    // A hunk: from ctx lines before this change to ctx lines after the last change that is at most
    // 2*ctx equal lines away from the previous one.
    size_t begin = i >= ctx ? i - ctx : 0;
    size_t end = i;
    for (size_t j = i; j < edits.size(); ++j) {
      if (edits[j].op != Op::kEqual) {
        end = j + 1;
      } else if (j - end + 1 > 2 * ctx) {
        break;
      }
    }
    size_t hunk_end = std::min(edits.size(), end + ctx);
    size_t old_start = a.size(), new_start = b.size(), old_count = 0, new_count = 0;
    for (size_t j = begin; j < hunk_end; ++j) {
      if (edits[j].op != Op::kInsert) {
        old_start = std::min(old_start, edits[j].old_line);
        ++old_count;
      }
      if (edits[j].op != Op::kDelete) {
        new_start = std::min(new_start, edits[j].new_line);
        ++new_count;
      }
    }
    if (old_count == 0) old_start = edits[begin].old_line;
    if (new_count == 0) new_start = edits[begin].new_line;
    out += fmt::format("{}@@ -{} +{} @@{}\n", cyan, Range(old_start, old_count),
                       Range(new_start, new_count), reset);
    for (size_t j = begin; j < hunk_end; ++j) {
      const Edit& e = edits[j];
      std::string_view line = e.op == Op::kInsert ? b[e.new_line] : a[e.old_line];
      const char* c = e.op == Op::kDelete ? red : e.op == Op::kInsert ? green : "";
      out += c;
      out += static_cast<char>(e.op);
      out += line;
      if (*c) out += reset;
      out += '\n';
    }
    i = hunk_end;
  }
  return out;
}

}  // namespace gantry::diff::internal
