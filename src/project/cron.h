#pragma once
// Cron schedules of sync windows: five fields (minute hour day-of-month month day-of-week) as in
// crontab(5) and robfig/cron (which Argo CD uses), evaluated in UTC. Pure; thread-safe.
//
// A field is a comma-separated list of items: `*`, `N`, `N-M`, each optionally with a step `/S`
// (`*/15`, `8-18/2`, `5/10` = 5-max/10). Months may be written jan..dec and days of the week
// sun..sat (any case); day of week 0 and 7 are both Sunday. `?` is `*`. The descriptors @yearly
// (@annually), @monthly, @weekly, @daily (@midnight) and @hourly stand for their usual schedules.
// Day rule (as in cron): when both day-of-month and day-of-week are restricted (neither is `*`), a
// day matches when either matches; otherwise both must (so an unrestricted one does not widen the
// other). A field is unrestricted only when it is `*` or `?` — `*/2` restricts, as in robfig/cron.

#include <bitset>
#include <chrono>
#include <string>
#include <string_view>

#include "base/status.h"

namespace gantry::project {

class Cron {
 public:
  using Time = std::chrono::system_clock::time_point;

  // InvalidArgument naming the field and the item for: not five fields, a value out of range
  // ("minute 60 is out of range 0-59"), a reversed range, a zero step, an unknown name, and a
  // schedule that never fires ("0 0 30 feb *"). The message does not name the schedule's source.
  static Result<Cron> Parse(std::string_view text);

  // Whether the minute containing `t` is one of the schedule's.
  bool Matches(Time t) const;
  // The first matching minute strictly after `after` (Parse refuses schedules that never fire,
  // so there always is one, at most eight years on: Feb 29).
  Time Next(Time after) const;

  const std::string& text() const { return text_; }

 private:
  bool DayMatches(std::chrono::year_month_day ymd) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;    // 1..31
  std::bitset<13> months_;  // 1..12
  std::bitset<7> weekdays_;  // 0..6, Sunday 0
  bool days_star_ = false;
  bool weekdays_star_ = false;
};

}  // namespace gantry::project
