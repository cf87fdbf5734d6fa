// Daemonless image build; see build.h.

#include "oci/build.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "base/hash.h"
#include "oci/internal/tar_format.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;
using internal::TarHeader;
using value::Value;

constexpr int kGzipLevel = 6;
constexpr int kZstdLevel = 3;
constexpr size_t kReadChunk = 1 << 20;
constexpr unsigned kMaxCompressionThreads = 8;  // bounds memory: gzip holds 2 MiB per thread, zstd more

struct Item {
  std::string name;  // in the archive
  fs::path host;     // empty for a parent directory that only exists in the image
  struct stat st;
};

// "/usr/local/" → {"usr", "local"}; InvalidArgument on "..".
Result<std::vector<std::string>> DestinationParts(std::string_view dest) {
  if (dest.empty() || dest[0] != '/') return InvalidArgumentError("destination {:?}: must be an absolute path in the image", dest);
  auto parts = internal::PathParts(dest);
  if (!parts.ok()) return InvalidArgumentError("destination {:?}: \"..\" is not allowed", dest);
  return parts;
}

bool Excluded(const std::vector<std::string>& patterns, const std::string& rel) {
  std::string_view base = std::string_view(rel).substr(rel.rfind('/') + 1);
  for (const auto& p : patterns) {
    if (p.starts_with('/')) {
      if (::fnmatch(p.c_str() + 1, rel.c_str(), 0) == 0) return true;
      continue;
    }
    if (::fnmatch(p.c_str(), rel.c_str(), 0) == 0) return true;
    if (p.find('/') == std::string::npos && ::fnmatch(p.c_str(), std::string(base).c_str(), 0) == 0) return true;
  }
  return false;
}

// Adds `host` (already lstat'ed) as `name`, and everything under it when it is a directory.
Status Walk(const fs::path& host, const std::string& name, const std::string& rel, const struct stat& st,
            const LayerSpec& spec, std::vector<Item>& items) {
  if (S_ISSOCK(st.st_mode)) return OkStatus();  // nothing to archive
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
    return InvalidArgumentError("{}: a device or fifo cannot go into a layer", host.string());
  }
  if (S_ISLNK(st.st_mode) && spec.refuse_symlinks) {
    return InvalidArgumentError("{}: a symlink cannot go into this layer (copy the file, or exclude the link)",
                                host.string());
  }
  if (!name.empty()) items.push_back({name, host, st});
  if (!S_ISDIR(st.st_mode)) return OkStatus();
  DIR* dir = ::opendir(host.c_str());
  if (dir == nullptr) return ErrnoError(errno, "open directory " + host.string());
  std::vector<std::string> children;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") children.emplace_back(n);
  }
  ::closedir(dir);
  for (const auto& c : children) {
    std::string child_rel = rel.empty() ? c : rel + "/" + c;
    if (Excluded(spec.excludes, child_rel)) continue;
    fs::path child = host / c;
    struct stat cst;
    if (::lstat(child.c_str(), &cst) != 0) return ErrnoError(errno, "stat " + child.string());
    if (Status s = Walk(child, name.empty() ? c : name + "/" + c, child_rel, cst, spec, items); !s.ok()) return s;
  }
  return OkStatus();
}

Result<std::vector<Item>> CollectItems(const LayerSpec& spec, uint32_t dir_mode_for_parents) {
  auto parts = DestinationParts(spec.destination);
  if (!parts.ok()) return parts.status();
  struct stat st;
  if (::lstat(spec.source.c_str(), &st) != 0) return ErrnoError(errno, "layer source " + spec.source.string());
  bool into_dir = !spec.destination.empty() && spec.destination.back() == '/';
  if (!S_ISDIR(st.st_mode) && (into_dir || parts->empty())) {
    std::string base = spec.source.filename().string();
    if (base.empty() || base == "." || base == "..") return InvalidArgumentError("layer source {}: no file name", spec.source.string());
    parts->push_back(base);
  }
  std::vector<Item> items;
  // Parent directories of the destination exist in the image only.
  size_t parents = S_ISDIR(st.st_mode) ? parts->size() : parts->size() - 1;
  struct stat dir_st = {};
  dir_st.st_mode = S_IFDIR | dir_mode_for_parents;
  for (size_t i = 1; i <= parents; ++i) {
    if (S_ISDIR(st.st_mode) && i == parts->size()) break;  // the source directory itself, below
    items.push_back({internal::JoinParts(*parts, i), {}, dir_st});
  }
  if (Status s = Walk(spec.source, internal::JoinParts(*parts, parts->size()), "", st, spec, items); !s.ok()) return s;
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.name < b.name; });
  return items;
}

Status WriteFileData(internal::TarWriter& tar, const Item& item, std::vector<char>& buf) {
  int fd = ::open(item.host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + item.host.string());
  uint64_t left = static_cast<uint64_t>(item.st.st_size);
  Status status;
  while (left > 0 && status.ok()) {
    ssize_t n = ::read(fd, buf.data(), std::min<uint64_t>(buf.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoError(errno, "read " + item.host.string());
    } else if (n == 0) {
      status = AbortedError("{}: the file shrank while it was being read", item.host.string());
    } else {
      left -= static_cast<uint64_t>(n);
      status = tar.WriteData(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
  }
  ::close(fd);
  return status;
}

std::string Rfc3339(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string_view OciLayerType(std::string_view media_type) {
  if (media_type == media::kDockerLayerGzip) return media::kOciLayerGzip;
  if (media_type == "application/vnd.docker.image.rootfs.diff.tar") return media::kOciLayer;
  if (media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
  }
  return media_type;
}

Result<Platform> HostPlatform() {
#if defined(__x86_64__)
  return Platform{"linux", "amd64", ""};
#elif defined(__aarch64__)
  return Platform{"linux", "arm64", ""};
#else
  return InvalidArgumentError("scratch image: give the platform (os/arch)");
#endif
}

Value StringSeq(const std::vector<std::string>& items) {
  Value seq = Value::Seq();
  for (const auto& s : items) seq.Append(s);
  return seq;
}

// The base config edited as build.h says.
Result<Value> EditConfig(Value config, const BuildOptions& o, const std::vector<LayerResult>& layers) {
  if (!config.IsMap()) return FailedPreconditionError("base config: not a JSON object");
  std::string created = Rfc3339(o.timestamp);
  config.Set("created", created);
  Value c = config.Get("config") && config.Get("config")->IsMap() ? *config.Get("config") : Value::Map();
  if (o.entrypoint) {
    c.Set("Entrypoint", StringSeq(*o.entrypoint));
    if (!o.cmd) c.Erase("Cmd");
  }
  if (o.cmd) c.Set("Cmd", StringSeq(*o.cmd));
  if (!o.env.empty()) {
    std::vector<std::string> env;
    if (const Value* e = c.Get("Env"); e && e->IsSeq()) {
      for (const auto& v : e->items()) {
        if (v.IsString()) env.emplace_back(v.AsString());
      }
    }
    for (const auto& kv : o.env) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return InvalidArgumentError("env {:?}: expected KEY=VALUE", kv);
      std::string_view key = std::string_view(kv).substr(0, eq + 1);
      auto it = std::find_if(env.begin(), env.end(), [&](const std::string& e) { return e.starts_with(key); });
      if (it != env.end()) {
        *it = kv;
      } else {
        env.push_back(kv);
      }
    }
    c.Set("Env", StringSeq(env));
  }
  if (o.workdir) c.Set("WorkingDir", *o.workdir);
  if (o.user) c.Set("User", *o.user);
  if (!o.expose.empty()) {
    Value ports = c.Get("ExposedPorts") && c.Get("ExposedPorts")->IsMap() ? *c.Get("ExposedPorts") : Value::Map();
    for (const auto& p : o.expose) {
      std::string port = p.find('/') == std::string::npos ? p + "/tcp" : p;
      size_t slash = port.find('/');
      std::string_view num = std::string_view(port).substr(0, slash), proto = std::string_view(port).substr(slash + 1);
      bool digits = !num.empty() && num.size() <= 5 && std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      if (!digits || std::stoi(std::string(num)) > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp")) {
        return InvalidArgumentError("expose {:?}: expected PORT or PORT/tcp|udp|sctp", p);
      }
      ports.Set(port, Value::Map());
    }
    c.Set("ExposedPorts", std::move(ports));
  }
  std::map<std::string, std::string> labels = o.labels;
  if (!o.source_url.empty()) labels["org.opencontainers.image.source"] = o.source_url;
  if (!o.revision.empty()) labels["org.opencontainers.image.revision"] = o.revision;
  if (!labels.empty()) {
    Value l = c.Get("Labels") && c.Get("Labels")->IsMap() ? *c.Get("Labels") : Value::Map();
    for (const auto& [k, v] : labels) l.Set(k, v);
    c.Set("Labels", std::move(l));
  }
  config.Set("config", std::move(c));

  Value rootfs = config.Get("rootfs") && config.Get("rootfs")->IsMap() ? *config.Get("rootfs") : Value::Map();
  rootfs.Set("type", "layers");
  Value diff_ids = rootfs.Get("diff_ids") && rootfs.Get("diff_ids")->IsSeq() ? *rootfs.Get("diff_ids") : Value::Seq();
  Value history = config.Get("history") && config.Get("history")->IsSeq() ? *config.Get("history") : Value::Seq();
  for (size_t i = 0; i < layers.size(); ++i) {
    diff_ids.Append(layers[i].diff_id);
    Value h = Value::Map();
    h.Set("created", created);
    h.Set("created_by", "gantry image build: layer " + o.layers[i].destination);
    history.Append(std::move(h));
  }
  rootfs.Set("diff_ids", std::move(diff_ids));
  config.Set("rootfs", std::move(rootfs));
  config.Set("history", std::move(history));
  return config;
}

Status CopyBlob(const Layout& from, const Layout& to, const Descriptor& d) {
  if (to.HasBlob(d.digest)) return OkStatus();
  if (!from.HasBlob(d.digest)) {
    if (!d.urls.empty()) return OkStatus();  // a foreign layer: fetched by whoever runs the image
    return NotFoundError("base blob {} is not in {}", d.digest, from.dir().string());
  }
  std::error_code ec;
  fs::create_hard_link(from.BlobPath(d.digest), to.BlobPath(d.digest), ec);
  if (!ec || ec == std::errc::file_exists) return OkStatus();
  auto writer = to.NewBlob();
  if (!writer.ok()) return writer.status();
  int fd = ::open(from.BlobPath(d.digest).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + from.BlobPath(d.digest).string());
  std::vector<char> buf(kReadChunk);
  Status status;
  while (status.ok()) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = ErrnoError(errno, "read " + from.BlobPath(d.digest).string());
    if (n <= 0) break;
    status = (*writer)->Write(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  if (!status.ok()) return status;
  return (*writer)->Commit(d.media_type, d.digest).status();
}

// One platform's image: the base manifest (or none for scratch) + the new layers.
Result<Descriptor> BuildManifest(const BuildOptions& o, const Layout& output, const std::optional<Descriptor>& base_desc,
                                 const std::vector<LayerResult>& layers, const std::optional<Platform>& platform) {
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  Value config;
  if (base_desc) {
    auto bytes = o.base->ReadBlob(base_desc->digest);
    if (!bytes.ok()) return bytes.status().WithContext("base manifest");
    auto base = ParseManifest(*bytes, base_desc->media_type);
    if (!base.ok()) return base.status().WithContext("base manifest " + base_desc->digest);
    auto config_bytes = o.base->ReadBlob(base->config.digest);
    if (!config_bytes.ok()) return config_bytes.status().WithContext("base config");
    auto parsed = value::ParseJson(*config_bytes, "base config");
    if (!parsed.ok()) return parsed.status();
    config = *std::move(parsed);
    const Value* diff_ids = config.Find({"rootfs", "diff_ids"});
    size_t n = diff_ids && diff_ids->IsSeq() ? diff_ids->size() : 0;
    if (n != base->layers.size()) {
      return FailedPreconditionError("base image {}: its config lists {} diff_ids for {} layers", base_desc->digest, n,
                                     base->layers.size());
    }
    for (auto& l : base->layers) {
      l.media_type = std::string(OciLayerType(l.media_type));
      if (Status s = CopyBlob(*o.base, output, l); !s.ok()) return s;
      m.layers.push_back(l);
    }
    m.annotations["org.opencontainers.image.base.digest"] = base_desc->digest;
  } else {
    config = Value::Map();
    config.Set("architecture", platform->architecture);
    config.Set("os", platform->os);
    if (!platform->variant.empty()) config.Set("variant", platform->variant);
  }
  auto edited = EditConfig(std::move(config), o, layers);
  if (!edited.ok()) return edited.status();
  auto config_desc = output.WriteBlob(value::ToJson(*edited), media::kOciConfig);
  if (!config_desc.ok()) return config_desc.status();
  m.config = *std::move(config_desc);
  for (const auto& l : layers) m.layers.push_back(l.descriptor);
  if (!o.source_url.empty()) m.annotations["org.opencontainers.image.source"] = o.source_url;
  if (!o.revision.empty()) m.annotations["org.opencontainers.image.revision"] = o.revision;
  auto d = output.WriteBlob(SerializeManifest(m), media::kOciManifest);
  if (!d.ok()) return d.status();
  if (platform) d->platform = platform;
  return d;
}

// The image entries of an index (attestations and other "unknown/unknown" entries left out).
std::vector<Descriptor> ImageEntries(const Index& index) {
  std::vector<Descriptor> out;
  for (const auto& d : index.manifests) {
    if (!IsManifestType(d.media_type) || !d.platform || d.platform->os == "unknown") continue;
    out.push_back(d);
  }
  return out;
}

}  // namespace

Result<LayerResult> WriteLayer(const LayerSpec& spec, const BuildOptions& o, const Layout& output) {
  auto items = CollectItems(spec, 0755);
  if (!items.ok()) return items.status();
  auto blob = output.NewBlob();
  if (!blob.ok()) return blob.status();
  BlobWriter& writer = **blob;
  unsigned threads = o.compression_threads != 0 ? o.compression_threads
                                                : std::clamp(std::thread::hardware_concurrency(), 1u, kMaxCompressionThreads);
  internal::Sink sink = [&](std::string_view d) { return writer.Write(d); };
  std::unique_ptr<internal::Compressor> compressor =
      o.compression == Compression::kZstd ? internal::NewZstdCompressor(sink, kZstdLevel, threads)
                                          : internal::NewGzipCompressor(sink, kGzipLevel, threads);
  Sha256 diff;
  internal::TarWriter tar([&](std::string_view d) {
    diff.Update(d);
    return compressor->Write(d);
  });
  std::map<std::pair<dev_t, ino_t>, std::string> first_name;  // hard links
  std::vector<char> buf(kReadChunk);
  for (const Item& item : *items) {
    TarHeader h;
    h.name = item.name;
    h.mode = item.st.st_mode & 07777;
    h.uid = o.uid;
    h.gid = o.gid;
    h.mtime = o.timestamp;
    if (S_ISDIR(item.st.st_mode)) {
      h.type = '5';
    } else if (S_ISLNK(item.st.st_mode)) {
      h.type = '2';
      std::error_code ec;
      h.linkname = fs::read_symlink(item.host, ec).string();
      if (ec) return ErrnoError(ec.value(), "read link " + item.host.string());
    } else {
      auto [it, first] = first_name.try_emplace({item.st.st_dev, item.st.st_ino}, item.name);
      if (item.st.st_nlink > 1 && !first) {
        h.type = '1';
        h.linkname = it->second;
      } else {
        h.type = '0';
        h.size = static_cast<uint64_t>(item.st.st_size);
      }
    }
    if (Status s = tar.WriteHeader(h); !s.ok()) return s.WithContext("layer " + spec.destination);
    if (h.type == '0') {
      if (Status s = WriteFileData(tar, item, buf); !s.ok()) return s;
    }
  }
  if (Status s = tar.Finish(); !s.ok()) return s;
  if (Status s = compressor->Finish(); !s.ok()) return s;
  auto d = writer.Commit(o.compression == Compression::kZstd ? media::kOciLayerZstd : media::kOciLayerGzip);
  if (!d.ok()) return d.status();
  return LayerResult{*std::move(d), "sha256:" + diff.FinishHex()};
}

Result<BuildResult> BuildImage(const BuildOptions& o, const Layout& output, std::string_view ref_name) {
  // Resolve the base first: a wrong tag or platform should fail before any layer is written.
  std::optional<Descriptor> base_top;
  std::optional<Index> base_index;
  if (o.base != nullptr) {
    auto d = o.base->Find(o.base_ref);
    if (!d.ok()) return d.status().WithContext("base image");
    base_top = *d;
    if (IsIndexType(d->media_type)) {
      auto bytes = o.base->ReadBlob(d->digest);
      if (!bytes.ok()) return bytes.status().WithContext("base index");
      auto index = ParseIndex(*bytes, d->media_type);
      if (!index.ok()) return index.status().WithContext("base index " + d->digest);
      base_index = *std::move(index);
    } else if (!IsManifestType(d->media_type)) {
      return FailedPreconditionError("base image: media type {:?} is neither a manifest nor an index", d->media_type);
    }
  }
  // The (base manifest, platform) pairs to build.
  std::vector<std::pair<std::optional<Descriptor>, std::optional<Platform>>> targets;
  if (base_index) {
    std::vector<Descriptor> entries = ImageEntries(*base_index);
    if (o.platform) {
      auto it = std::find_if(entries.begin(), entries.end(), [&](const Descriptor& e) { return PlatformMatches(*o.platform, e.platform); });
      if (it == entries.end()) {
        std::string names;
        for (const auto& e : entries) names += (names.empty() ? "" : ", ") + e.platform->ToString();
        return NotFoundError("base image has no {} image (it has: {})", o.platform->ToString(), names.empty() ? "none" : names);
      }
      targets.emplace_back(*it, std::nullopt);
    } else {
      if (entries.empty()) return FailedPreconditionError("base index {} lists no image with a platform", base_top->digest);
      for (const auto& e : entries) targets.emplace_back(e, e.platform);
    }
  } else if (base_top) {
    targets.emplace_back(base_top, std::nullopt);
  } else {
    auto platform = o.platform ? Result<Platform>(*o.platform) : HostPlatform();
    if (!platform.ok()) return platform.status();
    targets.emplace_back(std::nullopt, *platform);
  }

  BuildResult result;
  std::vector<LayerResult> layers;
  for (const auto& spec : o.layers) {
    auto l = WriteLayer(spec, o, output);
    if (!l.ok()) return l.status().WithContext(fmt::format("layer {} → {}", spec.source.filename().string(), spec.destination));
    result.layers.push_back(l->descriptor);
    layers.push_back(*std::move(l));
  }
  for (const auto& [base, platform] : targets) {
    auto d = BuildManifest(o, output, base, layers, platform);
    if (!d.ok()) return d.status();
    if (!base_index) d->platform.reset();  // a lone manifest's platform is in its config only
    result.manifests.push_back(*std::move(d));
  }
  if (base_index && !o.platform) {
    Index index;
    index.media_type = std::string(media::kOciIndex);
    index.manifests = result.manifests;
    if (!o.source_url.empty()) index.annotations["org.opencontainers.image.source"] = o.source_url;
    if (!o.revision.empty()) index.annotations["org.opencontainers.image.revision"] = o.revision;
    auto d = output.WriteBlob(SerializeIndex(index), media::kOciIndex);
    if (!d.ok()) return d.status();
    result.image = *std::move(d);
  } else {
    result.image = result.manifests[0];
  }
  if (Status s = output.Tag(result.image, ref_name); !s.ok()) return s;
  return result;
}

}  // namespace gantry::oci
