#pragma once
// release: what happens after a CI run succeeded, the rest of Gantry's flow, as a step-driven
// object (Release) whose progress is kept in the store, so a server killed mid-release resumes it.
//
//   package  the pipeline's `image:` is built from the run's workspace (daemonless, reproducible:
//            the same commit gives the same digest) and pushed under each of its tags; with a
//            signing key, signed and attested (SLSA provenance v1, and an SPDX SBOM of the image)
//            in cosign's format (sign.h, sbom.h);
//   update   the pipeline's `release:` config repository gets the new reference, rewritten in place
//            under release.path (kustomize images:, plain manifests, marker comments), committed
//            (SSH-signed with a commit signing key) and pushed (recomputed on a lost race; no
//            commit when already there). In pull-request mode (release.mode: pull-request) the
//            commit goes on branch gantry/<app>/<environment>, rebuilt on release.branch and
//            force-pushed, and the pull request of that branch is opened or updated through
//            ReleaseServices::open_pull_request;
//   notify   pull agents told of the config commit (a signed GitHub-style push webhook to each URL
//            of ReleaseServices::notify), so they sync now instead of at their next poll;
//   deploy   with release.app and a deliver Config: a push-mode Deployment of the config commit,
//            environment by environment (through release.through), health-gated;
//   record   a ledger Release linking source commit, run, image digest and config commit (the
//            Deployment writes it, with per-cluster targets; without a push deploy it is written
//            here, and pull clusters' agents report their state through their Applications). In
//            pull-request mode it names the pull request, and with release.auto_merge the pull
//            request is put into the store's merge outbox (store::PullMerge) for the server to
//            merge once its checks pass (server/pull_merges.h); the merge's push then deploys as
//            any push to the config repository does.
// A stage that does not apply is skipped: without release: only package runs; notify only after a
// commit to release.branch; deploy or record, never both.
//
// Resuming. After each stage the store's ReleaseProgress of the run (store.h) records the stage and
// what it produced (image digest, config commit, ledger release). A run re-queued after a crash
// calls Create() again, which continues after the last recorded stage: a finished release is not
// repeated, and a stage is never done twice where doing it twice would show:
//   package  not recorded: rebuilt; the build is reproducible, so the push is a no-op; what the
//            signing key already signed and attested for this run is not signed again;
//   update   before pushing, the branch tip is recorded; every commit carries the trailer
//            "Gantry-Release: run N of REPO@COMMIT". When the tip has moved since, the commits
//            after it are searched for that trailer: a commit found is this release's, already
//            pushed, and is not pushed again (nor reverted, when a newer release came after it);
//   notify   repeated: the delivery id is the same ("gantry-RUN-COMMIT"), so agents drop the copy;
//   deploy   the ledger release it started is found by its run id and its Deployment resumed
//            (deliver::Deployment::Resume), never started a second time;
//   record   the ledger release of the run, when there is one, is not written again.
// Resuming writes the progress back at once (a new version), so that a process still releasing the
// run (a server whose claim expired while it was cut off, ci/server.h "leases") fails its next
// progress write with Aborted and stops: one process at a time works on a release.
//
// Only trusted events get here: ci::Server calls the hook for push and tag runs of its configured
// repositories, never for pull requests; and the config repository must be one the server was told
// to write to (ReleaseServices::config_repos), since the pipeline file comes from the app repository.
//
// Thread-safety: Releases of different runs may run concurrently; the services must be thread-safe
// (they are: store, mirrors, registry client). A Release is driven by one thread; Terminate() may be
// called from any thread.

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "ci/pipeline.h"
#include "ci/server.h"
#include "deliver/deliver.h"
#include "forge/forge.h"
#include "git/git.h"
#include "oci/registry.h"
#include "oci/tree_tar.h"
#include "sign/sign.h"
#include "sign/sshsig.h"
#include "store/store.h"

namespace gantry::release {

// A pull agent's webhook endpoint: a GitHub-style push event signed with `secret` is POSTed to it.
struct NotifyTarget {
  std::string url;     // "http://agent.local:9090/webhook"
  std::string secret;  // the agent's webhook secret
};

// Sends one push event (`body`, delivery id `delivery`) to an agent: OK when it answered 2xx.
using NotifyFn = std::function<Status(const NotifyTarget& target, const std::string& body, const std::string& delivery)>;
// The repository of a config repository URL (git::Mirrors::Open in the server).
using OpenRepoFn = std::function<Result<std::shared_ptr<git::Repository>>(const std::string& url, const git::OpenOptions&)>;

// A pull request opened or updated on the forge of a config repository.
struct OpenedPullRequest {
  std::string forge;  // the forge's name in the server's config (store::PullMerge::forge)
  std::string repo;   // the repository's path on it
  forge::PullRequest pull;
};
// Opens the pull request of `spec.head` into `spec.base` on the forge of config repository
// `repo_url`, or updates the open one (forge::Forge::OpenOrUpdatePullRequest).
using OpenPullRequestFn =
    std::function<Result<OpenedPullRequest>(const std::string& repo_url, const forge::PullRequestSpec& spec)>;

struct ReleaseServices {
  store::Store* store = nullptr;
  OpenRepoFn open_config_repo;
  git::OpenOptions config_git;           // options for the config repositories (allow_file, timeout)
  std::vector<git::Credentials> config_credentials;  // the one matching a repository's host is used
  std::vector<std::string> config_repos;  // the only config repositories releases may write to
  git::Signature author{"Gantry", "gantry@localhost"};
  oci::Registry* registry = nullptr;
  // The registry hosts `registry` holds credentials for (oci::CredentialHosts): a registry
  // credential is named by its host, and a pipeline may push to such a host only when its
  // project's `credentials` lists it. A host without credentials is pushed to anonymously.
  std::vector<std::string> registry_credentials;
  std::filesystem::path image_dir;       // OCI layouts: base-image cache and built images
  std::vector<NotifyTarget> notify;
  NotifyFn send_notify;                  // nullptr: an HTTP POST with a 5 s timeout (SendNotification)
  // Pull-request mode: nullptr fails such a release, saying the server has no --forge for it.
  OpenPullRequestFn open_pull_request;
  std::chrono::hours merge_deadline{24};  // auto_merge: how long the checks may take to pass
  // Push mode (optional): without a config, or without release.app, nothing is deployed.
  std::optional<deliver::Config> deliver_config;
  deliver::ConnectFn connect;
  render::Options render;
  std::string path_template = "envs/{env}";
  bool prune = true;
  std::chrono::milliseconds health_timeout{300'000};
  Clock* clock = nullptr;                // for the deploy's soak gates; nullptr: SystemClock()
  // With a key, every image pushed is signed and gets an SLSA provenance attestation naming
  // `builder_id` (docs/supply-chain.md).
  std::optional<sign::PrivateKey> signing_key;
  std::string builder_id = "https://gantry.dev/ci";
  // With a key, every config commit carries an SSH signature (gpgsig, namespace "git") that
  // `git verify-commit` checks with gpg.format=ssh (docs/supply-chain.md).
  std::optional<sign::SshSigner> commit_signer;
};

struct ReleaseRequest {
  int64_t run_id = 0;  // the CI run (it must exist in the store: the progress is kept per run)
  std::string repo;    // the app repository
  std::string commit;  // the commit the run built
  std::string ref;     // "refs/heads/main", "refs/tags/v1.2.0"
  std::filesystem::path workspace;
  // One line of progress for `stage` ("image", "release", "deploy"): the caller stores it as the
  // log of a step of that name.
  std::function<void(std::string_view stage, std::string_view line)> log;
  const std::atomic<bool>* cancel = nullptr;  // set: the release stops at its next step boundary
  // The Project of the app repository ("" : "default"): the image repository and config path the
  // pipeline releases to must be in its releases:, and the deploy is bounded by it.
  std::string project;
};

struct ReleaseResult {
  std::string image;          // "registry/repo:tag@sha256:…" (the first tag)
  std::string digest;
  std::string signature;      // the digests of the .sig and .att manifests ("" unsigned)
  std::string attestation;    // (the .att manifest after the provenance was added)
  std::string sbom;           // the .att manifest after the SBOM was added ("" without one)
  std::string config_commit;  // "" without release:
  bool committed = false;     // false: the config repository already had this image
  int64_t pull_request = 0;   // pull-request mode: the pull request opened or updated (0: none)
  std::string pull_request_url;
  int64_t release_id = 0;     // the ledger entry, 0 without release:
  std::optional<deliver::Phase> deploy_phase;  // nullopt when nothing was deployed
};

// The stage names, for the run's steps (the stages log to these).
inline constexpr std::string_view kImageStage = "image";      // package
inline constexpr std::string_view kReleaseStage = "release";  // update, notify, record
inline constexpr std::string_view kDeployStage = "deploy";    // deploy

// The stages, in order; kDone after the last.
enum class Stage { kPackage, kUpdate, kNotify, kDeploy, kRecord, kDone };
std::string_view Name(Stage stage);  // "package", "update", "notify", "deploy", "record", "done"

enum class Phase { kRunning, kSucceeded, kFailed, kTerminated };
std::string_view Name(Phase phase);

struct ReleaseState {
  Phase phase = Phase::kRunning;
  Stage next = Stage::kPackage;  // the stage the next Step() works on
  // Failed: why, naming the stage as "image: push 127.0.0.1:5000/web:1a2b: …", "release: config
  // repository http://… is not allowed (--config-repo)", "deploy: staging/eu-1: …". A deploy that
  // ended unhealthy or waiting for approval is not a failure of the release: its phase is in
  // result.deploy_phase.
  Status error;
  ReleaseResult result;  // what the stages done so far produced
  bool resumed = false;  // continued from progress the store held
};

// The release of one CI run. Create() and Resume() load the run's progress from the store; Step()
// does the next stage (a deploy takes one Step() per step of its Deployment); Terminate() stops it
// at the next step boundary, leaving its progress for Create() or Resume() to continue.
class Release {
 public:
  // Starts the release of request.run_id, or continues it when the store holds its progress (a
  // run re-queued after a crash). InvalidArgument when the pipeline has no image:;
  // FailedPrecondition when there is no store; DataLoss when the stored progress is unreadable;
  // the store's errors.
  // `services` must outlive the Release.
  static Result<std::unique_ptr<Release>> Create(const ReleaseServices& services, const ci::Pipeline& pipeline,
                                                 ReleaseRequest request);
  // Continues only: NotFound when the store holds no progress of the run; otherwise as Create().
  static Result<std::unique_ptr<Release>> Resume(const ReleaseServices& services, const ci::Pipeline& pipeline,
                                                 ReleaseRequest request);
  ~Release();

  // Does the next piece of work; false when the release has ended (see state().phase).
  bool Step();
  const ReleaseState& state() const { return state_; }
  // Stops at the next step boundary (between two tags' pushes, between the deploy's steps). Thread-safe.
  void Terminate() { terminate_.store(true); }
  const ReleaseState& Run() {
    while (Step()) {
    }
    return state_;
  }

 private:
  struct Impl;
  explicit Release(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::atomic<bool> terminate_{false};
  ReleaseState state_;
};

// Create() and Run() in one call, for the CI server's hook: the result when the release succeeded,
// its error when it failed, Cancelled when it was stopped (request.cancel).
Result<ReleaseResult> RunRelease(const ReleaseServices& services, const ci::Pipeline& pipeline,
                                 const ReleaseRequest& request);

// The release of a CI run that succeeded, as ci::Server's after_success hook (`gantry server`
// installs it): RunRelease of the run's request. OK when the release succeeded and its push deploy,
// if any, ended healthy; FailedPrecondition "deploy: release N ended PHASE" when the deploy ended
// otherwise (unhealthy, waiting for approval), so the run shows failed; RunRelease's errors.
Status ReleaseSucceededRun(const ReleaseServices& services, const ci::SucceededRun& run);

// POSTs a signed push event to one agent (the default NotifyFn). Unavailable for an answer other
// than 2xx; the http::Client errors otherwise.
Status SendNotification(const NotifyTarget& target, const std::string& body, const std::string& delivery);

// Expands an image tag template ({commit}, {short_commit}, {branch}, {tag}, {run}) and checks the
// result is a valid tag. InvalidArgument for an unknown placeholder or an invalid tag.
Result<std::string> ExpandTag(std::string_view tmpl, const ReleaseRequest& request);

// Where a layer's `src` is in the workspace. The workspace holds what the steps wrote, so a symlink
// there may point anywhere: PermissionDenied for a path whose links leave the workspace (the server's
// own files must never end up in an image); NotFound when it does not exist.
Result<std::filesystem::path> LayerSource(const std::filesystem::path& workspace, std::string_view src);

// What a release reads from a run's workspace, as the trees of one tar stream (oci::WriteTreesTar):
// each image: layer's src (LayerSource: links followed inside the workspace only) at its path in
// the workspace, so that the tar unpacked into an empty directory is a workspace the release
// builds the same image from. A remote worker uploads it for the server to release (ci/server.h,
// "remote"). LayerSource's errors.
Result<std::vector<oci::TarTree>> WorkspaceTrees(const std::filesystem::path& workspace, const ci::ImageSpec& image);

// The body of the push event sent to pull agents (GitHub's format, the fields agents read).
std::string PushEventPayload(std::string_view repo_url, std::string_view branch, std::string_view before,
                             std::string_view after, const std::vector<std::string>& changed_files);

}  // namespace gantry::release
