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
//                                 202 "cancelling: WORKER stops it ..." while another server or
//                                 a remote worker runs it, 200 "cancelled" before it ran
//                                 (ci::Server::Cancel)
//
// Every /api/ request is authenticated and authorized by server::Access (access.h: 401 with the
// reason and WWW-Authenticate; 403 naming the permission): reading needs runs.read, cancelling
// runs.cancel, approving runs.approve, on the run's project (CiFrontOptions::project_of). The list
// shows the runs the caller may read. Cancel and approve write one audit row each, refused ones
// too. /api/ errors are ApiError JSON with the one Status→HTTP mapping (front.h). Webhooks are
// authenticated by their signatures instead.

#include <functional>
#include <string>

#include "base/status.h"
#include "ci/server.h"
#include "server/access.h"
#include "server/front.h"
#include "webhook/webhook.h"

namespace gantry::server {

struct CiFrontOptions {
  webhook::Config webhook;  // secret required
  Access* access = nullptr;  // required; must outlive the front's serving
  // The project a run belongs to (its repository's); "" or nullptr: none, so only cluster-wide
  // grants reach it.
  std::function<std::string(const store::Run&)> project_of;
  // Called with every verified pull-request event before CI sees it (server/previews.h); must
  // not block. nullptr: none.
  std::function<void(const webhook::Event&)> on_pull_request;
};

// The text/plain response of a run's logs (GET /api/runs/ID/logs, /api/v1/runs/ID/logs): each
// step's after a "==> step <==" line; with `follow`, a stream that ends when the run is final.
http::Response StreamLogs(ci::Server& ci, int64_t id, bool follow);

// Registers the routes above on `front`, calling `ci` (which must outlive the front's serving).
// InvalidArgument for a missing webhook secret or Access.
Status ServeCi(Front& front, ci::Server& ci, CiFrontOptions options);

}  // namespace gantry::server
