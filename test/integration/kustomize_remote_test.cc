// Kustomize remote bases and helmCharts with the real kustomize and helm (issue 16): a remote base
// on the Git server of test/env/git-server.sh is fetched by Gantry (never by kustomize, which has no
// network in its sandbox) from an allowed host only, synced by `gantry sync` to the real apiserver,
// and rendered again when its branch moves; a kustomization with helmCharts and a vendored chart
// (made by the real `helm create`) renders exactly as `kustomize build --enable-helm` run by hand.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/process.h"
#include "git/git.h"
#include "kube/kube.h"
#include "render/git_sources.h"
#include "render/render.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

ProcessResult MustRun(const std::vector<std::string>& argv, const std::string& cwd,
                      std::map<std::string, std::string> env = {}) {
  ProcessOptions po;
  po.cwd = cwd;
  po.timeout = std::chrono::minutes(3);
  po.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", cwd}, {"GIT_CONFIG_NOSYSTEM", "1"}, {"LANG", "C"}};
  for (auto& [k, v] : env) po.env[k] = v;
  auto r = gantry::Run(argv, po);
  GANTRY_CHECK(r.ok());
  EXPECT_EQ(r->exit_code, 0) << argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << ": " << r->out << r->err;
  return *r;
}

std::string Cm(const std::string& name, const std::string& value) {
  return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  v: \"" + value + "\"\n";
}

// A repository on the test Git server and a work tree whose commits are pushed to it.
class Repo {
 public:
  Repo(const testenv::Server& server, const std::string& name) {
    static int counter = 0;
    auto out = server.Command("create", {name + "-" + std::to_string(++counter) + "-" + std::to_string(getpid())});
    GANTRY_CHECK(out.ok());
    auto values = testenv::ParseValues(*out);
    url_ = values["REPO_URL"];
    path_ = values["REPO_PATH"];
    Git({"init", "-q", "-b", "main"});
  }
  void Commit(const std::map<std::string, std::string>& files) {
    for (const auto& [name, text] : files) WriteFile(fs::path(work_.path()) / name, text);
    Git({"add", "-A"});
    Git({"commit", "-q", "-m", "change"});
    Git({"push", "-q", "-f", "file://" + path_, "main"});
  }
  const std::string& url() const { return url_; }

 private:
  void Git(std::vector<std::string> args) {
    args.insert(args.begin(), {"git", "-c", "user.name=Test", "-c", "user.email=t@example.com"});
    MustRun(args, work_.path());
  }
  testenv::ScopedTempDir work_;
  std::string url_, path_;
};

class KustomizeRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testenv::ToolsDir();
    host_ = server_.Get("GIT_URL").substr(std::string("http://").size());
  }
  git::Credentials Credentials() const {
    return {.host = host_, .username = server_.Get("GIT_USER"), .password = server_.Get("GIT_PASSWORD")};
  }
  render::Options Tools() const {
    render::Options o;
    o.kustomize_binary = testenv::ToolsDir() + "/kustomize";
    o.helm_binary = testenv::ToolsDir() + "/helm";
    return o;
  }
  // The base: deploy/ reaches ../common; app/ in another repository refers to it remotely.
  void MakeRepos(Repo& base, Repo& app, const std::string& value) {
    base.Commit({{"deploy/kustomization.yaml", "resources: [cm.yaml, ../common]\n"},
                 {"deploy/cm.yaml", Cm("remote-base", value)},
                 {"common/kustomization.yaml", "resources: [cm.yaml]\n"},
                 {"common/cm.yaml", Cm("remote-common", value)}});
    app.Commit({{"app/kustomization.yaml",
                 "resources:\n- " + base.url() + "//deploy?ref=main\n- cm.yaml\n"},
                {"app/cm.yaml", Cm("local", "1")}});
  }

  testenv::Server& server_ = testenv::Shared("git-server.sh");
  testenv::ScopedTempDir tmp_;
  std::string host_;  // 127.0.0.1:PORT
};

std::string Value(const std::vector<value::Value>& objects, const std::string& name) {
  for (const auto& o : objects) {
    if (o.Find({"metadata", "name"})->AsString() == name) return value::StringAt(&o, {"data", "v"});
  }
  return "(no " + name + ")";
}

// Through GitSources as the agent and the deployer use it: only an allowed host; the remote
// commit is part of the content key, so a moved branch renders again and an unmoved one is cached.
TEST_F(KustomizeRemoteTest, RemoteBaseFromAnAllowedHostFollowsItsBranch) {
  Repo base(server_, "base"), app(server_, "app");
  MakeRepos(base, app, "1");
  render::GitSources sources({.mirrors_dir = tmp_.path() + "/mirrors", .credentials = {Credentials()},
                              .render_cache_bytes = 16u << 20, .remote_base_max_age = std::chrono::seconds(0)});
  render::Options o = Tools();
  auto now = [] { return std::chrono::steady_clock::time_point::max(); };

  auto refused = sources.Render(app.url(), "main", "app", o, now());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(), HasSubstr("--kustomize-remote-host " + host_));
  EXPECT_THAT(refused.status().message(), HasSubstr("app/kustomization.yaml:2:"));

  o.kustomize.remote_hosts = {"127.0.0.1"};
  auto first = sources.Render(app.url(), "main", "app", o, now());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(Value(first->objects, "remote-base"), "1");
  EXPECT_EQ(Value(first->objects, "remote-common"), "1");
  EXPECT_EQ(Value(first->objects, "local"), "1");
  auto again = sources.Render(app.url(), "main", "app", o, now());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->content_key, first->content_key);

  base.Commit({{"deploy/cm.yaml", Cm("remote-base", "2")}});  // the base's branch moves; the app does not
  auto moved = sources.Render(app.url(), "main", "app", o, now());
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->commit, first->commit);
  EXPECT_NE(moved->content_key, first->content_key);
  EXPECT_EQ(Value(moved->objects, "remote-base"), "2");

  // RenderGit says the render read what the commit does not pin (the agent then renders an
  // unchanged commit again instead of skipping it); a render without remote bases does not.
  auto repo = sources.Open(app.url());
  ASSERT_TRUE(repo.ok());
  render::Options with = o;
  with.kustomize.fetch_remote = sources.RemoteFetcher();
  auto direct = render::RenderGit(**repo, "main", "app", with);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_TRUE(direct->unpinned);
  app.Commit({{"app/kustomization.yaml", "resources: [cm.yaml]\n"}});
  ASSERT_TRUE(sources.Fetch(**repo, now()).ok());
  auto local = render::RenderGit(**repo, "main", "app", with);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  EXPECT_FALSE(local->unpinned);
}

// `gantry sync --repo ... --kustomize-remote-host` on the real apiserver; without the flag it is
// refused with the flag to set.
TEST_F(KustomizeRemoteTest, GantrySyncAppliesARemoteBase) {
  auto& cluster = testenv::Shared("kube-cluster.sh");
  Repo base(server_, "base"), app(server_, "app");
  MakeRepos(base, app, "synced");
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  std::map<std::string, std::string> env = {{"KUBECONFIG", cluster.Get("KUBECONFIG")},
                                            {"GANTRY_GIT_PASSWORD", server_.Get("GIT_PASSWORD")},
                                            {"GANTRY_CACHE", tmp_.path() + "/cache"},
                                            {"GANTRY_KUSTOMIZE", testenv::ToolsDir() + "/kustomize"}};
  std::vector<std::string> argv = {binary, "sync", "--repo", app.url(), "app", "--app", "kz-remote",
                                   "-n", "kz-remote", "--create-namespace", "--git-username", server_.Get("GIT_USER")};
  ProcessOptions po;
  po.timeout = std::chrono::minutes(3);
  po.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", tmp_.path()}};
  for (auto& [k, v] : env) po.env[k] = v;
  auto refused = gantry::Run(argv, po);
  ASSERT_TRUE(refused.ok());
  EXPECT_NE(refused->exit_code, 0);
  EXPECT_THAT(refused->err, HasSubstr("--kustomize-remote-host " + host_));

  argv.insert(argv.end(), {"--kustomize-remote-host", "127.0.0.1"});
  auto synced = gantry::Run(argv, po);
  ASSERT_TRUE(synced.ok());
  ASSERT_EQ(synced->exit_code, 0) << synced->out << synced->err;
  auto config = kube::LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
  ASSERT_TRUE(config.ok());
  auto client = kube::NewHttpClient(*config);
  ASSERT_TRUE(client.ok());
  for (const char* name : {"remote-base", "remote-common"}) {
    auto cm = (*client)->Get({"v1", "ConfigMap", "kz-remote", name});
    ASSERT_TRUE(cm.ok()) << name << ": " << cm.status().ToString();
    EXPECT_EQ(value::StringAt(&*cm, {"data", "v"}), "synced");
  }
}

// helmCharts with a chart vendored in charts/ (made by the real `helm create`): Gantry's render
// equals `kustomize build --enable-helm` run by hand; without the chart, the error says how to
// vendor it.
TEST_F(KustomizeRemoteTest, HelmChartsRenderAsKustomizeEnableHelm) {
  const std::string helm = testenv::ToolsDir() + "/helm", kustomize = testenv::ToolsDir() + "/kustomize";
  fs::path repo = fs::path(tmp_.path()) / "repo";
  fs::create_directories(repo / "app/charts");
  const std::map<std::string, std::string> home = {{"HOME", tmp_.path() + "/home"}};
  MustRun({helm, "create", "web"}, (repo / "app/charts").string(), home);
  WriteFile(repo / "app/kustomization.yaml",
            "namespace: shop\nhelmCharts:\n- name: web\n  releaseName: shop-web\n  namespace: shop\n"
            "  valuesInline:\n    replicaCount: 3\ncommonLabels:\n  team: shop\n");
  render::Options o = Tools();
  auto r = render::Render({repo, "app"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ProcessResult by_hand = MustRun({kustomize, "build", "--enable-helm", "--helm-command", helm, "."},
                                  (repo / "app").string(), home);
  auto expected = value::ParseYaml(by_hand.out, "by hand");
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  ASSERT_EQ(r->size(), expected->size());
  ASSERT_GE(r->size(), 3u);
  for (size_t i = 0; i < r->size(); ++i) {
    EXPECT_EQ(value::ToJson((*r)[i].object), value::ToJson((*expected)[i])) << i;
  }
  bool deployment = false;
  for (const auto& m : *r) {
    if (m.object.Get("kind")->AsString() == "Deployment") {
      deployment = true;
      EXPECT_EQ(value::ToJson(*m.object.Find({"spec", "replicas"})), "3");
    }
  }
  EXPECT_TRUE(deployment);

  // A chart from a repository that is not vendored: neither kustomize nor helm may fetch it.
  WriteFile(repo / "app/kustomization.yaml",
            "helmCharts:\n- name: redis\n  repo: https://charts.example.com\n  version: 1.2.3\n");
  auto missing = render::Render({repo, "app"}, o);
  EXPECT_EQ(missing.status().code(), Code::kFailedPrecondition) << missing.status().ToString();
  EXPECT_THAT(missing.status().message(), HasSubstr("helm pull redis --repo https://charts.example.com --version 1.2.3"));
}

}  // namespace
}  // namespace gantry
