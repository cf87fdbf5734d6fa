#pragma once
// The status of an Application (gantry.dev/v1alpha1), typed: what the agent writes, `gantry app`
// prints and the release ledger reads from pull clusters. Conversion to and from the object's
// `status` value happens here and nowhere else; condition types, reasons and phases are the
// constants below, never inline literals. Pure: no I/O. Values; not synchronised.
//
// The wire form (status:):
//   observedGeneration   the spec generation this status describes
//   sync                 {status: Synced|OutOfSync, revision: commit}
//   health               {status: Healthy|Progressing|Degraded|Suspended|Missing|Unknown, message}
//   resources            [{group, version, kind, namespace, name, status, health: {status, message},
//                          failed, message}]  — one per rendered object and per object to prune
//   operationState       the last (or running) sync: {phase, revision, startedAt, finishedAt,
//                          retryCount, trigger, message, syncResult: {resources: [...]}}
//   history              the last syncs: [{revision, startedAt, finishedAt, result, message}]
//   conditions           [{type, status: "True"|"False", reason, message, lastTransitionTime}]
//   lastSyncRequest, lastRefreshRequest, lastTerminateRequest   the request annotations already acted on
//   reconciledAt         when a reconcile last changed this status

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "health/health.h"
#include "value/value.h"

namespace gantry::api {

// Condition types.
inline constexpr char kConditionReady[] = "Ready";
inline constexpr char kConditionInvalidSpec[] = "InvalidSpec";
inline constexpr char kConditionSuspended[] = "Suspended";
inline constexpr char kConditionDependencyNotReady[] = "DependencyNotReady";
inline constexpr char kConditionFetchFailed[] = "FetchFailed";
inline constexpr char kConditionRenderFailed[] = "RenderFailed";
inline constexpr char kConditionComparisonFailed[] = "ComparisonFailed";
inline constexpr char kConditionSyncFailed[] = "SyncFailed";
inline constexpr char kConditionProjectDenied[] = "ProjectDenied";        // its project refuses it
inline constexpr char kConditionSyncWindowClosed[] = "SyncWindowClosed";  // a sync waits for its window
inline constexpr char kConditionImageVerificationFailed[] = "ImageVerificationFailed";  // an image its project's rules refuse
inline constexpr char kConditionCommitVerificationFailed[] = "CommitVerificationFailed";  // an unsigned config commit its project's rules refuse

// Condition reasons (besides the types above, which double as reasons of their own condition).
inline constexpr char kReasonSynced[] = "Synced";
inline constexpr char kReasonOutOfSync[] = "OutOfSync";
inline constexpr char kReasonRetriesExhausted[] = "RetriesExhausted";
inline constexpr char kReasonPruneBlocked[] = "PruneBlocked";
inline constexpr char kReasonTerminated[] = "Terminated";  // SyncFailed: a terminate request stopped it

// Sync status of the application and of each resource ("Synced", "OutOfSync", "Missing", "Extra"
// per resource: diff::Name).
inline constexpr char kSynced[] = "Synced";
inline constexpr char kOutOfSync[] = "OutOfSync";

// Operation phases and history results.
inline constexpr char kPhaseRunning[] = "Running";
inline constexpr char kPhaseSucceeded[] = "Succeeded";
inline constexpr char kPhaseFailed[] = "Failed";
// Stopped by a terminate request (gantry.dev/terminate-requested); not retried at its revision.
inline constexpr char kPhaseTerminated[] = "Terminated";

// What started a sync.
inline constexpr char kTriggerManual[] = "manual";
inline constexpr char kTriggerResume[] = "resume";
inline constexpr char kTriggerRevision[] = "revision";
inline constexpr char kTriggerSelfHeal[] = "self-heal";

struct Condition {
  std::string type;
  bool status = false;
  std::string reason;
  std::string message;
  std::string last_transition_time;  // RFC 3339
  friend bool operator==(const Condition&, const Condition&) = default;
};

struct ResourceStatus {
  std::string group, version, kind, namespace_, name;
  std::string status;  // sync status ("Synced"...) or, in syncResult, the action ("created"...)
  health::HealthStatus health = health::HealthStatus::kUnknown;
  std::string health_message;
  bool failed = false;
  std::string message;
  friend bool operator==(const ResourceStatus&, const ResourceStatus&) = default;
};

struct OperationState {
  std::string phase;  // kPhase*
  std::string revision;
  std::string started_at, finished_at;
  int64_t retry_count = 0;
  std::string trigger;  // kTrigger*
  std::string message;
  std::vector<ResourceStatus> sync_result;
  friend bool operator==(const OperationState&, const OperationState&) = default;
};

struct HistoryEntry {
  std::string revision, started_at, finished_at;
  std::string result;  // kPhaseSucceeded, kPhaseFailed or kPhaseTerminated
  std::string message;
  friend bool operator==(const HistoryEntry&, const HistoryEntry&) = default;
};

struct ApplicationStatus {
  int64_t observed_generation = 0;
  std::string sync_status;  // "" before the first compare
  std::string sync_revision;
  std::optional<health::HealthStatus> health;  // nullopt before the first compare
  std::string health_message;
  std::vector<ResourceStatus> resources;
  std::optional<OperationState> operation;
  std::vector<HistoryEntry> history;
  std::vector<Condition> conditions;
  std::string last_sync_request, last_refresh_request, last_terminate_request;
  std::string reconciled_at;

  // The condition of `type`, or nullptr.
  const Condition* FindCondition(std::string_view type) const;
  friend bool operator==(const ApplicationStatus&, const ApplicationStatus&) = default;
};

// Reads the `status` of an Application object (or nullptr: an empty status). Lenient, as a status
// is written by agents of other versions: fields of the wrong type read as absent.
ApplicationStatus ParseStatus(const value::Value* status);

// The wire form (see the file comment); empty fields are left out.
value::Value ToValue(const ApplicationStatus& status);

// Conditions as a reconcile sets them: each Set() names one condition of the new status, keeping
// the lastTransitionTime of the same condition in `previous` when its status did not change.
class ConditionSet {
 public:
  ConditionSet(const std::vector<Condition>& previous, std::string now) : previous_(previous), now_(std::move(now)) {}
  void Set(std::string_view type, bool on, std::string_view reason, std::string_view message);
  std::vector<Condition> Take() { return std::move(current_); }
  const std::vector<Condition>& Peek() const { return current_; }

 private:
  const std::vector<Condition>& previous_;
  std::string now_;
  std::vector<Condition> current_;
};

}  // namespace gantry::api
