#pragma once
// Logging: leveled, thread-safe lines on stderr ("2026-11-28T22:40:01.123Z INFO sync: applied 12
// objects"). Messages are formatted with fmt before they reach the sink. Secrets never go into a
// log line: callers redact first (the kube and ci modules own their redaction).

#include <string_view>

#include <fmt/format.h>

namespace gantry::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

// Sets the minimum level written; default kInfo, or GANTRY_LOG_LEVEL (debug|info|warn|error|off).
void SetLevel(Level level);
Level GetLevel();
// Parses "debug", "info", "warn", "error", "off"; false when unknown.
bool ParseLevel(std::string_view text, Level* level);

void Write(Level level, std::string_view message);

template <typename... Args>
void Debug(fmt::format_string<Args...> f, Args&&... args) {
  if (GetLevel() <= Level::kDebug) Write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Info(fmt::format_string<Args...> f, Args&&... args) {
  if (GetLevel() <= Level::kInfo) Write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Warn(fmt::format_string<Args...> f, Args&&... args) {
  if (GetLevel() <= Level::kWarn) Write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Error(fmt::format_string<Args...> f, Args&&... args) {
  if (GetLevel() <= Level::kError) Write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gantry::log
