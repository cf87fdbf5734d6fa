// Tables from the Kubernetes core types (k8s.io/api: +listType / +listMapKey / patchMergeKey,
// resource.Quantity and int32 fields). Unknown fields (CRDs) get the conservative answer: atomic
// lists, no quantity, no integer coercion.

#include <array>
#include <string_view>

#include "diff/internal/schema.h"

namespace gantry::diff::internal {
namespace {

using Type = ListSpec::Type;

constexpr ListSpec kAtomic{};
constexpr ListSpec kSet{Type::kSet, {}, 0};
constexpr ListSpec kByName{Type::kMap, {"name", {}}, 1};
constexpr ListSpec kContainerPorts{Type::kMap, {"containerPort", "protocol"}, 2};
constexpr ListSpec kServicePorts{Type::kMap, {"port", "protocol"}, 2};
constexpr ListSpec kByMountPath{Type::kMap, {"mountPath", {}}, 1};
constexpr ListSpec kByDevicePath{Type::kMap, {"devicePath", {}}, 1};
constexpr ListSpec kByResourceName{Type::kMap, {"resourceName", {}}, 1};
constexpr ListSpec kByIp{Type::kMap, {"ip", {}}, 1};
constexpr ListSpec kByTopology{Type::kMap, {"topologyKey", "whenUnsatisfiable"}, 2};
constexpr ListSpec kByUid{Type::kMap, {"uid", {}}, 1};
constexpr ListSpec kByType{Type::kMap, {"type", {}}, 1};

bool IsContainerList(std::string_view f) {
  return f == "containers" || f == "initContainers" || f == "ephemeralContainers";
}

}  // namespace

const ListSpec& ListSpecFor(const FieldContext& w) {
  const std::string_view f = w.field;
  if (IsContainerList(f) || f == "volumes" || f == "imagePullSecrets" || f == "schedulingGates") {
    return kByName;
  }
  if (IsContainerList(w.parent) && w.in_item) {
    if (f == "ports") return kContainerPorts;
    if (f == "env") return kByName;
    if (f == "volumeMounts") return kByMountPath;
    if (f == "volumeDevices") return kByDevicePath;
    if (f == "resizePolicy") return kByResourceName;
  }
  if (f == "resourceClaims" || (f == "claims" && w.parent == "resources")) return kByName;
  if (f == "hostAliases") return kByIp;
  if (f == "topologySpreadConstraints") return kByTopology;
  if (f == "conditions") return kByType;
  if (w.parent == "metadata" && w.parent_top_level) {
    if (f == "finalizers") return kSet;
    if (f == "ownerReferences") return kByUid;
  }
  if (w.kind == "Service" && f == "ports" && w.parent == "spec" && w.parent_top_level) {
    return kServicePorts;
  }
  if (w.parent.empty()) {  // top-level lists
    if (f == "webhooks" && (w.kind == "MutatingWebhookConfiguration" ||
                            w.kind == "ValidatingWebhookConfiguration")) {
      return kByName;
    }
    if (f == "secrets" && w.kind == "ServiceAccount") return kByName;
  }
  return kAtomic;
}

std::string_view KeyFieldDefault(std::string_view key_field) {
  return key_field == "protocol" ? "TCP" : "";
}

bool IsQuantityField(const FieldContext& w) {
  if (w.field == "sizeLimit" || w.field == "averageValue") return true;
  if (w.in_item) return false;
  static constexpr std::array<std::string_view, 7> kQuantityMaps = {
      "requests", "limits", "capacity", "allocatable", "hard", "used", "overhead"};
  for (std::string_view m : kQuantityMaps) {
    if (w.parent == m) return true;
  }
  if (w.kind == "HorizontalPodAutoscaler" && w.field == "value") {
    return w.parent == "target" || w.parent == "current";
  }
  if (w.kind == "LimitRange") {
    return w.parent == "max" || w.parent == "min" || w.parent == "default" ||
           w.parent == "defaultRequest" || w.parent == "maxLimitRequestRatio";
  }
  return false;
}

bool IsIntegerField(const FieldContext& w) {
  static constexpr std::array<std::string_view, 33> kIntegers = {
      "containerPort", "hostPort", "nodePort", "replicas", "minReplicas", "maxReplicas",
      "revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds",
      "terminationGracePeriodSeconds", "activeDeadlineSeconds", "backoffLimit", "completions",
      "parallelism", "ttlSecondsAfterFinished", "initialDelaySeconds", "periodSeconds",
      "timeoutSeconds", "successThreshold", "failureThreshold", "runAsUser", "runAsGroup",
      "fsGroup", "priority", "weight", "defaultMode", "mode", "expirationSeconds",
      "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds",
      "number", "partition"};
  for (std::string_view f : kIntegers) {
    if (w.field == f) return true;
  }
  // port is an int32 in Service ports and gRPC probes, but IntOrString in httpGet/tcpSocket.
  return w.field == "port" && w.parent != "httpGet" && w.parent != "tcpSocket";
}

}  // namespace gantry::diff::internal
