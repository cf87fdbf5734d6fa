// gantry::oidc and `gantry login` against a real OpenID Provider: the example OP of
// github.com/zitadel/oidc/v3 (test/env/oidc.sh). The test plays the person at the browser: it
// fetches the provider's pages and submits its login forms over HTTP.

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/process.h"
#include "http/client.h"
#include "oidc/oidc.h"
#include "server/access.h"
#include "server/browser_login.h"
#include "server/ci_front.h"
#include "store/store.h"
#include "test/env/testenv.h"
#include "test/fakes/no_step_executor.h"

namespace gantry {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

testenv::Server& Op() { return testenv::Shared("oidc.sh"); }

// The person at the browser: one cookie jar, no redirects followed (the test follows them).
class Browser {
 public:
  explicit Browser(std::string base) : base_(std::move(base)) {}

  http::ClientResponse Get(const std::string& url) { return Send("GET", url, ""); }
  http::ClientResponse Post(const std::string& url, const std::string& form) { return Send("POST", url, form); }
  // An absolute URL for a Location or form action that may be relative to the provider.
  std::string Absolute(const std::string& url) const { return url.starts_with("/") ? base_ + url : url; }

 private:
  http::ClientResponse Send(const char* method, const std::string& url, const std::string& form) {
    http::ClientRequest r{.method = method, .url = Absolute(url)};
    if (!form.empty()) {
      r.headers["content-type"] = "application/x-www-form-urlencoded";
      r.body = form;
    }
    if (!cookie_.empty()) r.headers["cookie"] = cookie_;
    auto response = client_.Send(r);
    GANTRY_CHECK(response.ok());
    if (auto c = response->headers.find("set-cookie"); c != response->headers.end()) {
      cookie_ = c->second.substr(0, c->second.find(';'));
    }
    return std::move(*response);
  }

  std::string base_;
  std::string cookie_;
  http::Client client_{{.timeout = std::chrono::seconds(10)}};
};

std::string FormValue(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// The first match of `pattern`'s group 1 in `text`, "" when none.
std::string Find(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m[1].str() : "";
}

// The person opens the verification page, logs in with the device page's form and allows (or
// denies) the device. Returns the last page's body.
std::string ApproveDevice(const oidc::DeviceAuthorization& a, const std::string& user, const std::string& password,
                          const std::string& action = "allowed") {
  Browser browser(Op().Get("OIDC_ISSUER"));
  auto page = browser.Get(a.verification_uri_complete);
  EXPECT_EQ(page.status, 200);
  std::string form_action = Find(page.body, R"re(<form method="POST" action="([^"]+)")re");
  EXPECT_EQ(Find(page.body, R"re(name="user_code" value="([^"]+)")re"), a.user_code);
  auto confirm = browser.Post(form_action, fmt::format("user_code={}&username={}&password={}", FormValue(a.user_code),
                                                       FormValue(user), FormValue(password)));
  // A failed login sends the person back to the code page, which shows why.
  if (confirm.status == 303) return browser.Get(confirm.headers["location"]).body;
  EXPECT_EQ(confirm.status, 200);
  auto done = browser.Get("/device/confirm?action=" + action);
  EXPECT_EQ(done.status, 200);
  return done.body;
}

class OidcTest : public ::testing::Test {
 protected:
  OidcTest() : transport_(oidc::HttpTransport({.timeout = std::chrono::seconds(10)})) {
    issuer_ = Op().Get("OIDC_ISSUER");
    client_id_ = Op().Get("OIDC_CLIENT_ID");
    auto p = oidc::Discover(transport_, issuer_);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (p.ok()) provider_ = *p;
  }

  std::unique_ptr<oidc::Verifier> NewVerifier(Clock* clock = &SystemClock(), std::string client_id = "") {
    oidc::VerifierOptions o;
    o.verify.issuer = issuer_;
    o.verify.client_id = client_id.empty() ? client_id_ : client_id;
    o.verify.groups_claim = Op().Get("OIDC_GROUPS_CLAIM");
    auto v = oidc::Verifier::Create(o, transport_, clock);
    GANTRY_CHECK(v.ok());
    return std::move(*v);
  }

  // A device login of `user`, completed by the test as the person; the tokens.
  oidc::Tokens DeviceLogin(const std::string& user, const std::string& password) {
    auto a = oidc::StartDeviceAuthorization(transport_, provider_, client_id_, "openid profile email");
    GANTRY_CHECK(a.ok());
    EXPECT_THAT(ApproveDevice(*a, user, password), HasSubstr("Device authorization allowed"));
    // The person is done: the first poll gets the tokens, no need to wait the interval.
    auto poll = oidc::PollDeviceToken(transport_, provider_, client_id_, a->device_code);
    GANTRY_CHECK(poll.ok());
    EXPECT_EQ(poll->state, oidc::PollState::kDone);
    return poll->tokens;
  }

  oidc::Transport transport_;
  std::string issuer_, client_id_;
  oidc::ProviderMetadata provider_;
};

TEST_F(OidcTest, DiscoveryFindsTheEndpoints) {
  EXPECT_EQ(provider_.issuer, issuer_);
  EXPECT_EQ(provider_.token_endpoint, issuer_ + "/oauth/token");
  EXPECT_EQ(provider_.device_authorization_endpoint, issuer_ + "/device_authorization");
  EXPECT_EQ(provider_.jwks_uri, issuer_ + "/keys");
  EXPECT_THAT(provider_.code_challenge_methods_supported, ::testing::Contains("S256"));
}

TEST_F(OidcTest, DeviceLoginGivesTokensThatVerifyWithGroups) {
  auto tokens = DeviceLogin(Op().Get("OIDC_DEV_USER"), Op().Get("OIDC_DEV_PASSWORD"));
  auto verifier = NewVerifier();
  auto id = verifier->Verify(tokens.id_token);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->issuer, issuer_);
  EXPECT_EQ(id->subject, "test-user2");
  EXPECT_EQ(id->name, "test-user2");
  EXPECT_EQ(id->email, "test-user2@example.com");
  EXPECT_THAT(id->groups, ElementsAre("team-a"));
  EXPECT_GT(id->expires_at, std::chrono::system_clock::now());
  // The JWT access token (aud = the client) verifies too, with the same subject and groups.
  auto access = verifier->Verify(tokens.access_token);
  ASSERT_TRUE(access.ok()) << access.status().ToString();
  EXPECT_EQ(access->subject, "test-user2");
  EXPECT_THAT(access->groups, ElementsAre("team-a"));
}

TEST_F(OidcTest, AdminHasBothGroupsAndPlainUserNone) {
  auto verifier = NewVerifier();
  auto admin = verifier->Verify(DeviceLogin(Op().Get("OIDC_ADMIN_USER"), Op().Get("OIDC_ADMIN_PASSWORD")).id_token);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  EXPECT_EQ(admin->name, "test-user@localhost");
  EXPECT_THAT(admin->groups, ElementsAre("gantry-admins", "team-a"));
  auto plain = verifier->Verify(DeviceLogin(Op().Get("OIDC_PLAIN_USER"), Op().Get("OIDC_PLAIN_PASSWORD")).id_token);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_TRUE(plain->groups.empty());
}

TEST_F(OidcTest, PendingUntilTheUserActsAndDeniedWhenTheyDeny) {
  auto a = oidc::StartDeviceAuthorization(transport_, provider_, client_id_, "openid");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto poll = oidc::PollDeviceToken(transport_, provider_, client_id_, a->device_code);
  ASSERT_TRUE(poll.ok()) << poll.status().ToString();
  EXPECT_EQ(poll->state, oidc::PollState::kPending);
  // A wrong password leaves it pending.
  EXPECT_THAT(ApproveDevice(*a, Op().Get("OIDC_DEV_USER"), "wrong"), HasSubstr("username or password wrong"));
  poll = oidc::PollDeviceToken(transport_, provider_, client_id_, a->device_code);
  ASSERT_TRUE(poll.ok());
  EXPECT_EQ(poll->state, oidc::PollState::kPending);
  EXPECT_THAT(ApproveDevice(*a, Op().Get("OIDC_DEV_USER"), Op().Get("OIDC_DEV_PASSWORD"), "denied"),
              HasSubstr("Device authorization denied"));
  poll = oidc::PollDeviceToken(transport_, provider_, client_id_, a->device_code);
  ASSERT_FALSE(poll.ok());
  EXPECT_TRUE(poll.status().Is(Code::kPermissionDenied, oidc::kReasonAccessDenied)) << poll.status().ToString();
}

TEST_F(OidcTest, ExpiredTokenIsRefused) {
  auto tokens = DeviceLogin(Op().Get("OIDC_DEV_USER"), Op().Get("OIDC_DEV_PASSWORD"));
  // The same real token, verified two hours later (the provider's ID tokens live one hour).
  FakeClock later;
  later.Advance(std::chrono::system_clock::now().time_since_epoch() + std::chrono::hours(2));
  auto id = NewVerifier(&later)->Verify(tokens.id_token);
  ASSERT_FALSE(id.ok());
  EXPECT_TRUE(id.status().Is(Code::kUnauthenticated, oidc::kReasonExpired)) << id.status().ToString();
  EXPECT_THAT(id.status().message(), HasSubstr("token from " + issuer_ + ": expired at"));
}

TEST_F(OidcTest, ForeignTokensAreRefused) {
  auto tokens = DeviceLogin(Op().Get("OIDC_DEV_USER"), Op().Get("OIDC_DEV_PASSWORD"));
  // For another client of the same provider.
  auto id = NewVerifier(&SystemClock(), "other-client")->Verify(tokens.id_token);
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("not for client \"other-client\""));

  // From another provider (its own signing key and issuer), with the same users and client.
  auto other = testenv::Server::Start("oidc.sh");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  oidc::VerifierOptions o;
  o.verify.issuer = (*other)->Get("OIDC_ISSUER");
  o.verify.client_id = client_id_;
  auto theirs = oidc::Verifier::Create(o, transport_, &SystemClock());
  ASSERT_TRUE(theirs.ok());
  id = (*theirs)->Verify(tokens.id_token);
  ASSERT_FALSE(id.ok());
  EXPECT_TRUE(id.status().Is(Code::kUnauthenticated, oidc::kReasonInvalidToken)) << id.status().ToString();
  EXPECT_THAT(id.status().message(), HasSubstr("no key with kid"));

  // A token with the signature of another token: refused.
  auto second = DeviceLogin(Op().Get("OIDC_ADMIN_USER"), Op().Get("OIDC_ADMIN_PASSWORD"));
  std::string forged = second.id_token.substr(0, second.id_token.rfind('.')) +
                       tokens.id_token.substr(tokens.id_token.rfind('.'));
  id = NewVerifier()->Verify(forged);
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("bad signature"));
}

TEST_F(OidcTest, CodeFlowWithPkce) {
  auto request = oidc::MakeAuthorizationRequest(provider_, client_id_, "http://127.0.0.1:45321/callback");
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  // The browser: authorize → login page → callback → our redirect URI with code and state.
  Browser browser(issuer_);
  auto r = browser.Get(request->url);
  ASSERT_EQ(r.status, 302) << r.body;
  std::string login = r.headers["location"];
  std::string id = Find(login, "authRequestID=([^&]+)");
  ASSERT_FALSE(id.empty()) << login;
  r = browser.Post("/login/username", fmt::format("id={}&username={}&password={}", id, FormValue(Op().Get("OIDC_DEV_USER")),
                                                  Op().Get("OIDC_DEV_PASSWORD")));
  ASSERT_EQ(r.status, 302) << r.body;
  r = browser.Get(r.headers["location"]);
  ASSERT_EQ(r.status, 302) << r.body;
  std::string redirect = r.headers["location"];
  ASSERT_TRUE(redirect.starts_with("http://127.0.0.1:45321/callback?")) << redirect;
  std::string code = Find(redirect, "[?&]code=([^&]+)");
  std::string state = Find(redirect, "[?&]state=([^&]+)");

  // A wrong verifier is refused by the provider (PKCE); the right one gets tokens.
  oidc::AuthorizationRequest wrong = *request;
  wrong.code_verifier = oidc::RandomUrlSafe(32);
  auto tokens = oidc::ExchangeCode(transport_, provider_, client_id_, wrong, code, state);
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().message(), HasSubstr("invalid_grant"));
  tokens = oidc::ExchangeCode(transport_, provider_, client_id_, *request, code, state);
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();

  oidc::VerifierOptions o;
  o.verify.issuer = issuer_;
  o.verify.client_id = client_id_;
  o.verify.nonce = request->nonce;
  auto verifier = oidc::Verifier::Create(o, transport_, &SystemClock());
  ASSERT_TRUE(verifier.ok());
  auto identity = (*verifier)->Verify(tokens->id_token);
  ASSERT_TRUE(identity.ok()) << identity.status().ToString();
  EXPECT_EQ(identity->subject, "test-user2");
  EXPECT_THAT(identity->groups, ElementsAre("team-a"));
}

// `gantry login` itself: the binary prints the code, the test logs in as the person, the binary
// saves a token that verifies.
TEST_F(OidcTest, GantryLoginSavesAVerifiedToken) {
  testenv::ScopedTempDir home;
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  int out = -1;
  auto p = Process::StartPiped({binary, "login", "--issuer", issuer_, "--client-id", client_id_},
                               {.env = {{"XDG_CONFIG_HOME", home.path()}, {"PATH", "/usr/bin:/bin"}}}, &out);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // Read until the code is printed.
  std::string printed;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string url;
  while (url.empty() && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{.fd = out, .events = POLLIN, .revents = 0};
    if (::poll(&pfd, 1, 1000) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(out, buf, sizeof buf);
    if (n <= 0) break;
    printed.append(buf, static_cast<size_t>(n));
    url = Find(printed, R"(To log in, open (\S+user_code=\S+))");
  }
  ASSERT_FALSE(url.empty()) << printed;
  oidc::DeviceAuthorization a{.device_code = "", .user_code = Find(url, "user_code=(\\S+)"), .verification_uri = "",
                              .verification_uri_complete = url};
  EXPECT_THAT(printed, HasSubstr("enter the code " + a.user_code));
  EXPECT_THAT(ApproveDevice(a, Op().Get("OIDC_ADMIN_USER"), Op().Get("OIDC_ADMIN_PASSWORD")),
              HasSubstr("Device authorization allowed"));
  // It polls every 5 s (the provider's interval).
  while (p->Running() && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{.fd = out, .events = POLLIN, .revents = 0};
    if (::poll(&pfd, 1, 200) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(out, buf, sizeof buf);
    if (n > 0) printed.append(buf, static_cast<size_t>(n));
  }
  int status = p->Stop(std::chrono::milliseconds(100));
  char buf[4096];
  for (ssize_t n; (n = ::read(out, buf, sizeof buf)) > 0;) printed.append(buf, static_cast<size_t>(n));
  ::close(out);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << printed;
  EXPECT_THAT(printed, HasSubstr("as test-user@localhost (groups: gantry-admins, team-a); token saved to " + home.path() +
                                 "/gantry/token"));

  auto token = oidc::ReadTokenFile(home.path() + "/gantry/token");
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  auto id = NewVerifier()->Verify(*token);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->subject, "test-user@localhost");
}

TEST_F(OidcTest, GantryLoginRefusesAnInsecureIssuer) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  auto r = gantry::Run({binary, "login", "--issuer", "http://idp.example.com"}, {.env = {{"PATH", "/usr/bin:/bin"}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, HasSubstr("login: --issuer: OIDC URL \"http://idp.example.com\": must be https"));
}

// The server's side of a sign-in: `gantry server --oidc-issuer` verifies the device login's ID
TEST_F(OidcTest, ASignedInViewerCannotCancelARunADeployerCanAndEachTryIsAudited) {
  testenv::ScopedTempDir dir;
  auto store = store::Open("sqlite:" + dir.path() + "/gantry.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  constexpr char kRepo[] = "https://git.example/team-a/app";
  fakes::NoStepExecutor executor;
  ci::ServerOptions ci_options;  // named: GCC 12 at -O2 takes a temporary's map for uninitialized
  ci_options.repos = {kRepo};
  ci_options.data_dir = dir.path() + "/data";
  ci::Server ci(**store, executor, ci_options);
  auto verifier = NewVerifier();
  server::Access access(**store, {.verify_jwt = [&](std::string_view jwt) -> Result<authz::Principal> {
                                    GANTRY_ASSIGN_OR_RETURN(oidc::Identity id, verifier->Verify(jwt));
                                    return authz::Principal{.name = id.name, .groups = id.groups, .via = authz::Via::kOidc};
                                  }});
  server::Front front("server", {});
  ASSERT_TRUE(server::ServeCi(front, ci, {.webhook = {.secret = "oidc-test-secret"}, .access = &access,
                                          .project_of = [](const store::Run&) { return std::string("team-a"); }})
                  .ok());
  server::ServeAccess(front, access);
  ASSERT_TRUE(front.Start().ok());
  auto run = (*store)->CreateRun({.repo = kRepo, .pipeline = "app", .commit = std::string(40, 'a'),
                                  .ref = "refs/heads/main", .state = store::RunState::kQueued});
  ASSERT_TRUE(run.ok());
  auto cancel = [&](const std::string& token) {
    auto r = http::Client().Send({.method = "POST", .url = fmt::format("http://127.0.0.1:{}/api/runs/{}/cancel", front.port(), *run),
                                  .headers = {{"authorization", "Bearer " + token}}});
    GANTRY_CHECK(r.ok());
    return *r;
  };

  // test-user2 is in group team-a, which may view team-a's runs; test-user3 is in no group.
  ASSERT_TRUE((*store)->GrantRole({.subject_kind = store::SubjectKind::kGroup, .subject = "team-a", .role = "viewer", .project = "team-a"}).ok());
  ASSERT_TRUE((*store)->GrantRole({.subject = "test-user3", .role = "deployer", .project = "team-a"}).ok());
  const std::string viewer = DeviceLogin(Op().Get("OIDC_DEV_USER"), Op().Get("OIDC_DEV_PASSWORD")).id_token;
  const std::string deployer = DeviceLogin(Op().Get("OIDC_PLAIN_USER"), Op().Get("OIDC_PLAIN_PASSWORD")).id_token;

  auto refused = cancel(viewer);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("user test-user2 lacks runs.cancel on project team-a (roles: viewer)"));
  auto done = cancel(deployer);
  EXPECT_EQ(done.status, 200) << done.body;
  auto forged = cancel(viewer.substr(0, viewer.rfind('.') + 1) + "AAAA");
  EXPECT_EQ(forged.status, 401) << forged.body;

  auto audit = (*store)->ListAudit(10);
  ASSERT_TRUE(audit.ok());
  ASSERT_GE(audit->size(), 3u);
  EXPECT_EQ((*audit)[2].actor, "test-user2");
  EXPECT_THAT((*audit)[2].result, HasSubstr("PermissionDenied"));
  EXPECT_EQ((*audit)[1].actor, "test-user3");
  EXPECT_EQ((*audit)[1].result, "ok");
  EXPECT_THAT((*audit)[0].result, HasSubstr("Unauthenticated"));
  front.Stop();
}

// The console's sign-in: the server is the OIDC client (code + PKCE); the browser comes back to
// /login with the ID token in the fragment, and that token is a user of the API.
TEST_F(OidcTest, ConsoleSignInThroughTheServerGivesATokenTheApiAccepts) {
  testenv::ScopedTempDir dir;
  auto store = store::Open("sqlite:" + dir.path() + "/gantry.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto verifier = NewVerifier();
  server::Access access(**store, {.verify_jwt = [&](std::string_view jwt) -> Result<authz::Principal> {
                                    GANTRY_ASSIGN_OR_RETURN(oidc::Identity id, verifier->Verify(jwt));
                                    return authz::Principal{.name = id.name, .groups = id.groups, .via = authz::Via::kOidc};
                                  }});
  server::Front front("server", {});
  server::ServeAccess(front, access);
  server::BrowserLogin login({.verifier = verifier.get()});
  login.Register(front);
  ASSERT_TRUE(front.Start().ok());
  const std::string base = fmt::format("http://127.0.0.1:{}", front.port());
  Browser gantry(base);
  Browser idp(issuer_);

  auto config = gantry.Get("/auth/config");
  EXPECT_EQ(config.status, 200);
  EXPECT_THAT(config.body, HasSubstr(fmt::format(R"("issuer":"{}")", issuer_)));

  // The console's link → the provider, with PKCE and a redirect back to this server; the person
  // signs in there. Returns the provider's redirect to /auth/callback ("" after a failed check).
  auto sign_in = [&](const std::string& return_query) -> std::string {
    auto start = gantry.Get("/auth/login?return=" + return_query);
    EXPECT_EQ(start.status, 302) << start.body;
    const std::string authorize = start.headers["location"];
    EXPECT_TRUE(authorize.starts_with(provider_.authorization_endpoint)) << authorize;
    EXPECT_THAT(authorize, HasSubstr("code_challenge_method=S256"));
    EXPECT_THAT(authorize, HasSubstr("redirect_uri=" + FormValue(base + "/auth/callback")));
    auto r = idp.Get(authorize);
    EXPECT_EQ(r.status, 302) << r.body;
    std::string id = Find(r.headers["location"], "authRequestID=([^&]+)");
    r = idp.Post("/login/username", fmt::format("id={}&username={}&password={}", id,
                                                FormValue(Op().Get("OIDC_DEV_USER")), Op().Get("OIDC_DEV_PASSWORD")));
    EXPECT_EQ(r.status, 302) << r.body;
    r = idp.Get(r.headers["location"]);
    EXPECT_EQ(r.status, 302) << r.body;
    std::string callback = r.headers["location"];
    EXPECT_TRUE(callback.starts_with(base + "/auth/callback?")) << callback;
    return callback.starts_with(base + "/auth/callback?") ? callback : "";
  };
  const std::string callback = sign_in("%2Fruns%2F7");
  ASSERT_FALSE(callback.empty());

  auto done = gantry.Get(callback);
  ASSERT_EQ(done.status, 302) << done.body;
  const std::string landing = done.headers["location"];
  ASSERT_TRUE(landing.starts_with("/login#id_token=")) << landing;
  EXPECT_TRUE(landing.ends_with("&return=/runs/7")) << landing;
  EXPECT_EQ(done.headers["cache-control"], "no-store");
  EXPECT_EQ(done.headers["referrer-policy"], "no-referrer");
  const std::string token = Find(landing, "id_token=([^&]+)");
  ASSERT_FALSE(token.empty());
  auto who = verifier->Verify(token);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who->name, "test-user2");

  // The token is a user of the API (with the role granted to its group).
  ASSERT_TRUE((*store)->GrantRole({.subject_kind = store::SubjectKind::kGroup, .subject = "team-a", .role = "viewer", .project = "*"}).ok());
  auto tokens = http::Client().Send({.url = base + "/api/tokens", .headers = {{"authorization", "Bearer " + token}}});
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(tokens->status, 200) << tokens->body;

  // A state is good for one sign-in: the same redirect again, a forged state, and the provider's
  // refusal each get a page that says why, and no token.
  auto again = gantry.Get(callback);
  EXPECT_EQ(again.status, 400);
  EXPECT_THAT(again.body, HasSubstr("unknown or more than ten minutes old"));
  EXPECT_EQ(again.headers.count("location"), 0u);
  auto denied = gantry.Get("/auth/callback?error=access_denied&error_description=user%20said%20no&state=x");
  EXPECT_EQ(denied.status, 400);
  EXPECT_THAT(denied.body, HasSubstr("refused the sign-in: access_denied (user said no)"));

  // A return address off this server (another host, a scheme, a backslash trick) lands on "/".
  for (std::string_view away : {"%2F%2Fevil.example%2F", "https%3A%2F%2Fevil.example%2F", "%2F%5Cevil.example"}) {
    const std::string back = sign_in(std::string(away));
    ASSERT_FALSE(back.empty()) << away;
    auto landed = gantry.Get(back);
    ASSERT_EQ(landed.status, 302) << landed.body;
    EXPECT_TRUE(landed.headers["location"].ends_with("&return=/")) << away << " → " << landed.headers["location"];
  }

  front.Stop();
}

}  // namespace
}  // namespace gantry
