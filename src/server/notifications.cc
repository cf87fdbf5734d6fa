#include "server/notifications.h"

#include <fmt/format.h>

#include "base/log.h"
#include "value/value.h"

namespace gantry::server {

NotificationFeed::NotificationFeed(EventBus& bus, store::Store& store, notify::Notifier& notifier)
    : bus_(bus), store_(store), notifier_(notifier), subscription_(bus.Subscribe()) {
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      if (subscription_->dropped()) {
        log::Warn("notifications: the event feed fell behind; events were missed");
        subscription_ = bus_.Subscribe();
      }
      auto e = subscription_->Next(std::chrono::milliseconds(200));
      if (!e) continue;
      if (auto n = Translate(*e)) notifier_.Submit(*std::move(n));
    }
  });
}

NotificationFeed::~NotificationFeed() { Stop(); }

void NotificationFeed::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::optional<notify::Event> NotificationFeed::Translate(const Event& event) {
  using notify::Trigger;
  auto data = value::ParseJson(event.data, "event");
  if (!data.ok()) return std::nullopt;
  const value::Value& d = *data;
  notify::Event n{.project = event.project};
  if (event.type == "run") {
    n.run = value::IntAt(&d, {"id"});
    const std::string state = value::StringAt(&d, {"state"});
    if (state == "failed") {
      n.trigger = Trigger::kRunFailed;
    } else if (state == "succeeded") {
      n.trigger = Trigger::kRunSucceeded;
    } else if (state == "awaiting_approval") {
      n.trigger = Trigger::kApprovalNeeded;
    } else {
      return std::nullopt;
    }
    n.id = fmt::format("run-{}-{}", n.run, state);
    n.key = n.id;
    if (auto run = store_.GetRun(n.run); run.ok()) {
      n.app = run->pipeline;
      n.message = run->message;
      if (n.trigger == Trigger::kApprovalNeeded && n.message.empty()) {
        n.message = fmt::format("run {} of {} ({}) is untrusted code", n.run, run->pipeline, run->ref);
      }
    }
    return n;
  }
  if (event.type == "release") {
    n.app = value::StringAt(&d, {"app"});
    n.release = value::IntAt(&d, {"release"});
    n.environment = value::StringAt(&d, {"environment"});
    n.cluster = value::StringAt(&d, {"cluster"});
    const std::string state = value::StringAt(&d, {"state"});
    if (state != "healthy" && state != "failed") return std::nullopt;
    int64_t version = 0;
    if (auto targets = store_.ListTargets(n.release); targets.ok()) {
      for (const auto& t : *targets) {
        if (t.env == n.environment && t.cluster == n.cluster) {
          n.message = t.message;
          version = t.version;
        }
      }
    }
    if (state == "healthy") {
      n.trigger = Trigger::kReleaseDeployed;
    } else {
      n.trigger = n.message.find("sync window") != std::string::npos ? Trigger::kSyncWindowBlocked
                                                                      : Trigger::kDeployFailed;
    }
    n.id = fmt::format("release-{}-{}-{}-{}-{}", n.release, n.environment, n.cluster, state, version);
    n.key = n.id;
    return n;
  }
  if (event.type == "action") {
    if (value::StringAt(&d, {"phase"}) != "WaitingApproval") return std::nullopt;
    n.trigger = Trigger::kApprovalNeeded;
    n.app = value::StringAt(&d, {"app"});
    n.release = value::IntAt(&d, {"release"});
    n.environment = value::StringAt(&d, {"environment"});
    n.message = value::StringAt(&d, {"message"});
    n.id = fmt::format("approval-{}-{}-{}", n.app, n.release, event.id);
    n.key = fmt::format("approval|{}|{}|{}", n.app, n.release, n.environment);
    return n;
  }
  if (event.type == "app") {
    n.app = value::StringAt(&d, {"app"});
    n.environment = value::StringAt(&d, {"environment"});
    n.cluster = value::StringAt(&d, {"cluster"});
    const std::string key = n.cluster + "/" + value::StringAt(&d, {"namespace"}) + "/" + n.app;
    const std::string health = value::StringAt(&d, {"health"});
    const std::string sync = value::StringAt(&d, {"sync"});
    auto it = apps_.try_emplace(key).first;
    const auto [was_health, was_sync] = it->second;
    it->second = {health, sync};
    n.id = fmt::format("app-{}-{}", key, event.id);
    if (health == "Degraded" && was_health != "Degraded") {
      n.trigger = Trigger::kHealthDegraded;
      n.message = "health is Degraded";
      return n;
    }
    if (health == "Healthy" && was_health == "Degraded") {
      n.trigger = Trigger::kHealthRecovered;
      return n;
    }
    if (sync == "OutOfSync" && was_sync == "Synced") {
      n.trigger = Trigger::kDriftDetected;
      n.message = "OutOfSync with revision " + value::StringAt(&d, {"revision"});
      return n;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace gantry::server
