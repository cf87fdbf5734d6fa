// The hostile-pipeline corpus (test/hostile, one pipeline per attack) against the real `gantry
// server` with its bubblewrap sandbox on. The host holds a canary file outside everything the
// server owns and the server a canary secret no hostile pipeline is entitled to; the pipelines know
// the host's paths, the server's PID and port (written into them, as an attacker may guess them).
// Every run is queued at once (forks' pull requests approved), then each test waits for its case
// and checks: the attack was tried (its PROBED: line) and refused or contained (no ESCAPED: line,
// what the case says), the canary file is untouched, no log holds the canary or the secret, and the
// server still answers. The last test runs a benign pipeline and searches the data directory and
// the database for the canaries.
//
// A sandbox that does not work here fails the suite (with the server's reason): never skipped.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "test/env/testenv.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHookSecret[] = "hostile-hook-secret-0123";
constexpr char kApiToken[] = "hostile-api-token-0123456789";
constexpr uint64_t kLogCap = 64u << 20;  // RunOptions::max_log_bytes, the server's default

std::string Binary() {
  const char* b = std::getenv("GANTRY_BINARY");
  return b != nullptr ? b : "gantry";
}

fs::path CorpusDir() {
  return fs::path(testenv::SourceDir()) / "test" / "hostile";
}

std::string RandomHex() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

ProcessOptions GitOptions(const fs::path& dir) {
  ProcessOptions po;
  po.cwd = dir.string();
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  return po;
}

// Commits .gantry/pipeline.yaml = `pipeline` on `branch` of the repository at `dir` (made if
// missing); returns the commit.
std::string CommitPipeline(const fs::path& dir, const std::string& branch, const std::string& pipeline) {
  ProcessOptions po = GitOptions(dir);
  if (!fs::exists(dir / ".git")) {
    fs::create_directories(dir);
    GANTRY_CHECK(RunChecked({"git", "init", "-q", "-b", "main"}, po).ok());
  } else {
    GANTRY_CHECK(RunChecked({"git", "checkout", "-q", "-B", branch, "main"}, po).ok());
  }
  fs::create_directories(dir / ".gantry");
  GANTRY_CHECK(WriteFileAtomic(dir / ".gantry" / "pipeline.yaml", pipeline).ok());
  GANTRY_CHECK(RunChecked({"git", "add", "-A"}, po).ok());
  GANTRY_CHECK(RunChecked({"git", "commit", "-q", "--allow-empty", "-m", branch}, po).ok());
  auto head = RunChecked({"git", "rev-parse", "HEAD"}, po);
  GANTRY_CHECK(head.ok());
  return head->out.substr(0, 40);
}

// curl's body followed by " HTTP_CODE".
std::string Curl(const std::string& method, const std::string& url, const std::string& body,
                 const std::vector<std::string>& headers) {
  std::vector<std::string> argv = {"curl", "-s", "-o", "-", "-w", " %{http_code}", "-X", method};
  if (method == "POST") argv.insert(argv.end(), {"--data-binary", "@-"});
  for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
  argv.push_back(url);
  ProcessOptions po;
  po.stdin_data = body;
  po.inherit_env = true;
  po.max_output_bytes = 4 * kLogCap;  // a whole capped log, and what a cap that fails lets through
  auto r = Run(argv, po);
  GANTRY_CHECK(r.ok());
  return r->out;
}

const std::string kBearer = std::string("Authorization: Bearer ") + kApiToken;

// A case of the corpus: its file, and whether a fork's pull request sends it (its comment opens
// "# Tries (a fork's pull request"), else a push to a branch of its own.
struct Case {
  std::string file;
  bool fork = false;
  std::string pipeline;  // rendered
  int run = 0;
};

// Everything the tests share: the canaries, the server, the runs of the corpus.
struct World {
  testenv::ScopedTempDir tmp;
  fs::path root{tmp.path()};
  fs::path canary_dir = root / "host-canary";
  fs::path canary_file = canary_dir / "secret.txt";
  std::string canary_content = "CANARY-FILE-" + RandomHex();
  fs::path secrets_file = root / "secrets.env";
  std::string secret = "CANARY-SECRET-" + RandomHex();
  std::string abstract_name = "gantry-hostile-" + RandomHex();
  int abstract_fd = -1;
  fs::path data = root / "data";
  fs::path repo = root / "repo";
  std::string url = "file://" + repo.string();
  std::optional<Process> server;
  std::string server_log, port, error;
  std::map<std::string, Case> cases;  // by file name
  int deliveries = 0;

  ~World() {
    if (server && server->Running()) server->Stop();
    if (abstract_fd >= 0) ::close(abstract_fd);
  }

  std::string Url() const { return "http://127.0.0.1:" + port; }
  std::string Get(const std::string& path) const { return Curl("GET", Url() + path, "", {kBearer}); }
  std::string Body(const std::string& path) const {
    std::string out = Get(path);
    return out.substr(0, out.rfind(' '));
  }
  std::string Logs(int run) const { return Body("/api/runs/" + std::to_string(run) + "/logs"); }
  std::string Field(int run, const char* key) const {
    auto v = value::ParseJson(Body("/api/runs/" + std::to_string(run)));
    if (!v.ok() || v->Get(key) == nullptr) return "";
    return v->Get(key)->IsString() ? std::string(v->Get(key)->AsString()) : value::ToJson(*v->Get(key));
  }
  // The run's final state, or "timeout" after `limit`.
  std::string WaitFinal(int run, std::chrono::seconds limit = std::chrono::seconds(150)) const {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
      std::string s = Field(run, "state");
      if (s == "succeeded" || s == "failed" || s == "cancelled") return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return "timeout";
  }
  std::string Webhook(const std::string& event, const std::string& body) {
    return Curl("POST", Url() + "/webhook", body,
                {"X-GitHub-Event: " + event, "X-GitHub-Delivery: hostile-" + std::to_string(++deliveries),
                 "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex(kHookSecret, body)});
  }
  // A push of `sha` to `branch` of the configured repository; returns the run's id (0 if none).
  int Push(const std::string& branch, const std::string& sha) {
    std::string body = R"({"ref":"refs/heads/)" + branch +
                       R"(","before":"0000000000000000000000000000000000000001","after":")" + sha +
                       R"(","repository":{"full_name":"org/app","clone_url":")" + url + R"("},"pusher":{"name":"t"},"commits":[]})";
    return RunId(Webhook("push", body));
  }
  // A pull request from the fork at `fork` (its own repository) against main; approved.
  int ForkPullRequest(const fs::path& fork, int number, const std::string& sha) {
    std::string base = RunChecked({"git", "rev-parse", "main"}, GitOptions(repo))->out.substr(0, 40);
    std::string fork_url = "file://" + fork.string();
    std::string body = R"({"action":"opened","number":)" + std::to_string(number) + R"(,"pull_request":{"number":)" +
                       std::to_string(number) + R"(,"head":{"sha":")" + sha + R"(","ref":"main","repo":{"id":)" +
                       std::to_string(100 + number) + R"(,"full_name":"mallory/app)" + std::to_string(number) +
                       R"(","clone_url":")" + fork_url + R"("}},"base":{"sha":")" + base +
                       R"(","ref":"main","repo":{"id":1,"full_name":"org/app","clone_url":")" + url +
                       R"("}}},"repository":{"id":1,"full_name":"org/app","clone_url":")" + url + R"("}})";
    std::string answer = Webhook("pull_request", body);
    int id = RunId(answer);
    if (id == 0 || answer.find("awaiting_approval") == std::string::npos) {
      ADD_FAILURE() << "a fork's pull request did not await approval: " << answer;
      return id;
    }
    std::string approved = Curl("POST", Url() + "/api/runs/" + std::to_string(id) + "/approve", "", {kBearer});
    if (approved.find(" 200") == std::string::npos) ADD_FAILURE() << "approve " << id << ": " << approved;
    return id;
  }
  static int RunId(const std::string& answer) {
    std::smatch m;
    return std::regex_search(answer, m, std::regex("\"run\":([0-9]+)")) ? std::stoi(m[1]) : 0;
  }

  std::string Render(std::string text) const {
    fs::path mirror;
    for (const auto& e : fs::directory_iterator(data / "mirrors")) mirror = e.path();
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"@CANARY_FILE@", canary_file.string()}, {"@CANARY_DIR@", canary_dir.string()},
             {"@DATA_DIR@", data.string()},           {"@MIRROR@", mirror.string()},
             {"@SERVER_PID@", std::to_string(server->pid())}, {"@PORT@", port},
             {"@ABSTRACT@", abstract_name},           {"@SECRETS_FILE@", secrets_file.string()}}) {
      for (size_t at; (at = text.find(key)) != std::string::npos;) text.replace(at, key.size(), value);
    }
    return text;
  }

  // Starts the server (sandbox on), runs a benign push to success, then queues the whole corpus.
  void SetUp() {
    fs::create_directories(canary_dir);
    GANTRY_CHECK(WriteFileAtomic(canary_file, canary_content).ok());
    GANTRY_CHECK(WriteFileAtomic(secrets_file, "CANARY=" + secret + "\n", 0600).ok());
    abstract_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::copy(abstract_name.begin(), abstract_name.end(), addr.sun_path + 1);
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract_name.size());
    if (abstract_fd < 0 || ::bind(abstract_fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(abstract_fd, 16) != 0) {
      error = fmt::format("abstract socket @{}: {}", abstract_name, std::strerror(errno));
      return;
    }
    std::string main_sha = CommitPipeline(repo, "main", "shell: sh\nsteps:\n  hello: {run: echo benign-ok}\n");

    // Run as root, the server runs steps as uid 65533, which must reach the data directory.
    fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    std::vector<std::string> argv = {Binary(), "server", "--listen", "127.0.0.1:0", "--store",
                                     "sqlite:" + (root / "gantry.db").string(), "--webhook-secret-env", "HOOK",
                                     "--api-token-env", "API_TOKEN", "--repo", url, "--data-dir", data.string(),
                                     "--allow-file-repos", "--secrets-file", secrets_file.string(), "--workers", "2",
                                     "--untrusted-workers", "2", "--untrusted-timeout", "90s"};
    ProcessOptions po;
    po.inherit_env = true;
    po.env = {{"HOOK", kHookSecret}, {"API_TOKEN", kApiToken}};
    server_log = (root / "server.log").string();
    auto p = Process::Start(argv, po, server_log);
    GANTRY_CHECK(p.ok());
    server.emplace(std::move(p).value());
    for (int i = 0; i < 200 && port.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto text = ReadFile(server_log);
      std::smatch m;
      std::string t = text.ok() ? *text : "";
      if (std::regex_search(t, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
      if (port.empty() && !server->Running()) {
        error = "gantry server (with its bubblewrap sandbox) did not start:\n" + t;
        return;
      }
    }
    if (port.empty()) {
      error = "gantry server did not listen within 20s:\n" + ReadFile(server_log).value_or("");
      return;
    }
    int baseline = Push("main", main_sha);
    if (std::string s = WaitFinal(baseline); s != "succeeded") {
      error = fmt::format("the benign baseline run {} is {} (the sandbox must work here):\n{}\n{}\nserver log:\n{}", baseline, s,
                          Field(baseline, "message"), Logs(baseline), ReadFile(server_log).value_or(""));
      return;
    }

    int fork_number = 0;
    for (const auto& entry : fs::directory_iterator(CorpusDir())) {
      if (entry.path().extension() != ".yaml") continue;
      auto text = ReadFile(entry.path());
      GANTRY_CHECK(text.ok());
      Case c;
      c.file = entry.path().filename().string();
      c.fork = text->find("# Tries (a fork's pull request") != std::string::npos;
      c.pipeline = Render(*text);
      cases[c.file] = std::move(c);
    }
    for (auto& [file, c] : cases) {
      std::string name = file.substr(0, file.size() - 5);
      if (c.fork) {
        fs::path fork = root / ("fork-" + name);
        c.run = ForkPullRequest(fork, ++fork_number, CommitPipeline(fork, "main", c.pipeline));
      } else {
        c.run = Push("hostile-" + name, CommitPipeline(repo, "hostile-" + name, c.pipeline));
      }
    }
  }
};

World* world = nullptr;

class CiHostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World();
    world->SetUp();
  }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }

  void SetUp() override { ASSERT_TRUE(world->error.empty()) << world->error; }

  // Waits for the case's run; returns its final state. Checks what every case must leave intact.
  std::string Finish(const std::string& file) {
    auto it = world->cases.find(file);
    if (it == world->cases.end()) {
      ADD_FAILURE() << "test/hostile/" << file << " is missing";
      return "";
    }
    const Case& c = it->second;
    EXPECT_GT(c.run, 0) << file << ": no run was queued";
    if (c.run == 0) return "";
    std::string state = world->WaitFinal(c.run);
    EXPECT_NE(state, "timeout") << file << ": run " << c.run << " did not end";
    logs_ = world->Logs(c.run);
    EXPECT_THAT(logs_, Not(HasSubstr("ESCAPED:"))) << file << ": the attack succeeded:\n" << logs_.substr(0, 20000);
    EXPECT_THAT(logs_, Not(HasSubstr("CANARY-FILE-"))) << file << ": the canary file's content is in the log";
    EXPECT_THAT(logs_, Not(HasSubstr(world->secret))) << file << ": the canary secret is in the log";
    ExpectCanaryIntact(file);
    EXPECT_THAT(world->Get("/api/runs"), HasSubstr(" 200")) << file << ": the server stopped answering";
    EXPECT_TRUE(world->server->Running()) << file << ": the server died";
    if (c.fork) {
      EXPECT_EQ(world->Field(c.run, "trusted"), "false") << file;
    }
    return state;
  }

  static void ExpectCanaryIntact(const std::string& after) {
    EXPECT_EQ(ReadFile(world->canary_file).value_or("<unreadable>"), world->canary_content)
        << "after " << after << ": the canary file changed";
    std::vector<std::string> entries;
    for (const auto& e : fs::directory_iterator(world->canary_dir)) entries.push_back(e.path().filename().string());
    EXPECT_THAT(entries, ::testing::ElementsAre("secret.txt")) << "after " << after << ": files appeared beside the canary";
  }

  // Regular files (never following a link) under `dir` holding `needle`.
  static std::vector<std::string> FilesHolding(const fs::path& dir, const std::string& needle) {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
      auto text = ReadFile(it->path(), 1u << 30);
      if (text.ok() && text->find(needle) != std::string::npos) out.push_back(it->path().string());
    }
    return out;
  }

  std::string logs_;
};

TEST_F(CiHostile, ReadCanaryThroughHostPathsAndProc) {
  EXPECT_EQ(Finish("01-read-canary.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:read-canary"));
}

TEST_F(CiHostile, InheritedDescriptorsAreNone) {
  EXPECT_EQ(Finish("02-inherited-descriptors.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:inherited-descriptors"));
}

TEST_F(CiHostile, LdPreloadInEnvFailsTheRunAtItsLineAndColumnAndNothingRuns) {
  const std::string file = "03-ld-preload.yaml";
  EXPECT_EQ(Finish(file), "failed");
  const std::string& text = world->cases[file].pipeline;
  size_t at = text.find("LD_PRELOAD:");
  ASSERT_NE(at, std::string::npos);
  size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
  size_t column = at - (text.rfind('\n', at) + 1) + 1;
  EXPECT_THAT(world->Field(world->cases[file].run, "message"),
              HasSubstr(fmt::format(".gantry/pipeline.yaml:{}:{}: LD_PRELOAD is refused in env:", line, column)));
  EXPECT_EQ(logs_, "") << "a step ran";
}

TEST_F(CiHostile, SymlinkEscapesThroughCachesAndArtifacts) {
  Finish("04-symlink-caches-artifacts.yaml");
  EXPECT_THAT(logs_, HasSubstr("is a symbolic link")) << "the restore through x -> the canary's directory was not refused:\n" << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:symlink-race")) << logs_;
  EXPECT_THAT(FilesHolding(world->data, world->canary_content), ::testing::IsEmpty())
      << "the canary file was copied into the data directory";
}

TEST_F(CiHostile, ForkBombIsContained) {
  std::string state = Finish("05-fork-bomb.yaml");
  EXPECT_THAT(state, ::testing::AnyOf("succeeded", "failed"));
  EXPECT_THAT(logs_, HasSubstr("process creation(s) refused")) << logs_;
}

TEST_F(CiHostile, HugeLogIsCappedAndTheStepRunsToItsEnd) {
  EXPECT_EQ(Finish("06-huge-log.yaml"), "succeeded") << logs_.substr(logs_.size() > 2000 ? logs_.size() - 2000 : 0);
  EXPECT_LE(logs_.size(), kLogCap + (1u << 20)) << "the stored log is not bounded by the run's cap";
  EXPECT_THAT(logs_, HasSubstr(fmt::format("gantry: log truncated at {} bytes", kLogCap)))
      << "the stored log has " << logs_.size() << " bytes, ending: " << logs_.substr(logs_.size() > 300 ? logs_.size() - 300 : 0);
}

TEST_F(CiHostile, ForkCannotReachAnAbstractUnixSocketOfTheHost) {
  EXPECT_EQ(Finish("07-abstract-socket.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:abstract-socket connect:")) << logs_;
  int accepted = ::accept4(world->abstract_fd, nullptr, nullptr, SOCK_CLOEXEC);
  int err = errno;
  if (accepted >= 0) ::close(accepted);
  EXPECT_LT(accepted, 0) << "the host's abstract socket accepted a connection";
  EXPECT_THAT(err, ::testing::AnyOf(EAGAIN, EWOULDBLOCK));
}

TEST_F(CiHostile, PtraceAndSignalsDoNotReachTheServer) {
  EXPECT_EQ(Finish("08-ptrace-signals.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:ptrace-signals"));
}

TEST_F(CiHostile, MirrorHooksCannotBeWritten) {
  fs::path mirror;
  for (const auto& e : fs::directory_iterator(world->data / "mirrors")) mirror = e.path();
  auto listing = [&] {
    std::set<std::string> names;
    for (const fs::path& d : {mirror / "hooks", mirror / ".git" / "hooks"}) {
      std::error_code ec;
      for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator(); ++it) names.insert(it->path().string());
    }
    return names;
  };
  auto before = listing();
  auto config = ReadFile(mirror / "config").value_or("");
  EXPECT_EQ(Finish("09-mirror-hooks.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:mirror-hooks"));
  // The run itself may have fetched into the mirror: nothing of it may be a hook.
  EXPECT_EQ(listing(), before) << "a hook appeared in the mirror " << mirror;
  EXPECT_EQ(ReadFile(mirror / "config").value_or(""), config);
  EXPECT_THAT(ReadFile(mirror / "config").value_or(""), Not(HasSubstr("hooksPath")));
}

TEST_F(CiHostile, ForkHasNoNetworkToTheServersPort) {
  EXPECT_EQ(Finish("10-fork-network.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("gantry: network off for this run (untrusted)"));
  EXPECT_THAT(logs_, HasSubstr("PROBED:fork-network connect:")) << logs_;
}

TEST_F(CiHostile, ForkAskingForTheSecretHasItWithheld) {
  EXPECT_EQ(Finish("11-fork-secret.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("gantry: secret CANARY withheld"));
  EXPECT_THAT(logs_, HasSubstr("PROBED:fork-secret"));
}

TEST_F(CiHostile, KernelSurfacesAreClosed) {
  EXPECT_EQ(Finish("12-kernel-surfaces.yaml"), "succeeded") << logs_;
  EXPECT_THAT(logs_, HasSubstr("PROBED:kernel-surfaces"));
}

// Runs last (gtest keeps definition order): every case has ended.
TEST_F(CiHostile, AfterTheCorpusTheServerRunsABenignPipelineAndNothingLeaked) {
  EXPECT_EQ(world->cases.size(), 12u) << "test/hostile has a pipeline this test does not check";
  for (const auto& [file, c] : world->cases) {
    if (c.run == 0) continue;
    std::string state = world->WaitFinal(c.run);
    std::string logs = world->Logs(c.run);
    EXPECT_THAT(logs, Not(HasSubstr("ESCAPED:"))) << file;
    EXPECT_THAT(logs, Not(HasSubstr("CANARY-FILE-"))) << file;
    EXPECT_THAT(logs, Not(HasSubstr(world->secret))) << file;
  }
  int benign = world->Push("main", CommitPipeline(world->repo, "main", "shell: sh\nsteps:\n  hello: {run: echo benign-after}\n"));
  ASSERT_GT(benign, 0);
  EXPECT_EQ(world->WaitFinal(benign), "succeeded") << world->Logs(benign);
  EXPECT_THAT(world->Logs(benign), HasSubstr("benign-after"));
  ExpectCanaryIntact("the corpus");
  EXPECT_TRUE(world->server->Running());
  EXPECT_EQ(world->server->Stop(), 0) << ReadFile(world->server_log).value_or("");
  // The database (and its journal), the data directory: neither canary anywhere.
  for (const std::string& needle : {world->canary_content, world->secret}) {
    EXPECT_THAT(FilesHolding(world->data, needle), ::testing::IsEmpty()) << needle;
    for (const auto& e : fs::directory_iterator(world->root)) {
      if (e.path().filename().string().starts_with("gantry.db")) {
        EXPECT_THAT(ReadFile(e.path(), 1u << 30).value_or(""), Not(HasSubstr(needle))) << e.path();
      }
    }
  }
}

}  // namespace
}  // namespace gantry
