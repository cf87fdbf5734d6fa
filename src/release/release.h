#pragma once
// release: what happens after a CI run succeeded, the rest of Gantry's flow.
//
//   package  the pipeline's `image:` is built from the run's workspace (daemonless, reproducible:
//            the same commit gives the same digest) and pushed under each of its tags;
//   update   the pipeline's `release:` config repository gets the new reference, rewritten in place
//            under release.path (kustomize images:, plain manifests, marker comments), committed
//            and pushed (recomputed on a lost race; no commit when already there);
//   notify   pull agents told of the config commit (a signed GitHub-style push webhook to each URL
//            of ReleaseServices::notify), so they sync now instead of at their next poll;
//   deploy   with release.app and a deliver Config: a push-mode Deployment of the config commit,
//            environment by environment (through release.through), health-gated;
//   record   a ledger Release linking source commit, run, image digest and config commit (the
//            Deployment writes it, with per-cluster targets; without a push deploy it is written
//            here, and pull clusters' agents report their state through their Applications).
//
// Each stage is idempotent, which is what makes a re-queued run (after a crash of the server) safe:
// the rebuilt image has the same digest and the push is a no-op, the update finds the manifests
// already rewritten and makes no commit, the deploy of an applied revision changes nothing.
//
// Only trusted events get here: ci::Server calls the hook for push and tag runs of its configured
// repositories, never for pull requests; and the config repository must be one the server was told
// to write to (ReleaseServices::config_repos), since the pipeline file comes from the app repository.
//
// Thread-safety: RunRelease may run concurrently for different runs; the services must be
// thread-safe (they are: store, mirrors, registry client).

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "ci/pipeline.h"
#include "deliver/deliver.h"
#include "git/git.h"
#include "oci/registry.h"
#include "store/store.h"

namespace gantry::release {

// A pull agent's webhook endpoint: a GitHub-style push event signed with `secret` is POSTed to it.
struct NotifyTarget {
  std::string url;     // "http://agent.local:9090/webhook"
  std::string secret;  // the agent's webhook secret
};

struct ReleaseServices {
  store::Store* store = nullptr;
  git::Mirrors* mirrors = nullptr;
  git::OpenOptions config_git;           // options for the config repositories (allow_file, timeout)
  std::vector<git::Credentials> config_credentials;  // the one matching a repository's host is used
  std::vector<std::string> config_repos;  // the only config repositories releases may write to
  git::Signature author{"Gantry", "gantry@localhost"};
  oci::Registry* registry = nullptr;
  std::filesystem::path image_dir;       // OCI layouts: base-image cache and built images
  std::vector<NotifyTarget> notify;
  // Push mode (optional): without a config, or without release.app, nothing is deployed.
  std::optional<deliver::Config> deliver_config;
  deliver::ConnectFn connect;
  render::Options render;
  std::string path_template = "envs/{env}";
  bool prune = true;
  std::chrono::milliseconds health_timeout{300'000};
};

struct ReleaseRequest {
  int64_t run_id = 0;
  std::string repo;    // the app repository
  std::string commit;  // the commit the run built
  std::string ref;     // "refs/heads/main", "refs/tags/v1.2.0"
  std::filesystem::path workspace;
  // One line of progress for `stage` ("image", "release", "deploy"): the caller stores it as the
  // log of a step of that name.
  std::function<void(std::string_view stage, std::string_view line)> log;
  const std::atomic<bool>* cancel = nullptr;
};

struct ReleaseResult {
  std::string image;          // "registry/repo:tag@sha256:…" (the first tag)
  std::string digest;
  std::string config_commit;  // "" without release:
  bool committed = false;     // false: the config repository already had this image
  int64_t release_id = 0;     // the ledger entry, 0 without release:
  std::string deploy_phase;   // "" when nothing was deployed, else deliver::Name(phase)
};

// The stage names, for the run's steps.
inline constexpr std::string_view kImageStage = "image";
inline constexpr std::string_view kReleaseStage = "release";
inline constexpr std::string_view kDeployStage = "deploy";

// Runs the stages for `pipeline` (which must have image:). Errors name the stage: "image: push
// 127.0.0.1:5000/web:1a2b: …", "release: config repository http://… is not allowed (--config-repo)",
// "deploy: staging/eu-1: …". A failed deploy (unhealthy, waiting for approval) is not an error: its
// phase is in the result.
Result<ReleaseResult> RunRelease(const ReleaseServices& services, const ci::Pipeline& pipeline,
                                 const ReleaseRequest& request);

// Expands an image tag template ({commit}, {short_commit}, {branch}, {tag}, {run}) and checks the
// result is a valid tag. InvalidArgument for an unknown placeholder or an invalid tag.
Result<std::string> ExpandTag(std::string_view tmpl, const ReleaseRequest& request);

// Where a layer's `src` is in the workspace. The workspace holds what the steps wrote, so a symlink
// there may point anywhere: PermissionDenied for a path whose links leave the workspace (the server's
// own files must never end up in an image); NotFound when it does not exist.
Result<std::filesystem::path> LayerSource(const std::filesystem::path& workspace, std::string_view src);

// The body of the push event sent to pull agents (GitHub's format, the fields agents read).
std::string PushEventPayload(std::string_view repo_url, std::string_view branch, std::string_view before,
                             std::string_view after, const std::vector<std::string>& changed_files);

}  // namespace gantry::release
