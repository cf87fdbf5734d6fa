#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/base64.h"
#include "oci/internal/auth_flow.h"
#include "oci/registry.h"

namespace gantry::oci::internal {
namespace {

TEST(WwwAuthenticateTest, ParsesBearerChallengeOfDockerHub) {
  auto r = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull")");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].scheme, "bearer");
  EXPECT_EQ((*r)[0].Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*r)[0].Param("service"), "registry.docker.io");
  EXPECT_EQ((*r)[0].Param("scope"), "repository:library/nginx:pull");
}

TEST(WwwAuthenticateTest, ParsesSeveralChallengesQuotesAndTokens) {
  auto r = ParseWwwAuthenticate(
      R"(Basic realm="Registry Realm", Bearer realm="https://x/t",scope="repository:a:pull,push",error="insufficient_scope", Negotiate)");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].scheme, "basic");
  EXPECT_EQ((*r)[0].Param("realm"), "Registry Realm");
  EXPECT_EQ((*r)[1].Param("scope"), "repository:a:pull,push");
  EXPECT_EQ((*r)[1].Param("error"), "insufficient_scope");
  EXPECT_EQ((*r)[2].scheme, "negotiate");
  auto unquoted = ParseWwwAuthenticate(R"(BASIC Realm=x, charset="UTF-8")");
  ASSERT_TRUE(unquoted.ok());
  EXPECT_EQ((*unquoted)[0].Param("realm"), "x");
  EXPECT_EQ((*unquoted)[0].Param("charset"), "UTF-8");
  auto escaped = ParseWwwAuthenticate(R"(Bearer realm="a\"b")");
  ASSERT_TRUE(escaped.ok());
  EXPECT_EQ((*escaped)[0].Param("realm"), "a\"b");
}

TEST(WwwAuthenticateTest, RejectsMalformed) {
  EXPECT_FALSE(ParseWwwAuthenticate("").ok());
  EXPECT_FALSE(ParseWwwAuthenticate(R"(Bearer realm="unterminated)").ok());
  EXPECT_FALSE(ParseWwwAuthenticate("=x").ok());
}

TEST(TokenUrlTest, BuildsRealmWithServiceAndScopes) {
  Challenge c{"bearer", {{"realm", "https://auth.example/token"}, {"service", "reg example"}}};
  auto url = TokenUrl(c, {"repository:a/b:pull,push", "repository:c:pull", "repository:c:pull"}, false);
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url,
            "https://auth.example/token?service=reg%20example&scope=repository%3Aa%2Fb%3Apull%2Cpush"
            "&scope=repository%3Ac%3Apull");
  Challenge q{"bearer", {{"realm", "https://auth.example/token?x=1"}}};
  EXPECT_EQ(*TokenUrl(q, {"s"}, false), "https://auth.example/token?x=1&scope=s");
  Challenge http{"bearer", {{"realm", "http://auth.example/token"}}};
  EXPECT_EQ(TokenUrl(http, {}, false).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(TokenUrl(http, {}, true).ok());
  EXPECT_FALSE(TokenUrl(Challenge{"bearer", {}}, {}, true).ok());
}

TEST(TokenResponseTest, AcceptsTokenOrAccessToken) {
  auto a = ParseTokenResponse(R"({"token":"t1","expires_in":300})");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value, "t1");
  EXPECT_EQ(a->expires_in, std::chrono::seconds(300));
  auto b = ParseTokenResponse(R"({"access_token":"t2"})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->value, "t2");
  EXPECT_EQ(b->expires_in, std::chrono::seconds(60));
  EXPECT_EQ(ParseTokenResponse(R"({"expires_in":3})").status().code(), Code::kUnauthenticated);
  EXPECT_EQ(ParseTokenResponse("<html>").status().code(), Code::kUnauthenticated);
}

// Found by fuzz/oci_auth_fuzz.cc: a 1e99 expires_in was converted to int64_t (undefined).
TEST(TokenResponseTest, HugeOrFractionalExpiresInIsCappedAtADay) {
  auto huge = ParseTokenResponse(R"({"token":"t","expires_in":6e99})");
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(huge->expires_in, std::chrono::seconds(86400));
  auto big_int = ParseTokenResponse(R"({"token":"t","expires_in":9223372036854775807})");
  ASSERT_TRUE(big_int.ok());
  EXPECT_EQ(big_int->expires_in, std::chrono::seconds(86400));
  auto fraction = ParseTokenResponse(R"({"token":"t","expires_in":0.5})");
  ASSERT_TRUE(fraction.ok());
  EXPECT_EQ(fraction->expires_in, std::chrono::seconds(60));
  EXPECT_EQ(ParseTokenResponse(R"({"token":"t","expires_in":1.9e3})")->expires_in, std::chrono::seconds(1900));
}

TEST(TokenCacheTest, ExpiresBeforeTheTokenDoes) {
  TokenCache cache;
  auto t0 = std::chrono::steady_clock::time_point{};
  cache.Put("h repository:a:pull", Token{"tok", std::chrono::seconds(60)}, t0);
  EXPECT_EQ(cache.Get("h repository:a:pull", t0 + std::chrono::seconds(49)), "tok");
  EXPECT_EQ(cache.Get("h repository:a:pull", t0 + std::chrono::seconds(50)), std::nullopt);
  EXPECT_EQ(cache.Get("h repository:a:pull,push", t0), std::nullopt);
}

TEST(DockerConfigTest, NormalisesHostKeys) {
  EXPECT_EQ(NormalizeRegistryHost("https://index.docker.io/v1/"), "docker.io");
  EXPECT_EQ(NormalizeRegistryHost("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(NormalizeRegistryHost("https://GHCR.io"), "ghcr.io");
  EXPECT_EQ(NormalizeRegistryHost("http://localhost:5000/v2/"), "localhost:5000");
  EXPECT_EQ(NormalizeRegistryHost("quay.io"), "quay.io");
}

TEST(DockerConfigTest, ReadsAuthAndUsernamePasswordBoundToHost) {
  std::string json = R"({"auths":{
    "https://index.docker.io/v1/":{"auth":")" + Base64Encode("hubuser:hub:pass") + R"("},
    "ghcr.io":{"username":"gh","password":"ghp"},
    "https://127.0.0.1:5000":{"auth":")" + Base64Encode("u:p") + R"("},
    "empty.io":{}
  },"credHelpers":{"gcr.io":"gcloud"}})";
  auto config = ParseDockerConfig(json, "/x/config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  CredentialSet set({{"ghcr.io", "own", "ownpass"}}, *config);
  ASSERT_TRUE(set.For("docker.io"));
  EXPECT_EQ(set.For("docker.io")->username, "hubuser");
  EXPECT_EQ(set.For("docker.io")->password, "hub:pass");
  // Gantry's own credentials win for their host.
  EXPECT_EQ(set.For("ghcr.io")->username, "own");
  EXPECT_EQ(set.For("127.0.0.1:5000")->password, "p");
  // Bound to the host: not another port, not a suffix or a prefix of it.
  EXPECT_FALSE(set.For("127.0.0.1:5001"));
  EXPECT_FALSE(set.For("127.0.0.1"));
  EXPECT_FALSE(set.For("evil-ghcr.io"));
  EXPECT_FALSE(set.For("ghcr.io.evil.com"));
  EXPECT_FALSE(set.For("empty.io"));
  EXPECT_NE(set.UnsupportedHint("gcr.io").find("credential helper \"gcloud\""), std::string::npos);
  EXPECT_EQ(set.UnsupportedHint("ghcr.io"), "");
}

TEST(DockerConfigTest, CredsStoreIsReportedAsUnsupported) {
  auto config = ParseDockerConfig(R"({"auths":{"ghcr.io":{}},"credsStore":"desktop"})", "/c.json");
  ASSERT_TRUE(config.ok());
  CredentialSet set({}, *config);
  EXPECT_FALSE(set.For("ghcr.io"));
  std::string hint = set.UnsupportedHint("ghcr.io");
  EXPECT_NE(hint.find("credsStore \"desktop\""), std::string::npos) << hint;
  EXPECT_NE(hint.find("not support"), std::string::npos) << hint;
}

TEST(DockerConfigTest, MalformedEntriesAreNamed) {
  auto bad = ParseDockerConfig(R"({"auths":{"ghcr.io":{"auth":"bm9jb2xvbg=="}}})", "/c.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ghcr.io"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(ParseDockerConfig("[1]", "/c.json").ok());
  EXPECT_FALSE(ParseDockerConfig("{", "/c.json").ok());
}

TEST(DockerConfigTest, LoadsFromDockerConfigDirAndToleratesAbsentDefault) {
  std::string dir = ::testing::TempDir() + "/dockercfg";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"auths":{"r.io":{"username":"a","password":"b"}}})";
  ::setenv("DOCKER_CONFIG", dir.c_str(), 1);
  auto c = LoadDockerConfig("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->auths.at("r.io").username, "a");
  ::setenv("DOCKER_CONFIG", (dir + "/absent").c_str(), 1);
  EXPECT_TRUE(LoadDockerConfig("")->auths.empty());
  EXPECT_EQ(LoadDockerConfig(dir + "/absent.json").status().code(), Code::kNotFound);
  ::unsetenv("DOCKER_CONFIG");
}

// The names a Project's credentials list registry credentials by: every host Gantry's own
// credentials and the Docker config's auths name, normalised, once each.
TEST(DockerConfigTest, CredentialHostsNameOwnAndDockerConfigHostsOnce) {
  std::string dir = ::testing::TempDir() + "/credential-hosts";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"auths": {"https://index.docker.io/v1/": {"auth": ")" +
                                             Base64Encode("u:p") + R"("}, "ghcr.io": {"username": "u", "password": "p"},
                                             "https://Registry.Example.com:5000": {"auth": ")" + Base64Encode("u:p") + R"("}}})";
  auto hosts = CredentialHosts({.credentials = {{.host = "registry.example.com:5000"}, {.host = "Quay.io"}},
                                .docker_config = dir + "/config.json"});
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  EXPECT_EQ(*hosts, (std::vector<std::string>{"docker.io", "ghcr.io", "quay.io", "registry.example.com:5000"}));
  EXPECT_EQ(RegistryHost("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(CredentialHosts({.docker_config = dir + "/missing.json"}).status().code(), Code::kNotFound);
}

TEST(LinkHeaderTest, FindsNext) {
  EXPECT_EQ(NextLink(R"(</v2/a/tags/list?last=b&n=2>; rel="next")"), "/v2/a/tags/list?last=b&n=2");
  EXPECT_EQ(NextLink(R"(<https://x/prev>; rel="prev", <https://x/next>; rel="next")"), "https://x/next");
  EXPECT_EQ(NextLink(""), "");
  EXPECT_EQ(NextLink(R"(<https://x/prev>; rel="prev")"), "");
}

}  // namespace
}  // namespace gantry::oci::internal
