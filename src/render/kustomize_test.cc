// Kustomize remote bases and helmCharts without the real binaries: the remote reference parser
// (kustomize's repospec grammar), the allow-list, fetching and materializing remote bases through a
// fake fetcher, the rewritten references, chart lookup and the cache key. The real kustomize and
// helm, and a real Git server, are in test/integration/kustomize_remote_test.cc.

#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "render/internal/renderers.h"
#include "render/render.h"

namespace gantry::render {
namespace {
namespace fs = std::filesystem;

TEST(ParseRemoteBase, EveryFormKustomizeAccepts) {
  struct Case {
    std::string spec, url, host, path, ref;
  };
  for (const Case& c : std::vector<Case>{
           {"https://github.com/org/repo//deploy/base?ref=v1.2", "https://github.com/org/repo", "github.com",
            "deploy/base", "v1.2"},
           {"github.com/org/repo/deploy?ref=main", "https://github.com/org/repo", "github.com", "deploy", "main"},
           {"github.com/org/repo", "https://github.com/org/repo", "github.com", "", "HEAD"},
           {"git@github.com:org/repo.git//deploy?ref=v1", "git@github.com:org/repo.git", "github.com", "deploy", "v1"},
           {"git@git.example.com:org/repo.git/deploy", "git@git.example.com:org/repo.git", "git.example.com",
            "deploy", "HEAD"},
           {"ssh://git@git.example.com:2222/org/repo.git//x?ref=abc", "ssh://git@git.example.com:2222/org/repo.git",
            "git.example.com:2222", "x", "abc"},
           {"ssh://git@github.com/org/repo//x", "git@github.com:org/repo", "github.com", "x", "HEAD"},
           {"git::https://git.example.com/org/repo//x?ref=main&timeout=10s&submodules=false",
            "https://git.example.com/org/repo", "git.example.com", "x", "main"},
           {"https://dev.azure.com/org/project/_git/repo/path/to?ref=m", "https://dev.azure.com/org/project/_git/repo",
            "dev.azure.com", "path/to", "m"},
           {"https://git.example.com:8443/org/repo?version=v2", "https://git.example.com:8443/org/repo",
            "git.example.com:8443", "", "v2"},
           {"https://git.example.com/org/repo/deploy?version=y&ref=x", "https://git.example.com/org/repo",
            "git.example.com", "deploy", "x"},
           {"http://git.example.com/org/repo.git/a/b/?ref=t", "http://git.example.com/org/repo.git", "git.example.com",
            "a/b", "t"},
           {"HTTPS://git.example.com/org/repo//./a/../b", "https://git.example.com/org/repo", "git.example.com", "b",
            "HEAD"},
       }) {
    auto r = internal::ParseRemoteBase(c.spec);
    ASSERT_TRUE(r.ok()) << c.spec << ": " << r.status().ToString();
    EXPECT_EQ(r->repo_url, c.url) << c.spec;
    EXPECT_EQ(r->host, c.host) << c.spec;
    EXPECT_EQ(r->path, c.path) << c.spec;
    EXPECT_EQ(r->ref, c.ref) << c.spec;
    EXPECT_EQ(r->spec, c.spec);
  }
}

TEST(ParseRemoteBase, RefusesWhatKustomizeRefusesAndFileUrls) {
  struct Case {
    std::string spec, says;
  };
  for (const Case& c : std::vector<Case>{
           {"file:///etc/x", "file://"},
           {"/abs/path", "absolute"},
           {"example.com/org/repo", "no scheme"},
           {"ftp://host/org/repo", "no scheme"},
           {"https://example.com/x.yaml", "ORG/REPO"},
           {"https://host/org/repo//../../etc", "leaves the repository"},
           {"https:///org/repo", "no host"},
           {"git@host", "ORG/REPO"},
           {"https://host/org/repo//a b", "whitespace"},
       }) {
    auto r = internal::ParseRemoteBase(c.spec);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.spec;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.spec << ": " << r.status().message();
  }
}

class KustomizeRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("gantry-kustomize-test-" + std::to_string(getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_ / "repo");
  }
  void TearDown() override { fs::remove_all(base_); }
  void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  static std::string Read(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static std::string Cm(const std::string& name) {
    return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n";
  }
  // A fake Git layer: each repository URL is a map of files; every fetch is counted.
  KustomizeOptions::FetchRemote Fetcher() {
    return [this](const RemoteBase& b, const fs::path& dest) -> Result<std::string> {
      fetches_.push_back(b.repo_url + " " + b.ref);
      auto it = remotes_.find(b.repo_url);
      if (it == remotes_.end()) return NotFoundError("fetch {}: no such repository", b.repo_url);
      fs::create_directories(dest);
      for (const auto& [path, text] : it->second) Write(dest / path, text);
      return commit_;
    };
  }
  fs::path base_;
  std::map<std::string, std::map<std::string, std::string>> remotes_;
  std::vector<std::string> fetches_;
  std::string commit_ = "c0ffee0000000000000000000000000000000001";
};

TEST_F(KustomizeRemoteTest, OnlyAllowedHostsWithFileAndLineAndTheFlag) {
  Write(base_ / "repo/app/kustomization.yaml",
        "resources:\n- cm.yaml\n- https://git.example.com:8443/org/base//deploy?ref=v1\n");
  Write(base_ / "repo/app/cm.yaml", Cm("local"));
  KustomizeOptions o;
  auto scan = internal::KustomizeTrees(base_ / "repo", "app", o, {});
  EXPECT_EQ(scan.status().code(), Code::kPermissionDenied);
  for (const char* says : {"app/kustomization.yaml:3:", "--kustomize-remote-host git.example.com:8443",
                           "https://git.example.com:8443/org/base//deploy?ref=v1"}) {
    EXPECT_NE(scan.status().message().find(says), std::string::npos) << scan.status().message();
  }
  EXPECT_EQ(scan.status().message().find("::"), std::string::npos) << scan.status().message();
  o.remote_hosts = {"other.example.com", "git.example.com"};  // without a port: any port
  scan = internal::KustomizeTrees(base_ / "repo", "app", o, {});
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  ASSERT_EQ(scan->remotes.size(), 1u);
  EXPECT_EQ(scan->remotes[0].base.repo_url, "https://git.example.com:8443/org/base");
  EXPECT_EQ(scan->remotes[0].field, "resources");
  EXPECT_EQ(scan->remotes[0].index, 1u);
  EXPECT_TRUE(scan->remotes[0].where.starts_with("app/kustomization.yaml:3:")) << scan->remotes[0].where;
  o.remote_hosts = {"git.example.com:9999"};  // with a port: only that port
  EXPECT_EQ(internal::KustomizeTrees(base_ / "repo", "app", o, {}).status().code(), Code::kPermissionDenied);
}

TEST_F(KustomizeRemoteTest, RemoteBasesAreMaterializedAndTheReferencesRewritten) {
  // The remote repository: the base reaches ../common; unrelated/ is never copied.
  remotes_["https://git.example.com/org/base"] = {
      {"deploy/kustomization.yaml", "resources: [cm.yaml, ../common, https://git.example.com/org/more//m]\n"},
      {"deploy/cm.yaml", Cm("remote")},
      {"common/kustomization.yaml", "resources: [cm.yaml]\n"},
      {"common/cm.yaml", Cm("common")},
      {"unrelated/big.yaml", Cm("unrelated")},
  };
  remotes_["https://git.example.com/org/more"] = {{"m/kustomization.yaml", "resources: []\n"}};
  Write(base_ / "repo/app/kustomization.yaml", "resources:\n- https://git.example.com/org/base//deploy?ref=main\n");
  Options o;
  o.kustomize.remote_hosts = {"git.example.com"};
  auto scan = internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  // Without a fetcher: refused, saying where.
  auto deps = internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / "remote", o, "");
  EXPECT_EQ(deps.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(deps.status().message().find("app/kustomization.yaml:2:"), std::string::npos) << deps.status().message();

  o.kustomize.fetch_remote = Fetcher();
  deps = internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / "remote", o, "");
  ASSERT_TRUE(deps.ok()) << deps.status().ToString();
  EXPECT_EQ(fetches_, (std::vector<std::string>{"https://git.example.com/org/base main",
                                                "https://git.example.com/org/more HEAD"}));
  EXPECT_NE(deps->find("https://git.example.com/org/base deploy main " + commit_), std::string::npos) << *deps;
  EXPECT_NE(deps->find("https://git.example.com/org/more m HEAD " + commit_), std::string::npos) << *deps;
  EXPECT_TRUE(fs::exists(base_ / "remote/1/deploy/cm.yaml"));
  EXPECT_TRUE(fs::exists(base_ / "remote/1/common/cm.yaml"));
  EXPECT_FALSE(fs::exists(base_ / "remote/1/unrelated"));
  EXPECT_FALSE(fs::exists(base_ / "remote/fetch-1"));  // the fetched commit is not left behind
  EXPECT_TRUE(fs::exists(base_ / "remote/2/m/kustomization.yaml"));
  EXPECT_NE(Read(base_ / "repo/app/kustomization.yaml").find("../../remote/1/deploy"), std::string::npos)
      << Read(base_ / "repo/app/kustomization.yaml");
  EXPECT_NE(Read(base_ / "remote/1/deploy/kustomization.yaml").find("../../2/m"), std::string::npos)
      << Read(base_ / "remote/1/deploy/kustomization.yaml");
}

TEST_F(KustomizeRemoteTest, RemoteBasesAreCheckedAndBounded) {
  Options o;
  o.kustomize.remote_hosts = {"git.example.com"};
  o.kustomize.fetch_remote = Fetcher();
  Write(base_ / "repo/app/kustomization.yaml", "resources:\n- https://git.example.com/org/base//deploy\n");
  auto prepare = [&](const std::string& dir) {
    fs::remove_all(base_ / dir);
    auto scan = internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits);
    EXPECT_TRUE(scan.ok()) << scan.status().ToString();
    return internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / dir, o, "");
  };
  // A remote base that climbs out of its repository, or names a host not allowed.
  remotes_["https://git.example.com/org/base"] = {{"deploy/kustomization.yaml", "resources: [../../etc]\n"}};
  auto r = prepare("r1");
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("remote base"), std::string::npos) << r.status().message();
  remotes_["https://git.example.com/org/base"] = {
      {"deploy/kustomization.yaml", "resources: [https://evil.example.org/org/x//y]\n"}};
  r = prepare("r2");
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("--kustomize-remote-host evil.example.org"), std::string::npos);
  // No kustomization at the path.
  remotes_["https://git.example.com/org/base"] = {{"other/kustomization.yaml", "resources: []\n"}};
  r = prepare("r3");
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  // A base that includes itself: bounded.
  remotes_["https://git.example.com/org/base"] = {
      {"deploy/kustomization.yaml", "resources: [https://git.example.com/org/base//deploy]\n"}};
  r = prepare("r4");
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  // The fetcher's error, with the reference in front.
  remotes_.clear();
  r = prepare("r5");
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  EXPECT_NE(r.status().message().find("app/kustomization.yaml:2:"), std::string::npos) << r.status().message();
}

TEST_F(KustomizeRemoteTest, HelmChartsAreVendoredOrFetchedAndGetTheCapabilities) {
  Write(base_ / "repo/app/kustomization.yaml",
        "helmCharts:\n- name: web\n  repo: https://charts.example.com\n  version: 1.0.0\n"
        "- name: local\n- name: pinned\n  kubeVersion: '1.25'\n");
  Write(base_ / "repo/app/charts/local/Chart.yaml", "name: local\n");
  Write(base_ / "repo/app/charts/pinned/Chart.yaml", "name: pinned\n");
  Options o;
  o.helm.kube_version = "1.31.0";
  o.helm.api_versions = {"example.com/v1"};
  auto scan = internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  ASSERT_EQ(scan->charts.size(), 3u);
  EXPECT_EQ(scan->charts[0].chart_dir, "app/charts/web-1.0.0/web");  // where kustomize looks with repo+version
  EXPECT_EQ(scan->charts[1].chart_dir, "app/charts/local");
  auto deps = internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / "remote", o, "/x/helm");
  EXPECT_EQ(deps.status().code(), Code::kFailedPrecondition);
  for (const char* says : {"web", "https://charts.example.com", "1.0.0", "helm pull web --repo https://charts.example.com "
                           "--version 1.0.0 --untar --untardir app/charts/web-1.0.0", "app/kustomization.yaml:2:"}) {
    EXPECT_NE(deps.status().message().find(says), std::string::npos) << says << ": " << deps.status().message();
  }
  std::vector<std::string> fetched;
  o.kustomize.fetch_chart = [&](const std::string& repo, const std::string& name, const std::string& version,
                                const fs::path& dest) {
    fetched.push_back(repo + " " + name + " " + version + " " + dest.string());
    Write(dest / "Chart.yaml", "name: web\n");
    return OkStatus();
  };
  deps = internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / "remote", o, "/x/helm");
  ASSERT_TRUE(deps.ok()) << deps.status().ToString();
  EXPECT_EQ(fetched, (std::vector<std::string>{"https://charts.example.com web 1.0.0 " +
                                               (base_ / "repo/app/charts/web-1.0.0/web").string()}));
  EXPECT_NE(deps->find("/x/helm 1.31.0 example.com/v1"), std::string::npos) << *deps;
  std::string k = Read(base_ / "repo/app/kustomization.yaml");
  EXPECT_NE(k.find("kubeVersion: 1.31.0"), std::string::npos) << k;
  EXPECT_NE(k.find("kubeVersion: \"1.25\""), std::string::npos) << k;  // the entry's own wins
  EXPECT_NE(k.find("example.com/v1"), std::string::npos) << k;

  // A chart without repo that is not there; a chartHome that leaves the kustomization.
  Write(base_ / "repo/app/kustomization.yaml", "helmCharts:\n- name: missing\n");
  scan = internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits);
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(internal::PrepareKustomizeCopy(*scan, base_ / "repo", base_ / "remote", o, "/x/helm").status().code(),
            Code::kNotFound);
  Write(base_ / "repo/app/kustomization.yaml", "helmGlobals: {chartHome: ../elsewhere}\nhelmCharts:\n- name: x\n");
  EXPECT_EQ(internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits).status().code(),
            Code::kInvalidArgument);
  Write(base_ / "repo/app/kustomization.yaml", "helmCharts:\n- name: ../x\n");
  EXPECT_EQ(internal::KustomizeTrees(base_ / "repo", "app", o.kustomize, o.limits).status().code(),
            Code::kInvalidArgument);
}

// The render (through a fake kustomize, in the sandbox) sees the remote base, and the cache key
// follows the remote commit: a branch that moved renders again.
TEST_F(KustomizeRemoteTest, TheRemoteCommitIsPartOfTheCacheKey) {
  Write(base_ / "kustomize", "#!/bin/sh\ncat ../../remote/1/deploy/cm.yaml\n");
  fs::permissions(base_ / "kustomize", fs::perms::owner_all);
  remotes_["https://git.example.com/org/base"] = {{"deploy/kustomization.yaml", "resources: [cm.yaml]\n"},
                                                  {"deploy/cm.yaml", Cm("remote")}};
  Write(base_ / "repo/app/kustomization.yaml", "resources:\n- https://git.example.com/org/base//deploy?ref=main\n");
  Options o;
  o.kustomize_binary = (base_ / "kustomize").string();
  o.kustomize.remote_hosts = {"git.example.com"};
  o.kustomize.fetch_remote = Fetcher();
  RenderCache cache;
  auto r = Render(Source{base_ / "repo", "app"}, o, &cache, "content");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].object.Find({"metadata", "name"})->AsString(), "remote");
  r = Render(Source{base_ / "repo", "app"}, o, &cache, "content");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(cache.stats().hits, 1u);
  commit_ = "c0ffee0000000000000000000000000000000002";
  remotes_["https://git.example.com/org/base"]["deploy/cm.yaml"] = Cm("moved");
  r = Render(Source{base_ / "repo", "app"}, o, &cache, "content");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].object.Find({"metadata", "name"})->AsString(), "moved");
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(fetches_.size(), 3u);
}

}  // namespace
}  // namespace gantry::render
