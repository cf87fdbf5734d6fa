#include <gtest/gtest.h>

#include "oci/oci.h"

namespace gantry::oci {
namespace {

struct Vector {
  std::string in, registry, repository, tag, digest;
};

TEST(ParseReferenceTest, NormalisesAsDocker) {
  const std::string d = "sha256:" + std::string(64, 'a');
  const std::vector<Vector> vectors = {
      {"nginx", "docker.io", "library/nginx", "latest", ""},
      {"nginx:1.25", "docker.io", "library/nginx", "1.25", ""},
      {"docker.io/nginx", "docker.io", "library/nginx", "latest", ""},
      {"index.docker.io/library/nginx:x", "docker.io", "library/nginx", "x", ""},
      {"bitnami/redis", "docker.io", "bitnami/redis", "latest", ""},
      {"ghcr.io/org/team/app:v1.2.3", "ghcr.io", "org/team/app", "v1.2.3", ""},
      {"localhost/app", "localhost", "app", "latest", ""},
      {"localhost:5000/app:dev", "localhost:5000", "app", "dev", ""},
      {"127.0.0.1:34567/team/web:1", "127.0.0.1:34567", "team/web", "1", ""},
      {"registry.local:5000/a/b@" + d, "registry.local:5000", "a/b", "", d},
      {"app:tag@" + d, "docker.io", "library/app", "tag", d},
      {"[::1]:5000/app", "[::1]:5000", "app", "latest", ""},
      {"ab__c/d-e--f/g.h", "docker.io", "ab__c/d-e--f/g.h", "latest", ""},
  };
  for (const Vector& v : vectors) {
    Result<Reference> r = ParseReference(v.in);
    ASSERT_TRUE(r.ok()) << v.in << ": " << r.status().ToString();
    EXPECT_EQ(r->registry, v.registry) << v.in;
    EXPECT_EQ(r->repository, v.repository) << v.in;
    EXPECT_EQ(r->tag, v.tag) << v.in;
    EXPECT_EQ(r->digest, v.digest) << v.in;
  }
}

TEST(ParseReferenceTest, ToStringRoundTrips) {
  const std::string d = "sha256:" + std::string(64, 'b');
  for (const std::string& in : std::vector<std::string>{"ghcr.io/org/app:v1", "127.0.0.1:5000/a/b@" + d,
                         "docker.io/library/nginx:latest", "host.io/x:t@" + d}) {
    Result<Reference> r = ParseReference(in);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->ToString(), in);
    EXPECT_EQ(r->Identifier(), r->digest.empty() ? r->tag : r->digest);
  }
}

TEST(ParseReferenceTest, BadInputIsNamed) {
  struct Bad {
    std::string in, says;
  };
  const std::vector<Bad> bad = {
      {"", "empty"},
      {"Nginx", "lower-case"},
      {"ghcr.io/Org/app", "lower-case"},
      {"app:", "tag"},
      {"app:-x", "tag"},
      {"app:" + std::string(129, 'a'), "tag"},
      {"app@sha256:abc", "digest"},
      {"app@sha512:" + std::string(128, 'a'), "digest"},
      {"https://ghcr.io/app", "scheme"},
      {"a//b", "component"},
      {"a/b/", "component"},
      {"a_/b", "component"},
      {"a b", "whitespace"},
      {"host:99x/app", "registry host"},
      {":tag", "no repository"},
  };
  for (const Bad& b : bad) {
    Result<Reference> r = ParseReference(b.in);
    ASSERT_FALSE(r.ok()) << b.in;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << b.in;
    EXPECT_NE(r.status().message().find(b.says), std::string::npos)
        << b.in << " → " << r.status().message();
  }
}

TEST(ParsePlatformTest, ParsesAndPrints) {
  Result<Platform> p = ParsePlatform("linux/arm64/v8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->os, "linux");
  EXPECT_EQ(p->architecture, "arm64");
  EXPECT_EQ(p->variant, "v8");
  EXPECT_EQ(p->ToString(), "linux/arm64/v8");
  EXPECT_EQ(ParsePlatform("linux/amd64")->ToString(), "linux/amd64");
  for (const char* bad : {"linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64", ""})
    EXPECT_EQ(ParsePlatform(bad).status().code(), Code::kInvalidArgument) << bad;
}

}  // namespace
}  // namespace gantry::oci
