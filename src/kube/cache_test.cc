// kube::Cache on the fake client: list, events, index, relist after 410, Observe, Stop, memory.

#include "kube/cache.h"

#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/fakes/kube_client.h"

namespace gantry::kube {
namespace {

using ::testing::HasSubstr;
using value::Value;

constexpr char kApp[] = "gantry.dev/app";

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

Value ConfigMap(std::string_view ns, std::string_view name, std::string_view app, std::string_view color = "blue") {
  std::string labels = app.empty() ? "{}" : fmt::format("{{{}: {}}}", kApp, app);
  return Yaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {}, labels: {}}}\n"
                          "data: {{color: {}}}\n",
                          name, ns, labels, color));
}

std::string Name(const Value& object) { return value::StringAt(&object, {"metadata", "name"}); }
std::string Color(const Value& object) { return value::StringAt(&object, {"data", "color"}); }

bool Eventually(const std::function<bool()>& cond) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::vector<std::string> Names(const Result<std::vector<Value>>& objects) {
  std::vector<std::string> out;
  EXPECT_TRUE(objects.ok()) << objects.status().ToString();
  if (objects.ok()) {
    for (const Value& o : *objects) out.push_back(value::StringAt(&o, {"metadata", "namespace"}) + "/" + Name(o));
  }
  return out;
}

// Records the handler's calls; can hold the watch thread inside the handler when the object named
// `hold_on` arrives, until Release().
struct Recorder {
  struct Call {
    EventType type;
    std::string name;
    friend bool operator==(const Call&, const Call&) = default;
  };
  void operator()(EventType type, const Value& object) {
    {
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back({type, Name(object)});
    }
    if (!hold_on.empty() && Name(object) == hold_on) {
      held.set_value();
      release.get_future().wait();
    }
  }
  std::vector<Call> Calls() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
  bool Saw(EventType type, std::string_view name) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(calls.begin(), calls.end(), Call{type, std::string(name)}) != calls.end();
  }
  std::mutex mu;
  std::vector<Call> calls;
  std::string hold_on;
  std::promise<void> held, release;
};

class CacheTest : public ::testing::Test {
 protected:
  void StartCache(CacheOptions options = {.label_selector = kApp, .index_label = kApp}) {
    options.retry_backoff = std::chrono::milliseconds(10);
    cache_ = NewCache(client_, std::move(options));
    cache_->OnChange([this](EventType type, const Value& object) { recorder_(type, object); });
    Status s = cache_->Watch("v1", "ConfigMap", std::chrono::seconds(5));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Create(const Value& object) {
    auto r = client_.Create(object);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  void TearDown() override {
    if (cache_) cache_->Stop();
  }

  fakes::FakeKubeClient client_;
  std::unique_ptr<Cache> cache_;
  Recorder recorder_;
};

TEST_F(CacheTest, FirstListFillsTheCacheWithSelectedObjectsIndexedByLabel) {
  Create(ConfigMap("one", "b", "shop"));
  Create(ConfigMap("two", "a", "shop"));
  Create(ConfigMap("one", "a", "shop"));
  Create(ConfigMap("one", "c", "blog"));
  Create(ConfigMap("one", "unmanaged", ""));
  StartCache();
  EXPECT_TRUE(cache_->Synced("v1", "ConfigMap"));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")),
            (std::vector<std::string>{"one/a", "one/b", "two/a"}));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "two", "shop")), (std::vector<std::string>{"two/a"}));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "none")), (std::vector<std::string>{}));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "one", "")),
            (std::vector<std::string>{"one/a", "one/b", "one/c"}));
  auto got = cache_->Get({"v1", "ConfigMap", "one", "c"});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(Color(*got), "blue");
  EXPECT_FALSE(cache_->Get({"v1", "ConfigMap", "one", "unmanaged"}).has_value());
  EXPECT_TRUE(recorder_.Calls().empty()) << "the first list is not reported as changes";
  Cache::Stats stats = cache_->stats();
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_EQ(stats.relists, 0u);
  EXPECT_EQ(stats.objects, 4u);

  EXPECT_EQ(cache_->ByIndex("apps/v1", "Deployment", "", "shop").status().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(cache_->Synced("apps/v1", "Deployment"));
  EXPECT_EQ(cache_->Watch("example.com/v1", "Widget", std::chrono::seconds(1)).code(), Code::kNotFound);
}

TEST_F(CacheTest, ANamespacedCacheListsAndWatchesOnlyItsNamespace) {
  Create(ConfigMap("one", "a", "shop"));
  Create(ConfigMap("two", "b", "shop"));
  StartCache({.label_selector = kApp, .index_label = kApp, .namespace_ = "one"});
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")), (std::vector<std::string>{"one/a"}));
  Create(ConfigMap("two", "c", "shop"));
  Create(ConfigMap("one", "d", "shop"));
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "d"); }));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")), (std::vector<std::string>{"one/a", "one/d"}));
  EXPECT_FALSE(recorder_.Saw(EventType::kAdded, "c"));
}

TEST_F(CacheTest, WaitForChangeEndsOnTheNextEventOrTheClocksDeadline) {
  StartCache();
  uint64_t seen = cache_->Generation();
  std::thread writer([&] {
    // Once the reader waits (it may not yet: then the change is seen at once).
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Create(ConfigMap("ns", "a", "shop"));
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(cache_->WaitForChange(seen, SystemClock(), start + std::chrono::seconds(30)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  writer.join();
  EXPECT_TRUE(cache_->Get({"v1", "ConfigMap", "ns", "a"}).has_value());
  // Observe is a change too.
  seen = cache_->Generation();
  cache_->Observe(ConfigMap("ns", "b", "shop"));
  EXPECT_TRUE(cache_->WaitForChange(seen, SystemClock(), std::chrono::steady_clock::now()));
  // Nothing changes: the wait ends at the deadline, which a fake clock reaches without blocking.
  seen = cache_->Generation();
  FakeClock fake;
  EXPECT_FALSE(cache_->WaitForChange(seen, fake, fake.Now() + std::chrono::hours(1)));
  EXPECT_EQ(fake.Now().time_since_epoch(), std::chrono::hours(1));
  EXPECT_FALSE(cache_->WaitForChange(seen, SystemClock(), std::chrono::steady_clock::now() + std::chrono::milliseconds(50)));
}

TEST_F(CacheTest, EventsUpdateTheCacheAndTheIndexAndCallHandlers) {
  Create(ConfigMap("ns", "a", "shop"));
  StartCache();
  Create(ConfigMap("ns", "b", "shop"));
  ASSERT_TRUE(Eventually([&] { return cache_->Get({"v1", "ConfigMap", "ns", "b"}).has_value(); }));
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "a", "blog", "red")).ok());
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kModified, "a"); }));
  EXPECT_EQ(Color(*cache_->Get({"v1", "ConfigMap", "ns", "a"})), "red");
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")), (std::vector<std::string>{"ns/b"}));
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "blog")), (std::vector<std::string>{"ns/a"}));
  ASSERT_TRUE(client_.Delete({"v1", "ConfigMap", "ns", "b"}).ok());
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kDeleted, "b"); }));
  EXPECT_FALSE(cache_->Get({"v1", "ConfigMap", "ns", "b"}).has_value());
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")), (std::vector<std::string>{}));
  Create(ConfigMap("ns", "ignored", ""));
  EXPECT_EQ(recorder_.Calls(), (std::vector<Recorder::Call>{{EventType::kAdded, "b"},
                                                            {EventType::kModified, "a"},
                                                            {EventType::kDeleted, "b"}}));
  EXPECT_EQ(cache_->stats().events, 3u);
  EXPECT_EQ(cache_->stats().lists, 1u);
}

TEST_F(CacheTest, IndexVersionChangesWithTheObjectsOfItsIndexOnly) {
  Create(ConfigMap("ns", "a", "shop"));
  Create(ConfigMap("ns", "b", "blog"));
  StartCache();
  uint64_t shop = cache_->IndexVersion("shop"), blog = cache_->IndexVersion("blog");
  EXPECT_EQ(cache_->IndexVersion("shop"), shop) << "reading changes nothing";
  // A change to another index's object leaves it alone.
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "b", "blog", "red")).ok());
  ASSERT_TRUE(Eventually([&] { return cache_->IndexVersion("blog") != blog; }));
  EXPECT_EQ(cache_->IndexVersion("shop"), shop);
  // An object moving from one index to another changes both.
  blog = cache_->IndexVersion("blog");
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "a", "blog")).ok());
  ASSERT_TRUE(Eventually([&] { return cache_->IndexVersion("shop") != shop; }));
  EXPECT_NE(cache_->IndexVersion("blog"), blog);
  // Deletes, and objects recorded with Observe, count.
  shop = cache_->IndexVersion("shop");
  blog = cache_->IndexVersion("blog");
  ASSERT_TRUE(client_.Delete({"v1", "ConfigMap", "ns", "a"}).ok());
  ASSERT_TRUE(Eventually([&] { return cache_->IndexVersion("blog") != blog; }));
  auto created = client_.Create(ConfigMap("ns", "c", "shop"));
  ASSERT_TRUE(created.ok());
  cache_->Observe(*created);
  EXPECT_NE(cache_->IndexVersion("shop"), shop);
}

TEST_F(CacheTest, IndexVersionChangesWhenAKindLosesSync) {
  Create(ConfigMap("ns", "a", "shop"));
  recorder_.hold_on = "trigger";
  StartCache();
  uint64_t other = cache_->IndexVersion("other");
  Create(ConfigMap("ns", "trigger", "shop"));
  recorder_.held.get_future().wait();
  Create(ConfigMap("ns", "b", "shop"));
  client_.Compact();
  recorder_.release.set_value();
  ASSERT_TRUE(Eventually([&] { return cache_->stats().relists == 1; }));
  EXPECT_NE(cache_->IndexVersion("other"), other) << "an index with no objects also counts as changed";
}

// A push-mode sync lists, applies (Observe), then waits for health from the cache while the watch
// still delivers events from before its write: they must not bring back the state it replaced
// (a Deployment Degraded before the apply looked Degraded after it, and the wait failed).
TEST_F(CacheTest, AnEventOlderThanAnObservedWriteDoesNotReplaceIt) {
  recorder_.hold_on = "trigger";
  StartCache();
  Create(ConfigMap("ns", "trigger", "shop"));
  recorder_.held.get_future().wait();
  Create(ConfigMap("ns", "a", "shop", "blue"));  // its event waits behind the held one
  Value later = ConfigMap("ns", "a", "shop", "red");
  later.MutableGet("metadata")->Set("resourceVersion", "999999");
  cache_->Observe(later);
  recorder_.release.set_value();
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "a"); }));
  auto got = cache_->Get({"v1", "ConfigMap", "ns", "a"});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(Color(*got), "red");
}

TEST_F(CacheTest, RelistAfterGoneReportsWhatChangedMeanwhile) {
  Create(ConfigMap("ns", "stays", "shop"));
  Create(ConfigMap("ns", "goes", "shop"));
  Create(ConfigMap("ns", "changes", "shop"));
  recorder_.hold_on = "trigger";
  StartCache();
  // Hold the watch thread inside a handler while the cluster changes and its history is compacted:
  // the watch then falls behind (410 Gone) and the cache must list again.
  Create(ConfigMap("ns", "trigger", "shop"));
  recorder_.held.get_future().wait();
  ASSERT_TRUE(client_.Delete({"v1", "ConfigMap", "ns", "goes"}).ok());
  Create(ConfigMap("ns", "new", "shop"));
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "changes", "shop", "green")).ok());
  client_.Compact();
  recorder_.release.set_value();
  ASSERT_TRUE(Eventually([&] { return cache_->stats().relists == 1 && cache_->Synced("v1", "ConfigMap"); }));
  // Handlers run after the relist is applied.
  EXPECT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kDeleted, "goes"); }));
  EXPECT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "new"); }));
  EXPECT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kModified, "changes"); }));
  EXPECT_FALSE(recorder_.Saw(EventType::kModified, "stays")) << "unchanged objects are not reported";
  EXPECT_EQ(Names(cache_->ByIndex("v1", "ConfigMap", "", "shop")),
            (std::vector<std::string>{"ns/changes", "ns/new", "ns/stays", "ns/trigger"}));
  EXPECT_EQ(Color(*cache_->Get({"v1", "ConfigMap", "ns", "changes"})), "green");
}

TEST_F(CacheTest, ObservedWritesAreVisibleAtOnceAndLaterEventsReplaceThem) {
  recorder_.hold_on = "trigger";
  StartCache();
  Create(ConfigMap("ns", "trigger", "shop"));
  recorder_.held.get_future().wait();  // no event is applied until release
  auto written = client_.Apply(ConfigMap("ns", "x", "shop", "blue"));
  ASSERT_TRUE(written.ok());
  cache_->Observe(*written);
  auto seen = cache_->Get({"v1", "ConfigMap", "ns", "x"});
  ASSERT_TRUE(seen.has_value()) << "an observed write is visible before its event";
  EXPECT_EQ(Color(*seen), "blue");
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "x", "shop", "red")).ok());
  recorder_.release.set_value();
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kModified, "x"); }));
  EXPECT_EQ(Color(*cache_->Get({"v1", "ConfigMap", "ns", "x"})), "red");

  cache_->Observe(*written);  // older than what the watch delivered: ignored
  EXPECT_EQ(Color(*cache_->Get({"v1", "ConfigMap", "ns", "x"})), "red");
  cache_->ObserveDeleted({"v1", "ConfigMap", "ns", "x"});
  EXPECT_FALSE(cache_->Get({"v1", "ConfigMap", "ns", "x"}).has_value());
  cache_->Observe(ConfigMap("ns", "unwatched", "shop"));
  cache_->Observe(Yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ns}\n"));
  EXPECT_FALSE(cache_->Get({"apps/v1", "Deployment", "ns", "d"}).has_value()) << "kind not watched";
}

TEST_F(CacheTest, TheEventOfAnObservedWriteCallsNoHandler) {
  recorder_.hold_on = "trigger";
  StartCache();
  Create(ConfigMap("ns", "trigger", "shop"));
  recorder_.held.get_future().wait();  // no event is applied until release
  auto mine = client_.Apply(ConfigMap("ns", "mine", "shop", "blue"));
  ASSERT_TRUE(mine.ok());
  cache_->Observe(*mine);                                               // the writer records it
  ASSERT_TRUE(client_.Apply(ConfigMap("ns", "theirs", "shop", "red")).ok());  // someone else's
  recorder_.release.set_value();
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "theirs"); }));
  EXPECT_FALSE(recorder_.Saw(EventType::kAdded, "mine")) << "the writer's own write is not a change to it";
  EXPECT_TRUE(cache_->Get({"v1", "ConfigMap", "ns", "mine"}).has_value());
}

TEST_F(CacheTest, TheFirstListIsReportedOnlyWhenAsked) {
  Create(ConfigMap("ns", "before", "shop"));
  StartCache();
  EXPECT_FALSE(recorder_.Saw(EventType::kAdded, "before"));
  cache_->Stop();
  cache_.reset();
  StartCache({.label_selector = kApp, .index_label = kApp, .notify_first_list = true});
  // Handlers run after Watch() has seen the first list complete: wait for them.
  EXPECT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "before"); }));
}

TEST_F(CacheTest, ResumesWhenTheServerEndsAWatchAndRelistsAfterErrors) {
  StartCache();
  ASSERT_TRUE(Eventually([&] { return client_.active_watches() == 1; }));
  client_.EndWatches();
  ASSERT_TRUE(Eventually([&] { return cache_->stats().watches == 2 && client_.active_watches() == 1; }));
  Create(ConfigMap("ns", "after-resume", "shop"));
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "after-resume"); }));
  EXPECT_EQ(cache_->stats().lists, 1u) << "a watch the server ended resumes without a list";

  client_.FailNext("watch", UnavailableError("connection reset"));
  client_.FailNext("list", UnavailableError("etcd is slow"));
  client_.EndWatches();
  ASSERT_TRUE(Eventually([&] { return cache_->stats().lists == 3 && cache_->Synced("v1", "ConfigMap"); }));
  Create(ConfigMap("ns", "after-errors", "shop"));
  ASSERT_TRUE(Eventually([&] { return recorder_.Saw(EventType::kAdded, "after-errors"); }));
  EXPECT_EQ(cache_->stats().relists, 2u);
}

TEST_F(CacheTest, FirstListThatCannotCompleteIsADeadlineWithTheError) {
  client_.FailNext("list", PermissionDeniedError("configmaps is forbidden"), 1000);
  cache_ = NewCache(client_, {.label_selector = kApp, .retry_backoff = std::chrono::milliseconds(10)});
  Status s = cache_->Watch("v1", "ConfigMap", std::chrono::milliseconds(200));
  EXPECT_EQ(s.code(), Code::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("configmaps is forbidden"));
  EXPECT_FALSE(cache_->Synced("v1", "ConfigMap"));
}

TEST_F(CacheTest, AMalformedSelectorIsReportedByWatch) {
  cache_ = NewCache(client_, {.label_selector = "app in x"});
  Status s = cache_->Watch("v1", "ConfigMap", std::chrono::seconds(1));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("app in x"));
}

TEST_F(CacheTest, StopIsPrompt) {
  StartCache();
  ASSERT_TRUE(cache_->Watch("apps/v1", "Deployment", std::chrono::seconds(5)).ok());
  ASSERT_TRUE(cache_->Watch("v1", "Secret", std::chrono::seconds(5)).ok());
  ASSERT_TRUE(Eventually([&] { return client_.active_watches() == 3; }));
  auto t0 = std::chrono::steady_clock::now();
  cache_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "Stop waited for a watch";
  EXPECT_EQ(client_.active_watches(), 0);
  cache_->Stop();  // idempotent
  EXPECT_EQ(cache_->Watch("v1", "Pod", std::chrono::seconds(1)).code(), Code::kFailedPrecondition);
}

TEST_F(CacheTest, KeptObjectsAreDetachedAndLoseTheLastAppliedAnnotation) {
  Value cm = ConfigMap("ns", "a", "shop");
  Value* meta = cm.MutableGet("metadata");
  Value annotations = Value::Map();
  annotations.Set("kubectl.kubernetes.io/last-applied-configuration", "{\"big\": \"copy\"}");
  annotations.Set("keep", "me");
  meta->Set("annotations", annotations);
  ASSERT_TRUE(client_.Apply(cm).ok());
  StartCache();
  auto live = client_.Get({"v1", "ConfigMap", "ns", "a"});
  ASSERT_TRUE(live.ok());
  auto kept = cache_->Get({"v1", "ConfigMap", "ns", "a"});
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->Find({"metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"}), nullptr);
  EXPECT_EQ(value::StringAt(&*kept, {"metadata", "annotations", "keep"}), "me");
  EXPECT_EQ(*kept->Get("data"), *live->Get("data"));
  EXPECT_NE(kept->Get("data"), live->Get("data")) << "the cache shares nodes with the object it was given";
  EXPECT_NE(kept->Find({"metadata", "managedFields"}), nullptr) << "the diff reads managedFields";

  Value only_meta = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\n");
  EXPECT_EQ(KeepForDiffAndHealth(only_meta), only_meta);
}

TEST_F(CacheTest, ACustomTransformDecidesWhatIsKept) {
  Create(ConfigMap("ns", "a", "shop"));
  StartCache({.label_selector = kApp, .transform = [](const Value& o) {
                Value slim = Value::Map();
                slim.Set("metadata", *o.Get("metadata"));
                return slim;
              }});
  auto kept = cache_->Get({"v1", "ConfigMap", "ns", "a"});
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->Get("data"), nullptr);
}

TEST_F(CacheTest, ReadsFromTheCacheMakeNoRequests) {
  for (int i = 0; i < 50; ++i) Create(ConfigMap("ns", fmt::format("cm-{}", i), "shop"));
  StartCache();
  ASSERT_TRUE(Eventually([&] { return client_.active_watches() == 1; }));
  uint64_t before = client_.request_count();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(cache_->ByIndex("v1", "ConfigMap", "ns", "shop")->size(), 50u);
    EXPECT_TRUE(cache_->Get({"v1", "ConfigMap", "ns", "cm-7"}).has_value());
    EXPECT_TRUE(cache_->Watch("v1", "ConfigMap", std::chrono::seconds(1)).ok());
  }
  EXPECT_EQ(client_.request_count(), before);
  EXPECT_EQ(client_.count("resolve"), 1u);
}

}  // namespace
}  // namespace gantry::kube
