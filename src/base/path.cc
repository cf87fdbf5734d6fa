#include "base/path.h"

#include "base/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <functional>
#include <memory>
#include <utility>
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

std::string JoinRel(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

// One CopyTreeBeneath. `src_rel` / `dst_rel` below are the paths relative to the roots, for messages.
class TreeCopy {
 public:
  TreeCopy(const fs::path& src_root, const fs::path& dst_root, const CopyLimits& limits)
      : src_root_(src_root), dst_root_(dst_root), limits_(limits), buf_(1 << 18) {}

  Result<CopyStats> Run(const std::vector<std::string>& sparts, const std::vector<std::string>& dparts) {
    Fd src(::open(src_root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (src.get() < 0) return ErrnoError(errno, "open " + src_root_.string());
    Fd dst(::open(dst_root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dst.get() < 0) return ErrnoError(errno, "open " + dst_root_.string());
    // The source: the root itself, or its last component opened without following it.
    std::string srel;
    for (size_t i = 0; i + 1 < sparts.size(); ++i) {
      srel = JoinRel(srel, sparts[i]);
      GANTRY_ASSIGN_OR_RETURN(src, OpenDir(src.get(), sparts[i], src_root_ / srel));
    }
    struct stat st;
    if (sparts.empty()) {
      if (::fstat(src.get(), &st) != 0) return ErrnoError(errno, "stat " + src_root_.string());
    } else {
      const std::string& name = sparts.back();
      srel = JoinRel(srel, name);
      if (::fstatat(src.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return ErrnoError(errno, (src_root_ / srel).string());
      }
      if (S_ISLNK(st.st_mode)) return LinkError(src_root_ / srel);
      if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        return FailedPreconditionError("{} is not a regular file or a directory", (src_root_ / srel).string());
      }
      auto opened = S_ISDIR(st.st_mode) ? OpenDir(src.get(), name, src_root_ / srel)
                                        : OpenFile(src.get(), name, src_root_ / srel, st);
      if (!opened.ok()) return opened.status();
      src = std::move(opened).value();
    }
    // The destination's parent, created where missing.
    std::string drel;
    for (size_t i = 0; i + 1 < dparts.size(); ++i) {
      drel = JoinRel(drel, dparts[i]);
      GANTRY_ASSIGN_OR_RETURN(dst, MakeDir(dst.get(), dparts[i], drel, 0755, nullptr));
    }
    if (S_ISREG(st.st_mode)) {
      if (dparts.empty()) return InvalidArgumentError("cannot copy the file {} onto the directory {}",
                                                      (src_root_ / srel).string(), dst_root_.string());
      GANTRY_RETURN_IF_ERROR(Count());
      GANTRY_RETURN_IF_ERROR(CopyFile(src.get(), st, dst.get(), dparts.back(), srel, JoinRel(drel, dparts.back())));
      return stats_;
    }
    bool created = false;
    if (!dparts.empty()) {
      drel = JoinRel(drel, dparts.back());
      GANTRY_ASSIGN_OR_RETURN(dst, MakeDir(dst.get(), dparts.back(), drel, 0700, &created));
    }
    GANTRY_RETURN_IF_ERROR(CopyDir(src.get(), dst.get(), srel, drel, 0));
    if (created) ::fchmod(dst.get(), st.st_mode & 0777);
    return stats_;
  }

 private:
  static Status LinkError(const fs::path& shown) {
    return PermissionDeniedError("{} is a symbolic link; links are not followed here", shown.string());
  }

  // Why openat(dirfd, name) failed with `err`, naming the path.
  static Status OpenError(int err, int dirfd, const std::string& name, const fs::path& shown) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) return LinkError(shown);
      if (err == ENOTDIR) return FailedPreconditionError("{} is not a directory", shown.string());
    }
    return ErrnoError(err, "open " + shown.string());
  }

  static Result<Fd> OpenDir(int dirfd, const std::string& name, const fs::path& shown) {
    Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) return OpenError(errno, dirfd, name, shown);
    return fd;
  }

  // A regular file, opened without following a link or blocking on a FIFO swapped in after `st`.
  static Result<Fd> OpenFile(int dirfd, const std::string& name, const fs::path& shown, struct stat& st) {
    Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd.get() < 0) return OpenError(errno, dirfd, name, shown);
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat " + shown.string());
    if (!S_ISREG(st.st_mode)) return FailedPreconditionError("{} is no longer a regular file", shown.string());
    return fd;
  }

  // The destination directory `name` in `dirfd`, created with `mode` when missing (*created says so).
  Result<Fd> MakeDir(int dirfd, const std::string& name, const std::string& drel, mode_t mode, bool* created) {
    bool made = ::mkdirat(dirfd, name.c_str(), mode) == 0;
    if (!made && errno != EEXIST) return ErrnoError(errno, "create " + (dst_root_ / drel).string());
    if (created != nullptr) *created = made;
    return OpenDir(dirfd, name, dst_root_ / drel);
  }

  Status Count() {
    if (limits_.max_entries > 0 && stats_.files + stats_.dirs + stats_.links >= limits_.max_entries) {
      return ResourceExhaustedError("copy of {}: more than the limit of {} entries", src_root_.string(),
                                    limits_.max_entries);
    }
    return OkStatus();
  }

  // Copies the entries of the open directory `sfd` into the open directory `dfd`.
  Status CopyDir(int sfd, int dfd, const std::string& srel, const std::string& drel, int depth) {
    if (depth > limits_.max_depth) {
      return ResourceExhaustedError("{}: deeper than the limit of {} directories", (src_root_ / srel).string(),
                                    limits_.max_depth);
    }
    ++stats_.dirs;
    std::vector<std::string> names;
    {
      int lfd = ::openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // its own offset for readdir
      DIR* d = lfd < 0 ? nullptr : ::fdopendir(lfd);
      if (d == nullptr) {
        int err = errno;
        if (lfd >= 0) ::close(lfd);
        return ErrnoError(err, "read " + (src_root_ / srel).string());
      }
      while (struct dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
      }
      ::closedir(d);
    }
    for (const std::string& name : names) {
      std::string s = JoinRel(srel, name), t = JoinRel(drel, name);
      struct stat st;
      if (::fstatat(sfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed since the listing
        return ErrnoError(errno, "stat " + (src_root_ / s).string());
      }
      if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        ++stats_.skipped;
        continue;
      }
      GANTRY_RETURN_IF_ERROR(Count());
      if (S_ISLNK(st.st_mode)) {
        GANTRY_RETURN_IF_ERROR(CopyLink(sfd, name, dfd, s, t));
      } else if (S_ISDIR(st.st_mode)) {
        GANTRY_ASSIGN_OR_RETURN(Fd sub, OpenDir(sfd, name, src_root_ / s));
        bool created = false;
        GANTRY_ASSIGN_OR_RETURN(Fd dsub, MakeDir(dfd, name, t, 0700, &created));
        GANTRY_RETURN_IF_ERROR(CopyDir(sub.get(), dsub.get(), s, t, depth + 1));
        if (created) ::fchmod(dsub.get(), st.st_mode & 0777);
      } else {
        GANTRY_ASSIGN_OR_RETURN(Fd in, OpenFile(sfd, name, src_root_ / s, st));
        GANTRY_RETURN_IF_ERROR(CopyFile(in.get(), st, dfd, name, s, t));
      }
    }
    return OkStatus();
  }

  // Removes a non-directory at dfd/name (a link itself, not its target).
  Status Unlink(int dfd, const std::string& name, const std::string& drel) {
    if (::unlinkat(dfd, name.c_str(), 0) == 0 || errno == ENOENT) return OkStatus();
    if (errno == EISDIR || errno == EPERM) {
      return FailedPreconditionError("{} is a directory; a file cannot replace it", (dst_root_ / drel).string());
    }
    return ErrnoError(errno, "remove " + (dst_root_ / drel).string());
  }

  Status CopyLink(int sfd, const std::string& name, int dfd, const std::string& srel, const std::string& drel) {
    char target[PATH_MAX];
    ssize_t n = ::readlinkat(sfd, name.c_str(), target, sizeof(target));
    if (n < 0) return ErrnoError(errno, "read link " + (src_root_ / srel).string());
    if (static_cast<size_t>(n) >= sizeof(target)) {
      return InvalidArgumentError("{}: link target too long", (src_root_ / srel).string());
    }
    GANTRY_RETURN_IF_ERROR(Unlink(dfd, name, drel));
    if (::symlinkat(std::string(target, static_cast<size_t>(n)).c_str(), dfd, name.c_str()) != 0) {
      return ErrnoError(errno, "create link " + (dst_root_ / drel).string());
    }
    ++stats_.links;
    return OkStatus();
  }

  Status CopyFile(int in, const struct stat& st, int dfd, const std::string& name, const std::string& srel,
                  const std::string& drel) {
    GANTRY_RETURN_IF_ERROR(Unlink(dfd, name, drel));
    fs::path shown = dst_root_ / drel;
    Fd out(::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (out.get() < 0) return ErrnoError(errno, "create " + shown.string());
    while (true) {
      ssize_t n = ::read(in, buf_.data(), buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "read " + (src_root_ / srel).string());
      if (n == 0) break;
      stats_.bytes += static_cast<uint64_t>(n);
      if (limits_.max_bytes > 0 && stats_.bytes > limits_.max_bytes) {
        return ResourceExhaustedError("copy of {}: more than the limit of {} bytes", src_root_.string(),
                                      limits_.max_bytes);
      }
      GANTRY_RETURN_IF_ERROR(WriteAll(out.get(), std::string_view(buf_.data(), static_cast<size_t>(n)), shown));
    }
    if (::fchmod(out.get(), st.st_mode & 0777) != 0) return ErrnoError(errno, "chmod " + shown.string());
    ++stats_.files;
    return OkStatus();
  }

  const fs::path& src_root_;
  const fs::path& dst_root_;
  const CopyLimits& limits_;
  std::vector<char> buf_;
  CopyStats stats_;
};

}  // namespace

Result<CopyStats> CopyTreeBeneath(const fs::path& src_root, std::string_view src_rel, const fs::path& dst_root,
                                  std::string_view dst_rel, const CopyLimits& limits) {
  GANTRY_ASSIGN_OR_RETURN(auto sparts, Components(src_rel));
  GANTRY_ASSIGN_OR_RETURN(auto dparts, Components(dst_rel));
  return TreeCopy(src_root, dst_root, limits).Run(sparts, dparts);
}

namespace {

// Calls visit(dirfd, name, shown) for every entry beneath the directory `dirfd`, descending into
// directories through descriptors opened with O_NOFOLLOW (never through a link, whatever a
// concurrent writer swaps in). Entries that vanish meanwhile are skipped.
using Visit = std::function<Status(int dirfd, const char* name, const fs::path& shown)>;
Status WalkDir(int dirfd, const fs::path& shown, int depth, int max_depth, const Visit& visit) {
  if (depth > max_depth) return InvalidArgumentError("{}: more than {} levels of directories", shown.string(), max_depth);
  int list_fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (list_fd < 0) return ErrnoError(errno, "open " + shown.string());
  DIR* dir = ::fdopendir(list_fd);
  if (dir == nullptr) {
    ::close(list_fd);
    return ErrnoError(errno, "list " + shown.string());
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    GANTRY_RETURN_IF_ERROR(visit(dirfd, e->d_name, shown / name));
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    Fd sub(::openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub.get() < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;  // gone, or not a directory (now)
      return ErrnoError(errno, "open " + (shown / name).string());
    }
    GANTRY_RETURN_IF_ERROR(WalkDir(sub.get(), shown / name, depth + 1, max_depth, visit));
  }
  return OkStatus();
}

Result<Fd> OpenTreeRoot(const fs::path& root) {
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ELOOP || errno == ENOTDIR) return InvalidArgumentError("{} is not a directory (or is a link)", root.string());
    return ErrnoError(errno, "open " + root.string());
  }
  return fd;
}

}  // namespace

Status ChownTreeBeneath(const fs::path& root, uint32_t uid, uint32_t gid, int max_depth) {
  GANTRY_ASSIGN_OR_RETURN(Fd fd, OpenTreeRoot(root));
  if (::fchown(fd.get(), uid, gid) != 0) return ErrnoError(errno, "chown " + root.string());
  return WalkDir(fd.get(), root, 0, max_depth, [&](int dirfd, const char* name, const fs::path& shown) -> Status {
    if (::fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
      return ErrnoError(errno, "chown " + shown.string());
    }
    return OkStatus();
  });
}

Result<uint64_t> TreeBytesBeneath(const fs::path& root, int max_depth) {
  GANTRY_ASSIGN_OR_RETURN(Fd fd, OpenTreeRoot(root));
  uint64_t total = 0;
  GANTRY_RETURN_IF_ERROR(WalkDir(fd.get(), root, 0, max_depth, [&](int dirfd, const char* name, const fs::path&) {
    struct stat st;
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_size);
    }
    return OkStatus();
  }));
  return total;
}

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
  // An unpredictable name, created exclusively: a link planted under any name is never written through.
  fs::path tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    uint64_t r;
    if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) return ErrnoError(errno, "getrandom");
    tmp = path;
    tmp += fmt::format(".tmp.{:016x}", r);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && (errno != EEXIST || attempt == 9)) return ErrnoError(errno, "create " + tmp.string());
  }
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

Status MakePrivateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return InternalError("create {}: {}", dir.string(), ec.message());
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoError(errno, "stat " + dir.string());
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) return ErrnoError(errno, "chmod 700 " + dir.string());
  return OkStatus();
}

}  // namespace gantry
