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
// Pull-mode clusters (deliver::Cluster::pull) are previewed through their Applications: those
// whose source is the config repository (PreviewRequest::config_repo) are rendered at the base and
// the head as their agents render them (agent::Source, with the Application's own source settings;
// only the server's config repositories are fetched) and compared with their cluster as their
// agent compares them (agent::SyncOptionsFor: tracking, ignoreDifferences). Every target, push or
// pull, is compared by a server-side dry run of each changed object when the cluster's credentials
// allow it (DiffAgainst), else with the live objects, and says which.
//
// A pull request from a fork (its head on another repository) is previewed from that repository:
// Previews fetches it read-only, without credentials (the config repository's are never sent to
// it), into a mirror of its own that is removed after the preview, and renders the head as
// untrusted input (UntrustedRender: nothing fetched beyond the fork, no chart repositories, no
// remote Kustomize bases, no SOPS keys, always sandboxed). Pull clusters' Applications render
// only the server's config repositories, so their targets say they are not previewed.
//
// A pull request to an app repository (PreviewsOptions::app_repos) whose pipeline releases into
// the config repository (.gantry/pipeline.yaml at the head: image: and release: with release.repo
// the config repository) is previewed as that release would change it, labelled as predicted: the
// config repository at release.branch, with every container image of the pipeline's image
// repository under release.path set to the tag the head would get (its first tag template for
// the head commit; {run} is not known yet), against the same targets. A pull request whose
// pipeline releases nothing there gets no comment.
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
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "agent/agent.h"
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
  std::string refused;  // the server's refusal of the head's object in a dry run ("" : none)
  std::vector<std::string> callouts;  // "image web: nginx:1.25 → nginx:1.26", "replicas: 1 → 3"
};

struct TargetPreview {
  std::string app;  // a pull target's: its Application's NAMESPACE/NAME
  std::string environment;
  std::string cluster;
  std::string path;   // in the config repository
  bool pull = false;  // the cluster is in pull mode: an agent will apply the change
  std::string error;  // why this target could not be previewed ("" : it was)
  // How the head was compared with the cluster: "dry run" (server-side), or "live" with the
  // reason in compared_note ("" when the target could not be compared).
  std::string compared;
  std::string compared_note;
  // The rules of the project the head breaks here, one each ("project team-a: namespace
  // kube-system is not in destinations ..."): what a sync of it would be refused for. The objects
  // they name are left out of `objects`.
  std::vector<std::string> violations;
  std::vector<ObjectPreview> objects;  // in Report's order
  size_t unchanged = 0;  // head objects the cluster already holds as rendered
};

struct Preview {
  std::string base, head;  // the commits (or revisions as given)
  std::string predicted;   // what the head is when it is a predicted release, for people ("" : a commit)
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
  // Pull clusters: their Applications whose source is config_repo are rendered through
  // pull_source at base and head (fetching only pull_repos; empty: config_repo). nullptr: pull
  // clusters are not previewed.
  agent::Source* pull_source = nullptr;
  std::string config_repo;
  std::vector<std::string> pull_repos;
  // The head is on this fork of config_repo ("" : on config_repo); `render` renders it.
  std::string fork;
  // The head is not a commit of the config repository but the base changed by `predict` (a
  // release predicted, the sentence in `predicted`): each target's objects rendered at the base,
  // then predict(path, objects). `render` must render `head` so too (PredictedRender).
  std::function<void(const std::string& path, std::vector<value::Value>& objects)> predict;
  std::string predicted;
};

// The path of a workload's pod spec ({"spec", "template", "spec"}, ...; {} for other kinds):
// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods.
std::vector<std::string> PodSpecPath(std::string_view kind);

// The preview of `request`. A target that fails (render, cluster, project refusal) carries its
// error and the others are still previewed; a path neither revision has is no target. Errors:
// InvalidArgument for a request without config, render, or apps and pull_source, or a bad path
// template;
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

// `options` for input nobody trusted (a fork's head): no repository fetched beyond the one rendered
// (chart dependencies, helmCharts, remote Kustomize bases), no SOPS decryption, no commit check,
// renderers always sandboxed.
render::Options UntrustedRender(render::Options options);

struct PreviewsOptions {
  store::Store* store = nullptr;            // required: the outbox; outlives this
  const deliver::Config* config = nullptr;  // required
  std::function<deliver::RenderFn()> renderer;  // required: a fresh one per preview (it fetches)
  deliver::ConnectFn connect;                   // required
  std::string config_repo;  // the repository it renders (--deploy-repo)
  agent::Source* pull_source = nullptr;  // pull clusters' renders (PreviewRequest); outlives this
  std::vector<std::string> pull_repos;   // the repositories it may fetch (--config-repo)
  // Forks: their mirrors go under fork_dir ("" : the system's temp directory), removed after each
  // preview; their heads render with UntrustedRender(render_options). allow_file_repos: a fork may
  // be a file:// URL (tests).
  std::filesystem::path fork_dir;
  render::Options render_options;
  bool allow_file_repos = false;
  // App repositories (--repo): their pull requests are previewed as the release of their head
  // would change the config repository, when their pipeline releases into it. Their heads are
  // fetched as forks' are (read-only, without credentials, removed afterwards).
  std::vector<std::string> app_repos;
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
  // repository or an app repository, on a --forge; returns whether it did. Never blocks on I/O.
  bool Offer(const webhook::Event& event);
  // Computes the preview of one offered event and puts its comment into the outbox.
  Status Handle(const webhook::Event& event);
  void Stop();

 private:
  struct Located {
    std::string forge;  // its prefix
    std::string repo;   // its path there
    std::string app_repo;  // the app repository (--repo) it is a pull request to ("" : the config repository)
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
