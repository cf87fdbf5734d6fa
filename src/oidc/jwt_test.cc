// The JWT checks of oidc.h, one refusal per case, with keys generated here.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "oidc/oidc.h"
#include "oidc/testing.h"

namespace gantry::oidc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace gantry::oidc::testing;

constexpr int64_t kNow = 1'800'000'000;
const auto kNowTp = std::chrono::system_clock::time_point(std::chrono::seconds(kNow));
constexpr char kIssuer[] = "https://idp.example.com";

class JwtTest : public ::testing::Test {
 protected:
  // RSA key generation takes a quarter of a second: one pair of keys for the suite.
  static void SetUpTestSuite() {
    rsa_ = NewRsaKey().release();
    ec_ = NewP256Key().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(rsa_);
    EVP_PKEY_free(ec_);
  }
  JwtTest() {
    auto keys = KeySet::Parse(fmt::format(R"({{"keys":[{},{}]}})", Jwk(rsa_, "r1", R"("use":"sig","alg":"RS256",)"),
                                          Jwk(ec_, "e1")));
    EXPECT_TRUE(keys.ok()) << keys.status().ToString();
    keys_ = *keys;
    options_.issuer = kIssuer;
    options_.client_id = "gantry";
  }

  // Claims of a good token, with `extra` members first (a later duplicate would be refused, so
  // tests replace members with Claims(...) built from scratch instead).
  static std::string Claims(std::string_view extra = "", int64_t iat = kNow - 10, int64_t exp = kNow + 3600) {
    return fmt::format(R"({{{}"iss":"{}","sub":"u1","aud":"gantry","iat":{},"exp":{},"preferred_username":"alice",)"
                       R"("email":"alice@example.com","groups":["team-a","admins"]}})",
                       extra, kIssuer, iat, exp);
  }
  std::string Rs(std::string_view claims, std::string_view header = R"({"alg":"RS256","kid":"r1","typ":"JWT"})") {
    return MakeJwt(rsa_, header, claims);
  }
  Result<Identity> Verify(std::string_view jwt) { return VerifyJwt(jwt, keys_, options_, kNowTp); }
  // The token is refused as invalid, with `what` in the message.
  void ExpectRefused(std::string_view jwt, std::string_view what) {
    auto r = Verify(jwt);
    ASSERT_FALSE(r.ok()) << "accepted: " << jwt;
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << r.status().ToString();
    EXPECT_EQ(r.status().reason(), kReasonInvalidToken) << r.status().ToString();
    EXPECT_THAT(r.status().message(), HasSubstr(what));
    EXPECT_THAT(r.status().message(), HasSubstr(kIssuer));
  }

  static inline EVP_PKEY* rsa_ = nullptr;
  static inline EVP_PKEY* ec_ = nullptr;
  KeySet keys_;
  VerifyOptions options_;
};

TEST_F(JwtTest, GoodRs256TokenGivesTheIdentity) {
  auto id = Verify(Rs(Claims()));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->issuer, kIssuer);
  EXPECT_EQ(id->subject, "u1");
  EXPECT_EQ(id->name, "alice");
  EXPECT_EQ(id->email, "alice@example.com");
  EXPECT_THAT(id->groups, ElementsAre("team-a", "admins"));
  EXPECT_EQ(id->expires_at, kNowTp + std::chrono::seconds(3600));
}

TEST_F(JwtTest, GoodEs256TokenGivesTheIdentity) {
  auto id = Verify(MakeJwt(ec_, R"({"alg":"ES256","kid":"e1"})", Claims()));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->subject, "u1");
}

TEST_F(JwtTest, GroupsComeFromTheConfiguredClaim) {
  options_.groups_claim = "roles";
  auto id = Verify(Rs(Claims(R"("roles":"deployers",)")));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_THAT(id->groups, ElementsAre("deployers"));
  options_.groups_claim = "";
  id = Verify(Rs(Claims()));
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(id->groups.empty());
}

TEST_F(JwtTest, GroupsThatAreNotStringsAreRefused) {
  options_.groups_claim = "roles";
  ExpectRefused(Rs(Claims(R"("roles":[1,2],)")), "claim \"roles\" is not a list of strings");
  ExpectRefused(Rs(Claims(R"("roles":{"a":1},)")), "claim \"roles\" is not a list of strings");
}

TEST_F(JwtTest, NameFallsBackToEmailThenSubject) {
  auto id = Verify(Rs(fmt::format(R"({{"iss":"{}","sub":"u1","aud":"gantry","iat":{},"exp":{},"email":"a@x"}})", kIssuer,
                                  kNow, kNow + 60)));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->name, "a@x");
  id = Verify(Rs(fmt::format(R"({{"iss":"{}","sub":"u1","aud":"gantry","iat":{},"exp":{}}})", kIssuer, kNow, kNow + 60)));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->name, "u1");
}

TEST_F(JwtTest, AlgNoneIsRefused) {
  std::string input = B64Url(R"({"alg":"none"})") + "." + B64Url(Claims());
  ExpectRefused(input + ".", "algorithm \"none\" is not allowed");
  options_.algorithms = {"none"};
  auto r = Verify(input + ".");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);  // the configuration, refused
}

TEST_F(JwtTest, Hs256SignedWithThePublicKeyIsRefused) {
  for (const std::string& secret : {PublicPem(rsa_), Jwk(rsa_, "r1")}) {
    ExpectRefused(MakeHs256Jwt(secret, R"({"alg":"HS256","kid":"r1"})", Claims()), "algorithm \"HS256\" is not allowed");
  }
  options_.algorithms = {"RS256", "HS256"};
  auto r = Verify(MakeHs256Jwt(PublicPem(rsa_), R"({"alg":"HS256","kid":"r1"})", Claims()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_F(JwtTest, AlgorithmOutsideTheAllowListIsRefused) {
  options_.algorithms = {"ES256"};
  ExpectRefused(Rs(Claims()), "algorithm \"RS256\" is not allowed");
}

TEST_F(JwtTest, KeyOfTheWrongTypeIsRefused) {
  // An ES256 header pointing at the RSA key, and an RS256 header pointing at the EC key.
  ExpectRefused(MakeJwt(ec_, R"({"alg":"ES256","kid":"r1"})", Claims()), "key \"r1\" is RSA, not usable with ES256");
  ExpectRefused(MakeJwt(rsa_, R"({"alg":"RS256","kid":"e1"})", Claims()), "key \"e1\" is EC, not usable with RS256");
}

TEST_F(JwtTest, KeyForAnotherAlgIsRefused) {
  auto keys = KeySet::Parse(fmt::format(R"({{"keys":[{}]}})", Jwk(rsa_, "r1", R"("alg":"RS512",)")));
  ASSERT_TRUE(keys.ok());
  keys_ = *keys;
  ExpectRefused(Rs(Claims()), "key \"r1\" is for RS512, the token says RS256");
}

TEST_F(JwtTest, BadSignatureIsRefused) {
  std::string jwt = Rs(Claims());
  // Another body under the same signature.
  std::string other = Rs(Claims(R"("admin":true,)"));
  std::string forged = other.substr(0, other.rfind('.')) + jwt.substr(jwt.rfind('.'));
  ExpectRefused(forged, "bad signature");
  // Signed by a key that is not the provider's, under the provider's kid.
  auto stranger = NewRsaKey();
  ExpectRefused(MakeJwt(stranger.get(), R"({"alg":"RS256","kid":"r1"})", Claims()), "bad signature");
  // An ES256 signature of the wrong size.
  std::string es = MakeJwt(ec_, R"({"alg":"ES256","kid":"e1"})", Claims());
  ExpectRefused(es + "AAAA", "64 bytes");
}

TEST_F(JwtTest, UnknownKidIsRefused) {
  ExpectRefused(Rs(Claims(), R"({"alg":"RS256","kid":"r2"})"), "no key with kid \"r2\"");
}

TEST_F(JwtTest, NoKidUsesTheOnlyKeyOfItsType) {
  ASSERT_TRUE(Verify(Rs(Claims(), R"({"alg":"RS256"})")).ok());
  auto other = NewRsaKey();
  auto keys = KeySet::Parse(fmt::format(R"({{"keys":[{},{}]}})", Jwk(rsa_, "r1"), Jwk(other.get(), "r2")));
  ASSERT_TRUE(keys.ok());
  keys_ = *keys;
  ExpectRefused(Rs(Claims(), R"({"alg":"RS256"})"), "several keys");
}

TEST_F(JwtTest, CritHeaderIsRefused) {
  ExpectRefused(Rs(Claims(), R"({"alg":"RS256","kid":"r1","crit":["exp"]})"), "crit");
}

TEST_F(JwtTest, MalformedTokensAreRefused) {
  std::string jwt = Rs(Claims());
  ExpectRefused("", "not a JWT");
  ExpectRefused(jwt.substr(0, jwt.rfind('.')), "not a JWT");
  ExpectRefused(jwt + ".x", "not a JWT");
  ExpectRefused(B64Url(R"({"alg":"RS256","kid":"r1"})") + "=." + jwt.substr(jwt.find('.') + 1), "not base64url");
  ExpectRefused(" " + jwt, "not base64url");
  ExpectRefused(B64Url("not json") + jwt.substr(jwt.find('.')), "not JSON");
  ExpectRefused(B64Url("[1]") + jwt.substr(jwt.find('.')), "not a JSON object");
  ExpectRefused(Rs(Claims(), R"({"kid":"r1"})"), "no \"alg\"");
  ExpectRefused(std::string(17000, 'a'), "longer than");
}

TEST_F(JwtTest, DuplicateClaimsAreRefused) {
  // Two parsers that keep different duplicates would see different subjects.
  ExpectRefused(Rs(Claims(R"("sub":"admin",)")), "not JSON");
}

TEST_F(JwtTest, WrongIssuerIsRefused) {
  options_.issuer = "https://other.example.com";
  auto r = Verify(Rs(Claims()));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("issued by \"https://idp.example.com\""));
}

TEST_F(JwtTest, WrongAudienceIsRefused) {
  options_.client_id = "other";
  ExpectRefused(Rs(Claims()), "not for client \"other\" (aud: gantry)");
  options_.client_id = "gantry";
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"u","iat":{},"exp":{}}})", kIssuer, kNow, kNow + 60)),
                "not for client \"gantry\"");
}

TEST_F(JwtTest, SeveralAudiencesNeedAzpOfThisClient) {
  auto claims = [](std::string_view azp) {
    return fmt::format(R"({{"iss":"{}","sub":"u","aud":["gantry","other"],{}"iat":{},"exp":{}}})", kIssuer, azp, kNow,
                       kNow + 60);
  };
  ExpectRefused(Rs(claims("")), "authorized party \"\" is not client \"gantry\"");
  ExpectRefused(Rs(claims(R"("azp":"other",)")), "authorized party \"other\"");
  EXPECT_TRUE(Verify(Rs(claims(R"("azp":"gantry",)"))).ok());
}

TEST_F(JwtTest, ExpiryIsRequiredAndChecked) {
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"u","aud":"gantry","iat":{}}})", kIssuer, kNow)), "no \"exp\"");
  auto r = Verify(Rs(Claims("", kNow - 3600, kNow - 61)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(r.status().reason(), kReasonExpired);
  EXPECT_THAT(r.status().message(), HasSubstr("expired at 2027-01-15T07:58:59Z"));
  // Within the leeway: accepted.
  EXPECT_TRUE(Verify(Rs(Claims("", kNow - 3600, kNow - 59))).ok());
  options_.leeway = std::chrono::seconds(0);
  EXPECT_FALSE(Verify(Rs(Claims("", kNow - 3600, kNow))).ok());
  options_.leeway = std::chrono::seconds(60);
  ExpectRefused(Rs(Claims("", kNow + 30, kNow + 20)), "expires before it was issued");
}

TEST_F(JwtTest, DatesMustBeNumbers) {
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"u","aud":"gantry","iat":{},"exp":"tomorrow"}})", kIssuer, kNow)),
                "\"exp\" is not a date");
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"u","aud":"gantry","iat":-5,"exp":{}}})", kIssuer, kNow + 60)),
                "\"iat\" is not a date");
  // Fractional seconds are valid NumericDates.
  EXPECT_TRUE(
      Verify(Rs(fmt::format(R"({{"iss":"{}","sub":"u","aud":"gantry","iat":{}.5,"exp":{}.25}})", kIssuer, kNow, kNow + 60)))
          .ok());
}

TEST_F(JwtTest, IssuedInTheFutureIsRefused) {
  ExpectRefused(Rs(Claims("", kNow + 120, kNow + 3600)), "issued in the future");
  EXPECT_TRUE(Verify(Rs(Claims("", kNow + 30, kNow + 3600))).ok());
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"u","aud":"gantry","exp":{}}})", kIssuer, kNow + 60)), "no \"iat\"");
}

TEST_F(JwtTest, NotYetValidIsRefused) {
  ExpectRefused(Rs(Claims(fmt::format(R"("nbf":{},)", kNow + 600))), "not valid before");
  EXPECT_TRUE(Verify(Rs(Claims(fmt::format(R"("nbf":{},)", kNow + 30)))).ok());
}

TEST_F(JwtTest, LifetimeLongerThanAllowedIsRefused) {
  ExpectRefused(Rs(Claims("", kNow - 10, kNow + 25 * 3600)), "longer than the 86400s allowed");
  options_.max_lifetime = std::chrono::minutes(10);
  ExpectRefused(Rs(Claims()), "longer than the 600s allowed");
}

TEST_F(JwtTest, SubjectIsRequired) {
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","aud":"gantry","iat":{},"exp":{}}})", kIssuer, kNow, kNow + 60)), "no \"sub\"");
  ExpectRefused(Rs(fmt::format(R"({{"iss":"{}","sub":"","aud":"gantry","iat":{},"exp":{}}})", kIssuer, kNow, kNow + 60)),
                "no \"sub\"");
}

TEST_F(JwtTest, NonceIsCheckedWhenExpected) {
  options_.nonce = "n-123";
  ExpectRefused(Rs(Claims()), "nonce");
  ExpectRefused(Rs(Claims(R"("nonce":"n-999",)")), "nonce");
  EXPECT_TRUE(Verify(Rs(Claims(R"("nonce":"n-123",)"))).ok());
}

TEST(KeySetTest, RefusesWeakOrBrokenKeysAndSkipsOthers) {
  auto small = NewRsaKey(1024);
  auto r = KeySet::Parse(fmt::format(R"({{"keys":[{}]}})", Jwk(small.get(), "s")));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("JWKS key 0 (kid s): RSA key of 1024 bits"));

  // A P-256 point that is not on the curve.
  std::string zero = B64Url(std::string(32, '\x01'));
  r = KeySet::Parse(fmt::format(R"({{"keys":[{{"kty":"EC","crv":"P-256","kid":"bad","x":"{}","y":"{}"}}]}})", zero, zero));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("kid bad"));

  auto ec = NewP256Key();
  r = KeySet::Parse(fmt::format(R"({{"keys":[{{"kty":"oct","k":"c2VjcmV0"}},{},{{"kty":"OKP","crv":"Ed25519","x":"AA"}},{}]}})",
                                Jwk(ec.get(), "enc", R"("use":"enc",)"), Jwk(ec.get(), "sig")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->keys().size(), 1u);
  EXPECT_EQ(r->keys()[0].kid, "sig");

  EXPECT_FALSE(KeySet::Parse("not json").ok());
  EXPECT_FALSE(KeySet::Parse(R"({"keys":{}})").ok());
  EXPECT_FALSE(KeySet::Parse(R"({"keys":[{"kty":"RSA","kid":"x","n":"AQAB"}]})").ok());
}

TEST(PkceTest, ChallengeIsTheRfc7636Example) {
  EXPECT_EQ(PkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

TEST(PkceTest, RandomValuesAreUrlSafeAndFresh) {
  std::string a = RandomUrlSafe(32), b = RandomUrlSafe(32);
  EXPECT_EQ(a.size(), 43u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos);
}

}  // namespace
}  // namespace gantry::oidc
