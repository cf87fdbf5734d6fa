#include "cli/terminal.h"

namespace gantry::cli {
namespace {

constexpr char kEsc = '\x1b';

// Where the escape sequence at data[0] (ESC) ends (one past it), or npos when it is unfinished.
// `keep` says whether it is an SGR sequence.
size_t SequenceEnd(std::string_view data, bool& keep) {
  keep = false;
  if (data.size() < 2) return std::string_view::npos;
  const char kind = data[1];
  if (kind == '[') {  // CSI: parameters and intermediates 0x20..0x3f, final byte 0x40..0x7e
    bool sgr_params = true;
    for (size_t i = 2; i < data.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(data[i]);
      if (c >= 0x40 && c <= 0x7e) {
        keep = c == 'm' && sgr_params;
        return i + 1;
      }
      if (c < 0x20 || c > 0x3f) return i;  // malformed: drop what came so far
      if (!(c >= '0' && c <= '9') && c != ';') sgr_params = false;
    }
    return std::string_view::npos;
  }
  if (kind == ']' || kind == 'P' || kind == '_' || kind == '^' || kind == 'X') {
    // A string: ends with BEL (OSC) or ST (ESC \).
    for (size_t i = 2; i < data.size(); ++i) {
      if (data[i] == '\a') return i + 1;
      if (data[i] == kEsc) {
        if (i + 1 >= data.size()) return std::string_view::npos;
        return data[i + 1] == '\\' ? i + 2 : i;
      }
    }
    return std::string_view::npos;
  }
  return 2;  // ESC and one byte (ESC c resets the terminal, ESC 7/8 save/restore the cursor, ...)
}

}  // namespace

std::string TerminalFilter::Feed(std::string_view data) {
  std::string in = std::move(pending_);
  pending_.clear();
  in.append(data);
  std::string out;
  out.reserve(in.size());
  std::string_view rest = in;
  while (!rest.empty()) {
    const unsigned char c = static_cast<unsigned char>(rest[0]);
    if (c == static_cast<unsigned char>(kEsc)) {
      bool keep = false;
      size_t end = SequenceEnd(rest, keep);
      if (end == std::string_view::npos) {
        pending_ = std::string(rest);
        break;
      }
      if (keep) out.append(rest.substr(0, end));
      rest.remove_prefix(end);
      continue;
    }
    if (c == 0xc2) {  // U+0080..U+009F are C2 80..C2 9F
      if (rest.size() < 2) {
        pending_ = std::string(rest);
        break;
      }
      const unsigned char next = static_cast<unsigned char>(rest[1]);
      if (next >= 0x80 && next <= 0x9f) {
        rest.remove_prefix(2);
        continue;
      }
    }
    if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7f) {
      rest.remove_prefix(1);
      continue;
    }
    out.push_back(rest[0]);
    rest.remove_prefix(1);
  }
  return out;
}

std::string StripTerminalEscapes(std::string_view text) {
  TerminalFilter f;
  return f.Feed(text);
}

std::string Pad(std::string_view s, size_t width) {
  std::string out(s);
  if (out.size() < width) out.append(width - out.size(), ' ');
  return out;
}

}  // namespace gantry::cli
