#include "render/internal/tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "base/path.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

Result<std::string> NormalizeRel(std::string_view rel, std::string_view what) {
  auto joined = SafeJoin(fs::path(), rel);
  if (!joined.ok()) {
    return PermissionDeniedError("{} {:?} leaves the repository: {}", what, rel,
                                 joined.status().message());
  }
  return joined->string();
}

Status WriteNewFile(const fs::path& path, std::string_view data, bool executable) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  executable ? 0755 : 0644);
  if (fd < 0) return ErrnoError(errno, "create " + path.string());
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError(err, "write " + path.string());
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::close(fd) != 0) return ErrnoError(errno, "close " + path.string());
  return OkStatus();
}

Status Materializer::AddTree(const std::string& rel) {
  std::vector<fs::path> chain;
  return Walk(rel, chain);
}

Status Materializer::AddFile(const std::string& rel, const fs::path& dest_path) {
  GANTRY_ASSIGN_OR_RETURN(fs::path resolved, ResolveBeneath(root_, rel));
  struct stat st;
  if (::stat(resolved.c_str(), &st) != 0) return NotFoundError("{}: no such file in the repository", rel);
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError("{}: not a regular file", rel);
  return TakeFile(rel, resolved, (st.st_mode & 0111) != 0, dest_path);
}

Status Materializer::Walk(const std::string& rel, std::vector<fs::path>& chain) {
  if (chain.size() > 64) return ResourceExhaustedError("{}: directories nested deeper than 64 levels", rel);
  GANTRY_ASSIGN_OR_RETURN(fs::path dir, ResolveBeneath(root_, rel));
  if (std::find(chain.begin(), chain.end(), dir) != chain.end()) {
    return InvalidArgumentError("{}: a symbolic link loops back to {}", rel,
                                dir.lexically_relative(root_).string());
  }
  if (!dest_.empty()) {
    std::error_code ec;
    fs::create_directories(dest_ / rel, ec);
    if (ec) return InternalError("create {}: {}", (dest_ / rel).string(), ec.message());
  }
  if (hash_ != nullptr) hash_->Update(fmt::format("d {}\n", rel));
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return UnavailableError("list {}: {}", rel.empty() ? "." : rel, ec.message());
  std::sort(names.begin(), names.end());
  chain.push_back(dir);
  for (const std::string& name : names) {
    if (name == ".git") continue;
    std::string child = rel.empty() ? name : rel + "/" + name;
    GANTRY_ASSIGN_OR_RETURN(fs::path resolved, ResolveBeneath(root_, child));
    struct stat st;
    if (::stat(resolved.c_str(), &st) != 0) continue;  // dangling link inside the root
    if (S_ISDIR(st.st_mode)) {
      GANTRY_RETURN_IF_ERROR(Walk(child, chain));
    } else if (S_ISREG(st.st_mode)) {
      GANTRY_RETURN_IF_ERROR(TakeFile(child, resolved, (st.st_mode & 0111) != 0, dest_ / child));
    }  // fifos, sockets, devices: never read
  }
  chain.pop_back();
  return OkStatus();
}

Status Materializer::TakeFile(const std::string& rel, const fs::path& resolved, bool executable,
                              const fs::path& dest_path) {
  if (!taken_.insert(dest_path).second) return OkStatus();
  if (++files_ > limits_.max_files) {
    return ResourceExhaustedError("more than {} files to read from the repository (limit max_files)",
                                  limits_.max_files);
  }
  size_t left = limits_.max_total_bytes - std::min(bytes_, limits_.max_total_bytes);
  auto data = ReadFile(resolved, left);
  if (!data.ok()) {
    if (data.status().code() == Code::kResourceExhausted) {
      return ResourceExhaustedError("files to read from the repository exceed {} bytes in all at {} "
                                    "(limit max_total_bytes)", limits_.max_total_bytes, rel);
    }
    return data.status();
  }
  bytes_ += data->size();
  if (hash_ != nullptr) {
    hash_->Update(fmt::format("f {} {} {} {}\n", dest_path.filename().string(), rel, executable ? 'x' : '-',
                              data->size()));
    hash_->Update(*data);
  }
  if (dest_.empty()) return OkStatus();
  const fs::path& out = dest_path;
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec) return InternalError("create {}: {}", out.parent_path().string(), ec.message());
  return WriteNewFile(out, *data, executable);
}

}  // namespace gantry::render::internal
