// Layer extraction with archive safety; see ExtractLayer in build.h.
//
// Every entry's parent directory is resolved with ResolveBeneath (symlinks followed only while they
// stay under dest, absolute ones never), missing parents are created one at a time the same way,
// and the final component is created with O_EXCL / O_NOFOLLOW after removing what was there, so no
// write ever goes through a link. Directory modes and times are applied at the end (a read-only
// directory must still receive its entries), again through ResolveBeneath.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <vector>

#include "base/path.h"
#include "oci/build.h"
#include "oci/tree_tar.h"
#include "oci/internal/tar_format.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

// "./a//b/" → {"a", "b"}. Absolute paths and ".." components are refused.
Result<std::vector<std::string>> EntryParts(std::string_view name) {
  if (!name.empty() && name[0] == '/') return InvalidArgumentError("absolute path");
  if (name.find('\0') != std::string_view::npos) return InvalidArgumentError("NUL byte in the name");
  return internal::PathParts(name);
}

bool LstatIsDir(const fs::path& p, bool& exists) {
  struct stat st;
  exists = ::lstat(p.c_str(), &st) == 0;
  return exists && S_ISDIR(st.st_mode);
}

Status RemoveExisting(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);  // never follows symlinks: a link is removed, not its target
  if (ec) return ErrnoError(ec.value(), "remove " + p.string());
  return OkStatus();
}

class Extractor {
 public:
  // tree: a copy of a directory tree (ExtractTreeTar), not an image layer: no whiteouts, and
  // symlinks keep any target.
  Extractor(fs::path dest, const ExtractLimits& limits, bool tree = false)
      : dest_(std::move(dest)), limits_(limits), tree_(tree) {}

  Result<ExtractStats> Run(internal::Source& source) {
    internal::TarReader reader(source, limits_.max_total_bytes);
    internal::TarHeader h;
    while (true) {
      auto more = reader.Next(h);
      if (!more.ok()) return more.status();
      if (!*more) break;
      if (++stats_.entries > limits_.max_entries) {
        return ResourceExhaustedError("{}: more than the limit of {} entries", h.name, limits_.max_entries);
      }
      if (Status s = Apply(reader, h); !s.ok()) return s.WithContext(h.name);
    }
    // Deepest first, so a directory's time is set after its children are in place.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      auto path = ResolveBeneath(dest_, it->first);
      if (!path.ok()) continue;  // replaced by a link since: nothing to set
      int fd = ::open(path->c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) continue;
      ::fchmod(fd, it->second.mode & 01777);
      struct timespec times[2] = {{it->second.mtime, 0}, {it->second.mtime, 0}};
      ::futimens(fd, times);
      ::close(fd);
    }
    stats_.tar_bytes = reader.bytes_read();
    return stats_;
  }

 private:
  // The real directory for parts[0..n), created (0755) where missing.
  Result<fs::path> Parent(const std::vector<std::string>& parts, size_t n) {
    if (n == 0) return dest_;
    auto whole = ResolveBeneath(dest_, internal::JoinParts(parts, n));
    bool exists = false;
    if (whole.ok() && LstatIsDir(*whole, exists)) return whole;
    if (!whole.ok() && whole.status().code() != Code::kNotFound) return whole.status();
    fs::path dir = dest_;
    for (size_t i = 1; i <= n; ++i) {
      auto p = ResolveBeneath(dest_, internal::JoinParts(parts, i));
      if (!p.ok()) return p.status();
      if (!LstatIsDir(*p, exists)) {
        if (exists) return InvalidArgumentError("{} is not a directory", internal::JoinParts(parts, i));
        if (::mkdir(p->c_str(), 0755) != 0) return ErrnoError(errno, "create " + p->string());
        created_.insert(p->string());
      }
      dir = *p;
    }
    return dir;
  }

  Status Apply(internal::TarReader& reader, const internal::TarHeader& h) {
    auto parts = EntryParts(h.name);
    if (!parts.ok()) return parts.status();
    if (parts->empty()) return OkStatus();  // "./": the root itself
    auto parent = Parent(*parts, parts->size() - 1);
    if (!parent.ok()) return parent.status();
    const std::string& name = parts->back();
    if (!tree_ && name.starts_with(".wh.")) return Whiteout(*parent, name);
    fs::path path = *parent / name;
    bool exists = false;
    bool is_dir = LstatIsDir(path, exists);
    if (h.type == '5') {
      if (exists && !is_dir) {
        if (Status s = RemoveExisting(path); !s.ok()) return s;
      }
      if (!is_dir && ::mkdir(path.c_str(), 0755) != 0) return ErrnoError(errno, "create " + path.string());
      created_.insert(path.string());
      dirs_.emplace_back(internal::JoinParts(*parts, parts->size()), h);
      return OkStatus();
    }
    if (h.type == '3' || h.type == '4' || h.type == '6') {
      ++stats_.skipped;
      return OkStatus();
    }
    if (h.type != '0' && h.type != '1' && h.type != '2') {
      return InvalidArgumentError("unsupported entry type {:?}", std::string(1, h.type));
    }
    if (h.type == '0' && h.size > limits_.max_file_bytes) {
      return ResourceExhaustedError("{} bytes, more than the limit of {} per file", h.size, limits_.max_file_bytes);
    }
    fs::path link_source;
    if (h.type == '1') {
      auto target = EntryParts(h.linkname);
      if (!target.ok() || target->empty()) {
        return PermissionDeniedError("hard link to {:?}: outside the destination", h.linkname);
      }
      auto resolved = ResolveBeneath(dest_, internal::JoinParts(*target, target->size()));
      if (!resolved.ok()) return resolved.status().WithContext("hard link to " + h.linkname);
      struct stat st;
      if (::lstat(resolved->c_str(), &st) != 0 || S_ISDIR(st.st_mode)) {
        return InvalidArgumentError("hard link to {:?}: no such file extracted before it", h.linkname);
      }
      link_source = *resolved;
    }
    if (h.type == '2') {
      if (h.linkname.empty()) return InvalidArgumentError("symlink with an empty target");
      if (h.linkname[0] != '/' && !tree_) {
        // Relative to the link's (real) directory: it must not climb above dest.
        std::string dir = parent->string().substr(dest_.string().size());
        while (!dir.empty() && dir[0] == '/') dir.erase(0, 1);
        if (!SafeJoin(dest_, dir.empty() ? h.linkname : dir + "/" + h.linkname).ok()) {
          return PermissionDeniedError("symlink to {:?}: leads outside the destination", h.linkname);
        }
      }
    }
    if (exists) {
      if (Status s = RemoveExisting(path); !s.ok()) return s;
    }
    created_.insert(path.string());
    if (h.type == '2') {
      if (::symlink(h.linkname.c_str(), path.c_str()) != 0) return ErrnoError(errno, "create symlink " + path.string());
      struct timespec times[2] = {{h.mtime, 0}, {h.mtime, 0}};
      ::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW);
      return OkStatus();
    }
    if (h.type == '1') {
      if (::link(link_source.c_str(), path.c_str()) != 0) return ErrnoError(errno, "create hard link " + path.string());
      return OkStatus();
    }
    return WriteFile(reader, h, path);
  }

  Status WriteFile(internal::TarReader& reader, const internal::TarHeader& h, const fs::path& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError(errno, "create " + path.string());
    buf_.resize(1 << 20);
    Status status;
    while (status.ok()) {
      auto n = reader.ReadData(buf_.data(), buf_.size());
      if (!n.ok()) {
        status = n.status();
        break;
      }
      if (*n == 0) break;
      std::string_view left(buf_.data(), *n);
      while (!left.empty()) {
        ssize_t w = ::write(fd, left.data(), left.size());
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          status = ErrnoError(errno, "write " + path.string());
          break;
        }
        left.remove_prefix(static_cast<size_t>(w));
      }
      stats_.bytes += *n;
    }
    if (status.ok()) {
      ::fchmod(fd, h.mode & 01777);  // no setuid / setgid from an image
      struct timespec times[2] = {{h.mtime, 0}, {h.mtime, 0}};
      ::futimens(fd, times);
    }
    ::close(fd);
    return status;
  }

  Status Whiteout(const fs::path& parent, const std::string& name) {
    if (name == ".wh..wh..opq") {
      // Opaque: what lower layers put in this directory goes; this layer's entries stay.
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(parent, ec)) {
        if (created_.count(e.path().string()) == 0) {
          if (Status s = RemoveExisting(e.path()); !s.ok()) return s;
        }
      }
      if (ec) return ErrnoError(ec.value(), "list " + parent.string());
      return OkStatus();
    }
    std::string target = name.substr(4);
    if (target.empty() || target == "." || target == ".." || target.starts_with(".wh.")) {
      return InvalidArgumentError("malformed whiteout");
    }
    return RemoveExisting(parent / target);
  }

  fs::path dest_;
  ExtractLimits limits_;
  bool tree_ = false;
  ExtractStats stats_;
  std::set<std::string> created_;  // paths this layer made (kept by an opaque whiteout)
  std::vector<std::pair<std::string, internal::TarHeader>> dirs_;
  std::vector<char> buf_;
};

}  // namespace

Result<ExtractStats> ExtractLayer(const fs::path& layer_file, std::string_view media_type, const fs::path& dest,
                                  const ExtractLimits& limits) {
  std::error_code ec;
  fs::path root = fs::absolute(dest, ec);
  if (ec || !fs::is_directory(root, ec)) return NotFoundError("extract: {} is not a directory", dest.string());
  auto source = internal::OpenLayer(layer_file, media_type);
  if (!source.ok()) return source.status();
  Extractor extractor(root, limits);
  return extractor.Run(**source);
}

Result<ExtractStats> ExtractTreeTar(const ReadFn& read, const fs::path& dest, const ExtractLimits& limits) {
  std::error_code ec;
  fs::path root = fs::absolute(dest, ec);
  if (ec || !fs::is_directory(root, ec)) return NotFoundError("extract: {} is not a directory", dest.string());
  struct FnSource final : internal::Source {
    explicit FnSource(const ReadFn& r) : read(r) {}
    Result<size_t> Read(char* buf, size_t n) override { return read(buf, n); }
    const ReadFn& read;
  } source(read);
  Extractor extractor(root, limits, /*tree=*/true);
  return extractor.Run(source);
}

Result<Manifest> ImageManifest(const Layout& layout, std::string_view ref_name, const std::optional<Platform>& platform) {
  auto d = layout.Find(ref_name);
  if (!d.ok()) return d.status();
  Descriptor manifest_desc = *d;
  if (IsIndexType(d->media_type)) {
    auto bytes = layout.ReadBlob(d->digest);
    if (!bytes.ok()) return bytes.status();
    auto index = ParseIndex(*bytes, d->media_type);
    if (!index.ok()) return index.status();
    std::vector<const Descriptor*> images;
    std::string names;
    for (const auto& e : index->manifests) {
      if (!IsManifestType(e.media_type) || (e.platform && e.platform->os == "unknown")) continue;
      images.push_back(&e);
      names += (names.empty() ? "" : ", ") + (e.platform ? e.platform->ToString() : std::string("?"));
    }
    const Descriptor* pick = nullptr;
    for (const Descriptor* e : images) {
      if (platform && e->platform && e->platform->os == platform->os && e->platform->architecture == platform->architecture &&
          (platform->variant.empty() || platform->variant == e->platform->variant)) {
        pick = e;
        break;
      }
    }
    if (!platform && images.size() == 1) pick = images[0];
    if (pick == nullptr) {
      return NotFoundError("{} is an index; {} (it has: {})", ref_name.empty() ? "the image" : std::string(ref_name),
                           platform ? "no image for " + platform->ToString() : std::string("name a platform"),
                           names.empty() ? "none" : names);
    }
    manifest_desc = *pick;
  }
  auto bytes = layout.ReadBlob(manifest_desc.digest);
  if (!bytes.ok()) return bytes.status();
  return ParseManifest(*bytes, manifest_desc.media_type);
}

Result<ExtractStats> UnpackImage(const Layout& layout, std::string_view ref_name, const fs::path& dest,
                                 const std::optional<Platform>& platform, const ExtractLimits& limits) {
  GANTRY_ASSIGN_OR_RETURN(Manifest manifest, ImageManifest(layout, ref_name, platform));
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return ErrnoError(ec.value(), "create " + dest.string());
  ExtractStats total;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& l = manifest.layers[i];
    if (!layout.HasBlob(l.digest)) return NotFoundError("layer {} ({}) is not in {}", i, l.digest, layout.dir().string());
    // Each layer gets what the layers before it left of the image's limits.
    ExtractLimits left = limits;
    left.max_total_bytes = limits.max_total_bytes - total.tar_bytes;
    left.max_entries = limits.max_entries - total.entries;
    auto stats = ExtractLayer(layout.BlobPath(l.digest), l.media_type, dest, left);
    if (!stats.ok()) {
      return stats.status().WithContext(fmt::format(
          "layer {} ({}), with {} entries and {} bytes of the image's limits ({} and {}) left", i,
          l.digest, left.max_entries, left.max_total_bytes, limits.max_entries, limits.max_total_bytes));
    }
    total.entries += stats->entries;
    total.bytes += stats->bytes;
    total.skipped += stats->skipped;
    total.tar_bytes += stats->tar_bytes;
  }
  return total;
}

}  // namespace gantry::oci
