// Keys: PEM in and out, signing and verifying, through OpenSSL 3's EVP interface (see sign.h).

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string>
#include <string_view>

#include "sign/sign.h"

namespace gantry::sign {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::shared_ptr<evp_pkey_st> Own(EVP_PKEY* key) { return std::shared_ptr<evp_pkey_st>(key, EVP_PKEY_free); }

// The reason of OpenSSL's last error, and the error queue cleared.
std::string OpenSslError() {
  unsigned long e = ERR_peek_last_error();
  std::string reason = e == 0 ? "unknown error" : ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error";
  ERR_clear_error();
  return reason;
}

// The key's type when it is one Gantry signs with; InvalidArgument naming what it is otherwise.
Result<KeyType> Classify(EVP_PKEY* key, std::string_view where) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_ED25519:
      return KeyType::kEd25519;
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) {
        ERR_clear_error();
        return InvalidArgumentError("{}: ECDSA key without a named curve: only P-256 is supported", where);
      }
      std::string_view name(group, len);
      if (name == "prime256v1" || name == "P-256") return KeyType::kEcdsaP256;
      return InvalidArgumentError("{}: ECDSA key on curve {}: only P-256 (prime256v1) and Ed25519 are supported",
                                  where, name);
    }
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return InvalidArgumentError("{}: RSA key: only ECDSA P-256 and Ed25519 keys are supported", where);
    default:
      return InvalidArgumentError("{}: {} key: only ECDSA P-256 and Ed25519 keys are supported", where,
                                  EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown");
  }
}

// No passphrase prompt: an encrypted PEM fails instead of reading the terminal.
int NoPassword(char*, int, int, void*) { return -1; }

std::string ToPem(const std::function<int(BIO*)>& write) {
  Bio bio(BIO_new(BIO_s_mem()));
  GANTRY_CHECK(bio && write(bio.get()) == 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

const EVP_MD* DigestFor(KeyType type) { return type == KeyType::kEcdsaP256 ? EVP_sha256() : nullptr; }

}  // namespace

std::string_view KeyTypeName(KeyType type) { return type == KeyType::kEcdsaP256 ? "ECDSA P-256" : "Ed25519"; }

Result<PrivateKey> ParsePrivateKey(std::string_view pem, std::string_view where) {
  if (pem.find("ENCRYPTED SIGSTORE PRIVATE KEY") != std::string_view::npos) {
    return InvalidArgumentError(
        "{}: a cosign-encrypted key (from `cosign generate-key-pair`): Gantry reads unencrypted PKCS#8 or SEC1 "
        "PEM keys; make one with `openssl genpkey -algorithm ed25519` or `openssl ecparam -name prime256v1 -genkey` "
        "(cosign verifies their signatures with the public key)",
        where);
  }
  if (pem.find("ENCRYPTED PRIVATE KEY") != std::string_view::npos || pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos) {
    return InvalidArgumentError("{}: the private key is encrypted; give it unencrypted (PKCS#8 or SEC1 PEM)", where);
  }
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr);
  if (raw == nullptr) {
    return InvalidArgumentError("{}: not a PEM private key (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\"): {}",
                                where, OpenSslError());
  }
  auto key = Own(raw);
  GANTRY_ASSIGN_OR_RETURN(KeyType type, Classify(raw, where));
  return PrivateKey(std::move(key), type);
}

Result<PublicKey> ParsePublicKey(std::string_view pem, std::string_view where) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassword, nullptr);
  if (raw == nullptr) {
    if (pem.find("PRIVATE KEY") != std::string_view::npos) {
      ERR_clear_error();
      return InvalidArgumentError("{}: a private key where a public key (PKIX \"PUBLIC KEY\" PEM) is expected", where);
    }
    return InvalidArgumentError("{}: not a PKIX \"PUBLIC KEY\" PEM: {}", where, OpenSslError());
  }
  auto key = Own(raw);
  GANTRY_ASSIGN_OR_RETURN(KeyType type, Classify(raw, where));
  return PublicKey(std::move(key), type);
}

Result<PrivateKey> GenerateKey(KeyType type) {
  EVP_PKEY* raw = type == KeyType::kEcdsaP256 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) return InternalError("generate a {} key: {}", KeyTypeName(type), OpenSslError());
  return PrivateKey(Own(raw), type);
}

Result<std::string> PrivateKey::Sign(std::string_view message) const {
  MdCtx ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, DigestFor(type_), nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    return InternalError("sign with the {} key: {}", KeyTypeName(type_), OpenSslError());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return InternalError("sign with the {} key: {}", KeyTypeName(type_), OpenSslError());
  }
  sig.resize(len);
  return sig;
}

std::string PrivateKey::Pem() const {
  return ToPem([&](BIO* b) { return PEM_write_bio_PKCS8PrivateKey(b, key_.get(), nullptr, nullptr, 0, nullptr, nullptr); });
}

Status PublicKey::Verify(std::string_view message, std::string_view signature) const {
  MdCtx ctx(EVP_MD_CTX_new());
  GANTRY_CHECK(ctx != nullptr);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, DigestFor(type_), nullptr, key_.get()) != 1) {
    return InternalError("verify with the {} key: {}", KeyTypeName(type_), OpenSslError());
  }
  int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  if (ok != 1) return PermissionDeniedError("signature does not verify with the {} key", KeyTypeName(type_));
  return OkStatus();
}

std::string PublicKey::Pem() const {
  return ToPem([&](BIO* b) { return PEM_write_bio_PUBKEY(b, key_.get()); });
}

}  // namespace gantry::sign
