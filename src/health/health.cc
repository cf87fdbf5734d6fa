#include "health/health.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace gantry::health {
namespace {

using value::Value;
using Path = std::initializer_list<std::string_view>;
using enum HealthStatus;

// Reads the fields of one node of an object (the object itself, a condition, a container status).
// A field that is absent or null reads as its zero value, as in Go. A field of the wrong type, or a
// step on the way to it that is not a map, also reads as its zero value and records the first such
// error in *error (shared by every Reader of one object), which makes the object Unknown.
class Reader {
 public:
  Reader(const Value* node, std::string where, std::string* error)
      : node_(node), where_(std::move(where)), error_(error) {}

  // The value at `path`; nullptr when absent or null.
  const Value* Get(Path path) const {
    const Value* v = node_;
    size_t depth = 0;
    for (std::string_view key : path) {
      if (v == nullptr || v->IsNull()) return nullptr;
      if (!v->IsMap()) {
        Fail(path, depth, *v, "a map");
        return nullptr;
      }
      v = v->Get(key);
      ++depth;
    }
    return v == nullptr || v->IsNull() ? nullptr : v;
  }
  bool Has(Path path) const { return Get(path) != nullptr; }

  // Checks that the field, when present, is a map.
  void ExpectMap(Path path) const {
    const Value* v = Get(path);
    if (v != nullptr && !v->IsMap()) Fail(path, path.size(), *v, "a map");
  }

  std::string_view Str(Path path) const {
    const Value* v = Get(path);
    if (v == nullptr) return {};
    if (!v->IsString()) {
      Fail(path, path.size(), *v, "a string");
      return {};
    }
    return v->AsString();
  }

  bool Bool(Path path) const {
    const Value* v = Get(path);
    if (v == nullptr) return false;
    if (!v->IsBool()) {
      Fail(path, path.size(), *v, "a boolean");
      return false;
    }
    return v->AsBool();
  }

  // Counts (replicas, pods) are int32 in the Kubernetes API, so differences of them cannot
  // overflow; generations are int64 and only compared.
  std::optional<int64_t> OptInt32(Path path) const {
    return OptInt(path, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
  }
  int64_t Int32(Path path) const { return OptInt32(path).value_or(0); }
  std::optional<int64_t> OptInt64(Path path) const {
    return OptInt(path, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  }
  int64_t Int64(Path path) const { return OptInt64(path).value_or(0); }

  // The items of a list, each as a Reader.
  std::vector<Reader> Items(Path path) const {
    std::vector<Reader> out;
    const Value* v = Get(path);
    if (v == nullptr) return out;
    if (!v->IsSeq()) {
      Fail(path, path.size(), *v, "a list");
      return out;
    }
    std::string at = Where(path, path.size());
    for (size_t i = 0; i < v->size(); ++i) {
      out.emplace_back(v->At(i), fmt::format("{}[{}]", at, i), error_);
    }
    return out;
  }
  size_t Count(Path path) const { return Items(path).size(); }

  std::string* error() const { return error_; }

 private:
  std::optional<int64_t> OptInt(Path path, int64_t min, int64_t max) const {
    const Value* v = Get(path);
    if (v == nullptr) return std::nullopt;
    std::optional<int64_t> n;
    if (v->IsInt()) {
      n = v->AsInt();
    } else if (v->IsDouble()) {
      // JSON has only numbers: 3.0 is 3, as Kubernetes' converter has it.
      double d = v->AsDouble();
      if (std::trunc(d) == d && std::fabs(d) < 0x1p62) n = static_cast<int64_t>(d);
    }
    if (!n || *n < min || *n > max) {
      Fail(path, path.size(), *v,
           max == std::numeric_limits<int32_t>::max() ? "a 32-bit integer" : "an integer");
      return std::nullopt;
    }
    return n;
  }

  std::string Where(Path path, size_t depth) const {
    std::string at = where_;
    for (std::string_view key : path) {
      if (depth-- == 0) break;
      at += '.';
      at += key;
    }
    return at;
  }

  void Fail(Path path, size_t depth, const Value& got, std::string_view want) const {
    if (!error_->empty()) return;
    std::string at = Where(path, depth);
    std::string shown = got.IsString() || got.IsNumber() || got.IsBool() ? value::ToJson(got) : "";
    if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
    *error_ = fmt::format("{} is {}{}, expected {}", at.empty() ? "the object" : at, TypeName(got),
                          shown.empty() ? "" : " (" + shown + ")", want);
  }

  const Value* node_;
  std::string where_;
  std::string* error_;
};

struct Condition {
  std::string_view type;
  std::string_view status;
  std::string_view reason;
  std::string_view message;
};

std::vector<Condition> Conditions(const Reader& r, Path path = {"status", "conditions"}) {
  std::vector<Condition> out;
  for (const Reader& c : r.Items(path)) {
    out.push_back({c.Str({"type"}), c.Str({"status"}), c.Str({"reason"}), c.Str({"message"})});
  }
  return out;
}

const Condition* Find(const std::vector<Condition>& conditions, std::string_view type) {
  for (const Condition& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

// The condition's message, or its reason when it has none.
std::string Describe(const Condition& c) {
  return std::string(c.message.empty() ? c.reason : c.message);
}

// --- apps ---------------------------------------------------------------------------------------

// gitops-engine health_deployment.go (kubectl rollout status).
Health DeploymentHealth(const Reader& d) {
  if (d.Bool({"spec", "paused"})) return {kSuspended, "Deployment is paused"};
  if (d.Int64({"metadata", "generation"}) > d.Int64({"status", "observedGeneration"})) {
    return {kProgressing,
            "Waiting for rollout to finish: observed deployment generation less than desired "
            "generation"};
  }
  std::vector<Condition> conditions = Conditions(d);
  const Condition* progressing = Find(conditions, "Progressing");
  if (progressing != nullptr && progressing->reason == "ProgressDeadlineExceeded") {
    return {kDegraded, fmt::format("Deployment \"{}\" exceeded its progress deadline",
                                   d.Str({"metadata", "name"}))};
  }
  std::optional<int64_t> replicas = d.OptInt32({"spec", "replicas"});
  int64_t status_replicas = d.Int32({"status", "replicas"});
  int64_t updated = d.Int32({"status", "updatedReplicas"});
  int64_t available = d.Int32({"status", "availableReplicas"});
  if (replicas && updated < *replicas) {
    return {kProgressing,
            fmt::format("Waiting for rollout to finish: {} out of {} new replicas have been "
                        "updated...",
                        updated, *replicas)};
  }
  if (status_replicas > updated) {
    return {kProgressing,
            fmt::format("Waiting for rollout to finish: {} old replicas are pending termination...",
                        status_replicas - updated)};
  }
  if (available < updated) {
    return {kProgressing,
            fmt::format("Waiting for rollout to finish: {} of {} updated replicas are available...",
                        available, updated)};
  }
  return {kHealthy, ""};
}

// gitops-engine health_statefulset.go (kubectl rollout status), including its quirk that a
// RollingUpdate with a rollingUpdate block (which the API server always defaults) is judged by the
// partition alone.
Health StatefulSetHealth(const Reader& s) {
  int64_t observed = s.Int64({"status", "observedGeneration"});
  if (observed == 0 || s.Int64({"metadata", "generation"}) > observed) {
    return {kProgressing, "Waiting for statefulset spec update to be observed..."};
  }
  std::optional<int64_t> replicas = s.OptInt32({"spec", "replicas"});
  int64_t ready = s.Int32({"status", "readyReplicas"});
  int64_t updated = s.Int32({"status", "updatedReplicas"});
  if (replicas && ready < *replicas) {
    return {kProgressing, fmt::format("Waiting for {} pods to be ready...", *replicas - ready)};
  }
  std::string_view strategy = s.Str({"spec", "updateStrategy", "type"});
  if (strategy == "RollingUpdate" && s.Has({"spec", "updateStrategy", "rollingUpdate"})) {
    std::optional<int64_t> partition =
        s.OptInt32({"spec", "updateStrategy", "rollingUpdate", "partition"});
    if (replicas && partition && updated < *replicas - *partition) {
      return {kProgressing,
              fmt::format("Waiting for partitioned roll out to finish: {} out of {} new pods have "
                          "been updated...",
                          updated, *replicas - *partition)};
    }
    return {kHealthy, fmt::format("partitioned roll out complete: {} new pods have been updated...",
                                  updated)};
  }
  if (strategy == "OnDelete") {
    return {kHealthy, fmt::format("statefulset has {} ready pods ({} updated)", ready, updated)};
  }
  std::string_view update_revision = s.Str({"status", "updateRevision"});
  std::string_view current_revision = s.Str({"status", "currentRevision"});
  if (update_revision != current_revision) {
    return {kProgressing,
            fmt::format("waiting for statefulset rolling update to complete {} pods at revision "
                        "{}...",
                        updated, update_revision)};
  }
  return {kHealthy, fmt::format("statefulset rolling update complete {} pods at revision {}...",
                                s.Int32({"status", "currentReplicas"}), current_revision)};
}

// gitops-engine health_daemonset.go (kubectl rollout status). Like both, numberMisscheduled is not
// looked at: the controller deletes such pods, and a node that keeps one must not block a rollout.
Health DaemonSetHealth(const Reader& d) {
  if (d.Int64({"metadata", "generation"}) > d.Int64({"status", "observedGeneration"})) {
    return {kProgressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired "
            "generation"};
  }
  int64_t desired = d.Int32({"status", "desiredNumberScheduled"});
  int64_t updated = d.Int32({"status", "updatedNumberScheduled"});
  int64_t available = d.Int32({"status", "numberAvailable"});
  if (d.Str({"spec", "updateStrategy", "type"}) == "OnDelete") {
    return {kHealthy,
            fmt::format("daemon set {} out of {} new pods have been updated", updated, desired)};
  }
  std::string_view name = d.Str({"metadata", "name"});
  if (updated < desired) {
    return {kProgressing,
            fmt::format("Waiting for daemon set \"{}\" rollout to finish: {} out of {} new pods "
                        "have been updated...",
                        name, updated, desired)};
  }
  if (available < desired) {
    return {kProgressing,
            fmt::format("Waiting for daemon set \"{}\" rollout to finish: {} of {} updated pods "
                        "are available...",
                        name, available, desired)};
  }
  return {kHealthy, ""};
}

// gitops-engine health_replicaset.go.
Health ReplicaSetHealth(const Reader& r) {
  if (r.Int64({"metadata", "generation"}) > r.Int64({"status", "observedGeneration"})) {
    return {kProgressing,
            "Waiting for rollout to finish: observed replica set generation less than desired "
            "generation"};
  }
  std::vector<Condition> conditions = Conditions(r);
  const Condition* failure = Find(conditions, "ReplicaFailure");
  if (failure != nullptr && failure->status == "True") return {kDegraded, Describe(*failure)};
  std::optional<int64_t> replicas = r.OptInt32({"spec", "replicas"});
  int64_t available = r.Int32({"status", "availableReplicas"});
  if (replicas && available < *replicas) {
    return {kProgressing,
            fmt::format("Waiting for rollout to finish: {} out of {} new replicas are available...",
                        available, *replicas)};
  }
  return {kHealthy, ""};
}

// --- core ---------------------------------------------------------------------------------------

bool IsBadWaitingReason(std::string_view reason) {
  // CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError,
  // RunContainerError...
  return reason.starts_with("Err") || reason.ends_with("Error") || reason.ends_with("BackOff");
}

// Why a terminated container failed, or "" (gitops-engine's getFailMessage).
std::string FailMessage(const Reader& container) {
  if (!container.Has({"state", "terminated"})) return "";
  std::string_view message = container.Str({"state", "terminated", "message"});
  if (!message.empty()) return std::string(message);
  if (container.Str({"state", "terminated", "reason"}) == "OOMKilled") return "OOMKilled";
  int64_t code = container.Int32({"state", "terminated", "exitCode"});
  if (code != 0) {
    return fmt::format("container \"{}\" failed with exit code {}", container.Str({"name"}), code);
  }
  return "";
}

// gitops-engine health_pod.go. Pods whose restartPolicy is Never or OnFailure are usually hooks or
// one-shot tasks: a bad waiting reason (an image being pulled late) must not fail them early, and
// running is not done yet, so they are Progressing until they succeed or fail. Differs from Argo:
// a missing restartPolicy counts as Always (the API server's default) rather than making a running
// pod Unknown, and a bad waiting state is described by container, reason and message (Argo shows
// the message alone).
Health PodHealth(const Reader& p) {
  std::string_view restart_policy = p.Str({"spec", "restartPolicy"});
  bool always = restart_policy.empty() || restart_policy == "Always";
  std::vector<Reader> containers = p.Items({"status", "containerStatuses"});
  if (always) {
    std::string messages;
    bool degraded = false;
    for (const Reader& c : containers) {
      if (!c.Has({"state", "waiting"})) continue;
      std::string_view reason = c.Str({"state", "waiting", "reason"});
      if (!IsBadWaitingReason(reason)) continue;
      degraded = true;
      std::string_view message = c.Str({"state", "waiting", "message"});
      if (!messages.empty()) messages += ", ";
      // The reason always: the kubelet's message alone ("back-off 10s restarting failed
      // container=...") does not say CrashLoopBackOff, which is what people search for.
      messages += fmt::format("container \"{}\": {}", c.Str({"name"}), reason);
      if (!message.empty()) messages += fmt::format(": {}", message);
    }
    // Between its back-offs a crash-looping container is mostly shown terminated, not waiting: one
    // that has failed and been restarted before is as degraded as one waiting in CrashLoopBackOff.
    for (const Reader& c : containers) {
      int64_t restarts = c.Int32({"restartCount"});
      if (restarts == 0 || FailMessage(c).empty()) continue;
      std::string fail(c.Str({"state", "terminated", "message"}));
      if (fail.empty() && c.Str({"state", "terminated", "reason"}) == "OOMKilled") fail = "OOMKilled";
      if (fail.empty()) fail = fmt::format("exit code {}", c.Int32({"state", "terminated", "exitCode"}));
      degraded = true;
      if (!messages.empty()) messages += ", ";
      messages += fmt::format("container \"{}\" is crash-looping: {} (restarted {} times)", c.Str({"name"}), fail,
                              restarts);
    }
    if (degraded) return {kDegraded, messages};
  }

  std::string message(p.Str({"status", "message"}));
  std::string_view phase = p.Str({"status", "phase"});
  if (phase == "Pending") return {kProgressing, message};
  if (phase == "Succeeded") return {kHealthy, message};
  if (phase == "Failed") {
    if (!message.empty()) return {kDegraded, message};
    for (const Reader& c : p.Items({"status", "initContainerStatuses"})) {
      if (std::string m = FailMessage(c); !m.empty()) return {kDegraded, m};
    }
    for (const Reader& c : containers) {
      if (std::string m = FailMessage(c); !m.empty()) return {kDegraded, m};
    }
    return {kDegraded, ""};
  }
  if (phase == "Running") {
    if (restart_policy == "Never" || restart_policy == "OnFailure") return {kProgressing, message};
    if (!always) return {kUnknown, fmt::format("unknown restartPolicy \"{}\"", restart_policy)};
    std::vector<Condition> conditions = Conditions(p);
    const Condition* ready = Find(conditions, "Ready");
    if (ready != nullptr && ready->status == "True") return {kHealthy, message};
    for (const Reader& c : containers) {
      if (!c.Has({"lastState", "terminated"})) continue;
      if (message.empty()) {
        message = fmt::format(
            "container \"{}\" is not ready and last terminated with exit code {} ({})",
            c.Str({"name"}), c.Int32({"lastState", "terminated", "exitCode"}),
            c.Str({"lastState", "terminated", "reason"}));
      }
      return {kDegraded, message};
    }
    return {kProgressing, message};
  }
  return {kUnknown, message.empty() ? fmt::format("unknown pod phase \"{}\"", phase) : message};
}

// gitops-engine health_service.go.
Health ServiceHealth(const Reader& s) {
  if (s.Str({"spec", "type"}) == "LoadBalancer" &&
      s.Count({"status", "loadBalancer", "ingress"}) == 0) {
    return {kProgressing, "Waiting for the load balancer to get an address"};
  }
  return {kHealthy, ""};
}

// gitops-engine health_pvc.go.
Health PersistentVolumeClaimHealth(const Reader& c) {
  std::string_view phase = c.Str({"status", "phase"});
  if (phase == "Bound") return {kHealthy, ""};
  if (phase == "Pending") return {kProgressing, "Waiting for the claim to be bound"};
  if (phase == "Lost") return {kDegraded, "The claim lost its volume"};
  return {kUnknown, fmt::format("unknown claim phase \"{}\"", phase)};
}

// Not in gitops-engine (Argo CD gives Namespaces no health). Active, or not reported yet, is
// Healthy; Terminating is Progressing (usually caught earlier by its deletionTimestamp).
Health NamespaceHealth(const Reader& n) {
  std::string_view phase = n.Str({"status", "phase"});
  if (phase.empty() || phase == "Active") return {kHealthy, ""};
  if (phase == "Terminating") return {kProgressing, "Namespace is terminating"};
  return {kUnknown, fmt::format("unknown namespace phase \"{}\"", phase)};
}

// --- batch --------------------------------------------------------------------------------------

// gitops-engine health_job.go, plus spec.suspend (the Suspended condition lags it). Differs from
// Argo: Complete and Failed count only with status "True", which is the only status Kubernetes
// gives them.
Health JobHealth(const Reader& j) {
  std::vector<Condition> conditions = Conditions(j);
  auto is_true = [&](std::string_view type) {
    const Condition* c = Find(conditions, type);
    return c != nullptr && c->status == "True" ? c : nullptr;
  };
  if (const Condition* failed = is_true("Failed")) return {kDegraded, Describe(*failed)};
  if (const Condition* complete = is_true("Complete")) return {kHealthy, Describe(*complete)};
  if (const Condition* suspended = is_true("Suspended")) return {kSuspended, Describe(*suspended)};
  if (j.Bool({"spec", "suspend"})) return {kSuspended, "Job is suspended"};
  return {kProgressing, fmt::format("Job has {} active, {} succeeded and {} failed pods",
                                    j.Int32({"status", "active"}), j.Int32({"status", "succeeded"}),
                                    j.Int32({"status", "failed"}))};
}

// Not in gitops-engine. A CronJob is Suspended when spec.suspend is set and Healthy otherwise: the
// Jobs it starts carry their own health, and a failed run does not make the schedule unhealthy.
Health CronJobHealth(const Reader& c) {
  if (c.Bool({"spec", "suspend"})) return {kSuspended, "CronJob is suspended"};
  return {kHealthy, ""};
}

// --- networking, extensions, autoscaling ---------------------------------------------------------

// gitops-engine health_ingress.go: an Ingress is Progressing until its controller publishes an
// address in status.loadBalancer.ingress.
Health IngressHealth(const Reader& i) {
  if (i.Count({"status", "loadBalancer", "ingress"}) == 0) {
    return {kProgressing, "Waiting for the ingress controller to publish an address"};
  }
  return {kHealthy, ""};
}

// gitops-engine health_customresourcedefinition.go. Differs from Argo: Established=False (while
// NamesAccepted is not False) is Progressing, not Degraded: it is how every new CRD starts.
Health CustomResourceDefinitionHealth(const Reader& c) {
  std::vector<Condition> conditions = Conditions(c);
  if (conditions.empty()) return {kProgressing, "Status conditions not found"};
  auto status_of = [&](std::string_view type) {
    const Condition* found = Find(conditions, type);
    return found == nullptr ? std::string_view() : found->status;
  };
  if (status_of("Terminating") == "True") {
    return {kProgressing,
            fmt::format("CRD is being terminated: {}", Describe(*Find(conditions, "Terminating")))};
  }
  if (status_of("NamesAccepted") == "False") {
    return {kDegraded, fmt::format("CRD names have not been accepted: {}",
                                   Describe(*Find(conditions, "NamesAccepted")))};
  }
  if (status_of("Established") != "True") {
    const Condition* established = Find(conditions, "Established");
    return {kProgressing, fmt::format("CRD is not established yet{}",
                                      established ? ": " + Describe(*established) : "")};
  }
  if (status_of("NonStructuralSchema") == "True") {
    return {kDegraded, fmt::format("Schema violations found: {}",
                                   Describe(*Find(conditions, "NonStructuralSchema")))};
  }
  return {kHealthy, "CRD is established"};
}

// gitops-engine health_apiservice.go.
Health APIServiceHealth(const Reader& a) {
  std::vector<Condition> conditions = Conditions(a);
  if (const Condition* available = Find(conditions, "Available")) {
    std::string message = fmt::format("{}: {}", available->reason, available->message);
    return {available->status == "True" ? kHealthy : kProgressing, message};
  }
  return {kProgressing, "Waiting to be processed"};
}

// gitops-engine health_hpa.go: conditions from status (autoscaling/v2) or, for autoscaling/v1,
// from the autoscaling.alpha.kubernetes.io/conditions annotation. Differs from Argo, which returns
// at the first condition that decides: any failing condition makes the HPA Degraded, wherever it
// is in the list; then AbleToScale or ScalingLimited True makes it Healthy; else Progressing.
Health HorizontalPodAutoscalerHealth(const Reader& h) {
  std::vector<Condition> conditions = Conditions(h);
  // Keeps the parsed annotation alive while `conditions` points into it.
  value::Value annotation_doc;
  if (!h.Has({"status", "conditions"})) {
    std::string_view annotation =
        h.Str({"metadata", "annotations", "autoscaling.alpha.kubernetes.io/conditions"});
    if (!annotation.empty()) {
      auto parsed = value::ParseJson(annotation, "autoscaling.alpha.kubernetes.io/conditions");
      if (!parsed.ok()) {
        return {kUnknown, fmt::format("cannot parse the conditions annotation: {}",
                                      parsed.status().message())};
      }
      annotation_doc = *std::move(parsed);
      Reader doc(&annotation_doc,
                 ".metadata.annotations[autoscaling.alpha.kubernetes.io/conditions]", h.error());
      conditions = Conditions(doc, {});
    }
  }
  struct Failing {
    std::string_view type;
    std::string_view reason;
  };
  static constexpr Failing kFailing[] = {{"AbleToScale", "FailedGetScale"},
                                         {"AbleToScale", "FailedUpdateScale"},
                                         {"ScalingActive", "FailedGetResourceMetric"},
                                         {"ScalingActive", "InvalidSelector"}};
  for (const Condition& c : conditions) {
    for (const Failing& f : kFailing) {
      if (c.type == f.type && c.reason == f.reason) return {kDegraded, Describe(c)};
    }
  }
  for (const Condition& c : conditions) {
    if ((c.type == "AbleToScale" || c.type == "ScalingLimited") && c.status == "True") {
      return {kHealthy, Describe(c)};
    }
  }
  return {kProgressing, "Waiting to Autoscale"};
}

// --- any other kind -----------------------------------------------------------------------------

// kstatus' generic rules (checkGenericProperties) plus the Ready and Available conditions that
// Flux, Crossplane, cert-manager and most operators set.
Health GenericHealth(const Reader& o) {
  std::optional<int64_t> generation = o.OptInt64({"metadata", "generation"});
  std::optional<int64_t> observed = o.OptInt64({"status", "observedGeneration"});
  if (generation && observed && *observed < *generation) {
    return {kProgressing, fmt::format("{} generation is {}, but latest observed generation is {}",
                                      o.Str({"kind"}), *generation, *observed)};
  }
  std::vector<Condition> conditions = Conditions(o);
  for (const Condition& c : conditions) {
    if (c.type == "Stalled" && c.status == "True") return {kDegraded, Describe(c)};
  }
  for (const Condition& c : conditions) {
    if (c.type == "Reconciling" && c.status == "True") return {kProgressing, Describe(c)};
  }
  for (std::string_view type : {"Ready", "Available"}) {
    if (const Condition* c = Find(conditions, type)) {
      return {c->status == "True" ? kHealthy : kProgressing, Describe(*c)};
    }
  }
  return {kHealthy, ""};
}

// The built-in checks by (API group, kind); any version of the group is accepted (Argo refuses
// versions it has no Go type for, which only matters for long-removed betas).
struct Check {
  std::string_view group;
  std::string_view kind;
  Health (*assess)(const Reader&);
};
constexpr Check kChecks[] = {
    {"apps", "Deployment", DeploymentHealth},
    {"apps", "StatefulSet", StatefulSetHealth},
    {"apps", "DaemonSet", DaemonSetHealth},
    {"apps", "ReplicaSet", ReplicaSetHealth},
    {"extensions", "Deployment", DeploymentHealth},
    {"extensions", "DaemonSet", DaemonSetHealth},
    {"extensions", "ReplicaSet", ReplicaSetHealth},
    {"extensions", "Ingress", IngressHealth},
    {"", "Pod", PodHealth},
    {"", "Service", ServiceHealth},
    {"", "PersistentVolumeClaim", PersistentVolumeClaimHealth},
    {"", "Namespace", NamespaceHealth},
    {"batch", "Job", JobHealth},
    {"batch", "CronJob", CronJobHealth},
    {"networking.k8s.io", "Ingress", IngressHealth},
    {"apiextensions.k8s.io", "CustomResourceDefinition", CustomResourceDefinitionHealth},
    {"apiregistration.k8s.io", "APIService", APIServiceHealth},
    {"autoscaling", "HorizontalPodAutoscaler", HorizontalPodAutoscalerHealth},
};

Health AssessObject(const Reader& obj) {
  for (std::string_view field : {"metadata", "spec", "status"}) obj.ExpectMap({field});
  if (!obj.Str({"metadata", "deletionTimestamp"}).empty()) {
    return {kProgressing, "Pending deletion"};
  }
  std::string_view api_version = obj.Str({"apiVersion"});
  std::string_view kind = obj.Str({"kind"});
  size_t slash = api_version.find('/');
  std::string_view group = slash == std::string_view::npos ? "" : api_version.substr(0, slash);
  for (const Check& check : kChecks) {
    if (check.group == group && check.kind == kind) return check.assess(obj);
  }
  return GenericHealth(obj);
}

}  // namespace

std::string_view Name(HealthStatus status) {
  switch (status) {
    case kHealthy: return "Healthy";
    case kProgressing: return "Progressing";
    case kDegraded: return "Degraded";
    case kSuspended: return "Suspended";
    case kMissing: return "Missing";
    case kUnknown: return "Unknown";
  }
  return "Unknown";
}

Health Assess(const value::Value* live) {
  if (live == nullptr) return {kMissing, "the object does not exist"};
  std::string error;
  Reader obj(live, "", &error);
  Health health = AssessObject(obj);
  if (!error.empty()) return {kUnknown, "cannot assess health: " + error};
  return health;
}

bool IsWorse(HealthStatus current, HealthStatus candidate) {
  auto rank = [](HealthStatus s) {
    switch (s) {
      case kHealthy: return 0;
      case kSuspended: return 1;
      case kProgressing: return 2;
      case kMissing: return 3;
      case kDegraded: return 4;
      case kUnknown: return 5;
    }
    return 5;
  };
  return rank(candidate) > rank(current);
}

}  // namespace gantry::health
