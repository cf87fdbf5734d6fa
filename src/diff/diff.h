#pragma once
// Desired-versus-live comparison of Kubernetes objects, the way Gantry applies them: server-side
// apply (SSA) with one field manager ("gantry").
//
// Compare(desired, live) answers whether applying `desired` would change `live`:
//   - desired null → Extra (live exists but is no longer rendered); live null → Missing; both null
//     → Synced. Otherwise Synced or OutOfSync, with `changed` naming every differing field.
//   - Only what desired sets is compared: every field of desired must be present in live with an
//     equal value. Fields only live has (server defaults, other managers' fields, metadata.uid /
//     resourceVersion / generation / creationTimestamp / managedFields / selfLink /
//     deletionTimestamp / deletionGracePeriodSeconds, status) are ignored. Desired's own status and
//     those metadata fields are dropped before comparing.
//   - Ownership: a field that live.metadata.managedFields says Gantry owns (entries with manager ==
//     Options::field_manager, operation Apply, no subresource, apiVersion equal to desired's) but
//     desired no longer sets is OutOfSync, because SSA would delete it — unless another manager
//     (any other entry) also owns it, in which case SSA only releases Gantry's ownership.
//     fieldsV1 is read as the apiserver writes it: `f:<name>` map fields, `k:{json}` list items by
//     key, `v:<json>` set items, `i:<n>` items by index, `.` the field itself.
//   - Unset: a null in desired means "not set" (as SSA drops it). A desired value that JSON
//     omitempty would drop — null, false, 0, "", {}, [], or a map holding only such values —
//     matches an absent live field, so `resources: {}` or `hostNetwork: false` never cause a
//     permanent OutOfSync.
//   - Maps compare key by key (subset: live may hold more keys). Lists follow the list types of the
//     built-in Kubernetes schema (a table, see schema.cc): associative lists (containers,
//     initContainers, ephemeralContainers, volumes, imagePullSecrets, resourceClaims,
//     schedulingGates by name; container ports by containerPort+protocol; env by name; volumeMounts
//     by mountPath; volumeDevices by devicePath; Service ports by port+protocol; hostAliases by ip;
//     topologySpreadConstraints by topologyKey+whenUnsatisfiable; ownerReferences by uid;
//     conditions by type; webhooks of admission configurations and ServiceAccount secrets by name)
//     match each desired item with the live item of the same key, in any order, and compare it as
//     a map; a key field desired leaves out counts as its default ("TCP" for protocol, otherwise
//     absent); an empty desired list sets no item. Sets (metadata.finalizers) need each desired
//     item somewhere in live. Every other list is atomic: same length, same order, items compared
//     pairwise with these same rules (maps inside as subsets, so server defaults inside items are
//     ignored); as SSA replaces an atomic list whole, a difference inside it is reported for the
//     list.
//   - Scalars are equal when equal as JSON values, with these semantic rules:
//       * numbers compare by value (1 == 1.0);
//       * Kubernetes quantities — values of resources requests/limits (any map named requests,
//         limits, capacity, allocatable, hard, used, overhead), sizeLimit, HPA averageValue and
//         target/current value, LimitRange max/min/default/defaultRequest/maxLimitRequestRatio —
//         compare as parsed quantities ("1000m" == "1" == 1, "1Gi" == "1024Mi", "0.5" == "500m");
//       * a decimal integer string equals the same number only in fields the Kubernetes schema
//         types as integers (a table: containerPort, hostPort, nodePort, port outside
//         httpGet/tcpSocket, replicas, ...); IntOrString fields (targetPort, maxSurge,
//         maxUnavailable, probe ports, ...) and every other field keep "80" != 80;
//       * bool and string never equal ("true" != true);
//       * Secret (core v1) data values compare as base64-decoded bytes (whitespace ignored);
//         desired stringData.k compares with base64-decode(live data.k), and a data key that
//         stringData also sets is ignored (stringData wins, as in the apiserver).
//   - ignoreDifferences: each IgnoreRule whose group/kind (exact, or "*"), name and namespace
//     (empty = any) match the object suppresses differences at or below its JSON pointers
//     (RFC 6901, ~0 and ~1 escapes; a list index matches an item's index in desired or in live)
//     and in fields owned by its managers (per live managedFields, any operation). jq path
//     expressions are not supported. A rule without kind or a malformed pointer is the only error.
//   - `changed` lists the differing fields in document order as JSON-pointer-like paths where
//     items of associative lists are written by key and set items by value:
//     "/spec/template/spec/containers/name=web/image", "…/ports/containerPort=80,protocol=TCP",
//     "/metadata/finalizers/x". "~" and "/" inside a segment are escaped as ~0 and ~1. It is a
//     readable name, not always a valid JSON pointer. A field Gantry owns that desired dropped is
//     named as live holds it. For Secrets it names keys, never values.
// Compare writes no YAML and copies neither object; on the equal path it allocates only a few
// small vectors per call (the managedFields entries it found).
//
// RenderDiff shows what Compare decided as a unified diff (diff -u, 3 lines of context) of the
// canonical YAML of two views: desired without status and server metadata, and live restricted
// to what matters — the fields desired sets plus the fields Gantry owns that desired dropped (the
// lines SSA would delete). In the live view, values Compare considers equal (quantities, unset or
// zero values, ignored fields) are shown as desired writes them, so the diff only has lines that
// differ for Compare too. Missing objects show desired as all '+', Extra ones live (without
// status and server metadata) as all '-'. Headers read "--- live <apiVersion> <kind>
// <namespace>/<name>" and "+++ desired …". With color, '-' lines are red, '+' lines green, @@
// lines cyan.
//
// Secrets are always redacted for display (Redact): every value under data and stringData and the
// kubectl.kubernetes.io/last-applied-configuration annotation become "+++++++++"; in the diff a
// desired value that differs from live reads "+++++++++ (changed)". No hash of a value is shown
// (a hash of a low-entropy secret reveals it).
//
// All functions are pure and thread-safe (they share no state).

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "value/value.h"

namespace gantry::diff {

enum class SyncStatus : uint8_t { kSynced, kOutOfSync, kMissing, kExtra };

// "Synced", "OutOfSync", "Missing", "Extra".
std::string_view Name(SyncStatus status);

// One ignoreDifferences entry.
struct IgnoreRule {
  std::string group;       // API group ("" = core, "apps", ...), or "*" for any
  std::string kind;        // required; "*" for any
  std::string name;        // empty: any
  std::string namespace_;  // empty: any
  std::vector<std::string> json_pointers;  // "/spec/replicas", "/webhooks/0/clientConfig/caBundle"
  std::vector<std::string> managers;       // fields these managers own are ignored
};

struct Options {
  std::string field_manager = "gantry";  // empty: no ownership check
  std::vector<IgnoreRule> ignore;
};

struct ObjectDiff {
  SyncStatus status = SyncStatus::kSynced;
  std::vector<std::string> changed;  // empty unless OutOfSync; see the file comment
};

// Compares one object as described above. Either pointer may be null (absent object).
// InvalidArgument naming the rule when an IgnoreRule has no kind or a malformed JSON pointer.
Result<ObjectDiff> Compare(const value::Value* desired, const value::Value* live,
                           const Options& options = {});

struct RenderOptions {
  bool color = false;  // ANSI colors
  int context = 3;     // lines of context around changes
  Options compare;
};

// The unified diff described above; empty when the two views are equal (a Synced object).
// InvalidArgument as Compare for malformed options.
Result<std::string> RenderDiff(const value::Value* desired, const value::Value* live,
                               const RenderOptions& options = {});

// For a core v1 Secret, a copy with every data and stringData value and the last-applied
// annotation replaced by "+++++++++"; any other object unchanged.
value::Value Redact(const value::Value& object);

// A Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource) as its exact value:
// rounded up (away from zero) to nano units and capped at ±(2^63-1) units as the apiserver does.
// units and nanos carry the same sign; nanos is in (-1e9, 1e9). Compares by value.
struct Quantity {
  int64_t units = 0;
  int32_t nanos = 0;

  friend auto operator<=>(const Quantity&, const Quantity&) = default;
  // Plain decimal: "1", "0.5", "-0.001", "1073741824".
  std::string ToString() const;
};

// Parses a quantity: [+-] digits [. digits] then a suffix: none, n u m k M G T P E (decimal SI),
// Ki Mi Gi Ti Pi Ei (binary SI) or e/E followed by a signed integer exponent. Digits may be absent
// on either side of the point ("5.", ".5"). InvalidArgument naming the text when it is malformed
// (empty, spaces, unknown suffix).
Result<Quantity> ParseQuantity(std::string_view text);

}  // namespace gantry::diff
