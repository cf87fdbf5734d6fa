#include "cli/state.h"

#include <sys/stat.h>

#include <cstdlib>
#include <system_error>

#include <fmt/format.h>

#include "base/path.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

// `flag`, else the variable `env`, else ~/`under_home`.
fs::path Dir(const std::string& flag, const char* env, const fs::path& under_home) {
  if (!flag.empty()) return flag;
  if (const char* v = std::getenv(env); v != nullptr && *v != '\0') return v;
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr && *home != '\0' ? home : "/tmp") / under_home;
}

// `dir`, created with mode 0700 when missing.
Status PrivateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoError(ec.value(), "create " + dir.string());
  ::chmod(dir.c_str(), 0700);
  return OkStatus();
}

fs::path ConfigFile(const fs::path& state_dir, std::string_view kind, std::string_view name) {
  return state_dir / "config" / fmt::format("{}-{}.yaml", kind, name);
}

}  // namespace

fs::path StateDir(const std::string& flag) { return Dir(flag, "GANTRY_HOME", fs::path(".config") / "gantry"); }

fs::path CacheDir(const std::string& flag) { return Dir(flag, "GANTRY_CACHE", fs::path(".cache") / "gantry"); }

Result<std::string> StoreUrl(const std::string& url, const std::string& state_dir) {
  if (!url.empty()) return url;
  fs::path dir = StateDir(state_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoError(ec.value(), "create " + dir.string());
  ::chmod(dir.c_str(), 0700);
  return "sqlite://" + fs::absolute(dir / "gantry.db").string();
}

Status SaveConfigObject(const fs::path& state_dir, std::string_view kind, std::string_view name,
                        const value::Value& object) {
  GANTRY_RETURN_IF_ERROR(PrivateDir(state_dir / "config"));
  return WriteFileAtomic(ConfigFile(state_dir, kind, name), value::ToYaml(object), 0600);
}

Status RemoveConfigObject(const fs::path& state_dir, std::string_view kind, std::string_view name) {
  std::error_code ec;
  if (!fs::remove(ConfigFile(state_dir, kind, name), ec)) {
    return NotFoundError("no {} {} in {}", kind, name, (state_dir / "config").string());
  }
  return OkStatus();
}

Result<fs::path> SaveKubeconfig(const fs::path& state_dir, std::string_view name, std::string_view kubeconfig) {
  GANTRY_RETURN_IF_ERROR(PrivateDir(state_dir / "clusters"));
  fs::path file = state_dir / "clusters" / fmt::format("{}.kubeconfig", name);
  GANTRY_RETURN_IF_ERROR(WriteFileAtomic(file, kubeconfig, 0600));
  return file;
}

void RemoveKubeconfig(const fs::path& state_dir, std::string_view name) {
  std::error_code ec;
  fs::remove(state_dir / "clusters" / fmt::format("{}.kubeconfig", name), ec);
}

}  // namespace gantry::cli
