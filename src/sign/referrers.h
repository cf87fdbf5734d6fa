#pragma once
// Where an image's signatures and attestations are found (docs/supply-chain.md, "Referrers API"):
// the manifests the registry's referrers API (OCI distribution 1.1, GET
// /v2/<repo>/referrers/<digest>) lists under the image's digest, with an artifact type of
// signatures (or attestations), and the manifest under cosign's tag ("sha256-<hex>.sig" / ".att").
// Both are read: cosign's default tag mode writes no `subject`, so its signatures are only under
// the tag even on a registry with the API; Gantry writes both (the tag, and a subject the API lists).
// A registry without the API (docker-registry 2.8 answers 404; others 400, 405 or a redirect) is
// read by tag alone: falling back can only find fewer signatures, never accept more.
//
// The registry's artifactType filter takes one type and may be ignored, so the index is filtered
// here: cosign's OCI 1.1 types, and the image-config type that Gantry's and cosign's tag-schema
// manifests report (their artifactType is their config's media type).
// Thread-safe: functions of their arguments.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "oci/oci.h"
#include "oci/registry.h"

namespace gantry::sign {

inline constexpr std::string_view kCosignSignatureArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json";
inline constexpr std::string_view kCosignAttestationArtifactType = "application/vnd.dev.cosign.artifact.att.v1+json";

// One entry of a referrers index.
struct Referrer {
  std::string digest;
  std::string artifact_type;
};

// The entries of a referrers index (an OCI image index whose entries carry artifactType) whose
// artifact type is one of `artifact_types`. InvalidArgument for JSON that is no index or an entry
// without a valid digest.
Result<std::vector<Referrer>> ParseReferrers(std::string_view index_json,
                                             std::span<const std::string_view> artifact_types);

// A manifest that may hold signatures; `manifest` is the error when it could not be read (a
// referrer whose manifest is missing: NotFound naming its digest).
struct SignedManifest {
  std::string digest;    // "" for the tag's manifest when the registry did not say
  std::string found_by;  // "referrer sha256:…" or "tag sha256-….sig"
  Result<oci::Manifest> manifest;
};

// The referrers of `image` at `subject_digest` of one of `artifact_types`, then the manifest
// tagged `tag` unless the referrers listed it already. NotFound "NONE (no referrers and no tag
// TAG)" when there is neither (naming the referrers API's error, if it failed otherwise than
// with 404); the errors of reading the tag other than NotFound as they are.
Result<std::vector<SignedManifest>> SignedManifests(oci::Registry& registry, const oci::Reference& image,
                                                    std::string_view subject_digest, const std::string& tag,
                                                    std::span<const std::string_view> artifact_types,
                                                    std::string_view none);

}  // namespace gantry::sign
