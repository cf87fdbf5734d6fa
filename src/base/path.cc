#include "base/path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace gantry {
namespace fs = std::filesystem;

namespace {

// Splits `relative` into normalised components, refusing anything that leaves the root.
Result<std::vector<std::string>> Components(std::string_view relative) {
  if (relative.find('\0') != std::string_view::npos) {
    return InvalidArgumentError("path {:?} contains a NUL byte", relative);
  }
  if (!relative.empty() && relative.front() == '/') {
    return InvalidArgumentError("path {:?} is absolute; only paths relative to the root are allowed",
                                relative);
  }
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= relative.size()) {
    size_t slash = relative.find('/', pos);
    std::string_view part = relative.substr(pos, slash == std::string_view::npos ? slash : slash - pos);
    if (part == "..") {
      if (parts.empty()) return InvalidArgumentError("path {:?} climbs out of the root", relative);
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.emplace_back(part);
    }
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return parts;
}

fs::path Join(const fs::path& root, const std::vector<std::string>& parts, size_t n) {
  fs::path p = root;
  for (size_t i = 0; i < n; ++i) p /= parts[i];
  return p;
}

}  // namespace

Result<fs::path> SafeJoin(const fs::path& root, std::string_view relative) {
  GANTRY_ASSIGN_OR_RETURN(auto parts, Components(relative));
  return Join(root, parts, parts.size());
}

Result<fs::path> ResolveBeneath(const fs::path& root, std::string_view relative) {
  GANTRY_ASSIGN_OR_RETURN(auto parts, Components(relative));
  int links = 0;
  size_t i = 0;
  while (i < parts.size()) {
    fs::path current = Join(root, parts, i + 1);
    struct stat st;
    if (::lstat(current.c_str(), &st) != 0) {
      if (errno == ENOENT && i + 1 == parts.size()) break;  // a file to be created
      if (errno == ENOENT) return NotFoundError("{}: no such file or directory", current.string());
      return ErrnoError(errno, current.string());
    }
    if (!S_ISLNK(st.st_mode)) {
      ++i;
      continue;
    }
    if (++links > 40) return InvalidArgumentError("path {:?}: too many symbolic links", relative);
    std::error_code ec;
    fs::path target = fs::read_symlink(current, ec);
    if (ec) return Status(Code::kInternal, fmt::format("read link {}: {}", current.string(), ec.message()));
    if (target.is_absolute()) {
      return PermissionDeniedError("{} is a symbolic link to the absolute path {}, outside {}",
                                   current.string(), target.string(), root.string());
    }
    // Replace the link by its target, relative to the link's directory, and re-check from there.
    std::string rest;
    for (size_t j = 0; j < i; ++j) rest += parts[j] + "/";
    rest += target.string();
    for (size_t j = i + 1; j < parts.size(); ++j) rest += "/" + parts[j];
    auto resolved = Components(rest);
    if (!resolved.ok()) {
      return PermissionDeniedError("{} is a symbolic link to {}, which leaves {}", current.string(),
                                   target.string(), root.string());
    }
    parts = std::move(resolved).value();
    i = 0;
  }
  return Join(root, parts, parts.size());
}

Result<std::string> ReadFile(const fs::path& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + path.string());
  std::string data;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError(err, "read " + path.string());
    }
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return ResourceExhaustedError("{} is larger than the limit of {} bytes", path.string(), max_bytes);
    }
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "write " + path.string());
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status WriteFileAtomic(const fs::path& path, std::string_view data, int mode, bool sync) {
  fs::path tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(errno, "create " + tmp.string());
  ::fchmod(fd, static_cast<mode_t>(mode));  // exact mode, whatever the umask
  if (Status s = WriteAll(fd, data, tmp); !s.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  if ((sync && ::fsync(fd) != 0) || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, "sync " + tmp.string());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, "rename to " + path.string());
  }
  return OkStatus();
}

}  // namespace gantry
