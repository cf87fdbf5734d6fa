// The CI routes of the front against a real ci::Server on SQLite, not started (no workers: runs
// stay queued), over loopback with http::Client.

#include "server/ci_front.h"

#include <stdlib.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/client.h"
#include "store/store.h"
#include "value/value.h"
#include "test/fakes/no_step_executor.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kCiSecret[] = "ci-front-secret";
constexpr char kToken[] = "ci-front-token-0123456789";
constexpr char kRepo[] = "https://git.example/org/app";

std::string Push(std::string_view repo, std::string_view sha) {
  return fmt::format(
      R"({{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":"{}","repository":{{"full_name":"org/app","clone_url":"{}"}},"commits":[]}})",
      sha, repo);
}

class CiFrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ci_front_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ci::ServerOptions options;  // named: GCC 12 at -O2 takes a temporary's map for uninitialized
    options.repos = {kRepo};
    options.data_dir = dir_ / "data";
    ci_ = std::make_unique<ci::Server>(*store_, executor_, options);
    access_ = std::make_unique<Access>(*store_, AccessOptions{.bootstrap_token = kToken});
    EXPECT_EQ(ServeCi(front_, *ci_, {.webhook = {.secret = kCiSecret}}).code(), Code::kInvalidArgument) << "no access";
    EXPECT_EQ(ServeCi(front_, *ci_, {.access = access_.get()}).code(), Code::kInvalidArgument) << "no secret";
    ASSERT_TRUE(ServeCi(front_, *ci_, {.webhook = {.secret = kCiSecret}, .access = access_.get()}).ok());
    ASSERT_TRUE(front_.Start().ok());
  }
  void TearDown() override {
    front_.Stop();
    ci_.reset();
    access_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  http::ClientResponse Send(std::string method, std::string path, http::Headers headers = {}, std::string body = "") {
    auto r = http::Client().Send({.method = std::move(method), .url = fmt::format("http://127.0.0.1:{}{}", front_.port(), path),
                                  .headers = std::move(headers), .body = std::move(body)});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }
  http::ClientResponse Api(std::string method, std::string path) {
    return Send(std::move(method), std::move(path), {{"authorization", std::string("Bearer ") + kToken}});
  }
  http::ClientResponse Hook(const std::string& body, const std::string& delivery) {
    return Send("POST", "/webhook",
                {{"x-github-event", "push"},
                 {"x-github-delivery", delivery},
                 {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(kCiSecret, body)}},
                body);
  }

  fs::path dir_;
  std::unique_ptr<store::Store> store_;
  fakes::NoStepExecutor executor_;
  std::unique_ptr<ci::Server> ci_;
  std::unique_ptr<Access> access_;
  Front front_{"server", {}};
};

TEST_F(CiFrontTest, WebhooksQueueRunsOnceAndIgnoreOtherRepositories) {
  const std::string sha(40, 'a');
  auto queued = Hook(Push(kRepo, sha), "d1");
  EXPECT_EQ(queued.status, 201);
  EXPECT_EQ(queued.body, "{\"run\":1,\"state\":\"queued\"}\n");
  auto again = Hook(Push(kRepo, sha), "d1");
  EXPECT_EQ(again.status, 200);
  EXPECT_THAT(again.body, HasSubstr("duplicate delivery"));
  auto replayed = Hook(Push(kRepo, sha), "d2");
  EXPECT_EQ(replayed.status, 200);
  EXPECT_THAT(replayed.body, HasSubstr("duplicate, ignored"));
  auto other = Hook(Push("https://git.example/org/other", sha), "d3");
  EXPECT_EQ(other.status, 202);
  EXPECT_EQ(other.body, "ignored: repository is not configured\n");
}

TEST_F(CiFrontTest, TheApiNeedsTheTokenAndAnswersErrorsAsJson) {
  for (auto [method, path] : {std::pair{"GET", "/api/runs"}, std::pair{"GET", "/api/runs/1/logs"},
                              std::pair{"POST", "/api/runs/1/cancel"}}) {
    auto r = Send(method, path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"gantry\"");
    EXPECT_EQ(ParseApiError(r.status, r.body).code(), Code::kUnauthenticated) << r.body;
  }
  auto empty = Api("GET", "/api/runs");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, "[]\n");
  for (const char* path : {"/api/runs/1", "/api/runs/abc", "/api/runs/1/logs"}) {
    auto r = Api("GET", path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(ParseApiError(r.status, r.body).code(), Code::kNotFound) << r.body;
  }
}

TEST_F(CiFrontTest, RunsAreListedReadApprovedAndCancelledThroughTheOneMapping) {
  ASSERT_EQ(Hook(Push(kRepo, std::string(40, 'b')), "d1").status, 201);
  auto list = value::ParseJson(Api("GET", "/api/runs").body);
  ASSERT_TRUE(list.ok() && list->IsSeq());
  ASSERT_EQ(list->items().size(), 1u);
  auto run = Api("GET", "/api/runs/1");
  EXPECT_EQ(run.status, 200);
  auto doc = value::ParseJson(run.body);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->Get("state")->AsString(), "queued");
  EXPECT_EQ(doc->Get("repo")->AsString(), kRepo);
  auto logs = Api("GET", "/api/runs/1/logs");
  EXPECT_EQ(logs.status, 200);
  EXPECT_EQ(logs.body, "");

  auto approve = Api("POST", "/api/runs/1/approve");
  EXPECT_EQ(approve.status, 409) << "a queued run awaits no approval: FailedPrecondition";
  EXPECT_EQ(ParseApiError(approve.status, approve.body).code(), Code::kFailedPrecondition);
  auto wrong_method = Api("GET", "/api/runs/1/approve");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["allow"], "POST");
  EXPECT_TRUE(ParseApiError(wrong_method.status, wrong_method.body).Is(Code::kUnimplemented, kMethodNotAllowed));
  EXPECT_EQ(Api("POST", "/api/runs/1").status, 405);
  EXPECT_EQ(Api("GET", "/api/runs/1/nothing").status, 404);

  auto cancelled = Api("POST", "/api/runs/1/cancel");
  EXPECT_EQ(cancelled.status, 200);
  EXPECT_EQ(cancelled.body, "cancelled\n");
  auto again = Api("POST", "/api/runs/1/cancel");
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(ParseApiError(again.status, again.body).message(), HasSubstr("run 1 is cancelled"));
  EXPECT_EQ(Api("POST", "/api/runs/9/cancel").status, 404);
}

}  // namespace
}  // namespace gantry::server
