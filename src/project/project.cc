// ParseProject, ParseProjects, ProjectCrd and DefaultProject.

#include "project/project.h"

#include <algorithm>
#include <initializer_list>
#include <map>

#include "base/clock.h"
#include "base/duration.h"
#include "project/cron.h"
#include "project/glob.h"
#include "project/internal/windows.h"
#include "value/position.h"

namespace gantry::project {
namespace {

using value::Value;

using value::PositionOf;
using value::PositionPrefix;

// Fields of the spec that Argo CD's AppProject has and a Project does not, with what to do instead.
constexpr std::pair<const char*, const char*> kArgoOnlyFields[] = {
    {"roles", "roles are not part of a Project: grant viewer, deployer or admin per project with Gantry's "
              "authorizer, and replace a role's JWT tokens with `gantry token create --project` "
              "(docs/access.md)"},
    {"orphanedResources", "orphaned-resource monitoring is not supported; remove it"},
    {"signatureKeys", "Argo CD's GPG key ids are not read: Gantry checks SSH-signed commits against the public keys "
                      "of spec.verification[].commitKeys (docs/supply-chain.md)"},
    {"permitOnlyProjectScopedClusters", "Gantry has no project-scoped clusters: bind a cluster's credential to "
                                        "the project in credentials instead"},
};

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return alnum(s.front()) && alnum(s.back());
}

// Typed readers that record the first error with the node's position and the field's path.
class Reader {
 public:
  explicit Reader(std::string project) : project_(std::move(project)) {}

  const Status& error() const { return error_; }
  bool failed() const { return !error_.ok(); }

  void Fail(const Value& at, std::string_view path, std::string_view what) {
    if (failed()) return;
    error_ = InvalidArgumentError("{}project {}: {} {}", PositionPrefix(at), project_, path, what);
  }

  const Value* Get(const Value* parent, std::string_view key) {
    const Value* v = parent ? parent->Get(key) : nullptr;
    return v == nullptr || v->IsNull() ? nullptr : v;
  }

  const Value* Map(const Value* parent, std::string_view key, std::string_view path) {
    const Value* v = Get(parent, key);
    if (v && !v->IsMap()) {
      Fail(*v, path, fmt::format("is {}, expected a map", value::TypeName(*v)));
      return nullptr;
    }
    return v;
  }

  // The items of a list field (empty when absent).
  std::span<const Value> List(const Value* parent, std::string_view key, std::string_view path) {
    const Value* v = Get(parent, key);
    if (v && !v->IsSeq()) {
      Fail(*v, path, fmt::format("is {}, expected a list", value::TypeName(*v)));
      return {};
    }
    return v ? v->items() : std::span<const Value>();
  }

  std::string String(const Value* parent, std::string_view key, std::string_view path) {
    const Value* v = Get(parent, key);
    if (v == nullptr) return "";
    if (!v->IsString()) {
      Fail(*v, path, fmt::format("is {}, expected a string", value::TypeName(*v)));
      return "";
    }
    return std::string(v->AsString());
  }

  bool Bool(const Value* parent, std::string_view key, std::string_view path) {
    const Value* v = Get(parent, key);
    if (v == nullptr) return false;
    if (!v->IsBool()) {
      Fail(*v, path, fmt::format("is {}, expected true or false", value::TypeName(*v)));
      return false;
    }
    return v->AsBool();
  }

  // Refuses keys of `map` that are not in `known`.
  void Known(const Value* map, std::string_view path, std::initializer_list<std::string_view> known) {
    if (map == nullptr) return;
    for (const auto& e : map->entries()) {
      std::string_view key = e.key.AsString();
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      Fail(e.key, fmt::format("{}.{}", path, key), fmt::format("is not a field of {} (known: {})", path, list));
      return;
    }
  }

  // A glob field; "!" negation only where `negatable`.
  std::string Glob(const Value& v, std::string_view path, bool negatable) {
    if (!v.IsString()) {
      Fail(v, path, fmt::format("is {}, expected a string", value::TypeName(v)));
      return "";
    }
    std::string text(v.AsString());
    std::string_view pattern = text;
    if (pattern.starts_with('!')) {
      if (!negatable) {
        Fail(v, path, fmt::format("{:?}: negation (\"!\") is not supported here", text));
        return text;
      }
      pattern.remove_prefix(1);
    }
    if (Status s = ValidateGlob(pattern); !s.ok()) Fail(v, path, s.message());
    return text;
  }

  std::vector<std::string> Globs(const Value* parent, std::string_view key, std::string_view path, bool negatable) {
    std::vector<std::string> out;
    std::span<const Value> items = List(parent, key, path);
    for (size_t i = 0; i < items.size(); ++i) out.push_back(Glob(items[i], fmt::format("{}[{}]", path, i), negatable));
    return out;
  }

  // An optional glob in a map entry ("" when absent).
  std::string OptionalGlob(const Value& map, std::string_view key, std::string_view path, bool negatable) {
    const Value* v = Get(&map, key);
    return v ? Glob(*v, fmt::format("{}.{}", path, key), negatable) : "";
  }
  std::string RequiredGlob(const Value& map, std::string_view key, std::string_view path, bool negatable,
                           std::string_view hint) {
    const Value* v = Get(&map, key);
    if (v == nullptr) {
      Fail(map, fmt::format("{}.{}", path, key), fmt::format("is required{}", hint));
      return "";
    }
    return Glob(*v, fmt::format("{}.{}", path, key), negatable);
  }

  // The entries of a list of maps.
  template <typename F>
  void Entries(const Value* parent, std::string_view key, std::string_view path, F each) {
    std::span<const Value> items = List(parent, key, path);
    for (size_t i = 0; i < items.size() && !failed(); ++i) {
      std::string item_path = fmt::format("{}[{}]", path, i);
      if (!items[i].IsMap()) {
        Fail(items[i], item_path, fmt::format("is {}, expected a map", value::TypeName(items[i])));
        return;
      }
      each(items[i], item_path);
    }
  }

 private:
  std::string project_;
  Status error_;
};

bool IsGroupShape(std::string_view g) {
  for (char c : g) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '*' || c == '?' ||
          c == '[' || c == ']' || c == '!' || c == '^')) {
      return false;
    }
  }
  return true;
}

bool IsKindShape(std::string_view k) {
  if (k.empty()) return false;
  if (HasGlobChars(k)) {
    for (char c : k) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '*' || c == '?' ||
            c == '[' || c == ']' || c == '!' || c == '^' || c == '-')) {
        return false;
      }
    }
    return true;
  }
  if (!(k.front() >= 'A' && k.front() <= 'Z')) return false;
  for (char c : k) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

std::vector<GroupKind> GroupKinds(Reader& r, const Value* spec, std::string_view key) {
  std::vector<GroupKind> out;
  std::string path = fmt::format("spec.{}", key);
  r.Entries(spec, key, path, [&](const Value& entry, const std::string& p) {
    r.Known(&entry, p, {"group", "kind"});
    GroupKind gk;
    const Value* group = r.Get(&entry, "group");
    if (group && !group->IsString()) {
      r.Fail(*group, p + ".group", fmt::format("is {}, expected a string", value::TypeName(*group)));
      return;
    }
    gk.group = group ? std::string(group->AsString()) : "";
    if (!gk.group.empty()) {
      if (!IsGroupShape(gk.group)) {
        r.Fail(*group, p + ".group",
               fmt::format("{:?} is not an API group: a group is a lowercase DNS name such as apps or "
                           "rbac.authorization.k8s.io, \"\" for the core group, or a glob; no version",
                           gk.group));
        return;
      }
      gk.group = r.Glob(*group, p + ".group", false);
    }
    gk.kind = r.RequiredGlob(entry, "kind", p, false, " (a kind such as Deployment, or \"*\")");
    if (r.failed()) return;
    if (!IsKindShape(gk.kind)) {
      std::string hint;
      if (gk.kind.front() >= 'a' && gk.kind.front() <= 'z') {
        hint = fmt::format(" (did you mean {}?)", static_cast<char>(gk.kind.front() - 'a' + 'A') + gk.kind.substr(1));
      }
      r.Fail(*entry.Get("kind"), p + ".kind",
             fmt::format("{:?} is not a kind: a kind is a CamelCase name such as Deployment, or a glob{}", gk.kind,
                         hint));
      return;
    }
    out.push_back(std::move(gk));
  });
  return out;
}

bool IsServiceAccount(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return IsDnsSubdomain(s);
  return IsDnsSubdomain(s.substr(0, colon)) && IsDnsSubdomain(s.substr(colon + 1));
}

void ParseWindows(Reader& r, const Value* spec, Project& p) {
  r.Entries(spec, "syncWindows", "spec.syncWindows", [&](const Value& entry, const std::string& path) {
    r.Known(&entry, path,
            {"kind", "schedule", "duration", "environments", "applications", "clusters", "namespaces", "manualSync",
             "timeZone", "andOperator", "description"});
    Window w;
    w.source = PositionOf(entry);
    std::string kind = r.String(&entry, "kind", path + ".kind");
    if (kind == "deny") w.kind = WindowKind::kDeny;
    else if (kind == "allow") w.kind = WindowKind::kAllow;
    else if (kind.empty()) r.Fail(entry, path + ".kind", "is required (allow or deny)");
    else r.Fail(*entry.Get("kind"), path + ".kind", fmt::format("{:?} must be allow or deny", kind));

    w.schedule = r.String(&entry, "schedule", path + ".schedule");
    if (w.schedule.empty()) {
      r.Fail(entry, path + ".schedule", "is required (when each window starts, such as \"0 22 * * *\")");
    } else if (!r.failed()) {
      if (auto cron = Cron::Parse(w.schedule); !cron.ok()) {
        r.Fail(entry.Get("schedule") ? *entry.Get("schedule") : entry, path + ".schedule", cron.status().message());
      }
    }
    std::string duration = r.String(&entry, "duration", path + ".duration");
    if (!r.failed()) {
      const Value& at = entry.Get("duration") ? *entry.Get("duration") : entry;
      auto d = ParseDuration(duration);
      if (duration.empty()) {
        r.Fail(at, path + ".duration", "is required (how long each window stays open, such as 1h or 30m)");
      } else if (!d.ok()) {
        r.Fail(at, path + ".duration", d.status().message());
      } else if (*d <= std::chrono::milliseconds(0) || *d % std::chrono::minutes(1) != std::chrono::milliseconds(0)) {
        r.Fail(at, path + ".duration", fmt::format("{:?} must be a positive whole number of minutes", duration));
      } else if (*d > std::chrono::hours(24 * 366)) {
        // Also bounds the work of the overlap scan and of CheckWindows (they walk a window's starts
        // from one duration back).
        r.Fail(at, path + ".duration", fmt::format("{:?} is longer than a year (at most 8784h)", duration));
      } else {
        w.duration = std::chrono::duration_cast<std::chrono::minutes>(*d);
      }
    }
    w.environments = r.Globs(&entry, "environments", path + ".environments", false);
    w.applications = r.Globs(&entry, "applications", path + ".applications", false);
    w.clusters = r.Globs(&entry, "clusters", path + ".clusters", false);
    w.namespaces = r.Globs(&entry, "namespaces", path + ".namespaces", false);
    w.manual_sync = r.Bool(&entry, "manualSync", path + ".manualSync");
    if (const Value* a = r.Get(&entry, "andOperator"); a && !r.failed()) {
      if (!r.Bool(&entry, "andOperator", path + ".andOperator") && !r.failed()) {
        r.Fail(*a, path + ".andOperator",
               "false is not supported: a window applies when every list it has matches (Argo CD's andOperator: "
               "true); split it into one window per list");
      }
    }
    w.time_zone = r.String(&entry, "timeZone", path + ".timeZone");
    if (w.time_zone.empty() || w.time_zone == "Etc/UTC") w.time_zone = "UTC";
    if (w.time_zone != "UTC" && !r.failed()) {
      r.Fail(*entry.Get("timeZone"), path + ".timeZone",
             fmt::format("{:?} is not supported: only UTC (this build's C++ library has no time-zone database); "
                         "write the schedule in UTC",
                         w.time_zone));
    }
    p.windows.push_back(std::move(w));
  });
}

// spec.verification: which images must be signed (and attested) by which keys.
void ParseVerification(Reader& r, const Value* spec, std::string_view project_namespace, Project& p) {
  r.Entries(spec, "verification", "spec.verification", [&](const Value& entry, const std::string& path) {
    r.Known(&entry, path, {"environments", "images", "keys", "commitKeys", "provenance", "notAfter", "description"});
    VerificationRule rule;
    rule.index = p.verification.size();
    rule.source = PositionOf(entry);
    rule.environments = r.Globs(&entry, "environments", path + ".environments", false);
    rule.images = r.Globs(&entry, "images", path + ".images", false);
    std::span<const Value> commit_keys = r.List(&entry, "commitKeys", path + ".commitKeys");
    for (size_t i = 0; i < commit_keys.size() && !r.failed(); ++i) {
      // authorized_keys form: "TYPE BASE64 [comment]"; the type and key are checked when a commit
      // is verified (only Ed25519 signs commits), so a key is only refused here for its shape.
      const Value& k = commit_keys[i];
      std::string kp = fmt::format("{}.commitKeys[{}]", path, i);
      std::string_view line = k.IsString() ? k.AsString() : std::string_view();
      size_t space = line.find(' ');
      if (!line.starts_with("ssh-") || space == std::string_view::npos || space + 1 >= line.size()) {
        r.Fail(k, kp, "is not an SSH public key line (\"ssh-ed25519 AAAA… comment\", as in authorized_keys or "
                      "GET /api/v1/signing-keys' commits.public_key)");
      }
      rule.commit_keys.emplace_back(line);
    }
    if (rule.images.empty() && rule.commit_keys.empty() && !r.failed()) {
      r.Fail(entry, path + ".images", "is required: the image repositories the rule covers (globs such as "
                                      "\"registry.example/team/*\"), unless the rule has commitKeys");
    }
    r.Entries(&entry, "keys", path + ".keys", [&](const Value& k, const std::string& kp) {
      r.Known(&k, kp, {"file", "secretRef", "pem"});
      KeySource key;
      key.file = r.String(&k, "file", kp + ".file");
      key.pem = r.String(&k, "pem", kp + ".pem");
      if (const Value* ref = r.Map(&k, "secretRef", kp + ".secretRef")) {
        r.Known(ref, kp + ".secretRef", {"name", "key", "namespace"});
        key.secret_name = r.String(ref, "name", kp + ".secretRef.name");
        key.secret_key = r.String(ref, "key", kp + ".secretRef.key");
        key.secret_namespace = r.String(ref, "namespace", kp + ".secretRef.namespace");
        if (key.secret_namespace.empty()) key.secret_namespace = project_namespace;
        if (!r.failed() && (key.secret_name.empty() || key.secret_key.empty())) {
          r.Fail(*ref, kp + ".secretRef", "needs name (the Secret) and key (the entry holding the PEM public key)");
        }
      }
      int kinds = !key.file.empty() + !key.pem.empty() + !key.secret_name.empty();
      if (kinds != 1 && !r.failed()) {
        r.Fail(k, kp, "needs exactly one of file (a PEM public key file), secretRef ({name, key}) and pem (the "
                      "PEM text)");
      }
      rule.keys.push_back(std::move(key));
    });
    if (rule.keys.empty() && !rule.images.empty() && !r.failed()) {
      r.Fail(entry, path + ".keys", "is required: the public keys (any one of them) whose signature the images need");
    }
    if (!rule.keys.empty() && rule.images.empty() && !r.failed()) {
      r.Fail(entry, path + ".images", "is required with keys: the image repositories the keys must have signed");
    }
    if (const Value* prov = r.Map(&entry, "provenance", path + ".provenance")) {
      r.Known(prov, path + ".provenance", {"builderIds", "sourceRepositories", "branches"});
      ProvenanceRule pr;
      pr.builder_ids = r.Globs(prov, "builderIds", path + ".provenance.builderIds", false);
      pr.source_repositories = r.Globs(prov, "sourceRepositories", path + ".provenance.sourceRepositories", false);
      pr.branches = r.Globs(prov, "branches", path + ".provenance.branches", false);
      rule.provenance = std::move(pr);
    }
    if (const Value* na = r.Get(&entry, "notAfter")) {
      // An unquoted YAML timestamp is still a string in the value model.
      std::string text = r.String(&entry, "notAfter", path + ".notAfter");
      if (!r.failed()) {
        rule.not_after = ParseRfc3339(text);
        if (!rule.not_after) {
          r.Fail(*na, path + ".notAfter", fmt::format("{:?} is not an RFC 3339 time (such as 2027-06-30T00:00:00Z)", text));
        }
      }
    }
    r.String(&entry, "description", path + ".description");
    p.verification.push_back(std::move(rule));
  });
}

constexpr char kCrd[] = R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: projects.gantry.dev
spec:
  group: gantry.dev
  scope: Namespaced
  names: {plural: projects, singular: project, kind: Project, shortNames: [gproj]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Description, type: string, jsonPath: .spec.description}
    - {name: Repos, type: string, jsonPath: .spec.sourceRepos, priority: 1}
    - {name: Destinations, type: string, jsonPath: .spec.destinations, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              description: {type: string}
              sourceRepos: {type: array, items: {type: string, minLength: 1}}
              sourceNamespaces: {type: array, items: {type: string, minLength: 1}}
              destinations:
                type: array
                items:
                  type: object
                  properties:
                    server: {type: string}
                    name: {type: string}
                    namespace: {type: string}
              destinationServiceAccounts:
                type: array
                items:
                  type: object
                  required: [server, namespace, defaultServiceAccount]
                  properties:
                    server: {type: string}
                    namespace: {type: string}
                    defaultServiceAccount: {type: string, minLength: 1}
              clusterResourceWhitelist: &groupKinds
                type: array
                items:
                  type: object
                  required: [kind]
                  properties:
                    group: {type: string}
                    kind: {type: string, minLength: 1}
              clusterResourceBlacklist: *groupKinds
              namespaceResourceWhitelist: *groupKinds
              namespaceResourceBlacklist: *groupKinds
              releases:
                type: object
                properties:
                  imageRepos: {type: array, items: {type: string, minLength: 1}}
                  configPaths: {type: array, items: {type: string, minLength: 1}}
              credentials: {type: array, items: {type: string, minLength: 1}}
              syncWindows:
                type: array
                items:
                  type: object
                  required: [kind, schedule, duration]
                  properties:
                    kind: {type: string, enum: [allow, deny]}
                    schedule: {type: string}
                    duration: {type: string}
                    environments: {type: array, items: {type: string}}
                    applications: {type: array, items: {type: string}}
                    clusters: {type: array, items: {type: string}}
                    namespaces: {type: array, items: {type: string}}
                    manualSync: {type: boolean}
                    timeZone: {type: string}
                    andOperator: {type: boolean}
                    description: {type: string}
              verification:
                type: array
                items:
                  type: object
                  properties:
                    environments: {type: array, items: {type: string}}
                    images: {type: array, items: {type: string, minLength: 1}}
                    commitKeys: {type: array, items: {type: string, minLength: 1}}
                    keys:
                      type: array
                      items:
                        type: object
                        properties:
                          file: {type: string}
                          pem: {type: string}
                          secretRef:
                            type: object
                            properties:
                              name: {type: string}
                              key: {type: string}
                              namespace: {type: string}
                    provenance:
                      type: object
                      properties:
                        builderIds: {type: array, items: {type: string}}
                        sourceRepositories: {type: array, items: {type: string}}
                        branches: {type: array, items: {type: string}}
                    notAfter: {type: string}
                    description: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
)";

}  // namespace

Result<Project> ParseProject(const Value& object) {
  const Value* kind = object.Get("kind");
  const Value* api = object.Get("apiVersion");
  if (!kind || !kind->IsString() || kind->AsString() != kKind || !api || !api->IsString() ||
      api->AsString() != kApiVersion) {
    std::string hint;
    if (kind && kind->IsString() && kind->AsString() == "AppProject") {
      hint = " (an Argo CD AppProject becomes a Project by changing apiVersion and kind)";
    }
    return InvalidArgumentError("{}not a Project: expected apiVersion {} and kind {}{}", PositionPrefix(object), kApiVersion,
                                kKind, hint);
  }
  const Value* meta = object.Get("metadata");
  const Value* name = meta ? meta->Get("name") : nullptr;
  if (name == nullptr || !name->IsString() || name->AsString().empty()) {
    return InvalidArgumentError("{}Project: metadata.name is required", PositionPrefix(name ? *name : object));
  }
  Project p;
  p.name = std::string(name->AsString());
  p.source = PositionOf(object);
  Reader r(p.name);
  if (!IsDnsSubdomain(p.name)) {
    r.Fail(*name, "metadata.name",
           fmt::format("{:?} is not a valid name (lowercase letters, digits, '-' and '.'; at most 253)", p.name));
  }
  p.namespace_ = r.String(meta, "namespace", "metadata.namespace");

  const Value* spec = r.Map(&object, "spec", "spec");
  if (spec) {
    for (const auto& e : spec->entries()) {
      for (const auto& [field, advice] : kArgoOnlyFields) {
        if (e.key.AsString() == field) r.Fail(e.key, fmt::format("spec.{}", field), fmt::format("is not supported: {}", advice));
      }
    }
  }
  r.Known(spec, "spec",
          {"description", "sourceRepos", "sourceNamespaces", "destinations", "destinationServiceAccounts",
           "clusterResourceWhitelist", "clusterResourceBlacklist", "namespaceResourceWhitelist",
           "namespaceResourceBlacklist", "releases", "credentials", "syncWindows", "verification"});
  p.description = r.String(spec, "description", "spec.description");
  p.source_repos = r.Globs(spec, "sourceRepos", "spec.sourceRepos", true);
  p.source_namespaces = r.Globs(spec, "sourceNamespaces", "spec.sourceNamespaces", true);
  r.Entries(spec, "destinations", "spec.destinations", [&](const Value& entry, const std::string& path) {
    r.Known(&entry, path, {"server", "name", "namespace"});
    Destination d;
    d.server = r.OptionalGlob(entry, "server", path, true);
    d.name = r.OptionalGlob(entry, "name", path, true);
    d.namespace_ = r.RequiredGlob(entry, "namespace", path, true, " (use \"*\" for every namespace)");
    if (d.server.empty() && d.name.empty()) {
      r.Fail(entry, path, "needs server (an API server URL glob) or name (a cluster name glob)");
    }
    p.destinations.push_back(std::move(d));
  });
  r.Entries(spec, "destinationServiceAccounts", "spec.destinationServiceAccounts",
            [&](const Value& entry, const std::string& path) {
              r.Known(&entry, path, {"server", "namespace", "defaultServiceAccount"});
              ServiceAccountRule rule;
              rule.server = r.RequiredGlob(entry, "server", path, false, " (use \"*\" for every cluster)");
              rule.namespace_ = r.RequiredGlob(entry, "namespace", path, false, " (use \"*\" for every namespace)");
              rule.service_account = r.String(&entry, "defaultServiceAccount", path + ".defaultServiceAccount");
              if (!r.failed() && !IsServiceAccount(rule.service_account)) {
                const Value* at = entry.Get("defaultServiceAccount");
                r.Fail(at ? *at : entry, path + ".defaultServiceAccount",
                       fmt::format("{:?} is not a service account: NAMESPACE:NAME, or NAME in the destination namespace",
                                   rule.service_account));
              }
              p.service_accounts.push_back(std::move(rule));
            });
  p.cluster_allow = GroupKinds(r, spec, "clusterResourceWhitelist");
  p.cluster_deny = GroupKinds(r, spec, "clusterResourceBlacklist");
  p.namespace_allow = GroupKinds(r, spec, "namespaceResourceWhitelist");
  p.namespace_deny = GroupKinds(r, spec, "namespaceResourceBlacklist");
  const Value* releases = r.Map(spec, "releases", "spec.releases");
  r.Known(releases, "spec.releases", {"imageRepos", "configPaths"});
  p.image_repos = r.Globs(releases, "imageRepos", "spec.releases.imageRepos", true);
  p.config_paths = r.Globs(releases, "configPaths", "spec.releases.configPaths", true);
  p.credentials = r.Globs(spec, "credentials", "spec.credentials", true);
  ParseWindows(r, spec, p);
  ParseVerification(r, spec, p.namespace_, p);
  GANTRY_RETURN_IF_ERROR(r.error());
  GANTRY_RETURN_IF_ERROR(internal::CheckWindowOverlaps(p));
  return p;
}

Result<std::vector<Project>> ParseProjects(std::span<const Value> objects) {
  std::vector<Project> out;
  std::map<std::string, std::string, std::less<>> seen;  // name -> where
  for (const Value& object : objects) {
    const Value* kind = object.Get("kind");
    if (!kind || !kind->IsString() || kind->AsString() != kKind) continue;
    const Value* api = object.Get("apiVersion");
    if (!api || !api->IsString() || !api->AsString().starts_with("gantry.dev/")) continue;
    GANTRY_ASSIGN_OR_RETURN(Project p, ParseProject(object));
    auto [it, inserted] = seen.emplace(p.name, p.source);
    if (!inserted) {
      return InvalidArgumentError("{}project {} is defined twice (first at {})",
                                  p.source.empty() ? "" : p.source + ": ", p.name,
                                  it->second.empty() ? "an earlier object" : it->second);
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::string KeySource::Describe() const {
  if (!file.empty()) return "file " + file;
  if (!secret_name.empty()) {
    return fmt::format("secret {}{} key {}", secret_namespace.empty() ? "" : secret_namespace + "/", secret_name,
                       secret_key);
  }
  return "inline key";
}

std::string VerificationRule::Name() const {
  return source.empty() ? fmt::format("verification[{}]", index) : fmt::format("verification[{}] ({})", index, source);
}

std::vector<const VerificationRule*> RulesFor(const Project& p, std::string_view environment,
                                              std::string_view image_repo) {
  auto any = [](const std::vector<std::string>& globs, std::string_view text) {
    return std::any_of(globs.begin(), globs.end(), [&](const std::string& g) { return GlobMatch(g, text); });
  };
  std::vector<const VerificationRule*> out;
  for (const VerificationRule& rule : p.verification) {
    if (!rule.environments.empty() && !any(rule.environments, environment)) continue;
    if (any(rule.images, image_repo)) out.push_back(&rule);
  }
  return out;
}

std::vector<const VerificationRule*> CommitRulesFor(const Project& p, std::string_view environment) {
  std::vector<const VerificationRule*> out;
  for (const VerificationRule& rule : p.verification) {
    if (rule.commit_keys.empty()) continue;
    if (rule.environments.empty() ||
        std::any_of(rule.environments.begin(), rule.environments.end(),
                    [&](const std::string& g) { return GlobMatch(g, environment); })) {
      out.push_back(&rule);
    }
  }
  return out;
}

Value ProjectCrd() { return value::BuiltInYaml(kCrd); }

Project DefaultProject() {
  Project p;
  p.name = "default";
  p.description = "Built-in permissive project";
  p.source_repos = {"*"};
  p.source_namespaces = {"*"};
  p.destinations = {Destination{.server = "*", .name = "*", .namespace_ = "*"}};
  p.cluster_allow = {GroupKind{.group = "*", .kind = "*"}};
  p.image_repos = {"*"};
  p.config_paths = {"*"};
  p.credentials = {"*"};
  return p;
}

}  // namespace gantry::project
