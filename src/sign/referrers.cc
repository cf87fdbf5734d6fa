// Signature manifests by the referrers API and by cosign's tag (referrers.h).

#include "sign/referrers.h"

#include <algorithm>

#include "value/value.h"

namespace gantry::sign {

Result<std::vector<Referrer>> ParseReferrers(std::string_view index_json,
                                             std::span<const std::string_view> artifact_types) {
  GANTRY_ASSIGN_OR_RETURN(value::Value index, value::ParseJson(index_json, "referrers index"));
  const value::Value* manifests = index.IsMap() ? index.Get("manifests") : nullptr;
  if (manifests == nullptr || !manifests->IsSeq()) {
    return InvalidArgumentError("referrers index: no manifests list");
  }
  std::vector<Referrer> out;
  for (size_t i = 0; i < manifests->size(); ++i) {
    Referrer r{value::StringAt(manifests->At(i), {"digest"}), value::StringAt(manifests->At(i), {"artifactType"})};
    if (Status s = oci::ValidateDigest(r.digest); !s.ok()) {
      return InvalidArgumentError("referrers index: manifests[{}].digest: {}", i, s.message());
    }
    if (std::find(artifact_types.begin(), artifact_types.end(), r.artifact_type) == artifact_types.end()) continue;
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<SignedManifest>> SignedManifests(oci::Registry& registry, const oci::Reference& image,
                                                    std::string_view subject_digest, const std::string& tag,
                                                    std::span<const std::string_view> artifact_types,
                                                    std::string_view none) {
  std::string repo = image.registry + "/" + image.repository;
  std::vector<SignedManifest> out;
  auto index = registry.Referrers(image, subject_digest, "");
  if (index.ok()) {
    auto referrers = ParseReferrers(index->bytes, artifact_types);
    if (!referrers.ok()) return referrers.status().WithContext(fmt::format("{}@{}", repo, subject_digest));
    for (const Referrer& r : *referrers) {
      oci::Reference at = image;
      at.tag.clear();
      at.digest = r.digest;
      SignedManifest m{r.digest, "referrer " + r.digest, NotFoundError("unread")};
      auto raw = registry.GetManifest(at);
      if (!raw.ok() && raw.status().code() == Code::kNotFound) {
        m.manifest = NotFoundError("the registry's referrers API lists {}, but its manifest is missing from {}",
                                   r.digest, repo);
      } else if (!raw.ok()) {
        m.manifest = raw.status();
      } else {
        m.manifest = oci::ParseManifest(raw->bytes, raw->media_type);
        if (!m.manifest.ok()) m.manifest = m.manifest.status().WithContext("referrer " + r.digest);
      }
      out.push_back(std::move(m));
    }
  }
  // A registry without the API answers 404; others answer 400, 405 or a redirect to a web page.
  // Reading the tag instead is safe whatever the error: it can only find fewer signatures.
  std::string referrers_error =
      index.ok() || index.status().code() == Code::kNotFound ? "" : "; the referrers API failed: " + index.status().message();
  oci::Reference at = image;
  at.tag = tag;
  at.digest.clear();
  auto raw = registry.GetManifest(at);
  if (raw.ok()) {
    bool listed = std::any_of(out.begin(), out.end(), [&](const SignedManifest& m) { return m.digest == raw->digest; });
    if (!listed) {
      auto parsed = oci::ParseManifest(raw->bytes, raw->media_type);
      if (!parsed.ok()) return parsed.status().WithContext("the manifest tagged " + tag);
      out.push_back(SignedManifest{raw->digest, "tag " + tag, *std::move(parsed)});
    }
  } else if (raw.status().code() != Code::kNotFound) {
    return raw.status().WithContext("read " + at.ToString());
  }
  if (out.empty()) {
    return NotFoundError("{}: {} ({}no tag {}{})", repo, none, index.ok() ? "no referrers and " : "", tag,
                         referrers_error);
  }
  return out;
}

}  // namespace gantry::sign
