#pragma once
// Path safety: joining untrusted relative paths (from a repository, a pipeline file, an archive)
// under a trusted root without ever escaping it.
//
// SafeJoin() is lexical: it refuses absolute paths, NUL bytes and any ".." that would climb above
// the root. ResolveBeneath() also follows the filesystem: it walks the path one component at a time
// and refuses a symlink whose target leaves the root. Both are pure functions of their inputs (and
// the filesystem, for ResolveBeneath) and thread-safe.

#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"

namespace gantry {

// Joins `relative` under `root`, normalising "." and ".." lexically.
// InvalidArgument when `relative` is absolute, contains a NUL byte, or climbs above `root`.
Result<std::filesystem::path> SafeJoin(const std::filesystem::path& root, std::string_view relative);

// Like SafeJoin, then resolves symlinks component by component; a link pointing outside `root`
// (absolute, or relative climbing out) is PermissionDenied naming the link. A missing final
// component is allowed (the returned path does not exist yet); more than 40 links is InvalidArgument.
Result<std::filesystem::path> ResolveBeneath(const std::filesystem::path& root,
                                             std::string_view relative);

// Reads a whole file; NotFound / PermissionDenied from the OS, ResourceExhausted above max_bytes.
Result<std::string> ReadFile(const std::filesystem::path& path, size_t max_bytes = 256u << 20);

// Writes all of `data` to the open descriptor `fd` (retrying short writes and EINTR); errors name
// `path`, the file `fd` is open on.
Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path);

// Writes `data` to `path` atomically (temp file in the same directory, fsync, rename) with `mode`.
// With sync = false there is no fsync: a reader still never sees a half-written file, but a power
// loss may leave the old content (what `sed -i` does; an fsync costs ~8 ms a file).
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data, int mode = 0644,
                       bool sync = true);

}  // namespace gantry
