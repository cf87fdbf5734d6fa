#pragma once
// server/previews: what a pull request to a config repository would change in each cluster
// (docs/forges.md "Pull-request previews"), as one comment on the pull request and as the report
// of `gantry preview`.
//
// ComputePreview renders the config repository at the pull request's base and head for every
// (application, environment) of the push-mode topology (deliver::Config, the path template) and
// compares the head's objects with each cluster of the environment through the sync engine, as
// the API's diff route does (PushDiff: sync::Diff on the cluster, Secrets redacted). Per cluster:
// the objects added (Missing), changed (OutOfSync) and removed (Extra: in the application's
// inventory, no longer rendered), each with its unified diff and the health-relevant changes
// called out (container images, replicas, resources requests and limits); an object the base
// renders exactly as the head is marked as a difference of the cluster that this pull request
// does not make (drift, or an older release running there).
//
// Report (pure) writes it as Markdown (the comment, opening with the marker kMarker) or plain
// text (the terminal), bounded: when the whole report is longer than max_bytes, the diffs are left
// out and a per-object summary remains, with the link to the console; when even that is longer,
// rows are cut with a count of what was left out.
//
// Previews follows pull-request webhooks (opened, synchronized, reopened) of the config
// repository on a --forge, computes each on its own thread (the newest head of a pull request
// replaces an older one still waiting) and puts the comment into the forge outbox of
// server/forge_statuses.h as the row (forge, repo, sha "pull/N", context kCommentContext, state
// "comment", description = the body): newest wins per pull request, delivered (and retried) by
// ForgeStatuses's thread, durable in the store. A slow or unreachable forge or cluster never
// delays a webhook's answer or a deploy.
//
// Thread-safety: ComputePreview and Report are thread-compatible functions of their arguments;
// Previews::Offer may be called from any thread.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "deliver/deliver.h"
#include "kube/kube.h"
#include "server/forge_statuses.h"
#include "store/store.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::server {

// The hidden marker the preview comment is found again by.
inline constexpr std::string_view kMarker = "<!-- gantry-preview -->";
// The outbox context of preview comments (forge_statuses.h delivers them with PutComment).
inline constexpr std::string_view kCommentContext = "gantry/preview";

enum class Change { kAdded, kChanged, kRemoved };
std::string_view Name(Change change);  // "added", "changed", "removed"

struct ObjectPreview {
  kube::ObjectRef ref;
  Change change = Change::kChanged;
  // The base renders it otherwise than the head (or not at all): this pull request changes it.
  bool in_pull_request = true;
  std::string diff;  // unified, live → head, Secrets redacted
  std::vector<std::string> callouts;  // "image web: nginx:1.25 → nginx:1.26", "replicas: 1 → 3"
};

struct TargetPreview {
  std::string app;
  std::string environment;
  std::string cluster;
  std::string path;   // in the config repository
  std::string error;  // why this target could not be previewed ("" : it was)
  std::vector<ObjectPreview> objects;  // in Report's order
  size_t unchanged = 0;  // head objects the cluster already holds as rendered
};

struct Preview {
  std::string base, head;  // the commits (or revisions as given)
  std::vector<TargetPreview> targets;
};

// The health-relevant differences of a workload (pure): per container (init containers too) the
// image, the resources' requests and limits, and spec.replicas, "name: old → new" ("(none)" for
// an absent value). Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods;
// nothing for other kinds or when `desired` is null. `live` null: the values desired sets.
std::vector<std::string> HealthCallouts(const value::Value* live, const value::Value* desired);

struct PreviewRequest {
  const deliver::Config* config = nullptr;  // required: environments and their push clusters
  deliver::RenderFn render;                 // required: the config repository at a revision
  deliver::ConnectFn connect;               // required
  std::string base, head;                   // revisions
  std::string path_template = "envs/{env}";
  // The applications (with their projects): each is rendered at the path template of each
  // environment. A template without {app} renders one path, compared under each app's tracking.
  std::vector<std::pair<std::string, std::string>> apps;  // {app, project}
  std::string only_env;  // "" : every environment
  std::string default_namespace = "default";
};

// The preview of `request`. A target that fails (render, cluster, project refusal) carries its
// error and the others are still previewed; a path neither revision has is no target. Errors:
// InvalidArgument for a request without config, render or apps, or a bad path template;
// PromotionOrder's for a broken topology; NotFound for an unknown only_env.
Result<Preview> ComputePreview(const PreviewRequest& request);

struct ReportOptions {
  bool markdown = true;  // false: plain text for a terminal
  size_t max_bytes = 64 * 1024;
  // How to see the whole diff ("" : not said), given when the diffs are left out.
  std::string full_diff;
};

// The report of `preview` as the file comment says; at most options.max_bytes long.
std::string Report(const Preview& preview, const ReportOptions& options);

struct PreviewsOptions {
  store::Store* store = nullptr;            // required: the outbox; outlives this
  const deliver::Config* config = nullptr;  // required
  std::function<deliver::RenderFn()> renderer;  // required: a fresh one per preview (it fetches)
  deliver::ConnectFn connect;                   // required
  std::string config_repo;  // the repository it renders (--deploy-repo)
  std::vector<ForgeConfig> forges;
  std::string path_template = "envs/{env}";
  Clock* clock = nullptr;  // nullptr: SystemClock()
  std::chrono::seconds deadline{3600};  // of each comment's delivery
};

class Previews {
 public:
  // Starts the preview thread (tests pass start = false and call Handle).
  explicit Previews(PreviewsOptions options, bool start = true);
  ~Previews();
  Previews(const Previews&) = delete;
  Previews& operator=(const Previews&) = delete;

  // Queues a preview when `event` is a pull request opened, synchronized or reopened in the config
  // repository, which is on a --forge; returns whether it did. Never blocks on I/O.
  bool Offer(const webhook::Event& event);
  // Computes the preview of one offered event and puts its comment into the outbox.
  Status Handle(const webhook::Event& event);
  void Stop();

 private:
  struct Located {
    std::string forge;  // its prefix
    std::string repo;   // its path there
  };
  std::optional<Located> Locate(const webhook::Event& event) const;

  const PreviewsOptions options_;
  Clock& clock_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::deque<webhook::Event> queue_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace gantry::server
