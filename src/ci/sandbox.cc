// The bubblewrap sandbox of a step (the same approach as render/internal/sandbox.cc, with a
// writable workspace and a user namespace).

#include <filesystem>

#include "ci/executor.h"

namespace gantry::ci {
namespace fs = std::filesystem;

std::string StepOutcome::Describe() const {
  if (cancelled) return "cancelled";
  if (timed_out) return fmt::format("timed out after {}s", duration.count() / 1000);
  if (term_signal != 0) return fmt::format("killed by signal {}", term_signal);
  if (!reason.empty()) return fmt::format("exit code {} ({})", exit_code, reason);
  return fmt::format("exit code {}", exit_code);
}

std::vector<std::string> SandboxArgv(const std::string& bwrap, const StepRequest& r) {
  std::vector<std::string> a = {bwrap, "--unshare-all"};
  if (r.network) a.push_back("--share-net");
  for (const char* s : {"--die-with-parent", "--new-session", "--cap-drop", "ALL", "--uid", "1000", "--gid", "1000",
                        "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"}) {
    a.emplace_back(s);
  }
  // Merged-/usr systems have these as links into /usr; others as directories.
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"}) {
    std::error_code ec;
    fs::file_status st = fs::symlink_status(top, ec);
    if (ec || !fs::exists(st)) continue;
    if (fs::is_symlink(st)) {
      a.insert(a.end(), {"--symlink", fs::read_symlink(top, ec).string(), top});
    } else if (fs::is_directory(st)) {
      a.insert(a.end(), {"--ro-bind", top, top});
    }
  }
  // What of /etc a step must not read.
  for (const char* f : {"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers"}) {
    if (fs::exists(f)) a.insert(a.end(), {"--ro-bind", "/dev/null", f});
  }
  for (const char* d : {"/etc/ssh", "/etc/sudoers.d", "/etc/ssl/private"}) {
    if (fs::is_directory(d)) a.insert(a.end(), {"--tmpfs", d});
  }
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
                     "--bind", r.workspace.string(), "/workspace"});
  if (!r.artifacts.empty()) a.insert(a.end(), {"--ro-bind", r.artifacts.string(), "/artifacts"});
  a.insert(a.end(), {"--chdir", "/workspace", "--"});
  return a;
}

}  // namespace gantry::ci
