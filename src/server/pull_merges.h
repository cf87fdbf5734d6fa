#pragma once
// server/pull_merges: the pull requests of releases in pull-request mode (release/release.h,
// docs/forges.md) on the forges of --forge. Open() opens or updates the pull request of a release's
// branch (release::ReleaseServices::open_pull_request). With release.auto_merge the release puts
// the pull request into the store's merge outbox (store::PullMerge), and this object's thread
// merges what is due:
//
//   1. the pull request as the forge has it now: merged → done; closed → failed; its head is not
//      the one wanted → looked at again after `poll` (forges see a push after a moment; a head
//      someone else pushed is never merged, and fails at the deadline);
//   2. the checks of the head (forge::Forge::Checks) against the required ones
//      (forge::Evaluate): one failed → failed naming it; some pending → looked at again after
//      `poll`, until the deadline (then failed: "... still waiting for check X");
//   3. all passed → merged with the release's method; a forge that will not merge yet (GitHub and
//      Gitea compute mergeability after a push) is asked again after `poll`.
// A forge that cannot be reached or answers 5xx is tried again with exponential backoff and
// jitter; a refusal retrying cannot fix (401, 403 naming the scope, 404) fails the merge at once,
// with the forge's message. A newer release of the same app and environment replaces the row (its
// head is merged, never the older one). Nothing here blocks a run: merging happens on this
// object's thread, and an unreachable forge only delays it. The merge's push to the config
// repository then deploys as any push does (pull agents, or a webhook).
//
// Thread-safety: Open() may be called from any thread; MergeDue() is for tests (one thread).

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "forge/forge.h"
#include "http/metrics.h"
#include "release/release.h"
#include "server/forge_statuses.h"
#include "store/store.h"

namespace gantry::server {

struct PullMergeOptions {
  store::Store* store = nullptr;  // required; outlives this
  std::vector<ForgeConfig> forges;
  Clock* clock = nullptr;             // nullptr: SystemClock()
  http::Registry* metrics = nullptr;  // gantry_pull_merges_total{forge,result}; nullptr: none
  std::chrono::milliseconds poll{10'000};  // how often waiting pull requests are looked at
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{300'000};
  // How long Open() asks again a forge that answers 404 (it has not processed the push yet) or
  // cannot be reached, with backoff from initial_backoff.
  std::chrono::milliseconds open_wait{30'000};
};

class PullMerges {
 public:
  // Starts the merge thread when `start` (tests pass false and call MergeDue). InvalidArgument
  // from forge::New for a bad forge.
  static Result<std::unique_ptr<PullMerges>> Start(PullMergeOptions options, bool start = true);
  ~PullMerges();
  PullMerges(const PullMerges&) = delete;
  PullMerges& operator=(const PullMerges&) = delete;

  void Stop();

  // Opens or updates the pull request of `spec` on the forge of config repository `repo_url`,
  // asking again for up to open_wait while the forge answers 404 or cannot be reached (a forge
  // sees a push a moment after it: Gitea answers 404 on every pull request of a new repository
  // until it has processed its first push). FailedPrecondition when no --forge covers the
  // repository; forge::Forge::OpenOrUpdatePullRequest's errors.
  Result<release::OpenedPullRequest> Open(const std::string& repo_url, const forge::PullRequestSpec& spec) const;

  // Looks at every due pull request once (the steps of the file comment).
  void MergeDue();

 private:
  struct Forge {
    ForgeConfig config;
    std::unique_ptr<forge::Forge> client;
  };
  // What one look at a pull request found: its new state in the outbox, and why.
  struct Outcome {
    store::NotificationState state = store::NotificationState::kPending;
    std::string note;
    bool retry = false;  // pending because the forge failed (backoff), not because it waits (poll)
  };
  PullMerges(PullMergeOptions options, std::vector<Forge> forges);
  Outcome Look(const Forge& f, const store::PullMerge& m) const;
  void Count(std::string_view forge, std::string_view result);

  const PullMergeOptions options_;
  Clock& clock_;
  const std::vector<Forge> forges_;
  http::Family<http::Counter>* counters_ = nullptr;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace gantry::server
