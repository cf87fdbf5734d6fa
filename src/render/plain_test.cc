#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "render/render.h"

namespace gantry::render {
namespace {
namespace fs = std::filesystem;

class RenderPlainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gantry-render-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "app");
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }
  fs::path app() { return root_ / "app"; }
  fs::path root_;
};

constexpr char kConfigMap[] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n";

std::string Cm(const std::string& name) { return fmt::format(kConfigMap, name); }

std::vector<std::string> Names(const std::vector<Manifest>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.emplace_back(m.object.Find({"metadata", "name"})->AsString());
  return out;
}

TEST_F(RenderPlainTest, RecursiveSortedMultiDocumentAndIgnoresOtherFiles) {
  Write("app/b.yaml", Cm("b1") + "---\n---\n# only a comment\n---\n" + Cm("b2"));
  Write("app/a/z.yml", Cm("az"));
  Write("app/c.json", R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}})");
  Write("app/README.md", "not yaml: [");
  Write("app/.hidden/x.yaml", Cm("hidden"));
  Write("app/list.yaml", "apiVersion: v1\nkind: List\nitems:\n- " +
                             std::string("{apiVersion: v1, kind: Secret, metadata: {name: l1}}\n"));
  auto r = RenderPlain(app());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"az", "b1", "b2", "c", "l1"}));
  EXPECT_EQ((*r)[2].source, "b.yaml:9:1");
}

TEST_F(RenderPlainTest, TypedListsAreExpandedLikeKindList) {
  // kubectl expands any *List with items; these failed with "object has no metadata".
  Write("app/rbac.yaml", R"(apiVersion: rbac.authorization.k8s.io/v1
kind: RoleList
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: reader}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: writer}
---
apiVersion: v1
kind: ConfigMapList
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: List
  items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: nested}}]
---
apiVersion: v1
kind: ConfigMapList
items: []
)");
  auto r = RenderPlain(app());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"reader", "writer", "nested"}));
  // Each item keeps the position of its own document.
  EXPECT_EQ((*r)[1].source, "rbac.yaml:7:3");
  EXPECT_EQ((*r)[2].source, "rbac.yaml:17:11");

  // A custom resource whose kind ends in List but has no items is an object like any other.
  Write("app/rbac.yaml", "apiVersion: example.com/v1\nkind: AccessList\nmetadata: {name: team}\nspec: {}\n");
  r = RenderPlain(app());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"team"}));
}

TEST_F(RenderPlainTest, AListItemWithoutApiVersionOrKindNamesTheListAndIndex) {
  Write("app/list.yaml", "apiVersion: v1\nkind: ConfigMapList\nitems:\n- {apiVersion: v1, kind: ConfigMap, "
                         "metadata: {name: a}}\n- metadata: {name: b}\n  data: {}\n");
  auto r = RenderPlain(app());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "list.yaml:5:3: item 1 of ConfigMapList at list.yaml:1:1 has no apiVersion: each item of a list needs its "
            "own apiVersion and kind");

  Write("app/list.yaml", "apiVersion: v1\nkind: List\nitems: {a: b}\n");
  r = RenderPlain(app());
  EXPECT_EQ(r.status().message(), "list.yaml:3:8: items of List at list.yaml:1:1 must be a sequence");
}

TEST_F(RenderPlainTest, BadDocumentsNameFileLineAndField) {
  Write("app/ok.yaml", Cm("ok"));
  Write("app/zz.yaml", Cm("fine") + "---\napiVersion: v1\nmetadata:\n  name: nokind\n");
  auto r = RenderPlain(app());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "zz.yaml:6:1: object has no kind");

  Write("app/zz.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x]\n");
  r = RenderPlain(app());
  EXPECT_EQ(r.status().message(), "zz.yaml:4:9: metadata.name must be a non-empty string");

  Write("app/zz.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n");
  r = RenderPlain(app());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("zz.yaml:"), std::string::npos) << r.status().message();
}

TEST_F(RenderPlainTest, SymlinksOutOfTheRootAreRefused) {
  Write("secret.yaml", Cm("outside"));
  Write("app/ok.yaml", Cm("ok"));
  ASSERT_EQ(symlink("../secret.yaml", (app() / "link.yaml").c_str()), 0);
  auto r = RenderPlain(app());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_NE(r.status().message().find("link.yaml"), std::string::npos);

  fs::remove(app() / "link.yaml");
  ASSERT_EQ(symlink("/etc", (app() / "etc").c_str()), 0);
  EXPECT_EQ(RenderPlain(app()).status().code(), Code::kPermissionDenied);
}

TEST_F(RenderPlainTest, SymlinksInsideTheRootAreFollowed) {
  Write("app/base/cm.yaml", Cm("base"));
  ASSERT_EQ(symlink("base/cm.yaml", (app() / "linked.yaml").c_str()), 0);
  auto r = RenderPlain(app());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"base", "base"}));
}

TEST_F(RenderPlainTest, LimitsAreEnforcedAndNamed) {
  for (int i = 0; i < 5; ++i) Write(fmt::format("app/{}.yaml", i), Cm(fmt::format("cm{}", i)));
  auto r = RenderPlain(app(), {.max_files = 3});
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("max_files"), std::string::npos);
  r = RenderPlain(app(), {.max_file_bytes = 10});
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("max_file_bytes"), std::string::npos);
  r = RenderPlain(app(), {.max_total_bytes = 100});
  EXPECT_NE(r.status().message().find("max_total_bytes"), std::string::npos);
}

TEST_F(RenderPlainTest, MissingRootIsNotFound) {
  EXPECT_EQ(RenderPlain(root_ / "nope").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace gantry::render
