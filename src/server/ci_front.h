#pragma once
// server/ci_front: what `gantry server` serves for CI, on a Front, calling ci::Server.
//
//   POST /webhook                 webhook intake (Front::AddWebhook) → ci::Server::Accept:
//                                 201 {"run": ID, "state": "queued" | "awaiting_approval"} for a
//                                 new run; 200 "duplicate ..." for a redelivery or a commit that
//                                 has its run; 202 "ignored: ..." when there is nothing to build;
//                                 errors as TextError (403 for a provider the repository is not
//                                 pinned to, 503 when the store fails).
//   GET  /api/runs                the latest 100 runs, JSON, newest first
//   GET  /api/runs/ID             one run with its steps, JSON
//   GET  /api/runs/ID/logs        the run's logs as text, "==> step <==" before each step's;
//                                 with ?follow=1 a stream that ends when the run is final
//   POST /api/runs/ID/approve     200 "approved: queued" (ci::Server::Approve)
//   POST /api/runs/ID/cancel      202 "cancelling" / "cancelling the release" while it runs here,
//                                 200 "cancelled" before it ran (ci::Server::Cancel)
//
// Every /api/ request needs "Authorization: Bearer <api_token>" (401 with WWW-Authenticate
// otherwise); /api/ errors are ApiError JSON with the one Status→HTTP mapping (front.h). Webhooks
// are authenticated by their signatures instead.

#include <string>

#include "base/status.h"
#include "ci/server.h"
#include "server/front.h"
#include "webhook/webhook.h"

namespace gantry::server {

struct CiFrontOptions {
  webhook::Config webhook;  // secret required
  std::string api_token;    // required; LoadOrCreateApiToken() makes one
};

// Registers the routes above on `front`, calling `ci` (which must outlive the front's serving).
// InvalidArgument for a missing webhook secret or API token.
Status ServeCi(Front& front, ci::Server& ci, CiFrontOptions options);

}  // namespace gantry::server
