#pragma once
// Private to oci: the tar format (POSIX ustar with PAX extended headers) and the gzip / zstd
// streams layers are stored in. The writer produces the exact bytes a reproducible layer needs;
// the reader accepts what real images contain (ustar, PAX, GNU long names) within limits.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::oci::internal {

// "a//./b/" → {"a", "b"}: the components of an image path, without empty and "." ones.
// InvalidArgument "\"..\" in the path" when one is "..".
inline Result<std::vector<std::string>> PathParts(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view p = path.substr(i, j - i);
    if (p == "..") return InvalidArgumentError("\"..\" in the path");
    if (!p.empty() && p != ".") parts.emplace_back(p);
    i = j + 1;
  }
  return parts;
}

// The first n components joined with '/'.
inline std::string JoinParts(const std::vector<std::string>& parts, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += (i ? "/" : "") + parts[i];
  return s;
}

// Receives a stream's bytes, in order.
using Sink = std::function<Status(std::string_view)>;

struct TarHeader {
  std::string name;  // archive path: no leading '/', no trailing '/' (the writer adds it to directories)
  char type = '0';   // '0' file, '1' hard link, '2' symlink, '3' char dev, '4' block dev, '5' dir, '6' fifo
  uint32_t mode = 0644;  // permission bits (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
  uint64_t size = 0;     // of the data that follows (files only)
  std::string linkname;  // target of a symlink or hard link
};

// Writes a tar stream: ustar headers with empty uname/gname, a PAX header ("PaxHeaders.0/<base>")
// before an entry whose name or link is longer than 100 bytes, whose size needs more than 11 octal
// digits or whose ids more than 7. Output depends only on the headers and data given. Not thread-safe.
class TarWriter {
 public:
  explicit TarWriter(Sink sink) : sink_(std::move(sink)) {}
  // Starts an entry; a file's header.size bytes must then be given to WriteData.
  Status WriteHeader(const TarHeader& header);
  Status WriteData(std::string_view data);
  // Pads the last entry and writes the end-of-archive marker (two zero blocks).
  Status Finish();

 private:
  Status WriteBlock(const TarHeader& header, std::string_view name, std::string_view linkname);
  Sink sink_;
  uint64_t remaining_ = 0;
  uint64_t pad_ = 0;
};

// A stream of bytes to read (a file, possibly decompressed). Read returns 0 at the end.
class Source {
 public:
  virtual ~Source() = default;
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

// Opens a layer file as its uncompressed tar stream, by media type (OCI or Docker; plain tar,
// +gzip, +zstd). InvalidArgument for another media type.
Result<std::unique_ptr<Source>> OpenLayer(const std::filesystem::path& path, std::string_view media_type);

// Reads a tar stream. Every byte taken from the source counts against max_total_bytes
// (ResourceExhausted beyond it, which bounds decompression bombs); PAX and GNU long-name headers
// are limited to 1 MiB. Not thread-safe.
class TarReader {
 public:
  TarReader(Source& source, uint64_t max_total_bytes) : source_(source), max_total_(max_total_bytes) {}
  // The next entry's header (PAX and GNU extensions applied); false at the end of the archive.
  // Unread data of the previous entry is skipped. InvalidArgument on a malformed header.
  Result<bool> Next(TarHeader& header);
  // Up to n bytes of the current entry's data; 0 at its end.
  Result<size_t> ReadData(char* buf, size_t n);
  uint64_t bytes_read() const { return total_; }

 private:
  Status ReadExact(char* buf, size_t n);
  Status Skip(uint64_t n);
  Result<std::string> ReadSmall(uint64_t size, std::string_view what);
  Source& source_;
  uint64_t max_total_;
  uint64_t total_ = 0;
  uint64_t remaining_ = 0;
  uint64_t pad_ = 0;
};

// A compressor writing its output to a sink in chunks of about 1 MiB. Not thread-safe (it may
// run threads of its own).
class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual Status Write(std::string_view data) = 0;
  // Flushes the end of the stream to the sink.
  virtual Status Finish() = 0;
};

// Input bytes per gzip member. A constant of the format: changing it changes every digest.
inline constexpr size_t kGzipMemberBytes = 1 << 20;

// gzip as a series of members (RFC 1952 §2.2, read as one stream by gzip, zlib, Go, Python), one
// per kGzipMemberBytes of input (the last shorter; an empty input gives one empty member), each
// compressed by libdeflate at `level` (0-12) with a fixed header (no name, mtime 0, OS
// "unknown"). With threads > 1, members are compressed on that many threads and written in order.
// The bytes depend only on the input, the level and the libdeflate version, never on `threads`.
std::unique_ptr<Compressor> NewGzipCompressor(Sink sink, int level, unsigned threads);
// zstd at `level`, one frame, with libzstd's workers (max(threads, 1) of them). libzstd gives the
// same bytes for any number of workers >= 1 (never 0, its single-threaded mode, which differs).
// FailedPrecondition from Write/Finish if this libzstd was built without threads.
std::unique_ptr<Compressor> NewZstdCompressor(Sink sink, int level, unsigned threads);

}  // namespace gantry::oci::internal
