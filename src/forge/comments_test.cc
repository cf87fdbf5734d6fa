// Forge::PutComment against a local HTTP receiver answering as GitHub's and GitLab's documentation
// shows (testdata/): the exact calls (paths, paging, methods, headers, bodies), the comment found
// again by its marker and edited, one created when none has it, and the refusals. Gitea is tested
// against a real Gitea (test/integration/preview_test.cc).

#include <deque>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "forge/forge.h"
#include "http/http.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kMarker[] = "<!-- gantry-preview -->";

std::string Fixture(const std::string& name) {
  std::ifstream in("testdata/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << "testdata/" << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Records every request and answers each with the next scripted answer (then 500).
class Receiver {
 public:
  Receiver() {
    for (const char* method : {"GET", "POST", "PATCH", "PUT"}) {
      server_.Handle(method, "/", [this](const http::Request& req) {
        MutexLock lock(mu_);
        got_.push_back(req);
        if (script_.empty()) return http::Response::Json(500, R"({"message":"unexpected request"})");
        http::Response r = std::move(script_.front());
        script_.pop_front();
        return r;
      });
    }
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string url(std::string_view path) const { return fmt::format("http://127.0.0.1:{}{}", server_.port(), path); }
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
  http::Request Last() {
    MutexLock lock(mu_);
    return got_.empty() ? http::Request{} : got_.back();
  }

 private:
  Mutex mu_;
  std::vector<http::Request> got_ GUARDED_BY(mu_);
  std::deque<http::Response> script_ GUARDED_BY(mu_);
  http::Server server_;
};

std::unique_ptr<Forge> Make(Kind kind, const std::string& api) {
  auto f = New({.kind = kind, .api_url = api, .token = "t0ken", .timeout = std::chrono::seconds(5)});
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *std::move(f) : nullptr;
}

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

std::string BodyOf(const http::Request& req) {
  auto v = value::ParseJson(req.body, "body");
  EXPECT_TRUE(v.ok()) << req.body;
  return v.ok() ? value::StringAt(&*v, {"body"}) : "";
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

}  // namespace
}  // namespace gantry::forge
