#include "render/internal/sandbox.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <mutex>

#include "base/log.h"
#include "base/sandbox.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

Result<ProcessResult> RunRenderer(const RendererRun& run) {
  ProcessOptions po;
  po.timeout = run.timeout;
  po.max_output_bytes = run.max_output_bytes;
  po.die_with_parent = true;
  po.stdin_data = run.stdin_data;
  if (run.max_memory_bytes > 0) po.rlimits.emplace_back(RLIMIT_DATA, run.max_memory_bytes);
  std::vector<std::string> argv = {run.binary};
  argv.insert(argv.end(), run.args.begin(), run.args.end());
  if (run.sandbox == Sandbox::kNone) {
    static std::once_flag warned;
    std::call_once(warned, [] {
      log::Warn("render: renderers run WITHOUT a sandbox (the operator turned it off: --no-render-sandbox); a "
                "hostile repository's renderer bug reaches this host");
    });
    po.env = run.env;
    po.cwd = run.cwd.string();
    return Run(argv, po);
  }
  if (Status works = SandboxWorks(run.bwrap_binary); !works.ok()) {
    return FailedPreconditionError("render: {} (to run renderers without a sandbox, which a hostile repository "
                                   "can exploit: --no-render-sandbox)", works.message());
  }
  GANTRY_ASSIGN_OR_RETURN(std::string bwrap, FindBwrap(run.bwrap_binary));
  SandboxSpec spec;
  spec.command = std::move(argv);
  spec.env = run.env;
  spec.network = false;
  spec.cwd = run.cwd.string();
  spec.mounts = {{run.binary, run.binary, false}, {run.private_dir.string(), run.private_dir.string(), true}};
  for (const std::string& b : run.extra_binaries) spec.mounts.push_back({b, b, false});
  GANTRY_ASSIGN_OR_RETURN(SandboxCommand cmd, PrepareSandbox(bwrap, spec));
  po.pass_fds = cmd.fds();
  return Run(cmd.argv, po);
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
