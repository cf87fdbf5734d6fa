#pragma once
// base/sandbox: the one sandbox for untrusted code (pipeline steps, renderers), on bubblewrap.
//
// What the sandboxed program sees:
//   - /usr read-only, and /bin, /sbin, /lib... as on the host (links into /usr, or read-only binds);
//   - an /etc of its own: passwd and group naming only root, the sandbox user and nobody; hosts with
//     localhost; nsswitch.conf; and, read-only from the host, only what programs need to run and
//     that holds nothing private (CA certificates, alternatives, the loader cache, time zone, MIME
//     types, services, protocols, the Java/Python/Perl configuration directories); with network
//     also resolv.conf. Never shadow files, sudoers, SSH keys, machine-id or the host's users;
//   - a fresh /proc (its own PID namespace), /dev (null, zero, random, tty...), /tmp and /var/tmp
//     (tmpfs);
//   - the binds the caller asks for (the workspace, read-write; artifacts, read-only...), and the
//     operator's extra read-only paths (toolchains outside /usr);
//   - nothing else: no /home, /root, /opt, /srv, /var, no other run's files.
// Whoever starts it chooses the host user it runs as (ProcessOptions::user): bubblewrap maps the
// sandbox's uid to that user, so a server run as root should start it as a user of its own (the
// process executor does), or the sandbox's uid is host root to the kernel.
// It runs in new user, mount, PID, IPC, UTS and cgroup namespaces, and a new network namespace
// unless `network` (then it shares the host's network, and with it abstract Unix sockets), as
// uid:gid inside, with no capabilities, in a new session (no TIOCSTI into the caller's terminal),
// unable to create further user namespaces, and it dies with the thread that started it.
//
// bubblewrap itself runs with an empty environment and the argv "bwrap --args 3 -- COMMAND...":
// every option, the program's environment included (--clearenv, --setenv), arrives on descriptor
// 3, a sealed memfd. So nothing a pipeline sets reaches the launcher (LD_PRELOAD, GCONV_PATH: this
// bubblewrap is not setuid and would honour them on the host), and no secret shows in the host's
// process list. The files of /etc arrive the same way (--ro-bind-data), so nothing is written on the
// host. Descriptors are not otherwise inherited (base/process closes all but 0-2 and pass_fds).
//
// Thread-safe: PrepareSandbox is a pure function of its inputs and the host's directory layout;
// SandboxWorks caches its probe per binary under a lock.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace gantry {

struct SandboxMount {
  std::string host;  // absolute host path
  std::string dest;  // absolute path inside
  bool writable = false;
};

struct SandboxSpec {
  std::vector<std::string> command;        // argv inside; argv[0] looked up in the env's PATH
  std::map<std::string, std::string> env;  // exactly the program's environment
  std::vector<SandboxMount> mounts;
  std::string cwd = "/";                   // inside
  bool network = false;
  std::vector<std::string> extra_ro_paths;  // host paths bound read-only at the same place
  uint32_t uid = 1000;
  uint32_t gid = 1000;
  std::string user = "builder";             // its name in /etc/passwd
  std::string home = "/tmp";
};

// A sandboxed command ready to start: give `argv` to Run() or Process::Start() with
// ProcessOptions::pass_fds = fds() and an empty environment. Owns the descriptors. Move-only.
class SandboxCommand {
 public:
  SandboxCommand() = default;
  SandboxCommand(SandboxCommand&& other) noexcept;
  SandboxCommand& operator=(SandboxCommand&& other) noexcept;
  SandboxCommand(const SandboxCommand&) = delete;
  SandboxCommand& operator=(const SandboxCommand&) = delete;
  ~SandboxCommand();

  std::vector<std::string> argv;
  const std::vector<int>& fds() const { return fds_; }

 private:
  friend Result<SandboxCommand> PrepareSandbox(const std::string& bwrap, const SandboxSpec& spec);
  std::vector<int> fds_;
};

// Builds the command for `spec` with the bubblewrap binary `bwrap` (absolute). InvalidArgument for a
// relative mount path or an empty command; Internal when a memfd cannot be made.
Result<SandboxCommand> PrepareSandbox(const std::string& bwrap, const SandboxSpec& spec);

// The bwrap options for `spec` as PrepareSandbox writes them to descriptor 3 (for tests and logs;
// data descriptors are numbered from 4).
std::vector<std::string> SandboxArgs(const SandboxSpec& spec);

// OK when bubblewrap at `bwrap` can start a sandbox here, started as host user `as` (uid, gid)
// when given (it runs `true` in one, once per binary and user per process; the answer is cached);
// FailedPrecondition saying why not (not installed, user namespaces disabled...), with what to do.
Status SandboxWorks(const std::string& bwrap, std::optional<std::pair<uint32_t, uint32_t>> as = {});

// A pids cgroup of its own for one sandboxed program tree, so that a fork bomb stops at `max`
// processes. (RLIMIT_NPROC does not bind when the server runs as root: the kernel never enforces
// it for the host's root user, and a sandbox's uid maps to the user that started it.) Uses the
// pids controller of cgroup v1 (/sys/fs/cgroup/pids) or of cgroup v2 (/sys/fs/cgroup, when the
// root enables pids for its children). The directory is removed when this is destroyed (waiting
// briefly for the last processes to be reaped); Create() also removes the empty groups that
// processes which died left behind. Not thread-safe; one per program.
class PidsCgroup {
 public:
  // Unavailable when this host has no pids controller this process may write (not root, no
  // controller mounted); the caller then falls back to RLIMIT_NPROC and says so.
  static Result<PidsCgroup> Create(uint64_t max);
  PidsCgroup(PidsCgroup&& other) noexcept : dir_(std::exchange(other.dir_, {})) {}
  PidsCgroup& operator=(PidsCgroup&&) = delete;
  PidsCgroup(const PidsCgroup&) = delete;
  ~PidsCgroup();
  // For ProcessOptions::cgroup_procs.
  std::string procs_file() const { return dir_ + "/cgroup.procs"; }
  // How many times a fork was refused for the limit (pids.events "max"), or 0 when unknown.
  uint64_t Refusals() const;

 private:
  explicit PidsCgroup(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// Finds bubblewrap: `bwrap` when it holds a '/', else in PATH. FailedPrecondition naming what to
// install when it is missing.
Result<std::string> FindBwrap(const std::string& bwrap = "bwrap");

}  // namespace gantry
