// oci::HttpRegistry, PushImage and PullImage against the real docker-registry of
// test/env/registry.sh: anonymous over HTTP and htpasswd basic auth over TLS. Images are built by
// hand in a Layout (config + 2 layers), pushed, pulled back and compared byte for byte; skopeo
// must accept what Gantry pushed.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "oci/layout.h"
#include "oci/registry.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

namespace fs = std::filesystem;

std::string RandomBytes(size_t size) {
  std::random_device seed;
  std::mt19937_64 random(seed());
  std::string out(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = random();
    std::memcpy(&out[i], &v, 8);
  }
  return out;
}

// Writes config + layers of the given sizes and a manifest; returns the manifest descriptor.
Descriptor WriteImage(const Layout& layout, const std::vector<size_t>& layer_sizes,
                      const Platform& platform = {"linux", "amd64", ""}) {
  Manifest m;
  m.media_type = std::string(media::kOciManifest);
  value::Value diff_ids = value::Value::Seq();
  for (size_t size : layer_sizes) {
    auto layer = layout.WriteBlob(RandomBytes(size), media::kOciLayer);
    EXPECT_TRUE(layer.ok()) << layer.status().ToString();
    m.layers.push_back(*layer);
    diff_ids.Append(layer->digest);
  }
  value::Value config = value::Value::Map();
  config.Set("architecture", platform.architecture);
  config.Set("os", platform.os);
  value::Value rootfs = value::Value::Map();
  rootfs.Set("type", "layers");
  rootfs.Set("diff_ids", diff_ids);
  config.Set("rootfs", rootfs);
  value::Value cfg = value::Value::Map();
  cfg.Set("Cmd", value::Value::Seq());
  config.Set("config", cfg);
  auto c = layout.WriteBlob(value::ToJson(config), media::kOciConfig);
  EXPECT_TRUE(c.ok());
  m.config = *c;
  auto d = layout.WriteBlob(SerializeManifest(m), media::kOciManifest);
  EXPECT_TRUE(d.ok());
  return *d;
}

Layout NewLayout(const std::string& dir) {
  auto l = Layout::Open(dir, true);
  GANTRY_CHECK(l.ok());
  return *l;
}

Reference Ref(const std::string& text) {
  auto r = ParseReference(text);
  GANTRY_CHECK(r.ok());
  return *r;
}

struct Client {
  std::unique_ptr<Registry> registry;
  std::string host;
};

Client Anonymous(RegistryOptions options = {}) {
  auto& server = testenv::Shared("registry.sh");
  options.docker_config = "none";
  auto r = NewHttpRegistry(options);
  GANTRY_CHECK(r.ok());
  return {std::move(*r), server.Get("REGISTRY_HOST")};
}

Client Authenticated(std::string password_suffix = "") {
  auto& server = testenv::Shared("registry.sh", {"--auth"});
  RegistryOptions options;
  options.docker_config = "none";
  options.ca_file = server.Get("REGISTRY_CA");
  options.credentials = {{server.Get("REGISTRY_HOST"), server.Get("REGISTRY_USER"),
                          server.Get("REGISTRY_PASSWORD") + password_suffix}};
  auto r = NewHttpRegistry(options);
  GANTRY_CHECK(r.ok());
  return {std::move(*r), server.Get("REGISTRY_HOST")};
}

// Every blob and manifest of the image tagged `tag` in `a` is in `b` with the same bytes.
void ExpectSameImage(const Layout& a, const Layout& b, const std::string& tag) {
  auto da = a.Find(tag);
  auto db = b.Find(tag);
  ASSERT_TRUE(da.ok() && db.ok()) << da.status().ToString() << db.status().ToString();
  EXPECT_EQ(da->digest, db->digest);
  auto bytes = b.ReadBlob(db->digest);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, *a.ReadBlob(da->digest));
  auto m = ParseManifest(*bytes, db->media_type);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  std::vector<Descriptor> blobs = m->layers;
  blobs.push_back(m->config);
  for (const Descriptor& d : blobs) {
    auto got = b.ReadBlob(d.digest, 1ull << 30);
    auto want = a.ReadBlob(d.digest, 1ull << 30);
    ASSERT_TRUE(got.ok()) << d.digest << ": " << got.status().ToString();
    ASSERT_TRUE(want.ok()) << d.digest << ": " << want.status().ToString();
    EXPECT_EQ(static_cast<int64_t>(got->size()), d.size);
    EXPECT_TRUE(*got == *want) << d.digest;
  }
}

Result<std::string> Skopeo(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"skopeo"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string cmd;
  for (const std::string& a : argv) cmd += "'" + a + "' ";
  cmd += "2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return InternalError("popen");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) return UnknownError("skopeo failed ({}): {}", rc, out);
  return out;
}

TEST(OciRegistryTest, AnonymousPushPullAndSkopeoAccepts) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {300 * 1024, 2 << 20});
  ASSERT_TRUE(src.Tag(m, "v1").ok());
  Reference dest = Ref(c.host + "/gantry/anon:v1");

  auto pushed = PushImage(*c.registry, src, "v1", dest);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(*pushed, m.digest);

  Layout dst = NewLayout(tmp.path() + "/dst");
  auto pulled = PullImage(*c.registry, dest, dst, "v1");
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  ExpectSameImage(src, dst, "v1");

  // A no-op re-push sends one HEAD and nothing else.
  uint64_t before = c.registry->Stats().requests;
  auto again = PushImage(*c.registry, src, "v1", dest);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(c.registry->Stats().requests - before, 1u);

  auto inspect = Skopeo({"inspect", "--raw", "--tls-verify=false", "docker://" + dest.ToString()});
  ASSERT_TRUE(inspect.ok()) << inspect.status().ToString();
  EXPECT_EQ(Sha256Digest(*inspect), m.digest);
  auto info = Skopeo({"inspect", "--tls-verify=false", "docker://" + dest.ToString()});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_NE(info->find(m.digest), std::string::npos) << *info;
  auto copied = Skopeo({"copy", "--preserve-digests", "--src-tls-verify=false", "docker://" + dest.ToString(),
                        "oci:" + tmp.path() + "/skopeo:v1"});
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  auto sk = Layout::Open(tmp.path() + "/skopeo", false);
  ASSERT_TRUE(sk.ok()) << sk.status().ToString();
  ExpectSameImage(src, *sk, "v1");
}

// connect_to: a registry whose name does not reach it (an agent in a Pod, a registry named
// 127.0.0.1:PORT on its node) is reached at another address, the name staying in the references.
TEST(OciRegistryTest, ConnectToReachesARegistryUnderAnotherName) {
  const std::string name = "registry.gantry.invalid:5000";
  Client c = Anonymous({.insecure_http_hosts = {name},
                        .connect_to = {name + "=" + testenv::Shared("registry.sh").Get("REGISTRY_HOST")}});
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {1024});
  ASSERT_TRUE(src.Tag(m, "v1").ok());
  auto pushed = PushImage(*c.registry, src, "v1", Ref(name + "/gantry/renamed:v1"));
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  // Under its real address it is the same image.
  Client real = Anonymous();
  auto resolved = real.registry->GetManifest(Ref(real.host + "/gantry/renamed:v1"));
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->digest, m.digest);

  for (const char* bad : {"registry:5000", "registry=10.0.0.1:5000", "registry:5000=10.0.0.1", "a:1=b:x", "a:1=b/c:2"}) {
    auto r = NewHttpRegistry({.docker_config = "none", .connect_to = {bad}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().message(), fmt::format("connect-to \"{}\": expected REGISTRY:PORT=ADDRESS:PORT (such as "
                                                "127.0.0.1:5000=10.88.0.1:5000)", bad));
  }
}

TEST(OciRegistryTest, AuthenticatedOverTlsAndSkopeoAccepts) {
  auto& server = testenv::Shared("registry.sh", {"--auth"});
  Client c = Authenticated();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {100 * 1024, 1 << 20});
  ASSERT_TRUE(src.Tag(m, "t").ok());
  Reference dest = Ref(c.host + "/gantry/auth:t");
  auto pushed = PushImage(*c.registry, src, "t", dest);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*c.registry, dest, dst, "t").ok());
  ExpectSameImage(src, dst, "t");

  fs::create_directories(tmp.path() + "/certs");
  fs::copy_file(server.Get("REGISTRY_CA"), tmp.path() + "/certs/ca.crt");
  std::string creds = server.Get("REGISTRY_USER") + ":" + server.Get("REGISTRY_PASSWORD");
  auto raw = Skopeo({"inspect", "--raw", "--cert-dir", tmp.path() + "/certs", "--creds", creds,
                     "docker://" + dest.ToString()});
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(Sha256Digest(*raw), m.digest);
  auto copied = Skopeo({"copy", "--preserve-digests", "--src-cert-dir", tmp.path() + "/certs", "--src-creds", creds,
                        "docker://" + dest.ToString(), "oci:" + tmp.path() + "/skopeo:t"});
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  auto sk = Layout::Open(tmp.path() + "/skopeo", false);
  ASSERT_TRUE(sk.ok()) << sk.status().ToString();
  ExpectSameImage(src, *sk, "t");

  // Without the CA the server is not trusted.
  RegistryOptions untrusting;
  untrusting.docker_config = "none";
  untrusting.credentials = {{c.host, server.Get("REGISTRY_USER"), server.Get("REGISTRY_PASSWORD")}};
  auto u = NewHttpRegistry(untrusting);
  ASSERT_TRUE(u.ok());
  auto head = (*u)->HeadManifest(dest);
  ASSERT_FALSE(head.ok());
}

TEST(OciRegistryTest, CredentialsFromDockerConfigBoundToHost) {
  auto& server = testenv::Shared("registry.sh", {"--auth"});
  testenv::ScopedTempDir tmp;
  std::string auth = server.Get("REGISTRY_USER") + ":" + server.Get("REGISTRY_PASSWORD");
  std::string port = server.Get("REGISTRY_HOST").substr(server.Get("REGISTRY_HOST").find(':'));
  // The credentials are for the registry's host; another host key does not match.
  ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/config.json",
                              R"({"auths":{"https://)" + server.Get("REGISTRY_HOST") +
                                  R"(":{"username":")" + server.Get("REGISTRY_USER") +
                                  R"(","password":")" + server.Get("REGISTRY_PASSWORD") +
                                  R"("},"localhost)" + port + R"(":{"username":"x","password":"y"}}})")
                  .ok());
  RegistryOptions options;
  options.docker_config = tmp.path() + "/config.json";
  options.ca_file = server.Get("REGISTRY_CA");
  auto r = NewHttpRegistry(options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto tags = (*r)->ListTags(Ref(server.Get("REGISTRY_HOST") + "/gantry/auth"));
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  auto other = (*r)->ListTags(Ref("localhost" + port + "/gantry/auth"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kUnauthenticated) << other.status().ToString();
}

TEST(OciRegistryTest, WrongPasswordIsUnauthenticatedWithoutRetries) {
  Client c = Authenticated("x");
  auto start = std::chrono::steady_clock::now();
  auto head = c.registry->HeadManifest(Ref(c.host + "/gantry/auth:t"));
  ASSERT_FALSE(head.ok());
  EXPECT_EQ(head.status().code(), Code::kUnauthenticated) << head.status().ToString();
  // One probe of the scheme, one anonymous try (401 Basic), one with the wrong password: no retries.
  EXPECT_LE(c.registry->Stats().requests, 3u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_NE(head.status().message().find("were refused"), std::string::npos) << head.status().message();
}

TEST(OciRegistryTest, IndexWithTwoPlatformsRoundTripsAndPlatformPicksOne) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor amd = WriteImage(src, {1000, 2000}, {"linux", "amd64", ""});
  Descriptor arm = WriteImage(src, {3000, 4000}, {"linux", "arm64", "v8"});
  amd.platform = Platform{"linux", "amd64", ""};
  arm.platform = Platform{"linux", "arm64", "v8"};
  Index index;
  index.media_type = std::string(media::kOciIndex);
  index.manifests = {amd, arm};
  auto idx = src.WriteBlob(SerializeIndex(index), media::kOciIndex);
  ASSERT_TRUE(idx.ok());
  ASSERT_TRUE(src.Tag(*idx, "multi").ok());
  Reference dest = Ref(c.host + "/gantry/multi:1");
  auto pushed = PushImage(*c.registry, src, "multi", dest);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(*pushed, idx->digest);

  Layout all = NewLayout(tmp.path() + "/all");
  auto whole = PullImage(*c.registry, dest, all, "multi");
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->digest, idx->digest);
  for (const Descriptor& d : {amd, arm}) {
    ASSERT_TRUE(all.HasBlob(d.digest));
    auto m = ParseManifest(*all.ReadBlob(d.digest), d.media_type);
    for (const Descriptor& l : m->layers) EXPECT_TRUE(all.HasBlob(l.digest));
  }

  Layout one = NewLayout(tmp.path() + "/one");
  auto picked = PullImage(*c.registry, dest, one, "arm", Platform{"linux", "arm64", ""});
  ASSERT_TRUE(picked.ok()) << picked.status().ToString();
  EXPECT_EQ(picked->digest, arm.digest);
  auto arm_manifest = ParseManifest(*one.ReadBlob(arm.digest), arm.media_type);
  for (const Descriptor& l : arm_manifest->layers) EXPECT_TRUE(one.HasBlob(l.digest));
  auto amd_manifest = ParseManifest(*src.ReadBlob(amd.digest), amd.media_type);
  EXPECT_FALSE(one.HasBlob(amd_manifest->layers[0].digest)) << "the other platform was pulled";

  auto none = PullImage(*c.registry, dest, one, "s390x", Platform{"linux", "s390x", ""});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  EXPECT_NE(none.status().message().find("linux/arm64/v8"), std::string::npos) << none.status().message();
}

TEST(OciRegistryTest, TagListingFollowsPagination) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {100, 200});
  ASSERT_TRUE(src.Tag(m, "x").ok());
  std::vector<std::string> want = {"a1", "b2", "c3", "d4", "e5"};
  for (const std::string& t : want)
    ASSERT_TRUE(PushImage(*c.registry, src, "x", Ref(c.host + "/gantry/tags:" + t)).ok());
  auto tags = c.registry->ListTags(Ref(c.host + "/gantry/tags"), 2);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  std::sort(tags->begin(), tags->end());
  EXPECT_EQ(*tags, want);
  auto missing = c.registry->ListTags(Ref(c.host + "/gantry/no-such-repo"));
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
}

// Regression: response bodies were cut at 1 MiB, so a manifest between 1 and 4 MiB (the limit
// registries apply) came back truncated.
TEST(OciRegistryTest, ManifestLargerThanOneMebibyteRoundTrips) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor small = WriteImage(src, {1000});
  auto m = ParseManifest(*src.ReadBlob(small.digest), small.media_type);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  m->annotations["org.example.big"] = std::string(3 << 20, 'a');
  auto big = src.WriteBlob(SerializeManifest(*m), media::kOciManifest);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  ASSERT_GT(big->size, 3 << 20);
  ASSERT_TRUE(src.Tag(*big, "big").ok());
  Reference dest = Ref(c.host + "/gantry/big-manifest:big");
  auto pushed = PushImage(*c.registry, src, "big", dest);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();

  auto got = c.registry->GetManifest(dest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->digest, big->digest);
  EXPECT_EQ(got->bytes.size(), static_cast<size_t>(big->size));
  Layout dst = NewLayout(tmp.path() + "/dst");
  auto pulled = PullImage(*c.registry, dest, dst, "big");
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  ExpectSameImage(src, dst, "big");
}

// gantry image latest: the registry's tags through each policy, as a user runs it.
TEST(OciRegistryTest, LatestTagByPolicyThroughTheCommandLine) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {64});
  ASSERT_TRUE(src.Tag(m, "x").ok());
  std::string repo = c.host + "/gantry/latest";
  for (const std::string t : {"1.2.0", "1.10.1", "2.0.0-rc.1", "main-20261101-abc", "main-20261128-def", "9", "10", "latest"})
    ASSERT_TRUE(PushImage(*c.registry, src, "x", Ref(repo + ":" + t)).ok());
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr) << "GANTRY_BINARY is not set";
  auto latest = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {binary, "image", "latest", repo, "--registry-config", "none"};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOptions po;
    po.timeout = std::chrono::seconds(60);
    auto r = gantry::Run(argv, po);
    GANTRY_CHECK(r.ok());
    return std::make_pair(r->exit_code, r->out + r->err);
  };
  EXPECT_EQ(latest({"--semver", "^1.0"}), std::make_pair(0, std::string("1.10.1\n")));  // 1.10 > 1.2: not alphabetical
  // "9" and "10" read as 9.0.0 and 10.0.0, as Flux (Masterminds semver) reads them: bound the range;
  // a pre-release matches only a bound naming a pre-release of the same MAJOR.MINOR.PATCH (base/semver.h).
  EXPECT_EQ(latest({"--semver", ">=2.0.0-0 <3.0.0"}), std::make_pair(0, std::string("2.0.0-rc.1\n")));
  EXPECT_EQ(latest({"--numerical"}).second, "10\n");
  EXPECT_EQ(latest({"--alphabetical", "--filter", "^main-(?P<ts>[0-9]+)-", "--extract", "$ts"}).second, "main-20261128-def\n");
  EXPECT_EQ(latest({"--alphabetical", "--filter", "^main-(?P<ts>[0-9]+)-", "--extract", "$ts", "--reference"}).second,
            repo + ":main-20261128-def\n");
  auto none = latest({"--semver", "^3"});
  EXPECT_EQ(none.first, 1);
  EXPECT_NE(none.second.find("^3"), std::string::npos) << none.second;  // the error names the policy
  EXPECT_EQ(latest({"--semver", "^1", "--numerical"}).first, 2);
}

TEST(OciRegistryTest, CrossRepositoryMountUploadsNothing) {
  Client c = Anonymous();
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  Descriptor m = WriteImage(src, {512 * 1024, 256 * 1024});
  ASSERT_TRUE(src.Tag(m, "v").ok());
  ASSERT_TRUE(PushImage(*c.registry, src, "v", Ref(c.host + "/gantry/base:v")).ok());
  uint64_t uploaded = c.registry->Stats().bytes_uploaded;
  EXPECT_GE(uploaded, 768u * 1024);
  PushOptions options;
  options.mount_from = {"gantry/base"};
  auto pushed = PushImage(*c.registry, src, "v", Ref(c.host + "/gantry/app:v"), options);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  RegistryStats s = c.registry->Stats();
  EXPECT_EQ(s.blobs_mounted, 3u);
  EXPECT_EQ(s.bytes_uploaded, uploaded) << "blobs were uploaded instead of mounted";
  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*c.registry, Ref(c.host + "/gantry/app:v"), dst, "v").ok());
  ExpectSameImage(src, dst, "v");
}

TEST(OciRegistryTest, PushKilledMidBlobResumesFromTheRegistrysOffset) {
  auto& server = testenv::Shared("registry.sh");
  testenv::ScopedTempDir tmp;
  Layout src = NewLayout(tmp.path() + "/src");
  constexpr uint64_t kChunk = 4 << 20;
  Descriptor m = WriteImage(src, {24 << 20, 1000});
  ASSERT_TRUE(src.Tag(m, "big").ok());
  Reference dest = Ref(server.Get("REGISTRY_HOST") + "/gantry/resume:big");
  RegistryOptions options;
  options.chunk_size = kChunk;
  options.upload_state_dir = tmp.path() + "/uploads";
  options.retry.max_attempts = 1;

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The push that gets killed: after the third chunk is stored, say so and wait to die.
    RegistryOptions o = options;
    o.docker_config = "none";
    o.on_chunk = [&](std::string_view, uint64_t offset) {
      if (offset >= 3 * kChunk) {
        (void)!::write(ready[1], "k", 1);
        while (true) ::pause();
      }
    };
    auto r = NewHttpRegistry(o);
    if (r.ok()) (void)PushImage(**r, src, "big", dest, {.parallel = 1});
    ::_exit(3);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child push ended before its third chunk";
  ::close(ready[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));

  Client c = Anonymous(options);
  auto pushed = PushImage(*c.registry, src, "big", dest, {.parallel = 1});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  RegistryStats s = c.registry->Stats();
  EXPECT_EQ(s.uploads_resumed, 1u);
  EXPECT_GE(s.resumed_from, 3 * kChunk);
  EXPECT_LE(s.bytes_uploaded, (24u << 20) - 3 * kChunk + 64 * 1024);
  EXPECT_TRUE(fs::is_empty(options.upload_state_dir)) << "upload state left behind";
  Layout dst = NewLayout(tmp.path() + "/dst");
  ASSERT_TRUE(PullImage(*c.registry, dest, dst, "big").ok());
  ExpectSameImage(src, dst, "big");
}

}  // namespace
}  // namespace gantry::oci
