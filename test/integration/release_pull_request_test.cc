// Releases in pull-request mode against a real Gitea (test/env/gitea.sh) and a real registry
// (test/env/registry.sh): the release pushes gantry/web/dev over Git to Gitea and opens its pull
// request through Gitea's API; a second release force-pushes a new head and updates the same pull
// request; the server's merger (server::PullMerges) waits for the required check, then merges
// once Gitea shows it success; the ledger names the pull request. A read-only token is refused with
// the scope it lacks.

#include <filesystem>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "forge/forge.h"
#include "git/git.h"
#include "oci/registry.h"
#include "release/release.h"
#include "server/pull_merges.h"
#include "store/store.h"
#include "test/env/gitea.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string Manifest(const std::string& image, const std::string& tag) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    image: " + image +
         ":" + tag + "\n";
}

TEST(ReleasePullRequest, OpensUpdatesAndMergesOnePullRequestAndTheLedgerNamesIt) {
  testenv::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  testenv::Gitea g(testenv::Shared("gitea.sh"));
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string image = host + "/prmode/web";
  ASSERT_TRUE(g.CreateOrg("prmode").ok());
  ASSERT_TRUE(g.CreateRepo("prmode", "config").ok());
  auto first = g.Push("prmode", "config", (root / "work").string(),
                      {{"envs/dev/web.yaml", Manifest(image, "old")}, {"README.md", "config\n"}}, "first");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::string repo_url = g.RepoUrl("prmode", "config");

  auto st = store::Open("sqlite://" + (root / "gantry.db").string());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  store::Store& store = **st;
  oci::RegistryOptions ro;
  ro.docker_config = "none";
  ro.insecure_http_hosts = {host};
  auto registry = oci::NewHttpRegistry(ro);
  ASSERT_TRUE(registry.ok());
  const forge::Options gitea{.kind = forge::Kind::kGitea, .api_url = g.url() + "/api/v1", .token = g.admin_token()};
  auto merger = server::PullMerges::Start(
      {.store = &store, .forges = {{.prefix = g.url() + "/", .options = gitea}}, .poll = 100ms, .initial_backoff = 100ms},
      /*start=*/false);
  ASSERT_TRUE(merger.ok()) << merger.status().ToString();

  git::Mirrors mirrors(root / "mirrors");
  release::ReleaseServices s;
  s.store = &store;
  s.registry = registry->get();
  s.image_dir = root / "images";
  s.config_repos = {repo_url};
  s.config_credentials = {{.host = g.url().substr(g.url().find("://") + 3), .username = g.admin_user(), .password = g.admin_token()}};
  s.open_config_repo = [&mirrors](const std::string& url, const git::OpenOptions& o) { return mirrors.Open(url, o); };
  s.open_pull_request = [m = merger->get()](const std::string& url, const forge::PullRequestSpec& spec) {
    return m->Open(url, spec);
  };
  ci::Pipeline pipeline;
  pipeline.image = ci::ImageSpec{.repository = image, .layers = {{.src = "dist", .dest = "/app"}}};
  pipeline.release = ci::ReleaseSpec{.repo = repo_url, .path = "envs/dev", .app = "web", .pull_request = true,
                                     .environment = "dev", .auto_merge = true, .required_checks = {"ci/test"}};
  fs::create_directories(root / "ws" / "dist");
  ASSERT_TRUE(WriteFileAtomic(root / "ws" / "dist" / "index.html", "hello\n").ok());
  auto run_release = [&](char c) -> Result<release::ReleaseResult> {
    const std::string commit(40, c);
    GANTRY_ASSIGN_OR_RETURN(int64_t run, store.CreateRun({.repo = "https://git.example/web.git", .pipeline = "p",
                                                          .commit = commit, .ref = "refs/heads/main"}));
    return release::RunRelease(s, pipeline, {.run_id = run, .repo = "https://git.example/web.git", .commit = commit,
                                             .ref = "refs/heads/main", .workspace = root / "ws"});
  };
  auto pull = [&](int64_t n) {
    auto v = g.Api("GET", fmt::format("/repos/prmode/config/pulls/{}", n));
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.value_or(value::Value::Map());
  };

  // The first release opens the pull request of gantry/web/dev into main.
  auto r1 = run_release('a');
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ASSERT_GT(r1->pull_request, 0);
  value::Value pr = pull(r1->pull_request);
  EXPECT_EQ(value::StringAt(&pr, {"state"}), "open");
  EXPECT_EQ(value::StringAt(&pr, {"head", "ref"}), "gantry/web/dev");
  EXPECT_EQ(value::StringAt(&pr, {"base", "ref"}), "main");
  EXPECT_EQ(value::StringAt(&pr, {"head", "sha"}), r1->config_commit);
  EXPECT_EQ(value::StringAt(&pr, {"title"}), "release web to dev: " + image + ":aaaaaaaaaaaa");
  EXPECT_EQ(value::StringAt(&pr, {"html_url"}), r1->pull_request_url);

  // The second updates the same pull request with a new head, rebuilt on main.
  auto r2 = run_release('b');
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->pull_request, r1->pull_request);
  EXPECT_NE(r2->config_commit, r1->config_commit);
  // Gitea moves the pull request's head when it has processed the push.
  for (auto end = std::chrono::steady_clock::now() + 30s;
       value::StringAt(&pr, {"head", "sha"}) != r2->config_commit && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(100ms);
    pr = pull(r2->pull_request);
  }
  EXPECT_EQ(value::StringAt(&pr, {"head", "sha"}), r2->config_commit);
  EXPECT_EQ(value::StringAt(&pr, {"title"}), "release web to dev: " + image + ":bbbbbbbbbbbb");
  auto open = g.Api("GET", "/repos/prmode/config/pulls?state=open");
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(open->items().size(), 1u);

  // The ledger names the pull request on both releases.
  auto ledger = store.ListReleases("web", 10);
  ASSERT_TRUE(ledger.ok());
  ASSERT_EQ(ledger->size(), 2u);
  for (const store::Release& r : *ledger) {
    EXPECT_EQ(r.pull_request, r1->pull_request);
    EXPECT_EQ(r.pull_request_url, r1->pull_request_url);
  }

  // No check yet: the merger waits, and says for what.
  (*merger)->MergeDue();
  auto merges = store.ListPullMerges(std::nullopt, 10);
  ASSERT_TRUE(merges.ok());
  ASSERT_EQ(merges->size(), 1u);
  EXPECT_EQ((*merges)[0].state, store::NotificationState::kPending);
  EXPECT_EQ((*merges)[0].sha, r2->config_commit);
  EXPECT_THAT((*merges)[0].last_error, HasSubstr("waiting for required check ci/test"));
  pr = pull(r2->pull_request);
  EXPECT_EQ(value::StringAt(&pr, {"state"}), "open");

  // The check turns success on the head: merged.
  ASSERT_TRUE(g.Api("POST", "/repos/prmode/config/statuses/" + r2->config_commit,
                    R"({"state":"success","context":"ci/test","description":"tests passed"})")
                  .ok());
  const auto end = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(150ms);
    (*merger)->MergeDue();
    merges = store.ListPullMerges(std::nullopt, 10);
    if (merges.ok() && (*merges)[0].state != store::NotificationState::kPending) break;
  }
  ASSERT_EQ((*merges)[0].state, store::NotificationState::kDelivered) << (*merges)[0].last_error;
  pr = pull(r2->pull_request);
  EXPECT_TRUE(value::BoolAt(&pr, {"merged"}));
  // main now holds the second release's image.
  auto config = mirrors.Open(repo_url, {.credentials = s.config_credentials[0]});
  ASSERT_TRUE(config.ok());
  ASSERT_TRUE((*config)->Fetch().ok());
  auto main = (*config)->Resolve("refs/heads/main");
  ASSERT_TRUE(main.ok());
  auto tree = (*config)->ReadTree(*main, "envs/dev/web.yaml");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ASSERT_EQ(tree->files.size(), 1u);
  EXPECT_THAT(tree->files[0].content, HasSubstr(image + ":bbbbbbbbbbbb"));

  // A token that may only read: one clear error naming the scope.
  ASSERT_TRUE(g.CreateUser("pr-reader", "reader-password-1").ok());
  auto reader = g.CreateToken("pr-reader", "reader-password-1", "read", {"read:repository"});
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  forge::Options ro_options = gitea;
  ro_options.token = *reader;
  auto ro_forge = forge::New(ro_options);
  ASSERT_TRUE(ro_forge.ok());
  auto refused = (*ro_forge)->OpenOrUpdatePullRequest("prmode/config", {.head = "gantry/web/dev", .base = "main", .title = "t"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(), HasSubstr("lacks the scope write:repository"));
}

}  // namespace
}  // namespace gantry
