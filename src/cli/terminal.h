#pragma once
// cli/terminal: makes untrusted bytes (CI logs) safe to print to a terminal, and pads table
// columns.
//
// A step's output may carry escape sequences that retitle the window, move the cursor to rewrite
// earlier lines, write to the clipboard (OSC 52) or hide text. TerminalFilter keeps only SGR
// sequences (colours and text attributes, ESC [ digits and ';' m) and the controls \n, \r and \t;
// it drops every other escape sequence (CSI, OSC, DCS/APC/PM/SOS strings, two-byte ESC sequences),
// every other C0 control and DEL, and the C1 controls in their UTF-8 form (U+0080..U+009F, which
// some terminals take for ESC sequences). Sequences may be split across Feed() calls.
// Not thread-safe.

#include <string>
#include <string_view>

namespace gantry::cli {

class TerminalFilter {
 public:
  // The printable part of `data`; an unfinished sequence at its end is kept for the next call.
  std::string Feed(std::string_view data);
  // The end of the stream: an unfinished sequence is dropped.
  void Finish() { pending_.clear(); }

 private:
  std::string pending_;
};

// TerminalFilter over one whole text.
std::string StripTerminalEscapes(std::string_view text);

// `s` followed by spaces up to `width` bytes; `s` itself when it is as long or longer. Columns
// are measured in bytes, as callers measure them: the names in Gantry's tables are ASCII.
std::string Pad(std::string_view s, size_t width);

}  // namespace gantry::cli
