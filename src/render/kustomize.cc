// Kustomize: which directories a build may read (checked before anything runs), and the edits
// that image overrides and extra components make to the copied kustomization.

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <set>

#include "base/path.h"
#include "render/internal/documents.h"
#include "render/internal/renderers.h"
#include "render/internal/tree.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

// Fields whose entries may name other kustomizations (directories).
constexpr const char* kReferenceFields[] = {"resources", "bases",        "components",
                                            "generators", "transformers", "validators"};

// A URL, an scp-like git address, or a kustomize remote spec (?ref=...): never a local path.
bool IsUrlLike(std::string_view s) {
  return s.find("://") != std::string_view::npos || s.starts_with("git@") || s.starts_with("git::") ||
         s.find("?ref=") != std::string_view::npos || s.find("?version=") != std::string_view::npos ||
         s.find("?submodules=") != std::string_view::npos || s.find("?timeout=") != std::string_view::npos;
}

// "github.com/org/repo/path": the first component looks like a host name.
bool LooksLikeHost(std::string_view s) {
  std::string_view first = s.substr(0, s.find('/'));
  return first.size() < s.size() && first.find('.') != std::string_view::npos && first != "." &&
         first != ".." && !first.starts_with('.');
}

Result<value::Value> ReadKustomization(const fs::path& root, const std::string& rel, const Limits& limits) {
  GANTRY_ASSIGN_OR_RETURN(fs::path path, ResolveBeneath(root, rel));
  auto text = ReadFile(path, limits.max_file_bytes);
  if (!text.ok()) {
    if (text.status().code() == Code::kResourceExhausted) {
      return ResourceExhaustedError("{}: larger than {} bytes (limit max_file_bytes)", rel,
                                    limits.max_file_bytes);
    }
    return text.status();
  }
  GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(*text, rel, limits.parse));
  if (docs.empty()) return value::Value::Map();
  if (docs.size() > 1 || !docs[0].IsMap()) {
    return InvalidArgumentError("{}: a kustomization must be one YAML map", rel);
  }
  return docs[0];
}

// Adds the directory entries of one reference to `queue`, after the checks of KustomizeTrees.
Status CheckReference(const fs::path& root, const std::string& dir, const std::string& kfile,
                      std::string_view field, std::string_view entry, const KustomizeOptions& options,
                      std::deque<std::string>& queue) {
  if (entry.find('\n') != std::string_view::npos) return OkStatus();  // an inline configuration
  std::string what = fmt::format("{}: {} entry {:?}", kfile, field, entry);
  auto remote = [&]() -> Status {
    if (options.allow_remote_bases) return OkStatus();  // kustomize fetches it
    return PermissionDeniedError("{} is a remote reference, which Gantry does not let kustomize fetch; copy the "
                                 "base into this repository and refer to it by its relative path", what);
  };
  if (entry.starts_with("file://")) {
    return PermissionDeniedError("{} is a file URL; only paths inside the repository are allowed", what);
  }
  if (IsUrlLike(entry)) return remote();
  if (entry.starts_with('/')) {
    return PermissionDeniedError("{} is an absolute path; only paths inside the repository are allowed", what);
  }
  auto rel = NormalizeRel(dir.empty() ? std::string(entry) : dir + "/" + std::string(entry), what);
  if (!rel.ok()) return PermissionDeniedError("{} leaves the repository", what);
  auto resolved = ResolveBeneath(root, *rel);
  if (!resolved.ok()) {
    if (resolved.status().code() == Code::kPermissionDenied) {
      return PermissionDeniedError("{}: {}", what, resolved.status().message());
    }
    if (resolved.status().code() != Code::kNotFound) return resolved.status();
  }
  struct stat st;
  if (!resolved.ok() || ::stat(resolved->c_str(), &st) != 0) {
    if (LooksLikeHost(entry)) return remote();
    return NotFoundError("{}: no such file or directory in the repository", what);
  }
  if (S_ISDIR(st.st_mode)) queue.push_back(*rel);
  return OkStatus();
}

// Parses "name=newName:tag", "name:tag", "name@digest", "name=newName", "name=newName@digest".
Result<value::Value> ParseImage(std::string_view spec) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("image override {:?}: {} (expected name=newName:tag, name:tag or "
                                "name@digest)", spec, why);
  };
  if (spec.empty()) return bad("empty");
  for (char c : spec) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("contains whitespace or a control character");
  }
  std::string_view name = spec, target = spec;
  bool rename = false;
  if (size_t eq = spec.find('='); eq != std::string_view::npos) {
    name = spec.substr(0, eq);
    target = spec.substr(eq + 1);
    rename = true;
  }
  std::string_view new_name = target, tag, digest;
  if (size_t at = target.find('@'); at != std::string_view::npos) {
    new_name = target.substr(0, at);
    digest = target.substr(at + 1);
    if (digest.empty()) return bad("empty digest");
  } else if (size_t colon = target.rfind(':');
             colon != std::string_view::npos && target.find('/', colon) == std::string_view::npos) {
    new_name = target.substr(0, colon);  // the colon after the last '/' starts the tag (not a port)
    tag = target.substr(colon + 1);
    if (tag.empty()) return bad("empty tag");
  } else if (!rename) {
    return bad("no tag or digest");
  }
  if (!rename) name = new_name;
  if (name.empty() || new_name.empty()) return bad("empty image name");
  value::Value image = value::Value::Map();
  image.Set("name", name);
  if (rename) image.Set("newName", new_name);
  if (!tag.empty()) image.Set("newTag", tag);
  if (!digest.empty()) image.Set("digest", digest);
  return image;
}

}  // namespace

std::string KustomizationName(const fs::path& dir) {
  for (const char* name : {"kustomization.yaml", "kustomization.yml", "Kustomization"}) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir / name, ec))) return name;
  }
  return "";
}

Result<std::vector<std::string>> KustomizeTrees(const fs::path& root, const std::string& app,
                                                const KustomizeOptions& options, const Limits& limits) {
  std::deque<std::string> queue = {app};
  std::set<std::string> seen;
  bool first = true;
  while (!queue.empty()) {
    std::string dir = std::move(queue.front());
    queue.pop_front();
    if (!seen.insert(dir).second) continue;
    if (seen.size() > limits.max_files) {
      return ResourceExhaustedError("more than {} kustomizations reachable from {} (limit max_files)",
                                    limits.max_files, app.empty() ? "." : app);
    }
    GANTRY_ASSIGN_OR_RETURN(fs::path resolved, ResolveBeneath(root, dir));
    std::string name = KustomizationName(resolved);
    std::string kfile = dir.empty() ? name : dir + "/" + name;
    if (!name.empty()) {
      GANTRY_ASSIGN_OR_RETURN(value::Value k, ReadKustomization(root, kfile, limits));
      for (const char* field : kReferenceFields) {
        const value::Value* list = k.Get(field);
        if (list == nullptr || list->IsNull()) continue;
        if (!list->IsSeq()) return InvalidArgumentError("{}: {} must be a list", Where(*list), field);
        for (const value::Value& entry : list->items()) {
          if (!entry.IsString()) continue;  // inline generator/transformer configurations
          GANTRY_RETURN_IF_ERROR(
              CheckReference(root, dir, kfile, field, entry.AsString(), options, queue));
        }
      }
    }
    if (first) {
      for (const std::string& c : options.components) {
        GANTRY_RETURN_IF_ERROR(CheckReference(root, dir, "the extra components", "components", c,
                                              KustomizeOptions{}, queue));
      }
      first = false;
    }
  }
  // Keep only the outermost directories: a tree's copy holds the trees below it.
  std::vector<std::string> trees;
  for (const std::string& dir : seen) {  // sorted: a parent comes before its children
    bool covered = std::any_of(trees.begin(), trees.end(), [&](const std::string& t) {
      return t.empty() || dir.starts_with(t + "/");
    });
    if (!covered) trees.push_back(dir);
  }
  return trees;
}

Status EditKustomization(value::Value& kustomization, const KustomizeOptions& options) {
  for (const std::string& spec : options.images) {
    GANTRY_ASSIGN_OR_RETURN(value::Value image, ParseImage(spec));
    value::Value* images = kustomization.MutableGet("images");
    if (images == nullptr || images->IsNull()) {
      kustomization.Set("images", value::Value::Seq());
      images = kustomization.MutableGet("images");
    }
    if (!images->IsSeq()) return InvalidArgumentError("{}: images must be a list", Where(*images));
    value::Value* existing = nullptr;
    for (size_t i = 0; i < images->size(); ++i) {
      const value::Value* n = images->At(i)->Get("name");
      if (n != nullptr && n->IsString() && n->AsString() == image.Get("name")->AsString()) {
        existing = images->MutableAt(i);
      }
    }
    if (existing == nullptr) {
      images->Append(std::move(image));
      continue;
    }
    // As `kustomize edit set image`: given fields replace; a tag clears the digest and back.
    if (const value::Value* v = image.Get("newName")) existing->Set("newName", *v);
    if (const value::Value* v = image.Get("newTag")) {
      existing->Set("newTag", *v);
      existing->Erase("digest");
    }
    if (const value::Value* v = image.Get("digest")) {
      existing->Set("digest", *v);
      existing->Erase("newTag");
    }
  }
  for (const std::string& c : options.components) {
    value::Value* components = kustomization.MutableGet("components");
    if (components == nullptr || components->IsNull()) {
      kustomization.Set("components", value::Value::Seq());
      components = kustomization.MutableGet("components");
    }
    if (!components->IsSeq()) return InvalidArgumentError("{}: components must be a list", Where(*components));
    bool present = std::any_of(components->items().begin(), components->items().end(),
                               [&](const value::Value& v) { return v.IsString() && v.AsString() == c; });
    if (!present) components->Append(c);
  }
  return OkStatus();
}

}  // namespace gantry::render::internal
