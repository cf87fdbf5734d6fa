// Sync options: Argo CD's sync options read from an object's annotation or an application's list
// (see sync.h).

#include <optional>
#include <string>
#include <vector>

#include "sync/sync.h"

namespace gantry::sync {
namespace {

constexpr char kObjectOptions[] =
    "Replace, Force, ServerSideApply, Validate, SkipDryRunOnMissingResource, Prune, Delete, PruneLast";
constexpr char kApplicationOnly[] =
    "CreateNamespace, ApplyOutOfSyncOnly, FailOnSharedResource, RespectIgnoreDifferences, "
    "PrunePropagationPolicy, ForceConflicts";

bool IsApplicationOnly(std::string_view name) {
  for (std::string_view n : {"CreateNamespace", "ApplyOutOfSyncOnly", "FailOnSharedResource",
                             "RespectIgnoreDifferences", "PrunePropagationPolicy", "ForceConflicts"}) {
    if (n == name) return true;
  }
  return false;
}

Result<Tristate> Bool(std::string_view name, std::string_view value, std::string_view where) {
  if (value == "true") return Tristate::kTrue;
  if (value == "false") return Tristate::kFalse;
  return InvalidArgumentError("{}: sync option {}={:?}: the value must be true or false", where, name, value);
}

// One object-level option into `out`. NotFound (with no message) when `name` is not an object
// option; InvalidArgument for a bad value.
Status ReadObjectOption(std::string_view name, std::string_view value, std::string_view where,
                        ObjectSyncOptions& out) {
  auto set = [&](Tristate& field) -> Status {
    GANTRY_ASSIGN_OR_RETURN(field, Bool(name, value, where));
    return OkStatus();
  };
  auto mode = [&](PruneMode& field) -> Status {
    if (value == "true") field = PruneMode::kPrune;
    else if (value == "false") field = PruneMode::kDisabled;
    else if (value == "confirm") field = PruneMode::kConfirm;
    else return InvalidArgumentError("{}: sync option {}={:?}: the value must be true, false or confirm", where, name, value);
    return OkStatus();
  };
  if (name == "Replace") return set(out.replace);
  if (name == "Force") return set(out.force);
  if (name == "Validate") return set(out.validate);
  if (name == "SkipDryRunOnMissingResource") return set(out.skip_dry_run_on_missing);
  if (name == "PruneLast") return set(out.prune_last);
  if (name == "Prune") return mode(out.prune);
  if (name == "Delete") return mode(out.delete_);
  if (name == "ServerSideApply") {
    // Gantry always applies server-side: both values are accepted (see docs/argo-cd-compatibility.md).
    Tristate ignored;
    GANTRY_ASSIGN_OR_RETURN(ignored, Bool(name, value, where));
    (void)ignored;
    return OkStatus();
  }
  return NotFoundError("");
}

Result<std::pair<std::string_view, std::string_view>> SplitOption(std::string_view option, std::string_view where) {
  size_t eq = option.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return InvalidArgumentError("{}: sync option {:?} must be Name=value (e.g. Prune=false)", where, option);
  }
  return std::pair{option.substr(0, eq), option.substr(eq + 1)};
}

}  // namespace

std::vector<std::string_view> SplitCommaList(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view part = s.substr(0, comma);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

Result<ObjectSyncOptions> ReadSyncOptions(const value::Value& object, std::string_view where) {
  ObjectSyncOptions out;
  const value::Value* ann = object.Find({"metadata", "annotations"});
  if (ann == nullptr || !ann->IsMap()) return out;
  for (std::string_view key : {"argocd.argoproj.io/sync-options", "gantry.dev/sync-options"}) {
    const value::Value* v = ann->Get(key);
    if (v == nullptr) continue;
    std::string at = fmt::format("{}: annotation {}", where, key);
    if (!v->IsString()) return InvalidArgumentError("{}: must be a string (\"Prune=false,Replace=true\")", at);
    for (std::string_view option : SplitCommaList(v->AsString())) {
      GANTRY_ASSIGN_OR_RETURN(auto nv, SplitOption(option, at));
      auto [name, value] = nv;
      Status s = ReadObjectOption(name, value, at, out);
      if (s.code() != Code::kNotFound) {
        GANTRY_RETURN_IF_ERROR(s);
        continue;
      }
      if (IsApplicationOnly(name)) {
        return InvalidArgumentError("{}: sync option {} applies to a whole application (its "
                                    "spec.syncPolicy.syncOptions), not to one object", at, option);
      }
      return InvalidArgumentError("{}: unknown sync option {:?} (an object may have {})", at, option,
                                  kObjectOptions);
    }
  }
  return out;
}

Status ReadSyncOptions(const std::vector<std::string>& list, std::string_view where, Options& options,
                       std::vector<std::string>* warnings) {
  for (const std::string& option : list) {
    GANTRY_ASSIGN_OR_RETURN(auto nv, SplitOption(option, where));
    // Named copies, not a structured binding: a lambda below captures them (clang refuses bindings).
    const std::string name(nv.first), value(nv.second);
    if (name == "Prune" && value == "true") {
      options.prune = true;
      continue;
    }
    if (name == "ServerSideApply" && value == "false" && warnings != nullptr) {
      warnings->push_back(fmt::format(
          "{}: ServerSideApply=false: Gantry always applies server-side (client-side apply is not implemented); "
          "objects are applied as with ServerSideApply=true", where));
    }
    Status s = ReadObjectOption(name, value, where, options.object_defaults);
    if (s.code() != Code::kNotFound) {
      GANTRY_RETURN_IF_ERROR(s);
      if (name == "PruneLast") options.prune_last = options.object_defaults.prune_last == Tristate::kTrue;
      continue;
    }
    auto flag = [&](bool& field) -> Status {
      GANTRY_ASSIGN_OR_RETURN(Tristate t, Bool(name, value, where));
      field = t == Tristate::kTrue;
      return OkStatus();
    };
    if (name == "CreateNamespace") {
      GANTRY_RETURN_IF_ERROR(flag(options.create_namespace));
    } else if (name == "ApplyOutOfSyncOnly") {
      GANTRY_RETURN_IF_ERROR(flag(options.apply_out_of_sync_only));
    } else if (name == "RespectIgnoreDifferences") {
      GANTRY_RETURN_IF_ERROR(flag(options.respect_ignore_differences));
    } else if (name == "FailOnSharedResource") {
      // Always Gantry's behaviour (CheckOwnership): accepted with either value.
      bool ignored = false;
      GANTRY_RETURN_IF_ERROR(flag(ignored));
      if (!ignored && warnings != nullptr) {
        warnings->push_back(fmt::format("{}: FailOnSharedResource=false: Gantry always refuses to apply an object "
                                        "another application tracks (it never takes one over silently)", where));
      }
    } else if (name == "ForceConflicts") {
      // Gantry's own: true takes every conflicting field; false leaves even its own objects' drift.
      GANTRY_ASSIGN_OR_RETURN(Tristate t, Bool(name, value, where));
      options.force = t == Tristate::kTrue;
      options.force_owned = t != Tristate::kFalse;
    } else if (name == "PrunePropagationPolicy") {
      if (value == "foreground") options.prune_propagation = kube::Propagation::kForeground;
      else if (value == "background") options.prune_propagation = kube::Propagation::kBackground;
      else if (value == "orphan") options.prune_propagation = kube::Propagation::kOrphan;
      else {
        return InvalidArgumentError("{}: sync option {}={:?}: the value must be foreground, background or orphan",
                                    where, name, value);
      }
    } else {
      return InvalidArgumentError("{}: unknown sync option {:?} (an application may have {}, {}, and Prune=true)",
                                  where, option, kObjectOptions, kApplicationOnly);
    }
  }
  return OkStatus();
}

namespace {

// The RFC 6901 segments of a JSON pointer ("/a/b~1c" → a, b/c); nullopt when it is malformed.
std::optional<std::vector<std::string>> Segments(std::string_view pointer) {
  if (pointer.empty() || pointer.front() != '/') return std::nullopt;
  std::vector<std::string> out;
  pointer.remove_prefix(1);
  while (true) {
    size_t slash = pointer.find('/');
    std::string_view raw = pointer.substr(0, slash);
    std::string seg;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        seg += raw[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        seg += raw[i];
      }
    }
    out.push_back(std::move(seg));
    if (slash == std::string_view::npos) break;
    pointer.remove_prefix(slash + 1);
  }
  return out;
}

std::optional<size_t> Index(const std::string& seg) {
  if (seg.empty() || seg.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoul(seg);
}

// Sets desired's field at segs[i..] to live's (or removes it from a map when live has none).
// Only where desired already has the parent: a field desired does not write is not applied.
void Transplant(value::Value& desired, const value::Value* live, const std::vector<std::string>& segs, size_t i) {
  const std::string& seg = segs[i];
  bool last = i + 1 == segs.size();
  if (desired.IsMap()) {
    const value::Value* from = live != nullptr && live->IsMap() ? live->Get(seg) : nullptr;
    if (last) {
      if (from != nullptr) desired.Set(seg, *from);
      else desired.Erase(seg);
      return;
    }
    if (value::Value* child = desired.MutableGet(seg)) Transplant(*child, from, segs, i + 1);
  } else if (desired.IsSeq()) {
    std::optional<size_t> k = Index(seg);
    if (!k || *k >= desired.size()) return;
    const value::Value* from = live != nullptr && live->IsSeq() && *k < live->size() ? live->At(*k) : nullptr;
    if (last) {
      if (from != nullptr) *desired.MutableAt(*k) = *from;
      return;
    }
    Transplant(*desired.MutableAt(*k), from, segs, i + 1);
  }
}

}  // namespace

value::Value RespectIgnoreDifferences(const value::Value& desired, const value::Value& live,
                                      const std::vector<diff::IgnoreRule>& rules) {
  value::Value out = desired;
  kube::ObjectRef ref = kube::RefOf(desired);
  std::string group = kube::SplitApiVersion(ref.api_version).first;
  for (const diff::IgnoreRule& rule : rules) {
    if (rule.kind != "*" && rule.kind != ref.kind) continue;
    if (rule.group != "*" && rule.group != group) continue;
    if (!rule.name.empty() && rule.name != ref.name) continue;
    if (!rule.namespace_.empty() && rule.namespace_ != ref.namespace_) continue;
    for (const std::string& pointer : rule.json_pointers) {
      auto segs = Segments(pointer);
      if (!segs || segs->empty()) continue;  // diff::Compare reports malformed pointers
      Transplant(out, &live, *segs, 0);
    }
  }
  return out;
}

}  // namespace gantry::sync
