#include "cli/exit.h"

#include <fmt/format.h>

namespace gantry::cli {

int ExitCode(const Status& status) {
  if (status.ok()) return kExitOk;
  if (status.reason() == kReasonFailed) return kExitFailed;
  if (status.reason() == kReasonBlocked) return kExitBlocked;
  return kExitError;
}

int Report(const Status& status, std::FILE* err) {
  if (status.ok()) return kExitOk;
  fmt::print(err, "error: {}\n", status.message());
  return ExitCode(status);
}

int UsageError(const Status& status, std::FILE* err) {
  fmt::print(err, "error: {}\n", status.message());
  return kExitUsage;
}

}  // namespace gantry::cli
