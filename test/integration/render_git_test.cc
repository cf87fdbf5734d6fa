// Rendering straight from Git (render::RenderGit): plain directories read from the object database,
// Kustomize from a materialized commit, the cache, and symlinks in the repository.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/process.h"
#include "git/git.h"
#include "render/git_sources.h"
#include "render/render.h"
#include "test/env/testenv.h"

namespace gantry::render {
namespace {
namespace fs = std::filesystem;

class RenderGitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bare_ = tmp_.path() + "/config.git";
    work_ = tmp_.path() + "/work";
    Git({"init", "-q", "--bare", "-b", "main", bare_});
    Git({"init", "-q", "-b", "main", work_});
    auto tools = gantry::RunChecked({testenv::ScriptDir() + "/build-tools.sh", "kustomize"}, {.inherit_env = true});
    GANTRY_CHECK(tools.ok());
    tools_ = tools->out.substr(0, tools->out.find('\n'));
  }

  void Git(std::vector<std::string> args, const std::string& cwd = "") {
    std::vector<std::string> argv = {"git", "-c", "user.name=Test", "-c", "user.email=t@example.com"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = gantry::RunChecked(argv, {.env = {{"HOME", tmp_.path()}, {"GIT_CONFIG_NOSYSTEM", "1"},
                                               {"PATH", "/usr/bin:/bin"}},
                                       .cwd = cwd});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((fs::path(work_) / rel).parent_path());
    std::ofstream(fs::path(work_) / rel) << text;
  }

  void Commit(const std::string& message) {
    Git({"add", "-A"}, work_);
    Git({"commit", "-q", "-m", message}, work_);
    Git({"push", "-q", bare_, "main"}, work_);
  }

  std::shared_ptr<git::Repository> Open() {
    auto repo = mirrors_.Open("file://" + bare_, {.allow_file = true});
    GANTRY_CHECK(repo.ok());
    GANTRY_CHECK((*repo)->Fetch().ok());
    return *repo;
  }

  static std::string Names(const std::vector<Manifest>& ms) {
    std::string out;
    for (const auto& m : ms) out += std::string(m.object.Find({"metadata", "name"})->AsString()) + " ";
    return out;
  }

  testenv::ScopedTempDir tmp_;
  std::string bare_, work_, tools_;
  git::Mirrors mirrors_{tmp_.path() + "/mirrors"};
};

constexpr char kCm[] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\n";

TEST_F(RenderGitTest, PlainFromTheObjectDatabaseWithCacheHits) {
  Write("apps/web/b.yaml", fmt::format(kCm, "b") + "---\n" + fmt::format(kCm, "c"));
  Write("apps/web/a.yml", fmt::format(kCm, "a"));
  Write("apps/web/.hidden.yaml", fmt::format(kCm, "hidden"));
  Write("apps/web/notes.txt", "not a manifest");
  Write("apps/other/x.yaml", fmt::format(kCm, "other"));
  Commit("first");
  auto repo = Open();
  RenderCache cache;
  auto r = RenderGit(*repo, "main", "apps/web", {}, &cache);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(r->manifests), "a b c ");
  EXPECT_EQ(r->manifests[1].source, "apps/web/b.yaml:1:1");
  EXPECT_FALSE(r->cache_hit);
  auto again = RenderGit(*repo, "main", "apps/web/", {}, &cache);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->cache_hit);

  // A new commit is a new tree: rendered again, with the change.
  Write("apps/web/a.yml", fmt::format(kCm, "a2"));
  Commit("second");
  ASSERT_TRUE(repo->Fetch().ok());
  auto changed = RenderGit(*repo, "main", "apps/web", {}, &cache);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(changed->cache_hit);
  EXPECT_EQ(Names(changed->manifests), "a2 b c ");
  EXPECT_NE(changed->commit, r->commit);
  // The old commit still renders from the mirror.
  auto old = RenderGit(*repo, r->commit, "apps/web", {}, &cache);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(Names(old->manifests), "a b c ");
}

// GitSources: what the agent and the deployer render from. One fetch serves every caller that asked
// before it began; a caller that asks for one after a push gets the new commit.
TEST_F(RenderGitTest, GitSourcesShareFetchesAndRenderObjects) {
  Write("apps/web/a.yaml", fmt::format(kCm, "a"));
  Commit("first");
  FakeClock clock;
  clock.Advance(std::chrono::hours(1));
  GitSources sources({.mirrors_dir = tmp_.path() + "/sources", .credentials = {}, .allow_file = true,
                      .render_cache_bytes = 1u << 20, .clock = &clock});
  std::string url = "file://" + bare_;
  auto first = sources.Render(url, "main", "apps/web", {}, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->objects.size(), 1u);
  EXPECT_EQ(value::StringAt(&first->objects[0], {"metadata", "name"}), "a");
  EXPECT_FALSE(first->content_key.empty());

  Write("apps/web/a.yaml", fmt::format(kCm, "a2"));
  Commit("second");
  // The epoch: fetched once already, so no fetch; nor for a request older than the last fetch.
  auto stale = sources.Render(url, "main", "apps/web", {}, {});
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->commit, first->commit);
  auto older = sources.Render(url, "main", "apps/web", {}, clock.Now() - std::chrono::minutes(1));
  ASSERT_TRUE(older.ok());
  EXPECT_EQ(older->commit, first->commit);
  // A request made after the last fetch began fetches.
  clock.Advance(std::chrono::seconds(1));
  auto fresh = sources.Render(url, "main", "apps/web", {}, clock.Now());
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->commit, first->commit);
  EXPECT_EQ(value::StringAt(&fresh->objects[0], {"metadata", "name"}), "a2");
}

// Resolve is remembered until the next fetch: a push is seen after a fetch, never before.
TEST_F(RenderGitTest, GitSourcesResolveIsRememberedUntilTheNextFetch) {
  Write("apps/web/a.yaml", fmt::format(kCm, "a"));
  Commit("first");
  FakeClock clock;
  GitSources sources({.mirrors_dir = tmp_.path() + "/sources", .allow_file = true, .clock = &clock});
  auto repo = sources.Open("file://" + bare_);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  ASSERT_TRUE(sources.Fetch(**repo, clock.Now()).ok());
  auto first = sources.Resolve(**repo, "main");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  Write("apps/web/a.yaml", fmt::format(kCm, "a2"));
  Commit("second");
  EXPECT_EQ(*sources.Resolve(**repo, "main"), *first) << "no fetch, no change";
  clock.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(sources.Fetch(**repo, clock.Now()).ok());
  auto second = sources.Resolve(**repo, "main");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *first) << "the fetch brought the new commit";
  EXPECT_EQ(second->size(), 40u);
  EXPECT_EQ(sources.Resolve(**repo, "no-such-branch").status().code(), Code::kNotFound);
}

TEST_F(RenderGitTest, GitSourcesErrorsCarryTheFetchReason) {
  GitSources refuses_file({.mirrors_dir = tmp_.path() + "/sources"});
  auto refused = refuses_file.Render("file://" + bare_, "main", ".", {}, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().Is(Code::kInvalidArgument, kFetchFailed)) << refused.status().ToString();
  EXPECT_TRUE(refused.status().message().starts_with("fetch")) << refused.status().message();

  GitSources sources({.mirrors_dir = tmp_.path() + "/sources", .allow_file = true});
  auto missing = sources.Render("file://" + tmp_.path() + "/none.git", "main", ".", {}, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().reason(), kFetchFailed) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("fetch file://"), std::string::npos) << missing.status().message();
}

TEST_F(RenderGitTest, SymlinksFollowedInsideThePathRefusedOutside) {
  Write("apps/web/real.yaml", fmt::format(kCm, "real"));
  Write("secret.yaml", fmt::format(kCm, "outside"));
  fs::create_symlink("real.yaml", fs::path(work_) / "apps/web/alias.yaml");
  Commit("links inside");
  auto repo = Open();
  auto r = RenderGit(*repo, "main", "apps/web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(r->manifests), "real real ");

  fs::create_symlink("../../secret.yaml", fs::path(work_) / "apps/web/escape.yaml");
  fs::create_symlink("/etc/passwd", fs::path(work_) / "apps/web/passwd.yaml");
  Commit("links out");
  ASSERT_TRUE(repo->Fetch().ok());
  auto bad = RenderGit(*repo, "main", "apps/web");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kPermissionDenied);
  EXPECT_NE(bad.status().message().find("apps/web/escape.yaml"), std::string::npos) << bad.status().message();
  EXPECT_EQ(bad.status().message().find("outside"), std::string::npos) << "content of the target leaked";
}

TEST_F(RenderGitTest, KustomizeOverlayFromAMaterializedCommit) {
  Write("base/kustomization.yaml", "resources: [deploy.yaml]\n");
  Write("base/deploy.yaml", R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: ghcr.io/acme/web:1.0.0}]}
)");
  Write("envs/prod/kustomization.yaml", "resources: [../../base]\nnamespace: prod\nimages:\n- {name: ghcr.io/acme/web, newTag: 1.2.3}\n");
  Commit("kustomize");
  auto repo = Open();
  Options o;
  o.kustomize_binary = tools_ + "/kustomize";
  RenderCache cache;
  auto r = RenderGit(*repo, "HEAD", "envs/prod", o, &cache);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->manifests.size(), 1u);
  EXPECT_EQ(r->manifests[0].object.Find({"metadata", "namespace"})->AsString(), "prod");
  EXPECT_EQ(r->manifests[0].object.Find({"spec", "template", "spec", "containers", 0, "image"})->AsString(),
            "ghcr.io/acme/web:1.2.3");
  EXPECT_TRUE(RenderGit(*repo, "HEAD", "envs/prod", o, &cache)->cache_hit);
}

TEST_F(RenderGitTest, UnknownRevisionOrPathIsNotFound) {
  Write("apps/web/a.yaml", fmt::format(kCm, "a"));
  Commit("first");
  auto repo = Open();
  auto rev = RenderGit(*repo, "no-such-branch", "apps/web");
  EXPECT_EQ(rev.status().code(), Code::kNotFound) << rev.status().ToString();
  auto path = RenderGit(*repo, "main", "apps/nope");
  EXPECT_EQ(path.status().code(), Code::kNotFound) << path.status().ToString();
  EXPECT_NE(path.status().message().find("apps/nope"), std::string::npos);
}

}  // namespace
}  // namespace gantry::render
