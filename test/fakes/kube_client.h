#pragma once
// fakes::FakeKubeClient: an in-memory kube::Client for unit tests of code that talks to Kubernetes
// (the cache, sync, the agent), so they run without an apiserver and can count requests.
//
// What it models:
//   - Kinds: a table (Resolve) of core v1 Namespace, ConfigMap, Secret, Service, ServiceAccount,
//     Pod, Event; coordination.k8s.io/v1 Lease; apps/v1 Deployment, StatefulSet, DaemonSet;
//     batch/v1 Job; apiextensions.k8s.io/v1 CustomResourceDefinition; gantry.dev/v1alpha1
//     Application; more with AddKind(). An unknown kind is NotFound as from the real client.
//   - Objects keyed by group/kind/namespace/name; one resourceVersion counter for all writes, as
//     etcd has. Writes set metadata.uid, resourceVersion, creationTimestamp and generation
//     (generation starts at 1 and grows when spec changes). A write that changes nothing (the same
//     object, or an apply of the same fields) is not a write: the resourceVersion stays.
//   - Get / List (namespace filter; label selectors with kube::LabelSelector syntax; field
//     selectors metadata.name and metadata.namespace with =, == and !=; items sorted by namespace
//     and name, apiVersion and kind set; the list's resourceVersion is the current one).
//   - Create (AlreadyExists; metadata.generateName; resourceVersion must not be set), Replace
//     (NotFound; a stale metadata.resourceVersion is FailedPrecondition, as the real client maps a
//     409 Conflict; status is kept for kinds with a status subresource), Delete (NotFound;
//     precondition_uid; immediate), dry_run on Create, Apply, ApplyStatus and Delete (nothing stored).
//   - Apply / ApplyStatus as a simplified server-side apply with field managers: the applied
//     fields are merged into the stored object (maps merged key by key, lists and scalars
//     replaced whole, nulls ignored); fields the manager applied before and no longer applies are
//     removed unless another manager's managedFields entry owns them; the manager's entry
//     {manager, operation: Apply, apiVersion, time, fieldsType: FieldsV1, fieldsV1} is written
//     with `f:` keys for the applied map fields (ApplyStatus: only status, subresource "status";
//     Apply ignores status for kinds with a status subresource). src/diff reads these entries for
//     its ownership checks.
//   - Watch: from an event log (ADDED/MODIFIED/DELETED after the given resourceVersion, filtered
//     by namespace and label selector; an object leaving the selector is DELETED, entering it
//     ADDED). "" or "0" first sends the current objects as ADDED, as the apiserver does. A
//     resourceVersion older than the oldest kept event (Options::event_log_size, Compact()) is
//     OutOfRange, as the real client maps 410 Gone, also for a running watch that falls behind.
//     With bookmarks, a watch that has caught up and whose last version is behind the current one
//     gets a BOOKMARK. A watch returns OK when the handler returns false, *WatchOptions::stop
//     becomes true (within ~20 ms), its timeout passes, or a test calls EndWatches().
//   - Counting and failures: count(verb) per verb ("resolve", "get", "list", "create", "replace",
//     "delete", "apply", "apply_status", "watch", "get_raw", "invalidate_discovery"); FailNext
//     makes the next n calls of a verb return a given status (after counting them).
//     request_count() counts the calls that are HTTP requests on the real client: every verb but
//     resolve and invalidate_discovery (the real client resolves from its discovery cache).
//
// What it does NOT model: admission (namespaces need not exist, no quotas or webhooks), defaulting
// and validation of fields (any map with apiVersion, kind and metadata.name is stored), server-side
// apply conflicts between managers (a forced and an unforced apply behave alike), associative
// lists (list merge keys: every list is atomic and owned whole), the "." ownership of map fields,
// managedFields entries for Create and Replace (operation Update), finalizers and graceful
// deletion (deletes are immediate), garbage collection of dependents and namespace contents,
// pagination (continue tokens), versions of one kind (each kind is served at one version),
// resourceVersion preconditions in an applied object, and list or get at a given resourceVersion.
//
// Thread-safe. Handlers of Watch run on the watching thread, without the fake's lock held.
// Destroying the fake while a Watch runs is a programmer error (aborts): stop the watchers first.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "kube/kube.h"
#include "value/value.h"

namespace gantry::fakes {

class FakeKubeClient final : public kube::Client {
 public:
  struct Options {
    size_t event_log_size = 10000;  // events kept for watches; older versions are OutOfRange
    Clock* clock = nullptr;         // for timestamps; null: SystemClock()
  };

  FakeKubeClient();
  explicit FakeKubeClient(Options options);
  ~FakeKubeClient() override;

  // kube::Client.
  Result<kube::ResourceInfo> Resolve(std::string_view api_version, std::string_view kind) override;
  Result<value::Value> Get(const kube::ObjectRef& ref) override;
  Result<kube::ObjectList> List(std::string_view api_version, std::string_view kind,
                                std::string_view namespace_, const kube::ListOptions& options = {}) override;
  Result<value::Value> Apply(const value::Value& object, const kube::ApplyOptions& options = {}) override;
  Result<value::Value> ApplyStatus(const value::Value& object, const kube::ApplyOptions& options = {}) override;
  Result<value::Value> Replace(const value::Value& object) override;
  Status Delete(const kube::ObjectRef& ref, const kube::DeleteOptions& options = {}) override;
  Result<value::Value> Create(const value::Value& object, const kube::CreateOptions& options = {}) override;
  Status Watch(std::string_view api_version, std::string_view kind, std::string_view namespace_,
               const kube::WatchOptions& options, const kube::WatchHandler& handler) override;
  void InvalidateDiscovery() override;
  // "/version" answers a fixed version document; other paths are NotFound unless SetRaw() set them.
  Result<std::string> GetRaw(std::string_view path) override;
  // The kind table (not counted: the real client answers it from its discovery cache).
  Result<std::vector<kube::ResourceInfo>> ServedKinds() override;
  uint64_t request_count() const override;

  // Serves a kind (replacing an entry of the same group and kind). `status_subresource`: Apply
  // and Replace leave status alone; only ApplyStatus writes it.
  void AddKind(kube::ResourceInfo info, bool status_subresource = false);

  // The next `n` calls of `verb` (a name listed in the file comment; anything else aborts)
  // return `status` instead of doing anything.
  void FailNext(std::string_view verb, Status status, int n = 1);

  // Calls of `verb` so far (the same names as FailNext).
  uint64_t count(std::string_view verb) const;

  // Ends every running watch (each returns OK, as when the server closes a stream).
  void EndWatches();
  // Drops every event logged so far: a watch from an older resourceVersion gets OutOfRange.
  void Compact();
  // Watches running now (to wait until a watcher has started).
  int active_watches() const;
  // The current resourceVersion (of the last write).
  std::string resource_version() const;

  void SetRaw(std::string path, std::string body);

 private:
  struct Kind {
    kube::ResourceInfo info;
    bool status_subresource = false;
  };
  using Key = std::pair<std::string, std::string>;  // namespace, name
  struct Event {
    uint64_t rv;
    std::string group_kind;
    std::string namespace_;
    kube::EventType type;
    value::Value object;    // after the change (for DELETED: the last state)
    value::Value previous;  // before a MODIFIED (null otherwise)
  };

  Status Call(std::string_view verb);  // counts; the injected failure, if any
  Result<Kind> KindOf(std::string_view api_version, std::string_view kind) const REQUIRES(mu_);
  Result<Key> KeyOf(const kube::ObjectRef& ref, const Kind& kind, std::string_view what) const;
  std::string Timestamp() const;
  // Stores `object` (server fields already set) at a new resourceVersion and logs the event.
  value::Value Write(const std::string& group_kind, const Key& key, value::Value object,
                     kube::EventType type, value::Value previous) REQUIRES(mu_);
  Result<value::Value> DoApply(const value::Value& object, const kube::ApplyOptions& options, bool status);

  const Options options_;
  mutable Mutex mu_;
  CondVar cv_;  // a write, EndWatches or Compact
  std::map<std::string, Kind> kinds_ GUARDED_BY(mu_);  // "group/kind"
  std::map<std::string, std::string> raw_ GUARDED_BY(mu_);
  std::map<std::string, std::map<Key, value::Value>> objects_ GUARDED_BY(mu_);  // by group/kind
  std::deque<Event> events_ GUARDED_BY(mu_);  // by rv
  uint64_t rv_ GUARDED_BY(mu_) = 1000;  // last written
  uint64_t compacted_rv_ GUARDED_BY(mu_) = 1000;  // events up to it are gone
  uint64_t uid_counter_ GUARDED_BY(mu_) = 0;
  uint64_t watch_epoch_ GUARDED_BY(mu_) = 0;  // EndWatches() bumps it
  int active_watches_ GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t, std::less<>> counts_ GUARDED_BY(mu_);
  std::map<std::string, std::deque<Status>, std::less<>> failures_ GUARDED_BY(mu_);
};

}  // namespace gantry::fakes
