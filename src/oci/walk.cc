// WalkImage (build.h): an image's final file system, read from its layers top to bottom without
// extracting anything.
//
// A path is visible when no upper layer has (1) an entry at the same path, (2) a whiteout of it or
// of one of its parents, (3) an opaque whiteout in one of its parents, or (4) a non-directory at one
// of its parents. Whiteouts of a layer apply to the layers below it only, so they are collected
// while a layer is read and take effect when it is done. Within one layer the first entry of a path
// is the one reported (tar writers emit each path once).

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "oci/build.h"
#include "oci/internal/tar_format.h"

namespace gantry::oci {
namespace {

class Walker {
 public:
  Walker(const WalkFn& fn, const ExtractLimits& limits) : fn_(fn), limits_(limits) {}

  Status Layer(internal::Source& source, size_t layer) {
    internal::TarReader reader(source, limits_.max_total_bytes - stats_.tar_bytes);
    internal::TarHeader h;
    std::vector<std::string> gone, opaque;
    while (true) {
      GANTRY_ASSIGN_OR_RETURN(bool more, reader.Next(h));
      if (!more) break;
      if (++stats_.entries > limits_.max_entries) {
        return ResourceExhaustedError("{}: more than the limit of {} entries", h.name, limits_.max_entries);
      }
      if (Status s = Entry(reader, h, layer, gone, opaque); !s.ok()) return s.WithContext(h.name);
    }
    stats_.tar_bytes += reader.bytes_read();
    gone_.insert(gone.begin(), gone.end());
    opaque_.insert(opaque.begin(), opaque.end());
    return OkStatus();
  }

  const ExtractStats& stats() const { return stats_; }

 private:
  Status Entry(internal::TarReader& reader, const internal::TarHeader& h, size_t layer, std::vector<std::string>& gone,
               std::vector<std::string>& opaque) {
    if (!h.name.empty() && h.name[0] == '/') return InvalidArgumentError("absolute path");
    GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> parts, internal::PathParts(h.name));
    if (parts.empty()) return OkStatus();  // "./": the root
    std::string path = internal::JoinParts(parts, parts.size());
    const std::string& base = parts.back();
    if (base.starts_with(".wh.")) {
      std::string dir = internal::JoinParts(parts, parts.size() - 1);
      if (base == ".wh..wh..opq") {
        opaque.push_back(dir);
      } else {
        std::string target = base.substr(4);
        if (target.empty() || target == "." || target == ".." || target.starts_with(".wh.")) {
          return InvalidArgumentError("malformed whiteout");
        }
        gone.push_back(dir.empty() ? target : dir + "/" + target);
      }
      return OkStatus();
    }
    if (!Visible(parts, path)) return OkStatus();
    seen_.emplace(path, h.type == '5');
    if (h.type == '0' && h.size > limits_.max_file_bytes) {
      return ResourceExhaustedError("{} bytes, more than the limit of {} per file", h.size, limits_.max_file_bytes);
    }
    ImageEntry e{.path = std::move(path), .type = h.type, .mode = h.mode & 07777, .size = h.size,
                 .linkname = h.linkname, .layer = layer};
    if (e.type == '1') {
      GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> target, internal::PathParts(h.linkname));
      e.linkname = internal::JoinParts(target, target.size());
    }
    ReadFn read = [&](char* buf, size_t n) -> Result<size_t> {
      if (e.type != '0') return size_t{0};
      GANTRY_ASSIGN_OR_RETURN(size_t got, reader.ReadData(buf, n));
      stats_.bytes += got;
      return got;
    };
    if (e.type == '3' || e.type == '4' || e.type == '6') ++stats_.skipped;
    return fn_(e, read);
  }

  bool Visible(const std::vector<std::string>& parts, const std::string& path) const {
    if (seen_.count(path) != 0 || gone_.count(path) != 0) return false;
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += (i ? "/" : "") + parts[i];
      if (gone_.count(prefix) != 0 || opaque_.count(prefix) != 0) return false;
      auto it = seen_.find(prefix);
      if (it != seen_.end() && !it->second) return false;  // an upper layer's file or link
    }
    return opaque_.count("") == 0;  // an opaque root hides every lower path
  }

  const WalkFn& fn_;
  ExtractLimits limits_;
  ExtractStats stats_;
  std::unordered_map<std::string, bool> seen_;  // path → is a directory, of this layer and those above
  std::unordered_set<std::string> gone_;        // whited out by the layers above
  std::unordered_set<std::string> opaque_;      // directories made opaque by the layers above
};

}  // namespace

Result<ExtractStats> WalkImage(const Layout& layout, std::string_view ref_name, const std::optional<Platform>& platform,
                               const WalkFn& fn, const ExtractLimits& limits) {
  GANTRY_ASSIGN_OR_RETURN(Manifest manifest, ImageManifest(layout, ref_name, platform));
  Walker walker(fn, limits);
  for (size_t i = manifest.layers.size(); i-- > 0;) {
    const Descriptor& l = manifest.layers[i];
    if (!layout.HasBlob(l.digest)) return NotFoundError("layer {} ({}) is not in {}", i, l.digest, layout.dir().string());
    GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<internal::Source> source, internal::OpenLayer(layout.BlobPath(l.digest), l.media_type));
    if (Status s = walker.Layer(*source, i); !s.ok()) return s.WithContext(fmt::format("layer {} ({})", i, l.digest));
  }
  return walker.stats();
}

}  // namespace gantry::oci
