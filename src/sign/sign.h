#pragma once
// sign: image signatures and attestations in the format cosign uses, so that `cosign verify --key`
// and `cosign verify-attestation --key` accept what Gantry writes and Gantry accepts what
// `cosign sign --key` wrote (docs/supply-chain.md).
//
// Keys (key.cc, OpenSSL): ECDSA P-256 (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY" PEM) and
// Ed25519 (PKCS#8); public keys as PKIX "PUBLIC KEY" PEM, as `cosign generate-key-pair` writes
// cosign.pub. ECDSA signs the SHA-256 of the message (ASN.1 DER signature); Ed25519 signs the
// message itself (pure Ed25519, what `cosign verify --key` checks for an Ed25519 public key).
//
// Signatures (cosign.cc): the payload is the "simple signing" JSON
//   {"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},
//    "type":"cosign container image signature"},"optional":ANNOTATIONS|null}
// stored as the one layer (media type application/vnd.dev.cosign.simplesigning.v1+json, the
// base64 signature in the annotation dev.cosignproject.cosign/signature) of an image manifest
// tagged `sha256-<hex>.sig` in the image's repository. Signing again appends a layer, as cosign
// does. The manifest also carries an OCI 1.1 `subject` naming the image, so that a registry with the
// referrers API lists it under the image; the tag is what every registry serves.
//
// Attestations: an in-toto Statement v1 whose subject is the image digest, with an SLSA
// provenance v1 predicate, in a DSSE envelope (signature over PAE("application/vnd.in-toto+json",
// statement)), stored as a layer (application/vnd.dsse.envelope.v1+json, annotation
// predicateType) of the manifest tagged `sha256-<hex>.att`.
//
// Verification fetches by tag, checks each signature with the key and the signed payload against
// the image digest, and returns the signatures that passed; errors say which check failed.
// Thread-safe: keys are immutable; functions share nothing.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "oci/oci.h"
#include "oci/registry.h"
#include "value/value.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace gantry::sign {

inline constexpr std::string_view kSimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json";
inline constexpr std::string_view kDsseMediaType = "application/vnd.dsse.envelope.v1+json";
inline constexpr std::string_view kSignatureAnnotation = "dev.cosignproject.cosign/signature";
inline constexpr std::string_view kInTotoPayloadType = "application/vnd.in-toto+json";
inline constexpr std::string_view kInTotoStatementV1 = "https://in-toto.io/Statement/v1";
inline constexpr std::string_view kSlsaProvenanceV1 = "https://slsa.dev/provenance/v1";

enum class KeyType { kEcdsaP256, kEd25519 };
std::string_view KeyTypeName(KeyType type);  // "ECDSA P-256", "Ed25519"

// A public key. Copyable; immutable.
class PublicKey {
 public:
  KeyType type() const { return type_; }
  // OK when `signature` is this key's signature of `message`; PermissionDenied "signature does not
  // verify" otherwise (also for a signature that is not even well-formed for the key type).
  Status Verify(std::string_view message, std::string_view signature) const;
  // PKIX "PUBLIC KEY" PEM.
  std::string Pem() const;

 private:
  friend class PrivateKey;
  friend Result<PublicKey> ParsePublicKey(std::string_view pem, std::string_view where);
  PublicKey(std::shared_ptr<evp_pkey_st> key, KeyType type) : key_(std::move(key)), type_(type) {}
  std::shared_ptr<evp_pkey_st> key_;
  KeyType type_;
};

// A private key. Copyable; immutable.
class PrivateKey {
 public:
  KeyType type() const { return type_; }
  // The raw signature of `message` (DER for ECDSA, 64 bytes for Ed25519). Internal on an OpenSSL
  // failure.
  Result<std::string> Sign(std::string_view message) const;
  PublicKey Public() const { return PublicKey(key_, type_); }
  // PKCS#8 "PRIVATE KEY" PEM, unencrypted.
  std::string Pem() const;

 private:
  friend Result<PrivateKey> ParsePrivateKey(std::string_view pem, std::string_view where);
  friend Result<PrivateKey> GenerateKey(KeyType type);
  PrivateKey(std::shared_ptr<evp_pkey_st> key, KeyType type) : key_(std::move(key)), type_(type) {}
  std::shared_ptr<evp_pkey_st> key_;
  KeyType type_;
};

// Parse a PEM key; `where` (a file name) prefixes errors. InvalidArgument for text that is no
// PEM key, for an encrypted key (cosign's own "ENCRYPTED SIGSTORE PRIVATE KEY" included: the
// message says how to make a plain PKCS#8 key instead), and for a key of another type ("RSA key: only ECDSA P-256 and Ed25519 are supported", "ECDSA
// key on curve secp384r1: ...").
Result<PrivateKey> ParsePrivateKey(std::string_view pem, std::string_view where);
Result<PublicKey> ParsePublicKey(std::string_view pem, std::string_view where);
// A fresh key pair.
Result<PrivateKey> GenerateKey(KeyType type);

// --- image signatures ---------------------------------------------------------------------------

// The tags cosign uses for an image digest: "sha256-<hex>.sig" / ".att".
std::string SignatureTag(std::string_view image_digest);
std::string AttestationTag(std::string_view image_digest);

// The simple-signing payload for `image` (its registry/repository) at `digest`, with the
// optional annotations ("optional":null when there are none), as cosign marshals it.
std::string SimpleSigningPayload(const oci::Reference& image, std::string_view digest,
                                 const std::map<std::string, std::string>& annotations = {});

// What was pushed: the signature (or attestation) manifest's digest and the tag it is under.
struct Pushed {
  std::string manifest_digest;
  std::string tag;  // "sha256-<hex>.sig"
};

// The image `image` names (by digest, or by tag: resolved once with HEAD) as a descriptor.
// NotFound when the registry has no such manifest.
Result<oci::Descriptor> ResolveImage(oci::Registry& registry, const oci::Reference& image);

// Signs the image and pushes the signature: the payload blob, a config, and the signature manifest
// under SignatureTag (keeping the signatures already there; the same signature is not added
// twice). Errors carry "sign IMAGE" and the registry's error.
Result<Pushed> SignImage(oci::Registry& registry, const oci::Reference& image, const PrivateKey& key,
                         const std::map<std::string, std::string>& annotations = {});

// A signature that verified.
struct VerifiedSignature {
  std::string image_digest;
  std::string docker_reference;
  std::map<std::string, std::string> annotations;  // the payload's "optional"
};

// Verifies the signatures of `image` against `key`: at least one must verify and sign this digest.
// NotFound "no signatures" when the .sig tag is absent; PermissionDenied naming what failed for
// each signature when none passes ("layer 0: signature does not verify with the ECDSA P-256 key",
// "layer 1: the payload signs sha256:… , not sha256:…"); DataLoss when a blob's bytes differ
// from its digest; InvalidArgument for a malformed payload or manifest.
Result<std::vector<VerifiedSignature>> VerifyImage(oci::Registry& registry, const oci::Reference& image,
                                                   const PublicKey& key);

// --- attestations ------------------------------------------------------------------------------

// DSSE's pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(body)> <body>".
std::string Pae(std::string_view payload_type, std::string_view body);
// A DSSE envelope (JSON) of `payload` signed with `key`.
Result<std::string> SignEnvelope(std::string_view payload_type, std::string_view payload, const PrivateKey& key);
// The payload of a DSSE envelope when one of its signatures verifies with `key` and its type is
// `payload_type`; InvalidArgument for a malformed envelope, PermissionDenied when no signature
// verifies or the type differs.
Result<std::string> OpenEnvelope(std::string_view envelope, std::string_view payload_type, const PublicKey& key);

// What an SLSA provenance v1 predicate records of a Gantry build.
struct Provenance {
  std::string builder_id;        // "https://gantry.example/ci" (the server's URL + "/ci")
  std::string build_type;        // default "https://gantry.dev/ci/pipeline/v1"
  std::string pipeline;          // "web/build"
  std::string source_repository;  // "https://git.example/team/web.git"
  std::string source_commit;     // 40 hex
  std::string source_ref;        // "refs/heads/main" or ""
  std::string run_id;            // the run's id ("" outside CI)
  std::string started_on;        // RFC 3339, or ""
  std::string finished_on;       // RFC 3339, or ""
  // Base images by reference → digest ("docker.io/library/alpine:3.20" → "sha256:…").
  std::map<std::string, std::string> base_images;
  // Other inputs of the build (layers, arguments) by name → value.
  std::map<std::string, std::string> parameters;
};

// An in-toto Statement v1 (JSON) with `image`@`digest` as its subject.
std::string Statement(const oci::Reference& image, std::string_view digest, std::string_view predicate_type,
                      const value::Value& predicate);
// The Statement with `provenance` as an SLSA provenance v1 predicate.
std::string ProvenanceStatement(const oci::Reference& image, std::string_view digest, const Provenance& provenance);

// Signs `statement` (an in-toto Statement with predicateType `predicate_type`) in a DSSE envelope
// and pushes it under AttestationTag, appending to the attestations there.
Result<Pushed> AttestImage(oci::Registry& registry, const oci::Reference& image, std::string_view statement,
                           std::string_view predicate_type, const PrivateKey& key);

// An attestation that verified: the statement (parsed) and its predicate type.
struct VerifiedAttestation {
  std::string predicate_type;
  value::Value statement;
};

// The attestations of `image` whose envelope verifies with `key`, whose statement names the image
// digest as a subject and (unless `predicate_type` is empty) has that predicate type. NotFound when
// there are none at all; PermissionDenied naming, for each attestation, the check it failed
// ("layer 0: the statement's subjects are sha256:…, not the image sha256:…").
Result<std::vector<VerifiedAttestation>> VerifyAttestations(oci::Registry& registry, const oci::Reference& image,
                                                            const PublicKey& key, std::string_view predicate_type);

}  // namespace gantry::sign
