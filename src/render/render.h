#pragma once
// Rendering: the manifests an application path produces, as parsed Kubernetes objects.
//
// An application is a path inside a repository (Source). Render() picks a renderer by what the
// path holds, unless Options::renderer names one:
//   - a kustomization.yaml, kustomization.yml or Kustomization file → Kustomize (`kustomize build`),
//   - else a Chart.yaml → Helm (`helm template`),
//   - else a *.jsonnet file directly in the path, and no file the plain renderer reads (*.yaml,
//     *.yml, *.json; hidden ones aside) anywhere below it except jsonnet-bundler's jsonnetfile.json
//     and jsonnetfile.lock.json directly in it → Jsonnet (`jsonnet`, once per *.jsonnet file directly
//     in the path, or below it with JsonnetOptions::recurse; *.libsonnet are libraries). So every
//     directory that rendered as plain before still does; a mixed one is Jsonnet only when
//     Options::renderer says so. Each file's output must be an object (a Kubernetes object, or a
//     List) or an array of objects.
//   - else plain YAML/JSON.
//
// Plain directories are read in-process. The rule users can predict: every regular file under the
// path whose name ends in .yaml, .yml or .json is read, recursively, in byte order of its relative
// path; every other file is ignored, as are directories and files whose name starts with '.' (.git,
// .github, editor files). Each YAML file may hold several documents; empty documents are skipped.
// Every document must be a Kubernetes object (a map with string apiVersion, kind and
// metadata.name, or generateName); a `kind: List` or typed list (ConfigMapList, ...) with `items`
// is expanded into its items.
//
// Kustomize and Helm are the real binaries, run as separate processes on a private copy:
//   1. Materialize: the files the renderer may read are copied into a fresh temp dir (mode 0700) at
//      the same relative paths: for Kustomize, the subtree of every kustomization reachable from
//      the path through resources/bases/components/generators/transformers/validators (so
//      `../base` works); for Helm, the chart directory, plus the value files, each copied to its own
//      name. Only regular files and directories are copied; a symlink is followed only when its
//      target stays inside the repository (its target is copied), `.git` is skipped. Kustomize
//      itself keeps its default load restrictor (LoadRestrictionsRootOnly): loose files (patches,
//      generator inputs) must lie under the kustomization that names them.
//   2. Check before running anything: a kustomization reference that is absolute, climbs out of the
//      repository, or is missing from it is refused; a remote one (a URL, git@..., github.com/...,
//      ?ref=) is refused unless its host is in KustomizeOptions::remote_hosts, and then Gantry (never
//      kustomize) fetches it (see "Kustomize remote bases and helmCharts" below); a Helm value file
//      must resolve inside the repository. Image overrides and extra components are written into
//      the copied kustomization (what `kustomize edit set image` / `add component` do).
//   3. Run: argv only, a clean environment (HOME, XDG_* and HELM_* inside the temp dir, no
//      KUBECONFIG), a timeout, bounded output and memory; inside the one sandbox (base/sandbox.h: no
//      network, only /usr, an /etc of its own, the binary and the temp dir visible, all capabilities
//      dropped). A sandbox that does not work is FailedPrecondition, unless the operator opted out
//      (Sandbox::kNone, --no-render-sandbox), which is logged.
//   4. Parse: stdout is parsed with value::ParseYaml under Limits::parse; each document must be a
//      Kubernetes object.
// Jsonnet runs the same way on a copy of the whole repository (imports may name any file of it):
// -J only for JsonnetOptions::libs inside the copy, no JSONNET_PATH, top-level arguments and
// external variables as NAME=VALUE arguments, --max-stack; all files share the one timeout and
// output limit. An import of a path outside the copy finds nothing.
//
// SOPS: after any renderer, every object with a top-level `sops` map (and a MAC) is decrypted by
// the real `sops decrypt` in the sandbox (object on stdin, SopsOptions::age_keys in its
// environment as SOPS_AGE_KEY, plaintext on stdout; sops verifies the MAC). Only v1 Secrets are
// decrypted (their values are what diff::Redact hides); any other encrypted object, one without a
// matching key, or one without age recipients is an error naming the object and its recipients,
// and nothing of the render is returned. No file with plaintext or keys is written; decrypted
// Manifests carry `decrypted`.
//
// Kustomize remote bases and helmCharts: an allowed remote base is fetched through
// KustomizeOptions::fetch_remote (Gantry's Git layer), its ref resolved to a commit; the subtree it
// names, plus what it reaches (checked as above, recursively, at most kMaxRemoteDepth deep and
// kMaxRemoteBases in all), is copied beside the private copy and the reference in the copied
// kustomization is rewritten to that local path. A kustomization with `helmCharts:` is built with
// `--enable-helm --helm-command <helm>` (FindRenderer's helm, visible in the sandbox); each chart
// must be vendored under its chartHome (CHARTHOME/NAME, or CHARTHOME/NAME-VERSION/NAME when the
// entry has repo and version, as kustomize looks) or fetched by KustomizeOptions::fetch_chart, else
// by Options::charts (Gantry's Helm repository client);
// entries without kubeVersion/apiVersions get HelmOptions::kube_version/api_versions. Neither
// kustomize nor helm gets the network. The resolved remote commits, and for helmCharts the helm
// binary and the Capabilities, are part of the render's cache key.
//
// Safety: the repository is hostile. No path outside the repository is ever read by Gantry, and the
// renderers only ever see the copy. Limits (below) bound files, bytes, documents, nesting, aliases
// and time; each error names the limit and its value.
//
// Caching: a RenderCache holds rendered results keyed by (content key, path, renderer, options).
// The content key is the caller's: it must change whenever any file the render may read changes.
// With Git that is the commit's root tree id (not the path's tree: kustomize bases and helm value
// files may live elsewhere in the repository); for plain directories LocalContentKey() hashes them.
//
// Thread-safety: the free functions share no state (the bubblewrap probe is cached once per
// process, under a lock); RenderCache is thread-safe.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "git/git.h"
#include "value/value.h"

namespace gantry::render {

class ChartRepos;  // render/chart_repo.h

struct Limits {
  // Files read from the repository for one render: manifest files (plain), or every file copied
  // for an external renderer.
  size_t max_files = 10'000;
  size_t max_file_bytes = 8u << 20;     // one manifest file, value file or kustomization
  size_t max_total_bytes = 256u << 20;  // all files of one render; also a renderer's output
  // Data memory of an external renderer (RLIMIT_DATA); 0 for none.
  size_t max_renderer_memory_bytes = size_t{2} << 30;
  value::ParseOptions parse;            // of every YAML document read or rendered
};

// One rendered object and where it came from.
struct Manifest {
  value::Value object;
  // Plain: "path/in/repo.yaml:line:column" of the document. Kustomize: "kustomize build
  // PATH:line:column" in its output. Helm: "helm template PATH: chart/templates/x.yaml" (Helm's
  // "# Source:" comment). Jsonnet: "jsonnet PATH/file.jsonnet" (with " [i]" for an element of an
  // output array).
  std::string source;
  // Decrypted from SOPS (render.h SopsOptions): the object holds plaintext secrets.
  bool decrypted = false;
};

// Reads the manifests under `root` (a directory, or a single file) as described above.
// NotFound when root does not exist; InvalidArgument for a document that does not parse or is not
// a Kubernetes object, with file:line:column; PermissionDenied for a symlink leaving root;
// ResourceExhausted for a limit, naming it and its value.
Result<std::vector<Manifest>> RenderPlain(const std::filesystem::path& root, const Limits& limits = {});

// Checks that `doc` is a Kubernetes object: a map with non-empty string apiVersion and kind, and a
// metadata map with a non-empty string name (or generateName). The error names the field and the
// position of the document.
Status ValidateObject(const value::Value& doc);

enum class Renderer { kAuto, kPlain, kKustomize, kHelm, kJsonnet };
std::string_view RendererName(Renderer r);  // "auto", "plain", "kustomize", "helm", "jsonnet"
// The renderer RendererName() names ("" is auto); nullopt for any other name.
std::optional<Renderer> ParseRenderer(std::string_view name);

// What Render() would pick for the directory `dir` (never kAuto): see the file comment. Only names
// are looked at (a symlink named kustomization.yaml counts); nothing is read.
Renderer Detect(const std::filesystem::path& dir);

// An application: a directory inside a repository checkout.
struct Source {
  std::filesystem::path repo_root;  // trusted: the checkout Gantry made
  std::string path;                 // untrusted: relative to repo_root, "" or "." for the root
};

// A kustomize remote reference ("https://host/org/repo//path?ref=v1", "github.com/org/repo/path",
// "git@host:org/repo.git//path", ...), as kustomize's repospec.go reads it.
struct RemoteBase {
  std::string spec;      // as written in the kustomization
  std::string repo_url;  // what Gantry's Git layer fetches: "https://host/org/repo", "git@host:org/repo.git"
  std::string host;      // git::HostOf(repo_url): what the allow-list is matched against
  std::string path;      // the directory in the repository ("" for its root), normalised
  std::string ref;       // ?ref= or ?version=; "HEAD" when neither is given
};

// Bounds on remote bases: how deep remote bases may reference further remote bases, and how many
// one render may fetch in all.
inline constexpr int kMaxRemoteDepth = 5;
inline constexpr size_t kMaxRemoteBases = 32;

struct KustomizeOptions {
  // Image overrides, as Argo CD's kustomize.images and `kustomize edit set image`:
  // "nginx=registry/nginx:1.27", "nginx:1.27", "nginx@sha256:...", "nginx=registry/nginx".
  std::vector<std::string> images;
  // Extra components (paths relative to the application path, inside the repository).
  std::vector<std::string> components;
  // Git hosts ("github.com", "git.example.com:8443") remote bases may come from
  // (--kustomize-remote-host). A remote reference to any other host is PermissionDenied before
  // anything is fetched. Kustomize never fetches: Gantry does, through fetch_remote.
  std::vector<std::string> remote_hosts;
  // Fetches `base.repo_url`, resolves `base.ref` to a commit and writes that commit's files into
  // `dest` (which must not exist); returns the commit id. Null: an allowed remote base is
  // FailedPrecondition. GitSources::RemoteFetcher() gives one over the same mirrors and
  // credentials (bound to their host) as the application's own repository.
  using FetchRemote = std::function<Result<std::string>(const RemoteBase& base, const std::filesystem::path& dest)>;
  FetchRemote fetch_remote;
  // Writes chart `name` at `version` ("" : the latest) of Helm repository `repo` (https:// or
  // oci://) as an unpacked chart directory `dest` (dest/Chart.yaml), for a helmCharts entry whose
  // chart is not vendored. Null: Options::charts fetches it; with neither, an unvendored chart is
  // FailedPrecondition saying how to vendor it.
  std::function<Status(const std::string& repo, const std::string& name, const std::string& version,
                       const std::filesystem::path& dest)>
      fetch_chart;
};

// A Jsonnet top-level argument or external variable: a string (--tla-str / --ext-str), or Jsonnet
// code when `code` (--tla-code / --ext-code). The name is a Jsonnet identifier.
struct JsonnetVar {
  std::string name;
  std::string value;
  bool code = false;
};

struct JsonnetOptions {
  std::vector<JsonnetVar> tlas;      // given to every evaluated file
  std::vector<JsonnetVar> ext_vars;  // std.extVar
  // Library directories (-J), relative to the repository root, as Argo CD's directory.jsonnet.libs.
  std::vector<std::string> libs;
  bool recurse = false;   // evaluate *.jsonnet in subdirectories too (Argo CD's directory.recurse)
  int max_stack = 500;    // --max-stack: the depth of the evaluator's stack
};

// SOPS decryption of rendered objects (Flux's spec.decryption with age keys).
struct SopsOptions {
  // age identities ("AGE-SECRET-KEY-1..." lines; comments and blank lines allowed), the content of
  // an age key file. Empty: an encrypted object is an error naming its recipients.
  std::string age_keys;
  std::string binary;  // the sops to run; empty: FindSops's search
};

struct HelmOptions {
  std::string release_name;  // empty: the chart directory's name
  std::string namespace_;    // empty: "default"
  // Paths relative to the chart directory (may climb with ../ but must stay in the repository).
  std::vector<std::string> value_files;
  std::string values;             // inline values (YAML), applied after value_files
  std::vector<std::string> set;   // "key=value", as --set, applied last
  std::vector<std::string> set_string;  // "key=value", as --set-string (Argo CD's forceString)
  bool include_crds = true;
  std::string kube_version;       // --kube-version when not empty
  std::vector<std::string> api_versions;  // --api-versions
};

enum class Sandbox {
  kRequire,  // bubblewrap or FailedPrecondition
  kNone,     // never, on the operator's explicit word (the renderer still gets a clean environment
             // and a private copy; a warning is logged once)
};

using RepositoryCheck = std::function<Status(std::string_view repo_url)>;

struct Options {
  Renderer renderer = Renderer::kAuto;
  KustomizeOptions kustomize;
  HelmOptions helm;
  JsonnetOptions jsonnet;
  SopsOptions sops;
  // The renderers to run (a name without '/' is looked up in PATH); empty: FindRenderer's search.
  std::string kustomize_binary;
  std::string helm_binary;
  std::string jsonnet_binary;
  std::string bwrap_binary = "bwrap";
  Sandbox sandbox = Sandbox::kRequire;
  Limits limits;
  std::chrono::milliseconds timeout{60'000};  // for all renderer processes of one render
  std::filesystem::path temp_dir;             // where private copies go; empty: $TMPDIR or /tmp
  // Fetches the chart dependencies a chart does not vendor in charts/ (`repository: https://...` or
  // `oci://...`, at the version its Chart.lock pins, else the newest its range allows); null: they
  // must be vendored. Not part of the render cache key: a range without a Chart.lock is resolved
  // again only when the content key changes.
  ChartRepos* charts = nullptr;
  // Asked before the render fetches a repository beyond its own source (a chart repository that a
  // chart's dependencies or a kustomization's helmCharts name, a remote Kustomize base), with the
  // URL as written; an error refuses the render with it, before any request is made. Empty: any
  // repository (the CLI's own renders). The agent asks the Application's project (sourceRepos), so
  // a chart cannot make the agent fetch from a host its project does not list. A render served from
  // the render cache fetches nothing and asks nothing.
  RepositoryCheck allow_repository;
  // Git renders: called with the repository (its URL without credentials), the commit the revision
  // resolved to and the commit's signature (nullopt: unsigned) before anything of the commit is
  // read, served from the cache or run; its error fails the render as it is. Push deploys check
  // config commits against verification rules' commitKeys with it (sign::CheckCommit). Empty:
  // nothing is checked.
  std::function<Status(const std::string& repository, std::string_view commit,
                       const std::optional<git::CommitSignature>& signature)>
      check_commit;
};

// Finds the binary of `renderer` (kKustomize, kHelm or kJsonnet), the one place that does. In order:
//   1. `explicit_binary` when not empty (--kustomize-binary / --helm-binary / --jsonnet-binary; a
//      name without '/' is looked up in PATH),
//   2. $GANTRY_KUSTOMIZE / $GANTRY_HELM / $GANTRY_JSONNET,
//   3. `kustomize` / `helm` / `jsonnet` in PATH,
//   4. the tool cache scripts/setup and test/env/build-tools.sh build into: tools/bin under
//      $GANTRY_CACHE, else $XDG_CACHE_HOME/gantry, else ~/.cache/gantry.
// Returns the binary's absolute real path. NotFound naming every place looked at and the variable
// to set when there is none; NotFound or PermissionDenied, naming the flag or the variable, when 1
// or 2 names a file that does not exist or is not executable (no fallback then).
Result<std::string> FindRenderer(Renderer renderer, const std::string& explicit_binary = "");

// Reads an age key file (as age-keygen writes it, or a mounted Kubernetes Secret's key) for
// SopsOptions::age_keys. NotFound/PermissionDenied naming the file; InvalidArgument when it holds no
// AGE-SECRET-KEY-1 line. Errors never quote the file's content.
Result<std::string> ReadAgeKeyFile(const std::filesystem::path& path);

// Finds `sops` the same way: `explicit_binary` (--sops-binary), $GANTRY_SOPS, PATH, the tool cache.
Result<std::string> FindSops(const std::string& explicit_binary = "");

// Thread-safe in-memory LRU cache of rendered results, bounded by the approximate bytes of the
// memory its entries' parsed objects occupy (internal::ManifestBytes for the renders here) and,
// when max_idle is set, by age: an entry neither read nor written for max_idle is dropped at the
// next Get or Put. Entries share their (immutable) Values with the callers.
class RenderCache {
 public:
  explicit RenderCache(size_t max_bytes = 256u << 20, std::chrono::seconds max_idle = {},
                       Clock* clock = &SystemClock())
      : max_bytes_(max_bytes), max_idle_(max_idle), clock_(clock) {}
  RenderCache(const RenderCache&) = delete;
  RenderCache& operator=(const RenderCache&) = delete;

  std::optional<std::vector<Manifest>> Get(const std::string& key);
  // Stores (or refreshes) `key`; an entry larger than the whole cache is not stored.
  void Put(const std::string& key, std::vector<Manifest> manifests, size_t bytes);

  struct Stats {
    size_t hits = 0, misses = 0, entries = 0, bytes = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::string key;
    std::vector<Manifest> manifests;
    size_t bytes;
    std::chrono::steady_clock::time_point used;
  };
  void DropLeastRecent() REQUIRES(mu_);
  void DropIdle(std::chrono::steady_clock::time_point now) REQUIRES(mu_);

  const size_t max_bytes_;
  const std::chrono::seconds max_idle_;  // 0: entries do not expire
  Clock* const clock_;
  mutable Mutex mu_;
  std::list<Entry> lru_ GUARDED_BY(mu_);  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_ GUARDED_BY(mu_);
  Stats stats_ GUARDED_BY(mu_);
};

// Renders `source` as described in the file comment.
// NotFound when the path does not exist; InvalidArgument for a bad option, a document that does not
// parse or is not an object, or a kustomization that does not parse; PermissionDenied for anything
// that would read outside the repository (symlink, ../, absolute path, value file) or a remote base
// that is not allowed; ResourceExhausted for a limit; DeadlineExceeded when a renderer runs past
// options.timeout; FailedPrecondition for Helm dependencies missing from charts/ or a required
// sandbox that does not work; Unknown for any other renderer failure, naming the renderer, the path,
// its exit status and the last lines of its stderr.
Result<std::vector<Manifest>> Render(const Source& source, const Options& options = {});

// As above, through `cache` under `content_key` (see the file comment); an empty key or a null
// cache renders without caching. Only successful renders are cached.
Result<std::vector<Manifest>> Render(const Source& source, const Options& options, RenderCache* cache,
                                     std::string_view content_key);

// The RenderCache key of rendering `path` with `renderer` (not kAuto) and `options` over files
// whose content key is `content_key`.
std::string CacheKey(std::string_view content_key, std::string_view path, Renderer renderer, const Options& options);

// A content key for a local checkout: SHA-256 over the relative paths, modes and contents of the
// files the render of `source` may read (those it would materialize; for plain, every manifest file
// under the path), as hex. Errors as Render's for reading the tree.
Result<std::string> LocalContentKey(const Source& source, const Options& options = {});

// Rendering straight from Git (the pull agent, the push deployer, `gantry render --repo`).
struct GitRendered {
  std::string commit;
  std::vector<Manifest> manifests;
  bool cache_hit = false;
  Renderer renderer = Renderer::kAuto;  // the renderer used (detected when options said kAuto)
  // The RenderCache key of this render: equal keys, equal manifests (a commit that leaves a plain
  // path unchanged keeps its key).
  std::string content_key;
  // The render read what the commit does not pin (a remote Kustomize base, whose ref may move; a
  // chart fetched for helmCharts): rendering the same commit again may give other objects.
  bool unpinned = false;
};

// Renders `path` of `repo` at `revision` (resolved to a commit; fetching is the caller's). Plain
// directories are read straight from the object database, without a checkout; Kustomize and Helm
// get the commit materialized into a private temp dir (removed afterwards). With a cache, the key
// covers the repository URL and the tree id of what the render may read (the path for plain, the
// commit's root tree for Kustomize and Helm), so unchanged content is never rendered twice. Errors: those of Resolve/ReadTree/Materialize (NotFound for an unknown revision
// or path, PermissionDenied for a symlink leaving the tree, ResourceExhausted for a limit) and of
// Render; every message names the revision and path.
Result<GitRendered> RenderGit(git::Repository& repo, std::string_view revision, const std::string& path,
                              const Options& options = {}, RenderCache* cache = nullptr);

}  // namespace gantry::render
