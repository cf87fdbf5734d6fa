#include <gtest/gtest.h>

#include "agent/agent.h"

namespace gantry::agent {
namespace {

TEST(InstallManifests, CrdNamespaceRbacAndTheAgentRunningTheImage) {
  auto all = InstallManifests("gantry-system", "gantry:dev");
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(value::StringAt(&all.front(), {"metadata", "name"}), "applications.gantry.dev");
  EXPECT_EQ(all.back().Find({"spec", "template", "spec", "containers", 0, "image"})->AsString(), "gantry:dev");
}

}  // namespace
}  // namespace gantry::agent
