// HttpClient: the Kubernetes API over one HTTP/2 connection per cluster (libcurl multi).
//
// One worker thread owns the curl multi handle. Callers submit requests through a queue and wait on
// a future; at most max_in_flight transfers run at once, multiplexed as HTTP/2 streams on one
// connection (PIPEWAIT makes new transfers wait for the connection rather than open another).
// Watches stream their body into a per-watch queue that the watching thread drains, so a slow
// handler never blocks the worker.

#include <algorithm>
#include <curl/curl.h>

#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/mutex.h"
#include "base/path.h"
#include "base/percent.h"
#include "base/retry.h"
#include "kube/exec_stream.h"
#include "kube/internal/exec.h"
#include "kube/kube.h"

namespace gantry::kube {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Body chunks of a streaming response, handed from the worker to the watching thread.
struct Stream {
  Mutex mu;
  CondVar cv;
  std::string buffer GUARDED_BY(mu);  // bytes received, not yet consumed
  bool done GUARDED_BY(mu) = false;   // the transfer ended
  std::atomic<bool> cancelled{false};
};

struct Request {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;
  std::chrono::milliseconds timeout{0};  // 0: none (watches)
  std::shared_ptr<Stream> stream;        // set: stream the body instead of buffering it
  // Set: the exec plugin's credential, sent instead of the config's token and certificate.
  std::shared_ptr<const internal::ExecCredential> credential;
};

// The most of a response body kept in memory (lists are paged, Pod logs asked with limitBytes);
// a larger body aborts the request.
constexpr size_t kMaxBodyBytes = 64 << 20;

struct Response {
  long status = 0;
  std::string body;
  std::string retry_after;
  CURLcode curl_code = CURLE_OK;
  std::string curl_error;
  bool too_large = false;  // the body passed kMaxBodyBytes: the transfer was aborted
};

class Transport {
 public:
  // `connect_to` (host:port:real-host:real-port) routes URLs that name tls_server_name to the
  // real server, so the certificate is checked against tls_server_name.
  Transport(RestConfig config, ClientOptions options, std::string connect_to)
      : config_(std::move(config)), options_(options) {
    if (!connect_to.empty()) connect_to_ = curl_slist_append(nullptr, connect_to.c_str());
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    curl_multi_setopt(multi_, CURLMOPT_MAX_CONCURRENT_STREAMS, static_cast<long>(options_.max_in_flight));
    worker_ = std::thread([this] { Loop(); });
  }

  ~Transport() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    curl_multi_wakeup(multi_);
    worker_.join();
    curl_multi_cleanup(multi_);
    curl_slist_free_all(connect_to_);
  }

  // Ends the transfer of a stream now (its callbacks would notice within the worker's 200 ms poll).
  void Cancel(Stream& stream) {
    stream.cancelled = true;
    cancels_ = true;
    curl_multi_wakeup(multi_);
  }

  std::future<Response> Submit(Request req) {
    auto job = std::make_unique<Job>();
    job->req = std::move(req);
    std::future<Response> f = job->promise.get_future();
    {
      MutexLock lock(mu_);
      queue_.push_back(std::move(job));
    }
    curl_multi_wakeup(multi_);
    return f;
  }

  std::string Token() {
    if (config_.token_file.empty()) return config_.token;
    MutexLock lock(token_mu_);
    auto now = SteadyClock::now();
    if (token_.empty() || now - token_read_ > std::chrono::seconds(60)) {
      auto t = ReadFile(config_.token_file, 64 << 10);
      if (t.ok()) {
        token_ = *t;
        while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r')) token_.pop_back();
        token_read_ = now;
      } else if (token_.empty()) {
        log::Warn("kube: cannot read token file {}: {}", config_.token_file, t.status().message());
      }
    }
    return token_;
  }

 private:
  struct Job {
    Request req;
    Response resp;
    std::promise<Response> promise;
    curl_slist* headers = nullptr;
    char error[CURL_ERROR_SIZE] = {0};
  };

  static size_t OnBody(char* data, size_t size, size_t n, void* p) {
    auto* job = static_cast<Job*>(p);
    size_t len = size * n;
    if (job->req.stream) {
      Stream& s = *job->req.stream;
      if (s.cancelled.load()) return 0;  // aborts the transfer
      {
        MutexLock lock(s.mu);
        s.buffer.append(data, len);
      }
      s.cv.NotifyOne();
      return len;
    }
    if (job->resp.body.size() + len > kMaxBodyBytes) {
      job->resp.too_large = true;
      return 0;  // aborts the transfer
    }
    job->resp.body.append(data, len);
    return len;
  }

  static size_t OnHeader(char* data, size_t size, size_t n, void* p) {
    auto* job = static_cast<Job*>(p);
    std::string_view line(data, size * n);
    constexpr std::string_view kRetryAfter = "retry-after:";
    if (line.size() > kRetryAfter.size()) {
      std::string lower(line.substr(0, kRetryAfter.size()));
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == kRetryAfter) {
        std::string_view v = line.substr(kRetryAfter.size());
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
        job->resp.retry_after = std::string(v);
      }
    }
    return size * n;
  }

  static int OnProgress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* job = static_cast<Job*>(p);
    return job->req.stream && job->req.stream->cancelled.load() ? 1 : 0;
  }

  CURL* Prepare(Job* job) {
    CURL* h = curl_easy_init();
    const Request& r = job->req;
    curl_easy_setopt(h, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    if (r.timeout.count() > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (r.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (!r.body.empty() || r.method == "POST" || r.method == "PATCH" || r.method == "PUT") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    }
    for (const std::string& hd : r.headers) job->headers = curl_slist_append(job->headers, hd.c_str());
    std::string token = r.credential ? r.credential->token : Token();
    if (!token.empty()) {
      job->headers = curl_slist_append(job->headers, ("Authorization: Bearer " + token).c_str());
    } else if (!config_.username.empty()) {
      curl_easy_setopt(h, CURLOPT_USERNAME, config_.username.c_str());
      curl_easy_setopt(h, CURLOPT_PASSWORD, config_.password.c_str());
    }
    job->headers = curl_slist_append(job->headers, "User-Agent: gantry/0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, job->headers);
    if (!config_.ca_pem.empty()) {
      curl_blob ca{const_cast<char*>(config_.ca_pem.data()), config_.ca_pem.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (config_.insecure_skip_tls_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    const std::string& cert_pem =
        r.credential && !r.credential->client_cert_pem.empty() ? r.credential->client_cert_pem : config_.client_cert_pem;
    const std::string& key_pem =
        r.credential && !r.credential->client_key_pem.empty() ? r.credential->client_key_pem : config_.client_key_pem;
    if (!cert_pem.empty()) {
      curl_blob cert{const_cast<char*>(cert_pem.data()), cert_pem.size(), CURL_BLOB_COPY};
      curl_blob key{const_cast<char*>(key_pem.data()), key_pem.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
      curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    }
    if (!config_.proxy_url.empty()) curl_easy_setopt(h, CURLOPT_PROXY, config_.proxy_url.c_str());
    if (connect_to_) curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to_);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, job);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, job);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, job->error);
    if (r.stream) {
      curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, OnProgress);
      curl_easy_setopt(h, CURLOPT_XFERINFODATA, job);
    }
    curl_easy_setopt(h, CURLOPT_PRIVATE, job);
    return h;
  }

  void Finish(CURL* h, CURLcode code) {
    Job* job = nullptr;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, &job);
    std::unique_ptr<Job> owned(job);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &job->resp.status);
    job->resp.curl_code = code;
    if (log::GetLevel() <= log::Level::kDebug) {
      long version = 0;
      double seconds = 0;
      curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
      curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &seconds);
      log::Debug("kube: {} {} -> {} ({}, {:.1f} ms)", job->req.method, job->req.url, job->resp.status,
                 version == CURL_HTTP_VERSION_2_0 ? "HTTP/2" : "HTTP/1.x", seconds * 1000);
    }
    if (code != CURLE_OK) job->resp.curl_error = job->error[0] ? job->error : curl_easy_strerror(code);
    curl_multi_remove_handle(multi_, h);
    active_.erase(h);
    curl_easy_cleanup(h);
    curl_slist_free_all(job->headers);
    if (job->req.stream) {
      {
        MutexLock lock(job->req.stream->mu);
        job->req.stream->done = true;
      }
      job->req.stream->cv.NotifyAll();
    }
    --in_flight_;
    job->promise.set_value(std::move(job->resp));
  }

  void Loop() {
    while (true) {
      {
        MutexLock lock(mu_);
        if (stop_) break;
        while (!queue_.empty() && in_flight_ < options_.max_in_flight) {
          Job* job = queue_.front().release();
          queue_.pop_front();
          CURL* h = Prepare(job);
          curl_multi_add_handle(multi_, h);
          active_.insert(h);
          ++in_flight_;
        }
      }
      if (cancels_.exchange(false)) {
        std::vector<CURL*> cancelled;
        for (CURL* h : active_) {
          Job* job = nullptr;
          curl_easy_getinfo(h, CURLINFO_PRIVATE, &job);
          if (job->req.stream && job->req.stream->cancelled.load()) cancelled.push_back(h);
        }
        for (CURL* h : cancelled) Finish(h, CURLE_ABORTED_BY_CALLBACK);
      }
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
        if (msg->msg == CURLMSG_DONE) Finish(msg->easy_handle, msg->data.result);
      }
      curl_multi_poll(multi_, nullptr, 0, 200, nullptr);
    }
    // Shutting down: fail what is queued or running.
    std::deque<std::unique_ptr<Job>> queued;
    {
      MutexLock lock(mu_);
      queued.swap(queue_);
    }
    for (auto& job : queued) {
      job->resp.curl_code = CURLE_ABORTED_BY_CALLBACK;
      job->resp.curl_error = "client shut down";
      job->promise.set_value(std::move(job->resp));
    }
    while (!active_.empty()) Finish(*active_.begin(), CURLE_ABORTED_BY_CALLBACK);
  }

  const RestConfig config_;
  const ClientOptions options_;
  curl_slist* connect_to_ = nullptr;
  CURLM* multi_;
  std::thread worker_;
  Mutex mu_;
  std::deque<std::unique_ptr<Job>> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  int in_flight_ = 0;                       // worker thread only
  std::set<CURL*> active_;                  // worker thread only
  std::atomic<bool> cancels_{false};        // a stream was cancelled: Loop ends its transfer
  Mutex token_mu_;
  std::string token_ GUARDED_BY(token_mu_);
  SteadyClock::time_point token_read_ GUARDED_BY(token_mu_);
};

// The Status for a failed response: the apiserver's message, reason and causes when it sent a
// Status object, else the HTTP code and body.
Status ErrorFromResponse(const Response& r, std::string_view what) {
  if (r.curl_code != CURLE_OK) {
    Code code = r.curl_code == CURLE_OPERATION_TIMEDOUT ? Code::kDeadlineExceeded : Code::kUnavailable;
    return Status(code, fmt::format("{}: {}", what, r.curl_error));
  }
  std::string message, reason;
  std::vector<std::string> causes;
  if (auto parsed = value::ParseJson(r.body, "response"); parsed.ok() && parsed->IsMap()) {
    message = value::StringAt(&*parsed, {"message"});
    reason = value::StringAt(&*parsed, {"reason"});
    if (const value::Value* c = parsed->Find({"details", "causes"}); c && c->IsSeq()) {
      for (const value::Value& cause : c->items()) {
        std::string field = value::StringAt(&cause, {"field"}), m = value::StringAt(&cause, {"message"});
        causes.push_back(field.empty() ? m : field + ": " + m);
      }
    }
  }
  if (message.empty()) {
    message = r.body.size() > 512 ? r.body.substr(0, 512) + "..." : r.body;
    if (message.empty()) message = fmt::format("HTTP {}", r.status);
  }
  Code code = Code::kUnknown;
  switch (r.status) {
    case 400: case 422: code = Code::kInvalidArgument; break;
    case 401: code = Code::kUnauthenticated; break;
    case 403: code = Code::kPermissionDenied; break;
    case 404: code = Code::kNotFound; break;
    case 405: code = Code::kUnimplemented; break;
    case 409: code = reason == "AlreadyExists" ? Code::kAlreadyExists : Code::kAborted; break;
    case 410: code = Code::kOutOfRange; break;
    case 413: code = Code::kInvalidArgument; break;
    case 415: code = Code::kInvalidArgument; break;
    case 429: code = Code::kResourceExhausted; break;
    case 501: code = Code::kUnimplemented; break;
    case 504: code = Code::kDeadlineExceeded; break;
    default: if (r.status >= 500) code = Code::kUnavailable; break;
  }
  std::string text = fmt::format("{}: {}", what, message);
  if (!reason.empty()) text += fmt::format(" (reason {})", reason);
  // The message of an Invalid status already lists its causes; other reasons get them appended.
  if (reason != "Invalid") {
    for (const std::string& c : causes) text += "; " + c;
  }
  Status s(code, text);
  if (!r.retry_after.empty()) {
    char* end = nullptr;
    long secs = std::strtol(r.retry_after.c_str(), &end, 10);
    if (end && *end == '\0' && secs >= 0) s.set_retry_after(std::chrono::seconds(std::min(secs, 60L)));
  }
  return s;
}

constexpr char kJson[] = "application/json";

class HttpClient final : public Client {
 public:
  // `original` is the config as loaded (before tls-server-name routing), for an exec plugin's
  // cluster info.
  HttpClient(RestConfig config, ClientOptions options, std::string connect_to, const RestConfig& original)
      : config_(config), options_(options),
        shared_(std::make_shared<Shared>(std::move(config), options, std::move(connect_to), original)) {}

  // A view of `root` that sends every request as `who`: the same connection, discovery and request
  // count, its own watches.
  HttpClient(const HttpClient& root, const Impersonation& who)
      : config_(root.config_), options_(root.options_), shared_(root.shared_) {
    identity_.push_back("Impersonate-User: " + who.user);
    for (const std::string& g : who.groups) identity_.push_back("Impersonate-Group: " + g);
  }

  // Over a WebSocket connection of its own (exec_stream.cc): the address and credentials of the
  // config as loaded (tls-server-name checked in the certificate), the impersonation headers.
  Result<int> Exec(const ExecRequest& request, const ExecStreams& streams) override {
    const RestConfig& c = shared_->original;
    if (!c.proxy_url.empty()) {
      return UnimplementedError("exec into {}/{}: not through the proxy {} of the kubeconfig", request.namespace_,
                                request.pod, c.proxy_url);
    }
    WebSocketTarget t{.server = c.server,
                      .tls_server_name = c.tls_server_name,
                      .ca_pem = c.ca_pem,
                      .insecure_skip_tls_verify = c.insecure_skip_tls_verify,
                      .client_cert_pem = c.client_cert_pem,
                      .client_key_pem = c.client_key_pem,
                      .headers = identity_};
    std::string token = transport_.Token();
    if (exec_ != nullptr) {
      auto cred = exec_->Get();
      if (!cred.ok()) return cred.status();
      if (!(*cred)->token.empty()) token = (*cred)->token;
      if (!(*cred)->client_cert_pem.empty()) {
        t.client_cert_pem = (*cred)->client_cert_pem;
        t.client_key_pem = (*cred)->client_key_pem;
      }
    }
    if (!token.empty()) t.headers.push_back("Authorization: Bearer " + token);
    requests_++;
    return ExecOverWebSocket(t, request, streams);
  }

  Result<std::unique_ptr<Client>> Impersonate(const Impersonation& who) override {
    if (who.user.empty()) return InvalidArgumentError("kube client: impersonation needs a user name");
    // A header value cannot carry a line break; a name with one is an attempt at header injection.
    auto bad = [](std::string_view v) { return v.find_first_of("\r\n") != std::string_view::npos; };
    if (bad(who.user) || std::ranges::any_of(who.groups, bad)) {
      return InvalidArgumentError("kube client: impersonated user or group contains a line break");
    }
    if (!identity_.empty()) return FailedPreconditionError("kube client: already impersonating; impersonate from the original client");
    return std::unique_ptr<Client>(new HttpClient(*this, who));
  }

  Result<ResourceInfo> Resolve(std::string_view api_version, std::string_view kind) override {
    std::string key = fmt::format("{}/{}", api_version, kind);
    {
      MutexLock lock(shared_->mu);
      bool fresh = SteadyClock::now() - shared_->discovered_at < options_.discovery_ttl;
      if (fresh) {
        if (auto it = shared_->mapping.find(key); it != shared_->mapping.end()) return it->second;
      }
    }
    GANTRY_RETURN_IF_ERROR(Discover(/*only_if_stale_for=*/std::chrono::seconds(1)));
    MutexLock lock(shared_->mu);
    if (auto it = shared_->mapping.find(key); it != shared_->mapping.end()) return it->second;
    return NotFoundError("the server does not serve kind {:?} in {}", kind, api_version);
  }

  Result<value::Value> Get(const ObjectRef& ref) override {
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("GET", path, "", "", "get " + ref.ToString()));
    return ParseBody(r, "get " + ref.ToString());
  }

  Result<ObjectList> List(std::string_view api_version, std::string_view kind,
                          std::string_view namespace_, const ListOptions& options) override {
    GANTRY_ASSIGN_OR_RETURN(ResourceInfo info, Resolve(api_version, kind));
    std::string what = fmt::format("list {} {}", api_version, kind);
    std::string base = CollectionPath(info, namespace_);
    ObjectList out;
    std::string cont;
    do {
      std::string q = fmt::format("?limit={}", options.page_size);
      if (!options.label_selector.empty()) q += "&labelSelector=" + PercentEncode(options.label_selector);
      if (!options.field_selector.empty()) q += "&fieldSelector=" + PercentEncode(options.field_selector);
      if (!cont.empty()) q += "&continue=" + PercentEncode(cont);
      GANTRY_ASSIGN_OR_RETURN(Response r, Do("GET", base + q, "", "", what));
      GANTRY_ASSIGN_OR_RETURN(value::Value list, ParseBody(r, what));
      if (const value::Value* items = list.Get("items"); items && items->IsSeq()) {
        for (const value::Value& item : items->items()) {
          // Items of a list carry no apiVersion/kind; restore them so they are whole objects.
          value::Value obj = item;
          obj.Set("apiVersion", info.api_version());
          obj.Set("kind", info.kind);
          if (options.each) {
            options.each(std::move(obj));
          } else {
            out.items.push_back(std::move(obj));
          }
        }
      }
      const value::Value* meta = list.Get("metadata");
      cont = value::StringAt(meta, {"continue"});
      out.resource_version = value::StringAt(meta, {"resourceVersion"});
    } while (!cont.empty());
    return out;
  }

  Result<value::Value> Apply(const value::Value& object, const ApplyOptions& options) override {
    ObjectRef ref = RefOf(object);
    std::string what = "apply " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    path += "?fieldManager=" + PercentEncode(options.field_manager);
    if (options.force) path += "&force=true";
    if (options.dry_run) path += "&dryRun=All";
    if (options.field_validation == ApplyOptions::FieldValidation::kStrict) path += "&fieldValidation=Strict";
    if (options.field_validation == ApplyOptions::FieldValidation::kIgnore) path += "&fieldValidation=Ignore";
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("PATCH", path, value::ToJson(object),
                                           "application/apply-patch+yaml", what));
    return ParseBody(r, what);
  }

  Result<value::Value> ApplyStatus(const value::Value& object, const ApplyOptions& options) override {
    ObjectRef ref = RefOf(object);
    std::string what = "apply status of " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    path += "/status?fieldManager=" + PercentEncode(options.field_manager);
    if (options.force) path += "&force=true";
    if (options.dry_run) path += "&dryRun=All";
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("PATCH", path, value::ToJson(object),
                                           "application/apply-patch+yaml", what));
    return ParseBody(r, what);
  }

  Result<value::Value> Replace(const value::Value& object) override {
    ObjectRef ref = RefOf(object);
    std::string what = "replace " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("PUT", path, value::ToJson(object), kJson, what));
    return ParseBody(r, what);
  }

  Result<value::Value> JsonPatch(const ObjectRef& ref, std::string_view patch) override {
    std::string what = "patch " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("PATCH", path, std::string(patch), "application/json-patch+json", what));
    return ParseBody(r, what);
  }

  Result<value::Value> Create(const value::Value& object, const CreateOptions& options) override {
    ObjectRef ref = RefOf(object);
    std::string what = "create " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(ResourceInfo info, Resolve(ref.api_version, ref.kind));
    if (info.namespaced && ref.namespace_.empty()) {
      return InvalidArgumentError("{}: namespaced kind without metadata.namespace", what);
    }
    std::string path = CollectionPath(info, ref.namespace_);
    std::string sep = "?";
    if (!options.field_manager.empty()) {
      path += sep + "fieldManager=" + PercentEncode(options.field_manager);
      sep = "&";
    }
    if (options.dry_run) path += sep + "dryRun=All";
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("POST", path, value::ToJson(object), kJson, what));
    return ParseBody(r, what);
  }

  Status Delete(const ObjectRef& ref, const DeleteOptions& options) override {
    std::string what = "delete " + ref.ToString();
    GANTRY_ASSIGN_OR_RETURN(std::string path, ObjectPath(ref, true));
    value::Value body = value::Value::Map();
    body.Set("apiVersion", "v1");
    body.Set("kind", "DeleteOptions");
    const char* policy = options.propagation == Propagation::kForeground ? "Foreground"
                         : options.propagation == Propagation::kOrphan   ? "Orphan"
                                                                          : "Background";
    body.Set("propagationPolicy", policy);
    if (options.dry_run) {
      value::Value dry = value::Value::Seq();
      dry.Append("All");
      body.Set("dryRun", dry);
    }
    if (options.precondition_uid) {
      value::Value pre = value::Value::Map();
      pre.Set("uid", *options.precondition_uid);
      body.Set("preconditions", pre);
    }
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("DELETE", path, value::ToJson(body), kJson, what));
    (void)r;
    return OkStatus();
  }

  Status Watch(std::string_view api_version, std::string_view kind, std::string_view namespace_,
               const WatchOptions& options, const WatchHandler& handler) override {
    GANTRY_ASSIGN_OR_RETURN(ResourceInfo info, Resolve(api_version, kind));
    std::string what = fmt::format("watch {} {}", api_version, kind);
    std::string url = config_.server + CollectionPath(info, namespace_) +
                      fmt::format("?watch=1&timeoutSeconds={}", options.timeout.count());
    if (options.bookmarks) url += "&allowWatchBookmarks=true";
    if (!options.resource_version.empty()) url += "&resourceVersion=" + PercentEncode(options.resource_version);
    if (!options.label_selector.empty()) url += "&labelSelector=" + PercentEncode(options.label_selector);
    Request req;
    req.url = url;
    req.headers = {std::string("Accept: ") + kJson};
    req.headers.insert(req.headers.end(), identity_.begin(), identity_.end());
    req.stream = std::make_shared<Stream>();
    if (exec_ != nullptr) {
      auto c = exec_->Get();
      if (!c.ok()) return c.status().WithContext(what);
      req.credential = *c;
    }
    auto credential = req.credential;
    auto stream = req.stream;
    if (options.stop != nullptr) {
      MutexLock lock(mu_);
      watches_.emplace(options.stop, stream);
    }
    struct Unregister {
      HttpClient& client;
      const std::atomic<bool>* stop;
      Stream* stream;
      ~Unregister() {
        if (stop == nullptr) return;
        MutexLock lock(client.mu_);
        auto [begin, end] = client.watches_.equal_range(stop);
        for (auto it = begin; it != end; ++it) {
          if (it->second.get() == stream) {
            client.watches_.erase(it);
            break;
          }
        }
      }
    } unregister{*this, options.stop, stream.get()};
    ++requests_;
    std::future<Response> fut = transport_.Submit(std::move(req));

    Status result;
    std::string pending;
    bool stop = false;
    while (!stop) {
      std::string chunk;
      bool done;
      {
        MutexLock lock(stream->mu);
        auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };
        auto ready = [&]() REQUIRES(stream->mu) { return !stream->buffer.empty() || stream->done || stopped(); };
        if (options.stop == nullptr) {
          stream->cv.Wait(stream->mu, ready);
        } else if (!stream->cv.WaitFor(stream->mu, std::chrono::milliseconds(200), ready)) {
          continue;
        }
        if (stopped()) {
          stop = true;
          break;
        }
        chunk.swap(stream->buffer);
        done = stream->done;
      }
      pending += chunk;
      size_t nl;
      while (!stop && (nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (line.empty()) continue;
        auto ev = value::ParseJson(line, "watch event");
        if (!ev.ok()) {
          result = ev.status().WithContext(what);
          stop = true;
          break;
        }
        std::string type = value::StringAt(&*ev, {"type"});
        const value::Value* obj = ev->Get("object");
        if (type == "ERROR") {
          Response fake;
          fake.status = obj && obj->Get("code") && obj->Get("code")->IsInt() ? obj->Get("code")->AsInt() : 500;
          fake.body = obj ? value::ToJson(*obj) : "";
          result = ErrorFromResponse(fake, what);
          stop = true;
          break;
        }
        WatchEvent event{EventType::kAdded, obj ? *obj : value::Value()};
        if (type == "MODIFIED") event.type = EventType::kModified;
        else if (type == "DELETED") event.type = EventType::kDeleted;
        else if (type == "BOOKMARK") event.type = EventType::kBookmark;
        if (!handler(event)) stop = true;
      }
      if (done) break;
    }
    if (stop) transport_.Cancel(*stream);
    Response r = fut.get();
    if (!result.ok()) return result;
    if (stop) return OkStatus();
    if (r.curl_code != CURLE_OK || r.status >= 300) {
      r.body = pending;
      // The next watch (the caller restarts it) gets a fresh credential.
      if (r.status == 401 && exec_ != nullptr) (void)exec_->Refresh(credential);
      return ErrorFromResponse(r, what);
    }
    return OkStatus();
  }

  void WakeWatches(const std::atomic<bool>* stop) override {
    std::vector<std::shared_ptr<Stream>> streams;
    {
      MutexLock lock(mu_);
      auto [begin, end] = watches_.equal_range(stop);
      for (auto it = begin; it != end; ++it) streams.push_back(it->second);
    }
    for (const auto& s : streams) {
      MutexLock lock(s->mu);
      s->cv.NotifyAll();
    }
  }

  void InvalidateDiscovery() override {
    MutexLock lock(shared_->mu);
    shared_->discovered_at = SteadyClock::time_point{};
  }

  Result<std::string> GetRaw(std::string_view path) override {
    GANTRY_ASSIGN_OR_RETURN(Response r, Do("GET", std::string(path), "", "", fmt::format("get {}", path)));
    return std::move(r.body);
  }

  Result<std::vector<ResourceInfo>> ServedKinds() override {
    GANTRY_RETURN_IF_ERROR(Discover(options_.discovery_ttl));  // only when the cache is that old
    MutexLock lock(shared_->mu);
    std::vector<ResourceInfo> out;
    out.reserve(shared_->mapping.size());
    for (const auto& [key, info] : shared_->mapping) out.push_back(info);
    return out;
  }

  uint64_t request_count() const override { return requests_.load(); }

 private:
  // One request with bounded retries of transient failures; an error Status for non-2xx.
  Result<Response> Do(const std::string& method, const std::string& path, const std::string& body,
                      const std::string& content_type, const std::string& what,
                      const std::string& accept = kJson) {
    Response out;
    std::shared_ptr<const internal::ExecCredential> credential;
    if (exec_ != nullptr) {
      auto c = exec_->Get();
      if (!c.ok()) return c.status().WithContext(what);
      credential = *c;
    }
    bool refreshed = false;  // after a 401 the plugin runs once more, and the request is sent again
    BackoffPolicy policy{.initial = std::chrono::milliseconds(100),
                         .max_delay = std::chrono::milliseconds(5000),
                         .max_attempts = options_.max_attempts,
                         .max_elapsed = options_.request_timeout * 2};
    Status s = Retry(policy, [&]() -> Status {
      Request req;
      req.method = method;
      req.url = config_.server + path;
      req.body = body;
      req.timeout = options_.request_timeout;
      req.headers.push_back("Accept: " + accept);
      if (!content_type.empty()) req.headers.push_back("Content-Type: " + content_type);
      req.headers.insert(req.headers.end(), identity_.begin(), identity_.end());
      req.credential = credential;
      ++requests_;
      Response r = transport_.Submit(Request(req)).get();
      if (r.status == 401 && exec_ != nullptr && !refreshed) {
        refreshed = true;
        auto c = exec_->Refresh(credential);
        if (!c.ok()) return c.status().WithContext(what + ": after a 401");
        credential = *c;
        req.credential = credential;
        ++requests_;
        r = transport_.Submit(std::move(req)).get();
      }
      if (r.too_large) {
        out = std::move(r);
        return OkStatus();  // not worth a retry: checked below
      }
      if (r.curl_code == CURLE_OK && r.status >= 200 && r.status < 300) {
        out = std::move(r);
        return OkStatus();
      }
      Status err = ErrorFromResponse(r, what);
      // A 409 conflict is a precondition failure of this request, not something a retry fixes;
      // a 500 from the apiserver is usually etcd being slow and worth one more try.
      if (err.code() == Code::kAborted) return Status(Code::kFailedPrecondition, err.message());
      if (r.status == 500) return Status(Code::kUnavailable, err.message());
      return err;
    });
    if (!s.ok()) return s;
    if (out.too_large) {
      return ResourceExhaustedError("{}: the response is larger than {} bytes", what, kMaxBodyBytes);
    }
    return out;
  }

  Result<value::Value> ParseBody(const Response& r, const std::string& what) {
    auto v = value::ParseJson(r.body, "response");
    if (!v.ok()) return v.status().WithContext(what + ": malformed response");
    return std::move(v).value();
  }

  std::string CollectionPath(const ResourceInfo& info, std::string_view namespace_) const {
    std::string p = info.group.empty() ? "/api/" + info.version : "/apis/" + info.group + "/" + info.version;
    if (info.namespaced && !namespace_.empty()) p += "/namespaces/" + std::string(namespace_);
    return p + "/" + info.resource;
  }

  Result<std::string> ObjectPath(const ObjectRef& ref, bool need_name) {
    if (ref.api_version.empty() || ref.kind.empty()) {
      return InvalidArgumentError("{}: object has no apiVersion or kind", ref.ToString());
    }
    GANTRY_ASSIGN_OR_RETURN(ResourceInfo info, Resolve(ref.api_version, ref.kind));
    if (info.namespaced && ref.namespace_.empty()) {
      return InvalidArgumentError("{}: {} is namespaced but the object has no metadata.namespace",
                                  ref.ToString(), ref.kind);
    }
    if (!info.namespaced && !ref.namespace_.empty()) {
      return InvalidArgumentError("{}: {} is cluster-scoped and cannot have a namespace", ref.ToString(),
                                  ref.kind);
    }
    if (need_name && ref.name.empty()) return InvalidArgumentError("{}: object has no name", ref.ToString());
    std::string ns = info.namespaced ? ref.namespace_ : "";
    return CollectionPath(info, ns) + "/" + PercentEncode(ref.name);
  }

  // Refreshes the REST mapping unless it was refreshed less than `min_age` ago.
  Status Discover(std::chrono::seconds min_age) {
    MutexLock discover_lock(shared_->discover_mu);
    {
      MutexLock lock(shared_->mu);
      if (SteadyClock::now() - shared_->discovered_at < min_age) return OkStatus();
    }
    std::map<std::string, ResourceInfo> mapping;
    for (const char* root : {"/api", "/apis"}) {
      constexpr char kAccept[] =
          "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
          "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
      std::string what = fmt::format("discovery {}", root);
      GANTRY_ASSIGN_OR_RETURN(Response r, Do("GET", root, "", "", what, kAccept));
      GANTRY_ASSIGN_OR_RETURN(value::Value doc, ParseBody(r, what));
      if (value::StringAt(&doc, {"kind"}) == "APIGroupDiscoveryList") {
        AddAggregated(doc, mapping);
      } else {
        GANTRY_RETURN_IF_ERROR(AddLegacy(root, doc, mapping));
      }
    }
    MutexLock lock(shared_->mu);
    shared_->mapping = std::move(mapping);
    shared_->discovered_at = SteadyClock::now();
    return OkStatus();
  }

  static void AddAggregated(const value::Value& doc, std::map<std::string, ResourceInfo>& mapping) {
    const value::Value* items = doc.Get("items");
    if (!items || !items->IsSeq()) return;
    for (const value::Value& group : items->items()) {
      const value::Value* meta = group.Get("metadata");
      std::string gname = value::StringAt(meta, {"name"});
      const value::Value* versions = group.Get("versions");
      if (!versions || !versions->IsSeq()) continue;
      for (const value::Value& ver : versions->items()) {
        std::string vname = value::StringAt(&ver, {"version"});
        const value::Value* resources = ver.Get("resources");
        if (!resources || !resources->IsSeq()) continue;
        for (const value::Value& res : resources->items()) {
          const value::Value* rk = res.Get("responseKind");
          ResourceInfo info;
          info.group = gname;
          info.version = vname;
          info.kind = value::StringAt(rk, {"kind"});
          info.resource = value::StringAt(&res, {"resource"});
          info.namespaced = value::StringAt(&res, {"scope"}) == "Namespaced";
          if (const value::Value* verbs = res.Get("verbs"); verbs && verbs->IsSeq()) {
            for (const value::Value& v : verbs->items()) {
              if (v.IsString()) info.verbs.emplace_back(v.AsString());
            }
          }
          if (info.kind.empty() || info.resource.empty()) continue;
          mapping.try_emplace(info.api_version() + "/" + info.kind, std::move(info));
        }
      }
    }
  }

  Status AddLegacy(std::string_view root, const value::Value& doc, std::map<std::string, ResourceInfo>& mapping) {
    std::vector<std::string> group_versions;
    if (root == "/api") {
      if (const value::Value* vs = doc.Get("versions"); vs && vs->IsSeq()) {
        for (const value::Value& v : vs->items()) group_versions.emplace_back(v.AsString());
      }
    } else if (const value::Value* groups = doc.Get("groups"); groups && groups->IsSeq()) {
      for (const value::Value& g : groups->items()) {
        if (const value::Value* vs = g.Get("versions"); vs && vs->IsSeq()) {
          for (const value::Value& v : vs->items()) group_versions.push_back(value::StringAt(&v, {"groupVersion"}));
        }
      }
    }
    for (const std::string& gv : group_versions) {
      std::string path = (root == "/api" ? "/api/" : "/apis/") + gv;
      GANTRY_ASSIGN_OR_RETURN(Response r, Do("GET", path, "", "", "discovery " + path));
      GANTRY_ASSIGN_OR_RETURN(value::Value list, ParseBody(r, "discovery " + path));
      auto [group, version] = SplitApiVersion(gv);
      if (const value::Value* res = list.Get("resources"); res && res->IsSeq()) {
        for (const value::Value& item : res->items()) {
          std::string name = value::StringAt(&item, {"name"});
          if (name.find('/') != std::string::npos) continue;  // a subresource
          ResourceInfo info{group, version, value::StringAt(&item, {"kind"}), name,
                            item.Get("namespaced") && item.Get("namespaced")->IsBool() &&
                                item.Get("namespaced")->AsBool(),
                            {}};
          mapping.try_emplace(info.api_version() + "/" + info.kind, std::move(info));
        }
      }
    }
    return OkStatus();
  }

  // What a client and its impersonating views share.
  struct Shared {
    Shared(RestConfig config, const ClientOptions& options, std::string connect_to, const RestConfig& original)
        : original(original),
          exec(original.exec ? std::make_unique<internal::ExecCredentials>(original) : nullptr),
          transport(std::move(config), options, std::move(connect_to)) {}
    const RestConfig original;  // as loaded: the address exec sessions connect to
    const std::unique_ptr<internal::ExecCredentials> exec;  // set: credentials come from a plugin
    Transport transport;
    std::atomic<uint64_t> requests{0};
    Mutex discover_mu;  // one discovery at a time
    Mutex mu;
    std::map<std::string, ResourceInfo> mapping GUARDED_BY(mu);  // "apiVersion/kind"
    SteadyClock::time_point discovered_at GUARDED_BY(mu);
  };

  const RestConfig config_;
  const ClientOptions options_;
  const std::shared_ptr<Shared> shared_;
  Transport& transport_ = shared_->transport;
  internal::ExecCredentials* const exec_ = shared_->exec.get();
  std::atomic<uint64_t>& requests_ = shared_->requests;
  std::vector<std::string> identity_;  // Impersonate-* headers of every request ("" : ourselves)
  Mutex mu_;
  // Running watches by their WatchOptions::stop, for WakeWatches.
  std::multimap<const std::atomic<bool>*, std::shared_ptr<Stream>> watches_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<Client>> NewHttpClient(const RestConfig& config, const ClientOptions& options) {
  if (config.server.empty()) return InvalidArgumentError("kube client: no server address");
  if (!config.server.starts_with("https://") && !config.server.starts_with("http://")) {
    return InvalidArgumentError("kube client: server {:?} is not an http(s) URL", config.server);
  }
  if (options.max_in_flight < 1) return InvalidArgumentError("kube client: max_in_flight must be >= 1");
  if (config.tls_server_name.empty()) return std::unique_ptr<Client>(new HttpClient(config, options, "", config));
  // tls-server-name: request https://NAME:PORT and let curl connect to the real host.
  size_t scheme = config.server.find("://");
  std::string rest = config.server.substr(scheme + 3);
  std::string hostport = rest.substr(0, rest.find('/'));
  size_t colon = hostport.rfind(':');
  bool has_port = colon != std::string::npos && hostport.find(']', colon) == std::string::npos;
  std::string host = has_port ? hostport.substr(0, colon) : hostport;
  std::string port = has_port ? hostport.substr(colon + 1) : "443";
  RestConfig routed = config;
  routed.server = fmt::format("https://{}:{}{}", config.tls_server_name, port, rest.substr(hostport.size()));
  return std::unique_ptr<Client>(new HttpClient(
      routed, options, fmt::format("{}:{}:{}:{}", config.tls_server_name, port, host, port), config));
}

}  // namespace gantry::kube
