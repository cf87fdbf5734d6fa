#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "agent/agent.h"
#include "project/project.h"

namespace gantry::agent {
namespace {

TEST(InstallManifests, CrdsNamespaceRbacDefaultProjectAndTheAgentRunningTheImage) {
  auto all = InstallManifests("gantry-system", "gantry:dev");
  ASSERT_EQ(all.size(), 11u);
  EXPECT_EQ(value::StringAt(&all[0], {"metadata", "name"}), "applications.gantry.dev");
  EXPECT_EQ(value::StringAt(&all[1], {"metadata", "name"}), "projects.gantry.dev");
  EXPECT_EQ(all.back().Find({"spec", "template", "spec", "containers", 0, "image"})->AsString(), "gantry:dev");
  // The agent's own role writes nothing but its state, and impersonates to apply.
  const value::Value& role = all[4];
  ASSERT_EQ(value::StringAt(&role, {"metadata", "name"}), "gantry-agent");
  bool impersonate = false;
  for (const value::Value& rule : role.Get("rules")->items()) {
    for (const value::Value& verb : rule.Get("verbs")->items()) {
      EXPECT_NE(verb.AsString(), "*") << "the agent's role must not grant every verb";
      impersonate |= verb.AsString() == "impersonate";
    }
  }
  EXPECT_TRUE(impersonate);
  // The default project applies as gantry-default.
  auto project = project::ParseProject(all[all.size() - 2]);
  ASSERT_TRUE(project.ok()) << project.status().ToString();
  EXPECT_EQ(project->name, "default");
  EXPECT_EQ(project::ServiceAccountFor(*project, "https://any", "team-a"),
            "system:serviceaccount:gantry-system:gantry-default");
}

TEST(InstallManifests, ReplicasRunShardedAndWithoutThemTwoElectALeader) {
  auto args = [](const value::Value& deployment) {
    std::vector<std::string> out;
    for (const value::Value& a : deployment.Find({"spec", "template", "spec", "containers", 0, "args"})->items()) {
      out.emplace_back(a.AsString());
    }
    return out;
  };
  auto elected = InstallManifests("gantry-system", "gantry:dev").back();
  EXPECT_EQ(value::IntAt(&elected, {"spec", "replicas"}), 2);
  EXPECT_EQ(std::ranges::count(args(elected), "--shard"), 0);
  auto sharded = InstallManifests("gantry-system", "gantry:dev", {.replicas = 3}).back();
  EXPECT_EQ(value::IntAt(&sharded, {"spec", "replicas"}), 3);
  EXPECT_EQ(std::ranges::count(args(sharded), "--shard"), 1);
}

// The agent's root filesystem is read-only, and a Kustomize or Helm render checks the Git revision
// out under /tmp: without a volume there every such sync failed in a real Pod with "mkdir
// /tmp/gantry-git-render-...: Read-only file system" (found running it on the real node).
TEST(InstallManifests, TheAgentHasAWritableTmpBesideItsReadOnlyRoot) {
  auto all = InstallManifests("gantry-system", "gantry:dev");
  const value::Value* pod = all.back().Find({"spec", "template", "spec"});
  ASSERT_NE(pod, nullptr);
  EXPECT_TRUE(pod->Find({"containers", 0, "securityContext", "readOnlyRootFilesystem"})->AsBool());
  std::string tmp_volume;
  for (const value::Value& m : pod->Find({"containers", 0, "volumeMounts"})->items()) {
    if (value::StringAt(&m, {"mountPath"}) == "/tmp") tmp_volume = value::StringAt(&m, {"name"});
  }
  ASSERT_FALSE(tmp_volume.empty()) << "nothing is mounted at /tmp";
  bool empty_dir = false;
  for (const value::Value& v : pod->Get("volumes")->items()) {
    empty_dir |= value::StringAt(&v, {"name"}) == tmp_volume && v.Get("emptyDir") != nullptr;
  }
  EXPECT_TRUE(empty_dir) << tmp_volume << " is not an emptyDir";
}

// deploy/gantry-agent.yaml is `gantry install --print` with the default image, plus the documented
// --no-render-sandbox line: it must not drift from what install applies.
TEST(InstallManifests, DeployYamlIsTheInstallOutput) {
  // ctest sets GANTRY_SOURCE_DIR; run by hand, the test is started in src/agent.
  const char* root = std::getenv("GANTRY_SOURCE_DIR");
  const std::string path = std::string(root != nullptr ? root : "../..") + "/deploy/gantry-agent.yaml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path << ": not readable (set GANTRY_SOURCE_DIR to the source tree)";
  std::string file, line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(' ') != std::string::npos && line[line.find_first_not_of(' ')] == '#') continue;
    if (line == "        - --no-render-sandbox") continue;
    file += line + "\n";
  }
  std::string want;
  for (const auto& m : InstallManifests("gantry-system", "ghcr.io/gantry-dev/gantry:latest")) {
    want += "---\n" + value::ToYaml(m);
  }
  EXPECT_EQ(file, want) << "regenerate: gantry install --print > deploy/gantry-agent.yaml (keep --no-render-sandbox)";
}

}  // namespace
}  // namespace gantry::agent
