// The OCI image layout on disk; see layout.h.

#include "oci/layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <system_error>

#include "base/hash.h"
#include "base/path.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLayoutFile = R"({"imageLayoutVersion":"1.0.0"})";

std::string_view Hex(std::string_view digest) { return digest.substr(digest.find(':') + 1); }

// Writes to a temp file in blobs/sha256, hashing as it goes; Commit renames it to its digest.
class FileBlobWriter final : public BlobWriter {
 public:
  FileBlobWriter(fs::path dir, fs::path tmp, int fd) : dir_(std::move(dir)), tmp_(std::move(tmp)), fd_(fd) {}
  ~FileBlobWriter() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  Status Write(std::string_view chunk) override {
    if (fd_ < 0) return FailedPreconditionError("blob writer: write after commit");
    hash_.Update(chunk);
    size_ += chunk.size();
    return WriteAll(fd_, chunk, tmp_);
  }

  uint64_t size() const override { return size_; }

  Result<Descriptor> Commit(std::string_view media_type, std::string_view expected_digest) override {
    if (fd_ < 0) return FailedPreconditionError("blob writer: committed twice");
    int fd = fd_;
    fd_ = -1;
    std::string digest = "sha256:" + hash_.FinishHex();
    if (!expected_digest.empty() && digest != expected_digest) {
      ::close(fd);
      return DataLossError("blob: expected {}, the {} bytes written are {}", expected_digest, size_, digest);
    }
    // fsync before rename: a crash must never leave a named blob whose bytes do not match.
    if (::fsync(fd) != 0 || ::close(fd) != 0) return ErrnoError(errno, "sync " + tmp_.string());
    fs::path final_path = dir_ / Hex(digest);
    if (::rename(tmp_.c_str(), final_path.c_str()) != 0) return ErrnoError(errno, "rename to " + final_path.string());
    committed_ = true;
    Descriptor d;
    d.media_type = std::string(media_type);
    d.digest = std::move(digest);
    d.size = static_cast<int64_t>(size_);
    return d;
  }

 private:
  fs::path dir_;
  fs::path tmp_;
  int fd_;
  Sha256 hash_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace

Result<Layout> Layout::Open(const fs::path& dir, bool create) {
  std::error_code ec;
  bool exists = fs::exists(dir, ec);
  if (ec) return ErrnoError(ec.value(), "stat " + dir.string());
  if (!exists && !create) return NotFoundError("image layout {}: no such directory", dir.string());
  if (exists && !fs::is_directory(dir, ec)) {
    return FailedPreconditionError("image layout {}: not a directory", dir.string());
  }
  fs::path layout_file = dir / "oci-layout";
  if (!fs::exists(layout_file, ec)) {
    if (!create) {
      return FailedPreconditionError("{} is not an OCI image layout (no oci-layout file)", dir.string());
    }
    if (exists && !fs::is_empty(dir, ec)) {
      return FailedPreconditionError("{} is not empty and not an OCI image layout (no oci-layout file)", dir.string());
    }
    fs::create_directories(dir / "blobs" / "sha256", ec);
    if (ec) return ErrnoError(ec.value(), "create " + (dir / "blobs" / "sha256").string());
    Layout layout(dir);
    if (Status s = layout.WriteIndex(Index{std::string(media::kOciIndex), {}, {}}); !s.ok()) return s;
    // oci-layout last: its presence marks a complete layout.
    if (Status s = WriteFileAtomic(layout_file, kLayoutFile); !s.ok()) return s;
    return layout;
  }
  auto text = ReadFile(layout_file, 1 << 16);
  if (!text.ok()) return text.status().WithContext("image layout " + dir.string());
  auto doc = value::ParseJson(*text, layout_file.string());
  const value::Value* version = doc.ok() ? doc->Get("imageLayoutVersion") : nullptr;
  if (version == nullptr || !version->IsString() || version->AsString() != "1.0.0") {
    return FailedPreconditionError("{}: imageLayoutVersion must be \"1.0.0\"", layout_file.string());
  }
  fs::create_directories(dir / "blobs" / "sha256", ec);  // an empty layout may lack it
  if (ec) return ErrnoError(ec.value(), "create " + (dir / "blobs" / "sha256").string());
  return Layout(dir);
}

fs::path Layout::BlobPath(std::string_view digest) const {
  if (Status s = ValidateDigest(digest); !s.ok()) DieBecause("Layout::BlobPath: " + s.message());
  return dir_ / "blobs" / "sha256" / Hex(digest);
}

bool Layout::HasBlob(std::string_view digest) const {
  if (!ValidateDigest(digest).ok()) return false;
  struct stat st;
  return ::stat(BlobPath(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<Descriptor> Layout::WriteBlob(std::string_view bytes, std::string_view media_type) const {
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = Sha256Digest(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  if (HasBlob(d.digest)) return d;
  auto writer = NewBlob();
  if (!writer.ok()) return writer.status();
  if (Status s = (*writer)->Write(bytes); !s.ok()) return s;
  return (*writer)->Commit(media_type, d.digest);
}

Result<std::unique_ptr<BlobWriter>> Layout::NewBlob() const {
  fs::path dir = dir_ / "blobs" / "sha256";
  std::string tmp = (dir / ".tmp-XXXXXX").string();
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "create a blob in " + dir.string());
  ::fchmod(fd, 0644);
  return std::unique_ptr<BlobWriter>(new FileBlobWriter(dir, tmp, fd));
}

Result<std::string> Layout::ReadBlob(std::string_view digest, uint64_t max_bytes) const {
  if (Status s = ValidateDigest(digest); !s.ok()) return s;
  fs::path path = BlobPath(digest);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFoundError("blob {} is not in {}", digest, dir_.string());
    return ErrnoError(errno, "stat " + path.string());
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return ResourceExhaustedError("blob {} is {} bytes, more than the limit of {}", digest, st.st_size, max_bytes);
  }
  auto bytes = ReadFile(path, max_bytes);
  if (!bytes.ok()) return bytes.status();
  if (Sha256Digest(*bytes) != digest) {
    return DataLossError("blob {} in {}: its content does not match its digest", digest, dir_.string());
  }
  return bytes;
}

Result<Index> Layout::ReadIndex() const {
  fs::path path = dir_ / "index.json";
  auto text = ReadFile(path, 16u << 20);
  if (!text.ok()) return text.status();
  auto index = ParseIndex(*text);
  if (!index.ok()) return index.status().WithContext(path.string());
  return index;
}

Status Layout::WriteIndex(const Index& index) const {
  return WriteFileAtomic(dir_ / "index.json", SerializeIndex(index));
}

Status Layout::Tag(Descriptor manifest, std::string_view ref_name) const {
  auto index = ReadIndex();
  if (!index.ok()) return index.status();
  manifest.annotations[std::string(kRefNameAnnotation)] = std::string(ref_name);
  bool replaced = false;
  for (auto it = index->manifests.begin(); it != index->manifests.end();) {
    auto name = it->annotations.find(std::string(kRefNameAnnotation));
    if (name != it->annotations.end() && name->second == ref_name) {
      if (replaced) {
        it = index->manifests.erase(it);
        continue;
      }
      *it = manifest;
      replaced = true;
    }
    ++it;
  }
  if (!replaced) index->manifests.push_back(std::move(manifest));
  return WriteIndex(*index);
}

Result<Descriptor> Layout::Find(std::string_view ref_name) const {
  auto index = ReadIndex();
  if (!index.ok()) return index.status();
  if (ref_name.empty()) {
    if (index->manifests.size() == 1) return index->manifests[0];
    if (index->manifests.empty()) return NotFoundError("image layout {} holds no image", dir_.string());
  }
  std::string names;
  for (const auto& d : index->manifests) {
    auto name = d.annotations.find(std::string(kRefNameAnnotation));
    std::string_view n = name == d.annotations.end() ? std::string_view("(untagged)") : name->second;
    if (!ref_name.empty() && n == ref_name) return d;
    names += names.empty() ? "" : ", ";
    names += n;
  }
  if (ref_name.empty()) {
    return FailedPreconditionError("image layout {} holds {} images ({}); name one", dir_.string(),
                                   index->manifests.size(), names);
  }
  return NotFoundError("image layout {} has no image tagged {:?} (tags: {})", dir_.string(), ref_name,
                       names.empty() ? "none" : names);
}

}  // namespace gantry::oci
