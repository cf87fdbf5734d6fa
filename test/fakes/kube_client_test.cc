// The fake kube::Client behaves as the header says: the errors the real client returns, a
// simplified server-side apply, and watches with resourceVersions, selectors and compaction.

#include "test/fakes/kube_client.h"

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::fakes {
namespace {

using ::testing::HasSubstr;
using kube::EventType;
using value::Value;

Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text, "test");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

Value ConfigMap(std::string_view ns, std::string_view name, std::string_view labels = "{}",
                std::string_view data = "{a: '1'}") {
  return Yaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {}, labels: {}}}\n"
                          "data: {}\n",
                          name, ns, labels, data));
}

std::string Rv(const Value& object) { return value::StringAt(&object, {"metadata", "resourceVersion"}); }

TEST(FakeKubeClient, ResolvesTheKindsOfTheTableAndAddedOnes) {
  FakeKubeClient client;
  auto deploy = client.Resolve("apps/v1", "Deployment");
  ASSERT_TRUE(deploy.ok());
  EXPECT_EQ(deploy->resource, "deployments");
  EXPECT_TRUE(deploy->namespaced);
  auto ns = client.Resolve("v1", "Namespace");
  ASSERT_TRUE(ns.ok());
  EXPECT_FALSE(ns->namespaced);
  EXPECT_TRUE(client.Resolve("gantry.dev/v1alpha1", "Application").ok());
  EXPECT_TRUE(client.Resolve("coordination.k8s.io/v1", "Lease").ok());
  auto missing = client.Resolve("example.com/v1", "Widget");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("Widget"));
  EXPECT_EQ(client.Resolve("apps/v2", "Deployment").status().code(), Code::kNotFound);
  client.AddKind({"example.com", "v1", "Widget", "widgets", true, {}});
  EXPECT_TRUE(client.Resolve("example.com/v1", "Widget").ok());
  EXPECT_EQ(client.count("resolve"), 7u);
  EXPECT_EQ(client.request_count(), 0u) << "resolving is served from discovery, not a request";
}

TEST(FakeKubeClient, CreateGetAndTheErrorsOfTheRealClient) {
  FakeKubeClient client;
  auto created = client.Create(ConfigMap("ns", "a"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_FALSE(value::StringAt(&*created, {"metadata", "uid"}).empty());
  EXPECT_FALSE(value::StringAt(&*created, {"metadata", "creationTimestamp"}).empty());
  EXPECT_EQ(Rv(*created), client.resource_version());

  auto again = client.Create(ConfigMap("ns", "a"));
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("configmaps \"a\" already exists"));

  auto got = client.Get({"v1", "ConfigMap", "ns", "a"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, *created);
  auto missing = client.Get({"v1", "ConfigMap", "ns", "b"});
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(missing.status().message(), "get v1 ConfigMap ns/b: configmaps \"b\" not found (reason NotFound)");
  EXPECT_EQ(client.Get({"v1", "ConfigMap", "", "a"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(client.Get({"v1", "Namespace", "ns", "a"}).status().code(), Code::kInvalidArgument);

  Value with_rv = ConfigMap("ns", "c");
  with_rv.MutableGet("metadata")->Set("resourceVersion", "5");
  EXPECT_EQ(client.Create(with_rv).status().code(), Code::kInvalidArgument);

  Value generated = Yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-, namespace: ns}\n");
  auto g = client.Create(generated);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(value::StringAt(&*g, {"metadata", "name"}).starts_with("gen-"));
  EXPECT_EQ(client.count("create"), 4u);
  EXPECT_EQ(client.count("get"), 4u);
}

TEST(FakeKubeClient, ListFiltersByNamespaceLabelsAndFields) {
  FakeKubeClient client;
  ASSERT_TRUE(client.Create(ConfigMap("one", "x", "{app: web, tier: front}")).ok());
  ASSERT_TRUE(client.Create(ConfigMap("one", "a", "{app: db}")).ok());
  ASSERT_TRUE(client.Create(ConfigMap("two", "w", "{app: web}")).ok());
  ASSERT_TRUE(client.Create(ConfigMap("two", "z", "{}")).ok());

  auto names = [&](std::string_view ns, kube::ListOptions options) {
    auto list = client.List("v1", "ConfigMap", ns, options);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    std::vector<std::string> out;
    if (!list.ok()) return out;
    EXPECT_EQ(list->resource_version, client.resource_version());
    for (const Value& item : list->items) {
      EXPECT_EQ(value::StringAt(&item, {"kind"}), "ConfigMap");
      out.push_back(value::StringAt(&item, {"metadata", "namespace"}) + "/" +
                    value::StringAt(&item, {"metadata", "name"}));
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names("", {}), (V{"one/a", "one/x", "two/w", "two/z"}));
  EXPECT_EQ(names("two", {}), (V{"two/w", "two/z"}));
  EXPECT_EQ(names("", {.label_selector = "app"}), (V{"one/a", "one/x", "two/w"}));
  EXPECT_EQ(names("", {.label_selector = "!app"}), (V{"two/z"}));
  EXPECT_EQ(names("", {.label_selector = "app=web"}), (V{"one/x", "two/w"}));
  EXPECT_EQ(names("", {.label_selector = "app!=web"}), (V{"one/a", "two/z"}));
  EXPECT_EQ(names("", {.label_selector = "app=web, tier=front"}), (V{"one/x"}));
  EXPECT_EQ(names("", {.label_selector = "app in (db, web),app notin (web)"}), (V{"one/a"}));
  EXPECT_EQ(names("", {.field_selector = "metadata.name=w"}), (V{"two/w"}));
  EXPECT_EQ(names("", {.field_selector = "metadata.namespace!=one"}), (V{"two/w", "two/z"}));

  auto bad = client.List("v1", "ConfigMap", "", {.label_selector = "app in web"});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("app in web"));
  EXPECT_EQ(client.List("v1", "ConfigMap", "", {.field_selector = "spec.x=1"}).status().code(),
            Code::kInvalidArgument);
}

TEST(FakeKubeClient, ReplaceChecksTheResourceVersionAsAConflict) {
  FakeKubeClient client;
  auto created = client.Create(ConfigMap("ns", "a"));
  ASSERT_TRUE(created.ok());
  Value update = *created;
  update.Set("data", Yaml("{a: '2'}"));
  auto replaced = client.Replace(update);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_NE(Rv(*replaced), Rv(*created));
  EXPECT_EQ(value::StringAt(&*replaced, {"metadata", "uid"}), value::StringAt(&*created, {"metadata", "uid"}));

  auto stale = client.Replace(update);  // still at the first version
  EXPECT_EQ(stale.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("the object has been modified"));

  auto same = client.Replace(*replaced);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(Rv(*same), Rv(*replaced)) << "a replace that changes nothing does not write";
  EXPECT_EQ(client.Replace(ConfigMap("ns", "missing")).status().code(), Code::kNotFound);
}

TEST(FakeKubeClient, DeleteHonoursPreconditionsAndDryRun) {
  FakeKubeClient client;
  auto created = client.Create(ConfigMap("ns", "a"));
  ASSERT_TRUE(created.ok());
  kube::ObjectRef ref{"v1", "ConfigMap", "ns", "a"};
  EXPECT_EQ(client.Delete(ref, {.precondition_uid = "other"}).code(), Code::kFailedPrecondition);
  EXPECT_TRUE(client.Delete(ref, {.dry_run = true}).ok());
  EXPECT_TRUE(client.Get(ref).ok());
  EXPECT_TRUE(client.Delete(ref, {.precondition_uid = value::StringAt(&*created, {"metadata", "uid"})}).ok());
  Status gone = client.Delete(ref);
  EXPECT_EQ(gone.code(), Code::kNotFound);
  EXPECT_EQ(gone.message(), "delete v1 ConfigMap ns/a: configmaps \"a\" not found (reason NotFound)");
}

TEST(FakeKubeClient, ApplyMergesFieldsAndRecordsTheManager) {
  FakeKubeClient client;
  Value deploy = Yaml(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns, labels: {app: web}}
spec:
  replicas: 2
  template: {spec: {containers: [{name: web, image: nginx}]}}
status: {replicas: 9}
)");
  auto first = client.Apply(deploy);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(value::IntAt(&*first, {"metadata", "generation"}), 1);
  EXPECT_EQ(first->Get("status"), nullptr) << "Apply does not write the status subresource";
  const Value* managed = first->Find({"metadata", "managedFields", 0});
  ASSERT_NE(managed, nullptr);
  EXPECT_EQ(value::StringAt(&*managed, {"manager"}), "gantry");
  EXPECT_EQ(value::StringAt(&*managed, {"operation"}), "Apply");
  EXPECT_EQ(value::StringAt(&*managed, {"apiVersion"}), "apps/v1");
  EXPECT_EQ(value::StringAt(&*managed, {"fieldsType"}), "FieldsV1");
  EXPECT_EQ(*managed->Get("fieldsV1"),
            Yaml("{'f:metadata': {'f:labels': {'f:app': {}}}, "
                 "'f:spec': {'f:replicas': {}, 'f:template': {'f:spec': {'f:containers': {}}}}}"));

  auto same = client.Apply(deploy);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(Rv(*same), Rv(*first)) << "a no-op apply wrote";

  // Another manager sets a label; gantry then stops applying replicas and its label: both go, as
  // gantry alone owned them; the other manager's label stays.
  auto other = client.Apply(Yaml("apiVersion: apps/v1\nkind: Deployment\n"
                                  "metadata: {name: web, namespace: ns, labels: {team: a}}\n"),
                            {.field_manager = "kubectl"});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(value::StringAt(&*other, {"metadata", "labels", "team"}), "a");
  EXPECT_EQ(value::IntAt(&*other, {"metadata", "generation"}), 1) << "metadata changes keep the generation";

  auto dropped = client.Apply(Yaml(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns}
spec:
  template: {spec: {containers: [{name: web, image: nginx:2}]}}
)"));
  ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
  EXPECT_EQ(dropped->Find({"spec", "replicas"}), nullptr);
  EXPECT_EQ(dropped->Find({"metadata", "labels", "app"}), nullptr);
  EXPECT_EQ(value::StringAt(&*dropped, {"metadata", "labels", "team"}), "a");
  EXPECT_EQ(value::StringAt(&*dropped, {"spec", "template", "spec", "containers", 0, "image"}), "nginx:2");
  EXPECT_EQ(value::IntAt(&*dropped, {"metadata", "generation"}), 2);
  EXPECT_EQ(dropped->Find({"metadata", "managedFields"})->size(), 2u);

  auto dry = client.Apply(ConfigMap("ns", "dry"), {.dry_run = true});
  ASSERT_TRUE(dry.ok());
  EXPECT_EQ(client.Get({"v1", "ConfigMap", "ns", "dry"}).status().code(), Code::kNotFound);

  auto status = client.ApplyStatus(Yaml("apiVersion: apps/v1\nkind: Deployment\n"
                                        "metadata: {name: web, namespace: ns}\nstatus: {replicas: 1}\n"),
                                   {.field_manager = "controller"});
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(value::IntAt(&*status, {"status", "replicas"}), 1);
  EXPECT_EQ(value::IntAt(&*status, {"metadata", "generation"}), 2);
  EXPECT_EQ(value::StringAt(&*status, {"metadata", "managedFields", 2, "subresource"}), "status");
  EXPECT_EQ(client.ApplyStatus(Yaml("apiVersion: apps/v1\nkind: Deployment\n"
                                    "metadata: {name: nope, namespace: ns}\nstatus: {replicas: 1}\n"))
                .status()
                .code(),
            Code::kNotFound);
}

TEST(FakeKubeClient, FailNextReturnsTheStatusAndCountsTheCall) {
  FakeKubeClient client;
  client.FailNext("list", UnavailableError("etcd is slow"), 2);
  EXPECT_EQ(client.List("v1", "ConfigMap", "").status().code(), Code::kUnavailable);
  EXPECT_THAT(client.List("v1", "ConfigMap", "").status().message(), HasSubstr("list v1 ConfigMap: etcd is slow"));
  EXPECT_TRUE(client.List("v1", "ConfigMap", "").ok());
  EXPECT_EQ(client.count("list"), 3u);
  EXPECT_EQ(client.request_count(), 3u);
  auto version = client.GetRaw("/version");
  ASSERT_TRUE(version.ok());
  EXPECT_THAT(*version, HasSubstr("gitVersion"));
  EXPECT_EQ(client.GetRaw("/nope").status().code(), Code::kNotFound);
}

// Runs a watch on a thread, collecting its events.
struct Watcher {
  Watcher(FakeKubeClient& client, kube::WatchOptions options, std::string ns = "") {
    options.stop = &stop;
    thread = std::thread([this, &client, options, ns] {
      result = client.Watch("v1", "ConfigMap", ns, options, [this](const kube::WatchEvent& e) {
        std::lock_guard<std::mutex> lock(mu);
        events.push_back({e.type, value::StringAt(&e.object, {"metadata", "name"}), Rv(e.object)});
        return true;
      });
      done = true;
    });
  }
  ~Watcher() {
    stop = true;
    thread.join();
  }
  struct Seen {
    EventType type;
    std::string name;
    std::string rv;
    friend bool operator==(const Seen&, const Seen&) = default;
  };
  std::vector<Seen> Wait(size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (events.size() >= n) return events;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::lock_guard<std::mutex> lock(mu);
    return events;
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  Status result;
  std::mutex mu;
  std::vector<Seen> events;
  std::thread thread;
};

void WaitFor(const std::function<bool()>& cond) {
  for (int i = 0; i < 500 && !cond(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

TEST(FakeKubeClient, WatchSendsEventsAfterTheVersionFilteredBySelector) {
  FakeKubeClient client;
  ASSERT_TRUE(client.Create(ConfigMap("ns", "before", "{app: x}")).ok());
  std::string start = client.resource_version();
  Watcher w(client, {.label_selector = "app", .resource_version = start, .bookmarks = false});
  WaitFor([&] { return client.active_watches() == 1; });
  auto a = client.Create(ConfigMap("ns", "a", "{app: x}"));
  ASSERT_TRUE(client.Create(ConfigMap("ns", "unlabelled")).ok());
  Value changed = *a;
  changed.Set("data", Yaml("{a: '2'}"));
  auto m = client.Replace(changed);
  ASSERT_TRUE(m.ok());
  Value unlabel = *m;
  unlabel.MutableGet("metadata")->Erase("labels");
  auto left = client.Replace(unlabel);
  ASSERT_TRUE(left.ok());
  ASSERT_TRUE(client.Delete({"v1", "ConfigMap", "ns", "before"}).ok());
  auto seen = w.Wait(4);
  using S = Watcher::Seen;
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], (S{EventType::kAdded, "a", Rv(*a)}));
  EXPECT_EQ(seen[1], (S{EventType::kModified, "a", Rv(*m)}));
  EXPECT_EQ(seen[2], (S{EventType::kDeleted, "a", Rv(*left)})) << "leaving the selector is a delete";
  EXPECT_EQ(seen[3].type, EventType::kDeleted);
  EXPECT_EQ(seen[3].name, "before");
  EXPECT_EQ(seen[3].rv, client.resource_version());
}

TEST(FakeKubeClient, WatchFromNothingStartsWithTheCurrentObjects) {
  FakeKubeClient client;
  ASSERT_TRUE(client.Create(ConfigMap("ns", "a")).ok());
  ASSERT_TRUE(client.Create(ConfigMap("other", "b")).ok());
  Watcher w(client, {.bookmarks = false}, "ns");
  auto seen = w.Wait(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].type, EventType::kAdded);
  EXPECT_EQ(seen[0].name, "a");
}

TEST(FakeKubeClient, WatchFromACompactedVersionIsOutOfRange) {
  FakeKubeClient client({.event_log_size = 2});
  std::string start = client.resource_version();
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(client.Create(ConfigMap("ns", name)).ok());
  Status s = client.Watch("v1", "ConfigMap", "", {.resource_version = start}, [](const kube::WatchEvent&) {
    return true;
  });
  EXPECT_EQ(s.code(), Code::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("too old resource version"));

  // From a fresh list's version it works, even right after everything before it was compacted.
  auto list = client.List("v1", "ConfigMap", "");
  ASSERT_TRUE(list.ok());
  client.Compact();
  Watcher w(client, {.resource_version = list->resource_version, .bookmarks = false});
  WaitFor([&] { return client.active_watches() == 1; });
  ASSERT_TRUE(client.Create(ConfigMap("ns", "d")).ok());
  auto seen = w.Wait(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].name, "d");
}

TEST(FakeKubeClient, BookmarksCarryTheVersionPastFilteredEvents) {
  FakeKubeClient client;
  Watcher w(client, {.label_selector = "app", .resource_version = client.resource_version()});
  WaitFor([&] { return client.active_watches() == 1; });
  ASSERT_TRUE(client.Create(ConfigMap("ns", "unlabelled")).ok());
  auto seen = w.Wait(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].type, EventType::kBookmark);
  EXPECT_EQ(seen[0].rv, client.resource_version());
}

TEST(FakeKubeClient, WatchEndsOnStopEndWatchesAndTimeout) {
  FakeKubeClient client;
  {
    Watcher w(client, {.resource_version = client.resource_version()});
    WaitFor([&] { return client.active_watches() == 1; });
    auto t0 = std::chrono::steady_clock::now();
    w.stop = true;
    WaitFor([&] { return w.done.load(); });
    EXPECT_TRUE(w.done);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
    EXPECT_TRUE(w.result.ok());
  }
  {
    Watcher w(client, {.resource_version = client.resource_version()});
    WaitFor([&] { return client.active_watches() == 1; });
    client.EndWatches();
    WaitFor([&] { return w.done.load(); });
    EXPECT_TRUE(w.done);
    EXPECT_TRUE(w.result.ok());
  }
  auto t0 = std::chrono::steady_clock::now();
  Status s = client.Watch("v1", "ConfigMap", "", {.resource_version = client.resource_version(),
                                                  .timeout = std::chrono::seconds(1)},
                          [](const kube::WatchEvent&) { return true; });
  EXPECT_TRUE(s.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(client.active_watches(), 0);
  EXPECT_EQ(client.count("watch"), 3u);
}

}  // namespace
}  // namespace gantry::fakes
