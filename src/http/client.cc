// The libcurl adapter behind http::Client: the only file of the http module that includes curl.

#include "http/client.h"

#include "base/ascii.h"

#include <curl/curl.h>

#include <mutex>

namespace gantry::http {
namespace {

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// The URL without "user:password@", for messages.
std::string Scrub(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string_view authority = url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, start)) + std::string(url.substr(start + at + 1));
}

// What the callbacks of one transfer share.
struct Transfer {
  const BodySink* sink = nullptr;
  size_t max_body = 0;
  ClientResponse response;
  bool too_large = false;
  bool stopped = false;  // the sink returned false
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * n);
  if (t->sink != nullptr) {
    if (!(*t->sink)(chunk)) {
      t->stopped = true;
      return 0;
    }
    return chunk.size();
  }
  if (t->response.body.size() + chunk.size() > t->max_body) {
    t->too_large = true;
    return 0;
  }
  t->response.body.append(chunk);
  return chunk.size();
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    t->response.headers.clear();  // a new response: after a redirect or 100 Continue
    return line.size();
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string name = AsciiLower(Trim(line.substr(0, colon)));
  std::string_view value = Trim(line.substr(colon + 1));
  auto [it, fresh] = t->response.headers.try_emplace(std::move(name), value);
  if (!fresh) it->second.append(", ").append(value);
  return line.size();
}

Status Failure(CURLcode rc, const Transfer& t, const ClientRequest& request, const char* detail) {
  std::string what = fmt::format("{} {}", request.method, Scrub(request.url));
  std::string why = detail != nullptr && *detail != '\0' ? std::string(Trim(detail)) : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return InvalidArgumentError("{}: {} (expected an http:// or https:// URL)", what, why);
    case CURLE_OPERATION_TIMEDOUT:
      return DeadlineExceededError("{}: {}", what, why);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return FailedPreconditionError("{}: {} (is the server's CA in the system's bundle, or given as the CA file?)", what,
                                     why);
    case CURLE_TOO_MANY_REDIRECTS:
      return FailedPreconditionError("{}: {}", what, why);
    case CURLE_WRITE_ERROR:
      if (t.too_large) return ResourceExhaustedError("{}: the response body exceeds {} bytes", what, t.max_body);
      if (t.stopped) return CancelledError("{}: stopped by the reader", what);
      return InternalError("{}: {}", what, why);
    case CURLE_ABORTED_BY_CALLBACK:
      return CancelledError("{}: {}", what, why);
    case CURLE_OUT_OF_MEMORY:
      return ResourceExhaustedError("{}: {}", what, why);
    default:
      return UnavailableError("{}: {}", what, why);
  }
}

}  // namespace

Client::Client(ClientOptions options) : options_(std::move(options)) {}

Result<ClientResponse> Client::Send(const ClientRequest& request) const { return Send(request, nullptr); }

Result<ClientResponse> Client::Send(const ClientRequest& request, const BodySink& sink) const {
  if (request.method.empty() || HasCrLf(request.method) || request.method.find(' ') != std::string::npos) {
    return InvalidArgumentError("http client: bad method {:?}", request.method);
  }
  if (!request.url.starts_with("http://") && !request.url.starts_with("https://")) {
    return InvalidArgumentError("{} {}: expected an http:// or https:// URL", request.method, Scrub(request.url));
  }
  InitCurlOnce();
  CURL* h = curl_easy_init();
  if (h == nullptr) return InternalError("http client: curl_easy_init failed");
  struct curl_slist* headers = nullptr;
  struct Cleanup {
    CURL* h;
    curl_slist** headers;
    ~Cleanup() {
      curl_slist_free_all(*headers);
      curl_easy_cleanup(h);
    }
  } cleanup{h, &headers};

  bool has_content_type = false;
  for (const auto& [name, value] : request.headers) {
    if (name.empty() || HasCrLf(name) || HasCrLf(value) || name.find(':') != std::string::npos) {
      return InvalidArgumentError("{} {}: bad header {:?}", request.method, Scrub(request.url), name);
    }
    std::string lower = AsciiLower(name);
    if (lower == "content-length" || lower == "host") continue;
    has_content_type |= lower == "content-type";
    // "Name;" sends a header with an empty value ("Name:" would remove curl's own).
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    headers = curl_slist_append(headers, line.c_str());
  }
  const bool send_body = !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
                         request.method == "PATCH";
  if (send_body && !has_content_type) headers = curl_slist_append(headers, "Content-Type:");  // not curl's form type
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip

  Transfer t{.sink = sink ? &sink : nullptr, .max_body = options_.max_response_bytes};
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (options_.max_redirects > 0) {
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
  }
  if (send_body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    if (request.method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);

  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) return Failure(rc, t, request, error);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  t.response.status = static_cast<int>(status);
  return std::move(t.response);
}

}  // namespace gantry::http
