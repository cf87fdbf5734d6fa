// The tar format and the gzip / zstd streams of layers; see internal/tar_format.h.

#include <fcntl.h>
#include <libdeflate.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <set>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "oci/internal/tar_format.h"
#include "oci/oci.h"

namespace gantry::oci::internal {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kChunk = 1 << 20;
constexpr uint64_t kMaxExtendedHeader = 1 << 20;

// Writes `value` as zero-padded octal in a field of `width` bytes (width-1 digits and a NUL).
// False when it does not fit.
bool PutOctal(char* field, size_t width, uint64_t value) {
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[width - 1] = '\0';
  return value == 0;
}

// "len key=value\n" where len counts the whole record, itself included.
std::string PaxRecord(std::string_view key, std::string_view value) {
  size_t base = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = base + 1;
  while (base + std::to_string(len).size() != len) ++len;
  return fmt::format("{} {}={}\n", len, key, value);
}

}  // namespace

Status TarWriter::WriteBlock(const TarHeader& h, std::string_view name, std::string_view linkname) {
  char block[kBlock] = {};
  std::memcpy(block, name.data(), std::min(name.size(), size_t{100}));
  bool ok = PutOctal(block + 100, 8, h.mode & 07777) && PutOctal(block + 108, 8, h.uid) &&
            PutOctal(block + 116, 8, h.gid) && PutOctal(block + 124, 12, h.size) &&
            PutOctal(block + 136, 12, static_cast<uint64_t>(std::max<int64_t>(h.mtime, 0)));
  (void)ok;  // fields that do not fit were given in a PAX header just before
  block[156] = h.type;
  std::memcpy(block + 157, linkname.data(), std::min(linkname.size(), size_t{100}));
  std::memcpy(block + 257, "ustar\0" "00", 8);
  PutOctal(block + 329, 8, 0);  // devmajor
  PutOctal(block + 337, 8, 0);  // devminor
  std::memset(block + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : block) sum += c;
  PutOctal(block + 148, 7, sum);
  block[155] = ' ';
  return sink_(std::string_view(block, kBlock));
}

Status TarWriter::WriteHeader(const TarHeader& h) {
  if (remaining_ != 0) return InternalError("tar: {} bytes of the previous entry missing", remaining_);
  if (pad_ != 0) {
    static const char zeros[kBlock] = {};
    if (Status s = sink_(std::string_view(zeros, pad_)); !s.ok()) return s;
    pad_ = 0;
  }
  std::string name = h.type == '5' ? h.name + "/" : h.name;
  std::string pax;
  if (name.size() > 100) pax += PaxRecord("path", name);
  if (h.linkname.size() > 100) pax += PaxRecord("linkpath", h.linkname);
  if (h.size > 077777777777ull) pax += PaxRecord("size", std::to_string(h.size));
  if (h.uid > 07777777) pax += PaxRecord("uid", std::to_string(h.uid));
  if (h.gid > 07777777) pax += PaxRecord("gid", std::to_string(h.gid));
  if (!pax.empty()) {
    std::string base = h.name.substr(h.name.rfind('/') + 1);
    std::string pax_name = ("PaxHeaders.0/" + base).substr(0, 100);
    TarHeader ph{.name = pax_name, .type = 'x', .mode = 0644, .mtime = h.mtime, .size = pax.size()};
    if (Status s = WriteBlock(ph, pax_name, ""); !s.ok()) return s;
    pax.resize((pax.size() + kBlock - 1) / kBlock * kBlock, '\0');
    if (Status s = sink_(pax); !s.ok()) return s;
  }
  if (Status s = WriteBlock(h, name, h.linkname); !s.ok()) return s;
  remaining_ = h.type == '0' ? h.size : 0;
  pad_ = (kBlock - remaining_ % kBlock) % kBlock;
  return OkStatus();
}

Status TarWriter::WriteData(std::string_view data) {
  if (data.size() > remaining_) return InternalError("tar: more data than the entry's size");
  remaining_ -= data.size();
  return sink_(data);
}

Status TarWriter::Finish() {
  if (remaining_ != 0) return InternalError("tar: {} bytes of the last entry missing", remaining_);
  std::string end(pad_ + 2 * kBlock, '\0');
  pad_ = 0;
  return sink_(end);
}

// ---- reading ----

namespace {

class FileSource : public Source {
 public:
  explicit FileSource(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  ~FileSource() override { ::close(fd_); }
  Result<size_t> Read(char* buf, size_t n) override {
    while (true) {
      ssize_t r = ::read(fd_, buf, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoError(errno, "read " + path_.string());
      return static_cast<size_t>(r);
    }
  }

 private:
  int fd_;
  std::filesystem::path path_;
};

class GzipSource : public Source {
 public:
  explicit GzipSource(std::unique_ptr<Source> in) : in_(std::move(in)), buf_(kChunk) {
    z_ = {};
    ok_ = inflateInit2(&z_, 15 + 16) == Z_OK;
  }
  ~GzipSource() override { inflateEnd(&z_); }
  Result<size_t> Read(char* out, size_t n) override {
    if (!ok_) return InternalError("gzip: cannot initialise zlib");
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min(n, size_t{1} << 30));
    while (z_.avail_out == n && !done_) {
      if (z_.avail_in == 0) {
        auto r = in_->Read(buf_.data(), buf_.size());
        if (!r.ok()) return r.status();
        if (*r == 0) {
          if (started_) return DataLossError("gzip: the stream ends early (truncated layer)");
          done_ = true;
          break;
        }
        z_.next_in = reinterpret_cast<Bytef*>(buf_.data());
        z_.avail_in = static_cast<uInt>(*r);
      }
      started_ = true;
      int rc = inflate(&z_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        started_ = false;  // another member may follow (concatenated gzip)
        inflateReset(&z_);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return DataLossError("gzip: {}", z_.msg ? z_.msg : "corrupt data");
      }
    }
    return n - z_.avail_out;
  }

 private:
  std::unique_ptr<Source> in_;
  std::vector<char> buf_;
  z_stream z_;
  bool ok_ = false;
  bool started_ = false;
  bool done_ = false;
};

class ZstdSource : public Source {
 public:
  explicit ZstdSource(std::unique_ptr<Source> in) : in_(std::move(in)), buf_(kChunk), d_(ZSTD_createDStream()) {}
  ~ZstdSource() override { ZSTD_freeDStream(d_); }
  Result<size_t> Read(char* out, size_t n) override {
    ZSTD_outBuffer o{out, n, 0};
    while (o.pos == 0) {
      if (in_pos_ == in_size_) {
        auto r = in_->Read(buf_.data(), buf_.size());
        if (!r.ok()) return r.status();
        if (*r == 0) {
          if (pending_) return DataLossError("zstd: the stream ends early (truncated layer)");
          break;
        }
        in_size_ = *r;
        in_pos_ = 0;
      }
      ZSTD_inBuffer i{buf_.data(), in_size_, in_pos_};
      size_t rc = ZSTD_decompressStream(d_, &o, &i);
      in_pos_ = i.pos;
      if (ZSTD_isError(rc)) return DataLossError("zstd: {}", ZSTD_getErrorName(rc));
      pending_ = rc != 0;
    }
    return o.pos;
  }

 private:
  std::unique_ptr<Source> in_;
  std::vector<char> buf_;
  size_t in_pos_ = 0, in_size_ = 0;
  bool pending_ = false;
  ZSTD_DStream* d_;
};

// Parses an octal (or GNU base-256) numeric field.
Result<uint64_t> ParseNumber(const char* field, size_t width, std::string_view what) {
  if (static_cast<unsigned char>(field[0]) & 0x80) {
    uint64_t v = static_cast<unsigned char>(field[0]) & 0x7f;
    for (size_t i = 1; i < width; ++i) {
      if (v >> 56) return InvalidArgumentError("tar header: {} is too large", what);
      v = (v << 8) | static_cast<unsigned char>(field[i]);
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v >> 60) return InvalidArgumentError("tar header: {} is too large", what);
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') return InvalidArgumentError("tar header: {} is not an octal number", what);
  }
  return v;
}

std::string CString(const char* field, size_t width) { return std::string(field, strnlen(field, width)); }

}  // namespace

Result<std::unique_ptr<Source>> OpenLayer(const std::filesystem::path& path, std::string_view media_type) {
  enum { kPlain, kGzip, kZstd } kind;
  if (media_type == media::kOciLayer || media_type == "application/vnd.docker.image.rootfs.diff.tar") {
    kind = kPlain;
  } else if (media_type == media::kOciLayerGzip || media_type == media::kDockerLayerGzip ||
             media_type == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
             media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    kind = kGzip;
  } else if (media_type == media::kOciLayerZstd) {
    kind = kZstd;
  } else {
    return InvalidArgumentError("layer media type {:?} is not a tar, tar+gzip or tar+zstd layer", media_type);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + path.string());
  std::unique_ptr<Source> file = std::make_unique<FileSource>(fd, path);
  if (kind == kGzip) return std::unique_ptr<Source>(std::make_unique<GzipSource>(std::move(file)));
  if (kind == kZstd) return std::unique_ptr<Source>(std::make_unique<ZstdSource>(std::move(file)));
  return file;
}

Status TarReader::ReadExact(char* buf, size_t n) {
  while (n > 0) {
    auto r = source_.Read(buf, n);
    if (!r.ok()) return r.status();
    if (*r == 0) return DataLossError("tar: the archive ends in the middle of an entry");
    total_ += *r;
    if (total_ > max_total_) {
      return ResourceExhaustedError("layer: more than the limit of {} bytes once decompressed", max_total_);
    }
    buf += *r;
    n -= *r;
  }
  return OkStatus();
}

Status TarReader::Skip(uint64_t n) {
  char buf[16384];
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof(buf)));
    if (Status s = ReadExact(buf, k); !s.ok()) return s;
    n -= k;
  }
  return OkStatus();
}

Result<std::string> TarReader::ReadSmall(uint64_t size, std::string_view what) {
  if (size > kMaxExtendedHeader) {
    return ResourceExhaustedError("tar: {} of {} bytes is larger than the limit of {}", what, size, kMaxExtendedHeader);
  }
  std::string data(size, '\0');
  if (Status s = ReadExact(data.data(), data.size()); !s.ok()) return s;
  if (Status s = Skip((kBlock - size % kBlock) % kBlock); !s.ok()) return s;
  return data;
}

Result<bool> TarReader::Next(TarHeader& h) {
  if (Status s = Skip(remaining_ + pad_); !s.ok()) return s;
  remaining_ = pad_ = 0;
  std::string long_name, long_link, pax_path, pax_link;
  std::optional<uint64_t> pax_size;
  while (true) {
    char block[kBlock];
    auto r = source_.Read(block, 1);  // distinguishes a clean end (no more bytes) from truncation
    if (!r.ok()) return r.status();
    if (*r == 0) return false;        // end without the zero blocks: accepted, as GNU tar does
    total_ += 1;
    if (Status s = ReadExact(block + 1, kBlock - 1); !s.ok()) return s;
    bool zero = true;
    for (char c : block) zero = zero && c == 0;
    if (zero) return false;  // end of archive; what follows is never read
    auto checksum = ParseNumber(block + 148, 8, "checksum");
    if (!checksum.ok()) return checksum.status();
    unsigned usum = 0;
    int ssum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      char c = (i >= 148 && i < 156) ? ' ' : block[i];
      usum += static_cast<unsigned char>(c);
      ssum += static_cast<signed char>(c);
    }
    if (*checksum != usum && static_cast<int64_t>(*checksum) != ssum) {
      return InvalidArgumentError("tar: bad header checksum (not a tar archive, or corrupt) at byte {}", total_ - kBlock);
    }
    auto size = ParseNumber(block + 124, 12, "size");
    if (!size.ok()) return size.status();
    char type = block[156];
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      auto data = ReadSmall(*size, type == 'x' || type == 'g' ? "PAX header" : "GNU long name");
      if (!data.ok()) return data.status();
      if (type == 'L') long_name = CString(data->data(), data->size());
      if (type == 'K') long_link = CString(data->data(), data->size());
      if (type == 'x') {
        std::string_view rest = *data;
        while (!rest.empty()) {
          size_t sp = rest.find(' ');
          size_t len = 0;
          if (sp == std::string_view::npos || sp == 0) return InvalidArgumentError("tar: malformed PAX record");
          for (char c : rest.substr(0, sp)) {
            if (c < '0' || c > '9' || len > kMaxExtendedHeader) return InvalidArgumentError("tar: malformed PAX record length");
            len = len * 10 + static_cast<size_t>(c - '0');
          }
          if (len <= sp + 1 || len > rest.size() || rest[len - 1] != '\n') {
            return InvalidArgumentError("tar: malformed PAX record");
          }
          std::string_view kv = rest.substr(sp + 1, len - sp - 2);
          size_t eq = kv.find('=');
          if (eq == std::string_view::npos) return InvalidArgumentError("tar: PAX record without '='");
          std::string_view key = kv.substr(0, eq), val = kv.substr(eq + 1);
          if (key == "path") pax_path = val;
          if (key == "linkpath") pax_link = val;
          if (key == "size") {
            uint64_t v = 0;
            for (char c : val) {
              if (c < '0' || c > '9' || v > (1ull << 58)) return InvalidArgumentError("tar: PAX size {:?} is not a number", val);
              v = v * 10 + static_cast<uint64_t>(c - '0');
            }
            pax_size = v;
          }
          rest.remove_prefix(len);
        }
      }
      continue;
    }
    h = TarHeader();
    h.type = type == '\0' || type == '7' ? '0' : type;
    std::string name = CString(block, 100);
    if (std::memcmp(block + 257, "ustar\0", 6) == 0) {
      std::string prefix = CString(block + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    h.name = !pax_path.empty() ? pax_path : !long_name.empty() ? long_name : name;
    h.linkname = !pax_link.empty() ? pax_link : !long_link.empty() ? long_link : CString(block + 157, 100);
    auto mode = ParseNumber(block + 100, 8, "mode");
    auto uid = ParseNumber(block + 108, 8, "uid");
    auto gid = ParseNumber(block + 116, 8, "gid");
    auto mtime = ParseNumber(block + 136, 12, "mtime");
    for (const auto* r2 : {&mode, &uid, &gid, &mtime}) {
      if (!r2->ok()) return r2->status().WithContext(h.name);
    }
    h.mode = static_cast<uint32_t>(*mode & 07777);
    h.uid = static_cast<uint32_t>(*uid);
    h.gid = static_cast<uint32_t>(*gid);
    h.mtime = static_cast<int64_t>(*mtime);
    h.size = pax_size.value_or(*size);
    // Links, directories and devices carry no data whatever their size field says.
    uint64_t data = (h.type == '1' || h.type == '2' || h.type == '3' || h.type == '4' || h.type == '5' || h.type == '6') ? 0 : h.size;
    if (h.type != '0') h.size = 0;
    remaining_ = data;
    pad_ = (kBlock - data % kBlock) % kBlock;
    return true;
  }
}

Result<size_t> TarReader::ReadData(char* buf, size_t n) {
  size_t k = static_cast<size_t>(std::min<uint64_t>(n, remaining_));
  if (k == 0) return size_t{0};
  if (Status s = ReadExact(buf, k); !s.ok()) return s;
  remaining_ -= k;
  return k;
}

// ---- compression ----

namespace {

// One gzip member per block of kGzipMemberBytes input bytes, compressed by libdeflate. With one
// thread the blocks are compressed on the caller's thread; with more, `threads` workers compress
// them while the caller fills the next ones, and the caller writes the members in input order.
// Either way each member is the same function of its block, so the bytes never depend on the
// thread count. At most 2 * threads + 1 blocks are held (each input plus its output), one
// with a single thread.
class GzipCompressor : public Compressor {
 public:
  GzipCompressor(Sink sink, int level, unsigned threads)
      : sink_(std::move(sink)), level_(level), max_in_flight_(threads <= 1 ? 1 : 2 * threads + 1) {
    block_ = NewJob();
    if (threads <= 1) {
      inline_ = NewDeflater(level_);
      return;
    }
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~GzipCompressor() override {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    work_cv_.NotifyAll();
    for (auto& w : workers_) w.join();
  }
  Status Write(std::string_view data) override {
    while (!data.empty()) {
      size_t k = std::min(data.size(), kGzipMemberBytes - block_->in.size());
      block_->in.append(data.substr(0, k));
      data.remove_prefix(k);
      if (block_->in.size() == kGzipMemberBytes) {
        if (Status s = Submit(); !s.ok()) return s;
      }
    }
    return OkStatus();
  }
  Status Finish() override {
    // An empty input still gives one (empty) member: a zero-byte file is not valid gzip.
    if (!block_->in.empty() || !wrote_any_) {
      if (Status s = Submit(); !s.ok()) return s;
    }
    while (!in_flight_.empty()) {
      if (Status s = WriteOldest(); !s.ok()) return s;
    }
    return OkStatus();
  }

 private:
  using Deflater = std::unique_ptr<libdeflate_compressor, decltype(&libdeflate_free_compressor)>;
  struct Job {
    std::string in;
    std::vector<char> out;
    size_t out_size = 0;
  };

  static Deflater NewDeflater(int level) {
    Deflater d(libdeflate_alloc_compressor(level), &libdeflate_free_compressor);
    GANTRY_CHECK(d != nullptr);  // only for a level outside 0-12, or out of memory
    return d;
  }
  static void Compress(libdeflate_compressor* d, Job& job) {
    job.out.resize(libdeflate_gzip_compress_bound(d, job.in.size()));
    job.out_size = libdeflate_gzip_compress(d, job.in.data(), job.in.size(), job.out.data(), job.out.size());
    GANTRY_CHECK(job.out_size != 0);  // the bound always fits
  }

  std::unique_ptr<Job> NewJob() {
    if (free_.empty()) {
      auto job = std::make_unique<Job>();
      job->in.reserve(kGzipMemberBytes);
      return job;
    }
    auto job = std::move(free_.back());
    free_.pop_back();
    job->in.clear();
    return job;
  }

  // Hands the current block over for compression and starts a new one.
  Status Submit() {
    wrote_any_ = true;
    Job* job = block_.get();
    in_flight_.push_back(std::move(block_));
    block_ = NewJob();
    if (inline_) {
      Compress(inline_.get(), *job);
    } else {
      {
        MutexLock lock(mu_);
        queue_.push_back(job);
      }
      work_cv_.NotifyOne();
    }
    while (in_flight_.size() >= max_in_flight_) {
      if (Status s = WriteOldest(); !s.ok()) return s;
    }
    return OkStatus();
  }

  // Waits for the oldest block's member and writes it to the sink.
  Status WriteOldest() {
    Job& job = *in_flight_.front();
    if (!inline_) {
      MutexLock lock(mu_);
      done_cv_.Wait(mu_, [&]() REQUIRES(mu_) { return compressed_.contains(&job); });
      compressed_.erase(&job);
    }
    Status s = sink_(std::string_view(job.out.data(), job.out_size));
    free_.push_back(std::move(in_flight_.front()));
    in_flight_.pop_front();
    return s;
  }

  void Work() {
    Deflater d = NewDeflater(level_);
    MutexLock lock(mu_);
    while (true) {
      work_cv_.Wait(mu_, [&]() REQUIRES(mu_) { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Job* job = queue_.front();
      queue_.pop_front();
      lock.Unlock();
      Compress(d.get(), *job);
      lock.Lock();
      compressed_.insert(job);
      done_cv_.NotifyAll();
    }
  }

  Sink sink_;
  const int level_;
  const size_t max_in_flight_;
  Deflater inline_{nullptr, &libdeflate_free_compressor};  // set when there are no workers
  std::unique_ptr<Job> block_;                     // being filled by Write
  std::deque<std::unique_ptr<Job>> in_flight_;     // submitted, in input order
  std::vector<std::unique_ptr<Job>> free_;         // written, for reuse
  bool wrote_any_ = false;
  Mutex mu_;
  CondVar work_cv_, done_cv_;
  std::deque<Job*> queue_ GUARDED_BY(mu_);  // submitted, not yet taken by a worker
  std::set<const Job*> compressed_ GUARDED_BY(mu_);  // taken by a worker and compressed
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // last: joined before the jobs they use are freed
};

class ZstdCompressor : public Compressor {
 public:
  ZstdCompressor(Sink sink, int level, unsigned threads)
      : sink_(std::move(sink)), out_(ZSTD_CStreamOutSize()), c_(ZSTD_createCCtx()) {
    ZSTD_CCtx_setParameter(c_, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c_, ZSTD_c_checksumFlag, 1);
    // Always at least one worker: libzstd's output is the same for any nbWorkers >= 1, but
    // differs with 0 (single-threaded mode), so 0 is never used.
    size_t rc = ZSTD_CCtx_setParameter(c_, ZSTD_c_nbWorkers, static_cast<int>(std::max(threads, 1u)));
    if (ZSTD_isError(rc)) init_ = FailedPreconditionError("zstd: this libzstd cannot compress on threads: {}", ZSTD_getErrorName(rc));
  }
  ~ZstdCompressor() override { ZSTD_freeCCtx(c_); }
  Status Write(std::string_view data) override { return Run(data, ZSTD_e_continue); }
  Status Finish() override { return Run({}, ZSTD_e_end); }

 private:
  Status Run(std::string_view data, ZSTD_EndDirective mode) {
    if (!init_.ok()) return init_;
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (true) {
      ZSTD_outBuffer o{out_.data(), out_.size(), 0};
      size_t rc = ZSTD_compressStream2(c_, &o, &in, mode);
      if (ZSTD_isError(rc)) return InternalError("zstd: {}", ZSTD_getErrorName(rc));
      if (o.pos > 0) {
        if (Status s = sink_(std::string_view(out_.data(), o.pos)); !s.ok()) return s;
      }
      if (mode == ZSTD_e_end ? rc == 0 : in.pos == in.size) return OkStatus();
    }
  }
  Sink sink_;
  std::vector<char> out_;
  ZSTD_CCtx* c_;
  Status init_;
};

}  // namespace

std::unique_ptr<Compressor> NewGzipCompressor(Sink sink, int level, unsigned threads) {
  return std::make_unique<GzipCompressor>(std::move(sink), level, threads);
}

std::unique_ptr<Compressor> NewZstdCompressor(Sink sink, int level, unsigned threads) {
  return std::make_unique<ZstdCompressor>(std::move(sink), level, threads);
}

}  // namespace gantry::oci::internal
