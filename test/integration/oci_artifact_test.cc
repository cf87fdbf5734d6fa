// OCI artifacts as a manifest source, against the real docker-registry of test/env/registry.sh
// (anonymous HTTP, and htpasswd basic auth behind TLS) and the real apiserver: `gantry push
// artifact` publishes a directory (the same digest twice), the pull agent syncs it, follows a new
// push to the same tag, keeps a digest pin, refuses an artifact whose layer blob is gone without
// applying anything, and uses a registry credential only for projects that list its host;
// `gantry sync --repo oci://` applies one over TLS with the Docker config's credentials.

#include <curl/curl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "base/process.h"
#include "kube/kube.h"
#include "oci/artifact.h"
#include "project/project.h"
#include "test/env/testenv.h"

namespace gantry::agent {
namespace {

namespace fs = std::filesystem;
using value::Value;
using namespace std::chrono_literals;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

std::string ConfigMap(const std::string& name, const std::string& value) {
  return fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\ndata: {{value: \"{}\"}}\n", name, value);
}

void Write(const fs::path& p, std::string_view data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

class OciArtifactTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    client_ = kube::NewHttpClient(*config)->release();
    for (const Value& crd : {api::ApplicationCrd(), project::ProjectCrd()}) {
      GANTRY_CHECK(client_->Apply(crd, {.force = true}).ok());
    }
    for (int i = 0; i < 100 && !(client_->Resolve(api::kApiVersion, api::kKind).ok() &&
                                 client_->Resolve(api::kApiVersion, "Project").ok());
         ++i) {
      client_->InvalidateDiscovery();
      std::this_thread::sleep_for(100ms);
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
  }

  void SetUp() override {
    static std::atomic<int> n{0};
    id_ = fmt::format("t{}", ++n);
    ns_ = "oci-" + id_;
    ASSERT_TRUE(client_->Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns_ + "}\n")).ok());
  }

  void TearDown() override {
    for (auto& a : agents_) a->Stop();
    for (auto& t : threads_) t.join();
  }

  // Runs the gantry binary with a private HOME (no Docker config unless the test writes one).
  ProcessResult Gantry(std::vector<std::string> args, std::optional<std::string> stdin_data = std::nullopt) {
    const char* binary = std::getenv("GANTRY_BINARY");
    GANTRY_CHECK(binary != nullptr);
    args.insert(args.begin(), binary);
    ProcessOptions po;
    po.timeout = 3min;
    po.stdin_data = std::move(stdin_data);
    po.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", tmp_.path()}, {"KUBECONFIG", *kubeconfig_},
              {"GANTRY_HELM", testenv::ToolsDir() + "/helm"}};
    auto r = gantry::Run(args, po);
    GANTRY_CHECK(r.ok());
    return *r;
  }

  // `gantry push artifact DIR oci://REF`; returns the digest it printed.
  std::string Push(const fs::path& dir, const std::string& ref, std::vector<std::string> extra = {},
                   std::optional<std::string> stdin_data = std::nullopt) {
    std::vector<std::string> args = {"push", "artifact", dir.string(), "oci://" + ref};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = Gantry(args, std::move(stdin_data));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    EXPECT_TRUE(oci::ValidateDigest(out).ok()) << out;
    return out;
  }

  Agent& StartAgent(const oci::RegistryOptions& registry = {}) {
    AgentOptions o;
    o.namespace_ = ns_;
    o.cache_dir = tmp_.path() + "/cache-" + std::to_string(agents_.size());
    o.interval = 2s;
    o.workers = 4;
    o.lease_name = "";
    o.registry = registry;
    o.registry.docker_config = "none";
    o.reconcile.health_timeout = 60s;
    render::Options ro;
    ro.helm_binary = testenv::ToolsDir() + "/helm";
    auto source = NewSource(o, ro, client_);
    GANTRY_CHECK(source.ok());
    auto agent = NewAgent(*client_, o, *std::move(source));
    GANTRY_CHECK(agent.ok());
    agents_.push_back(std::move(agent).value());
    Agent* a = agents_.back().get();
    threads_.emplace_back([a] {
      Status s = a->Run();
      EXPECT_TRUE(s.ok()) << s.ToString();
    });
    return *a;
  }

  void ApplyApp(const std::string& name, const std::string& repo, const std::string& revision,
                const std::string& path, const std::string& project = "default") {
    auto r = client_->Apply(Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {1}}}
spec:
  project: {5}
  source: {{repoURL: "oci://{2}", targetRevision: "{3}", path: {4}}}
  destination: {{namespace: {1}}}
  syncPolicy:
    automated: {{prune: true, selfHeal: true}}
    retry: {{limit: 1, backoff: {{duration: 1s}}}}
)", name, ns_, repo, revision, path, project)), {.force = true});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  Value WaitApp(const std::string& name, const std::function<bool(const Value&)>& pred,
                std::chrono::seconds limit = 60s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    Value last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = client_->Get({api::kApiVersion, api::kKind, ns_, name});
      if (got.ok()) {
        last = *got;
        if (pred(last)) return last;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "timed out waiting for Application " << name << "; last status:\n"
                  << (last.Get("status") ? value::ToYaml(*last.Get("status")) : "none");
    return last;
  }

  static std::string At(const Value& v, std::initializer_list<Value::PathElem> path) {
    const Value* f = v.Find(path);
    return f && f->IsString() ? std::string(f->AsString()) : "";
  }
  static bool SyncedAt(const Value& app, const std::string& digest) {
    return At(app, {"status", "sync", "status"}) == "Synced" && At(app, {"status", "sync", "revision"}) == digest;
  }
  // The message of the condition of `type` that is True, or "".
  static std::string Condition(const Value& app, std::string_view type) {
    const Value* conds = app.Find({"status", "conditions"});
    for (size_t i = 0; conds != nullptr && i < conds->size(); ++i) {
      if (At(*conds->At(i), {"type"}) == type) return At(*conds->At(i), {"message"});
    }
    return "";
  }
  std::string Data(const std::string& name) {
    auto cm = client_->Get({"v1", "ConfigMap", ns_, name});
    return cm.ok() ? At(*cm, {"data", "value"}) : "";
  }

  static inline std::string* kubeconfig_ = nullptr;
  static inline kube::Client* client_ = nullptr;
  std::string id_, ns_;
  testenv::ScopedTempDir tmp_;
  std::vector<std::unique_ptr<Agent>> agents_;
  std::vector<std::thread> threads_;
};

TEST_F(OciArtifactTest, AgentSyncsAnArtifactFollowsItsTagAndKeepsADigestPin) {
  auto& registry = testenv::Shared("registry.sh");
  const std::string repo = registry.Get("REGISTRY_HOST") + "/team/manifests-" + id_;
  fs::path src = tmp_.path() + "/src";
  Write(src / "live" / "cm.yaml", ConfigMap("live", "1"));
  Write(src / "pinned" / "cm.yaml", ConfigMap("pinned", "1"));
  Write(src / ".git" / "HEAD", "not published\n");
  std::string first = Push(src, repo + ":prod", {"--source", "https://git.example/config", "--revision", "main@sha1:1"});
  // Reproducible: the same directory, other mtimes, the same digest.
  fs::last_write_time(src / "live" / "cm.yaml", fs::file_time_type::clock::now() - 1h);
  EXPECT_EQ(Push(src, repo + ":prod", {"--source", "https://git.example/config", "--revision", "main@sha1:1"}), first);

  StartAgent();
  ApplyApp("live", repo, "prod", "live");
  ApplyApp("pinned", repo, first, "pinned");
  WaitApp("live", [&](const Value& a) { return SyncedAt(a, first); });
  WaitApp("pinned", [&](const Value& a) { return SyncedAt(a, first); });
  EXPECT_EQ(Data("live"), "1");
  EXPECT_EQ(Data("pinned"), "1");

  // A new version pushed to the same tag is applied; the pinned application stays where it is.
  Write(src / "live" / "cm.yaml", ConfigMap("live", "2"));
  Write(src / "pinned" / "cm.yaml", ConfigMap("pinned", "2"));
  std::string second = Push(src, repo + ":prod", {"--revision", "main@sha1:2"});
  ASSERT_NE(second, first);
  WaitApp("live", [&](const Value& a) { return SyncedAt(a, second); });
  EXPECT_EQ(Data("live"), "2");
  Value pinned = WaitApp("pinned", [&](const Value& a) { return SyncedAt(a, first); });
  EXPECT_EQ(Data("pinned"), "1");
}

// DELETEs a blob from the registry (docker-registry of registry.sh has deletes enabled).
long DeleteBlob(const std::string& host, const std::string& repository, const std::string& digest) {
  CURL* curl = curl_easy_init();
  std::string url = fmt::format("http://{}/v2/{}/blobs/{}", host, repository, digest);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  long code = 0;
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  return code;
}

TEST_F(OciArtifactTest, ManifestWhoseLayerBlobIsMissingFailsClearlyAndAppliesNothing) {
  auto& registry = testenv::Shared("registry.sh");
  const std::string repository = "team/broken-" + id_;
  const std::string repo = registry.Get("REGISTRY_HOST") + "/" + repository;
  fs::path src = tmp_.path() + "/src";
  Write(src / "cm.yaml", ConfigMap("broken", "1"));
  std::string digest = Push(src, repo + ":v1");
  // The layer's digest, from the manifest, then the blob removed behind the manifest's back.
  auto client = oci::NewHttpRegistry({.docker_config = "none"});
  ASSERT_TRUE(client.ok());
  auto ref = oci::ArtifactReference("oci://" + repo, digest);
  ASSERT_TRUE(ref.ok());
  auto raw = (*client)->GetManifest(*ref);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  auto manifest = oci::ParseManifest(raw->bytes, raw->media_type);
  ASSERT_TRUE(manifest.ok());
  ASSERT_EQ(DeleteBlob(registry.Get("REGISTRY_HOST"), repository, manifest->layers[0].digest), 202);

  StartAgent();
  ApplyApp("broken", repo, "v1", ".");
  Value app = WaitApp("broken", [](const Value& a) { return !Condition(a, "FetchFailed").empty(); });
  EXPECT_NE(Condition(app, "FetchFailed").find(manifest->layers[0].digest), std::string::npos)
      << value::ToYaml(*app.Get("status"));
  EXPECT_NE(At(app, {"status", "sync", "status"}), "Synced");
  EXPECT_FALSE(client_->Get({"v1", "ConfigMap", ns_, "broken"}).ok()) << "nothing is applied";

  // The CLI says the same, and exits non-zero.
  ProcessResult render = Gantry({"render", "--repo", "oci://" + repo, "--revision", "v1"});
  EXPECT_NE(render.exit_code, 0);
  EXPECT_NE(render.err.find(manifest->layers[0].digest), std::string::npos) << render.err;
}

TEST_F(OciArtifactTest, TlsRegistryWithAuthThroughTheCliAndTheAgentsProjectRule) {
  auto& registry = testenv::Shared("registry.sh", {"--auth"});
  const std::string host = registry.Get("REGISTRY_HOST");
  const std::string repo = host + "/team/private-" + id_;
  const std::string user = registry.Get("REGISTRY_USER"), password = registry.Get("REGISTRY_PASSWORD");
  const std::string ca = registry.Get("REGISTRY_CA");
  fs::path src = tmp_.path() + "/src";
  Write(src / "cm.yaml", ConfigMap("private", "1"));
  // Without credentials the push is refused; with them it goes through.
  ProcessResult anonymous = Gantry({"push", "artifact", src.string(), "oci://" + repo + ":v1", "--ca-file", ca});
  EXPECT_EQ(anonymous.exit_code, 3) << anonymous.out << anonymous.err;
  std::string digest = Push(src, repo + ":v1", {"--ca-file", ca, "--username", user, "--password-stdin"}, password + "\n");

  // gantry sync --repo oci:// with the Docker config's credentials, on the real apiserver.
  fs::path docker = tmp_.path() + "/docker/config.json";
  Write(docker, fmt::format(R"({{"auths":{{"{}":{{"username":"{}","password":"{}"}}}}}})", host, user, password));
  ProcessResult sync = Gantry({"sync", "--repo", "oci://" + repo, "--revision", "v1", "--app", "cli-" + id_, "-n", ns_,
                               "--registry-config", docker.string(), "--registry-ca-file", ca});
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_EQ(Data("private"), "1");

  // The agent holds the credential: a project that does not list the host may not use it.
  auto p = client_->Apply(Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: no-registry, namespace: {0}}}
spec:
  sourceRepos: ["*"]
  destinations: [{{server: "*", namespace: "{0}"}}]
)", ns_)), {.force = true});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  oci::RegistryOptions options{.credentials = {{host, user, password}}, .ca_file = ca};
  StartAgent(options);
  ApplyApp("denied", repo, "v1", ".", "no-registry");
  Value denied = WaitApp("denied", [](const Value& a) { return !Condition(a, "ProjectDenied").empty(); });
  EXPECT_NE(Condition(denied, "ProjectDenied").find(host), std::string::npos) << value::ToYaml(*denied.Get("status"));
  // The default project lists every credential ("*").
  Write(src / "cm.yaml", ConfigMap("agent", "2"));
  std::string second = Push(src, repo + ":v2", {"--ca-file", ca, "--username", user, "--password-stdin"}, password + "\n");
  ApplyApp("allowed", repo, second, ".");
  WaitApp("allowed", [&](const Value& a) { return SyncedAt(a, second); });
  EXPECT_EQ(Data("agent"), "2");
  EXPECT_NE(digest, second);
}

}  // namespace
}  // namespace gantry::agent
