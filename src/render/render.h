#pragma once
// Rendering: the manifests an application path produces, as parsed Kubernetes objects.
//
// This first part reads plain YAML/JSON directories from the local filesystem. The rule users can
// predict: every regular file under the root whose name ends in .yaml, .yml or .json is read,
// recursively, in byte order of its relative path; every other file is ignored, as are directories
// and files whose name starts with '.' (.git, .github, editor files). Each YAML file may hold several
// documents; empty documents are skipped. Every document must be a Kubernetes object (a map with
// string apiVersion, kind and metadata.name); a `kind: List` is expanded into its items.
//
// Safety: the repository is hostile. No path outside `root` is ever read: a symlink whose target
// leaves the root is an error naming it; a symlink inside is followed. Limits on the number of
// files, the bytes of one file and of all files end the render with ResourceExhausted.
// Functions here are thread-safe: they share no state.

#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"
#include "value/value.h"

namespace gantry::render {

struct Limits {
  size_t max_files = 10'000;
  size_t max_file_bytes = 8u << 20;    // one manifest file
  size_t max_total_bytes = 256u << 20;  // all manifest files of one render
  value::ParseOptions parse;
};

// One rendered object and where it came from.
struct Manifest {
  value::Value object;
  std::string source;  // "path/in/repo.yaml:line:column" of the document
};

// Reads the manifests under `root` (a directory, or a single file) as described above.
// NotFound when root does not exist; InvalidArgument for a document that does not parse or is not
// a Kubernetes object, with file:line:column; PermissionDenied for a symlink leaving root;
// ResourceExhausted for a limit, naming it and its value.
Result<std::vector<Manifest>> RenderPlain(const std::filesystem::path& root, const Limits& limits = {});

// Checks that `doc` is a Kubernetes object: a map with non-empty string apiVersion and kind, and a
// metadata map with a non-empty string name (or generateName). The error names the field and the
// position of the document.
Status ValidateObject(const value::Value& doc);

}  // namespace gantry::render
