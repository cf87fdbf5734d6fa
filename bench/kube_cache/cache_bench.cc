// kube::Cache memory and CPU: bytes per cached ConfigMap (as parsed, and after each way of
// detaching it) and CPU per applied watch event, with a stub client that serves pre-parsed
// documents (so only the cache's own work is timed). Run: build/.../kube_cache_bench [objects]

#include <malloc.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "kube/cache.h"
#include "test/fakes/unimplemented_kube_client.h"

namespace gantry {
namespace {

using value::Value;

size_t InUse() { return mallinfo2().uordblks; }

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A ConfigMap as the apiserver returns it after `kubectl apply` then `gantry` SSA: ten data
// fields, two labels, the last-applied annotation and one managedFields entry.
std::string ConfigMapJson(int i, int version, bool with_kind) {
  std::string data;
  for (int k = 0; k < 10; ++k) {
    data += fmt::format("{}\"key-{}\":\"value-{}-{}-{:012}\"", k ? "," : "", k, i, k, version);
  }
  std::string fields;
  for (int k = 0; k < 10; ++k) fields += fmt::format("{}\"f:key-{}\":{{}}", k ? "," : "", k);
  std::string last_applied = fmt::format(
      R"({{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{}\",\"namespace\":\"app-{}\"}},\"data\":{{{}}}}})",
      i, i / 10, "\\\"key-0\\\":\\\"value\\\"");
  return fmt::format(
      R"({{{}"metadata":{{"name":"cm-{}","namespace":"app-{}","uid":"6f1c2a7e-0000-4000-8000-{:012}",)"
      R"("resourceVersion":"{}","creationTimestamp":"2026-12-01T10:00:00Z",)"
      R"("labels":{{"gantry.dev/app":"app-{}","app.kubernetes.io/name":"web"}},)"
      R"("annotations":{{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},)"
      R"("managedFields":[{{"manager":"gantry","operation":"Apply","apiVersion":"v1",)"
      R"("time":"2026-12-01T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{{"f:data":{{{}}},)"
      R"("f:metadata":{{"f:labels":{{"f:gantry.dev/app":{{}},"f:app.kubernetes.io/name":{{}}}}}}}}}}]}},)"
      R"("data":{{{}}}}})",
      with_kind ? R"("apiVersion":"v1","kind":"ConfigMap",)" : "", i, i / 10, i, 1000 + version, i / 10,
      last_applied, fields, data);
}

// Serves one list (pages parsed as the HTTP client parses them) and then a fixed set of events.
class StubClient final : public fakes::UnimplementedKubeClient {
 public:
  StubClient(int n, int events) {
    for (int start = 0; start < n; start += 500) {
      std::string page = R"({"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1000"},"items":[)";
      for (int i = start; i < std::min(n, start + 500); ++i) page += (i > start ? "," : "") + ConfigMapJson(i, 0, false);
      page += "]}";
      Value doc = *value::ParseJson(page, "response");
      for (const Value& item : doc.Get("items")->items()) {
        Value obj = item;
        obj.Set("apiVersion", "v1");
        obj.Set("kind", "ConfigMap");
        items_.push_back(std::move(obj));
      }
    }
    for (int e = 0; e < events; ++e) {
      std::string line = R"({"type":"MODIFIED","object":)" + ConfigMapJson(e % n, 1 + e, true) + "}";
      events_.push_back({kube::EventType::kModified, *value::ParseJson(line, "watch event")->Get("object")});
    }
  }
  Result<kube::ResourceInfo> Resolve(std::string_view, std::string_view) override {
    return kube::ResourceInfo{"", "v1", "ConfigMap", "configmaps", true, {}};
  }
  Result<kube::ObjectList> List(std::string_view, std::string_view, std::string_view,
                                const kube::ListOptions& options) override {
    kube::ObjectList list;
    list.items = std::move(items_);  // handed over, as the HTTP client's pages are
    list.resource_version = "1000";
    if (options.each) {
      for (Value& item : list.items) options.each(std::move(item));
      list.items.clear();
    }
    return list;
  }
  Status Watch(std::string_view, std::string_view, std::string_view, const kube::WatchOptions& options,
               const kube::WatchHandler& handler) override {
    while (!go_.load() && !options.stop->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (go_.load() && !sent_.exchange(true)) {
      double t0 = ThreadCpuSeconds();
      for (const kube::WatchEvent& e : events_) handler(e);
      cpu_seconds_ = ThreadCpuSeconds() - t0;
      done_ = true;
      done_.notify_all();
    }
    while (!options.stop->load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return OkStatus();
  }

  void Go() {
    go_ = true;
    go_.notify_all();
    done_.wait(false);
  }
  void DropEvents() { events_.clear(); }
  double cpu_seconds() const { return cpu_seconds_; }

 private:
  std::vector<Value> items_;
  std::vector<kube::WatchEvent> events_;
  std::atomic<bool> sent_{false}, go_{false}, done_{false};
  double cpu_seconds_ = 0;
};

// Bytes per object of keeping `n` list items through `keep`.
template <typename F>
double BytesPerObject(int n, F keep) {
  size_t before = InUse();
  StubClient stub(n, 0);
  auto list = stub.List("v1", "ConfigMap", "", {});
  std::vector<Value> kept;
  kept.reserve(list->items.size());
  for (const Value& item : list->items) kept.push_back(keep(item));
  list->items.clear();
  return static_cast<double>(InUse() - before - kept.capacity() * sizeof(Value)) / n;
}

int Main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  std::printf("objects: %d ConfigMaps, ~%zu bytes of JSON each\n", n, ConfigMapJson(1, 0, true).size());

  std::printf("\nbytes per object held (malloc in use, list pages of 500 parsed as the client does):\n");
  std::printf("  as parsed (list pages kept)         %8.0f\n", BytesPerObject(n, [](const Value& v) { return v; }));
  std::printf("  ParseJson(ToJson(v))                %8.0f\n", BytesPerObject(n, [](const Value& v) {
                return *value::ParseJson(value::ToJson(v));
              }));
  std::printf("  value::Detach(v)                    %8.0f\n", BytesPerObject(n, [](const Value& v) {
                return value::Detach(v);
              }));
  std::printf("  KeepForDiffAndHealth(v)             %8.0f\n", BytesPerObject(n, kube::KeepForDiffAndHealth));

  // CPU of each way of detaching, per object.
  {
    StubClient stub(n, 0);
    auto list = stub.List("v1", "ConfigMap", "", {});
    auto time = [&](const char* name, auto keep) {
      double t0 = ThreadCpuSeconds();
      for (const Value& item : list->items) {
        Value v = keep(item);
        (void)v;
      }
      std::printf("  %-34s %8.2f us\n", name, (ThreadCpuSeconds() - t0) * 1e6 / n);
    };
    std::printf("\nCPU per object:\n");
    time("ParseJson(ToJson(v))", [](const Value& v) { return *value::ParseJson(value::ToJson(v)); });
    time("value::Detach(v)", [](const Value& v) { return value::Detach(v); });
    time("KeepForDiffAndHealth(v)", kube::KeepForDiffAndHealth);
  }

  for (bool transform : {false, true}) {
    kube::CacheOptions options{.label_selector = "gantry.dev/app", .index_label = "gantry.dev/app"};
    if (!transform) options.transform = [](const Value& v) { return v; };
    std::printf("\ncache, transform %s:\n", transform ? "KeepForDiffAndHealth" : "none (identity)");
    {
      size_t before = InUse();
      StubClient stub(n, 0);
      auto cache = kube::NewCache(stub, options);
      if (Status s = cache->Watch("v1", "ConfigMap", std::chrono::seconds(60)); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      std::printf("  bytes per object after the list     %8.0f\n", static_cast<double>(InUse() - before) / n);
      cache->Stop();
    }
    size_t before = InUse();
    StubClient stub(n, n);
    auto cache = kube::NewCache(stub, options);
    if (Status s = cache->Watch("v1", "ConfigMap", std::chrono::seconds(60)); !s.ok()) return 1;
    stub.Go();
    stub.DropEvents();
    std::printf("  bytes per object after %d events %8.0f\n", n, static_cast<double>(InUse() - before) / n);
    std::printf("  CPU per event applied               %8.2f us (%d events: %.1f ms)\n",
                stub.cpu_seconds() * 1e6 / n, n, stub.cpu_seconds() * 1e3);
    cache->Stop();
  }
  return 0;
}

}  // namespace
}  // namespace gantry

int main(int argc, char** argv) { return gantry::Main(argc, argv); }
