#include "render/internal/sandbox.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

#include "base/log.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

// The bwrap arguments up to (not including) "--": what the renderer may see.
std::vector<std::string> SandboxArgs(const std::string& bwrap, const RendererRun* run) {
  std::vector<std::string> a = {bwrap, "--unshare-all"};
  if (run != nullptr && run->network) a.push_back("--share-net");
  for (const char* s : {"--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr",
                        "/usr"}) {
    a.emplace_back(s);
  }
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
  if (run != nullptr && run->network) {
    // Name resolution and TLS roots for remote bases; nothing else of /etc.
    for (const char* f : {"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl",
                          "/etc/ca-certificates", "/etc/pki"}) {
      if (fs::exists(f)) a.insert(a.end(), {"--ro-bind", f, f});
    }
  }
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  if (run != nullptr) {
    a.insert(a.end(), {"--ro-bind", run->binary, run->binary, "--bind", run->private_dir.string(),
                       run->private_dir.string(), "--chdir", run->cwd.string()});
  }
  return a;
}

}  // namespace

Result<std::string> ResolveBinary(const std::string& binary, std::string_view option) {
  std::string path = binary;
  if (binary.find('/') == std::string::npos) {
    auto found = FindProgram(binary);
    if (!found.ok()) return NotFoundError("{} (set {})", found.status().message(), option);
    path = *found;
  }
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  if (ec) return NotFoundError("renderer binary {}: {} (set {})", path, ec.message(), option);
  if (::access(real.c_str(), X_OK) != 0) {
    return PermissionDeniedError("renderer binary {} is not executable (set {})", real.string(), option);
  }
  return real.string();
}

bool SandboxWorks(const std::string& bwrap_binary) {
  static std::mutex mu;
  static std::map<std::string, bool> cache;  // GUARDED_BY(mu)
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(bwrap_binary);
  if (it != cache.end()) return it->second;
  bool works = false;
  auto truth = FindProgram("true");
  if (truth.ok()) {
    std::vector<std::string> argv = SandboxArgs(bwrap_binary, nullptr);
    argv.insert(argv.end(), {"--", *truth});
    ProcessOptions po;
    po.timeout = std::chrono::seconds(10);
    auto r = Run(argv, po);
    works = r.ok() && r->success();
    if (!works) {
      log::Warn("render: bubblewrap ({}) does not work here ({}); external renderers will run without a "
                "sandbox (no network isolation)",
                bwrap_binary, r.ok() ? r->Describe() + ": " + r->err : r.status().message());
    }
  }
  cache[bwrap_binary] = works;
  return works;
}

Result<ProcessResult> RunRenderer(const RendererRun& run) {
  ProcessOptions po;
  po.env = run.env;
  po.inherit_env = false;
  po.cwd = run.cwd.string();
  po.timeout = run.timeout;
  po.max_output_bytes = run.max_output_bytes;
  std::vector<std::string> argv;
  if (run.max_memory_bytes > 0) {
    static const Result<std::string> prlimit = FindProgram("prlimit");
    if (!prlimit.ok()) {
      return FailedPreconditionError("prlimit (util-linux) is needed to limit a renderer's memory "
                                     "(Limits::max_renderer_memory_bytes, 0 to disable): {}",
                                     prlimit.status().message());
    }
    argv = {*prlimit, fmt::format("--data={}", run.max_memory_bytes), "--"};
  }
  bool sandboxed = run.sandbox != Sandbox::kNone && SandboxWorks(run.bwrap_binary);
  if (run.sandbox == Sandbox::kRequire && !sandboxed) {
    return FailedPreconditionError("a sandbox is required (Options::sandbox) but bubblewrap ({}) does "
                                   "not work here", run.bwrap_binary);
  }
  if (sandboxed) {
    std::vector<std::string> bwrap = SandboxArgs(run.bwrap_binary, &run);
    argv.insert(argv.end(), bwrap.begin(), bwrap.end());
    argv.push_back("--");
  }
  argv.push_back(run.binary);
  argv.insert(argv.end(), run.args.begin(), run.args.end());
  return Run(argv, po);
}

Result<PrivateDir> PrivateDir::Create(const fs::path& parent) {
  fs::path base = parent;
  if (base.empty()) {
    std::error_code ec;
    base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
  }
  std::string tmpl = (base / "gantry-render-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "create a temp dir under " + base.string());
  std::error_code ec;
  fs::path real = fs::canonical(tmpl, ec);  // bwrap binds it at its real path
  if (ec) real = tmpl;
  return PrivateDir(real);
}

PrivateDir::~PrivateDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace gantry::render::internal
