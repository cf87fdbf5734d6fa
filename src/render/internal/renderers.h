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

// A remote reference met in a kustomization (KustomizeScan).
struct RemoteUse {
  std::string kfile;  // the kustomization file, relative to the scanned root
  std::string field;  // resources, bases, components, ...
  size_t index = 0;   // in that list
  std::string where;  // "kfile:line:column" of the entry
  RemoteBase base;
};

// A helmCharts entry met in a kustomization (KustomizeScan).
struct ChartUse {
  std::string kfile;      // the kustomization file, relative to the scanned root
  size_t index = 0;       // in helmCharts
  std::string where;      // "kfile:line:column" of the entry
  std::string chart_dir;  // where kustomize looks for the chart, relative to the scanned root
  std::string name, version, repo;
};

// What a `kustomize build` of an application reads.
struct KustomizeScan {
  // The directories (normalised, relative to root, none below another) it may read.
  std::vector<std::string> trees;
  std::vector<RemoteUse> remotes;  // allowed remote references, to be fetched by Gantry
  std::vector<ChartUse> charts;
};

// Scans `app` (relative to root): every kustomization reachable through resources, bases,
// components, generators, transformers and validators (plus options.components), checked on the
// way: absolute paths, paths leaving the repository (also through symlinks) are PermissionDenied;
// a remote reference is PermissionDenied unless its host is in options.remote_hosts (InvalidArgument
// when it does not parse); a missing local path is NotFound; a kustomization that does not parse,
// or a helmCharts entry without a name or with a chartHome leaving the kustomization, is
// InvalidArgument. Each error names the kustomization file (with the line) and the entry.
Result<KustomizeScan> KustomizeTrees(const std::filesystem::path& root, const std::string& app,
                                     const KustomizeOptions& options, const Limits& limits);

// Parses a kustomize remote reference by kustomize's grammar (api/internal/git/repospec.go):
// optional "git::", a scheme (https://, http://, ssh://) or an scp-like user@host: address or
// github.com/..., then the repository path up to "//", "_git/NAME" or ".git" (else two segments),
// then the directory, then ?ref= / ?version= (timeout= and submodules= are accepted and ignored).
// InvalidArgument saying what is wrong for anything else (file://, other schemes, a path that
// leaves the repository, no host or repository).
Result<RemoteBase> ParseRemoteBase(std::string_view spec);

// Fetches the remote bases of `scan` (copied from the repository into `copy`) and the remote bases
// they reach, into `remote_dir`, rewriting each reference in the copied kustomizations to the local
// path; makes the charts of helmCharts entries present (vendored, or fetch_chart) and gives them
// `helm`'s Capabilities. Returns what the render depends on beyond the repository's files (each
// remote base's URL, ref and commit; for helmCharts the helm options), "" when nothing.
// FailedPrecondition for a remote base without fetch_remote or an unvendored chart without
// fetch_chart; ResourceExhausted past kMaxRemoteDepth or kMaxRemoteBases; the fetchers' errors
// with the reference's place in front.
Result<std::string> PrepareKustomizeCopy(const KustomizeScan& scan, const std::filesystem::path& copy,
                                         const std::filesystem::path& remote_dir, const Options& options,
                                         const std::string& helm_binary);

// A render with its cache key (RenderKeyed).
struct Keyed {
  std::vector<Manifest> manifests;
  std::string key;  // the RenderCache key; "" without a cache or content key
  bool hit = false;
  // It read what the repository's content does not pin: a remote base (its ref may move) or a
  // chart fetched from its repository.
  bool unpinned = false;
};

// Render(source, options, cache, content_key), also returning the key, which for Kustomize covers
// what the render reads beyond the repository (remote bases' commits, helmCharts' helm and
// Capabilities): a render that reads nothing beyond it has the key CacheKey(content_key, ...), one
// that does an extended key. With `key_checked`, the caller has already looked up the unextended
// key (which only renders that read nothing beyond the repository are stored under).
Result<Keyed> RenderKeyed(const Source& source, const Options& options, RenderCache* cache,
                          std::string_view content_key, bool key_checked);

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
