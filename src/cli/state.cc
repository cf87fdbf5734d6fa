#include "cli/state.h"

#include <sys/stat.h>

#include <cstdlib>
#include <system_error>

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

}  // namespace gantry::cli
