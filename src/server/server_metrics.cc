#include "server/server_metrics.h"

#include "base/log.h"

namespace gantry::server {
namespace {

std::vector<double> DurationBuckets() { return {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}; }

double Seconds(const std::optional<store::Time>& from, const std::optional<store::Time>& to) {
  if (!from || !to) return -1;
  return std::chrono::duration<double>(*to - *from).count();
}

}  // namespace

ServerMetrics::ServerMetrics(http::Registry& registry, store::Store& store, EventBus& bus)
    : store_(store),
      bus_(bus),
      runs_(registry.AddGaugeFamily("gantry_runs", "CI runs by state (those not final).", {"state"})),
      queue_depth_(registry.AddGauge("gantry_run_queue_depth", "CI runs queued and not yet claimed by a worker.")),
      finished_(registry.AddCounterFamily("gantry_runs_finished_total", "CI runs that finished, by final state.", {"state"})),
      run_duration_(registry.AddHistogramFamily("gantry_run_duration_seconds", "CI run duration, start to finish.",
                                                {"state"}, DurationBuckets())),
      step_duration_(registry.AddHistogramFamily("gantry_step_duration_seconds", "CI step duration, start to finish.",
                                                 {"state"}, DurationBuckets())),
      targets_(registry.AddCounterFamily("gantry_release_targets_total",
                                         "Writes of release targets (deploys) by environment and state.",
                                         {"environment", "state"})),
      webhooks_(registry.AddCounterFamily("gantry_webhook_deliveries_total",
                                          "Webhook deliveries by the HTTP status answered.", {"code"})) {
  thread_ = std::thread([this] { Follow(); });
}

ServerMetrics::~ServerMetrics() {
  stop_ = true;
  thread_.join();
}

void ServerMetrics::Refresh() {
  for (auto state : {store::RunState::kQueued, store::RunState::kRunning, store::RunState::kAwaitingApproval,
                     store::RunState::kInterrupted}) {
    auto runs = store_.ListRuns({.state = state, .limit = 100000});
    if (!runs.ok()) {
      log::Warn("metrics: runs {}: {}", store::Name(state), runs.status().message());
      continue;
    }
    runs_.With({std::string(store::Name(state))}).Set(static_cast<double>(runs->size()));
    if (state == store::RunState::kQueued) queue_depth_.Set(static_cast<double>(runs->size()));
  }
}

void ServerMetrics::Follow() {
  auto sub = bus_.Subscribe();
  while (!stop_.load()) {
    std::optional<Event> e = sub->Next(std::chrono::milliseconds(500));
    if (!e) {
      if (sub->dropped()) sub = bus_.Subscribe();  // fell behind: counts miss what it dropped
      continue;
    }
    if (e->type != "run" && e->type != "step" && e->type != "release") continue;
    auto data = value::ParseJson(e->data);
    if (!data.ok()) continue;
    const std::string state = value::StringAt(&*data, {"state"});
    if (e->type == "release") {
      targets_.With({value::StringAt(&*data, {"environment"}), state}).Inc();
      continue;
    }
    auto parsed = store::ParseRunState(state);
    if (!parsed || !store::IsFinal(*parsed)) continue;
    auto run = store_.GetRun(value::IntAt(&*data, {e->type == "run" ? "id" : "run"}));
    if (!run.ok()) continue;
    if (e->type == "run") {
      finished_.With({state}).Inc();
      if (double s = Seconds(run->started_at, run->finished_at); s >= 0) run_duration_.With({state}).Observe(s);
      continue;
    }
    const std::string name = value::StringAt(&*data, {"name"});
    for (const auto& step : run->steps) {
      if (step.name != name) continue;
      if (double s = Seconds(step.started_at, step.finished_at); s >= 0) step_duration_.With({state}).Observe(s);
    }
  }
}

}  // namespace gantry::server
