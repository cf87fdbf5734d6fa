// Image signatures and attestations against the real docker-registry of test/env/registry.sh and
// the real cosign (built by test/env/build-tools.sh), both ways: `cosign verify --key` and
// `cosign verify-attestation --type slsaprovenance1` (and `--type spdxjson` for `gantry image sbom
// --attest`) accept what Gantry pushed (ECDSA P-256 and Ed25519), Gantry verifies what `cosign sign --key` and `cosign attest` pushed, and the `gantry
// image sign|verify|attest|verify-attestation` commands do the same from the command line and exit 1
// on a refused image. No Rekor or Fulcio: cosign runs with --tlog-upload=false /
// --insecure-ignore-tlog=true against a plain-HTTP registry.

#include <cstdlib>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "base/path.h"
#include "base/process.h"
#include "oci/build.h"
#include "oci/registry.h"
#include "sign/sign.h"
#include "test/env/testenv.h"

namespace gantry::sign {
namespace {

using ::testing::HasSubstr;

void Write(const std::string& path, std::string_view data) { std::ofstream(path, std::ios::binary) << data; }

class SignInteropTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ProcessOptions po;
    po.inherit_env = true;
    po.timeout = std::chrono::minutes(40);
    auto built = RunChecked({testenv::ScriptDir() + "/build-tools.sh", "cosign"}, po);
    GANTRY_CHECK(built.ok());
    std::string out = built->out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    cosign_ = new std::string(out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1) + "/cosign");
    host_ = new std::string(testenv::Shared("registry.sh").Get("REGISTRY_HOST"));
  }
  static void TearDownTestSuite() {
    delete cosign_;
    delete host_;
  }

  void SetUp() override {
    auto r = oci::NewHttpRegistry({.docker_config = "none", .insecure_http_hosts = {*host_}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    registry_ = *std::move(r);
    static int n = 0;
    image_ = *oci::ParseReference(fmt::format("{}/sign/app{}:v1", *host_, ++n));
    digest_ = PushImage(image_, "layer of " + image_.repository);
  }

  // A small image (config + one layer) pushed under `ref`; its digest.
  std::string PushImage(const oci::Reference& ref, std::string_view content) {
    auto layer = oci::PushBlobBytes(*registry_, ref, content, oci::media::kOciLayer);
    auto config = oci::PushBlobBytes(
        *registry_, ref,
        fmt::format(R"({{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}})",
                    oci::Sha256Digest(content)),
        oci::media::kOciConfig);
    EXPECT_TRUE(layer.ok() && config.ok());
    oci::Manifest m{.media_type = std::string(oci::media::kOciManifest), .config = *config, .layers = {*layer}};
    auto digest = registry_->PutManifest(ref, oci::media::kOciManifest, oci::SerializeManifest(m));
    EXPECT_TRUE(digest.ok()) << digest.status().ToString();
    return digest.ok() ? *digest : "";
  }

  std::string ByDigest() const { return fmt::format("{}/{}@{}", image_.registry, image_.repository, digest_); }

  // Runs cosign with the flags for a local HTTP registry and no transparency log.
  ProcessResult Cosign(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), *cosign_);
    ProcessOptions po;
    po.env = {{"HOME", tmp_.path()}, {"PATH", "/usr/bin:/bin"}, {"COSIGN_PASSWORD", "pw"}, {"TUF_ROOT", tmp_.path() + "/tuf"}};
    for (auto& [k, v] : env) po.env[k] = v;
    po.cwd = tmp_.path();
    po.timeout = std::chrono::minutes(2);
    auto r = gantry::Run(args, po);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessResult{};
  }
  ProcessResult CosignVerify(const std::string& pub, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"verify", "--key", pub, "--allow-insecure-registry", "--allow-http-registry",
                                     "--insecure-ignore-tlog=true"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ByDigest());
    return Cosign(args);
  }

  // Writes `key` as KEY.pem and its public key as KEY.pub in the temp dir; the .pub path.
  std::string WriteKey(const PrivateKey& key, const std::string& name) {
    Write(tmp_.path() + "/" + name + ".pem", key.Pem());
    Write(tmp_.path() + "/" + name + ".pub", key.Public().Pem());
    return tmp_.path() + "/" + name + ".pub";
  }

  ProcessResult Gantry(std::vector<std::string> args) {
    const char* bin = std::getenv("GANTRY_BINARY");
    EXPECT_NE(bin, nullptr);
    args.insert(args.begin(), bin ? bin : "gantry");
    args.insert(args.end(), {"--insecure-http", *host_, "--registry-config", "none"});
    auto r = gantry::Run(args, {.inherit_env = true, .timeout = std::chrono::minutes(1)});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessResult{};
  }

  static std::string* cosign_;
  static std::string* host_;
  testenv::ScopedTempDir tmp_;
  std::unique_ptr<oci::Registry> registry_;
  oci::Reference image_;
  std::string digest_;
};
std::string* SignInteropTest::cosign_ = nullptr;
std::string* SignInteropTest::host_ = nullptr;

TEST_F(SignInteropTest, CosignVerifiesGantrysSignatures) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEd25519}) {
    PrivateKey key = *GenerateKey(type);
    std::string pub = WriteKey(key, std::string(type == KeyType::kEd25519 ? "ed" : "ec"));
    auto pushed = SignImage(*registry_, image_, key, {{"run", "42"}});
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    ProcessResult ok = CosignVerify(pub, {"-a", "run=42"});
    EXPECT_TRUE(ok.success()) << KeyTypeName(type) << ": " << ok.Describe() << ok.err;
    EXPECT_THAT(ok.out, HasSubstr(digest_));
  }
  // A key that signed nothing: cosign refuses too.
  std::string other = WriteKey(*GenerateKey(KeyType::kEcdsaP256), "other");
  ProcessResult refused = CosignVerify(other);
  EXPECT_FALSE(refused.success()) << refused.out;
}

TEST_F(SignInteropTest, GantryVerifiesCosignsSignaturesAndAttestations) {
  ProcessResult gen = Cosign({"generate-key-pair"});
  ASSERT_TRUE(gen.success()) << gen.Describe() << gen.err;
  ProcessResult sign = Cosign({"sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry",
                               "--allow-http-registry", "-y", ByDigest()});
  ASSERT_TRUE(sign.success()) << sign.Describe() << sign.err;
  auto pub = ReadFile(tmp_.path() + "/cosign.pub");
  ASSERT_TRUE(pub.ok());
  auto key = ParsePublicKey(*pub, "cosign.pub");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto verified = VerifyImage(*registry_, image_, *key);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ((*verified)[0].image_digest, digest_);
  // Gantry's own key is not cosign's.
  auto wrong = VerifyImage(*registry_, image_, GenerateKey(KeyType::kEcdsaP256)->Public());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied);

  Write(tmp_.path() + "/predicate.json",
        R"({"buildDefinition":{"buildType":"https://example.test/b","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.test/builder"}}})");
  ProcessResult attest = Cosign({"attest", "--key", "cosign.key", "--predicate", "predicate.json", "--type",
                                 "slsaprovenance1", "--tlog-upload=false", "--allow-insecure-registry",
                                 "--allow-http-registry", "-y", ByDigest()});
  ASSERT_TRUE(attest.success()) << attest.Describe() << attest.err;
  auto atts = VerifyAttestations(*registry_, image_, *key, kSlsaProvenanceV1);
  ASSERT_TRUE(atts.ok()) << atts.status().ToString();
  EXPECT_EQ(value::StringAt(&(*atts)[0].statement, {"predicate", "runDetails", "builder", "id"}),
            "https://example.test/builder");
}

TEST_F(SignInteropTest, CosignVerifiesGantrysProvenanceAttestation) {
  PrivateKey key = *GenerateKey(KeyType::kEcdsaP256);
  std::string pub = WriteKey(key, "ec");
  Provenance p{.builder_id = "https://gantry.test/ci", .pipeline = "web/build",
               .source_repository = "https://git.test/team/web.git", .source_commit = std::string(40, 'c'),
               .source_ref = "refs/heads/main", .run_id = "9", .started_on = "2026-12-06T21:00:00Z",
               .base_images = {{"docker.io/library/alpine:3.20", "sha256:" + std::string(64, 'b')}}};
  auto pushed = AttestImage(*registry_, image_, ProvenanceStatement(image_, digest_, p), kSlsaProvenanceV1, key);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ProcessResult ok = Cosign({"verify-attestation", "--key", pub, "--type", "slsaprovenance1", "--allow-insecure-registry",
                             "--allow-http-registry", "--insecure-ignore-tlog=true", ByDigest()});
  ASSERT_TRUE(ok.success()) << ok.Describe() << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("\"payloadType\":\"application/vnd.in-toto+json\""));

  // A genuine statement about another image stored as this image's attestation: both refuse it.
  oci::Reference other = image_;
  other.tag = "v2";
  std::string other_digest = PushImage(other, "another layer");
  oci::Reference fresh = image_;
  fresh.tag = "v3";
  digest_ = PushImage(fresh, "a third layer");
  image_ = fresh;
  ASSERT_TRUE(AttestImage(*registry_, image_, ProvenanceStatement(other, other_digest, p), kSlsaProvenanceV1, key).ok());
  ProcessResult refused = Cosign({"verify-attestation", "--key", pub, "--type", "slsaprovenance1",
                                  "--allow-insecure-registry", "--allow-http-registry", "--insecure-ignore-tlog=true",
                                  ByDigest()});
  EXPECT_FALSE(refused.success()) << refused.out;
  auto v = VerifyAttestations(*registry_, image_, key.Public(), kSlsaProvenanceV1);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("not the image " + digest_));
}

TEST_F(SignInteropTest, CommandsSignVerifyAndAttest) {
  WriteKey(*GenerateKey(KeyType::kEd25519), "ed");
  WriteKey(*GenerateKey(KeyType::kEcdsaP256), "other");
  std::string ref = image_.ToString();
  ProcessResult unsigned_image = Gantry({"image", "verify", ref, "--key", tmp_.path() + "/ed.pub"});
  EXPECT_EQ(unsigned_image.exit_code, 1) << unsigned_image.out << unsigned_image.err;
  EXPECT_THAT(unsigned_image.err, HasSubstr("no signatures"));

  ProcessResult signed_image = Gantry({"image", "sign", ref, "--key", tmp_.path() + "/ed.pem", "-a", "run=5"});
  ASSERT_EQ(signed_image.exit_code, 0) << signed_image.err;
  EXPECT_THAT(signed_image.out, HasSubstr("sha256:"));
  ProcessResult verified = Gantry({"image", "verify", ref, "--key", tmp_.path() + "/ed.pub"});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr(digest_ + ": signature verified (Ed25519)"));
  ProcessResult other_key = Gantry({"image", "verify", ref, "--key", tmp_.path() + "/other.pub"});
  EXPECT_EQ(other_key.exit_code, 1);
  EXPECT_THAT(other_key.err, HasSubstr("signature does not verify with the ECDSA P-256 key"));
  ProcessResult private_as_public = Gantry({"image", "verify", ref, "--key", tmp_.path() + "/ed.pem"});
  EXPECT_EQ(private_as_public.exit_code, 2);
  EXPECT_THAT(private_as_public.err, HasSubstr("a private key where a public key"));
  EXPECT_TRUE(CosignVerify(tmp_.path() + "/ed.pub").success());

  ProcessResult attested = Gantry({"image", "attest", ref, "--key", tmp_.path() + "/ed.pem", "--builder-id",
                                   "https://gantry.test/ci", "--source-repo", "https://git.test/web.git", "--commit",
                                   std::string(40, 'd'), "--base", "docker.io/library/alpine:3.20=sha256:" + std::string(64, 'a')});
  ASSERT_EQ(attested.exit_code, 0) << attested.err;
  ProcessResult att = Gantry({"image", "verify-attestation", ref, "--key", tmp_.path() + "/ed.pub"});
  EXPECT_EQ(att.exit_code, 0) << att.err;
  EXPECT_THAT(att.out, HasSubstr(std::string(40, 'd')));
  ProcessResult cosign_att = Cosign({"verify-attestation", "--key", tmp_.path() + "/ed.pub", "--type", "slsaprovenance1",
                                     "--allow-insecure-registry", "--allow-http-registry", "--insecure-ignore-tlog=true",
                                     ByDigest()});
  EXPECT_TRUE(cosign_att.success()) << cosign_att.Describe() << cosign_att.err;
}


// `gantry image sbom --attest`: the SPDX SBOM of an image pulled from the registry (its files with
// digests, the packages of its dpkg database), attested so that the real `cosign verify-attestation
// --type spdxjson` accepts it, and refuses it with another key.
TEST_F(SignInteropTest, CosignVerifiesGantrysSbomAttestation) {
  const std::string root = tmp_.path() + "/rootfs";
  std::filesystem::create_directories(root + "/var/lib/dpkg");
  std::filesystem::create_directories(root + "/usr/bin");
  Write(root + "/var/lib/dpkg/status",
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\n");
  Write(root + "/usr/bin/tool", "#!/bin/sh\necho tool\n");
  auto layout = oci::Layout::Open(tmp_.path() + "/layout", true);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  auto built = oci::BuildImage({.platform = oci::Platform{"linux", "amd64", ""}, .layers = {{.source = root}}}, *layout, "v1");
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  auto pushed = oci::PushImage(*registry_, *layout, "v1", image_);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  digest_ = *pushed;
  WriteKey(*GenerateKey(KeyType::kEd25519), "ed");
  std::string other = WriteKey(*GenerateKey(KeyType::kEcdsaP256), "other");

  const std::string out = tmp_.path() + "/sbom.json";
  ProcessResult sbom = Gantry({"image", "sbom", image_.ToString(), "-o", out, "--attest", "--key", tmp_.path() + "/ed.pem"});
  ASSERT_EQ(sbom.exit_code, 0) << sbom.out << sbom.err;
  EXPECT_THAT(sbom.err, HasSubstr("2 files, 1 packages (from /var/lib/dpkg/status)"));
  auto doc = ReadFile(out);
  ASSERT_TRUE(doc.ok());
  EXPECT_THAT(*doc, HasSubstr("\"fileName\":\"./usr/bin/tool\""));
  EXPECT_THAT(*doc, HasSubstr(Sha256Hex("#!/bin/sh\necho tool\n")));
  EXPECT_THAT(*doc, HasSubstr("\"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64\""));

  ProcessResult ok = Cosign({"verify-attestation", "--key", tmp_.path() + "/ed.pub", "--type", "spdxjson",
                             "--allow-insecure-registry", "--allow-http-registry", "--insecure-ignore-tlog=true", ByDigest()});
  ASSERT_TRUE(ok.success()) << ok.Describe() << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("\"payloadType\":\"application/vnd.in-toto+json\""));
  ProcessResult refused = Cosign({"verify-attestation", "--key", other, "--type", "spdxjson", "--allow-insecure-registry",
                                  "--allow-http-registry", "--insecure-ignore-tlog=true", ByDigest()});
  EXPECT_FALSE(refused.success()) << refused.out;

  ProcessResult mine = Gantry({"image", "verify-attestation", image_.ToString(), "--key", tmp_.path() + "/ed.pub", "--type", "spdxjson"});
  EXPECT_EQ(mine.exit_code, 0) << mine.err;
  EXPECT_THAT(mine.out, HasSubstr("\"predicateType\":\"https://spdx.dev/Document\""));

  // Without --attest: the document on stdout, nothing pushed; --attest without --key is a usage error.
  ProcessResult plain = Gantry({"image", "sbom", image_.ToString()});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(plain.out, HasSubstr("\"spdxVersion\":\"SPDX-2.3\""));
  EXPECT_EQ(Gantry({"image", "sbom", image_.ToString(), "--attest"}).exit_code, 2);
}
}  // namespace
}  // namespace gantry::sign
