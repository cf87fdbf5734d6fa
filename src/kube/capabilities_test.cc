#include <gtest/gtest.h>

#include "kube/kube.h"
#include "test/fakes/kube_client.h"

namespace gantry::kube {
namespace {

TEST(KubeVersionOf, IsMajorMinorPatchWithoutPreReleaseOrBuild) {
  auto v = [](std::string_view json) { return KubeVersionOf(json).value_or("error"); };
  EXPECT_EQ(v(R"({"major":"1","minor":"36","gitVersion":"v1.36.3"})"), "v1.36.3");
  // Managed clusters: the suffix would make `kubeVersion: ">=1.25.0"` refuse the cluster.
  EXPECT_EQ(v(R"({"major":"1","minor":"30+","gitVersion":"v1.30.4-eks-a737599"})"), "v1.30.4");
  EXPECT_EQ(v(R"({"major":"1","minor":"29","gitVersion":"v1.29.2+k3s1"})"), "v1.29.2");
  EXPECT_EQ(v(R"({"major":"1","minor":"27+","gitVersion":"unknown"})"), "v1.27.0");
  auto bad = KubeVersionOf(R"({"gitVersion":"unknown"})");
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("unknown"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(KubeVersionOf("not json").ok());
}

TEST(ReadCapabilities, ServedGroupVersionsAndKindsSortedAsArgoCdPassesThem) {
  fakes::FakeKubeClient client;
  client.AddKind({"capabilities.gantry.test", "v1", "Widget", "widgets", true, {}});
  auto caps = ReadCapabilities(client);
  ASSERT_TRUE(caps.ok()) << caps.status().ToString();
  EXPECT_EQ(caps->kube_version, "v1.31.0");  // the fake's "v1.31.0-fake"
  const auto& v = caps->api_versions;
  for (std::string want : {"v1", "v1/ConfigMap", "apps/v1", "apps/v1/Deployment", "capabilities.gantry.test/v1",
                           "capabilities.gantry.test/v1/Widget"}) {
    EXPECT_NE(std::find(v.begin(), v.end(), want), v.end()) << want;
  }
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
  EXPECT_EQ(std::adjacent_find(v.begin(), v.end()), v.end()) << "duplicates";
  // A version the caller read recently is not read again.
  uint64_t raw = client.count("get_raw");
  auto again = ReadCapabilities(client, "v1.31.0");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *caps);
  EXPECT_EQ(client.count("get_raw"), raw);
  client.FailNext("get_raw", UnavailableError("connection refused"));
  auto failed = ReadCapabilities(client);
  EXPECT_EQ(failed.status().code(), Code::kUnavailable);
  EXPECT_NE(failed.status().message().find("read the version and APIs of the cluster"), std::string::npos)
      << failed.status().message();
}

}  // namespace
}  // namespace gantry::kube
