#include "oci/artifact.h"

#include <stdlib.h>

#include <chrono>
#include <system_error>
#include <utility>

#include "base/path.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

// A fresh private directory `prefix`XXXXXX (prefix includes its parent); removed with all it holds
// when the owner goes, unless Release()d.
class TempDir {
 public:
  static Result<TempDir> Make(const fs::path& parent, std::string_view name) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) return ErrnoError(ec.value(), "create " + parent.string());
    std::string templ = (parent / (std::string(name) + "XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) return ErrnoError(errno, "create a temp dir in " + parent.string());
    return TempDir(templ);
  }
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

// Removes the temp directories of pulls that began over an hour ago under `cache_dir` (a process
// killed mid-extraction leaves one; no pull takes that long).
void RemoveStalePulls(const fs::path& cache_dir) {
  std::error_code ec;
  auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (fs::directory_iterator it(cache_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code e;
    if (it->path().filename().string().starts_with(".pull-") && fs::last_write_time(it->path(), e) < cutoff && !e) {
      fs::remove_all(it->path(), e);
    }
  }
}

fs::path SystemTemp() {
  std::error_code ec;
  fs::path t = fs::temp_directory_path(ec);
  return ec ? fs::path("/tmp") : t;
}

}  // namespace

std::vector<std::string_view> ArtifactLayerTypes() {
  return {media::kFluxContent, media::kOciLayerGzip, media::kDockerLayerGzip};
}

Result<std::vector<std::string>> SourceIgnorePatterns(std::string_view text) {
  std::vector<std::string> out;
  int line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string line(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '!') {
      return InvalidArgumentError(".sourceignore line {}: negated patterns ({}) are not supported; list the paths "
                                  "to leave out instead",
                                  line_no, line);
    }
    if (line.starts_with("\\")) line.erase(0, 1);  // "\#file": a name that starts with '#'
    while (line.size() > 1 && line.back() == '/') line.pop_back();
    bool any_depth = false;
    while (line.starts_with("**/")) {
      line.erase(0, 3);
      any_depth = true;
    }
    if (line.empty() || line == "/") continue;
    if (!any_depth && !line.starts_with('/') && line.find('/') != std::string::npos) line.insert(0, "/");
    if (any_depth && line.find('/') != std::string::npos) {
      out.push_back("/" + line);  // at the top
      line.insert(0, "*/");       // and below
    }
    out.push_back(std::move(line));
  }
  return out;
}

Result<Descriptor> BuildArtifact(const fs::path& dir, const ArtifactOptions& options, const Layout& layout,
                                 std::string_view ref_name) {
  bool known_type = false;
  for (std::string_view t : ArtifactLayerTypes()) known_type |= options.layer_media_type == t;
  if (!known_type || options.layer_media_type == media::kDockerLayerGzip) {
    return InvalidArgumentError("layer media type {:?}: use {} (Flux) or {} (Argo CD's default)",
                                options.layer_media_type, media::kFluxContent, media::kOciLayerGzip);
  }
  std::error_code ec;
  fs::file_status st = fs::symlink_status(dir, ec);
  if (ec || !fs::exists(st)) return NotFoundError("{}: no such directory", dir.string());
  if (!fs::is_directory(st)) return FailedPreconditionError("{}: not a directory", dir.string());

  LayerSpec spec{.source = dir, .destination = "/", .excludes = {".git"}, .refuse_symlinks = true};
  if (fs::is_regular_file(dir / ".sourceignore", ec)) {
    GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(dir / ".sourceignore", 1u << 20));
    auto patterns = SourceIgnorePatterns(text);
    if (!patterns.ok()) return patterns.status().WithContext((dir / ".sourceignore").string());
    spec.excludes.insert(spec.excludes.end(), patterns->begin(), patterns->end());
  }
  spec.excludes.insert(spec.excludes.end(), options.excludes.begin(), options.excludes.end());

  BuildOptions build;  // timestamp 0, owners 0:0, gzip
  GANTRY_ASSIGN_OR_RETURN(LayerResult layer, WriteLayer(spec, build, layout));
  GANTRY_ASSIGN_OR_RETURN(Descriptor config, layout.WriteBlob("{}", media::kFluxConfig));

  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  m.config = config;
  layer.descriptor.media_type = options.layer_media_type;
  m.layers.push_back(layer.descriptor);
  m.annotations = options.annotations;
  if (!options.source_url.empty()) m.annotations[std::string(kSourceAnnotation)] = options.source_url;
  if (!options.revision.empty()) m.annotations[std::string(kRevisionAnnotation)] = options.revision;
  if (!options.created.empty()) m.annotations[std::string(kCreatedAnnotation)] = options.created;
  GANTRY_ASSIGN_OR_RETURN(Descriptor manifest, layout.WriteBlob(SerializeManifest(m), media::kOciManifest));
  GANTRY_RETURN_IF_ERROR(layout.Tag(manifest, ref_name));
  return manifest;
}

Result<std::string> PushArtifact(Registry& registry, const fs::path& dir, const Reference& dest,
                                 const ArtifactOptions& options) {
  if (!dest.digest.empty()) {
    return InvalidArgumentError("{}: push to a tag; the digest is what the push prints", dest.ToString());
  }
  GANTRY_ASSIGN_OR_RETURN(TempDir tmp, TempDir::Make(SystemTemp(), "gantry-artifact-"));
  GANTRY_ASSIGN_OR_RETURN(Layout layout, Layout::Open(tmp.path(), true));
  GANTRY_ASSIGN_OR_RETURN(Descriptor built, BuildArtifact(dir, options, layout, "artifact"));
  auto pushed = PushImage(registry, layout, "artifact", dest);
  if (!pushed.ok()) return pushed.status().WithContext("push " + dest.ToString());
  if (*pushed != built.digest) {
    return InternalError("push {}: the registry stored {} for the manifest {}", dest.ToString(), *pushed, built.digest);
  }
  return pushed;
}

Result<Reference> ArtifactReference(std::string_view repo_url, std::string_view revision) {
  if (!repo_url.starts_with("oci://")) return InvalidArgumentError("{}: not an oci:// URL", repo_url);
  std::string_view rest = repo_url.substr(6);
  while (rest.ends_with('/')) rest.remove_suffix(1);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return InvalidArgumentError("{}: name a repository after the registry (oci://host/repository)", repo_url);
  }
  if (rest.find('@') != std::string_view::npos || rest.substr(slash).find(':') != std::string_view::npos) {
    return InvalidArgumentError("{}: give the tag or digest as the revision (targetRevision, --revision), not in "
                                "the URL",
                                repo_url);
  }
  std::string text(rest);
  if (revision.empty() || revision == "HEAD") {
    text += ":latest";
  } else if (revision.find(':') != std::string_view::npos) {
    GANTRY_RETURN_IF_ERROR(ValidateDigest(revision).WithContext(fmt::format("revision {}", revision)));
    text += "@" + std::string(revision);
  } else {
    text += ":" + std::string(revision);
  }
  auto ref = ParseReference(text);
  if (!ref.ok()) return ref.status().WithContext(fmt::format("{} at {}", repo_url, revision));
  if (ref->registry == "docker.io" && !rest.starts_with("docker.io/")) {
    return InvalidArgumentError("{}: name the registry host first (oci://host/repository)", repo_url);
  }
  return ref;
}

Result<std::string> ResolveArtifact(Registry& registry, const Reference& ref) {
  if (!ref.digest.empty()) return ref.digest;
  auto head = registry.HeadManifest(ref);
  if (!head.ok()) return head.status().WithContext("resolve " + ref.ToString());
  if (!head->has_value()) return NotFoundError("{}: no such tag in the registry", ref.ToString());
  return (*head)->digest;
}

Status CheckArtifactManifest(const Manifest& manifest) {
  std::string accepted;
  for (std::string_view t : ArtifactLayerTypes()) accepted += (accepted.empty() ? "" : ", ") + std::string(t);
  if (manifest.layers.size() != 1) {
    return InvalidArgumentError("the artifact has {} layers; a manifest artifact has exactly one ({})",
                                manifest.layers.size(), accepted);
  }
  const Descriptor& layer = manifest.layers[0];
  for (std::string_view t : ArtifactLayerTypes()) {
    if (layer.media_type == t) return OkStatus();
  }
  return InvalidArgumentError("layer media type {:?} is not a manifest artifact's; accepted: {}", layer.media_type,
                              accepted);
}

Result<fs::path> PullArtifact(Registry& registry, const Reference& repo, std::string_view digest,
                              const fs::path& cache_dir, const ExtractLimits& limits) {
  GANTRY_RETURN_IF_ERROR(ValidateDigest(digest));
  Reference ref = repo;
  ref.tag.clear();
  ref.digest = std::string(digest);
  const std::string what = ref.ToString();
  fs::path final_dir = cache_dir / std::string(digest.substr(7));
  std::error_code ec;
  if (fs::is_directory(final_dir, ec)) return final_dir;  // only complete extractions are renamed there

  auto raw = registry.GetManifest(ref);
  if (!raw.ok()) return raw.status().WithContext("fetch manifest " + what);
  if (IsIndexType(raw->media_type)) {
    return InvalidArgumentError("{}: an image index (several platforms), not a manifest artifact", what);
  }
  auto manifest = ParseManifest(raw->bytes, raw->media_type);
  if (!manifest.ok()) return manifest.status().WithContext(what);
  GANTRY_RETURN_IF_ERROR(CheckArtifactManifest(*manifest).WithContext(what));
  const Descriptor& layer = manifest->layers[0];
  if (layer.size < 0 || static_cast<uint64_t>(layer.size) > limits.max_total_bytes) {
    return ResourceExhaustedError("{}: layer of {} bytes is over the limit of {} bytes", what, layer.size,
                                  limits.max_total_bytes);
  }

  RemoveStalePulls(cache_dir);
  GANTRY_ASSIGN_OR_RETURN(TempDir tmp, TempDir::Make(cache_dir, ".pull-"));
  GANTRY_ASSIGN_OR_RETURN(Layout layout, Layout::Open(tmp.path() / "layout", true));
  GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, layout.NewBlob());
  if (Status s = registry.FetchBlob(ref, layer, *writer); !s.ok()) {
    return s.WithContext(fmt::format("fetch layer {} of {}", layer.digest, what));
  }
  auto blob = writer->Commit(layer.media_type, layer.digest);
  if (!blob.ok()) return blob.status().WithContext(fmt::format("layer {} of {}", layer.digest, what));
  fs::path content = tmp.path() / "content";
  fs::create_directory(content, ec);
  if (ec) return ErrnoError(ec.value(), "create " + content.string());
  auto stats = ExtractLayer(layout.BlobPath(layer.digest), media::kOciLayerGzip /* every artifact layer type is tar+gzip */, content, limits);
  if (!stats.ok()) return stats.status().WithContext(fmt::format("extract {}", what));
  fs::rename(content, final_dir, ec);
  if (ec && !fs::is_directory(final_dir)) return ErrnoError(ec.value(), "rename into " + final_dir.string());
  return final_dir;  // ours, or a concurrent pull's that won the rename
}

}  // namespace gantry::oci
