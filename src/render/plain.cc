#include <sys/stat.h>

#include <algorithm>

#include "base/path.h"
#include "render/internal/documents.h"
#include "render/internal/plain.h"
#include "render/render.h"

namespace gantry::render {
namespace fs = std::filesystem;
using internal::Where;

namespace internal {

bool IsManifestName(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) { return name.size() > suffix.size() && name.ends_with(suffix); };
  return ends_with(".yaml") || ends_with(".yml") || ends_with(".json");
}

}  // namespace internal

namespace {

using internal::IsManifestName;

// Lists manifest files under `root` as paths relative to it, sorted, refusing links out of it.
Status Collect(const fs::path& root, const std::string& rel, const Limits& limits,
               std::vector<std::string>& out, int depth) {
  if (depth > 64) return ResourceExhaustedError("{}: directories nested deeper than 64 levels", rel);
  GANTRY_ASSIGN_OR_RETURN(fs::path dir, ResolveBeneath(root, rel));
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return Status(Code::kUnavailable, fmt::format("list {}: {}", dir.string(), ec.message()));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (name.starts_with('.')) continue;
    std::string child = rel.empty() ? name : rel + "/" + name;
    // Follows links, but only to targets inside the root.
    GANTRY_ASSIGN_OR_RETURN(fs::path resolved, ResolveBeneath(root, child));
    struct stat st;
    if (::stat(resolved.c_str(), &st) != 0) continue;  // dangling link inside the root: nothing to read
    if (S_ISDIR(st.st_mode)) {
      GANTRY_RETURN_IF_ERROR(Collect(root, child, limits, out, depth + 1));
    } else if (S_ISREG(st.st_mode) && IsManifestName(name)) {
      if (out.size() >= limits.max_files) {
        return ResourceExhaustedError("more than {} manifest files under {} (limit max_files)",
                                      limits.max_files, root.string());
      }
      out.push_back(child);
    }
  }
  return OkStatus();
}

}  // namespace

Status ValidateObject(const value::Value& doc) {
  if (!doc.IsMap()) return InvalidArgumentError("{}: a manifest must be a map, not a {}", Where(doc),
                                                doc.IsSeq() ? "sequence" : "scalar");
  auto require_string = [&](const value::Value* v, std::string_view field) -> Status {
    if (v == nullptr) return InvalidArgumentError("{}: object has no {}", Where(doc), field);
    if (!v->IsString() || v->AsString().empty()) {
      return InvalidArgumentError("{}: {} must be a non-empty string", Where(*v), field);
    }
    return OkStatus();
  };
  GANTRY_RETURN_IF_ERROR(require_string(doc.Get("apiVersion"), "apiVersion"));
  GANTRY_RETURN_IF_ERROR(require_string(doc.Get("kind"), "kind"));
  const value::Value* meta = doc.Get("metadata");
  if (meta == nullptr) return InvalidArgumentError("{}: object has no metadata", Where(doc));
  if (!meta->IsMap()) return InvalidArgumentError("{}: metadata must be a map", Where(*meta));
  if (meta->Get("name") == nullptr && meta->Get("generateName") != nullptr) {
    return require_string(meta->Get("generateName"), "metadata.generateName");
  }
  return require_string(meta->Get("name"), "metadata.name");
}

Result<std::vector<Manifest>> RenderPlain(const fs::path& root, const Limits& limits) {
  GANTRY_ASSIGN_OR_RETURN(internal::PlainResult r, internal::ReadPlain(root, limits, ""));
  return std::move(r.manifests);
}

namespace internal {

Status AppendFile(std::string_view text, const std::string& name, const Limits& limits, std::vector<Manifest>& out) {
  std::vector<value::Value> docs;
  if (name.ends_with(".json")) {
    GANTRY_ASSIGN_OR_RETURN(value::Value doc, value::ParseJson(text, name, limits.parse));
    if (!doc.IsNull()) docs.push_back(std::move(doc));
  } else {
    GANTRY_ASSIGN_OR_RETURN(docs, value::ParseYaml(text, name, limits.parse));
  }
  for (value::Value& doc : docs) GANTRY_RETURN_IF_ERROR(AddDocument(std::move(doc), "", out));
  return OkStatus();
}

Result<PlainResult> ReadPlain(const fs::path& root, const Limits& limits, std::string_view name_prefix) {
  std::error_code ec;
  fs::file_status st = fs::status(root, ec);
  if (ec || !fs::exists(st)) return NotFoundError("{}: no such file or directory", root.string());

  fs::path base = root;
  std::vector<std::string> files;
  if (fs::is_directory(st)) {
    GANTRY_RETURN_IF_ERROR(Collect(root, "", limits, files, 0));
  } else {
    base = root.parent_path().empty() ? fs::path(".") : root.parent_path();
    files.push_back(root.filename().string());
  }

  std::vector<Manifest> out;
  size_t total = 0;
  for (const std::string& rel : files) {
    GANTRY_ASSIGN_OR_RETURN(fs::path path, ResolveBeneath(base, rel));
    auto text = ReadFile(path, limits.max_file_bytes);
    if (!text.ok()) {
      if (text.status().code() == Code::kResourceExhausted) {
        return ResourceExhaustedError("{}: larger than {} bytes (limit max_file_bytes)", rel,
                                      limits.max_file_bytes);
      }
      return text.status();
    }
    total += text->size();
    if (total > limits.max_total_bytes) {
      return ResourceExhaustedError("manifests under {} exceed {} bytes in all (limit max_total_bytes)",
                                    root.string(), limits.max_total_bytes);
    }
    // The file name lives in the documents' Marks, so it must outlive them: Values keep their own
    // copy of the parse input's file name.
    GANTRY_RETURN_IF_ERROR(AppendFile(*text, std::string(name_prefix) + rel, limits, out));
  }
  return PlainResult{std::move(out), total};
}

}  // namespace internal

}  // namespace gantry::render
