#pragma once
// Private to gantry::render: the parts of the Kustomize and Helm renderers that decide what to
// copy and what to run. Pure functions of the repository (read through ResolveBeneath) and the
// options; the running is in render.cc.

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "render/render.h"
#include "value/value.h"

namespace gantry::render::internal {

// The name of the kustomization file in `dir` (kustomization.yaml, kustomization.yml,
// Kustomization, in that order), or "" when there is none.
std::string KustomizationName(const std::filesystem::path& dir);

// The directories (normalised, relative to root, none below another) a `kustomize build` of `app`
// may read: every kustomization reachable through resources, bases, components, generators,
// transformers and validators (plus options.components), checked on the way: absolute paths,
// paths leaving the repository (also through symlinks) and remote references (unless allowed) are
// PermissionDenied; a missing local path is NotFound; a kustomization that does not parse is
// InvalidArgument. Each error names the kustomization file and the entry.
Result<std::vector<std::string>> KustomizeTrees(const std::filesystem::path& root, const std::string& app,
                                                const KustomizeOptions& options, const Limits& limits);

// Applies options.images (as `kustomize edit set image`) and options.components (as `kustomize
// edit add component`) to a parsed kustomization. InvalidArgument for a malformed image override.
Status EditKustomization(value::Value& kustomization, const KustomizeOptions& options);

// The value files of a chart at `chart` (normalised), as (path in the repository, file name under
// the copy's values directory), in order. PermissionDenied for one that is absolute or resolves
// outside the repository; NotFound for a missing one.
Result<std::vector<std::pair<std::string, std::string>>> HelmValueFiles(const std::filesystem::path& root,
                                                                        const std::string& chart,
                                                                        const HelmOptions& options);

// The arguments after `helm` for `helm template` of the chart copied at `chart_dir`, with the
// value files copied into `values_dir` (names from HelmValueFiles, then "inline.yaml" when
// options.values is set). InvalidArgument for a bad release name, namespace or --set entry.
// Puts the dependencies of the chart at `chart_rel` in the private copy `copy` that its charts/ does
// not hold into charts/NAME before helm runs (helm never fetches): `file://PATH` dependencies are
// copied from the repository through `copier` (PATH must stay inside it), `https://` and `oci://`
// ones are fetched with options.charts at the version Chart.lock pins for the same name and
// repository, else the newest the range allows. Reads Chart.yaml (apiVersion v2) or
// requirements.yaml (v1). InvalidArgument naming the dependency for a `@name` or `alias:name`
// repository (there is no `helm repo add` list) or an unknown scheme; PermissionDenied for a path
// leaving the repository; FailedPrecondition when a remote one is missing and options.charts is
// null; the fetcher's errors with the dependency in front.
class Materializer;
Status VendorHelmDependencies(const std::filesystem::path& copy, const std::string& chart_rel,
                              Materializer& copier, const Options& options);

Result<std::vector<std::string>> HelmTemplateArgs(const std::string& chart_name_default,
                                                  const std::filesystem::path& chart_dir,
                                                  const std::filesystem::path& values_dir,
                                                  const std::vector<std::string>& value_file_names,
                                                  const HelmOptions& options);

// True for names Jsonnet evaluates: *.jsonnet (*.libsonnet are libraries, only imported).
bool IsJsonnetName(std::string_view name);

// Whether auto detection picks Jsonnet for a directory holding `files` (paths relative to it, every
// file below it): a *.jsonnet file directly in it, and no file the plain renderer would read
// anywhere below it (hidden ones aside), except jsonnet-bundler's jsonnetfile.json and
// jsonnetfile.lock.json directly in it. So a directory that renders as plain today stays plain.
bool JsonnetDetected(const std::vector<std::string>& files);

// The *.jsonnet files Jsonnet evaluates in `dir`, relative to it, sorted: those directly in it, or
// with `recurse` every one below it (hidden files and directories skipped). Only regular files.
Result<std::vector<std::string>> JsonnetFiles(const std::filesystem::path& dir, bool recurse, const Limits& limits);

// The arguments after `jsonnet` to evaluate `file` (absolute, in the copy at `copy_root`): limits,
// -J for each library path (relative to the repository, must be a directory of the copy), the
// top-level arguments and external variables. InvalidArgument for a name that is not a Jsonnet
// identifier; PermissionDenied for a library path that is absolute or leaves the repository;
// NotFound for a missing one.
Result<std::vector<std::string>> JsonnetArgs(const std::filesystem::path& file, const std::filesystem::path& copy_root,
                                             const JsonnetOptions& options);

// Appends the objects of one file's output: an object (a Kubernetes object, or a List expanded) or
// an array of objects. InvalidArgument naming `source` for any other shape.
Status AddJsonnetOutput(std::string_view json, const std::string& source, const Limits& limits,
                        std::vector<Manifest>& out);

// Decrypts, in place, every manifest that is SOPS-encrypted (a top-level `sops` map), with `sops
// decrypt` run in the sandbox: the object on its stdin, the age keys in its environment
// (SOPS_AGE_KEY), the plaintext on its stdout; sops verifies the MAC. Nothing is written to disk.
// Errors name the manifest's source and object, and for a missing or wrong key the age recipients it
// is encrypted for; they never hold plaintext.
Status DecryptSops(std::vector<Manifest>& manifests, const Options& options);

// True when `object` is SOPS-encrypted.
bool IsSopsEncrypted(const value::Value& object);

}  // namespace gantry::render::internal
