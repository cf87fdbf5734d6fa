#pragma once
// oci/tree_tar: directory trees as plain tar streams, for shipping a CI workspace to a step Pod
// and back (ci/kube_executor.cc, `gantry internal tar|untar`). The same tar code and archive
// safety as image layers (ExtractLayer in build.h), with workspace semantics.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "oci/build.h"

namespace gantry::oci {

// One tree of a WriteTreesTar: `root`'s contents become entries "<prefix>/<relative path>", and
// `root` itself the entry "<prefix>". With an empty prefix the contents are entries at the top
// ("<relative path>") and the root has no entry of its own. A `root` that is a regular file is the
// one entry "<prefix>" (the prefix must not be empty then).
struct TarTree {
  std::filesystem::path root;
  std::string prefix;  // a relative path ("workspace", "dist/app"): no "", "." or ".." component
};

struct TreeTarStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;    // of regular files
  uint64_t skipped = 0;  // FIFOs, sockets, devices
};

// Writes the trees as one tar stream to `sink`, then the end-of-archive marker. Never follows a
// link: a symbolic link is an entry with its target text, a directory link is not descended.
// Permission bits and mtimes are kept (no setuid/setgid/sticky); owners are not (0:0). A root that
// does not exist gives its prefix directory only; InvalidArgument for a bad prefix, or a root that
// is neither a directory nor a regular file. ResourceExhausted when regular files total more
// than max_bytes (0 = unlimited); OS errors name the path.
Result<TreeTarStats> WriteTreesTar(const std::vector<TarTree>& trees,
                                   const std::function<Status(std::string_view)>& sink, uint64_t max_bytes = 0);

// Extracts a plain tar stream into the existing directory `dest` with ExtractLayer's archive
// safety (no absolute or ".." entry names, no write through a link, hard links only to files
// extracted before, devices and FIFOs skipped, limits), but as a copy of a tree, not an image
// layer: names starting with ".wh." are ordinary files, and a symbolic link is recreated with its
// target text whatever it points at (a workspace may hold "../x" or "/etc/passwd" links; nothing
// here or in the CI runner ever follows one out of the tree: a later entry through such a link is
// PermissionDenied). Errors name the entry.
Result<ExtractStats> ExtractTreeTar(const ReadFn& read, const std::filesystem::path& dest,
                                    const ExtractLimits& limits = {});

}  // namespace gantry::oci
