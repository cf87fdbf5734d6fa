// kube::Cache against a real control plane: it sees writes within seconds, serves reads without
// requests, and resumes a watch the server ends without listing again.

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "kube/cache.h"
#include "kube/kube.h"
#include "test/env/testenv.h"

namespace gantry::kube {
namespace {

using value::Value;

constexpr char kApp[] = "gantry.dev/app";

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

Value ConfigMap(std::string_view ns, std::string_view name, std::string_view app, std::string_view color) {
  return Yaml(fmt::format("apiVersion: v1\nkind: ConfigMap\n"
                          "metadata: {{name: {}, namespace: {}, labels: {{{}: {}}}}}\ndata: {{color: {}}}\n",
                          name, ns, kApp, app, color));
}

bool Eventually(const std::function<bool()>& cond, std::chrono::seconds limit = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

class KubeCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testenv::Server& cluster = testenv::Shared("kube-cluster.sh");
    auto config = LoadConfig({.paths = {cluster.Get("KUBECONFIG")}});
    GANTRY_CHECK(config.ok());
    config_ = new RestConfig(*config);
  }
  static void TearDownTestSuite() { delete config_; }

  // A client for the test's writes, and another for the cache (so its requests are counted apart).
  void SetUp() override {
    auto writer = NewHttpClient(*config_);
    auto reader = NewHttpClient(*config_);
    ASSERT_TRUE(writer.ok() && reader.ok());
    writer_ = *std::move(writer);
    reader_ = *std::move(reader);
  }
  void TearDown() override {
    if (cache_) cache_->Stop();
  }
  void CreateNamespace(const std::string& name) {
    auto r = writer_->Apply(Yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n"));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::optional<std::string> CachedColor(std::string_view ns, std::string_view name) {
    auto o = cache_->Get({"v1", "ConfigMap", std::string(ns), std::string(name)});
    if (!o) return std::nullopt;
    return value::StringAt(&*o, {"data", "color"});
  }

  static inline RestConfig* config_ = nullptr;
  std::unique_ptr<Client> writer_, reader_;
  std::unique_ptr<Cache> cache_;
};

TEST_F(KubeCacheTest, SeesCreateUpdateAndDeleteWithinSecondsAndReadsMakeNoRequests) {
  CreateNamespace("cache-crud");
  cache_ = NewCache(*reader_, {.label_selector = kApp, .index_label = kApp});
  std::mutex mu;
  std::vector<std::pair<EventType, std::string>> seen;
  cache_->OnChange([&](EventType type, const Value& object) {
    std::lock_guard<std::mutex> lock(mu);
    seen.emplace_back(type, value::StringAt(&object, {"metadata", "name"}));
  });
  Status s = cache_->Watch("v1", "ConfigMap", std::chrono::seconds(10));
  ASSERT_TRUE(s.ok()) << s.ToString();

  ASSERT_TRUE(writer_->Apply(ConfigMap("cache-crud", "settings", "shop", "blue")).ok());
  ASSERT_TRUE(Eventually([&] { return CachedColor("cache-crud", "settings") == "blue"; }));
  ASSERT_TRUE(writer_->Apply(ConfigMap("cache-crud", "settings", "shop", "red")).ok());
  ASSERT_TRUE(Eventually([&] { return CachedColor("cache-crud", "settings") == "red"; }));
  auto unlabelled = writer_->Apply(
      Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: cache-crud}\n"));
  ASSERT_TRUE(unlabelled.ok());
  ASSERT_TRUE(writer_->Delete({"v1", "ConfigMap", "cache-crud", "settings"}).ok());
  ASSERT_TRUE(Eventually([&] { return !CachedColor("cache-crud", "settings").has_value(); }));
  EXPECT_FALSE(CachedColor("cache-crud", "other").has_value()) << "not selected";
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(seen, (std::vector<std::pair<EventType, std::string>>{{EventType::kAdded, "settings"},
                                                                     {EventType::kModified, "settings"},
                                                                     {EventType::kDeleted, "settings"}}));
  }

  // Reads are served from memory: the cache's client sends nothing more.
  ASSERT_TRUE(writer_->Apply(ConfigMap("cache-crud", "kept", "shop", "green")).ok());
  ASSERT_TRUE(Eventually([&] { return CachedColor("cache-crud", "kept") == "green"; }));
  uint64_t before = reader_->request_count();
  for (int i = 0; i < 1000; ++i) {
    auto objects = cache_->ByIndex("v1", "ConfigMap", "cache-crud", "shop");
    ASSERT_TRUE(objects.ok());
    ASSERT_EQ(objects->size(), 1u);
  }
  EXPECT_EQ(reader_->request_count(), before);
  Cache::Stats stats = cache_->stats();
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_EQ(stats.relists, 0u);
  // discovery (2) + one list + one watch
  EXPECT_LE(reader_->request_count(), 4u);
}

TEST_F(KubeCacheTest, AWatchTheServerEndsResumesWithoutAList) {
  CreateNamespace("cache-resume");
  cache_ = NewCache(*reader_, {.label_selector = kApp, .watch_timeout = std::chrono::seconds(1)});
  ASSERT_TRUE(cache_->Watch("v1", "ConfigMap", std::chrono::seconds(10)).ok());
  ASSERT_TRUE(Eventually([&] { return cache_->stats().watches >= 3; }))
      << "watches: " << cache_->stats().watches;
  ASSERT_TRUE(writer_->Apply(ConfigMap("cache-resume", "late", "shop", "blue")).ok());
  ASSERT_TRUE(Eventually([&] { return CachedColor("cache-resume", "late") == "blue"; }));
  Cache::Stats stats = cache_->stats();
  EXPECT_EQ(stats.lists, 1u) << "a watch the server ended must resume from its version, not list";
  EXPECT_EQ(stats.relists, 0u);
  EXPECT_TRUE(cache_->Synced("v1", "ConfigMap"));
  uint64_t requests = reader_->request_count();
  EXPECT_EQ(requests, 2 + 1 + stats.watches) << "discovery, one list, and the watches";
}

// Stop ends a watch in flight rather than waiting for the server to end it: with a 10-minute watch,
// a Stop that waited would take minutes, so the bound below is far from any machine's load.
TEST_F(KubeCacheTest, StopDoesNotWaitForAWatch) {
  CreateNamespace("cache-stop");
  cache_ = NewCache(*reader_, {.label_selector = kApp, .watch_timeout = std::chrono::minutes(10)});
  ASSERT_TRUE(cache_->Watch("v1", "ConfigMap", std::chrono::seconds(10)).ok());
  ASSERT_TRUE(Eventually([&] { return cache_->stats().watches >= 1; }));
  auto t0 = std::chrono::steady_clock::now();
  cache_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::minutes(1)) << "Stop waited for the watch";
}

}  // namespace
}  // namespace gantry::kube
