// Manifests, indexes, descriptors and digests: parsing with errors that name the field, and
// deterministic serialisation (fields in the order of the OCI image spec, compact JSON).

#include <string>
#include <string_view>

#include "base/hash.h"
#include "oci/oci.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

using value::Value;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Field(std::string_view prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : fmt::format("{}.{}", prefix, name);
}

Result<std::string> GetString(const Value& obj, std::string_view prefix, std::string_view key,
                              bool required) {
  const Value* v = obj.Get(key);
  if (v == nullptr || v->IsNull()) {
    if (required) return InvalidArgumentError("{}: missing", Field(prefix, key));
    return std::string();
  }
  if (!v->IsString()) {
    return InvalidArgumentError("{}: is {}, expected a string", Field(prefix, key), value::TypeName(*v));
  }
  return std::string(v->AsString());
}

Result<std::map<std::string, std::string>> GetStringMap(const Value& obj, std::string_view prefix,
                                                        std::string_view key) {
  std::map<std::string, std::string> out;
  const Value* v = obj.Get(key);
  if (v == nullptr || v->IsNull()) return out;
  if (!v->IsMap()) {
    return InvalidArgumentError("{}: is {}, expected a map", Field(prefix, key), value::TypeName(*v));
  }
  for (const auto& e : v->entries()) {
    if (!e.value.IsString()) {
      return InvalidArgumentError("{}.{}: is {}, expected a string", Field(prefix, key),
                                  e.key.AsString(), value::TypeName(e.value));
    }
    out.emplace(std::string(e.key.AsString()), std::string(e.value.AsString()));
  }
  return out;
}

Result<Descriptor> ParseDescriptor(const Value& v, const std::string& where) {
  if (!v.IsMap()) return InvalidArgumentError("{}: is {}, expected a map", where, value::TypeName(v));
  Descriptor d;
  auto media_type = GetString(v, where, "mediaType", true);
  if (!media_type.ok()) return media_type.status();
  d.media_type = *std::move(media_type);
  auto digest = GetString(v, where, "digest", true);
  if (!digest.ok()) return digest.status();
  if (Status s = ValidateDigest(*digest); !s.ok()) return s.WithContext(where + ".digest");
  d.digest = *std::move(digest);
  const Value* size = v.Get("size");
  if (size == nullptr) return InvalidArgumentError("{}.size: missing", where);
  if (!size->IsInt() || size->AsInt() < 0) {
    return InvalidArgumentError("{}.size: expected a non-negative integer", where);
  }
  d.size = size->AsInt();
  auto annotations = GetStringMap(v, where, "annotations");
  if (!annotations.ok()) return annotations.status();
  d.annotations = *std::move(annotations);
  if (const Value* urls = v.Get("urls"); urls != nullptr && !urls->IsNull()) {
    if (!urls->IsSeq()) return InvalidArgumentError("{}.urls: expected a list", where);
    for (size_t i = 0; i < urls->size(); ++i) {
      if (!urls->At(i)->IsString()) return InvalidArgumentError("{}.urls[{}]: expected a string", where, i);
      d.urls.emplace_back(urls->At(i)->AsString());
    }
  }
  if (const Value* p = v.Get("platform"); p != nullptr && !p->IsNull()) {
    std::string pw = where + ".platform";
    if (!p->IsMap()) return InvalidArgumentError("{}: expected a map", pw);
    Platform platform;
    auto os = GetString(*p, pw, "os", true);
    if (!os.ok()) return os.status();
    auto arch = GetString(*p, pw, "architecture", true);
    if (!arch.ok()) return arch.status();
    auto variant = GetString(*p, pw, "variant", false);
    if (!variant.ok()) return variant.status();
    d.platform = Platform{*std::move(os), *std::move(arch), *std::move(variant)};
  }
  return d;
}

// Parses the JSON text, checks schemaVersion 2 and settles the media type: the Content-Type when
// given, else the document's mediaType; they must agree when both are there.
Result<Value> ParseDocument(std::string_view json, std::string_view content_type, std::string& media_type,
                            std::string_view what) {
  auto doc = value::ParseJson(json, what);
  if (!doc.ok()) return doc.status();
  if (!doc->IsMap()) return InvalidArgumentError("{}: is {}, expected a JSON object", what, value::TypeName(*doc));
  const Value* version = doc->Get("schemaVersion");
  if (version == nullptr) return InvalidArgumentError("schemaVersion: missing");
  if (!version->IsInt() || version->AsInt() != 2) return InvalidArgumentError("schemaVersion: must be 2");
  auto field = GetString(*doc, "", "mediaType", false);
  if (!field.ok()) return field.status();
  if (!content_type.empty() && !field->empty() && *field != content_type) {
    return InvalidArgumentError("mediaType: {:?} differs from the content type {:?}", *field, content_type);
  }
  media_type = content_type.empty() ? *field : std::string(content_type);
  return doc;
}

Value DescriptorValue(const Descriptor& d) {
  Value v = Value::Map();
  v.Set("mediaType", d.media_type);
  v.Set("digest", d.digest);
  v.Set("size", Value(static_cast<int64_t>(d.size)));
  if (!d.urls.empty()) {
    Value urls = Value::Seq();
    for (const auto& u : d.urls) urls.Append(u);
    v.Set("urls", std::move(urls));
  }
  if (!d.annotations.empty()) {
    Value a = Value::Map();
    for (const auto& [k, val] : d.annotations) a.Set(k, val);
    v.Set("annotations", std::move(a));
  }
  if (d.platform) {
    Value p = Value::Map();
    p.Set("architecture", d.platform->architecture);
    p.Set("os", d.platform->os);
    if (!d.platform->variant.empty()) p.Set("variant", d.platform->variant);
    v.Set("platform", std::move(p));
  }
  return v;
}

Value AnnotationsValue(const std::map<std::string, std::string>& annotations) {
  Value a = Value::Map();
  for (const auto& [k, v] : annotations) a.Set(k, v);
  return a;
}

}  // namespace

bool IsManifestType(std::string_view media_type) {
  return media_type == media::kOciManifest || media_type == media::kDockerManifest;
}

bool IsIndexType(std::string_view media_type) {
  return media_type == media::kOciIndex || media_type == media::kDockerManifestList;
}

std::string Sha256Digest(std::string_view bytes) { return "sha256:" + Sha256Hex(bytes); }

Status ValidateDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos) {
    return InvalidArgumentError("digest {:?}: expected algorithm:hex", digest);
  }
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view hex = digest.substr(colon + 1);
  if (algorithm != "sha256") {
    return InvalidArgumentError("digest {:?}: algorithm {:?} is not supported (only sha256)", digest, algorithm);
  }
  if (hex.size() != 64 || !IsLowerHex(hex)) {
    return InvalidArgumentError("digest {:?}: not a sha256 digest (64 lower-case hex digits)", digest);
  }
  return OkStatus();
}

Result<Manifest> ParseManifest(std::string_view json, std::string_view media_type) {
  Manifest m;
  auto doc = ParseDocument(json, media_type, m.media_type, "manifest");
  if (!doc.ok()) return doc.status();
  if (m.media_type.empty()) {
    // OCI 1.0 made mediaType optional; a document with a config is an OCI image manifest.
    if (doc->Get("manifests") != nullptr) return InvalidArgumentError("mediaType: missing, and the document is an index");
    m.media_type = std::string(media::kOciManifest);
  }
  if (!IsManifestType(m.media_type)) {
    return InvalidArgumentError("mediaType: {:?} is not an image manifest type", m.media_type);
  }
  auto artifact_type = GetString(*doc, "", "artifactType", false);
  if (!artifact_type.ok()) return artifact_type.status();
  m.artifact_type = *std::move(artifact_type);
  const Value* config = doc->Get("config");
  if (config == nullptr) return InvalidArgumentError("config: missing");
  auto cd = ParseDescriptor(*config, "config");
  if (!cd.ok()) return cd.status();
  m.config = *std::move(cd);
  const Value* layers = doc->Get("layers");
  if (layers == nullptr) return InvalidArgumentError("layers: missing");
  if (!layers->IsSeq()) return InvalidArgumentError("layers: is {}, expected a list", value::TypeName(*layers));
  for (size_t i = 0; i < layers->size(); ++i) {
    auto d = ParseDescriptor(*layers->At(i), fmt::format("layers[{}]", i));
    if (!d.ok()) return d.status();
    m.layers.push_back(*std::move(d));
  }
  if (const Value* subject = doc->Get("subject"); subject != nullptr && !subject->IsNull()) {
    auto d = ParseDescriptor(*subject, "subject");
    if (!d.ok()) return d.status();
    m.subject = *std::move(d);
  }
  auto annotations = GetStringMap(*doc, "", "annotations");
  if (!annotations.ok()) return annotations.status();
  m.annotations = *std::move(annotations);
  return m;
}

Result<Index> ParseIndex(std::string_view json, std::string_view media_type) {
  Index index;
  auto doc = ParseDocument(json, media_type, index.media_type, "index");
  if (!doc.ok()) return doc.status();
  if (index.media_type.empty()) {
    if (doc->Get("config") != nullptr) return InvalidArgumentError("mediaType: missing, and the document is a manifest");
    index.media_type = std::string(media::kOciIndex);
  }
  if (!IsIndexType(index.media_type)) {
    return InvalidArgumentError("mediaType: {:?} is not an index type", index.media_type);
  }
  const Value* manifests = doc->Get("manifests");
  if (manifests == nullptr) return InvalidArgumentError("manifests: missing");
  if (!manifests->IsSeq()) {
    return InvalidArgumentError("manifests: is {}, expected a list", value::TypeName(*manifests));
  }
  for (size_t i = 0; i < manifests->size(); ++i) {
    auto d = ParseDescriptor(*manifests->At(i), fmt::format("manifests[{}]", i));
    if (!d.ok()) return d.status();
    index.manifests.push_back(*std::move(d));
  }
  auto annotations = GetStringMap(*doc, "", "annotations");
  if (!annotations.ok()) return annotations.status();
  index.annotations = *std::move(annotations);
  return index;
}

std::string SerializeManifest(const Manifest& manifest) {
  Value v = Value::Map();
  v.Set("schemaVersion", 2);
  v.Set("mediaType", manifest.media_type);
  if (!manifest.artifact_type.empty()) v.Set("artifactType", manifest.artifact_type);
  v.Set("config", DescriptorValue(manifest.config));
  Value layers = Value::Seq();
  for (const auto& l : manifest.layers) layers.Append(DescriptorValue(l));
  v.Set("layers", std::move(layers));
  if (manifest.subject) v.Set("subject", DescriptorValue(*manifest.subject));
  if (!manifest.annotations.empty()) v.Set("annotations", AnnotationsValue(manifest.annotations));
  return value::ToJson(v);
}

std::string SerializeIndex(const Index& index) {
  Value v = Value::Map();
  v.Set("schemaVersion", 2);
  v.Set("mediaType", index.media_type);
  Value manifests = Value::Seq();
  for (const auto& m : index.manifests) manifests.Append(DescriptorValue(m));
  v.Set("manifests", std::move(manifests));
  if (!index.annotations.empty()) v.Set("annotations", AnnotationsValue(index.annotations));
  return value::ToJson(v);
}

}  // namespace gantry::oci
