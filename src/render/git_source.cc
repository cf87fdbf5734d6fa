// RenderGit: rendering an application path straight from a Git mirror.

#include <unistd.h>

#include <filesystem>
#include <map>

#include "base/hash.h"
#include "base/log.h"
#include "render/internal/documents.h"
#include "render/internal/plain.h"
#include "render/internal/renderers.h"
#include "render/render.h"

namespace gantry::render {
namespace fs = std::filesystem;

namespace {

std::string Normalize(std::string path) {
  while (path.starts_with("./")) path.erase(0, 2);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path == "." ? "" : path;
}

// The renderer for a path from the names of the files directly in it (as Detect does on disk).
Renderer DetectFromTree(const git::ReadResult& tree) {
  bool chart = false;
  for (const git::File& f : tree.files) {
    if (f.path == "kustomization.yaml" || f.path == "kustomization.yml" || f.path == "Kustomization") {
      return Renderer::kKustomize;
    }
    chart |= f.path == "Chart.yaml";
  }
  if (chart) return Renderer::kHelm;
  std::vector<std::string> files;
  for (const git::File& f : tree.files) files.push_back(f.path);
  return internal::JsonnetDetected(files) ? Renderer::kJsonnet : Renderer::kPlain;
}

// Plain manifests from the object database, with the rule RenderPlain applies on disk. A symlink is
// followed when its target is another file read from the same path; anything else is refused.
Result<std::vector<Manifest>> PlainFromTree(const git::ReadResult& tree, const std::string& prefix,
                                            const Limits& limits) {
  std::map<std::string, const git::File*> by_path;
  for (const git::File& f : tree.files) by_path[f.path] = &f;
  std::vector<Manifest> out;
  size_t files = 0;
  for (const git::File& f : tree.files) {
    std::string_view name = f.path;
    if (size_t slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
    bool hidden = name.starts_with('.') || f.path.starts_with('.') || f.path.find("/.") != std::string::npos;
    if (hidden || !internal::IsManifestName(name)) continue;
    if (++files > limits.max_files) {
      return ResourceExhaustedError("more than {} manifest files under {} (limit max_files)", limits.max_files,
                                    prefix.empty() ? "/" : prefix);
    }
    const git::File* file = &f;
    if (f.is_symlink()) {
      // Resolve the target relative to the link's directory, within what was read.
      fs::path target = (fs::path(f.path).parent_path() / f.content).lexically_normal();
      auto it = target.is_absolute() ? by_path.end() : by_path.find(target.string());
      if (it == by_path.end() || it->second->is_symlink()) {
        return PermissionDeniedError("{}{} is a symbolic link to {:?}, which is not a file under {}", prefix,
                                     f.path, f.content, prefix.empty() ? "the repository root" : prefix);
      }
      file = it->second;
    }
    GANTRY_RETURN_IF_ERROR(internal::AppendFile(file->content, prefix + f.path, limits, out));
  }
  return out;
}

}  // namespace

Result<GitRendered> RenderGit(git::Repository& repo, std::string_view revision, const std::string& path,
                              const Options& options, RenderCache* cache) {
  std::string where = fmt::format("{} at {} path {}", git::ScrubUrl(repo.url()), revision, path);
  GitRendered out;
  GANTRY_ASSIGN_OR_RETURN(out.commit, repo.Resolve(revision));
  if (options.check_commit) {
    GANTRY_ASSIGN_OR_RETURN(std::optional<git::CommitSignature> signature, repo.ReadSignature(out.commit));
    GANTRY_RETURN_IF_ERROR(options.check_commit(git::ScrubUrl(repo.url()), out.commit, signature));
  }
  std::string rel = Normalize(path);
  // A cache hit needs no file read: the key is over tree ids, and a plain render's key (the path's
  // tree) or a Kustomize or Helm one (the root tree) that is cached was detected from this very
  // content. Only a miss reads the tree.
  if (cache != nullptr) {
    auto path_tree = repo.TreeId(out.commit, rel);
    auto root_tree = rel.empty() ? path_tree : repo.TreeId(out.commit, "");
    if (path_tree.ok() && root_tree.ok()) {
      for (Renderer r : {Renderer::kPlain, Renderer::kKustomize, Renderer::kHelm, Renderer::kJsonnet}) {
        if (options.renderer != Renderer::kAuto && options.renderer != r) continue;
        std::string key = CacheKey(repo.url() + "@" + (r == Renderer::kPlain ? *path_tree : *root_tree), rel, r, options);
        if (auto hit = cache->Get(key)) {
          out.manifests = std::move(*hit);
          out.cache_hit = true;
          out.renderer = r;
          out.content_key = std::move(key);
          return out;
        }
      }
    }
  }
  git::Limits git_limits{.max_files = options.limits.max_files,
                         .max_file_bytes = options.limits.max_file_bytes,
                         .max_total_bytes = options.limits.max_total_bytes};
  auto tree = repo.ReadTree(out.commit, rel, git_limits);
  if (!tree.ok()) return tree.status().WithContext("render " + where);
  Renderer renderer = options.renderer == Renderer::kAuto ? DetectFromTree(*tree) : options.renderer;
  out.renderer = renderer;

  // The content a render may read: a plain render reads only the path, so its tree id is the key
  // and a commit elsewhere in the repository (another application of a monorepo) keeps the entry;
  // Kustomize bases and Helm value files may be anywhere, so theirs is the root tree.
  auto content = repo.TreeId(out.commit, renderer == Renderer::kPlain ? rel : "");
  if (!content.ok()) return content.status().WithContext("render " + where);
  out.content_key = CacheKey(repo.url() + "@" + *content, rel, renderer, options);
  const std::string& key = out.content_key;
  if (cache != nullptr) {
    if (auto hit = cache->Get(key)) {
      out.manifests = std::move(*hit);
      out.cache_hit = true;
      return out;
    }
  }
  std::string prefix = rel.empty() ? "" : rel + "/";
  if (renderer == Renderer::kPlain) {
    auto manifests = PlainFromTree(*tree, prefix, options.limits);
    if (!manifests.ok()) return manifests.status().WithContext("render " + where);
    if (Status decrypted = internal::DecryptSops(*manifests, options); !decrypted.ok()) {
      return decrypted.WithContext("render " + where);
    }
    out.manifests = std::move(manifests).value();
  } else {
    // External renderers need files: the whole commit (bases and value files may be anywhere in it).
    fs::path base = options.temp_dir.empty() ? fs::temp_directory_path() : fs::path(options.temp_dir);
    fs::path dir = base / fmt::format("gantry-git-render-{}", Sha256Hex(key + out.commit + std::to_string(::getpid())).substr(0, 16));
    std::error_code ec;
    fs::remove_all(dir, ec);
    Status materialized = repo.Materialize(out.commit, "", dir);
    if (!materialized.ok()) {
      fs::remove_all(dir, ec);
      return materialized.WithContext("render " + where);
    }
    Options o = options;
    o.renderer = renderer;
    // The key is extended by what a Kustomize render reads beyond this repository (remote bases'
    // commits, helmCharts): only a render that reads nothing beyond it is stored under `key`.
    RenderCache scratch(0);
    auto r = internal::RenderKeyed(Source{dir, rel.empty() ? "." : rel}, o, cache != nullptr ? cache : &scratch,
                                   repo.url() + "@" + *content, true);
    fs::remove_all(dir, ec);
    if (!r.ok()) return r.status().WithContext("render " + where);
    out.manifests = std::move(r->manifests);
    out.content_key = std::move(r->key);
    out.cache_hit = r->hit;
    out.unpinned = r->unpinned;
    return out;
  }
  if (cache != nullptr) cache->Put(key, out.manifests, internal::ManifestBytes(out.manifests));
  return out;
}

}  // namespace gantry::render
