// The GitHub and GitLab clients against a local HTTP receiver that answers with the responses of
// their documentation (testdata/): commit statuses, pull-request comments (PutComment: the exact
// calls, paging, the comment found again by its marker and edited, one created when none has it,
// refusals), and pull requests (open or update by head, checks, merge and its refusals; Evaluate).
// Gitea is tested against a real Gitea (test/integration/forge_test.cc, preview_test.cc,
// release_pull_request_test.cc).

#include "forge/forge.h"

#include <algorithm>
#include <deque>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "http/http.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  std::ifstream in("testdata/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << "testdata/" << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Records every request and answers with the next scripted answer (Then), else with `answer`
// (status, headers, body), settable per test.
class Receiver {
 public:
  Receiver() {
    for (const char* method : {"GET", "POST", "PATCH", "PUT"}) {
      server_.Handle(method, "/", [this](const http::Request& req) {
        MutexLock lock(mu_);
        got_.push_back(req);
        if (script_.empty()) return answer_;
        http::Response r = std::move(script_.front());
        script_.pop_front();
        return r;
      });
    }
    EXPECT_TRUE(server_.Start().ok());
  }
  void Then(int status, std::string body) {
    MutexLock lock(mu_);
    script_.push_back(http::Response::Json(status, std::move(body)));
  }
  // "METHOD target?query" of each request.
  std::vector<std::string> Calls() {
    MutexLock lock(mu_);
    std::vector<std::string> out;
    for (const auto& r : got_) out.push_back(r.method + " " + r.target + (r.query.empty() ? "" : "?" + r.query));
    return out;
  }
  std::string url(std::string_view path) const { return fmt::format("http://127.0.0.1:{}{}", server_.port(), path); }
  void Answer(int status, std::string body, http::Headers headers = {}) {
    MutexLock lock(mu_);
    answer_ = http::Response::Json(status, std::move(body));
    for (auto& [k, v] : headers) answer_.headers[k] = v;
  }
  http::Request Last() {
    MutexLock lock(mu_);
    EXPECT_FALSE(got_.empty());
    return got_.empty() ? http::Request{} : got_.back();
  }

 private:
  Mutex mu_;
  std::vector<http::Request> got_ GUARDED_BY(mu_);
  std::deque<http::Response> script_ GUARDED_BY(mu_);
  http::Response answer_ GUARDED_BY(mu_) = http::Response::Json(201, "{}");
  http::Server server_;
};

constexpr char kSha[] = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

std::unique_ptr<Forge> Make(Kind kind, const std::string& api) {
  auto f = New({.kind = kind, .api_url = api, .token = "t0ken", .timeout = std::chrono::seconds(5)});
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *std::move(f) : nullptr;
}

// The JSON body's keys and string values, sorted, as "k=v" lines (order-independent).
std::string Fields(std::string_view body) {
  auto v = value::ParseJson(body, "body");
  EXPECT_TRUE(v.ok()) << body;
  std::vector<std::string> lines;
  if (v.ok()) {
    for (const auto& e : v->entries()) lines.push_back(std::string(e.key.AsString()) + "=" + std::string(e.value.AsString()));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(GitHub, PostsTheDocumentedRequestAndAcceptsTheDocumentedAnswer) {
  Receiver r;
  r.Answer(201, Fixture("github_status_created.json"));
  auto gh = Make(Kind::kGitHub, r.url("/api/v3/"));
  ASSERT_TRUE(gh->SetCommitStatus("octocat/Hello-World", {.sha = kSha, .state = State::kRunning,
                                                           .context = "gantry/ci", .description = "step build running",
                                                           .target_url = "https://gantry.example/runs/7"})
                  .ok());
  const http::Request req = r.Last();
  EXPECT_EQ(req.target, std::string("/api/v3/repos/octocat/Hello-World/statuses/") + kSha);
  EXPECT_EQ(req.Header("authorization"), "Bearer t0ken");
  EXPECT_EQ(req.Header("accept"), "application/vnd.github+json");
  EXPECT_EQ(req.Header("x-github-api-version"), "2022-11-28");
  EXPECT_EQ(req.Header("content-type"), "application/json");
  // Running is pending on GitHub.
  EXPECT_EQ(Fields(req.body),
            "context=gantry/ci\ndescription=step build running\nstate=pending\ntarget_url=https://gantry.example/runs/7\n");
}

TEST(GitHub, AMissingScopeIsNamed) {
  Receiver r;
  r.Answer(403, Fixture("github_forbidden.json"), {{"x-accepted-oauth-scopes", "repo, repo:status"}, {"x-oauth-scopes", "read:user"}});
  auto gh = Make(Kind::kGitHub, r.url(""));
  Status s = gh->SetCommitStatus("octocat/Hello-World", {.sha = kSha, .state = State::kFailure, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("lacks the scope repo, repo:status (the token has: read:user)"));
  EXPECT_THAT(s.message(), HasSubstr("octocat/Hello-World"));
  EXPECT_FALSE(Retryable(s));
  // A fine-grained token: the permission it needs.
  r.Answer(403, Fixture("github_forbidden.json"), {{"x-accepted-github-permissions", "statuses=write"}});
  s = gh->SetCommitStatus("octocat/Hello-World", {.sha = kSha, .state = State::kFailure, .context = "gantry/ci"});
  EXPECT_THAT(s.message(), HasSubstr("lacks the scope statuses=write"));
}

TEST(GitHub, AnUnknownCommitIsNotFound) {
  Receiver r;
  r.Answer(422, Fixture("github_no_commit.json"));
  Status s = Make(Kind::kGitHub, r.url(""))->SetCommitStatus("o/r", {.sha = kSha, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kNotFound) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("No commit found for SHA"));
}

TEST(GitLab, PostsTheDocumentedRequestWithGitLabStates) {
  Receiver r;
  r.Answer(201, Fixture("gitlab_status_created.json"));
  auto gl = Make(Kind::kGitLab, r.url("/api/v4"));
  ASSERT_TRUE(gl->SetCommitStatus("group/sub/app", {.sha = kSha, .state = State::kError, .context = "gantry/deploy/prod",
                                                     .description = "deploy failed: image pull\nmore"})
                  .ok());
  http::Request req = r.Last();
  EXPECT_EQ(req.target, std::string("/api/v4/projects/group%2Fsub%2Fapp/statuses/") + kSha);
  EXPECT_EQ(req.Header("private-token"), "t0ken");
  EXPECT_EQ(req.Header("authorization"), "");
  // GitLab has no error state; one line of description; no target_url when there is none.
  EXPECT_EQ(Fields(req.body), "description=deploy failed: image pull\nname=gantry/deploy/prod\nstate=failed\n");
  ASSERT_TRUE(gl->SetCommitStatus("group/sub/app", {.sha = kSha, .state = State::kRunning, .context = "gantry/ci"}).ok());
  EXPECT_THAT(r.Last().body, HasSubstr(R"("state":"running")"));
}

TEST(GitLab, TheStateTheCommitAlreadyHasCountsAsDone) {
  Receiver r;
  r.Answer(400, Fixture("gitlab_cannot_transition.json"));
  EXPECT_TRUE(Make(Kind::kGitLab, r.url(""))->SetCommitStatus("g/a", {.sha = kSha, .state = State::kRunning, .context = "c"}).ok());
}

TEST(GitLab, AMissingScopeIsNamed) {
  Receiver r;
  r.Answer(403, Fixture("gitlab_insufficient_scope.json"));
  Status s = Make(Kind::kGitLab, r.url(""))->SetCommitStatus("g/a", {.sha = kSha, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("the gitlab token lacks the scope api"));
}

TEST(Forge, ServerErrorsAndAnUnreachableForgeAreRetryableOthersAreNot) {
  Receiver r;
  r.Answer(502, R"({"message":"bad gateway"})");
  auto f = Make(Kind::kGitea, r.url("/api/v1"));
  Status s = f->SetCommitStatus("o/r", {.sha = kSha, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_TRUE(Retryable(s));
  r.Answer(401, R"({"message":"token is required"})");
  s = f->SetCommitStatus("o/r", {.sha = kSha, .context = "gantry/ci"});
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_FALSE(Retryable(s));
  auto down = Make(Kind::kGitea, "http://127.0.0.1:1/api/v1");
  s = down->SetCommitStatus("o/r", {.sha = kSha, .context = "gantry/ci"});
  EXPECT_TRUE(Retryable(s)) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("set status pending of gantry/ci on gitea commit 6dcb09b5b578 of o/r"));
}

TEST(Forge, LongDescriptionsAreCutToOneLineOf140) {
  Receiver r;
  auto f = Make(Kind::kGitea, r.url(""));
  ASSERT_TRUE(f->SetCommitStatus("o/r", {.sha = kSha, .context = "c", .description = std::string(200, 'x')}).ok());
  auto v = value::ParseJson(r.Last().body, "body");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(value::StringAt(&*v, {"description"}), std::string(137, 'x') + "...");
  EXPECT_EQ(r.Last().Header("authorization"), "token t0ken");
}

TEST(Forge, BadOptionsAreRefused) {
  auto bad = New({.kind = Kind::kGitLab, .api_url = "gitlab.com/api/v4", .token = "t"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("https://gitlab.com/api/v4"));
  EXPECT_FALSE(New({.kind = Kind::kGitea, .api_url = "http://h/api/v1", .token = ""}).ok());
}

TEST(Forge, RepoPath) {
  EXPECT_EQ(RepoPath("https://gitea.example/", "https://gitea.example/shop/web.git"), "shop/web");
  EXPECT_EQ(RepoPath("https://gitea.example", "https://gitea.example/shop/web/"), "shop/web");
  EXPECT_EQ(RepoPath("https://gitlab.example/", "https://gitlab.example/g/sub/app"), "g/sub/app");
  EXPECT_EQ(RepoPath("https://gitea.example/", "https://gitea.example.evil/shop/web"), std::nullopt);
  EXPECT_EQ(RepoPath("https://gitea.example/", "https://gitea.example/"), std::nullopt);
  EXPECT_EQ(ParseState("failure"), State::kFailure);
  EXPECT_EQ(ParseKind("gitlab"), Kind::kGitLab);
  EXPECT_EQ(ParseKind("bitbucket"), std::nullopt);
}

constexpr char kMarker[] = "<!-- gantry-preview -->";

// A page of `n` documented comments with ids from `first`, none holding the marker.
std::string Page(int first, int n) {
  auto doc = value::ParseJson(Fixture("github_issue_comments.json"), "fixture");
  EXPECT_TRUE(doc.ok());
  value::Value page = value::Value::Seq();
  for (int i = 0; i < n; ++i) {
    value::Value c = doc->items()[0];
    c.Set("id", int64_t{first + i});
    page.Append(c);
  }
  return value::ToJson(page);
}

value::Value JsonOf(const http::Request& req) {
  auto v = value::ParseJson(req.body, "body");
  EXPECT_TRUE(v.ok()) << req.body;
  return v.ok() ? *std::move(v) : value::Value::Map();
}

std::string BodyOf(const http::Request& req) {
  value::Value v = JsonOf(req);
  return value::StringAt(&v, {"body"});
}

TEST(GitHubComments, TheMarkedCommentOnALaterPageIsEdited) {
  Receiver r;
  r.Then(200, Page(1, 50));
  std::string second = Page(51, 3);
  auto page = value::ParseJson(second, "page");
  ASSERT_TRUE(page.ok());
  value::Value marked = page->items()[1];
  marked.Set("body", std::string(kMarker) + "\nold preview");
  value::Value list = value::Value::Seq();
  list.Append(page->items()[0]);
  list.Append(marked);
  list.Append(page->items()[2]);
  r.Then(200, value::ToJson(list));
  r.Then(200, Fixture("github_issue_comment_created.json"));
  auto gh = Make(Kind::kGitHub, r.url("/api/v3"));
  auto id = gh->PutComment("octocat/Hello-World", 1347, kMarker, std::string(kMarker) + "\nnew preview");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, 52);
  EXPECT_THAT(r.Calls(), ElementsAre("GET /api/v3/repos/octocat/Hello-World/issues/1347/comments?per_page=50&page=1",
                                     "GET /api/v3/repos/octocat/Hello-World/issues/1347/comments?per_page=50&page=2",
                                     "PATCH /api/v3/repos/octocat/Hello-World/issues/comments/52"));
  const http::Request patch = r.Last();
  EXPECT_EQ(patch.Header("authorization"), "Bearer t0ken");
  EXPECT_EQ(patch.Header("accept"), "application/vnd.github+json");
  EXPECT_EQ(patch.Header("content-type"), "application/json");
  EXPECT_EQ(BodyOf(patch), std::string(kMarker) + "\nnew preview");
}

TEST(GitHubComments, WithoutAMarkedCommentOneIsCreated) {
  Receiver r;
  r.Then(200, Fixture("github_issue_comments.json"));
  r.Then(201, Fixture("github_issue_comment_created.json"));
  auto id = Make(Kind::kGitHub, r.url(""))->PutComment("octocat/Hello-World", 1347, kMarker, std::string(kMarker) + " hi");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, 1);  // the documented answer's id
  EXPECT_THAT(r.Calls(), ElementsAre("GET /repos/octocat/Hello-World/issues/1347/comments?per_page=50&page=1",
                                     "POST /repos/octocat/Hello-World/issues/1347/comments"));
  EXPECT_EQ(BodyOf(r.Last()), std::string(kMarker) + " hi");
}

TEST(GitLabComments, TheMarkedNoteOfTheMergeRequestIsUpdated) {
  Receiver r;
  auto notes = value::ParseJson(Fixture("gitlab_merge_request_notes.json"), "fixture");
  ASSERT_TRUE(notes.ok());
  value::Value list = value::Value::Seq();
  list.Append(notes->items()[0]);
  value::Value marked = notes->items()[1];
  marked.Set("body", std::string("preview\n") + kMarker);
  list.Append(marked);
  r.Then(200, value::ToJson(list));
  r.Then(200, value::ToJson(marked));
  auto gl = Make(Kind::kGitLab, r.url("/api/v4"));
  auto id = gl->PutComment("group/sub/app", 7, kMarker, std::string(kMarker) + "\nv2");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, 305);
  EXPECT_THAT(r.Calls(),
              ElementsAre("GET /api/v4/projects/group%2Fsub%2Fapp/merge_requests/7/notes?per_page=50&page=1&sort=asc&order_by=created_at",
                          "PUT /api/v4/projects/group%2Fsub%2Fapp/merge_requests/7/notes/305"));
  EXPECT_EQ(r.Last().Header("private-token"), "t0ken");
  EXPECT_EQ(BodyOf(r.Last()), std::string(kMarker) + "\nv2");
}

TEST(GiteaComments, AMissingScopeIsNamedAndNothingIsCreatedWithoutTheMarker) {
  Receiver r;
  r.Then(200, "[]");
  r.Then(403, R"({"message":"token does not have at least one of required scope(s), required=[write:issue]","url":"x"})");
  auto gitea = Make(Kind::kGitea, r.url("/api/v1"));
  auto id = gitea->PutComment("shop/config", 3, kMarker, std::string(kMarker) + " x");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(id.status().message(), HasSubstr("the gitea token lacks the scope write:issue"));
  EXPECT_THAT(id.status().message(), HasSubstr("comment on gitea pull request 3 of shop/config"));
  // Gitea lists every comment at once: one GET, no paging parameters.
  EXPECT_THAT(r.Calls(), ElementsAre("GET /api/v1/repos/shop/config/issues/3/comments",
                                     "POST /api/v1/repos/shop/config/issues/3/comments"));
  EXPECT_EQ(r.Last().Header("authorization"), "token t0ken");
  // A body that would not be found again is refused before any call.
  auto bad = gitea->PutComment("shop/config", 3, kMarker, "no marker");
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.Calls().size(), 2u);
}

TEST(GiteaComments, AForgeDownIsRetryable) {
  auto down = Make(Kind::kGitea, "http://127.0.0.1:1/api/v1");
  auto id = down->PutComment("shop/config", 3, kMarker, kMarker);
  ASSERT_FALSE(id.ok());
  EXPECT_TRUE(Retryable(id.status())) << id.status().ToString();
}

const PullRequestSpec kSpec{.head = "gantry/web/prod", .base = "main", .title = "release web to prod", .body = "image web:1a2b"};

TEST(GitHubPulls, AnOpenPullRequestOfTheHeadIsUpdatedNotOpenedAgain) {
  Receiver r;
  r.Then(200, Fixture("github_pulls_open.json"));
  r.Then(200, Fixture("github_pull_created.json"));
  auto pr = Make(Kind::kGitHub, r.url("/api"))->OpenOrUpdatePullRequest("octocat/Hello-World", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_FALSE(pr->created);
  // GitHub filters by head (OWNER:BRANCH) and base itself; the open one (1347) is updated.
  EXPECT_THAT(r.Calls(), ElementsAre("GET /api/repos/octocat/Hello-World/pulls?state=open&head=octocat%3Agantry%2Fweb%2Fprod&base=main&per_page=100",
                                     "PATCH /api/repos/octocat/Hello-World/pulls/1347"));
  const http::Request patch = r.Last();
  EXPECT_EQ(patch.Header("authorization"), "Bearer t0ken");
  EXPECT_EQ(patch.Header("content-type"), "application/json");
  value::Value body = JsonOf(patch);
  EXPECT_EQ(value::StringAt(&body, {"title"}), "release web to prod");
  EXPECT_EQ(value::StringAt(&body, {"body"}), "image web:1a2b");
  EXPECT_EQ(body.Get("head"), nullptr);  // the head and base of an open one do not change
}

TEST(GitHubPulls, NoneOpenOpensOne) {
  Receiver r;
  r.Then(200, "[]");
  r.Then(201, Fixture("github_pull_created.json"));
  auto pr = Make(Kind::kGitHub, r.url("/api"))->OpenOrUpdatePullRequest("octocat/Hello-World", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_TRUE(pr->created);
  EXPECT_EQ(pr->number, 1348);
  EXPECT_EQ(pr->url, "https://github.com/octocat/Hello-World/pull/1348");
  EXPECT_EQ(pr->head_sha, "7638417db6d59f3c431d3e1f261cc637155684cd");
  EXPECT_EQ(r.Calls().back(), "POST /api/repos/octocat/Hello-World/pulls");
  value::Value body = JsonOf(r.Last());
  EXPECT_EQ(value::StringAt(&body, {"head"}), "gantry/web/prod");
  EXPECT_EQ(value::StringAt(&body, {"base"}), "main");
}

TEST(GitHubPulls, AFineGrainedTokenWithoutPullRequestsWriteIsNamed) {
  Receiver r;
  r.Then(200, "[]");
  r.Answer(403, Fixture("github_forbidden.json"), {{"x-accepted-github-permissions", "pull_requests=write"}});
  auto pr = Make(Kind::kGitHub, r.url("/api"))->OpenOrUpdatePullRequest("o/r", kSpec);
  ASSERT_FALSE(pr.ok());
  EXPECT_EQ(pr.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(pr.status().message(), HasSubstr("the github token lacks the scope pull_requests=write"));
  EXPECT_THAT(pr.status().message(), HasSubstr("gantry/web/prod → main on github o/r"));
}

TEST(GitHubPulls, ChecksAndMerge) {
  Receiver r;
  r.Then(200, Fixture("github_combined_status.json"));
  auto gh = Make(Kind::kGitHub, r.url("/api"));
  auto checks = gh->Checks("o/r", kSha);
  ASSERT_TRUE(checks.ok()) << checks.status().ToString();
  EXPECT_EQ(r.Calls().back(), std::string("GET /api/repos/o/r/commits/") + kSha + "/status?per_page=100");
  ASSERT_EQ(checks->size(), 2u);
  EXPECT_EQ((*checks)[0].context, "continuous-integration/jenkins");
  EXPECT_EQ((*checks)[1].state, State::kSuccess);
  EXPECT_EQ(Evaluate(*checks, {"security/brakeman"}).kind, Verdict::kMerge);

  r.Then(200, Fixture("github_merged.json"));
  ASSERT_TRUE(gh->MergePullRequest("o/r", 7, kSha, MergeMethod::kSquash).ok());
  EXPECT_EQ(r.Calls().back(), "PUT /api/repos/o/r/pulls/7/merge");
  value::Value body = JsonOf(r.Last());
  EXPECT_EQ(value::StringAt(&body, {"merge_method"}), "squash");
  EXPECT_EQ(value::StringAt(&body, {"sha"}), kSha);

  r.Then(405, Fixture("github_not_mergeable.json"));
  Status s = gh->MergePullRequest("o/r", 7, kSha, MergeMethod::kMerge);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("Pull Request is not mergeable"));
  r.Then(409, Fixture("github_head_modified.json"));
  EXPECT_EQ(gh->MergePullRequest("o/r", 7, kSha, MergeMethod::kMerge).code(), Code::kAborted);
  r.Then(502, R"({"message":"bad gateway"})");
  EXPECT_TRUE(Retryable(gh->MergePullRequest("o/r", 7, kSha, MergeMethod::kMerge)));
}

TEST(GitLabPulls, OpensAMergeRequestBySourceBranchThenUpdatesIt) {
  Receiver r;
  r.Then(200, Fixture("gitlab_merge_requests_none.json"));
  r.Then(201, Fixture("gitlab_merge_request_created.json"));
  auto gl = Make(Kind::kGitLab, r.url("/api"));
  auto pr = gl->OpenOrUpdatePullRequest("group/config", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_TRUE(pr->created);
  EXPECT_EQ(pr->number, 1);  // the iid
  EXPECT_EQ(pr->url, "http://gitlab.example.com/my-group/my-project/merge_requests/1");
  EXPECT_THAT(r.Calls(), ElementsAre("GET /api/projects/group%2Fconfig/merge_requests?state=opened&source_branch=gantry%2Fweb%2Fprod&target_branch=main",
                                     "POST /api/projects/group%2Fconfig/merge_requests"));
  EXPECT_EQ(r.Last().Header("private-token"), "t0ken");
  value::Value body = JsonOf(r.Last());
  EXPECT_EQ(value::StringAt(&body, {"source_branch"}), "gantry/web/prod");
  EXPECT_EQ(value::StringAt(&body, {"target_branch"}), "main");
  EXPECT_EQ(value::StringAt(&body, {"description"}), "image web:1a2b");

  // Open now: updated with PUT on the next release.
  r.Then(200, "[" + Fixture("gitlab_merge_request_created.json") + "]");
  r.Then(200, Fixture("gitlab_merge_request_created.json"));
  pr = gl->OpenOrUpdatePullRequest("group/config", kSpec);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_FALSE(pr->created);
  EXPECT_EQ(r.Calls().back(), "PUT /api/projects/group%2Fconfig/merge_requests/1");
}

TEST(GitLabPulls, StatusesChecksAndMerge) {
  Receiver r;
  const std::string sha = "18f3e63d05582537db6d183d9d557be09e1f90c8";
  r.Then(200, Fixture("gitlab_commit_statuses.json"));
  auto gl = Make(Kind::kGitLab, r.url("/api"));
  auto checks = gl->Checks("g/c", sha);
  ASSERT_TRUE(checks.ok()) << checks.status().ToString();
  EXPECT_EQ(r.Calls().back(), "GET /api/projects/g%2Fc/repository/commits/" + sha + "/statuses?per_page=100");
  ASSERT_EQ(checks->size(), 2u);
  EXPECT_EQ((*checks)[0].context, "bundler:audit");
  EXPECT_EQ((*checks)[0].state, State::kPending);
  // Only "test" required: merge; all of them: wait for bundler:audit.
  EXPECT_EQ(Evaluate(*checks, {"test"}).kind, Verdict::kMerge);
  Verdict all = Evaluate(*checks, {});
  EXPECT_EQ(all.kind, Verdict::kWait);
  EXPECT_THAT(all.reason, HasSubstr("bundler:audit"));

  r.Then(200, Fixture("gitlab_merge_request_created.json"));
  ASSERT_TRUE(gl->MergePullRequest("g/c", 1, sha, MergeMethod::kSquash).ok());
  EXPECT_EQ(r.Calls().back(), "PUT /api/projects/g%2Fc/merge_requests/1/merge");
  value::Value body = JsonOf(r.Last());
  EXPECT_TRUE(value::BoolAt(&body, {"squash"}));
  EXPECT_EQ(value::StringAt(&body, {"sha"}), sha);
  EXPECT_EQ(gl->MergePullRequest("g/c", 1, sha, MergeMethod::kRebase).code(), Code::kInvalidArgument);
  r.Then(403, Fixture("gitlab_insufficient_scope.json"));
  Status s = gl->MergePullRequest("g/c", 1, sha, MergeMethod::kMerge);
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
