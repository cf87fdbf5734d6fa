#include "release/release.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "base/hash.h"
#include "sign/sbom.h"
#include "store/store.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/git_repository.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/registry.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::release {
namespace {

using ::testing::HasSubstr;

ReleaseRequest Request() {
  ReleaseRequest r;
  r.run_id = 42;
  r.repo = "http://git.local/app.git";
  r.commit = "0123456789abcdef0123456789abcdef01234567";
  r.ref = "refs/heads/main";
  return r;
}

TEST(ExpandTag, Placeholders) {
  EXPECT_EQ(*ExpandTag("{short_commit}", Request()), "0123456789ab");
  EXPECT_EQ(*ExpandTag("{branch}-{run}-{commit}", Request()), "main-42-0123456789abcdef0123456789abcdef01234567");
  ReleaseRequest tagged = Request();
  tagged.ref = "refs/tags/v1.2.0";
  EXPECT_EQ(*ExpandTag("{tag}", tagged), "v1.2.0");
}

TEST(ExpandTag, UnknownPlaceholderAndInvalidTagsAreErrors) {
  auto unknown = ExpandTag("{sha}", Request());
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown placeholder {sha}"));
  // A branch with a slash makes no valid tag; the message says which tag and why.
  ReleaseRequest feature = Request();
  feature.ref = "refs/heads/feature/x";
  auto bad = ExpandTag("{branch}", feature);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"feature/x\""));
  // On a tag push {branch} is empty: an empty tag is refused, not pushed as "".
  ReleaseRequest tagged = Request();
  tagged.ref = "refs/tags/v1";
  EXPECT_FALSE(ExpandTag("{branch}", tagged).ok());
}

// A step may leave symlinks in the workspace; a layer must never pick up the server's own files
// through one.
TEST(LayerSource, RefusesPathsWhoseLinksLeaveTheWorkspace) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("gantry-layer-source-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "ws" / "dist");
  fs::create_directories(root / "secret");
  fs::create_symlink(root / "secret", root / "ws" / "escape");  // absolute, outside
  fs::create_symlink("../secret", root / "ws" / "up");          // relative, outside
  fs::create_symlink("dist", root / "ws" / "alias");            // inside: fine

  EXPECT_EQ(*LayerSource(root / "ws", "dist"), root / "ws" / "dist");
  EXPECT_EQ(*LayerSource(root / "ws", "."), root / "ws");
  EXPECT_TRUE(LayerSource(root / "ws", "alias").ok());
  EXPECT_EQ(LayerSource(root / "ws", "escape").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(LayerSource(root / "ws", "escape/x").status().code(), Code::kPermissionDenied);
  auto up = LayerSource(root / "ws", "up");
  EXPECT_EQ(up.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(up.status().message(), HasSubstr("layer src up"));
  auto missing = LayerSource(root / "ws", "build");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("after the steps"));
  fs::remove_all(root);
}

// What a remote worker uploads: the layers' sources at their paths in the workspace (an alias
// inside it is followed, a link out of it refused), and nothing else.
TEST(WorkspaceTrees, AreTheLayersSourcesAtTheirPaths) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("gantry-workspace-trees-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "ws" / "build" / "out");
  fs::create_symlink("build/out", root / "ws" / "dist");
  fs::create_symlink("/etc", root / "ws" / "etc");
  ci::ImageSpec image;
  image.layers = {{.src = "dist/"}, {.src = "./build/out", .dest = "/app"}};
  auto trees = WorkspaceTrees(root / "ws", image);
  ASSERT_TRUE(trees.ok()) << trees.status().ToString();
  ASSERT_EQ(trees->size(), 2u);
  EXPECT_EQ(trees->at(0).root, root / "ws" / "build" / "out");
  EXPECT_EQ(trees->at(0).prefix, "dist");
  EXPECT_EQ(trees->at(1).prefix, "build/out");
  image.layers = {{.src = "."}};
  EXPECT_EQ(WorkspaceTrees(root / "ws", image)->at(0).prefix, "");
  image.layers = {{.src = "etc"}};
  EXPECT_EQ(WorkspaceTrees(root / "ws", image).status().code(), Code::kPermissionDenied);
  fs::remove_all(root);
}

// The payload is what pull agents verify and read: a GitHub push event naming the config repo.
TEST(PushEventPayload, IsAGitHubPushEventAgentsAccept) {
  std::string body = PushEventPayload("http://git.local/config.git", "main", "", std::string(40, 'a'), {"envs/dev/k.yaml"});
  webhook::Headers h{{"x-github-event", "push"},
                     {"x-github-delivery", "d-1"},
                     {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex("s3cret", body)},
                     {"content-type", "application/json"}};
  auto event = webhook::Verify(h, body, {.secret = "s3cret"});
  ASSERT_TRUE(event.ok()) << event.status().message();
  EXPECT_EQ(event->branch, "main");
  EXPECT_EQ(event->after, std::string(40, 'a'));
  EXPECT_EQ(event->clone_url, "http://git.local/config.git");
}

// ---------------------------------------------------------------------------------------------
// Release, on fakes: an in-memory registry and config repository, SQLite in a temp dir.

namespace fs = std::filesystem;

constexpr char kConfigUrl[] = "https://git.example/config.git";
constexpr char kImage[] = "registry.test/team/web";

std::string Manifest(const std::string& tag) {
  return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n  containers:\n"
         "  - name: web\n    image: " + std::string(kImage) + ":" + tag + "\n";
}

class ReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gantry-release-test-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "ws" / "dist");
    std::ofstream(root_ / "ws" / "dist" / "index.html") << "hello\n";
    auto opened = store::Open("sqlite://" + (root_ / "gantry.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
    auto run = store_->CreateRun({.repo = "https://git.example/app.git", .pipeline = "https://git.example/app.git",
                                  .commit = std::string(40, 'a'), .ref = "refs/heads/main"});
    ASSERT_TRUE(run.ok()) << run.status().ToString();
    run_ = *run;
    base_ = repo_->Commit("main", {{"envs/dev/web.yaml", Manifest("old")}, {"README", "config\n"}}, "base");

    services_.store = store_.get();
    services_.registry = &registry_;
    services_.image_dir = root_ / "images";
    services_.config_repos = {kConfigUrl};
    services_.open_config_repo = [this](const std::string& url, const git::OpenOptions&) -> Result<std::shared_ptr<git::Repository>> {
      if (url != kConfigUrl) return NotFoundError("no repository {}", url);
      return std::shared_ptr<git::Repository>(repo_);
    };
    services_.notify = {{.url = "http://agent.test/webhook", .secret = "s3cret"}};
    services_.send_notify = [this](const NotifyTarget& t, const std::string& body, const std::string& delivery) {
      std::lock_guard<std::mutex> lock(mu_);
      notified_.push_back(delivery);
      EXPECT_EQ(t.url, "http://agent.test/webhook");
      EXPECT_TRUE(webhook::Verify({{"x-github-event", "push"}, {"x-github-delivery", delivery},
                                   {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(t.secret, body)},
                                   {"content-type", "application/json"}},
                                  body, {.secret = t.secret})
                      .ok());
      return OkStatus();
    };

    pipeline_.image = ci::ImageSpec{.repository = kImage, .layers = {{.src = "dist", .dest = "/app"}}};
    pipeline_.release = ci::ReleaseSpec{.repo = kConfigUrl, .path = "envs"};
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }

  ReleaseRequest Req() {
    ReleaseRequest r;
    r.run_id = run_;
    r.repo = "https://git.example/app.git";
    r.commit = std::string(40, 'a');
    r.ref = "refs/heads/main";
    r.workspace = root_ / "ws";
    r.log = [this](std::string_view stage, std::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      log_.push_back(std::string(stage) + ": " + std::string(line));
    };
    return r;
  }
  std::unique_ptr<Release> New() {
    auto r = Release::Create(services_, pipeline_, Req());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }
  std::vector<store::Release> Ledger(const std::string& app = "web") {
    auto l = store_->ListReleases(app, 10);
    EXPECT_TRUE(l.ok());
    return l.value_or({});
  }
  std::string Logged() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string all;
    for (const auto& l : log_) all += l + "\n";
    return all;
  }
  std::string Stored() {
    auto p = store_->GetReleaseProgress(run_);
    return p.ok() && p->has_value() ? (*p)->stage : "";
  }

  fs::path root_;
  std::unique_ptr<store::Store> store_;
  int64_t run_ = 0;
  fakes::FakeRegistry registry_;
  std::shared_ptr<fakes::FakeRepository> repo_ = std::make_shared<fakes::FakeRepository>(kConfigUrl);
  std::string base_;
  ReleaseServices services_;
  ci::Pipeline pipeline_;
  std::mutex mu_;
  std::vector<std::string> notified_;  // GUARDED_BY(mu_): delivery ids
  std::vector<std::string> log_;       // GUARDED_BY(mu_)
};

TEST_F(ReleaseTest, RunsEveryStageOnceAndRecordsEach) {
  auto release = New();
  ASSERT_NE(release, nullptr);
  EXPECT_FALSE(release->state().resumed);
  std::vector<Stage> stages;
  do {
    stages.push_back(release->state().next);
  } while (release->Step());
  const ReleaseState& st = release->state();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(stages, (std::vector<Stage>{Stage::kPackage, Stage::kUpdate, Stage::kNotify, Stage::kRecord}));
  EXPECT_EQ(registry_.DigestOf(std::string(kImage) + ":aaaaaaaaaaaa"), st.result.digest);
  EXPECT_EQ(st.result.image, std::string(kImage) + ":aaaaaaaaaaaa@" + st.result.digest);
  EXPECT_TRUE(st.result.committed);
  EXPECT_EQ(repo_->Tip("main"), st.result.config_commit);
  EXPECT_THAT(repo_->FileAt(st.result.config_commit, "envs/dev/web.yaml"), HasSubstr("web:aaaaaaaaaaaa"));
  EXPECT_THAT(repo_->MessageOf(st.result.config_commit),
              HasSubstr("\n\nGantry-Release: run " + std::to_string(run_) + " of https://git.example/app.git@" +
                        std::string(40, 'a') + "\n"));
  EXPECT_EQ(notified_, (std::vector<std::string>{"gantry-" + std::to_string(run_) + "-" + st.result.config_commit.substr(0, 12)}));
  auto ledger = Ledger();
  ASSERT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger[0].id, st.result.release_id);
  EXPECT_EQ(ledger[0].run_id, run_);
  EXPECT_EQ(ledger[0].config_revision, st.result.config_commit);
  EXPECT_EQ(ledger[0].image_digests.at(kImage), st.result.digest);
  EXPECT_EQ(Stored(), "record");
  EXPECT_FALSE(st.result.deploy_phase.has_value());
  EXPECT_THAT(Logged(), HasSubstr("release: committed " + st.result.config_commit.substr(0, 12) + " to main"));
  EXPECT_THAT(Logged(), HasSubstr("image: pushed " + std::string(kImage) + ":aaaaaaaaaaaa@"));

  // The run re-queued after the release ended: nothing is done again.
  auto again = New();
  EXPECT_TRUE(again->state().resumed);
  EXPECT_EQ(again->state().next, Stage::kDone);
  EXPECT_EQ(again->Run().phase, Phase::kSucceeded);
  EXPECT_EQ(again->state().result.release_id, st.result.release_id);
  EXPECT_EQ(again->state().result.config_commit, st.result.config_commit);
  EXPECT_EQ(repo_->pushes(), 1);
  EXPECT_EQ(Ledger().size(), 1u);
  EXPECT_EQ(notified_.size(), 1u);
}

// A server killed after any stage: the run re-queued resumes after it; every effect happens once.
TEST_F(ReleaseTest, KilledAfterAnyStageResumesAtTheNextWithoutRepeatingOne) {
  for (int kill_after = 1; kill_after <= 3; ++kill_after) {
    SCOPED_TRACE(kill_after);
    auto run = store_->CreateRun({.repo = "https://git.example/app.git", .pipeline = "https://git.example/app.git",
                                  .commit = std::to_string(kill_after) + std::string(39, 'b'), .ref = "refs/heads/main"});
    ASSERT_TRUE(run.ok());
    run_ = *run;
    ReleaseRequest req = Req();
    req.commit = std::to_string(kill_after) + std::string(39, 'b');
    const int pushes = repo_->pushes();
    const int puts = registry_.manifest_puts();
    const size_t notified = notified_.size();
    {
      auto first = Release::Create(services_, pipeline_, req);
      ASSERT_TRUE(first.ok());
      for (int i = 0; i < kill_after; ++i) ASSERT_TRUE((*first)->Step()) << (*first)->state().error.ToString();
    }  // killed
    auto second = Release::Create(services_, pipeline_, req);
    ASSERT_TRUE(second.ok());
    EXPECT_TRUE((*second)->state().resumed);
    EXPECT_EQ((*second)->state().next, std::vector<Stage>({Stage::kUpdate, Stage::kNotify, Stage::kRecord})[kill_after - 1]);
    const ReleaseState& st = (*second)->Run();
    ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
    EXPECT_EQ(repo_->pushes(), pushes + 1);
    EXPECT_EQ(registry_.manifest_puts(), puts + 1);
    EXPECT_EQ(notified_.size(), notified + 1);
    EXPECT_EQ(st.result.config_commit, repo_->Tip("main"));
    EXPECT_FALSE(st.result.digest.empty());
  }
  EXPECT_EQ(Ledger().size(), 3u);
}

// The push landed but its answer was lost (or the server died right after it), and a newer release
// moved the branch on: the resumed release finds its commit by its trailer, and neither pushes
// again nor reverts the newer image.
TEST_F(ReleaseTest, APushWhoseAnswerWasLostIsFoundAndNotPushedAgain) {
  repo_->FailAfterPush(UnavailableError("push: the connection broke"));
  auto first = New();
  const ReleaseState& failed = first->Run();
  ASSERT_EQ(failed.phase, Phase::kFailed);
  EXPECT_EQ(failed.error.code(), Code::kUnavailable);
  EXPECT_THAT(failed.error.message(), HasSubstr("release: update https://git.example/config.git"));
  EXPECT_EQ(repo_->pushes(), 1);
  const std::string mine = repo_->Tip("main");
  std::string newer = repo_->Change("main", {{"envs/dev/web.yaml", Manifest("newer")}}, "a newer release");

  auto second = New();
  EXPECT_EQ(second->state().next, Stage::kUpdate);
  const ReleaseState& st = second->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(repo_->pushes(), 1) << "pushed twice";
  EXPECT_EQ(repo_->Tip("main"), newer) << "the newer release was reverted";
  EXPECT_EQ(st.result.config_commit, mine);
  EXPECT_TRUE(st.result.committed);
  EXPECT_EQ(notified_.size(), 1u) << "agents are still told of the commit";
  EXPECT_THAT(Logged(), HasSubstr(mine.substr(0, 12) + " was pushed to main before an interruption: not pushing again"));
  ASSERT_EQ(Ledger().size(), 1u);
  EXPECT_EQ(Ledger()[0].config_revision, mine);
}

// Interrupted after recording the tip but before the push: another writer's commit since then is
// not this release's, so the release pushes (once) on top of it.
TEST_F(ReleaseTest, APushThatNeverLandedIsMadeOnTheNewTip) {
  repo_->FailFetch(UnavailableError("fetch: connection refused"), /*after=*/1);
  auto first = New();
  ASSERT_EQ(first->Run().phase, Phase::kFailed);
  EXPECT_EQ(repo_->pushes(), 0);
  std::string other = repo_->Change("main", {{"README", "edited\n"}}, "someone else");

  auto second = New();
  const ReleaseState& st = second->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(repo_->pushes(), 1);
  EXPECT_TRUE(st.result.committed);
  EXPECT_NE(st.result.config_commit, other);
  EXPECT_THAT(repo_->FileAt(repo_->Tip("main"), "envs/dev/web.yaml"), HasSubstr("web:aaaaaaaaaaaa"));
  EXPECT_EQ(repo_->FileAt(repo_->Tip("main"), "README"), "edited\n");
}

// Pull-request mode: the change goes on gantry/<app>/<environment>, rebuilt on main by each
// release, and the pull request of that branch is opened, then updated; the ledger names it and,
// with auto_merge, the merge outbox holds the newest head. main itself is never written.
TEST_F(ReleaseTest, PullRequestModeOpensThenUpdatesOnePullRequestPerAppAndEnvironment) {
  pipeline_.release->pull_request = true;
  pipeline_.release->environment = "dev";
  pipeline_.release->auto_merge = true;
  pipeline_.release->merge_method = "squash";
  pipeline_.release->required_checks = {"gantry/ci"};
  std::vector<forge::PullRequestSpec> asked;
  services_.open_pull_request = [&](const std::string& url, const forge::PullRequestSpec& spec) -> Result<OpenedPullRequest> {
    EXPECT_EQ(url, kConfigUrl);
    asked.push_back(spec);
    return OpenedPullRequest{.forge = "https://git.example/", .repo = "config",
                             .pull = {.number = 5, .url = "https://git.example/config/pulls/5", .created = asked.size() == 1}};
  };
  auto first = New();
  const ReleaseState& st = first->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(repo_->Tip("main"), base_) << "main was written";
  EXPECT_EQ(repo_->Tip("gantry/web/dev"), st.result.config_commit);
  EXPECT_THAT(repo_->FileAt(st.result.config_commit, "envs/dev/web.yaml"), HasSubstr("web:aaaaaaaaaaaa"));
  EXPECT_TRUE(notified_.empty()) << "agents were told of an unmerged branch";
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].head, "gantry/web/dev");
  EXPECT_EQ(asked[0].base, "main");
  EXPECT_EQ(asked[0].title, std::string("release web to dev: ") + kImage + ":aaaaaaaaaaaa");
  EXPECT_THAT(asked[0].body, HasSubstr("`envs/dev/web.yaml`"));
  EXPECT_THAT(asked[0].body, HasSubstr("Gantry merges it (squash) once its checks pass"));
  EXPECT_EQ(st.result.pull_request, 5);
  auto ledger = Ledger();
  ASSERT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger[0].pull_request, 5);
  EXPECT_EQ(ledger[0].pull_request_url, "https://git.example/config/pulls/5");
  EXPECT_EQ(ledger[0].note, "pull request #5 https://git.example/config/pulls/5");
  auto merges = store_->ListPullMerges(std::nullopt, 10);
  ASSERT_TRUE(merges.ok());
  ASSERT_EQ(merges->size(), 1u);
  EXPECT_EQ((*merges)[0].sha, st.result.config_commit);
  EXPECT_EQ((*merges)[0].method, "squash");
  EXPECT_EQ((*merges)[0].required_checks, std::vector<std::string>{"gantry/ci"});
  EXPECT_EQ((*merges)[0].release_id, ledger[0].id);
  EXPECT_THAT(Logged(), HasSubstr("opened pull request #5 https://git.example/config/pulls/5"));

  // Someone changes main; the next release rebuilds the branch on the new main (one commit on
  // top of it, not on the old branch) and updates the same pull request.
  const std::string main2 = repo_->Change("main", {{"README", "edited\n"}}, "someone else");
  auto run = store_->CreateRun({.repo = "https://git.example/app.git", .pipeline = "https://git.example/app.git",
                                .commit = std::string(40, 'c'), .ref = "refs/heads/main"});
  ASSERT_TRUE(run.ok());
  run_ = *run;
  ReleaseRequest req = Req();
  req.commit = std::string(40, 'c');
  auto second = Release::Create(services_, pipeline_, req);
  ASSERT_TRUE(second.ok());
  const ReleaseState& st2 = (*second)->Run();
  ASSERT_EQ(st2.phase, Phase::kSucceeded) << st2.error.ToString();
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[1].head, "gantry/web/dev");
  EXPECT_EQ(repo_->Tip("gantry/web/dev"), st2.result.config_commit);
  auto log = repo_->Log(st2.result.config_commit, main2, 10);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 1u) << "the branch is not one commit on main";
  EXPECT_EQ(repo_->FileAt(st2.result.config_commit, "README"), "edited\n");
  EXPECT_THAT(repo_->FileAt(st2.result.config_commit, "envs/dev/web.yaml"), HasSubstr("web:cccccccccccc"));
  EXPECT_THAT(Logged(), HasSubstr("updated pull request #5"));
  merges = store_->ListPullMerges(std::nullopt, 10);
  ASSERT_EQ(merges->size(), 1u);
  EXPECT_EQ((*merges)[0].sha, st2.result.config_commit);
  EXPECT_EQ((*merges)[0].version, 2);
  EXPECT_EQ(Ledger().size(), 2u);
}

TEST_F(ReleaseTest, PullRequestModeWithoutAForgeFailsSayingSo) {
  pipeline_.release->pull_request = true;
  pipeline_.release->environment = "dev";
  auto first = New();
  const ReleaseState& st = first->Run();
  ASSERT_EQ(st.phase, Phase::kFailed);
  EXPECT_EQ(st.error.code(), Code::kFailedPrecondition);
  EXPECT_THAT(st.error.message(), HasSubstr("the server knows no forge for https://git.example/config.git (--forge)"));
  // A forge that refuses: its error, naming the branch.
  services_.open_pull_request = [](const std::string&, const forge::PullRequestSpec&) -> Result<OpenedPullRequest> {
    return PermissionDeniedError("the gitea token lacks the scope write:repository");
  };
  auto second = New();
  const ReleaseState& again = second->Run();
  ASSERT_EQ(again.phase, Phase::kFailed);
  EXPECT_THAT(again.error.message(), HasSubstr("release: pull request gantry/web/dev → main of https://git.example/config.git: "
                                               "the gitea token lacks the scope write:repository"));
}

TEST_F(ReleaseTest, TerminateStopsBetweenStagesAndResumeContinues) {
  auto release = New();
  ASSERT_TRUE(release->Step());  // package
  release->Terminate();
  EXPECT_FALSE(release->Step());
  EXPECT_EQ(release->state().phase, Phase::kTerminated);
  EXPECT_EQ(release->state().error.code(), Code::kCancelled);
  EXPECT_EQ(repo_->pushes(), 0);
  EXPECT_EQ(Stored(), "package");

  auto resumed = Release::Resume(services_, pipeline_, Req());
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ((*resumed)->state().next, Stage::kUpdate);
  EXPECT_EQ((*resumed)->Run().phase, Phase::kSucceeded);
  EXPECT_EQ(repo_->pushes(), 1);
}

TEST_F(ReleaseTest, TheCancelFlagOfTheRunStopsItAndRunReleaseSaysCancelled) {
  std::atomic<bool> cancel{true};
  ReleaseRequest req = Req();
  req.cancel = &cancel;
  auto result = RunRelease(services_, pipeline_, req);
  EXPECT_EQ(result.status().code(), Code::kCancelled);
  EXPECT_EQ(registry_.manifest_puts(), 0);
}

TEST_F(ReleaseTest, BadInputAndMissingProgressAreClearErrors) {
  EXPECT_EQ(Release::Resume(services_, pipeline_, Req()).status().code(), Code::kNotFound);
  ci::Pipeline no_image = pipeline_;
  no_image.image.reset();
  auto bad = Release::Create(services_, no_image, Req());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("no image: section"));

  services_.config_repos = {"https://git.example/other.git"};
  auto refused = RunRelease(services_, pipeline_, Req());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("release: config repository https://git.example/config.git is not one"));
  EXPECT_EQ(repo_->pushes(), 0);
}

TEST_F(ReleaseTest, WithoutReleaseOnlyThePackageRuns) {
  pipeline_.release.reset();
  auto result = RunRelease(services_, pipeline_, Req());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_FALSE(result->digest.empty());
  EXPECT_TRUE(result->config_commit.empty());
  EXPECT_EQ(result->release_id, 0);
  EXPECT_EQ(repo_->pushes(), 0);
  EXPECT_EQ(Stored(), "package");
}

// issue 18: with a signing key the package stage signs the image and attests its provenance (the
// run, the commit, the pipeline) in cosign's format; the key's public half verifies both.
TEST_F(ReleaseTest, WithASigningKeyTheImageIsSignedAndAttested) {
  pipeline_.release.reset();
  pipeline_.name = "build";
  services_.signing_key = *sign::GenerateKey(sign::KeyType::kEd25519);
  services_.builder_id = "https://gantry.test/ci";
  auto result = RunRelease(services_, pipeline_, Req());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_FALSE(result->signature.empty());
  EXPECT_FALSE(result->attestation.empty());
  auto image = oci::ParseReference(result->image);
  ASSERT_TRUE(image.ok());
  auto verified = sign::VerifyImage(registry_, *image, services_.signing_key->Public());
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ((*verified)[0].annotations.at("run"), std::to_string(run_));
  auto atts = sign::VerifyAttestations(registry_, *image, services_.signing_key->Public(), sign::kSlsaProvenanceV1);
  ASSERT_TRUE(atts.ok()) << atts.status().ToString();
  const value::Value& st = (*atts)[0].statement;
  EXPECT_EQ(value::StringAt(&st, {"predicate", "runDetails", "builder", "id"}), "https://gantry.test/ci");
  EXPECT_EQ(value::StringAt(&st, {"predicate", "buildDefinition", "externalParameters", "pipeline"}), "build");
  EXPECT_EQ(value::StringAt(&st, {"predicate", "buildDefinition", "resolvedDependencies", 0, "digest", "gitCommit"}),
            std::string(40, 'a'));
  EXPECT_EQ(value::StringAt(&st, {"predicate", "buildDefinition", "externalParameters", "parameters", "layer /app"}), "dist");
  EXPECT_THAT(Logged(), HasSubstr("image: signed " + result->image + " (Ed25519 key): signature " + result->signature));

  // And its SBOM: the files of the image with their digests, attested as cosign's spdxjson.
  EXPECT_FALSE(result->sbom.empty());
  auto sboms = sign::VerifyAttestations(registry_, *image, services_.signing_key->Public(), sign::kSpdxDocument);
  ASSERT_TRUE(sboms.ok()) << sboms.status().ToString();
  ASSERT_EQ(sboms->size(), 1u);
  const value::Value& sbom = (*sboms)[0].statement;
  EXPECT_EQ(value::StringAt(&sbom, {"predicate", "spdxVersion"}), "SPDX-2.3");
  EXPECT_EQ(value::StringAt(&sbom, {"predicate", "files", 0, "fileName"}), "./app/index.html");
  EXPECT_EQ(value::StringAt(&sbom, {"predicate", "files", 0, "checksums", 1, "checksumValue"}), Sha256Hex("hello\n"));
  EXPECT_THAT(Logged(), HasSubstr("image: sbom: 1 files, 0 packages"));
}

// A release resumed after a crash inside the package stage (the image signed and attested, the
// progress not saved yet) finds what its key did for this run and does not sign again: the .sig
// and .att manifests stay as they were (ECDSA signatures are randomised, so a second one would
// change them).
TEST_F(ReleaseTest, APackageStageResumedAfterACrashDoesNotSignAgain) {
  pipeline_.release.reset();
  services_.signing_key = *sign::GenerateKey(sign::KeyType::kEcdsaP256);
  auto first = RunRelease(services_, pipeline_, Req());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto progress = store_->GetReleaseProgress(run_);
  ASSERT_TRUE(progress.ok() && progress->has_value());
  store::ReleaseProgress crashed = **progress;
  crashed.stage = "started";  // as saved before the package stage ended
  crashed.data = "{}";
  ASSERT_TRUE(store_->PutReleaseProgress(crashed).ok());

  auto again = RunRelease(services_, pipeline_, Req());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->digest, first->digest);
  EXPECT_EQ(again->signature, first->signature) << "no second signature in the .sig manifest";
  EXPECT_EQ(again->sbom, first->sbom) << "no second attestation in the .att manifest";
  EXPECT_THAT(Logged(), HasSubstr("(signature, provenance, SBOM there already with this key: not signed again)"));
  auto image = oci::ParseReference(again->image);
  ASSERT_TRUE(image.ok());
  auto sigs = sign::VerifyImage(registry_, *image, services_.signing_key->Public());
  ASSERT_TRUE(sigs.ok());
  EXPECT_EQ(sigs->size(), 1u);
}

// Deploys to one fake cluster, environment dev with `gates`.
void PushMode(ReleaseServices& services, ci::Pipeline& pipeline, std::shared_ptr<fakes::FakeKubeClient> kube,
              const std::string& gates) {
  auto config = deliver::ParseConfig(*value::ParseYaml(R"(
apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: dev-1}
spec: {kubeconfig: /dev/null, environment: dev}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec: {gates: )" + gates + "}\n", "config.yaml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  services.deliver_config = *config;
  services.connect = [kube](const deliver::Cluster&) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(kube);
  };
  pipeline.release->app = "web";
}

// Push mode: the deploy is the Deployment of the config commit; killed mid-deploy, the resumed
// release continues that Deployment instead of starting a second ledger release.
TEST_F(ReleaseTest, AnInterruptedDeployIsResumedNotStartedAgain) {
  auto kube = std::make_shared<fakes::FakeKubeClient>();
  PushMode(services_, pipeline_, kube, "{healthy: false}");

  std::vector<Stage> stages;
  {
    auto first = New();
    while (first->state().next != Stage::kDeploy) {
      stages.push_back(first->state().next);
      ASSERT_TRUE(first->Step()) << first->state().error.ToString();
    }
    ASSERT_TRUE(first->Step());  // starts the Deployment: the ledger release exists
    first->Terminate();
    EXPECT_FALSE(first->Step());
    EXPECT_EQ(first->state().phase, Phase::kTerminated);
  }
  EXPECT_EQ(stages, (std::vector<Stage>{Stage::kPackage, Stage::kUpdate, Stage::kNotify}));
  ASSERT_EQ(Ledger().size(), 1u);
  auto second = New();
  EXPECT_EQ(second->state().next, Stage::kDeploy);
  const ReleaseState& st = second->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  ASSERT_EQ(Ledger().size(), 1u) << "a second ledger release was started";
  EXPECT_EQ(st.result.release_id, Ledger()[0].id);
  ASSERT_TRUE(st.result.deploy_phase.has_value());
  EXPECT_EQ(*st.result.deploy_phase, deliver::Phase::kSucceeded);
  auto targets = store_->ListTargets(st.result.release_id);
  ASSERT_TRUE(targets.ok());
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].state, store::TargetState::kHealthy);
  auto pod = kube->Get({.api_version = "v1", .kind = "Pod", .namespace_ = "default", .name = "web"});
  ASSERT_TRUE(pod.ok()) << pod.status().ToString();
  EXPECT_THAT(value::ToJson(*pod), HasSubstr("web:aaaaaaaaaaaa"));
  EXPECT_EQ(Stored(), "deploy");
}

// The deploy's soak gate waits on the injected clock: ten minutes pass without a real sleep.
TEST_F(ReleaseTest, TheSoakOfTheDeployWaitsOnTheInjectedClock) {
  FakeClock clock;
  services_.clock = &clock;
  PushMode(services_, pipeline_, std::make_shared<fakes::FakeKubeClient>(), "{healthy: false, soak: 10m}");
  const auto started = std::chrono::steady_clock::now();
  auto release = New();
  const ReleaseState& st = release->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(*st.result.deploy_phase, deliver::Phase::kSucceeded);
  EXPECT_GE(clock.Now().time_since_epoch(), std::chrono::minutes(10));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_THAT(Logged(), HasSubstr("deploy: dev: soak done"));
}

// A server killed during the soak of the deploy's last environment (issue 21): the resumed release
// found every target healthy and ended the deploy succeeded at once ("ended before an
// interruption"), the rest of the soak skipped. It now resumes the Deployment, which soaks to the
// end recorded when the soak began, and only then is the release done.
TEST_F(ReleaseTest, AKillDuringTheLastSoakIsResumedToItsEndBeforeTheReleaseIsDone) {
  FakeClock clock;
  // The store stamps the soak's audit row with the system clock: the fake one starts from it.
  clock.Advance(std::chrono::system_clock::now().time_since_epoch());
  const auto start = clock.WallNow();
  services_.clock = &clock;
  PushMode(services_, pipeline_, std::make_shared<fakes::FakeKubeClient>(), "{healthy: false, soak: 10m}");
  {
    auto first = New();
    while (Logged().find("deploy: dev: soaking until") == std::string::npos)
      ASSERT_TRUE(first->Step()) << first->state().error.ToString();
    ASSERT_TRUE(first->Step());  // a second of the soak, then the process dies (no Terminate)
  }
  clock.Advance(std::chrono::minutes(2));
  auto second = New();
  const ReleaseState& st = second->Run();
  ASSERT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_EQ(*st.result.deploy_phase, deliver::Phase::kSucceeded);
  EXPECT_GE(clock.WallNow() - start, std::chrono::minutes(10)) << "done before the soak's end:\n" << Logged();
  EXPECT_LT(clock.WallNow() - start, std::chrono::minutes(10) + std::chrono::seconds(30));
  EXPECT_EQ(Ledger().size(), 1u);
  EXPECT_THAT(Logged(), HasSubstr("deploy: dev: soak done"));
}

// The CI server's hook: a release whose deploy ends waiting for approval fails the run, naming the
// release and the phase; a release without a deploy lets it succeed.
TEST_F(ReleaseTest, TheSucceededRunHookFailsTheRunWhenTheDeployDidNotSucceed) {
  auto store_run = store_->GetRun(run_);
  ASSERT_TRUE(store_run.ok()) << store_run.status().ToString();
  const fs::path workspace = root_ / "ws";
  const std::string commit(40, 'a');
  std::atomic<bool> cancel{false};
  auto log = [](std::string_view, std::string_view) {};

  PushMode(services_, pipeline_, std::make_shared<fakes::FakeKubeClient>(), "{healthy: false, approval: true}");
  ci::SucceededRun waiting_run{.run = *store_run, .pipeline = pipeline_, .workspace = workspace, .commit = commit,
                               .log = log, .cancel = &cancel};
  Status waiting = ReleaseSucceededRun(services_, waiting_run);
  EXPECT_EQ(waiting.code(), Code::kFailedPrecondition);
  EXPECT_THAT(waiting.message(), HasSubstr("deploy: release 1 ended WaitingApproval"));

  ci::Pipeline without_release = pipeline_;
  without_release.release.reset();
  auto other = store_->CreateRun({.repo = "https://git.example/app.git", .pipeline = "https://git.example/app.git",
                                  .commit = commit, .ref = "refs/heads/next"});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto other_run = store_->GetRun(*other);
  ASSERT_TRUE(other_run.ok()) << other_run.status().ToString();
  ci::SucceededRun packaged{.run = *other_run, .pipeline = without_release, .workspace = workspace, .commit = commit,
                            .log = log, .cancel = &cancel};
  Status ok = ReleaseSucceededRun(services_, packaged);
  EXPECT_TRUE(ok.ok()) << ok.ToString();
}

// The repository's project bounds what its pipeline releases: an image repository or a config
// path outside releases: refuses the release before anything is built, pushed or committed.
TEST_F(ReleaseTest, AReleaseOutsideItsProjectIsRefusedBeforeAnythingIsBuilt) {
  auto projects = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  releases: {imageRepos: ["registry.test/team/*"], configPaths: ["envs/**"]}
)", "gantry.yaml");
  ASSERT_TRUE(projects.ok()) << projects.status().ToString();
  auto config = deliver::ParseConfig(*projects);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  services_.deliver_config = *config;

  ReleaseRequest r = Req();
  r.project = "team";
  EXPECT_TRUE(Release::Create(services_, pipeline_, r).ok()) << "its image and path are the project's";

  pipeline_.image->repository = "registry.test/other/web";
  auto image = Release::Create(services_, pipeline_, r);
  EXPECT_EQ(image.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(image.status().message(), HasSubstr("releases.imageRepos does not allow image repository registry.test/other/web"));

  pipeline_.image->repository = kImage;
  pipeline_.release->path = "";  // the whole config repository
  auto path = Release::Create(services_, pipeline_, r);
  EXPECT_EQ(path.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(path.status().message(), HasSubstr("releases.configPaths"));

  r.project = "nobody";
  EXPECT_EQ(Release::Create(services_, pipeline_, r).status().code(), Code::kNotFound);
  EXPECT_EQ(repo_->pushes(), 0);
  EXPECT_TRUE(Ledger().empty());
}

// An app named only by its image (no release.app) is still the project's that released it first:
// a pipeline of another project whose image has the same name is refused before anything is built,
// so it can neither add to that app's ledger nor force-push its pull request's branch.
TEST_F(ReleaseTest, AnAppNamedByItsImageBelongsToTheProjectThatReleasedIt) {
  ASSERT_TRUE(store_->CreateRelease({.app = "web", .project = "other"}).ok());
  pipeline_.release->app = "";
  pipeline_.release->pull_request = true;
  pipeline_.release->environment = "dev";
  auto refused = Release::Create(services_, pipeline_, Req());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("app web belongs to project other"));
  EXPECT_EQ(repo_->pushes(), 0);
}

// A registry credential is named by its host: a pipeline pushes with the server's credential for
// its image's registry only when the project lists it; otherwise the release is refused before
// anything is built or pushed, naming the project, the rule and the credential.
TEST_F(ReleaseTest, ARegistryCredentialItsProjectDoesNotListIsRefusedBeforeTheBuild) {
  auto projects = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team}
spec:
  releases: {imageRepos: ["registry.test/team/*"], configPaths: ["**"]}
  credentials: [registry.test]
---
apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: other}
spec:
  releases: {imageRepos: ["registry.test/team/*"], configPaths: ["**"]}
  credentials: [git.example.com]
)", "gantry.yaml");
  ASSERT_TRUE(projects.ok()) << projects.status().ToString();
  auto config = deliver::ParseConfig(*projects);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  services_.deliver_config = *config;
  services_.registry_credentials = {"other-registry.test", "registry.test"};

  ReleaseRequest r = Req();
  r.project = "other";
  auto refused = Release::Create(services_, pipeline_, r);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "release: push to registry.test/team/web with the registry credential of registry.test: project other: "
            "credentials does not allow credential registry.test (it lists git.example.com)");

  EXPECT_EQ(registry_.manifest_puts(), 0);

  // A registry the server holds no credential for is pushed to anonymously: nothing to bind.
  services_.registry_credentials = {"other-registry.test"};
  EXPECT_TRUE(Release::Create(services_, pipeline_, r).ok());

  // Its own credential: the release runs and pushes.
  services_.registry_credentials = {"other-registry.test", "registry.test"};
  r.project = "team";
  auto release = Release::Create(services_, pipeline_, r);
  ASSERT_TRUE(release.ok()) << release.status().ToString();
  const ReleaseState& st = (*release)->Run();
  EXPECT_EQ(st.phase, Phase::kSucceeded) << st.error.ToString();
  EXPECT_GT(registry_.manifest_puts(), 0);
}

}  // namespace
}  // namespace gantry::release
