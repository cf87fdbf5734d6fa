// Fuzzes what a client sends and a provider serves for OIDC: a bearer JWT (PeekHeader, VerifyJwt
// against a real key set) and a JWKS document (KeySet::Parse). Any input must be refused or
// accepted cleanly; no input may verify, since none is signed with the private key, which the
// fuzzer never sees.

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "oidc/oidc.h"

using namespace gantry;

namespace {

// A JWKS holding one RSA public key made at start-up (its private half is dropped).
const oidc::KeySet& Keys() {
  static const oidc::KeySet* keys = [] {
    EVP_PKEY* pkey = EVP_RSA_gen(2048);
    BIGNUM* n = nullptr;
    BIGNUM* e = nullptr;
    EVP_PKEY_get_bn_param(pkey, "n", &n);
    EVP_PKEY_get_bn_param(pkey, "e", &e);
    auto b64url = [](const BIGNUM* bn) {
      std::string raw(static_cast<size_t>(BN_num_bytes(bn)), '\0');
      BN_bn2bin(bn, reinterpret_cast<unsigned char*>(raw.data()));
      static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      std::string out;
      uint32_t acc = 0;
      int bits = 0;
      for (unsigned char c : raw) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) out += kAlphabet[(acc >> (bits -= 6)) & 63];
      }
      if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
      return out;
    };
    std::string jwks = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k1\",\"alg\":\"RS256\",\"use\":\"sig\",\"n\":\"" + b64url(n) +
                       "\",\"e\":\"" + b64url(e) + "\"}]}";
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(pkey);
    auto parsed = oidc::KeySet::Parse(jwks);
    if (!parsed.ok()) {
      std::fprintf(stderr, "the fuzzer's own JWKS does not parse: %s\n", parsed.status().ToString().c_str());
      std::abort();
    }
    return new oidc::KeySet(*std::move(parsed));
  }();
  return *keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)oidc::KeySet::Parse(input);
  (void)oidc::PeekHeader(input);
  oidc::VerifyOptions options{.issuer = "https://issuer.example", .client_id = "gantry"};
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1830297600));
  if (oidc::VerifyJwt(input, Keys(), options, now).ok()) {
    std::fprintf(stderr, "an unsigned input verified\n");
    std::abort();
  }
  return 0;
}
