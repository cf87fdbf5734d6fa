#pragma once
// Test-only: keys made with OpenSSL in the test, their JWKs, and JWTs signed with them, so the unit
// tests of oidc can build every token a provider (or an attacker) could send.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "base/base64.h"
#include "base/status.h"

namespace gantry::oidc::testing {

inline std::string B64Url(std::string_view in) {
  std::string s = Base64Encode(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return s;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

inline Pkey NewRsaKey(unsigned bits = 2048) { return Pkey(EVP_RSA_gen(bits)); }
inline Pkey NewP256Key() { return Pkey(EVP_EC_gen("P-256")); }

inline std::string BnParam(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  GANTRY_CHECK(EVP_PKEY_get_bn_param(key, name, &bn) == 1);
  std::string out(pad > 0 ? static_cast<size_t>(pad) : static_cast<size_t>(BN_num_bytes(bn)), '\0');
  if (pad > 0) {
    GANTRY_CHECK(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), pad) == pad);
  } else {
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  }
  BN_free(bn);
  return out;
}

// The public JWK of `key` (RSA or P-256) as a JSON object; `extra` is inserted as more members
// (e.g. R"("alg":"RS256",)").
inline std::string Jwk(EVP_PKEY* key, std::string_view kid, std::string_view extra = "") {
  if (EVP_PKEY_is_a(key, "RSA")) {
    return fmt::format(R"({{{}"kty":"RSA","kid":"{}","n":"{}","e":"{}"}})", extra, kid,
                       B64Url(BnParam(key, OSSL_PKEY_PARAM_RSA_N)), B64Url(BnParam(key, OSSL_PKEY_PARAM_RSA_E)));
  }
  return fmt::format(R"({{{}"kty":"EC","crv":"P-256","kid":"{}","x":"{}","y":"{}"}})", extra, kid,
                     B64Url(BnParam(key, OSSL_PKEY_PARAM_EC_PUB_X, 32)),
                     B64Url(BnParam(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32)));
}

// A JWS signature over `input` with `key`: RS256 (PKCS#1 v1.5) for RSA, ES256 (raw r||s) for EC.
inline std::string Sign(EVP_PKEY* key, std::string_view input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  GANTRY_CHECK(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1);
  GANTRY_CHECK(EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  std::string sig(len, '\0');
  GANTRY_CHECK(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                              reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (!EVP_PKEY_is_a(key, "EC")) return sig;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  GANTRY_CHECK(es != nullptr);
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(es);
  return raw;
}

// header.claims.signature with both JSON texts taken as they are.
inline std::string MakeJwt(EVP_PKEY* key, std::string_view header_json, std::string_view claims_json) {
  std::string input = B64Url(header_json) + "." + B64Url(claims_json);
  return input + "." + B64Url(Sign(key, input));
}

// HS256 over the token with `secret` as the HMAC key (the algorithm-confusion attack uses the
// provider's public key as the secret).
inline std::string MakeHs256Jwt(std::string_view secret, std::string_view header_json, std::string_view claims_json) {
  std::string input = B64Url(header_json) + "." + B64Url(claims_json);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  return input + "." + B64Url(std::string_view(reinterpret_cast<char*>(mac), len));
}

// The PEM of the public key (what an attacker would use as the HMAC secret).
inline std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

}  // namespace gantry::oidc::testing
