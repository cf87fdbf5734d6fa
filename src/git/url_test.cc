#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "base/base64.h"
#include "git/git.h"
#include "git/internal/remote.h"

namespace gantry::git {
namespace {

TEST(ValidateUrlTest, AcceptsRemoteUrls) {
  for (std::string_view url :
       {"https://github.com/org/repo.git", "http://127.0.0.1:8080/repo.git", "HTTPS://Example.com/r",
        "ssh://git@github.com/org/repo.git", "ssh://git@[::1]:2222/repo.git", "git@github.com:org/repo.git",
        "github.com:org/repo"}) {
    EXPECT_TRUE(ValidateUrl(url, false).ok()) << url << ": " << ValidateUrl(url, false).ToString();
  }
  EXPECT_TRUE(ValidateUrl("file:///srv/git/repo.git", true).ok());
}

TEST(ValidateUrlTest, RefusesDangerousOrMalformedUrls) {
  struct Bad {
    std::string_view url;
    std::string_view why;
  };
  const Bad cases[] = {
      {"ext::sh -c touch% /tmp/pwned", "whitespace"},
      {"ext::ssh-evil", "transport syntax"},
      {"fd::17", "transport syntax"},
      {"file:///srv/git/repo.git", "not allowed"},
      {"/srv/git/repo.git", "local paths"},
      {"./repo", "local paths"},
      {"repo", "local paths"},
      {"https://user:secret@github.com/org/repo.git", "credentials in the URL"},
      {"https://token@github.com/org/repo.git", "credentials in the URL"},
      {"ssh://git:pw@github.com/org/repo.git", "password in the URL"},
      {"https://github.com/org/repo.git\nhttps://evil", "control characters"},
      {std::string_view("https://github.com/a\0b", 22), "control characters"},
      {"https:///repo.git", "no host"},
      {"https://github.com", "no repository path"},
      {"ssh://-oProxyCommand=evil/repo", "beginning with '-'"},
      {"-oProxyCommand=evil:repo", "beginning with '-'"},
      {"git://github.com/org/repo.git", "not supported"},
      {"ftp://example.com/repo.git", "not supported"},
      {"https://example.com:http/r", "port"},
      {"C:/repos/x", "Windows drive"},
  };
  for (const Bad& c : cases) {
    Status s = ValidateUrl(c.url, false);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << c.url;
    EXPECT_NE(s.message().find(c.why), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find("secret"), std::string::npos) << "leaks the password: " << s.message();
  }
  EXPECT_EQ(ValidateUrl("file://host/repo.git", true).code(), Code::kInvalidArgument);
}

TEST(ScrubUrlTest, RemovesUserinfo) {
  EXPECT_EQ(ScrubUrl("https://u:secret@host/r.git"), "https://***@host/r.git");
  EXPECT_EQ(ScrubUrl("https://host/r.git"), "https://host/r.git");
  EXPECT_EQ(ScrubUrl("error fetching https://tok@host/x: 404"), "error fetching https://***@host/x: 404");
}

TEST(ValidateRefNameTest, FollowsCheckRefFormat) {
  for (std::string_view good : {"main", "feature/x", "release-1.2", "v1.2.3", "a.b", "deploy/prod/eu"}) {
    EXPECT_TRUE(ValidateRefName(good).ok()) << good << ": " << ValidateRefName(good).ToString();
  }
  for (std::string_view bad : {"", "-main", "--upload-pack=evil", "a..b", "a@{1}", "@", "a b", "a~1",
                               "a^", "a:b", "a?", "a*", "a[b", "a\\b", "/a", "a/", "a//b", ".hidden",
                               "a/.b", "a.lock", "a/b.lock/c", "a.", "a\x01", "a\x7f"}) {
    EXPECT_EQ(ValidateRefName(bad).code(), Code::kInvalidArgument) << "accepted: " << bad;
  }
}

TEST(PathChangedTest, MatchesPrefixesByComponent) {
  std::vector<std::string> changed = {"apps/web/deploy.yaml", "README.md"};
  EXPECT_TRUE(PathChanged(changed, "apps/web"));
  EXPECT_TRUE(PathChanged(changed, "apps/web/"));
  EXPECT_TRUE(PathChanged(changed, "apps"));
  EXPECT_TRUE(PathChanged(changed, "README.md"));
  EXPECT_TRUE(PathChanged(changed, ""));
  EXPECT_FALSE(PathChanged(changed, "apps/we"));
  EXPECT_FALSE(PathChanged(changed, "apps/worker"));
  EXPECT_FALSE(PathChanged({}, ""));
}

TEST(HostOfTest, HostAndPortWithoutUser) {
  EXPECT_EQ(HostOf("https://git.example.com/org/repo.git"), "git.example.com");
  EXPECT_EQ(HostOf("https://git.example.com:8443/org/repo.git"), "git.example.com:8443");
  EXPECT_EQ(HostOf("ssh://git@git.example.com:2222/org/repo.git"), "git.example.com:2222");
  EXPECT_EQ(HostOf("git@github.com:org/repo.git"), "github.com");
  EXPECT_EQ(HostOf("file:///srv/repo.git"), "");
}

TEST(CredentialsForTest, PicksTheEntryOfTheUrlsHost) {
  std::vector<Credentials> list{{.host = "a.example.com", .username = "a", .password = "1"},
                                {.host = "b.example.com:8443", .username = "b", .password = "2"}};
  EXPECT_EQ(CredentialsFor(list, "https://a.example.com:9000/r.git")->username, "a");  // no port: any port
  EXPECT_EQ(CredentialsFor(list, "https://b.example.com:8443/r.git")->username, "b");
  EXPECT_FALSE(CredentialsFor(list, "https://b.example.com/r.git"));
  EXPECT_FALSE(CredentialsFor(list, "https://c.example.com/r.git"));
}

TEST(CredentialsApplyTest, BindsToHostSchemeAndPort) {
  Credentials c{.host = "git.example.com", .username = "u", .password = "p"};
  EXPECT_TRUE(internal::CredentialsApply(c, "https", "https://git.example.com/org/repo.git"));
  EXPECT_TRUE(internal::CredentialsApply(c, "https", "https://GIT.example.com:8443/org/repo.git"));
  EXPECT_FALSE(internal::CredentialsApply(c, "https", "https://evil.example.com/org/repo.git"));
  EXPECT_FALSE(internal::CredentialsApply(c, "https", "https://git.example.com.evil.com/r"));
  EXPECT_FALSE(internal::CredentialsApply(c, "https", "http://git.example.com/org/repo.git"))
      << "a downgrade to http must not get https credentials";
  EXPECT_FALSE(internal::CredentialsApply(c, "https", "not a url"));
  Credentials ported{.host = "127.0.0.1:8080"};
  EXPECT_TRUE(internal::CredentialsApply(ported, "http", "http://127.0.0.1:8080/r.git"));
  EXPECT_FALSE(internal::CredentialsApply(ported, "http", "http://127.0.0.1:9090/r.git"));
  Credentials empty{};
  EXPECT_FALSE(internal::CredentialsApply(empty, "https", "https://git.example.com/r"));
}

std::string Blob(std::string_view base64) { return Base64Decode(base64).value_or("?"); }

TEST(KnownHostsTest, ChecksHostKeys) {
  std::ifstream in("testdata/known_hosts");
  std::stringstream text;
  text << in.rdbuf();
  const std::string kh = text.str();
  ASSERT_FALSE(kh.empty()) << "run from src/git (ctest does)";
  const std::string k1 = Blob("AAAAC3NzaC1lZDI1NTE5AAAAIPwa01in+cHCigma5MiCpchEL37g8m9axvi1D9+maZ4X");
  const std::string k2 = Blob("AAAAC3NzaC1lZDI1NTE5AAAAICyOVOG9U7PvmJqt8XdQMt+wrsWPPYYWn5OMubTUzPri");
  const std::string k3 = Blob("AAAAC3NzaC1lZDI1NTE5AAAAILlRj8FelTQahCP8/e0iGpJ7jJCUgr5m9FfVxiBXzzcF");

  EXPECT_TRUE(internal::CheckKnownHost(kh, "git.example.com", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "GIT.EXAMPLE.COM", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "192.0.2.10", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "git.example.com", 2222, k2).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "a.wild.example.com", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "hashed.example.com", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost(kh, "hashed.example.com", 2222, k2).ok());

  Status mismatch = internal::CheckKnownHost(kh, "git.example.com", 22, k2);
  EXPECT_EQ(mismatch.code(), Code::kPermissionDenied);
  EXPECT_NE(mismatch.message().find("differs"), std::string::npos) << mismatch.message();
  EXPECT_EQ(internal::CheckKnownHost(kh, "git.example.com", 2222, k1).code(), Code::kPermissionDenied)
      << "a key is bound to its port";
  EXPECT_EQ(internal::CheckKnownHost(kh, "hashed.example.com", 22, k2).code(), Code::kPermissionDenied);
  Status unknown = internal::CheckKnownHost(kh, "other.example.org", 22, k1);
  EXPECT_EQ(unknown.code(), Code::kPermissionDenied);
  EXPECT_NE(unknown.message().find("not in known_hosts"), std::string::npos) << unknown.message();
  EXPECT_EQ(internal::CheckKnownHost(kh, "evil.wild.example.com", 22, k1).code(), Code::kPermissionDenied)
      << "negated patterns exclude";
  Status revoked = internal::CheckKnownHost(kh, "revoked.example.com", 22, k3);
  EXPECT_NE(revoked.message().find("revoked"), std::string::npos) << revoked.message();
  // @cert-authority lines do not make a host known by their CA key.
  EXPECT_EQ(internal::CheckKnownHost(kh, "ca.example.com", 22, k3).code(), Code::kPermissionDenied);
  EXPECT_EQ(internal::CheckKnownHost("", "git.example.com", 22, k1).code(), Code::kPermissionDenied);
}

// Found by fuzz/git_url: a pattern of many stars took exponential time against a host it does not
// match (2^60 steps here before the fix), and known_hosts comes from a user's Secret.
TEST(KnownHostsTest, PatternsMatchInPolynomialTime) {
  const std::string k1 = Blob("AAAAC3NzaC1lZDI1NTE5AAAAIPwa01in+cHCigma5MiCpchEL37g8m9axvi1D9+maZ4X");
  const std::string key = " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwa01in+cHCigma5MiCpchEL37g8m9axvi1D9+maZ4X\n";
  const std::string stars(60, '*');
  EXPECT_EQ(internal::CheckKnownHost(stars + "x" + key, "git.example.com", 22, k1).code(), Code::kPermissionDenied);
  EXPECT_TRUE(internal::CheckKnownHost(stars + "m" + key, "git.example.com", 22, k1).ok());
  EXPECT_TRUE(internal::CheckKnownHost("g*t.*x?mple.c*m" + key, "git.example.com", 22, k1).ok());
  EXPECT_EQ(internal::CheckKnownHost("g*t.*x?mple.c*n" + key, "git.example.com", 22, k1).code(),
            Code::kPermissionDenied);
}

}  // namespace
}  // namespace gantry::git
