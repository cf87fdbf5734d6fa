#include "project/cron.h"

#include "base/ascii.h"

#include <array>
#include <charconv>
#include <vector>

#include "base/status.h"

namespace gantry::project {
namespace {

using std::chrono::days;
using std::chrono::floor;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::sys_days;

struct FieldSpec {
  const char* name;
  int min, max;
  std::array<const char*, 8> names;  // names[k] is min + k ("jan" is 1, "sun" is 0)
};

constexpr FieldSpec kMinute{"minute", 0, 59, {}};
constexpr FieldSpec kHour{"hour", 0, 23, {}};
constexpr FieldSpec kDay{"day-of-month", 1, 31, {}};
constexpr FieldSpec kMonth{"month", 1, 12, {}};
constexpr FieldSpec kWeekday{"day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"}};
constexpr std::array<const char*, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                     "jul", "aug", "sep", "oct", "nov", "dec"};

Result<int> Number(const FieldSpec& f, std::string_view item, std::string_view text) {
  std::string lower = AsciiLower(text);
  if (&f == &kMonth) {
    for (size_t k = 0; k < kMonthNames.size(); ++k) {
      if (lower == kMonthNames[k]) return static_cast<int>(k + 1);
    }
  }
  if (&f == &kWeekday) {
    for (size_t k = 0; k < 7; ++k) {
      if (lower == f.names[k]) return static_cast<int>(k);
    }
  }
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    std::string hint = &f == &kMonth     ? " (a number 1-12 or jan..dec)"
                       : &f == &kWeekday ? " (a number 0-7 or sun..sat)"
                                         : "";
    return InvalidArgumentError("{} {:?}: {:?} is not a number{}", f.name, item, text, hint);
  }
  if (n < f.min || n > f.max) {
    return InvalidArgumentError("{} {} is out of range {}-{}", f.name, n, f.min, f.max);
  }
  return n;
}

// Sets the bits of one field; `star` reports whether it is unrestricted ("*" or "?").
template <size_t N>
Status ParseField(const FieldSpec& f, std::string_view field, std::bitset<N>& bits, bool& star) {
  star = field == "*" || field == "?" || field == "*/1";
  size_t start = 0;
  while (start <= field.size()) {
    size_t comma = std::min(field.find(',', start), field.size());
    std::string_view item = field.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) return InvalidArgumentError("{} {:?} has an empty list item", f.name, field);
    std::string_view range = item;
    int step = 1;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      std::string_view s = item.substr(slash + 1);
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size() || step <= 0) {
        return InvalidArgumentError("{} {:?}: the step must be a positive number", f.name, item);
      }
    }
    int lo = f.min, hi = f.max;
    if (range == "*" || range == "?") {
      if (&f == &kWeekday) hi = 6;  // 7 is Sunday again
    } else if (size_t dash = range.find('-'); dash != std::string_view::npos) {
      GANTRY_ASSIGN_OR_RETURN(lo, Number(f, item, range.substr(0, dash)));
      GANTRY_ASSIGN_OR_RETURN(hi, Number(f, item, range.substr(dash + 1)));
      if (&f == &kWeekday && hi == 0 && lo > 0) hi = 7;  // "fri-sun"
      if (lo > hi) return InvalidArgumentError("{} {:?}: the range runs backwards", f.name, item);
    } else {
      GANTRY_ASSIGN_OR_RETURN(lo, Number(f, item, range));
      hi = range.size() == item.size() ? lo : f.max;  // "5/10" is 5-max/10
      if (&f == &kWeekday && hi == 7 && range.size() != item.size()) hi = 6;
    }
    for (int v = lo; v <= hi; v += step) bits.set(static_cast<size_t>(&f == &kWeekday ? v % 7 : v));
  }
  return OkStatus();
}

int DaysIn(std::chrono::year y, unsigned month) {
  return static_cast<int>(static_cast<unsigned>((y / std::chrono::month(month) / std::chrono::last).day()));
}

}  // namespace

Result<Cron> Cron::Parse(std::string_view text) {
  std::string expanded(text);
  std::string lower = AsciiLower(text);
  if (lower == "@yearly" || lower == "@annually") expanded = "0 0 1 1 *";
  else if (lower == "@monthly") expanded = "0 0 1 * *";
  else if (lower == "@weekly") expanded = "0 0 * * 0";
  else if (lower == "@daily" || lower == "@midnight") expanded = "0 0 * * *";
  else if (lower == "@hourly") expanded = "0 * * * *";
  else if (lower.starts_with('@')) {
    return InvalidArgumentError("{:?} is not a descriptor (@yearly, @monthly, @weekly, @daily, @hourly)", text);
  }
  std::vector<std::string_view> fields;
  std::string_view rest = expanded;
  while (!rest.empty()) {
    size_t begin = rest.find_first_not_of(" \t");
    if (begin == std::string_view::npos) break;
    rest.remove_prefix(begin);
    size_t end = std::min(rest.find_first_of(" \t"), rest.size());
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end);
  }
  if (fields.size() != 5) {
    return InvalidArgumentError("{:?} has {} fields; a schedule has 5: minute hour day-of-month month day-of-week",
                                text, fields.size());
  }
  Cron c;
  c.text_ = std::string(text);
  bool unused = false;
  GANTRY_RETURN_IF_ERROR(ParseField(kMinute, fields[0], c.minutes_, unused));
  GANTRY_RETURN_IF_ERROR(ParseField(kHour, fields[1], c.hours_, unused));
  GANTRY_RETURN_IF_ERROR(ParseField(kDay, fields[2], c.days_, c.days_star_));
  GANTRY_RETURN_IF_ERROR(ParseField(kMonth, fields[3], c.months_, unused));
  GANTRY_RETURN_IF_ERROR(ParseField(kWeekday, fields[4], c.weekdays_, c.weekdays_star_));
  // Only day-of-month alone can make a schedule that never fires (every month has every weekday).
  if (!c.days_star_ && c.weekdays_star_) {
    bool fires = false;
    for (unsigned m = 1; m <= 12 && !fires; ++m) {
      if (!c.months_[m]) continue;
      int max_day = m == 2 ? 29 : DaysIn(std::chrono::year(2001), m);
      for (int d = 1; d <= max_day && !fires; ++d) fires = c.days_[static_cast<size_t>(d)];
    }
    if (!fires) return InvalidArgumentError("{:?} never fires: no month it names has the days it names", text);
  }
  return c;
}

bool Cron::DayMatches(std::chrono::year_month_day ymd) const {
  bool day = days_[static_cast<unsigned>(ymd.day())];
  bool weekday = weekdays_[std::chrono::weekday(sys_days(ymd)).c_encoding()];
  if (!days_star_ && !weekdays_star_) return day || weekday;
  return day && weekday;
}

bool Cron::Matches(Time t) const {
  auto minute = floor<minutes>(t);
  auto day = floor<days>(minute);
  std::chrono::year_month_day ymd(day);
  std::chrono::hh_mm_ss hms(minute - day);
  return months_[static_cast<unsigned>(ymd.month())] && DayMatches(ymd) &&
         hours_[static_cast<size_t>(hms.hours().count())] && minutes_[static_cast<size_t>(hms.minutes().count())];
}

Cron::Time Cron::Next(Time after) const {
  auto t = floor<minutes>(after) + minutes(1);
  const auto limit = t + days(366 * 9);
  while (t < limit) {
    auto day = floor<days>(t);
    std::chrono::year_month_day ymd(day);
    if (!months_[static_cast<unsigned>(ymd.month())]) {
      std::chrono::year_month next = ymd.year() / ymd.month() + std::chrono::months(1);
      t = sys_days(next / 1);
      continue;
    }
    if (!DayMatches(ymd)) {
      t = day + days(1);
      continue;
    }
    std::chrono::hh_mm_ss hms(t - day);
    auto h = static_cast<size_t>(hms.hours().count());
    if (!hours_[h]) {
      t = day + hours(h + 1);
      continue;
    }
    auto m = static_cast<size_t>(hms.minutes().count());
    while (m < 60 && !minutes_[m]) ++m;
    if (m == 60) {
      t = day + hours(h + 1);
      continue;
    }
    return day + hours(h) + minutes(m);
  }
  DieBecause("cron: no next time for \"" + text_ + "\" (Parse should have refused it)");
}

}  // namespace gantry::project
