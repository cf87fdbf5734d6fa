// Names, transition rules, URL parsing and Open(): the parts of the store without a database.

#include "store/store.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "store/internal/sql.h"

namespace gantry::store {
namespace {

constexpr std::array<std::pair<TargetState, std::string_view>, 6> kTargetStates = {{
    {TargetState::kPending, "pending"},
    {TargetState::kApplying, "applying"},
    {TargetState::kHealthy, "healthy"},
    {TargetState::kFailed, "failed"},
    {TargetState::kRolledBack, "rolled_back"},
    {TargetState::kSuperseded, "superseded"},
}};
constexpr std::array<std::pair<RunState, std::string_view>, 8> kRunStates = {{
    {RunState::kQueued, "queued"},
    {RunState::kRunning, "running"},
    {RunState::kSucceeded, "succeeded"},
    {RunState::kFailed, "failed"},
    {RunState::kCancelled, "cancelled"},
    {RunState::kInterrupted, "interrupted"},
    {RunState::kSkipped, "skipped"},
    {RunState::kAwaitingApproval, "awaiting_approval"},
}};
constexpr std::array<std::pair<RunEvent, std::string_view>, 3> kRunEvents = {{
    {RunEvent::kPush, "push"},
    {RunEvent::kPullRequest, "pull_request"},
    {RunEvent::kManual, "manual"},
}};
constexpr std::array<std::pair<TokenKind, std::string_view>, 2> kTokenKinds = {{
    {TokenKind::kUser, "user"},
    {TokenKind::kRobot, "robot"},
}};
constexpr std::array<std::pair<SubjectKind, std::string_view>, 2> kSubjectKinds = {{
    {SubjectKind::kUser, "user"},
    {SubjectKind::kGroup, "group"},
}};

constexpr std::array<std::pair<NotificationState, std::string_view>, 3> kNotificationStates = {{
    {NotificationState::kPending, "pending"},
    {NotificationState::kDelivered, "delivered"},
    {NotificationState::kFailed, "failed"},
}};

template <typename E, size_t N>
std::string_view NameIn(const std::array<std::pair<E, std::string_view>, N>& table, E value) {
  for (const auto& [e, name] : table) {
    if (e == value) return name;
  }
  return "unknown";
}

template <typename E, size_t N>
std::optional<E> ParseIn(const std::array<std::pair<E, std::string_view>, N>& table,
                         std::string_view text) {
  for (const auto& [e, name] : table) {
    if (name == text) return e;
  }
  return std::nullopt;
}

constexpr std::string_view kSqliteScheme = "sqlite:";

}  // namespace

std::string_view Name(TargetState state) { return NameIn(kTargetStates, state); }
std::string_view Name(RunState state) { return NameIn(kRunStates, state); }
std::string_view Name(RunEvent event) { return NameIn(kRunEvents, event); }
std::optional<TargetState> ParseTargetState(std::string_view name) {
  return ParseIn(kTargetStates, name);
}
std::optional<RunState> ParseRunState(std::string_view name) { return ParseIn(kRunStates, name); }
std::optional<RunEvent> ParseRunEvent(std::string_view name) { return ParseIn(kRunEvents, name); }
std::string_view Name(NotificationState state) { return NameIn(kNotificationStates, state); }
std::optional<NotificationState> ParseNotificationState(std::string_view name) {
  return ParseIn(kNotificationStates, name);
}
std::string_view Name(TokenKind kind) { return NameIn(kTokenKinds, kind); }
std::string_view Name(SubjectKind kind) { return NameIn(kSubjectKinds, kind); }
std::optional<TokenKind> ParseTokenKind(std::string_view name) { return ParseIn(kTokenKinds, name); }
std::optional<SubjectKind> ParseSubjectKind(std::string_view name) {
  return ParseIn(kSubjectKinds, name);
}

std::string FormatLabels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

Result<Labels> ParseLabels(std::string_view text) {
  auto valid = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '/' || c == '-';
    });
  };
  Labels out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view entry = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) return InvalidArgumentError("label {:?}: expected KEY=VALUE", entry);
    std::string_view key = entry.substr(0, eq), value = entry.substr(eq + 1);
    if (!valid(key) || !valid(value)) {
      return InvalidArgumentError("label {:?}: keys and values are made of letters, digits and . _ / -", entry);
    }
    if (!out.emplace(key, value).second) return InvalidArgumentError("label {:?}: key {:?} is given twice", entry, key);
  }
  return out;
}

bool LabelsMatch(const Labels& wanted, const Labels& have) {
  return std::all_of(wanted.begin(), wanted.end(), [&](const auto& kv) {
    auto it = have.find(kv.first);
    return it != have.end() && it->second == kv.second;
  });
}

bool IsFinal(TargetState state) {
  return state == TargetState::kRolledBack || state == TargetState::kSuperseded;
}

bool IsFinal(RunState state) {
  return state == RunState::kSucceeded || state == RunState::kFailed ||
         state == RunState::kCancelled || state == RunState::kSkipped;
}

Status CheckTransition(TargetState from, TargetState to) {
  if (IsFinal(from)) {
    return FailedPreconditionError("target is {}, which is final; it cannot become {}", Name(from),
                                   Name(to));
  }
  return OkStatus();
}

Status CheckStepTransition(RunState from, RunState to) {
  if (IsFinal(from) && from != to) {
    return FailedPreconditionError("step is {}, which is final; it cannot become {}", Name(from),
                                   Name(to));
  }
  return OkStatus();
}

Status CheckRunTransition(RunState from, RunState to) {
  if (to == RunState::kSkipped) {
    return FailedPreconditionError("a run cannot be skipped, only a step");
  }
  if (IsFinal(from) && from != to) {
    return FailedPreconditionError("run is {}, which is final; it cannot become {}", Name(from),
                                   Name(to));
  }
  if (to == RunState::kAwaitingApproval && from != to) {
    return FailedPreconditionError("a run awaits approval only from its creation, not after {}",
                                   Name(from));
  }
  if (from == RunState::kAwaitingApproval && to != from && to != RunState::kCancelled) {
    return FailedPreconditionError(
        "run awaits approval; approve it (gantry runs approve ID) or cancel it before it can "
        "become {}",
        Name(to));
  }
  return OkStatus();
}

Result<Location> ParseUrl(std::string_view url) {
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return Location{Location::Kind::kPostgres, std::string(url)};
  }
  std::string_view path = url;
  if (url.starts_with(kSqliteScheme)) {
    path.remove_prefix(kSqliteScheme.size());
    if (path.starts_with("//")) {
      path.remove_prefix(2);  // sqlite:///abs/path → /abs/path
      if (!path.starts_with("/")) {
        return InvalidArgumentError(
            "store URL {}: sqlite:// takes an absolute path (sqlite:///var/lib/gantry.db) or use "
            "sqlite:relative.db",
            url);
      }
    }
    if (path.find('?') != std::string_view::npos) {
      return InvalidArgumentError("store URL {}: sqlite URLs take no parameters", url);
    }
  } else if (url.find("://") != std::string_view::npos) {
    return InvalidArgumentError(
        "store URL {}: unsupported scheme; use sqlite:///path, postgresql://... or a file path",
        RedactUrl(url));
  }
  if (path.empty() || path == ":memory:") {
    return InvalidArgumentError("store URL '{}': needs a database file path", url);
  }
  return Location{Location::Kind::kSqlite, std::string(path)};
}

std::string RedactUrl(std::string_view url) {
  std::string out(url);
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = out.find_first_of("/?", start);
    if (end == std::string::npos) end = out.size();
    size_t at = out.rfind('@', end);
    if (at != std::string::npos && at > start) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    size_t value = p + 9;
    size_t end = out.find('&', value);
    out.replace(value, (end == std::string::npos ? out.size() : end) - value, "***");
  }
  return out;
}

Result<std::unique_ptr<Store>> Open(std::string_view url, const Options& options) {
  GANTRY_ASSIGN_OR_RETURN(Location location, ParseUrl(url));
  if (location.kind == Location::Kind::kSqlite) {
    return internal::OpenSqlite(location.target, options);
  }
  return internal::OpenPostgres(location.target, options);
}

}  // namespace gantry::store
