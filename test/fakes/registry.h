#pragma once
// fakes::FakeRegistry: an in-memory oci::Registry for unit tests of code that pushes or pulls images
// (the release pipeline), so they run without a registry server and can count pushes.
//
// What it models: blobs per repository (StatBlob, PushBlob from a file, FetchBlob with the digest
// checked as the real client does, MountBlob within the registry), manifests per repository under
// tags and digests (PutManifest stores the bytes under both; GetManifest / HeadManifest by tag or
// digest), ListTags sorted. What it does NOT model: authentication, chunked or resumable uploads,
// redirects, pagination, media-type negotiation, garbage collection.
//
// Counting and failures: manifest_puts() counts PutManifest calls (a push that found the tag at the
// same digest makes none); FailNextPut(status) makes the next PutManifest fail with `status`.
//
// Referrers (OCI 1.1): off by default, as in docker-registry 2.8 (Referrers answers NotFound).
// ServeReferrers(true) answers as a registry with the API does: an index of the stored manifests
// whose `subject` is the digest (artifactType: the manifest's, else its config's media type),
// filtered by artifactType, plus what AddReferrer listed by hand (e.g. a manifest that is not
// there). DeleteBlob / DeleteManifest remove what a test wants missing.
//
// Thread-safe.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "oci/oci.h"
#include "oci/registry.h"
#include "value/value.h"

namespace gantry::fakes {

class FakeRegistry final : public oci::Registry {
 public:
  Result<std::optional<oci::Descriptor>> StatBlob(const oci::Reference& repo, std::string_view digest) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    auto it = blobs_.find(Key(repo, digest));
    if (it == blobs_.end()) return std::optional<oci::Descriptor>();
    return std::optional<oci::Descriptor>(
        oci::Descriptor{.digest = std::string(digest), .size = static_cast<int64_t>(it->second.size())});
  }

  Result<bool> MountBlob(const oci::Reference& repo, std::string_view digest,
                         std::string_view from_repository) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    oci::Reference from = repo;
    from.repository = std::string(from_repository);
    auto it = blobs_.find(Key(from, digest));
    if (it == blobs_.end()) return false;
    blobs_[Key(repo, digest)] = it->second;
    ++stats_.blobs_mounted;
    return true;
  }

  Status PushBlob(const oci::Reference& repo, const oci::Descriptor& desc, const std::filesystem::path& path) override {
    std::ifstream in(path, std::ios::binary);
    if (!in) return NotFoundError("push blob {}: cannot read {}", desc.digest, path.string());
    std::ostringstream bytes;
    bytes << in.rdbuf();
    std::string data = bytes.str();
    if (oci::Sha256Digest(data) != desc.digest) return DataLossError("push blob {}: the file's digest differs", desc.digest);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.bytes_uploaded += data.size();
    blobs_[Key(repo, desc.digest)] = std::move(data);
    return OkStatus();
  }

  Status FetchBlob(const oci::Reference& repo, const oci::Descriptor& desc, oci::BlobWriter& writer) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.requests;
      auto it = blobs_.find(Key(repo, desc.digest));
      if (it == blobs_.end()) return NotFoundError("blob {} not found in {}", desc.digest, repo.repository);
      data = it->second;
    }
    if (oci::Sha256Digest(data) != desc.digest) return DataLossError("blob {}: digest mismatch", desc.digest);
    return writer.Write(data);
  }

  Result<oci::RawManifest> GetManifest(const oci::Reference& ref) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    auto it = manifests_.find(Key(ref, ref.Identifier()));
    if (it == manifests_.end()) return NotFoundError("manifest {} not found", ref.ToString());
    return it->second;
  }

  Result<std::optional<oci::Descriptor>> HeadManifest(const oci::Reference& ref) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    auto it = manifests_.find(Key(ref, ref.Identifier()));
    if (it == manifests_.end()) return std::optional<oci::Descriptor>();
    return std::optional<oci::Descriptor>(oci::Descriptor{.media_type = it->second.media_type,
                                                          .digest = it->second.digest,
                                                          .size = static_cast<int64_t>(it->second.bytes.size())});
  }

  Result<std::string> PutManifest(const oci::Reference& ref, std::string_view media_type, std::string_view bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    ++manifest_puts_;
    if (!fail_next_put_.ok()) {
      Status s = std::move(fail_next_put_);
      fail_next_put_ = OkStatus();
      return s;
    }
    oci::RawManifest m{.media_type = std::string(media_type), .digest = oci::Sha256Digest(bytes), .bytes = std::string(bytes)};
    manifests_[Key(ref, m.digest)] = m;
    if (!ref.tag.empty() && ref.digest.empty()) {
      manifests_[Key(ref, ref.tag)] = m;
      tags_[ref.registry + "/" + ref.repository].insert(ref.tag);
    }
    return m.digest;
  }

  Result<oci::RawManifest> Referrers(const oci::Reference& repo, std::string_view digest,
                                     std::string_view artifact_type) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    if (!serve_referrers_) return NotFoundError("HTTP 404: 404 page not found");
    std::string prefix = repo.registry + "/" + repo.repository + "@sha256:";
    value::Value list = value::Value::Seq();
    auto add = [&](const oci::Descriptor& d, std::string_view type) {
      if (!artifact_type.empty() && type != artifact_type) return;
      value::Value e = value::Value::Map();
      e.Set("mediaType", d.media_type);
      e.Set("digest", d.digest);
      e.Set("size", d.size);
      e.Set("artifactType", type);
      list.Append(std::move(e));
    };
    for (const auto& [key, m] : manifests_) {
      if (!key.starts_with(prefix)) continue;
      auto parsed = oci::ParseManifest(m.bytes, m.media_type);
      if (!parsed.ok() || !parsed->subject || parsed->subject->digest != digest) continue;
      add({.media_type = m.media_type, .digest = m.digest, .size = static_cast<int64_t>(m.bytes.size())},
          parsed->artifact_type.empty() ? parsed->config.media_type : parsed->artifact_type);
    }
    for (const auto& [subject, d, type] : extra_referrers_) {
      if (subject == digest) add(d, type);
    }
    value::Value index = value::Value::Map();
    index.Set("schemaVersion", int64_t{2});
    index.Set("mediaType", oci::media::kOciIndex);
    index.Set("manifests", std::move(list));
    std::string bytes = value::ToJson(index);
    return oci::RawManifest{.media_type = std::string(oci::media::kOciIndex), .digest = oci::Sha256Digest(bytes),
                            .bytes = bytes};
  }

  Result<std::vector<std::string>> ListTags(const oci::Reference& repo, int) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    auto it = tags_.find(repo.registry + "/" + repo.repository);
    if (it == tags_.end()) return std::vector<std::string>();
    return std::vector<std::string>(it->second.begin(), it->second.end());
  }

  oci::RegistryStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  // The digest `reference` ("registry/repo:tag") points to; "" when none.
  std::string DigestOf(const std::string& reference) const {
    auto ref = oci::ParseReference(reference);
    if (!ref.ok()) return "";
    std::lock_guard<std::mutex> lock(mu_);
    auto it = manifests_.find(Key(*ref, ref->Identifier()));
    return it == manifests_.end() ? "" : it->second.digest;
  }
  int manifest_puts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return manifest_puts_;
  }
  void ServeReferrers(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    serve_referrers_ = on;
  }
  // Lists `d` (of `artifact_type`) among the referrers of `subject_digest`, whether or not it exists.
  void AddReferrer(std::string subject_digest, oci::Descriptor d, std::string artifact_type) {
    std::lock_guard<std::mutex> lock(mu_);
    extra_referrers_.emplace_back(std::move(subject_digest), std::move(d), std::move(artifact_type));
  }
  void DeleteBlob(const oci::Reference& repo, std::string_view digest) {
    std::lock_guard<std::mutex> lock(mu_);
    blobs_.erase(Key(repo, digest));
  }
  // Removes the manifest under the name `ref` gives (its tag, or its digest), not its other name.
  void DeleteManifest(const oci::Reference& ref) {
    std::lock_guard<std::mutex> lock(mu_);
    manifests_.erase(Key(ref, ref.Identifier()));
  }
  void FailNextPut(Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_put_ = std::move(status);
  }

 private:
  static std::string Key(const oci::Reference& repo, std::string_view id) {
    return repo.registry + "/" + repo.repository + "@" + std::string(id);
  }

  mutable std::mutex mu_;
  std::map<std::string, std::string> blobs_;               // GUARDED_BY(mu_)
  std::map<std::string, oci::RawManifest> manifests_;      // GUARDED_BY(mu_): by tag and by digest
  std::map<std::string, std::set<std::string>> tags_;      // GUARDED_BY(mu_)
  oci::RegistryStats stats_;                               // GUARDED_BY(mu_)
  int manifest_puts_ = 0;                                  // GUARDED_BY(mu_)
  Status fail_next_put_;                                   // GUARDED_BY(mu_)
  bool serve_referrers_ = false;                           // GUARDED_BY(mu_)
  std::vector<std::tuple<std::string, oci::Descriptor, std::string>> extra_referrers_;  // GUARDED_BY(mu_)
};

}  // namespace gantry::fakes
