#include "api/application.h"

#include "base/duration.h"
#include "value/position.h"

#include <filesystem>

#include <charconv>
#include <map>

namespace gantry::api {
namespace {

using value::Value;
using value::PositionPrefix;

// Typed field readers that fail with the field's path and position.
class Fields {
 public:
  Fields(const Value& root, std::string app) : root_(root), app_(std::move(app)) {}

  Status error() const { return error_; }

  const Value* Map(const Value* parent, std::string_view key, std::string_view path) {
    const Value* v = parent ? parent->Get(key) : nullptr;
    if (v == nullptr || v->IsNull()) return nullptr;
    if (!v->IsMap()) Fail(*v, path, "must be a map");
    return v->IsMap() ? v : nullptr;
  }

  std::string String(const Value* parent, std::string_view key, std::string_view path, std::string fallback = "") {
    const Value* v = parent ? parent->Get(key) : nullptr;
    if (v == nullptr || v->IsNull()) return fallback;
    if (!v->IsString()) {
      Fail(*v, path, "must be a string");
      return fallback;
    }
    return std::string(v->AsString());
  }

  bool Bool(const Value* parent, std::string_view key, std::string_view path, bool fallback) {
    const Value* v = parent ? parent->Get(key) : nullptr;
    if (v == nullptr || v->IsNull()) return fallback;
    if (!v->IsBool()) {
      Fail(*v, path, "must be true or false");
      return fallback;
    }
    return v->AsBool();
  }

  int64_t Int(const Value* parent, std::string_view key, std::string_view path, int64_t fallback) {
    const Value* v = parent ? parent->Get(key) : nullptr;
    if (v == nullptr || v->IsNull()) return fallback;
    if (!v->IsInt()) {
      Fail(*v, path, "must be an integer");
      return fallback;
    }
    return v->AsInt();
  }

  std::vector<std::string> Strings(const Value* parent, std::string_view key, std::string_view path) {
    std::vector<std::string> out;
    const Value* v = parent ? parent->Get(key) : nullptr;
    if (v == nullptr || v->IsNull()) return out;
    if (!v->IsSeq()) {
      Fail(*v, path, "must be a list of strings");
      return out;
    }
    for (const Value& item : v->items()) {
      if (!item.IsString()) {
        Fail(item, path, "must be a list of strings");
        return out;
      }
      out.emplace_back(item.AsString());
    }
    return out;
  }

  std::map<std::string, std::string> StringMap(const Value* parent, std::string_view key, std::string_view path) {
    std::map<std::string, std::string> out;
    const Value* m = Map(parent, key, path);
    if (m == nullptr) return out;
    for (const auto& e : m->entries()) {
      if (!e.value.IsString()) {
        Fail(e.value, path, "must map names to strings");
        return out;
      }
      out.emplace(std::string(e.key.AsString()), std::string(e.value.AsString()));
    }
    return out;
  }

  std::chrono::milliseconds Duration(const Value* parent, std::string_view key, std::string_view path,
                                     std::chrono::milliseconds fallback) {
    std::string text = String(parent, key, path);
    if (text.empty()) return fallback;
    // Go durations as Argo CD writes them: "5s", "3m", "1h", "500ms", "1m30s".
    if (auto d = ParseDuration(text); d.ok()) return *d;
    Fail(*parent->Get(key), path, fmt::format("{:?} is not a duration such as 5s, 3m or 1h", text));
    return fallback;
  }

  void Fail(const Value& at, std::string_view path, std::string_view what) {
    if (!error_.ok()) return;
    error_ = InvalidArgumentError("{}Application {}: {} {}", PositionPrefix(at), app_, path, what);
  }
  void Require(bool ok, std::string_view path, std::string_view what) {
    if (!ok && error_.ok()) {
      error_ = InvalidArgumentError("{}Application {}: {} {}", PositionPrefix(root_), app_, path, what);
    }
  }

 private:
  const Value& root_;
  std::string app_;
  Status error_;
};

constexpr char kCrd[] = R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: applications.gantry.dev
spec:
  group: gantry.dev
  scope: Namespaced
  names: {plural: applications, singular: application, kind: Application, shortNames: [gapp]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Sync, type: string, jsonPath: .status.sync.status}
    - {name: Health, type: string, jsonPath: .status.health.status}
    - {name: Revision, type: string, jsonPath: .status.sync.revision}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [source]
            properties:
              project: {type: string}
              source:
                type: object
                required: [repoURL]
                properties:
                  repoURL: {type: string, minLength: 1}
                  targetRevision: {type: string}
                  chart: {type: string}
                  path: {type: string}
                  renderer: {type: string, enum: ["", plain, kustomize, helm, jsonnet]}
                  directory:
                    type: object
                    properties:
                      recurse: {type: boolean}
                      jsonnet:
                        type: object
                        properties:
                          tlas:
                            type: array
                            items:
                              type: object
                              required: [name]
                              properties:
                                name: {type: string}
                                value: {type: string}
                                code: {type: boolean}
                          extVars:
                            type: array
                            items:
                              type: object
                              required: [name]
                              properties:
                                name: {type: string}
                                value: {type: string}
                                code: {type: boolean}
                          libs: {type: array, items: {type: string}}
                  kustomize:
                    type: object
                    properties:
                      images: {type: array, items: {type: string}}
                  helm:
                    type: object
                    properties:
                      releaseName: {type: string}
                      valueFiles: {type: array, items: {type: string}}
                      values: {type: string}
                      valuesObject: {type: object, x-kubernetes-preserve-unknown-fields: true}
                      parameters:
                        type: array
                        items:
                          type: object
                          required: [name]
                          properties:
                            name: {type: string}
                            value: {type: string}
                            forceString: {type: boolean}
                      includeCRDs: {type: boolean}
                      skipCrds: {type: boolean}
              destination:
                type: object
                properties:
                  namespace: {type: string}
                  server: {type: string}
                  name: {type: string}
              syncPolicy:
                type: object
                properties:
                  automated:
                    type: object
                    properties:
                      prune: {type: boolean}
                      selfHeal: {type: boolean}
                      allowEmpty: {type: boolean}
                  syncOptions: {type: array, items: {type: string}}
                  managedNamespaceMetadata:
                    type: object
                    properties:
                      labels: {type: object, additionalProperties: {type: string}}
                      annotations: {type: object, additionalProperties: {type: string}}
                  retry:
                    type: object
                    properties:
                      limit: {type: integer}
                      backoff:
                        type: object
                        properties:
                          duration: {type: string}
                          factor: {type: number}
                          maxDuration: {type: string}
              dependsOn: {type: array, items: {type: string}}
              ignoreDifferences:
                type: array
                items:
                  type: object
                  properties:
                    group: {type: string}
                    kind: {type: string}
                    name: {type: string}
                    namespace: {type: string}
                    jsonPointers: {type: array, items: {type: string}}
                    managedFieldsManagers: {type: array, items: {type: string}}
              suspend: {type: boolean}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
)";

}  // namespace

SourceKind Source::kind() const {
  if (!chart.empty()) return SourceKind::kHelm;
  if (repo_url.starts_with("oci://")) return SourceKind::kOci;
  return SourceKind::kGit;
}

bool SyncPolicy::HasOption(std::string_view option) const {
  for (const auto& o : sync_options) {
    if (o == option) return true;
  }
  return false;
}

Result<Application> ParseApplication(const Value& object) {
  const Value* meta = object.Get("metadata");
  std::string name = meta && meta->Get("name") && meta->Get("name")->IsString()
                         ? std::string(meta->Get("name")->AsString())
                         : "";
  Fields f(object, name.empty() ? "<unnamed>" : name);
  const Value* kind = object.Get("kind");
  const Value* api = object.Get("apiVersion");
  if (!kind || !kind->IsString() || kind->AsString() != kKind || !api || !api->IsString() ||
      api->AsString() != kApiVersion) {
    return InvalidArgumentError("{}not an Application: expected apiVersion {} and kind {}", PositionPrefix(object),
                                kApiVersion, kKind);
  }
  Application app;
  app.name = name;
  f.Require(!name.empty(), "metadata.name", "is required");
  app.namespace_ = f.String(meta, "namespace", "metadata.namespace");
  app.generation = f.Int(meta, "generation", "metadata.generation", 0);
  const Value* ann = f.Map(meta, "annotations", "metadata.annotations");
  app.sync_request = f.String(ann, "gantry.dev/sync-requested", "metadata.annotations");
  app.refresh_request = f.String(ann, "gantry.dev/refresh-requested", "metadata.annotations");
  app.terminate_request = f.String(ann, kTerminateRequested, "metadata.annotations");
  app.prune_approved = f.String(ann, "gantry.dev/prune-approved", "metadata.annotations");
  if (app.prune_approved.empty()) {
    app.prune_approved = f.String(ann, "argocd.argoproj.io/deletion-approved", "metadata.annotations");
  }

  const Value* spec = f.Map(&object, "spec", "spec");
  f.Require(spec != nullptr, "spec", "is required");
  const Value* source = f.Map(spec, "source", "spec.source");
  f.Require(source != nullptr, "spec.source", "is required");
  Source& s = app.source;
  s.repo_url = f.String(source, "repoURL", "spec.source.repoURL");
  if (source) f.Require(!s.repo_url.empty(), "spec.source.repoURL", "is required");
  s.target_revision = f.String(source, "targetRevision", "spec.source.targetRevision", "HEAD");
  if (s.target_revision.empty()) s.target_revision = "HEAD";
  s.chart = f.String(source, "chart", "spec.source.chart");
  s.path = f.String(source, "path", "spec.source.path", ".");
  if (s.path.empty()) s.path = ".";
  // The paths whose changes a render may see (Argo CD's manifest-generate-paths): ';'-separated,
  // relative to the source path, or from the repository root with a leading '/'.
  for (const char* key : {"gantry.dev/manifest-generate-paths", "argocd.argoproj.io/manifest-generate-paths"}) {
    std::string paths = f.String(ann, key, "metadata.annotations");
    if (paths.empty()) continue;
    for (size_t start = 0; start <= paths.size();) {
      size_t end = std::min(paths.find(';', start), paths.size());
      std::string p = paths.substr(start, end - start);
      while (!p.empty() && p.front() == ' ') p.erase(0, 1);
      while (!p.empty() && p.back() == ' ') p.pop_back();
      start = end + 1;
      if (p.empty()) continue;
      std::filesystem::path full = p.front() == '/' ? std::filesystem::path(p.substr(1))
                                                     : std::filesystem::path(s.path) / p;
      std::string norm = full.lexically_normal().generic_string();
      while (!norm.empty() && norm.back() == '/') norm.pop_back();
      if (norm == ".") norm.clear();
      if (norm.starts_with("..")) {
        f.Fail(*ann->Get(key), "metadata.annotations." + std::string(key), "leaves the repository: " + p);
        continue;
      }
      s.generate_paths.push_back(norm);
    }
    break;
  }
  s.renderer = f.String(source, "renderer", "spec.source.renderer");
  if (!s.renderer.empty() && s.renderer != "plain" && s.renderer != "kustomize" && s.renderer != "helm" &&
      s.renderer != "jsonnet") {
    f.Fail(*source->Get("renderer"), "spec.source.renderer", "must be plain, kustomize, helm or jsonnet");
  }
  const Value* directory = f.Map(source, "directory", "spec.source.directory");
  s.directory_recurse = f.Bool(directory, "recurse", "spec.source.directory.recurse", false);
  const Value* jsonnet = f.Map(directory, "jsonnet", "spec.source.directory.jsonnet");
  for (const char* key : {"tlas", "extVars"}) {
    const std::string path = fmt::format("spec.source.directory.jsonnet.{}", key);
    const Value* list = jsonnet != nullptr ? jsonnet->Get(key) : nullptr;
    if (list == nullptr || list->IsNull()) continue;
    if (!list->IsSeq()) {
      f.Fail(*list, path, "must be a list of {name, value, code}");
      continue;
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string item_path = fmt::format("{}[{}]", path, i);
      const Value* item = list->At(i);
      if (!item->IsMap()) {
        f.Fail(*item, item_path, "must be a map {name, value, code}");
        break;
      }
      JsonnetVar v{.name = f.String(item, "name", item_path + ".name"),
                   .value = f.String(item, "value", item_path + ".value"),
                   .code = f.Bool(item, "code", item_path + ".code", false)};
      if (v.name.empty()) f.Fail(*item, item_path + ".name", "is required");
      (std::string_view(key) == "tlas" ? s.jsonnet_tlas : s.jsonnet_ext_vars).push_back(std::move(v));
    }
  }
  s.jsonnet_libs = f.Strings(jsonnet, "libs", "spec.source.directory.jsonnet.libs");
  const Value* kustomize = f.Map(source, "kustomize", "spec.source.kustomize");
  s.kustomize_images = f.Strings(kustomize, "images", "spec.source.kustomize.images");
  const Value* helm = f.Map(source, "helm", "spec.source.helm");
  s.helm_release_name = f.String(helm, "releaseName", "spec.source.helm.releaseName", name);
  s.helm_value_files = f.Strings(helm, "valueFiles", "spec.source.helm.valueFiles");
  s.helm_values = f.String(helm, "values", "spec.source.helm.values");
  if (const Value* values = f.Map(helm, "valuesObject", "spec.source.helm.valuesObject")) {
    s.helm_values = value::ToYaml(*values);  // wins over values, as in Argo CD
  }
  s.helm_include_crds = f.Bool(helm, "includeCRDs", "spec.source.helm.includeCRDs", true) &&
                        !f.Bool(helm, "skipCrds", "spec.source.helm.skipCrds", false);
  if (const Value* params = helm ? helm->Get("parameters") : nullptr; params && !params->IsNull()) {
    if (!params->IsSeq()) f.Fail(*params, "spec.source.helm.parameters", "must be a list");
    for (size_t i = 0; params->IsSeq() && i < params->size(); ++i) {
      const Value& p = *params->At(i);
      std::string path = fmt::format("spec.source.helm.parameters[{}]", i);
      if (!p.IsMap()) {
        f.Fail(p, path, "must be a map with name and value");
        break;
      }
      std::string pname = f.String(&p, "name", path + ".name");
      f.Require(!pname.empty(), path + ".name", "is required");
      std::string pvalue = f.String(&p, "value", path + ".value");
      bool force_string = f.Bool(&p, "forceString", path + ".forceString", false);
      (force_string ? s.helm_set_string : s.helm_set).push_back(pname + "=" + pvalue);
    }
  }

  app.project = f.String(spec, "project", "spec.project", "default");
  if (app.project.empty()) app.project = "default";
  const Value* dest = f.Map(spec, "destination", "spec.destination");
  app.destination_namespace = f.String(dest, "namespace", "spec.destination.namespace");
  app.destination_server = f.String(dest, "server", "spec.destination.server");
  app.destination_name = f.String(dest, "name", "spec.destination.name");
  if (app.destination_namespace.empty()) app.destination_namespace = app.namespace_.empty() ? "default" : app.namespace_;

  const Value* policy = f.Map(spec, "syncPolicy", "spec.syncPolicy");
  const Value* automated = f.Map(policy, "automated", "spec.syncPolicy.automated");
  SyncPolicy& p = app.sync_policy;
  p.automated = automated != nullptr;
  p.prune = f.Bool(automated, "prune", "spec.syncPolicy.automated.prune", false);
  p.self_heal = f.Bool(automated, "selfHeal", "spec.syncPolicy.automated.selfHeal", false);
  p.allow_empty = f.Bool(automated, "allowEmpty", "spec.syncPolicy.automated.allowEmpty", false);
  p.sync_options = f.Strings(policy, "syncOptions", "spec.syncPolicy.syncOptions");
  const Value* nsmeta = f.Map(policy, "managedNamespaceMetadata", "spec.syncPolicy.managedNamespaceMetadata");
  p.namespace_labels = f.StringMap(nsmeta, "labels", "spec.syncPolicy.managedNamespaceMetadata.labels");
  p.namespace_annotations =
      f.StringMap(nsmeta, "annotations", "spec.syncPolicy.managedNamespaceMetadata.annotations");
  const Value* retry = f.Map(policy, "retry", "spec.syncPolicy.retry");
  p.retry.limit = static_cast<int>(f.Int(retry, "limit", "spec.syncPolicy.retry.limit", 5));
  const Value* backoff = f.Map(retry, "backoff", "spec.syncPolicy.retry.backoff");
  p.retry.duration = f.Duration(backoff, "duration", "spec.syncPolicy.retry.backoff.duration", p.retry.duration);
  p.retry.max_duration =
      f.Duration(backoff, "maxDuration", "spec.syncPolicy.retry.backoff.maxDuration", p.retry.max_duration);
  if (backoff && backoff->Get("factor")) {
    const Value* factor = backoff->Get("factor");
    if (factor->IsNumber()) p.retry.factor = factor->AsDouble();
    else f.Fail(*factor, "spec.syncPolicy.retry.backoff.factor", "must be a number");
  }

  app.depends_on = f.Strings(spec, "dependsOn", "spec.dependsOn");
  app.suspend = f.Bool(spec, "suspend", "spec.suspend", false);
  if (const Value* ignore = spec ? spec->Get("ignoreDifferences") : nullptr; ignore && !ignore->IsNull()) {
    if (!ignore->IsSeq()) {
      f.Fail(*ignore, "spec.ignoreDifferences", "must be a list");
    } else {
      for (const Value& rule : ignore->items()) {
        if (!rule.IsMap()) {
          f.Fail(rule, "spec.ignoreDifferences[]", "must be a map");
          break;
        }
        diff::IgnoreRule r;
        r.group = f.String(&rule, "group", "spec.ignoreDifferences[].group");
        r.kind = f.String(&rule, "kind", "spec.ignoreDifferences[].kind");
        r.name = f.String(&rule, "name", "spec.ignoreDifferences[].name");
        r.namespace_ = f.String(&rule, "namespace", "spec.ignoreDifferences[].namespace");
        r.json_pointers = f.Strings(&rule, "jsonPointers", "spec.ignoreDifferences[].jsonPointers");
        r.managers = f.Strings(&rule, "managedFieldsManagers", "spec.ignoreDifferences[].managedFieldsManagers");
        if (r.kind.empty()) f.Fail(rule, "spec.ignoreDifferences[].kind", "is required");
        app.ignore_differences.push_back(std::move(r));
      }
    }
  }
  GANTRY_RETURN_IF_ERROR(f.error());
  return app;
}

Value ApplicationCrd() { return value::BuiltInYaml(kCrd); }

}  // namespace gantry::api
