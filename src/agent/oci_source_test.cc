#include "agent/internal/oci_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "api/application.h"
#include "oci/artifact.h"
#include "test/fakes/registry.h"

namespace gantry::agent::internal {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

class OciSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "gantry-oci-source-XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(t.data()) != nullptr);
    tmp_ = t;
    auto registry = std::make_unique<fakes::FakeRegistry>();
    registry_ = registry.get();
    render::Options ro;
    ro.renderer = render::Renderer::kPlain;
    source_ = NewOciSource(std::move(registry), tmp_ / "cache", ro, nullptr);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // Pushes a directory with one ConfigMap of `value` under app/ to registry.test/team/config:`tag`.
  std::string Push(const std::string& tag, const std::string& value) {
    fs::create_directories(tmp_ / "src" / "app");
    std::ofstream(tmp_ / "src" / "app" / "cm.yaml")
        << "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {value: \"" << value << "\"}\n";
    auto ref = oci::ArtifactReference("oci://registry.test/team/config", tag);
    GANTRY_CHECK(ref.ok());
    auto digest = oci::PushArtifact(*registry_, tmp_ / "src", *ref, {});
    GANTRY_CHECK(digest.ok());
    return *digest;
  }

  static api::Application App(const std::string& revision) {
    api::Application app;
    app.name = "web";
    app.source.repo_url = "oci://registry.test/team/config";
    app.source.target_revision = revision;
    app.source.path = "app";
    return app;
  }

  fs::path tmp_;
  fakes::FakeRegistry* registry_ = nullptr;
  std::unique_ptr<Source> source_;
};

TEST_F(OciSourceTest, ResolvesATagOncePerRefreshAndADigestWithoutAsking) {
  std::string first = Push("prod", "1");
  uint64_t before = registry_->Stats().requests;
  auto d = source_->Resolve(App("prod"), SteadyClock::time_point{});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, first);
  EXPECT_EQ(registry_->Stats().requests, before + 1);  // one HEAD
  // Not asked to refresh: the answer already known, no request.
  EXPECT_EQ(*source_->Resolve(App("prod"), SteadyClock::time_point{}), first);
  EXPECT_EQ(registry_->Stats().requests, before + 1);

  // The tag moves; a refresh asked for after the last resolve sees it.
  std::string second = Push("prod", "2");
  before = registry_->Stats().requests;
  EXPECT_EQ(*source_->Resolve(App("prod"), SteadyClock::now()), second);
  EXPECT_EQ(registry_->Stats().requests, before + 1);
  // A pin never asks.
  EXPECT_EQ(*source_->Resolve(App(first), SteadyClock::now()), first);
  EXPECT_EQ(registry_->Stats().requests, before + 1);

  EXPECT_FALSE(*source_->MayDiffer(App("prod"), first, first));
  EXPECT_TRUE(*source_->MayDiffer(App("prod"), first, second));
}

TEST_F(OciSourceTest, RendersThePathInsideTheArtifactOncePerDigest) {
  std::string digest = Push("v1", "1");
  auto r = source_->Render(App("v1"), digest, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->commit, digest);
  ASSERT_EQ(r->objects.size(), 1u);
  EXPECT_EQ(value::StringAt(&r->objects[0], {"data", "value"}), "1");
  EXPECT_EQ(source_->renders(), 1u);
  uint64_t requests = registry_->Stats().requests;
  ASSERT_TRUE(source_->Render(App("v1"), digest, {}).ok());
  EXPECT_EQ(source_->renders(), 1u);                      // the render cache
  EXPECT_EQ(registry_->Stats().requests, requests);      // the artifact cache
}

TEST_F(OciSourceTest, ErrorsAreFetchFailuresNamingTheSource) {
  auto missing = source_->Resolve(App("nope"), SteadyClock::time_point{});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().reason(), kReasonFetchFailed);
  EXPECT_NE(missing.status().message().find("registry.test/team/config:nope"), std::string::npos)
      << missing.status().message();
  api::Application bad = App("v1");
  bad.source.repo_url = "oci://registry.test/team/config:v1";
  auto r = source_->Resolve(bad, SteadyClock::time_point{});
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().reason(), kReasonFetchFailed);
}

}  // namespace
}  // namespace gantry::agent::internal
