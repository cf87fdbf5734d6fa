// ImagePolicy: verification rules of Projects checked over the images of a sync (policy.h).

#include "sign/policy.h"

#include <algorithm>

#include <fmt/ranges.h>

#include "base/base64.h"
#include "base/hash.h"
#include "base/path.h"
#include "project/glob.h"
#include "sign/sign.h"
#include "sign/sshsig.h"
#include "value/position.h"

namespace gantry::sign {
namespace {

using value::Value;

// Where pod specs are, as key paths from the object.
const std::vector<std::vector<std::string>> kPodSpecs = {
    {"spec"},
    {"spec", "template", "spec"},
    {"template", "spec"},
    {"spec", "jobTemplate", "spec", "template", "spec"},
};
constexpr std::string_view kContainerLists[] = {"containers", "initContainers", "ephemeralContainers"};

const Value* FindPath(const Value& object, const std::vector<std::string>& keys) {
  const Value* v = &object;
  for (const std::string& k : keys) {
    v = v->IsMap() ? v->Get(k) : nullptr;
    if (v == nullptr) return nullptr;
  }
  return v;
}

// Sets the image of `field` in `object`.
void SetImage(Value& object, const ImageField& field, std::string image) {
  Value* v = &object;
  for (const std::string& k : field.pod_spec) v = v->MutableGet(k);
  v = v->MutableGet(field.list)->MutableAt(field.index);
  v->Set("image", image);
}

bool AnyMatch(const std::vector<std::string>& globs, std::string_view text) {
  return std::any_of(globs.begin(), globs.end(), [&](const std::string& g) { return project::GlobMatch(g, text); });
}

// `field` of the provenance against `globs` (empty: anything).
Status Want(std::string_view field, const std::string& got, const std::vector<std::string>& globs,
            const std::vector<std::string>& alternatives = {}) {
  if (globs.empty()) return OkStatus();
  if (got.empty()) return PermissionDeniedError("the provenance names no {}", field);
  if (AnyMatch(globs, got)) return OkStatus();
  for (const std::string& a : alternatives) {
    if (AnyMatch(globs, a)) return OkStatus();
  }
  return PermissionDeniedError("the provenance's {} is {}, not one of [{}]", field, got, fmt::join(globs, ", "));
}

}  // namespace

std::string ImageField::Path() const {
  return fmt::format("{}.{}[{}].image", fmt::join(pod_spec, "."), list, index);
}

std::vector<ImageField> ImagesOf(const Value& object) {
  std::vector<ImageField> out;
  for (const auto& keys : kPodSpecs) {
    const Value* spec = FindPath(object, keys);
    if (spec == nullptr || !spec->IsMap()) continue;
    for (std::string_view list : kContainerLists) {
      const Value* containers = spec->Get(list);
      if (containers == nullptr || !containers->IsSeq()) continue;
      for (size_t i = 0; i < containers->size(); ++i) {
        const Value* image = containers->At(i)->IsMap() ? containers->At(i)->Get("image") : nullptr;
        if (image == nullptr || !image->IsString()) continue;
        out.push_back(ImageField{keys, std::string(list), i, std::string(image->AsString())});
      }
    }
  }
  return out;
}

Status CheckProvenance(const Value& statement, const project::ProvenanceRule& rule) {
  const Value* predicate = statement.Get("predicate");
  std::string builder = value::StringAt(predicate, {"runDetails", "builder", "id"});
  std::string repo = value::StringAt(predicate, {"buildDefinition", "externalParameters", "source", "repository"});
  std::string ref = value::StringAt(predicate, {"buildDefinition", "externalParameters", "source", "ref"});
  // Other builders record the source only as a git+URL[@REF] dependency.
  const Value* deps = predicate ? predicate->Find({"buildDefinition", "resolvedDependencies"}) : nullptr;
  for (size_t i = 0; deps != nullptr && deps->IsSeq() && i < deps->size() && repo.empty(); ++i) {
    std::string uri = value::StringAt(deps->At(i), {"uri"});
    if (!uri.starts_with("git+")) continue;
    uri = uri.substr(4);
    if (size_t at = uri.rfind('@'); at != std::string::npos && at > uri.find("://") + 3) {
      if (ref.empty()) ref = uri.substr(at + 1);
      uri.resize(at);
    }
    repo = uri;
  }
  std::string branch = ref.starts_with("refs/heads/") ? ref.substr(11) : ref.starts_with("refs/") ? "" : ref;
  GANTRY_RETURN_IF_ERROR(Want("builder id", builder, rule.builder_ids));
  std::string bare = repo.ends_with(".git") ? repo.substr(0, repo.size() - 4) : repo;
  GANTRY_RETURN_IF_ERROR(Want("source repository", repo, rule.source_repositories, {bare, bare + ".git"}));
  if (!rule.branches.empty() && branch.empty() && !ref.empty()) {
    return PermissionDeniedError("the provenance's ref {} is not a branch", ref);
  }
  return Want("branch", branch, rule.branches);
}

struct ImagePolicy::Keys {
  std::vector<std::pair<std::string, PublicKey>> keys;  // description, key
  std::string hash;                                     // of the rule and the keys' bytes
};

ImagePolicy::ImagePolicy(PolicyOptions options) : options_(std::move(options)) {}

ImagePolicy::Stats ImagePolicy::stats() const {
  return Stats{stats_verified_.load(), stats_cache_hits_.load(), stats_refused_.load()};
}

Result<ImagePolicy::Keys> ImagePolicy::LoadKeys(const project::Project& project, const project::VerificationRule& rule,
                                                kube::Client* secrets) {
  Keys out;
  std::string material = fmt::format("{}|{}|{}|", project.name, rule.index, fmt::join(rule.images, ","));
  if (rule.provenance) {
    material += fmt::format("{}|{}|{}|", fmt::join(rule.provenance->builder_ids, ","),
                            fmt::join(rule.provenance->source_repositories, ","),
                            fmt::join(rule.provenance->branches, ","));
  }
  for (const project::KeySource& source : rule.keys) {
    std::string what = "key " + source.Describe();
    std::string pem = source.pem;
    if (!source.file.empty()) {
      auto text = ReadFile(source.file, 64 << 10);
      if (!text.ok()) return PermissionDeniedError("{}: {}", what, text.status().message());
      pem = *std::move(text);
    } else if (!source.secret_name.empty()) {
      if (secrets == nullptr) {
        return PermissionDeniedError("{}: no cluster to read Secrets from here (give the key as file or pem)", what);
      }
      auto secret = secrets->Get({"v1", "Secret", source.secret_namespace, source.secret_name});
      if (!secret.ok()) return PermissionDeniedError("{}: {}", what, secret.status().message());
      std::string data = value::StringAt(&*secret, {"data", std::string_view(source.secret_key)});
      auto decoded = Base64Decode(data);
      if (data.empty() || !decoded) {
        return PermissionDeniedError("{}: the Secret has no key {:?} (or it is not base64)", what, source.secret_key);
      }
      pem = *std::move(decoded);
    }
    auto key = ParsePublicKey(pem, what);
    if (!key.ok()) return PermissionDeniedError("{}", key.status().message());
    material += key->Pem();
    out.keys.emplace_back(source.Describe(), *std::move(key));
  }
  out.hash = Sha256Hex(material);
  return out;
}

Status ImagePolicy::VerifyRule(const oci::Reference& at_digest, const project::VerificationRule& rule,
                               const Keys& keys) {
  std::vector<std::string> failures;
  bool signed_ok = false;
  for (const auto& [name, key] : keys.keys) {
    auto v = VerifyImage(*options_.registry, at_digest, key);
    if (v.ok()) {
      signed_ok = true;
      break;
    }
    // The registry could not be read: that is no refusal, and no other key would do better.
    if (v.status().code() != Code::kPermissionDenied && v.status().code() != Code::kNotFound) return v.status();
    failures.push_back(fmt::format("key {}: {}", name, v.status().message()));
    if (v.status().code() == Code::kNotFound) break;  // no signatures at all: the same for every key
  }
  if (!signed_ok) {
    return PermissionDeniedError("no signature verifies with its keys: {}", fmt::join(failures, "; "));
  }
  if (!rule.provenance) return OkStatus();
  failures.clear();
  for (const auto& [name, key] : keys.keys) {
    auto attestations = VerifyAttestations(*options_.registry, at_digest, key, kSlsaProvenanceV1);
    if (!attestations.ok()) {
      if (attestations.status().code() != Code::kPermissionDenied && attestations.status().code() != Code::kNotFound) {
        return attestations.status();
      }
      failures.push_back(fmt::format("key {}: {}", name, attestations.status().message()));
      continue;
    }
    for (const VerifiedAttestation& a : *attestations) {
      Status s = CheckProvenance(a.statement, *rule.provenance);
      if (s.ok()) return OkStatus();
      failures.push_back(fmt::format("key {}: {}", name, s.message()));
    }
  }
  return PermissionDeniedError("no SLSA provenance satisfies it: {}", fmt::join(failures, "; "));
}

Status ImagePolicy::Check(const project::Project& project, std::string_view environment,
                          std::span<Value* const> objects, kube::Client* secrets) {
  if (project.verification.empty()) return OkStatus();
  if (secrets == nullptr) secrets = options_.secrets;
  const auto now = (options_.clock ? *options_.clock : SystemClock()).WallNow();
  std::map<const project::VerificationRule*, Result<Keys>> keys;  // loaded once per Check
  std::map<std::string, Result<std::string>> digests;             // image → digest, once per Check
  std::map<std::string, Status> outcomes;                         // cache key → this Check's verdict
  std::vector<Status> refusals;
  for (Value* object : objects) {
    kube::ObjectRef ref = kube::RefOf(*object);
    std::string what = fmt::format("{}{} {}{}", value::PositionPrefix(*object), ref.api_version + " " + ref.kind,
                                   ref.namespace_.empty() ? "" : ref.namespace_ + "/", ref.name);
    for (const ImageField& field : ImagesOf(*object)) {
      std::string digest;  // once resolved
      auto refuse = [&](const Status& why, std::string_view rule) {
        ++stats_refused_;
        refusals.push_back(Status(why.code(), fmt::format("{}: image {}{}: {}{}", what, field.image,
                                                          digest.empty() ? "" : " (" + digest + ")", rule,
                                                          why.message())));
      };
      auto parsed = oci::ParseReference(field.image);
      if (!parsed.ok()) {
        // Which rules match is unknown: refused when any rule applies in this environment.
        bool applies = std::any_of(project.verification.begin(), project.verification.end(), [&](const auto& r) {
          return !r.images.empty() && (r.environments.empty() || AnyMatch(r.environments, environment));
        });
        if (applies) refuse(parsed.status(), "");
        continue;
      }
      std::vector<const project::VerificationRule*> rules =
          project::RulesFor(project, environment, parsed->registry + "/" + parsed->repository);
      if (rules.empty()) continue;
      auto [it, inserted] = digests.try_emplace(field.image, "");
      if (inserted) {
        auto d = ResolveImage(*options_.registry, *parsed);
        it->second = d.ok() ? Result<std::string>(d->digest) : Result<std::string>(d.status());
      }
      if (!it->second.ok()) {
        refuse(it->second.status(), "");
        continue;
      }
      digest = *it->second;
      oci::Reference at = *parsed;
      at.tag.clear();
      at.digest = digest;
      bool passed = true;
      for (const project::VerificationRule* rule : rules) {
        std::string rule_name = fmt::format("{} of project {}: ", rule->Name(), project.name);
        if (rule->not_after && now > *rule->not_after) {
          refuse(PermissionDeniedError("the rule expired at {} (notAfter): it refuses every image it matches "
                                       "until it is renewed", Rfc3339(*rule->not_after)),
                 rule_name);
          passed = false;
          continue;
        }
        auto [k, loaded] = keys.try_emplace(rule, Keys{});
        if (loaded) k->second = LoadKeys(project, *rule, secrets);
        if (!k->second.ok()) {
          refuse(k->second.status(), rule_name);
          passed = false;
          continue;
        }
        std::string cache_key = fmt::format("{}/{}@{}|{}", at.registry, at.repository, at.digest, k->second->hash);
        {
          MutexLock lock(mu_);
          if (verified_.count(cache_key)) {
            ++stats_cache_hits_;
            continue;
          }
        }
        auto [o, first] = outcomes.try_emplace(cache_key);
        if (first) o->second = VerifyRule(at, *rule, *k->second);
        const Status& s = o->second;
        if (!s.ok()) {
          refuse(s, rule_name);
          passed = false;
          continue;
        }
        if (!first) continue;
        ++stats_verified_;
        MutexLock lock(mu_);
        if (verified_.size() >= options_.cache_entries) verified_.clear();
        verified_[cache_key] = true;
      }
      if (passed && options_.pin && parsed->digest.empty()) {
        SetImage(*object, field, field.image + "@" + at.digest);
      }
    }
  }
  if (refusals.empty()) return OkStatus();
  std::string message;
  for (size_t i = 0; i < refusals.size() && i < 5; ++i) message += (i ? "; " : "") + refusals[i].message();
  if (refusals.size() > 5) message += fmt::format("; and {} more images are refused", refusals.size() - 5);
  return Status(refusals.front().code(), message).set_reason(project::kReasonImageVerification);
}

ImageCheck ImagePolicy::For(const project::Project& project, std::string environment, kube::Client* secrets) {
  return [this, project, environment = std::move(environment), secrets](std::span<Value* const> objects) {
    return Check(project, environment, objects, secrets);
  };
}

Status CheckCommit(const project::Project& project, std::string_view environment, std::string_view commit,
                   const CommitSource& source, Clock* clock) {
  std::vector<const project::VerificationRule*> rules = project::CommitRulesFor(project, environment);
  if (rules.empty()) return OkStatus();
  const auto now = (clock ? *clock : SystemClock()).WallNow();
  auto refuse = [&](const project::VerificationRule& rule, std::string_view why) {
    return PermissionDeniedError("config commit {} of {}: {} of project {}: {}", commit.substr(0, 12), source.repository,
                                 rule.Name(), project.name, why)
        .set_reason(project::kReasonCommitVerification);
  };
  for (const project::VerificationRule* rule : rules) {
    if (rule->not_after && now > *rule->not_after) {
      return refuse(*rule, fmt::format("the rule expired at {} (notAfter): it refuses every commit until it is renewed",
                                       Rfc3339(*rule->not_after)));
    }
    if (!source.git) {
      return refuse(*rule, "the source is not a Git repository, so there is no commit signature to check (commitKeys "
                           "apply to Git sources)");
    }
    if (!source.signature) {
      return refuse(*rule, fmt::format("the commit is not signed; it needs an SSH signature by one of the rule's {} "
                                       "commitKeys", rule->commit_keys.size()));
    }
    std::vector<std::string> failures;
    bool verified = false;
    for (size_t i = 0; i < rule->commit_keys.size() && !verified; ++i) {
      Status s = VerifySshSignature(source.signature->signature, source.signature->signed_data, "git",
                                    rule->commit_keys[i]);
      verified = s.ok();
      if (!s.ok()) failures.push_back(fmt::format("commitKeys[{}]: {}", i, s.message()));
    }
    if (!verified) {
      return refuse(*rule, fmt::format("no signature verifies with its commitKeys: {}", fmt::join(failures, "; ")));
    }
  }
  return OkStatus();
}

}  // namespace gantry::sign
