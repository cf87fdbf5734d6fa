// The registry client's bearer-token flow against the real docker-registry of
// `test/env/registry.sh --token` (Distribution 2.8 verifying RS256 JWTs with an x5c chain), with
// the token service served here by http::Server: it checks basic credentials, grants what a small
// policy allows of exactly the scopes asked, and records every request, so the tests can count
// tokens per scope. Also: credentials never follow a blob GET that is redirected to another host.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/path.h"
#include "http/http.h"
#include "oci/layout.h"
#include "oci/registry.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

std::string RandomBytes(size_t size) {
  static std::mt19937_64 random(std::random_device{}());
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

std::string Unique(std::string_view prefix) {
  static std::mt19937_64 random(std::random_device{}());
  return fmt::format("{}-{:08x}", prefix, static_cast<uint32_t>(random()));
}

std::string Base64Url(std::string_view bytes) {
  std::string s = Base64Encode(bytes);
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// One request the token service answered.
struct TokenRequest {
  std::string user;                 // "" when anonymous or the password was wrong
  std::set<std::string> asked;      // scopes as asked, "repository:NAME:ACTIONS"
  int status = 0;
};

// The token service of the --token registry. Users: admin (everything), pusher (pull and push,
// nothing under private/), reader (pull only). Thread-safe.
class TokenService {
 public:
  static constexpr std::string_view kPassword = "s3cret";

  explicit TokenService(const testenv::Server& registry)
      : service_(registry.Get("TOKEN_SERVICE")), issuer_(registry.Get("TOKEN_ISSUER")) {
    BIO* key = BIO_new_file(registry.Get("TOKEN_KEY").c_str(), "r");
    GANTRY_CHECK(key);
    key_ = PEM_read_bio_PrivateKey(key, nullptr, nullptr, nullptr);
    BIO_free(key);
    GANTRY_CHECK(key_);
    BIO* cert = BIO_new_file(registry.Get("TOKEN_CERT").c_str(), "r");
    GANTRY_CHECK(cert);
    X509* x509 = PEM_read_bio_X509(cert, nullptr, nullptr, nullptr);
    BIO_free(cert);
    GANTRY_CHECK(x509);
    unsigned char* der = nullptr;
    int len = i2d_X509(x509, &der);
    GANTRY_CHECK(len > 0);
    cert_der_b64_ = Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
    OPENSSL_free(der);
    X509_free(x509);
  }
  ~TokenService() { EVP_PKEY_free(key_); }

  http::Response Handle(const http::Request& req) { return Issue(req); }

  // Requests whose scopes mention repository `repo`.
  std::vector<TokenRequest> For(std::string_view repo) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<TokenRequest> out;
    for (const TokenRequest& r : log_) {
      if (std::any_of(r.asked.begin(), r.asked.end(), [&](const std::string& s) {
            return s.starts_with(fmt::format("repository:{}:", repo));
          }))
        out.push_back(r);
    }
    return out;
  }
  // How many requests asked for exactly `scopes`.
  int Count(std::string_view repo, const std::set<std::string>& scopes) const {
    int n = 0;
    for (const TokenRequest& r : For(repo)) n += r.asked == scopes;
    return n;
  }

 private:
  static std::vector<std::string> Allowed(std::string_view user, std::string_view repo) {
    if (user == "admin") return {"pull", "push"};
    if (user == "pusher") return repo.starts_with("private/") ? std::vector<std::string>{}
                                                              : std::vector<std::string>{"pull", "push"};
    if (user == "reader") return {"pull"};
    return {};
  }

  // GET /token: a JWT for the scopes asked that the user is allowed.
  http::Response Issue(const http::Request& req) {
    TokenRequest rec;
    std::string service;
    for (size_t i = 0; i <= req.query.size();) {
      size_t amp = std::min(req.query.find('&', i), req.query.size());
      std::string_view param = std::string_view(req.query).substr(i, amp - i);
      i = amp + 1;
      size_t eq = param.find('=');
      if (eq == std::string_view::npos) continue;
      std::string name(param.substr(0, eq));
      std::string value = PercentDecode(param.substr(eq + 1));
      if (name == "service") service = value;
      if (name != "scope") continue;
      for (size_t j = 0; j < value.size();) {  // a scope parameter may hold several
        size_t sp = std::min(value.find(' ', j), value.size());
        if (sp > j) rec.asked.insert(value.substr(j, sp - j));
        j = sp + 1;
      }
    }
    std::string_view auth = req.Header("authorization");
    std::optional<std::string> pair;
    if (auth.starts_with("Basic ")) pair = Base64Decode(auth.substr(6));
    size_t colon = pair ? pair->find(':') : std::string::npos;
    if (colon != std::string::npos && pair->substr(colon + 1) == kPassword &&
        !Allowed(pair->substr(0, colon), "x").empty())
      rec.user = pair->substr(0, colon);
    http::Response resp;
    if (rec.user.empty()) {
      resp = http::Response::Json(401, R"({"details":"bad credentials"})");
    } else if (service != service_) {
      resp = http::Response::Json(400, R"({"details":"unknown service"})");
    } else {
      resp = http::Response::Json(200, TokenJson(rec.user, rec.asked));
    }
    rec.status = resp.status;
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(std::move(rec));
    return resp;
  }

  // {"token": JWT, "expires_in": 300}: for each scope asked, the actions the user may have.
  std::string TokenJson(const std::string& user, const std::set<std::string>& asked) {
    value::Value access = value::Value::Seq();
    for (const std::string& scope : asked) {
      // repository:NAME:ACTIONS (NAME has no ':')
      size_t first = scope.find(':');
      size_t last = scope.rfind(':');
      if (first == last || scope.substr(0, first) != "repository") continue;
      std::string repo = scope.substr(first + 1, last - first - 1);
      std::vector<std::string> allowed = Allowed(user, repo);
      value::Value actions = value::Value::Seq();
      std::string list = scope.substr(last + 1) + ",";
      for (size_t i = 0; i < list.size();) {
        size_t comma = list.find(',', i);
        std::string a = list.substr(i, comma - i);
        if (std::find(allowed.begin(), allowed.end(), a) != allowed.end()) actions.Append(a);
        i = comma + 1;
      }
      value::Value entry = value::Value::Map();
      entry.Set("type", "repository");
      entry.Set("name", repo);
      entry.Set("actions", actions);
      access.Append(entry);
    }
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    value::Value header = value::Value::Map();
    header.Set("typ", "JWT");
    header.Set("alg", "RS256");
    value::Value x5c = value::Value::Seq();
    x5c.Append(cert_der_b64_);
    header.Set("x5c", x5c);
    value::Value claims = value::Value::Map();
    claims.Set("iss", issuer_);
    claims.Set("sub", user);
    claims.Set("aud", service_);
    claims.Set("exp", now + 300);
    claims.Set("nbf", now - 5);
    claims.Set("iat", now);
    claims.Set("jti", Unique("jti"));
    claims.Set("access", access);
    std::string signing_input = Base64Url(value::ToJson(header)) + "." + Base64Url(value::ToJson(claims));
    value::Value out = value::Value::Map();
    out.Set("token", signing_input + "." + Base64Url(Sign(signing_input)));
    out.Set("expires_in", 300);
    return value::ToJson(out);
  }

  std::string Sign(std::string_view data) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    GANTRY_CHECK(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_) == 1);
    auto* in = reinterpret_cast<const unsigned char*>(data.data());
    GANTRY_CHECK(EVP_DigestSign(ctx, nullptr, &len, in, data.size()) == 1);
    std::string sig(len, '\0');
    GANTRY_CHECK(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) == 1);
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    return sig;
  }

  const std::string service_, issuer_;
  EVP_PKEY* key_ = nullptr;
  std::string cert_der_b64_;
  mutable std::mutex mu_;
  std::vector<TokenRequest> log_;  // GUARDED_BY(mu_)
};

// The token endpoint listens first, on a port the kernel picks, and the registry is told that realm
// (registry.sh --token-realm): no port is chosen, released and bound later by someone else.
std::unique_ptr<http::Server> StartTokenEndpoint(std::atomic<TokenService*>* service) {
  auto server = std::make_unique<http::Server>(http::Options{});
  server->Handle("GET", "/token", [service](const http::Request& r) {
    TokenService* s = service->load();
    return s ? s->Handle(r) : http::Response::Json(503, R"({"details":"token service not ready"})");
  });
  Status started = server->Start();
  GANTRY_CHECK(started.ok());
  return server;
}

struct TokenEnv {
  std::atomic<TokenService*> service{nullptr};
  std::unique_ptr<http::Server> endpoint = StartTokenEndpoint(&service);
  const testenv::Server& registry = testenv::Shared(
      "registry.sh", {"--token", "--token-realm", fmt::format("http://127.0.0.1:{}/token", endpoint->port())});
  TokenService tokens{registry};
  std::string host = registry.Get("REGISTRY_HOST");
  TokenEnv() { service.store(&tokens); }
};

TokenEnv& Env() {
  static TokenEnv* env = new TokenEnv();
  return *env;
}

std::unique_ptr<Registry> Client(const std::string& user, std::string password = std::string(TokenService::kPassword)) {
  RegistryOptions options;
  options.docker_config = "none";
  if (!user.empty()) options.credentials = {{Env().host, user, password}};
  auto r = NewHttpRegistry(options);
  GANTRY_CHECK(r.ok());
  return std::move(*r);
}

Reference Ref(const std::string& repo_and_tag) {
  auto r = ParseReference(Env().host + "/" + repo_and_tag);
  GANTRY_CHECK(r.ok());
  return *r;
}

Layout NewLayout(const std::string& dir) {
  auto l = Layout::Open(dir, true);
  GANTRY_CHECK(l.ok());
  return *l;
}

// Config and `layers` random layers, tagged "v1". Returns the blobs (config first) and the manifest.
struct Image {
  Descriptor manifest;
  std::vector<Descriptor> blobs;
  int64_t Bytes() const {
    int64_t n = 0;
    for (const Descriptor& b : blobs) n += b.size;
    return n;
  }
};
Image WriteImage(const Layout& layout, int layers) {
  Image image;
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  value::Value diff_ids = value::Value::Seq();
  for (int i = 0; i < layers; ++i) {
    auto layer = layout.WriteBlob(RandomBytes(40'000 + 10'000 * i), media::kOciLayer);
    GANTRY_CHECK(layer.ok());
    m.layers.push_back(*layer);
    diff_ids.Append(layer->digest);
  }
  value::Value config = value::Value::Map();
  config.Set("architecture", "amd64");
  config.Set("os", "linux");
  value::Value rootfs = value::Value::Map();
  rootfs.Set("type", "layers");
  rootfs.Set("diff_ids", diff_ids);
  config.Set("rootfs", rootfs);
  config.Set("created", Unique("salt"));  // a config no other test has pushed
  auto c = layout.WriteBlob(value::ToJson(config), media::kOciConfig);
  GANTRY_CHECK(c.ok());
  m.config = *c;
  image.blobs.push_back(*c);
  image.blobs.insert(image.blobs.end(), m.layers.begin(), m.layers.end());
  auto d = layout.WriteBlob(SerializeManifest(m), media::kOciManifest);
  GANTRY_CHECK(d.ok());
  image.manifest = *d;
  GANTRY_CHECK(layout.Tag(*d, "v1").ok());
  return image;
}

// The pulled layout holds the image with every blob (digests are verified on pull).
void ExpectPulled(const Layout& pulled, const Image& image) {
  auto d = pulled.Find("v1");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->digest, image.manifest.digest);
  for (const Descriptor& b : image.blobs) EXPECT_TRUE(pulled.HasBlob(b.digest)) << b.digest;
}

std::string Scope(std::string_view repo, std::string_view actions) {
  return fmt::format("repository:{}:{}", repo, actions);
}

TEST(OciTokenTest, PushAndPullFetchOneTokenPerScope) {
  TokenEnv& env = Env();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Image image = WriteImage(src, 5);
  std::string repo = Unique("token/app");

  auto pusher = Client("pusher");
  auto pushed = PushImage(*pusher, src, "v1", Ref(repo + ":v1"), {.parallel = 4});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(*pushed, image.manifest.digest);
  // HEAD manifest needs pull; 6 blobs (HEAD, POST, PUT each, 4 at a time) and the manifest PUT
  // need pull,push: one token each, however many requests and threads.
  EXPECT_EQ(env.tokens.Count(repo, {Scope(repo, "pull")}), 1);
  EXPECT_EQ(env.tokens.Count(repo, {Scope(repo, "pull,push")}), 1);
  EXPECT_EQ(env.tokens.For(repo).size(), 2u);
  EXPECT_GE(pusher->Stats().requests, 20u);

  auto reader = Client("reader");
  Layout dst = NewLayout(tmp.path() + "/dst");
  auto pulled = PullImage(*reader, Ref(repo + ":v1"), dst, "v1");
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  ExpectPulled(dst, image);
  EXPECT_EQ(env.tokens.Count(repo, {Scope(repo, "pull")}), 2);
  EXPECT_EQ(env.tokens.For(repo).size(), 3u);
}

TEST(OciTokenTest, WrongPasswordIsUnauthenticatedAfterOneTokenRequest) {
  TokenEnv& env = Env();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  WriteImage(src, 2);
  std::string repo = Unique("token/wrong");

  auto client = Client("pusher", "not-the-password");
  auto pushed = PushImage(*client, src, "v1", Ref(repo + ":v1"));
  ASSERT_FALSE(pushed.ok());
  EXPECT_EQ(pushed.status().code(), Code::kUnauthenticated) << pushed.status().ToString();
  EXPECT_NE(pushed.status().message().find("token from http://127.0.0.1:"), std::string::npos)
      << pushed.status().message();
  EXPECT_NE(pushed.status().message().find("credentials of user \"pusher\""), std::string::npos)
      << pushed.status().message();
  ASSERT_EQ(env.tokens.For(repo).size(), 1u);
  EXPECT_EQ(env.tokens.For(repo)[0].status, 401);

  // Without credentials the token service refuses too, and the error says none were given.
  auto anonymous = Client("");
  Layout dst = NewLayout(tmp.path() + "/dst");
  auto pulled = PullImage(*anonymous, Ref(repo + ":v1"), dst, "v1");
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), Code::kUnauthenticated) << pulled.status().ToString();
  EXPECT_NE(pulled.status().message().find("no credentials for " + env.host), std::string::npos)
      << pulled.status().message();
  EXPECT_EQ(env.tokens.For(repo).size(), 2u);
}

TEST(OciTokenTest, PullOnlyTokenRefusesPushWithPermissionDenied) {
  TokenEnv& env = Env();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Image image = WriteImage(src, 3);
  std::string repo = Unique("token/readonly");
  auto admin = Client("admin");
  ASSERT_TRUE(PushImage(*admin, src, "v1", Ref(repo + ":v1")).ok());

  auto reader = Client("reader");
  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*reader, Ref(repo + ":v1"), dst, "v1").ok());
  ExpectPulled(dst, image);

  Layout other = NewLayout(tmp.path() + "/other");
  WriteImage(other, 3);
  auto pushed = PushImage(*reader, other, "v1", Ref(repo + ":v2"), {.parallel = 4});
  ASSERT_FALSE(pushed.ok());
  EXPECT_EQ(pushed.status().code(), Code::kPermissionDenied) << pushed.status().ToString();
  EXPECT_NE(pushed.status().message().find("insufficient_scope"), std::string::npos)
      << pushed.status().message();
  EXPECT_NE(pushed.status().message().find(Scope(repo, "pull,push")), std::string::npos)
      << pushed.status().message();
  EXPECT_NE(pushed.status().message().find("user \"reader\""), std::string::npos)
      << pushed.status().message();
  // One token asked for push, whatever the number of blobs and threads that wanted it.
  EXPECT_EQ(env.tokens.Count(repo, {Scope(repo, "pull,push")}), 2);  // admin's and reader's
}

TEST(OciTokenTest, CrossRepositoryMountAsksOneTokenForBothRepositories) {
  TokenEnv& env = Env();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Image image = WriteImage(src, 3);
  std::string base = Unique("token/base");
  std::string derived = Unique("token/derived");
  auto pusher = Client("pusher");
  ASSERT_TRUE(PushImage(*pusher, src, "v1", Ref(base + ":v1")).ok());

  RegistryStats before = pusher->Stats();
  auto pushed = PushImage(*pusher, src, "v1", Ref(derived + ":v1"), {.mount_from = {base}});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  RegistryStats after = pusher->Stats();
  EXPECT_EQ(after.blobs_mounted - before.blobs_mounted, image.blobs.size());
  EXPECT_EQ(after.bytes_uploaded, before.bytes_uploaded);
  // As Docker asks: repository:derived:pull,push and repository:base:pull in one token.
  EXPECT_EQ(env.tokens.Count(derived, {Scope(derived, "pull,push"), Scope(base, "pull")}), 1);

  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*Client("reader"), Ref(derived + ":v1"), dst, "v1").ok());
  ExpectPulled(dst, image);
}

TEST(OciTokenTest, MountFromRepositoryWithoutPullAccessFallsBackToUpload) {
  TokenEnv& env = Env();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Image image = WriteImage(src, 3);
  std::string base = Unique("private/base");
  std::string copy = Unique("token/copy");
  ASSERT_TRUE(PushImage(*Client("admin"), src, "v1", Ref(base + ":v1")).ok());

  auto pusher = Client("pusher");  // may not pull private/
  auto pushed = PushImage(*pusher, src, "v1", Ref(copy + ":v1"), {.mount_from = {base}, .parallel = 4});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pusher->Stats().blobs_mounted, 0u);
  EXPECT_EQ(static_cast<int64_t>(pusher->Stats().bytes_uploaded), image.Bytes());
  // The refused mount scope is asked once, not once per blob.
  EXPECT_EQ(env.tokens.Count(copy, {Scope(copy, "pull,push"), Scope(base, "pull")}), 1);

  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*pusher, Ref(copy + ":v1"), dst, "v1").ok());
  ExpectPulled(dst, image);
}

// A registry for one blob that answers a 401 challenge, then redirects the authenticated GET to
// `storage` (another host or port), which records the Authorization headers it sees.
struct RedirectedBlob {
  std::string blob = RandomBytes(100'000);
  std::string digest = Sha256Digest(blob);
  std::mutex mu;
  std::vector<std::string> registry_auth;  // GUARDED_BY(mu)
  std::vector<std::string> storage_auth;   // GUARDED_BY(mu); "" when none was sent
  const std::string storage_address;
  http::Server registry;
  http::Server storage;

  // `challenge` is a WWW-Authenticate value; {port} stands for the registry's port.
  RedirectedBlob(std::string storage_address_in, std::string challenge)
      : storage_address(std::move(storage_address_in)),
        storage(http::Options{.address = storage_address}) {
    storage.Handle("GET", "/bucket/", [this](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu);
      storage_auth.emplace_back(r.Header("authorization"));
      http::Response resp;
      resp.headers["content-type"] = "application/octet-stream";
      resp.body = blob;
      return resp;
    });
    registry.Handle("GET", "/token", [](const http::Request& r) {
      return r.Header("authorization").empty() ? http::Response::Json(401, "{}")
                                               : http::Response::Json(200, R"({"token":"t0k3n"})");
    });
    registry.Handle("GET", "/v2/", [this, challenge](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu);
      registry_auth.emplace_back(r.Header("authorization"));
      if (r.Header("authorization").empty()) {
        http::Response resp = http::Response::Json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
        resp.headers["www-authenticate"] =
            fmt::format(fmt::runtime(challenge), fmt::arg("port", registry.port()));
        return resp;
      }
      http::Response resp = http::Response::Text(307, "");
      resp.headers["location"] = fmt::format("http://{}:{}/bucket/blob?signature=abc",
                                             storage_address, storage.port());
      return resp;
    });
    GANTRY_CHECK(registry.Start().ok());
    GANTRY_CHECK(storage.Start().ok());
  }
};

TEST(OciTokenTest, RedirectedBlobGetSendsNoCredentialsToStorage) {
  struct Case {
    std::string storage_address;
    std::string challenge;
    std::string sent;  // the Authorization the registry must have seen on the second GET
  };
  std::vector<Case> cases = {
      {"127.0.0.2", R"(Basic realm="test")", "Basic dTpw"},
      {"127.0.0.1", R"(Basic realm="test")", "Basic dTpw"},
      {"127.0.0.2", R"(Bearer realm="http://127.0.0.1:{port}/token",service="test")", "Bearer t0k3n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.storage_address + " " + c.challenge);
    RedirectedBlob server(c.storage_address, c.challenge);
    std::string host = fmt::format("127.0.0.1:{}", server.registry.port());
    RegistryOptions options;
    options.docker_config = "none";
    options.insecure_http_hosts = {host};
    options.credentials = {{host, "u", "p"}};
    auto registry = NewHttpRegistry(options);
    ASSERT_TRUE(registry.ok());
    auto ref = ParseReference(host + "/team/app");
    ASSERT_TRUE(ref.ok());

    testenv::ScopedTempDir tmp;
    Layout layout = NewLayout(tmp.path());
    auto writer = layout.NewBlob();
    ASSERT_TRUE(writer.ok());
    Descriptor desc{.media_type = std::string(media::kOciLayer), .digest = server.digest,
                    .size = static_cast<int64_t>(server.blob.size())};
    Status s = (*registry)->FetchBlob(*ref, desc, **writer);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE((*writer)->Commit(media::kOciLayer, server.digest).ok());
    EXPECT_EQ(*layout.ReadBlob(server.digest), server.blob);

    // The registry saw the anonymous GET and the authenticated one; storage saw one GET, bare.
    std::lock_guard<std::mutex> lock(server.mu);
    ASSERT_EQ(server.registry_auth.size(), 2u);
    EXPECT_EQ(server.registry_auth[0], "");
    EXPECT_EQ(server.registry_auth[1], c.sent);
    EXPECT_EQ(server.storage_auth, std::vector<std::string>{""});
  }
}

// A registry whose upload Location and tag-list Link name `other` (another host or port), which
// records the Authorization headers it sees and plays the part the registry handed it.
struct ForeignLocations {
  std::mutex mu;
  std::vector<std::string> other_auth;  // GUARDED_BY(mu); "" when none was sent
  const std::string other_address;
  http::Server registry;
  http::Server other;

  // `challenge` is a WWW-Authenticate value; {port} stands for the registry's port.
  ForeignLocations(std::string other_address_in, std::string challenge)
      : other_address(std::move(other_address_in)), other(http::Options{.address = other_address}) {
    other.Handle("PUT", "/upload/", [this](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu);
      other_auth.emplace_back(r.Header("authorization"));
      return http::Response::Text(201, "");
    });
    other.Handle("GET", "/v2/", [this](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu);
      other_auth.emplace_back(r.Header("authorization"));
      return http::Response::Json(200, R"({"name":"team/app","tags":["b"]})");
    });
    registry.Handle("GET", "/token", [](const http::Request& r) {
      return r.Header("authorization").empty() ? http::Response::Json(401, "{}")
                                               : http::Response::Json(200, R"({"token":"t0k3n"})");
    });
    auto handler = [this, challenge](const http::Request& r) {
      if (r.Header("authorization").empty()) {
        http::Response resp = http::Response::Json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
        resp.headers["www-authenticate"] =
            fmt::format(fmt::runtime(challenge), fmt::arg("port", registry.port()));
        return resp;
      }
      std::string there = fmt::format("http://{}:{}", other_address, other.port());
      if (r.method == "POST" && r.target == "/v2/team/app/blobs/uploads/") {
        http::Response resp = http::Response::Text(202, "");
        resp.headers["location"] = there + "/upload/session-1?state=x";
        return resp;
      }
      if (r.method == "GET" && r.target == "/v2/team/app/tags/list") {
        http::Response resp = http::Response::Json(200, R"({"name":"team/app","tags":["a"]})");
        resp.headers["link"] = "<" + there + "/v2/team/app/tags/list?last=a>; rel=\"next\"";
        return resp;
      }
      return http::Response::Json(404, R"({"errors":[{"code":"NOT_FOUND"}]})");
    };
    registry.Handle("GET", "/v2/", handler);
    registry.Handle("POST", "/v2/", handler);
    GANTRY_CHECK(registry.Start().ok());
    GANTRY_CHECK(other.Start().ok());
  }
};

// Regression: the registry's credentials went with the PUT to an upload Location and the GET of a
// tag-list Link even when those named another host.
TEST(OciTokenTest, UploadLocationAndTagLinkOnAnotherHostGetNoCredentials) {
  struct Case {
    std::string other_address;
    std::string challenge;
  };
  std::vector<Case> cases = {
      {"127.0.0.2", R"(Basic realm="test")"},
      {"127.0.0.1", R"(Basic realm="test")"},  // same address, another port
      {"127.0.0.2", R"(Bearer realm="http://127.0.0.1:{port}/token",service="test")"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.other_address + " " + c.challenge);
    ForeignLocations server(c.other_address, c.challenge);
    std::string host = fmt::format("127.0.0.1:{}", server.registry.port());
    RegistryOptions options;
    options.docker_config = "none";
    options.insecure_http_hosts = {host};
    options.credentials = {{host, "u", "p"}};
    auto registry = NewHttpRegistry(options);
    ASSERT_TRUE(registry.ok());
    auto ref = ParseReference(host + "/team/app");
    ASSERT_TRUE(ref.ok());

    testenv::ScopedTempDir tmp;
    std::string blob = RandomBytes(1000);
    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/blob", blob).ok());
    Descriptor desc{.media_type = std::string(media::kOciLayer), .digest = Sha256Digest(blob),
                    .size = static_cast<int64_t>(blob.size())};
    Status pushed = (*registry)->PushBlob(*ref, desc, tmp.path() + "/blob");
    ASSERT_TRUE(pushed.ok()) << pushed.ToString();
    auto tags = (*registry)->ListTags(*ref);
    ASSERT_TRUE(tags.ok()) << tags.status().ToString();
    EXPECT_EQ(*tags, (std::vector<std::string>{"a", "b"}));

    std::lock_guard<std::mutex> lock(server.mu);
    EXPECT_EQ(server.other_auth, (std::vector<std::string>{"", ""}));
  }
}

}  // namespace
}  // namespace gantry::oci
