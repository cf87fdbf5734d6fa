// Verification before apply (policy.h) and the referrers API (referrers.h) against the in-memory
// registry (test/fakes/registry.h), which serves the referrers API only when told to, as registries
// with OCI 1.1 do (docker-registry 2.8, the real one of the integration tests, has none). The real
// agent, server and registry are in test/integration/agent_test.cc and deploy_server_test.cc.

#include "sign/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/clock.h"
#include "sign/referrers.h"
#include "sign/sign.h"
#include "sign/sshsig.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/registry.h"

namespace gantry::sign {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using value::Value;

Value Yaml(std::string_view text, std::string_view file = "apps.yaml") {
  auto docs = value::ParseYaml(text, file);
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

std::string Deployment(const std::string& image, const std::string& init_image = "") {
  std::string init = init_image.empty() ? "" : fmt::format("\n      initContainers: [{{name: init, image: \"{}\"}}]", init_image);
  return fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: prod}}
spec:
  template:
    spec:
      containers: [{{name: app, image: "{}"}}]{}
)", image, init);
}

TEST(ImagesOfTest, FindsEveryContainerOfEveryPodTemplate) {
  auto images = [](std::string_view yaml) {
    std::vector<std::string> out;
    for (const ImageField& f : ImagesOf(Yaml(yaml))) out.push_back(f.Path() + "=" + f.image);
    return out;
  };
  EXPECT_THAT(images(Deployment("a", "b")),
              ::testing::ElementsAre("spec.template.spec.containers[0].image=a",
                                     "spec.template.spec.initContainers[0].image=b"));
  EXPECT_THAT(images("kind: Pod\nspec: {containers: [{image: a}, {name: x}], ephemeralContainers: [{image: e}]}\n"),
              ::testing::ElementsAre("spec.containers[0].image=a", "spec.ephemeralContainers[0].image=e"));
  EXPECT_THAT(images("kind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{image: c}]}}}}}\n"),
              ::testing::ElementsAre("spec.jobTemplate.spec.template.spec.containers[0].image=c"));
  EXPECT_THAT(images("kind: PodTemplate\ntemplate: {spec: {containers: [{image: t}]}}\n"),
              ::testing::ElementsAre("template.spec.containers[0].image=t"));
  EXPECT_TRUE(images("kind: ConfigMap\ndata: {image: x}\n").empty());
}

TEST(ReferrersTest, ParsesAnIndexAndFiltersArtifactTypes) {
  std::string d1 = "sha256:" + std::string(64, '1'), d2 = "sha256:" + std::string(64, '2');
  std::string index = fmt::format(
      R"({{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
      R"({{"digest":"{}","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}},)"
      R"({{"digest":"{}","artifactType":"application/spdx+json"}}]}})",
      d1, d2);
  constexpr std::string_view types[] = {kCosignSignatureArtifactType};
  auto r = ParseReferrers(index, types);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].digest, d1);
  auto bad = ParseReferrers(R"({"manifests":[{"digest":"md5:x"}]})", types);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("manifests[0].digest"));
  EXPECT_FALSE(ParseReferrers("[]", types).ok());
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.Advance(std::chrono::seconds(1'800'000'000));
    image_ = *oci::ParseReference("registry.test/team/web:v1");
    digest_ = PushImage(image_, "1");
    other_ = image_;
    other_.tag = "v2";
    other_digest_ = PushImage(other_, "2");
  }

  std::string PushImage(const oci::Reference& ref, const std::string& mark) {
    auto config = oci::PushBlobBytes(registry_, ref, "{}", oci::media::kOciConfig);
    EXPECT_TRUE(config.ok());
    oci::Manifest m{.media_type = std::string(oci::media::kOciManifest), .config = *config};
    m.annotations["mark"] = mark;
    return *registry_.PutManifest(ref, oci::media::kOciManifest, oci::SerializeManifest(m));
  }

  // A project "prod" with one rule for prod over registry.test/team/*, trusting `key`.
  project::Project Project(const PrivateKey& key, bool provenance = false) {
    project::Project p = project::DefaultProject();
    p.name = "prod";
    project::VerificationRule rule;
    rule.environments = {"prod"};
    rule.images = {"registry.test/team/*"};
    rule.keys = {project::KeySource{.pem = key.Public().Pem()}};
    rule.source = "project.yaml:9:5";
    if (provenance) {
      rule.provenance = project::ProvenanceRule{.builder_ids = {"https://gantry.test/ci"},
                                                .source_repositories = {"https://git.test/team/*"},
                                                .branches = {"main"}};
    }
    p.verification.push_back(rule);
    return p;
  }

  // Checks one Deployment running `image`; the object as it would be applied.
  Status Check(const project::Project& p, const std::string& image, Value* out = nullptr,
               std::string_view env = "prod") {
    Value obj = Yaml(Deployment(image));
    Value* objects[] = {&obj};
    Status s = policy_.Check(p, env, objects);
    if (out != nullptr) *out = obj;
    return s;
  }

  void Attest(const oci::Reference& image, const std::string& digest, const std::string& ref,
              const PrivateKey& key) {
    Provenance prov{.builder_id = "https://gantry.test/ci", .source_repository = "https://git.test/team/web.git",
                    .source_commit = std::string(40, 'a'), .source_ref = ref};
    ASSERT_TRUE(AttestImage(registry_, image, ProvenanceStatement(image, digest, prov), kSlsaProvenanceV1, key).ok());
  }

  fakes::FakeRegistry registry_;
  FakeClock clock_;  // SetUp: 2027-01-15T08:00:00Z
  ImagePolicy policy_{PolicyOptions{.registry = &registry_, .clock = &clock_}};
  oci::Reference image_, other_;
  std::string digest_, other_digest_;
  PrivateKey key_ = *GenerateKey(KeyType::kEcdsaP256);
};

TEST_F(PolicyTest, ASignedImagePassesIsPinnedAndCached) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  Value applied;
  Status s = Check(Project(key_), "registry.test/team/web:v1", &applied);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(value::StringAt(&applied, {"spec", "template", "spec", "containers", 0, "image"}),
            "registry.test/team/web:v1@" + digest_);
  EXPECT_EQ(policy_.stats().verified, 1u);
  // The next sync resolves the tag (one request) and verifies nothing again.
  uint64_t before = registry_.Stats().requests;
  ASSERT_TRUE(Check(Project(key_), "registry.test/team/web:v1").ok());
  EXPECT_EQ(registry_.Stats().requests - before, 1u);
  EXPECT_EQ(policy_.stats().cache_hits, 1u);
  // An image given by digest is not rewritten.
  Value by_digest;
  ASSERT_TRUE(Check(Project(key_), "registry.test/team/web@" + digest_, &by_digest).ok());
  EXPECT_EQ(value::StringAt(&by_digest, {"spec", "template", "spec", "containers", 0, "image"}),
            "registry.test/team/web@" + digest_);
}

TEST_F(PolicyTest, AnImagePushedByHandIsRefusedNamingTheObjectImageAndRule) {
  Status s = Check(Project(key_), "registry.test/team/web:v2");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.reason(), project::kReasonImageVerification);
  EXPECT_THAT(s.message(), HasSubstr("apps.yaml:1:1: apps/v1 Deployment prod/web: image registry.test/team/web:v2 (" +
                                     other_digest_ + "): verification[0] (project.yaml:9:5) of project prod: "
                                     "no signature verifies with its keys"));
  EXPECT_THAT(s.message(), HasSubstr("no signatures (no tag sha256-"));
  EXPECT_EQ(policy_.stats().refused, 1u);
}

TEST_F(PolicyTest, ImagesNoRuleMatchesAndOtherEnvironmentsAreNotChecked) {
  uint64_t before = registry_.Stats().requests;
  Value applied;
  ASSERT_TRUE(Check(Project(key_), "docker.io/library/nginx:1.27", &applied).ok());
  ASSERT_TRUE(Check(Project(key_), "registry.test/team/web:v2", nullptr, "dev").ok());
  EXPECT_EQ(registry_.Stats().requests, before);
  EXPECT_EQ(value::StringAt(&applied, {"spec", "template", "spec", "containers", 0, "image"}),
            "docker.io/library/nginx:1.27");
}

TEST_F(PolicyTest, EveryRefusedImageIsNamed) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  Value obj = Yaml(Deployment("registry.test/team/web:v1", "registry.test/team/web:v2"));
  Value* objects[] = {&obj};
  Status s = policy_.Check(Project(key_), "prod", objects);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("image registry.test/team/web:v2"));
  EXPECT_THAT(s.message(), Not(HasSubstr("image registry.test/team/web:v1 ")));
}

TEST_F(PolicyTest, TamperedSignatureIsRefused) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  oci::Reference tag = image_;
  tag.tag = SignatureTag(digest_);
  auto m = *oci::ParseManifest(registry_.GetManifest(tag)->bytes);
  auto sig = *Base64Decode(m.layers[0].annotations[std::string(kSignatureAnnotation)]);
  sig[sig.size() / 2] ^= 1;
  m.layers[0].annotations[std::string(kSignatureAnnotation)] = Base64Encode(sig);
  ASSERT_TRUE(registry_.PutManifest(tag, oci::media::kOciManifest, oci::SerializeManifest(m)).ok());
  Status s = Check(Project(key_), "registry.test/team/web:v1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("signature 0: signature does not verify with the ECDSA P-256 key"));
}

TEST_F(PolicyTest, SignatureForAnotherDigestIsRefused) {
  ASSERT_TRUE(SignImage(registry_, other_, key_).ok());
  oci::Reference from = image_, to = image_;
  from.tag = SignatureTag(other_digest_);
  to.tag = SignatureTag(digest_);
  auto raw = registry_.GetManifest(from);
  ASSERT_TRUE(registry_.PutManifest(to, raw->media_type, raw->bytes).ok());
  Status s = Check(Project(key_), "registry.test/team/web:v1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("the payload signs " + other_digest_ + ", not the image " + digest_));
}

TEST_F(PolicyTest, AnotherKeyOrAKeyOfTheWrongTypeIsRefused) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  PrivateKey ed = *GenerateKey(KeyType::kEd25519);
  Status other = Check(Project(ed), "registry.test/team/web:v1");
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.message(), HasSubstr("signature does not verify with the Ed25519 key"));
  // A private key where the rule wants a public key: refused before anything is fetched.
  project::Project p = Project(key_);
  p.verification[0].keys[0].pem = key_.Pem();
  Status priv = Check(p, "registry.test/team/web:v1");
  ASSERT_FALSE(priv.ok());
  EXPECT_EQ(priv.code(), Code::kPermissionDenied);
  EXPECT_THAT(priv.message(), HasSubstr("of project prod: key inline key: a private key where a public key"));
}

TEST_F(PolicyTest, AnExpiredRuleRefusesEverything) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  project::Project p = Project(key_);
  p.verification[0].not_after = clock_.WallNow() - std::chrono::hours(1);
  Status s = Check(p, "registry.test/team/web:v1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("the rule expired at 2027-01-15T07:00:00Z (notAfter)"));
  p.verification[0].not_after = clock_.WallNow() + std::chrono::hours(1);
  EXPECT_TRUE(Check(p, "registry.test/team/web:v1").ok());
}

TEST_F(PolicyTest, ProvenanceMustComeFromTheRulesBuilderRepositoryAndBranch) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  Status none = Check(Project(key_, true), "registry.test/team/web:v1");
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.message(), HasSubstr("no SLSA provenance satisfies it"));
  EXPECT_THAT(none.message(), HasSubstr("no attestations"));

  Attest(image_, digest_, "refs/heads/feature", key_);
  Status branch = Check(Project(key_, true), "registry.test/team/web:v1");
  ASSERT_FALSE(branch.ok());
  EXPECT_THAT(branch.message(), HasSubstr("the provenance's branch is feature, not one of [main]"));

  Attest(image_, digest_, "refs/heads/main", key_);
  Status ok = Check(Project(key_, true), "registry.test/team/web:v1");
  EXPECT_TRUE(ok.ok()) << ok.ToString();
}

TEST_F(PolicyTest, AnAttestationForAnotherSubjectIsRefused) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  Provenance prov{.builder_id = "https://gantry.test/ci", .source_repository = "https://git.test/team/web",
                  .source_ref = "refs/heads/main"};
  ASSERT_TRUE(AttestImage(registry_, image_, ProvenanceStatement(other_, other_digest_, prov), kSlsaProvenanceV1, key_)
                  .ok());
  Status s = Check(Project(key_, true), "registry.test/team/web:v1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("the statement's subjects are [" + other_digest_ + "], not the image " + digest_));
}

TEST_F(PolicyTest, KeysAreReadFromSecrets) {
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  fakes::FakeKubeClient kube;
  ASSERT_TRUE(kube.Apply(Yaml(fmt::format("apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: gantry}}\n"
                                          "data: {{release.pub: {}}}\n",
                                          Base64Encode(key_.Public().Pem()))))
                  .ok());
  project::Project p = Project(key_);
  p.verification[0].keys[0] = project::KeySource{.secret_namespace = "gantry", .secret_name = "keys",
                                                 .secret_key = "release.pub"};
  Value obj = Yaml(Deployment("registry.test/team/web:v1"));
  Value* objects[] = {&obj};
  Status no_cluster = policy_.Check(p, "prod", objects);
  ASSERT_FALSE(no_cluster.ok());
  EXPECT_THAT(no_cluster.message(), HasSubstr("key secret gantry/keys key release.pub: no cluster to read Secrets"));
  Status ok = policy_.Check(p, "prod", objects, &kube);
  EXPECT_TRUE(ok.ok()) << ok.ToString();
  p.verification[0].keys[0].secret_key = "other.pub";
  Status missing = policy_.Check(p, "prod", objects, &kube);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.message(), HasSubstr("the Secret has no key \"other.pub\""));
}

// --- the referrers API ------------------------------------------------------------------------

TEST_F(PolicyTest, SignaturesAreReadThroughTheReferrersApi) {
  registry_.ServeReferrers(true);
  ASSERT_TRUE(SignImage(registry_, image_, key_).ok());
  // Only the referrers API knows the signature now (as for cosign's OCI 1.1 mode).
  oci::Reference tag = image_;
  tag.tag = SignatureTag(digest_);
  registry_.DeleteManifest(tag);
  auto v = VerifyImage(registry_, image_, key_.Public());
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(Check(Project(key_), "registry.test/team/web:v1").ok());
  // Without the API, the same registry has nothing to show.
  registry_.ServeReferrers(false);
  auto gone = VerifyImage(registry_, image_, key_.Public());
  ASSERT_FALSE(gone.ok());
  EXPECT_THAT(gone.status().message(), HasSubstr("no signatures (no tag sha256-"));
}

TEST_F(PolicyTest, ATagSignatureWithoutSubjectIsFoundBesideTheReferrers) {
  // cosign's default tag mode writes no subject: the API does not list it, the tag does.
  registry_.ServeReferrers(true);
  auto pushed = SignImage(registry_, image_, key_);
  ASSERT_TRUE(pushed.ok());
  oci::Reference tag = image_;
  tag.tag = SignatureTag(digest_);
  auto m = *oci::ParseManifest(registry_.GetManifest(tag)->bytes);
  m.subject.reset();
  ASSERT_TRUE(registry_.PutManifest(tag, oci::media::kOciManifest, oci::SerializeManifest(m)).ok());
  oci::Reference with_subject = image_;
  with_subject.digest = pushed->manifest_digest;
  registry_.DeleteManifest(with_subject);
  auto index = registry_.Referrers(image_, digest_, "");
  ASSERT_TRUE(index.ok());
  EXPECT_THAT(index->bytes, Not(HasSubstr("sha256:")));  // the API lists nothing
  auto v = VerifyImage(registry_, image_, key_.Public());
  ASSERT_TRUE(v.ok()) << v.status().ToString();
}

TEST_F(PolicyTest, AReferrerWhoseManifestOrBlobIsMissingIsNamed) {
  registry_.ServeReferrers(true);
  std::string ghost = "sha256:" + std::string(64, 'f');
  registry_.AddReferrer(digest_, {.media_type = std::string(oci::media::kOciManifest), .digest = ghost, .size = 10},
                        std::string(kCosignSignatureArtifactType));
  Status s = Check(Project(key_), "registry.test/team/web:v1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("the registry's referrers API lists " + ghost + ", but its manifest is missing"));

  // A listed signature manifest whose payload blob is gone.
  ASSERT_TRUE(SignImage(registry_, other_, key_).ok());
  oci::Reference tag = other_;
  tag.tag = SignatureTag(other_digest_);
  auto m = *oci::ParseManifest(registry_.GetManifest(tag)->bytes);
  registry_.DeleteBlob(other_, m.layers[0].digest);
  Status blob = Check(Project(key_), "registry.test/team/web:v2");
  ASSERT_FALSE(blob.ok());
  EXPECT_THAT(blob.message(), HasSubstr("blob " + m.layers[0].digest));
}

// Config commits (CheckCommit): signed by a key of the rule passes; unsigned, signed by another
// key, tampered, not from Git or past notAfter is refused naming the commit and the rule.
TEST(CheckCommitTest, OnlyCommitsSignedByARuleKeyPass) {
  auto key = SshSigner::Parse(GenerateKey(KeyType::kEd25519)->Pem(), "commit-key");
  auto other = SshSigner::Parse(GenerateKey(KeyType::kEd25519)->Pem(), "other-key");
  ASSERT_TRUE(key.ok() && other.ok());
  project::Project p = project::DefaultProject();
  p.name = "prod";
  project::VerificationRule rule;
  rule.environments = {"prod"};
  rule.commit_keys = {other->PublicKeyLine("old"), key->PublicKeyLine("release")};
  rule.source = "project.yaml:12:5";
  p.verification.push_back(rule);
  const std::string commit = std::string(40, 'c');
  const std::string text = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\n\nrelease\n";
  auto signed_by = [&](const SshSigner& signer, std::string data) {
    return CommitSource{.repository = "https://git.test/config.git",
                        .signature = git::CommitSignature{*signer.Sign(text, "git"), std::move(data)}};
  };
  FakeClock clock;
  clock.Advance(std::chrono::seconds(1'800'000'000));

  EXPECT_TRUE(CheckCommit(p, "prod", commit, signed_by(*key, text), &clock).ok());
  EXPECT_TRUE(CheckCommit(p, "dev", commit, CommitSource{.repository = "x"}, &clock).ok()) << "no rule for dev";

  Status s = CheckCommit(p, "prod", commit, CommitSource{.repository = "https://git.test/config.git"}, &clock);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.reason(), project::kReasonCommitVerification);
  EXPECT_EQ(s.message(), "config commit cccccccccccc of https://git.test/config.git: verification[0] "
                         "(project.yaml:12:5) of project prod: the commit is not signed; it needs an SSH signature "
                         "by one of the rule's 2 commitKeys");
  auto unknown = SshSigner::Parse(GenerateKey(KeyType::kEd25519)->Pem(), "unknown");
  s = CheckCommit(p, "prod", commit, signed_by(*unknown, text), &clock);
  EXPECT_THAT(s.message(), HasSubstr("no signature verifies with its commitKeys: commitKeys[0]: signed by another key"));
  EXPECT_THAT(s.message(), HasSubstr("; commitKeys[1]: signed by another key"));
  s = CheckCommit(p, "prod", commit, signed_by(*key, text + "tampered\n"), &clock);
  EXPECT_THAT(s.message(), HasSubstr("commitKeys[1]: "));
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  s = CheckCommit(p, "prod", commit, CommitSource{.repository = "oci://registry.test/config", .git = false}, &clock);
  EXPECT_THAT(s.message(), HasSubstr("the source is not a Git repository"));
  p.verification[0].not_after = clock.WallNow() - std::chrono::hours(1);
  s = CheckCommit(p, "prod", commit, signed_by(*key, text), &clock);
  EXPECT_THAT(s.message(), HasSubstr("the rule expired at 2027-01-15T07:00:00Z (notAfter)"));
}

}  // namespace
}  // namespace gantry::sign
