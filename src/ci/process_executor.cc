// ProcessExecutor: fork + execve with a pipe for the combined output, its own process group,
// setrlimit limits, and a poll loop that streams output and enforces timeout and cancellation.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "base/log.h"
#include "base/process.h"
#include "ci/executor.h"

namespace gantry::ci {
namespace {

using Clock = std::chrono::steady_clock;

class ProcessExecutor final : public Executor {
 public:
  ProcessExecutor(ProcessExecutorOptions options, std::string bwrap)
      : options_(std::move(options)), bwrap_(std::move(bwrap)) {}

  std::string_view name() const override { return options_.sandbox ? "process (bubblewrap)" : "process (no sandbox)"; }
  std::string WorkspacePath(const std::filesystem::path& host) const override {
    return options_.sandbox ? "/workspace" : host.string();
  }
  std::string ArtifactsPath(const std::filesystem::path& host) const override {
    return options_.sandbox ? "/artifacts" : host.string();
  }

  Result<StepOutcome> Run(const StepRequest& r, const OutputFn& output, const std::atomic<bool>& cancel) override {
    if (r.argv.empty()) return InvalidArgumentError("step {}: empty argv", r.step);
    std::vector<std::string> argv;
    std::string program;
    if (options_.sandbox) {
      argv = SandboxArgv(bwrap_, r);
      argv.insert(argv.end(), r.argv.begin(), r.argv.end());
      program = bwrap_;
    } else {
      argv = r.argv;
      program = argv[0];
      if (program.find('/') == std::string::npos) {
        GANTRY_ASSIGN_OR_RETURN(program, FindProgram(program));
      }
    }
    std::vector<std::string> envs;
    for (const auto& [k, v] : r.env) envs.push_back(k + "=" + v);
    std::vector<char*> cargv, cenv;
    for (auto& s : argv) cargv.push_back(s.data());
    cargv.push_back(nullptr);
    for (auto& s : envs) cenv.push_back(s.data());
    cenv.push_back(nullptr);
    std::string cwd = options_.sandbox ? "/" : r.workspace.string();

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
    Clock::time_point start = Clock::now();
    pid_t pid = ::fork();
    if (pid < 0) {
      int e = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      return ErrnoError(e, "fork");
    }
    if (pid == 0) {
      // Child: only async-signal-safe calls from here on.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the step dies with the runner
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      auto limit = [](int res, uint64_t v) {
        if (v == 0) return;
        struct rlimit rl = {static_cast<rlim_t>(v), static_cast<rlim_t>(v)};
        ::setrlimit(res, &rl);
      };
      limit(RLIMIT_AS, r.limits.memory_bytes);
      limit(RLIMIT_CPU, r.limits.cpu_seconds);
      limit(RLIMIT_NOFILE, r.limits.open_files);
      limit(RLIMIT_NPROC, r.limits.processes);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (::chdir(cwd.c_str()) != 0) ::_exit(126);
      ::execve(program.c_str(), cargv.data(), cenv.data());
      static const char kMsg[] = "gantry: cannot execute the step's program\n";
      ssize_t ignored = ::write(2, kMsg, sizeof(kMsg) - 1);
      (void)ignored;
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also in the parent, so a kill right away reaches the group
    ::close(fds[1]);
    int fd = fds[0];

    StepOutcome out;
    Clock::time_point deadline = start + r.timeout;
    Clock::time_point kill_at = Clock::time_point::max();  // SIGKILL after the grace period
    bool exited = false, eof = false;
    int status = 0;
    char buf[65536];
    while (!eof || !exited) {
      if (!exited) {
        siginfo_t info{};
        if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
          // The main process ended: end whatever it left behind in its group, then reap.
          ::kill(-pid, SIGKILL);
          ::waitpid(pid, &status, 0);
          exited = true;
          continue;
        }
      }
      Clock::time_point now = Clock::now();
      if (!out.timed_out && !out.cancelled && !exited) {
        if (now >= deadline) out.timed_out = true;
        if (cancel.load()) out.cancelled = true;
        if (out.timed_out || out.cancelled) {
          ::kill(-pid, SIGTERM);
          kill_at = now + options_.kill_grace;
        }
      }
      if (now >= kill_at) {
        ::kill(-pid, SIGKILL);
        kill_at = Clock::time_point::max();
      }
      if (eof) {
        ::usleep(2000);
        continue;
      }
      struct pollfd p = {fd, POLLIN, 0};
      int wait_ms = 50;
      int rc = ::poll(&p, 1, wait_ms);
      if (rc < 0 && errno != EINTR) break;
      if (rc > 0) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          output(std::string_view(buf, static_cast<size_t>(n)));
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          eof = true;
        }
      }
    }
    ::close(fd);
    out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) out.term_signal = WTERMSIG(status);
    return out;
  }

 private:
  ProcessExecutorOptions options_;
  std::string bwrap_;
};

}  // namespace

Result<std::unique_ptr<Executor>> NewProcessExecutor(const ProcessExecutorOptions& options) {
  std::string bwrap;
  if (options.sandbox) {
    auto found = options.bwrap.find('/') == std::string::npos ? FindProgram(options.bwrap) : Result<std::string>(options.bwrap);
    if (!found.ok()) {
      return FailedPreconditionError("the step sandbox needs bubblewrap: {} (install bubblewrap, or run without the "
                                     "sandbox: --no-sandbox)", found.status().message());
    }
    bwrap = *found;
    // Check once that it works here (user namespaces may be disabled).
    StepRequest probe;
    probe.workspace = "/";
    probe.network = false;
    std::vector<std::string> argv = SandboxArgv(bwrap, probe);
    argv.push_back("true");
    ProcessOptions po;
    po.env = {{"PATH", "/usr/bin:/bin"}};
    po.timeout = std::chrono::seconds(10);
    auto r = gantry::Run(argv, po);
    if (!r.ok() || !r->success()) {
      return FailedPreconditionError("bubblewrap ({}) does not work here: {} (run without the sandbox: --no-sandbox)", bwrap,
                                     r.ok() ? r->Describe() + ": " + r->err : r.status().message());
    }
  }
  return std::unique_ptr<Executor>(new ProcessExecutor(options, bwrap));
}

}  // namespace gantry::ci
