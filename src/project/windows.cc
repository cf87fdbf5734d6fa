// Sync windows: which apply to a scope, when they are active, when a closed one opens, and the
// overlap rule checked at load.

#include <algorithm>

#include "base/clock.h"
#include "project/cron.h"
#include "project/glob.h"
#include "project/internal/windows.h"
#include "project/project.h"

namespace gantry::project {
namespace {

using Time = std::chrono::system_clock::time_point;
using std::chrono::minutes;

// A window with its schedule parsed (ParseProject validated it; a Window built in code with a bad
// schedule is a programmer error).
struct Live {
  const Window* w;
  Cron cron;
  minutes d;
};

Live Prepare(const Window& w) {
  auto cron = Cron::Parse(w.schedule);
  if (!cron.ok()) DieBecause("sync window " + internal::WindowName(w) + ": " + cron.status().message());
  if (w.duration <= minutes(0)) DieBecause("sync window " + internal::WindowName(w) + ": duration is not positive");
  return Live{&w, *std::move(cron), w.duration};
}

// The start of the activation of `l` that covers `t`, if one does (the latest start s <= t with
// t < s + d): the first start after t - d is it when it is not after t.
std::optional<Time> ActiveSince(const Live& l, Time t) {
  Time s = l.cron.Next(t - l.d);
  if (s <= t) return s;
  return std::nullopt;
}

// When `l`, active at t, stops being active: activations that start before (or as) the current
// one ends are merged. Stops looking at `horizon`.
Time ActiveUntil(const Live& l, Time t, Time horizon) {
  Time start = *ActiveSince(l, t);
  Time end = start + l.d;
  for (Time s = l.cron.Next(start); s <= end && end < horizon; s = l.cron.Next(s)) end = std::max(end, s + l.d);
  return end;
}

bool AnyMatch(const std::vector<std::string>& globs, std::string_view a, std::string_view b = {}) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (GlobMatch(g, a) || (!b.empty() && GlobMatch(g, b))) return true;
  }
  return false;
}

bool Applies(const Window& w, const WindowScope& s) {
  return AnyMatch(w.environments, s.environment) && AnyMatch(w.applications, s.application) &&
         AnyMatch(w.clusters, s.cluster, s.cluster_server) && AnyMatch(w.namespaces, s.namespace_);
}

bool ListsIntersect(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.empty() || b.empty()) return true;
  for (const auto& x : a) {
    for (const auto& y : b) {
      if (GlobsIntersect(x, y)) return true;
    }
  }
  return false;
}

bool ScopesIntersect(const Window& a, const Window& b) {
  return ListsIntersect(a.environments, b.environments) && ListsIntersect(a.applications, b.applications) &&
         ListsIntersect(a.clusters, b.clusters) && ListsIntersect(a.namespaces, b.namespaces);
}

struct Interval {
  Time begin, end;
};

// The merged activations of `l` that intersect [from, to), in order, clipped to it.
std::vector<Interval> Activations(const Live& l, Time from, Time to) {
  std::vector<Interval> out;
  for (Time s = l.cron.Next(from - l.d); s < to; s = l.cron.Next(s)) {
    Time begin = std::max(s, from), end = std::min(s + l.d, to);
    if (!out.empty() && begin <= out.back().end) {
      out.back().end = std::max(out.back().end, end);
    } else {
      out.push_back({begin, end});
    }
  }
  return out;
}

// Where a and b (each sorted and disjoint) first intersect.
std::optional<Time> FirstIntersection(const std::vector<Interval>& a, const std::vector<Interval>& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    Time begin = std::max(a[i].begin, b[j].begin), end = std::min(a[i].end, b[j].end);
    if (begin < end) return begin;
    if (a[i].end < b[j].end) ++i;
    else ++j;
  }
  return std::nullopt;
}

std::string FormatMinutes(minutes d) {
  auto h = d.count() / 60, m = d.count() % 60;
  if (h == 0) return fmt::format("{}m", m);
  return m == 0 ? fmt::format("{}h", h) : fmt::format("{}h{}m", h, m);
}

// What blocks a sync at t (empty: nothing). Denies first; else the applying allow windows when
// none of them is active.
struct Blocking {
  std::vector<const Live*> denies;  // active
  std::vector<const Live*> allows;  // applying, none active
  bool blocked() const { return !denies.empty() || !allows.empty(); }
};

Blocking BlockingAt(const std::vector<Live>& windows, Time t) {
  Blocking b;
  bool any_allow_active = false;
  std::vector<const Live*> allows;
  for (const Live& l : windows) {
    bool active = ActiveSince(l, t).has_value();
    if (l.w->kind == WindowKind::kDeny) {
      if (active) b.denies.push_back(&l);
    } else {
      allows.push_back(&l);
      any_allow_active = any_allow_active || active;
    }
  }
  if (!any_allow_active) b.allows = std::move(allows);
  return b;
}

}  // namespace

namespace internal {

std::string WindowName(const Window& w) {
  std::string name = fmt::format("{} {:?} {}", w.kind == WindowKind::kDeny ? "deny" : "allow", w.schedule,
                                 FormatMinutes(w.duration));
  if (!w.source.empty()) name += " (" + w.source + ")";
  return name;
}

Status CheckWindowOverlaps(const Project& p) {
  using namespace std::chrono;
  const Time from = sys_days(year(2028) / January / 1);
  const Time to = from + days(366);
  std::vector<std::optional<std::vector<Interval>>> cache(p.windows.size());
  auto activations = [&](size_t i) -> const std::vector<Interval>& {
    if (!cache[i]) cache[i] = Activations(Prepare(p.windows[i]), from, to);
    return *cache[i];
  };
  for (size_t i = 0; i < p.windows.size(); ++i) {
    for (size_t j = i + 1; j < p.windows.size(); ++j) {
      const Window &a = p.windows[i], &b = p.windows[j];
      if (a.kind == b.kind || !ScopesIntersect(a, b)) continue;
      if (auto at = FirstIntersection(activations(i), activations(j))) {
        std::string where = b.source.empty() ? "" : b.source + ": ";
        return InvalidArgumentError(
            "{}project {}: sync windows overlap: {} and {} could apply to the same application and are both "
            "active at {}; make their schedules or their scopes disjoint",
            where, p.name, WindowName(a), WindowName(b), Rfc3339(*at));
      }
    }
  }
  return OkStatus();
}

}  // namespace internal

WindowDecision CheckWindows(const Project& p, const WindowScope& scope, Time now, bool manual) {
  std::vector<Live> windows;
  for (const Window& w : p.windows) {
    if (Applies(w, scope)) windows.push_back(Prepare(w));
  }
  WindowDecision d;
  Blocking b = BlockingAt(windows, now);
  if (!b.blocked()) return d;

  // Every window in the way must allow a manual sync for one to pass.
  std::vector<const Live*> blockers = b.denies;
  blockers.insert(blockers.end(), b.allows.begin(), b.allows.end());
  bool overridable = std::all_of(blockers.begin(), blockers.end(), [](const Live* l) { return l->w->manual_sync; });
  std::string what =
      !b.denies.empty()
          ? fmt::format("sync window {} is active", internal::WindowName(*blockers[0]->w))
          : fmt::format("no allow sync window is active ({} applies)", internal::WindowName(*blockers[0]->w));
  if (blockers.size() > 1) what += fmt::format(" (and {} more window{})", blockers.size() - 1, blockers.size() > 2 ? "s" : "");
  if (manual && overridable) {
    d.manual_override = true;
    d.message = fmt::format("project {}: manual sync overrides: {} (manualSync: true)", p.name, what);
    return d;
  }
  d.allowed = false;

  // The next time nothing blocks: jump to the end of the active denies, or to the next start of
  // an applying allow window, until neither is needed.
  const Time horizon = now + std::chrono::days(366);
  Time t = now;
  for (int step = 0; step < 10'000 && t < horizon; ++step) {
    Blocking at = step == 0 ? b : BlockingAt(windows, t);
    if (!at.blocked()) {
      d.opens_at = t;
      break;
    }
    if (!at.denies.empty()) {
      Time end = t;
      for (const Live* l : at.denies) end = std::max(end, ActiveUntil(*l, t, horizon));
      t = end;
    } else {
      Time next = horizon;
      for (const Live* l : at.allows) next = std::min(next, l->cron.Next(t));
      t = next;
    }
  }
  d.message = fmt::format("project {}: {}; {}", p.name, what,
                          d.opens_at ? "syncs open at " + Rfc3339(*d.opens_at) : "no sync opens within a year");
  if (manual) d.message += "; a manual sync may not override it (manualSync is not true)";
  return d;
}

Status ToStatus(const WindowDecision& d) {
  if (d.allowed) return OkStatus();
  return FailedPreconditionError("{}", d.message).set_reason(kReasonOutsideWindow);
}

}  // namespace gantry::project
