// PullMerges over a SQLite store and a local HTTP receiver answering as GitHub's pull-request API
// does (the real Gitea is test/integration/release_pull_request_test.cc): what each answer of the
// forge does to a merge in the outbox, and an unreachable forge that delays only its own merges.

#include "server/pull_merges.h"

#include <stdlib.h>

#include <filesystem>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "http/http.h"

namespace gantry::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using store::NotificationState;

constexpr char kMergeSha[] = "0123456789abcdef0123456789abcdef01234567";

// GitHub's pull #7 of o/r: its state and head, the combined status of kMergeSha, and the merge answer;
// the list of open pull requests (none) and the opening of #7, answered 404 the first Unseen()
// times, as Gitea answers a repository whose first push it has not processed yet.
class FakePulls {
 public:
  FakePulls() {
    for (const char* method : {"GET", "PUT", "POST"}) {
      server_.Handle(method, "/", [this](const http::Request& req) {
        MutexLock lock(mu_);
        calls_.push_back(req.method + " " + req.target);
        if (req.target == "/repos/o/r/pulls" && unseen_ > 0) {
          --unseen_;
          return http::Response::Json(404, R"({"errors":null,"message":"not found"})");
        }
        if (req.target == "/repos/o/r/pulls") {
          return http::Response::Json(req.method == "GET" ? 200 : 201,
                                      req.method == "GET" ? "[]" : fmt::format(R"({{"number":7,"state":"open","html_url":"u","head":{{"sha":"{}"}}}})", kMergeSha));
        }
        if (req.target == "/repos/o/r/pulls/7") {
          return http::Response::Json(200, fmt::format(R"({{"number":7,"state":"{}","merged":{},"html_url":"u","head":{{"sha":"{}"}}}})",
                                                       state_, merged_ ? "true" : "false", head_));
        }
        if (req.target == std::string("/repos/o/r/commits/") + kMergeSha + "/status") return http::Response::Json(200, checks_);
        if (req.target == "/repos/o/r/pulls/7/merge") return http::Response::Json(merge_status_, R"({"message":"as told"})");
        return http::Response::Json(404, R"({"message":"Not Found"})");
      });
    }
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string api() const { return fmt::format("http://127.0.0.1:{}", server_.port()); }
  void Set(std::string state, bool merged, std::string head, std::string checks, int merge_status) {
    MutexLock lock(mu_);
    state_ = std::move(state);
    merged_ = merged;
    head_ = std::move(head);
    checks_ = std::move(checks);
    merge_status_ = merge_status;
  }
  std::vector<std::string> calls() {
    MutexLock lock(mu_);
    return calls_;
  }
  void Unseen(int n) {
    MutexLock lock(mu_);
    unseen_ = n;
  }

 private:
  Mutex mu_;
  std::string state_ GUARDED_BY(mu_) = "open";
  bool merged_ GUARDED_BY(mu_) = false;
  std::string head_ GUARDED_BY(mu_) = kMergeSha;
  std::string checks_ GUARDED_BY(mu_) = R"({"state":"pending","statuses":[]})";
  int merge_status_ GUARDED_BY(mu_) = 200;
  int unseen_ GUARDED_BY(mu_) = 0;
  std::vector<std::string> calls_ GUARDED_BY(mu_);
  http::Server server_;
};

class PullMergesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "pull_merges_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string(), {.clock = &clock_});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto m = PullMerges::Start(
        {.store = store_.get(),
         .forges = {{.prefix = "https://github.com/", .options = {.kind = forge::Kind::kGitHub, .api_url = forge_.api(), .token = "t", .timeout = 3s}},
                    {.prefix = "https://down.example/", .options = {.kind = forge::Kind::kGitea, .api_url = "http://127.0.0.1:1/api/v1", .token = "t", .timeout = 3s}}},
         .clock = &clock_,
         .poll = 10s,
         .initial_backoff = 1s,
         .max_backoff = 4s},
        /*start=*/false);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    merges_ = std::move(*m);
  }
  void TearDown() override {
    merges_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  int64_t Want(const std::string& forge = "https://github.com/", std::vector<std::string> required = {}) {
    const auto now = clock_.WallNow();
    auto id = store_->PutPullMerge({.forge = forge, .repo = "o/r", .number = 7, .sha = kMergeSha, .method = "squash",
                                    .required_checks = std::move(required), .release_id = 1, .next_attempt_at = now,
                                    .deadline = now + 1h});
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.value_or(0);
  }
  store::PullMerge Row(const std::string& forge = "https://github.com/") {
    auto all = store_->ListPullMerges(std::nullopt, 10);
    EXPECT_TRUE(all.ok());
    for (const auto& m : all.value_or(std::vector<store::PullMerge>{}))
      if (m.forge == forge) return m;
    ADD_FAILURE() << "no merge of " << forge;
    return {};
  }

  FakeClock clock_;
  FakePulls forge_;
  fs::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<PullMerges> merges_;
};

TEST_F(PullMergesTest, WaitsForTheRequiredCheckThenMerges) {
  Want("https://github.com/", {"ci"});
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kPending);
  EXPECT_THAT(Row().last_error, HasSubstr("waiting for required check ci (not reported yet)"));
  // Not due again before the poll interval.
  merges_->MergeDue();
  EXPECT_EQ(Row().attempts, 1);
  forge_.Set("open", false, kMergeSha, R"({"state":"success","statuses":[{"context":"ci","state":"success"}]})", 200);
  clock_.Advance(10s);
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kDelivered) << Row().last_error;
  EXPECT_EQ(forge_.calls().back(), "PUT /repos/o/r/pulls/7/merge");
}

TEST_F(PullMergesTest, AFailedCheckAClosedPullRequestAndTheDeadlineFailIt) {
  forge_.Set("open", false, kMergeSha, R"({"state":"failure","statuses":[{"context":"ci","state":"failure"}]})", 200);
  Want();
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kFailed);
  EXPECT_EQ(Row().last_error, "check ci is failure");

  forge_.Set("closed", false, kMergeSha, R"({"state":"success","statuses":[]})", 200);
  Want();  // a new release: the row is pending again
  merges_->MergeDue();
  EXPECT_EQ(Row().last_error, "the pull request was closed without merging");

  // Someone else's head is never merged: it waits, and fails at the deadline.
  forge_.Set("open", false, "fedcba9876543210fedcba9876543210fedcba98",
             R"({"state":"success","statuses":[{"context":"ci","state":"success"}]})", 200);
  Want();
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kPending);
  EXPECT_THAT(Row().last_error, HasSubstr("the pull request's head is fedcba987654, not 0123456789ab"));
  clock_.Advance(1h);
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kFailed);
  EXPECT_THAT(Row().last_error, HasSubstr("gave up at the deadline after 2 looks"));
  for (const auto& call : forge_.calls()) EXPECT_THAT(call, ::testing::Not(HasSubstr("/merge")));
}

TEST_F(PullMergesTest, NotMergeableYetIsAskedAgainAndAMergedOneIsDone) {
  forge_.Set("open", false, kMergeSha, R"({"state":"success","statuses":[{"context":"ci","state":"success"}]})", 405);
  Want();
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kPending);
  EXPECT_THAT(Row().last_error, HasSubstr("the forge will not merge it now (HTTP 405: as told)"));
  forge_.Set("closed", true, kMergeSha, "{}", 405);  // merged by someone in between
  clock_.Advance(10s);
  merges_->MergeDue();
  EXPECT_EQ(Row().state, NotificationState::kDelivered);
}

TEST_F(PullMergesTest, AnUnreachableForgeIsRetriedWithBackoffAndDoesNotHoldOthers) {
  Want("https://down.example/");
  forge_.Set("open", false, kMergeSha, R"({"state":"success","statuses":[{"context":"ci","state":"success"}]})", 200);
  Want();
  merges_->MergeDue();
  store::PullMerge down = Row("https://down.example/");
  EXPECT_EQ(down.state, NotificationState::kPending);
  EXPECT_LE(down.next_attempt_at - clock_.WallNow(), 2s) << "retried at the poll interval, not with backoff";
  EXPECT_EQ(Row().state, NotificationState::kDelivered);
  // A forge no longer configured: failed, saying so.
  Want("https://gone.example/");
  merges_->MergeDue();
  EXPECT_THAT(Row("https://gone.example/").last_error, HasSubstr("the forge https://gone.example/ is no longer configured"));
}

TEST_F(PullMergesTest, OpenAsksAgainWhileTheForgeHasNotSeenThePush) {
  const forge::PullRequestSpec spec{.head = "gantry/web/dev", .base = "main", .title = "release web to dev"};
  forge_.Unseen(2);
  const auto start = clock_.Now();
  auto opened = merges_->Open("https://github.com/o/r.git", spec);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->pull.number, 7);
  EXPECT_TRUE(opened->pull.created);
  EXPECT_EQ(opened->repo, "o/r");
  EXPECT_EQ(opened->forge, "https://github.com/");
  EXPECT_THAT(forge_.calls(), ElementsAre("GET /repos/o/r/pulls", "GET /repos/o/r/pulls", "GET /repos/o/r/pulls",
                                          "POST /repos/o/r/pulls"));
  EXPECT_LE(clock_.Now() - start, 3s) << "two backoffs from 1 s";

  // A repository the forge never shows: NotFound, after open_wait (30 s) of asking.
  forge_.Unseen(1'000'000);
  const auto again = clock_.Now();
  auto missing = merges_->Open("https://github.com/o/r.git", spec);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
  EXPECT_THAT(missing.status().message(), HasSubstr("(HTTP 404): not found"));
  EXPECT_THAT(missing.status().message(), HasSubstr("30000 ms budget"));
  EXPECT_LE(clock_.Now() - again, 30s);
  EXPECT_GE(clock_.Now() - again, 20s);

  // A repository no --forge covers: at once.
  EXPECT_EQ(merges_->Open("https://elsewhere.example/o/r.git", spec).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace gantry::server
