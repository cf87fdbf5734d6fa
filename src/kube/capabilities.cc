// ReadCapabilities: a cluster's version and served APIs, as `helm template --kube-version
// --api-versions` takes them.

#include <algorithm>
#include <cctype>

#include "kube/kube.h"

namespace gantry::kube {
namespace {

// The leading digits of `s`, consumed; "" when there are none.
std::string_view Digits(std::string_view& s) {
  size_t n = 0;
  while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
  std::string_view out = s.substr(0, n);
  s.remove_prefix(n);
  return out;
}

}  // namespace

Result<std::string> KubeVersionOf(std::string_view version_json) {
  GANTRY_ASSIGN_OR_RETURN(value::Value doc, value::ParseJson(version_json, "/version"));
  // gitVersion "v1.36.3", "v1.30.4-eks-a737599", "v1.29.2+k3s1": major.minor.patch of it.
  std::string git = value::StringAt(&doc, {"gitVersion"});
  std::string_view s = git;
  if (s.starts_with('v')) s.remove_prefix(1);
  std::string_view major = Digits(s), minor, patch;
  if (!major.empty() && s.starts_with('.')) {
    s.remove_prefix(1);
    minor = Digits(s);
    if (s.starts_with('.')) {
      s.remove_prefix(1);
      patch = Digits(s);
    }
  }
  if (!major.empty() && !minor.empty() && !patch.empty()) return fmt::format("v{}.{}.{}", major, minor, patch);
  // No usable gitVersion: major and minor (GKE once served minor "27+").
  std::string m = value::StringAt(&doc, {"major"}), n = value::StringAt(&doc, {"minor"});
  std::string_view ms = m, ns = n;
  major = Digits(ms);
  minor = Digits(ns);
  if (major.empty() || minor.empty()) {
    return InvalidArgumentError("/version holds no Kubernetes version (gitVersion {:?}, major {:?}, minor {:?})", git,
                                m, n);
  }
  return fmt::format("v{}.{}.0", major, minor);
}

Result<Capabilities> ReadCapabilities(Client& client, std::string_view kube_version) {
  constexpr char kWhat[] = "read the version and APIs of the cluster";
  Capabilities out{.kube_version = std::string(kube_version), .api_versions = {}};
  if (out.kube_version.empty()) {
    auto version = client.GetRaw("/version");
    if (!version.ok()) return version.status().WithContext(kWhat);
    auto parsed = KubeVersionOf(*version);
    if (!parsed.ok()) return parsed.status().WithContext(kWhat);
    out.kube_version = std::move(*parsed);
  }
  auto kinds = client.ServedKinds();
  if (!kinds.ok()) return kinds.status().WithContext(kWhat);
  for (const ResourceInfo& info : *kinds) {
    out.api_versions.push_back(info.api_version());
    out.api_versions.push_back(info.api_version() + "/" + info.kind);
  }
  std::sort(out.api_versions.begin(), out.api_versions.end());
  out.api_versions.erase(std::unique(out.api_versions.begin(), out.api_versions.end()), out.api_versions.end());
  return out;
}

}  // namespace gantry::kube
