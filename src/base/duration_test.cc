#include "base/duration.h"

#include <gtest/gtest.h>

namespace gantry {
namespace {

using namespace std::chrono_literals;

// The forms ci, deliver and the CLI each accepted before they shared this parser.
TEST(ParseDuration, AcceptsGoStyleAndBareSeconds) {
  EXPECT_EQ(*ParseDuration("90s"), 90s);
  EXPECT_EQ(*ParseDuration("10m"), 10min);
  EXPECT_EQ(*ParseDuration("1h"), 1h);
  EXPECT_EQ(*ParseDuration("250ms"), 250ms);
  EXPECT_EQ(*ParseDuration("1h30m"), 90min);
  EXPECT_EQ(*ParseDuration("1m500ms"), 60500ms);
  EXPECT_EQ(*ParseDuration("12"), 12s);
  EXPECT_EQ(*ParseDuration("0"), 0ms);
  EXPECT_EQ(*ParseDuration("+5s"), 5s);
  EXPECT_EQ(*ParseDuration("2562047h"), 2562047h);
  // Fractions, as the agent's Application backoff fields took them (and Go does).
  EXPECT_EQ(*ParseDuration("1.5h"), 90min);
  EXPECT_EQ(*ParseDuration(".5s"), 500ms);
  EXPECT_EQ(*ParseDuration("2.s"), 2s);
  EXPECT_EQ(*ParseDuration("0.7s"), 700ms);
  EXPECT_EQ(*ParseDuration("1.0001s"), 1000ms);
  EXPECT_EQ(*ParseDuration("0.333333333333333333h"), 1199999ms);
  EXPECT_EQ(*ParseDuration("1.5"), 1500ms);
}

TEST(ParseDuration, RejectsGarbageNamingTheText) {
  for (std::string_view bad : {"", "+", "x", "m", "s5", "1d", "-5s", ".s", "1..5s", "1e3s", " 5s", "5s ", "1h 30m",
                               "1h30", "5sec", "0x10"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(d.status().message().find(fmt::format("{:?}", bad)), std::string::npos) << d.status().message();
  }
  EXPECT_NE(ParseDuration("1d").status().message().find("unknown unit \"d\""), std::string::npos);
}

// Overflow used to wrap silently (cli: n * 1000 in a long; ci: 9-digit parts summed unchecked).
TEST(ParseDuration, RejectsWhatDoesNotFitInNanoseconds) {
  for (std::string_view big : {"2562048h", "99999999999999999999", "9223372036854775808ms",
                               "2562047h2562047h", "9999999999999s"}) {
    auto d = ParseDuration(big);
    ASSERT_FALSE(d.ok()) << big;
    EXPECT_NE(d.status().message().find("too large"), std::string::npos) << d.status().message();
  }
}

}  // namespace
}  // namespace gantry
