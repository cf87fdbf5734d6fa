#pragma once
// server/worker_api: the routes remote CI workers (`gantry worker`, cli/worker.cc) use, calling
// ci::Server's Worker* methods (ci/server.h, "remote"). docs/scaling.md has the protocol; the
// routes are in api/openapi.json.
//
//   POST /api/v1/worker/claim            {"name", "labels"?: {k: v}, "untrusted"?: bool,
//                                        "wait_seconds"?: 0..30 (default 25)} → 200
//                                        {"job": JOB | null}: a long poll, answered when a run is
//                                        claimed or after wait_seconds (streamed, on a thread of
//                                        its own, so waiting workers never hold the handler pool);
//                                        a run claimed for a client that has gone by the time the
//                                        answer is written is queued again at once
//   POST /api/v1/worker/runs/{id}/lease  {"name", "attempt"} → 200 {"state": "renewed" |
//                                        "cancel_requested"}; 409 Aborted: the claim is lost
//   POST /api/v1/worker/runs/{id}/steps  {"name", "attempt", "step": {"name", "state",
//                                        "exit_code"?, "attempts"?, "needs"?}} → 204
//   POST /api/v1/worker/runs/{id}/logs   {"name", "attempt", "step", "seq", "data_base64"} → 200
//                                        {"seq"}: the bytes as the step printed them ("data", a
//                                        JSON string, is still taken from older workers)
//   POST /api/v1/worker/runs/{id}/commit {"name", "attempt", "commit"} → 204; 409 AlreadyExists
//                                        when another run builds that commit (this one is
//                                        superseded)
//   POST /api/v1/worker/runs/{id}/finish {"name", "attempt", "state", "message"} → 204
//   PUT  /api/v1/worker/runs/{id}/workspace?name=N&attempt=A&offset=O, the body a part of the tar
//                                        stream of what the release reads from the workspace,
//                                        kept in the store (any server sharing it takes any part)
//                                        → 200 {"offset": bytes held}; 409 when O is not that
//                                        (ci::Server::WorkerUpload); 413 beyond the workspace limit
//   POST /api/v1/worker/runs/{id}/release {"name", "attempt", "digest", "message"} → 202
//                                        {"state": "releasing"}: the server releases the run from
//                                        the upload and ends it (ci::Server::WorkerRelease)
//
// Every route needs a worker token (runs.work, docs/access.md); anything else is 403. A token for
// one project (a project's worker pool) claims only that project's runs (store::Run::project), and
// any other run is 404 to it on every /runs/{id}/ route; a token for "*" claims any run. The claimer's name in the store is "<token's principal>/<name>" ("robot:pool/w1"), so a
// worker cannot write a run another token's worker holds. Writes to a run are refused with 409
// (Aborted) unless that name holds the run at that attempt: the worker then stops the run and
// writes nothing more. A claim that got a run, a finish and a release each leave one audit row
// ("runs.claim", "runs.finish", "runs.release"); the renewals, steps and logs leave none (they are the run's
// progress, not actions). Errors are problem+json (front.h).

#include "base/status.h"
#include "ci/server.h"
#include "server/access.h"
#include "server/front.h"

namespace gantry::server {

// Registers the routes above on `front`. `ci` and `access` must outlive the front's serving.
void ServeWorkerApi(Front& front, ci::Server& ci, Access& access);

}  // namespace gantry::server
