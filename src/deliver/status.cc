// The rows of `gantry status`: push targets from the ledger, pull Applications from their clusters.

#include <algorithm>

#include "deliver/deliver.h"

namespace gantry::deliver {
namespace {

std::string HealthOf(store::TargetState s) {
  switch (s) {
    case store::TargetState::kHealthy: return "Healthy";
    case store::TargetState::kFailed: return "Degraded";
    case store::TargetState::kApplying: return "Progressing";
    case store::TargetState::kPending: return "Pending";
    case store::TargetState::kRolledBack: return "RolledBack";
    case store::TargetState::kSuperseded: return "Superseded";
  }
  return "Unknown";
}

}  // namespace

std::vector<StatusRow> PushRows(std::string_view app, const std::vector<store::TargetStatus>& targets) {
  std::vector<StatusRow> rows;
  for (const auto& t : targets) {
    StatusRow r;
    r.app = app;
    r.env = t.env;
    r.cluster = t.cluster;
    r.mode = "push";
    if (t.running) {
      r.release = t.running->id;
      r.revision = t.running->source_revision;
    }
    r.state = store::Name(t.latest_target.state);
    // What runs is healthy; when a newer release is in flight or failed here, say so.
    r.health = t.running && t.latest.id == t.running->id ? "Healthy" : HealthOf(t.latest_target.state);
    if (t.running && t.latest.id != t.running->id)
      r.message = fmt::format("release {}: {}", t.latest.id, t.latest_target.message);
    r.behind = t.behind;
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<StatusRow> PullRows(const Cluster& cluster, const std::vector<value::Value>& applications,
                                const std::map<std::string, std::vector<store::Release>>& releases_by_app) {
  std::vector<StatusRow> rows;
  for (const auto& a : applications) {
    StatusRow r;
    r.app = value::StringAt(&a, {"metadata", "name"});
    r.env = cluster.environment;
    r.cluster = cluster.name;
    r.mode = "pull";
    r.revision = value::StringAt(&a, {"status", "sync", "revision"});
    r.state = value::StringAt(&a, {"status", "sync", "status"});
    r.health = value::StringAt(&a, {"status", "health", "status"});
    if (r.health.empty()) r.health = "Unknown";
    auto it = releases_by_app.find(r.app);
    if (it != releases_by_app.end()) {
      // Newest first: behind = the releases before the first whose revision runs here.
      const auto& rels = it->second;
      r.behind = static_cast<int64_t>(rels.size());
      for (size_t i = 0; i < rels.size(); ++i) {
        if (!r.revision.empty() && (rels[i].source_revision == r.revision || rels[i].config_revision == r.revision)) {
          r.release = rels[i].id;
          r.revision = rels[i].source_revision;  // the app commit, as push rows show it
          r.behind = static_cast<int64_t>(i);
          break;
        }
      }
    }
    rows.push_back(std::move(r));
  }
  std::sort(rows.begin(), rows.end(), [](const StatusRow& x, const StatusRow& y) { return x.app < y.app; });
  return rows;
}

std::map<std::pair<std::string, std::string>, int64_t> BehindByEnv(const std::vector<StatusRow>& rows) {
  std::map<std::pair<std::string, std::string>, int64_t> out;
  for (const auto& r : rows) {
    int64_t& b = out[{r.app, r.env}];
    b = std::max(b, r.behind);
  }
  return out;
}

}  // namespace gantry::deliver
