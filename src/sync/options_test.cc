#include <gtest/gtest.h>

#include "sync/sync.h"

namespace gantry::sync {
namespace {

value::Value Parse(const std::string& yaml) {
  auto docs = value::ParseYaml(yaml, "object.yaml");
  GANTRY_CHECK(docs.ok());
  return (*docs)[0];
}

value::Value Annotated(const std::string& options) {
  return Parse(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n"
                           "    argocd.argoproj.io/sync-options: {:?}\n",
                           options));
}

TEST(SyncOptions, ObjectAnnotationReadsEveryObjectOption) {
  auto o = ReadSyncOptions(Annotated("Replace=true, Force=true,Validate=false,SkipDryRunOnMissingResource=true,"
                                     "Prune=confirm,Delete=false,PruneLast=true,ServerSideApply=true"),
                           "object.yaml:1");
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->replace, Tristate::kTrue);
  EXPECT_EQ(o->force, Tristate::kTrue);
  EXPECT_EQ(o->validate, Tristate::kFalse);
  EXPECT_EQ(o->skip_dry_run_on_missing, Tristate::kTrue);
  EXPECT_EQ(o->prune, PruneMode::kConfirm);
  EXPECT_EQ(o->delete_, PruneMode::kDisabled);
  EXPECT_EQ(o->prune_last, Tristate::kTrue);
}

TEST(SyncOptions, UnknownObjectOptionIsAnErrorNamingItAndTheObject) {
  auto o = ReadSyncOptions(Annotated("Prune=false,Replcae=true"), "object.yaml:1");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("object.yaml:1: annotation argocd.argoproj.io/sync-options"), std::string::npos)
      << o.status().message();
  EXPECT_NE(o.status().message().find("unknown sync option \"Replcae=true\""), std::string::npos);
}

TEST(SyncOptions, ApplicationOnlyOptionOnAnObjectSaysSo) {
  auto o = ReadSyncOptions(Annotated("CreateNamespace=true"), "object.yaml:1");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("applies to a whole application"), std::string::npos) << o.status().message();
}

TEST(SyncOptions, MalformedValuesAreErrors) {
  EXPECT_FALSE(ReadSyncOptions(Annotated("Replace=yes"), "o").ok());
  EXPECT_FALSE(ReadSyncOptions(Annotated("Prune"), "o").ok());
  Options options;
  EXPECT_FALSE(ReadSyncOptions({"PrunePropagationPolicy=sideways"}, "app", options, nullptr).ok());
}

TEST(SyncOptions, ApplicationOptions) {
  Options options;
  std::vector<std::string> warnings;
  Status s = ReadSyncOptions({"Prune=true", "PruneLast=true", "CreateNamespace=true", "ApplyOutOfSyncOnly=false",
                              "RespectIgnoreDifferences=true", "PrunePropagationPolicy=orphan",
                              "FailOnSharedResource=true", "Replace=true", "Validate=false", "ServerSideApply=false"},
                             "spec.syncPolicy.syncOptions of Application a", options, &warnings);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(options.prune);
  EXPECT_TRUE(options.prune_last);
  EXPECT_TRUE(options.create_namespace);
  EXPECT_FALSE(options.apply_out_of_sync_only);
  EXPECT_TRUE(options.respect_ignore_differences);
  EXPECT_EQ(options.prune_propagation, kube::Propagation::kOrphan);
  EXPECT_EQ(options.object_defaults.replace, Tristate::kTrue);
  EXPECT_EQ(options.object_defaults.validate, Tristate::kFalse);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("ServerSideApply=false"), std::string::npos);

  Options other;
  s = ReadSyncOptions({"Prune=false"}, "app", other, nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(other.prune);
  EXPECT_EQ(other.object_defaults.prune, PruneMode::kDisabled);
  EXPECT_EQ(other.prune_propagation, kube::Propagation::kForeground);  // Argo CD's default
}

TEST(SyncOptions, UnknownApplicationOptionNamesItAndWhere) {
  Options options;
  Status s = ReadSyncOptions({"CreateNamespaces=true"}, "spec.syncPolicy.syncOptions of Application ns/a", options,
                             nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("spec.syncPolicy.syncOptions of Application ns/a: unknown sync option "
                             "\"CreateNamespaces=true\""),
            std::string::npos)
      << s.message();
}

TEST(RespectIgnoreDifferences, IgnoredFieldsTakeTheirLiveValue) {
  value::Value desired = Parse(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: n}
spec:
  replicas: 1
  template:
    spec:
      containers: [{name: web, image: web:1}]
)");
  value::Value live = Parse(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: n}
spec:
  replicas: 5
  template:
    spec:
      containers: [{name: web, image: web:hotfix}]
)");
  diff::IgnoreRule rule{.group = "apps", .kind = "Deployment", .json_pointers = {"/spec/replicas"}};
  diff::IgnoreRule image{.group = "*", .kind = "*", .name = "web",
                         .json_pointers = {"/spec/template/spec/containers/0/image"}};
  diff::IgnoreRule other{.group = "apps", .kind = "Deployment", .name = "api", .json_pointers = {"/spec"}};
  value::Value out = RespectIgnoreDifferences(desired, live, {rule, image, other});
  EXPECT_EQ(value::IntAt(&out, {"spec", "replicas"}), 5);
  EXPECT_EQ(value::StringAt(&out, {"spec", "template", "spec", "containers", 0, "image"}), "web:hotfix");
  // desired itself is unchanged
  EXPECT_EQ(value::IntAt(&desired, {"spec", "replicas"}), 1);

  // A field live does not have is left to the server's default: removed from what is applied.
  value::Value bare = Parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: n}\nspec: {}\n");
  value::Value out2 = RespectIgnoreDifferences(desired, bare, {rule});
  EXPECT_EQ(out2.Find({"spec", "replicas"}), nullptr);
}

}  // namespace
}  // namespace gantry::sync
