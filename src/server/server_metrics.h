#pragma once
// server/server_metrics: the Prometheus metrics of `gantry server` (served on --metrics-listen,
// docs/api.md lists them with example alerts):
//
//   gantry_runs{state}                          runs now queued, running, awaiting_approval,
//                                               interrupted (read from the store at each scrape)
//   gantry_run_queue_depth                      runs queued and not yet claimed
//   gantry_runs_finished_total{state}           runs that reached succeeded, failed, cancelled
//   gantry_run_duration_seconds{state}          start to finish of each finished run
//   gantry_step_duration_seconds{state}         start to finish of each finished step
//   gantry_release_targets_total{environment,state}  target writes of releases by state
//   gantry_webhook_deliveries_total{code}       webhook deliveries by the HTTP status answered
//   gantry_api_request_duration_seconds{route,method,code}  (api_v1.h)
//
// Durations and counts come from the event bus (events.h): a thread of its own follows it and
// reads a finished run from the store for its times. Thread-safety: Refresh() from any thread.

#include <atomic>
#include <memory>
#include <thread>

#include "http/metrics.h"
#include "server/events.h"
#include "store/store.h"

namespace gantry::server {

class ServerMetrics {
 public:
  // `registry`, `store` and `bus` must outlive this. Starts following `bus`.
  ServerMetrics(http::Registry& registry, store::Store& store, EventBus& bus);
  ~ServerMetrics();  // stops following
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Reads the gauges from the store (before each scrape).
  void Refresh();

  http::Family<http::Counter>& webhook_deliveries() { return webhooks_; }

 private:
  void Follow();

  store::Store& store_;
  EventBus& bus_;
  http::Family<http::Gauge>& runs_;
  http::Gauge& queue_depth_;
  http::Family<http::Counter>& finished_;
  http::Family<http::Histogram>& run_duration_;
  http::Family<http::Histogram>& step_duration_;
  http::Family<http::Counter>& targets_;
  http::Family<http::Counter>& webhooks_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace gantry::server
