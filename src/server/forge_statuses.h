#pragma once
// server/forge_statuses: commit statuses on the forges of the repositories the server builds and
// deploys (forge/forge.h; docs/forges.md). ForgeStatuses follows the event bus (server/events.h)
// as server/notifications.h does, and for each event that moves a run or a deploy it puts the wanted
// status into the store's outbox (store::ForgeStatus); its delivery thread sets what is due on the
// forge, retrying with exponential backoff and jitter until the deadline, after which the status is
// recorded failed with the reason. A newer status of the same commit and context replaces an
// undelivered older one, so a slow forge never gets pending after success.
//
//   run      context gantry/ci on the run's commit: queued, awaiting_approval, interrupted →
//            pending; running → running; succeeded → success; failed → failure with the failed
//            step ("step test failed (exit 1)"); cancelled → error. Target: PUBLIC_URL/runs/ID.
//   release  context gantry/deploy/ENV on the release's source commit (the repository of the CI run
//            that built it), over all the environment's clusters: any failed → failure naming the
//            cluster and its message; rolled back → error; all healthy → success; otherwise pending.
//            Target: PUBLIC_URL/apps/APP/releases/ID.
// A repository is on a forge when its URL is under the forge's prefix (--forge); others get nothing.
// The same outbox carries each pull request's preview comment (server/previews.h: context
// gantry/preview, sha "pull/N"), delivered here with forge::Forge::PutComment.
// Nothing here blocks a run or a deploy: events are read from the bus on this object's threads, and
// an unreachable forge only delays (then fails) the status.
//
// Thread-safety: construction and Stop() are not concurrent with each other; Translate() and
// DeliverDue() are for tests (one thread).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "forge/forge.h"
#include "http/metrics.h"
#include "server/events.h"
#include "store/store.h"

namespace gantry::server {

// One --forge: the repositories under `prefix` are on the forge `options` reach.
struct ForgeConfig {
  std::string prefix;  // "https://gitea.example/" (also the name the outbox records)
  forge::Options options;
};

// Parses --forge 'PREFIX type=gitea|github|gitlab token-env=VAR [api=URL] [ca-file=PEM]'. The API
// URL defaults to PREFIX + "api/v1" (Gitea), https://api.github.com (GitHub), PREFIX + "api/v4"
// (GitLab). InvalidArgument naming the flag and the word for anything wrong: no prefix, an unknown
// key or type, a token variable that is unset or empty.
Result<ForgeConfig> ParseForgeFlag(std::string_view spec);

struct ForgeStatusOptions {
  store::Store* store = nullptr;  // required; outlives this
  std::vector<ForgeConfig> forges;
  std::string public_url;  // target URLs into the console ("" : none)
  Clock* clock = nullptr;  // nullptr: SystemClock()
  http::Registry* metrics = nullptr;  // gantry_forge_statuses_total{forge,result}; nullptr: none
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{300'000};
  std::chrono::milliseconds poll{1000};
  std::chrono::seconds deadline{3600};
};

class ForgeStatuses {
 public:
  // Subscribes to `bus` at once and starts the feed and delivery threads when `start` (tests pass
  // false and call Translate and DeliverDue). InvalidArgument from forge::New for a bad forge.
  static Result<std::unique_ptr<ForgeStatuses>> Start(EventBus& bus, ForgeStatusOptions options, bool start = true);
  ~ForgeStatuses();
  ForgeStatuses(const ForgeStatuses&) = delete;
  ForgeStatuses& operator=(const ForgeStatuses&) = delete;

  void Stop();

  // The status a bus event asks for, if any (its forge is known, and so are its commit and repository).
  std::optional<store::ForgeStatus> Translate(const Event& event);
  // Sets every due status on its forge, once.
  void DeliverDue();

 private:
  struct Forge {
    ForgeConfig config;
    std::unique_ptr<forge::Forge> client;
  };
  ForgeStatuses(EventBus& bus, ForgeStatusOptions options, std::vector<Forge> forges);
  // The forge and repository path of `repo_url`, when a --forge prefix covers it.
  std::optional<std::pair<const Forge*, std::string>> Locate(std::string_view repo_url) const;
  const Forge* Find(std::string_view prefix) const;
  void Count(std::string_view forge, std::string_view result);

  EventBus& bus_;
  const ForgeStatusOptions options_;
  Clock& clock_;
  const std::vector<Forge> forges_;
  http::Family<http::Counter>* counters_ = nullptr;
  std::unique_ptr<EventBus::Subscription> subscription_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool work_ GUARDED_BY(mu_) = false;  // a status was put since the delivery thread last looked
  std::thread feed_, delivery_;
};

}  // namespace gantry::server
