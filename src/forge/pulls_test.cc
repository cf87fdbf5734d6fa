// The pull-request calls of GitHub and GitLab against a local HTTP receiver answering with the
// shapes of their documentation (testdata/); Gitea is tested against a real Gitea
// (test/integration/release_pull_request_test.cc).

#include "forge/pulls.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "base/path.h"
#include "http/http.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  auto text = ReadFile("testdata/" + name);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.value_or("");
}

// Answers "METHOD /path" with what Answer() set for it (404 otherwise) and records every request.
class FakeForge {
 public:
  FakeForge() {
    for (const char* method : {"GET", "POST", "PATCH", "PUT"}) {
      server_.Handle(method, "/", [this](const http::Request& req) {
        MutexLock lock(mu_);
        got_.push_back(req);
        auto it = answers_.find(req.method + " " + req.target);
        if (it == answers_.end()) return http::Response::Json(404, R"({"message":"Not Found"})");
        return it->second;
      });
    }
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/api", server_.port()); }
  void Answer(const std::string& route, int status, std::string body, http::Headers headers = {}) {
    MutexLock lock(mu_);
    http::Response r = http::Response::Json(status, std::move(body));
    for (auto& [k, v] : headers) r.headers[k] = v;
    answers_[route] = std::move(r);
  }
  std::vector<http::Request> Got() {
    MutexLock lock(mu_);
    return got_;
  }

 private:
  Mutex mu_;
  std::vector<http::Request> got_ GUARDED_BY(mu_);
  std::map<std::string, http::Response> answers_ GUARDED_BY(mu_);
  http::Server server_;
};

std::unique_ptr<PullRequests> Make(Kind kind, const std::string& api) {
  auto p = PullRequests::New({.kind = kind, .api_url = api, .token = "t0ken", .timeout = std::chrono::seconds(5)});
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *std::move(p) : nullptr;
}

value::Value Body(const http::Request& req) {
  auto v = value::ParseJson(req.body, "body");
  EXPECT_TRUE(v.ok()) << req.body;
  return v.ok() ? *v : value::Value::Map();
}

const PullRequestSpec kSpec{.head = "gantry/web/prod", .base = "main", .title = "release web to prod", .body = "image web:1a2b"};

TEST(GitHubPulls, AnOpenPullRequestOfTheHeadIsUpdatedNotOpenedAgain) {
  FakeForge f;
  f.Answer("GET /api/repos/octocat/Hello-World/pulls", 200, Fixture("github_pulls_open.json"));
  f.Answer("PATCH /api/repos/octocat/Hello-World/pulls/1347", 200, Fixture("github_pull_created.json"));
  auto pr = Make(Kind::kGitHub, f.url())->OpenOrUpdate("octocat/Hello-World", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_FALSE(pr->created);
  auto got = f.Got();
  ASSERT_EQ(got.size(), 2u);
  // GitHub filters by head (OWNER:BRANCH) and base itself.
  EXPECT_EQ(got[0].query, "state=open&head=octocat%3Agantry%2Fweb%2Fprod&base=main&per_page=100");
  EXPECT_EQ(got[0].Header("authorization"), "Bearer t0ken");
  EXPECT_EQ(got[1].method, "PATCH");
  value::Value body = Body(got[1]);
  EXPECT_EQ(value::StringAt(&body, {"title"}), "release web to prod");
  EXPECT_EQ(value::StringAt(&body, {"body"}), "image web:1a2b");
  EXPECT_EQ(body.Get("head"), nullptr);  // the head and base of an open one do not change
  EXPECT_EQ(got[1].Header("content-type"), "application/json");
}

TEST(GitHubPulls, NoneOpenOpensOne) {
  FakeForge f;
  f.Answer("GET /api/repos/octocat/Hello-World/pulls", 200, "[]");
  f.Answer("POST /api/repos/octocat/Hello-World/pulls", 201, Fixture("github_pull_created.json"));
  auto pr = Make(Kind::kGitHub, f.url())->OpenOrUpdate("octocat/Hello-World", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_TRUE(pr->created);
  EXPECT_EQ(pr->number, 1348);
  EXPECT_EQ(pr->url, "https://github.com/octocat/Hello-World/pull/1348");
  EXPECT_EQ(pr->head_sha, "7638417db6d59f3c431d3e1f261cc637155684cd");
  value::Value body = Body(f.Got().back());
  EXPECT_EQ(value::StringAt(&body, {"head"}), "gantry/web/prod");
  EXPECT_EQ(value::StringAt(&body, {"base"}), "main");
}

TEST(GitHubPulls, AFineGrainedTokenWithoutPullRequestsWriteIsNamed) {
  FakeForge f;
  f.Answer("GET /api/repos/o/r/pulls", 200, "[]");
  f.Answer("POST /api/repos/o/r/pulls", 403, Fixture("github_forbidden.json"),
           {{"x-accepted-github-permissions", "pull_requests=write"}});
  auto pr = Make(Kind::kGitHub, f.url())->OpenOrUpdate("o/r", kSpec);
  ASSERT_FALSE(pr.ok());
  EXPECT_EQ(pr.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(pr.status().message(), HasSubstr("the github token lacks the scope pull_requests=write"));
  EXPECT_THAT(pr.status().message(), HasSubstr("gantry/web/prod → main on github o/r"));
}

TEST(GitHubPulls, ChecksAndMerge) {
  FakeForge f;
  const std::string sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
  f.Answer("GET /api/repos/o/r/commits/" + sha + "/status", 200, Fixture("github_combined_status.json"));
  auto checks = Make(Kind::kGitHub, f.url())->Checks("o/r", sha);
  ASSERT_TRUE(checks.ok()) << checks.status().ToString();
  ASSERT_EQ(checks->size(), 2u);
  EXPECT_EQ((*checks)[0].context, "continuous-integration/jenkins");
  EXPECT_EQ((*checks)[1].state, State::kSuccess);
  EXPECT_EQ(Evaluate(*checks, {"security/brakeman"}).kind, Verdict::kMerge);

  auto gh = Make(Kind::kGitHub, f.url());
  f.Answer("PUT /api/repos/o/r/pulls/7/merge", 200, Fixture("github_merged.json"));
  ASSERT_TRUE(gh->Merge("o/r", 7, sha, MergeMethod::kSquash).ok());
  value::Value body = Body(f.Got().back());
  EXPECT_EQ(value::StringAt(&body, {"merge_method"}), "squash");
  EXPECT_EQ(value::StringAt(&body, {"sha"}), sha);

  f.Answer("PUT /api/repos/o/r/pulls/7/merge", 405, Fixture("github_not_mergeable.json"));
  Status s = gh->Merge("o/r", 7, sha, MergeMethod::kMerge);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("Pull Request is not mergeable"));
  f.Answer("PUT /api/repos/o/r/pulls/7/merge", 409, Fixture("github_head_modified.json"));
  EXPECT_EQ(gh->Merge("o/r", 7, sha, MergeMethod::kMerge).code(), Code::kAborted);
  f.Answer("PUT /api/repos/o/r/pulls/7/merge", 502, R"({"message":"bad gateway"})");
  EXPECT_TRUE(Retryable(gh->Merge("o/r", 7, sha, MergeMethod::kMerge)));
}

TEST(GitLabPulls, OpensAMergeRequestBySourceBranch) {
  FakeForge f;
  f.Answer("GET /api/projects/group%2Fconfig/merge_requests", 200, Fixture("gitlab_merge_requests_none.json"));
  f.Answer("POST /api/projects/group%2Fconfig/merge_requests", 201, Fixture("gitlab_merge_request_created.json"));
  auto pr = Make(Kind::kGitLab, f.url())->OpenOrUpdate("group/config", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_TRUE(pr->created);
  EXPECT_EQ(pr->number, 1);  // the iid
  EXPECT_EQ(pr->url, "http://gitlab.example.com/my-group/my-project/merge_requests/1");
  auto got = f.Got();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].query, "state=opened&source_branch=gantry%2Fweb%2Fprod&target_branch=main");
  EXPECT_EQ(got[0].Header("private-token"), "t0ken");
  value::Value body = Body(got[1]);
  EXPECT_EQ(value::StringAt(&body, {"source_branch"}), "gantry/web/prod");
  EXPECT_EQ(value::StringAt(&body, {"target_branch"}), "main");
  EXPECT_EQ(value::StringAt(&body, {"description"}), "image web:1a2b");

  // Open now: updated with PUT on the next release.
  f.Answer("GET /api/projects/group%2Fconfig/merge_requests", 200, "[" + Fixture("gitlab_merge_request_created.json") + "]");
  f.Answer("PUT /api/projects/group%2Fconfig/merge_requests/1", 200, Fixture("gitlab_merge_request_created.json"));
  pr = Make(Kind::kGitLab, f.url())->OpenOrUpdate("group/config", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_FALSE(pr->created);
  EXPECT_EQ(f.Got().back().method, "PUT");
}

TEST(GitLabPulls, StatusesChecksAndMerge) {
  FakeForge f;
  const std::string sha = "18f3e63d05582537db6d183d9d557be09e1f90c8";
  f.Answer("GET /api/projects/g%2Fc/repository/commits/" + sha + "/statuses", 200, Fixture("gitlab_commit_statuses.json"));
  auto gl = Make(Kind::kGitLab, f.url());
  auto checks = gl->Checks("g/c", sha);
  ASSERT_TRUE(checks.ok()) << checks.status().ToString();
  ASSERT_EQ(checks->size(), 2u);
  EXPECT_EQ((*checks)[0].context, "bundler:audit");
  EXPECT_EQ((*checks)[0].state, State::kPending);
  // Only "test" required: merge; all of them: wait for bundler:audit.
  EXPECT_EQ(Evaluate(*checks, {"test"}).kind, Verdict::kMerge);
  Verdict all = Evaluate(*checks, {});
  EXPECT_EQ(all.kind, Verdict::kWait);
  EXPECT_THAT(all.reason, HasSubstr("bundler:audit"));

  f.Answer("PUT /api/projects/g%2Fc/merge_requests/1/merge", 200, Fixture("gitlab_merge_request_created.json"));
  ASSERT_TRUE(gl->Merge("g/c", 1, sha, MergeMethod::kSquash).ok());
  value::Value body = Body(f.Got().back());
  EXPECT_TRUE(value::BoolAt(&body, {"squash"}));
  EXPECT_EQ(value::StringAt(&body, {"sha"}), sha);
  EXPECT_EQ(gl->Merge("g/c", 1, sha, MergeMethod::kRebase).code(), Code::kInvalidArgument);
  f.Answer("PUT /api/projects/g%2Fc/merge_requests/1/merge", 403, Fixture("gitlab_insufficient_scope.json"));
  Status s = gl->Merge("g/c", 1, sha, MergeMethod::kMerge);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("the gitlab token lacks the scope api"));
}

TEST(Evaluate, FailuresWaitsAndTheNewestEntryPerContext) {
  EXPECT_EQ(Evaluate({}, {}).kind, Verdict::kWait);
  EXPECT_EQ(Evaluate({}, {"ci"}).kind, Verdict::kWait);
  Verdict v = Evaluate({{"ci", State::kFailure}, {"lint", State::kPending}}, {});
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_EQ(v.reason, "check ci is failure");
  // The newest (first) entry wins over an older failure of the same context.
  EXPECT_EQ(Evaluate({{"ci", State::kSuccess}, {"ci", State::kFailure}}, {}).kind, Verdict::kMerge);
  // A failed check that is not required does not block.
  EXPECT_EQ(Evaluate({{"ci", State::kSuccess}, {"lint", State::kError}}, {"ci"}).kind, Verdict::kMerge);
  EXPECT_EQ(Evaluate({{"ci", State::kError}}, {"ci"}).reason, "required check ci is error");
  EXPECT_EQ(ParseMergeMethod("squash"), MergeMethod::kSquash);
  EXPECT_EQ(ParseMergeMethod("ff"), std::nullopt);
}

}  // namespace
}  // namespace gantry::forge
