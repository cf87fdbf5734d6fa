#pragma once
// policy: verify before apply (docs/supply-chain.md, "Verify before apply"). The engine calls
// ImagePolicy::Check with the objects of a sync (through sync::Options::check_images) after
// rendering and before anything is applied, for push deploys (the server) and pull syncs (the
// agent, against the registry itself) alike.
//
// For each image of the objects (ImagesOf) that a verification rule of the project matches for the
// environment (project::RulesFor), the tag is resolved to a digest once per Check; then the rule
// needs a cosign signature of that digest by one of its keys (VerifyImage, which reads the
// referrers API and the .sig tag), and, when it has `provenance`, an SLSA provenance v1
// attestation of the digest signed by one of its keys whose builder id, source repository and
// branch match the rule (VerifyAttestations). A rule past its notAfter refuses every image it
// matches. What passed is cached by (repository, digest, rule hash), the hash covering the rule and
// the bytes of its keys, so a steady state costs no registry request; refusals are not cached (a
// signature pushed later is found by the next sync).
//
// Pinning: a verified image given by tag is rewritten in the object to "NAME:TAG@DIGEST", the
// digest that was verified, so a tag moved between the check and the kubelet's pull cannot swap
// the image (the kubelet pulls by digest when one is given).
//
// CheckCommit verifies, for rules with commitKeys, the SSH signature of the config commit an
// application is rendered from.
//
// Thread-safe: one ImagePolicy serves every worker of an agent or server.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "git/git.h"
#include "kube/kube.h"
#include "oci/registry.h"
#include "project/project.h"
#include "value/value.h"

namespace gantry::sign {

// One image field of an object.
struct ImageField {
  std::vector<std::string> pod_spec;  // the keys leading to the pod spec: {"spec", "template", "spec"}
  std::string list;                   // "containers", "initContainers" or "ephemeralContainers"
  size_t index = 0;
  std::string image;                  // as written
  // "spec.template.spec.containers[0].image"
  std::string Path() const;
};

// The images of an object: containers, initContainers and ephemeralContainers of the pod specs at
// spec (Pod), spec.template.spec (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
// ReplicationController, and custom resources with a pod template such as Argo Rollouts),
// template.spec (PodTemplate) and spec.jobTemplate.spec.template.spec (CronJob).
std::vector<ImageField> ImagesOf(const value::Value& object);

struct PolicyOptions {
  oci::Registry* registry = nullptr;  // required: the client the images and signatures are read with
  // Reads the Secrets of secretRef keys (the agent's cluster, or a push deploy's destination);
  // nullptr: a rule with a secretRef key refuses, saying there is no cluster to read it from.
  kube::Client* secrets = nullptr;
  bool pin = true;                    // rewrite verified tags to NAME:TAG@DIGEST (see above)
  Clock* clock = nullptr;             // notAfter; nullptr: SystemClock()
  size_t cache_entries = 4096;        // verified (repository, digest, rule) pairs kept; then cleared
};

// The check of one sync's objects, as sync::Options::check_images takes it.
using ImageCheck = std::function<Status(std::span<value::Value* const> objects)>;

class ImagePolicy {
 public:
  explicit ImagePolicy(PolicyOptions options);

  // Checks the images of `objects` against the verification rules of `project` that apply in
  // `environment`, and pins those that passed (options.pin). Images no rule matches are not
  // checked. OK when every matched image passed every rule that matches it. Otherwise an error with
  // reason project::kReasonImageVerification naming, for each refused image (up to 5, then "and N
  // more"), the object's source and kind/namespace/name, the image, the rule and why:
  //   "apps.yaml:3:1: apps/v1 Deployment prod/web: image 127.0.0.1:5000/web:v2 (sha256:…):
  //    verification[0] (project.yaml:9:7) of project prod: no signature: …"
  // PermissionDenied for a refusal (no signature verifies, provenance that does not match, an
  // expired rule, a key that cannot be read or is of the wrong type); the registry's code
  // (Unavailable, NotFound, Unauthenticated…) when the image or its signatures could not be read.
  // `secrets` (when not null) reads secretRef keys instead of options.secrets: a push deploy's
  // destination cluster.
  Status Check(const project::Project& project, std::string_view environment,
               std::span<value::Value* const> objects, kube::Client* secrets = nullptr);

  // Check bound to a copy of `project`, `environment` and `secrets`.
  ImageCheck For(const project::Project& project, std::string environment, kube::Client* secrets = nullptr);

  struct Stats {
    uint64_t verified = 0;    // (image, rule) pairs verified against the registry and passed
    uint64_t cache_hits = 0;  // ... found in the cache
    uint64_t refused = 0;     // ... refused, for any reason (an unreadable image or key, an expired rule too)
  };
  Stats stats() const;

 private:
  struct Keys;
  Status VerifyRule(const oci::Reference& at_digest, const project::VerificationRule& rule, const Keys& keys);
  Result<Keys> LoadKeys(const project::Project& project, const project::VerificationRule& rule,
                        kube::Client* secrets);

  PolicyOptions options_;
  mutable Mutex mu_;
  std::map<std::string, bool> verified_ GUARDED_BY(mu_);  // "repo@digest|rule hash"
  std::atomic<uint64_t> stats_verified_{0}, stats_cache_hits_{0}, stats_refused_{0};
};

// Where a config commit came from, for CheckCommit.
struct CommitSource {
  std::string repository;  // its URL, for messages (without credentials)
  bool git = true;         // false: a Helm or OCI source, which has no commit to check
  std::optional<git::CommitSignature> signature;  // nullopt: the commit is not signed
};

// Checks the config commit an application of `project` is rendered from in `environment` against
// the verification rules with commitKeys (project::CommitRulesFor), before it is rendered: each
// rule needs the commit's SSH signature (namespace "git", as `git commit -S` with gpg.format=ssh
// and gantry server --commit-signing-key write it) to verify with one of its keys. OK when no rule
// applies. PermissionDenied with reason project::kReasonCommitVerification naming the commit,
// the repository, the rule and why: the commit is unsigned, signed by another key (or in another
// namespace, or its signature does not verify: each key's reason), the source is not Git, or the
// rule expired (notAfter).
Status CheckCommit(const project::Project& project, std::string_view environment, std::string_view commit,
                   const CommitSource& source, Clock* clock = nullptr);

// Whether a verified SLSA provenance v1 statement satisfies `rule`: OK, or PermissionDenied saying
// which field differs ("the provenance's builder is https://x/ci, not one of [https://gantry/ci]").
Status CheckProvenance(const value::Value& statement, const project::ProvenanceRule& rule);

}  // namespace gantry::sign
