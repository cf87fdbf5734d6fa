// Keys, signatures and attestations against the in-memory registry (test/fakes/registry.h); the
// interoperability with the real cosign and docker-registry is test/integration/sign_test.cc.

#include "sign/sign.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base/base64.h"
#include "test/fakes/registry.h"

namespace gantry::sign {
namespace {

using ::testing::HasSubstr;

// An ECDSA P-256 key as `openssl ecparam -name prime256v1 -genkey` writes it (SEC1), and its
// public key as cosign writes cosign.pub.
constexpr std::string_view kSec1Key = R"(-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJeRzs6KsTy4F+uykAtIF4kjs6ArEdjhwDANAPuIVQFooAoGCCqGSM49
AwEHoUQDQgAEvRc0lJDboQAt1qdAa1ngCRC/JQwsAPBYlvc0GR9gmlCVFVBTJTtG
opEMqqong+WYc+ISI0S7HUZq9qsRiB0PmQ==
-----END EC PRIVATE KEY-----
)";

// PEM text written by `write` into a memory BIO (for keys of types Gantry refuses).
std::string Pem(EVP_PKEY* key, bool is_public) {
  BIO* bio = BIO_new(BIO_s_mem());
  int ok = is_public ? PEM_write_bio_PUBKEY(bio, key)
                     : PEM_write_bio_PKCS8PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  EXPECT_EQ(ok, 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return out;
}

class SignTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = *oci::ParseReference("registry.test/team/web:v1");
    // An image: config + one layer + manifest, tagged v1.
    auto config = oci::PushBlobBytes(registry_, image_, "{}", oci::media::kOciConfig);
    ASSERT_TRUE(config.ok());
    oci::Manifest m;
    m.media_type = std::string(oci::media::kOciManifest);
    m.config = *config;
    auto put = registry_.PutManifest(image_, oci::media::kOciManifest, oci::SerializeManifest(m));
    ASSERT_TRUE(put.ok());
    digest_ = *put;
    other_ = image_;
    m.annotations["v"] = "2";
    other_.tag = "v2";
    auto put2 = registry_.PutManifest(other_, oci::media::kOciManifest, oci::SerializeManifest(m));
    ASSERT_TRUE(put2.ok());
    other_digest_ = *put2;
  }

  // The signature manifest of digest_, parsed.
  oci::Manifest SigManifest(const std::string& tag) {
    auto raw = registry_.GetManifest(ByTag(tag));
    EXPECT_TRUE(raw.ok()) << raw.status().ToString();
    auto m = oci::ParseManifest(raw->bytes, raw->media_type);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return *m;
  }
  oci::Reference ByTag(const std::string& tag) {
    oci::Reference r = image_;
    r.tag = tag;
    return r;
  }
  // Replaces the signature manifest with `m` (what an attacker with push rights could do).
  void PutSig(const std::string& tag, const oci::Manifest& m) {
    ASSERT_TRUE(registry_.PutManifest(ByTag(tag), oci::media::kOciManifest, oci::SerializeManifest(m)).ok());
  }

  fakes::FakeRegistry registry_;
  oci::Reference image_, other_;
  std::string digest_, other_digest_;
  PrivateKey ecdsa_ = *GenerateKey(KeyType::kEcdsaP256);
  PrivateKey ed25519_ = *GenerateKey(KeyType::kEd25519);
};

TEST(KeyTest, PemRoundTripsAndSignaturesVerify) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEd25519}) {
    auto key = GenerateKey(type);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    std::string pem = key->Pem();
    EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
    auto back = ParsePrivateKey(pem, "k.pem");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->type(), type);
    auto pub = ParsePublicKey(key->Public().Pem(), "k.pub");
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    EXPECT_THAT(key->Public().Pem(), HasSubstr("-----BEGIN PUBLIC KEY-----"));
    auto sig = back->Sign("hello");
    ASSERT_TRUE(sig.ok());
    EXPECT_TRUE(pub->Verify("hello", *sig).ok()) << KeyTypeName(type);
    Status bad = pub->Verify("hellO", *sig);
    EXPECT_EQ(bad.code(), Code::kPermissionDenied) << KeyTypeName(type);
    EXPECT_THAT(bad.message(), HasSubstr("does not verify"));
  }
}

TEST(KeyTest, ReadsSec1EcKeys) {
  auto key = ParsePrivateKey(kSec1Key, "ec.pem");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->type(), KeyType::kEcdsaP256);
}

TEST(KeyTest, WrongKeysAreClearErrors) {
  auto r = ParsePrivateKey(Pem(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}), false), "rsa.pem");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("rsa.pem: RSA key: only ECDSA P-256 and Ed25519"));
  auto p = ParsePublicKey(Pem(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), true), "p384.pub");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("p384.pub: ECDSA key on curve secp384r1"));

  auto cosign = ParsePrivateKey("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                                "cosign.key");
  ASSERT_FALSE(cosign.ok());
  EXPECT_THAT(cosign.status().message(), HasSubstr("cosign.key: a cosign-encrypted key"));

  auto priv_as_pub = ParsePublicKey(kSec1Key, "ec.pem");
  ASSERT_FALSE(priv_as_pub.ok());
  EXPECT_THAT(priv_as_pub.status().message(), HasSubstr("a private key where a public key"));
  auto junk = ParsePrivateKey("hello", "junk.pem");
  ASSERT_FALSE(junk.ok());
  EXPECT_THAT(junk.status().message(), HasSubstr("junk.pem: not a PEM private key"));
}

TEST_F(SignTest, PayloadIsCosignsSimpleSigningFormat) {
  EXPECT_EQ(SimpleSigningPayload(image_, digest_),
            R"({"critical":{"identity":{"docker-reference":"registry.test/team/web"},"image":{"docker-manifest-digest":")" +
                digest_ + R"("},"type":"cosign container image signature"},"optional":null})");
  EXPECT_THAT(SimpleSigningPayload(image_, digest_, {{"run", "42"}}), HasSubstr(R"("optional":{"run":"42"}})"));
  EXPECT_EQ(SignatureTag(digest_), "sha256-" + digest_.substr(7) + ".sig");
  EXPECT_EQ(AttestationTag(digest_), "sha256-" + digest_.substr(7) + ".att");
}

TEST_F(SignTest, SignsAndVerifiesWithBothKeyTypes) {
  for (const PrivateKey* key : {&ecdsa_, &ed25519_}) {
    auto pushed = SignImage(registry_, image_, *key, {{"run", "7"}});
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    EXPECT_EQ(pushed->tag, SignatureTag(digest_));
    auto verified = VerifyImage(registry_, image_, key->Public());
    ASSERT_TRUE(verified.ok()) << verified.status().ToString();
    ASSERT_EQ(verified->size(), 1u);
    EXPECT_EQ((*verified)[0].image_digest, digest_);
    EXPECT_EQ((*verified)[0].docker_reference, "registry.test/team/web");
    EXPECT_EQ((*verified)[0].annotations.at("run"), "7");
  }
  // Both signatures are layers of the one manifest, which names the image as its subject.
  oci::Manifest m = SigManifest(SignatureTag(digest_));
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].media_type, kSimpleSigningMediaType);
  EXPECT_FALSE(m.layers[0].annotations.at(std::string(kSignatureAnnotation)).empty());
  ASSERT_TRUE(m.subject.has_value());
  EXPECT_EQ(m.subject->digest, digest_);
  EXPECT_EQ(m.subject->media_type, oci::media::kOciManifest);
  // Verifying by digest works the same.
  oci::Reference by_digest = image_;
  by_digest.tag.clear();
  by_digest.digest = digest_;
  EXPECT_TRUE(VerifyImage(registry_, by_digest, ecdsa_.Public()).ok());
}

TEST_F(SignTest, UnsignedImageIsNotFound) {
  auto v = VerifyImage(registry_, image_, ecdsa_.Public());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kNotFound);
  EXPECT_THAT(v.status().message(), HasSubstr("no signatures (no tag sha256-"));
}

TEST_F(SignTest, OtherKeyIsRefused) {
  ASSERT_TRUE(SignImage(registry_, image_, ecdsa_).ok());
  auto v = VerifyImage(registry_, image_, GenerateKey(KeyType::kEcdsaP256)->Public());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(v.status().message(), HasSubstr("signature 0: signature does not verify with the ECDSA P-256 key"));
  // A key of the other type fails the same way, naming its type.
  auto ed = VerifyImage(registry_, image_, ed25519_.Public());
  ASSERT_FALSE(ed.ok());
  EXPECT_THAT(ed.status().message(), HasSubstr("does not verify with the Ed25519 key"));
}

TEST_F(SignTest, TamperedSignatureIsRefused) {
  ASSERT_TRUE(SignImage(registry_, image_, ecdsa_).ok());
  oci::Manifest m = SigManifest(SignatureTag(digest_));
  auto sig = *Base64Decode(m.layers[0].annotations[std::string(kSignatureAnnotation)]);
  sig[sig.size() - 1] ^= 1;
  m.layers[0].annotations[std::string(kSignatureAnnotation)] = Base64Encode(sig);
  PutSig(SignatureTag(digest_), m);
  auto v = VerifyImage(registry_, image_, ecdsa_.Public());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(v.status().message(), HasSubstr("does not verify"));
}

TEST_F(SignTest, SignatureForAnotherDigestIsRefused) {
  // Sign v2, then copy its signature manifest to v1's tag: the signature is genuine but names v2.
  ASSERT_TRUE(SignImage(registry_, other_, ecdsa_).ok());
  PutSig(SignatureTag(digest_), SigManifest(SignatureTag(other_digest_)));
  auto v = VerifyImage(registry_, image_, ecdsa_.Public());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(v.status().message(), HasSubstr("the payload signs " + other_digest_ + ", not the image " + digest_));
}

TEST_F(SignTest, MissingPayloadBlobIsNamed) {
  ASSERT_TRUE(SignImage(registry_, image_, ecdsa_).ok());
  oci::Manifest m = SigManifest(SignatureTag(digest_));
  m.layers[0].digest = "sha256:" + std::string(64, 'e');
  PutSig(SignatureTag(digest_), m);
  auto v = VerifyImage(registry_, image_, ecdsa_.Public());
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("signature 0: blob sha256:eeee"));
  EXPECT_THAT(v.status().message(), HasSubstr("not found"));
}

TEST_F(SignTest, SigningTwiceAddsNoLayer) {
  auto a = SignImage(registry_, image_, ed25519_);
  auto b = SignImage(registry_, image_, ed25519_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->manifest_digest, b->manifest_digest);  // Ed25519 is deterministic
  EXPECT_EQ(SigManifest(SignatureTag(digest_)).layers.size(), 1u);
}

TEST(DsseTest, PaeAndEnvelope) {
  EXPECT_EQ(Pae("http://example.com/HelloWorld", "hello world"), "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  PrivateKey key = *GenerateKey(KeyType::kEcdsaP256);
  auto env = SignEnvelope(kInTotoPayloadType, "{\"a\":1}", key);
  ASSERT_TRUE(env.ok());
  auto opened = OpenEnvelope(*env, kInTotoPayloadType, key.Public());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, "{\"a\":1}");
  auto wrong_type = OpenEnvelope(*env, "text/plain", key.Public());
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_THAT(wrong_type.status().message(), HasSubstr("payloadType"));
  // Changing the payload (still valid base64) breaks the signature.
  std::string tampered = *env;
  size_t at = tampered.find(Base64Encode("{\"a\":1}"));
  tampered.replace(at, 12, Base64Encode("{\"a\":2}").substr(0, 12));
  auto t = OpenEnvelope(tampered, kInTotoPayloadType, key.Public());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kPermissionDenied);
}

Provenance SampleProvenance() {
  return Provenance{.builder_id = "https://gantry.test/ci",
                    .pipeline = "web/build",
                    .source_repository = "https://git.test/team/web.git",
                    .source_commit = std::string(40, 'a'),
                    .source_ref = "refs/heads/main",
                    .run_id = "17",
                    .started_on = "2026-12-06T21:00:00Z",
                    .base_images = {{"docker.io/library/alpine:3.20", "sha256:" + std::string(64, 'b')}}};
}

TEST_F(SignTest, ProvenanceStatementIsSlsaV1) {
  auto st = value::ParseJson(ProvenanceStatement(image_, digest_, SampleProvenance()));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(value::StringAt(&*st, {"_type"}), kInTotoStatementV1);
  EXPECT_EQ(value::StringAt(&*st, {"predicateType"}), kSlsaProvenanceV1);
  EXPECT_EQ(value::StringAt(&*st, {"subject", 0, "digest", "sha256"}), digest_.substr(7));
  EXPECT_EQ(value::StringAt(&*st, {"predicate", "runDetails", "builder", "id"}), "https://gantry.test/ci");
  EXPECT_EQ(value::StringAt(&*st, {"predicate", "runDetails", "metadata", "invocationId"}), "17");
  EXPECT_EQ(value::StringAt(&*st, {"predicate", "buildDefinition", "externalParameters", "pipeline"}), "web/build");
  EXPECT_EQ(value::StringAt(&*st, {"predicate", "buildDefinition", "resolvedDependencies", 0, "digest", "gitCommit"}),
            std::string(40, 'a'));
  EXPECT_EQ(value::StringAt(&*st, {"predicate", "buildDefinition", "resolvedDependencies", 1, "uri"}),
            "oci://docker.io/library/alpine:3.20");
}

TEST_F(SignTest, AttestsAndVerifies) {
  std::string statement = ProvenanceStatement(image_, digest_, SampleProvenance());
  auto pushed = AttestImage(registry_, image_, statement, kSlsaProvenanceV1, ecdsa_);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->tag, AttestationTag(digest_));
  oci::Manifest m = SigManifest(AttestationTag(digest_));
  ASSERT_EQ(m.layers.size(), 1u);
  EXPECT_EQ(m.layers[0].media_type, kDsseMediaType);
  EXPECT_EQ(m.layers[0].annotations.at("predicateType"), kSlsaProvenanceV1);
  auto v = VerifyAttestations(registry_, image_, ecdsa_.Public(), kSlsaProvenanceV1);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ(value::StringAt(&(*v)[0].statement, {"predicate", "runDetails", "metadata", "invocationId"}), "17");
  // Another predicate type: none.
  auto spdx = VerifyAttestations(registry_, image_, ecdsa_.Public(), "https://spdx.dev/Document");
  ASSERT_FALSE(spdx.ok());
  EXPECT_EQ(spdx.status().code(), Code::kNotFound);
  EXPECT_THAT(spdx.status().message(), HasSubstr("predicate type https://slsa.dev/provenance/v1, not https://spdx.dev/Document"));
  // Another key: refused.
  auto other = VerifyAttestations(registry_, image_, ed25519_.Public(), kSlsaProvenanceV1);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kPermissionDenied);
}

TEST_F(SignTest, AttestationForAnotherSubjectIsRefused) {
  // A genuine statement about v2, stored as v1's attestation.
  std::string statement = ProvenanceStatement(other_, other_digest_, SampleProvenance());
  ASSERT_TRUE(AttestImage(registry_, image_, statement, kSlsaProvenanceV1, ecdsa_).ok());
  auto v = VerifyAttestations(registry_, image_, ecdsa_.Public(), kSlsaProvenanceV1);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(v.status().message(),
              HasSubstr("the statement's subjects are [" + other_digest_ + "], not the image " + digest_));
}

}  // namespace
}  // namespace gantry::sign
