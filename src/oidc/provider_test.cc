// Discovery, the Verifier's key cache, the device and code grants and the token file, against a
// provider played by a function (no network). The real provider is in
// test/integration/oidc_test.cc.

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "oidc/oidc.h"
#include "oidc/testing.h"

namespace gantry::oidc {
namespace {

using ::testing::HasSubstr;
using namespace gantry::oidc::testing;

constexpr char kProviderIssuer[] = "https://idp.example.com";

std::string Discovery(std::string_view issuer = kProviderIssuer) {
  return fmt::format(R"({{"issuer":"{0}","authorization_endpoint":"{0}/auth","token_endpoint":"{0}/token",)"
                     R"("device_authorization_endpoint":"{0}/device_authorization","jwks_uri":"{0}/keys",)"
                     R"("code_challenge_methods_supported":["S256"]}})",
                     issuer);
}

// A provider: answers each URL with the responses given for it, in order, repeating the last one;
// records the requests.
struct FakeProvider {
  std::map<std::string, std::vector<http::ClientResponse>> answers;  // consumed in order; the last one stays
  std::vector<http::ClientRequest> requests;
  bool down = false;

  void Answer(const std::string& url, int status, std::string body) { answers[url].push_back({status, {}, std::move(body)}); }
  int Count(std::string_view url) const {
    int n = 0;
    for (const auto& r : requests) n += r.url == url;
    return n;
  }
  Transport transport() {
    return [this](const http::ClientRequest& r) -> Result<http::ClientResponse> {
      requests.push_back(r);
      if (down) return UnavailableError("{} {}: Couldn't connect to server", r.method, r.url);
      auto it = answers.find(r.url);
      if (it == answers.end() || it->second.empty()) return http::ClientResponse{404, {}, "not found"};
      http::ClientResponse out = it->second.front();
      if (it->second.size() > 1) it->second.erase(it->second.begin());
      return out;
    };
  }
};

TEST(CheckIssuerUrlTest, HttpsOrLoopbackHttpOnly) {
  EXPECT_TRUE(CheckIssuerUrl("https://idp.example.com").ok());
  EXPECT_TRUE(CheckIssuerUrl("https://idp.example.com/realms/x/").ok());
  EXPECT_TRUE(CheckIssuerUrl("http://127.0.0.1:5556").ok());
  EXPECT_TRUE(CheckIssuerUrl("http://localhost:5556/dex").ok());
  EXPECT_TRUE(CheckIssuerUrl("http://[::1]:5556").ok());
  for (const char* bad : {"http://idp.example.com", "http://127.0.0.1.evil.com", "ftp://x", "idp.example.com",
                          "https://", "https://idp.example.com?x=1", "https://idp.example.com#f",
                          "https://user:pw@idp.example.com"}) {
    Status s = CheckIssuerUrl(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(bad));
  }
}

TEST(DiscoveryTest, ParsesTheEndpoints) {
  auto m = ParseProviderMetadata(Discovery(), kProviderIssuer);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->token_endpoint, "https://idp.example.com/token");
  EXPECT_EQ(m->jwks_uri, "https://idp.example.com/keys");
  EXPECT_EQ(m->device_authorization_endpoint, "https://idp.example.com/device_authorization");
  // A trailing slash on one side only is the same issuer.
  EXPECT_TRUE(ParseProviderMetadata(Discovery(), "https://idp.example.com/").ok());
}

TEST(DiscoveryTest, RefusesAnotherIssuerOrMissingOrInsecureEndpoints) {
  auto m = ParseProviderMetadata(Discovery("https://evil.example.com"), kProviderIssuer);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("discovery document of https://idp.example.com: it names issuer \"https://evil.example.com\""));
  m = ParseProviderMetadata(R"({"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/t"})", kProviderIssuer);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("no jwks_uri"));
  m = ParseProviderMetadata(
      R"({"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/t","jwks_uri":"http://keys.example.com/k"})",
      kProviderIssuer);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("jwks_uri"));
  EXPECT_FALSE(ParseProviderMetadata("[]", kProviderIssuer).ok());
}

TEST(DiscoveryTest, ErrorsNameTheIssuer) {
  FakeProvider idp;
  auto m = Discover(idp.transport(), kProviderIssuer);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnavailable);
  EXPECT_THAT(m.status().message(), HasSubstr("OIDC discovery of https://idp.example.com: GET "
                                              "https://idp.example.com/.well-known/openid-configuration: HTTP 404"));
  idp.down = true;
  m = Discover(idp.transport(), kProviderIssuer);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("OIDC discovery of https://idp.example.com: GET"));
}

class VerifierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    key1_ = NewRsaKey().release();
    key2_ = NewRsaKey().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(key1_);
    EVP_PKEY_free(key2_);
  }
  VerifierTest() {
    clock_.Advance(std::chrono::seconds(1'800'000'000));
    idp_.Answer(std::string(kProviderIssuer) + "/.well-known/openid-configuration", 200, Discovery());
    VerifierOptions o;
    o.verify.issuer = kProviderIssuer;
    o.verify.client_id = "gantry";
    auto v = Verifier::Create(o, idp_.transport(), &clock_);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    verifier_ = std::move(*v);
  }
  void ServeKeys(std::initializer_list<std::pair<EVP_PKEY*, const char*>> keys) {
    std::string list;
    for (auto [k, kid] : keys) list += (list.empty() ? "" : ",") + Jwk(k, kid);
    idp_.answers[kKeys].clear();  // the provider now serves these
    idp_.Answer(kKeys, 200, fmt::format(R"({{"keys":[{}]}})", list));
  }
  std::string Token(EVP_PKEY* key, std::string_view kid) {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(clock_.WallNow().time_since_epoch()).count();
    return MakeJwt(key, fmt::format(R"({{"alg":"RS256","kid":"{}"}})", kid),
                   fmt::format(R"({{"iss":"{}","sub":"u1","aud":"gantry","iat":{},"exp":{}}})", kProviderIssuer, now, now + 600));
  }

  static inline EVP_PKEY* key1_ = nullptr;
  static inline EVP_PKEY* key2_ = nullptr;
  const std::string kKeys = std::string(kProviderIssuer) + "/keys";
  FakeClock clock_;
  FakeProvider idp_;
  std::unique_ptr<Verifier> verifier_;
};

TEST_F(VerifierTest, CreateRefusesBadOptions) {
  VerifierOptions o;
  o.verify.issuer = "http://idp.example.com";
  o.verify.client_id = "gantry";
  EXPECT_EQ(Verifier::Create(o, idp_.transport(), &clock_).status().code(), Code::kInvalidArgument);
  o.verify.issuer = kProviderIssuer;
  o.verify.client_id = "";
  EXPECT_THAT(Verifier::Create(o, idp_.transport(), &clock_).status().message(), HasSubstr("no client ID"));
  o.verify.client_id = "gantry";
  o.verify.algorithms = {"HS256"};
  EXPECT_THAT(Verifier::Create(o, idp_.transport(), &clock_).status().message(), HasSubstr("HS256 is not supported"));
  EXPECT_TRUE(idp_.requests.empty());
}

TEST_F(VerifierTest, FetchesDiscoveryAndKeysOnceAndCaches) {
  ServeKeys({{key1_, "k1"}});
  for (int i = 0; i < 3; ++i) {
    auto id = verifier_->Verify(Token(key1_, "k1"));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_EQ(id->subject, "u1");
  }
  EXPECT_EQ(idp_.requests.size(), 2u);  // discovery, keys
}

TEST_F(VerifierTest, UnknownKidRefreshesTheKeysAtMostOncePerInterval) {
  ServeKeys({{key1_, "k1"}});
  ASSERT_TRUE(verifier_->Verify(Token(key1_, "k1")).ok());
  // The provider rotates to k2; a token with k2 arrives before the interval has passed: no fetch.
  ServeKeys({{key1_, "k1"}, {key2_, "k2"}});
  clock_.Advance(std::chrono::seconds(5));
  auto r = verifier_->Verify(Token(key2_, "k2"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(idp_.Count(kKeys), 1);
  // After it: one fetch, and the token verifies.
  clock_.Advance(std::chrono::seconds(30));
  r = verifier_->Verify(Token(key2_, "k2"));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(idp_.Count(kKeys), 2);
  // Garbage kids do not make it fetch again and again.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(verifier_->Verify(Token(key2_, "nope")).ok());
  EXPECT_EQ(idp_.Count(kKeys), 2);
}

TEST_F(VerifierTest, OldKeysAreFetchedAgain) {
  ServeKeys({{key1_, "k1"}});
  ASSERT_TRUE(verifier_->Verify(Token(key1_, "k1")).ok());
  clock_.Advance(std::chrono::hours(1));
  ASSERT_TRUE(verifier_->Verify(Token(key1_, "k1")).ok());
  EXPECT_EQ(idp_.Count(kKeys), 2);
}

TEST_F(VerifierTest, KeepsItsKeysWhileTheProviderIsDown) {
  ServeKeys({{key1_, "k1"}});
  ASSERT_TRUE(verifier_->Verify(Token(key1_, "k1")).ok());
  idp_.down = true;
  clock_.Advance(std::chrono::hours(2));
  auto r = verifier_->Verify(Token(key1_, "k1"));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(VerifierTest, UnreachableProviderWithoutKeysIsUnavailable) {
  idp_.down = true;
  auto r = verifier_->Verify(Token(key1_, "k1"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("OIDC discovery of https://idp.example.com"));
}

TEST_F(VerifierTest, ExpiredTokenIsUnauthenticatedWithTheReason) {
  ServeKeys({{key1_, "k1"}});
  std::string jwt = Token(key1_, "k1");
  clock_.Advance(std::chrono::minutes(12));
  auto r = verifier_->Verify(jwt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(r.status().reason(), kReasonExpired);
}

class DeviceFlowTest : public ::testing::Test {
 protected:
  DeviceFlowTest() : provider_(*ParseProviderMetadata(Discovery(), kProviderIssuer)) {}
  void Start(std::string body) { idp_.Answer(provider_.device_authorization_endpoint, 200, std::move(body)); }
  void Token(int status, std::string body) { idp_.Answer(provider_.token_endpoint, status, std::move(body)); }
  static std::string Error(std::string_view e) { return fmt::format(R"({{"error":"{}","error_description":"d"}})", e); }

  ProviderMetadata provider_;
  FakeProvider idp_;
  FakeClock clock_;
};

TEST_F(DeviceFlowTest, StartsPollsSlowsDownAndGetsTheTokens) {
  Start(R"({"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://idp.example.com/device",)"
        R"("verification_uri_complete":"https://idp.example.com/device?user_code=ABCD-EFGH","expires_in":300,"interval":5})");
  auto a = StartDeviceAuthorization(idp_.transport(), provider_, "gantry");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->user_code, "ABCD-EFGH");
  EXPECT_EQ(a->interval, std::chrono::seconds(5));
  EXPECT_EQ(idp_.requests[0].body, "client_id=gantry&scope=openid%20profile%20email%20offline_access");

  Token(400, Error("authorization_pending"));
  Token(400, Error("slow_down"));
  Token(400, Error("authorization_pending"));
  Token(200, R"({"access_token":"at","id_token":"it","token_type":"Bearer","expires_in":300})");
  auto t = WaitForDeviceTokens(idp_.transport(), provider_, "gantry", *a, clock_);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->id_token, "it");
  EXPECT_EQ(t->access_token, "at");
  // 5 s, 5 s (slow_down), then 10 s twice.
  EXPECT_EQ(clock_.Now().time_since_epoch(), std::chrono::seconds(30));
  EXPECT_EQ(idp_.requests.back().body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc&client_id=gantry");
}

TEST_F(DeviceFlowTest, DeniedExpiredAndOtherErrors) {
  Token(400, Error("access_denied"));
  auto p = PollDeviceToken(idp_.transport(), provider_, "gantry", "dc");
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(p.status().Is(Code::kPermissionDenied, kReasonAccessDenied)) << p.status().ToString();

  idp_.answers.clear();
  Token(400, Error("expired_token"));
  p = PollDeviceToken(idp_.transport(), provider_, "gantry", "dc");
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(p.status().Is(Code::kDeadlineExceeded, kReasonLoginExpired)) << p.status().ToString();

  idp_.answers.clear();
  Token(401, Error("invalid_client"));
  p = PollDeviceToken(idp_.transport(), provider_, "gantry", "dc");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kUnauthenticated);
  EXPECT_THAT(p.status().message(), HasSubstr("device login at https://idp.example.com: invalid_client: d"));

  idp_.answers.clear();
  Token(502, "<html>bad gateway</html>");
  p = PollDeviceToken(idp_.transport(), provider_, "gantry", "dc");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kUnavailable);
  EXPECT_THAT(p.status().message(), HasSubstr("HTTP 502"));
}

TEST_F(DeviceFlowTest, GivesUpWhenTheCodeExpires) {
  DeviceAuthorization a{.device_code = "dc", .user_code = "U", .verification_uri = "https://idp.example.com/device",
                        .verification_uri_complete = "", .expires_in = std::chrono::seconds(60),
                        .interval = std::chrono::seconds(5)};
  Token(400, Error("authorization_pending"));
  auto t = WaitForDeviceTokens(idp_.transport(), provider_, "gantry", a, clock_);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().Is(Code::kDeadlineExceeded, kReasonLoginExpired));
  EXPECT_EQ(idp_.requests.size(), 11u);  // at 5, 10, ... 55 s
}

TEST_F(DeviceFlowTest, ProviderWithoutDeviceGrant) {
  provider_.device_authorization_endpoint.clear();
  auto a = StartDeviceAuthorization(idp_.transport(), provider_, "gantry");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(a.status().message(), HasSubstr("https://idp.example.com offers no device authorization"));
}

TEST(CodeFlowTest, AuthorizationUrlCarriesStateNonceAndS256Challenge) {
  auto provider = *ParseProviderMetadata(Discovery(), kProviderIssuer);
  auto r = MakeAuthorizationRequest(provider, "gantry", "http://127.0.0.1:8400/callback");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->code_verifier.size(), 43u);
  EXPECT_NE(r->state, r->nonce);
  EXPECT_EQ(r->url, fmt::format("https://idp.example.com/auth?response_type=code&client_id=gantry&redirect_uri="
                                "http%3A%2F%2F127.0.0.1%3A8400%2Fcallback&scope=openid%20profile%20email&state={}&nonce={}"
                                "&code_challenge={}&code_challenge_method=S256",
                                r->state, r->nonce, PkceChallenge(r->code_verifier)));
  auto again = MakeAuthorizationRequest(provider, "gantry", "http://127.0.0.1:8400/callback");
  EXPECT_NE(again->state, r->state);
  EXPECT_NE(again->code_verifier, r->code_verifier);

  provider.code_challenge_methods_supported = {"plain"};
  EXPECT_EQ(MakeAuthorizationRequest(provider, "gantry", "http://127.0.0.1:8400/callback").status().code(),
            Code::kFailedPrecondition);
}

TEST(CodeFlowTest, ExchangeChecksStateThenSendsTheVerifier) {
  auto provider = *ParseProviderMetadata(Discovery(), kProviderIssuer);
  auto request = *MakeAuthorizationRequest(provider, "gantry", "http://127.0.0.1:8400/callback");
  FakeProvider idp;
  idp.Answer(provider.token_endpoint, 200, R"({"access_token":"at","id_token":"it"})");
  auto t = ExchangeCode(idp.transport(), provider, "gantry", request, "c0de", request.state + "x");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kPermissionDenied);
  EXPECT_TRUE(idp.requests.empty());

  t = ExchangeCode(idp.transport(), provider, "gantry", request, "c0de", request.state);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->id_token, "it");
  EXPECT_EQ(idp.requests[0].body, "grant_type=authorization_code&code=c0de&redirect_uri=http%3A%2F%2F127.0.0.1%3A8400%2F"
                                  "callback&client_id=gantry&code_verifier=" + request.code_verifier);
}

TEST(TokenFileTest, WrittenPrivateAndReadBack) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("oidc_test_" + RandomUrlSafe(6));
  std::string path = (dir / "gantry" / "token").string();
  ASSERT_TRUE(WriteTokenFile(path, "eyJ.a.b").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir / "gantry").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto t = ReadTokenFile(path);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "eyJ.a.b");
  EXPECT_EQ(ReadTokenFile((dir / "none").string()).status().code(), Code::kNotFound);

  const char* old = std::getenv("XDG_CONFIG_HOME");
  std::string saved = old != nullptr ? old : "";
  ::setenv("XDG_CONFIG_HOME", dir.c_str(), 1);
  EXPECT_EQ(DefaultTokenFile(), path);
  if (old != nullptr) {
    ::setenv("XDG_CONFIG_HOME", saved.c_str(), 1);
  } else {
    ::unsetenv("XDG_CONFIG_HOME");
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gantry::oidc
