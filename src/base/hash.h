#pragma once
// Content hashes (OpenSSL): SHA-256 in lowercase hex, as OCI digests and cache keys use them.
// Thread-safe.

#include <string>
#include <string_view>

namespace gantry {

// 64 lowercase hex characters.
std::string Sha256Hex(std::string_view data);

// Incremental SHA-256 for streams. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  std::string FinishHex();

 private:
  void* ctx_;
};

}  // namespace gantry
