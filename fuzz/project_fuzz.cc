// Fuzzes Projects, an input tenants' administrators write: ParseYaml → ParseProject must succeed or
// fail cleanly (within the run's time limit: cron windows and the overlap scan are bounded), and a
// parsed Project must answer every decision without crashing. Also GlobMatch on arbitrary
// pattern/text pairs (its cost must stay O(pattern × text)).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "project/glob.h"
#include "project/project.h"
#include "value/value.h"

using namespace gantry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // Glob: the input split at its first newline into pattern and text.
  if (size_t nl = text.find('\n'); nl != std::string_view::npos) {
    (void)project::GlobMatch(text.substr(0, nl), text.substr(nl + 1));
  }
  value::ParseOptions limits;
  limits.max_alias_nodes = 20000;
  auto docs = value::ParseYaml(text, "project.yaml", limits);
  if (!docs.ok()) return 0;
  for (const value::Value& doc : *docs) {
    auto p = project::ParseProject(doc);
    if (!p.ok()) continue;
    std::vector<project::Object> objects = {
        {{"v1", "ConfigMap", "team-a", "cm"}, true, "a.yaml:1:1"},
        {{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "crb"}, false, ""},
        {{"apps/v1", "Deployment", "kube-system", "d"}, true, ""}};
    (void)project::CheckObjects(*p, "https://k8s.example:6443", "prod", objects);
    (void)project::CheckSourceRepo(*p, "https://git.example.com/team-a/app.git");
    (void)project::CheckAppNamespace(*p, "team-a");
    (void)project::CheckDestination(*p, "", "", "default");
    (void)project::CheckRelease(*p, "registry.example/team-a/web", "apps/team-a/../x");
    (void)project::CheckCredential(*p, "git.example.com");
    (void)project::ServiceAccountFor(*p, "https://k8s.example:6443", "team-a");
    auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1830297600));  // 2028-01-01
    (void)project::CheckWindows(*p, {"web", "prod", "prod", "team-a"}, at, false);
    (void)project::CheckWindows(*p, {"web", "prod", "prod", "team-a"}, at, true);
  }
  return 0;
}
