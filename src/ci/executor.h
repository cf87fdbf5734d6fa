#pragma once
// ci/executor: where a step's processes run.
//
// An Executor runs one step to completion: it starts the step's argv with exactly the given
// environment in the step's workspace, streams its combined stdout and stderr to `output` as it
// arrives (unmasked: the runner masks), enforces the timeout, and stops the step when `cancel`
// becomes true. Timeouts and cancellation end the whole process tree of the step.
//
//   ProcessExecutor     a local process in the one sandbox (base/sandbox.h): the workspace is the
//                       only writable place (at /workspace), the artifacts of earlier steps are
//                       read-only at /artifacts, /tmp is private, /usr and an /etc of the
//                       sandbox's own are read-only, nothing else of the host is visible; network
//                       off per step on request; setrlimit limits; uid 1000 in a user namespace;
//                       bubblewrap starts with no environment of its own and the step gets no
//                       descriptor but 0-2. Without the sandbox (Options::sandbox = false, for
//                       benchmarks and trusted hosts without bwrap) the same process runs on the
//                       host with host paths.
//   KubernetesExecutor  one Pod per step in a namespace (NewKubernetesExecutor below).
//
// Executors are thread-safe: the runner calls Run() from several threads at once.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "ci/pipeline.h"
#include "value/value.h"

namespace gantry::kube {
class Client;
}

namespace gantry::ci {

struct StepRequest {
  std::string run_label;  // "run-12", for names (Pods, logs)
  std::string step;
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // complete: nothing else is inherited
  std::set<std::string> secret_names;      // which keys of `env` hold secrets (kept out of specs)
  std::filesystem::path workspace;         // host path, writable by the step
  std::filesystem::path artifacts;         // host path, read-only for the step ("" = none)
  bool network = true;
  Limits limits;
  std::chrono::milliseconds timeout{std::chrono::hours(1)};
  std::string image;  // Kubernetes executor
  // False for code nobody trusted yet (fork pull requests): the Kubernetes executor runs it in its
  // untrusted namespace.
  bool trusted = true;
};

struct StepOutcome {
  int exit_code = -1;
  int term_signal = 0;
  bool timed_out = false;
  bool cancelled = false;
  std::chrono::milliseconds duration{0};
  std::string reason;  // what the platform said, when it said more than the code ("OOMKilled")
  bool success() const { return exit_code == 0 && term_signal == 0 && !timed_out && !cancelled; }
  // "exit code 2", "timed out after 30s", "cancelled", "killed by signal 9", "exit code 137
  // (OOMKilled)".
  std::string Describe() const;
};

using OutputFn = std::function<void(std::string_view)>;

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs the step; a failing step is an outcome, not an error. Errors: the step could not be
  // started (FailedPrecondition for a missing sandbox or image, NotFound for a missing program,
  // Unavailable for an unreachable cluster).
  virtual Result<StepOutcome> Run(const StepRequest& request, const OutputFn& output,
                                  const std::atomic<bool>& cancel) = 0;
  // What the step sees as $GANTRY_WORKSPACE and $GANTRY_ARTIFACTS for these host paths.
  virtual std::string WorkspacePath(const std::filesystem::path& host) const = 0;
  virtual std::string ArtifactsPath(const std::filesystem::path& host) const = 0;
  virtual std::string_view name() const = 0;
  // Whether steps are isolated from the host running Gantry (false only for the process executor
  // without its sandbox). The server runs no untrusted run on an executor that does not isolate.
  virtual bool Isolates() const = 0;
  // The host user steps run as when it is not the caller's own (the process executor's
  // step_user); the server makes the directories above workspaces traversable for it.
  virtual std::optional<std::pair<uint32_t, uint32_t>> StepUser() const { return std::nullopt; }
};

struct ProcessExecutorOptions {
  bool sandbox = true;              // false: run on the host (no isolation)
  std::string bwrap = "bwrap";      // looked up in PATH
  // Host paths steps may read, bound read-only at the same place: toolchains outside /usr that the
  // operator provides (an SDK under /opt). Never a path holding credentials.
  std::vector<std::string> extra_ro_paths;
  // Processes a step may have at once (its pids cgroup; a smaller `limits.processes` wins), so a
  // fork bomb stops there. Where no pids cgroup can be made (not root), RLIMIT_NPROC from the
  // pipeline's limits is all there is, and a warning says so once. 0 = no limit.
  uint64_t max_processes = 1024;
  // The host user (uid, gid) sandboxed steps run as, instead of the server's own (needs root). A
  // server run as root sets one (gantry server --step-uid, 65533 by default), so that a step's uid
  // in the sandbox maps to that user, not to root. Before each step the workspace and artifacts
  // are given to it (ChownTreeBeneath), so their ancestors must be traversable by it.
  std::optional<std::pair<uint32_t, uint32_t>> step_user;
  std::chrono::milliseconds kill_grace{2000};  // SIGTERM → SIGKILL on timeout / cancel
  Clock* clock = nullptr;  // the step's timeout, grace and duration; nullptr: SystemClock()
};

// FailedPrecondition when the sandbox is requested but bwrap does not work here (with why).
Result<std::unique_ptr<Executor>> NewProcessExecutor(const ProcessExecutorOptions& options = {});

struct KubernetesExecutorOptions {
  std::string namespace_ = "default";
  std::string default_image = "debian:bookworm-slim";
  std::string service_account;  // "" = the namespace default; the token is never mounted
  std::chrono::milliseconds poll{250};  // Pod status and log polling
  // The image of the helper containers that ship the run's workspace into the step's Pod and back
  // (`gantry internal …`): Gantry's own image, as deploy/build-image.sh builds it. "" : nothing is
  // shipped, the step gets an empty /workspace (a note in its log says so).
  std::string helper_image;
  std::string helper_binary = "/usr/local/bin/gantry";  // the gantry binary in helper_image
  // Of the files shipped each way (the workspace and earlier artifacts in; the workspace out):
  // beyond it the step fails, saying so. The run's own workspace and artifact limits then apply on
  // the server as for the process executor.
  uint64_t max_transfer_bytes = 4ull << 30;
  // Where untrusted steps (StepRequest::trusted false) run; "" = namespace_ + "-untrusted". It is
  // created when missing, with a NetworkPolicy denying all ingress and egress of its Pods.
  std::string untrusted_namespace;
  int64_t run_as_user = 1000;  // uid, gid and fsGroup of every step; never 0
  // Where step Pods may run: the Pod's nodeSelector, and tolerations of these taint keys (operator
  // Exists, any effect), for clusters that keep CI on its own nodes.
  std::map<std::string, std::string> node_selector;
  std::vector<std::string> tolerate_taints;
  uint64_t max_log_bytes = 16ull << 20;  // of a step's log forwarded; the rest is dropped, with a note
  Clock* clock = nullptr;  // polls, the step's timeout and duration; nullptr: SystemClock()
};

// Runs steps as Pods through `client` (which must outlive the executor). Trusted steps run in
// `namespace_`; untrusted ones in `untrusted_namespace`, which the first untrusted step creates
// when missing, labelled to enforce the "restricted" Pod Security Standard and with a NetworkPolicy
// "gantry-default-deny" denying all ingress and egress. For each step:
//   - a Secret "<pod>-env" with the step's secrets only (none when it has none), referenced by
//     secretKeyRef, so secret values never appear in the Pod spec; the other variables are plain
//     `env:` entries of the container;
//   - with `network: false`, a NetworkPolicy denying all ingress and egress of the Pod (enforced
//     only where the cluster's network plugin enforces NetworkPolicy);
//   - the Pod: the step's argv as `command` (never through a shell it did not name), the image,
//     labels app.kubernetes.io/managed-by=gantry, gantry.dev/run, gantry.dev/step, gantry.dev/pod
//     (annotations keep the unabridged names), restartPolicy Never, no service-account token,
//     activeDeadlineSeconds = timeout, terminationGracePeriodSeconds 5, `limits.memory` as the memory
//     limit, options' nodeSelector and tolerations; hardened: runAsNonRoot
//     as run_as_user, no privilege escalation, every capability dropped, the RuntimeDefault seccomp
//     profile and a read-only root file system, with emptyDirs at /workspace and /tmp;
//   - with a helper_image (and a workspace in the request), the workspace is shipped: the Pod's
//     init container "gantry-in" (helper_image, `gantry internal await-file`) waits for a marker;
//     the executor streams a tar of the run's workspace and earlier artifacts into it over
//     pods/exec (`gantry internal untar`, which writes the marker after the last byte), so the
//     step container starts only once its /workspace (and read-only /artifacts) are complete.
//     The sidecar "gantry-out" keeps the Pod Running after the step container ends; when the step
//     container's own state is terminated (success or failure), the executor reads the workspace
//     back as a tar over pods/exec (`gantry internal tar`) and replaces the host workspace with
//     it, extracted with the archive rules of oci/tree_tar.h (nothing written through a link or
//     outside it), before deleting the Pod. The runner then keeps artifacts and caches from the
//     host workspace exactly as for the process executor. The step's credentials never enter
//     the Pod: only the executor's client talks to the API. Timeout and cancellation ship nothing
//     back.
// The Secret and NetworkPolicy are owned by the Pod (garbage-collected with it if Gantry dies).
// The exit code is state.terminated.exitCode of the container "step"; a Pod that fails without one
// (evicted, deadline) is a failure with its reason. Timeout and cancellation delete the Pod; the
// Pod and its objects are deleted after every step. Logs are polled from pods/NAME/log with
// timestamps and limitBytes (only new lines are forwarded, at most max_log_bytes per step, then
// one line saying the rest was dropped); a cluster that serves no logs (kwok) gives one line
// saying so. Errors: Unavailable/… from the API when the Pod cannot be created.
std::unique_ptr<Executor> NewKubernetesExecutor(kube::Client& client, KubernetesExecutorOptions options = {});

// The namespace the step runs in: options.namespace_ when request.trusted, else the untrusted one.
std::string StepNamespace(const StepRequest& request, const KubernetesExecutorOptions& options);

// The Pod NAME gets for `request` (pure; exposed for tests).
value::Value KubernetesPodSpec(const StepRequest& request, const std::string& pod_name,
                              const KubernetesExecutorOptions& options);

}  // namespace gantry::ci
