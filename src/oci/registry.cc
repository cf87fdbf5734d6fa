// HttpRegistry: the Distribution API over libcurl easy handles (one per request in flight, kept in
// a pool so connections are reused). Redirects are followed by hand so that Authorization is only
// ever attached to the registry's own host. See registry.h for the behaviour.

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>

#include "base/base64.h"

#include "base/ascii.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/path.h"
#include "base/percent.h"
#include "oci/internal/auth_flow.h"
#include "oci/registry.h"
#include "value/value.h"

namespace gantry::oci {
namespace {

using internal::Challenge;
using SteadyClock = std::chrono::steady_clock;

constexpr uint64_t kMaxManifestBytes = 4 << 20;
constexpr int kMaxRedirects = 5;

struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::string_view body;  // in-memory body (POST/PUT/PATCH)
  int fd = -1;            // or a file range as the body
  uint64_t offset = 0;
  uint64_t length = 0;
  // 2xx bodies go here instead of into Response::body (blob downloads).
  std::function<bool(std::string_view)> sink;
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
  std::string body;
  CURLcode curl_code = CURLE_OK;
  std::string curl_error;
  uint64_t uploaded = 0;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct Transfer {
  const Request* req;
  Response* resp;
  uint64_t sent = 0;
  bool sink_failed = false;
};

size_t OnBody(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  size_t len = size * n;
  if (t->req->sink && t->resp->status >= 200 && t->resp->status < 300) {
    if (!t->req->sink(std::string_view(data, len))) {
      t->sink_failed = true;
      return 0;
    }
    return len;
  }
  // Kept up to one byte past the largest manifest, so that GetManifest can tell "too large".
  if (t->resp->body.size() <= kMaxManifestBytes) t->resp->body.append(data, len);
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    t->resp->headers.clear();
    size_t sp = line.find(' ');
    if (sp != std::string_view::npos) t->resp->status = std::strtol(line.data() + sp + 1, nullptr, 10);
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name = AsciiLower(line.substr(0, colon));
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    t->resp->headers[name] = std::string(v);
  }
  return size * n;
}

size_t OnRead(char* buffer, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const Request& r = *t->req;
  uint64_t want = std::min<uint64_t>(size * n, r.length - t->sent);
  if (want == 0) return 0;
  if (r.fd >= 0) {
    ssize_t got = ::pread(r.fd, buffer, want, static_cast<off_t>(r.offset + t->sent));
    if (got <= 0) return CURL_READFUNC_ABORT;
    want = static_cast<uint64_t>(got);
  } else {
    std::memcpy(buffer, r.body.data() + t->sent, want);
  }
  t->sent += want;
  return want;
}

// scheme, host:port of an absolute URL (the scheme's default port when it has none); empty on a
// parse error.
std::pair<std::string, std::string> Authority(const std::string& url) {
  std::pair<std::string, std::string> out;
  CURLU* u = curl_url();
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* scheme = nullptr;
    char* host = nullptr;
    char* port = nullptr;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (scheme && host) {
      out.first = AsciiLower(scheme);
      out.second = AsciiLower(host) + (port ? std::string(":") + port : "");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
  }
  curl_url_cleanup(u);
  return out;
}

// `location` (absolute or relative) resolved against `base`.
std::string ResolveUrl(const std::string& base, const std::string& location) {
  CURLU* u = curl_url();
  std::string out = location;
  if (curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
      curl_url_set(u, CURLUPART_URL, location.c_str(), 0) == CURLUE_OK) {
    char* s = nullptr;
    if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) out = s;
    curl_free(s);
  }
  curl_url_cleanup(u);
  return out;
}

std::string WithQuery(const std::string& url, std::string_view query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + std::string(query);
}

bool IsLoopback(std::string_view host) {
  std::string_view name = host;
  if (name.starts_with("[")) return name.starts_with("[::1]");
  if (size_t colon = name.rfind(':'); colon != std::string_view::npos) name = name.substr(0, colon);
  return name == "localhost" || name.starts_with("127.");
}

// The registry's message from its JSON errors body: "CODE: message (detail)"; else the body.
std::string RegistryMessage(const Response& r) {
  std::string out;
  if (auto doc = value::ParseJson(r.body, "registry error"); doc.ok() && doc->IsMap()) {
    if (const value::Value* errors = doc->Get("errors"); errors && errors->IsSeq()) {
      for (const value::Value& e : errors->items()) {
        if (!e.IsMap()) continue;
        std::string part;
        if (const value::Value* c = e.Get("code"); c && c->IsString()) part = std::string(c->AsString());
        if (const value::Value* m = e.Get("message"); m && m->IsString())
          part += (part.empty() ? "" : ": ") + std::string(m->AsString());
        if (const value::Value* d = e.Get("detail"); d && !d->IsNull()) {
          std::string detail = d->IsString() ? std::string(d->AsString()) : value::ToJson(*d);
          if (detail.size() < 300) part += " (" + detail + ")";
        }
        if (!part.empty()) out += (out.empty() ? "" : "; ") + part;
      }
    }
  }
  if (out.empty()) {
    std::string body = r.body.size() > 300 ? r.body.substr(0, 300) + "..." : r.body;
    while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back()))) body.pop_back();
    out = body.empty() ? fmt::format("HTTP {}", r.status) : fmt::format("HTTP {}: {}", r.status, body);
  }
  return out;
}

Status ResponseError(const Response& r, std::string_view what) {
  if (r.curl_code != CURLE_OK) {
    Code code = r.curl_code == CURLE_OPERATION_TIMEDOUT ? Code::kDeadlineExceeded : Code::kUnavailable;
    if (r.curl_code == CURLE_PEER_FAILED_VERIFICATION || r.curl_code == CURLE_SSL_CACERT_BADFILE)
      code = Code::kFailedPrecondition;
    return Status(code, fmt::format("{}: {}", what, r.curl_error));
  }
  Code code = Code::kUnknown;
  switch (r.status) {
    case 400: case 411: case 413: case 415: case 422: code = Code::kInvalidArgument; break;
    case 401: code = Code::kUnauthenticated; break;
    case 403: code = Code::kPermissionDenied; break;
    case 404: code = Code::kNotFound; break;
    case 405: code = Code::kUnimplemented; break;
    case 409: code = Code::kAborted; break;
    case 416: code = Code::kOutOfRange; break;
    case 429: code = Code::kResourceExhausted; break;
    case 501: code = Code::kUnimplemented; break;
    case 504: code = Code::kDeadlineExceeded; break;
    default: if (r.status >= 500) code = Code::kUnavailable; break;
  }
  Status s(code, fmt::format("{}: {}", what, RegistryMessage(r)));
  std::string ra = r.Header("retry-after");
  if (!ra.empty()) {
    char* end = nullptr;
    long secs = std::strtol(ra.c_str(), &end, 10);
    if (end && *end == '\0' && secs >= 0) s.set_retry_after(std::chrono::seconds(std::min(secs, 60L)));
  }
  return s;
}

// Upload state persisted per blob for resume: {"url": ..., "offset": N}.
struct UploadState {
  std::string url;
  uint64_t offset = 0;
};

class HttpRegistry final : public Registry {
 public:
  HttpRegistry(RegistryOptions options, internal::CredentialSet creds)
      : options_(std::move(options)), creds_(std::move(creds)) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (const std::string& h : options_.insecure_http_hosts) schemes_[AsciiLower(h)] = "http";
    const char* env = std::getenv("NO_PROXY");
    if (!env) env = std::getenv("no_proxy");
    no_proxy_ = std::string(env ? env : "");
    no_proxy_ += std::string(no_proxy_.empty() ? "" : ",") + "localhost,127.0.0.1,::1";
    // Checked by NewHttpRegistry: "HOST:PORT=ADDRESS:PORT" becomes curl's "HOST:PORT:ADDRESS:PORT".
    for (std::string entry : options_.connect_to) {
      entry[entry.find('=')] = ':';
      connect_to_ = curl_slist_append(connect_to_, entry.c_str());
    }
  }

  ~HttpRegistry() override {
    for (CURL* h : pool_) curl_easy_cleanup(h);
    curl_slist_free_all(connect_to_);
  }

  Result<std::optional<Descriptor>> StatBlob(const Reference& repo, std::string_view digest) override {
    std::string what = fmt::format("HEAD blob {} in {}", digest, Name(repo));
    return RetryResult<std::optional<Descriptor>>(options_.retry, [&]() -> Result<std::optional<Descriptor>> {
      Request req;
      req.method = "HEAD";
      GANTRY_ASSIGN_OR_RETURN(req.url, Url(repo, "/blobs/" + std::string(digest)));
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Pull(repo), req));
      if (r.status == 404) return std::optional<Descriptor>();
      if (r.status >= 400 || r.curl_code != CURLE_OK) return ResponseError(r, what);
      Descriptor d;
      d.digest = std::string(digest);
      d.size = std::strtoll(r.Header("content-length").c_str(), nullptr, 10);
      return std::optional<Descriptor>(d);
    });
  }

  Result<bool> MountBlob(const Reference& repo, std::string_view digest,
                         std::string_view from_repository) override {
    std::string what = fmt::format("mount blob {} from {} into {}", digest, from_repository, Name(repo));
    return RetryResult<bool>(options_.retry, [&]() -> Result<bool> {
      Request req;
      req.method = "POST";
      GANTRY_ASSIGN_OR_RETURN(std::string url, Url(repo, "/blobs/uploads/"));
      req.url = WithQuery(url, "mount=" + PercentEncode(digest) + "&from=" + PercentEncode(from_repository));
      // One token for both repositories, as Docker asks: pull,push here and pull there.
      std::vector<std::string> scopes = Push(repo);
      scopes.push_back(internal::RepositoryScope(from_repository, "pull"));
      Result<Response> sent = Do(repo, scopes, req);
      if (!sent.ok() && sent.status().code() == Code::kPermissionDenied) {
        // Not allowed to read the source (or to mount at all): the caller uploads instead.
        log::Info("oci: {}: {}; uploading instead", what, sent.status().message());
        return false;
      }
      GANTRY_RETURN_IF_ERROR(sent.status());
      Response& r = *sent;
      if (r.status == 201) {
        ++stats_.blobs_mounted;
        return true;
      }
      if (r.status == 202) {  // an upload session instead: not needed, close it
        if (std::string loc = r.Header("location"); !loc.empty()) {
          Request del;
          del.method = "DELETE";
          del.url = ResolveUrl(req.url, loc);
          Do(repo, Push(repo), del).status().IgnoreError();
        }
        return false;
      }
      if (r.status == 404) return false;
      return ResponseError(r, what);
    });
  }

  Status PushBlob(const Reference& repo, const Descriptor& desc,
                  const std::filesystem::path& path) override {
    std::string what = fmt::format("upload blob {} to {}", desc.digest, Name(repo));
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, what + ": open " + path.string());
    struct stat st {};
    ::fstat(fd, &st);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    if (static_cast<uint64_t>(st.st_size) != static_cast<uint64_t>(desc.size))
      return DataLossError("{}: {} has {} bytes, the descriptor says {}", what, path.string(),
                           st.st_size, desc.size);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size <= options_.chunk_size) {
      return Retry(options_.retry, [&]() -> Status {
        GANTRY_ASSIGN_OR_RETURN(std::string location, StartUpload(repo, what));
        Request put;
        put.method = "PUT";
        put.url = WithQuery(location, "digest=" + PercentEncode(desc.digest));
        put.headers = {"Content-Type: application/octet-stream"};
        put.fd = fd;
        put.length = size;
        GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Push(repo), put));
        if (r.status != 201) return ResponseError(r, what);
        stats_.bytes_uploaded += r.uploaded;
        return OkStatus();
      });
    }
    std::filesystem::path state_file = StateFile(repo, desc.digest);
    UploadState state = LoadState(state_file);
    bool resumable = !state.url.empty();
    Status s = Retry(options_.retry, [&]() -> Status {
      return UploadChunked(repo, desc, fd, size, state, state_file, resumable, what);
    });
    if (s.ok() && !state_file.empty()) std::filesystem::remove(state_file);
    return s;
  }

  Status FetchBlob(const Reference& repo, const Descriptor& desc, BlobWriter& writer) override {
    std::string what = fmt::format("fetch blob {} from {}", desc.digest, Name(repo));
    Sha256 hash;
    uint64_t written = writer.size();
    if (written != 0) return InvalidArgumentError("{}: the writer is not empty", what);
    Status write_status;
    Status s = Retry(options_.retry, [&]() -> Status {
      Request req;
      GANTRY_ASSIGN_OR_RETURN(req.url, Url(repo, "/blobs/" + desc.digest));
      if (written > 0) req.headers.push_back(fmt::format("Range: bytes={}-", written));
      req.sink = [&](std::string_view chunk) {
        if (written + chunk.size() > static_cast<uint64_t>(desc.size)) {
          write_status = DataLossError("{}: more than the {} bytes of its descriptor", what, desc.size);
          return false;
        }
        write_status = writer.Write(chunk);
        if (!write_status.ok()) return false;
        hash.Update(chunk);
        written += chunk.size();
        return true;
      };
      uint64_t before = written;
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Pull(repo), req));
      if (!write_status.ok()) return write_status;
      if (r.status == 200 && before > 0)
        return DataLossError("{}: the server ignored the Range request on retry", what);
      if (r.curl_code != CURLE_OK || (r.status != 200 && r.status != 206)) return ResponseError(r, what);
      return OkStatus();
    });
    GANTRY_RETURN_IF_ERROR(s);
    if (written != static_cast<uint64_t>(desc.size))
      return DataLossError("{}: got {} bytes, the descriptor says {}", what, written, desc.size);
    std::string got = "sha256:" + hash.FinishHex();
    if (got != desc.digest) return DataLossError("{}: the bytes received have digest {}", what, got);
    return OkStatus();
  }

  Result<RawManifest> GetManifest(const Reference& ref) override {
    std::string what = fmt::format("get manifest {}", ref.ToString());
    GANTRY_ASSIGN_OR_RETURN(Response r, ManifestRequest(ref, "GET", what));
    if (r.body.size() > kMaxManifestBytes)
      return ResourceExhaustedError("{}: larger than {} bytes", what, kMaxManifestBytes);
    RawManifest m;
    m.bytes = std::move(r.body);
    m.digest = Sha256Digest(m.bytes);
    m.media_type = MediaType(r.Header("content-type"));
    if (!ref.digest.empty() && m.digest != ref.digest)
      return DataLossError("{}: the bytes received have digest {}", what, m.digest);
    if (m.media_type.empty() || (!IsManifestType(m.media_type) && !IsIndexType(m.media_type))) {
      // Some registries serve application/json: let the document's mediaType decide.
      if (auto doc = value::ParseJson(m.bytes, "manifest"); doc.ok() && doc->IsMap()) {
        if (const value::Value* t = doc->Get("mediaType"); t && t->IsString()) m.media_type = t->AsString();
        else if (doc->Get("manifests")) m.media_type = media::kOciIndex;
        else m.media_type = media::kOciManifest;
      }
    }
    return m;
  }

  Result<std::optional<Descriptor>> HeadManifest(const Reference& ref) override {
    std::string what = fmt::format("HEAD manifest {}", ref.ToString());
    Result<Response> r = ManifestRequest(ref, "HEAD", what);
    if (!r.ok()) {
      if (r.status().code() == Code::kNotFound) return std::optional<Descriptor>();
      return r.status();
    }
    Descriptor d;
    d.media_type = MediaType(r->Header("content-type"));
    d.digest = r->Header("docker-content-digest");
    d.size = std::strtoll(r->Header("content-length").c_str(), nullptr, 10);
    if (d.digest.empty() || !ValidateDigest(d.digest).ok()) {
      GANTRY_ASSIGN_OR_RETURN(RawManifest m, GetManifest(ref));
      d.digest = m.digest;
      d.media_type = m.media_type;
      d.size = static_cast<int64_t>(m.bytes.size());
    }
    return std::optional<Descriptor>(d);
  }

  Result<std::string> PutManifest(const Reference& ref, std::string_view media_type,
                                  std::string_view bytes) override {
    std::string what = fmt::format("put manifest {}", ref.ToString());
    std::string digest = Sha256Digest(bytes);
    GANTRY_RETURN_IF_ERROR(Retry(options_.retry, [&]() -> Status {
      Request req;
      req.method = "PUT";
      GANTRY_ASSIGN_OR_RETURN(req.url, Url(ref, "/manifests/" + ref.Identifier()));
      req.headers = {"Content-Type: " + std::string(media_type)};
      req.body = bytes;
      req.length = bytes.size();
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(ref, Push(ref), req));
      if (r.status != 201 && r.status != 200) return ResponseError(r, what);
      if (std::string d = r.Header("docker-content-digest"); !d.empty() && d != digest)
        return DataLossError("{}: the registry computed digest {}, the bytes have {}", what, d, digest);
      return OkStatus();
    }));
    return digest;
  }

  Result<RawManifest> Referrers(const Reference& repo, std::string_view digest,
                                std::string_view artifact_type) override {
    std::string what = fmt::format("list the referrers of {}@{}", Name(repo), digest);
    GANTRY_RETURN_IF_ERROR(ValidateDigest(digest));
    GANTRY_ASSIGN_OR_RETURN(std::string url, Url(repo, "/referrers/" + std::string(digest)));
    if (!artifact_type.empty()) url = WithQuery(url, "artifactType=" + PercentEncode(artifact_type));
    GANTRY_ASSIGN_OR_RETURN(Response r, RetryResult<Response>(options_.retry, [&]() -> Result<Response> {
      Request req;
      req.url = url;
      req.headers = {fmt::format("Accept: {}", media::kOciIndex)};
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Pull(repo), req));
      if (r.status != 200) return ResponseError(r, what);
      return r;
    }));
    if (r.body.size() > kMaxManifestBytes)
      return ResourceExhaustedError("{}: larger than {} bytes", what, kMaxManifestBytes);
    return RawManifest{.media_type = MediaType(r.Header("content-type")), .digest = Sha256Digest(r.body),
                       .bytes = std::move(r.body)};
  }

  Result<std::vector<std::string>> ListTags(const Reference& repo, int page_size) override {
    std::string what = fmt::format("list tags of {}", Name(repo));
    GANTRY_ASSIGN_OR_RETURN(std::string url, Url(repo, "/tags/list"));
    if (page_size > 0) url = WithQuery(url, fmt::format("n={}", page_size));
    std::vector<std::string> tags;
    for (int page = 0; page < 10000 && !url.empty(); ++page) {
      GANTRY_ASSIGN_OR_RETURN(Response r, RetryResult<Response>(options_.retry, [&]() -> Result<Response> {
        Request req;
        req.url = url;
        GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Pull(repo), req));
        if (r.status != 200) return ResponseError(r, what);
        return r;
      }));
      GANTRY_ASSIGN_OR_RETURN(value::Value doc, value::ParseJson(r.body, what));
      if (const value::Value* list = doc.Get("tags"); list && list->IsSeq()) {
        for (const value::Value& t : list->items())
          if (t.IsString()) tags.emplace_back(t.AsString());
      }
      std::string next = internal::NextLink(r.Header("link"));
      url = next.empty() ? "" : ResolveUrl(url, next);
    }
    return tags;
  }

  RegistryStats Stats() const override {
    RegistryStats s;
    s.requests = stats_.requests;
    s.bytes_uploaded = stats_.bytes_uploaded;
    s.blobs_mounted = stats_.blobs_mounted;
    s.blobs_skipped = stats_.blobs_skipped;
    s.uploads_resumed = stats_.uploads_resumed;
    s.resumed_from = stats_.resumed_from;
    return s;
  }

 private:
  struct AtomicStats {
    std::atomic<uint64_t> requests{0}, bytes_uploaded{0}, blobs_mounted{0}, blobs_skipped{0},
        uploads_resumed{0}, resumed_from{0};
  };

  static std::string Name(const Reference& r) { return r.registry + "/" + r.repository; }
  static std::vector<std::string> Pull(const Reference& r) {
    return {internal::RepositoryScope(r.repository, "pull")};
  }
  static std::vector<std::string> Push(const Reference& r) {
    return {internal::RepositoryScope(r.repository, "pull,push")};
  }
  static std::string ApiHost(const std::string& registry) {
    return registry == "docker.io" ? "registry-1.docker.io" : registry;
  }
  static std::string MediaType(std::string content_type) {
    if (size_t semi = content_type.find(';'); semi != std::string::npos) content_type.resize(semi);
    while (!content_type.empty() && content_type.back() == ' ') content_type.pop_back();
    return content_type;
  }

  // scheme://host/v2/<repository><suffix>, deciding the scheme of the host on first use.
  Result<std::string> Url(const Reference& repo, std::string_view suffix) {
    GANTRY_ASSIGN_OR_RETURN(std::string base, Base(repo.registry));
    return base + "/v2/" + repo.repository + std::string(suffix);
  }

  Result<std::string> Base(const std::string& registry) {
    std::string host = AsciiLower(ApiHost(registry));
    {
      MutexLock lock(mu_);
      if (auto it = schemes_.find(host); it != schemes_.end()) return it->second + "://" + host;
    }
    std::string scheme = "https";
    if (IsLoopback(host)) {
      // Loopback: HTTPS when the server speaks it, else plain HTTP (as Docker does).
      Request probe;
      probe.url = "https://" + host + "/v2/";
      Response r = Send(probe, "");
      if (r.curl_code == CURLE_SSL_CONNECT_ERROR || r.curl_code == CURLE_RECV_ERROR) scheme = "http";
    }
    MutexLock lock(mu_);
    schemes_[host] = scheme;
    return scheme + "://" + host;
  }

  // The Authorization header for `registry` and `scopes`, from what the host asked for last. When
  // it asked for a bearer token and none is cached for these scopes, one is fetched first (so a
  // new scope costs no 401 round trip); errors are the token service's.
  Result<std::string> AuthHeader(const std::string& registry, const std::vector<std::string>& scopes,
                                 std::string_view what) {
    std::optional<Challenge> challenge;
    {
      MutexLock lock(mu_);
      if (auto it = challenges_.find(registry); it != challenges_.end()) challenge = it->second;
    }
    if (!challenge) return std::string();
    if (challenge->scheme == "bearer") {
      // The stored challenge's own scope belonged to another request: ask for ours only.
      GANTRY_ASSIGN_OR_RETURN(std::string token, Token(registry, scopes, {}, *challenge, "", what));
      return "Authorization: Bearer " + token;
    }
    if (challenge->scheme == "basic") {
      if (auto c = creds_.For(registry))
        return "Authorization: Basic " + Base64Encode(c->username + ":" + c->password);
    }
    return std::string();
  }

  static std::string TokenKey(const std::string& registry, const std::vector<std::string>& scopes) {
    std::string key = registry;
    for (const std::string& s : scopes) key += " " + s;
    return key;
  }

  // The scopes of a challenge's `scope` parameter (space-separated, as Distribution writes them).
  static std::vector<std::string> ChallengeScopes(const Challenge& c) {
    std::vector<std::string> out;
    std::string all = c.Param("scope");
    for (size_t i = 0; i < all.size();) {
      size_t end = all.find(' ', i);
      if (end == std::string::npos) end = all.size();
      if (end > i) out.push_back(all.substr(i, end - i));
      i = end + 1;
    }
    return out;
  }

  // The bearer token for (registry, scopes): the cached one unless it is `stale`, else one from
  // the realm of `bearer` for `scopes` plus `extra`, with basic credentials when there are some.
  // One fetch per key at a time: threads that need the same token wait for it instead of each
  // asking the token service. Unauthenticated when the token service refuses.
  Result<std::string> Token(const std::string& registry, const std::vector<std::string>& scopes,
                            const std::vector<std::string>& extra, const Challenge& bearer,
                            const std::string& stale, std::string_view what) {
    std::string key = TokenKey(registry, scopes);
    Mutex* fetch_mu;
    {
      MutexLock lock(mu_);
      std::unique_ptr<Mutex>& m = token_fetch_mu_[key];
      if (!m) m = std::make_unique<Mutex>();
      fetch_mu = m.get();
    }
    MutexLock fetching(*fetch_mu);
    if (auto t = tokens_.Get(key, SteadyClock::now()); t && *t != stale) return *t;
    std::vector<std::string> want = scopes;
    want.insert(want.end(), extra.begin(), extra.end());
    bool allow_http = false;
    {
      MutexLock lock(mu_);
      auto it = schemes_.find(AsciiLower(ApiHost(registry)));
      allow_http = it != schemes_.end() && it->second == "http";
    }
    Result<std::string> url = internal::TokenUrl(bearer, want, allow_http);
    if (!url.ok()) return url.status().WithContext(what);
    Request tr;
    tr.url = *url;
    std::string auth;
    std::optional<Credential> cred = creds_.For(registry);
    if (cred) auth = "Authorization: Basic " + Base64Encode(cred->username + ":" + cred->password);
    Response t = Send(tr, auth);
    if (t.curl_code != CURLE_OK || t.status != 200) {
      Status s = ResponseError(t, fmt::format("{}: token from {}", what, bearer.Param("realm")));
      if (t.status == 401 || t.status == 403) {
        std::string who = cred ? fmt::format("the credentials of user {:?} for {} were refused",
                                             cred->username, registry)
                               : fmt::format("no credentials for {}", registry);
        if (std::string hint = creds_.UnsupportedHint(registry); !hint.empty()) who += "; " + hint;
        s = Status(Code::kUnauthenticated, fmt::format("{} ({})", s.message(), who));
      }
      return s;
    }
    Result<internal::Token> token = internal::ParseTokenResponse(t.body);
    if (!token.ok()) return token.status().WithContext(what);
    tokens_.Put(key, *token, SteadyClock::now());
    return token->value;
  }

  // After a 401 to a request that carried `sent_auth`: learns the challenge and, for Bearer, gets
  // a token. OK when a new attempt may succeed; otherwise Unauthenticated (or PermissionDenied
  // when a token was refused for its scope) with the registry's message.
  Status Authenticate(const std::string& registry, const std::vector<std::string>& scopes,
                      const Response& r, const std::string& sent_auth, std::string_view what) {
    Status denied = ResponseError(r, what);
    std::string hint = creds_.UnsupportedHint(registry);
    if (!hint.empty()) denied = Status(denied.code(), denied.message() + "; " + hint);
    Result<std::vector<Challenge>> parsed = internal::ParseWwwAuthenticate(r.Header("www-authenticate"));
    if (!parsed.ok()) return denied;
    const Challenge* chosen = nullptr;
    for (const Challenge& c : *parsed)
      if (c.scheme == "bearer" && !chosen) chosen = &c;
    for (const Challenge& c : *parsed)
      if (c.scheme == "basic" && !chosen) chosen = &c;
    if (!chosen) return denied;
    {
      MutexLock lock(mu_);
      challenges_[registry] = *chosen;
    }
    std::optional<Credential> cred = creds_.For(registry);
    if (chosen->scheme == "basic") {
      if (!cred) return Status(denied.code(), denied.message() + " (no credentials for " + registry + ")");
      if (sent_auth.starts_with("Authorization: Basic"))  // they were refused
        return Status(denied.code(), fmt::format("{}: the credentials of user {:?} for {} were refused",
                                                 denied.message(), cred->username, registry));
      return OkStatus();
    }
    // Bearer.
    std::vector<std::string> asked = ChallengeScopes(*chosen);
    std::string stale;
    if (sent_auth.starts_with("Authorization: Bearer ")) {
      stale = sent_auth.substr(std::string_view("Authorization: Bearer ").size());
      if (chosen->Param("error") == "insufficient_scope") {
        // A new token helps only when the registry wants a scope we did not ask for; the token
        // service grants the same again otherwise.
        bool covered = std::all_of(asked.begin(), asked.end(), [&](const std::string& s) {
          return std::find(scopes.begin(), scopes.end(), s) != scopes.end();
        });
        if (covered) return InsufficientScope(registry, *chosen, denied, cred);
      }
      // Else the token was rejected (expired, invalid): fetch a new one, once.
    }
    return Token(registry, scopes, asked, *chosen, stale, what).status();
  }

  // PermissionDenied for a request whose token lacks what it needs.
  static Status InsufficientScope(const std::string& registry, const Challenge& bearer,
                                  const Status& denied, const std::optional<Credential>& cred) {
    return PermissionDeniedError(
        "{}: the token from {} for {} does not grant {} (insufficient_scope){}", denied.message(),
        bearer.Param("realm"), cred ? fmt::format("user {:?}", cred->username) : "anonymous access",
        bearer.Param("scope"), cred ? "" : fmt::format("; no credentials for {}", registry));
  }

  // One request to the registry of `repo` with authentication: a 401 is answered once (token
  // fetched or basic credentials added) and the request repeated. Redirects to other hosts are
  // followed without credentials. HTTP error statuses are returned as responses, not errors,
  // except 401 and 403 (Unauthenticated / PermissionDenied).
  //
  // Credentials go only to the registry's own scheme, host and port: an upload Location or a tag
  // list Link naming another host is followed without them, and a 401 from there is an error.
  Result<Response> Do(const Reference& repo, const std::vector<std::string>& scopes, const Request& req) {
    std::string what = fmt::format("{} {}", req.method, Name(repo));
    GANTRY_ASSIGN_OR_RETURN(std::string base, Base(repo.registry));
    auto [scheme, host] = Authority(req.url);
    bool own = !host.empty() && std::pair(scheme, host) == Authority(base);
    for (int attempt = 0;; ++attempt) {
      std::string auth;
      if (own) {
        GANTRY_ASSIGN_OR_RETURN(auth, AuthHeader(repo.registry, scopes, what));
      }
      Response r = Send(req, auth);
      if (!own && (r.status == 401 || r.status == 403)) {
        Status s = ResponseError(r, what);
        return Status(s.code(), fmt::format("{} (at {}, which is not the registry's host {} and "
                                            "gets no credentials)",
                                            s.message(), host, ApiHost(repo.registry)));
      }
      if (r.status == 401 && attempt == 0) {
        GANTRY_RETURN_IF_ERROR(Authenticate(repo.registry, scopes, r, auth, what));
        continue;
      }
      if (r.status == 401) {
        // Refused again with fresh authentication: explain, never ask the token service again.
        Status s = ResponseError(r, what);
        std::optional<Credential> cred = creds_.For(repo.registry);
        Result<std::vector<Challenge>> parsed = internal::ParseWwwAuthenticate(r.Header("www-authenticate"));
        if (parsed.ok() && !parsed->empty() && parsed->front().Param("error") == "insufficient_scope")
          return InsufficientScope(repo.registry, parsed->front(), s, cred);
        if (auth.starts_with("Authorization: Basic") && cred)
          s = Status(s.code(), fmt::format("{}: the credentials of user {:?} for {} were refused",
                                           s.message(), cred->username, repo.registry));
        if (std::string hint = creds_.UnsupportedHint(repo.registry); !hint.empty())
          s = Status(s.code(), s.message() + "; " + hint);
        return s;
      }
      if (r.status == 403) return ResponseError(r, what);
      if ((r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308) &&
          (req.method == "GET" || req.method == "HEAD")) {
        return FollowRedirects(req, r, auth);
      }
      return r;
    }
  }

  Response FollowRedirects(const Request& original, Response r, const std::string& auth) {
    Request req = original;
    auto [scheme, host] = Authority(original.url);
    for (int i = 0; i < kMaxRedirects; ++i) {
      std::string location = r.Header("location");
      if (location.empty()) return r;
      req.url = ResolveUrl(req.url, location);
      auto [s2, h2] = Authority(req.url);
      // Credentials stay with the registry host: never sent to object storage.
      bool same = s2 == scheme && h2 == host;
      r = Send(req, same ? auth : "");
      if (r.status < 300 || r.status >= 400) return r;
    }
    return r;
  }

  Result<Response> ManifestRequest(const Reference& ref, std::string method, std::string_view what) {
    return RetryResult<Response>(options_.retry, [&]() -> Result<Response> {
      Request req;
      req.method = method;
      GANTRY_ASSIGN_OR_RETURN(req.url, Url(ref, "/manifests/" + ref.Identifier()));
      req.headers = {fmt::format("Accept: {}, {}, {}, {}", media::kOciManifest, media::kOciIndex,
                                 media::kDockerManifest, media::kDockerManifestList)};
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(ref, Pull(ref), req));
      if (r.status != 200) return ResponseError(r, what);
      return r;
    });
  }

  Result<std::string> StartUpload(const Reference& repo, std::string_view what) {
    Request req;
    req.method = "POST";
    GANTRY_ASSIGN_OR_RETURN(req.url, Url(repo, "/blobs/uploads/"));
    GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Push(repo), req));
    if (r.status != 202) return ResponseError(r, std::string(what) + ": start upload");
    std::string loc = r.Header("location");
    if (loc.empty()) return InternalError("{}: the registry gave no upload location", what);
    return ResolveUrl(req.url, loc);
  }

  std::filesystem::path StateFile(const Reference& repo, std::string_view digest) const {
    if (options_.upload_state_dir.empty()) return {};
    return options_.upload_state_dir /
           (Sha256Hex(Name(repo) + "@" + std::string(digest)).substr(0, 32) + ".upload.json");
  }

  static UploadState LoadState(const std::filesystem::path& file) {
    UploadState s;
    if (file.empty()) return s;
    Result<std::string> text = ReadFile(file, 64 << 10);
    if (!text.ok()) return s;
    if (auto doc = value::ParseJson(*text, file.string()); doc.ok() && doc->IsMap()) {
      const value::Value* url = doc->Get("url");
      const value::Value* off = doc->Get("offset");
      if (url && url->IsString() && off && off->IsInt()) {
        s.url = std::string(url->AsString());
        s.offset = static_cast<uint64_t>(off->AsInt());
      }
    }
    return s;
  }

  void SaveState(const std::filesystem::path& file, const UploadState& s) const {
    if (file.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    value::Value doc = value::Value::Map();
    doc.Set("url", s.url);
    doc.Set("offset", static_cast<int64_t>(s.offset));
    // The upload URL is a capability on the registry: only the owner may read it.
    Status st = WriteFileAtomic(file, value::ToJson(doc), 0600);
    if (!st.ok()) log::Warn("oci: cannot save upload state: {}", st.message());
  }

  // The offset the registry holds for an upload session (GET upload URL → Range: 0-N), or an error
  // when the session is gone.
  Result<uint64_t> UploadOffset(const Reference& repo, UploadState& state, std::string_view what) {
    Request req;
    req.url = state.url;
    GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Push(repo), req));
    if (r.status != 204 && r.status != 200) return ResponseError(r, std::string(what) + ": upload status");
    if (std::string loc = r.Header("location"); !loc.empty()) state.url = ResolveUrl(req.url, loc);
    return RangeEnd(r.Header("range"));
  }

  // "0-N" → N+1; "" or "0-0" with nothing stored → 0.
  static uint64_t RangeEnd(std::string range) {
    if (range.starts_with("bytes=")) range = range.substr(6);
    size_t dash = range.find('-');
    if (dash == std::string::npos) return 0;
    uint64_t end = std::strtoull(range.c_str() + dash + 1, nullptr, 10);
    return end + 1;
  }

  Status UploadChunked(const Reference& repo, const Descriptor& desc, int fd, uint64_t size,
                       UploadState& state, const std::filesystem::path& state_file, bool& resumable,
                       const std::string& what) {
    if (!state.url.empty()) {
      Result<uint64_t> offset = UploadOffset(repo, state, what);
      if (offset.ok()) {
        // Distribution reports "0-0" for an empty session too; trust what it stores.
        if (*offset > size) offset = Result<uint64_t>(0);
        if (resumable && *offset > 0) {
          ++stats_.uploads_resumed;
          stats_.resumed_from += *offset;
          log::Info("oci: resuming upload of {} at byte {} of {}", desc.digest, *offset, size);
        }
        state.offset = *offset;
      } else {
        log::Info("oci: upload session of {} is gone ({}); starting over", desc.digest,
                  offset.status().message());
        state = {};
      }
      resumable = false;
    }
    if (state.url.empty()) {
      GANTRY_ASSIGN_OR_RETURN(state.url, StartUpload(repo, what));
      state.offset = 0;
      SaveState(state_file, state);
    }
    while (state.offset < size) {
      uint64_t len = std::min<uint64_t>(options_.chunk_size, size - state.offset);
      Request req;
      req.method = "PATCH";
      req.url = state.url;
      req.headers = {"Content-Type: application/octet-stream",
                     fmt::format("Content-Range: {}-{}", state.offset, state.offset + len - 1)};
      req.fd = fd;
      req.offset = state.offset;
      req.length = len;
      GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Push(repo), req));
      stats_.bytes_uploaded += r.uploaded;
      if (r.status != 202) {
        Status s = ResponseError(r, what + fmt::format(": chunk at {}", state.offset));
        // A refused range means our offset is stale: re-read it on the next attempt.
        if (r.status == 416) s = Status(Code::kUnavailable, s.message());
        return s;
      }
      if (std::string loc = r.Header("location"); !loc.empty()) state.url = ResolveUrl(req.url, loc);
      uint64_t stored = r.Header("range").empty() ? state.offset + len : RangeEnd(r.Header("range"));
      state.offset = stored;
      SaveState(state_file, state);
      if (options_.on_chunk) options_.on_chunk(desc.digest, state.offset);
    }
    Request put;
    put.method = "PUT";
    put.url = WithQuery(state.url, "digest=" + PercentEncode(desc.digest));
    put.headers = {"Content-Type: application/octet-stream"};
    GANTRY_ASSIGN_OR_RETURN(Response r, Do(repo, Push(repo), put));
    if (r.status != 201) {
      Status s = ResponseError(r, what + ": commit");
      if (r.status == 404) state = {};  // the session is gone: start over on retry
      return s;
    }
    return OkStatus();
  }

  CURL* Acquire() {
    {
      MutexLock lock(mu_);
      if (!pool_.empty()) {
        CURL* h = pool_.back();
        pool_.pop_back();
        curl_easy_reset(h);
        return h;
      }
    }
    return curl_easy_init();
  }

  void Release(CURL* h) {
    MutexLock lock(mu_);
    pool_.push_back(h);
  }

  // One HTTP exchange; no retries, no redirects. `auth` is a full header line or "".
  Response Send(const Request& req, const std::string& auth) {
    ++stats_.requests;
    Response resp;
    Transfer t{&req, &resp};
    CURL* h = Acquire();
    char error[CURL_ERROR_SIZE] = "";
    curl_slist* headers = nullptr;
    for (const std::string& hd : req.headers) headers = curl_slist_append(headers, hd.c_str());
    if (!auth.empty()) headers = curl_slist_append(headers, auth.c_str());
    headers = curl_slist_append(headers, "User-Agent: gantry/0.1");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout.count()));
    curl_easy_setopt(h, CURLOPT_NOPROXY, no_proxy_.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L << 10);
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to_);
    if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
      uint64_t length = req.fd >= 0 ? req.length : req.body.size();
      Request& mutable_req = const_cast<Request&>(req);
      if (req.fd < 0) mutable_req.length = req.body.size();
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      curl_easy_setopt(h, CURLOPT_READFUNCTION, OnRead);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
      curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    }
    resp.curl_code = curl_easy_perform(h);
    if (resp.curl_code != CURLE_OK) {
      resp.curl_error = error[0] ? error : curl_easy_strerror(resp.curl_code);
      if (t.sink_failed) resp.curl_code = CURLE_OK;  // the sink's own error is reported instead
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code) resp.status = code;
    resp.uploaded = t.sent;
    curl_slist_free_all(headers);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    Release(h);
    log::Debug("oci: {} {} -> {}", req.method, req.url, resp.status);
    return resp;
  }

  const RegistryOptions options_;
  const internal::CredentialSet creds_;
  internal::TokenCache tokens_;
  std::string no_proxy_;
  curl_slist* connect_to_ = nullptr;  // options_.connect_to in curl's form; null: none
  AtomicStats stats_;
  Mutex mu_;
  std::map<std::string, std::string> schemes_ GUARDED_BY(mu_);  // api host → http/https
  std::map<std::string, Challenge> challenges_ GUARDED_BY(mu_);  // registry → last challenge
  // token key → held while that token is being fetched
  std::map<std::string, std::unique_ptr<Mutex>> token_fetch_mu_ GUARDED_BY(mu_);
  std::vector<CURL*> pool_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<Registry>> NewHttpRegistry(RegistryOptions options) {
  GANTRY_ASSIGN_OR_RETURN(internal::DockerConfig docker, internal::LoadDockerConfig(options.docker_config));
  if (!options.ca_file.empty() && !std::filesystem::exists(options.ca_file))
    return InvalidArgumentError("CA file {} does not exist", options.ca_file);
  if (options.chunk_size == 0) return InvalidArgumentError("chunk size must be positive");
  for (const std::string& entry : options.connect_to) {
    // Both sides HOST:PORT, with a port of digits; an IPv6 literal in brackets keeps its colons.
    auto host_port = [](std::string_view hp) {
      size_t colon = hp.rfind(':');
      if (colon == std::string_view::npos || colon == 0 || colon + 1 == hp.size()) return false;
      std::string_view host = hp.substr(0, colon);
      if (host.find(':') != std::string_view::npos && !(host.front() == '[' && host.back() == ']')) return false;
      return std::all_of(hp.begin() + colon + 1, hp.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
             std::none_of(hp.begin(), hp.end(), [](char c) { return c == '=' || c == ' ' || c == '/'; });
    };
    size_t eq = entry.find('=');
    if (eq == std::string::npos || !host_port(std::string_view(entry).substr(0, eq)) ||
        !host_port(std::string_view(entry).substr(eq + 1))) {
      return InvalidArgumentError("connect-to {:?}: expected REGISTRY:PORT=ADDRESS:PORT (such as "
                                  "127.0.0.1:5000=10.88.0.1:5000)", entry);
    }
  }
  std::vector<Credential> own = options.credentials;
  internal::CredentialSet creds(std::move(own), std::move(docker));
  return std::unique_ptr<Registry>(new HttpRegistry(std::move(options), std::move(creds)));
}

Result<std::vector<std::string>> CredentialHosts(const RegistryOptions& options) {
  GANTRY_ASSIGN_OR_RETURN(internal::DockerConfig docker, internal::LoadDockerConfig(options.docker_config));
  std::set<std::string> hosts;
  for (const Credential& c : options.credentials) hosts.insert(internal::NormalizeRegistryHost(c.host));
  for (const auto& [host, cred] : docker.auths) hosts.insert(host);
  return std::vector<std::string>(hosts.begin(), hosts.end());
}

std::string RegistryHost(std::string_view host) { return internal::NormalizeRegistryHost(host); }

}  // namespace gantry::oci
