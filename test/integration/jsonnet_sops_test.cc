// Jsonnet applications and SOPS-encrypted Secrets (issue 16), with the real go-jsonnet, sops and
// age-keygen built by test/env/build-tools.sh, the real bubblewrap, and the gantry binary
// (GANTRY_BINARY) against the real apiserver of test/env/kube-cluster.sh:
//   - render: top-level arguments, external variables, a library path, arrays and Lists, imports
//     that leave the copy failing;
//   - `gantry sync` of a Jsonnet directory with a TLA and an ext var;
//   - a Secret encrypted by `sops --encrypt --age` is applied decrypted; `gantry diff` and `gantry
//     render` never show its value; a wrong key is a clear error naming the recipient, and nothing
//     is applied.

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/process.h"
#include "kube/kube.h"
#include "render/render.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using value::Value;

constexpr char kPlaintext[] = "pl41ntext-hunter2-s3cret";

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class JsonnetSopsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    auto client = kube::NewHttpClient(*config);
    GANTRY_CHECK(client.ok());
    client_ = client->release();
    ProcessOptions po;
    po.inherit_env = true;
    po.timeout = std::chrono::minutes(30);
    auto built = RunChecked({testenv::ScriptDir() + "/build-tools.sh", "jsonnet", "sops", "age"}, po);
    if (!built.ok()) DieBecause("build-tools.sh jsonnet sops age: " + built.status().ToString());
    std::string out = built->out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    tools_ = new std::string(out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1));
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
    delete tools_;
  }
  static kube::Client& client() { return *client_; }
  static std::string Tool(const std::string& name) { return *tools_ + "/" + name; }

  static ProcessResult Run(std::vector<std::string> argv, std::map<std::string, std::string> extra = {}) {
    ProcessOptions po;
    po.timeout = std::chrono::minutes(3);
    po.env = {{"PATH", "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"HOME", home_.path()},
              {"KUBECONFIG", *kubeconfig_}, {"GANTRY_JSONNET", Tool("jsonnet")}, {"GANTRY_SOPS", Tool("sops")}};
    for (auto& [k, v] : extra) po.env[k] = v;
    auto r = gantry::Run(argv, po);
    GANTRY_CHECK(r.ok());
    return *r;
  }
  static ProcessResult Gantry(std::vector<std::string> args) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    args.insert(args.begin(), binary);
    return Run(std::move(args));
  }
  // A new age key file under `dir`; returns its public key (the recipient).
  static std::string NewAgeKey(const fs::path& file) {
    fs::create_directories(file.parent_path());
    ProcessResult r = Run({Tool("age-keygen"), "-o", file.string()});
    GANTRY_CHECK(r.success());
    ProcessResult pub = Run({Tool("age-keygen"), "-y", file.string()});
    GANTRY_CHECK(pub.success());
    std::string out = pub.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }
  static std::optional<Value> Live(const kube::ObjectRef& ref) {
    auto got = client().Get(ref);
    if (!got.ok()) return std::nullopt;
    return *std::move(got);
  }

  static inline std::string* kubeconfig_ = nullptr;
  static inline std::string* tools_ = nullptr;
  static inline kube::Client* client_ = nullptr;
  static inline testenv::ScopedTempDir home_;
};

TEST_F(JsonnetSopsTest, RenderEvaluatesEachFileWithTlasExtVarsAndLibraries) {
  testenv::ScopedTempDir dir;
  fs::path repo = dir.path();
  WriteFile(repo / "lib/labels.libsonnet", "{ labels(app):: {app: app, team: std.extVar('team')} }\n");
  WriteFile(repo / "app/main.jsonnet", R"(local l = import 'labels.libsonnet';
function(name, replicas=1) {
  apiVersion: 'v1', kind: 'ConfigMap',
  metadata: {name: name, labels: l.labels(name)},
  data: {replicas: std.toString(replicas)},
})");
  WriteFile(repo / "app/more.jsonnet", R"(function(name, replicas) [
  {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: name + '-a'}},
  {apiVersion: 'v1', kind: 'List', items: [{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: name + '-b'}}]},
])");
  WriteFile(repo / "app/helpers.libsonnet", "error 'libraries are not evaluated'\n");
  EXPECT_EQ(render::Detect(repo / "app"), render::Renderer::kJsonnet);

  render::Options o;
  o.jsonnet_binary = Tool("jsonnet");
  o.jsonnet.tlas = {{"name", "web", false}, {"replicas", "2 + 1", true}};
  o.jsonnet.ext_vars = {{"team", "payments", false}};
  o.jsonnet.libs = {"lib"};
  auto r = render::Render(render::Source{repo, "app"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(value::StringAt(&(*r)[0].object, {"metadata", "name"}), "web");
  EXPECT_EQ(value::StringAt(&(*r)[0].object, {"data", "replicas"}), "3");
  EXPECT_EQ(value::StringAt(&(*r)[0].object, {"metadata", "labels", "team"}), "payments");
  EXPECT_EQ((*r)[0].source, "jsonnet app/main.jsonnet");
  EXPECT_EQ(value::StringAt(&(*r)[1].object, {"metadata", "name"}), "web-a");
  EXPECT_EQ(value::StringAt(&(*r)[2].object, {"metadata", "name"}), "web-b");

  // A missing ext var is jsonnet's error, named with the file.
  o.jsonnet.ext_vars.clear();
  r = render::Render(render::Source{repo, "app"}, o);
  EXPECT_EQ(r.status().code(), Code::kUnknown);
  EXPECT_THAT(r.status().message(), HasSubstr("jsonnet app/main.jsonnet failed"));
  EXPECT_THAT(r.status().message(), HasSubstr("team"));

  // Imports outside the copy find nothing: the host's files are not in the sandbox.
  WriteFile(dir.path() + "/../gantry-jsonnet-outside-" + std::to_string(getpid()) + ".libsonnet", "{}");
  WriteFile(repo / "escape/main.jsonnet",
            "import '../../gantry-jsonnet-outside-" + std::to_string(getpid()) + ".libsonnet'\n");
  WriteFile(repo / "abs/main.jsonnet", "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: importstr '" +
                                           fs::absolute(dir.path()).string() + "/lib/labels.libsonnet'}}\n");
  o = {};
  o.jsonnet_binary = Tool("jsonnet");
  for (const char* app : {"escape", "abs"}) {
    r = render::Render(render::Source{repo, app}, o);
    EXPECT_EQ(r.status().code(), Code::kUnknown) << app << ": " << r.status().ToString();
    EXPECT_THAT(r.status().message(), HasSubstr("couldn't open import")) << app;
  }
  fs::remove(dir.path() + "/../gantry-jsonnet-outside-" + std::to_string(getpid()) + ".libsonnet");
}

TEST_F(JsonnetSopsTest, SyncAppliesAJsonnetAppWithATlaAndAnExtVar) {
  testenv::ScopedTempDir dir;
  fs::path app = fs::path(dir.path()) / "app";
  WriteFile(app / "app.jsonnet", R"(function(env) [
  {apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'jsonnet-' + env}},
  {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'settings', namespace: 'jsonnet-' + env},
   data: {env: env, region: std.extVar('region')}},
])");
  ProcessResult sync = Gantry({"sync", app.string(), "--app", "jsonnet", "-n", "jsonnet-prod", "--jsonnet-tla",
                               "env=prod", "--jsonnet-ext-str", "region=eu-west-1"});
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  auto live = Live({"v1", "ConfigMap", "jsonnet-prod", "settings"});
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(value::StringAt(&*live, {"data", "env"}), "prod");
  EXPECT_EQ(value::StringAt(&*live, {"data", "region"}), "eu-west-1");
  ProcessResult clean = Gantry({"diff", app.string(), "--app", "jsonnet", "-n", "jsonnet-prod", "--jsonnet-tla",
                                "env=prod", "--jsonnet-ext-str", "region=eu-west-1"});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
}

TEST_F(JsonnetSopsTest, ASopsEncryptedSecretIsAppliedDecryptedAndNeverShown) {
  testenv::ScopedTempDir dir;
  fs::path app = fs::path(dir.path()) / "app";
  fs::path key = fs::path(dir.path()) / "keys/age.agekey", wrong = fs::path(dir.path()) / "keys/wrong.agekey";
  std::string recipient = NewAgeKey(key);
  NewAgeKey(wrong);
  WriteFile(app / "namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: sops}\n");
  fs::path plain = fs::path(dir.path()) / "secret.yaml";
  WriteFile(plain, std::string("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: sops\n"
                               "type: Opaque\nstringData:\n  password: ") + kPlaintext + "\n");
  ProcessResult enc = Run({Tool("sops"), "--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$",
                           plain.string()});
  ASSERT_TRUE(enc.success()) << enc.err;
  ASSERT_THAT(enc.out, Not(HasSubstr(kPlaintext)));
  WriteFile(app / "secret.enc.yaml", enc.out);

  // Without a key, and with the wrong one: a clear error naming the object and the recipient; nothing
  // is applied (not even the namespace).
  ProcessResult none = Gantry({"sync", app.string(), "--app", "sops", "-n", "sops"});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_THAT(none.err, HasSubstr("Secret sops/db"));
  EXPECT_THAT(none.err, HasSubstr("no age key"));
  ProcessResult bad = Gantry({"sync", app.string(), "--app", "sops", "-n", "sops", "--sops-age-key-file", wrong.string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("secret.enc.yaml:1:1 (Secret sops/db) is SOPS-encrypted for age recipient " +
                                 recipient + ", and none of the age keys Gantry holds is one of them"));
  EXPECT_FALSE(Live({"v1", "Namespace", "", "sops"}).has_value());

  // With the key: applied decrypted.
  ProcessResult sync = Gantry({"sync", app.string(), "--app", "sops", "-n", "sops", "--sops-age-key-file", key.string()});
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_THAT(sync.out + sync.err, Not(HasSubstr(kPlaintext)));
  auto live = Live({"v1", "Secret", "sops", "db"});
  ASSERT_TRUE(live.has_value());
  // stringData is folded into data by the apiserver: base64 of the plaintext.
  EXPECT_EQ(value::StringAt(&*live, {"data", "password"}), "cGw0MW50ZXh0LWh1bnRlcjItczNjcmV0");
  EXPECT_EQ(live->Find({"sops"}), nullptr);

  // A changed value: diff says the Secret changes, without the value (old or new).
  WriteFile(plain, std::string("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: sops\n"
                               "type: Opaque\nstringData:\n  password: ") + kPlaintext + "-2\n");
  enc = Run({Tool("sops"), "--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$", plain.string()});
  ASSERT_TRUE(enc.success()) << enc.err;
  WriteFile(app / "secret.enc.yaml", enc.out);
  ProcessResult diff = Gantry({"diff", app.string(), "--app", "sops", "-n", "sops", "--sops-age-key-file", key.string()});
  EXPECT_EQ(diff.exit_code, 1) << diff.out << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("Secret"));
  EXPECT_THAT(diff.out + diff.err, Not(HasSubstr(kPlaintext)));
  EXPECT_THAT(diff.out + diff.err, Not(HasSubstr("cGw0MW50ZXh0")));

  // render prints the Secret with its values hidden.
  ProcessResult rendered = Gantry({"render", app.string(), "--sops-age-key-file", key.string()});
  ASSERT_EQ(rendered.exit_code, 0) << rendered.err;
  EXPECT_THAT(rendered.out, HasSubstr("decrypted with SOPS, values hidden"));
  EXPECT_THAT(rendered.out + rendered.err, Not(HasSubstr(kPlaintext)));
  EXPECT_THAT(rendered.out, Not(HasSubstr("ENC[")));

  // A tampered file fails its MAC check.
  std::string text = ReadAll(app / "secret.enc.yaml");
  text.replace(text.find("name: db"), 8, "name: dc");
  WriteFile(app / "secret.enc.yaml", text);
  ProcessResult tampered = Gantry({"render", app.string(), "--sops-age-key-file", key.string()});
  EXPECT_NE(tampered.exit_code, 0);
  EXPECT_THAT(tampered.err, HasSubstr("MAC does not match"));
}

}  // namespace
}  // namespace gantry
