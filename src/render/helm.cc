// Helm: which value files a render may read (checked before anything runs) and the arguments of
// `helm template`.

#include <sys/stat.h>

#include "base/path.h"
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
