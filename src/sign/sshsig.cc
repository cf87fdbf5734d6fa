// SSH signatures (sshsig.h). Ed25519 keys go through sign::PrivateKey / PublicKey (OpenSSL): an
// OpenSSH key's 32-byte seed and a raw public key are wrapped in their fixed PKCS#8 / PKIX DER
// prefixes and parsed as PEM, so the key code stays in one place.

#include "sign/sshsig.h"

#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <utility>

#include "base/base64.h"

namespace gantry::sign {
namespace {

constexpr std::string_view kMagic = "SSHSIG";
constexpr std::string_view kEd25519 = "ssh-ed25519";
constexpr std::string_view kHash = "sha512";
constexpr std::string_view kBegin = "-----BEGIN SSH SIGNATURE-----";
constexpr std::string_view kEnd = "-----END SSH SIGNATURE-----";
// DER of an Ed25519 PKCS#8 private key and of a PKIX public key, up to the 32 key bytes.
constexpr std::string_view kPkcs8Prefix{"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16};
constexpr std::string_view kPkixPrefix{"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12};

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}
void PutString(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
std::string WireKey(std::string_view public_raw) {
  std::string k;
  PutString(k, kEd25519);
  PutString(k, public_raw);
  return k;
}

// Reads SSH wire-format fields; every read past the end fails.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool U32(uint32_t& v) {
    if (data_.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(4);
    return true;
  }
  bool String(std::string_view& s) {
    uint32_t n = 0;
    if (!U32(n) || data_.size() < n) return false;
    s = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool Raw(size_t n, std::string_view& s) {
    if (data_.size() < n) return false;
    s = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return data_; }

 private:
  std::string_view data_;
};

std::string Pem(std::string_view label, std::string_view der) {
  std::string b64 = Base64Encode(der);
  std::string out = fmt::format("-----BEGIN {}-----\n", label);
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  return out + fmt::format("-----END {}-----\n", label);
}

// The base64 body between `begin` and `end` lines, decoded; nullopt when there is none.
std::optional<std::string> Dearmor(std::string_view text, std::string_view begin, std::string_view end) {
  size_t b = text.find(begin);
  size_t e = text.find(end);
  if (b == std::string_view::npos || e == std::string_view::npos || e < b) return std::nullopt;
  return Base64Decode(text.substr(b + begin.size(), e - b - begin.size()));
}

std::string Sha512(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  GANTRY_CHECK(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha512(), nullptr) == 1);
  return std::string(reinterpret_cast<char*>(md), len);
}

// What the signature covers.
std::string SignedData(std::string_view ns, std::string_view message) {
  std::string d(kMagic);
  PutString(d, ns);
  PutString(d, "");
  PutString(d, kHash);
  PutString(d, Sha512(message));
  return d;
}

// The Ed25519 public key of a wire-format key blob; InvalidArgument for another type.
Result<std::string> Ed25519Of(std::string_view blob, std::string_view what) {
  Reader r(blob);
  std::string_view type, raw;
  if (!r.String(type) || !r.String(raw)) return InvalidArgumentError("{}: a malformed key", what);
  if (type != kEd25519) return InvalidArgumentError("{}: {} key: only Ed25519 keys sign commits", what, type);
  if (raw.size() != 32) return InvalidArgumentError("{}: an Ed25519 key of {} bytes, not 32", what, raw.size());
  return std::string(raw);
}

// An unencrypted OpenSSH private key file (PROTOCOL.key): the Ed25519 private key and its public key.
Result<std::pair<std::string, std::string>> OpenSshEd25519(std::string_view text, std::string_view where) {
  auto blob = Dearmor(text, "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----");
  if (!blob) return InvalidArgumentError("{}: not base64 between the OPENSSH PRIVATE KEY lines", where);
  Reader r(*blob);
  std::string_view magic, cipher, kdf, kdf_options, public_blob, private_section;
  uint32_t keys = 0;
  if (!r.Raw(15, magic) || magic != std::string_view("openssh-key-v1\0", 15) || !r.String(cipher) || !r.String(kdf) ||
      !r.String(kdf_options) || !r.U32(keys)) {
    return InvalidArgumentError("{}: not an openssh-key-v1 file", where);
  }
  if (cipher != "none") {
    return InvalidArgumentError("{}: the key is encrypted ({}); Gantry reads unencrypted keys (ssh-keygen -p -N '' -f FILE)",
                                where, cipher);
  }
  if (keys != 1) return InvalidArgumentError("{}: {} keys in the file, expected 1", where, keys);
  if (!r.String(public_blob) || !r.String(private_section)) return InvalidArgumentError("{}: a truncated key file", where);
  GANTRY_ASSIGN_OR_RETURN(std::string pub, Ed25519Of(public_blob, where));
  Reader p(private_section);
  uint32_t check1 = 0, check2 = 0;
  std::string_view type, pub2, priv;
  if (!p.U32(check1) || !p.U32(check2) || check1 != check2 || !p.String(type) || !p.String(pub2) || !p.String(priv)) {
    return InvalidArgumentError("{}: a malformed private section", where);
  }
  if (type != kEd25519 || pub2 != pub || priv.size() != 64 || priv.substr(32) != pub) {
    return InvalidArgumentError("{}: the private key does not match its public key", where);
  }
  return std::make_pair(std::string(priv.substr(0, 32)), pub);
}

// The 32 bytes of an Ed25519 PublicKey (its PKIX DER ends with them).
std::string RawPublic(const PublicKey& key) {
  auto der = Dearmor(key.Pem(), "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----");
  GANTRY_CHECK(der && der->size() == kPkixPrefix.size() + 32);
  return der->substr(kPkixPrefix.size());
}

}  // namespace

Result<SshSigner> SshSigner::Parse(std::string_view text, std::string_view where) {
  if (text.find("-----BEGIN OPENSSH PRIVATE KEY-----") != std::string_view::npos) {
    GANTRY_ASSIGN_OR_RETURN(auto pair, OpenSshEd25519(text, where));
    GANTRY_ASSIGN_OR_RETURN(PrivateKey key, ParsePrivateKey(Pem("PRIVATE KEY", std::string(kPkcs8Prefix) + pair.first), where));
    // The file also holds the public key, which is what would be published; a damaged file whose
    // public key is not its private key's would sign what that key never verifies (found by
    // fuzz/sshsig).
    std::string pub = RawPublic(key.Public());
    if (pub != pair.second) {
      return InvalidArgumentError("{}: the public key in the file is not its private key's (the file is damaged)", where);
    }
    return SshSigner(std::move(key), std::move(pub));
  }
  GANTRY_ASSIGN_OR_RETURN(PrivateKey key, ParsePrivateKey(text, where));
  if (key.type() != KeyType::kEd25519) {
    return InvalidArgumentError("{}: {} key: only Ed25519 keys sign commits", where, KeyTypeName(key.type()));
  }
  std::string pub = RawPublic(key.Public());
  return SshSigner(std::move(key), std::move(pub));
}

std::string SshSigner::PublicKeyLine(std::string_view comment) const {
  std::string line = fmt::format("{} {}", kEd25519, Base64Encode(WireKey(public_raw_)));
  if (!comment.empty()) line += fmt::format(" {}", comment);
  return line;
}

Result<std::string> SshSigner::Sign(std::string_view message, std::string_view ns) const {
  GANTRY_ASSIGN_OR_RETURN(std::string raw, key_.Sign(SignedData(ns, message)));
  std::string sig;
  PutString(sig, kEd25519);
  PutString(sig, raw);
  std::string blob(kMagic);
  PutU32(blob, 1);
  PutString(blob, WireKey(public_raw_));
  PutString(blob, ns);
  PutString(blob, "");
  PutString(blob, kHash);
  PutString(blob, sig);
  std::string b64 = Base64Encode(blob);
  std::string out(kBegin);
  for (size_t i = 0; i < b64.size(); i += 70) out += "\n" + b64.substr(i, 70);
  return out + "\n" + std::string(kEnd);
}

Status VerifySshSignature(std::string_view armored, std::string_view message, std::string_view ns,
                          std::string_view public_line) {
  // "ssh-ed25519 BASE64 [comment]": the middle field.
  size_t space = public_line.find(' ');
  std::string_view b64 = space == std::string_view::npos ? std::string_view() : public_line.substr(space + 1);
  auto expected_blob = Base64Decode(b64.substr(0, b64.find(' ')));
  if (b64.empty() || !expected_blob) return InvalidArgumentError("a malformed public key line");
  GANTRY_ASSIGN_OR_RETURN(std::string expected, Ed25519Of(*expected_blob, "the public key"));
  auto blob = Dearmor(armored, kBegin, kEnd);
  if (!blob) return InvalidArgumentError("not an armored SSH signature");
  Reader r(*blob);
  std::string_view magic, key_blob, sig_ns, reserved, hash, sig_blob;
  uint32_t version = 0;
  if (!r.Raw(6, magic) || magic != kMagic || !r.U32(version) || !r.String(key_blob) || !r.String(sig_ns) ||
      !r.String(reserved) || !r.String(hash) || !r.String(sig_blob)) {
    return InvalidArgumentError("a malformed SSH signature");
  }
  if (version != 1) return InvalidArgumentError("SSH signature version {}, expected 1", version);
  if (hash != kHash) return InvalidArgumentError("SSH signature with hash {}, expected sha512", hash);
  GANTRY_ASSIGN_OR_RETURN(std::string signer, Ed25519Of(key_blob, "the signature's key"));
  if (signer != expected) return PermissionDeniedError("signed by another key ({})", Base64Encode(WireKey(signer)).substr(0, 24) + "…");
  if (sig_ns != ns) return PermissionDeniedError("signed in namespace {:?}, not {:?}", sig_ns, ns);
  Reader s(sig_blob);
  std::string_view type, raw;
  if (!s.String(type) || !s.String(raw) || type != kEd25519) return InvalidArgumentError("a malformed Ed25519 signature");
  GANTRY_ASSIGN_OR_RETURN(PublicKey key, ParsePublicKey(Pem("PUBLIC KEY", std::string(kPkixPrefix) + expected), "the public key"));
  return key.Verify(SignedData(ns, message), raw);
}

}  // namespace gantry::sign
