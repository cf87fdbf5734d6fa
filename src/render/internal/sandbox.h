#pragma once
// Private to gantry::render: running an external renderer on a private copy, in the one sandbox
// (base/sandbox.h).
//
// In the sandbox the process sees what base/sandbox.h gives every untrusted program (/usr, an /etc
// of its own, fresh /proc, /dev and /tmp), plus its own binary read-only and the private temp dir
// read-write at their host paths; no network ever; nothing else of the host (no /home,
// /root, no other temp dirs). A sandbox that does not work is an error (FailedPrecondition) unless
// the operator opted out (Sandbox::kNone), which is logged once per process.

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/status.h"
#include "render/render.h"

namespace gantry::render::internal {

struct RendererRun {
  std::string binary;  // absolute, symlink-free (FindRenderer)
  std::vector<std::string> extra_binaries;  // others it runs (kustomize's helm), visible read-only
  std::vector<std::string> args;
  std::filesystem::path cwd;
  std::filesystem::path private_dir;  // the temp dir holding the copy; bound read-write
  std::map<std::string, std::string> env;
  std::optional<std::string> stdin_data;  // none: /dev/null
  Sandbox sandbox = Sandbox::kRequire;
  std::string bwrap_binary = "bwrap";
  std::chrono::milliseconds timeout{60'000};
  size_t max_output_bytes = 256u << 20;
  size_t max_memory_bytes = 0;  // RLIMIT_DATA when set
};

// Runs it; the Result fails only when it cannot be started (FailedPrecondition, saying why and how
// to opt out, when the sandbox is required and does not work). Whether the process succeeded is in
// the ProcessResult.
Result<ProcessResult> RunRenderer(const RendererRun& run);

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
