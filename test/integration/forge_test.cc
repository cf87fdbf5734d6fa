// Commit statuses against a real Gitea (test/env/gitea.sh), the whole loop: a push to Gitea,
// Gitea's own webhook to a real `gantry server`, the run, and the statuses it sets on the commit
// (pending, then success; a failing step: failure with the link to the run). The forge client alone
// against Gitea is forge_gitea_test.cc.

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "test/env/gitea.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

testenv::Gitea& Forge() {
  static testenv::Gitea* gitea = new testenv::Gitea(testenv::Shared("gitea.sh"));
  return *gitea;
}

// A fresh organisation with one repository holding `files`; returns the commit.
std::string Repo(const std::string& org, const std::string& dir, const std::map<std::string, std::string>& files) {
  auto& g = Forge();
  EXPECT_TRUE(g.CreateOrg(org).ok());
  EXPECT_TRUE(g.CreateRepo(org, "web").ok());
  auto sha = g.Push(org, "web", dir, files, "first");
  EXPECT_TRUE(sha.ok()) << sha.status().ToString();
  return sha.value_or("");
}

// The statuses of `sha` once `done` holds for them (polled, with a deadline).
template <typename F>
std::vector<testenv::GiteaStatus> WaitStatuses(const std::string& org, const std::string& sha, F done,
                                               std::chrono::seconds limit = 90s) {
  std::vector<testenv::GiteaStatus> got;
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    auto s = Forge().Statuses(org, "web", sha);
    if (s.ok()) {
      got = *s;
      if (done(got)) return got;
    }
    std::this_thread::sleep_for(200ms);
  }
  return got;
}

bool Has(const std::vector<testenv::GiteaStatus>& all, const std::string& state) {
  return std::any_of(all.begin(), all.end(), [&](const auto& s) { return s.state == state && s.context == "gantry/ci"; });
}

constexpr char kHookSecret[] = "gitea-hook-secret-0123456789";

TEST(GiteaForge, APushShowsPendingThenSuccessAndAFailedStepShowsFailureWithTheLink) {
  testenv::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  auto& g = Forge();
  const std::string sha = Repo("shop", (root / "work").string(), {{".gantry/pipeline.yaml", R"(shell: sh
steps:
  build:
    run: echo built
)"}});
  // Gantry's own user, a collaborator with write access, and its token with the one scope needed.
  ASSERT_TRUE(g.CreateUser("gantry-bot", "bot-password-12345").ok());
  ASSERT_TRUE(g.Api("PUT", "/repos/shop/web/collaborators/gantry-bot", R"({"permission":"write"})").ok());
  auto token = g.CreateToken("gantry-bot", "bot-password-12345", "statuses", {"write:repository"});
  ASSERT_TRUE(token.ok()) << token.status().ToString();

  // The server, building the Gitea repository and setting statuses there.
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const char* binary = std::getenv("GANTRY_BINARY");
  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"HOOK", kHookSecret}, {"API_TOKEN", "api-token-0123456789abcdef"}, {"FORGE_TOKEN", *token}};
  const std::string log = (root / "server.log").string();
  auto server = Process::Start({binary != nullptr ? binary : "gantry", "server", "--listen", "127.0.0.1:0", "--store",
                                "sqlite:" + (root / "gantry.db").string(), "--webhook-secret-env", "HOOK",
                                "--webhook-provider", "gitea", "--api-token-env", "API_TOKEN", "--repo",
                                g.RepoUrl("shop", "web"), "--data-dir", (root / "data").string(), "--public-url",
                                "https://gantry.example", "--forge", g.url() + "/ type=gitea token-env=FORGE_TOKEN"},
                               po, log);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string port;
  for (int i = 0; i < 200 && port.empty(); ++i) {
    std::this_thread::sleep_for(50ms);
    std::smatch m;
    std::string text = ReadFile(log).value_or("");
    if (std::regex_search(text, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
  }
  ASSERT_FALSE(port.empty()) << ReadFile(log).value_or("");
  // Gitea's own webhook, set up through its API, drives the server.
  ASSERT_TRUE(g.AddWebhook("shop", "web", "http://127.0.0.1:" + port + "/webhook", kHookSecret, {"push"}).ok());

  // A push: pending (queued or running), then success.
  const std::string good = *g.Push("shop", "web", (root / "work").string(), {{"README.md", "v2\n"}}, "second");
  auto all = WaitStatuses("shop", good, [](const auto& s) { return Has(s, "success"); });
  ASSERT_TRUE(Has(all, "success")) << ReadFile(log).value_or("");
  EXPECT_TRUE(Has(all, "pending"));
  EXPECT_EQ(all.front().state, "success");
  EXPECT_EQ(all.front().description, "all steps succeeded");
  EXPECT_THAT(all.front().target_url, ::testing::MatchesRegex("https://gantry.example/runs/[0-9]+"));

  // A failing step: failure, naming the step, with the link to the run.
  const std::string bad = *g.Push("shop", "web", (root / "work").string(), {{".gantry/pipeline.yaml", R"(shell: sh
steps:
  build:
    run: echo built
  test:
    needs: [build]
    run: exit 3
)"}}, "break the tests");
  all = WaitStatuses("shop", bad, [](const auto& s) { return Has(s, "failure"); });
  ASSERT_TRUE(Has(all, "failure")) << ReadFile(log).value_or("");
  EXPECT_EQ(all.front().state, "failure");
  EXPECT_EQ(all.front().description, "step test failed (exit 3)");
  EXPECT_THAT(all.front().target_url, ::testing::MatchesRegex("https://gantry.example/runs/[0-9]+"));
  EXPECT_NE(sha, bad);
}

}  // namespace
}  // namespace gantry
