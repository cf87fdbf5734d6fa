#include "diff/internal/unified.h"

#include <string>

#include <gtest/gtest.h>

namespace gantry::diff::internal {
namespace {

std::string Lines(int from, int to) {
  std::string s;
  for (int i = from; i <= to; ++i) s += "line" + std::to_string(i) + "\n";
  return s;
}

TEST(UnifiedDiffTest, EqualTextsGiveNothing) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb\n", "x", "y", 3, false), "");
  EXPECT_EQ(UnifiedDiff("", "", "x", "y", 3, false), "");
}

TEST(UnifiedDiffTest, OneChangeWithContext) {
  std::string a = Lines(1, 10);
  std::string b = a;
  b.replace(b.find("line5\n"), 6, "five\n");
  EXPECT_EQ(UnifiedDiff(a, b, "old", "new", 3, false),
            "--- old\n+++ new\n@@ -2,7 +2,7 @@\n line2\n line3\n line4\n-line5\n+five\n line6\n"
            " line7\n line8\n");
  EXPECT_EQ(UnifiedDiff(a, b, "old", "new", 0, false),
            "--- old\n+++ new\n@@ -5 +5 @@\n-line5\n+five\n");
}

TEST(UnifiedDiffTest, FarChangesMakeTwoHunksNearOnesOne) {
  std::string a = Lines(1, 20);
  std::string far = a;
  far.replace(far.find("line2\n"), 6, "");
  far += "line21\n";
  EXPECT_EQ(UnifiedDiff(a, far, "a", "b", 3, false),
            "--- a\n+++ b\n@@ -1,5 +1,4 @@\n line1\n-line2\n line3\n line4\n line5\n"
            "@@ -18,3 +17,4 @@\n line18\n line19\n line20\n+line21\n");
  std::string near = a;
  near.replace(near.find("line2\n"), 6, "");
  near.replace(near.find("line8\n"), 6, "eight\n");
  EXPECT_EQ(UnifiedDiff(a, near, "a", "b", 3, false),
            "--- a\n+++ b\n@@ -1,11 +1,10 @@\n line1\n-line2\n line3\n line4\n line5\n line6\n"
            " line7\n-line8\n+eight\n line9\n line10\n line11\n");
}

TEST(UnifiedDiffTest, AddedToEmptyAndRemovedAll) {
  EXPECT_EQ(UnifiedDiff("", "a\nb\n", "x", "y", 3, false),
            "--- x\n+++ y\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  EXPECT_EQ(UnifiedDiff("a\n", "", "x", "y", 3, false), "--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n");
}

TEST(UnifiedDiffTest, MinimalEditsInTheMiddle) {
  // Myers finds the shortest script: keep b, c; delete a; insert d.
  EXPECT_EQ(UnifiedDiff("a\nb\nc\n", "b\nc\nd\n", "x", "y", 3, false),
            "--- x\n+++ y\n@@ -1,3 +1,3 @@\n-a\n b\n c\n+d\n");
  EXPECT_EQ(UnifiedDiff("x\na\nb\nc\ny\n", "x\nb\na\nc\ny\n", "1", "2", 0, false),
            "--- 1\n+++ 2\n@@ -2 +1,0 @@\n-a\n@@ -3,0 +3 @@\n+a\n");
}

TEST(UnifiedDiffTest, ColorsWhenAsked) {
  std::string out = UnifiedDiff("a\n", "b\n", "x", "y", 3, true);
  EXPECT_EQ(out,
            "\x1b[1m--- x\x1b[0m\n\x1b[1m+++ y\x1b[0m\n\x1b[36m@@ -1 +1 @@\x1b[0m\n"
            "\x1b[31m-a\x1b[0m\n\x1b[32m+b\x1b[0m\n");
}

TEST(UnifiedDiffTest, HugeRewritesFallBackToReplaceAll) {
  std::string a, b;
  for (int i = 0; i < kMaxEdits + 10; ++i) {
    a += "a" + std::to_string(i) + "\n";
    b += "b" + std::to_string(i) + "\n";
  }
  std::string out = UnifiedDiff("same\n" + a, "same\n" + b, "x", "y", 1, false);
  EXPECT_EQ(out.find("@@ -1," + std::to_string(kMaxEdits + 11) + " +1," +
                     std::to_string(kMaxEdits + 11) + " @@\n same\n-a0\n"),
            std::string("--- x\n+++ y\n").size());
}

}  // namespace
}  // namespace gantry::diff::internal
