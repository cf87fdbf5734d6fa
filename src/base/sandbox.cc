#include "base/sandbox.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "base/mutex.h"
#include "base/path.h"
#include "base/process.h"

namespace gantry {
namespace fs = std::filesystem;

namespace {

// Host files of /etc a program may need and that hold nothing private, bound read-only when they
// exist. Everything else of /etc stays out (shadow, sudoers, ssh, machine-id, the host's users).
constexpr const char* kEtcFiles[] = {
    "/etc/alternatives", "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ca-certificates",
    "/etc/ca-certificates.conf", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/localtime", "/etc/timezone", "/etc/mime.types", "/etc/services", "/etc/protocols",
    "/etc/os-release", "/etc/debian_version", "/etc/perl", "/etc/fonts", "/etc/magic", "/etc/magic.mime",
};
// Directories of /etc by prefix: language runtimes' configuration (the JDK's security policy
// lives in /etc/java-17-openjdk; Debian's Python reads /etc/python3.11).
constexpr const char* kEtcPrefixes[] = {"java-", "python3"};

// Writable parts of a fresh /proc that reach the whole host. bubblewrap takes a bind's source from
// the host, so these are the host's own entries bound read-only over the sandbox's: the same
// kernel-wide settings; the per-namespace ones (net.*) then show the host's values, read-only.
constexpr const char* kProcReadOnly[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus",
                                         "/proc/fs", "/proc/kcore", "/proc/kallsyms"};

// The data files of /etc, numbered from descriptor 4 in this order.
constexpr const char* kDataFiles[] = {"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/nsswitch.conf"};

std::vector<std::string> DataContents(const SandboxSpec& spec) {
  return {
      fmt::format("root:x:0:0:root:/root:/usr/sbin/nologin\n{}:x:{}:{}:{}:{}:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                  spec.user, spec.uid, spec.gid, spec.user, spec.home),
      fmt::format("root:x:0:\n{}:x:{}:\nnogroup:x:65534:\n", spec.user, spec.gid),
      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
      "passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n",
  };
}

Result<int> SealedMemfd(const char* name, std::string_view data) {
  int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError(errno, "sandbox: memfd_create");
  Status s = WriteAll(fd, data, name);
  if (s.ok() && ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    s = ErrnoError(errno, "sandbox: seal memfd");
  }
  if (s.ok() && ::lseek(fd, 0, SEEK_SET) != 0) s = ErrnoError(errno, "sandbox: seek memfd");
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  return fd;
}

}  // namespace

std::vector<std::string> SandboxArgs(const SandboxSpec& spec) {
  std::vector<std::string> a = {"--unshare-all", "--unshare-user"};
  if (spec.network) a.push_back("--share-net");
  a.insert(a.end(), {"--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--uid",
                     std::to_string(spec.uid), "--gid", std::to_string(spec.gid), "--ro-bind", "/usr", "/usr"});
  // Merged-/usr systems have these as links into /usr; others as directories.
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    std::error_code ec;
    fs::file_status st = fs::symlink_status(top, ec);
    if (ec || !fs::exists(st)) continue;
    if (fs::is_symlink(st)) {
      a.insert(a.end(), {"--symlink", fs::read_symlink(top, ec).string(), top});
    } else if (fs::is_directory(st)) {
      a.insert(a.end(), {"--ro-bind", top, top});
    }
  }
  for (size_t i = 0; i < std::size(kDataFiles); ++i) {
    a.insert(a.end(), {"--perms", "0444", "--ro-bind-data", std::to_string(4 + i), kDataFiles[i]});
  }
  for (const char* f : kEtcFiles) a.insert(a.end(), {"--ro-bind-try", f, f});
  std::error_code ec;
  for (auto it = fs::directory_iterator("/etc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    for (const char* prefix : kEtcPrefixes) {
      if (name.starts_with(prefix)) a.insert(a.end(), {"--ro-bind-try", it->path().string(), it->path().string()});
    }
  }
  if (spec.network) a.insert(a.end(), {"--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"});
  a.insert(a.end(), {"--proc", "/proc"});
  // The kernel's global settings check only that the writer is the host's root user, not a
  // capability: a sandbox whose uid maps to root (a server run as root) could set
  // kernel.core_pattern and have the kernel run its program as root. bubblewrap leaves /proc/sys
  // writable.
  for (const char* p : kProcReadOnly) a.insert(a.end(), {"--ro-bind-try", p, p});
  a.insert(a.end(), {"--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"});
  for (const auto& p : spec.extra_ro_paths) a.insert(a.end(), {"--ro-bind-try", p, p});
  for (const auto& m : spec.mounts) a.insert(a.end(), {m.writable ? "--bind" : "--ro-bind", m.host, m.dest});
  a.push_back("--clearenv");
  for (const auto& [k, v] : spec.env) a.insert(a.end(), {"--setenv", k, v});
  a.insert(a.end(), {"--chdir", spec.cwd});
  return a;
}

SandboxCommand::SandboxCommand(SandboxCommand&& other) noexcept
    : argv(std::move(other.argv)), fds_(std::exchange(other.fds_, {})) {}

SandboxCommand& SandboxCommand::operator=(SandboxCommand&& other) noexcept {
  if (this != &other) {
    for (int fd : fds_) ::close(fd);
    argv = std::move(other.argv);
    fds_ = std::exchange(other.fds_, {});
  }
  return *this;
}

SandboxCommand::~SandboxCommand() {
  for (int fd : fds_) ::close(fd);
}

Result<SandboxCommand> PrepareSandbox(const std::string& bwrap, const SandboxSpec& spec) {
  if (spec.command.empty() || spec.command[0].empty()) return InvalidArgumentError("sandbox: empty command");
  for (const auto& m : spec.mounts) {
    if (!m.host.starts_with('/') || !m.dest.starts_with('/')) {
      return InvalidArgumentError("sandbox: mount {} → {} must be absolute", m.host, m.dest);
    }
  }
  SandboxCommand cmd;
  std::string args;
  for (const auto& arg : SandboxArgs(spec)) {
    if (arg.find('\0') != std::string::npos) return InvalidArgumentError("sandbox: an argument holds a NUL byte");
    args += arg;
    args += '\0';
  }
  GANTRY_ASSIGN_OR_RETURN(int args_fd, SealedMemfd("bwrap-args", args));
  cmd.fds_.push_back(args_fd);
  std::vector<std::string> data = DataContents(spec);
  for (size_t i = 0; i < data.size(); ++i) {
    GANTRY_ASSIGN_OR_RETURN(int fd, SealedMemfd(kDataFiles[i], data[i]));
    cmd.fds_.push_back(fd);
  }
  // bubblewrap takes the command from its own argv only (a script is no secret; its variables are).
  cmd.argv = {bwrap, "--args", "3", "--"};
  cmd.argv.insert(cmd.argv.end(), spec.command.begin(), spec.command.end());
  return cmd;
}

Result<PidsCgroup> PidsCgroup::Create(uint64_t max) {
  static std::atomic<uint64_t> counter{0};
  std::string parent;
  if (::access("/sys/fs/cgroup/pids/cgroup.procs", W_OK) == 0) {
    parent = "/sys/fs/cgroup/pids";  // v1
  } else if (auto sub = ReadFile("/sys/fs/cgroup/cgroup.subtree_control", 4096);
             sub.ok() && sub->find("pids") != std::string::npos && ::access("/sys/fs/cgroup", W_OK) == 0) {
    parent = "/sys/fs/cgroup";  // v2, pids enabled for the root's children
  } else {
    return UnavailableError("no writable pids cgroup controller here (run as root on a host with one)");
  }
  // The groups of a process that died (kill -9 of a server mid-step) stay behind, empty: each new
  // group first removes those whose process is gone (a listing of one directory).
  std::error_code ec;
  for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    int pid = 0;
    if (std::sscanf(name.c_str(), "gantry-%d-", &pid) != 1 || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    // A server in another PID namespace sharing this cgroupfs looks dead from here: its groups are
    // left alone for their first minute, while its step may be about to join one.
    struct stat st;
    if (::stat(it->path().c_str(), &st) != 0 || st.st_mtime > ::time(nullptr) - 60) continue;
    ::rmdir(it->path().c_str());  // fails, harmlessly, while still populated
  }
  std::string dir = fmt::format("{}/gantry-{}-{}", parent, ::getpid(), counter.fetch_add(1));
  if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoError(errno, "create cgroup " + dir);
  PidsCgroup cg(dir);
  int fd = ::open((dir + "/pids.max").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + dir + "/pids.max");
  Status s = WriteAll(fd, std::to_string(max), dir + "/pids.max");
  ::close(fd);
  if (!s.ok()) return s;
  return cg;
}

uint64_t PidsCgroup::Refusals() const {
  auto events = ReadFile(dir_ + "/pids.events", 4096);
  if (!events.ok()) return 0;
  size_t at = events->find("max ");
  return at == std::string::npos ? 0 : std::strtoull(events->c_str() + at + 4, nullptr, 10);
}

PidsCgroup::~PidsCgroup() {
  if (dir_.empty()) return;
  // The group's last processes may still be exiting after the leader was reaped.
  for (int i = 0; i < 20000 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(100);
}

Result<std::string> FindBwrap(const std::string& bwrap) {
  if (bwrap.find('/') != std::string::npos) {
    if (::access(bwrap.c_str(), X_OK) != 0) {
      return FailedPreconditionError("bubblewrap {} is not an executable file", bwrap);
    }
    return bwrap;
  }
  auto found = FindProgram(bwrap);
  if (!found.ok()) {
    return FailedPreconditionError("untrusted code runs in a bubblewrap sandbox, and {} (install the bubblewrap "
                                   "package)", found.status().message());
  }
  return *found;
}

Status SandboxWorks(const std::string& bwrap, std::optional<std::pair<uint32_t, uint32_t>> as) {
  static Mutex mu;
  static std::map<std::pair<std::string, int64_t>, Status> cache GUARDED_BY(mu);
  MutexLock lock(mu);
  const std::pair<std::string, int64_t> key{bwrap, as ? static_cast<int64_t>(as->first) : -1};
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  Status result = [&]() -> Status {
    GANTRY_ASSIGN_OR_RETURN(std::string path, FindBwrap(bwrap));
    SandboxSpec spec;
    spec.command = {"true"};
    spec.env = {{"PATH", "/usr/bin:/bin"}};
    GANTRY_ASSIGN_OR_RETURN(SandboxCommand cmd, PrepareSandbox(path, spec));
    ProcessOptions po;
    po.pass_fds = cmd.fds();
    po.timeout = std::chrono::seconds(10);
    po.user = as;
    GANTRY_ASSIGN_OR_RETURN(ProcessResult r, Run(cmd.argv, po));
    if (!r.success()) {
      while (!r.err.empty() && r.err.back() == '\n') r.err.pop_back();
      return FailedPreconditionError("bubblewrap ({}{}) cannot start a sandbox here: {}{}{} (user namespaces may be "
                                     "disabled: sysctl kernel.unprivileged_userns_clone=1, or in a container "
                                     "allow them)", path, as ? fmt::format(", as uid {}", as->first) : "",
                                     r.Describe(), r.err.empty() ? "" : ": ", r.err);
    }
    return OkStatus();
  }();
  cache.emplace(key, result);
  return result;
}

}  // namespace gantry
