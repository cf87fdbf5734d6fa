#include "server/front.h"

#include <sys/random.h>
#include <sys/stat.h>

#include <cerrno>

#include "base/log.h"
#include "base/path.h"
#include "value/value.h"

namespace gantry::server {
namespace fs = std::filesystem;

int HttpStatus(const Status& s) { return http::HttpStatus(s); }

http::Response ApiError(const Status& s) {
  value::Value error = value::Value::Map();
  error.Set("code", std::string(CodeName(s.code())));
  error.Set("reason", s.reason());
  error.Set("message", s.message());
  value::Value body = value::Value::Map();
  body.Set("error", error);
  http::Response r = http::Response::Json(HttpStatus(s), value::ToJson(body) + "\n");
  if (s.code() == Code::kUnauthenticated) r.headers["www-authenticate"] = "Bearer realm=\"gantry\"";
  return r;
}

std::string_view ReasonPhrase(int http_status) {
  switch (http_status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

http::Response ProblemJson(const Status& s) {
  const int status = HttpStatus(s);
  value::Value body = value::Value::Map();
  body.Set("type", "about:blank");
  body.Set("title", std::string(ReasonPhrase(status)));
  body.Set("status", status);
  body.Set("detail", s.message());
  body.Set("code", std::string(CodeName(s.code())));
  body.Set("reason", s.reason());
  http::Response r = http::Response::Json(status, value::ToJson(body) + "\n");
  r.headers["content-type"] = "application/problem+json";
  if (s.code() == Code::kUnauthenticated) r.headers["www-authenticate"] = "Bearer realm=\"gantry\"";
  return r;
}

http::Response MethodNotAllowed(const http::Request& req, std::string_view allow) {
  http::Response r =
      ApiError(UnimplementedError("{} {}: this path takes {}", req.method, req.target, allow).set_reason(kMethodNotAllowed));
  r.headers["allow"] = std::string(allow);
  return r;
}

http::Response TextError(const Status& s) { return http::TextError(s); }

Status ParseApiError(int http_status, std::string_view body) {
  if (http_status >= 200 && http_status < 300) return OkStatus();
  if (auto doc = value::ParseJson(body); doc.ok()) {
    // ApiError's {"error": {...}}, or ProblemJson's code, reason and detail at the top.
    const bool problem = doc->Get("error") == nullptr;
    const value::Value* error = problem ? &*doc : doc->Get("error");
    const value::Value* code = error != nullptr ? error->Get("code") : nullptr;
    if (code != nullptr && code->IsString()) {
      for (int c = static_cast<int>(Code::kCancelled); c <= static_cast<int>(Code::kUnauthenticated); ++c) {
        if (CodeName(static_cast<Code>(c)) != code->AsString()) continue;
        const value::Value* message = error->Get(problem ? "detail" : "message");
        const value::Value* reason = error->Get("reason");
        Status s(static_cast<Code>(c), message != nullptr && message->IsString() ? std::string(message->AsString()) : "");
        if (reason != nullptr && reason->IsString()) s.set_reason(reason->AsString());
        return s;
      }
    }
  }
  // Not the API's error body: the inverse of HttpStatus() on the status alone.
  Code code = Code::kUnknown;
  switch (http_status) {
    case 400: code = Code::kInvalidArgument; break;
    case 401: code = Code::kUnauthenticated; break;
    case 403: code = Code::kPermissionDenied; break;
    case 404: code = Code::kNotFound; break;
    case 405: code = Code::kUnimplemented; break;
    case 409: code = Code::kFailedPrecondition; break;
    case 413:
    case 429: code = Code::kResourceExhausted; break;
    case 501: code = Code::kUnimplemented; break;
    case 502:
    case 503: code = Code::kUnavailable; break;
    case 504: code = Code::kDeadlineExceeded; break;
    default: code = http_status >= 500 ? Code::kInternal : Code::kUnknown;
  }
  std::string_view line = body.substr(0, body.find('\n'));
  if (line.size() > 200) line = line.substr(0, 200);
  Status s(code, line.empty() ? fmt::format("HTTP {}", http_status) : std::string(line));
  if (http_status == 405) s.set_reason(kMethodNotAllowed);
  return s;
}

Status CheckBearer(const http::Request& request, std::string_view token) {
  std::string_view auth = request.Header("authorization");
  const std::string want = "Bearer " + std::string(token);
  // Constant time in the token's length: a mismatch position must not show in the timing.
  bool ok = !token.empty() && auth.size() == want.size();
  unsigned char diff = 0;
  for (size_t i = 0; ok && i < want.size(); ++i) diff |= static_cast<unsigned char>(auth[i] ^ want[i]);
  if (ok && diff == 0) return OkStatus();
  return UnauthenticatedError("a bearer token is required (gantry: set GANTRY_TOKEN)");
}

Result<std::string> LoadOrCreateApiToken(const fs::path& data_dir) {
  GANTRY_RETURN_IF_ERROR(MakePrivateDir(data_dir));
  const fs::path file = data_dir / "api-token";
  struct stat st;
  if (::stat(file.c_str(), &st) == 0) {
    if ((st.st_mode & 077) != 0) {
      return PermissionDeniedError("{} is readable by others (mode {:o}); chmod 600 it", file.string(), st.st_mode & 0777);
    }
    GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(file, 4096));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.size() < 16) return FailedPreconditionError("{}: the token is shorter than 16 characters", file.string());
    return text;
  }
  unsigned char bytes[32];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) return ErrnoError(errno, "getrandom");
  std::string token;
  for (unsigned char b : bytes) token += fmt::format("{:02x}", b);
  GANTRY_RETURN_IF_ERROR(WriteFileAtomic(file, token + "\n", 0600));
  return token;
}

namespace {

// /api/v1 answers every error as problem+json, a path or method no route takes too.
http::Options WithProblems(http::Options options) {
  options.unrouted = [](const http::Request& req, int status) {
    if (req.target != "/api/v1" && !req.target.starts_with("/api/v1/")) {
      return http::Response::Text(status, status == 404 ? "not found\n" : "method not allowed\n");
    }
    if (status == 404) return ProblemJson(NotFoundError("no such resource {} {}", req.method, req.target));
    return ProblemJson(UnimplementedError("{} {}: this path does not take {}", req.method, req.target, req.method)
                           .set_reason(kMethodNotAllowed));
  };
  return options;
}

}  // namespace

Front::Front(std::string name, http::Options options) : name_(std::move(name)), http_(WithProblems(std::move(options))) {}

Front::~Front() { Stop(); }

void Front::Handle(std::string method, std::string path, http::Handler handler) {
  http_.Handle(std::move(method), std::move(path), std::move(handler));
}

void Front::AddHealth(std::string path, std::function<Status()> check) {
  http_.Handle("GET", std::move(path), [check = std::move(check)](const http::Request&) {
    if (check) {
      if (Status s = check(); !s.ok()) return TextError(s);
    }
    return http::Response::Text(200, "ok\n");
  });
}

void Front::AddMetrics(const http::Registry& registry, std::string path, std::function<void()> before) {
  http_.Handle("GET", std::move(path), [&registry, before = std::move(before)](const http::Request&) {
    if (before) before();
    http::Response r;
    r.headers["content-type"] = std::string(http::Registry::kContentType);
    r.body = registry.Render();
    return r;
  });
}

Status Front::AddWebhook(std::string path, webhook::Config config, WebhookFn fn) {
  if (config.secret.empty()) {
    return InvalidArgumentError("{}: a webhook secret is required for {}: Gantry never accepts unsigned webhooks", name_,
                                path);
  }
  http_.Handle("POST", std::move(path), [this, config = std::move(config), fn = std::move(fn)](const http::Request& req) {
    http::Response r = Intake(req, config, fn);
    if (webhook_deliveries_ != nullptr) webhook_deliveries_->With({std::to_string(r.status)}).Inc();
    return r;
  });
  return OkStatus();
}

http::Response Front::Intake(const http::Request& req, const webhook::Config& config, const WebhookFn& fn) {
  auto event = webhook::Verify(req.headers, req.body, config);
  if (!event.ok() && event.status().code() == Code::kUnimplemented) {
    return http::Response::Text(202, "ignored: " + event.status().message() + "\n");
  }
  if (event.ok() && event->kind == webhook::Kind::kPing) return http::Response::Text(200, "pong\n");
  Result<http::Response> answer = event.ok() ? fn(*event, req) : Result<http::Response>(event.status());
  if (answer.ok()) return *std::move(answer);
  log::Warn("{}: webhook from {} refused: {}", name_, req.remote_addr, answer.status().message());
  return TextError(answer.status());
}

Status Front::Start() { return http_.Start(); }

uint16_t Front::port() const { return http_.port(); }

void Front::Stop() { http_.Stop(); }

}  // namespace gantry::server
