#pragma once
// Path safety: joining untrusted relative paths (from a repository, a pipeline file, an archive)
// under a trusted root without ever escaping it.
//
// SafeJoin() is lexical: it refuses absolute paths, NUL bytes and any ".." that would climb above
// the root. ResolveBeneath() also follows the filesystem: it walks the path one component at a time
// and refuses a symlink whose target leaves the root. CopyTreeBeneath() copies between two roots
// without following any link at all, with descriptors only, for trees that someone else (a CI step)
// may change while they are copied. All are thread-safe.

#include <cstdint>
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

// Bounds of one CopyTreeBeneath; 0 = unlimited.
struct CopyLimits {
  uint64_t max_bytes = 0;    // total bytes of regular files
  uint64_t max_entries = 0;  // files, directories and links
  int max_depth = 128;       // directories below the source (one descriptor is open per level)
};

struct CopyStats {
  uint64_t files = 0, dirs = 0, links = 0, bytes = 0;
  uint64_t skipped = 0;  // FIFOs, sockets, devices
};

// Copies src_root/src_rel to dst_root/dst_rel (either relative path may be "" for the root itself).
// The roots are trusted and must exist; everything beneath them is not: each component is opened
// relative to its parent directory's descriptor with O_NOFOLLOW (openat, mkdirat, fstatat with
// AT_SYMLINK_NOFOLLOW, unlinkat, symlinkat), so swapping a component for a symbolic link between a
// check and the use cannot redirect a read or a write outside the roots.
//
// What it copies: a directory (merged into an existing one; new ones get the source's permission
// bits); a regular file (whatever non-directory is at the destination is unlinked first, a link
// itself and never its target, and the file is created with O_EXCL; permission bits only, no
// setuid, setgid or sticky bit); a symbolic link inside the tree is recreated as a link with the
// same target text, never followed. FIFOs, sockets and devices are skipped. Missing parents of
// dst_rel are created (0755).
//
// Errors: InvalidArgument for a relative path that SafeJoin refuses, or a file copied onto a root;
// NotFound when src_rel does not exist; PermissionDenied naming the path when a component of src_rel
// or dst_rel (the last one included), or a destination directory inside the tree, is a symbolic
// link; FailedPrecondition when a directory and a non-directory would replace each other;
// ResourceExhausted beyond `limits`; OS errors naming the path. A failed copy may leave part of the
// tree at the destination.
Result<CopyStats> CopyTreeBeneath(const std::filesystem::path& src_root, std::string_view src_rel,
                                  const std::filesystem::path& dst_root, std::string_view dst_rel,
                                  const CopyLimits& limits = {});

// Gives `root` and everything beneath it to uid:gid (a sandboxed step's own host user), never
// following a link: each directory is opened relative to its parent's descriptor with O_NOFOLLOW,
// and entries are changed with fchownat(AT_SYMLINK_NOFOLLOW), so a concurrent swap of a directory
// for a link changes the link, never what it points to. Entries that vanish meanwhile are skipped.
// InvalidArgument when `root` is a link; InvalidArgument beyond max_depth levels.
Status ChownTreeBeneath(const std::filesystem::path& root, uint32_t uid, uint32_t gid, int max_depth = 256);

// The bytes of the regular files beneath `root`, walked like ChownTreeBeneath (never through a
// link, whatever a running step swaps in). Errors as for ChownTreeBeneath.
Result<uint64_t> TreeBytesBeneath(const std::filesystem::path& root, int max_depth = 256);

// Reads a whole file; NotFound / PermissionDenied from the OS, ResourceExhausted above max_bytes.
Result<std::string> ReadFile(const std::filesystem::path& path, size_t max_bytes = 256u << 20);

// Writes all of `data` to the open descriptor `fd` (retrying short writes and EINTR); errors name
// `path`, the file `fd` is open on.
Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path);

// Writes `data` to `path` atomically with `mode`: a temp file with an unpredictable name in the same
// directory, created exclusively (O_EXCL | O_NOFOLLOW, so a link planted under any name is never
// written through), fsync, rename over `path` (which replaces a link at `path`, never its target).
// Resolving path's directory beneath a root is the caller's job. With sync = false there is no
// fsync: a reader still never sees a half-written file, but a power loss may leave the old content
// (what `sed -i` does; an fsync costs ~8 ms a file).
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data, int mode = 0644,
                       bool sync = true);

// Creates `dir` (and its parents) as a directory only its owner may enter: 0700, tightened to it
// when `dir` exists with more. Errors of mkdir, stat and chmod, naming the path.
Status MakePrivateDir(const std::filesystem::path& dir);

}  // namespace gantry
