// The pure parts of ci/server: which repository a webhook is about, provider pinning, policies;
// and cancellation of a started server's runs at every moment (SQLite, a file:// repository made
// with git, an executor whose steps wait to be cancelled).

#include "ci/server.h"

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"
#include "test/fakes/forwarding_store.h"

namespace gantry::ci {
namespace {

using webhook::Provider;

TEST(ServerRepoTest, LocatesHostAndPathOfEveryUrlForm) {
  EXPECT_EQ(LocateRepo("https://Git.Example:8443/org/app.git/"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("ssh://git@git.example/org/app.git"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("git@git.example:org/app.git"), (RepoLocation{"git.example", "org/app"}));
  EXPECT_EQ(LocateRepo("file:///srv/git/app"), (RepoLocation{"", "srv/git/app"}));
}

TEST(ServerRepoTest, SameRepoComparesTheHostNotOnlyThePath) {
  const std::string configured = "https://git.example/org/app";
  webhook::Event e;
  e.repo_full_name = "org/app";
  e.clone_url = "https://evil.example/org/app";
  EXPECT_FALSE(SameRepo(configured, e)) << "another host's org/app";
  e.clone_url = "https://git.example/org/app.git";
  EXPECT_TRUE(SameRepo(configured, e));
  e.clone_url = "https://git.example/org/app-fork";
  EXPECT_FALSE(SameRepo(configured, e));
  // No clone URL (Bitbucket): the full name decides, but a host the event names must match.
  e.clone_url.clear();
  e.web_url = "https://evil.example/org/app";
  EXPECT_FALSE(SameRepo(configured, e));
  e.web_url = "https://git.example/org/app";
  EXPECT_TRUE(SameRepo(configured, e));
  e.repo_full_name = "g/app";
  EXPECT_FALSE(SameRepo(configured, e)) << "the end of a path segment is not the repository";
}

TEST(ServerProviderTest, GitLabsPlainTokenOnlyWhenPinned) {
  RepoPolicy any;
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", any, Provider::kGitHub).ok());
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", any, Provider::kGitea).ok());
  Status s = CheckProvider("https://git.example/org/app", any, Provider::kGitLab);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("provider=gitlab"), std::string::npos) << s.message();
  // Detected from the host.
  EXPECT_EQ(CheckProvider("https://github.com/org/app", any, Provider::kGitLab).code(), Code::kPermissionDenied);
  EXPECT_TRUE(CheckProvider("https://github.com/org/app", any, Provider::kGitHub).ok());
  EXPECT_EQ(CheckProvider("https://github.com/org/app", any, Provider::kGitea).code(), Code::kPermissionDenied);
  EXPECT_TRUE(CheckProvider("https://gitlab.com/org/app", any, Provider::kGitLab).ok());
  // Pinned.
  RepoPolicy gitlab{.provider = Provider::kGitLab};
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", gitlab, Provider::kGitLab).ok());
  EXPECT_EQ(CheckProvider("https://git.example/org/app", gitlab, Provider::kGitHub).code(), Code::kPermissionDenied);
  RepoPolicy gitea{.provider = Provider::kGitea};
  EXPECT_TRUE(CheckProvider("https://git.example/org/app", gitea, Provider::kForgejo).ok());
}

TEST(ServerPolicyTest, RepoPolicyChangesOnlyTheKeysItNames) {
  RepoPolicy defaults{.require_approval = true, .trust_pull_requests = true, .untrusted_network = false};
  auto p = ParseRepoPolicy("https://git.example/org/app approval=none network=on provider=gitea", defaults);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->first, "https://git.example/org/app");
  EXPECT_FALSE(p->second.require_approval);
  EXPECT_TRUE(p->second.untrusted_network);
  EXPECT_TRUE(p->second.trust_pull_requests);
  EXPECT_EQ(p->second.provider, Provider::kGitea);
  EXPECT_FALSE(ParseRepoPolicy("https://x/y approval=maybe", defaults).ok());
  EXPECT_FALSE(ParseRepoPolicy("https://x/y colour=red", defaults).ok());
  EXPECT_FALSE(ParseRepoPolicy("", defaults).ok());
}

namespace fs = std::filesystem;
using store::RunState;
using ::testing::HasSubstr;

// Its steps succeed at once (`wait` false) or run until they are cancelled.
class WaitingExecutor : public Executor {
 public:
  explicit WaitingExecutor(bool wait) : wait_(wait) {}
  Result<StepOutcome> Run(const StepRequest&, const OutputFn&, const std::atomic<bool>& cancel) override {
    ++started;
    while (wait_ && !cancel.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return StepOutcome{.exit_code = 0, .cancelled = cancel.load()};
  }
  std::string WorkspacePath(const fs::path& host) const override { return host.string(); }
  std::string ArtifactsPath(const fs::path& host) const override { return host.string(); }
  std::string_view name() const override { return "waiting"; }
  bool Isolates() const override { return true; }
  std::atomic<int> started{0};

 private:
  const bool wait_;
};

// Holds up the final write of every run's state until Go(), saying when one waits (Wait()).
class HoldingStore : public fakes::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Status UpdateRun(int64_t id, RunState state, std::string_view message = {}, int attempt = 0) override {
    if (store::IsFinal(state)) {
      std::unique_lock lock(mu_);
      held_ = id;
      cv_.notify_all();
      cv_.wait(lock, [&] { return go_; });
    }
    return ForwardingStore::UpdateRun(id, state, message, attempt);
  }
  // The run whose final state waits to be written; 0 when none did within 10 s.
  int64_t Wait() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return held_ != 0; });
    return held_;
  }
  void Go() {
    std::lock_guard lock(mu_);
    go_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t held_ = 0;
  bool go_ = false;
};

class ServerCancelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ci_server_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "repo");
    ASSERT_NO_FATAL_FAILURE(Git({"init", "-q", "-b", "main"}));
    ASSERT_NO_FATAL_FAILURE(CommitPipeline("shell: sh\nsteps:\n  build: {run: make}\n", "init"));
    url_ = "file://" + (dir_ / "repo").string();
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    if (holding_) holding_->Go();
    if (server_) server_->Stop();
    server_.reset();
    holding_.reset();
    executor_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  void Git(std::vector<std::string> args) {
    ProcessOptions po;
    po.cwd = (dir_ / "repo").string();
    po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"},
              {"GIT_COMMITTER_EMAIL", "t@e"}, {"PATH", "/usr/bin:/bin"}, {"HOME", dir_.string()}};
    args.insert(args.begin(), "git");
    auto r = RunChecked(args, po);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // Commits .gantry/pipeline.yaml holding `text` to main.
  void CommitPipeline(const std::string& text, const std::string& message = "pipeline") {
    fs::create_directories(dir_ / "repo" / ".gantry");
    ASSERT_TRUE(WriteFileAtomic(dir_ / "repo" / ".gantry" / "pipeline.yaml", text).ok());
    ASSERT_NO_FATAL_FAILURE(Git({"add", "-A"}));
    ASSERT_NO_FATAL_FAILURE(Git({"commit", "-q", "-m", message}));
  }

  // A server on store_ (through a HoldingStore with `hold`) whose steps wait to be cancelled or not,
  // releasing its runs with `release` when set.
  void Start(bool wait, bool hold = false, std::function<Status(const SucceededRun&)> release = nullptr) {
    executor_ = std::make_unique<WaitingExecutor>(wait);
    if (hold) holding_ = std::make_unique<HoldingStore>(*store_);
    ServerOptions o{.repos = {url_}, .data_dir = dir_ / "data", .after_success = std::move(release)};
    o.git.allow_file = true;
    server_ = std::make_unique<Server>(hold ? *holding_ : *store_, *executor_, std::move(o));
    ASSERT_TRUE(server_->Start().ok());
  }
  // A queued push of main (no commit named: the tip is built).
  int64_t Queue(int n) {
    auto id = store_->CreateRun({.repo = url_, .pipeline = url_, .ref = "refs/heads/main", .delivery_id = fmt::format("d{}", n)});
    GANTRY_CHECK(id.ok());
    return *id;
  }
  // The run's state once it is not `from` (or after 20 s).
  RunState StateAfter(int64_t id, RunState from) {
    RunState s = from;
    for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
         s == from && std::chrono::steady_clock::now() < end;) {
      auto run = store_->GetRun(id);
      GANTRY_CHECK(run.ok());
      s = run->state;
    }
    return s;
  }

  fs::path dir_;
  std::string url_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<HoldingStore> holding_;
  std::unique_ptr<WaitingExecutor> executor_;
  std::unique_ptr<Server> server_;  // stopped first: the others outlive its threads
};

// The flake of CiServer.RestApiNeedsTheBearerTokenWhenOneIsSet: a run claimed but still fetching
// and checking out was not yet known as running here, so a cancel was refused as "not running here
// (another server has it)". Each run is cancelled the moment the store says it is running.
TEST_F(ServerCancelTest, ACancelWhileTheClaimedRunIsPreparedIsHonouredNotTakenForAnotherServers) {
  Start(/*wait=*/true);
  for (int i = 0; i < 10; ++i) {
    int64_t id = Queue(i);
    ASSERT_EQ(StateAfter(id, RunState::kQueued), RunState::kRunning);
    auto cancelled = server_->Cancel(id);
    ASSERT_TRUE(cancelled.ok()) << "run " << id << ": " << cancelled.status().ToString();
    EXPECT_EQ(*cancelled, Cancelled::kStopping);
    EXPECT_EQ(StateAfter(id, RunState::kRunning), RunState::kCancelled) << "run " << id;
  }
}

// After its last step ended, a run was not known here either until its final state was written:
// a cancel then is too late, and says so.
TEST_F(ServerCancelTest, ACancelAfterTheStepsEndedIsTooLateNotTakenForAnotherServers) {
  Start(/*wait=*/false, /*hold=*/true);
  int64_t id = Queue(0);
  ASSERT_EQ(holding_->Wait(), id) << "the run's final state was never written";
  auto cancelled = server_->Cancel(id);
  holding_->Go();
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(cancelled.status().message(), HasSubstr("already ending as succeeded: too late"));
  EXPECT_EQ(StateAfter(id, RunState::kRunning), RunState::kSucceeded);
  EXPECT_EQ(executor_->started.load(), 1);
}

// Stop() stopped only runs whose steps had started: one still being prepared then ran its steps to
// the end while Stop() waited (here: for ever).
TEST_F(ServerCancelTest, StopWhileARunIsPreparedEndsItCancelled) {
  Start(/*wait=*/true);
  int64_t id = Queue(0);
  ASSERT_EQ(StateAfter(id, RunState::kQueued), RunState::kRunning);
  server_->Stop();
  auto run = store_->GetRun(id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->state, RunState::kCancelled);
}

// The release flow shows the message and author of a release's commit, read from the mirror its
// run fetched.
TEST_F(ServerCancelTest, CommitMessageAndAuthorComeFromTheMirrorARunFetched) {
  Start(/*wait=*/false);
  int64_t id = Queue(0);
  RunState state = StateAfter(id, RunState::kQueued);
  if (state == RunState::kRunning) state = StateAfter(id, RunState::kRunning);
  ASSERT_EQ(state, RunState::kSucceeded);
  ProcessOptions po;
  po.cwd = (dir_ / "repo").string();
  po.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", dir_.string()}};
  auto head = RunChecked({"git", "rev-parse", "HEAD"}, po);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  std::string commit = head->out;
  while (!commit.empty() && commit.back() == '\n') commit.pop_back();
  ASSERT_EQ(commit.size(), 40u);
  auto info = server_->Commit(url_, commit);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->message, "init\n");
  EXPECT_EQ(info->author.name, "t");
  EXPECT_EQ(info->author.email, "t@e");
  EXPECT_GT(info->time, 1'500'000'000);
  EXPECT_EQ(server_->Commit("https://git.example/other", commit).status().code(), Code::kNotFound);
  EXPECT_EQ(server_->Commit(url_, std::string(40, 'f')).status().code(), Code::kNotFound);
}

// A run the store says another server (or a remote worker) claimed is cancelled through the store:
// its claimer learns it at its next renewal.
TEST_F(ServerCancelTest, ARunAnotherServerClaimedIsCancelledAtItsNextRenewal) {
  int64_t id = Queue(0);
  auto claimed = store_->ClaimNextQueuedRun("other-server", std::nullopt);
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  Start(/*wait=*/true);
  auto renewed = store_->RenewRunLease(id, "other-server", 1, store::kDefaultRunLease);
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(*renewed, store::Renewal::kRenewed);
  auto cancelled = server_->Cancel(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().ToString();
  EXPECT_EQ(*cancelled, Cancelled::kRequested);
  renewed = store_->RenewRunLease(id, "other-server", 1, store::kDefaultRunLease);
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(*renewed, store::Renewal::kCancelRequested);
}

// A release that a server died in is done again by the next attempt, which prints the same first
// line: it was stored as chunk 0 of the stage by both, so the store took the second for a retry of
// the first and left it out (the steps had this bug too: FirstLogSeq).
TEST_F(ServerCancelTest, AReleaseDoneAgainByALaterAttemptKeepsEveryLineItPrinted) {
  ASSERT_NO_FATAL_FAILURE(CommitPipeline("shell: sh\nsteps:\n  build: {run: make}\n"
                                         "image:\n  repository: registry.test/web\n  layers: [dist]\n"));
  int64_t id = Queue(0);
  auto claimed = store_->ClaimNextQueuedRun("dead-server", std::nullopt, std::chrono::milliseconds(1));
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  ASSERT_TRUE(store_->AppendLogChunk(id, "image", 0, "pushing image\n").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto expired = store_->MarkExpiredInterrupted();
  ASSERT_TRUE(expired.ok() && expired->size() == 1);
  ASSERT_TRUE(store_->UpdateRun(id, RunState::kQueued, "re-queued").ok());
  Start(/*wait=*/false, /*hold=*/false, [](const SucceededRun& r) {
    r.log("image", "pushing image");
    r.log("image", "pushed");
    return OkStatus();
  });
  RunState state = RunState::kQueued;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
       !store::IsFinal(state) && std::chrono::steady_clock::now() < end;) {
    state = StateAfter(id, state);
  }
  ASSERT_EQ(state, RunState::kSucceeded);
  auto chunks = store_->ReadLog(id, "image", 0);
  ASSERT_TRUE(chunks.ok()) << chunks.status().ToString();
  std::string log;
  for (const auto& c : *chunks) log += c.data;
  EXPECT_EQ(log, "pushing image\npushing image\npushed\n");
}

// A remote worker's long-polled claim looks no more once its claimer went away; a run whose claim
// never reached its worker is queued again at once, unless it was taken over meanwhile.
TEST_F(ServerCancelTest, AClaimerThatWentAwayClaimsNothingAndAClaimThatNeverReachedItIsGivenBack) {
  executor_ = std::make_unique<WaitingExecutor>(false);
  ServerOptions o{.repos = {url_}, .data_dir = dir_ / "data", .workers = 0, .untrusted_workers = 0};
  o.git.allow_file = true;
  server_ = std::make_unique<Server>(*store_, *executor_, std::move(o));
  ASSERT_TRUE(server_->Start().ok());
  // Nothing queued: the claimer leaves after its third look, and the poll ends there.
  int asked = 0;
  const auto begun = std::chrono::steady_clock::now();
  auto none = server_->WorkerClaim("gone", {}, false, std::chrono::seconds(30), std::nullopt, [&] { return ++asked < 3; });
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(asked, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - begun, std::chrono::seconds(10)) << "waited out the poll";
  // A run queued for a claimer already gone is not claimed for it.
  const int64_t id = Queue(0);
  none = server_->WorkerClaim("gone", {}, false, std::chrono::seconds(30), std::nullopt, [] { return false; });
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value()) << "claimed for a claimer that went away";
  auto run = store_->GetRun(id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->state, RunState::kQueued);
  EXPECT_EQ(run->attempt, 0);

  auto job = server_->WorkerClaim("w1", {}, false, std::chrono::seconds(0), std::nullopt, [] { return true; });
  ASSERT_TRUE(job.ok() && job->has_value());
  ASSERT_EQ((*job)->run.id, id);
  ASSERT_EQ((*job)->run.attempt, 1);
  EXPECT_EQ(server_->WorkerUnclaim(id, "w2", 1).code(), Code::kAborted) << "another worker's claim given back";
  ASSERT_TRUE(server_->WorkerUnclaim(id, "w1", 1).ok());
  run = store_->GetRun(id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->state, RunState::kQueued);
  EXPECT_THAT(run->message, HasSubstr("the claim of attempt 1 never reached w1"));
  EXPECT_EQ(server_->WorkerUnclaim(id, "w1", 1).code(), Code::kAborted) << "given back twice";

  job = server_->WorkerClaim("w2", {}, false, std::chrono::seconds(0));
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->run.attempt, 2);
  EXPECT_EQ(server_->WorkerUnclaim(id, "w1", 1).code(), Code::kAborted) << "a stale claim given back after a takeover";
  run = store_->GetRun(id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->state, RunState::kRunning);
  EXPECT_EQ(run->worker, "w2");
}

}  // namespace
}  // namespace gantry::ci
