// FindRenderer: where the kustomize and helm binaries come from (render.h).

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

Result<std::string> FindRenderer(Renderer renderer, const std::string& explicit_binary) {
  if (renderer != Renderer::kKustomize && renderer != Renderer::kHelm) {
    return InvalidArgumentError("renderer {} runs no binary", RendererName(renderer));
  }
  const bool helm = renderer == Renderer::kHelm;
  const std::string name(RendererName(renderer));
  const std::string flag = helm ? "--helm-binary" : "--kustomize-binary";
  const char* variable = helm ? "GANTRY_HELM" : "GANTRY_KUSTOMIZE";

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

}  // namespace gantry::render
