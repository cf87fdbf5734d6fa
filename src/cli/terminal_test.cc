#include "cli/terminal.h"

#include <gtest/gtest.h>

namespace gantry::cli {
namespace {

TEST(PadTest, FillsToTheWidthAndNeverCuts) {
  EXPECT_EQ(Pad("ID", 6), "ID    ");
  EXPECT_EQ(Pad("", 2), "  ");
  EXPECT_EQ(Pad("podinfo", 4), "podinfo");
}

TEST(TerminalFilterTest, KeepsColoursAndText) {
  EXPECT_EQ(StripTerminalEscapes("\x1b[1;31merror\x1b[0m: x\n\tok\r\n"), "\x1b[1;31merror\x1b[0m: x\n\tok\r\n");
  EXPECT_EQ(StripTerminalEscapes("héllo ✓"), "héllo ✓");
}

TEST(TerminalFilterTest, DropsEveryOtherEscapeSequence) {
  EXPECT_EQ(StripTerminalEscapes("a\x1b]0;pwned title\x07" "b"), "ab");             // window title (OSC, BEL)
  EXPECT_EQ(StripTerminalEscapes("a\x1b]52;c;ZXZpbA==\x1b\\b"), "ab");              // clipboard write (OSC 52, ST)
  EXPECT_EQ(StripTerminalEscapes("line1\n\x1b[1A\x1b[2Kfake line1\n"), "line1\nfake line1\n");  // cursor up, erase
  EXPECT_EQ(StripTerminalEscapes("a\x1b" "cb"), "ab");                              // full reset
  EXPECT_EQ(StripTerminalEscapes("a\x1b[?1049hb"), "ab");                           // private mode: not SGR
  EXPECT_EQ(StripTerminalEscapes("a\x1bP1$r\x1b\\b"), "ab");                        // DCS string
  EXPECT_EQ(StripTerminalEscapes("a\x1b[38;5;1;?mb"), "ab");                        // 'm' but not SGR parameters
  EXPECT_EQ(StripTerminalEscapes("a\x07\x08\x7f" "b"), "ab");                       // bell, backspace, DEL
  EXPECT_EQ(StripTerminalEscapes("a\xc2\x9b" "2Jb"), "a2Jb");                       // C1 CSI as UTF-8
}

TEST(TerminalFilterTest, SequencesSplitAcrossChunks) {
  TerminalFilter f;
  std::string out = f.Feed("ok \x1b]0;ti");
  out += f.Feed("tle\x07 \x1b[3");
  out += f.Feed("2mgreen\x1b");
  out += f.Feed("[0m\xc2");
  out += f.Feed("\x9b!");
  EXPECT_EQ(out, "ok  \x1b[32mgreen\x1b[0m!");
  EXPECT_EQ(f.Feed("\x1b]unterminated"), "");
  f.Finish();
  EXPECT_EQ(f.Feed("next"), "next");
}

}  // namespace
}  // namespace gantry::cli
