#pragma once
// server/front: the HTTP front of Gantry's listeners (`gantry server`, the pull agent): an
// http::Server with the conventions every handler shares.
//
// One mapping from Status to HTTP, HttpStatus(), used for every error any handler answers:
//
//   InvalidArgument, OutOfRange       400     Unimplemented                 501
//   Unauthenticated                   401       reason kMethodNotAllowed    405
//   PermissionDenied                  403     Unavailable                   503
//   NotFound                          404     DeadlineExceeded              504
//   AlreadyExists, Aborted            409     ResourceExhausted             429
//   FailedPrecondition                409       reason webhook::kBodyTooLarge 413
//   anything else (Internal, ...)     500
//
// FailedPrecondition is 409 Conflict, not 412: 412 answers a request's own preconditions
// (If-Match), which Gantry's API has none of, while FailedPrecondition says the resource is not in
// the state the request needs (approving a run that does not await approval), which is what 409
// tells a client. PermissionDenied is 403 everywhere (credentials were checked and are not enough,
// or a signature scheme that is refused); 401 is for missing or wrong credentials only.
//
// Two error bodies: the REST API (/api/) answers ApiError(), JSON
//   {"error": {"code": "NotFound", "reason": "", "message": "no run 7"}}
// (code: the Status code's name; reason: its machine-readable reason or ""), which ParseApiError()
// turns back into the Status on the client side; /api/v1 answers ProblemJson(), RFC 9457's
// application/problem+json with the same code and reason:
//   {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no run 7",
//    "code": "NotFound", "reason": ""}
// which ParseApiError() reads too; webhooks and probes answer TextError(), the message and a
// newline, as senders log it.
//
// Webhook intake (AddWebhook): webhook::Verify over the raw body, then the caller's function with
// the verified event. An event type Gantry does not act on is 202 "ignored: ..." and a ping is
// 200 "pong" without the function; every refusal is logged with the sender's address.
//
// Thread-safety: as http::Server: methods from any thread; handlers run concurrently.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "http/http.h"
#include "http/metrics.h"
#include "webhook/webhook.h"

namespace gantry::server {

// The reason of an Unimplemented status for a method a path does not take (405).
inline constexpr std::string_view kMethodNotAllowed = http::kReasonMethodNotAllowed;

// The HTTP status for a non-OK `status` (the table in the file comment; http::HttpStatus); 200 for OK.
int HttpStatus(const Status& status);

// The REST API's error response: HttpStatus(status) with the JSON body of the file comment.
http::Response ApiError(const Status& status);
// 405 for `req`, whose path takes only the methods `allow` ("GET, POST"): ApiError of
// Unimplemented with reason kMethodNotAllowed, and the Allow header.
http::Response MethodNotAllowed(const http::Request& req, std::string_view allow);
// /api/v1's error response: HttpStatus(status) with the problem+json body of the file comment.
http::Response ProblemJson(const Status& status);
// The reason phrase of an HTTP status ("Not Found"); "Error" for one Gantry never answers.
std::string_view ReasonPhrase(int http_status);
// Webhooks' and probes' error response: HttpStatus(status), the message and a newline as text.
http::Response TextError(const Status& status);

// The Status an API response stands for: OK for a 2xx; else the code and reason of its JSON error
// body (ApiError's or ProblemJson's), or, for a body that is not one (a proxy's page), the code HttpStatus() maps to `http_status`
// with the body's first line as the message.
Status ParseApiError(int http_status, std::string_view body);

// OK when `request` carries "Authorization: Bearer <token>" (compared in constant time in the
// token's length); Unauthenticated otherwise. An empty token never matches.
Status CheckBearer(const http::Request& request, std::string_view token);

// The API token of `gantry server` when none is given: <data_dir>/api-token, created (0600, 32
// random bytes as hex) when missing, in a directory only its owner may enter. PermissionDenied
// when the file is readable by others; FailedPrecondition when it holds fewer than 16 characters;
// Internal when it cannot be written.
Result<std::string> LoadOrCreateApiToken(const std::filesystem::path& data_dir);

// What a webhook function does with a verified event: the response to the sender, or an error
// (answered with TextError).
using WebhookFn = std::function<Result<http::Response>(const webhook::Event& event, const http::Request& request)>;

// A listener: owns its http::Server. `name` prefixes its log lines ("server", "agent"). A request
// under /api/v1/ that no route takes gets ProblemJson (404, or 405 with Allow).
class Front {
 public:
  Front(std::string name, http::Options options);
  ~Front();  // Stop()
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;

  // Routes `method` on `path` (a prefix when it ends in '/') to `handler`, as http::Server does.
  void Handle(std::string method, std::string path, http::Handler handler);

  // GET `path` answers 200 "ok" while `check` (when given) is OK, else TextError(check()).
  void AddHealth(std::string path = "/healthz", std::function<Status()> check = nullptr);

  // GET `path` serves registry.Render() (Prometheus text 0.0.4), calling `before` first (to set
  // gauges that are read, not pushed). The registry must outlive the Front. Unauthenticated: serve
  // it on a listener of its own, not one exposed for webhooks.
  void AddMetrics(const http::Registry& registry, std::string path = "/metrics", std::function<void()> before = nullptr);

  // POST `path`: webhook intake as in the file comment, verified under `config`. InvalidArgument
  // when config.secret is empty (Gantry never accepts unsigned webhooks).
  Status AddWebhook(std::string path, webhook::Config config, WebhookFn fn);

  // Every route registered (http::Server::Routes).
  std::vector<http::Server::RouteInfo> Routes() const { return http_.Routes(); }

  // Counts every webhook delivery answered by AddWebhook's routes, by HTTP status ({"code"}).
  // Call before AddWebhook; the family must outlive the Front.
  void CountWebhooks(http::Family<http::Counter>& deliveries) { webhook_deliveries_ = &deliveries; }

  // Binds and serves (http::Server::Start's errors).
  Status Start();
  uint16_t port() const;  // the bound port; 0 before Start()
  void Stop();            // graceful, idempotent

 private:
  // One webhook delivery through AddWebhook's steps.
  http::Response Intake(const http::Request& req, const webhook::Config& config, const WebhookFn& fn);

  std::string name_;
  http::Server http_;
  http::Family<http::Counter>* webhook_deliveries_ = nullptr;
};

}  // namespace gantry::server
