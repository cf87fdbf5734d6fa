#pragma once
// Private to the forge module: what every call to a forge's REST API shares (forge.cc's statuses,
// pulls.cc's pull requests): the HTTP client's options, the token's header, percent-encoding, and
// one reading of a refusal that turns HTTP statuses into the errors of forge.h (a 403 naming the
// missing scope).

#include <string>
#include <string_view>

#include "base/status.h"
#include "forge/forge.h"
#include "http/client.h"

namespace gantry::forge::internal {

// The client of `options` (timeouts, CA bundle, 256 KiB answers at most).
http::ClientOptions ClientOptions(const Options& options);

// Sets the token's header ("token T" on Gitea, "Bearer T" and GitHub's API version on GitHub,
// PRIVATE-TOKEN on GitLab), and content-type JSON when the request has a body.
void Authorize(const Options& options, http::ClientRequest& req);

// A path segment with everything but unreserved characters percent-encoded ("a/b" → "a%2Fb").
std::string Segment(std::string_view s);

// The "message" (Gitea, GitHub, GitLab), "error_description" or "error" of a JSON error body, else
// at most 300 bytes of it on one line.
std::string ForgeMessage(std::string_view body);

// The error of a non-2xx answer to a request about a `what` of a repository ("commit", "pull
// request"): Unauthenticated (401), PermissionDenied naming the missing scope when the forge says
// it (403), NotFound (404), Unavailable (5xx, 429, 408), else InvalidArgument with the forge's
// message.
Status Refusal(Kind kind, const http::ClientResponse& r, std::string_view what);

}  // namespace gantry::forge::internal
