#include "base/process.h"

#include "base/fd.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern char** environ;

namespace gantry {
namespace {

using SteadyClock = std::chrono::steady_clock;

Result<std::pair<Fd, Fd>> MakePipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  return std::pair<Fd, Fd>{Fd(p[0]), Fd(p[1])};
}

std::vector<std::string> BuildEnv(const ProcessOptions& options) {
  std::map<std::string, std::string> env;
  if (options.inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      size_t eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Everything the child needs, prepared before fork so the child only calls async-signal-safe
// functions.
struct ChildSetup {
  std::string path;
  std::vector<std::string> argv_storage, env_storage;
  std::vector<char*> argv, envp;
  std::string cwd;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  std::vector<int> pass_fds;
  std::vector<std::pair<int, uint64_t>> rlimits;
  bool die_with_parent = false;
  std::string cgroup_procs;
  std::optional<std::pair<uint32_t, uint32_t>> user;
};

// Closes every descriptor from `first` up. close_range(2) where the kernel has it (5.9+), else one
// close() per possible descriptor. Async-signal-safe.
void CloseFrom(int first) {
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
  struct rlimit rl;
  long max = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? static_cast<long>(rl.rlim_cur) : 65536;
  for (long fd = first; fd < max; ++fd) ::close(static_cast<int>(fd));
}

[[noreturn]] void ChildFail(int error_pipe, int err) {
  (void)!::write(error_pipe, &err, sizeof(err));
  ::_exit(127);
}

[[noreturn]] void ExecChild(const ChildSetup& s, int error_pipe) {
  ::setpgid(0, 0);
  if (s.die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Restore default signal dispositions and an empty mask for the new program.
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGQUIT}) ::signal(sig, SIG_DFL);
  if (s.stdin_fd >= 0 && ::dup2(s.stdin_fd, 0) < 0) ChildFail(error_pipe, errno);
  if (s.stdout_fd >= 0 && ::dup2(s.stdout_fd, 1) < 0) ChildFail(error_pipe, errno);
  if (s.stderr_fd >= 0 && ::dup2(s.stderr_fd, 2) < 0) ChildFail(error_pipe, errno);
  if (!s.cwd.empty() && ::chdir(s.cwd.c_str()) != 0) ChildFail(error_pipe, errno);
  for (const auto& [resource, value] : s.rlimits) {
    struct rlimit rl = {static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
    if (::setrlimit(resource, &rl) != 0) ChildFail(error_pipe, errno);
  }
  if (!s.cgroup_procs.empty()) {
    int fd = ::open(s.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0\n", 2) != 2) ChildFail(error_pipe, errno);
    ::close(fd);
  }
  if (s.user) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(s.user->second) != 0 || ::setuid(s.user->first) != 0) {
      ChildFail(error_pipe, errno);
    }
    if (s.die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a change of uid clears it
  }
  // Nothing of the parent's but what was asked for: pass_fds become 3, 4, ..., the error pipe
  // moves above them (it is close-on-exec), everything else is closed.
  const int n = static_cast<int>(s.pass_fds.size());
  int high[16];
  if (n > 16) ChildFail(error_pipe, EMFILE);
  int err_fd = ::fcntl(error_pipe, F_DUPFD_CLOEXEC, 3 + n);
  if (err_fd < 0) ChildFail(error_pipe, errno);
  for (int i = 0; i < n; ++i) {
    high[i] = ::fcntl(s.pass_fds[i], F_DUPFD_CLOEXEC, 3 + n + 1);
    if (high[i] < 0) ChildFail(err_fd, errno);
  }
  for (int i = 0; i < n; ++i) {
    if (::dup2(high[i], 3 + i) < 0) ChildFail(err_fd, errno);
  }
  if (::dup2(err_fd, 3 + n) < 0) ChildFail(err_fd, errno);
  ::fcntl(3 + n, F_SETFD, FD_CLOEXEC);
  CloseFrom(3 + n + 1);
  ::execve(s.path.c_str(), s.argv.data(), s.envp.data());
  ChildFail(3 + n, errno);
}

Result<ChildSetup> Prepare(const std::vector<std::string>& argv, const ProcessOptions& options) {
  if (argv.empty() || argv[0].empty()) return InvalidArgumentError("run: empty argv");
  ChildSetup s;
  if (argv[0].find('/') != std::string::npos) {
    s.path = argv[0];
  } else {
    GANTRY_ASSIGN_OR_RETURN(s.path, FindProgram(argv[0]));
  }
  s.argv_storage = argv;
  s.env_storage = BuildEnv(options);
  s.argv = CStrings(s.argv_storage);
  s.envp = CStrings(s.env_storage);
  s.cwd = options.cwd;
  s.pass_fds = options.pass_fds;
  s.rlimits = options.rlimits;
  s.die_with_parent = options.die_with_parent;
  s.cgroup_procs = options.cgroup_procs;
  s.user = options.user;
  if (s.pass_fds.size() > 16) return InvalidArgumentError("run: at most 16 descriptors can be passed");
  return s;
}

// Forks and execs; returns the pid once the exec succeeded, or the exec's errno as an error.
Result<pid_t> ForkExec(const ChildSetup& s) {
  GANTRY_ASSIGN_OR_RETURN(auto err_pipe, MakePipe());
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) ExecChild(s, err_pipe.second.get());
  ::setpgid(pid, pid);  // also in the parent, so a signal right after fork reaches the group
  err_pipe.second.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe.first.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(child_errno)) {
    int status;
    ::waitpid(pid, &status, 0);
    return ErrnoError(child_errno, "start " + s.path);
  }
  return pid;
}

void FillExit(int status, ProcessResult& r) {
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
}

std::string LastLines(std::string_view text, int n) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.empty()) return "";
  size_t pos = text.size();
  for (int i = 0; i < n && pos != std::string_view::npos && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
  }
  return std::string(pos == std::string_view::npos ? text : text.substr(pos + 1));
}

}  // namespace

std::string ProcessResult::Describe() const {
  std::string s;
  if (term_signal != 0) {
    s = fmt::format("killed by signal {} ({})", term_signal, ::strsignal(term_signal));
  } else {
    s = fmt::format("exit code {}", exit_code);
  }
  if (timed_out) s += fmt::format(" (timed out after {} ms)", duration.count());
  return s;
}

Result<std::string> FindProgram(const std::string& program) {
  const char* path_env = std::getenv("PATH");
  std::string_view path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = path.find(':');
    std::string_view dir = path.substr(0, colon);
    if (!dir.empty()) {
      std::string candidate = std::string(dir) + "/" + program;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return NotFoundError("program {:?} not found in PATH ({})", program,
                       path_env ? path_env : "unset");
}

Result<ProcessResult> Run(const std::vector<std::string>& argv, const ProcessOptions& options) {
  GANTRY_ASSIGN_OR_RETURN(ChildSetup setup, Prepare(argv, options));
  Fd in_r, in_w, out_r, out_w, err_r, err_w, devnull;
  if (options.stdin_data) {
    GANTRY_ASSIGN_OR_RETURN(auto p, MakePipe());
    in_r = std::move(p.first);
    in_w = std::move(p.second);
    setup.stdin_fd = in_r.get();
  } else {
    devnull = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    setup.stdin_fd = devnull.get();
  }
  if (options.capture_stdout) {
    GANTRY_ASSIGN_OR_RETURN(auto p, MakePipe());
    out_r = std::move(p.first);
    out_w = std::move(p.second);
    setup.stdout_fd = out_w.get();
  }
  if (options.merge_stderr) {
    setup.stderr_fd = setup.stdout_fd >= 0 ? setup.stdout_fd : 1;
  } else if (options.capture_stderr) {
    GANTRY_ASSIGN_OR_RETURN(auto p, MakePipe());
    err_r = std::move(p.first);
    err_w = std::move(p.second);
    setup.stderr_fd = err_w.get();
  }

  const auto start = SteadyClock::now();
  GANTRY_ASSIGN_OR_RETURN(pid_t pid, ForkExec(setup));
  in_r.reset();
  out_w.reset();
  err_w.reset();

  ProcessResult result;
  std::string_view to_write = options.stdin_data ? std::string_view(*options.stdin_data) : "";
  if (in_w.get() >= 0) {
    ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
    if (to_write.empty()) in_w.reset();
  }
  const auto deadline = options.timeout ? start + *options.timeout : SteadyClock::time_point::max();
  char buf[65536];
  while (out_r.get() >= 0 || err_r.get() >= 0 || in_w.get() >= 0) {
    pollfd fds[3];
    int n = 0;
    if (out_r.get() >= 0) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r.get() >= 0) fds[n++] = {err_r.get(), POLLIN, 0};
    if (in_w.get() >= 0) fds[n++] = {in_w.get(), POLLOUT, 0};
    int wait_ms = -1;
    if (options.timeout) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int rc = ::poll(fds, n, wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0 || (options.timeout && SteadyClock::now() >= deadline)) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_w.get()) {
        ssize_t w = ::write(in_w.get(), to_write.data(), to_write.size());
        if (w > 0) to_write.remove_prefix(static_cast<size_t>(w));
        if ((w < 0 && errno != EAGAIN) || to_write.empty()) in_w.reset();
        continue;
      }
      Fd& src = fds[i].fd == out_r.get() ? out_r : err_r;
      std::string& dst = fds[i].fd == out_r.get() ? result.out : result.err;
      ssize_t r = ::read(src.get(), buf, sizeof(buf));
      if (r > 0) {
        size_t room = options.max_output_bytes > dst.size() ? options.max_output_bytes - dst.size() : 0;
        if (static_cast<size_t>(r) > room) result.output_truncated = true;
        dst.append(buf, std::min(room, static_cast<size_t>(r)));
      } else if (r == 0 || errno != EINTR) {
        src.reset();
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Children the program left behind in its group must not outlive it when it timed out.
  if (result.timed_out) ::kill(-pid, SIGKILL);
  FillExit(status, result);
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
  return result;
}

Result<ProcessResult> RunChecked(const std::vector<std::string>& argv, const ProcessOptions& options) {
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, Run(argv, options));
  if (r.success()) return r;
  std::string tail = LastLines(r.err.empty() ? r.out : r.err, 5);
  Code code = r.timed_out ? Code::kDeadlineExceeded : Code::kUnknown;
  return Status(code, fmt::format("{} failed: {}{}{}", argv[0], r.Describe(), tail.empty() ? "" : ": ",
                                  tail));
}

Result<Process> Process::Start(const std::vector<std::string>& argv, const ProcessOptions& options,
                               const std::string& log_path) {
  GANTRY_ASSIGN_OR_RETURN(ChildSetup setup, Prepare(argv, options));
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd log;
  setup.stdin_fd = devnull.get();
  if (!log_path.empty()) {
    log = Fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (log.get() < 0) return ErrnoError(errno, "open log " + log_path);
    setup.stdout_fd = setup.stderr_fd = log.get();
  }
  GANTRY_ASSIGN_OR_RETURN(pid_t pid, ForkExec(setup));
  return Process(pid);
}

Result<Process> Process::StartPiped(const std::vector<std::string>& argv, const ProcessOptions& options,
                                    int* output) {
  GANTRY_ASSIGN_OR_RETURN(ChildSetup setup, Prepare(argv, options));
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  GANTRY_ASSIGN_OR_RETURN(auto pipe, MakePipe());
  setup.stdin_fd = devnull.get();
  setup.stdout_fd = setup.stderr_fd = pipe.second.get();
  GANTRY_ASSIGN_OR_RETURN(pid_t pid, ForkExec(setup));
  *output = pipe.first.release();
  return Process(pid);
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(std::move(other.status_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::move(other.status_);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0) Stop(std::chrono::milliseconds(2000));
}

bool Process::Running() {
  if (pid_ <= 0 || status_) return false;
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = status;
    return false;
  }
  return true;
}

void Process::Signal(int signal) {
  if (pid_ > 0) ::kill(-pid_, signal);
}

int Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  if (Running()) {
    Signal(SIGTERM);
    const auto deadline = SteadyClock::now() + grace;
    while (Running() && SteadyClock::now() < deadline) ::usleep(10000);
    if (Running()) {
      Signal(SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
    }
  }
  Signal(SIGKILL);  // whatever the program left in its group
  pid_ = -1;
  return status_ ? *status_ : -1;
}

}  // namespace gantry
