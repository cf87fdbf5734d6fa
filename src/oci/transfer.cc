// PushImage / PullImage: an image between a registry and an on-disk layout (see registry.h).

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "base/mutex.h"
#include "oci/registry.h"

namespace gantry::oci {
namespace {

// Runs fn(i) for i in [0, n) on up to `parallel` threads; the first error wins and stops the
// workers from taking new items.
Status ForEachParallel(size_t n, int parallel, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  Mutex mu;
  Status first;
  std::atomic<bool> failed{false};
  auto work = [&] {
    while (!failed.load()) {
      size_t i = next++;
      if (i >= n) return;
      Status s = fn(i);
      if (!s.ok()) {
        MutexLock lock(mu);
        if (first.ok()) first = s;
        failed = true;
      }
    }
  };
  size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(parallel, 1)));
  if (threads <= 1) {
    work();
    return first;
  }
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  return first;
}

Reference WithIdentifier(Reference ref, std::string tag, std::string digest) {
  ref.tag = std::move(tag);
  ref.digest = std::move(digest);
  return ref;
}

// A BlobWriter into memory, bounded.
class StringWriter final : public BlobWriter {
 public:
  explicit StringWriter(uint64_t max) : max_(max) {}
  Status Write(std::string_view chunk) override {
    if (data_.size() + chunk.size() > max_) return ResourceExhaustedError("blob larger than {} bytes", max_);
    data_.append(chunk);
    return OkStatus();
  }
  uint64_t size() const override { return data_.size(); }
  Result<Descriptor> Commit(std::string_view media_type, std::string_view) override {
    return Descriptor{std::string(media_type), Sha256Digest(data_), static_cast<int64_t>(data_.size())};
  }
  std::string Take() { return std::move(data_); }

 private:
  uint64_t max_;
  std::string data_;
};

}  // namespace

Result<std::string> FetchBlobBytes(Registry& registry, const Reference& repo, const Descriptor& desc,
                                   uint64_t max_bytes) {
  if (desc.size < 0 || static_cast<uint64_t>(desc.size) > max_bytes) {
    return ResourceExhaustedError("blob {} of {}: {} bytes, more than the {} accepted", desc.digest,
                                  repo.repository, desc.size, max_bytes);
  }
  StringWriter writer(max_bytes);
  GANTRY_RETURN_IF_ERROR(registry.FetchBlob(repo, desc, writer));
  std::string data = writer.Take();
  if (Sha256Digest(data) != desc.digest || static_cast<int64_t>(data.size()) != desc.size) {
    return DataLossError("blob {} of {}: the bytes do not match the digest and size", desc.digest, repo.repository);
  }
  return data;
}

Result<Descriptor> PushBlobBytes(Registry& registry, const Reference& repo, std::string_view bytes,
                                 std::string_view media_type) {
  Descriptor desc{std::string(media_type), Sha256Digest(bytes), static_cast<int64_t>(bytes.size())};
  GANTRY_ASSIGN_OR_RETURN(auto present, registry.StatBlob(repo, desc.digest));
  if (present) return desc;
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  std::string path = (dir / "gantry-blob-XXXXXX").string();
  int fd = ::mkstemp(path.data());
  if (fd < 0) return ErrnoError(errno, "create a temp file in " + dir.string());
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = ErrnoError(errno, "write " + path);
      ::close(fd);
      ::unlink(path.c_str());
      return s;
    }
    written += static_cast<size_t>(n);
  }
  ::close(fd);
  Status pushed = registry.PushBlob(repo, desc, path);
  ::unlink(path.c_str());
  if (!pushed.ok()) return pushed;
  return desc;
}

Result<std::string> PushImage(Registry& registry, const Layout& layout, std::string_view ref_name,
                              const Reference& dest, const PushOptions& options) {
  std::string what = fmt::format("push {}:{} to {}", layout.dir().string(), ref_name, dest.ToString());
  GANTRY_ASSIGN_OR_RETURN(Descriptor top, layout.Find(ref_name));
  // Nothing to do when the tag already points at these bytes: one HEAD.
  {
    Result<std::optional<Descriptor>> there = registry.HeadManifest(dest);
    if (!there.ok() && there.status().code() != Code::kNotFound) return there.status().WithContext(what);
    if (there.ok() && *there && (*there)->digest == top.digest) return top.digest;
  }
  if (!dest.digest.empty() && dest.digest != top.digest)
    return InvalidArgumentError("{}: the image has digest {}, not the one named", what, top.digest);

  // The manifests to push (children of an index first) and the blobs they name.
  struct Item {
    Descriptor desc;
    std::string bytes;
  };
  std::vector<Item> children;
  std::vector<Descriptor> blobs;
  std::set<std::string> seen;
  auto add_manifest_blobs = [&](const std::string& bytes, const Descriptor& d) -> Status {
    GANTRY_ASSIGN_OR_RETURN(Manifest m, ParseManifest(bytes, d.media_type));
    for (const Descriptor* b : {&m.config}) {
      if (seen.insert(b->digest).second) blobs.push_back(*b);
    }
    for (const Descriptor& l : m.layers) {
      if (!l.urls.empty()) continue;  // foreign layers are not pushed
      if (seen.insert(l.digest).second) blobs.push_back(l);
    }
    return OkStatus();
  };
  GANTRY_ASSIGN_OR_RETURN(std::string top_bytes, layout.ReadBlob(top.digest, 4 << 20));
  if (IsIndexType(top.media_type)) {
    GANTRY_ASSIGN_OR_RETURN(Index index, ParseIndex(top_bytes, top.media_type));
    for (const Descriptor& d : index.manifests) {
      GANTRY_ASSIGN_OR_RETURN(std::string bytes, layout.ReadBlob(d.digest, 4 << 20));
      if (IsManifestType(d.media_type)) {
        GANTRY_RETURN_IF_ERROR(add_manifest_blobs(bytes, d).WithContext(what + ": " + d.digest));
      } else if (!IsIndexType(d.media_type)) {
        if (seen.insert(d.digest).second) blobs.push_back(d);  // an artifact: push as a blob
        continue;
      }
      children.push_back({d, std::move(bytes)});
    }
  } else {
    GANTRY_RETURN_IF_ERROR(add_manifest_blobs(top_bytes, top).WithContext(what));
  }

  Status blobs_pushed = ForEachParallel(blobs.size(), options.parallel, [&](size_t i) -> Status {
    const Descriptor& b = blobs[i];
    std::string blob_what = fmt::format("{}: blob {}", what, b.digest);
    if (!layout.HasBlob(b.digest)) return NotFoundError("{}: not in the layout", blob_what);
    GANTRY_ASSIGN_OR_RETURN(std::optional<Descriptor> present, registry.StatBlob(dest, b.digest));
    if (present) return OkStatus();
    for (const std::string& from : options.mount_from) {
      if (from == dest.repository) continue;
      GANTRY_ASSIGN_OR_RETURN(bool mounted, registry.MountBlob(dest, b.digest, from));
      if (mounted) return OkStatus();
    }
    return registry.PushBlob(dest, b, layout.BlobPath(b.digest)).WithContext(blob_what);
  });
  GANTRY_RETURN_IF_ERROR(blobs_pushed);
  Status children_pushed = ForEachParallel(children.size(), options.parallel, [&](size_t i) -> Status {
    const Item& c = children[i];
    return registry.PutManifest(WithIdentifier(dest, "", c.desc.digest), c.desc.media_type, c.bytes)
        .status()
        .WithContext(what);
  });
  GANTRY_RETURN_IF_ERROR(children_pushed);
  GANTRY_ASSIGN_OR_RETURN(std::string digest, registry.PutManifest(dest, top.media_type, top_bytes));
  return digest;
}

Result<Descriptor> PullImage(Registry& registry, const Reference& src, const Layout& layout,
                             std::string_view ref_name, const std::optional<Platform>& platform,
                             int parallel) {
  std::string what = fmt::format("pull {} into {}", src.ToString(), layout.dir().string());
  GANTRY_ASSIGN_OR_RETURN(RawManifest top, registry.GetManifest(src));
  std::vector<RawManifest> manifests;  // image manifests whose blobs are fetched
  std::vector<RawManifest> indexes;    // written as they are
  if (IsIndexType(top.media_type)) {
    GANTRY_ASSIGN_OR_RETURN(Index index, ParseIndex(top.bytes, top.media_type));
    std::vector<Descriptor> wanted;
    if (platform) {
      for (const Descriptor& d : index.manifests)
        if (IsManifestType(d.media_type) && PlatformMatches(*platform, d.platform)) {
          wanted.push_back(d);
          break;
        }
      if (wanted.empty()) {
        std::string have;
        for (const Descriptor& d : index.manifests)
          if (d.platform) have += (have.empty() ? "" : ", ") + d.platform->ToString();
        return NotFoundError("{}: no manifest for platform {} (the index has: {})", what,
                             platform->ToString(), have.empty() ? "none" : have);
      }
    } else {
      wanted = index.manifests;
      indexes.push_back(top);
    }
    for (const Descriptor& d : wanted) {
      if (!IsManifestType(d.media_type)) continue;
      GANTRY_ASSIGN_OR_RETURN(RawManifest m, registry.GetManifest(WithIdentifier(src, "", d.digest)));
      m.media_type = d.media_type;
      manifests.push_back(std::move(m));
    }
  } else {
    manifests.push_back(top);
  }

  std::vector<Descriptor> blobs;
  std::set<std::string> seen;
  for (const RawManifest& m : manifests) {
    GANTRY_ASSIGN_OR_RETURN(Manifest parsed, ParseManifest(m.bytes, m.media_type));
    if (seen.insert(parsed.config.digest).second) blobs.push_back(parsed.config);
    for (const Descriptor& l : parsed.layers)
      if (l.urls.empty() && seen.insert(l.digest).second) blobs.push_back(l);
  }
  Status fetched = ForEachParallel(blobs.size(), parallel, [&](size_t i) -> Status {
    const Descriptor& b = blobs[i];
    if (layout.HasBlob(b.digest)) return OkStatus();
    GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, layout.NewBlob());
    GANTRY_RETURN_IF_ERROR(registry.FetchBlob(src, b, *writer).WithContext(what));
    return writer->Commit(b.media_type, b.digest).status().WithContext(what);
  });
  GANTRY_RETURN_IF_ERROR(fetched);
  for (const RawManifest& m : manifests) {
    GANTRY_ASSIGN_OR_RETURN(Descriptor d, layout.WriteBlob(m.bytes, m.media_type));
    if (d.digest != m.digest) return DataLossError("{}: manifest digest changed on write", what);
  }
  Descriptor tagged;
  if (indexes.empty()) {
    const RawManifest& m = manifests.front();
    tagged.media_type = m.media_type;
    tagged.digest = m.digest;
    tagged.size = static_cast<int64_t>(m.bytes.size());
    if (platform) tagged.platform = platform;
  } else {
    GANTRY_ASSIGN_OR_RETURN(tagged, layout.WriteBlob(top.bytes, top.media_type));
  }
  GANTRY_RETURN_IF_ERROR(layout.Tag(tagged, ref_name).WithContext(what));
  return tagged;
}

}  // namespace gantry::oci
