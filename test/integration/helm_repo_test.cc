// Charts from Helm repositories (issue 16), against real servers: a classic Helm repository
// (test/env/helm-repo.sh: index.yaml and archives made by the real `helm package` and `helm repo
// index`, behind HTTP basic auth and TLS with a CA of its own) and an OCI registry
// (test/env/registry.sh, charts pushed with the real `helm push`). The fetcher (render::ChartRepos)
// is checked directly for version choice and bad input; the agent and `gantry sync` sync
// Applications from both to the real apiserver of test/env/kube-cluster.sh.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/agent.h"
#include "api/application.h"
#include "base/process.h"
#include "kube/kube.h"
#include "render/chart_repo.h"
#include "render/render.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

value::Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

std::string At(const value::Value& v, std::initializer_list<value::Value::PathElem> path) {
  const value::Value* f = v.Find(path);
  return f && f->IsString() ? std::string(f->AsString()) : "";
}

class HelmRepoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto& repo = testenv::Shared("helm-repo.sh", {"--auth"});
    auto& registry = testenv::Shared("registry.sh");
    auto& cluster = testenv::Shared("kube-cluster.sh");
    kubeconfig_ = new std::string(cluster.Get("KUBECONFIG"));
    auto config = kube::LoadConfig({.paths = {*kubeconfig_}});
    GANTRY_CHECK(config.ok());
    client_ = kube::NewHttpClient(*config)->release();
    GANTRY_CHECK(client_->Apply(api::ApplicationCrd(), {.force = true}).ok());
    for (int i = 0; i < 100 && !client_->Resolve(api::kApiVersion, api::kKind).ok(); ++i) {
      client_->InvalidateDiscovery();
      std::this_thread::sleep_for(100ms);
    }

    // The charts, packaged and indexed by the real helm.
    work_ = new testenv::ScopedTempDir();
    fs::path src = fs::path(work_->path()) / "src";
    auto chart = [&](const std::string& name, const std::string& version) {
      fs::path dir = src / (name + "-" + version) / name;
      WriteFile(dir / "Chart.yaml", "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n");
      WriteFile(dir / "values.yaml", "greeting: hello\n");
      WriteFile(dir / "templates/configmap.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
data:
  greeting: {{ .Values.greeting | quote }}
  version: {{ .Chart.Version | quote }}
  namespace: {{ .Release.Namespace | quote }}
  port: {{ .Values.port | default "none" | quote }}
)");
      return dir;
    };
    const std::string root = repo.Get("HELM_REPO_ROOT");
    for (const char* version : {"1.0.0", "1.1.0", "2.0.0-rc.1"}) {
      Helm({"package", chart("demo", version).string(), "-d", root});
    }
    Helm({"package", chart("tampered", "1.0.0").string(), "-d", root});
    Helm({"repo", "index", root, "--url", repo.Get("HELM_REPO_URL")});
    // An archive that no longer matches the digest the index holds.
    WriteFile(fs::path(root) / "tampered-1.0.0.tgz", "not the archive that was indexed");

    // The same chart in the OCI registry, and one that is only there.
    Helm({"package", chart("extra", "0.1.0").string(), "-d", work_->path()});
    for (const std::string& archive : std::vector<std::string>{root + "/demo-1.0.0.tgz", root + "/demo-1.1.0.tgz", work_->path() + "/extra-0.1.0.tgz"}) {
      Helm({"push", archive, "oci://" + registry.Get("REGISTRY_HOST") + "/charts", "--plain-http"});
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete kubeconfig_;
    delete work_;
  }

  // Runs the real helm with a home of its own; aborts when it fails.
  static void Helm(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {testenv::ToolsDir() + "/helm"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string home = work_->path() + "/helm-home";
    ProcessOptions po;
    po.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", home}, {"HELM_CONFIG_HOME", home + "/config"},
              {"HELM_CACHE_HOME", home + "/cache"}, {"HELM_DATA_HOME", home + "/data"}};
    po.timeout = 2min;
    po.merge_stderr = true;
    auto r = gantry::Run(argv, po);
    GANTRY_CHECK(r.ok());
    if (r->exit_code != 0) {
      fprintf(stderr, "helm %s failed: %s\n", args[0].c_str(), r->out.c_str());
      GANTRY_CHECK(r->exit_code == 0);
    }
  }

  static testenv::Server& Repo() { return testenv::Shared("helm-repo.sh", {"--auth"}); }
  static testenv::Server& Registry() { return testenv::Shared("registry.sh"); }
  static std::string RepoHost() { return Repo().Get("HELM_REPO_URL").substr(std::string("https://").size()); }

  render::ChartRepoOptions Options(bool credentials = true, bool ca = true) {
    render::ChartRepoOptions o{.cache_dir = tmp_.path() + "/charts"};
    if (credentials) {
      o.credentials.push_back({.host = RepoHost(), .username = Repo().Get("HELM_REPO_USER"),
                               .password = Repo().Get("HELM_REPO_PASSWORD")});
    }
    if (ca) o.ca_file = Repo().Get("HELM_REPO_CA");
    return o;
  }

  static std::string Data(const std::string& ns, const std::string& name, const std::string& key) {
    auto cm = client_->Get({"v1", "ConfigMap", ns, name});
    if (!cm.ok()) return "(" + cm.status().ToString() + ")";
    return value::StringAt(&*cm, {"data", std::string_view(key)});
  }

  static inline kube::Client* client_ = nullptr;
  static inline std::string* kubeconfig_ = nullptr;
  static inline testenv::ScopedTempDir* work_ = nullptr;
  testenv::ScopedTempDir tmp_;
};

TEST_F(HelmRepoTest, HttpRepositoryWithBasicAuthAndTlsPicksTheVersionAndVerifiesTheDigest) {
  render::ChartRepos repos(Options());
  auto start = std::chrono::steady_clock::now();
  auto chart = repos.Fetch({.repo_url = Repo().Get("HELM_REPO_URL"), .chart = "demo", .version = "1.x"});
  auto cold = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(chart.ok()) << chart.status().ToString();
  EXPECT_EQ(chart->version, "1.1.0");  // the highest release; 2.0.0-rc.1 is a pre-release
  EXPECT_THAT(chart->Revision(), HasSubstr("demo@1.1.0 sha256:"));
  EXPECT_TRUE(fs::is_regular_file(chart->dir / "templates/configmap.yaml"));

  auto r = render::Render({chart->dir.parent_path(), "demo"},
                          {.helm_binary = testenv::ToolsDir() + "/helm", .sandbox = render::Sandbox::kRequire});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(At((*r)[0].object, {"data", "version"}), "1.1.0");

  // Exact versions, pre-releases when named, and the cache: the same digest is not fetched again.
  EXPECT_EQ(repos.Fetch({Repo().Get("HELM_REPO_URL"), "demo", "1.0.0"})->version, "1.0.0");
  EXPECT_EQ(repos.Fetch({Repo().Get("HELM_REPO_URL"), "demo", ">=2.0.0-rc.0"})->version, "2.0.0-rc.1");
  start = std::chrono::steady_clock::now();
  auto again = repos.Fetch({Repo().Get("HELM_REPO_URL"), "demo", "1.x"});
  auto warm = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->dir, chart->dir);
  RecordProperty("fetch_cold_us", static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(cold).count()));
  RecordProperty("fetch_cached_us", static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(warm).count()));
}

TEST_F(HelmRepoTest, HttpRepositoryBadInputSaysWhatIsWrongAndWhere) {
  const std::string url = Repo().Get("HELM_REPO_URL");
  // No credentials, wrong credentials: 401 naming the host, a fetch failure.
  auto anonymous = render::FetchChart({url, "demo", "1.x"}, Options(false));
  ASSERT_EQ(anonymous.status().code(), Code::kUnauthenticated) << anonymous.status().ToString();
  EXPECT_THAT(anonymous.status().message(), HasSubstr("no credentials for " + RepoHost()));
  EXPECT_EQ(anonymous.status().reason(), render::kFetchFailed);
  render::ChartRepoOptions wrong = Options(false);
  wrong.credentials.push_back({.host = RepoHost(), .username = "someone", .password = "wrong"});
  auto refused = render::FetchChart({url, "demo", "1.x"}, wrong);
  EXPECT_THAT(refused.status().message(), HasSubstr("credentials for " + RepoHost() + " were refused"));
  // A certificate not trusted without the CA.
  auto untrusted = render::FetchChart({url, "demo", "1.x"}, Options(true, false));
  EXPECT_FALSE(untrusted.ok());
  EXPECT_EQ(untrusted.status().reason(), render::kFetchFailed) << untrusted.status().ToString();
  // No such chart: the ones there are. No such version: the newest ones.
  auto missing = render::FetchChart({url, "postgres", "1.x"}, Options());
  ASSERT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no chart \"postgres\""));
  EXPECT_THAT(missing.status().message(), HasSubstr("demo"));
  auto no_version = render::FetchChart({url, "demo", "^3"}, Options());
  ASSERT_EQ(no_version.status().code(), Code::kNotFound);
  EXPECT_THAT(no_version.status().message(), HasSubstr("2.0.0-rc.1, 1.1.0, 1.0.0"));
  // An archive that does not match the index's digest is refused and never extracted.
  auto tampered = render::FetchChart({url, "tampered", "1.0.0"}, Options());
  ASSERT_EQ(tampered.status().code(), Code::kDataLoss) << tampered.status().ToString();
  EXPECT_THAT(tampered.status().message(), HasSubstr("digest mismatch"));
  // An unreachable repository.
  auto down = render::FetchChart({"https://127.0.0.1:1/charts", "demo", "1.x"}, Options());
  EXPECT_EQ(down.status().reason(), render::kFetchFailed) << down.status().ToString();
}

TEST_F(HelmRepoTest, OciRegistryChartByRangeThroughGantrysRegistryClient) {
  const std::string url = "oci://" + Registry().Get("REGISTRY_HOST") + "/charts";
  auto chart = render::FetchChart({url, "demo", "~1.0"}, Options(false, false));
  ASSERT_TRUE(chart.ok()) << chart.status().ToString();
  EXPECT_EQ(chart->version, "1.0.0");
  EXPECT_THAT(chart->digest, HasSubstr("sha256:"));
  auto latest = render::FetchChart({url, "demo", ""}, Options(false, false));
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->version, "1.1.0");
  EXPECT_TRUE(fs::is_regular_file(latest->dir / "Chart.yaml"));
  auto none = render::FetchChart({url, "demo", "^5"}, Options(false, false));
  EXPECT_EQ(none.status().code(), Code::kNotFound) << none.status().ToString();
  EXPECT_THAT(none.status().message(), HasSubstr("1.1.0, 1.0.0"));
  auto absent = render::FetchChart({url, "nothing", "1.0.0"}, Options(false, false));
  EXPECT_FALSE(absent.ok());
}

// A registry with basic auth behind TLS: the chart is pulled with the credentials bound to its host
// and the CA; without credentials the error names the registry.
TEST_F(HelmRepoTest, OciRegistryWithAuthAndTls) {
  auto& secure = testenv::Shared("registry.sh", {"--auth"});
  const std::string host = secure.Get("REGISTRY_HOST");
  const std::string archive = Repo().Get("HELM_REPO_ROOT") + "/demo-1.1.0.tgz";
  Helm({"push", archive, "oci://" + host + "/private", "--ca-file", secure.Get("REGISTRY_CA"), "--username",
        secure.Get("REGISTRY_USER"), "--password", secure.Get("REGISTRY_PASSWORD")});
  render::ChartRepoOptions o{.cache_dir = tmp_.path() + "/charts", .ca_file = secure.Get("REGISTRY_CA")};
  auto anonymous = render::FetchChart({"oci://" + host + "/private", "demo", "1.1.0"}, o);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().reason(), render::kFetchFailed) << anonymous.status().ToString();
  EXPECT_THAT(anonymous.status().message(), HasSubstr(host));
  o.credentials.push_back(
      {.host = host, .username = secure.Get("REGISTRY_USER"), .password = secure.Get("REGISTRY_PASSWORD")});
  auto chart = render::FetchChart({"oci://" + host + "/private", "demo", "1.x"}, o);
  ASSERT_TRUE(chart.ok()) << chart.status().ToString();
  EXPECT_EQ(chart->version, "1.1.0");
}

// A chart whose dependencies come from both kinds of repository, not vendored: fetched into the
// private copy's charts/ before helm runs, at the version Chart.lock pins.
TEST_F(HelmRepoTest, ChartDependenciesAreFetchedFromBothKindsOfRepository) {
  fs::path repo = fs::path(tmp_.path()) / "repo";
  const std::string http = Repo().Get("HELM_REPO_URL");
  const std::string oci = "oci://" + Registry().Get("REGISTRY_HOST") + "/charts";
  WriteFile(repo / "umbrella/Chart.yaml", fmt::format(R"(apiVersion: v2
name: umbrella
version: 0.1.0
dependencies:
- {{name: demo, version: 1.x, repository: "{}"}}
- {{name: extra, version: ~0.1, repository: "{}"}}
)", http, oci));
  WriteFile(repo / "umbrella/Chart.lock", fmt::format(R"(dependencies:
- {{name: demo, repository: "{}", version: 1.0.0}}
- {{name: extra, repository: "{}", version: 0.1.0}}
digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
generated: "2026-12-06T00:00:00Z"
)", http, oci));
  WriteFile(repo / "umbrella/templates/own.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\n");
  render::ChartRepos repos(Options());
  render::Options o{.helm_binary = testenv::ToolsDir() + "/helm", .sandbox = render::Sandbox::kRequire};
  o.helm.release_name = "rel";
  o.charts = &repos;
  auto r = render::Render({repo, "umbrella"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::map<std::string, std::string> versions;
  for (const auto& m : *r) versions[At(m.object, {"metadata", "name"})] = At(m.object, {"data", "version"});
  EXPECT_EQ(versions.count("own"), 1u);
  EXPECT_EQ(versions["rel-demo"], "1.0.0");  // Chart.lock's pin, not the newest 1.x
  EXPECT_EQ(versions["rel-extra"], "0.1.0");
  EXPECT_FALSE(fs::exists(repo / "umbrella/charts")) << "the repository itself is never written";

  // Without a fetcher (as before), or with a dependency the repository does not have.
  o.charts = nullptr;
  EXPECT_EQ(render::Render({repo, "umbrella"}, o).status().code(), Code::kFailedPrecondition);
  o.charts = &repos;
  WriteFile(repo / "umbrella/Chart.lock", "dependencies: []\n");
  WriteFile(repo / "umbrella/Chart.yaml", fmt::format(R"(apiVersion: v2
name: umbrella
version: 0.1.0
dependencies:
- {{name: demo, version: ^7, repository: "{}"}}
)", http));
  auto missing = render::Render({repo, "umbrella"}, o);
  ASSERT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
  EXPECT_THAT(missing.status().message(), HasSubstr("umbrella/Chart.yaml dependencies[0] (demo)"));
  EXPECT_THAT(missing.status().message(), HasSubstr("no version matches \"^7\""));
}

// The agent syncs an Application from each kind of repository, with Argo CD's helm fields.
TEST_F(HelmRepoTest, AgentSyncsApplicationsFromAHelmRepositoryAndAnOciRegistry) {
  const std::string ns = "helm-repo-agent";
  ASSERT_TRUE(client_->Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + "}\n")).ok());
  auto app = [&](const std::string& name, const std::string& url, const std::string& revision) {
    return Yaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: {1}}}
spec:
  source:
    repoURL: "{2}"
    chart: demo
    targetRevision: "{3}"
    helm:
      valuesObject: {{greeting: from-values-object}}
      parameters: [{{name: port, value: "8080", forceString: true}}]
  destination: {{namespace: {1}}}
  syncPolicy: {{automated: {{prune: true}}}}
)", name, ns, url, revision));
  };
  ASSERT_TRUE(client_->Apply(app("from-http", Repo().Get("HELM_REPO_URL"), "1.x")).ok());
  ASSERT_TRUE(
      client_->Apply(app("from-oci", "oci://" + Registry().Get("REGISTRY_HOST") + "/charts", "1.0.0")).ok());

  agent::AgentOptions o;
  o.namespace_ = ns;
  o.cache_dir = tmp_.path() + "/agent-cache";
  o.interval = 2s;
  o.lease_name.clear();
  o.git_credentials = {
      fmt::format("{}={}:{}", RepoHost(), Repo().Get("HELM_REPO_USER"), Repo().Get("HELM_REPO_PASSWORD"))};
  o.chart_ca_file = Repo().Get("HELM_REPO_CA");
  o.reconcile.health_timeout = 60s;
  render::Options ro;
  ro.helm_binary = testenv::ToolsDir() + "/helm";
  auto source = agent::NewSource(o, ro, client_);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  auto a = agent::NewAgent(*client_, o, *std::move(source));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::thread runner([&] { EXPECT_TRUE((*a)->Run().ok()); });

  auto wait = [&](const std::string& name) {
    auto deadline = std::chrono::steady_clock::now() + 90s;
    value::Value last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = client_->Get({api::kApiVersion, api::kKind, ns, name});
      if (got.ok()) {
        last = *got;
        if (At(last, {"status", "sync", "status"}) == "Synced") return last;
      }
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << name << " did not sync; status:\n"
                  << (last.Get("status") ? value::ToYaml(*last.Get("status")) : "none");
    return last;
  };
  value::Value http = wait("from-http");
  value::Value oci = wait("from-oci");
  (*a)->Stop();
  runner.join();

  EXPECT_THAT(At(http, {"status", "sync", "revision"}), HasSubstr("demo@1.1.0 sha256:"));
  EXPECT_THAT(At(oci, {"status", "sync", "revision"}), HasSubstr("demo@1.0.0 sha256:"));
  EXPECT_EQ(Data(ns, "from-http-demo", "version"), "1.1.0");
  EXPECT_EQ(Data(ns, "from-http-demo", "greeting"), "from-values-object");
  EXPECT_EQ(Data(ns, "from-http-demo", "port"), "8080");
  EXPECT_EQ(Data(ns, "from-http-demo", "namespace"), ns);
  EXPECT_EQ(Data(ns, "from-oci-demo", "version"), "1.0.0");
}

// `gantry sync --repo URL --chart NAME --revision RANGE`, and its errors.
TEST_F(HelmRepoTest, CliSyncsAChartFromARepository) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  auto cli = [&](std::vector<std::string> args, bool with_password) {
    args.insert(args.begin(), binary);
    ProcessOptions po;
    po.timeout = 3min;
    po.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", tmp_.path()}, {"KUBECONFIG", *kubeconfig_},
              {"GANTRY_HELM", testenv::ToolsDir() + "/helm"}, {"GANTRY_CACHE", tmp_.path() + "/cache"}};
    if (with_password) po.env["GANTRY_GIT_PASSWORD"] = Repo().Get("HELM_REPO_PASSWORD");
    auto r = gantry::Run(args, po);
    GANTRY_CHECK(r.ok());
    return *r;
  };
  const std::vector<std::string> repo = {"--repo", Repo().Get("HELM_REPO_URL"), "--chart", "demo",
                                         "--git-username", Repo().Get("HELM_REPO_USER"),
                                         "--ca-file", Repo().Get("HELM_REPO_CA")};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), repo.begin(), repo.end());
    return args;
  };
  ProcessResult sync = cli(with({"sync", "--app", "cli-chart", "-n", "helm-repo-cli", "--create-namespace",
                                 "--revision", "~1.0", "--set", "greeting=from-cli", "--release-name", "cli-chart"}),
                           true);
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_EQ(Data("helm-repo-cli", "cli-chart-demo", "version"), "1.0.0");
  EXPECT_EQ(Data("helm-repo-cli", "cli-chart-demo", "greeting"), "from-cli");
  ProcessResult diff = cli(with({"diff", "--app", "cli-chart", "-n", "helm-repo-cli", "--revision", "~1.0", "--set",
                                 "greeting=from-cli", "--release-name", "cli-chart"}),
                           true);
  EXPECT_EQ(diff.exit_code, 0) << diff.out << diff.err;

  ProcessResult anonymous = cli(with({"render", "--revision", "1.x"}), false);
  EXPECT_NE(anonymous.exit_code, 0);
  EXPECT_THAT(anonymous.out + anonymous.err, HasSubstr("no credentials for " + RepoHost()));
  ProcessResult no_version = cli(with({"render", "--revision", "^9"}), true);
  EXPECT_NE(no_version.exit_code, 0);
  EXPECT_THAT(no_version.out + no_version.err, HasSubstr("no version matches \"^9\""));
}

}  // namespace
}  // namespace gantry
