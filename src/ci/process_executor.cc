// ProcessExecutor: a step as a local process tree, in the one sandbox (base/sandbox.h) unless the
// operator turned it off, started through base/process (no inherited descriptors), with setrlimit
// limits, and a poll loop that streams output and enforces timeout and cancellation.

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>

#include "base/log.h"
#include "base/path.h"
#include "base/process.h"
#include "base/sandbox.h"
#include "ci/executor.h"

namespace gantry::ci {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;

class ProcessExecutor final : public Executor {
 public:
  ProcessExecutor(ProcessExecutorOptions options, std::string bwrap)
      : options_(std::move(options)), bwrap_(std::move(bwrap)) {}

  std::string_view name() const override { return options_.sandbox ? "process (bubblewrap)" : "process (no sandbox)"; }
  bool Isolates() const override { return options_.sandbox; }
  std::optional<std::pair<uint32_t, uint32_t>> StepUser() const override {
    return options_.sandbox ? options_.step_user : std::nullopt;
  }
  std::string WorkspacePath(const std::filesystem::path& host) const override {
    return options_.sandbox ? "/workspace" : host.string();
  }
  std::string ArtifactsPath(const std::filesystem::path& host) const override {
    return options_.sandbox ? "/artifacts" : host.string();
  }

  Result<StepOutcome> Run(const StepRequest& r, const OutputFn& output, const std::atomic<bool>& cancel) override {
    if (r.argv.empty()) return InvalidArgumentError("step {}: empty argv", r.step);
    ProcessOptions po;
    po.die_with_parent = true;  // the step dies with the runner thread
    for (auto [resource, value] : {std::pair<int, uint64_t>{RLIMIT_AS, r.limits.memory_bytes},
                                   {RLIMIT_CPU, r.limits.cpu_seconds},
                                   {RLIMIT_NOFILE, r.limits.open_files},
                                   {RLIMIT_NPROC, r.limits.processes}}) {
      if (value != 0) po.rlimits.emplace_back(resource, value);
    }
    std::vector<std::string> argv;
    std::optional<SandboxCommand> sandboxed;
    if (options_.sandbox) {
      SandboxSpec spec;
      spec.command = r.argv;
      spec.env = r.env;
      spec.network = r.network;
      spec.mounts.push_back({r.workspace.string(), "/workspace", true});
      if (!r.artifacts.empty()) spec.mounts.push_back({r.artifacts.string(), "/artifacts", false});
      spec.cwd = "/workspace";
      spec.extra_ro_paths = options_.extra_ro_paths;
      if (options_.step_user) {
        // Caches restored and artifacts copied by the server are its own: give them to the step.
        auto [uid, gid] = *options_.step_user;
        for (const auto& dir : {r.workspace, r.artifacts}) {
          if (dir.empty()) continue;
          Status s = ChownTreeBeneath(dir, uid, gid);
          if (s.ok() && ::chmod(dir.c_str(), 0700) != 0) s = ErrnoError(errno, "chmod 700 " + dir.string());
          if (!s.ok()) {
            return Status(s.code(), fmt::format("step {}: give {} to uid {}: {}", r.step, dir.string(), uid, s.message()));
          }
        }
        po.user = options_.step_user;
      }
      GANTRY_ASSIGN_OR_RETURN(SandboxCommand cmd, PrepareSandbox(bwrap_, spec));
      sandboxed.emplace(std::move(cmd));
      argv = sandboxed->argv;
      po.pass_fds = sandboxed->fds();
    } else {
      argv = r.argv;
      po.env = r.env;
      po.cwd = r.workspace.string();
    }
    uint64_t max_procs = options_.max_processes;
    if (r.limits.processes != 0 && (max_procs == 0 || r.limits.processes < max_procs)) max_procs = r.limits.processes;
    std::optional<PidsCgroup> cgroup;  // outlives the Process below, so it is removed after the tree is gone
    if (max_procs > 0) {
      auto cg = PidsCgroup::Create(max_procs);
      if (cg.ok()) {
        cgroup.emplace(std::move(*cg));
        po.cgroup_procs = cgroup->procs_file();
      } else {
        static std::once_flag warned;
        std::call_once(warned, [&] {
          log::Warn("ci: steps' process counts are not limited ({}); a fork bomb in a step is stopped only by its "
                    "timeout", cg.status().message());
        });
      }
    }
    int fd = -1;
    Clock& clock = options_.clock ? *options_.clock : SystemClock();
    TimePoint start = clock.Now();
    auto started = Process::StartPiped(argv, po, &fd);
    if (!started.ok()) return Status(started.status().code(), fmt::format("step {}: {}", r.step, started.status().message()));
    Process& proc = *started;
    sandboxed.reset();  // the child has its copies

    StepOutcome out;
    TimePoint deadline = start + r.timeout;
    TimePoint kill_at = TimePoint::max();  // SIGKILL after the grace period
    bool exited = false, eof = false;
    char buf[65536];
    // Readable when the process has exited (Linux 5.3+); without it, exits are polled every 2 ms.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, proc.pid(), 0));
    while (!eof || !exited) {
      if (!exited && !proc.Running()) {
        // The main process ended: end whatever it left behind in its group.
        proc.Signal(SIGKILL);
        exited = true;
        continue;
      }
      TimePoint now = clock.Now();
      if (!out.timed_out && !out.cancelled && !exited) {
        if (now >= deadline) out.timed_out = true;
        if (cancel.load()) out.cancelled = true;
        if (out.timed_out || out.cancelled) {
          proc.Signal(SIGTERM);
          kill_at = now + options_.kill_grace;
        }
      }
      if (now >= kill_at) {
        proc.Signal(SIGKILL);
        kill_at = TimePoint::max();
      }
      struct pollfd p[2];
      nfds_t n = 0;
      if (!eof) p[n++] = {fd, POLLIN, 0};
      if (!exited && pidfd >= 0) p[n++] = {pidfd, POLLIN, 0};
      if (n == 0) {
        ::usleep(2000);
        continue;
      }
      int rc = ::poll(p, n, 50);
      if (rc < 0 && errno != EINTR) break;
      if (rc > 0 && !eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t got = ::read(fd, buf, sizeof buf);
        if (got > 0) {
          output(std::string_view(buf, static_cast<size_t>(got)));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          eof = true;
        }
      }
    }
    if (pidfd >= 0) ::close(pidfd);
    ::close(fd);
    if (cgroup && cgroup->Refusals() > 0) {
      output(fmt::format("gantry: {} process creation(s) refused: the step reached its limit of {} processes\n",
                         cgroup->Refusals(), max_procs));
    }
    out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - start);
    int status = proc.status().value_or(0);
    if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) out.term_signal = WTERMSIG(status);
    return out;
  }

 private:
  ProcessExecutorOptions options_;
  std::string bwrap_;
};

}  // namespace

std::string StepOutcome::Describe() const {
  if (cancelled) return "cancelled";
  if (timed_out) return fmt::format("timed out after {}s", duration.count() / 1000);
  if (term_signal != 0) return fmt::format("killed by signal {}", term_signal);
  if (!reason.empty()) return fmt::format("exit code {} ({})", exit_code, reason);
  return fmt::format("exit code {}", exit_code);
}

Result<std::unique_ptr<Executor>> NewProcessExecutor(const ProcessExecutorOptions& options) {
  std::string bwrap;
  if (options.sandbox) {
    GANTRY_ASSIGN_OR_RETURN(bwrap, FindBwrap(options.bwrap));
    if (Status works = SandboxWorks(bwrap, options.step_user); !works.ok()) {
      return FailedPreconditionError("the step sandbox does not work: {} (or run without it, on the host: "
                                     "--no-sandbox; never with untrusted pipelines)", works.message());
    }
  }
  return std::unique_ptr<Executor>(new ProcessExecutor(options, bwrap));
}

}  // namespace gantry::ci
