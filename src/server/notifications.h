#pragma once
// server/notifications: what the server tells notify::Notifier (notify/notify.h). NotificationFeed
// follows the event bus (server/events.h) on its own thread and turns its events into
// notification events:
//   run      failed → run-failed, succeeded → run-succeeded, awaiting_approval → approval-needed
//   release  healthy → release-deployed (per environment and cluster); failed → deploy-failed, or
//            sync-window-blocked when the target's message says a sync window refused it
//   action   WaitingApproval → approval-needed (an environment's approval gate waits)
//   app      (pull apps, server/pull_watch.h) health becoming Degraded → health-degraded, back to
//            Healthy after that → health-recovered; sync becoming OutOfSync after Synced →
//            drift-detected
// Submitting never blocks: the bus and the runs and deploys that publish to it are never slowed
// by notifications (a full queue drops, and the Notifier counts it).
//
// Thread-safety: Translate() is for one thread (the feed's); construction and Stop() are not
// concurrent with each other.

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "notify/notify.h"
#include "server/events.h"
#include "store/store.h"

namespace gantry::server {

class NotificationFeed {
 public:
  // Subscribes to `bus` at once (so no event published after this returns is missed) and starts
  // the thread. `store` (for run and target details), `bus` and `notifier` must outlive it.
  NotificationFeed(EventBus& bus, store::Store& store, notify::Notifier& notifier);
  ~NotificationFeed();
  NotificationFeed(const NotificationFeed&) = delete;
  NotificationFeed& operator=(const NotificationFeed&) = delete;

  void Stop();

  // The notification event of a bus event, if it is one (also remembers pull apps' states).
  std::optional<notify::Event> Translate(const Event& event);

 private:
  EventBus& bus_;
  store::Store& store_;
  notify::Notifier& notifier_;
  std::unique_ptr<EventBus::Subscription> subscription_;
  std::atomic<bool> stop_{false};
  // Pull apps' last health and sync ("cluster/namespace/name" → {health, sync}); the feed's thread only.
  std::map<std::string, std::pair<std::string, std::string>> apps_;
  std::thread thread_;
};

}  // namespace gantry::server
