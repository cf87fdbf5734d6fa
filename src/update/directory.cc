// UpdateDirectory: RewriteYaml over the YAML files of a working tree, written in place.

#include <sys/stat.h>

#include <filesystem>

#include "base/path.h"
#include "update/update.h"

namespace gantry::update {

Result<DirectoryUpdateResult> UpdateDirectory(const std::filesystem::path& root, std::span<const ImageRule> rules,
                                              bool dry_run) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return ErrnoError(ec.value(), root.string());
    return fs::exists(root, ec) ? FailedPreconditionError("{}: not a directory", root.string())
                                : NotFoundError("{}: no such directory", root.string());
  }
  DirectoryUpdateResult out;
  auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::directory_entry& entry = *it;
    if (entry.is_directory() && entry.path().filename() == ".git") {
      it.disable_recursion_pending();
      continue;
    }
    // Symlinks are not followed (the iterator does not descend into linked directories either).
    if (entry.is_symlink() || !entry.is_regular_file()) continue;
    std::string rel = entry.path().lexically_relative(root).generic_string();
    if (!IsYamlPath(rel)) continue;
    GANTRY_ASSIGN_OR_RETURN(std::string content, ReadFile(entry.path()));
    auto rewritten = RewriteYaml(content, rel, rules);
    if (!rewritten.ok()) {
      out.skipped.push_back(rewritten.status().message());
      continue;
    }
    if (rewritten->changes.empty()) continue;
    ++out.files;
    for (Change& c : rewritten->changes) out.changes.push_back(std::move(c));
    if (dry_run) continue;
    struct stat st{};
    mode_t mode = ::stat(entry.path().c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    GANTRY_RETURN_IF_ERROR(WriteFileAtomic(entry.path(), rewritten->content, static_cast<int>(mode), /*sync=*/false));
  }
  if (ec) return ErrnoError(ec.value(), "read " + root.string());
  return out;
}

}  // namespace gantry::update
