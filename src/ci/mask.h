#pragma once
// ci/mask: removes secrets from a stream of log bytes.
//
// A Masker is built from the secret values. For each secret it masks the forms the secret takes in
// output: the raw bytes; its base64 (standard and URL alphabets) at each of the three alignments
// it can have inside a longer base64 text (only the characters fully determined by the secret, the
// way GitHub Actions does); URL-encoded (upper- and lower-case hex, '+' or %20 for spaces);
// JSON-escaped; and, for a multi-line secret, each of its lines. Every match becomes "***".
// Values shorter than kMinSecretBytes are masked only raw (their encodings would erase ordinary
// text); forms shorter than kMinSecretBytes are not masked.
//
// Streaming: Write() may split a secret anywhere, across any number of chunks. The masker holds
// back the shortest tail that could still be the start of a secret and emits it with the next
// Write() or Flush(). At each position the longest matching form wins.
//
// A Masker is not thread-safe; use one per stream. Building one is O(total size of the forms).

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace gantry::ci {

inline constexpr size_t kMinSecretBytes = 4;

// Every form of `secret` that Masker looks for (exposed for tests and for masking whole strings).
std::vector<std::string> SecretForms(std::string_view secret);

class Masker {
 public:
  explicit Masker(const std::vector<std::string>& secrets);

  // Masks `data` appended to what was held back; returns what can be emitted now.
  std::string Write(std::string_view data);
  // Returns what is still held back, masked (end of the stream).
  std::string Flush();

  // Masks a complete string (an error message, a summary).
  std::string MaskAll(std::string_view text) const;

 private:
  // Appends the masked form of buf[0, limit) to out; stops at a partial match at the end of buf
  // when !final and returns the index where the held-back tail starts.
  size_t Scan(std::string_view buf, bool final, std::string& out) const;

  std::vector<std::string> forms_;  // longest first
  std::array<bool, 256> first_{};   // bytes that begin some form
  std::string pending_;
};

}  // namespace gantry::ci
