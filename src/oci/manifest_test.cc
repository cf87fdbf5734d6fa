#include <gtest/gtest.h>

#include "oci/oci.h"

namespace gantry::oci {
namespace {

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');

TEST(DigestTest, Sha256OfBytes) {
  EXPECT_EQ(Sha256Digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(ValidateDigest(kDigestA).ok());
}

TEST(DigestTest, RefusesOtherAlgorithmsAndBadHex) {
  Status s = ValidateDigest("sha512:" + std::string(128, 'a'));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("only sha256"), std::string::npos) << s.message();
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(64, 'A')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(63, 'a')).ok());
  EXPECT_FALSE(ValidateDigest(std::string(64, 'a')).ok());
}

TEST(ManifestTest, ParsesDockerSchema2) {
  std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":")" + kDigestA + R"("},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3370706,"digest":")" + kDigestB + R"("}]})";
  auto m = ParseManifest(json);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->media_type, media::kDockerManifest);
  EXPECT_EQ(m->config.media_type, media::kDockerConfig);
  EXPECT_EQ(m->config.size, 1469);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].digest, kDigestB);
  EXPECT_EQ(m->layers[0].size, 3370706);
}

TEST(ManifestTest, MediaTypeFromContentTypeWhenFieldAbsent) {
  std::string json = R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":")" +
                     kDigestA + R"("},"layers":[]})";
  auto m = ParseManifest(json, media::kDockerManifest);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->media_type, media::kDockerManifest);
  auto oci = ParseManifest(json);
  ASSERT_TRUE(oci.ok());
  EXPECT_EQ(oci->media_type, media::kOciManifest);
}

TEST(ManifestTest, ErrorsNameTheField) {
  std::string good_config = R"("config":{"mediaType":"x","size":2,"digest":")" + kDigestA + R"("})";
  struct Case {
    std::string json;
    std::string field;
  } cases[] = {
      {R"({"schemaVersion":2,"layers":[]})", "config: missing"},
      {R"({"schemaVersion":1,)" + good_config + R"(,"layers":[]})", "schemaVersion"},
      {R"({"schemaVersion":2,)" + good_config + "}", "layers: missing"},
      {R"({"schemaVersion":2,)" + good_config + R"(,"layers":[{"mediaType":"x","size":1,"digest":")" + kDigestB +
           R"("},{"mediaType":"x","size":1,"digest":"sha256:zz"}]})",
       "layers[1].digest"},
      {R"({"schemaVersion":2,)" + good_config + R"(,"layers":[{"mediaType":"x","size":-1,"digest":")" + kDigestB + R"("}]})",
       "layers[0].size"},
      {R"({"schemaVersion":2,"config":{"mediaType":7,"size":2,"digest":")" + kDigestA + R"("},"layers":[]})",
       "config.mediaType: is an integer"},
      {R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)" + good_config + R"(,"layers":[]})",
       "not an image manifest type"},
      {R"({"schemaVersion":2,)" + good_config + R"(,"layers":[],"annotations":{"a":1}})", "annotations.a"},
  };
  for (const auto& c : cases) {
    auto m = ParseManifest(c.json);
    ASSERT_FALSE(m.ok()) << c.json;
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument);
    EXPECT_NE(m.status().message().find(c.field), std::string::npos) << m.status().message();
  }
}

TEST(ManifestTest, ContentTypeMustAgreeWithField) {
  std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","size":2,"digest":")" +
                     kDigestA + R"("},"layers":[]})";
  EXPECT_FALSE(ParseManifest(json, media::kDockerManifest).ok());
}

TEST(ManifestTest, SerialiseIsDeterministicAndRoundTrips) {
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  m.config = {std::string(media::kOciConfig), kDigestA, 123, {}, {}, {}};
  m.layers.push_back({std::string(media::kOciLayerGzip), kDigestB, 456, {{"z", "1"}, {"a", "2"}}, {}, {}});
  m.annotations = {{"org.opencontainers.image.revision", "abc"}, {"org.opencontainers.image.source", "https://x"}};
  std::string bytes = SerializeManifest(m);
  EXPECT_EQ(bytes,
            R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                kDigestA + R"(","size":123},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" + kDigestB +
                R"(","size":456,"annotations":{"a":"2","z":"1"}}],"annotations":{"org.opencontainers.image.revision":"abc","org.opencontainers.image.source":"https://x"}})");
  auto back = ParseManifest(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(SerializeManifest(*back), bytes);
}

TEST(ManifestTest, SubjectAndArtifactTypeRoundTrip) {
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  m.artifact_type = "application/vnd.dev.cosign.artifact.sig.v1+json";
  m.config = {std::string(media::kOciConfig), kDigestA, 2, {}, {}, {}};
  m.subject = Descriptor{std::string(media::kOciManifest), kDigestB, 700, {}, {}, {}};
  std::string bytes = SerializeManifest(m);
  EXPECT_NE(bytes.find(R"("artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config")"), std::string::npos) << bytes;
  EXPECT_NE(bytes.find(R"("layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kDigestB),
            std::string::npos) << bytes;
  auto back = ParseManifest(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->subject.has_value());
  EXPECT_EQ(back->subject->digest, kDigestB);
  EXPECT_EQ(back->artifact_type, m.artifact_type);
  EXPECT_EQ(SerializeManifest(*back), bytes);
  auto bad = ParseManifest(R"({"schemaVersion":2,"config":{"mediaType":"x","digest":")" + kDigestA +
                           R"(","size":1},"layers":[],"subject":{"mediaType":"x","digest":"sha256:zz","size":1}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("subject.digest"), std::string::npos) << bad.status().ToString();
}

TEST(IndexTest, ParsesDockerManifestListWithPlatforms) {
  std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
    {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"digest":")" + kDigestA + R"(","platform":{"architecture":"amd64","os":"linux"}},
    {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"digest":")" + kDigestB + R"(","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]})";
  auto index = ParseIndex(json);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->media_type, media::kDockerManifestList);
  ASSERT_EQ(index->manifests.size(), 2u);
  ASSERT_TRUE(index->manifests[1].platform.has_value());
  EXPECT_EQ(index->manifests[1].platform->architecture, "arm64");
  EXPECT_EQ(index->manifests[1].platform->variant, "v8");
  std::string bytes = SerializeIndex(*index);
  EXPECT_NE(bytes.find(R"("platform":{"architecture":"arm64","os":"linux","variant":"v8"})"), std::string::npos) << bytes;
  EXPECT_EQ(SerializeIndex(*ParseIndex(bytes)), bytes);
}

TEST(IndexTest, ErrorsNameTheField) {
  auto a = ParseIndex(R"({"schemaVersion":2,"manifests":[{"mediaType":"x","size":1,"digest":")" + kDigestA +
                      R"(","platform":{"os":"linux"}}]})");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("manifests[0].platform.architecture: missing"), std::string::npos)
      << a.status().message();
  auto b = ParseIndex(R"({"schemaVersion":2})");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("manifests: missing"), std::string::npos);
  EXPECT_FALSE(ParseIndex("{not json").ok());
  EXPECT_FALSE(ParseIndex(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]})").ok());
}

}  // namespace
}  // namespace gantry::oci
