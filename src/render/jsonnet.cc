// Jsonnet: which files a directory application evaluates, when auto detection picks Jsonnet, the
// arguments of `jsonnet`, and what its output may be.

#include <algorithm>

#include "base/path.h"
#include "render/internal/documents.h"
#include "render/internal/plain.h"
#include "render/internal/renderers.h"
#include "render/internal/tree.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

bool IsIdentifier(std::string_view s) {
  if (s.empty()) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

bool Hidden(std::string_view rel) { return rel.starts_with('.') || rel.find("/.") != std::string_view::npos; }

}  // namespace

bool IsJsonnetName(std::string_view name) { return name.size() > 8 && name.ends_with(".jsonnet"); }

bool JsonnetDetected(const std::vector<std::string>& files) {
  bool jsonnet = false;
  for (const std::string& f : files) {
    if (Hidden(f)) continue;
    const bool top = f.find('/') == std::string::npos;
    std::string_view name = f;
    if (size_t slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
    if (top && IsJsonnetName(name)) jsonnet = true;
    // jsonnet-bundler's files are not manifests; any other manifest file keeps the directory plain.
    if (IsManifestName(name) && !(top && (name == "jsonnetfile.json" || name == "jsonnetfile.lock.json"))) {
      return false;
    }
  }
  return jsonnet;
}

Result<std::vector<std::string>> JsonnetFiles(const fs::path& dir, bool recurse, const Limits& limits) {
  std::vector<std::string> out;
  std::error_code ec;
  auto take = [&](const fs::directory_entry& e, const fs::path& rel) -> Status {
    std::string name = rel.filename().string();
    if (!IsJsonnetName(name) || !e.is_regular_file(ec)) return OkStatus();
    if (out.size() >= limits.max_files) {
      return ResourceExhaustedError("more than {} *.jsonnet files (limit max_files)", limits.max_files);
    }
    out.push_back(rel.string());
    return OkStatus();
  };
  if (!recurse) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      GANTRY_RETURN_IF_ERROR(take(e, e.path().lexically_relative(dir)));
    }
  } else {
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      fs::path rel = it->path().lexically_relative(dir);
      if (Hidden(rel.string())) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      GANTRY_RETURN_IF_ERROR(take(*it, rel));
    }
  }
  if (ec) return InternalError("list {}: {}", dir.string(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> JsonnetArgs(const fs::path& file, const fs::path& copy_root,
                                             const JsonnetOptions& options) {
  if (options.max_stack <= 0) return InvalidArgumentError("jsonnet max_stack {} must be positive", options.max_stack);
  std::vector<std::string> args = {"--max-stack", std::to_string(options.max_stack), "--max-trace", "20"};
  for (const std::string& lib : options.libs) {
    std::string what = fmt::format("jsonnet library path {:?}", lib);
    if (lib.empty()) return InvalidArgumentError("{} is empty", what);
    if (lib.starts_with('/')) {
      return PermissionDeniedError("{} is absolute; library paths are relative to the repository root", what);
    }
    auto rel = NormalizeRel(lib, what);
    if (!rel.ok()) return PermissionDeniedError("{} leaves the repository", what);
    fs::path dir = copy_root / *rel;
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(dir, ec))) {
      return NotFoundError("{}: no such directory in the repository", what);
    }
    args.push_back("--jpath");
    args.push_back(dir.string());
  }
  auto vars = [&](const std::vector<JsonnetVar>& list, std::string_view kind, const char* str_flag,
                  const char* code_flag) -> Status {
    for (const JsonnetVar& v : list) {
      if (!IsIdentifier(v.name)) {
        return InvalidArgumentError("jsonnet {} name {:?} is not a Jsonnet identifier (letters, digits and '_', "
                                    "not starting with a digit)", kind, v.name);
      }
      // Always NAME=VALUE: a bare NAME would make jsonnet read the variable of that name from its
      // environment.
      args.push_back(v.code ? code_flag : str_flag);
      args.push_back(v.name + "=" + v.value);
    }
    return OkStatus();
  };
  GANTRY_RETURN_IF_ERROR(vars(options.tlas, "top-level argument", "--tla-str", "--tla-code"));
  GANTRY_RETURN_IF_ERROR(vars(options.ext_vars, "external variable", "--ext-str", "--ext-code"));
  args.push_back("--");
  args.push_back(file.string());
  return args;
}

Status AddJsonnetOutput(std::string_view json, const std::string& source, const Limits& limits,
                        std::vector<Manifest>& out) {
  GANTRY_ASSIGN_OR_RETURN(std::vector<value::Value> docs, value::ParseYaml(json, source, limits.parse));
  if (docs.size() != 1) return InvalidArgumentError("{}: output is not one JSON value", source);
  value::Value& doc = docs[0];
  if (doc.IsMap()) return AddDocument(std::move(doc), source, out);
  if (!doc.IsSeq()) {
    return InvalidArgumentError("{}: output must be an object (a Kubernetes object or a List) or an array of "
                                "objects, not a {}", source, doc.IsString() ? "string" : doc.IsNull() ? "null" : "scalar");
  }
  for (size_t i = 0; i < doc.size(); ++i) {
    const value::Value& item = *doc.At(i);
    std::string where = fmt::format("{} [{}]", source, i);
    if (!item.IsMap()) return InvalidArgumentError("{}: each element of an output array must be an object", where);
    GANTRY_RETURN_IF_ERROR(AddDocument(item, where, out));
  }
  return OkStatus();
}

}  // namespace gantry::render::internal
