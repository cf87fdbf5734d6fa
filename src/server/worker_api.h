#pragma once
// server/worker_api: the routes remote CI workers (`gantry worker`, cli/worker.cc) use, calling
// ci::Server's Worker* methods (ci/server.h, "remote"). docs/scaling.md has the protocol; the
// routes are in api/openapi.json.
//
//   POST /api/v1/worker/claim            {"name", "labels"?: {k: v}, "untrusted"?: bool,
//                                        "wait_seconds"?: 0..30 (default 25)} → 200
//                                        {"job": JOB | null}: a long poll, answered when a run is
//                                        claimed or after wait_seconds (streamed, on a thread of
//                                        its own, so waiting workers never hold the handler pool)
//   POST /api/v1/worker/runs/{id}/lease  {"name", "attempt"} → 200 {"state": "renewed" |
//                                        "cancel_requested"}; 409 Aborted: the claim is lost
//   POST /api/v1/worker/runs/{id}/steps  {"name", "attempt", "step": {"name", "state",
//                                        "exit_code"?, "attempts"?, "needs"?}} → 204
//   POST /api/v1/worker/runs/{id}/logs   {"name", "attempt", "step", "seq", "data"} → 200 {"seq"}
//   POST /api/v1/worker/runs/{id}/commit {"name", "attempt", "commit"} → 204; 409 AlreadyExists
//                                        when another run builds that commit (this one is
//                                        superseded)
//   POST /api/v1/worker/runs/{id}/finish {"name", "attempt", "state", "message"} → 204
//
// Every route needs a token with runs.work on "*" (a worker token, docs/access.md); anything else
// is 403. The claimer's name in the store is "<token's principal>/<name>" ("robot:pool/w1"), so a
// worker cannot write a run another token's worker holds. Writes to a run are refused with 409
// (Aborted) unless that name holds the run at that attempt: the worker then stops the run and
// writes nothing more. A claim that got a run and a finish each leave one audit row
// ("runs.claim", "runs.finish"); the renewals, steps and logs leave none (they are the run's
// progress, not actions). Errors are problem+json (front.h).

#include "base/status.h"
#include "ci/server.h"
#include "server/access.h"
#include "server/front.h"

namespace gantry::server {

// Registers the routes above on `front`. `ci` and `access` must outlive the front's serving.
void ServeWorkerApi(Front& front, ci::Server& ci, Access& access);

}  // namespace gantry::server
