// gantry server end to end: the real binary, a file:// repository made with git, webhooks signed
// per provider, the REST API, `gantry runs` / `gantry logs`, and restart recovery; server replicas
// and remote workers; and the fault scenarios of servers and workers (CiServerFaults, at the end:
// kill -9 at seeded points, a full disk; docs/reliability.md).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "base/clock.h"
#include "base/hash.h"
#include "base/path.h"
#include "base/process.h"
#include "kube/kube.h"
#include "store/store.h"
#include "test/env/testenv.h"
#include "test/env/toxiproxy.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const char* kSecret = "hook-secret-123";

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

// A repository with a pipeline; returns the commit.
std::string MakeRepo(const fs::path& dir, const std::string& pipeline) {
  fs::create_directories(dir / ".gantry");
  GANTRY_CHECK(WriteFileAtomic(dir / ".gantry" / "pipeline.yaml", pipeline).ok());
  ProcessOptions po;
  po.cwd = dir.string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  for (auto argv : std::vector<std::vector<std::string>>{
           {"git", "init", "-q", "-b", "main"}, {"git", "add", "-A"}, {"git", "commit", "-q", "-m", "init"}}) {
    GANTRY_CHECK(RunChecked(argv, po).ok());
  }
  auto head = RunChecked({"git", "rev-parse", "HEAD"}, po);
  GANTRY_CHECK(head.ok());
  std::string sha = head->out;
  while (!sha.empty() && sha.back() == '\n') sha.pop_back();
  return sha;
}

constexpr char kApiToken[] = "api-token-0123456789abcdef";

// The server, its data in ROOT/data and ROOT/gantry.db unless `extra` names --data-dir or --store,
// its log in ROOT; with token_flag, its API token is kApiToken (else it makes DATA_DIR/api-token).
// The gantry commands the tests run find the token in GANTRY_TOKEN.
struct Srv {
  Srv(const fs::path& root, const std::string& repo_url, const std::vector<std::string>& extra = {}, bool token_flag = true) {
    // A server run as root runs steps as uid 65533, which must reach the data directory.
    fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    std::vector<std::string> argv = {Binary(), "server", "--listen", "127.0.0.1:0", "--webhook-secret-env", "HOOK",
                                     "--repo", repo_url, "--allow-file-repos"};
    if (std::find(extra.begin(), extra.end(), "--data-dir") == extra.end()) {
      argv.insert(argv.end(), {"--data-dir", (root / "data").string()});
    }
    if (std::find(extra.begin(), extra.end(), "--store") == extra.end()) {
      argv.insert(argv.end(), {"--store", "sqlite:" + (root / "gantry.db").string()});
    }
    if (token_flag) argv.insert(argv.end(), {"--api-token-env", "API_TOKEN"});
    ::setenv("GANTRY_TOKEN", kApiToken, 1);
    argv.insert(argv.end(), extra.begin(), extra.end());
    ProcessOptions po;
    po.inherit_env = true;
    po.env = {{"HOOK", kSecret}, {"API_TOKEN", kApiToken}};
    log = (root / ("server-" + std::to_string(++count) + ".log")).string();
    auto p = Process::Start(argv, po, log);
    GANTRY_CHECK(p.ok());
    proc.emplace(std::move(p).value());
    for (int i = 0; i < 100 && port.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto text = ReadFile(log);
      std::smatch m;
      std::string t = text.ok() ? *text : "";
      if (std::regex_search(t, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
    }
    GANTRY_CHECK(!port.empty());
  }
  std::string Url() const { return "http://127.0.0.1:" + port; }
  static inline int count = 0;
  std::optional<Process> proc;
  std::string log, port;
};

// Sends body with headers; returns "BODY CODE".
std::string Send(const std::string& method, const std::string& url, const std::string& body,
                 const std::vector<std::string>& headers) {
  std::vector<std::string> argv = {"curl", "-s", "-o", "-", "-w", " %{http_code}", "-X", method, "--data-binary", "@-"};
  for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
  argv.push_back(url);
  ProcessOptions po;
  po.stdin_data = body;
  po.inherit_env = true;
  auto r = Run(argv, po);
  GANTRY_CHECK(r.ok());
  return r->out;
}

std::string Post(const std::string& url, const std::string& body, const std::vector<std::string>& headers) {
  return Send("POST", url, body, headers);
}

std::string Get(const std::string& url) {
  ProcessOptions po;
  po.inherit_env = true;
  auto r = Run({"curl", "-s", "-H", std::string("Authorization: Bearer ") + kApiToken, url}, po);
  GANTRY_CHECK(r.ok());
  return r->out;
}

std::string PushPayload(const std::string& clone_url, const std::string& sha) {
  return R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":")" + sha +
         R"(","repository":{"full_name":"org/app","clone_url":")" + clone_url + R"("},"pusher":{"name":"t"},"commits":[]})";
}

std::string WaitState(const std::string& base, int id, const std::vector<std::string>& states) {
  for (int i = 0; i < 300; ++i) {
    auto v = value::ParseJson(Get(base + "/api/runs/" + std::to_string(id)));
    if (v.ok() && v->Get("state") != nullptr) {
      std::string s(v->Get("state")->AsString());
      if (std::find(states.begin(), states.end(), s) != states.end()) return s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return "timeout";
}

TEST(CiServer, WebhookSignaturesDedupeRunAndLogs) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", R"(
shell: sh
steps:
  hello:
    secrets: [TOKEN]
    run: echo "hello $TOKEN"
)");
  std::string url = "file://" + (root / "repo").string();
  GANTRY_CHECK(WriteFileAtomic(root / "secrets.env", "TOKEN=canary-server-secret\n", 0600).ok());
  Srv srv(root, url, {"--secrets-file", (root / "secrets.env").string()});
  std::string body = PushPayload(url, sha);
  std::string sig = "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body);
  std::string hook = srv.Url() + "/webhook";
  // GitHub vectors: missing header, one byte flipped, wrong algorithm, oversized, valid, redelivery.
  EXPECT_THAT(Post(hook, body, {"X-GitHub-Event: push", "X-GitHub-Delivery: d1"}), HasSubstr(" 401"));
  std::string flipped = body;
  flipped[10] ^= 1;
  EXPECT_THAT(Post(hook, flipped, {"X-GitHub-Event: push", "X-GitHub-Delivery: d1", sig}), HasSubstr(" 401"));
  EXPECT_THAT(Post(hook, body, {"X-GitHub-Event: push", "X-GitHub-Delivery: d1", "X-Hub-Signature: sha1=00"}), HasSubstr(" 403"));
  EXPECT_THAT(Post(hook, std::string(2 << 20, 'x'), {"X-GitHub-Event: push", sig}), HasSubstr(" 413"));
  EXPECT_THAT(Post(hook, body, {"X-GitHub-Event: push", "X-GitHub-Delivery: d1", sig}), HasSubstr(" 201"));
  EXPECT_THAT(Post(hook, body, {"X-GitHub-Event: push", "X-GitHub-Delivery: d1", sig}), HasSubstr("duplicate"));
  // Gitea and GitLab headers.
  EXPECT_THAT(Post(hook, body, {"X-Gitea-Event: push", "X-Gitea-Delivery: g1", "X-Gitea-Signature: 00"}), HasSubstr(" 401"));
  EXPECT_THAT(Post(hook, body, {"X-Gitlab-Event: Push Hook", "X-Gitlab-Token: wrong"}), HasSubstr(" 401"));

  EXPECT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed"}), "succeeded");
  std::string logs = Get(srv.Url() + "/api/runs/1/logs");
  EXPECT_THAT(logs, HasSubstr("hello ***"));
  EXPECT_EQ(logs.find("canary-server-secret"), std::string::npos);
  ProcessOptions with_token;
  with_token.inherit_env = true;
  auto runs = gantry::Run({Binary(), "runs", "--server", srv.Url()}, with_token);
  ASSERT_TRUE(runs.ok());
  EXPECT_THAT(runs->out, HasSubstr("succeeded"));
  auto cli_logs = gantry::Run({Binary(), "logs", "1", "-f", "--server", srv.Url()}, with_token);
  ASSERT_TRUE(cli_logs.ok());
  EXPECT_THAT(cli_logs->out, HasSubstr("hello ***"));
  EXPECT_EQ(srv.proc->Stop(), 0);
  auto db = ReadFile(root / "gantry.db");
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->find("canary-server-secret"), std::string::npos);
}

TEST(CiServer, RunnerKilledMidRunIsInterruptedAfterRestart) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "steps:\n  long: {run: [sleep, '600']}\n");
  std::string url = "file://" + (root / "repo").string();
  std::string body = PushPayload(url, sha);
  {
    Srv srv(root, url, {"--max-attempts", "1"});
    EXPECT_THAT(Post(srv.Url() + "/webhook", body,
                     {"X-GitHub-Event: push", "X-GitHub-Delivery: k1", "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)}),
                HasSubstr(" 201"));
    ASSERT_EQ(WaitState(srv.Url(), 1, {"running"}), "running");
    srv.proc->Signal(SIGKILL);
    srv.proc->Stop(std::chrono::milliseconds(100));
  }
  Srv again(root, url, {"--max-attempts", "1"});
  EXPECT_EQ(WaitState(again.Url(), 1, {"interrupted"}), "interrupted");
}


// A pipeline that says whether the secret TOKEN reached its step (without printing it).
const char* kTokenProbe = R"(
shell: sh
on: [push, pull_request]
steps:
  probe:
    secrets: [TOKEN]
    run: 'if [ -n "${TOKEN:-}" ]; then echo "TOKEN present"; else echo "TOKEN absent"; fi'
)";

std::string Logs(const Srv& srv, int id) { return Get(srv.Url() + "/api/runs/" + std::to_string(id) + "/logs"); }

// GitLab's webhooks carry the secret itself, not a signature: they are accepted only for a
// repository pinned to GitLab, and a pinned repository accepts no other provider.
TEST(CiServer, GitLabAndGiteaPushesWithValidSignaturesRunThePipeline) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", kTokenProbe);
  std::string url = "file://" + (root / "repo").string();
  GANTRY_CHECK(WriteFileAtomic(root / "secrets.env", "TOKEN=canary-gitlab-gitea\n", 0600).ok());
  // GitLab: the token itself in X-Gitlab-Token; the repository as project.git_http_url.
  std::string gitlab = R"({"object_kind":"push","ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":")" +
                       sha + R"(","user_username":"t","project":{"path_with_namespace":"org/app","git_http_url":")" + url +
                       R"("},"total_commits_count":0,"commits":[]})";
  std::vector<std::string> gitlab_headers = {"X-Gitlab-Event: Push Hook", "X-Gitlab-Event-UUID: gl-1",
                                             std::string("X-Gitlab-Token: ") + kSecret};
  // Gitea: hex HMAC-SHA256 of the raw body in X-Gitea-Signature; GitHub's payload shape.
  std::string gitea = PushPayload(url, sha);
  std::vector<std::string> gitea_headers = {"X-Gitea-Event: push", "X-Gitea-Delivery: gt-1",
                                            "X-Gitea-Signature: " + webhook::HmacSha256Hex(kSecret, gitea)};
  {
    Srv srv(root, url, {"--secrets-file", (root / "secrets.env").string()});
    EXPECT_THAT(Post(srv.Url() + "/webhook", gitlab, gitlab_headers), HasSubstr(" 403"));
    EXPECT_THAT(Post(srv.Url() + "/webhook", gitea, gitea_headers), HasSubstr(" 201"));
    ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 1);
    EXPECT_THAT(Logs(srv, 1), HasSubstr("TOKEN present"));
    auto run = value::ParseJson(Get(srv.Url() + "/api/runs/1"));
    ASSERT_TRUE(run.ok());
    EXPECT_EQ(run->Get("commit")->AsString(), sha);
    EXPECT_EQ(srv.proc->Stop(), 0);
  }
  GANTRY_CHECK(WriteFileAtomic(root / "repo" / "next.txt", "2").ok());
  ProcessOptions po;
  po.cwd = (root / "repo").string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  GANTRY_CHECK(RunChecked({"git", "add", "-A"}, po).ok());
  GANTRY_CHECK(RunChecked({"git", "commit", "-q", "-m", "next"}, po).ok());
  std::string next = RunChecked({"git", "rev-parse", "HEAD"}, po)->out.substr(0, 40);
  Srv pinned(root, url, {"--secrets-file", (root / "secrets.env").string(), "--repo-policy", url + " provider=gitlab"});
  std::string gitlab_next = gitlab;
  gitlab_next.replace(gitlab_next.find(sha), sha.size(), next);
  gitea_headers[1] = "X-Gitea-Delivery: gt-2";
  EXPECT_THAT(Post(pinned.Url() + "/webhook", gitea, gitea_headers), HasSubstr(" 403"));
  EXPECT_THAT(Post(pinned.Url() + "/webhook", gitlab_next, gitlab_headers), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(pinned.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(pinned, 2);
  EXPECT_THAT(Logs(pinned, 2), HasSubstr("TOKEN present"));
}

TEST(CiServer, PullRequestFromAForkRunsWithoutSecrets) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string base_sha = MakeRepo(root / "repo", kTokenProbe);
  std::string url = "file://" + (root / "repo").string();
  // The fork: its own repository with its own commit (a pipeline that would print the secret).
  std::string fork_sha = MakeRepo(root / "fork", std::string(kTokenProbe) + "  leak:\n    secrets: [TOKEN]\n    run: 'echo \"leak:$TOKEN:\"'\n");
  std::string fork_url = "file://" + (root / "fork").string();
  GANTRY_CHECK(WriteFileAtomic(root / "secrets.env", "TOKEN=canary-fork-secret\n", 0600).ok());
  Srv srv(root, url, {"--secrets-file", (root / "secrets.env").string()});
  auto pr = [&](const std::string& head_name, const std::string& head_url, int head_id, const std::string& sha) {
    return R"({"action":"opened","number":5,"pull_request":{"number":5,"head":{"sha":")" + sha + R"(","ref":"main","repo":{"id":)" +
           std::to_string(head_id) + R"(,"full_name":")" + head_name + R"(","clone_url":")" + head_url +
           R"("}},"base":{"sha":")" + base_sha + R"(","ref":"main","repo":{"id":1,"full_name":"org/app","clone_url":")" + url +
           R"("}}},"repository":{"id":1,"full_name":"org/app","clone_url":")" + url + R"("}})";
  };
  auto post = [&](const std::string& body, const std::string& delivery) {
    return Post(srv.Url() + "/webhook", body,
                {"X-GitHub-Event: pull_request", "X-GitHub-Delivery: " + delivery,
                 "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)});
  };
  // From a fork: once approved, the fork's commit runs, its steps get no secret.
  EXPECT_THAT(post(pr("mallory/app", fork_url, 2, fork_sha), "pr-fork"), HasSubstr(" 201"));
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/approve", "", {std::string("Authorization: Bearer ") + kApiToken}), HasSubstr(" 200"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 1);
  std::string logs = Logs(srv, 1);
  EXPECT_THAT(logs, HasSubstr("TOKEN absent"));
  EXPECT_THAT(logs, HasSubstr("leak::"));  // the fork's own step ran, with an empty TOKEN
  EXPECT_THAT(logs, HasSubstr("secret TOKEN withheld"));
  EXPECT_EQ(logs.find("canary-fork-secret"), std::string::npos);
  auto run = value::ParseJson(Get(srv.Url() + "/api/runs/1"));
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->Get("commit")->AsString(), fork_sha);
  // The same pull request from a branch of the repository itself does get the secret: the check
  // above can fail.
  EXPECT_THAT(post(pr("org/app", url, 1, base_sha), "pr-same"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 2);
  EXPECT_THAT(Logs(srv, 2), HasSubstr("TOKEN present"));
}

bool ProcessGone(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';  // a zombie has ended
}

TEST(CiServer, CancelThroughTheApiKillsTheStepsProcessTreeAndEndsTheRunCancelled) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  fs::path pids = root / "pids";
  // The step starts a child that starts a grandchild; both write their pid, then everything waits.
  std::string sha = MakeRepo(root / "repo", R"(
shell: sh
env: {PIDS: )" + pids.string() + R"(}
steps:
  long:
    run: |
      sh -c 'sleep 600 & echo $! >> "$PIDS"; wait' &
      echo $! >> "$PIDS"
      wait
)");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, {"--no-sandbox"});  // the step writes host pids to a host file the test reads
  std::string body = PushPayload(url, sha);
  ASSERT_THAT(Post(srv.Url() + "/webhook", body,
                   {"X-GitHub-Event: push", "X-GitHub-Delivery: c1", "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)}),
              HasSubstr(" 201"));
  std::vector<pid_t> started;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       started.size() < 2 && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto text = ReadFile(pids);
    started.clear();
    std::istringstream in(text.ok() ? *text : "");
    for (pid_t p; in >> p;) started.push_back(p);
  }
  ASSERT_EQ(started.size(), 2u) << "the step did not start its processes";
  for (pid_t p : started) ASSERT_FALSE(ProcessGone(p)) << p;
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/cancel", "", {std::string("Authorization: Bearer ") + kApiToken}), HasSubstr(" 202"));
  EXPECT_EQ(WaitState(srv.Url(), 1, {"cancelled", "succeeded", "failed"}), "cancelled");
  for (pid_t p : started) {
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = ProcessGone(p);
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(gone) << "process " << p << " of the cancelled step still runs";
  }
  auto run = value::ParseJson(Get(srv.Url() + "/api/runs/1"));
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->Find({"steps", 0, "state"})->AsString(), "cancelled");
}


TEST(CiServer, ChangedPathsOfAPushSurviveARestart) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  fs::path go = root / "go";
  // gate holds the run until the test lets it go (after the restart); then only `code` matches.
  std::string sha = MakeRepo(root / "repo", R"(
shell: sh
env: {GO: )" + go.string() + R"(}
steps:
  gate:
    run: 'while [ ! -e "$GO" ]; do sleep 0.05; done'
  docs:
    needs: [gate]
    when: {paths: ["docs/**"]}
    run: echo docs
  code:
    needs: [gate]
    when: {paths: ["src/**"]}
    run: echo code
)");
  std::string url = "file://" + (root / "repo").string();
  std::string body = R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":")" + sha +
                     R"(","repository":{"full_name":"org/app","clone_url":")" + url +
                     R"("},"pusher":{"name":"t"},"commits":[{"added":[],"modified":["src/main.cc"],"removed":[]}]})";
  {
    Srv srv(root, url, {"--no-sandbox"});  // the gate waits for a host file the test writes
    ASSERT_THAT(Post(srv.Url() + "/webhook", body,
                     {"X-GitHub-Event: push", "X-GitHub-Delivery: p1", "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)}),
                HasSubstr(" 201"));
    ASSERT_EQ(WaitState(srv.Url(), 1, {"running"}), "running");
    srv.proc->Signal(SIGKILL);
    srv.proc->Stop(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(WriteFileAtomic(go, "").ok());
  Srv again(root, url, {"--no-sandbox"});
  ASSERT_EQ(WaitState(again.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(again, 1);
  auto run = value::ParseJson(Get(again.Url() + "/api/runs/1"));
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->Get("attempt")->AsInt(), 2);
  std::map<std::string, std::string> states;
  for (const auto& s : run->Get("steps")->items()) states[std::string(s.Get("name")->AsString())] = s.Get("state")->AsString();
  EXPECT_EQ(states["code"], "succeeded");
  EXPECT_EQ(states["docs"], "skipped") << "the push changed only src/: a restart forgot the changed paths";
}

}  // namespace
}  // namespace gantry

namespace gantry {
namespace {

// GET with optional headers; returns "BODY CODE".
std::string GetWith(const std::string& url, const std::vector<std::string>& headers) {
  std::vector<std::string> argv = {"curl", "-s", "-o", "-", "-w", " %{http_code}"};
  for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
  argv.push_back(url);
  ProcessOptions po;
  po.inherit_env = true;
  auto r = Run(argv, po);
  GANTRY_CHECK(r.ok());
  return r->out;
}

// With --api-token-env, the REST API (runs, logs, cancel) answers only a bearer token; the CLI sends
// GANTRY_TOKEN; webhooks still work by their signature alone.
TEST(CiServer, RestApiNeedsTheBearerTokenWhenOneIsSet) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello:\n    run: sleep 30\n");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url);  // --api-token-env API_TOKEN
  std::string body = PushPayload(url, sha);
  std::string sig = "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body);
  EXPECT_THAT(Post(srv.Url() + "/webhook", body, {"X-GitHub-Event: push", "X-GitHub-Delivery: t1", sig}), HasSubstr(" 201"));

  std::string bearer = std::string("Authorization: Bearer ") + kApiToken;
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {}), HasSubstr(" 401"));
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {"Authorization: Bearer wrong-token-0123456789ab"}), HasSubstr(" 401"));
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs/1/logs", {}), HasSubstr(" 401"));
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {bearer}), HasSubstr(" 200"));
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/cancel", "", {}), HasSubstr(" 401"));

  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"GANTRY_SERVER", srv.Url()}, {"GANTRY_TOKEN", ""}};
  auto refused = gantry::Run({Binary(), "runs"}, po);
  ASSERT_TRUE(refused.ok());
  EXPECT_NE(refused->exit_code, 0);
  EXPECT_THAT(refused->err, HasSubstr("401"));
  po.env["GANTRY_TOKEN"] = kApiToken;
  auto listed = gantry::Run({Binary(), "runs"}, po);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->exit_code, 0) << listed->err;
  EXPECT_THAT(listed->out, HasSubstr(sha.substr(0, 12)));
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/cancel", "", {bearer}), HasSubstr("cancel"));
}

}  // namespace
}  // namespace gantry

namespace gantry {
namespace {

const std::string kBearer = std::string("Authorization: Bearer ") + kApiToken;

// A commit of `file` with `content` in the repository at `dir`; returns its sha.
std::string Commit(const fs::path& dir, const std::string& file, const std::string& content,
                   const std::string& branch = "main") {
  ProcessOptions po;
  po.cwd = dir.string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  GANTRY_CHECK(RunChecked({"git", "checkout", "-q", "-B", branch}, po).ok());
  GANTRY_CHECK(WriteFileAtomic(dir / file, content).ok());
  GANTRY_CHECK(RunChecked({"git", "add", "-A"}, po).ok());
  GANTRY_CHECK(RunChecked({"git", "commit", "-q", "-m", file}, po).ok());
  return RunChecked({"git", "rev-parse", "HEAD"}, po)->out.substr(0, 40);
}

std::string PostPush(const Srv& srv, const std::string& body, const std::string& delivery) {
  return Post(srv.Url() + "/webhook", body,
              {"X-GitHub-Event: push", "X-GitHub-Delivery: " + delivery,
               "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)});
}

// The runs of the server, oldest first.
std::vector<value::Value> Runs(const Srv& srv) {
  auto v = value::ParseJson(Get(srv.Url() + "/api/runs"));
  std::vector<value::Value> out;
  if (v.ok() && v->IsSeq()) {
    for (const auto& r : v->items()) out.insert(out.begin(), r);
  }
  return out;
}

int RunsOf(const Srv& srv, const std::string& sha) {
  int n = 0;
  for (const auto& r : Runs(srv)) n += r.Get("commit")->AsString() == sha;
  return n;
}

std::string Field(const Srv& srv, int id, const char* key) {
  auto v = value::ParseJson(Get(srv.Url() + "/api/runs/" + std::to_string(id)));
  if (!v.ok() || v->Get(key) == nullptr) return "";
  return v->Get(key)->IsString() ? std::string(v->Get(key)->AsString()) : value::ToJson(*v->Get(key));
}

TEST(CiServer, PollerDoesNotRebuildACommitAWebhookQueued) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string first = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello: {run: echo hi}\n");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, {"--poll", "300ms", "--poll-branch", "main", "--poll-branch", "other"});
  // Whichever comes first, the webhook or a poll, a commit gets one run.
  EXPECT_THAT(PostPush(srv, PushPayload(url, first), "w1"), ::testing::AnyOf(HasSubstr(" 201"), HasSubstr("duplicate")));
  std::string second = Commit(root / "repo", "b.txt", "b");
  EXPECT_THAT(PostPush(srv, PushPayload(url, second), "w2"), ::testing::AnyOf(HasSubstr(" 201"), HasSubstr("duplicate")));
  // A commit only the poller learns of (on another polled branch): once it has a run, a whole
  // poll has seen `second` as the tip of main after its webhook.
  std::string other = Commit(root / "repo", "c.txt", "c", "other");
  for (int i = 0; i < 300 && RunsOf(srv, other) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(RunsOf(srv, other), 1) << "the poller did not queue the new tip";
  EXPECT_EQ(RunsOf(srv, second), 1) << "a commit a webhook queued was queued again by the poller";
  // The first run may have built `second` (main had moved on when it started): never both.
  EXPECT_LE(RunsOf(srv, first), 1);
}

TEST(CiServer, ReplayedWebhookWithANewDeliveryIdIsNotANewRun) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello: {run: echo hi}\n");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url);
  std::string body = PushPayload(url, sha);
  EXPECT_THAT(PostPush(srv, body, "r1"), HasSubstr(" 201"));
  EXPECT_THAT(PostPush(srv, body, "r2-replayed"), HasSubstr("duplicate"));
  EXPECT_THAT(PostPush(srv, body, "r3-replayed"), HasSubstr(" 200"));
  EXPECT_EQ(Runs(srv).size(), 1u);
}

TEST(CiServer, StalePayloadBuildsTheBranchTip) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string old_sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello: {run: 'echo \"built $GANTRY_COMMIT\"'}\n");
  std::string tip = Commit(root / "repo", "b.txt", "b");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url);
  EXPECT_THAT(PostPush(srv, PushPayload(url, old_sha), "s1"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 1);
  EXPECT_EQ(Field(srv, 1, "commit"), tip);
  EXPECT_THAT(Logs(srv, 1), HasSubstr("built " + tip));
  EXPECT_THAT(Field(srv, 1, "message"), HasSubstr("stale payload"));
  // The tip is taken: a webhook for it now is a duplicate.
  EXPECT_THAT(PostPush(srv, PushPayload(url, tip), "s2"), HasSubstr("duplicate"));
}

// A fork's pull request (the fork: a repository of its own).
struct Fork {
  Fork(const fs::path& root, const std::string& base_url, const std::string& base_sha, const std::string& pipeline) {
    sha = MakeRepo(root / "fork", pipeline);
    url = "file://" + (root / "fork").string();
    body = R"({"action":"opened","number":5,"pull_request":{"number":5,"head":{"sha":")" + sha +
           R"(","ref":"main","repo":{"id":2,"full_name":"mallory/app","clone_url":")" + url + R"("}},"base":{"sha":")" +
           base_sha + R"(","ref":"main","repo":{"id":1,"full_name":"org/app","clone_url":")" + base_url +
           R"("}}},"repository":{"id":1,"full_name":"org/app","clone_url":")" + base_url + R"("}})";
  }
  std::string Open(const Srv& srv) const {
    return Post(srv.Url() + "/webhook", body,
                {"X-GitHub-Event: pull_request", "X-GitHub-Delivery: pr-" + sha,
                 "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)});
  }
  std::string sha, url, body;
};

int Entries(const fs::path& dir) {
  std::error_code ec;
  int n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
  return n;
}

TEST(CiServer, ForkPullRequestWaitsForApprovalThenRunsWithoutNetworkAndItsMirrorIsRemoved) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string base = MakeRepo(root / "repo", "shell: sh\non: [push, pull_request]\nsteps:\n  hello: {run: echo base}\n");
  std::string url = "file://" + (root / "repo").string();
  Fork fork(root, url, base, "shell: sh\non: [push, pull_request]\nsteps:\n  net:\n    network: true\n    run: echo fork-ran\n");
  Srv srv(root, url);
  EXPECT_THAT(fork.Open(srv), HasSubstr("awaiting_approval"));
  // A push queued after it runs to the end while the fork's run still waits.
  EXPECT_THAT(PostPush(srv, PushPayload(url, base), "p1"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded");
  EXPECT_EQ(Field(srv, 1, "state"), "awaiting_approval");
  EXPECT_EQ(Logs(srv, 1).find("fork-ran"), std::string::npos);
  // Approval needs the token, and records who approved.
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/approve", "", {}), HasSubstr(" 401"));
  ProcessOptions po;
  po.inherit_env = true;
  auto approved = gantry::Run({Binary(), "runs", "approve", "1", "--server", srv.Url()}, po);
  ASSERT_TRUE(approved.ok());
  EXPECT_EQ(approved->exit_code, 0) << approved->err;
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 1);
  EXPECT_EQ(Field(srv, 1, "approved_by"), "admin");  // the shared token is the bootstrap admin
  EXPECT_EQ(Field(srv, 1, "trusted"), "false");
  std::string logs = Logs(srv, 1);
  EXPECT_THAT(logs, HasSubstr("fork-ran"));
  EXPECT_THAT(logs, HasSubstr("network off"));
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/approve", "", {kBearer}), HasSubstr(" 409"));
  // The fork's mirror went with its run; the configured repository's stays.
  EXPECT_EQ(Entries(root / "data" / "fork-mirrors"), 0);
  EXPECT_EQ(Entries(root / "data" / "mirrors"), 1);
}

// Run as root, bubblewrap mapped the step's uid to host root: /proc/sys and anything else that
// checks only for root was the step's (the hostile corpus set kernel.core_pattern that way).
TEST(CiServer, StepsOfARootServerRunAsAHostUserOfTheirOwn) {
  if (::geteuid() != 0) GTEST_SKIP() << "only a server run as root switches steps to another user";
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  // The second step rewrites what the first made (the workspace is the step user's); the third
  // waits, so that the test can look at its process from the host.
  std::string sha = MakeRepo(root / "repo", R"P(
shell: sh
steps:
  make: {run: 'echo out > made-by-step'}
  rewrite: {needs: [make], run: 'echo again >> made-by-step && echo rewrote'}
  wait: {needs: [rewrite], run: [sleep, '29.4242']}
)P");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url);
  EXPECT_THAT(PostPush(srv, PushPayload(url, sha), "u1"), HasSubstr(" 201"));
  std::string uid_line;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
       uid_line.empty() && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (const auto& e : fs::directory_iterator("/proc")) {
      auto cmdline = ReadFile(e.path() / "cmdline", 4096);
      if (!cmdline.ok() || *cmdline != std::string("sleep\0" "29.4242\0", 14)) continue;
      auto status = ReadFile(e.path() / "status", 16384);
      if (!status.ok()) continue;
      size_t at = status->find("\nUid:");
      if (at != std::string::npos) uid_line = status->substr(at + 1, status->find('\n', at + 1) - at - 1);
    }
  }
  EXPECT_EQ(uid_line, "Uid:\t65533\t65533\t65533\t65533") << "the step's process as the host sees it";
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/cancel", "", {kBearer}), HasSubstr(" 202"));
  EXPECT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "cancelled");
  EXPECT_THAT(Logs(srv, 1), HasSubstr("rewrote"));
}

// Issue 12, finding 7: the signed payload chose the commit; any commit the head repository held
// (another branch, an unmerged rewrite) could be built under the pull request's name.
TEST(CiServer, APullRequestsCommitMustBeOnItsBranch) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string base = MakeRepo(root / "repo", "shell: sh\non: [push, pull_request]\nsteps:\n  hello: {run: echo base}\n");
  std::string url = "file://" + (root / "repo").string();
  Fork fork(root, url, base, "shell: sh\non: [push, pull_request]\nsteps:\n  hello: {run: echo on-branch}\n");
  // A commit on another branch of the fork, named as the pull request's head (branch main).
  ProcessOptions po;
  po.cwd = (root / "fork").string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  ASSERT_TRUE(RunChecked({"git", "checkout", "-q", "-b", "elsewhere"}, po).ok());
  ASSERT_TRUE(RunChecked({"git", "commit", "-q", "--allow-empty", "-m", "not on main"}, po).ok());
  std::string elsewhere = RunChecked({"git", "rev-parse", "HEAD"}, po)->out.substr(0, 40);
  ASSERT_TRUE(RunChecked({"git", "checkout", "-q", "main"}, po).ok());
  Fork stray = fork;
  stray.body.replace(stray.body.find(fork.sha), fork.sha.size(), elsewhere);
  stray.sha = elsewhere;
  Srv srv(root, url, {"--policy", "approval=none"});
  EXPECT_THAT(stray.Open(srv), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "failed");
  EXPECT_THAT(Field(srv, 1, "message"), HasSubstr("is not on the pull request's branch main"));
  // The commit on the branch is built.
  EXPECT_THAT(fork.Open(srv), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 2);
  EXPECT_THAT(Logs(srv, 2), HasSubstr("on-branch"));
}

// A server with --tls-cert of its own CA was out of reach of gantry runs and gantry logs.
TEST(CiServer, RunsAndLogsReachATlsServerWithItsCaFile) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string cert = (root / "cert.pem").string(), key = (root / "key.pem").string();
  ASSERT_TRUE(RunChecked({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                          "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert},
                         {.inherit_env = true})
                  .ok());
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello: {run: echo over-tls}\n");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, {"--tls-cert", cert, "--tls-key", key});
  std::string https = "https://127.0.0.1:" + srv.port;
  ProcessOptions po;
  po.inherit_env = true;
  auto without = gantry::Run({Binary(), "runs", "--server", https}, po);
  ASSERT_TRUE(without.ok());
  EXPECT_NE(without->exit_code, 0);
  EXPECT_THAT(without->err, HasSubstr("certificate"));
  auto with = gantry::Run({Binary(), "runs", "--server", https, "--ca-file", cert}, po);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(with->exit_code, 0) << with->err;
  EXPECT_THAT(with->out, HasSubstr("STATE"));
  po.env = {{"GANTRY_CA_FILE", cert}};
  auto logs = gantry::Run({Binary(), "logs", "1", "--server", https}, po);
  ASSERT_TRUE(logs.ok());
  EXPECT_THAT(logs->err, HasSubstr("HTTP 404")) << "the request reached the server";
}

// A server started with --no-sandbox would otherwise run a fork's code on the host itself.
TEST(CiServer, UntrustedRunsAreRefusedWhenStepsRunOnTheHost) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string base = MakeRepo(root / "repo", "shell: sh\non: [push, pull_request]\nsteps:\n  hello: {run: echo base}\n");
  std::string url = "file://" + (root / "repo").string();
  Fork fork(root, url, base, "shell: sh\non: [push, pull_request]\nsteps:\n  own: {run: echo ESCAPED-ON-HOST}\n");
  Srv srv(root, url, {"--no-sandbox", "--policy", "approval=none"});
  EXPECT_THAT(fork.Open(srv), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "failed");
  EXPECT_THAT(Field(srv, 1, "message"), HasSubstr("untrusted and steps run on this host without a sandbox"));
  EXPECT_EQ(Logs(srv, 1).find("ESCAPED-ON-HOST"), std::string::npos);
  // Trusted pushes still run there.
  EXPECT_THAT(PostPush(srv, PushPayload(url, base), "p1"), HasSubstr(" 201"));
  EXPECT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded");
}

TEST(CiServer, AForkPullRequestCannotStarveAPushAndItsStepsAreCapped) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string base = MakeRepo(root / "repo", "shell: sh\non: [push, pull_request]\nsteps:\n  hello: {run: echo base}\n");
  std::string url = "file://" + (root / "repo").string();
  Fork fork(root, url, base, "shell: sh\non: [push, pull_request]\nsteps:\n  hog: {run: sleep 600}\n");
  Srv srv(root, url, {"--policy", "approval=none", "--untrusted-timeout", "3s", "--workers", "1", "--untrusted-workers", "1"});
  EXPECT_THAT(fork.Open(srv), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"running"}), "running");
  EXPECT_THAT(PostPush(srv, PushPayload(url, base), "p1"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded") << "the push waited for the fork";
  EXPECT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "failed") << "the 3s cap did not stop sleep 600";
}

TEST(CiServer, TheApiNeedsATokenEvenWithoutTheFlagAndTheDataIsPrivate) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  hello: {run: echo hi}\n");
  std::string url = "file://" + (root / "repo").string();
  ::umask(022);
  Srv srv(root, url, {}, /*token_flag=*/false);
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {}), HasSubstr(" 401"));
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {kBearer}), HasSubstr(" 401"));
  auto token = ReadFile(root / "data" / "api-token");
  ASSERT_TRUE(token.ok());
  std::string t = token->substr(0, token->find('\n'));
  EXPECT_THAT(GetWith(srv.Url() + "/api/runs", {"Authorization: Bearer " + t}), HasSubstr(" 200"));
  // Run as root, steps run as a user of their own that must traverse (never list) the data dir.
  const int data_mode = ::geteuid() == 0 ? 0711 : 0700;
  for (auto [path, mode] : {std::pair{root / "data" / "api-token", 0600}, std::pair{root / "data", data_mode},
                            std::pair{root / "data" / "mirrors", 0700}, std::pair{root / "data" / "caches", 0700},
                            std::pair{root / "gantry.db", 0600}}) {
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(static_cast<int>(st.st_mode & 0777), mode) << path;
  }
}

TEST(CiServer, ProtectedSecretsReachOnlyPushesToProtectedBranches) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string main_sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  deploy:\n    secrets: [PROD]\n    run: echo \"deploying with $PROD\"\n");
  std::string url = "file://" + (root / "repo").string();
  std::string feature = Commit(root / "repo", "f.txt", "f", "feature");
  GANTRY_CHECK(WriteFileAtomic(root / "secrets.env", "SHARED=s\n[protected]\nPROD=canary-prod-secret\n", 0600).ok());
  Srv srv(root, url, {"--secrets-file", (root / "secrets.env").string()});
  EXPECT_THAT(PostPush(srv, PushPayload(url, main_sha), "m1"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Logs(srv, 1);
  EXPECT_THAT(Logs(srv, 1), HasSubstr("deploying with ***"));
  std::string body = PushPayload(url, feature);
  body.replace(body.find("refs/heads/main"), 15, "refs/heads/feature");
  EXPECT_THAT(PostPush(srv, body, "f1"), HasSubstr(" 201"));
  ASSERT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "failed") << Logs(srv, 2);
  EXPECT_THAT(Field(srv, 2, "message"), HasSubstr("secret PROD is out of scope"));
  EXPECT_THAT(Field(srv, 2, "message"), HasSubstr("[protected]"));
  EXPECT_EQ(Logs(srv, 2).find("canary-prod-secret"), std::string::npos);
  EXPECT_EQ(Logs(srv, 2).find("deploying"), std::string::npos) << "the step ran without its secret";
}

// The runs of `db` with their steps, oldest first, once there are `n` and all are final (or after
// `limit`).
std::vector<store::Run> FinalRuns(store::Store& db, size_t n, std::chrono::seconds limit) {
  std::vector<store::Run> runs;
  for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
    auto listed = db.ListRuns({.limit = 200});
    GANTRY_CHECK(listed.ok());
    runs.clear();
    for (auto it = listed->rbegin(); it != listed->rend(); ++it) {
      auto run = db.GetRun(it->id);
      runs.push_back(run.ok() ? *run : *it);
    }
    if (runs.size() >= n && std::all_of(runs.begin(), runs.end(), [](const store::Run& r) { return store::IsFinal(r.state); })) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return runs;
}

// A bare config repository root/config.git (pushed to), with a manifest naming `image`:old; its URL.
std::string MakeConfigRepo(const fs::path& root, const std::string& image) {
  fs::create_directories(root / "seed" / "envs" / "dev");
  GANTRY_CHECK(WriteFileAtomic(root / "seed" / "envs" / "dev" / "pod.yaml",
                               "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n"
                               "    image: " + image + ":old\n").ok());
  MakeRepo(root / "seed", "steps: {}\n");
  GANTRY_CHECK(RunChecked({"git", "clone", "-q", "--bare", (root / "seed").string(), (root / "config.git").string()}).ok());
  return "file://" + (root / "config.git").string();
}

// An app repository whose pipeline builds dist/ and releases it as `image` to `config`; its commit.
std::string MakeReleasingRepo(const fs::path& dir, const std::string& image, const std::string& config) {
  return MakeRepo(dir, "shell: sh\nsteps:\n  build: {run: 'mkdir -p dist && echo hello > dist/index.html'}\n"
                       "image:\n  repository: " + image + "\n  layers: [dist]\n"
                       "release:\n  repo: " + config + "\n  path: envs/dev\n");
}

// A pull agent that accepts the connection and never answers: a release waits 5 s in notify.
struct SilentAgent {
  SilentAgent() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    GANTRY_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd, 16) == 0 &&
                 ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/webhook";
    ::setenv("AGENT_SECRET", "agent-secret-0123456789", 1);
  }
  ~SilentAgent() { ::close(fd); }
  SilentAgent(const SilentAgent&) = delete;
  SilentAgent& operator=(const SilentAgent&) = delete;
  // `flags` and the server flags that notify this agent.
  std::vector<std::string> Flags(std::vector<std::string> flags) const {
    flags.insert(flags.end(), {"--notify", url, "--notify-secret-env", "AGENT_SECRET"});
    return flags;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string url;
};

// Several replicas of `gantry server` on one PostgreSQL database (docs/scaling.md), each with its
// own name, data directory and port, and short run leases.
struct Replicas {
  Replicas(const fs::path& root, const std::string& repo_url, int n, const std::vector<std::string>& extra = {}) {
    static int databases = 0;
    const std::string& admin = testenv::Shared("postgres.sh").Get("PG_URL");
    const std::string name = "replicas_" + std::to_string(::getpid()) + "_" + std::to_string(++databases);
    PGconn* conn = PQconnectdb(admin.c_str());
    GANTRY_CHECK(PQstatus(conn) == CONNECTION_OK);
    PGresult* res = PQexec(conn, ("CREATE DATABASE " + name).c_str());
    GANTRY_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);
    db = admin.substr(0, admin.rfind('/') + 1) + name;
    fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    for (int i = 0; i < n; ++i) {
      fs::path dir = root / ("replica-" + std::to_string(i));
      fs::create_directories(dir);
      names.push_back("replica-" + std::to_string(i));
      std::vector<std::string> flags = {"--store", db, "--worker", names.back(), "--run-lease", "3s"};
      if (std::find(extra.begin(), extra.end(), "--workers") == extra.end()) flags.insert(flags.end(), {"--workers", "2"});
      flags.insert(flags.end(), extra.begin(), extra.end());
      srv.push_back(std::make_unique<Srv>(dir, repo_url, flags));
    }
    auto opened = store::Open(db);
    GANTRY_CHECK(opened.ok());
    store = std::move(opened).value();
  }
  // The runs, oldest first, once there are `n` and all are final (or after 90 s).
  std::vector<store::Run> WaitFinal(size_t n) { return FinalRuns(*store, n, std::chrono::seconds(90)); }
  // Kills (SIGKILL) the replica that holds run `id` now; returns its index.
  // A remote worker named as a replica ("robot:pool/replica-1") counts as that replica: it talks
  // to it only.
  size_t KillHolderOf(int64_t id) {
    auto run = store->GetRun(id);
    GANTRY_CHECK(run.ok());
    const size_t victim = std::find_if(names.begin(), names.end(), [&](const std::string& n) { return run->worker.ends_with(n); }) -
                          names.begin();
    GANTRY_CHECK(victim < names.size());
    srv[victim]->proc->Signal(SIGKILL);
    srv[victim]->proc->Stop(std::chrono::milliseconds(100));
    return victim;
  }
  // KillHolderOf(id) once the release of run `id` has recorded its config commit (it is in notify).
  size_t KillHolderMidRelease(int64_t id) {
    for (int i = 0; i < 600; ++i) {
      auto progress = store->GetReleaseProgress(id);
      if (progress.ok() && progress->has_value() && (*progress)->stage == "update") return KillHolderOf(id);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    GANTRY_CHECK(false && "the release never got past its config commit");
    return names.size();
  }
  std::string db;
  std::vector<std::string> names;
  std::vector<std::unique_ptr<Srv>> srv;
  std::unique_ptr<store::Store> store;
};

// Run 1, whose holder `victim` was killed mid-release, succeeded as attempt 2 elsewhere, which
// resumed its release.
void ExpectResumedElsewhere(Replicas& r, size_t victim) {
  std::vector<store::Run> runs = r.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2);
  EXPECT_FALSE(runs[0].worker.ends_with(r.names[victim])) << runs[0].worker;
  EXPECT_THAT(Logs(*r.srv[(victim + 1) % r.srv.size()], 1), HasSubstr("resuming the release of run 1 at notify"));
}

// Three replicas, webhooks sent round-robin (no load balancer): a burst of pushes to as many
// branches gives one run per push, none lost, none built twice, and any replica serves any run's
// logs.
TEST(CiServerReplicas, ABurstOfPushesSentRoundRobinIsBuiltOnceEach) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  MakeRepo(root / "repo", "shell: sh\nsteps:\n  build: {run: 'echo built $GANTRY_COMMIT'}\n");
  std::string url = "file://" + (root / "repo").string();
  constexpr int kPushes = 12;  // bench/ha/run.sh sends 50
  std::vector<std::string> shas, bodies;
  for (int i = 0; i < kPushes; ++i) {
    const std::string branch = "b" + std::to_string(i);
    shas.push_back(Commit(root / "repo", "f.txt", branch, branch));
    bodies.push_back(PushPayload(url, shas.back()));
    bodies.back().replace(bodies.back().find("refs/heads/main"), 15, "refs/heads/" + branch);
  }
  Replicas r(root, url, 3);
  for (int i = 0; i < kPushes; ++i) {
    EXPECT_THAT(PostPush(*r.srv[i % 3], bodies[i], "burst-" + std::to_string(i)), HasSubstr(" 201"));
  }
  // A redelivery to another replica is a duplicate there too.
  EXPECT_THAT(PostPush(*r.srv[1], bodies[0], "burst-0"), HasSubstr("duplicate"));
  std::vector<store::Run> runs = r.WaitFinal(kPushes);
  ASSERT_EQ(runs.size(), static_cast<size_t>(kPushes));
  std::set<std::string> built, workers;
  for (const auto& run : runs) {
    EXPECT_EQ(run.state, store::RunState::kSucceeded) << run.id << ": " << run.message;
    EXPECT_EQ(run.attempt, 1) << "run " << run.id << " was claimed twice";
    built.insert(run.commit);
    workers.insert(run.worker);
  }
  EXPECT_EQ(built, std::set<std::string>(shas.begin(), shas.end()));
  for (const auto& w : workers) EXPECT_THAT(r.names, ::testing::Contains(w));
  // Every run's log from every replica, whichever built it.
  for (const auto& srv : r.srv) {
    for (const auto& run : runs) {
      EXPECT_THAT(Logs(*srv, static_cast<int>(run.id)), HasSubstr("built " + run.commit)) << srv->Url();
    }
  }
}

// kill -9 of the replica running a run, mid-step: its lease expires and another replica runs it
// again to success (attempt 2); `gantry logs -f` on a third replica follows it to the end.
TEST(CiServerReplicas, ARunWhoseReplicaIsKilledMidStepFinishesOnAnother) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  slow: {run: 'echo started; sleep 3; echo finished'}\n");
  std::string url = "file://" + (root / "repo").string();
  Replicas r(root, url, 3);
  ASSERT_THAT(PostPush(*r.srv[0], PushPayload(url, sha), "k1"), HasSubstr(" 201"));
  store::Run run;
  for (int i = 0; i < 300; ++i) {
    auto got = r.store->GetRun(1);
    if (got.ok() && got->state == store::RunState::kRunning && !got->steps.empty() &&
        got->steps[0].state == store::RunState::kRunning) {
      run = *got;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(run.id, 1) << "run 1 never started its step";
  const size_t victim = r.KillHolderOf(1);
  const auto killed = std::chrono::steady_clock::now();
  // Taken over: running again under another claim.
  std::optional<std::chrono::steady_clock::duration> failover;
  for (int i = 0; i < 600 && !failover; ++i) {
    auto got = r.store->GetRun(1);
    if (got.ok() && got->attempt == 2 && got->state != store::RunState::kQueued) failover = std::chrono::steady_clock::now() - killed;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(failover.has_value()) << "no replica took the run over";
  std::cout << "failover (kill -9 to the run claimed again, 3 s lease): "
            << std::chrono::duration_cast<std::chrono::milliseconds>(*failover).count() << " ms\n";
  const Srv& other = *r.srv[(victim + 1) % 3];
  ProcessOptions with_token;
  with_token.inherit_env = true;
  auto followed = gantry::Run({Binary(), "logs", "1", "-f", "--server", other.Url()}, with_token);
  ASSERT_TRUE(followed.ok());
  EXPECT_THAT(followed->out, HasSubstr("finished"));
  std::vector<store::Run> runs = r.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2);
  EXPECT_NE(runs[0].worker, r.names[victim]);
  EXPECT_THAT(runs[0].message, HasSubstr("steps succeeded"));
}

// An app repository (ROOT/repo) whose pipeline runs `steps` and releases an image (`image`, its one
// layer the repository's data/ directory, holding `data`) to a bare config repository
// (ROOT/config.git, a manifest under envs/dev naming the image); and a pull agent that accepts the
// notify connection and never answers, so that a release notifying it waits there 5 s.
struct ReleasedApp {
  ReleasedApp(const fs::path& root, const std::string& image, const std::string& steps, const std::string& data)
      : config(MakeConfigRepo(root, image)) {
    MakeRepo(root / "repo", "shell: sh\nsteps:\n  " + steps + "\nimage:\n  repository: " + image +
                                "\n  layers: [data]\nrelease:\n  repo: " + config + "\n  path: envs/dev\n");
    fs::create_directories(root / "repo" / "data");
    sha = Commit(root / "repo", "data/blob", data);
    url = "file://" + (root / "repo").string();
  }
  // The server's flags for the release: the config repository, the registry (plain HTTP) and, with
  // `notify`, the silent agent.
  std::vector<std::string> Flags(const std::string& registry, bool notify) const {
    std::vector<std::string> flags = {"--config-repo", config, "--insecure-registry", registry};
    return notify ? agent.Flags(flags) : flags;
  }
  std::string config, url, sha;
  SilentAgent agent;
};

// Points of a released run at which a process is killed, in order: while its first step runs,
// while the image is pushed (the release's image step has begun), while the config commit is made
// (the image's push is recorded), while the agents are notified (the config commit is recorded).
enum class RunPoint { kStep, kImagePush, kConfigCommit, kNotify };
constexpr const char* kRunPoints[] = {"step", "image-push", "config-commit", "notify"};

// The last RunPoint run `id` has reached, read from the store (nullopt before its step runs).
std::optional<RunPoint> ReachedRunPoint(store::Store& db, int64_t id) {
  auto progress = db.GetReleaseProgress(id);
  const std::string stage = progress.ok() && progress->has_value() ? (*progress)->stage : "";
  if (stage == "package") return RunPoint::kConfigCommit;
  if (!stage.empty() && stage != "started") return RunPoint::kNotify;
  auto image_log = db.ReadLog(id, "image", 0, 1);
  if (!stage.empty() || (image_log.ok() && !image_log->empty())) return RunPoint::kImagePush;
  auto run = db.GetRun(id);
  if (run.ok() && !run->steps.empty() && run->steps[0].state != store::RunState::kQueued) return RunPoint::kStep;
  return std::nullopt;
}

// Whether run `id` reached `point` (or a later one) within 60 s.
bool WaitRunPoint(store::Store& db, int64_t id, RunPoint point) {
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60); std::chrono::steady_clock::now() < end;) {
    if (auto reached = ReachedRunPoint(db, id); reached && *reached >= point) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The invariant of a release that went through a kill, read from outside Gantry: the ledger (the
// database) holds one release of run `id`; the config repository's main holds one commit with the
// run's trailer, and it is the ledger's and the tip; the registry holds one tag of `repository`,
// the commit's, at the ledger's digest, and it pulls whole (skopeo checks every blob's digest).
void ExpectReleasedOnce(store::Store& db, const fs::path& config_git, const std::string& registry,
                        const std::string& repository, const std::string& sha, int64_t id) {
  auto ledger = db.ListReleases("web", 10);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  ASSERT_EQ(ledger->size(), 1u) << "the ledger release was written twice, or never";
  EXPECT_EQ(ledger->at(0).run_id, std::optional<int64_t>(id));
  auto log = RunChecked({"git", "--git-dir", config_git.string(), "log", "--format=%H %B", "main"});
  ASSERT_TRUE(log.ok());
  const std::string trailer = "Gantry-Release: run " + std::to_string(id) + " of";
  size_t trailers = 0;
  for (size_t at = log->out.find(trailer); at != std::string::npos; at = log->out.find(trailer, at + 1)) ++trailers;
  EXPECT_EQ(trailers, 1u) << log->out;
  auto head = RunChecked({"git", "--git-dir", config_git.string(), "rev-parse", "main"});
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->out.substr(0, 40), ledger->at(0).config_revision);
  ProcessOptions po;
  po.inherit_env = true;
  auto tags = gantry::Run({"curl", "-s", "http://" + registry + "/v2/" + repository + "/tags/list"}, po);
  ASSERT_TRUE(tags.ok());
  EXPECT_THAT(tags->out, HasSubstr("[\"" + sha.substr(0, 12) + "\"]"));
  ASSERT_EQ(ledger->at(0).image_digests.size(), 1u);
  const std::string digest = ledger->at(0).image_digests.begin()->second;
  auto copied = gantry::Run({"skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "-q",
                             "docker://" + registry + "/" + repository + ":" + sha.substr(0, 12),
                             "oci:" + (config_git.parent_path() / "pulled").string() + ":pulled"},
                            po);
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(copied->exit_code, 0) << "the image does not pull whole: " << copied->err;
  auto manifest = gantry::Run({"curl", "-s", "-I", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", "-H",
                               "Accept: application/vnd.docker.distribution.manifest.v2+json",
                               "http://" + registry + "/v2/" + repository + "/manifests/" + sha.substr(0, 12)},
                              po);
  ASSERT_TRUE(manifest.ok());
  EXPECT_THAT(manifest->out, HasSubstr(digest));
}

// kill -9 of the replica releasing a run, after its config commit and before its ledger release
// (while it notifies an agent that never answers): another replica resumes the release, and from
// outside there is one image tag in the registry, one config commit with the run's trailer and
// one ledger release.
TEST(CiServerReplicas, ARunWhoseReplicaIsKilledMidReleaseIsReleasedOnce) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string repository = "ha-" + std::to_string(::getpid()) + "/web";
  ReleasedApp app(root, host + "/" + repository, "build: {run: 'echo built'}", "hello\n");
  Replicas r(root, app.url, 3, app.Flags(host, true));
  ASSERT_THAT(PostPush(*r.srv[0], PushPayload(app.url, app.sha), "rel-1"), HasSubstr(" 201"));
  // Killed once the config commit is recorded (the release is in notify).
  ASSERT_TRUE(WaitRunPoint(*r.store, 1, RunPoint::kNotify)) << "the release never got past its config commit";
  const size_t victim = r.KillHolderOf(1);
  std::vector<store::Run> runs = r.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2);
  EXPECT_NE(runs[0].worker, r.names[victim]);
  EXPECT_THAT(Logs(*r.srv[(victim + 1) % 3], 1), HasSubstr("resuming the release of run 1 at notify"));
  ExpectReleasedOnce(*r.store, root / "config.git", host, repository, app.sha, 1);
}

}  // namespace
}  // namespace gantry

namespace gantry {
namespace {

// A new worker token `name` of `srv` for `project` ("*": every project's runs).
std::string WorkerToken(const Srv& srv, const std::string& name = "pool", const std::string& project = "*") {
  const std::string answer = Post(srv.Url() + "/api/tokens", R"({"name":")" + name + R"(","project":")" + project + R"(","roles":["worker"]})",
                                  {std::string("Authorization: Bearer ") + kApiToken, "Content-Type: application/json"});
  auto v = value::ParseJson(answer.substr(0, answer.rfind(' ')));
  GANTRY_CHECK(v.ok() && v->Get("token") != nullptr);
  return std::string(v->Get("token")->AsString());
}

// `gantry worker` processes building the runs of one server that has no workers of its own
// (docs/scaling.md), with one worker token between them (`name`, for `project`).
struct WorkerPool {
  WorkerPool(const fs::path& root, const Srv& srv, const std::string& name = "pool", const std::string& project = "*")
      : root(root), srv(srv), token(WorkerToken(srv, name, project)) {
    auto opened = store::Open("sqlite:" + (root / "gantry.db").string());
    GANTRY_CHECK(opened.ok());
    db = std::move(opened).value();
  }
  // Starts worker `name` (its claims are "robot:pool/<name>" in the store), of server `to` (default:
  // the pool's).
  void Start(const std::string& name, const std::vector<std::string>& extra = {}, const Srv* to = nullptr) {
    std::vector<std::string> argv = {Binary(), "worker", "--server", (to != nullptr ? *to : srv).Url(), "--token-env", "WORKER_TOKEN", "--name", name,
                                     "--data-dir", (root / name).string(), "--allow-file-repos"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ProcessOptions po;
    po.inherit_env = true;
    po.env = {{"WORKER_TOKEN", token}};
    auto p = Process::Start(argv, po, (root / (name + ".log")).string());
    GANTRY_CHECK(p.ok());
    workers.emplace(name, std::move(p).value());
  }
  // The runs, oldest first, once there are `n` and all are final (or after 60 s).
  std::vector<store::Run> WaitFinal(size_t n) { return FinalRuns(*db, n, std::chrono::seconds(60)); }
  // Run `id` once its first step runs.
  store::Run WaitStepRunning(int64_t id) {
    for (int i = 0; i < 300; ++i) {
      auto got = db->GetRun(id);
      if (got.ok() && got->state == store::RunState::kRunning && !got->steps.empty() &&
          got->steps[0].state == store::RunState::kRunning) {
        return *got;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return {};
  }
  std::string Log(const store::Run& run) const {
    return GetWith(srv.Url() + "/api/runs/" + std::to_string(run.id) + "/logs", {std::string("Authorization: Bearer ") + kApiToken});
  }
  fs::path root;
  const Srv& srv;
  std::string token;
  std::unique_ptr<store::Store> db;
  std::map<std::string, Process> workers;
};

std::vector<std::string> NoLocalWorkers() { return {"--workers", "0", "--untrusted-workers", "0", "--run-lease", "3s"}; }

// --workers 0 and three remote workers: a burst of pushes is built once each, by the workers only,
// with their logs on the server; a worker token reads no run and writes none it does not hold.
TEST(CiServerWorkers, ThreeWorkersBuildEveryRunOnceAndTheWorkerTokenDoesNothingElse) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  MakeRepo(root / "repo", "shell: sh\nsteps:\n  build: {run: 'echo built $GANTRY_COMMIT'}\n");
  std::string url = "file://" + (root / "repo").string();
  constexpr int kPushes = 6;
  std::vector<std::string> bodies;
  for (int i = 0; i < kPushes; ++i) {
    const std::string branch = "b" + std::to_string(i);
    bodies.push_back(PushPayload(url, Commit(root / "repo", "f.txt", branch, branch)));
    bodies.back().replace(bodies.back().find("refs/heads/main"), 15, "refs/heads/" + branch);
  }
  Srv srv(root, url, NoLocalWorkers());
  WorkerPool pool(root, srv);
  for (const char* name : {"w0", "w1", "w2"}) pool.Start(name);
  for (int i = 0; i < kPushes; ++i) EXPECT_THAT(PostPush(srv, bodies[i], "burst-" + std::to_string(i)), HasSubstr(" 201"));
  std::vector<store::Run> runs = pool.WaitFinal(kPushes);
  ASSERT_EQ(runs.size(), static_cast<size_t>(kPushes));
  std::set<std::string> workers;
  for (const auto& run : runs) {
    EXPECT_EQ(run.state, store::RunState::kSucceeded) << run.id << ": " << run.message;
    EXPECT_EQ(run.attempt, 1) << "run " << run.id << " was claimed twice";
    EXPECT_THAT(run.worker, ::testing::StartsWith("robot:pool/w")) << "the server has no workers of its own";
    workers.insert(run.worker);
    EXPECT_THAT(pool.Log(run), HasSubstr("built " + run.commit));
  }
  EXPECT_GE(workers.size(), 2u) << "one worker built every run while two waited";
  const std::string bearer = "Authorization: Bearer " + pool.token;
  EXPECT_THAT(GetWith(srv.Url() + "/api/v1/runs/1", {bearer}), HasSubstr(" 403"));
  EXPECT_THAT(GetWith(srv.Url() + "/api/v1/runs/1/logs", {bearer}), HasSubstr(" 403"));
  EXPECT_THAT(Post(srv.Url() + "/api/v1/runs/1/retry", "", {bearer}), HasSubstr(" 403"));
  EXPECT_THAT(Post(srv.Url() + "/api/v1/worker/runs/1/finish", R"({"name":"w0","attempt":1,"state":"failed","message":"x"})",
                   {bearer}),
              HasSubstr(" 409"));
  EXPECT_THAT(Post(srv.Url() + "/api/v1/worker/claim", R"({"name":"w9","wait_seconds":0})",
                   {std::string("Authorization: Bearer ") + kApiToken}),
              HasSubstr(" 403"))
      << "only a worker token claims runs";
}

// kill -9 of the worker running a run, mid-step: its lease expires and another worker builds it
// (attempt 2) to success.
TEST(CiServerWorkers, ARunWhoseWorkerIsKilledMidStepIsBuiltByAnother) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  slow: {run: 'echo started; sleep 2; echo finished'}\n");
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, NoLocalWorkers());
  WorkerPool pool(root, srv);
  for (const char* name : {"w0", "w1", "w2"}) pool.Start(name);
  ASSERT_THAT(PostPush(srv, PushPayload(url, sha), "k1"), HasSubstr(" 201"));
  store::Run run = pool.WaitStepRunning(1);
  ASSERT_EQ(run.id, 1) << "run 1 never started its step";
  const std::string victim = run.worker.substr(run.worker.find('/') + 1);
  ASSERT_TRUE(pool.workers.contains(victim)) << run.worker;
  pool.workers.at(victim).Signal(SIGKILL);
  pool.workers.at(victim).Stop(std::chrono::milliseconds(100));
  std::vector<store::Run> runs = pool.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2);
  EXPECT_NE(runs[0].worker, run.worker);
  EXPECT_THAT(pool.Log(runs[0]), HasSubstr("finished"));
}

// A repository whose policy asks for arch=arm64: its runs go to the worker that has it only, and a
// cancel through the API reaches that worker at its next renewal and stops the step.
TEST(CiServerWorkers, LabelsRouteRunsAndACancelStopsTheStepOnTheWorker) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  MakeRepo(root / "repo", "shell: sh\nsteps:\n  step: {run: 'if [ \"$GANTRY_BRANCH\" = slow ]; then sleep 60; fi; echo done'}\n");
  std::string url = "file://" + (root / "repo").string();
  const std::string slow = PushPayload(url, Commit(root / "repo", "f.txt", "slow", "slow"));
  const std::string fast = PushPayload(url, Commit(root / "repo", "f.txt", "fast", "fast"));
  std::vector<std::string> flags = NoLocalWorkers();
  flags.insert(flags.end(), {"--repo-policy", url + " labels=arch=arm64"});
  Srv srv(root, url, flags);
  WorkerPool pool(root, srv);
  pool.Start("plain");
  pool.Start("amd", {"--labels", "arch=amd64"});
  pool.Start("arm", {"--labels", "arch=arm64,disk=ssd"});
  std::string slow_body = slow, fast_body = fast;
  slow_body.replace(slow_body.find("refs/heads/main"), 15, "refs/heads/slow");
  fast_body.replace(fast_body.find("refs/heads/main"), 15, "refs/heads/fast");
  ASSERT_THAT(PostPush(srv, slow_body, "l1"), HasSubstr(" 201"));
  ASSERT_THAT(PostPush(srv, fast_body, "l2"), HasSubstr(" 201"));
  store::Run run = pool.WaitStepRunning(1);
  ASSERT_EQ(run.id, 1) << "run 1 never started its step";
  EXPECT_EQ(run.worker, "robot:pool/arm");
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_THAT(Post(srv.Url() + "/api/runs/1/cancel", "", {std::string("Authorization: Bearer ") + kApiToken}),
              HasSubstr("stops it at its next lease renewal"));
  std::vector<store::Run> runs = pool.WaitFinal(2);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state, store::RunState::kCancelled) << runs[0].message;
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(30)) << "the step was not stopped";
  ASSERT_FALSE(runs[0].steps.empty());
  EXPECT_EQ(runs[0].steps[0].state, store::RunState::kCancelled);
  EXPECT_EQ(runs[1].state, store::RunState::kSucceeded) << runs[1].message;
  for (const auto& r : runs) EXPECT_EQ(r.worker, "robot:pool/arm") << "run " << r.id << " went to a worker without arch=arm64";
}


// Two replicas without workers of their own, a worker on each: kill -9 of the replica releasing a
// run its worker built, after the config commit. The run's lease expires, the other replica
// re-queues it, its worker builds it again (attempt 2) and uploads to it, and it resumes the
// release: one image, one config commit, one ledger release.
TEST(CiServerWorkers, ARunWhoseReleasingReplicaIsKilledIsBuiltAgainAndReleasedOnce) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string image = host + "/worker-ha-" + std::to_string(::getpid()) + "/web";
  const std::string config = MakeConfigRepo(root, image);
  std::string sha = MakeReleasingRepo(root / "repo", image, config);
  std::string url = "file://" + (root / "repo").string();
  SilentAgent agent;
  Replicas r(root, url, 2,
             agent.Flags({"--workers", "0", "--untrusted-workers", "0", "--config-repo", config, "--insecure-registry", host}));
  WorkerPool pool(root, *r.srv[0]);
  for (size_t i = 0; i < 2; ++i) pool.Start(r.names[i], {}, r.srv[i].get());  // a worker per replica, named as it
  ASSERT_THAT(PostPush(*r.srv[0], PushPayload(url, sha), "rel-1"), HasSubstr(" 201"));
  ExpectResumedElsewhere(r, r.KillHolderMidRelease(1));
  ExpectReleasedOnce(*r.store, root / "config.git", host, image.substr(host.size() + 1), sha, 1);
}

// A tar stream of one regular file named `name`, as a hostile worker could send it.
std::string OneFileTar(const std::string& name, const std::string& data, const std::string& link_to = "") {
  std::string h(512, '\0');
  auto field = [&](size_t at, size_t len, uint64_t v) { std::snprintf(&h[at], len, "%0*llo", static_cast<int>(len - 1), static_cast<unsigned long long>(v)); };
  h.replace(0, name.size(), name);
  field(100, 8, 0644);
  field(108, 8, 0);
  field(116, 8, 0);
  field(124, 12, data.size());
  field(136, 12, 0);
  h[156] = link_to.empty() ? '0' : '2';  // a regular file, or a symlink to link_to
  h.replace(157, link_to.size(), link_to);
  h.replace(257, 8, std::string("ustar\0" "00", 8));
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  h[155] = ' ';
  return h + data + std::string((512 - data.size() % 512) % 512, '\0') + std::string(1024, '\0');
}

// A pipeline with image: and release:, built on a remote worker of a server without workers of
// its own: the worker uploads the image's layer sources, and the server (which alone holds the
// registry and config repository) releases it: one image in the registry at the ledger's digest,
// one config commit, one ledger release. Then, as a worker itself, the test sends uploads the
// server must refuse: from a claim it does not hold, with entries that climb out or are absolute,
// with a wrong digest, beyond the workspace limit, and a layer source linking out of the workspace.
TEST(CiServerWorkers, ARunBuiltOnAWorkerIsReleasedByTheServerAndBadUploadsAreRefused) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string image = host + "/worker-" + std::to_string(::getpid()) + "/web";
  const std::string config = MakeConfigRepo(root, image);
  std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  build: {run: 'mkdir -p out/site && echo hello > out/site/index.html && ln -s out/site dist'}\n"
                                            "image:\n  repository: " + image + "\n  layers: [{src: dist, dest: /www}]\n"
                                            "release:\n  repo: " + config + "\n  path: envs/dev\n");
  std::string url = "file://" + (root / "repo").string();
  std::vector<std::string> flags = NoLocalWorkers();
  flags.insert(flags.end(), {"--config-repo", config, "--insecure-registry", host, "--max-workspace", "1Mi"});
  Srv srv(root, url, flags);
  WorkerPool pool(root, srv);
  pool.Start("w0");
  ASSERT_THAT(PostPush(srv, PushPayload(url, sha), "rel-1"), HasSubstr(" 201"));
  std::vector<store::Run> runs = pool.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message << "\n" << pool.Log(runs[0]);
  EXPECT_EQ(runs[0].worker, "robot:pool/w0");
  EXPECT_THAT(runs[0].message, HasSubstr("1 steps succeeded"));
  std::set<std::string> steps;
  for (const auto& step : runs[0].steps) {
    if (step.state == store::RunState::kSucceeded) steps.insert(step.name);
  }
  EXPECT_EQ(steps, (std::set<std::string>{"build", "image", "release"})) << "the release's stages are steps of the run";
  EXPECT_FALSE(fs::exists(root / "data" / "runs" / "1")) << "the server keeps no upload or workspace after the release";

  ExpectReleasedOnce(*pool.db, root / "config.git", host, image.substr(host.size() + 1), sha, 1);
  ProcessOptions po;
  po.inherit_env = true;
  // The layer holds the worker's file (through its link inside the workspace) at /www.
  const std::string v2 = "http://" + host + "/v2/" + image.substr(host.size() + 1);
  auto manifest = gantry::Run({"curl", "-s", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", v2 + "/manifests/" + sha.substr(0, 12)}, po);
  ASSERT_TRUE(manifest.ok());
  auto parsed = value::ParseJson(manifest->out);
  ASSERT_TRUE(parsed.ok() && parsed->Get("layers") != nullptr && !parsed->Get("layers")->items().empty()) << manifest->out;
  const std::string layer(parsed->Get("layers")->items().back().Get("digest")->AsString());
  auto file = gantry::Run({"sh", "-c", "curl -sL \"$0\" | tar -xzOf - www/index.html", v2 + "/blobs/" + layer}, po);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->out, "hello\n");

  // Run 2 is claimed by the test, as worker "probe".
  pool.workers.at("w0").Signal(SIGTERM);
  pool.workers.at("w0").Stop(std::chrono::seconds(5));
  ASSERT_THAT(PostPush(srv, PushPayload(url, Commit(root / "repo", "f.txt", "2")), "rel-2"), HasSubstr(" 201"));
  const std::string bearer = "Authorization: Bearer " + pool.token;
  const std::string claimed = Post(srv.Url() + "/api/v1/worker/claim", R"({"name":"probe","wait_seconds":10})", {bearer});
  ASSERT_THAT(claimed, HasSubstr("\"id\":2"));
  // Attempt 2 when w0's long poll, still open on the server as it exited, claimed run 2 first.
  auto job = value::ParseJson(claimed.substr(0, claimed.rfind(' ')));
  ASSERT_TRUE(job.ok());
  const int attempt = static_cast<int>(job->Get("job")->Get("run")->Get("attempt")->AsInt());
  auto put = [&](int run, int claim, uint64_t offset, const std::string& part) {
    return Send("PUT",
                fmt::format("{}/api/v1/worker/runs/{}/workspace?name=probe&attempt={}&offset={}", srv.Url(), run, claim, offset),
                part, {bearer, "Content-Type: application/x-tar"});
  };
  auto release = [&](const std::string& digest) {
    return Post(srv.Url() + "/api/v1/worker/runs/2/release",
                fmt::format(R"({{"name":"probe","attempt":{},"message":"1 steps succeeded","digest":"{}"}})", attempt, digest),
                {bearer, "Content-Type: application/json"});
  };
  const std::string good = OneFileTar("dist/index.html", "x");
  EXPECT_THAT(put(1, 1, 0, good), HasSubstr(" 409")) << "run 1 has ended: its claim is stale";
  EXPECT_THAT(put(2, attempt + 1, 0, good), HasSubstr(" 409")) << "not the attempt the probe holds";
  EXPECT_THAT(put(2, attempt, 512, good), HasSubstr("holds 0 bytes")) << "an offset the server does not hold";
  for (const std::string& name : std::vector<std::string>{"../evil", "/tmp/evil-" + std::to_string(::getpid())}) {
    const std::string tar = OneFileTar(name, "pwned");
    ASSERT_THAT(put(2, attempt, 0, tar), HasSubstr(" 200"));
    const std::string refused = release("sha256:" + Sha256Hex(tar));
    EXPECT_THAT(refused, HasSubstr(" 400")) << name;
    EXPECT_THAT(refused, HasSubstr(name)) << "the error names the entry";
  }
  EXPECT_FALSE(fs::exists(root / "data" / "runs" / "2" / "evil"));
  EXPECT_FALSE(fs::exists("/tmp/evil-" + std::to_string(::getpid())));
  ASSERT_THAT(put(2, attempt, 0, good), HasSubstr(" 200"));
  EXPECT_THAT(release("sha256:" + std::string(64, '0')), HasSubstr("damaged on the way"));
  const std::string half(700 << 10, 'z');
  ASSERT_THAT(put(2, attempt, 0, half), HasSubstr("{\"offset\":716800}"));
  const std::string over = put(2, attempt, half.size(), half);
  EXPECT_THAT(over, HasSubstr(" 413"));
  EXPECT_THAT(over, HasSubstr("workspace limit of 1048576 bytes"));
  // The layer's source a link out of the workspace (to the server's /etc): nothing of it is released.
  const std::string link = OneFileTar("dist", "", "/etc");
  ASSERT_THAT(put(2, attempt, 0, link), HasSubstr(" 200"));
  EXPECT_THAT(release("sha256:" + Sha256Hex(link)), HasSubstr("releasing"));
  std::vector<store::Run> ended = pool.WaitFinal(2);
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[1].state, store::RunState::kFailed);
  EXPECT_THAT(ended[1].message, HasSubstr("layer src dist: "));
  EXPECT_THAT(ended[1].message, HasSubstr("is a symbolic link to the absolute path /etc, outside"));
  auto releases = pool.db->ListReleases("web", 10);
  ASSERT_TRUE(releases.ok());
  EXPECT_EQ(releases->size(), 1u) << "run 2 was released";
}

// Regression: with no workspace limit (`--max-workspace 0`, documented as "no limit"), the server
// refused every part of a worker's upload as beyond a limit of 0 bytes, so no run built on a
// worker could be released.
TEST(CiServerWorkers, WithoutAWorkspaceLimitAWorkersRunIsReleased) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string image = host + "/worker-nolimit-" + std::to_string(::getpid()) + "/web";
  const std::string config = MakeConfigRepo(root, image);
  std::string sha = MakeReleasingRepo(root / "repo", image, config);
  std::string url = "file://" + (root / "repo").string();
  std::vector<std::string> flags = NoLocalWorkers();
  flags.insert(flags.end(), {"--config-repo", config, "--insecure-registry", host, "--max-workspace", "0"});
  Srv srv(root, url, flags);
  WorkerPool pool(root, srv);
  pool.Start("w0");
  ASSERT_THAT(PostPush(srv, PushPayload(url, sha), "nolimit-1"), HasSubstr(" 201"));
  std::vector<store::Run> runs = pool.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message << "\n" << pool.Log(runs[0]);
  ExpectReleasedOnce(*pool.db, root / "config.git", host, image.substr(host.size() + 1), sha, 1);
}

// Two runs at a time on one worker (--concurrency 2), each under its own lease; and a step's
// output that is not UTF-8 is stored byte for byte, as the server's own workers store it.
TEST(CiServerWorkers, AWorkerBuildsTwoRunsAtOnceAndKeepsTheBytesOfTheirLogs) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string pipeline = "shell: sh\nsteps:\n  print: {run: 'printf \"caf\\351 \\377\\376 ok\\n\"; sleep 2'}\n";
  std::string sha = MakeRepo(root / "repo", pipeline);
  MakeRepo(root / "local", pipeline);
  std::string url = "file://" + (root / "repo").string(), local = "file://" + (root / "local").string();
  const std::string other = PushPayload(url, Commit(root / "repo", "f.txt", "b", "b"));
  // The server's own worker builds `local` only (labels), the remote worker `repo` only.
  Srv srv(root, url,
          {"--workers", "1", "--untrusted-workers", "0", "--run-lease", "3s", "--labels", "where=server", "--repo", local,
           "--repo-policy", url + " labels=where=remote", "--repo-policy", local + " labels=where=server"});
  WorkerPool pool(root, srv);
  pool.Start("w0", {"--concurrency", "2", "--labels", "where=remote"});
  std::string b = other;
  b.replace(b.find("refs/heads/main"), 15, "refs/heads/b");
  ASSERT_THAT(PostPush(srv, PushPayload(url, sha), "c1"), HasSubstr(" 201"));
  ASSERT_THAT(PostPush(srv, b, "c2"), HasSubstr(" 201"));
  std::string l = PushPayload(local, RunChecked({"git", "-C", (root / "local").string(), "rev-parse", "HEAD"})->out.substr(0, 40));
  ASSERT_THAT(PostPush(srv, l, "c3"), HasSubstr(" 201"));
  bool overlapped = false;
  for (int i = 0; i < 100 && !overlapped; ++i) {
    auto r1 = pool.db->GetRun(1), r2 = pool.db->GetRun(2);
    overlapped = r1.ok() && r2.ok() && !r1->steps.empty() && !r2->steps.empty() &&
                 r1->steps[0].state == store::RunState::kRunning && r2->steps[0].state == store::RunState::kRunning;
    if (!overlapped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(overlapped) << "the worker did not build its two runs at once";
  std::vector<store::Run> runs = pool.WaitFinal(3);
  ASSERT_EQ(runs.size(), 3u);
  auto bytes = [&](int64_t id) {
    std::string out;
    auto chunks = pool.db->ReadLog(id, "print", 0, 100);
    if (chunks.ok()) for (const auto& c : *chunks) out += c.data;
    return out;
  };
  for (const auto& run : runs) EXPECT_EQ(run.state, store::RunState::kSucceeded) << run.id << ": " << run.message;
  EXPECT_EQ(runs[0].worker, "robot:pool/w0");
  EXPECT_EQ(runs[1].worker, "robot:pool/w0");
  EXPECT_EQ(runs[2].worker, "gantry") << "the server's own worker";
  EXPECT_EQ(bytes(1), "caf\xe9 \xff\xfe ok\n");
  EXPECT_EQ(bytes(1), bytes(3)) << "a remote worker's log differs from the server's of the same step";
}

// Per-project worker pools: a worker whose token is for team-a builds team-a's runs only, though a
// run of team-b waits in the queue (older); the token reaches no route of that run once another
// worker holds it (404, even naming the holder's worker name and attempt); team-b's worker
// builds team-b's runs.
TEST(CiServerWorkers, AProjectsWorkerTokenBuildsOnlyThatProjectsRunsAndReachesNoOther) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string pipeline = "shell: sh\nsteps:\n  build: {run: 'echo built'}\n";
  const std::string sha_a = MakeRepo(root / "a", pipeline), sha_b = MakeRepo(root / "b", pipeline);
  const std::string url_a = "file://" + (root / "a").string(), url_b = "file://" + (root / "b").string();
  std::vector<std::string> flags = NoLocalWorkers();
  flags.insert(flags.end(), {"--repo", url_b, "--repo-policy", url_a + " project=team-a", "--repo-policy", url_b + " project=team-b"});
  Srv srv(root, url_a, flags);
  WorkerPool pool_a(root, srv, "pool-a", "team-a");
  WorkerPool pool_b(root, srv, "pool-b", "team-b");
  pool_a.Start("a0");
  ASSERT_THAT(PostPush(srv, PushPayload(url_b, sha_b), "b-1"), HasSubstr(" 201"));
  ASSERT_THAT(PostPush(srv, PushPayload(url_a, sha_a), "a-1"), HasSubstr(" 201"));
  std::optional<store::Run> built;
  for (int i = 0; i < 300 && !built; ++i) {
    auto run = pool_a.db->GetRun(2);
    if (run.ok() && store::IsFinal(run->state)) built = *run;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(built.has_value()) << "team-a's run was not built";
  EXPECT_EQ(built->state, store::RunState::kSucceeded) << built->message;
  EXPECT_EQ(built->worker, "robot:pool-a/a0");
  EXPECT_EQ(built->project, "team-a");
  auto waiting = pool_a.db->GetRun(1);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->state, store::RunState::kQueued) << "team-a's worker took team-b's run: " << waiting->worker;

  // Run 1 (team-b) claimed by the test as team-b's worker "probe"; team-a's token gets 404 on
  // each route of it.
  const std::string bearer_a = "Authorization: Bearer " + pool_a.token, bearer_b = "Authorization: Bearer " + pool_b.token;
  ASSERT_THAT(Post(srv.Url() + "/api/v1/worker/claim", R"({"name":"probe","wait_seconds":5})", {bearer_b}), HasSubstr("\"id\":1"));
  const std::string as_probe = R"({"name":"probe","attempt":1})";
  for (const char* route : {"lease", "steps", "logs", "commit", "finish", "release"}) {
    EXPECT_THAT(Post(fmt::format("{}/api/v1/worker/runs/1/{}", srv.Url(), route), as_probe, {bearer_a}), HasSubstr(" 404")) << route;
  }
  EXPECT_THAT(Send("PUT", srv.Url() + "/api/v1/worker/runs/1/workspace?name=probe&attempt=1&offset=0", "x", {bearer_a}),
              HasSubstr(" 404"));
  EXPECT_THAT(Post(srv.Url() + "/api/v1/worker/runs/1/finish",
                   R"({"name":"probe","attempt":1,"state":"succeeded","message":"built by the probe"})", {bearer_b}),
              HasSubstr(" 204"))
      << "team-b's worker could not write its own run";

  pool_b.Start("b0");
  ASSERT_THAT(PostPush(srv, PushPayload(url_b, Commit(root / "b", "f.txt", "2")), "b-2"), HasSubstr(" 201"));
  std::vector<store::Run> runs = pool_b.WaitFinal(3);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].message, "built by the probe");
  EXPECT_EQ(runs[2].state, store::RunState::kSucceeded) << runs[2].message;
  EXPECT_EQ(runs[2].worker, "robot:pool-b/b0");
  EXPECT_EQ(runs[2].project, "team-b");
}

// The parts of a worker's workspace upload sent round-robin over three replicas (as a load
// balancer without stickiness spreads them), the release asked of the third: the parts are in the
// store, so any replica takes any part, and the run is released once (one image, one config
// commit, one ledger release); nothing of the upload is left in the store.
TEST(CiServerReplicas, AWorkersUploadSpreadOverTheReplicasIsReleasedOnce) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string repository = "upload-rr-" + std::to_string(::getpid()) + "/web";
  const std::string data(3000, 'd');
  ReleasedApp app(root, host + "/" + repository, "build: {run: 'echo built'}", data);
  std::vector<std::string> flags = app.Flags(host, false);
  flags.insert(flags.end(), {"--workers", "0", "--untrusted-workers", "0"});
  Replicas r(root, app.url, 3, flags);
  const std::string bearer = "Authorization: Bearer " + WorkerToken(*r.srv[0]);
  ASSERT_THAT(PostPush(*r.srv[0], PushPayload(app.url, app.sha), "rr-1"), HasSubstr(" 201"));
  ASSERT_THAT(Post(r.srv[1]->Url() + "/api/v1/worker/claim", R"({"name":"probe","wait_seconds":10})", {bearer}),
              HasSubstr("\"id\":1"));
  const std::string tar = OneFileTar("data/blob", data);
  constexpr size_t kPart = 1024;
  for (size_t offset = 0, i = 0; offset < tar.size(); offset += kPart, ++i) {
    const Srv& to = *r.srv[i % 3];
    const std::string url = fmt::format("{}/api/v1/worker/runs/1/workspace?name=probe&attempt=1&offset={}", to.Url(), offset);
    EXPECT_THAT(Send("PUT", url, tar.substr(offset, kPart), {bearer, "Content-Type: application/x-tar"}),
                HasSubstr(fmt::format("{{\"offset\":{}}}", std::min(offset + kPart, tar.size()))))
        << "part " << i << " to replica " << i % 3;
    // The run's lease (3 s) is the probe's to renew until the release takes it over.
    ASSERT_THAT(Post(to.Url() + "/api/v1/worker/runs/1/lease", R"({"name":"probe","attempt":1})", {bearer}), HasSubstr("renewed"));
  }
  EXPECT_THAT(Post(r.srv[2]->Url() + "/api/v1/worker/runs/1/release",
                   fmt::format(R"({{"name":"probe","attempt":1,"message":"built","digest":"sha256:{}"}})", Sha256Hex(tar)),
                   {bearer, "Content-Type: application/json"}),
              HasSubstr("releasing"));
  std::vector<store::Run> runs = r.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 1);
  ExpectReleasedOnce(*r.store, root / "config.git", host, repository, app.sha, 1);
  auto left = r.store->ReadRunUpload(1, 1, 0);
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(*left, "") << "the upload was left in the store";
}

// A connection to `srv` (a file descriptor), to send HTTP requests by hand.
int ConnectTo(const Srv& srv) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(srv.port)));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  GANTRY_CHECK(fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Sends the POST request of `path` with `body` and `headers` on `fd`; returns the response's head.
std::string PostRaw(int fd, const std::string& path, const std::string& body, const std::vector<std::string>& headers) {
  std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  GANTRY_CHECK(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  std::string head;
  char c = 0;
  while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
  return head;
}

// A worker that goes away while its long poll waits holds up no run: its poll claims nothing once
// the server notices the connection closed, and a run claimed for it in that moment is queued
// again at once (ci::Server's WorkerUnclaim, unit-tested in server_test.cc), not after the
// claim's lease (60 s here). Either way another worker builds it at once.
TEST(CiServerWorkers, AWorkerThatWentAwayWhileItsLongPollWaitedHoldsUpNoRun) {
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  build: {run: 'echo built'}\n");
  const std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, {"--workers", "0", "--untrusted-workers", "0", "--run-lease", "60s"});
  WorkerPool pool(root, srv);
  const std::string body = PushPayload(url, sha);
  const int hook = ConnectTo(srv), ghost = ConnectTo(srv);
  // The long poll has begun (its head is sent) when the ghost leaves.
  ASSERT_THAT(PostRaw(ghost, "/api/v1/worker/claim", R"({"name":"ghost","wait_seconds":30})", {"Authorization: Bearer " + pool.token}),
              HasSubstr(" 200 "));
  ::close(ghost);
  const auto pushed = std::chrono::steady_clock::now();
  EXPECT_THAT(PostRaw(hook, "/webhook", body,
                      {"X-GitHub-Event: push", "X-GitHub-Delivery: ghost-1", "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kSecret, body)}),
              HasSubstr(" 201 "));
  ::close(hook);
  pool.Start("w0");
  std::vector<store::Run> runs = pool.WaitFinal(1);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_LE(runs[0].attempt, 2) << "attempt 1 the ghost's at most";
  EXPECT_EQ(runs[0].worker, "robot:pool/w0");
  EXPECT_LT(std::chrono::steady_clock::now() - pushed, std::chrono::seconds(30)) << "the run waited for the ghost's lease";
}

}  // namespace
}  // namespace gantry

namespace gantry {
namespace {

// ---- Process and resource faults of servers and workers (docs/reliability.md) ----------------
// The schedule comes from GANTRY_FAULT_SEED (testenv::FaultSeed); each scenario records a FAULT
// line (testenv::RecordFault) that bench/faults/run.sh tabulates.

// kill -9 of `gantry server` at a RunPoint of a released run chosen by the seed, a seeded 0-300 ms
// after the store shows it reached. With `replicas`, two replicas on PostgreSQL and the holder is killed (the
// other takes the run over after its 3 s lease); else one server on SQLite, started again on the
// same data. The registry is reached through Toxiproxy, throttled to 256 KB/s when the point is
// the image push (a 1 MiB layer: about 4 s). From outside Gantry: the run ends succeeded, attempt
// 2, within 120 s of the kill; the ledger holds one release, the config repository one commit of
// the run, the registry one tag whose image pulls whole (ExpectReleasedOnce).
void KillServerAtASeededPointOfARun(bool replicas, const std::string& scenario) {
  // Seeds 1, 2, 3... take the points in turn (the replicas two ahead): three seeds cover all four.
  const auto point = static_cast<RunPoint>((testenv::FaultSeed() - 1 + (replicas ? 2 : 0)) % 4);
  std::mt19937_64 random(testenv::FaultSeed());
  const auto delay = std::chrono::milliseconds(random() % 300);
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  testenv::Toxiproxy& toxi = testenv::SharedToxiproxy();
  const std::string proxy = "registry-" + scenario;
  auto proxied = toxi.CreateProxy(proxy, host);
  ASSERT_TRUE(proxied.ok()) << proxied.status().ToString();
  const std::string repository = fmt::format("{}-{}-{}/web", scenario, ::getpid(), testenv::FaultSeed());
  ReleasedApp app(root, *proxied + "/" + repository, "build: {run: 'echo started; sleep 2; echo finished'}",
                  testenv::RandomBytes(1 << 20, random));
  if (point == RunPoint::kImagePush) {
    ASSERT_TRUE(toxi.AddToxic(proxy, {.name = "slow", .type = "bandwidth", .stream = "upstream",
                                      .attributes = {{"rate", 256}}}).ok());
  }
  // From the config commit on, the release waits for the silent agent: the kill comes before its end.
  const std::vector<std::string> flags = app.Flags(*proxied, point >= RunPoint::kConfigCommit);
  std::unique_ptr<Replicas> r;
  std::unique_ptr<Srv> srv;
  std::unique_ptr<store::Store> sqlite;
  if (replicas) {
    r = std::make_unique<Replicas>(root, app.url, 2, flags);
  } else {
    srv = std::make_unique<Srv>(root, app.url, flags);
    auto opened = store::Open("sqlite:" + (root / "gantry.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    sqlite = std::move(opened).value();
  }
  store::Store& db = replicas ? *r->store : *sqlite;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_THAT(PostPush(replicas ? *r->srv[0] : *srv, PushPayload(app.url, app.sha), "kill-1"), HasSubstr(" 201"));
  const char* where = kRunPoints[static_cast<int>(point)];
  ASSERT_TRUE(WaitRunPoint(db, 1, point)) << "run 1 never reached " << where;
  std::this_thread::sleep_for(delay);  // the schedule, not a wait for a condition
  const std::optional<RunPoint> reached = ReachedRunPoint(db, 1);  // where the kill falls
  const auto killed = std::chrono::steady_clock::now();
  if (replicas) {
    r->KillHolderOf(1);
  } else {
    srv->proc->Signal(SIGKILL);
    srv->proc->Stop(std::chrono::milliseconds(100));
  }
  const char* at = reached ? kRunPoints[static_cast<int>(*reached)] : "start";
  std::cout << "  killed at " << where << " + " << delay.count() << " ms, in " << at << std::endl;
  ASSERT_TRUE(toxi.Reset().ok());
  if (!replicas) srv = std::make_unique<Srv>(root, app.url, flags);  // the same data, started again
  std::vector<store::Run> runs = FinalRuns(db, 1, std::chrono::seconds(120));
  const double recover_s = testenv::Seconds(std::chrono::steady_clock::now() - killed);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2) << runs[0].message;
  ExpectReleasedOnce(db, root / "config.git", host, repository, app.sha, 1);
  EXPECT_TRUE(toxi.DeleteProxy(proxy).ok());
  testenv::RecordFault(scenario, fmt::format("killed-in-{}-{}", at, store::Name(runs[0].state)),
                       testenv::Seconds(killed - start), recover_s);
}

TEST(CiServerFaults, ServerOnSqliteKilledAtASeededPointOfARunReleasesItOnceAfterRestart) {
  KillServerAtASeededPointOfARun(false, "server-kill9-seeded-sqlite");
}

// Full campaign only: CI has the fixed-point replica kills above (CiServerReplicas).
TEST(CiServerFaults, ReplicaOnPostgresKilledAtASeededPointOfARunIsReleasedOnceByTheOther) {
  if (!testenv::FullFaults()) GTEST_SKIP() << "runs in the full fault campaign (GANTRY_FAULTS_FULL=1, bench/faults/run.sh)";
  KillServerAtASeededPointOfARun(true, "server-kill9-seeded-replicas");
}

// The stored log of step `step` of run `id`, every chunk in order.
std::string StoredLog(store::Store& db, int64_t id, const std::string& step) {
  std::string text;
  for (int64_t seq = 0;;) {
    auto chunks = db.ReadLog(id, step, seq);
    if (!chunks.ok() || chunks->empty()) return text;
    for (const auto& c : *chunks) text += c.data;
    seq = chunks->back().seq + 1;
  }
}

// kill -9 of one of three `gantry worker`s at a seeded point of the run it builds: while its step
// prints (120 lines over about 1.5 s, its log chunks uploaded as they come) or while it is quiet
// after, a seeded 0-1000 ms after the store shows the first chunk or the last line. The run is
// claimed again after the 3 s lease and succeeds once (attempt 2, another worker). Its stored log
// is what docs/scaling.md promises of an attempt after another: the dead attempt's output up to
// the kill (a prefix of the step's output, nothing after it, nothing twice), then the whole output
// of the attempt that succeeded.
TEST(CiServerFaults, AWorkerKilledAtASeededPointIsReplacedAndTheLogHoldsAPrefixThenOneWholeAttempt) {
  std::mt19937_64 random(testenv::FaultSeed() + 1);
  const bool printing = random() % 2 == 0;
  const auto delay = std::chrono::milliseconds(random() % 1000);
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  std::string sha = MakeRepo(root / "repo",
                             "shell: sh\nsteps:\n  print: {run: 'i=1; while [ $i -le 120 ]; do echo \"line $i of the step\"; "
                             "i=$((i+1)); sleep 0.01; done; sleep 1; echo finished'}\n");
  std::string whole;
  for (int i = 1; i <= 120; ++i) whole += fmt::format("line {} of the step\n", i);
  whole += "finished\n";
  std::string url = "file://" + (root / "repo").string();
  Srv srv(root, url, NoLocalWorkers());
  WorkerPool pool(root, srv);
  for (const char* name : {"w0", "w1", "w2"}) pool.Start(name);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_THAT(PostPush(srv, PushPayload(url, sha), "wk-1"), HasSubstr(" 201"));
  store::Run run = pool.WaitStepRunning(1);
  ASSERT_EQ(run.id, 1) << "run 1 never started its step";
  const std::string mark = printing ? "line " : "line 120 ";
  bool reached = false;
  for (int i = 0; i < 600 && !reached; ++i) {
    reached = StoredLog(*pool.db, 1, "print").find(mark) != std::string::npos;
    if (!reached) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(reached) << "the log of run 1 never showed " << mark;
  std::this_thread::sleep_for(delay);  // the schedule
  const std::string victim = run.worker.substr(run.worker.find('/') + 1);
  ASSERT_TRUE(pool.workers.contains(victim)) << run.worker;
  const auto killed = std::chrono::steady_clock::now();
  pool.workers.at(victim).Signal(SIGKILL);
  pool.workers.at(victim).Stop(std::chrono::milliseconds(100));
  std::vector<store::Run> runs = pool.WaitFinal(1);
  const double recover_s = testenv::Seconds(std::chrono::steady_clock::now() - killed);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2);
  EXPECT_NE(runs[0].worker, run.worker);
  const std::string log = StoredLog(*pool.db, 1, "print");
  ASSERT_TRUE(log.ends_with(whole)) << "the attempt that succeeded did not store its whole output last:\n" << log;
  const std::string before = log.substr(0, log.size() - whole.size());
  EXPECT_TRUE(whole.starts_with(before)) << "the dead attempt stored more than its output up to the kill:\n" << before;
  testenv::RecordFault("worker-kill9-seeded", printing ? "killed-printing-rebuilt-once" : "killed-quiet-rebuilt-once",
                       testenv::Seconds(killed - start), recover_s);
}

// A server whose data directory and SQLite store are on `disk`, building a repository whose step
// prints 120 lines of 190 bytes over about 1.5 s and then "finished" (`whole`); run 1 of it is
// pushed, and the fixture is ready once the step's first line is stored.
struct PrintingOnDisk {
  explicit PrintingOnDisk(const testenv::SmallDisk& disk, const std::string& delivery)
      : db_url("sqlite:" + (disk.dir() / "gantry.db").string()) {
    // Steps run as uid 65533 when the server is root: they must reach the workspaces on the disk.
    fs::permissions(disk.dir().parent_path(), fs::perms::others_exec, fs::perm_options::add);
    const fs::path root = tmp.path();
    sha = MakeRepo(root / "repo", "shell: sh\nsteps:\n  print: {run: 'i=1; while [ $i -le 120 ]; do "
                                  "echo \"line $i $(printf %0180d 0)\"; i=$((i+1)); sleep 0.01; done; echo finished'}\n");
    for (int i = 1; i <= 120; ++i) whole += fmt::format("line {} {:0180d}\n", i, 0);
    whole += "finished\n";
    url = "file://" + (root / "repo").string();
    srv = std::make_unique<Srv>(root, url, std::vector<std::string>{"--data-dir", (disk.dir() / "data").string(), "--store",
                                                                    db_url, "--run-lease", "3s"});
    pushed = PostPush(*srv, PushPayload(url, sha), delivery);
    for (int i = 0; i < 600 && Logs(*srv, 1).find("line 1 ") == std::string::npos; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // Whether run 1 was acknowledged and its step's first line stored.
  bool Printing() { return pushed.find(" 201") != std::string::npos && Logs(*srv, 1).find("line 1 ") != std::string::npos; }

  testenv::ScopedTempDir tmp;
  const std::string db_url;
  std::string sha, url, whole, pushed;
  std::unique_ptr<Srv> srv;
};

// The server's data directory and SQLite store on a 16 MB tmpfs (root only: testenv::SmallDisk),
// filled a seeded 0-500 ms after a step's first output is stored, while it prints (120 lines of
// 190 bytes over about 1.5 s); space comes back once the server has failed to record the run's end.
// Meanwhile the server keeps running and answering, logs why ("database or disk is full"), and the
// run is not recorded as ended (nothing can be written): it is paused, not lost. Once space
// returns, the run (acknowledged by the webhook's 201) is taken over after its 3 s lease and
// succeeds (attempt 2); its stored log is the first attempt's output up to the full disk (a prefix)
// and then the whole output, as after any takeover; a later push's run succeeds.
TEST(CiServerFaults, AFullDataDiskWhileAStepPrintsPausesTheRunUntilSpaceReturns) {
  testenv::SmallDisk disk("16m");
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  std::mt19937_64 random(testenv::FaultSeed() + 2);
  PrintingOnDisk p(disk, "full-1");
  ASSERT_TRUE(p.Printing()) << "run 1 was not acknowledged, or its step's log never showed: " << p.pushed;
  Srv& srv = *p.srv;
  const fs::path root = p.tmp.path();
  const std::string &url = p.url, &db_url = p.db_url, &whole = p.whole;
  std::this_thread::sleep_for(std::chrono::milliseconds(random() % 500));  // the schedule
  const auto full = std::chrono::steady_clock::now();
  fs::path filler = disk.Fill();
  const std::string refused = "but the store did not record it";  // the run's end
  for (int i = 0; i < 300 && ReadFile(srv.log).value_or("").find(refused) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string log = ReadFile(srv.log).value_or("");
  EXPECT_THAT(log, HasSubstr(refused)) << "the step did not end within 30 s";
  EXPECT_THAT(log, HasSubstr("database or disk is full")) << log;
  EXPECT_TRUE(srv.proc->Running()) << "the server died on a full disk: " << log;
  EXPECT_EQ(Field(srv, 1, "state"), "running") << "a run was recorded as ended on a full disk";

  fs::remove(filler);
  const auto freed = std::chrono::steady_clock::now();
  auto opened = store::Open(db_url);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<store::Store> db = std::move(opened).value();
  std::vector<store::Run> runs = FinalRuns(*db, 1, std::chrono::seconds(60));
  const double recover_s = testenv::Seconds(std::chrono::steady_clock::now() - freed);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message;
  EXPECT_EQ(runs[0].attempt, 2) << runs[0].message;
  const std::string stored = StoredLog(*db, 1, "print");
  ASSERT_TRUE(stored.ends_with(whole)) << "the attempt that succeeded did not store its whole output last:\n" << stored;
  EXPECT_TRUE(whole.starts_with(stored.substr(0, stored.size() - whole.size())))
      << "the log of the first attempt is not a prefix of its output:\n" << stored;
  std::string later = PushPayload(url, Commit(root / "repo", "later.txt", "later", "later"));
  later.replace(later.find("refs/heads/main"), 15, "refs/heads/later");
  ASSERT_THAT(PostPush(srv, later, "full-2"), HasSubstr(" 201"));
  EXPECT_EQ(WaitState(srv.Url(), 2, {"succeeded", "failed", "cancelled"}), "succeeded") << Field(srv, 2, "message");
  EXPECT_TRUE(srv.proc->Running());
  testenv::RecordFault("server-log-enospc", runs[0].state == store::RunState::kSucceeded ? "paused-then-rebuilt" : "unexpected",
                       testenv::Seconds(freed - full), recover_s);
}

// Regression: a log chunk the store refused was dropped with a warning, and a run could end
// succeeded with lines missing from its log. The disk is full for 300 ms while the step prints
// and has room again before the step ends: the refused chunks are sent again, and the run (its
// first attempt) succeeds with every line of the step's output in its stored log.
TEST(CiServerFaults, ADiskFullForAMomentWhileAStepPrintsLosesNoLineOfItsLog) {
  testenv::SmallDisk disk("16m");
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  PrintingOnDisk p(disk, "moment-1");
  ASSERT_TRUE(p.Printing()) << "run 1 was not acknowledged, or its step's log never showed: " << p.pushed;
  Srv& srv = *p.srv;
  const std::string &db_url = p.db_url, &whole = p.whole;
  fs::path filler = disk.Fill();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  fs::remove(filler);
  EXPECT_EQ(WaitState(srv.Url(), 1, {"succeeded", "failed", "cancelled"}), "succeeded") << Field(srv, 1, "message");
  EXPECT_EQ(Field(srv, 1, "attempt"), "1");
  auto opened = store::Open(db_url);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(StoredLog(**opened, 1, "print"), whole);
}

// --- kill -9 of the server during a push-mode deploy (server-kill9-push-deploy) ---

constexpr int kDeployedConfigMaps = 120;  // per environment: an apply long enough to be cut

// Environment `env` of the config repository at `version`: a Deployment running `image`:old, and
// kDeployedConfigMaps ConfigMaps carrying the version; with `gone`, one ConfigMap more that the
// next version drops (its deploy prunes it).
void WriteEnv(const fs::path& seed, const std::string& env, const std::string& image, const std::string& version, bool gone) {
  const fs::path dir = seed / "envs" / env;
  fs::create_directories(dir);
  GANTRY_CHECK(WriteFileAtomic(dir / "web.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
                                                 "  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n"
                                                 "    metadata: {labels: {app: web}}\n    spec:\n      containers:\n"
                                                 "      - name: web\n        image: " + image + ":old\n").ok());
  std::string maps;
  for (int i = 0; i < kDeployedConfigMaps; ++i)
    maps += fmt::format("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{}}}\ndata: {{version: {}, env: {}}}\n", i,
                        version, env);
  GANTRY_CHECK(WriteFileAtomic(dir / "maps.yaml", maps).ok());
  if (gone) {
    GANTRY_CHECK(WriteFileAtomic(dir / "gone.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gone}\n").ok());
  } else {
    fs::remove(dir / "gone.yaml");
  }
}

// Points of a push deploy (dev, then staging after dev's soak) at which the server is killed: while
// dev's target is applying, between the environments (dev healthy and soaking, staging pending),
// while staging's target is applying.
enum class DeployPoint { kDevApply, kBetween, kStagingApply };
constexpr const char* kDeployPoints[] = {"dev-apply", "between-environments", "staging-apply"};
constexpr auto kDevSoak = std::chrono::seconds(6);

// The ledger release of run `run` of app web (nullopt before it is written) and its targets by env.
std::optional<std::pair<store::Release, std::map<std::string, store::Target>>> DeployOf(store::Store& db, int64_t run) {
  auto releases = db.ListReleases("web", 10);
  if (!releases.ok()) return std::nullopt;
  for (const auto& r : *releases) {
    if (r.run_id != std::optional<int64_t>(run)) continue;
    std::map<std::string, store::Target> by_env;
    if (auto targets = db.ListTargets(r.id); targets.ok())
      for (const auto& t : *targets) by_env[t.env] = t;
    return std::make_pair(r, by_env);
  }
  return std::nullopt;
}

bool Reached(store::Store& db, int64_t run, DeployPoint point) {
  auto deploy = DeployOf(db, run);
  if (!deploy) return false;
  auto state = [&](const std::string& env) {
    auto it = deploy->second.find(env);
    return it == deploy->second.end() ? std::optional<store::TargetState>() : it->second.state;
  };
  switch (point) {
    case DeployPoint::kDevApply: return state("dev") == store::TargetState::kApplying;
    case DeployPoint::kBetween: return state("dev") == store::TargetState::kHealthy;
    case DeployPoint::kStagingApply: return state("staging") == store::TargetState::kApplying;
  }
  return false;
}

// The ConfigMaps cm-* of namespace default: name → (uid, data.version).
std::map<std::string, std::pair<std::string, std::string>> ConfigMaps(kube::Client& cluster) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  auto listed = cluster.List("v1", "ConfigMap", "default");
  GANTRY_CHECK(listed.ok());
  for (const auto& cm : listed->items) {
    const std::string name = value::StringAt(&cm, {"metadata", "name"});
    if (name.starts_with("cm-"))
      out[name] = {value::StringAt(&cm, {"metadata", "uid"}), value::StringAt(&cm, {"data", "version"})};
  }
  return out;
}

// When the field manager "gantry" last changed `object` (the apiserver's managedFields, to the second).
std::optional<std::chrono::system_clock::time_point> AppliedAt(const value::Value& object) {
  if (const value::Value* fields = object.Find({"metadata", "managedFields"}); fields != nullptr)
    for (const auto& f : fields->items())
      if (value::StringAt(&f, {"manager"}) == "gantry") return ParseRfc3339(value::StringAt(&f, {"time"}));
  return std::nullopt;
}

// kill -9 of `gantry server` (SQLite) while it deploys run 2's release in push mode to two real
// clusters, dev then staging, with a 6 s soak of dev between them; run 1 deployed the version
// before, whose ConfigMap `gone` run 2's config drops. The point is chosen by the seed (seed 1:
// between the environments), the kill a seeded 0-300 ms after the ledger shows it; the server
// is started again on the same data. From outside Gantry, once run 2 has ended (succeeded, attempt
// 2, within 120 s): the ledger holds one release per run, run 2's with one target per environment,
// both healthy, one deploy and one soak recorded, and dev's target not written again when the kill
// came after dev was done; the config repository holds one commit with run 2's trailer, the
// ledger's; on each cluster every ConfigMap is at the new version with the UID it had after run 1
// (none was pruned and made again), `gone` is pruned, the Deployment runs run 2's image; staging
// was applied after dev's soak ended.
// Full campaign only: two clusters, two released runs and the soaks take about 70 s.
TEST(CiServerFaults, ServerKilledDuringAPushDeployResumesItOnceInEveryEnvironment) {
  if (!testenv::FullFaults()) GTEST_SKIP() << "runs in the full fault campaign (GANTRY_FAULTS_FULL=1, bench/faults/run.sh)";
  const auto point = static_cast<DeployPoint>(testenv::FaultSeed() % 3);
  std::mt19937_64 random(testenv::FaultSeed());
  const auto delay = std::chrono::milliseconds(random() % 300);
  testenv::ScopedTempDir tmp;
  fs::path root = tmp.path();
  auto start_cluster = [](const char* name) {
    return std::async(std::launch::async, [name] { return testenv::Server::Start("kube-cluster.sh", {"--name", name, "--nodes", "1"}); });
  };
  auto dev_started = start_cluster("dev"), staging_started = start_cluster("staging");
  const std::string host = testenv::Shared("registry.sh").Get("REGISTRY_HOST");
  const std::string image = fmt::format("{}/push-deploy-{}-{}/web", host, ::getpid(), testenv::FaultSeed());
  // The config repository (envs/dev, envs/staging at v1), pushed to through the clone `seed`.
  const fs::path seed = root / "seed";
  for (const char* env : {"dev", "staging"}) WriteEnv(seed, env, image, "v1", true);
  MakeRepo(seed, "steps: {}\n");
  ASSERT_TRUE(RunChecked({"git", "clone", "-q", "--bare", seed.string(), (root / "config.git").string()}).ok());
  const std::string config = "file://" + (root / "config.git").string();
  MakeRepo(root / "repo", "shell: sh\nsteps:\n  build: {run: 'echo built'}\nimage:\n  repository: " + image +
                              "\n  layers: [data]\nrelease:\n  repo: " + config + "\n  path: envs\n  app: web\n");
  const std::string url = "file://" + (root / "repo").string();
  fs::create_directories(root / "repo" / "data");
  const std::string sha1 = Commit(root / "repo", "data/blob", "one\n");
  auto dev = dev_started.get();
  auto staging = staging_started.get();
  ASSERT_TRUE(dev.ok() && staging.ok()) << (dev.ok() ? staging.status() : dev.status()).ToString();
  std::string clusters;
  for (const auto& [name, c] : {std::pair{"dev", &*dev}, std::pair{"staging", &*staging}}) {
    clusters += fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {0}}}\n"
                            "spec: {{kubeconfig: {1}, environment: {0}}}\n---\n", name, (*c)->Get("KUBECONFIG"));
  }
  clusters += fmt::format("apiVersion: gantry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: dev}}\n"
                          "spec: {{gates: {{soak: {}s}}}}\n---\napiVersion: gantry.dev/v1alpha1\nkind: Environment\n"
                          "metadata: {{name: staging}}\nspec: {{after: dev}}\n", kDevSoak.count());
  fs::create_directories(root / "deliver");
  ASSERT_TRUE(WriteFileAtomic(root / "deliver" / "clusters.yaml", clusters).ok());
  std::vector<std::unique_ptr<kube::Client>> clients;
  for (const auto* c : {&*dev, &*staging}) {
    auto rest = kube::LoadConfig({.paths = {(*c)->Get("KUBECONFIG")}});
    ASSERT_TRUE(rest.ok()) << rest.status().ToString();
    clients.push_back(std::move(kube::NewHttpClient(*rest)).value());
  }
  const std::vector<std::string> flags = {"--config-repo", config, "--insecure-registry", host, "--deliver-config",
                                          (root / "deliver").string(), "--health-timeout", "60s"};
  auto srv = std::make_unique<Srv>(root, url, flags);
  auto opened = store::Open("sqlite:" + (root / "gantry.db").string());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store::Store& db = **opened;

  // Run 1 deploys v1 everywhere.
  ASSERT_THAT(PostPush(*srv, PushPayload(url, sha1), "push-deploy-1"), HasSubstr(" 201"));
  std::vector<store::Run> runs = FinalRuns(db, 1, std::chrono::seconds(120));
  ASSERT_EQ(runs.size(), 1u);
  ASSERT_EQ(runs[0].state, store::RunState::kSucceeded) << runs[0].message << "\n" << Logs(*srv, 1);
  std::vector<std::map<std::string, std::pair<std::string, std::string>>> before;
  for (auto& k : clients) {
    before.push_back(ConfigMaps(*k));
    ASSERT_EQ(before.back().size(), static_cast<size_t>(kDeployedConfigMaps));
    ASSERT_TRUE(k->Get({"v1", "ConfigMap", "default", "gone"}).ok());
  }

  // v2 of the config: every ConfigMap changed, `gone` dropped. Then run 2, killed during its deploy.
  ProcessOptions git;
  git.cwd = seed.string();
  git.inherit_env = true;
  git.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  ASSERT_TRUE(RunChecked({"git", "pull", "-q", "--ff-only", (root / "config.git").string(), "main"}, git).ok());
  for (const char* env : {"dev", "staging"}) WriteEnv(seed, env, image, "v2", false);
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"git", "add", "-A"}, {"git", "commit", "-q", "-m", "v2"}, {"git", "push", "-q", (root / "config.git").string(), "main"}})
    ASSERT_TRUE(RunChecked(argv, git).ok());
  const std::string sha2 = Commit(root / "repo", "data/blob", "two\n");
  const auto start = std::chrono::steady_clock::now();
  ASSERT_THAT(PostPush(*srv, PushPayload(url, sha2), "push-deploy-2"), HasSubstr(" 201"));
  const char* where = kDeployPoints[static_cast<int>(point)];
  bool reached = false;
  for (auto end = start + std::chrono::seconds(90); !reached && std::chrono::steady_clock::now() < end;) {
    reached = Reached(db, 2, point);
    if (!reached) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(reached) << "run 2's deploy never reached " << where << "\n" << Logs(*srv, 2);
  std::this_thread::sleep_for(delay);  // the schedule, not a wait for a condition
  const auto killed = std::chrono::steady_clock::now();
  srv->proc->Signal(SIGKILL);
  srv->proc->Stop(std::chrono::milliseconds(100));
  // Where the kill fell, from the ledger and the clusters.
  auto at_kill = DeployOf(db, 2);
  ASSERT_TRUE(at_kill.has_value());
  std::string in = "dev-apply";
  if (at_kill->second["dev"].state == store::TargetState::kHealthy)
    in = at_kill->second["staging"].state == store::TargetState::kPending ? "between-environments" : "staging-apply";
  int applied = 0;
  for (const auto& [name, cm] : ConfigMaps(*clients[in == "staging-apply" ? 1 : 0])) applied += cm.second == "v2";
  std::cout << "  killed at " << where << " + " << delay.count() << " ms, in " << in << " (" << applied << " of "
            << kDeployedConfigMaps << " ConfigMaps applied there)" << std::endl;
  srv = std::make_unique<Srv>(root, url, flags);  // the same data, started again
  runs = FinalRuns(db, 2, std::chrono::seconds(120));
  const double recover_s = testenv::Seconds(std::chrono::steady_clock::now() - killed);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].state, store::RunState::kSucceeded) << runs[1].message << "\n" << Logs(*srv, 2);
  EXPECT_EQ(runs[1].attempt, 2) << runs[1].message;

  // The ledger: one release per run; run 2's deployed once to each environment.
  auto releases = db.ListReleases("web", 10);
  ASSERT_TRUE(releases.ok());
  EXPECT_EQ(releases->size(), 2u) << "a release was written twice";
  auto deployed = DeployOf(db, 2);
  ASSERT_TRUE(deployed.has_value());
  const store::Release& release = deployed->first;
  ASSERT_EQ(deployed->second.size(), 2u) << "an environment has no target";
  for (const auto& [env, t] : deployed->second) {
    EXPECT_EQ(t.state, store::TargetState::kHealthy) << env << ": " << t.message;
    EXPECT_EQ(t.cluster, env);
  }
  if (in != "dev-apply") {
    EXPECT_EQ(deployed->second["dev"].version, at_kill->second["dev"].version) << "dev was deployed again";
  }
  const std::string object = fmt::format("app/web release/{}", release.id);
  auto starts = db.ListAudit({.action = "deploy"});
  ASSERT_TRUE(starts.ok());
  EXPECT_EQ(std::count_if(starts->begin(), starts->end(), [&](const store::AuditEntry& a) { return a.object == object; }), 1)
      << "the deploy was started twice";
  auto soaks = db.ListAudit({.action = "soak"});
  ASSERT_TRUE(soaks.ok());
  std::vector<store::AuditEntry> soak;
  for (const auto& a : *soaks)
    if (a.object == fmt::format("app/web env/dev release/{}", release.id)) soak.push_back(a);
  ASSERT_EQ(soak.size(), 1u) << "dev's soak was not recorded once";

  // Git: one config commit of run 2, the ledger's.
  auto log = RunChecked({"git", "--git-dir", (root / "config.git").string(), "log", "--format=%H %B", "main"});
  ASSERT_TRUE(log.ok());
  size_t trailers = 0;
  for (size_t at = log->out.find("Gantry-Release: run 2 of"); at != std::string::npos; at = log->out.find("Gantry-Release: run 2 of", at + 1))
    ++trailers;
  EXPECT_EQ(trailers, 1u) << log->out;
  EXPECT_EQ(log->out.substr(0, 40), release.config_revision);

  // The clusters: everything at v2, nothing pruned and made again, `gone` pruned, the new image;
  // staging applied after dev's soak.
  for (size_t i = 0; i < clients.size(); ++i) {
    const char* env = i == 0 ? "dev" : "staging";
    auto now = ConfigMaps(*clients[i]);
    ASSERT_EQ(now.size(), before[i].size()) << env;
    int changed_uid = 0, old_version = 0;
    for (const auto& [name, cm] : now) {
      changed_uid += cm.first != before[i][name].first;
      old_version += cm.second != "v2";
    }
    EXPECT_EQ(changed_uid, 0) << env << ": ConfigMaps pruned and made again";
    EXPECT_EQ(old_version, 0) << env << ": ConfigMaps not at v2";
    EXPECT_EQ(clients[i]->Get({"v1", "ConfigMap", "default", "gone"}).status().code(), Code::kNotFound) << env;
    auto web = clients[i]->Get({"apps/v1", "Deployment", "default", "web"});
    ASSERT_TRUE(web.ok()) << web.status().ToString();
    const value::Value* containers = web->Find({"spec", "template", "spec", "containers"});
    ASSERT_TRUE(containers != nullptr && containers->size() == 1u) << value::ToJson(*web);
    EXPECT_EQ(value::StringAt(&containers->items()[0], {"image"}), image + ":" + sha2.substr(0, 12)) << env;
  }
  auto staged = clients[1]->Get({"v1", "ConfigMap", "default", "cm-0"});
  ASSERT_TRUE(staged.ok());
  auto staged_at = AppliedAt(*staged);
  ASSERT_TRUE(staged_at.has_value());
  EXPECT_GE(*staged_at, soak[0].at + kDevSoak - std::chrono::seconds(1)) << "staging was applied before dev's soak ended";
  testenv::RecordFault("server-kill9-push-deploy", fmt::format("killed-in-{}-{}", in, store::Name(runs[1].state)),
                       testenv::Seconds(killed - start), recover_s);
}

}  // namespace
}  // namespace gantry
