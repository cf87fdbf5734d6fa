#pragma once
// The Application object (gantry.dev/v1alpha1): what the pull agent keeps in sync, parsed from a
// custom resource or a file, and the status it writes back. Pure: no I/O. Thread-safe.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "diff/diff.h"
#include "value/value.h"

namespace gantry::api {

inline constexpr char kGroup[] = "gantry.dev";
inline constexpr char kApiVersion[] = "gantry.dev/v1alpha1";
inline constexpr char kKind[] = "Application";
// The annotation that asks the agent to stop the Application's running sync (Argo CD's
// `argocd app terminate-op`, which sets status.operationState.phase Terminating: Gantry's agent
// owns the status, so a request is an annotation, as for sync and refresh). Its value identifies
// the request; status.lastTerminateRequest says the agent acted on it.
inline constexpr char kTerminateRequested[] = "gantry.dev/terminate-requested";

// Where an application's manifests come from, by spec.source (as Argo CD reads it):
//   kGit:  repoURL is a Git repository, targetRevision a branch, tag or commit, path a directory;
//   kHelm: `chart` is set: repoURL is a Helm repository (https://..., its index.yaml) or an OCI
//          repository (oci://host/path, the chart at oci://host/path/CHART), targetRevision the
//          chart version or a semver constraint;
//   kOci:  repoURL is oci://host/repo without `chart`: an OCI artifact holding a directory of
//          manifests (Flux's OCIRepository, Argo CD 3.1's oci:// sources), targetRevision a tag or
//          a digest, path a directory inside it.
enum class SourceKind { kGit, kHelm, kOci };

// An entry of spec.source.directory.jsonnet.tlas or .extVars: a string, or Jsonnet code.
struct JsonnetVar {
  std::string name;
  std::string value;
  bool code = false;
};

struct Source {
  std::string repo_url;
  std::string target_revision = "HEAD";
  std::string path = ".";
  std::string chart;  // spec.source.chart: a chart in a Helm or OCI repository (SourceKind::kHelm)
  std::string renderer;  // "" (auto), "plain", "kustomize", "helm", "jsonnet"
  std::vector<std::string> kustomize_images;  // "name=newName:tag" overrides
  std::string helm_release_name;              // default: the application's name
  std::vector<std::string> helm_value_files;
  std::string helm_values;                    // inline YAML (helm.valuesObject, written as YAML, wins)
  bool helm_include_crds = true;              // helm.includeCRDs and not helm.skipCrds
  // helm.parameters: "name=value", as --set, or --set-string when forceString.
  std::vector<std::string> helm_set;
  std::vector<std::string> helm_set_string;
  // spec.source.directory (Argo CD's): recurse, and jsonnet {tlas, extVars, libs}. Jsonnet settings
  // on an application without a renderer make it a Jsonnet application.
  bool directory_recurse = false;
  std::vector<JsonnetVar> jsonnet_tlas;
  std::vector<JsonnetVar> jsonnet_ext_vars;
  std::vector<std::string> jsonnet_libs;  // relative to the repository root
  // Repository paths ("" : the root) whose changes may change the render, from the annotation
  // gantry.dev/manifest-generate-paths (or Argo CD's); empty: unknown (a plain render reads only
  // its path; Kustomize and Helm may read anything).
  std::vector<std::string> generate_paths;

  SourceKind kind() const;
};

struct RetryPolicy {
  int limit = 5;  // 0: no retries; <0: unbounded
  std::chrono::milliseconds duration{5'000};
  double factor = 2;
  std::chrono::milliseconds max_duration{180'000};
};

struct SyncPolicy {
  bool automated = false;
  bool prune = false;
  bool self_heal = false;
  bool allow_empty = false;
  std::vector<std::string> sync_options;  // CreateNamespace=true, PruneLast=true, ApplyOutOfSyncOnly=false...
  RetryPolicy retry;
  // managedNamespaceMetadata: on the namespace CreateNamespace=true creates.
  std::map<std::string, std::string> namespace_labels;
  std::map<std::string, std::string> namespace_annotations;
  bool HasOption(std::string_view option) const;
};

struct Application {
  std::string name;
  std::string namespace_;  // where the Application object lives
  int64_t generation = 0;
  std::string project = "default";  // spec.project: the Project that bounds what it may deploy
  Source source;
  std::string destination_namespace;  // default for namespaced objects without one
  // spec.destination.server / .name: the cluster, for the project's destination rules. A pull agent
  // applies to its own cluster whatever they say ("" : the agent's cluster).
  std::string destination_server;
  std::string destination_name;
  SyncPolicy sync_policy;
  std::vector<std::string> depends_on;  // names of Applications in the same namespace
  std::vector<diff::IgnoreRule> ignore_differences;
  bool suspend = false;
  // Requests set by `gantry app sync|refresh|terminate` and the server's API (annotations), with
  // the value that identifies them.
  std::string sync_request;       // gantry.dev/sync-requested
  std::string refresh_request;    // gantry.dev/refresh-requested
  std::string terminate_request;  // gantry.dev/terminate-requested: stop the running sync
  // When a person approved the prunes waiting for confirmation (Prune=confirm), RFC 3339:
  // gantry.dev/prune-approved (`gantry app confirm-prune`), else Argo CD's
  // argocd.argoproj.io/deletion-approved.
  std::string prune_approved;
};

// Reads and validates an Application; InvalidArgument naming the field (and its file:line when the
// object came from a file) for a missing repoURL, a malformed duration, a bad sync option...
Result<Application> ParseApplication(const value::Value& object);

// The CustomResourceDefinition of Application (structural schema, status subresource, printer
// columns), as an object to apply.
value::Value ApplicationCrd();

}  // namespace gantry::api
