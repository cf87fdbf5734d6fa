// FindRenderer and FindSops: where the kustomize, helm, jsonnet and sops binaries come from (render.h).

#include <unistd.h>

#include <cstdlib>

#include "base/process.h"
#include "render/render.h"

namespace gantry::render {
namespace fs = std::filesystem;

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The tool cache's bin directory, resolved as test/env/build-tools.sh resolves it.
fs::path ToolCacheBin() {
  fs::path cache;
  if (std::string g = Env("GANTRY_CACHE"); !g.empty()) {
    cache = g;
  } else if (std::string x = Env("XDG_CACHE_HOME"); !x.empty()) {
    cache = fs::path(x) / "gantry";
  } else {
    std::string home = Env("HOME");
    cache = fs::path(home.empty() ? "/" : home) / ".cache/gantry";
  }
  return cache / "tools/bin";
}

// The absolute real path of `path`, which `who` named; an error naming `who` when it is not an
// executable file.
Result<std::string> Executable(const std::string& path, std::string_view who) {
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  if (ec) return NotFoundError("{} names {}: {}", who, path, ec.message());
  if (!fs::is_regular_file(real, ec) || ::access(real.c_str(), X_OK) != 0) {
    return PermissionDeniedError("{} names {}, which is not an executable file", who, real.string());
  }
  return real.string();
}

}  // namespace

namespace {

// The search of FindRenderer for the program `name`, named by `flag` and `variable`.
Result<std::string> Find(const std::string& name, const std::string& flag, const char* variable,
                         const std::string& explicit_binary) {
  if (!explicit_binary.empty()) {
    std::string path = explicit_binary;
    if (path.find('/') == std::string::npos) {
      auto found = FindProgram(path);
      if (!found.ok()) return NotFoundError("{} {}: {}", flag, path, found.status().message());
      path = *found;
    }
    return Executable(path, flag);
  }
  if (std::string v = Env(variable); !v.empty()) return Executable(v, fmt::format("${}", variable));
  if (auto found = FindProgram(name); found.ok()) return Executable(*found, "PATH");
  fs::path cached = ToolCacheBin() / name;
  std::error_code ec;
  if (fs::exists(cached, ec)) return Executable(cached.string(), "the tool cache");
  std::string path = Env("PATH");
  return NotFoundError("{} not found: no {} flag, ${} is not set, not in PATH ({}), not in the tool cache ({}); "
                       "install {} or run scripts/setup, or set {} (or {}) to its path",
                       name, flag, variable, path.empty() ? "unset" : path, ToolCacheBin().string(), name, variable,
                       flag);
}

}  // namespace

Result<std::string> FindRenderer(Renderer renderer, const std::string& explicit_binary) {
  switch (renderer) {
    case Renderer::kKustomize: return Find("kustomize", "--kustomize-binary", "GANTRY_KUSTOMIZE", explicit_binary);
    case Renderer::kHelm: return Find("helm", "--helm-binary", "GANTRY_HELM", explicit_binary);
    case Renderer::kJsonnet: return Find("jsonnet", "--jsonnet-binary", "GANTRY_JSONNET", explicit_binary);
    case Renderer::kAuto:
    case Renderer::kPlain: break;
  }
  return InvalidArgumentError("renderer {} runs no binary", RendererName(renderer));
}

Result<std::string> FindSops(const std::string& explicit_binary) {
  return Find("sops", "--sops-binary", "GANTRY_SOPS", explicit_binary);
}

}  // namespace gantry::render
