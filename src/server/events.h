#pragma once
// server/events: the in-process event bus behind GET /api/v1/events (Server-Sent Events), and the
// store decorator that feeds it.
//
// EventBus keeps the newest `ring_size` events in a ring, each with an id that increases by one
// per event, so a client that reconnects with Last-Event-ID gets what it missed (or, when that has
// left the ring, a "reset" event telling it to reload). Each subscriber has a bounded queue: a
// subscriber that falls `queue_size` events behind is dropped (its Next() says so, and its stream
// ends), never slowing Publish() or the other subscribers.
//
// ObservedStore wraps the real store::Store and publishes after every successful write that
// changes what the console shows: a run's state (CreateRun, ApproveRun, UpdateRun,
// ClaimNextQueuedRun, MarkUnfinishedInterrupted), a step's state (UpsertStep), a log chunk
// (AppendLogChunk), a release's target (UpsertTarget, from deliver and release alike). Events are
// thus published by whatever writes through this store in this process: ci::Server, the release
// flow, push deploys. Writes by another server sharing a PostgreSQL store are not seen that way:
// with a watch interval, the newest 200 runs are read from the store that often and a "run" event
// is published for each run whose state changed elsewhere (so the console follows runs and their
// releases, which end with the run, from any replica). Steps, logs and targets written by another
// server get no event here; their readers (logs -f, the API) read the store.
//
// Event data (JSON), as docs/api.md and api/openapi.json say:
//   run      {"id", "state"}, and "elsewhere": true when read from the store (another server wrote it)
//   step     {"run", "name", "state"}
//   log      {"run", "step", "seq", "text"}
//   release  {"app", "release", "environment", "cluster", "state"}
//   action   {"action", "app", "release", "environment", "phase", "message"}: a deploy, resume or
//            rollback the server ran ended (published by server/actions.h, not by this store)
// Every event carries the project it belongs to (for filtering by the subscriber's permissions);
// it is not part of the data.
//
// Thread-safety: EventBus and ObservedStore are safe to use from any thread.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "store/store.h"
#include "value/value.h"

namespace gantry::server {

struct Event {
  int64_t id = 0;
  std::string type;     // "run", "step", "log", "release", "reset"
  std::string data;     // compact JSON
  std::string project;  // "" for none
};

class EventBus {
 public:
  explicit EventBus(size_t ring_size = 4096, size_t queue_size = 1024);
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // Stamps the next id, keeps the event in the ring and hands it to every subscriber. Returns the id.
  int64_t Publish(std::string type, const value::Value& data, std::string project = "");

  // One subscriber; unsubscribes when destroyed.
  class Subscription {
   public:
    ~Subscription();
    // The next event, waiting up to `timeout`; nullopt on timeout or once dropped.
    std::optional<Event> Next(std::chrono::milliseconds timeout);
    // True once the subscriber fell too far behind and was dropped.
    bool dropped() const;

   private:
    friend class EventBus;
    explicit Subscription(EventBus& bus) : bus_(bus) {}
    EventBus& bus_;
    std::deque<Event> queue_;  // GUARDED_BY(bus_.mu_)
    bool dropped_ = false;     // GUARDED_BY(bus_.mu_)
  };

  // Subscribes. With `last_id` (a Last-Event-ID), the events after it still in the ring are queued
  // first; when some of them already left the ring, a "reset" event comes first instead.
  std::unique_ptr<Subscription> Subscribe(std::optional<int64_t> last_id = std::nullopt);

  int64_t last_id() const;
  size_t subscribers() const;

 private:
  const size_t ring_size_;
  const size_t queue_size_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Event> ring_ GUARDED_BY(mu_);
  int64_t next_id_ GUARDED_BY(mu_) = 1;
  std::set<Subscription*> subscribers_ GUARDED_BY(mu_);
};

// A store::Store that forwards every call to `inner` and publishes to `bus` as the file comment
// says. `project_of_run` names a run's project (cached per run; "" for none), `project_of_release`
// a release's ("" or nullptr: none, so only cluster-wide readers see its events; the server's
// Actions name the project of the deploys they start, server/actions.h); `watch` > 0 reads the
// runs of other servers that often (a thread, ended by the destructor); `inner` and `bus` must
// outlive it.
std::unique_ptr<store::Store> ObservedStore(store::Store& inner, EventBus& bus,
                                            std::function<std::string(const store::Run&)> project_of_run,
                                            std::function<std::string(int64_t)> project_of_release = nullptr,
                                            std::chrono::milliseconds watch = std::chrono::milliseconds(0));

}  // namespace gantry::server
