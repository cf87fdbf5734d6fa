#pragma once
// kube::Cache: a shared list+watch cache of one cluster (client-go's informer, reduced to what
// Gantry needs). It serves the live reads of sync (diff), health and the agent's drift triggers
// from memory, so a no-op reconcile makes no API request.
//
// One watch per kind (cluster-wide, all namespaces, unless CacheOptions::namespace_ names one),
// filtered by CacheOptions::label_selector (Gantry watches only what it manages:
// "gantry.dev/app"). Each kind is listed once, then watched from the list's resourceVersion with
// bookmarks; when the server ends a watch, it resumes from the last version seen; when the
// version is too old (410 Gone → OutOfRange) it lists again and reconciles the cache with the new
// list (objects gone from it are reported as deleted). Errors back off and retry; the cache keeps
// serving what it had, marked not synced until it relists.
//
// Memory is bounded: each object is passed through CacheOptions::transform before it is kept
// (default KeepForDiffAndHealth: detached from the list page or event it arrived in, without the
// fields neither the diff nor health assessment reads), and objects are indexed by the value of
// CacheOptions::index_label (the owning application) for ByIndex. What is kept is held as compact
// JSON (1.4 KB for a small ConfigMap with its managedFields, against 4.9 KB as a parsed tree;
// bench/kube_cache) and parsed again by Get and ByIndex: reads are few, as IndexVersion lets a
// consumer skip them when nothing changed.
//
// Writes made through the client are not seen until their watch event arrives; Observe() records
// an object returned by a write at once (a later event replaces it), so a sync's own writes are
// visible to the compare that follows it.
//
// A reader waits for the next change with Generation() and WaitForChange() (a health wait ends on
// the watch event that makes the object healthy, without polling).
//
// Thread-safe. Handlers run on the kind's watch thread and must not block.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "kube/kube.h"
#include "value/value.h"

namespace gantry::kube {

// The default transform: a copy of `object` in memory of its own (not sharing the list page or
// event document it arrived in; map keys shared with other kept objects through one process-wide
// value::KeyPool) without the kubectl.kubernetes.io/last-applied-configuration annotation.
// managedFields stay: the diff reads every manager's entries (ownership, ignore rules).
value::Value KeepForDiffAndHealth(const value::Value& object);

struct CacheOptions {
  std::string label_selector;  // objects the cache holds, e.g. "gantry.dev/app" ("" : all)
  std::string index_label;     // label whose value indexes objects for ByIndex ("" : no index)
  std::string namespace_;      // namespaced kinds are listed and watched in it ("" : all namespaces)
  // What is kept of each object; default KeepForDiffAndHealth. Called from several threads at
  // once (each kind's watch thread, Observe's callers).
  std::function<value::Value(const value::Value&)> transform;
  // Report every object of a kind's first list to the handlers (kAdded): a change made before the
  // watch began is then not missed by a consumer that started the watch after reading.
  bool notify_first_list = false;
  std::chrono::seconds watch_timeout{300};     // server-side timeout of one watch request
  std::chrono::milliseconds retry_backoff{1000};  // first backoff after an error (doubles to 30 s)
};

class Cache {
 public:
  struct Stats {
    uint64_t lists = 0;     // list calls (first lists and relists)
    uint64_t relists = 0;   // lists after the first of a kind (410 Gone or errors)
    uint64_t watches = 0;   // watch requests started
    uint64_t events = 0;    // watch events applied
    uint64_t objects = 0;   // objects held now
  };
  // Called for every add, change and delete of a watched kind after its first list, and for
  // objects that appeared or disappeared across a relist (kAdded / kDeleted), and with
  // notify_first_list for every object of the first list (kAdded). Not for bookmarks,
  // nor for the event of a write already recorded with Observe (same resourceVersion): a writer
  // that observes its writes does not trigger itself.
  using Handler = std::function<void(EventType type, const value::Value& object)>;

  virtual ~Cache() = default;

  // Starts the list+watch of a kind unless it runs already, and waits up to `wait` for its first
  // list. NotFound when the server does not serve the kind; DeadlineExceeded when the first list
  // did not complete in time (the watch keeps trying). Concurrent callers share one watch.
  virtual Status Watch(std::string_view api_version, std::string_view kind, std::chrono::milliseconds wait) = 0;

  // Whether the kind is watched and its cache is current (first list done, no relist pending).
  virtual bool Synced(std::string_view api_version, std::string_view kind) const = 0;

  // The cached objects of a watched kind whose index label has `index_value` ("" : every cached
  // object of the kind), in `namespace_` ("" : all namespaces), sorted by namespace and name.
  // Objects come in the apiVersion of the kind's first Watch. FailedPrecondition when the kind is
  // not synced (callers then read from the API instead).
  virtual Result<std::vector<value::Value>> ByIndex(std::string_view api_version, std::string_view kind,
                                                    std::string_view namespace_,
                                                    std::string_view index_value) const = 0;

  // The cached object (any version of its group and kind); nullopt when it is not cached or its
  // kind is not watched.
  virtual std::optional<value::Value> Get(const ObjectRef& ref) const = 0;

  // A number that changes whenever an object whose index label has `index_value` is added,
  // changed or removed (by an event, a relist or Observe), and whenever a watched kind loses
  // sync (its reads then come from the API). Equal numbers at two moments mean that ByIndex of
  // `index_value` returned the same objects for every synced kind in between: a consumer that
  // compared them before need not read and compare again.
  virtual uint64_t IndexVersion(std::string_view index_value) const = 0;

  // Records the object returned by a write (apply, replace, create) at once; ObserveDeleted
  // records a delete. The watch event that follows replaces it. Ignored for kinds not watched and
  // when the cache holds a later resourceVersion of the object already; an object the label
  // selector does not match is removed (the watch will not send it again). Handlers are not
  // called: they see what the server reports.
  virtual void Observe(const value::Value& object) = 0;
  virtual void ObserveDeleted(const ObjectRef& ref) = 0;

  // A number that grows with every change to the cached objects (a list, an event, an Observe),
  // so that a reader can wait for the next one: take it, read the cache, then WaitForChange(it).
  virtual uint64_t Generation() const = 0;
  // Blocks until Generation() differs from `seen`, the cache stops, or `clock` reaches `deadline`
  // (a FakeClock does not block: see Clock::WaitUntil); returns whether the cache changed.
  virtual bool WaitForChange(uint64_t seen, Clock& clock, std::chrono::steady_clock::time_point deadline) = 0;

  // Adds a handler (call before Watch to see every change).
  virtual void OnChange(Handler handler) = 0;

  // Ends every watch and joins its thread; idempotent. The destructor calls it.
  virtual void Stop() = 0;

  virtual Stats stats() const = 0;
};

// A cache reading through `client` (which must outlive it).
std::unique_ptr<Cache> NewCache(Client& client, CacheOptions options);

}  // namespace gantry::kube
