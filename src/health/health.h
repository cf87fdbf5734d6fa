#pragma once
// Health: how healthy a live Kubernetes object is, in Argo CD's vocabulary (Healthy, Progressing,
// Degraded, Suspended, Missing, Unknown) with a message for people.
//
// Assess() is a pure function of the object as the API server returns it (kubectl get -o yaml),
// status included. It follows Argo CD's gitops-engine (pkg/health) for the built-in kinds and kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus) for everything else:
//   - absent (nullptr) → Missing; metadata.deletionTimestamp set → Progressing "Pending deletion".
//   - A check by (API group, kind), any version: Deployment, StatefulSet, DaemonSet, ReplicaSet
//     (apps, extensions), Pod, Service, PersistentVolumeClaim, Namespace (core), Job, CronJob
//     (batch), Ingress (networking.k8s.io, extensions), CustomResourceDefinition
//     (apiextensions.k8s.io), APIService (apiregistration.k8s.io), HorizontalPodAutoscaler
//     (autoscaling). The messages are kubectl rollout status' where Argo uses them.
//   - Any other kind: status.observedGeneration < metadata.generation → Progressing; then
//     status.conditions: Stalled=True → Degraded, Reconciling=True → Progressing, Ready or
//     Available: True → Healthy, otherwise Progressing. An object without status or without any
//     of these conditions (ConfigMap, Secret, RBAC, most CRs without a controller) is Healthy with
//     an empty message: nothing says otherwise.
//   - A field of the wrong type (a status that is a string, conditions that are not a list, a
//     replica count that is text, ...) makes the object Unknown, with a message naming the field;
//     no input makes Assess abort.
// Where Gantry differs from Argo CD is said in health.cc next to the rule.
//
// Thread-safety: every function here is pure and may be called from any number of threads.

#include <string>
#include <string_view>

#include "value/value.h"

namespace gantry::health {

enum class HealthStatus { kHealthy, kProgressing, kDegraded, kSuspended, kMissing, kUnknown };

// "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown".
std::string_view Name(HealthStatus status);

struct Health {
  HealthStatus status = HealthStatus::kUnknown;
  std::string message;  // may be empty

  friend bool operator==(const Health&, const Health&) = default;
};

// The health of a live object; nullptr means it does not exist (Missing).
Health Assess(const value::Value* live);

// Whether `candidate` is worse than `current` (Argo CD's IsWorse(current, new)), in the order
// Healthy < Suspended < Progressing < Missing < Degraded < Unknown. The health of a set of objects
// is the worst of theirs.
bool IsWorse(HealthStatus current, HealthStatus candidate);

}  // namespace gantry::health
