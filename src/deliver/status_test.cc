// GatherStatus and Approve over a real ledger (SQLite in a temp dir) and a pull cluster that is a
// fake kube::Client.

#include <stdlib.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "deliver/deliver.h"

namespace gantry::deliver {
namespace {

namespace fs = std::filesystem;

// A pull cluster's apiserver: lists the Applications it was given; nothing else is used.
class ApplicationsOnly final : public kube::Client {
 public:
  explicit ApplicationsOnly(std::vector<value::Value> apps) : apps_(std::move(apps)) {}
  Result<kube::ObjectList> List(std::string_view api_version, std::string_view kind, std::string_view ns,
                                const kube::ListOptions&) override {
    EXPECT_EQ(api_version, "gantry.dev/v1alpha1");
    EXPECT_EQ(kind, "Application");
    EXPECT_EQ(ns, "");
    return kube::ObjectList{.items = apps_, .resource_version = "1"};
  }
  Result<kube::ResourceInfo> Resolve(std::string_view, std::string_view) override { return Unused(); }
  Result<value::Value> Get(const kube::ObjectRef&) override { return Unused(); }
  Result<value::Value> Apply(const value::Value&, const kube::ApplyOptions&) override { return Unused(); }
  Result<value::Value> ApplyStatus(const value::Value&, const kube::ApplyOptions&) override { return Unused(); }
  Result<value::Value> Replace(const value::Value&) override { return Unused(); }
  Status Delete(const kube::ObjectRef&, const kube::DeleteOptions&) override { return Unused(); }
  Result<value::Value> Create(const value::Value&, const kube::CreateOptions&) override { return Unused(); }
  Status Watch(std::string_view, std::string_view, std::string_view, const kube::WatchOptions&,
               const kube::WatchHandler&) override {
    return Unused();
  }
  void InvalidateDiscovery() override {}
  Result<std::string> GetRaw(std::string_view) override { return Unused(); }
  uint64_t request_count() const override { return 0; }

 private:
  static Status Unused() { return UnimplementedError("not used by status"); }
  std::vector<value::Value> apps_;
};

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "deliver_status_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto s = store::Open("sqlite://" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  // A release of `app` at `revision`, with a target in each (env, cluster, state).
  int64_t Release(const std::string& app, const std::string& revision,
                  std::vector<std::tuple<std::string, std::string, store::TargetState>> targets) {
    auto id = store_->CreateRelease({.app = app, .source_revision = revision, .config_revision = revision});
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    for (const auto& [env, cluster, state] : targets) {
      auto t = store_->UpsertTarget({.release_id = *id, .env = env, .cluster = cluster, .state = state});
      EXPECT_TRUE(t.ok()) << t.status().ToString();
    }
    return *id;
  }

  fs::path dir_;
  std::unique_ptr<store::Store> store_;
};

// Promotion order dev → prod → canary, which is not the order of their names.
Config ThreeEnvironments() {
  Config c;
  c.environments = {{.name = "dev"}, {.name = "prod", .after = {"dev"}}, {.name = "canary", .after = {"prod"}}};
  c.clusters = {{.name = "d1", .environment = "dev"}, {.name = "p1", .environment = "prod"},
                {.name = "c1", .environment = "canary"}};
  return c;
}

ConnectFn NoClusters() {
  return [](const Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
    ADD_FAILURE() << "connected to " << c.name;
    return UnavailableError("no");
  };
}

// `gantry status` found applications by parsing "app/NAME ..." out of the newest 10,000 audit
// entries, so an application whose deploys were older was missing. The ledger lists them now.
TEST_F(LedgerTest, StatusListsEveryApplicationOfTheLedgerWithoutTheAuditLog) {
  using enum store::TargetState;
  Release("web", "w1", {{"dev", "d1", kHealthy}, {"prod", "p1", kHealthy}, {"canary", "c1", kHealthy}});
  Release("web", "w2", {{"dev", "d1", kHealthy}});
  Release("api", "a1", {{"canary", "c1", kFailed}});
  ASSERT_TRUE(store_->ListAudit(10)->empty());

  auto report = GatherStatus(*store_, ThreeEnvironments(), "", NoClusters());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::vector<std::string> order;
  for (const auto& r : report->rows) order.push_back(r.app + "/" + r.env);
  EXPECT_EQ(order, (std::vector<std::string>{"api/canary", "web/dev", "web/prod", "web/canary"}));
  EXPECT_EQ((report->behind.at({"web", "dev"})), 0);
  EXPECT_EQ((report->behind.at({"web", "prod"})), 1);
  EXPECT_EQ((report->behind.at({"api", "canary"})), 1);  // nothing healthy runs there
  EXPECT_TRUE(report->warnings.empty());

  auto web = GatherStatus(*store_, ThreeEnvironments(), "web", NoClusters());
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->rows.size(), 3u);
}

TEST_F(LedgerTest, PullClustersAreListedAndAnUnreachableOneIsAWarning) {
  using enum store::TargetState;
  Release("web", "w1", {{"dev", "d1", kHealthy}});
  Release("web", "w2", {{"dev", "d1", kHealthy}});
  Config config = ThreeEnvironments();
  config.clusters.push_back({.name = "edge", .environment = "prod", .pull = true});
  config.clusters.push_back({.name = "gone", .environment = "canary", .pull = true});
  auto apps = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: gantry}
status: {sync: {status: Synced, revision: w1}, health: {status: Healthy}}
---
apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: other, namespace: gantry}
status: {sync: {status: Synced, revision: x}}
)");
  ASSERT_TRUE(apps.ok());
  ConnectFn connect = [&](const Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
    if (c.name == "gone") return UnavailableError("connection refused");
    return std::unique_ptr<kube::Client>(new ApplicationsOnly(*apps));
  };
  auto report = GatherStatus(*store_, config, "web", connect);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->rows.size(), 2u);  // "other" is filtered out
  EXPECT_EQ(report->rows[1].cluster, "edge");
  EXPECT_EQ(report->rows[1].mode, "pull");
  EXPECT_EQ(report->rows[1].behind, 1);  // runs w1; w2 is newer
  EXPECT_EQ(report->warnings, (std::vector<std::string>{"pull cluster gone: connection refused"}));
}

TEST_F(LedgerTest, ApproveTakesTheNewestReleaseAndAuditsIt) {
  Release("web", "w1", {});
  int64_t newest = Release("web", "w2", {});
  int64_t api = Release("api", "a1", {});
  auto approved = Approve(*store_, "web", "prod", 0, "alice");
  ASSERT_TRUE(approved.ok()) << approved.status().ToString();
  EXPECT_EQ(*approved, newest);
  EXPECT_TRUE(*store_->IsApproved(newest, "prod"));
  EXPECT_FALSE(*store_->IsApproved(newest, "dev"));
  auto audit = store_->ListAudit(10);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].actor, "alice");
  EXPECT_EQ((*audit)[0].object, fmt::format("app/web env/prod release/{}", newest));

  auto other = Approve(*store_, "web", "prod", api, "alice");
  EXPECT_EQ(other.status().code(), Code::kInvalidArgument);
  EXPECT_NE(other.status().message().find("is of api, not web"), std::string::npos) << other.status().message();
  EXPECT_FALSE(*store_->IsApproved(api, "prod"));
  EXPECT_EQ(Approve(*store_, "nothing", "prod", 0, "alice").status().code(), Code::kNotFound);
  EXPECT_EQ(Approve(*store_, "web", "prod", 4242, "alice").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry::deliver
