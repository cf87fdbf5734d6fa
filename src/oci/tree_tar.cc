// WriteTreesTar (ExtractTreeTar is in extract.cc, beside the extractor it shares); see tree_tar.h.

#include "oci/tree_tar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "oci/internal/tar_format.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

class TreeWriter {
 public:
  TreeWriter(const std::function<Status(std::string_view)>& sink, uint64_t max_bytes)
      : writer_(sink), max_bytes_(max_bytes) {}

  Status Tree(const TarTree& tree) {
    GANTRY_RETURN_IF_ERROR(CheckPrefix(tree.prefix));
    struct stat st;
    if (::lstat(tree.root.c_str(), &st) != 0) {
      if (errno != ENOENT) return ErrnoError(errno, "stat " + tree.root.string());
      st = {};
      st.st_mode = S_IFDIR | 0755;
    } else if (S_ISREG(st.st_mode) && !tree.prefix.empty()) {
      return Entry(tree.root, tree.prefix, st);
    } else if (!S_ISDIR(st.st_mode)) {
      return InvalidArgumentError("tar: {} is not a directory{}", tree.root.string(), tree.prefix.empty() ? "" : " or a file");
    }
    if (!tree.prefix.empty()) {
      if (Status s = Entry(tree.root, tree.prefix, st); !s.ok()) return s;
    }
    if (!S_ISDIR(st.st_mode) || ::access(tree.root.c_str(), F_OK) != 0) return OkStatus();
    std::error_code ec;
    // Never descends into a link to a directory (directory_options::none).
    for (auto it = fs::recursive_directory_iterator(tree.root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (::lstat(it->path().c_str(), &st) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoError(errno, "stat " + it->path().string());
      }
      std::string name = it->path().lexically_relative(tree.root).generic_string();
      if (!tree.prefix.empty()) name = tree.prefix + "/" + name;
      if (Status s = Entry(it->path(), name, st); !s.ok()) return s;
    }
    if (ec) return ErrnoError(ec.value(), "list " + tree.root.string());
    return OkStatus();
  }

  Status Finish() { return writer_.Finish(); }
  const TreeTarStats& stats() const { return stats_; }

 private:
  static Status CheckPrefix(std::string_view prefix) {
    if (prefix.empty()) return OkStatus();
    for (size_t at = 0; at <= prefix.size();) {
      size_t slash = std::min(prefix.find('/', at), prefix.size());
      std::string_view part = prefix.substr(at, slash - at);
      if (part.empty() || part == "." || part == "..") {
        return InvalidArgumentError("tar: prefix {:?} is not a relative path without \".\" or \"..\"", prefix);
      }
      at = slash + 1;
    }
    return OkStatus();
  }

  Status Entry(const fs::path& path, const std::string& name, const struct stat& st) {
    internal::TarHeader h;
    h.name = name;
    h.mode = st.st_mode & 0777;
    h.mtime = st.st_mtime;
    if (S_ISDIR(st.st_mode)) {
      h.type = '5';
    } else if (S_ISLNK(st.st_mode)) {
      h.type = '2';
      std::vector<char> buf(static_cast<size_t>(st.st_size > 0 ? st.st_size : 4096) + 1);
      ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
      if (n < 0) return ErrnoError(errno, "read link " + path.string());
      h.linkname.assign(buf.data(), static_cast<size_t>(n));
    } else if (S_ISREG(st.st_mode)) {
      return File(path, h);
    } else {
      ++stats_.skipped;
      return OkStatus();
    }
    ++stats_.entries;
    return writer_.WriteHeader(h);
  }

  Status File(const fs::path& path, internal::TarHeader& h) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, "open " + path.string());
    struct stat st;
    Status status;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return FailedPreconditionError("tar: {} changed while it was read", path.string());
    }
    h.size = static_cast<uint64_t>(st.st_size);
    if (max_bytes_ > 0 && stats_.bytes + h.size > max_bytes_) {
      ::close(fd);
      return ResourceExhaustedError("tar: the files total more than the limit of {} bytes (at {})", max_bytes_,
                                    path.string());
    }
    status = writer_.WriteHeader(h);
    buf_.resize(1 << 20);
    uint64_t left = h.size;
    while (status.ok() && left > 0) {
      ssize_t n = ::read(fd, buf_.data(), std::min<uint64_t>(buf_.size(), left));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = ErrnoError(errno, "read " + path.string());
      } else if (n == 0) {
        status = FailedPreconditionError("tar: {} shrank while it was read", path.string());
      } else {
        status = writer_.WriteData(std::string_view(buf_.data(), static_cast<size_t>(n)));
        left -= static_cast<uint64_t>(n);
      }
    }
    ::close(fd);
    if (status.ok()) {
      ++stats_.entries;
      stats_.bytes += h.size;
    }
    return status;
  }

  internal::TarWriter writer_;
  uint64_t max_bytes_;
  TreeTarStats stats_;
  std::vector<char> buf_;
};

}  // namespace

Result<TreeTarStats> WriteTreesTar(const std::vector<TarTree>& trees,
                                   const std::function<Status(std::string_view)>& sink, uint64_t max_bytes) {
  TreeWriter w(sink, max_bytes);
  for (const auto& t : trees) {
    if (Status s = w.Tree(t); !s.ok()) return s;
  }
  if (Status s = w.Finish(); !s.ok()) return s;
  return w.stats();
}

}  // namespace gantry::oci
