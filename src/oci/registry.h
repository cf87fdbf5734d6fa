#pragma once
// The registry client: the OCI Distribution API as Docker Hub, GHCR, Harbor and docker-registry
// speak it, and PushImage / PullImage between a registry and an on-disk layout (layout.h).
//
// Authentication: anonymous; HTTP basic; and the bearer-token flow (a 401 with
// `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → GET realm with basic credentials or
// anonymously → token, cached per host and scope until it expires). Credentials come from
// RegistryOptions::credentials and from Docker's config.json (`auths`; credsStore / credHelpers
// are not supported and errors say so). A token is fetched once per scope however many threads
// need it, and before the request when the registry already asked for that scope; a token that
// does not grant enough is PermissionDenied naming the scope (never a new round of token requests). Each credential is bound to its registry host: an
// Authorization header is sent only to that scheme, host and port (and to the token realm it
// names), never to the object storage a blob GET is redirected to, nor to an upload Location or a
// tag-list Link that names another host (those are followed without credentials). Response bodies
// are read up to 4 MiB, the largest manifest accepted.
//
// Transport: HTTPS verified against the system trust store or RegistryOptions::ca_file. Plain HTTP
// only for hosts listed in insecure_http_hosts; for loopback hosts (localhost, 127.0.0.0/8, [::1])
// HTTPS is tried first and HTTP used when the server does not speak TLS, as Docker does.
//
// Retries: connection errors, 429 and 5xx are retried with full-jitter backoff honouring
// Retry-After (base/retry.h); 401 and 403 never are (Unauthenticated / PermissionDenied with the
// registry's own error message).
//
// Uploads: HEAD first; cross-repository mount when a source repository is known (a refused mount
// falls back to uploading); monolithic
// (POST + PUT) up to RegistryOptions::chunk_size, else chunked (PATCH with Content-Range). With an
// upload_state_dir, the upload URL and offset of each chunked blob are persisted after every chunk,
// so a push killed (even with SIGKILL) and run again resumes at the offset the registry reports.
// Blobs stream from and to files; their digests are verified on pull.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/retry.h"
#include "base/status.h"
#include "oci/layout.h"
#include "oci/oci.h"

namespace gantry::oci {

// Credentials for one registry host ("ghcr.io", "127.0.0.1:5000"; "docker.io" for Docker Hub).
struct Credential {
  std::string host;
  std::string username;
  std::string password;  // or an access token used as password
};

struct RegistryOptions {
  // Gantry's own credentials; they win over the Docker config for the same host.
  std::vector<Credential> credentials;
  // Docker's config.json. Empty: $DOCKER_CONFIG/config.json, else ~/.docker/config.json (absent is
  // fine). "none": do not read one.
  std::string docker_config;
  // PEM CA bundle to trust instead of the system store.
  std::string ca_file;
  // host[:port] reached over plain HTTP.
  std::vector<std::string> insecure_http_hosts;
  // "HOST:PORT=ADDRESS:PORT": requests for registry HOST:PORT connect to ADDRESS:PORT instead, the
  // URL, Host header and TLS name staying HOST:PORT (curl's --connect-to). For a registry whose
  // name does not reach it from where Gantry runs, such as 127.0.0.1:5000 from inside a Pod.
  std::vector<std::string> connect_to;
  BackoffPolicy retry{.initial = std::chrono::milliseconds(200), .max_attempts = 4};
  std::chrono::milliseconds connect_timeout{10'000};
  // A request during which no byte moves for this long fails with DeadlineExceeded: a registry
  // that accepts and then stays silent cannot hang a push or a pull.
  std::chrono::seconds stall_timeout{60};
  // Blobs larger than this are uploaded in chunks of this size.
  uint64_t chunk_size = 64ull << 20;
  // Where resumable-upload state is kept (one small file per blob being uploaded); empty: none.
  std::filesystem::path upload_state_dir;
  // Test hook: called after each chunk the registry acknowledged (digest, bytes stored so far).
  std::function<void(std::string_view digest, uint64_t offset)> on_chunk;
};

// What a manifest GET returns: the exact bytes, their digest and media type.
struct RawManifest {
  std::string media_type;
  std::string digest;
  std::string bytes;
};

// Counters for what a client did (for tests and benchmarks). Values, summed over all calls.
struct RegistryStats {
  uint64_t requests = 0;
  uint64_t bytes_uploaded = 0;
  uint64_t blobs_mounted = 0;
  uint64_t blobs_skipped = 0;   // present already (HEAD)
  uint64_t uploads_resumed = 0;
  uint64_t resumed_from = 0;    // sum of the offsets uploads resumed from
};

// A registry. `repo` arguments are References of which only registry and repository are used.
// Implementations are thread-safe: one client may run several transfers at once.
class Registry {
 public:
  virtual ~Registry() = default;

  // The descriptor (digest, size) of a blob when the registry has it; nullopt when it does not.
  virtual Result<std::optional<Descriptor>> StatBlob(const Reference& repo,
                                                     std::string_view digest) = 0;
  // Asks the registry to link `digest` from `from_repository` (same registry) into `repo`. True
  // when it did; false when it could not (the caller uploads instead).
  virtual Result<bool> MountBlob(const Reference& repo, std::string_view digest,
                                 std::string_view from_repository) = 0;
  // Uploads the file `path` as blob `desc` (digest, size) into `repo`, streaming it.
  virtual Status PushBlob(const Reference& repo, const Descriptor& desc,
                          const std::filesystem::path& path) = 0;
  // Streams blob `desc` into `writer` (not committed) and checks size and digest: DataLoss when
  // the bytes do not match. Follows redirects without sending credentials to other hosts.
  virtual Status FetchBlob(const Reference& repo, const Descriptor& desc, BlobWriter& writer) = 0;

  // GET / HEAD of ref.Identifier(), accepting OCI and Docker manifests and indexes. NotFound when
  // absent. GetManifest checks the bytes against ref.digest when it is set (DataLoss).
  virtual Result<RawManifest> GetManifest(const Reference& ref) = 0;
  virtual Result<std::optional<Descriptor>> HeadManifest(const Reference& ref) = 0;
  // PUTs the bytes as given under ref.Identifier(); returns the digest of the bytes.
  virtual Result<std::string> PutManifest(const Reference& ref, std::string_view media_type,
                                          std::string_view bytes) = 0;

  // The referrers API of OCI distribution 1.1, GET /v2/<repository>/referrers/<digest>: the image
  // index listing the manifests whose `subject` is `digest`, filtered by artifactType when
  // `artifact_type` is not empty (a registry may ignore the filter: callers filter again).
  // NotFound when the registry does not serve the API (a registry that does answers 200, with an
  // empty index when nothing refers to the digest); callers then fall back to the tag schema
  // ("sha256-<hex>.sig"). The default, for clients without the API, is that NotFound.
  virtual Result<RawManifest> Referrers(const Reference& repo, std::string_view digest,
                                        std::string_view artifact_type) {
    (void)artifact_type;
    return NotFoundError("{}/{}: no referrers API for {}", repo.registry, repo.repository, digest);
  }
  // All tags of `repo`, following Link pagination with `page_size` per request (0: the
  // registry's default).
  virtual Result<std::vector<std::string>> ListTags(const Reference& repo, int page_size = 0) = 0;

  virtual RegistryStats Stats() const = 0;
};

// A libcurl client. InvalidArgument when the Docker config cannot be parsed or ca_file is absent.
// InvalidArgument for a missing CA file, a zero chunk size or a connect_to entry that is not
// HOST:PORT=ADDRESS:PORT.
Result<std::unique_ptr<Registry>> NewHttpRegistry(RegistryOptions options);

// The registry hosts `options` holds credentials for (its own and the Docker config's auths),
// normalised as RegistryHost does, sorted: the names by which a Project's `credentials` lists
// registry credentials. The Docker config's errors (as NewHttpRegistry's).
Result<std::vector<std::string>> CredentialHosts(const RegistryOptions& options);
// A registry host as credentials are keyed: lower case, scheme and path removed, Docker Hub's
// aliases as "docker.io".
std::string RegistryHost(std::string_view host);

// Small blobs held in memory (signature payloads, attestations, configs).
// FetchBlobBytes: the blob's bytes, digest and size checked (DataLoss); ResourceExhausted when it
// is larger than `max_bytes`; the registry's errors (NotFound when it is missing).
Result<std::string> FetchBlobBytes(Registry& registry, const Reference& repo, const Descriptor& desc,
                                   uint64_t max_bytes = 16u << 20);
// PushBlobBytes: uploads `bytes` into `repo` unless the registry has them already; returns their
// descriptor with `media_type`.
Result<Descriptor> PushBlobBytes(Registry& registry, const Reference& repo, std::string_view bytes,
                                 std::string_view media_type);

struct PushOptions {
  // Repositories of the same registry the blobs may already be in: mounted instead of uploaded.
  std::vector<std::string> mount_from;
  int parallel = 4;
};

// Pushes the image tagged `ref_name` in `layout` (a manifest or an index) to `dest`: blobs first
// (skipping those present, mounting when possible, `parallel` at a time), then the child manifests
// of an index by digest, then the manifest under dest.Identifier(). When the tag already points at
// the same digest nothing else is sent. Returns the pushed manifest's digest. NotFound when the
// layout has no such tag or lacks a blob; registry errors with the blob or manifest as context.
Result<std::string> PushImage(Registry& registry, const Layout& layout, std::string_view ref_name,
                              const Reference& dest, const PushOptions& options = {});

// Pulls `src` into `layout` and tags it `ref_name`. With a platform, an index is resolved to the
// matching manifest (NotFound listing the platforms when none matches); without, an index is kept
// whole with all its platforms. Every blob is verified against its digest. Returns the descriptor
// tagged in the layout.
Result<Descriptor> PullImage(Registry& registry, const Reference& src, const Layout& layout,
                             std::string_view ref_name,
                             const std::optional<Platform>& platform = std::nullopt,
                             int parallel = 4);

}  // namespace gantry::oci
