#pragma once
// Private to gantry::render: running an external renderer on a private copy, in bubblewrap when it
// works.
//
// In the sandbox (bwrap --unshare-all --cap-drop ALL --die-with-parent --new-session) the process
// sees /usr (and the /bin, /lib... links or read-only binds to it), its own binary read-only, the
// private temp dir read-write, a fresh /proc, /dev and /tmp; no network unless `network`; nothing
// else of the host (no /etc, /home, /root, no other temp dirs). Whether bubblewrap works is probed
// once per bwrap binary per process (running `true` in the same sandbox) and cached.

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/status.h"
#include "render/render.h"

namespace gantry::render::internal {

struct RendererRun {
  std::string binary;  // absolute, symlink-free (ResolveBinary)
  std::vector<std::string> args;
  std::filesystem::path cwd;
  std::filesystem::path private_dir;  // the temp dir holding the copy; bound read-write
  std::map<std::string, std::string> env;
  bool network = false;
  Sandbox sandbox = Sandbox::kAuto;
  std::string bwrap_binary = "bwrap";
  std::chrono::milliseconds timeout{60'000};
  size_t max_output_bytes = 256u << 20;
  size_t max_memory_bytes = 0;  // RLIMIT_DATA through prlimit(1) when set
};

// The absolute real path of `binary` (searched in PATH when it has no '/'). NotFound naming
// `option` (e.g. "Options::kustomize_binary") when it does not exist.
Result<std::string> ResolveBinary(const std::string& binary, std::string_view option);

// Runs it; the Result fails only when it cannot be started (or kRequire and no sandbox). Whether
// the process succeeded is in the ProcessResult.
Result<ProcessResult> RunRenderer(const RendererRun& run);

// True when bubblewrap at `bwrap_binary` can start a sandbox here (cached).
bool SandboxWorks(const std::string& bwrap_binary);

// A fresh private (0700) directory under `parent` (empty: $TMPDIR or /tmp), removed with its
// contents when this goes out of scope.
class PrivateDir {
 public:
  static Result<PrivateDir> Create(const std::filesystem::path& parent);
  PrivateDir(PrivateDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  PrivateDir& operator=(PrivateDir&&) = delete;
  PrivateDir(const PrivateDir&) = delete;
  ~PrivateDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit PrivateDir(std::filesystem::path p) : path_(std::move(p)) {}
  std::filesystem::path path_;
};

}  // namespace gantry::render::internal
