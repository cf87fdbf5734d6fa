#include "base/percent.h"

#include <gtest/gtest.h>

namespace gantry {
namespace {

TEST(PercentEncode, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(PercentEncode("1:2.3+dfsg~1 x/y"), "1%3A2.3%2Bdfsg~1%20x%2Fy");
  EXPECT_EQ(PercentEncode("group/sub/name"), "group%2Fsub%2Fname");
  EXPECT_EQ(PercentEncode(std::string_view("\xff\0", 2)), "%FF%00");
  EXPECT_EQ(PercentEncode(""), "");
}

TEST(PercentDecode, UndoesPercentEncode) {
  for (std::string_view text : {"https://git.example/shop.git", "1:2.3+dfsg~1 x/y", "", "\xff%"}) {
    auto decoded = PercentDecode(PercentEncode(text));
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_EQ(*PercentDecode("a+b%2b%2F"), "a+b+/");
}

TEST(PercentDecode, RefusesAPercentWithoutTwoHexDigits) {
  for (std::string_view text : {"%", "a%4", "%4g", "%%41", "%-1"}) {
    auto decoded = PercentDecode(text);
    ASSERT_FALSE(decoded.ok()) << text;
    EXPECT_EQ(decoded.status().code(), Code::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("two hex digits"), std::string::npos) << decoded.status().ToString();
  }
}

TEST(FormDecode, ReadsPlusAsASpaceAndKeepsABrokenEscape) {
  EXPECT_EQ(FormDecode("alice%40example.com"), "alice@example.com");
  EXPECT_EQ(FormDecode("a+b%20c"), "a b c");
  EXPECT_EQ(FormDecode("100%"), "100%");
  EXPECT_EQ(FormDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(FormDecode(""), "");
}

}  // namespace
}  // namespace gantry
