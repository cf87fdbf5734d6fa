// JWT verification with OpenSSL: JWKS parsing, signature checks for RS256 and ES256, claim checks.
// The order of the checks and what each refuses are in oidc.h.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "base/base64.h"
#include "base/clock.h"
#include "oidc/oidc.h"
#include "value/value.h"

namespace gantry::oidc {
namespace {

constexpr size_t kMaxTokenBytes = 16 * 1024;

std::string Base64UrlEncode(std::string_view in) {
  std::string s = Base64Encode(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return s;
}

// Strict base64url: only the URL-safe alphabet, no padding, canonical (the unused low bits of the
// last character are zero, so one value has one encoding).
std::optional<std::string> Base64UrlDecode(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return std::nullopt;
    }
  }
  if (s.size() % 4 == 1) return std::nullopt;
  auto out = Base64Decode(s);
  if (!out || Base64UrlEncode(*out) != in) return std::nullopt;
  return out;
}

Status Invalid(const VerifyOptions& o, std::string_view what) {
  return UnauthenticatedError("token from {}: {}", o.issuer, what).set_reason(kReasonInvalidToken);
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using UniqueBn = std::unique_ptr<BIGNUM, BnFree>;

// The string member `key` of a JSON object, "" when absent; nullopt when present but not a string.
std::optional<std::string> OptString(const value::Value& obj, std::string_view key) {
  const value::Value* v = obj.Get(key);
  if (v == nullptr) return std::string();
  if (!v->IsString()) return std::nullopt;
  return std::string(v->AsString());
}

// A base64url member of a JWK, decoded; an error naming it.
Result<std::string> KeyBytes(const value::Value& jwk, std::string_view member, const std::string& where) {
  const value::Value* v = jwk.Get(member);
  if (v == nullptr || !v->IsString()) return InvalidArgumentError("{}: no \"{}\"", where, member);
  auto bytes = Base64UrlDecode(v->AsString());
  if (!bytes || bytes->empty()) return InvalidArgumentError("{}: \"{}\" is not base64url", where, member);
  return std::move(*bytes);
}

// Builds a public key of `type` ("RSA" or "EC") from OpenSSL parameters; InvalidArgument naming
// `where` when OpenSSL refuses them.
Result<std::shared_ptr<EVP_PKEY>> FromData(const char* type, OSSL_PARAM_BLD* bld, const std::string& where) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  bool ok = params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok || pkey == nullptr) return InvalidArgumentError("{}: not a valid {} public key", where, type);
  std::shared_ptr<EVP_PKEY> key(pkey, PkeyFree());
  // The point is on the curve, the modulus is odd and so on.
  EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr);
  bool valid = check != nullptr && EVP_PKEY_public_check(check) == 1;
  EVP_PKEY_CTX_free(check);
  if (!valid) return InvalidArgumentError("{}: not a valid {} public key", where, type);
  return key;
}

Result<std::shared_ptr<EVP_PKEY>> RsaKey(const value::Value& jwk, const std::string& where) {
  GANTRY_ASSIGN_OR_RETURN(std::string n, KeyBytes(jwk, "n", where));
  GANTRY_ASSIGN_OR_RETURN(std::string e, KeyBytes(jwk, "e", where));
  UniqueBn bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr));
  UniqueBn bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr));
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  bool pushed = bn_n && bn_e && bld != nullptr && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n.get()) == 1 &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e.get()) == 1;
  Result<std::shared_ptr<EVP_PKEY>> key = pushed ? FromData("RSA", bld, where)
                                                 : Result<std::shared_ptr<EVP_PKEY>>(InternalError("{}: out of memory", where));
  OSSL_PARAM_BLD_free(bld);
  if (key.ok() && EVP_PKEY_get_bits(key->get()) < 2048) {
    return InvalidArgumentError("{}: RSA key of {} bits (at least 2048 are required)", where,
                                EVP_PKEY_get_bits(key->get()));
  }
  return key;
}

Result<std::shared_ptr<EVP_PKEY>> P256Key(const value::Value& jwk, const std::string& where) {
  GANTRY_ASSIGN_OR_RETURN(std::string x, KeyBytes(jwk, "x", where));
  GANTRY_ASSIGN_OR_RETURN(std::string y, KeyBytes(jwk, "y", where));
  if (x.size() != 32 || y.size() != 32) return InvalidArgumentError("{}: P-256 coordinates must be 32 bytes", where);
  std::string point = "\x04" + x + y;  // uncompressed
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  bool pushed = bld != nullptr &&
                OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
                OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1;
  Result<std::shared_ptr<EVP_PKEY>> key = pushed ? FromData("EC", bld, where)
                                                 : Result<std::shared_ptr<EVP_PKEY>>(InternalError("{}: out of memory", where));
  OSSL_PARAM_BLD_free(bld);
  return key;
}

bool VerifyDigest(EVP_PKEY* key, std::string_view data, std::string_view der_or_raw_sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(der_or_raw_sig.data()), der_or_raw_sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// JWS ES256 signatures are r||s (32 bytes each); OpenSSL verifies DER.
std::optional<std::string> EcdsaRawToDer(std::string_view raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

struct Parts {
  std::string_view header, claims, signature;  // base64url
};

std::optional<Parts> Split(std::string_view jwt) {
  size_t a = jwt.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = jwt.find('.', a + 1);
  if (b == std::string_view::npos || jwt.find('.', b + 1) != std::string_view::npos) return std::nullopt;
  return Parts{jwt.substr(0, a), jwt.substr(a + 1, b - a - 1), jwt.substr(b + 1)};
}

// A decoded part that must be a JSON object.
Result<value::Value> JsonPart(std::string_view b64, std::string_view what, const VerifyOptions& o) {
  auto raw = Base64UrlDecode(b64);
  if (!raw) return Invalid(o, fmt::format("the {} is not base64url", what));
  auto v = value::ParseJson(*raw, what);
  if (!v.ok()) return Invalid(o, fmt::format("the {} is not JSON: {}", what, v.status().message()));
  if (!v->IsMap()) return Invalid(o, fmt::format("the {} is not a JSON object", what));
  return std::move(*v);
}

Result<JwtHeader> ParseHeader(std::string_view jwt, const VerifyOptions& o) {
  if (jwt.size() > kMaxTokenBytes) return Invalid(o, fmt::format("longer than {} bytes", kMaxTokenBytes));
  auto parts = Split(jwt);
  if (!parts) return Invalid(o, "not a JWT (three dot-separated parts)");
  GANTRY_ASSIGN_OR_RETURN(value::Value header, JsonPart(parts->header, "header", o));
  auto alg = OptString(header, "alg");
  auto kid = OptString(header, "kid");
  if (!alg || alg->empty()) return Invalid(o, "the header has no \"alg\"");
  if (!kid) return Invalid(o, "the header's \"kid\" is not a string");
  if (header.Get("crit") != nullptr) return Invalid(o, "the header has \"crit\" extensions, which Gantry does not know");
  return JwtHeader{std::move(*alg), std::move(*kid)};
}

constexpr std::string_view kSupported[] = {"RS256", "ES256"};

bool Supported(std::string_view alg) { return std::find(std::begin(kSupported), std::end(kSupported), alg) != std::end(kSupported); }

// A NumericDate claim in whole seconds since the epoch; nullopt when absent; an error when it is
// not a number in a sane range (0 .. year 5000).
Result<std::optional<int64_t>> DateClaim(const value::Value& claims, std::string_view name, const VerifyOptions& o) {
  const value::Value* v = claims.Get(name);
  if (v == nullptr) return std::optional<int64_t>();
  double d = v->IsInt() ? static_cast<double>(v->AsInt()) : v->IsDouble() ? v->AsDouble() : -1;
  if (!(d >= 0 && d < 95617584000.0)) return Invalid(o, fmt::format("\"{}\" is not a date (seconds since 1970)", name));
  return std::optional<int64_t>(static_cast<int64_t>(std::floor(d)));
}

std::string When(int64_t seconds) { return Rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(seconds))); }

}  // namespace

Result<KeySet> KeySet::Parse(std::string_view json) {
  auto doc = value::ParseJson(json, "jwks");
  if (!doc.ok()) return InvalidArgumentError("JWKS is not JSON: {}", doc.status().message());
  const value::Value* keys = doc->IsMap() ? doc->Get("keys") : nullptr;
  if (keys == nullptr || !keys->IsSeq()) return InvalidArgumentError("JWKS has no \"keys\" list");
  KeySet set;
  size_t i = 0;
  for (const value::Value& jwk : keys->items()) {
    std::string where = fmt::format("JWKS key {}", i++);
    if (!jwk.IsMap()) return InvalidArgumentError("{} is not an object", where);
    auto kty = OptString(jwk, "kty");
    auto kid = OptString(jwk, "kid");
    auto alg = OptString(jwk, "alg");
    auto use = OptString(jwk, "use");
    auto crv = OptString(jwk, "crv");
    if (!kty || !kid || !alg || !use || !crv) return InvalidArgumentError("{}: kty, kid, alg, use and crv must be strings", where);
    if (!kid->empty()) where += fmt::format(" (kid {})", *kid);
    if (!use->empty() && *use != "sig") continue;  // an encryption key
    JsonWebKey key{.kid = *kid, .kty = *kty, .alg = *alg, .use = *use, .key = nullptr};
    if (*kty == "RSA") {
      GANTRY_ASSIGN_OR_RETURN(key.key, RsaKey(jwk, where));
    } else if (*kty == "EC" && *crv == "P-256") {
      GANTRY_ASSIGN_OR_RETURN(key.key, P256Key(jwk, where));
    } else {
      continue;  // oct, OKP, other curves: nothing Gantry verifies with
    }
    set.keys_.push_back(std::move(key));
  }
  return set;
}

const JsonWebKey* KeySet::Find(std::string_view kid) const {
  for (const auto& k : keys_) {
    if (k.kid == kid) return &k;
  }
  return nullptr;
}

Result<JwtHeader> PeekHeader(std::string_view jwt) { return ParseHeader(jwt, VerifyOptions{.issuer = "the provider"}); }

Result<Identity> VerifyJwt(std::string_view jwt, const KeySet& keys, const VerifyOptions& o,
                           std::chrono::system_clock::time_point now) {
  if (o.issuer.empty() || o.client_id.empty()) return InvalidArgumentError("OIDC verification needs an issuer and a client ID");
  for (const auto& a : o.algorithms) {
    if (!Supported(a)) return InvalidArgumentError("OIDC algorithm {} is not supported (RS256, ES256)", a);
  }
  // 1, 2: shape and header.
  GANTRY_ASSIGN_OR_RETURN(JwtHeader header, ParseHeader(jwt, o));
  if (std::find(o.algorithms.begin(), o.algorithms.end(), header.alg) == o.algorithms.end()) {
    return Invalid(o, fmt::format("algorithm \"{}\" is not allowed", header.alg));
  }
  // 3: key and signature.
  const std::string_view want_kty = header.alg == "RS256" ? "RSA" : "EC";
  const JsonWebKey* key = nullptr;
  if (!header.kid.empty()) {
    key = keys.Find(header.kid);
    if (key == nullptr) return Invalid(o, fmt::format("no key with kid \"{}\" in the provider's JWKS", header.kid));
  } else {
    for (const auto& k : keys.keys()) {
      if (k.kty != want_kty) continue;
      if (key != nullptr) return Invalid(o, "the header has no \"kid\" and the JWKS has several keys of its type");
      key = &k;
    }
    if (key == nullptr) return Invalid(o, fmt::format("the JWKS has no {} key", want_kty));
  }
  if (key->kty != want_kty) return Invalid(o, fmt::format("key \"{}\" is {}, not usable with {}", key->kid, key->kty, header.alg));
  if (!key->alg.empty() && key->alg != header.alg) {
    return Invalid(o, fmt::format("key \"{}\" is for {}, the token says {}", key->kid, key->alg, header.alg));
  }
  auto parts = *Split(jwt);
  auto sig = Base64UrlDecode(parts.signature);
  if (!sig) return Invalid(o, "the signature is not base64url");
  if (header.alg == "ES256") {
    auto der = EcdsaRawToDer(*sig);
    if (!der) return Invalid(o, "an ES256 signature must be 64 bytes");
    sig = std::move(der);
  }
  std::string_view signed_part = jwt.substr(0, parts.header.size() + 1 + parts.claims.size());
  if (!VerifyDigest(key->key.get(), signed_part, *sig)) return Invalid(o, "bad signature");

  // 4: claims.
  GANTRY_ASSIGN_OR_RETURN(value::Value claims, JsonPart(parts.claims, "claims", o));
  auto iss = OptString(claims, "iss");
  if (!iss || *iss != o.issuer) return Invalid(o, fmt::format("issued by \"{}\"", iss ? *iss : "?"));
  const value::Value* aud = claims.Get("aud");
  std::vector<std::string> audiences;
  if (aud != nullptr && aud->IsString()) {
    audiences.emplace_back(aud->AsString());
  } else if (aud != nullptr && aud->IsSeq()) {
    for (const auto& a : aud->items()) {
      if (!a.IsString()) return Invalid(o, "\"aud\" is not a list of strings");
      audiences.emplace_back(a.AsString());
    }
  }
  if (std::find(audiences.begin(), audiences.end(), o.client_id) == audiences.end()) {
    return Invalid(o, fmt::format("not for client \"{}\" (aud: {})", o.client_id, fmt::join(audiences, ", ")));
  }
  auto azp = OptString(claims, "azp");
  if (!azp) return Invalid(o, "\"azp\" is not a string");
  if ((audiences.size() > 1 || !azp->empty()) && *azp != o.client_id) {
    return Invalid(o, fmt::format("authorized party \"{}\" is not client \"{}\"", *azp, o.client_id));
  }
  GANTRY_ASSIGN_OR_RETURN(auto exp, DateClaim(claims, "exp", o));
  GANTRY_ASSIGN_OR_RETURN(auto iat, DateClaim(claims, "iat", o));
  GANTRY_ASSIGN_OR_RETURN(auto nbf, DateClaim(claims, "nbf", o));
  if (!exp) return Invalid(o, "no \"exp\" (tokens without expiry are refused)");
  if (!iat) return Invalid(o, "no \"iat\"");
  const int64_t t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t leeway = o.leeway.count();
  if (t >= *exp + leeway) {
    return UnauthenticatedError("token from {}: expired at {} (now {}, leeway {}s)", o.issuer, When(*exp), When(t), leeway)
        .set_reason(kReasonExpired);
  }
  if (*iat > t + leeway) return Invalid(o, fmt::format("issued in the future ({})", When(*iat)));
  if (nbf && *nbf > t + leeway) return Invalid(o, fmt::format("not valid before {}", When(*nbf)));
  if (*exp <= *iat) return Invalid(o, "expires before it was issued");
  if (*exp - *iat > o.max_lifetime.count()) {
    return Invalid(o, fmt::format("valid for {}s, longer than the {}s allowed", *exp - *iat, o.max_lifetime.count()));
  }
  auto nonce = OptString(claims, "nonce");
  if (!o.nonce.empty() && (!nonce || *nonce != o.nonce)) return Invalid(o, "the nonce is not the one this login sent");

  Identity id;
  id.issuer = *iss;
  auto sub = OptString(claims, "sub");
  if (!sub || sub->empty()) return Invalid(o, "no \"sub\"");
  id.subject = *sub;
  auto email = OptString(claims, "email");
  auto username = OptString(claims, "preferred_username");
  if (!email || !username) return Invalid(o, "\"email\" and \"preferred_username\" must be strings");
  id.email = *email;
  id.name = !username->empty() ? *username : !email->empty() ? *email : *sub;
  if (!o.groups_claim.empty()) {
    if (const value::Value* g = claims.Get(o.groups_claim); g != nullptr) {
      if (g->IsString()) {
        id.groups.emplace_back(g->AsString());
      } else if (g->IsSeq()) {
        for (const auto& x : g->items()) {
          if (!x.IsString()) return Invalid(o, fmt::format("claim \"{}\" is not a list of strings", o.groups_claim));
          id.groups.emplace_back(x.AsString());
        }
      } else {
        return Invalid(o, fmt::format("claim \"{}\" is not a list of strings", o.groups_claim));
      }
    }
  }
  id.expires_at = std::chrono::system_clock::time_point(std::chrono::seconds(*exp));
  return id;
}

std::string RandomUrlSafe(size_t bytes) {
  std::string buf(bytes, '\0');
  // Failing to get randomness is not an environment error a caller could handle.
  GANTRY_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(bytes)) == 1);
  return Base64UrlEncode(buf);
}

std::string PkceChallenge(std::string_view verifier) {
  unsigned char digest[32];
  unsigned int len = 0;
  GANTRY_CHECK(EVP_Digest(verifier.data(), verifier.size(), digest, &len, EVP_sha256(), nullptr) == 1);
  return Base64UrlEncode(std::string_view(reinterpret_cast<char*>(digest), len));
}

}  // namespace gantry::oidc
