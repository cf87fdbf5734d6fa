#include "project/cron.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace gantry::project {
namespace {

using namespace std::chrono;

// "2028-01-02T10:07" -> that minute, UTC.
system_clock::time_point TimeAt(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  GANTRY_CHECK(std::sscanf(std::string(s).c_str(), "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) == 5);
  return sys_days(year(y) / month(static_cast<unsigned>(mo)) / day(static_cast<unsigned>(d))) + hours(h) + minutes(mi);
}

Cron MustParseCron(std::string_view text) {
  auto c = Cron::Parse(text);
  GANTRY_CHECK(c.ok());
  return *c;
}

struct NextCase {
  const char* schedule;
  const char* after;
  const char* next;
};

TEST(Cron, Next) {
  // 2028-01-01 is a Saturday; 2028 is a leap year.
  const NextCase cases[] = {
      {"* * * * *", "2028-01-01T10:07", "2028-01-01T10:08"},
      {"*/15 * * * *", "2028-01-01T10:07", "2028-01-01T10:15"},
      {"*/15 * * * *", "2028-01-01T10:45", "2028-01-01T11:00"},
      {"5/20 * * * *", "2028-01-01T10:30", "2028-01-01T10:45"},
      {"0 8-18/5 * * *", "2028-01-01T13:00", "2028-01-01T18:00"},
      {"0 8-18/5 * * *", "2028-01-01T18:00", "2028-01-02T08:00"},
      {"30 9-17 * * 1-5", "2028-01-01T00:00", "2028-01-03T09:30"},  // Saturday -> Monday
      {"0 22 * * *", "2028-01-01T22:00", "2028-01-02T22:00"},        // strictly after
      {"0 0 1 jan,JUL *", "2028-01-01T00:00", "2028-07-01T00:00"},
      {"0 0 * * mon-fri", "2028-01-01T00:00", "2028-01-03T00:00"},
      {"0 0 * * fri-sun", "2028-01-03T00:00", "2028-01-07T00:00"},
      {"0 0 * * 0", "2028-01-01T00:00", "2028-01-02T00:00"},  // Sunday as 0
      {"0 0 * * 7", "2028-01-01T00:00", "2028-01-02T00:00"},  // and as 7
      {"0 0 * * SUN", "2028-01-01T00:00", "2028-01-02T00:00"},
      // Month ends and leap days.
      {"0 0 31 * *", "2028-02-01T00:00", "2028-03-31T00:00"},
      {"0 0 29 2 *", "2028-03-01T00:00", "2032-02-29T00:00"},
      {"59 23 31 12 *", "2028-12-31T23:59", "2029-12-31T23:59"},
      // Day of month OR day of week when both are restricted: the 13th, or a Friday.
      {"0 0 13 * 5", "2028-01-01T00:00", "2028-01-07T00:00"},
      {"0 0 13 * 5", "2028-01-07T00:00", "2028-01-13T00:00"},
      // Only one restricted: it alone decides.
      {"0 0 13 * *", "2028-01-01T00:00", "2028-01-13T00:00"},
      {"0 0 * * 5", "2028-01-07T00:00", "2028-01-14T00:00"},
      // "*/2" restricts (robfig/cron), so OR applies: odd days or Mondays (Jan 10 is an even Monday).
      {"0 0 */2 * 1", "2028-01-09T00:00", "2028-01-10T00:00"},
      {"0 0 */2 * 1", "2028-01-03T00:00", "2028-01-05T00:00"},
      {"@daily", "2028-01-01T10:00", "2028-01-02T00:00"},
      {"@hourly", "2028-01-01T10:00", "2028-01-01T11:00"},
      {"@weekly", "2028-01-01T10:00", "2028-01-02T00:00"},
      {"@monthly", "2028-01-01T00:00", "2028-02-01T00:00"},
      {"@yearly", "2028-01-01T00:00", "2029-01-01T00:00"},
  };
  for (const auto& c : cases) {
    auto cron = Cron::Parse(c.schedule);
    ASSERT_TRUE(cron.ok()) << c.schedule << ": " << cron.status().ToString();
    EXPECT_EQ(Rfc3339(cron->Next(TimeAt(c.after))), Rfc3339(TimeAt(c.next))) << c.schedule << " after " << c.after;
    EXPECT_TRUE(cron->Matches(TimeAt(c.next))) << c.schedule;
  }
}

TEST(Cron, NextFromTheMiddleOfAMinute) {
  Cron c = MustParseCron("*/10 * * * *");
  EXPECT_EQ(c.Next(TimeAt("2028-01-01T10:09") + seconds(59)), TimeAt("2028-01-01T10:10"));
  EXPECT_EQ(c.Next(TimeAt("2028-01-01T10:10") + seconds(1)), TimeAt("2028-01-01T10:20"));
  EXPECT_TRUE(c.Matches(TimeAt("2028-01-01T10:10") + seconds(30)));
}

TEST(Cron, Matches) {
  Cron c = MustParseCron("0 9-17 * * mon-fri");
  EXPECT_TRUE(c.Matches(TimeAt("2028-01-03T09:00")));
  EXPECT_TRUE(c.Matches(TimeAt("2028-01-03T17:00")));
  EXPECT_FALSE(c.Matches(TimeAt("2028-01-03T18:00")));
  EXPECT_FALSE(c.Matches(TimeAt("2028-01-02T09:00")));  // Sunday
  EXPECT_FALSE(c.Matches(TimeAt("2028-01-03T09:01")));
}

TEST(Cron, Errors) {
  const std::pair<const char*, const char*> cases[] = {
      {"* * * *", "\"* * * *\" has 4 fields; a schedule has 5: minute hour day-of-month month day-of-week"},
      {"* * * * * *", "\"* * * * * *\" has 6 fields; a schedule has 5: minute hour day-of-month month day-of-week"},
      {"60 * * * *", "minute 60 is out of range 0-59"},
      {"0 24 * * *", "hour 24 is out of range 0-23"},
      {"0 0 0 * *", "day-of-month 0 is out of range 1-31"},
      {"0 0 * 13 *", "month 13 is out of range 1-12"},
      {"0 0 * * 8", "day-of-week 8 is out of range 0-7"},
      {"0 17-9 * * *", "hour \"17-9\": the range runs backwards"},
      {"*/0 * * * *", "minute \"*/0\": the step must be a positive number"},
      {"*/x * * * *", "minute \"*/x\": the step must be a positive number"},
      {"0 0 * foo *", "month \"foo\": \"foo\" is not a number (a number 1-12 or jan..dec)"},
      {"0 0 * * funday", "day-of-week \"funday\": \"funday\" is not a number (a number 0-7 or sun..sat)"},
      {"0 0 L * *", "day-of-month \"L\": \"L\" is not a number"},
      {"0,,5 * * * *", "minute \"0,,5\" has an empty list item"},
      {"0 0 30 feb *", "\"0 0 30 feb *\" never fires: no month it names has the days it names"},
      {"0 0 31 apr,jun,sep,nov *", "\"0 0 31 apr,jun,sep,nov *\" never fires: no month it names has the days it names"},
      {"@reboot", "\"@reboot\" is not a descriptor (@yearly, @monthly, @weekly, @daily, @hourly)"},
  };
  for (const auto& [schedule, message] : cases) {
    auto c = Cron::Parse(schedule);
    ASSERT_FALSE(c.ok()) << schedule;
    EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(c.status().message(), message) << schedule;
  }
  // Both days restricted: 30 Feb never comes, but Fridays in February do.
  EXPECT_TRUE(Cron::Parse("0 0 30 feb fri").ok());
}

}  // namespace
}  // namespace gantry::project
