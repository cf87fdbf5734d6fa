#pragma once
// kube: a Kubernetes API client that is fast and correct.
//
// Configuration is read as kubectl reads it (LoadConfig): KUBECONFIG lists several files that are
// merged (the first file to define a cluster, user or context wins; relative paths are relative to
// the file naming them), a context is chosen (flag, else current-context), and its cluster and user
// give the server, the CA (file or inline data, or insecure-skip-tls-verify), client certificate and
// key (files or inline data), a bearer token or token file, and a proxy URL. `exec` credential
// plugins (ExecConfig) are refused unless explicitly allowed by name (Gantry never runs a program
// named by a kubeconfig it was handed); the legacy auth-provider is refused with a pointer to the
// exec plugin that replaces it. InClusterConfig() reads the service account.
//
// HttpClient talks to one cluster over one HTTP/2 connection (libcurl multi, requests multiplexed
// as streams) with a limit on requests in flight instead of a QPS throttle. Requests that fail with
// 429 or 5xx, or cannot connect, are retried with exponential backoff and jitter (honouring
// Retry-After), at most a few times; authentication, authorisation and validation errors never are
// (but a 401 to an exec plugin's credential runs the plugin again and resends the request once).
// An API error becomes a Status whose message keeps the apiserver's message, reason and causes:
//   400/422 InvalidArgument, 401 Unauthenticated, 403 PermissionDenied, 404 NotFound,
//   409 AlreadyExists (reason AlreadyExists) or Aborted (conflicts), 410 OutOfRange (Expired/Gone:
//   a watch or list must restart from a fresh list), 429 ResourceExhausted, 5xx Unavailable,
//   504 and timeouts DeadlineExceeded, connection failures Unavailable.
//
// Discovery uses the aggregated discovery documents (/api and /apis, apidiscovery.k8s.io/v2) and is
// cached for a TTL; a kind that is not in the cache triggers one refresh (so a CRD applied in the
// same sync becomes usable), at most once a second.
//
// HttpClient is thread-safe: many threads may issue requests at once, and they share the connection.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "value/value.h"

namespace gantry::kube {

// An exec credential plugin (client.authentication.k8s.io/v1 or v1beta1) named by a kubeconfig
// user, as kubectl runs it: `command args...` with a clean environment (PATH, HOME, proxy, locale
// and the cloud SDKs' AWS_*, AZURE_*, AAD_*, GOOGLE_*, CLOUDSDK_* variables of Gantry's own
// environment, then `env`) and KUBERNETES_EXEC_INFO (an ExecCredential with spec.interactive false
// and, with provide_cluster_info, the cluster: server, tls-server-name, CA data, proxy and the
// cluster's client.authentication.k8s.io/exec extension as `config`). It prints an ExecCredential
// whose status holds a token or a client certificate and key, and optionally an
// expirationTimestamp. Its stderr goes to Gantry's log. The client runs it before the first
// request, again shortly before the credential expires, and once more after a 401.
struct ExecConfig {
  std::string command;  // absolute, or a name looked up in PATH
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string api_version;       // client.authentication.k8s.io/v1 or .../v1beta1
  bool provide_cluster_info = false;
  std::string install_hint;      // shown when the command does not exist
  std::string cluster_config;    // JSON of the cluster's exec extension ("" : none)
  std::string user;              // the kubeconfig user and file, for messages
  std::chrono::milliseconds timeout{60'000};  // then the plugin is killed
};

// How to reach and authenticate to one cluster. PEM data is held in memory, never written out.
struct RestConfig {
  std::string server;           // https://host:port (no trailing slash)
  std::string context;          // the kubeconfig context it came from ("" for in-cluster)
  std::string namespace_;       // the context's default namespace ("default" when unset)
  std::string ca_pem;           // empty: the system trust store
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;  // overrides the name checked in the server certificate
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string token;            // bearer token
  std::string token_file;       // re-read periodically (bound service account tokens rotate)
  std::string proxy_url;
  std::string username, password;  // basic auth (legacy)
  std::optional<ExecConfig> exec;  // credentials come from this plugin (token/certificate unset)
};

struct LoadOptions {
  // Files to merge, in order. Empty: $KUBECONFIG (split on ':'), else ~/.kube/config.
  std::vector<std::string> paths;
  std::string context;     // empty: current-context
  std::string cluster;     // overrides the context's cluster
  std::string user;        // overrides the context's user
  std::string namespace_;  // overrides the context's namespace
  // Names of exec credential plugins (the command's basename) Gantry may run; empty refuses all.
  std::vector<std::string> allowed_exec_plugins;
  std::chrono::milliseconds exec_timeout{60'000};  // ExecConfig::timeout
};

// Reads kubeconfig files as kubectl does. NotFound for a missing file, context, cluster or user
// (naming it and the files read); InvalidArgument for malformed YAML (file:line:column) or
// contradictory settings or an exec plugin it cannot run (an unknown apiVersion, interactiveMode
// Always: Gantry never runs interactively); PermissionDenied for an exec plugin that is not allowed
// (naming it and the flag that allows it) or an auth-provider (naming the exec plugin to use).
Result<RestConfig> LoadConfig(const LoadOptions& options = {});

// The config of a Pod's service account (KUBERNETES_SERVICE_HOST/PORT and
// /var/run/secrets/kubernetes.io/serviceaccount). NotFound when not running in a cluster.
// `root` replaces / for tests.
Result<RestConfig> InClusterConfig(const std::string& root = "");

// group/version/kind and how it is served.
struct ResourceInfo {
  std::string group;    // "" for the core group
  std::string version;
  std::string kind;
  std::string resource;  // plural, e.g. "deployments"
  bool namespaced = true;
  std::vector<std::string> verbs;
  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
};

// Splits "apps/v1" into {"apps", "v1"} and "v1" into {"", "v1"}.
std::pair<std::string, std::string> SplitApiVersion(std::string_view api_version);

// What an object is: apiVersion, kind, namespace (empty for cluster-scoped) and name.
struct ObjectRef {
  std::string api_version;
  std::string kind;
  std::string namespace_;
  std::string name;
  // "apps/v1 Deployment guestbook/frontend" (or "v1 Namespace guestbook")
  std::string ToString() const;
  friend bool operator==(const ObjectRef&, const ObjectRef&) = default;
  friend auto operator<=>(const ObjectRef&, const ObjectRef&) = default;
};

// The reference of an object value (apiVersion, kind, metadata.namespace, metadata.name).
ObjectRef RefOf(const value::Value& object);

struct ApplyOptions {
  std::string field_manager = "gantry";
  bool force = false;    // take ownership of conflicting fields (only when the user asked)
  bool dry_run = false;  // server-side dry run: validated and defaulted, not persisted
  // How the server treats fields the kind's schema does not declare (fieldValidation): kDefault
  // sends nothing (the server's default: a custom resource's are dropped with a warning; built-in
  // kinds refuse them in an apply whatever is sent); kStrict refuses them, as `kubectl apply` does
  // by default; kIgnore drops them silently (`kubectl apply --validate=false`).
  enum class FieldValidation { kDefault, kStrict, kIgnore };
  FieldValidation field_validation = FieldValidation::kDefault;
};

struct CreateOptions {
  std::string field_manager;  // empty: the server's default (the client's user agent)
  bool dry_run = false;       // server-side dry run: validated, defaulted and named, not persisted
};

enum class Propagation { kBackground, kForeground, kOrphan };

struct DeleteOptions {
  Propagation propagation = Propagation::kBackground;
  bool dry_run = false;
  std::optional<std::string> precondition_uid;  // delete only this incarnation of the object
};

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;  // limit per request; continue tokens are followed
  // When set, each item is handed to `each` as its page arrives and ObjectList::items stays
  // empty: a caller that keeps a reduced copy of every object then holds one parsed page at a
  // time, not the whole list (10,000 ConfigMaps parsed are ~80 MB).
  std::function<void(value::Value item)> each;
};

struct ObjectList {
  std::vector<value::Value> items;
  std::string resource_version;  // of the list, to start a watch from
};

enum class EventType { kAdded, kModified, kDeleted, kBookmark };

struct WatchEvent {
  EventType type;
  value::Value object;
};

struct WatchOptions {
  std::string label_selector;
  std::string resource_version;  // start after this version ("" : from now, after a list)
  bool bookmarks = true;
  std::chrono::seconds timeout{300};  // server-side timeoutSeconds; the stream then ends cleanly
  // When set, the watch ends (OK) within ~200 ms of *stop becoming true, even without events.
  const std::atomic<bool>* stop = nullptr;
};

// Who a client acts as (Client::Impersonate). For a ServiceAccount, user is
// "system:serviceaccount:NAMESPACE:NAME" (ServiceAccountUser()).
struct Impersonation {
  std::string user;
  std::vector<std::string> groups;
};
std::string ServiceAccountUser(std::string_view namespace_, std::string_view name);

// A command run in a container of a Pod (pods/exec), as `kubectl exec -i` runs it.
struct ExecRequest {
  std::string namespace_;
  std::string pod;
  std::string container;
  std::vector<std::string> command;  // argv, run without a shell
};

// What an exec session reads and writes. The session first calls write_stdin (when set) with a
// function sending bytes to the command's stdin, then closes stdin, then hands what the command
// prints to on_stdout / on_stderr until it exits. (One direction at a time: a command that prints
// much before reading all its input would stall; `gantry internal tar|untar` do not.)
struct ExecStreams {
  std::function<Status(const std::function<Status(std::string_view)>& send)> write_stdin;
  std::function<Status(std::string_view)> on_stdout;  // an error ends the session with it
  std::function<void(std::string_view)> on_stderr;
  std::chrono::milliseconds timeout{600'000};  // of the whole session; then DeadlineExceeded
};

// Called for each event; return false to stop watching.
using WatchHandler = std::function<bool(const WatchEvent&)>;

// The Kubernetes API as Gantry uses it. Implementations are thread-safe.
class Client {
 public:
  virtual ~Client() = default;

  // Maps apiVersion + kind to its resource; refreshes discovery once when unknown.
  // NotFound "no kind X in group/version" when the server does not serve it.
  virtual Result<ResourceInfo> Resolve(std::string_view api_version, std::string_view kind) = 0;

  virtual Result<value::Value> Get(const ObjectRef& ref) = 0;

  // Lists objects of a kind in `namespace_` (empty: all namespaces, or a cluster-scoped kind),
  // following continue tokens.
  virtual Result<ObjectList> List(std::string_view api_version, std::string_view kind,
                                  std::string_view namespace_, const ListOptions& options = {}) = 0;

  // Server-side apply of `object` (its namespace must be set for namespaced kinds). Returns the
  // object as stored (or as it would be, with dry_run).
  virtual Result<value::Value> Apply(const value::Value& object, const ApplyOptions& options = {}) = 0;

  // Server-side apply to the status subresource (the object's status and identifying fields).
  virtual Result<value::Value> ApplyStatus(const value::Value& object, const ApplyOptions& options = {}) = 0;

  // Replaces an object (PUT). With metadata.resourceVersion set, the write succeeds only if the
  // object is still at that version: FailedPrecondition (a conflict) otherwise. NotFound when absent.
  virtual Result<value::Value> Replace(const value::Value& object) = 0;

  // Applies an RFC 6902 JSON patch (application/json-patch+json) to an object; returns the object
  // as stored. A patch that replaces metadata.resourceVersion writes only if the object is still at
  // that version (FailedPrecondition, a conflict, otherwise). Unimplemented where the implementation
  // cannot.
  virtual Result<value::Value> JsonPatch(const ObjectRef& ref, std::string_view patch) {
    (void)patch;
    return UnimplementedError("this Kubernetes client cannot send a JSON patch (to {})", ref.ToString());
  }

  // Deletes; NotFound when it is already gone.
  virtual Status Delete(const ObjectRef& ref, const DeleteOptions& options = {}) = 0;

  // Creates an object (POST). AlreadyExists when it exists. An object with metadata.generateName
  // and no name gets a name from the server: the returned object has it (also with dry_run).
  virtual Result<value::Value> Create(const value::Value& object, const CreateOptions& options = {}) = 0;

  // Watches a kind until the handler returns false, the server ends the stream (then OK), or an
  // error (OutOfRange when resource_version is too old: list again).
  virtual Status Watch(std::string_view api_version, std::string_view kind, std::string_view namespace_,
                       const WatchOptions& options, const WatchHandler& handler) = 0;

  // Wakes the running watches whose WatchOptions::stop is `stop` (the caller has set it), so they
  // end now rather than at their next look at it. Optional: by default they end within ~200 ms.
  virtual void WakeWatches(const std::atomic<bool>* stop) { (void)stop; }

  // Forgets the discovery cache, so the next Resolve() reads it again (after CRDs were created).
  virtual void InvalidateDiscovery() = 0;

  // GET of a raw path (e.g. "/version", "/metrics"); the body as text.
  virtual Result<std::string> GetRaw(std::string_view path) = 0;

  // Every kind the server serves, from the discovery cache (read again when older than its TTL).
  // Discovery's errors; Unimplemented where the implementation cannot list them.
  virtual Result<std::vector<ResourceInfo>> ServedKinds() {
    return UnimplementedError("this Kubernetes client cannot list the kinds the server serves");
  }

  // Runs a command in a container over the pods/exec subresource (WebSocket, v5.channel.k8s.io;
  // see kube/exec_stream.h) and returns its exit code. Errors: the API's (NotFound for a missing
  // Pod or container, PermissionDenied without the pods/exec permission), FailedPrecondition when
  // the server does not speak v5.channel.k8s.io (Kubernetes before 1.30), Unavailable when the
  // connection breaks, DeadlineExceeded after streams.timeout; Unimplemented where the
  // implementation cannot.
  virtual Result<int> Exec(const ExecRequest& request, const ExecStreams& streams) {
    (void)streams;
    return UnimplementedError("this Kubernetes client cannot exec into Pod {}/{}", request.namespace_, request.pod);
  }

  // Requests sent so far (for tests and benchmarks).
  virtual uint64_t request_count() const = 0;

  // A client that acts as `who`: every request carries Kubernetes impersonation headers
  // (Impersonate-User, Impersonate-Group), so the server authorizes it with who's RBAC. It shares
  // this client's connection, discovery and request count, and may outlive it. This client's
  // credentials must be allowed to impersonate (verb impersonate). InvalidArgument for an empty user
  // or a name with a line break; FailedPrecondition on a client that already impersonates;
  // Unimplemented where the implementation cannot.
  virtual Result<std::unique_ptr<Client>> Impersonate(const Impersonation& who) {
    (void)who;
    return UnimplementedError("this Kubernetes client cannot impersonate");
  }
};

// What a cluster offers to templates (Helm's .Capabilities), as Argo CD passes it to `helm template`.
struct Capabilities {
  // The server's version "vMAJOR.MINOR.PATCH" without pre-release or build metadata (an EKS
  // "v1.30.4-eks-a737599" is "v1.30.4", so that a chart's `kubeVersion: ">=1.25.0"` accepts it).
  std::string kube_version;
  // Every served "group/version" and "group/version/Kind" ("v1" and "v1/ConfigMap" for the core
  // group), sorted and unique.
  std::vector<std::string> api_versions;
  friend bool operator==(const Capabilities&, const Capabilities&) = default;
};

// Reads the server's /version (unless `kube_version` gives what a caller read recently) and its
// served kinds (Client::ServedKinds). The requests' errors, with "read the version and APIs of the
// cluster" as context; InvalidArgument when /version holds no version.
Result<Capabilities> ReadCapabilities(Client& client, std::string_view kube_version = "");

// The version part of Capabilities from a /version document's text; InvalidArgument when it holds
// no gitVersion (or major and minor) that reads as a version.
Result<std::string> KubeVersionOf(std::string_view version_json);

struct ClientOptions {
  int max_in_flight = 64;  // requests multiplexed at once on the connection
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds connect_timeout{10'000};
  int max_attempts = 4;  // per request, for retryable failures
  std::chrono::seconds discovery_ttl{600};
};

// Creates the HTTP/2 client of one cluster. InvalidArgument for an unusable config (no server,
// a malformed URL). Connecting happens on the first request.
Result<std::unique_ptr<Client>> NewHttpClient(const RestConfig& config, const ClientOptions& options = {});

}  // namespace gantry::kube
