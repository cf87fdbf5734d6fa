// Signatures and attestations stored as cosign stores them (see sign.h): one image manifest per
// image digest and kind, tagged sha256-<hex>.sig / .att, whose layers are the signed payloads.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/ranges.h>

#include "base/base64.h"
#include "sign/referrers.h"
#include "sign/sign.h"

namespace gantry::sign {
namespace {

using value::Value;

constexpr std::string_view kCosignSignatureType = "cosign container image signature";
// Payloads and envelopes are small, but an SBOM's envelope holds a line per file of the image
// (about 300 bytes each, base64: 100,000 files are ~40 MiB); anything larger is refused before it
// is read. cosign's own limit on attachments is 128 MiB.
constexpr uint64_t kMaxPayload = 64u << 20;
// The artifact types of referrers read as signatures / attestations (referrers.h).
constexpr std::string_view kSignatureArtifactTypes[] = {kCosignSignatureArtifactType, oci::media::kOciConfig};
constexpr std::string_view kAttestationArtifactTypes[] = {kCosignAttestationArtifactType, oci::media::kOciConfig};

std::string Hex(std::string_view digest) {
  return std::string(digest.substr(digest.find(':') + 1));
}

std::string DigestTag(std::string_view image_digest, std::string_view suffix) {
  return fmt::format("sha256-{}.{}", Hex(image_digest), suffix);
}

oci::Reference AtTag(oci::Reference ref, std::string tag) {
  ref.tag = std::move(tag);
  ref.digest.clear();
  return ref;
}

std::string RepoName(const oci::Reference& image) { return image.registry + "/" + image.repository; }

// The config cosign's signature images carry (go-containerregistry's empty image with the layers
// appended): nothing reads it, but its diff_ids list the layers.
std::string SignatureConfig(const std::vector<oci::Descriptor>& layers) {
  Value history = Value::Seq();
  Value diff_ids = Value::Seq();
  for (const auto& l : layers) {
    Value h = Value::Map();
    h.Set("created", "0001-01-01T00:00:00Z");
    history.Append(std::move(h));
    diff_ids.Append(l.digest);
  }
  Value rootfs = Value::Map();
  rootfs.Set("type", "layers");
  rootfs.Set("diff_ids", std::move(diff_ids));
  Value v = Value::Map();
  v.Set("architecture", "");
  v.Set("created", "0001-01-01T00:00:00Z");
  v.Set("history", std::move(history));
  v.Set("os", "");
  v.Set("rootfs", std::move(rootfs));
  v.Set("config", Value::Map());
  return value::ToJson(v);
}

// Pushes `layer_bytes` as a layer of the manifest tagged `tag` (created, or extended keeping its
// layers; an identical layer is not added twice) with `subject` as its OCI 1.1 subject.
Result<Pushed> AppendLayer(oci::Registry& registry, const oci::Reference& image, const oci::Descriptor& subject,
                           const std::string& tag, std::string_view layer_bytes, std::string_view media_type,
                           std::map<std::string, std::string> annotations) {
  oci::Reference at = AtTag(image, tag);
  oci::Manifest manifest;
  auto existing = registry.GetManifest(at);
  if (existing.ok()) {
    auto parsed = oci::ParseManifest(existing->bytes, existing->media_type);
    if (!parsed.ok()) return parsed.status().WithContext(fmt::format("the manifest tagged {}", tag));
    manifest = *std::move(parsed);
  } else if (existing.status().code() != Code::kNotFound) {
    return existing.status().WithContext("read " + at.ToString());
  }
  GANTRY_ASSIGN_OR_RETURN(oci::Descriptor layer, oci::PushBlobBytes(registry, image, layer_bytes, media_type));
  layer.annotations = std::move(annotations);
  bool present = false;
  for (const auto& l : manifest.layers) {
    present = present || (l.digest == layer.digest && l.annotations == layer.annotations);
  }
  if (!present) manifest.layers.push_back(layer);
  std::string config = SignatureConfig(manifest.layers);
  GANTRY_ASSIGN_OR_RETURN(manifest.config, oci::PushBlobBytes(registry, image, config, oci::media::kOciConfig));
  manifest.media_type = std::string(oci::media::kOciManifest);
  manifest.subject = oci::Descriptor{subject.media_type, subject.digest, subject.size, {}, {}, {}};
  std::string bytes = oci::SerializeManifest(manifest);
  GANTRY_ASSIGN_OR_RETURN(std::string digest, registry.PutManifest(at, oci::media::kOciManifest, bytes));
  return Pushed{digest, tag};
}

// The layers of `media_type` of the signature manifests of `image` (referrers.h: the referrers API,
// and the manifest tagged `tag`): NotFound `none` when there are none. A layer whose blob cannot be
// read (or a referrer whose manifest is missing) is returned with the error instead of bytes.
struct Layer {
  size_t index;
  oci::Descriptor desc;
  Result<std::string> bytes;
};
Result<std::vector<Layer>> FetchLayers(oci::Registry& registry, const oci::Reference& image,
                                       std::string_view image_digest, const std::string& tag,
                                       std::span<const std::string_view> artifact_types, std::string_view media_type,
                                       std::string_view none) {
  GANTRY_ASSIGN_OR_RETURN(std::vector<SignedManifest> manifests,
                          SignedManifests(registry, image, image_digest, tag, artifact_types, none));
  std::vector<Layer> out;
  for (const SignedManifest& m : manifests) {
    if (!m.manifest.ok()) {
      out.push_back(Layer{out.size(), oci::Descriptor{.digest = m.digest}, m.manifest.status()});
      continue;
    }
    for (const oci::Descriptor& d : m.manifest->layers) {
      if (d.media_type != media_type) continue;
      out.push_back(Layer{out.size(), d, oci::FetchBlobBytes(registry, image, d, kMaxPayload)});
    }
  }
  if (out.empty()) {
    return NotFoundError("{}: {} (no {} layer in the manifest tagged {} or its referrers)", RepoName(image), none,
                         media_type, tag);
  }
  return out;
}

std::string JoinFailures(const std::vector<std::string>& failures) {
  std::string out;
  for (const auto& f : failures) out += (out.empty() ? "" : "; ") + f;
  return out;
}

// Checks one signature layer; the verified signature or why it failed.
Result<VerifiedSignature> CheckSignature(const Layer& layer, std::string_view image_digest, const PublicKey& key) {
  if (!layer.bytes.ok()) return layer.bytes.status();
  auto it = layer.desc.annotations.find(std::string(kSignatureAnnotation));
  if (it == layer.desc.annotations.end()) return InvalidArgumentError("no {} annotation", kSignatureAnnotation);
  auto sig = Base64Decode(it->second);
  if (!sig) return InvalidArgumentError("the {} annotation is not base64", kSignatureAnnotation);
  GANTRY_RETURN_IF_ERROR(key.Verify(*layer.bytes, *sig));
  auto payload = value::ParseJson(*layer.bytes, "payload");
  if (!payload.ok()) return payload.status();
  std::string type = value::StringAt(&*payload, {"critical", "type"});
  if (type != kCosignSignatureType) {
    return InvalidArgumentError("payload critical.type is {:?}, not {:?}", type, kCosignSignatureType);
  }
  std::string signed_digest = value::StringAt(&*payload, {"critical", "image", "docker-manifest-digest"});
  if (signed_digest != image_digest) {
    return PermissionDeniedError("the payload signs {}, not the image {}", signed_digest.empty() ? "no digest" : signed_digest,
                                 image_digest);
  }
  VerifiedSignature v{signed_digest, value::StringAt(&*payload, {"critical", "identity", "docker-reference"}), {}};
  if (const Value* optional = payload->Get("optional"); optional != nullptr && optional->IsMap()) {
    for (const auto& e : optional->entries()) {
      if (e.value.IsString()) v.annotations.emplace(std::string(e.key.AsString()), std::string(e.value.AsString()));
    }
  }
  return v;
}

// Checks one attestation layer; the verified statement or why it failed. NotFound (kept apart by
// the caller) when it verifies but has another predicate type.
Result<VerifiedAttestation> CheckAttestation(const Layer& layer, std::string_view image_digest, const PublicKey& key,
                                             std::string_view predicate_type) {
  if (!layer.bytes.ok()) return layer.bytes.status();
  GANTRY_ASSIGN_OR_RETURN(std::string payload, OpenEnvelope(*layer.bytes, kInTotoPayloadType, key));
  auto statement = value::ParseJson(payload, "statement");
  if (!statement.ok()) return statement.status();
  const Value* subjects = statement->Get("subject");
  std::string hex = Hex(image_digest);
  std::vector<std::string> named;
  bool match = false;
  for (size_t i = 0; subjects != nullptr && subjects->IsSeq() && i < subjects->size(); ++i) {
    std::string d = value::StringAt(subjects->At(i), {"digest", "sha256"});
    if (!d.empty()) named.push_back("sha256:" + d);
    match = match || d == hex;
  }
  if (!match) {
    return PermissionDeniedError("the statement's subjects are [{}], not the image {}", fmt::join(named, ", "), image_digest);
  }
  std::string type = value::StringAt(&*statement, {"predicateType"});
  if (!predicate_type.empty() && type != predicate_type) {
    return NotFoundError("predicate type {}, not {}", type, predicate_type);
  }
  return VerifiedAttestation{type, *std::move(statement)};
}

}  // namespace

std::string SignatureTag(std::string_view image_digest) { return DigestTag(image_digest, "sig"); }
std::string AttestationTag(std::string_view image_digest) { return DigestTag(image_digest, "att"); }

std::string SimpleSigningPayload(const oci::Reference& image, std::string_view digest,
                                 const std::map<std::string, std::string>& annotations) {
  Value identity = Value::Map();
  identity.Set("docker-reference", RepoName(image));
  Value image_v = Value::Map();
  image_v.Set("docker-manifest-digest", digest);
  Value critical = Value::Map();
  critical.Set("identity", std::move(identity));
  critical.Set("image", std::move(image_v));
  critical.Set("type", kCosignSignatureType);
  Value v = Value::Map();
  v.Set("critical", std::move(critical));
  if (annotations.empty()) {
    v.Set("optional", Value());
  } else {
    Value optional = Value::Map();
    for (const auto& [k, val] : annotations) optional.Set(k, val);
    v.Set("optional", std::move(optional));
  }
  return value::ToJson(v);
}

Result<oci::Descriptor> ResolveImage(oci::Registry& registry, const oci::Reference& image) {
  auto head = registry.HeadManifest(image);
  if (!head.ok()) return head.status().WithContext("resolve " + image.ToString());
  if (!*head) return NotFoundError("image {} not found", image.ToString());
  oci::Descriptor d = **head;
  if (!image.digest.empty() && d.digest.empty()) d.digest = image.digest;
  if (!image.digest.empty() && d.digest != image.digest) {
    return DataLossError("image {}: the registry answered with digest {}", image.ToString(), d.digest);
  }
  return d;
}

Result<Pushed> SignImage(oci::Registry& registry, const oci::Reference& image, const PrivateKey& key,
                         const std::map<std::string, std::string>& annotations) {
  std::string what = "sign " + image.ToString();
  auto subject = ResolveImage(registry, image);
  if (!subject.ok()) return subject.status().WithContext(what);
  std::string payload = SimpleSigningPayload(image, subject->digest, annotations);
  auto sig = key.Sign(payload);
  if (!sig.ok()) return sig.status().WithContext(what);
  auto pushed = AppendLayer(registry, image, *subject, SignatureTag(subject->digest), payload, kSimpleSigningMediaType,
                            {{std::string(kSignatureAnnotation), Base64Encode(*sig)}});
  if (!pushed.ok()) return pushed.status().WithContext(what);
  return pushed;
}

Result<std::vector<VerifiedSignature>> VerifyImage(oci::Registry& registry, const oci::Reference& image,
                                                   const PublicKey& key) {
  std::string what = "verify " + image.ToString();
  auto subject = ResolveImage(registry, image);
  if (!subject.ok()) return subject.status().WithContext(what);
  auto layers = FetchLayers(registry, image, subject->digest, SignatureTag(subject->digest), kSignatureArtifactTypes,
                            kSimpleSigningMediaType, "no signatures");
  if (!layers.ok()) return layers.status().WithContext(what);
  std::vector<VerifiedSignature> verified;
  std::vector<std::string> failures;
  for (const Layer& layer : *layers) {
    auto v = CheckSignature(layer, subject->digest, key);
    if (v.ok()) {
      verified.push_back(*std::move(v));
    } else {
      failures.push_back(fmt::format("signature {}: {}", layer.index, v.status().message()));
    }
  }
  if (verified.empty()) {
    return PermissionDeniedError("{}: no signature verifies with the {} key: {}", what, KeyTypeName(key.type()),
                                 JoinFailures(failures));
  }
  return verified;
}

std::string Pae(std::string_view payload_type, std::string_view body) {
  return fmt::format("DSSEv1 {} {} {} {}", payload_type.size(), payload_type, body.size(), body);
}

Result<std::string> SignEnvelope(std::string_view payload_type, std::string_view payload, const PrivateKey& key) {
  GANTRY_ASSIGN_OR_RETURN(std::string sig, key.Sign(Pae(payload_type, payload)));
  Value s = Value::Map();
  s.Set("keyid", "");
  s.Set("sig", Base64Encode(sig));
  Value sigs = Value::Seq();
  sigs.Append(std::move(s));
  Value v = Value::Map();
  v.Set("payloadType", payload_type);
  v.Set("payload", Base64Encode(payload));
  v.Set("signatures", std::move(sigs));
  return value::ToJson(v);
}

Result<std::string> OpenEnvelope(std::string_view envelope, std::string_view payload_type, const PublicKey& key) {
  auto v = value::ParseJson(envelope, "envelope");
  if (!v.ok()) return v.status();
  std::string type = value::StringAt(&*v, {"payloadType"});
  if (type != payload_type) return PermissionDeniedError("envelope payloadType is {:?}, not {:?}", type, payload_type);
  auto payload = Base64Decode(value::StringAt(&*v, {"payload"}));
  if (!payload) return InvalidArgumentError("envelope payload: not base64");
  const Value* sigs = v->Get("signatures");
  if (sigs == nullptr || !sigs->IsSeq() || sigs->size() == 0) return InvalidArgumentError("envelope: no signatures");
  std::string pae = Pae(type, *payload);
  for (size_t i = 0; i < sigs->size(); ++i) {
    auto sig = Base64Decode(value::StringAt(sigs->At(i), {"sig"}));
    if (sig && key.Verify(pae, *sig).ok()) return *payload;
  }
  return PermissionDeniedError("no envelope signature verifies with the {} key", KeyTypeName(key.type()));
}

std::string Statement(const oci::Reference& image, std::string_view digest, std::string_view predicate_type,
                      const Value& predicate) {
  Value subject = Value::Map();
  subject.Set("name", RepoName(image));
  Value sd = Value::Map();
  sd.Set("sha256", Hex(digest));
  subject.Set("digest", std::move(sd));
  Value subjects = Value::Seq();
  subjects.Append(std::move(subject));
  Value v = Value::Map();
  v.Set("_type", kInTotoStatementV1);
  v.Set("subject", std::move(subjects));
  v.Set("predicateType", predicate_type);
  v.Set("predicate", predicate);
  return value::ToJson(v);
}

std::string ProvenanceStatement(const oci::Reference& image, std::string_view digest, const Provenance& p) {
  Value source = Value::Map();
  source.Set("repository", p.source_repository);
  if (!p.source_ref.empty()) source.Set("ref", p.source_ref);
  Value external = Value::Map();
  external.Set("pipeline", p.pipeline);
  external.Set("source", std::move(source));
  if (!p.parameters.empty()) {
    Value params = Value::Map();
    for (const auto& [k, val] : p.parameters) params.Set(k, val);
    external.Set("parameters", std::move(params));
  }
  Value deps = Value::Seq();
  if (!p.source_repository.empty()) {
    Value git = Value::Map();
    git.Set("uri", "git+" + p.source_repository + (p.source_ref.empty() ? "" : "@" + p.source_ref));
    Value gd = Value::Map();
    gd.Set("gitCommit", p.source_commit);
    git.Set("digest", std::move(gd));
    deps.Append(std::move(git));
  }
  for (const auto& [ref, base_digest] : p.base_images) {
    Value base = Value::Map();
    base.Set("uri", "oci://" + ref);
    Value bd = Value::Map();
    bd.Set("sha256", Hex(base_digest));
    base.Set("digest", std::move(bd));
    base.Set("name", "base image");
    deps.Append(std::move(base));
  }
  Value build_definition = Value::Map();
  build_definition.Set("buildType", p.build_type.empty() ? "https://gantry.dev/ci/pipeline/v1" : p.build_type);
  build_definition.Set("externalParameters", std::move(external));
  build_definition.Set("resolvedDependencies", std::move(deps));

  Value builder = Value::Map();
  builder.Set("id", p.builder_id);
  Value metadata = Value::Map();
  if (!p.run_id.empty()) metadata.Set("invocationId", p.run_id);
  if (!p.started_on.empty()) metadata.Set("startedOn", p.started_on);
  if (!p.finished_on.empty()) metadata.Set("finishedOn", p.finished_on);
  Value run_details = Value::Map();
  run_details.Set("builder", std::move(builder));
  run_details.Set("metadata", std::move(metadata));

  Value predicate = Value::Map();
  predicate.Set("buildDefinition", std::move(build_definition));
  predicate.Set("runDetails", std::move(run_details));
  return Statement(image, digest, kSlsaProvenanceV1, predicate);
}

Result<Pushed> AttestImage(oci::Registry& registry, const oci::Reference& image, std::string_view statement,
                           std::string_view predicate_type, const PrivateKey& key) {
  std::string what = "attest " + image.ToString();
  auto subject = ResolveImage(registry, image);
  if (!subject.ok()) return subject.status().WithContext(what);
  auto envelope = SignEnvelope(kInTotoPayloadType, statement, key);
  if (!envelope.ok()) return envelope.status().WithContext(what);
  auto pushed = AppendLayer(registry, image, *subject, AttestationTag(subject->digest), *envelope, kDsseMediaType,
                            {{std::string(kSignatureAnnotation), ""}, {"predicateType", std::string(predicate_type)}});
  if (!pushed.ok()) return pushed.status().WithContext(what);
  return pushed;
}

Result<std::vector<VerifiedAttestation>> VerifyAttestations(oci::Registry& registry, const oci::Reference& image,
                                                            const PublicKey& key, std::string_view predicate_type) {
  std::string what = "verify the attestations of " + image.ToString();
  auto subject = ResolveImage(registry, image);
  if (!subject.ok()) return subject.status().WithContext(what);
  auto layers = FetchLayers(registry, image, subject->digest, AttestationTag(subject->digest),
                            kAttestationArtifactTypes, kDsseMediaType, "no attestations");
  if (!layers.ok()) return layers.status().WithContext(what);
  std::vector<VerifiedAttestation> verified;
  std::vector<std::string> failures;
  bool only_other_types = true;
  for (const Layer& layer : *layers) {
    auto v = CheckAttestation(layer, subject->digest, key, predicate_type);
    if (v.ok()) {
      verified.push_back(*std::move(v));
      continue;
    }
    only_other_types = only_other_types && v.status().code() == Code::kNotFound && layer.bytes.ok();
    failures.push_back(fmt::format("attestation {}: {}", layer.index, v.status().message()));
  }
  if (!verified.empty()) return verified;
  if (only_other_types) return NotFoundError("{}: no {} attestation: {}", what, predicate_type, JoinFailures(failures));
  return PermissionDeniedError("{}: no attestation verifies with the {} key: {}", what, KeyTypeName(key.type()),
                               JoinFailures(failures));
}

}  // namespace gantry::sign
