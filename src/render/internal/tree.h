#pragma once
// Private to gantry::render: reading a hostile repository tree safely, to copy it for an external
// renderer (materialize) or to hash it (LocalContentKey). One walker does both, so the content key
// always covers exactly what a renderer could see.

#include <filesystem>
#include <set>
#include <string>

#include "base/hash.h"
#include "base/status.h"
#include "render/render.h"

namespace gantry::render::internal {

// The lexically normalised form of a relative path ("a/./b/../c" → "a/c", "." → ""), or
// PermissionDenied when it is absolute or climbs out of the root. `what` names the path in errors.
Result<std::string> NormalizeRel(std::string_view rel, std::string_view what);

// Copies and/or hashes files of `root` (a trusted directory) under budgets from Limits
// (max_files, max_total_bytes). Symlinks are followed only to targets inside root; only regular
// files and directories are taken; `.git` is skipped; a directory reached again through a link in
// its own subtree is an error. Not thread-safe.
class Materializer {
 public:
  // `dest`: where copies go (same relative paths), or empty to only hash. `hash`: may be null.
  Materializer(std::filesystem::path root, std::filesystem::path dest, const Limits& limits,
               Sha256* hash)
      : root_(std::move(root)), dest_(std::move(dest)), limits_(limits), hash_(hash) {}

  // Takes every file of the directory `rel` (normalised) and below.
  Status AddTree(const std::string& rel);
  // Takes the regular file `rel` (normalised), copied to `dest_path` (any path, when copying).
  Status AddFile(const std::string& rel, const std::filesystem::path& dest_path);

 private:
  Status Walk(const std::string& rel, std::vector<std::filesystem::path>& chain);
  Status TakeFile(const std::string& rel, const std::filesystem::path& resolved, bool executable,
                  const std::filesystem::path& dest_path);

  std::filesystem::path root_, dest_;
  const Limits& limits_;
  Sha256* hash_;
  size_t files_ = 0, bytes_ = 0;
  std::set<std::filesystem::path> taken_;  // destinations already written
};

// Writes `data` to a new file `path` (not following a link there), with mode 0755 or 0644.
Status WriteNewFile(const std::filesystem::path& path, std::string_view data, bool executable = false);

}  // namespace gantry::render::internal
