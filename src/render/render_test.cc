// Render() without the real kustomize/helm: detection, the checks made before any renderer runs,
// the hostile corpus against the plain renderer and the materializer, kustomization edits, the
// cache and content keys, and process handling with fake renderer scripts. The real binaries are
// exercised by test/integration/render_kustomize_helm_test.cc.

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "render/internal/documents.h"
#include "render/internal/renderers.h"
#include "render/render.h"

namespace gantry::render {
namespace {
namespace fs = std::filesystem;

class RenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("gantry-render-test-" + std::to_string(getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_ / "repo");
    fs::create_directories(base_ / "outside");
    Write("outside/secret.yaml", Cm("outside-secret"));
  }
  void TearDown() override { fs::remove_all(base_); }
  // Writes under base_ (so "repo/..." is in the repository, "outside/..." is not).
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((base_ / rel).parent_path());
    std::ofstream(base_ / rel) << text;
  }
  void Link(const std::string& target, const std::string& rel) {
    fs::create_directories((base_ / rel).parent_path());
    ASSERT_EQ(symlink(target.c_str(), (base_ / rel).c_str()), 0) << rel;
  }
  // A fake renderer: a shell script outside the repository.
  std::string Script(const std::string& name, const std::string& body) {
    Write(name, "#!/bin/sh\n" + body);
    fs::permissions(base_ / name, fs::perms::owner_all);
    return (base_ / name).string();
  }
  Source Src(const std::string& path) { return Source{base_ / "repo", path}; }
  static std::string Cm(const std::string& name) {
    return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n";
  }
  fs::path base_;
};

std::vector<std::string> ManifestNames(const std::vector<Manifest>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.emplace_back(m.object.Find({"metadata", "name"})->AsString());
  return out;
}

TEST_F(RenderTest, DetectsByWhatThePathHolds) {
  Write("repo/k/kustomization.yaml", "resources: []\n");
  Write("repo/k2/Kustomization", "resources: []\n");
  Write("repo/h/Chart.yaml", "name: h\n");
  Write("repo/both/Chart.yaml", "name: h\n");
  Write("repo/both/kustomization.yml", "resources: []\n");
  Write("repo/p/a.yaml", Cm("a"));
  const fs::path r = base_ / "repo";
  EXPECT_EQ(Detect(r / "k"), Renderer::kKustomize);
  EXPECT_EQ(Detect(r / "k2"), Renderer::kKustomize);
  EXPECT_EQ(Detect(r / "h"), Renderer::kHelm);
  EXPECT_EQ(Detect(r / "both"), Renderer::kKustomize);
  EXPECT_EQ(Detect(r / "p"), Renderer::kPlain);
}

TEST_F(RenderTest, PlainThroughSourceNamesRepositoryPaths) {
  Write("repo/apps/web/b.yaml", Cm("b"));
  Write("repo/apps/web/a/x.yaml", Cm("x"));
  auto r = Render(Src("apps/./web/"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ManifestNames(*r), (std::vector<std::string>{"x", "b"}));
  EXPECT_EQ((*r)[0].source, "apps/web/a/x.yaml:1:1");
  // A single file as the path.
  r = Render(Src("apps/web/b.yaml"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].source, "apps/web/b.yaml:1:1");
  // Forcing a renderer that needs a directory on a file.
  Options o;
  o.renderer = Renderer::kHelm;
  EXPECT_EQ(Render(Src("apps/web/b.yaml"), o).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Render(Src("apps/none")).status().code(), Code::kNotFound);
}

TEST_F(RenderTest, ApplicationPathMustStayInTheRepository) {
  for (std::string path : {"../outside", "/etc", "apps/../../outside"}) {
    auto r = Render(Src(path));
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << path << ": " << r.status().ToString();
  }
  Link("../../outside", "repo/apps/escape");
  auto r = Render(Src("apps/escape"));
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("escape"), std::string::npos) << r.status().message();
}

// The hostile corpus against the plain renderer: refused or bounded, nothing outside read.
TEST_F(RenderTest, HostileCorpusPlain) {
  Write("repo/app/ok.yaml", Cm("ok"));
  Link("/etc/passwd", "repo/app/passwd.yaml");
  auto r = Render(Src("app"));
  ASSERT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("passwd.yaml"), std::string::npos);
  EXPECT_NE(r.status().message().find("/etc/passwd"), std::string::npos);
  fs::remove(base_ / "repo/app/passwd.yaml");

  Link("../../outside", "repo/app/dir");
  r = Render(Src("app"));
  ASSERT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("dir"), std::string::npos);
  fs::remove(base_ / "repo/app/dir");

  // Billion laughs: 9 levels of 10 aliases each would be 10^9 nodes.
  std::string bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    bomb += fmt::format("  a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}]\n", i, i - 1);
  }
  Write("repo/app/bomb.yaml", bomb);
  r = Render(Src("app"));
  ASSERT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("app/bomb.yaml:"), std::string::npos) << r.status().message();
}

TEST_F(RenderTest, LimitsEndTheRenderNamingTheLimit) {
  for (int i = 0; i < 5; ++i) Write(fmt::format("repo/app/{}.yaml", i), Cm(fmt::format("c{}", i)));
  Options o;
  o.limits.max_files = 3;
  auto r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("max_files"), std::string::npos) << r.status().message();
  // The same limit bounds what is copied for an external renderer.
  Write("repo/app/kustomization.yaml", "resources: [0.yaml]\n");
  o.kustomize_binary = "/bin/true";
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("max_files"), std::string::npos) << r.status().message();
  o.limits.max_files = 100;
  o.limits.max_total_bytes = 100;
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("max_total_bytes"), std::string::npos) << r.status().message();
}

// Kustomization references are checked before kustomize runs (the binary here does not exist).
TEST_F(RenderTest, KustomizeReferencesAreCheckedBeforeRunning) {
  Options o;
  o.kustomize_binary = (base_ / "no-such-kustomize").string();
  Write("repo/base/kustomization.yaml", "resources: [cm.yaml]\n");
  Write("repo/base/cm.yaml", Cm("base"));
  Write("outside/k/kustomization.yaml", "resources: [../secret.yaml]\n");
  Link("../../outside/k", "repo/app/linked");
  Link("/etc", "repo/app/etc");
  struct Case {
    std::string resource;
    Code code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"https://github.com/org/repo//deploy?ref=v1", Code::kPermissionDenied, "copy the base into this repository"},
           {"github.com/org/repo/deploy?ref=v1", Code::kPermissionDenied, "remote"},
           {"git@github.com:org/repo.git", Code::kPermissionDenied, "remote"},
           {"example.com/org/repo/deploy", Code::kPermissionDenied, "remote"},
           {"file:///etc", Code::kPermissionDenied, "file URL"},
           {"/etc", Code::kPermissionDenied, "absolute"},
           {"../../outside/k", Code::kPermissionDenied, "leaves the repository"},
           {"linked", Code::kPermissionDenied, "outside"},
           {"etc", Code::kPermissionDenied, "/etc"},
           {"missing", Code::kNotFound, "no such file"},
       }) {
    Write("repo/app/kustomization.yaml", "resources:\n- ../base\n- " + c.resource + "\n");
    auto r = Render(Src("app"), o);
    EXPECT_EQ(r.status().code(), c.code) << c.resource << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("app/kustomization.yaml"), std::string::npos) << r.status().message();
    // issue 16: the message says what to do, not which internal option refused it.
    EXPECT_EQ(r.status().message().find("::"), std::string::npos) << r.status().message();
  }
  // The same through a base, and through components and the components option.
  Write("repo/app/kustomization.yaml", "resources: [../base]\ncomponents: [../comp]\n");
  Write("repo/comp/kustomization.yaml", "kind: Component\nresources: [https://example.com/x.yaml]\n");
  auto r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("comp/kustomization.yaml"), std::string::npos) << r.status().message();
  Write("repo/app/kustomization.yaml", "resources: [../base]\n");
  o.kustomize.components = {"../../outside/k"};
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.status().message().find("::"), std::string::npos) << r.status().message();
  // Everything checked out: now the missing binary is the error, naming the flag that names it.
  o.kustomize.components.clear();
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  EXPECT_NE(r.status().message().find("--kustomize-binary"), std::string::npos) << r.status().message();
  // A kustomization that does not parse.
  Write("repo/app/kustomization.yaml", "resources: [../base\n");
  EXPECT_EQ(Render(Src("app"), o).status().code(), Code::kInvalidArgument);
}

TEST_F(RenderTest, KustomizeTreesAreTheReachableKustomizations) {
  Write("repo/base/kustomization.yaml", "resources: [cm.yaml, ../shared/nested]\n");
  Write("repo/base/cm.yaml", Cm("base"));
  Write("repo/shared/nested/kustomization.yaml", "resources: []\n");
  Write("repo/overlays/prod/kustomization.yaml", "resources: [../../base, ../../base]\n");
  Write("repo/unrelated/big.yaml", Cm("unrelated"));
  auto trees = internal::KustomizeTrees(base_ / "repo", "overlays/prod", {}, {});
  ASSERT_TRUE(trees.ok()) << trees.status().ToString();
  EXPECT_EQ(trees->trees, (std::vector<std::string>{"base", "overlays/prod", "shared/nested"}));
}

// Symlinks inside a tree that is copied for a renderer: followed inside, refused out of the repo.
TEST_F(RenderTest, MaterializingRefusesLinksOutOfTheRepository) {
  Options o;
  o.kustomize_binary = "/bin/true";  // never reached when the copy is refused
  Write("repo/app/kustomization.yaml", "resources: []\n");
  Link("/etc/passwd", "repo/app/passwd.env");
  auto r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("passwd.env"), std::string::npos) << r.status().message();
  EXPECT_EQ(LocalContentKey(Src("app"), o).status().code(), Code::kPermissionDenied);
  fs::remove(base_ / "repo/app/passwd.env");
  Link("../../outside", "repo/app/data");
  EXPECT_EQ(Render(Src("app"), o).status().code(), Code::kPermissionDenied);
  fs::remove(base_ / "repo/app/data");
  Link("..", "repo/app/loop");
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("loop"), std::string::npos) << r.status().message();
  fs::remove(base_ / "repo/app/loop");
  Write("repo/shared/data.env", "A=1\n");
  Link("../shared", "repo/app/shared");
  r = Render(Src("app"), o);  // a link inside the repository is copied as what it points to
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(RenderTest, HelmValueFilesMustResolveInsideTheRepository) {
  Options o;
  o.helm_binary = (base_ / "no-such-helm").string();
  Write("repo/charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n");
  Write("repo/values/prod.yaml", "replicas: 3\n");
  Link("/etc/passwd", "repo/charts/web/passwd.yaml");
  for (std::string file : {"../../../outside/secret.yaml", "/etc/passwd", "passwd.yaml",
                                   "https://example.com/values.yaml"}) {
    o.helm.value_files = {"../../values/prod.yaml", file};
    auto r = Render(Src("charts/web"), o);
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << file << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().message();
  }
  o.helm.value_files = {"../../values/missing.yaml"};
  EXPECT_EQ(Render(Src("charts/web"), o).status().code(), Code::kNotFound);
  o.helm.value_files = {"../../values/prod.yaml"};
  auto r = Render(Src("charts/web"), o);
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();  // the helm binary
  EXPECT_NE(r.status().message().find("--helm-binary"), std::string::npos) << r.status().message();
}

// A Helm render depends on the cluster it is for: another version, other served APIs or another
// namespace is another cache entry. Plain and Kustomize renders do not depend on them.
TEST(CacheKey, CoversTheDestinationOfHelmRenders) {
  Options o;
  o.helm.kube_version = "v1.36.3";
  o.helm.api_versions = {"v1", "v1/ConfigMap"};
  o.helm.namespace_ = "apps";
  const std::string key = CacheKey("tree", "chart", Renderer::kHelm, o);
  Options other = o;
  other.helm.kube_version = "v1.35.0";
  EXPECT_NE(CacheKey("tree", "chart", Renderer::kHelm, other), key);
  other = o;
  other.helm.api_versions.push_back("example.com/v1");
  EXPECT_NE(CacheKey("tree", "chart", Renderer::kHelm, other), key);
  other = o;
  other.helm.namespace_ = "web";
  EXPECT_NE(CacheKey("tree", "chart", Renderer::kHelm, other), key);
  EXPECT_EQ(CacheKey("tree", "app", Renderer::kKustomize, other), CacheKey("tree", "app", Renderer::kKustomize, o));
}

TEST(HelmTemplateArgs, EveryValueIsOneFlagArgument) {
  HelmOptions h;
  h.value_files = {"x"};
  h.values = "a: 1";
  h.set = {"image.tag=1.2", "--post-renderer=/bin/sh"};
  h.api_versions = {"monitoring.coreos.com/v1"};
  h.kube_version = "1.31.0";
  auto args = internal::HelmTemplateArgs("web", "/c/web", "/v", {"0-prod.yaml"}, h);
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(*args, (std::vector<std::string>{"template", "web", "/c/web", "--namespace=default", "--include-crds",
                                             "--kube-version=1.31.0", "--api-versions=monitoring.coreos.com/v1",
                                             "--values=/v/0-prod.yaml", "--values=/v/inline.yaml",
                                             "--set=image.tag=1.2", "--set=--post-renderer=/bin/sh"}));
  for (const std::string& bad : std::vector<std::string>{"-f", "Web", std::string(54, 'a'), "a_b"}) {
    h.release_name = bad;
    EXPECT_EQ(internal::HelmTemplateArgs("web", "/c", "/v", {}, h).status().code(), Code::kInvalidArgument) << bad;
  }
  h.release_name = "";
  h.namespace_ = "--kubeconfig";
  EXPECT_EQ(internal::HelmTemplateArgs("web", "/c", "/v", {}, h).status().code(), Code::kInvalidArgument);
  h.namespace_ = "apps";
  h.set = {"novalue"};
  EXPECT_EQ(internal::HelmTemplateArgs("web", "/c", "/v", {}, h).status().code(), Code::kInvalidArgument);
}

value::Value ParseOne(const std::string& yaml) {
  auto docs = value::ParseYaml(yaml);
  return docs.ok() && !docs->empty() ? (*docs)[0] : value::Value::Map();
}

TEST(EditKustomization, ImagesAsKustomizeEditSetImage) {
  value::Value k = ParseOne(
      "resources: [a.yaml]\nimages:\n- name: nginx\n  newTag: '1.0'\n- name: redis\n  digest: sha256:aa\n");
  KustomizeOptions o;
  o.images = {"nginx=registry.example:5000/nginx:1.27", "redis:7", "busybox@sha256:bb", "app=mirror/app",
              "localhost:5000/x:2"};
  o.components = {"../components/a", "../components/a"};
  ASSERT_TRUE(internal::EditKustomization(k, o).ok());
  value::Value want = ParseOne(R"(
resources: [a.yaml]
images:
- {name: nginx, newTag: '1.27', newName: 'registry.example:5000/nginx'}
- {name: redis, newTag: '7'}
- {name: busybox, digest: 'sha256:bb'}
- {name: app, newName: mirror/app}
- {name: 'localhost:5000/x', newTag: '2'}
components: [../components/a]
)");
  EXPECT_EQ(value::ToYaml(k), value::ToYaml(want));
  EXPECT_TRUE(k == want);
  for (std::string bad : {"nginx", "", "nginx:", "a b:1", "=x:1", "x@"}) {
    KustomizeOptions b;
    b.images = {bad};
    value::Value k2 = value::Value::Map();
    auto s = internal::EditKustomization(k2, b);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
  }
}

TEST(RenderCache, LruBoundedByBytes) {
  RenderCache cache(100);
  auto one = [](const std::string& name) {
    auto docs = value::ParseYaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n");
    return std::vector<Manifest>{Manifest{(*docs)[0], name}};
  };
  cache.Put("a", one("a"), 40);
  cache.Put("b", one("b"), 40);
  EXPECT_TRUE(cache.Get("a").has_value());  // a is now the most recent
  cache.Put("c", one("c"), 40);             // evicts b
  EXPECT_FALSE(cache.Get("b").has_value());
  ASSERT_TRUE(cache.Get("c").has_value());
  EXPECT_EQ(cache.Get("a")->at(0).source, "a");
  cache.Put("huge", one("huge"), 101);
  EXPECT_FALSE(cache.Get("huge").has_value());
  auto s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.bytes, 80u);
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.misses, 2u);
}

// Found by the soak (bench/soak/run.sh): the agent renders each new commit of an application once
// and rarely again, so its cache filled with renders of superseded commits up to its byte bound
// and the agent's memory grew for as long as commits came. Entries idle for max_idle go.
TEST(RenderCache, EntriesIdleLongerThanMaxIdleAreDropped) {
  FakeClock clock;
  RenderCache cache(1 << 20, std::chrono::seconds(60), &clock);
  auto docs = value::ParseYaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
  std::vector<Manifest> one{Manifest{(*docs)[0], "a"}};
  cache.Put("old", one, 40);
  cache.Put("used", one, 40);
  clock.Advance(std::chrono::seconds(50));
  EXPECT_TRUE(cache.Get("used").has_value());  // read: idle again from now
  clock.Advance(std::chrono::seconds(20));     // "old" idle 70 s, "used" 20 s
  cache.Put("new", one, 40);
  EXPECT_FALSE(cache.Get("old").has_value());
  EXPECT_TRUE(cache.Get("used").has_value());
  EXPECT_TRUE(cache.Get("new").has_value());
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_EQ(cache.stats().bytes, 80u);
  clock.Advance(std::chrono::seconds(61));
  EXPECT_FALSE(cache.Get("new").has_value());
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

// The agent's cache was charged the text of its entries, about a tenth of what their parsed objects
// occupy, so a "64 MiB" cache grew past a gigabyte.
TEST(RenderCache, EntriesAreChargedWhatTheirParsedObjectsOccupy) {
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text += "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-" + std::to_string(i) + "}\ndata: {index: \"" +
            std::to_string(i) + "\"}\n---\n";
  }
  auto manifests = internal::ParseRendered(text, "objects.yaml", {}, false);
  ASSERT_TRUE(manifests.ok()) << manifests.status().ToString();
  size_t bytes = internal::ManifestBytes(*manifests);
  EXPECT_GT(bytes, 8 * text.size());
  EXPECT_LT(bytes, 30 * text.size());
}

// Helm and Kustomize output goes through the same expansion as plain files: a chart that renders a
// RoleBindingList failed with "object has no metadata".
TEST(ParseRendered, ListsInRendererOutputAreExpandedWithTheirSource) {
  std::string text = "---\n# Source: web/templates/rbac.yaml\napiVersion: rbac.authorization.k8s.io/v1\n"
                     "kind: RoleBindingList\nitems:\n"
                     "- apiVersion: rbac.authorization.k8s.io/v1\n  kind: RoleBinding\n  metadata: {name: a}\n"
                     "  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n";
  auto manifests = internal::ParseRendered(text, "helm template web", {}, true);
  ASSERT_TRUE(manifests.ok()) << manifests.status().ToString();
  ASSERT_EQ(manifests->size(), 1u);
  EXPECT_EQ(value::StringAt(&(*manifests)[0].object, {"kind"}), "RoleBinding");
  EXPECT_EQ((*manifests)[0].source, "helm template web: web/templates/rbac.yaml");
}

TEST_F(RenderTest, CacheHitsUnderTheSameKeyAndOptions) {
  Write("repo/app/a.yaml", Cm("a"));
  RenderCache cache;
  auto key = LocalContentKey(Src("app"));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto r1 = Render(Src("app"), {}, &cache, *key);
  ASSERT_TRUE(r1.ok());
  Write("repo/app/a.yaml", Cm("changed"));  // the caller's key says nothing changed: a hit
  auto r2 = Render(Src("app"), {}, &cache, *key);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(ManifestNames(*r2), (std::vector<std::string>{"a"}));
  EXPECT_EQ(cache.stats().hits, 1u);
  auto key2 = LocalContentKey(Src("app"));
  ASSERT_TRUE(key2.ok());
  EXPECT_NE(*key, *key2);
  auto r3 = Render(Src("app"), {}, &cache, *key2);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(ManifestNames(*r3), (std::vector<std::string>{"changed"}));
  EXPECT_EQ(cache.stats().misses, 2u);
  // Other options or another path under the same content key: a miss.
  Options o;
  o.renderer = Renderer::kPlain;
  o.helm.release_name = "irrelevant-for-plain";
  EXPECT_TRUE(Render(Src("app"), o, &cache, *key2).ok());
  EXPECT_EQ(cache.stats().hits, 2u);
  Write("repo/app/kustomization.yaml", "resources: [a.yaml]\n");
  o.renderer = Renderer::kAuto;
  o.kustomize_binary = (base_ / "no-such-kustomize").string();
  EXPECT_FALSE(Render(Src("app"), o, &cache, *key2).ok());  // kustomize now: a miss, then the binary
  // No key: no caching.
  size_t before = cache.stats().hits + cache.stats().misses;
  EXPECT_TRUE(Render(Src("app/a.yaml"), {}, &cache, "").ok());
  EXPECT_EQ(cache.stats().hits + cache.stats().misses, before);
}

TEST_F(RenderTest, LocalContentKeyCoversKustomizeBasesAndHelmValueFiles) {
  Write("repo/base/kustomization.yaml", "resources: [cm.yaml]\n");
  Write("repo/base/cm.yaml", Cm("base"));
  Write("repo/app/kustomization.yaml", "resources: [../base]\n");
  Write("repo/unrelated/x.yaml", Cm("x"));
  auto k1 = LocalContentKey(Src("app"));
  ASSERT_TRUE(k1.ok()) << k1.status().ToString();
  Write("repo/unrelated/x.yaml", Cm("y"));
  EXPECT_EQ(*LocalContentKey(Src("app")), *k1);
  Write("repo/base/cm.yaml", Cm("changed"));
  EXPECT_NE(*LocalContentKey(Src("app")), *k1);
  fs::permissions(base_ / "repo/base/cm.yaml", fs::perms::owner_exec, fs::perm_options::add);
  auto k2 = LocalContentKey(Src("app"));
  EXPECT_NE(*k2, *LocalContentKey(Src("base")));

  Write("repo/chart/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n");
  Write("repo/values/a.yaml", "x: 1\n");
  Options o;
  o.helm.value_files = {"../values/a.yaml"};
  auto h1 = LocalContentKey(Src("chart"), o);
  ASSERT_TRUE(h1.ok()) << h1.status().ToString();
  Write("repo/values/a.yaml", "x: 2\n");
  EXPECT_NE(*LocalContentKey(Src("chart"), o), *h1);
}

// Process handling, with fake renderers (shell scripts) in place of kustomize.
TEST_F(RenderTest, RendererFailureTimeoutAndOutputLimits) {
  Write("repo/app/kustomization.yaml", "resources: []\n");
  Options o;
  o.kustomize_binary = Script("fail.sh", "echo 'line 1' >&2\necho \"Error: accumulating resources in $PWD\" >&2\nexit 3\n");
  auto r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kUnknown);
  EXPECT_EQ(r.status().message(),
            "kustomize build app failed: exit code 3: line 1\nError: accumulating resources in app");

  o.kustomize_binary = Script("slow.sh", "sleep 30\n");
  o.timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  r = Render(Src("app"), o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded);
  EXPECT_EQ(r.status().message(), "kustomize build app: did not finish within 300 ms, the time a render may take");

  o.timeout = std::chrono::seconds(30);
  o.kustomize_binary = Script("big.sh", "yes 'a: b' | head -c 100000\n");
  o.limits.max_total_bytes = 10000;
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("max_total_bytes"), std::string::npos);

  o.limits = {};
  o.kustomize_binary = Script("bad.sh", "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {}\\n'\n");
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "kustomize build app:1:1: object has no metadata.name");
}

// Sets environment variables for one test and restores them afterwards.
class ScopedEnv {
 public:
  ScopedEnv& Set(const char* name, const std::string& value) {
    Save(name);
    ::setenv(name, value.c_str(), 1);
    return *this;
  }
  ScopedEnv& Unset(const char* name) {
    Save(name);
    ::unsetenv(name);
    return *this;
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        ::unsetenv(it->first.c_str());
      }
    }
  }

 private:
  void Save(const char* name) {
    const char* v = std::getenv(name);
    saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// issue 16: `gantry render` and `gantry rollback` failed with "program kustomize not found in
// PATH" after the quickstart, which builds kustomize and helm into the tool cache.
TEST_F(RenderTest, RendererBinariesAreFoundInFlagThenVariableThenPathThenToolCache) {
  const std::string system_path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  ScopedEnv env;
  fs::create_directories(base_ / "empty-path");
  env.Set("PATH", (base_ / "empty-path").string())
      .Set("HOME", (base_ / "home").string())
      .Unset("XDG_CACHE_HOME")
      .Unset("GANTRY_CACHE")
      .Unset("GANTRY_KUSTOMIZE")
      .Unset("GANTRY_HELM");
  auto none = FindRenderer(Renderer::kKustomize);
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  // The error names every place looked at and what to set.
  for (const std::string& place : std::vector<std::string>{"--kustomize-binary", "GANTRY_KUSTOMIZE", (base_ / "empty-path").string(),
                            (base_ / "home/.cache/gantry/tools/bin").string()}) {
    EXPECT_NE(none.status().message().find(place), std::string::npos) << place << " in " << none.status().message();
  }
  EXPECT_EQ(none.status().message().find("Options::"), std::string::npos) << none.status().message();
  EXPECT_NE(FindRenderer(Renderer::kHelm).status().message().find("GANTRY_HELM"), std::string::npos);

  auto real = [](const std::string& p) { return fs::canonical(p).string(); };
  std::string home_cache = Script("home/.cache/gantry/tools/bin/kustomize", "exit 0\n");
  EXPECT_EQ(FindRenderer(Renderer::kKustomize).value_or(""), real(home_cache));
  std::string xdg_cache = Script("xdg/gantry/tools/bin/kustomize", "exit 0\n");
  env.Set("XDG_CACHE_HOME", (base_ / "xdg").string());
  EXPECT_EQ(FindRenderer(Renderer::kKustomize).value_or(""), real(xdg_cache));
  std::string gantry_cache = Script("gc/tools/bin/kustomize", "exit 0\n");
  env.Set("GANTRY_CACHE", (base_ / "gc").string());
  EXPECT_EQ(FindRenderer(Renderer::kKustomize).value_or(""), real(gantry_cache));
  std::string in_path = Script("bin/kustomize", "exit 0\n");
  env.Set("PATH", (base_ / "empty-path").string() + ":" + (base_ / "bin").string());
  EXPECT_EQ(FindRenderer(Renderer::kKustomize).value_or(""), real(in_path));
  std::string from_env = Script("env/my-kustomize", "exit 0\n");
  env.Set("GANTRY_KUSTOMIZE", from_env);
  EXPECT_EQ(FindRenderer(Renderer::kKustomize).value_or(""), real(from_env));
  std::string flag = Script("flag/kustomize", "exit 0\n");
  EXPECT_EQ(FindRenderer(Renderer::kKustomize, flag).value_or(""), real(flag));
  // A flag or variable naming a file that is not there is an error naming it, not a fallback.
  auto missing = FindRenderer(Renderer::kKustomize, (base_ / "nope").string());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("--kustomize-binary"), std::string::npos) << missing.status().message();
  env.Set("GANTRY_KUSTOMIZE", (base_ / "nope").string());
  missing = FindRenderer(Renderer::kKustomize);
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("GANTRY_KUSTOMIZE"), std::string::npos) << missing.status().message();

  // Render() uses the same search: options naming no binary find GANTRY_KUSTOMIZE's.
  env.Set("PATH", system_path);  // for bwrap
  env.Set("GANTRY_KUSTOMIZE", Script("env/render.sh", "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: from-env}\\n'\n"));
  Write("repo/app/kustomization.yaml", "resources: []\n");
  auto r = Render(Src("app"), Options{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ManifestNames(*r), (std::vector<std::string>{"from-env"}));
}

// issue 16: Jsonnet is picked only for directories that hold *.jsonnet files and nothing the plain
// renderer reads, so every directory that rendered as plain before still does.
TEST_F(RenderTest, DetectsJsonnetOnlyWhereNothingPlainIsRead) {
  Write("repo/j/main.jsonnet", "{}");
  Write("repo/j/lib.libsonnet", "{}");
  Write("repo/j/jsonnetfile.json", "{}");
  Write("repo/j/.github/ci.yaml", "x: 1\n");
  Write("repo/mixed/main.jsonnet", "{}");
  Write("repo/mixed/a.yaml", Cm("a"));
  Write("repo/deep/main.jsonnet", "{}");
  Write("repo/deep/sub/a.yaml", Cm("a"));
  Write("repo/nested/sub/main.jsonnet", "{}");
  Write("repo/libonly/lib.libsonnet", "{}");
  Write("repo/jk/main.jsonnet", "{}");
  Write("repo/jk/kustomization.yaml", "resources: []\n");
  const fs::path r = base_ / "repo";
  EXPECT_EQ(Detect(r / "j"), Renderer::kJsonnet);
  EXPECT_EQ(Detect(r / "mixed"), Renderer::kPlain);
  EXPECT_EQ(Detect(r / "deep"), Renderer::kPlain);
  EXPECT_EQ(Detect(r / "nested"), Renderer::kPlain);
  EXPECT_EQ(Detect(r / "libonly"), Renderer::kPlain);
  EXPECT_EQ(Detect(r / "jk"), Renderer::kKustomize);
  EXPECT_TRUE(internal::JsonnetDetected({"a.jsonnet", "jsonnetfile.lock.json", "vendor/x.libsonnet"}));
  EXPECT_FALSE(internal::JsonnetDetected({"a.jsonnet", "vendor/x.json"}));
  EXPECT_FALSE(internal::JsonnetDetected({"sub/a.jsonnet"}));
  EXPECT_EQ(ParseRenderer("jsonnet"), Renderer::kJsonnet);
  EXPECT_EQ(RendererName(Renderer::kJsonnet), "jsonnet");
}

TEST(JsonnetArgs, EveryValueIsOneArgumentAfterItsFlag) {
  const fs::path copy = fs::temp_directory_path() / ("gantry-jsonnet-args-" + std::to_string(getpid()));
  fs::create_directories(copy / "lib/k8s");
  JsonnetOptions o;
  o.tlas = {{"env", "-prod --tla-code x=1", false}, {"replicas", "2", true}};
  o.ext_vars = {{"region", "eu=1", false}, {"cfg", "{a: 1}", true}};
  o.libs = {"lib/k8s"};
  o.max_stack = 100;
  auto args = internal::JsonnetArgs(copy / "app/main.jsonnet", copy, o);
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(*args, (std::vector<std::string>{"--max-stack", "100", "--max-trace", "20", "--jpath",
                                             (copy / "lib/k8s").string(), "--tla-str", "env=-prod --tla-code x=1",
                                             "--tla-code", "replicas=2", "--ext-str", "region=eu=1", "--ext-code",
                                             "cfg={a: 1}", "--", (copy / "app/main.jsonnet").string()}));
  // A value-less name would make jsonnet read its environment: names are identifiers, always NAME=.
  o = {};
  o.tlas = {{"bad-name", "x", false}};
  EXPECT_EQ(internal::JsonnetArgs(copy / "m.jsonnet", copy, o).status().code(), Code::kInvalidArgument);
  o = {};
  o.ext_vars = {{"", "x", false}};
  EXPECT_EQ(internal::JsonnetArgs(copy / "m.jsonnet", copy, o).status().code(), Code::kInvalidArgument);
  o = {};
  o.tlas = {{"ok", "", false}};
  EXPECT_EQ(internal::JsonnetArgs(copy / "m.jsonnet", copy, o).value_or(std::vector<std::string>{}).at(5), "ok=");
  for (const char* lib : {"/etc", "../outside", "lib/../../x"}) {
    o = {};
    o.libs = {lib};
    auto r = internal::JsonnetArgs(copy / "m.jsonnet", copy, o);
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << lib << ": " << r.status().ToString();
  }
  o.libs = {"missing"};
  EXPECT_EQ(internal::JsonnetArgs(copy / "m.jsonnet", copy, o).status().code(), Code::kNotFound);
  fs::remove_all(copy);
}

TEST(AddJsonnetOutput, ObjectsListsAndArraysOfObjectsOnly) {
  std::vector<Manifest> out;
  ASSERT_TRUE(internal::AddJsonnetOutput(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}})",
                                         "jsonnet app/a.jsonnet", {}, out).ok());
  ASSERT_TRUE(internal::AddJsonnetOutput(R"([{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}},
      {"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}]}])",
                                         "jsonnet app/b.jsonnet", {}, out).ok());
  EXPECT_EQ(ManifestNames(out), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(out[0].source, "jsonnet app/a.jsonnet");
  EXPECT_EQ(out[1].source, "jsonnet app/b.jsonnet [0]");
  auto bad = internal::AddJsonnetOutput(R"("text")", "jsonnet app/s.jsonnet", {}, out);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("jsonnet app/s.jsonnet: output must be an object"), std::string::npos) << bad.message();
  bad = internal::AddJsonnetOutput(R"([{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}, 3])",
                                   "jsonnet app/n.jsonnet", {}, out);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("jsonnet app/n.jsonnet [1]"), std::string::npos) << bad.message();
  bad = internal::AddJsonnetOutput(R"({"a": {"apiVersion":"v1"}})", "jsonnet app/o.jsonnet", {}, out);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
}

TEST_F(RenderTest, JsonnetRunsEachFileWithItsArgumentsInTheCopy) {
  Write("repo/app/b.jsonnet", "x");
  Write("repo/app/a.jsonnet", "x");
  Write("repo/app/lib.libsonnet", "x");
  Write("repo/app/sub/c.jsonnet", "x");
  Write("repo/lib/x.libsonnet", "x");
  Options o;
  // The fake prints one ConfigMap named after the file it got, and records its arguments.
  o.jsonnet_binary = Script("jsonnet.sh", "for a; do last=$a; done\nn=$(basename \"$last\" .jsonnet)\n"
                                          "printf '{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                                          "{\"name\":\"%s\"}}' \"$n\"\n");
  o.jsonnet.libs = {"lib"};
  auto r = Render(Src("app"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ManifestNames(*r), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*r)[0].source, "jsonnet app/a.jsonnet");
  o.jsonnet.recurse = true;
  r = Render(Src("app"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ManifestNames(*r), (std::vector<std::string>{"a", "b", "c"}));
  Write("repo/empty/lib.libsonnet", "x");
  o.renderer = Renderer::kJsonnet;
  r = Render(Src("empty"), o);
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("no *.jsonnet file"), std::string::npos) << r.status().message();
  o.jsonnet_binary = Script("jsonnet-fail.sh", "echo 'RUNTIME ERROR: boom' >&2\nexit 1\n");
  r = Render(Src("app"), o);
  EXPECT_EQ(r.status().code(), Code::kUnknown);
  EXPECT_EQ(r.status().message(), "jsonnet app/a.jsonnet failed: exit code 1: RUNTIME ERROR: boom");
}

TEST(CacheKey, CoversJsonnetOptionsAndSopsKeys) {
  Options a;
  a.jsonnet.tlas = {{"env", "prod", false}};
  Options b = a;
  b.jsonnet.tlas[0].code = true;
  EXPECT_NE(CacheKey("c", "p", Renderer::kJsonnet, a), CacheKey("c", "p", Renderer::kJsonnet, b));
  b = a;
  b.jsonnet.ext_vars = {{"x", "1", false}};
  EXPECT_NE(CacheKey("c", "p", Renderer::kJsonnet, a), CacheKey("c", "p", Renderer::kJsonnet, b));
  b = a;
  b.sops.age_keys = "AGE-SECRET-KEY-1XYZ";
  EXPECT_NE(CacheKey("c", "p", Renderer::kPlain, a), CacheKey("c", "p", Renderer::kPlain, b));
}

// SOPS without running sops: what is encrypted, and the errors when no key can decrypt it.
TEST_F(RenderTest, SopsEncryptedObjectsWithoutAKeyAreRefusedNamingTheRecipients) {
  const std::string secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n"
                             "stringData:\n  password: ENC[AES256_GCM,data:Zm9v,iv:x,tag:y,type:str]\n"
                             "sops:\n  age:\n    - recipient: age1abc\n      enc: x\n  mac: ENC[x]\n  version: 3.13.3\n";
  Write("repo/s/secret.yaml", secret);
  Write("repo/s/plain.yaml", Cm("not-encrypted"));
  auto r = Render(Src("s"));
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "s/secret.yaml:1:1 (Secret prod/db) is SOPS-encrypted for age recipient age1abc, "
                                  "and Gantry holds no age key (give the key file with --sops-age-key-file)");
  Write("repo/pgp/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: p}\n"
                                "sops:\n  pgp:\n    - fp: ABC\n  mac: ENC[x]\n");
  Options o;
  o.sops.age_keys = "AGE-SECRET-KEY-1XYZ";
  r = Render(Src("pgp"), o);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("no age recipient (only pgp)"), std::string::npos) << r.status().message();
  // Only Secrets are decrypted: another encrypted kind would show its values in diffs.
  Write("repo/cm/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: \"ENC[x]\"}\n"
                           "sops:\n  age:\n    - recipient: age1abc\n  mac: ENC[x]\n");
  auto cm = Render(Src("cm"), o);
  EXPECT_EQ(cm.status().code(), Code::kInvalidArgument);
  EXPECT_NE(cm.status().message().find("cm/cm.yaml:1:1 (ConfigMap c) is SOPS-encrypted, but Gantry decrypts only "
                                       "Secrets"), std::string::npos) << cm.status().message();
  // Without a `sops` map with a MAC nothing is decrypted (a field named sops in a spec is not).
  EXPECT_FALSE(internal::IsSopsEncrypted(value::ParseYaml("kind: X\nspec: {sops: {mac: 1}}\n", "x")->at(0)));
  EXPECT_TRUE(internal::IsSopsEncrypted(value::ParseYaml(secret, "x")->at(0)));
  // No key is ever needed for a path without encrypted objects.
  EXPECT_TRUE(Render(Src("s/plain.yaml")).ok());
  // The message never carries the (cipher)text of the values.
  EXPECT_EQ(r.status().message().find("ENC[AES256"), std::string::npos);
}

}  // namespace
}  // namespace gantry::render
