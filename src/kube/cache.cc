// kube::Cache: one thread per watched kind runs list → watch → (resume | relist), applying events
// to the kind's map of objects under one mutex. Handlers run on that thread without the lock.

#include "kube/cache.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <map>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/mutex.h"
#include "kube/selector.h"

namespace gantry::kube {

value::Value KeepForDiffAndHealth(const value::Value& object) {
  // One pool for the process: every cache repeats the same keys. Never destroyed, as cached
  // values may outlive static destruction.
  static value::KeyPool* const keys = new value::KeyPool;
  value::Value out = value::Detach(object, keys);
  if (value::Value* meta = out.MutableGet("metadata")) {
    if (value::Value* annotations = meta->MutableGet("annotations")) {
      annotations->Erase("kubectl.kubernetes.io/last-applied-configuration");
      if (annotations->size() == 0) meta->Erase("annotations");
    }
  }
  return out;
}

namespace {

using value::Value;
using Key = std::pair<std::string, std::string>;  // namespace, name
using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kMaxBackoff{30'000};

std::string GroupKind(std::string_view api_version, std::string_view kind) {
  return fmt::format("{}/{}", SplitApiVersion(api_version).first, kind);
}

// The resourceVersion of an object as a number, for ordering an observed write against the
// watched state (etcd's versions are integers; anything else is treated as unordered: 0).
uint64_t VersionOf(const Value& object) {
  std::string rv = value::StringAt(&object, {"metadata", "resourceVersion"});
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), n);
  return ec == std::errc() && end == rv.data() + rv.size() ? n : 0;
}

// A kept object is held as compact JSON, not as a parsed Value: ~1 KB for a small ConfigMap
// against ~5 KB as a tree of nodes (bench/kube_cache). Reads parse it again (simdjson, a few µs
// per object), and they are few: a consumer reads an application's objects when something
// changed (IndexVersion), not on every refresh.
struct Entry {
  std::shared_ptr<const std::string> json;  // shared with readers copying it out under the lock
  uint64_t version = 0;                      // VersionOf the object
  std::string index;                         // value of the index label ("" : none)
};

// No file name: a line and column in the cache's own JSON would mean nothing to a reader, so the
// messages about these objects name them by kind, name and field instead (their marks' file is
// empty, which every Where/Position helper leaves out).
Value Parse(const std::string& json) {
  auto v = value::ParseJson(json, "");
  GANTRY_CHECK(v.ok());  // written by ToJson
  return *std::move(v);
}

// One watched kind. Fields are guarded by CacheImpl::mu_ unless marked otherwise (GUARDED_BY cannot
// name another class's member; the CacheImpl functions that take a Kind say REQUIRES(mu_)).
struct Kind {
  std::string api_version;
  std::string kind;
  bool namespaced = true;
  std::map<Key, Entry> objects;
  std::map<std::string, std::set<Key>, std::less<>> by_index;
  bool listed = false;   // the first list completed
  bool synced = false;   // listed and no relist pending
  Status last_error;     // of the last failed list or watch
  std::thread thread;
};

class CacheImpl final : public Cache {
 public:
  CacheImpl(Client& client, CacheOptions options) : client_(client), options_(std::move(options)) {
    if (!options_.transform) options_.transform = KeepForDiffAndHealth;
    auto selector = LabelSelector::Parse(options_.label_selector);
    if (selector.ok()) {
      selector_ = *std::move(selector);
    } else {
      selector_error_ = selector.status();
    }
  }

  ~CacheImpl() override { Stop(); }

  Status Watch(std::string_view api_version, std::string_view kind, std::chrono::milliseconds wait) override {
    std::string what = fmt::format("cache: watch {} {}", api_version, kind);
    if (!selector_error_.ok()) return selector_error_.WithContext(what);
    std::string gk = GroupKind(api_version, kind);
    Kind* k = nullptr;
    {
      MutexLock lock(mu_);
      if (stopped_) return FailedPreconditionError("{}: the cache is stopped", what);
      if (auto it = kinds_.find(gk); it != kinds_.end()) k = it->second.get();
    }
    if (k == nullptr) {
      GANTRY_ASSIGN_OR_RETURN(ResourceInfo info, client_.Resolve(api_version, kind));
      MutexLock lock(mu_);
      if (stopped_) return FailedPreconditionError("{}: the cache is stopped", what);
      auto [it, inserted] = kinds_.try_emplace(gk);
      if (inserted) {
        it->second = std::make_unique<Kind>();
        it->second->api_version = std::string(api_version);
        it->second->kind = std::string(kind);
        it->second->namespaced = info.namespaced;
        Kind* started = it->second.get();
        started->thread = std::thread([this, started] { Run(*started); });
      }
      k = it->second.get();
    }
    MutexLock lock(mu_);
    if (!cv_.WaitFor(mu_, wait, [&]() REQUIRES(mu_) { return k->listed || stopped_; })) {
      std::string error = k->last_error.ok() ? "" : "; last error: " + k->last_error.message();
      return DeadlineExceededError("{}: the first list did not complete within {} ms{}", what, wait.count(),
                                   error);
    }
    if (!k->listed) return FailedPreconditionError("{}: the cache is stopped", what);
    return OkStatus();
  }

  bool Synced(std::string_view api_version, std::string_view kind) const override {
    MutexLock lock(mu_);
    const Kind* k = Find(GroupKind(api_version, kind));
    return k != nullptr && k->synced;
  }

  Result<std::vector<Value>> ByIndex(std::string_view api_version, std::string_view kind,
                                     std::string_view namespace_, std::string_view index_value) const override {
    MutexLock lock(mu_);
    const Kind* k = Find(GroupKind(api_version, kind));
    if (k == nullptr || !k->synced) {
      return FailedPreconditionError("cache: {} {} is {}", api_version, kind, k ? "not synced" : "not watched");
    }
    std::vector<std::shared_ptr<const std::string>> found;
    auto add = [&](const Key& key, const Entry& entry) {
      if (namespace_.empty() || key.first == namespace_) found.push_back(entry.json);
    };
    if (index_value.empty()) {
      for (const auto& [key, entry] : k->objects) add(key, entry);
    } else if (auto it = k->by_index.find(index_value); it != k->by_index.end()) {
      for (const Key& key : it->second) add(key, k->objects.at(key));
    }
    lock.Unlock();  // parse outside the lock
    std::vector<Value> out;
    out.reserve(found.size());
    for (const auto& json : found) out.push_back(Parse(*json));
    return out;
  }

  std::optional<Value> Get(const ObjectRef& ref) const override {
    MutexLock lock(mu_);
    const Kind* k = Find(GroupKind(ref.api_version, ref.kind));
    if (k == nullptr) return std::nullopt;
    auto it = k->objects.find({k->namespaced ? ref.namespace_ : "", ref.name});
    if (it == k->objects.end()) return std::nullopt;
    std::shared_ptr<const std::string> json = it->second.json;
    lock.Unlock();
    return Parse(*json);
  }

  void Observe(const Value& object) override {
    ObjectRef ref = RefOf(object);
    bool matches = selector_.MatchesObject(object);
    Entry kept = matches ? Keep(object) : Entry{};
    uint64_t version = VersionOf(object);
    MutexLock lock(mu_);
    Kind* k = Find(GroupKind(ref.api_version, ref.kind));
    if (k == nullptr) return;
    Key key{k->namespaced ? ref.namespace_ : "", ref.name};
    if (auto it = k->objects.find(key); it != k->objects.end() && version != 0 && it->second.version > version) {
      return;  // the watch already delivered a later version
    }
    if (matches) {
      Put(*k, key, std::move(kept));
    } else {
      Remove(*k, key);  // no longer selected: the watch will not send it again
    }
    lock.Unlock();
    cv_.NotifyAll();
  }

  void ObserveDeleted(const ObjectRef& ref) override {
    {
      MutexLock lock(mu_);
      Kind* k = Find(GroupKind(ref.api_version, ref.kind));
      if (k != nullptr) Remove(*k, {k->namespaced ? ref.namespace_ : "", ref.name});
    }
    cv_.NotifyAll();
  }

  uint64_t Generation() const override {
    MutexLock lock(mu_);
    return version_seq_;
  }

  bool WaitForChange(uint64_t seen, gantry::Clock& clock, SteadyClock::time_point deadline) override {
    MutexLock lock(mu_);
    while (version_seq_ == seen && !stopped_) {
      if (!clock.WaitUntil(cv_, mu_, deadline) && clock.Now() >= deadline) break;
    }
    return version_seq_ != seen;
  }

  void OnChange(Handler handler) override {
    MutexLock lock(mu_);
    handlers_.push_back(std::make_shared<Handler>(std::move(handler)));
  }

  void Stop() override {
    std::vector<std::thread> threads;
    {
      MutexLock lock(mu_);
      stopped_ = true;
      stop_ = true;
      for (auto& [gk, k] : kinds_) {
        if (k->thread.joinable()) threads.push_back(std::move(k->thread));
      }
    }
    cv_.NotifyAll();
    client_.WakeWatches(&stop_);  // the watches end now, not at their next look at stop_
    for (std::thread& t : threads) t.join();
  }

  Stats stats() const override {
    MutexLock lock(mu_);
    Stats s = stats_;
    s.objects = 0;
    for (const auto& [gk, k] : kinds_) s.objects += k->objects.size();
    return s;
  }

 private:
  // A change to report: the object itself (an event's), or the JSON the cache keeps, parsed only
  // when its handlers are called (a first list of 10,000 objects is then never held parsed).
  struct Change {
    EventType type;
    Value object;
    std::shared_ptr<const std::string> json;
  };

  const Kind* Find(const std::string& gk) const REQUIRES(mu_) {
    auto it = kinds_.find(gk);
    return it == kinds_.end() ? nullptr : it->second.get();
  }
  Kind* Find(const std::string& gk) REQUIRES(mu_) {
    auto it = kinds_.find(gk);
    return it == kinds_.end() ? nullptr : it->second.get();
  }

  // What the cache keeps of `object`: options_.transform's result as JSON, indexed. Outside mu_.
  Entry Keep(const Value& object) const { return KeepTransformed(options_.transform(object)); }
  Entry KeepTransformed(const Value& kept) const {
    std::string json = value::ToJson(kept);
    json.shrink_to_fit();  // ToJson grows its buffer by doubling
    return Entry{std::make_shared<const std::string>(std::move(json)), VersionOf(kept), IndexOf(kept)};
  }

  // The namespace a kind is listed and watched in ("" : all, or a cluster-scoped kind).
  std::string_view Scope(const Kind& k) const { return k.namespaced ? std::string_view(options_.namespace_) : ""; }

  std::string IndexOf(const Value& object) const {
    if (options_.index_label.empty()) return "";
    return value::StringAt(&object, {"metadata", "labels", std::string_view(options_.index_label)});
  }

  Key KeyOf(const Kind& k, const Value& object) const {
    return {k.namespaced ? value::StringAt(&object, {"metadata", "namespace"}) : "",
            value::StringAt(&object, {"metadata", "name"})};
  }

  // Stores `object` under `key`, keeping the index current.
  void Put(Kind& k, const Key& key, Entry entry) REQUIRES(mu_) {
    const std::string& index = entry.index;
    auto [it, inserted] = k.objects.try_emplace(key);
    if (!inserted) Touch(it->second.index);
    Touch(index);
    if (!inserted && it->second.index != index) Unindex(k, key, it->second.index);
    if ((inserted || it->second.index != index) && !index.empty()) k.by_index[index].insert(key);
    it->second = std::move(entry);
  }

  void Remove(Kind& k, const Key& key) REQUIRES(mu_) {
    auto it = k.objects.find(key);
    if (it == k.objects.end()) return;
    Touch(it->second.index);
    Unindex(k, key, it->second.index);
    k.objects.erase(it);
  }

  // A change: a new Generation(), and a new IndexVersion for `index`.
  void Touch(const std::string& index) REQUIRES(mu_) {
    ++version_seq_;  // Generation()
    if (index.empty()) return;
    auto it = index_versions_.find(index);
    if (it == index_versions_.end()) it = index_versions_.emplace(index, 0).first;
    it->second = version_seq_;
  }

  // A kind lost sync: every IndexVersion changes.
  void Desync(Kind& k) REQUIRES(mu_) {
    k.synced = false;
    version_floor_ = ++version_seq_;
  }

  uint64_t IndexVersion(std::string_view index_value) const override {
    MutexLock lock(mu_);
    auto it = index_versions_.find(index_value);
    return std::max(version_floor_, it == index_versions_.end() ? 0 : it->second);
  }

  static void Unindex(Kind& k, const Key& key, const std::string& index) {
    if (index.empty()) return;
    auto it = k.by_index.find(index);
    if (it == k.by_index.end()) return;
    it->second.erase(key);
    if (it->second.empty()) k.by_index.erase(it);
  }

  // Calls the handlers; without mu_ held.
  static void Notify(const std::vector<std::shared_ptr<Handler>>& handlers, const std::vector<Change>& changes) {
    for (const Change& c : changes) {
      Value parsed = c.json ? Parse(*c.json) : Value();
      for (const auto& h : handlers) (*h)(c.type, c.json ? parsed : c.object);
    }
  }

  // Sleeps for `d` unless the cache stops first.
  void Sleep(std::chrono::milliseconds d) {
    MutexLock lock(mu_);
    cv_.WaitFor(mu_, d, [&]() REQUIRES(mu_) { return stopped_; });
  }

  // Lists the kind and replaces its objects with the list, reporting what changed when it is a
  // relist. Returns the list's resourceVersion.
  Result<std::string> List(Kind& k) {
    // Kept page by page (transformed outside the lock: it copies every object), so the parsed
    // list is never whole in memory.
    std::map<Key, Entry> fresh;
    auto list = client_.List(k.api_version, k.kind, Scope(k),
                             {.label_selector = options_.label_selector,
                              .each = [&](Value item) { fresh.emplace(KeyOf(k, item), Keep(item)); }});
    bool relist;
    {
      MutexLock lock(mu_);
      ++stats_.lists;
      relist = k.listed;
      if (relist) ++stats_.relists;
    }
    if (!list.ok()) return list.status();
    for (const Value& item : list->items) fresh.emplace(KeyOf(k, item), Keep(item));  // a client without `each`
    list->items.clear();
    std::vector<Change> changes;
    std::vector<std::shared_ptr<Handler>> handlers;
    {
      MutexLock lock(mu_);
      for (auto it = k.objects.begin(); it != k.objects.end();) {
        const Key& key = it->first;
        ++it;
        if (!fresh.contains(key)) {
          if (relist) changes.push_back({EventType::kDeleted, Value(), k.objects.at(key).json});
          Remove(k, key);
        }
      }
      for (auto& [key, entry] : fresh) {
        auto old = k.objects.find(key);
        if (relist || options_.notify_first_list) {
          if (old == k.objects.end()) {
            changes.push_back({EventType::kAdded, Value(), entry.json});
          } else if (old->second.version != entry.version || (entry.version == 0 && *old->second.json != *entry.json)) {
            changes.push_back({EventType::kModified, Value(), entry.json});
          }
        }
        Put(k, key, std::move(entry));
      }
      k.listed = true;
      k.synced = true;
      k.last_error = OkStatus();
      if (!changes.empty()) handlers = handlers_;
    }
    cv_.NotifyAll();
    Notify(handlers, changes);
    return list->resource_version;
  }

  // Applies one watch event; returns false to end the watch (the cache stops).
  bool Apply(Kind& k, const WatchEvent& event, std::string& resource_version) {
    if (stop_.load()) return false;
    std::string rv = value::StringAt(&event.object, {"metadata", "resourceVersion"});
    if (!rv.empty()) resource_version = rv;
    if (event.type == EventType::kBookmark) return true;
    Value kept = event.type == EventType::kDeleted ? event.object : options_.transform(event.object);
    Entry entry = event.type == EventType::kDeleted ? Entry{} : KeepTransformed(kept);
    std::vector<std::shared_ptr<Handler>> handlers;
    {
      MutexLock lock(mu_);
      ++stats_.events;
      Key key = KeyOf(k, event.object);
      // The event of a write the cache already recorded (Observe: the same resourceVersion) is no
      // change to anyone watching the cache: its handlers are not called again.
      auto known = k.objects.find(key);
      bool observed = event.type != EventType::kDeleted && known != k.objects.end() && VersionOf(event.object) != 0 &&
                      known->second.version == VersionOf(event.object);
      if (!observed) handlers = handlers_;
      // An event older than a write recorded with Observe (a sync applied after the watch sent it)
      // does not take the object back to a state the cluster has already left.
      bool stale = known != k.objects.end() && VersionOf(event.object) != 0 &&
                   known->second.version > VersionOf(event.object);
      if (!stale && event.type == EventType::kDeleted) {
        Remove(k, key);
      } else if (!stale) {
        Put(k, key, std::move(entry));
      }
    }
    cv_.NotifyAll();
    if (!handlers.empty()) Notify(handlers, {{event.type, std::move(kept), nullptr}});
    return true;
  }

  void Run(Kind& k) {
    std::string what = fmt::format("cache: {} {}", k.api_version, k.kind);
    std::chrono::milliseconds backoff = options_.retry_backoff;
    std::string resource_version;
    bool need_list = true;
    while (!stop_.load()) {
      Status error;
      if (need_list) {
        auto rv = List(k);
        if (rv.ok()) {
          resource_version = *rv;
          need_list = false;
          backoff = options_.retry_backoff;
        } else {
          error = rv.status().WithContext(what + ": list");
        }
      }
      if (error.ok()) {
        {
          MutexLock lock(mu_);
          ++stats_.watches;
        }
        WatchOptions watch{.label_selector = options_.label_selector,
                           .resource_version = resource_version,
                           .bookmarks = true,
                           .timeout = options_.watch_timeout,
                           .stop = &stop_};
        Status s = client_.Watch(k.api_version, k.kind, Scope(k), watch,
                                 [&](const WatchEvent& e) { return Apply(k, e, resource_version); });
        if (stop_.load()) break;
        if (s.ok()) {
          backoff = options_.retry_backoff;  // the server ended the watch: resume from the last version
          continue;
        }
        need_list = true;
        if (s.code() == Code::kOutOfRange) {
          log::Debug("{}: {}; listing again", what, s.message());
          MutexLock lock(mu_);
          Desync(k);
          continue;  // relist at once: the server expects it
        }
        error = s.WithContext(what);
      }
      log::Warn("{}; retrying in {} ms", error.message(), backoff.count());
      {
        MutexLock lock(mu_);
        Desync(k);
        k.last_error = error;
      }
      cv_.NotifyAll();
      Sleep(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }

  Client& client_;
  CacheOptions options_;
  LabelSelector selector_;
  Status selector_error_;
  std::atomic<bool> stop_{false};  // ends the watches (WatchOptions::stop)
  mutable Mutex mu_;
  CondVar cv_;  // a first list done, or stopping
  bool stopped_ GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<Kind>> kinds_ GUARDED_BY(mu_);  // by "group/kind"
  std::vector<std::shared_ptr<Handler>> handlers_ GUARDED_BY(mu_);
  // One sequence numbers every change (Generation()); IndexVersion: the last number given to each
  // index value, and the number of the last loss of sync (every index value counts as changed then).
  std::map<std::string, uint64_t, std::less<>> index_versions_ GUARDED_BY(mu_);
  uint64_t version_seq_ GUARDED_BY(mu_) = 0;
  uint64_t version_floor_ GUARDED_BY(mu_) = 0;
  Stats stats_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Cache> NewCache(Client& client, CacheOptions options) {
  return std::make_unique<CacheImpl>(client, std::move(options));
}

}  // namespace gantry::kube
