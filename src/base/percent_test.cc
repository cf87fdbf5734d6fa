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

}  // namespace
}  // namespace gantry
