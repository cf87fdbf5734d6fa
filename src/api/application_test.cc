#include "api/application.h"

#include <gtest/gtest.h>

namespace gantry::api {
namespace {

Result<Application> Parse(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "apps/podinfo.yaml");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return ParseApplication((*docs)[0]);
}

TEST(ParseApplication, FullSpec) {
  auto app = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata:
  name: podinfo
  namespace: gantry-system
  generation: 3
  annotations: {gantry.dev/sync-requested: "2026-11-28T10:00:00Z", argocd.argoproj.io/deletion-approved: "2026-11-28T11:00:00Z",
                gantry.dev/terminate-requested: "2026-11-28T10:05:00Z/alice"}
spec:
  source:
    repoURL: https://git.example.com/config.git
    targetRevision: ">=1.2.0 <2.0.0"
    path: apps/podinfo/envs/staging
    helm: {valueFiles: [values-staging.yaml], includeCRDs: false}
  destination: {namespace: podinfo}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true, PruneLast=true]
    managedNamespaceMetadata: {labels: {team: web}, annotations: {owner: ops}}
    retry: {limit: 3, backoff: {duration: 10s, factor: 3, maxDuration: 1m30s}}
  dependsOn: [database]
  ignoreDifferences:
  - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}
)");
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  EXPECT_EQ(app->name, "podinfo");
  EXPECT_EQ(app->namespace_, "gantry-system");
  EXPECT_EQ(app->generation, 3);
  EXPECT_EQ(app->sync_request, "2026-11-28T10:00:00Z");
  EXPECT_EQ(app->terminate_request, "2026-11-28T10:05:00Z/alice");
  EXPECT_EQ(app->source.target_revision, ">=1.2.0 <2.0.0");
  EXPECT_EQ(app->source.helm_release_name, "podinfo");
  EXPECT_FALSE(app->source.helm_include_crds);
  EXPECT_EQ(app->destination_namespace, "podinfo");
  EXPECT_TRUE(app->sync_policy.automated && app->sync_policy.prune && app->sync_policy.self_heal);
  EXPECT_TRUE(app->sync_policy.HasOption("CreateNamespace=true"));
  EXPECT_EQ(app->sync_policy.retry.limit, 3);
  EXPECT_EQ(app->sync_policy.namespace_labels, (std::map<std::string, std::string>{{"team", "web"}}));
  EXPECT_EQ(app->sync_policy.namespace_annotations, (std::map<std::string, std::string>{{"owner", "ops"}}));
  EXPECT_EQ(app->prune_approved, "2026-11-28T11:00:00Z");
  EXPECT_EQ(app->sync_policy.retry.duration, std::chrono::seconds(10));
  EXPECT_EQ(app->sync_policy.retry.max_duration, std::chrono::seconds(90));
  EXPECT_EQ(app->sync_policy.retry.factor, 3);
  EXPECT_EQ(app->depends_on, std::vector<std::string>{"database"});
  ASSERT_EQ(app->ignore_differences.size(), 1u);
  EXPECT_EQ(app->ignore_differences[0].json_pointers, std::vector<std::string>{"/spec/replicas"});
}

TEST(ParseApplication, DefaultsForAMinimalSpec) {
  auto app = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: team-a}
spec: {source: {repoURL: "https://git.example.com/c.git"}}
)");
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  EXPECT_EQ(app->source.target_revision, "HEAD");
  EXPECT_EQ(app->source.path, ".");
  EXPECT_EQ(app->destination_namespace, "team-a");
  EXPECT_FALSE(app->sync_policy.automated);
}

TEST(ParseApplication, ErrorsNameTheFieldAndPosition) {
  auto missing = Parse("apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec: {source: {path: a}}\n");
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("spec.source.repoURL is required"), std::string::npos)
      << missing.status().message();

  auto bad_duration = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: x}
spec:
  source: {repoURL: "https://h/r.git"}
  syncPolicy: {retry: {backoff: {duration: soon}}}
)");
  EXPECT_NE(bad_duration.status().message().find("apps/podinfo.yaml:6:"), std::string::npos)
      << bad_duration.status().message();
  EXPECT_NE(bad_duration.status().message().find("spec.syncPolicy.retry.backoff.duration"), std::string::npos);

  auto wrong_type = Parse("apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: x}\n"
                          "spec: {source: {repoURL: h, path: [a]}}\n");
  EXPECT_NE(wrong_type.status().message().find("spec.source.path must be a string"), std::string::npos);

  auto not_app = Parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
  EXPECT_EQ(not_app.status().code(), Code::kInvalidArgument);
}

// issue 16: Argo CD's spec.source.directory with Jsonnet settings.
TEST(ParseApplication, DirectoryJsonnet) {
  auto app = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: web}
spec:
  source:
    repoURL: https://git.example.com/apps.git
    renderer: jsonnet
    directory:
      recurse: true
      jsonnet:
        tlas: [{name: env, value: prod}, {name: replicas, value: "3", code: true}]
        extVars: [{name: region, value: eu}]
        libs: [vendor]
)");
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  EXPECT_EQ(app->source.renderer, "jsonnet");
  EXPECT_TRUE(app->source.directory_recurse);
  ASSERT_EQ(app->source.jsonnet_tlas.size(), 2u);
  EXPECT_EQ(app->source.jsonnet_tlas[1].name, "replicas");
  EXPECT_TRUE(app->source.jsonnet_tlas[1].code);
  EXPECT_FALSE(app->source.jsonnet_tlas[0].code);
  ASSERT_EQ(app->source.jsonnet_ext_vars.size(), 1u);
  EXPECT_EQ(app->source.jsonnet_ext_vars[0].value, "eu");
  EXPECT_EQ(app->source.jsonnet_libs, std::vector<std::string>{"vendor"});
  auto bad = Parse("apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec:\n  source:\n"
                   "    repoURL: r\n    directory: {jsonnet: {tlas: [{value: v}]}}\n");
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("spec.source.directory.jsonnet.tlas[0].name is required"), std::string::npos)
      << bad.status().message();
}

TEST(ParseApplication, HelmChartFromARepositoryWithArgoCdHelmFields) {
  auto app = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: cache}
spec:
  source:
    repoURL: https://charts.example.com
    chart: redis
    targetRevision: 18.x
    helm:
      values: "ignored: true"
      valuesObject: {replicas: 2}
      parameters:
      - {name: image.tag, value: "1.2"}
      - {name: port, value: "8080", forceString: true}
      skipCrds: true
)");
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  EXPECT_EQ(app->source.kind(), SourceKind::kHelm);
  EXPECT_EQ(app->source.chart, "redis");
  EXPECT_EQ(app->source.helm_values, "replicas: 2\n");
  EXPECT_EQ(app->source.helm_set, std::vector<std::string>{"image.tag=1.2"});
  EXPECT_EQ(app->source.helm_set_string, std::vector<std::string>{"port=8080"});
  EXPECT_FALSE(app->source.helm_include_crds);

  auto bad = Parse(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: cache}
spec:
  source:
    repoURL: https://charts.example.com
    chart: redis
    helm: {parameters: [{value: x}]}
)");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spec.source.helm.parameters[0].name is required"), std::string::npos)
      << bad.status().ToString();
}

TEST(ApplicationCrd, IsStructuralWithStatusSubresource) {
  value::Value crd = ApplicationCrd();
  EXPECT_EQ(crd.Find({"metadata", "name"})->AsString(), "applications.gantry.dev");
  const value::Value* version = crd.Find({"spec", "versions", 0});
  ASSERT_NE(version, nullptr);
  EXPECT_NE(version->Find({"subresources", "status"}), nullptr);
  EXPECT_EQ(version->Find({"schema", "openAPIV3Schema", "type"})->AsString(), "object");
}

}  // namespace
}  // namespace gantry::api
