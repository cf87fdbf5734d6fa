#pragma once
// ci/pipeline: the pipeline file (.gantry/pipeline.yaml) as values: parse, validate, expand the
// matrix, order the DAG, and decide which triggers and `when:` filters match an event.
//
// Everything here is pure (no I/O) and thread-safe. Parse errors are InvalidArgument with a message
// "file:line:column: what is wrong; expected what" pointing at the offending node. Validation
// reports unknown keys, unknown `needs:`, cycles (naming the cycle), scripts without a named shell,
// and matrices above kMaxMatrixCombinations. The result lists the steps in a topological order
// (a step after everything it needs; ties keep file order).
//
// Variables are never substituted into scripts: `env:`, matrix values and secrets reach a step as
// environment variables only, and a `run:` script is handed unchanged to the named shell's `-c`.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::ci {

inline constexpr size_t kMaxMatrixCombinations = 64;
inline constexpr size_t kMaxSteps = 256;

// When a pipeline runs at all. An absent `on:` means: push to any branch, and manual.
struct Triggers {
  bool push = false;
  std::vector<std::string> push_branches;  // globs; empty = every branch (when push_tags is empty)
  std::vector<std::string> push_tags;      // globs; empty = no tag pushes
  bool pull_request = false;
  std::vector<std::string> pr_branches;    // base branch globs; empty = every base branch
  bool manual = true;
};

// A step's `when:`: every listed filter must match; an empty list matches everything.
struct When {
  std::vector<std::string> branches;  // globs over the branch (for a PR: the base branch)
  std::vector<std::string> events;    // push, tag, pull_request, manual
  std::vector<std::string> paths;     // globs over changed paths; any match suffices
};

struct CacheSpec {
  std::string key;                 // literal; hashed with the pipeline name for the directory
  std::vector<std::string> paths;  // relative to the workspace
};

// Resource limits applied to the step's processes (setrlimit). 0 = not limited.
struct Limits {
  uint64_t memory_bytes = 0;  // RLIMIT_AS
  uint64_t cpu_seconds = 0;   // RLIMIT_CPU
  uint64_t open_files = 0;    // RLIMIT_NOFILE
  uint64_t processes = 0;     // the step's pids cgroup, when below the executor's (else RLIMIT_NPROC,
                              // which never binds the host's root user, nor a sandbox mapped to it)
};

struct Step {
  std::string name;       // unique; a matrix step is "base (v1, v2)"
  std::string base_name;  // the key under steps:
  std::vector<std::string> argv;  // what runs: [shell, flags..., -c, script] or the argv list
  std::vector<std::string> needs;  // expanded step names
  std::map<std::string, std::string> env;  // pipeline env, then step env, then MATRIX_<KEY>
  std::vector<std::string> secrets;        // names of secrets the step receives as variables
  When when;
  std::chrono::milliseconds timeout{std::chrono::hours(1)};
  int retry = 0;  // extra attempts after a failure (not after a timeout or cancellation)
  bool network = true;
  Limits limits;
  std::vector<CacheSpec> caches;
  std::vector<std::string> artifacts;  // globs relative to the workspace
  std::string image;                   // Kubernetes executor: the container image
  uint32_t line = 0, column = 0;       // where the step is defined
};

// `image:` — the OCI image built from the workspace after every step succeeded, on push and tag
// events of trusted repositories only (never for pull requests), and pushed to `repository`.
struct ImageLayer {
  std::string src;   // relative to the workspace: a directory or a file
  std::string dest;  // absolute path in the image ("/app"); "" = "/"
  std::vector<std::string> exclude;  // globs relative to src
};

struct ImageSpec {
  std::string repository;  // "registry.local:5000/team/web": where to push, without tag
  // Tag templates: {commit} (40 hex), {short_commit} (12 hex), {branch}, {tag}, {run}.
  std::vector<std::string> tags = {"{short_commit}"};
  std::string from = "scratch";  // a base image reference, or scratch
  std::vector<ImageLayer> layers;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::vector<std::string> expose;  // "8080" or "8080/tcp"
  std::string workdir;
  std::string user;
  std::string platform;            // "linux/amd64"; "" = the base's, or the host's for scratch
  std::string compression = "gzip";  // gzip or zstd
  uint32_t line = 0, column = 0;
};

// `release:` — where the new image goes once pushed: the config repository whose manifests get the
// new reference (Kustomize images:, plain manifests, Helm values by marker), and optionally a
// push-mode deploy of the commit that results.
struct ReleaseSpec {
  std::string repo;         // the config repository's URL (the server must allow it)
  std::string branch = "main";
  std::string path;         // directory in the config repository to rewrite; "" = all of it
  std::string push_branch;  // "": commit to `branch`; else push to this branch for review
  std::string message = "release {image}:{tag}\n\nsource: {repo}@{commit}\nrun: {run}";
  std::string app;          // deliver: the application to deploy ("" = no push deploy; pull
                            // agents pick the commit up on their own)
  std::string through;      // deploy environments up to and including this one ("" = all)
  // mode: pull-request — the change goes on branch gantry/<app>/<environment>, rebuilt from
  // `branch` and force-pushed, and the server opens a pull request into `branch` (or updates the
  // open one) on the repository's forge (--forge); nothing is deployed by the release itself.
  bool pull_request = false;
  std::string environment;  // the branch's <environment>; "" = through, else the last segment of
                            // path, else `branch`
  bool auto_merge = false;  // merge the pull request once its checks pass
  std::string merge_method = "merge";        // merge, squash or rebase
  std::vector<std::string> required_checks;  // contexts that must be success ([] = all reported)
  uint32_t line = 0, column = 0;
};

struct Pipeline {
  std::string name;
  std::string file;
  Triggers triggers;
  std::vector<Step> steps;  // topologically ordered
  std::optional<ImageSpec> image;
  std::optional<ReleaseSpec> release;  // only with image:
};

// Parses and validates a pipeline file. `file` names it in errors. InvalidArgument (see the file
// comment) or ResourceExhausted (YAML limits).
Result<Pipeline> ParsePipeline(std::string_view text, std::string_view file = ".gantry/pipeline.yaml");

// What caused a run, for triggers and `when:`.
struct Context {
  std::string event = "manual";  // push, tag, pull_request, manual
  std::string branch;            // push: the branch; pull_request: the base branch
  std::string tag;
  std::vector<std::string> changed_paths;
  bool changed_paths_known = false;  // false: path filters match (we cannot tell)
};

// Whether `pipeline` runs for `context` at all.
bool TriggerMatches(const Triggers& triggers, const Context& context);
// Whether a step with `when` runs for `context`.
bool WhenMatches(const When& when, const Context& context);

// Glob over '/'-separated paths: '*' and '?' within a segment, '**' across segments.
bool GlobMatch(std::string_view pattern, std::string_view text);

// Parses "512Mi", "20Gi", "500M", "1K" or a bare number of bytes.
std::optional<uint64_t> ParseSize(std::string_view text);

// The names of `steps` selected by `only` plus everything they need, transitively, in pipeline
// order. NotFound naming an unknown step.
Result<std::vector<std::string>> SelectSteps(const Pipeline& pipeline, const std::vector<std::string>& only);

}  // namespace gantry::ci
