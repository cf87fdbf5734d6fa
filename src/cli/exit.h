#pragma once
// Process exit codes, one map for every command (documented in docs/cli.md):
//   0  success;
//   1  the command ran and reports a failure or a difference it found: a sync or deploy that
//      failed, a pipeline step that failed, `gantry diff` finding a difference (as `kubectl diff`);
//   2  usage: bad flags or arguments, caught before anything ran;
//   3  environment: I/O, network, a refused credential, a bad input file or configuration;
//   4  blocked: the command is waiting for someone (an approval, a sync window).
//
// A command's run returns a Status (not an exit code): an outcome that is not an error but exits 1
// (`gantry diff` found a difference, `gantry update` skipped a file) is a Status with reason
// kReasonFailed whose message Report prints as the `error:` line saying why.

#include "base/status.h"

namespace gantry::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitError = 3;
inline constexpr int kExitBlocked = 4;

// The reason (Status::reason()) a command's run gives an error that is the operation's own
// failure rather than an environment error: exit 1.
inline constexpr std::string_view kReasonFailed = "Failed";
// The reason of an error that means "waiting for someone": exit 4.
inline constexpr std::string_view kReasonBlocked = "Blocked";

// The exit code for the outcome of a command's run: 0 for OK; 1 when the reason is kReasonFailed;
// 4 when it is kReasonBlocked; otherwise 3. Usage errors (2) are decided by validation, not here.
int ExitCode(const Status& status);

// Prints "error: MESSAGE" to `err` and returns ExitCode(status); for an OK status prints nothing
// and returns 0.
int Report(const Status& status, std::FILE* err);

// Prints "error: MESSAGE" to `err` and returns kExitUsage: for a failed validation.
int UsageError(const Status& status, std::FILE* err);

}  // namespace gantry::cli
