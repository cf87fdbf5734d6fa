// `gantry status` and `gantry approve`: push targets from the ledger, pull Applications from their
// clusters, approvals recorded and audited.

#include <algorithm>
#include <set>
#include <tuple>

#include "api/application.h"
#include "api/status.h"
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

// Every Application of a pull cluster, listed through its kubeconfig.
Result<std::vector<value::Value>> ListApplications(const Cluster& cluster, const ConnectFn& connect) {
  GANTRY_ASSIGN_OR_RETURN(auto client, connect(cluster));
  GANTRY_ASSIGN_OR_RETURN(kube::ObjectList list, client->List(api::kApiVersion, api::kKind, ""));
  return std::move(list.items);
}

}  // namespace

std::string TrackingKey(std::string_view project, std::string_view app) {
  return project.empty() || project == "default" ? std::string(app) : fmt::format("{}_{}", project, app);
}

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
    api::ApplicationStatus st = api::ParseStatus(a.Get("status"));
    r.revision = st.sync_revision;
    r.state = st.sync_status;
    r.health = health::Name(st.health.value_or(health::HealthStatus::kUnknown));
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

Result<StatusReport> GatherStatus(store::Store& store, const Config& config, std::string_view app,
                                  const ConnectFn& connect, const ApplicationsFn& applications) {
  std::vector<std::string> apps;
  if (!app.empty()) {
    apps.emplace_back(app);
  } else {
    GANTRY_ASSIGN_OR_RETURN(apps, store.ListApps());
  }
  StatusReport report;
  std::map<std::string, std::vector<store::Release>> releases;
  for (const auto& name : apps) {
    GANTRY_ASSIGN_OR_RETURN(auto targets, store.CurrentByTarget(name));
    auto more = PushRows(name, targets);
    report.rows.insert(report.rows.end(), more.begin(), more.end());
    GANTRY_ASSIGN_OR_RETURN(releases[name], store.ListReleases(name, 1000));
  }
  for (const auto& c : config.clusters) {
    if (!c.pull) continue;
    Result<std::vector<value::Value>> listed = applications ? applications(c) : ListApplications(c, connect);
    if (!listed.ok()) {
      report.warnings.push_back(fmt::format("pull cluster {}: {}", c.name, listed.status().message()));
      continue;
    }
    std::vector<value::Value> items;
    for (const auto& item : *listed) {
      if (app.empty() || value::StringAt(&item, {"metadata", "name"}) == app) items.push_back(item);
    }
    for (auto& row : PullRows(c, items, releases)) report.rows.push_back(std::move(row));
  }
  // Rows in promotion order (the ledger orders environments by name).
  std::map<std::string, size_t> rank;
  if (auto order = PromotionOrder(config); order.ok()) {
    for (size_t i = 0; i < order->size(); ++i) rank[(*order)[i]] = i;
  }
  auto rank_of = [&](const std::string& env) {
    auto it = rank.find(env);
    return it == rank.end() ? rank.size() : it->second;
  };
  std::stable_sort(report.rows.begin(), report.rows.end(), [&](const StatusRow& x, const StatusRow& y) {
    return std::tuple(std::string_view(x.app), rank_of(x.env)) < std::tuple(std::string_view(y.app), rank_of(y.env));
  });
  report.behind = BehindByEnv(report.rows);
  return report;
}

Result<int64_t> Approve(store::Store& store, std::string_view app, std::string_view env, int64_t release,
                        std::string_view by) {
  if (release == 0) {
    GANTRY_ASSIGN_OR_RETURN(auto newest, store.ListReleases(app, 1));
    if (newest.empty()) return NotFoundError("{} has no releases", app);
    release = newest[0].id;
  }
  GANTRY_ASSIGN_OR_RETURN(store::Release rel, store.GetRelease(release));
  if (rel.app != app) return InvalidArgumentError("release {} is of {}, not {}", release, rel.app, app);
  GANTRY_RETURN_IF_ERROR(store.Approve(release, env, by));
  GANTRY_RETURN_IF_ERROR(
      store.Audit({.actor = std::string(by), .action = "approve",
                   .object = fmt::format("app/{} env/{} release/{}", app, env, release), .details = {}})
          .status());
  return release;
}

}  // namespace gantry::deliver
