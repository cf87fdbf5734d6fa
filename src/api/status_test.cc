#include "api/status.h"

#include <gtest/gtest.h>

namespace gantry::api {
namespace {

TEST(ApplicationStatus, RoundTripsThroughItsWireForm) {
  ApplicationStatus s;
  s.observed_generation = 4;
  s.sync_status = kOutOfSync;
  s.sync_revision = "0123456789abcdef";
  s.health = health::HealthStatus::kProgressing;
  s.health_message = "apps/v1 Deployment web/web: 1 of 2 updated";
  s.resources.push_back({"apps", "v1", "Deployment", "web", "web", "OutOfSync", health::HealthStatus::kProgressing,
                         "rolling", false, ""});
  s.resources.push_back({"", "v1", "Namespace", "", "web", "Synced", health::HealthStatus::kHealthy, "", false, ""});
  s.operation = OperationState{kPhaseFailed, "0123", "2026-12-06T01:00:00Z", "2026-12-06T01:00:05Z", 2,
                               kTriggerRevision, "wave 0: boom", {}};
  s.operation->sync_result.push_back({"", "v1", "ConfigMap", "web", "c", "created", health::HealthStatus::kHealthy,
                                      "", true, "denied"});
  s.history.push_back({"0123", "2026-12-06T01:00:00Z", "2026-12-06T01:00:05Z", kPhaseFailed, "wave 0: boom"});
  s.conditions.push_back({kConditionSyncFailed, true, kReasonPruneBlocked, "refusing to prune", "2026-12-06T01:00:05Z"});
  s.last_sync_request = "r1";
  s.last_refresh_request = "f1";
  s.last_terminate_request = "t1";
  s.reconciled_at = "2026-12-06T01:00:06Z";

  value::Value v = ToValue(s);
  EXPECT_EQ(value::StringAt(&v, {"conditions", 0, "status"}), "True");
  EXPECT_EQ(value::StringAt(&v, {"resources", 1, "health", "status"}), "Healthy");
  EXPECT_EQ(v.Find({"resources", 1, "namespace"}), nullptr);  // cluster-scoped: no namespace key
  ApplicationStatus back = ParseStatus(&v);
  EXPECT_EQ(back, s);
  EXPECT_EQ(back.FindCondition(kConditionSyncFailed)->reason, kReasonPruneBlocked);
  EXPECT_EQ(back.FindCondition(kConditionReady), nullptr);
}

TEST(ApplicationStatus, ARunningOperationHasNoResultYet) {
  ApplicationStatus s;
  s.operation = OperationState{kPhaseRunning, "abc", "2026-12-06T01:00:00Z", "", 0, kTriggerManual, "", {}};
  value::Value v = ToValue(s);
  EXPECT_EQ(v.Find({"operationState", "finishedAt"}), nullptr);
  EXPECT_EQ(ParseStatus(&v).operation->phase, kPhaseRunning);
}

TEST(ApplicationStatus, WrongTypesReadAsAbsent) {
  auto v = value::ParseJson(R"({"sync": "Synced", "health": {"status": 3}, "conditions": [1, {"type": "Ready"}]})");
  ASSERT_TRUE(v.ok());
  ApplicationStatus s = ParseStatus(&*v);
  EXPECT_EQ(s.sync_status, "");
  EXPECT_FALSE(s.health.has_value());
  ASSERT_EQ(s.conditions.size(), 1u);
  EXPECT_FALSE(s.conditions[0].status);
  EXPECT_EQ(ParseStatus(nullptr), ApplicationStatus{});
}

TEST(ConditionSet, KeepsTheTransitionTimeWhileTheStatusHolds) {
  std::vector<Condition> previous = {{kConditionReady, true, kReasonSynced, "ok", "2026-12-01T00:00:00Z"},
                                     {kConditionFetchFailed, true, kConditionFetchFailed, "x", "2026-12-02T00:00:00Z"}};
  ConditionSet set(previous, "2026-12-06T00:00:00Z");
  set.Set(kConditionReady, true, kReasonSynced, "still ok");
  set.Set(kConditionFetchFailed, false, kConditionFetchFailed, "recovered");
  auto now = set.Take();
  ASSERT_EQ(now.size(), 2u);
  EXPECT_EQ(now[0].last_transition_time, "2026-12-01T00:00:00Z");
  EXPECT_EQ(now[1].last_transition_time, "2026-12-06T00:00:00Z");
}

}  // namespace
}  // namespace gantry::api
