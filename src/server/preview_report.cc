// The pure half of server/previews.h: health-relevant callouts and the bounded report.

#include <array>
#include <map>

#include <fmt/format.h>

#include "server/previews.h"

namespace gantry::server {
namespace {

using value::Value;

// The pod spec of a workload, or null.
const Value* PodSpec(const Value* object) {
  if (object == nullptr) return nullptr;
  const Value* spec = object;
  for (const std::string& key : PodSpecPath(value::StringAt(object, {"kind"}))) {
    spec = spec == nullptr ? nullptr : spec->Get(key);
  }
  return spec == object ? nullptr : spec;
}

// Each container's (init containers too) field `path`, as one-line JSON ("" when absent), by name.
std::map<std::string, std::string> ContainerField(const Value* pod, std::initializer_list<Value::PathElem> path) {
  std::map<std::string, std::string> out;
  if (pod == nullptr) return out;
  for (const char* list : {"initContainers", "containers"}) {
    const Value* containers = pod->Get(list);
    if (containers == nullptr || !containers->IsSeq()) continue;
    for (const Value& c : containers->items()) {
      const Value* v = c.Find(path);
      out[value::StringAt(&c, {"name"})] = v == nullptr || v->IsNull() ? "" : (v->IsString() ? std::string(v->AsString()) : value::ToJson(*v));
    }
  }
  return out;
}

std::string Shown(const std::string& v) { return v.empty() ? "(none)" : v; }

constexpr std::array<std::string_view, 3> kChangeNames = {"added", "changed", "removed"};

size_t Count(const Preview& p, Change c) {
  size_t n = 0;
  for (const auto& t : p.targets) {
    for (const auto& o : t.objects) n += o.change == c ? 1 : 0;
  }
  return n;
}

// The lines of a report in pieces: the summary (always kept) and each object's diff (kept while
// they fit).
struct Writer {
  bool md;
  std::string Code(std::string_view s) const { return md ? fmt::format("`{}`", s) : std::string(s); }
  std::string Heading(const TargetPreview& t) const {
    std::string where = fmt::format("{} / {}{}: {} ({})", t.environment, t.cluster, t.pull ? " (pull)" : "",
                                    t.app.empty() ? "-" : t.app, Code(t.path));
    return md ? fmt::format("\n#### {}\n\n", where) : fmt::format("\n== {} ==\n", where);
  }
  std::string Row(const ObjectPreview& o) const {
    std::string notes;
    for (const auto& c : o.callouts) notes += (notes.empty() ? "" : "; ") + c;
    if (!o.refused.empty()) {
      notes += std::string(notes.empty() ? "" : "; ") + "refused by the server in a dry run: " + o.refused;
    }
    if (!o.in_pull_request) {
      notes += std::string(notes.empty() ? "" : "; ") + "not changed by this pull request: the cluster differs from the base too";
    }
    if (md) return fmt::format("| {} | `{}` | {} |\n", Name(o.change), o.ref.ToString(), notes);
    return fmt::format("  {:<8} {}{}\n", Name(o.change), o.ref.ToString(), notes.empty() ? "" : "\n           " + notes);
  }
  std::string Diff(const TargetPreview& t, const ObjectPreview& o) const {
    if (o.diff.empty()) return "";
    std::string fence = "```";
    while (o.diff.find(fence) != std::string::npos) fence += '`';
    if (md) {
      return fmt::format("<details><summary>{} / {}: {} {}</summary>\n\n{}diff\n{}{}{}\n\n</details>\n", t.environment,
                         t.cluster, Name(o.change), o.ref.ToString(), fence, o.diff, o.diff.ends_with('\n') ? "" : "\n", fence);
    }
    return fmt::format("\n--- {} / {}: {} {}\n{}", t.environment, t.cluster, Name(o.change), o.ref.ToString(), o.diff);
  }
};

}  // namespace

std::string_view Name(Change change) { return kChangeNames[static_cast<size_t>(change)]; }

std::vector<std::string> PodSpecPath(std::string_view kind) {
  if (kind == "Pod") return {"spec"};
  if (kind == "CronJob") return {"spec", "jobTemplate", "spec", "template", "spec"};
  for (const char* k : {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}) {
    if (kind == k) return {"spec", "template", "spec"};
  }
  return {};
}

std::vector<std::string> HealthCallouts(const Value* live, const Value* desired) {
  std::vector<std::string> out;
  const Value* want = PodSpec(desired);
  if (want == nullptr) return out;
  const Value* have = PodSpec(live);
  auto compare = [&](std::string_view label, std::initializer_list<Value::PathElem> path) {
    const auto before = ContainerField(have, path), after = ContainerField(want, path);
    for (const auto& [name, value] : after) {
      auto it = before.find(name);
      const std::string old = it == before.end() ? "" : it->second;
      if (old != value) out.push_back(fmt::format("{} {}: {} → {}", label, name, Shown(old), Shown(value)));
    }
  };
  compare("image", {"image"});
  compare("requests", {"resources", "requests"});
  compare("limits", {"resources", "limits"});
  if (value::StringAt(desired, {"kind"}) != "Pod") {
    auto replicas = [](const Value* o) {
      const Value* r = o == nullptr ? nullptr : o->Find({"spec", "replicas"});
      return r == nullptr || r->IsNull() ? std::string() : value::ToJson(*r);
    };
    if (replicas(live) != replicas(desired) && !replicas(desired).empty()) {
      out.push_back(fmt::format("replicas: {} → {}", Shown(replicas(live)), replicas(desired)));
    }
  }
  return out;
}

std::string Report(const Preview& p, const ReportOptions& options) {
  const Writer w{.md = options.markdown};
  std::string head = options.markdown ? std::string(kMarker) + "\n### Gantry preview\n\n" : "Gantry preview\n";
  const std::string short_head = p.head.substr(0, 12), short_base = p.base.substr(0, 12);
  if (!p.predicted.empty()) head += (options.markdown ? "**Predicted.** " : "Predicted: ") + p.predicted + "\n\n";
  head += fmt::format("{} against the clusters (base {}): ", w.Code(short_head), w.Code(short_base));
  const size_t added = Count(p, Change::kAdded), changed = Count(p, Change::kChanged), removed = Count(p, Change::kRemoved);
  size_t failed = 0, violations = 0;
  for (const auto& t : p.targets) {
    failed += t.error.empty() ? 0 : 1;
    violations += t.violations.size();
  }
  if (p.targets.empty()) {
    head += "no environment of this server renders from this change.\n";
  } else {
    head += fmt::format("{} target(s), {} object(s) added, {} changed, {} removed{}{}.\n", p.targets.size(), added, changed,
                        removed, violations == 0 ? "" : fmt::format("; {} policy violation(s)", violations),
                        failed == 0 ? "" : fmt::format("; {} target(s) could not be previewed", failed));
  }
  // The summary: per target its heading, error, and one row per object.
  std::vector<std::string> summary;
  for (const auto& t : p.targets) {
    std::string s = w.Heading(t);
    std::string notes;
    if (!t.error.empty()) notes += (options.markdown ? "**Not previewed:** " : "not previewed: ") + t.error + "\n";
    if (t.pull && t.error.empty()) notes += "A pull agent applies this change once it is merged.\n";
    if (t.compared == "dry run") notes += "Compared by a server-side dry run.\n";
    if (t.compared == "live") notes += fmt::format("Compared with the live objects: {}.\n", t.compared_note);
    if (!t.violations.empty()) {
      notes += fmt::format("{} policy violation(s): a sync of this change would be refused for\n", t.violations.size());
      for (const auto& v : t.violations) notes += "- " + v + "\n";
    }
    if (options.markdown) {
      // One paragraph, set apart from the table.
      if (!notes.empty()) s += notes + "\n";
    } else {
      for (size_t at = 0; at < notes.size();) {
        const size_t end = notes.find('\n', at) + 1;
        s += "  " + notes.substr(at, end - at);
        at = end;
      }
    }
    if (!t.objects.empty() && options.markdown) s += "| change | object | health-relevant |\n|---|---|---|\n";
    summary.push_back(std::move(s));
    for (const auto& o : t.objects) summary.push_back(w.Row(o));
    if (t.error.empty()) {
      summary.push_back(fmt::format("{}{} object(s) unchanged.\n", options.markdown ? "\n" : "  ", t.unchanged));
    }
  }
  std::vector<std::string> diffs;
  for (const auto& t : p.targets) {
    for (const auto& o : t.objects) diffs.push_back(w.Diff(t, o));
  }
  size_t total = head.size();
  for (const auto& s : summary) total += s.size();
  size_t diff_bytes = 0;
  for (const auto& d : diffs) diff_bytes += d.size();
  const std::string diff_title = options.markdown ? "\n#### Diffs (Secrets redacted)\n\n" : "\nDiffs (Secrets redacted):\n";
  if (total + diff_title.size() + diff_bytes <= options.max_bytes) {
    std::string out = head;
    for (const auto& s : summary) out += s;
    if (diff_bytes > 0) out += diff_title;
    for (const auto& d : diffs) out += d;
    return out;
  }
  // Too long: the summary only, then rows cut while they do not fit.
  std::string note = fmt::format("\nThe diffs ({} KiB) are left out: this report is bounded to {} KiB.{}\n",
                                 (diff_bytes + 1023) / 1024, options.max_bytes / 1024,
                                 options.full_diff.empty() ? "" : " The full diff: " + options.full_diff);
  std::string out = head;
  size_t left_out = 0;
  const size_t reserve = note.size() + 64;
  for (const auto& s : summary) {
    if (left_out == 0 && out.size() + s.size() + reserve <= options.max_bytes) {
      out += s;
    } else {
      ++left_out;
    }
  }
  if (left_out > 0) out += fmt::format("\n... and {} more row(s) left out.\n", left_out);
  out += note;
  if (out.size() > options.max_bytes) out.resize(options.max_bytes);  // only with a tiny max_bytes
  return out;
}

}  // namespace gantry::server
