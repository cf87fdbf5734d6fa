#include "render/chart_repo.h"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "render/internal/renderers.h"
#include "render/internal/tree.h"

namespace gantry::render {
namespace {

constexpr char kIndex[] = R"(apiVersion: v1
entries:
  redis:
  - version: 18.6.1
    digest: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    urls: [redis-18.6.1.tgz]
  - version: 18.7.0-rc.1
    urls: [https://cdn.example.com/redis-18.7.0-rc.1.tgz]
  - version: 17.0.0
    urls: [redis-17.0.0.tgz]
  - version: 18.10.2
    urls: [redis-18.10.2.tgz]
  nginx:
  - version: 1.0.0
    urls: [nginx-1.0.0.tgz]
)";

value::Value Index(std::string_view text = kIndex) { return value::ParseYaml(text).value()[0]; }

std::vector<ChartVersion> Redis() { return ChartVersions(Index(), "redis", "repo/index.yaml").value(); }

TEST(ChartVersions, ReadsEveryVersionWithDigestAndUrls) {
  auto v = Redis();
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].version, "18.6.1");
  EXPECT_EQ(v[0].digest, "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(v[0].urls, std::vector<std::string>{"redis-18.6.1.tgz"});
  EXPECT_EQ(v[1].digest, "");
}

TEST(ChartVersions, UnknownChartListsTheChartsTheRepositoryHas) {
  auto v = ChartVersions(Index(), "postgres", "repo/index.yaml");
  ASSERT_EQ(v.status().code(), Code::kNotFound);
  EXPECT_NE(v.status().message().find("no chart \"postgres\""), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find("redis, nginx"), std::string::npos) << v.status().ToString();
}

TEST(ChartVersions, MalformedIndexNamesTheField) {
  EXPECT_EQ(ChartVersions(Index("apiVersion: v1\n"), "redis", "x").status().code(), Code::kInvalidArgument);
  auto bad_version = ChartVersions(Index("entries:\n  redis:\n  - urls: [a]\n"), "redis", "x");
  EXPECT_NE(bad_version.status().message().find("entries.redis[0].version"), std::string::npos)
      << bad_version.status().ToString();
  auto bad_digest = ChartVersions(Index("entries:\n  redis:\n  - {version: 1.0.0, digest: abc}\n"), "redis", "x");
  EXPECT_NE(bad_digest.status().message().find("entries.redis[0].digest"), std::string::npos) << bad_digest.status().ToString();
  EXPECT_EQ(ChartVersions(Index("entries:\n  redis: 3\n"), "redis", "x").status().code(), Code::kInvalidArgument);
}

TEST(ChooseVersion, ExactRangeAndLatest) {
  auto v = Redis();
  EXPECT_EQ(ChooseVersion(v, "18.6.1", "c")->version, "18.6.1");
  EXPECT_EQ(ChooseVersion(v, "18.x", "c")->version, "18.10.2");  // numeric, not text, order
  EXPECT_EQ(ChooseVersion(v, "~18.6", "c")->version, "18.6.1");
  EXPECT_EQ(ChooseVersion(v, "<18", "c")->version, "17.0.0");
  EXPECT_EQ(ChooseVersion(v, "", "c")->version, "18.10.2");
  EXPECT_EQ(ChooseVersion(v, "latest", "c")->version, "18.10.2");
}

TEST(ChooseVersion, PreReleasesOnlyWhenTheRangeNamesOne) {
  auto v = Redis();
  EXPECT_EQ(ChooseVersion(v, ">=18.7.0-rc.0 <18.8", "c")->version, "18.7.0-rc.1");
  EXPECT_EQ(ChooseVersion(v, "18.7.0-rc.1", "c")->version, "18.7.0-rc.1");
  EXPECT_EQ(ChooseVersion(v, ">=18.7 <18.8", "c").status().code(), Code::kNotFound);
}

TEST(ChooseVersion, NoMatchListsTheNewestVersions) {
  auto r = ChooseVersion(Redis(), "^19", "chart redis in repo");
  ASSERT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("no version matches \"^19\""), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("18.10.2, 18.7.0-rc.1, 18.6.1, 17.0.0"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(ChooseVersion(Redis(), ">>1", "c").status().code(), Code::kInvalidArgument);
}

TEST(ChartRepos, RefusesOtherSchemesAndBadChartNames) {
  ChartRepos repos({.cache_dir = ::testing::TempDir()});
  EXPECT_EQ(repos.Fetch({.repo_url = "file:///etc", .chart = "x"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(repos.Fetch({.repo_url = "https://h", .chart = "../x"}).status().code(), Code::kInvalidArgument);
}

TEST(ChartRepos, UnreachableRepositoryIsAFetchFailure) {
  ChartRepos repos({.cache_dir = ::testing::TempDir(), .timeout = std::chrono::seconds(5)});
  auto r = repos.Fetch({.repo_url = "http://127.0.0.1:1/charts", .chart = "redis", .version = "1.0.0"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().reason(), "FetchFailed") << r.status().ToString();
  EXPECT_NE(r.status().message().find("127.0.0.1:1/charts/index.yaml"), std::string::npos) << r.status().ToString();
}

class VendorDependenciesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) / ("gantry-deps-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    Write("repo/lib/Chart.yaml", "apiVersion: v2\nname: lib\nversion: 0.1.0\n");
    Write("repo/lib/templates/cm.yaml", "kind: ConfigMap\n");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    std::filesystem::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }
  // Copies the chart `rel` of repo/ into copy/ and vendors its dependencies there.
  Status Vendor(const std::string& rel, const Options& options = {}) {
    internal::Materializer copier(root_ / "repo", root_ / "copy", options.limits, nullptr);
    std::filesystem::remove_all(root_ / "copy");
    std::filesystem::create_directories(root_ / "copy");
    GANTRY_RETURN_IF_ERROR(copier.AddTree(rel));
    return internal::VendorHelmDependencies(root_ / "copy", rel, copier, options);
  }
  std::filesystem::path root_;
};

TEST_F(VendorDependenciesTest, FileDependencyInsideTheRepositoryIsCopiedIntoCharts) {
  Write("repo/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                               "- {name: lib, version: 0.1.0, repository: \"file://../lib\"}\n");
  Status s = Vendor("app");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(std::filesystem::is_regular_file(root_ / "copy/app/charts/lib/templates/cm.yaml"));
}

TEST_F(VendorDependenciesTest, FileDependencyLeavingTheRepositoryIsRefused) {
  Write("repo/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                               "- {name: lib, version: 0.1.0, repository: \"file://../../outside\"}\n");
  Status s = Vendor("app");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("app/Chart.yaml dependencies[0] (lib)"), std::string::npos) << s.ToString();
}

TEST_F(VendorDependenciesTest, RepositoryNamesOfHelmRepoAddAreRefused) {
  for (const char* repo : {"@stable", "alias:stable"}) {
    Write("repo/app/Chart.yaml", std::string("apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                                             "- {name: redis, version: 1.x, repository: \"") + repo + "\"}\n");
    Status s = Vendor("app");
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("helm repo add"), std::string::npos) << s.ToString();
  }
}

TEST_F(VendorDependenciesTest, RemoteDependencyWithoutAFetcherIsAPreconditionAndVendoredOnesAreLeftAlone) {
  Write("repo/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                               "- {name: redis, version: 18.x, repository: \"https://charts.example.com\"}\n");
  EXPECT_EQ(Vendor("app").code(), Code::kFailedPrecondition);
  Write("repo/app/charts/redis-18.6.1.tgz", "vendored");
  Status s = Vendor("app");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(VendorDependenciesTest, RepositoryTheCheckRefusesIsNeverFetched) {
  // A chart in a tenant's repository naming an address inside the network: the project's check
  // refuses it before any request is made (a fetch would fail as unreachable instead).
  Write("repo/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                               "- {name: meta, version: 1.x, repository: \"http://169.254.169.254/latest\"}\n");
  ChartRepos repos({.cache_dir = root_ / "charts", .timeout = std::chrono::milliseconds(200)});
  std::vector<std::string> asked;
  Options options;
  options.charts = &repos;
  options.allow_repository = [&](std::string_view url) {
    asked.emplace_back(url);
    return PermissionDeniedError("project team-a: sourceRepos does not allow repository {}", url);
  };
  Status s = Vendor("app", options);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("app/Chart.yaml dependencies[0] (meta): project team-a"), std::string::npos)
      << s.ToString();
  EXPECT_EQ(asked, std::vector<std::string>{"http://169.254.169.254/latest"});
  EXPECT_FALSE(std::filesystem::exists(root_ / "charts" / "index")) << "nothing may be fetched";
}

}  // namespace
}  // namespace gantry::render
