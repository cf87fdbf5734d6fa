#pragma once
// Process spawning: always an argv vector handed to execve, never a shell string.
//
// Run() starts a program, feeds it optional stdin, captures stdout and stderr (bounded), and waits
// with an optional timeout. The child runs in its own process group, so a timeout or Kill() ends the
// whole tree it started. The environment is exactly what the caller passes (a clean environment by
// default) unless inherit_env is set. The child inherits no descriptor but 0, 1 and 2 and the ones
// listed in `pass_fds` (whatever the parent left open, close-on-exec or not: a server's listening
// socket and client connections must never reach a build step). Thread-safe: concurrent Run()
// calls share nothing.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "base/status.h"

namespace gantry {

struct ProcessOptions {
  // Variables of the child. With inherit_env, these override the parent's environment.
  std::map<std::string, std::string> env;
  bool inherit_env = false;
  std::string cwd;                     // empty: the parent's working directory
  std::optional<std::string> stdin_data;  // empty: /dev/null
  bool capture_stdout = true;          // false: the child writes to the parent's stdout
  bool capture_stderr = true;          // false: the child writes to the parent's stderr
  bool merge_stderr = false;           // stderr goes to the captured stdout
  size_t max_output_bytes = 64 << 20;  // beyond this the output is truncated (flag set)
  std::optional<std::chrono::milliseconds> timeout;  // then the process group is killed
  // Descriptors the child gets as 3, 4, ... in this order (the caller keeps its own copies).
  std::vector<int> pass_fds;
  // Resource limits set in the child before exec (resource → soft and hard limit), e.g.
  // {RLIMIT_AS, 1 << 30}.
  std::vector<std::pair<int, uint64_t>> rlimits;
  bool die_with_parent = false;  // SIGKILL the child when the thread that started it exits
  // A cgroup's cgroup.procs file the child moves itself into before exec (base/sandbox.h
  // PidsCgroup); failing to is failing to start.
  std::string cgroup_procs;
  // (uid, gid) the child switches to before exec, with no supplementary groups (needs root).
  std::optional<std::pair<uint32_t, uint32_t>> user;
};

struct ProcessResult {
  int exit_code = -1;    // when the process exited
  int term_signal = 0;   // when it was killed by a signal
  bool timed_out = false;
  bool output_truncated = false;
  std::string out;
  std::string err;
  std::chrono::milliseconds duration{0};

  bool success() const { return exit_code == 0 && term_signal == 0 && !timed_out; }
  // "exit code 2", "killed by signal 9 (timed out after 30s)", ...
  std::string Describe() const;
};

// Runs argv[0] (looked up in PATH when it has no '/') to completion.
// Fails (the Result, not the process) only when the program cannot be started: NotFound when it does
// not exist, PermissionDenied when it is not executable. A non-zero exit is reported in ProcessResult.
Result<ProcessResult> Run(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// Like Run(), but a process that does not succeed becomes an error whose message names the program,
// its exit, and the last lines of its stderr.
Result<ProcessResult> RunChecked(const std::vector<std::string>& argv,
                                 const ProcessOptions& options = {});

// A long-running child (a server, a watcher). Owns the process: the destructor kills its process
// group and reaps it. Not thread-safe.
class Process {
 public:
  // Starts argv with stdout/stderr appended to log_path (or inherited when empty).
  static Result<Process> Start(const std::vector<std::string>& argv, const ProcessOptions& options,
                               const std::string& log_path = "");
  // Starts argv with its stdout and stderr merged into a pipe; *output receives the read end
  // (close-on-exec; the caller closes it). Options' capture flags are ignored.
  static Result<Process> StartPiped(const std::vector<std::string>& argv, const ProcessOptions& options,
                                    int* output);
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  bool Running();
  // The wait status once the process has ended (after Running() returned false, or Stop()).
  std::optional<int> status() const { return status_; }
  // Sends `signal` to the whole process group.
  void Signal(int signal);
  // SIGTERM to the group, then SIGKILL after `grace`; waits for the exit. Returns the exit status.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Finds `program` in PATH; NotFound with the searched PATH otherwise.
Result<std::string> FindProgram(const std::string& program);

}  // namespace gantry
