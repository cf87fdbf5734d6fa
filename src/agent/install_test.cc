#include <gtest/gtest.h>

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

}  // namespace
}  // namespace gantry::agent
