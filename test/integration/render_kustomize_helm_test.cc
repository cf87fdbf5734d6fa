// gantry::render with the real kustomize and helm (built by test/env/build-tools.sh) and the real
// bubblewrap: the fixtures of src/render/testdata (a Kustomize overlay with an images transformer
// and a component; a Helm chart with value files, a CRD and a vendored dependency), the hostile
// corpus against the external renderers, the sandbox itself, and cache hits.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "base/process.h"
#include "base/sandbox.h"
#include "render/render.h"
#include "test/env/testenv.h"

namespace gantry::render {
namespace {
namespace fs = std::filesystem;

fs::path Testdata() {
  return fs::path(testenv::SourceDir()) / "src/render/testdata";
}

Options Tools() {
  Options o;
  o.kustomize_binary = testenv::ToolsDir() + "/kustomize";
  o.helm_binary = testenv::ToolsDir() + "/helm";
  o.sandbox = Sandbox::kRequire;  // CI and this machine have a working bubblewrap
  return o;
}

const Manifest* Find(const std::vector<Manifest>& ms, std::string_view kind, std::string_view name) {
  for (const Manifest& m : ms) {
    if (m.object.Get("kind")->AsString() == kind && m.object.Find({"metadata", "name"})->AsString() == name) {
      return &m;
    }
  }
  return nullptr;
}

std::string Str(const Manifest* m, std::initializer_list<value::Value::PathElem> path) {
  if (m == nullptr) return "<no object>";
  const value::Value* v = m->object.Find(path);
  if (v == nullptr) return "<missing>";
  return v->IsString() ? std::string(v->AsString()) : value::ToJson(*v);
}

void Write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(RenderKustomize, OverlayWithImagesTransformerAndComponent) {
  Options o = Tools();
  auto r = Render(Source{Testdata(), "kustomize/overlays/prod"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  const Manifest* d = Find(*r, "Deployment", "prod-web");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(Str(d, {"metadata", "namespace"}), "prod");
  EXPECT_EQ(Str(d, {"spec", "replicas"}), "3");
  EXPECT_EQ(Str(d, {"spec", "template", "spec", "containers", 0, "image"}), "registry.example/nginx:1.27.0");
  EXPECT_EQ(Str(d, {"spec", "template", "spec", "containers", 1, "image"}), "busybox:1.36");
  EXPECT_EQ(Str(d, {"metadata", "annotations", "prometheus.io/scrape"}), "true");  // the component
  EXPECT_NE(Find(*r, "ServiceMonitor", "prod-web"), nullptr);
  EXPECT_EQ(d->source, "kustomize build kustomize/overlays/prod:14:1");

  // Image overrides (as Argo CD's kustomize.images) on top of the overlay's own.
  o.kustomize.images = {"nginx=mirror.example/nginx:1.28.1", "busybox@sha256:0123456789abcdef"};
  r = Render(Source{Testdata(), "kustomize/overlays/prod"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  d = Find(*r, "Deployment", "prod-web");
  EXPECT_EQ(Str(d, {"spec", "template", "spec", "containers", 0, "image"}), "mirror.example/nginx:1.28.1");
  EXPECT_EQ(Str(d, {"spec", "template", "spec", "containers", 1, "image"}), "busybox@sha256:0123456789abcdef");

  // Components from the options.
  o.kustomize = {};
  o.kustomize.components = {"../components/monitoring"};
  r = Render(Source{Testdata(), "kustomize/base"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(Find(*r, "ServiceMonitor", "web"), nullptr);
  EXPECT_EQ(Str(Find(*r, "Deployment", "web"), {"spec", "template", "spec", "containers", 0, "image"}), "nginx:1.25");
}

TEST(RenderHelm, ChartWithValueFilesCrdsAndVendoredDependency) {
  Options o = Tools();
  o.helm.release_name = "demo";
  o.helm.namespace_ = "apps";
  o.helm.value_files = {"values-prod.yaml", "../values/shared.yaml"};
  o.helm.values = "extra: inline\n";
  o.helm.set = {"image.tag=1.28"};
  auto r = Render(Source{Testdata(), "helm/web"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Manifest* d = Find(*r, "Deployment", "demo");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(Str(d, {"metadata", "namespace"}), "apps");
  EXPECT_EQ(Str(d, {"spec", "replicas"}), "3");                                               // values-prod.yaml
  EXPECT_EQ(Str(d, {"spec", "template", "spec", "containers", 0, "image"}), "nginx:1.28");  // --set wins
  EXPECT_EQ(d->source, "helm template helm/web: web/templates/deployment.yaml");
  const Manifest* cm = Find(*r, "ConfigMap", "demo-config");
  EXPECT_EQ(Str(cm, {"data", "greeting"}), "from-shared-values");
  EXPECT_EQ(Str(cm, {"data", "extra"}), "inline");
  EXPECT_EQ(Str(Find(*r, "ConfigMap", "demo-common"), {"data", "chart"}), "common");  // charts/common
  EXPECT_NE(Find(*r, "CustomResourceDefinition", "widgets.example.com"), nullptr);
  EXPECT_EQ(r->size(), 4u);

  o.helm = {};
  o.helm.include_crds = false;
  r = Render(Source{Testdata(), "helm/web"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), 3u);
  EXPECT_EQ(Str(Find(*r, "Deployment", "web"), {"spec", "replicas"}), "1");  // release name: the directory
}

TEST(RenderHelm, DependenciesMustBeVendored) {
  auto r = Render(Source{Testdata(), "helm/missing-dep"}, Tools());
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("redis"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("helm template helm/missing-dep"), std::string::npos);
}

TEST(RenderExternal, RendererFailureNamesRendererPathExitAndStderr) {
  testenv::ScopedTempDir tmp;
  fs::path repo = fs::path(tmp.path()) / "repo";
  Write(repo / "app/kustomization.yaml", "resources: [missing.yaml]\n");
  Write(repo / "app/missing.yaml", "apiVersion: v1\nkind: ConfigMap\n  bad: indent\n");
  auto r = Render(Source{repo, "app"}, Tools());
  ASSERT_EQ(r.status().code(), Code::kUnknown) << r.status().ToString();
  EXPECT_TRUE(r.status().message().starts_with("kustomize build app failed: exit code 1: ")) << r.status().message();
  EXPECT_EQ(r.status().message().find(tmp.path()), std::string::npos) << r.status().message();
}

// The hostile corpus against the real renderers: refused before they run, or bounded; nothing
// outside the repository read.
TEST(RenderExternal, HostileCorpus) {
  testenv::ScopedTempDir tmp;
  fs::path repo = fs::path(tmp.path()) / "repo";
  Write(fs::path(tmp.path()) / "outside/kustomization.yaml", "resources: [secret.yaml]\n");
  Write(fs::path(tmp.path()) / "outside/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n");
  Options o = Tools();

  // A chart template that is a symlink to /etc/passwd.
  Write(repo / "chart/Chart.yaml", "apiVersion: v2\nname: chart\nversion: 0.1.0\n");
  fs::create_directories(repo / "chart/templates");
  ASSERT_EQ(symlink("/etc/passwd", (repo / "chart/templates/passwd.yaml").c_str()), 0);
  auto r = Render(Source{repo, "chart"}, o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("passwd.yaml"), std::string::npos);
  fs::remove(repo / "chart/templates/passwd.yaml");

  // A value file climbing out; a template reading files outside the chart gets nothing.
  o.helm.value_files = {"../../outside/secret.yaml"};
  r = Render(Source{repo, "chart"}, o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  o.helm.value_files = {};
  Write(repo / "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata:\n"
        "  passwd: {{ .Files.Get \"../../../../../../etc/passwd\" | quote }}\n"
        "  outside: {{ .Files.Get \"../outside/secret.yaml\" | quote }}\n");
  r = Render(Source{repo, "chart"}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Str(Find(*r, "ConfigMap", "probe"), {"data", "passwd"}), "");
  EXPECT_EQ(Str(Find(*r, "ConfigMap", "probe"), {"data", "outside"}), "");

  // A kustomization whose base is a directory symlink out of the repository.
  ASSERT_EQ(symlink("../outside", (repo / "linked").c_str()), 0);
  Write(repo / "app/kustomization.yaml", "resources: [../linked]\n");
  r = Render(Source{repo, "app"}, o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  // Loose files outside the kustomization root: kustomize's own load restrictor.
  Write(repo / "app/kustomization.yaml",
        "configMapGenerator:\n- name: leak\n  files: [/etc/passwd]\n");
  r = Render(Source{repo, "app"}, o);
  EXPECT_EQ(r.status().code(), Code::kUnknown) << r.status().ToString();
  EXPECT_EQ(r.status().message().find("root:"), std::string::npos) << r.status().message();
  o.sandbox = Sandbox::kNone;  // then it is the restrictor that refuses
  r = Render(Source{repo, "app"}, o);
  EXPECT_EQ(r.status().code(), Code::kUnknown) << r.status().ToString();
  EXPECT_NE(r.status().message().find("security"), std::string::npos) << r.status().message();
  o.sandbox = Sandbox::kRequire;

  // A YAML bomb in a kustomize resource: kustomize expands it; the memory limit ends it.
  std::string bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    bomb += fmt::format("  a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}]\n", i, i - 1);
  }
  Write(repo / "app/bomb.yaml", bomb);
  Write(repo / "app/kustomization.yaml", "resources: [bomb.yaml]\n");
  o.limits.max_renderer_memory_bytes = size_t{512} << 20;
  auto start = std::chrono::steady_clock::now();
  r = Render(Source{repo, "app"}, o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("max_renderer_memory_bytes"), std::string::npos) << r.status().message();
  // ... or, given more memory, the timeout.
  o.limits.max_renderer_memory_bytes = 0;
  o.timeout = std::chrono::seconds(2);
  r = Render(Source{repo, "app"}, o);
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
}

// What a renderer sees in the sandbox: no host files, no network, a clean environment.
TEST(RenderExternal, SandboxHidesTheHostAndTheNetwork) {
  ASSERT_TRUE(SandboxWorks("bwrap").ok()) << "bubblewrap does not work on this machine";
  testenv::ScopedTempDir tmp;
  fs::path repo = fs::path(tmp.path()) / "repo";
  Write(repo / "app/kustomization.yaml", "resources: []\n");
  fs::path script = fs::path(tmp.path()) / "probe.sh";
  Write(script,
        "#!/bin/sh\n"
        "echo 'apiVersion: v1'; echo 'kind: ConfigMap'; echo 'metadata: {name: probe}'; echo 'data:'\n"
        "if grep -q '^daemon:' /etc/passwd || [ -e /etc/shadow ]; then echo '  etc: visible'; else echo '  etc: hidden'; fi\n"
        "if [ -e /root ] || [ -e /home ]; then echo '  home: visible'; else echo '  home: hidden'; fi\n"
        "echo \"  interfaces: '$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)'\"\n"
        "echo \"  env: '$(env | cut -d= -f1 | sort | tr '\\n' ,)'\"\n"
        "echo \"  home_dir: '$HOME'\"\n");
  fs::permissions(script, fs::perms::owner_all);
  Options o = Tools();
  o.kustomize_binary = script.string();
  setenv("GANTRY_RENDER_TEST_SECRET", "x", 1);
  auto r = Render(Source{repo, "app"}, o);
  unsetenv("GANTRY_RENDER_TEST_SECRET");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Manifest* m = Find(*r, "ConfigMap", "probe");
  EXPECT_EQ(Str(m, {"data", "etc"}), "hidden");
  EXPECT_EQ(Str(m, {"data", "home"}), "hidden");
  EXPECT_EQ(Str(m, {"data", "interfaces"}), "lo,");
  EXPECT_EQ(Str(m, {"data", "env"}), "HOME,LANG,PATH,PWD,XDG_CACHE_HOME,XDG_CONFIG_HOME,XDG_DATA_HOME,");
  EXPECT_TRUE(Str(m, {"data", "home_dir"}).starts_with(fs::temp_directory_path().string())) << Str(m, {"data", "home_dir"});
}

// Issue 12, finding 13: when bubblewrap failed, renderers silently ran without a sandbox.
TEST(RenderExternal, ASandboxThatDoesNotWorkIsAnErrorUnlessTheOperatorOptsOut) {
  testenv::ScopedTempDir tmp;
  fs::path repo = fs::path(tmp.path()) / "repo";
  Write(repo / "app/kustomization.yaml", "resources: []\n");
  fs::path broken = fs::path(tmp.path()) / "bwrap";
  Write(broken, "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n");
  fs::permissions(broken, fs::perms::owner_all);
  Options o = Tools();
  o.bwrap_binary = broken.string();
  auto r = Render(Source{repo, "app"}, o);
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("Permission denied"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("--no-render-sandbox"), std::string::npos) << r.status().message();
  o.sandbox = Sandbox::kNone;
  r = Render(Source{repo, "app"}, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(RenderExternal, CacheHitsForAnUnchangedPath) {
  testenv::ScopedTempDir tmp;
  fs::path repo = fs::path(tmp.path()) / "repo";
  fs::copy(Testdata(), repo, fs::copy_options::recursive);
  Options o = Tools();
  // A private copy of kustomize, removed after the first render: a cache hit does not run it.
  fs::copy_file(fs::canonical(o.kustomize_binary), fs::path(tmp.path()) / "kustomize");
  o.kustomize_binary = (fs::path(tmp.path()) / "kustomize").string();
  RenderCache cache;
  Source src{repo, "kustomize/overlays/prod"};
  auto key = LocalContentKey(src, o);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto first = Render(src, o, &cache, *key);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // Unchanged: the same key, served from the cache without running kustomize (a binary that no
  // longer exists would fail otherwise).
  Options gone = o;
  fs::remove(o.kustomize_binary);
  auto again = LocalContentKey(src, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *key);
  auto second = Render(src, gone, &cache, *again);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(cache.stats().hits, 1u);
  ASSERT_EQ(second->size(), first->size());
  for (size_t i = 0; i < first->size(); ++i) EXPECT_TRUE((*first)[i].object == (*second)[i].object);
  // A change in the base (outside the path) changes the key and the output.
  Write(repo / "kustomize/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: web, image: nginx:1.25}]\n");
  auto changed = LocalContentKey(src, o);
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(*changed, *key);
  fs::copy_file(fs::canonical(Tools().kustomize_binary), o.kustomize_binary);
  auto third = Render(src, o, &cache, *changed);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(Str(Find(*third, "Deployment", "prod-web"), {"spec", "template", "spec", "containers", 1, "image"}),
            "<missing>");
}

}  // namespace
}  // namespace gantry::render
