// Helm: which value files a render may read (checked before anything runs), the chart
// dependencies put into the private copy's charts/, and the arguments of `helm template`.

#include <sys/stat.h>

#include <optional>

#include "base/path.h"
#include "render/chart_repo.h"
#include "render/internal/renderers.h"
#include "render/internal/tree.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

// Lowercase alphanumerics and '-', starting and ending alphanumeric; with dots when `dots`.
bool IsDnsName(std::string_view s, size_t max, bool dots) {
  if (s.empty() || s.size() > max) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  for (char c : s) {
    if (!alnum(c) && c != '-' && !(dots && c == '.')) return false;
  }
  return alnum(s.front()) && alnum(s.back());
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> HelmValueFiles(const fs::path& root,
                                                                        const std::string& chart,
                                                                        const HelmOptions& options) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < options.value_files.size(); ++i) {
    const std::string& file = options.value_files[i];
    std::string what = fmt::format("value file {:?}", file);
    if (file.empty()) return InvalidArgumentError("value file {} is empty", i);
    if (file.starts_with('/')) {
      return PermissionDeniedError("{} is an absolute path; value files must be inside the repository", what);
    }
    if (file.find("://") != std::string::npos) {
      return PermissionDeniedError("{} is a URL; value files must be inside the repository", what);
    }
    GANTRY_ASSIGN_OR_RETURN(std::string rel, NormalizeRel(chart.empty() ? file : chart + "/" + file, what));
    auto resolved = ResolveBeneath(root, rel);
    if (!resolved.ok()) {
      if (resolved.status().code() == Code::kNotFound) {
        return NotFoundError("{}: no such file in the repository", what);
      }
      return Status(resolved.status().code(), fmt::format("{}: {}", what, resolved.status().message()));
    }
    struct stat st;
    if (::stat(resolved->c_str(), &st) != 0) return NotFoundError("{}: no such file in the repository", what);
    if (!S_ISREG(st.st_mode)) return InvalidArgumentError("{}: not a regular file", what);
    out.emplace_back(rel, fmt::format("{}-{}", i, fs::path(rel).filename().string()));
  }
  return out;
}

Status VendorHelmDependencies(const fs::path& copy, const std::string& chart_rel, Materializer& copier,
                              const Options& options) {
  const fs::path chart = chart_rel.empty() ? copy : copy / chart_rel;
  const std::string prefix = chart_rel.empty() ? "" : chart_rel + "/";
  auto read = [&](const std::string& name) -> Result<std::optional<value::Value>> {
    std::error_code ec;
    if (!fs::is_regular_file(chart / name, ec)) return std::optional<value::Value>();
    GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(chart / name, options.limits.max_file_bytes));
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(text, prefix + name, options.limits.parse));
    if (docs.empty()) return std::optional<value::Value>();
    return std::optional<value::Value>(docs[0]);
  };
  GANTRY_ASSIGN_OR_RETURN(std::optional<value::Value> meta, read("Chart.yaml"));
  if (!meta) return OkStatus();  // helm says what is wrong
  const bool v1 = value::StringAt(&*meta, {"apiVersion"}) == "v1";
  const std::string deps_file = v1 ? "requirements.yaml" : "Chart.yaml";
  const std::string lock_file = v1 ? "requirements.lock" : "Chart.lock";
  std::optional<value::Value> deps_doc = meta;
  if (v1) {
    GANTRY_ASSIGN_OR_RETURN(deps_doc, read(deps_file));
  }
  const value::Value* deps = deps_doc ? deps_doc->Get("dependencies") : nullptr;
  if (deps == nullptr || deps->IsNull() || deps->size() == 0) return OkStatus();
  if (!deps->IsSeq()) return InvalidArgumentError("{}{}: dependencies must be a list", prefix, deps_file);
  GANTRY_ASSIGN_OR_RETURN(std::optional<value::Value> lock, read(lock_file));
  auto locked = [&](const std::string& name, const std::string& repository) -> std::string {
    const value::Value* l = lock ? lock->Get("dependencies") : nullptr;
    for (size_t i = 0; l != nullptr && i < l->size(); ++i) {
      const value::Value* d = l->At(i);
      if (value::StringAt(d, {"name"}) == name && value::StringAt(d, {"repository"}) == repository) {
        return value::StringAt(d, {"version"});
      }
    }
    return "";
  };
  std::error_code ec;
  for (size_t i = 0; i < deps->size(); ++i) {
    const value::Value* dep = deps->At(i);
    const std::string name = value::StringAt(dep, {"name"});
    const std::string repository = value::StringAt(dep, {"repository"});
    const std::string where = fmt::format("{}{} dependencies[{}] ({})", prefix, deps_file, i, name);
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return InvalidArgumentError("{}: name must be a chart name", where);
    }
    // Vendored already: charts/NAME or charts/NAME-VERSION.tgz.
    bool vendored = fs::exists(fs::symlink_status(chart / "charts" / name, ec));
    for (const auto& e : fs::directory_iterator(chart / "charts", ec)) {
      std::string f = e.path().filename().string();
      if (f.starts_with(name + "-") && f.ends_with(".tgz")) vendored = true;
    }
    if (vendored || repository.empty()) continue;  // an empty repository must be vendored: helm says so
    const std::string dest = prefix + "charts/" + name;
    if (repository.starts_with("@") || repository.starts_with("alias:")) {
      return InvalidArgumentError("{}: repository {:?} names a repository added with `helm repo add`; Gantry keeps no "
                                  "such list: write the repository's URL (https://... or oci://...)", where, repository);
    }
    if (repository.starts_with("file://")) {
      GANTRY_ASSIGN_OR_RETURN(std::string rel, NormalizeRel(prefix + repository.substr(7), where + " repository"));
      GANTRY_RETURN_IF_ERROR(copier.AddTree(rel));
      auto copied = CopyTreeBeneath(copy, rel, copy, dest);
      if (!copied.ok()) return copied.status().WithContext(where);
      continue;
    }
    if (!repository.starts_with("https://") && !repository.starts_with("http://") &&
        !repository.starts_with("oci://")) {
      return InvalidArgumentError("{}: repository {:?} is not https://, http://, oci:// or file://", where,
                                  repository);
    }
    if (options.charts == nullptr) {
      return FailedPreconditionError("{}: not vendored in charts/, and this render does not fetch charts from {}",
                                     where, repository);
    }
    if (options.allow_repository) {
      if (Status allowed = options.allow_repository(repository); !allowed.ok()) return allowed.WithContext(where);
    }
    std::string version = locked(name, repository);
    if (version.empty()) version = value::StringAt(dep, {"version"});
    auto fetched = options.charts->Fetch({.repo_url = repository, .chart = name, .version = version});
    if (!fetched.ok()) return fetched.status().WithContext(where);
    auto copied = CopyTreeBeneath(fetched->dir.parent_path(), name, copy, dest);
    if (!copied.ok()) return copied.status().WithContext(where);
  }
  return OkStatus();
}

Result<std::vector<std::string>> HelmTemplateArgs(const std::string& chart_name_default,
                                                  const fs::path& chart_dir, const fs::path& values_dir,
                                                  const std::vector<std::string>& value_file_names,
                                                  const HelmOptions& options) {
  std::string release = options.release_name.empty() ? chart_name_default : options.release_name;
  if (!IsDnsName(release, 53, true)) {
    return InvalidArgumentError("helm release name {:?} is invalid: lowercase letters, digits, '-' and '.', "
                                "at most 53 characters (set another with --release-name or the Application's "
                                "spec.source.helm.releaseName)", release);
  }
  std::string ns = options.namespace_.empty() ? "default" : options.namespace_;
  if (!IsDnsName(ns, 63, false)) {
    return InvalidArgumentError("helm namespace {:?} is invalid: lowercase letters, digits and '-', at most "
                                "63 characters (it is the destination namespace, -n, unless --helm-namespace "
                                "names another)", ns);
  }
  // Every value travels as --flag=value, so none can be read as another flag.
  std::vector<std::string> args = {"template", release, chart_dir.string(), "--namespace=" + ns};
  if (options.include_crds) args.push_back("--include-crds");
  if (!options.kube_version.empty()) args.push_back("--kube-version=" + options.kube_version);
  for (const std::string& v : options.api_versions) args.push_back("--api-versions=" + v);
  for (const std::string& name : value_file_names) args.push_back("--values=" + (values_dir / name).string());
  if (!options.values.empty()) args.push_back("--values=" + (values_dir / "inline.yaml").string());
  for (const auto& [flag, list] : {std::pair{"--set", &options.set}, std::pair{"--set-string", &options.set_string}}) {
    for (const std::string& s : *list) {
      if (s.find('=') == std::string::npos || s.front() == '=') {
        return InvalidArgumentError("helm {} entry {:?} must be key=value", flag, s);
      }
      args.push_back(std::string(flag) + "=" + s);
    }
  }
  return args;
}

}  // namespace gantry::render::internal
