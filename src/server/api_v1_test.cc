// /api/v1 against a real ci::Server on SQLite (not started: runs stay queued) behind the event
// store, over loopback: every registered route is in api/openapi.json, every answer validates
// against its schema, pagination and ETags, problem+json errors, and Server-Sent Events.

#include "server/api_v1.h"
#include "server/worker_api.h"

#include <stdlib.h>

#include <filesystem>
#include <set>
#include <thread>

#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/agent.h"
#include "base/mutex.h"
#include "base/path.h"
#include "base/process.h"
#include "http/client.h"
#include "server/ci_front.h"
#include "server/events.h"
#include "server/internal/json_schema.h"
#include "server/pull_watch.h"
#include "server/server_metrics.h"
#include "store/store.h"
#include "value/value.h"
#include "webhook/webhook.h"
#include "base/hash.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"
#include "test/fakes/no_step_executor.h"

namespace gantry::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;
using value::Value;

constexpr char kApiSecret[] = "api-v1-secret";
constexpr char kApiToken[] = "api-v1-token-0123456789";
constexpr char kApiRepo[] = "https://git.example/org/app";

std::string Push(std::string_view sha) {
  return fmt::format(
      R"({{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":"{}","repository":{{"full_name":"org/app","clone_url":"{}"}},"commits":[]}})",
      sha, kApiRepo);
}

const Value& Doc() {
  static const Value doc = [] {
    auto d = value::ParseJson(OpenApiDocument(), "api/openapi.json");
    GANTRY_CHECK(d.ok());
    return *d;
  }();
  return doc;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class ApiV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "api_v1_test.XXXXXX").string();
    GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto store = store::Open("sqlite:" + (dir_ / "gantry.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    real_ = std::move(*store);
    store_ = ObservedStore(*real_, bus_, nullptr, [this](int64_t id) { return projects_.Of(id); });
    ci::ServerOptions options;  // named: GCC 12 at -O2 takes a temporary's map for uninitialized
    options.repos = {kApiRepo};
    options.data_dir = dir_ / "data";
    ci_ = std::make_unique<ci::Server>(*store_, executor_, options);
    access_ = std::make_unique<Access>(*store_, AccessOptions{.bootstrap_token = kApiToken});
    front_.AddHealth();
    server_metrics_ = std::make_unique<ServerMetrics>(metrics_, *store_, bus_);
    front_.CountWebhooks(server_metrics_->webhook_deliveries());
    ASSERT_TRUE(ServeCi(front_, *ci_, {.webhook = {.secret = kApiSecret}, .access = access_.get()}).ok());
    ServeAccess(front_, *access_);
    ServeWorkerApi(front_, *ci_, *access_);
    EXPECT_EQ(ServeApiV1(front_, {.ci = ci_.get()}).code(), Code::kInvalidArgument);
    deliver::Config config;
    config.clusters = {{.name = "dev-1", .environment = "dev"}, {.name = "prod-1", .environment = "prod"}};
    config.environments = {{.name = "dev"}, {.name = "prod", .after = {"dev"}, .gates = {.approval = true}}};
    config.projects = {{.name = "team-a", .description = "Team A", .source_repos = {"https://git.example/team-a/*"},
                        .image_repos = {"registry.example/team-a/*"}, .destinations = {{.server = "*", .namespace_ = "team-a-*"}}}};
    deliver::RenderFn render = [](std::string_view revision, const std::string& path, const deliver::RenderTarget&) -> Result<render::Rendered> {
      GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n", path));
      return render::Rendered{std::string(revision), std::move(docs)};
    };
    deliver::ConnectFn connect = [this](const deliver::Cluster&) -> Result<std::unique_ptr<kube::Client>> {
      {
        MutexLock lock(gate_mu_);
        while (!open_) gate_cv_.Wait(gate_mu_);
      }
      return fakes::ForwardingKubeClient::To(cluster_);
    };
    deliver_config_ = config;
    renderer_ = [render] { return render; };
    connect_ = connect;
    actions_ = std::make_unique<Actions>(*store_, ActionsOptions{.config = config, .renderer = [render] { return render; }, .connect = connect,
                                                                 .max_running = 2, .events = &bus_, .projects = &projects_});
    ASSERT_TRUE(ServeApiV1(front_, {.access = access_.get(), .ci = ci_.get(), .events = &bus_, .deliver_config = config,
                                    .actions = actions_.get(), .repos = {kApiRepo}, .metrics = &metrics_}).ok());
    ASSERT_TRUE(front_.Start().ok());
  }
  void TearDown() override {
    front_.Stop();
    Open();
    actions_.reset();
    server_metrics_.reset();
    ci_.reset();
    access_.reset();
    store_.reset();
    real_.reset();
    fs::remove_all(dir_);
  }

  std::string Url(std::string_view path) const { return fmt::format("http://127.0.0.1:{}{}", front_.port(), path); }
  http::ClientResponse Send(std::string method, std::string path, http::Headers headers = {}) {
    auto r = http::Client().Send({.method = std::move(method), .url = Url(path), .headers = std::move(headers)});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }
  http::ClientResponse Api(std::string method, std::string path, http::Headers headers = {}) {
    headers["authorization"] = std::string("Bearer ") + kApiToken;
    return Send(std::move(method), std::move(path), std::move(headers));
  }
  void Hook(const std::string& sha, const std::string& delivery) {
    std::string body = Push(sha);
    auto r = http::Client().Send({.method = "POST",
                                  .url = Url("/webhook"),
                                  .headers = {{"x-github-event", "push"},
                                              {"x-github-delivery", delivery},
                                              {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(kApiSecret, body)}},
                                  .body = body});
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 201) << r->body;
  }

  // Checks `r` against what the document says `method` `path_template` answers with its status.
  void ExpectValid(const http::ClientResponse& r, std::string_view path_template, std::string_view method) {
    SCOPED_TRACE(fmt::format("{} {} {}", method, path_template, r.status));
    const std::string lower = Lower(std::string(method));
    const Value* op = Doc().Find({"paths", path_template, std::string_view(lower)});
    ASSERT_NE(op, nullptr) << "not in the document";
    const std::string status = std::to_string(r.status);
    const Value* resp = op->Find({"responses", std::string_view(status)});
    ASSERT_NE(resp, nullptr) << "status not documented: " << r.body;
    if (const Value* ref = resp->Get("$ref")) resp = Doc().Find({"components", "responses", ref->AsString().substr(23)});
    ASSERT_NE(resp, nullptr);
    const Value* content = resp->Get("content");
    if (content == nullptr) {
      EXPECT_EQ(r.body, "");
      return;
    }
    std::string type(std::string_view(r.headers.at("content-type")).substr(0, r.headers.at("content-type").find(';')));
    const Value* schema = content->Find({std::string_view(type), "schema"});
    ASSERT_NE(schema, nullptr) << "content type " << type << " not documented";
    if (type.find("json") == std::string::npos) return;
    auto body = value::ParseJson(r.body);
    ASSERT_TRUE(body.ok()) << r.body;
    Status valid = internal::ValidateJson(Doc(), *schema, *body);
    EXPECT_TRUE(valid.ok()) << valid.message() << "\n" << r.body;
  }

  // Connections to clusters (made as a deploy applies) wait until the gate opens (it starts open).
  void Close() {
    MutexLock lock(gate_mu_);
    open_ = false;
  }
  void Open() {
    MutexLock lock(gate_mu_);
    open_ = true;
    gate_cv_.NotifyAll();
  }
  // A user token of `user` with `role` on `project`, straight in the store; its secret.
  std::string UserToken(const std::string& user, const std::string& role, const std::string& project) {
    auto secret = NewTokenSecret();
    GANTRY_CHECK(secret.ok());
    GANTRY_CHECK(store_->CreateToken({.name = user + "-token", .owner = user, .secret_sha256 = Sha256Hex(*secret), .created_by = "test"}).ok());
    GANTRY_CHECK(store_->GrantRole({.subject = user, .role = role, .project = project}).ok());
    return *secret;
  }
  http::ClientResponse Post(const std::string& token, std::string path, std::string body) {
    auto r = http::Client().Send({.method = "POST", .url = Url(path),
                                  .headers = {{"authorization", "Bearer " + token}, {"content-type", "application/json"}},
                                  .body = std::move(body)});
    if (!r.ok()) ADD_FAILURE() << path << ": " << r.status().ToString();
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }
  // The data of the next "action" event of `sub` (within 20 s), or null.
  static Value NextAction(EventBus::Subscription& sub) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto e = sub.Next(std::chrono::milliseconds(200));
      if (e && e->type == "action") return *value::ParseJson(e->data);
    }
    return Value();
  }

  fs::path dir_;
  std::unique_ptr<store::Store> real_;
  Mutex gate_mu_;
  CondVar gate_cv_;
  bool open_ = true;
  std::shared_ptr<fakes::FakeKubeClient> cluster_ = std::make_shared<fakes::FakeKubeClient>();
  ReleaseProjects projects_;
  deliver::Config deliver_config_;
  std::function<deliver::RenderFn()> renderer_;
  deliver::ConnectFn connect_;
  std::unique_ptr<Actions> actions_;
  EventBus bus_{64, 16};
  std::unique_ptr<store::Store> store_;
  fakes::NoStepExecutor executor_;
  std::unique_ptr<ci::Server> ci_;
  std::unique_ptr<Access> access_;
  http::Registry metrics_;
  std::unique_ptr<ServerMetrics> server_metrics_;
  Front front_{"server", {}};
};

// The worker API (server/worker_api.h): only a worker token claims; the job and the answers are as
// the document says; every write is fenced by the claim; a cancel reaches the next renewal.
TEST_F(ApiV1Test, AWorkerClaimsARunReportsItAndIsFencedByItsClaim) {
  auto created = Post(kApiToken, "/api/tokens", R"({"name":"pool","project":"*","roles":["worker"]})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string worker(value::ParseJson(created.body)->Get("token")->AsString());
  EXPECT_EQ(Post(kApiToken, "/api/tokens", R"({"name":"w","project":"team-a","roles":["worker","viewer"]})").status, 400);
  EXPECT_EQ(Post(kApiToken, "/api/tokens", R"({"name":"team-a-pool","project":"team-a","roles":["worker"]})").status, 201)
      << "a project's worker pool";
  EXPECT_EQ(Post(kApiToken, "/api/tokens", R"({"name":"w","project":"*","roles":["viewer"]})").status, 400);
  auto none = Post(worker, "/api/v1/worker/claim", R"({"name":"w1","wait_seconds":0})");
  ASSERT_EQ(none.status, 200) << none.body;
  ExpectValid(none, "/api/v1/worker/claim", "POST");
  EXPECT_EQ(none.body, "{\"job\":null}\n");
  Hook(std::string(40, 'a'), "d1");
  EXPECT_EQ(Post(kApiToken, "/api/v1/worker/claim", R"({"name":"w1","wait_seconds":0})").status, 403) << "an admin is no worker token";
  EXPECT_EQ(Post(worker, "/api/v1/worker/claim", R"({"name":"w 1"})").status, 400);
  auto claimed = Post(worker, "/api/v1/worker/claim", R"({"name":"w1","wait_seconds":1})");
  ASSERT_EQ(claimed.status, 200) << claimed.body;
  ExpectValid(claimed, "/api/v1/worker/claim", "POST");
  auto job = value::ParseJson(claimed.body);
  ASSERT_TRUE(job.ok()) << claimed.body;
  EXPECT_EQ(value::IntAt(&*job, {"job", "run", "id"}), 1) << claimed.body;
  EXPECT_EQ(value::IntAt(&*job, {"job", "run", "attempt"}), 1);
  EXPECT_EQ(Send("GET", "/api/v1/runs/1", {{"authorization", "Bearer " + worker}}).status, 403) << "a worker token reads no run";
  auto step = Post(worker, "/api/v1/worker/runs/1/steps", R"({"name":"w1","attempt":1,"step":{"name":"build","state":"running"}})");
  EXPECT_EQ(step.status, 204) << step.body;
  auto log = Post(worker, "/api/v1/worker/runs/1/logs", R"({"name":"w1","attempt":1,"step":"build","seq":0,"data":"hello\n"})");
  ASSERT_EQ(log.status, 200) << log.body;
  ExpectValid(log, "/api/v1/worker/runs/{id}/logs", "POST");
  auto other = Post(worker, "/api/v1/worker/runs/1/logs", R"({"name":"w2","attempt":1,"step":"build","seq":1,"data":"x"})");
  EXPECT_EQ(other.status, 409) << "another worker's run: " << other.body;
  EXPECT_EQ(Post(worker, "/api/v1/worker/runs/1/steps", R"({"name":"w1","attempt":2,"step":{"name":"b","state":"running"}})").status, 409);
  auto lease = Post(worker, "/api/v1/worker/runs/1/lease", R"({"name":"w1","attempt":1})");
  ASSERT_EQ(lease.status, 200) << lease.body;
  ExpectValid(lease, "/api/v1/worker/runs/{id}/lease", "POST");
  EXPECT_THAT(lease.body, HasSubstr("\"renewed\""));
  EXPECT_EQ(Api("POST", "/api/v1/runs/1/cancel").status, 202);
  EXPECT_THAT(Post(worker, "/api/v1/worker/runs/1/lease", R"({"name":"w1","attempt":1})").body, HasSubstr("cancel_requested"));
  auto finish = Post(worker, "/api/v1/worker/runs/1/finish", R"({"name":"w1","attempt":1,"state":"cancelled","message":"cancelled"})");
  EXPECT_EQ(finish.status, 204) << finish.body;
  EXPECT_EQ(Post(worker, "/api/v1/worker/runs/1/lease", R"({"name":"w1","attempt":1})").status, 409) << "the run ended";
  auto run = store_->GetRun(1);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->state, store::RunState::kCancelled);
  EXPECT_EQ(run->worker, "robot:pool/w1");
  auto chunks = store_->ReadLog(1, "build", 0);
  ASSERT_TRUE(chunks.ok());
  ASSERT_EQ(chunks->size(), 1u);
  EXPECT_EQ(chunks->at(0).data, "hello\n");
  auto audit = store_->ListAudit({.limit = 10});
  ASSERT_TRUE(audit.ok());
  std::set<std::string> actions;
  for (const auto& a : *audit) actions.insert(a.action);
  EXPECT_TRUE(actions.contains("runs.claim") && actions.contains("runs.finish")) << fmt::format("{}", fmt::join(actions, ", "));
  EXPECT_FALSE(actions.contains("")) << "renewals, steps and logs leave no audit row";
}

TEST_F(ApiV1Test, EveryRegisteredRouteIsInTheOpenApiDocumentAndBack) {
  const Value* paths = Doc().Get("paths");
  ASSERT_NE(paths, nullptr);
  EXPECT_EQ(Doc().Get("openapi")->AsString(), "3.1.0");
  std::set<std::pair<std::string, std::string>> registered;
  for (const auto& route : front_.Routes()) {
    const std::string method = Lower(route.method);
    registered.insert({route.path, method});
    if (route.path.ends_with('/')) {
      // A prefix route (/api/runs/, /api/tokens/): some documented path below it takes the method.
      bool found = false;
      for (const auto& e : paths->entries()) {
        found = found || (e.key.AsString().starts_with(route.path) && e.value.Get(method) != nullptr);
      }
      EXPECT_TRUE(found) << route.method << " " << route.path << " is served but not documented below it";
    } else {
      EXPECT_NE(paths->Find({std::string_view(route.path), std::string_view(method)}), nullptr) << route.method << " " << route.path << " is served but not documented";
    }
  }
  // And every documented /api/v1 operation is served exactly there.
  for (const auto& e : paths->entries()) {
    if (!e.key.AsString().starts_with("/api/v1/")) continue;
    for (const auto& op : e.value.entries()) {
      if (op.key.AsString() == "parameters") continue;
      EXPECT_TRUE(registered.contains({std::string(e.key.AsString()), std::string(op.key.AsString())}))
          << op.key.AsString() << " " << e.key.AsString() << " is documented but not served";
    }
  }
  auto served = Send("GET", "/api/v1/openapi.json");
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(served.body, OpenApiDocument());
}

TEST_F(ApiV1Test, AnswersValidateAgainstTheirSchemas) {
  Hook(std::string(40, 'a'), "d1");
  Hook(std::string(40, 'b'), "d2");
  store::Release rel{.app = "web", .source_revision = "abc", .config_revision = "def",
                     .image_digests = {{"registry/web", "sha256:0123"}}, .started_by = "test", .run_id = 1};
  auto id = store_->CreateRelease(rel);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *id, .env = "dev", .cluster = "dev-1", .state = store::TargetState::kHealthy}).ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *id, .env = "prod", .cluster = "prod-1", .state = store::TargetState::kApplying,
                                    .message = "waiting for health"}).ok());
  rel.source_revision = "abd";
  rel.supply_chain["registry/web"] = {.signature = "sha256:5151", .provenance = "sha256:a7a7", .sbom = "sha256:5b5b"};
  auto second = store_->CreateRelease(rel);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *second, .env = "dev", .cluster = "dev-1", .state = store::TargetState::kFailed,
                                    .message = "crash loop"}).ok());

  auto matrix = Api("GET", "/api/v1/matrix");
  ExpectValid(matrix, "/api/v1/matrix", "GET");
  auto m = value::ParseJson(matrix.body);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(value::ToJson(*m->Get("environments")), R"(["dev","prod"])");
  const Value* dev = m->Find({"apps", 0, "cells", 0});
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(value::IntAt(dev, {"running", "release"}), *id);
  EXPECT_EQ(value::StringAt(dev, {"running", "image_digests", "registry/web"}), "sha256:0123");
  EXPECT_EQ(value::IntAt(dev, {"latest", "release"}), *second);
  EXPECT_EQ(value::StringAt(dev, {"latest", "state"}), "failed");
  EXPECT_EQ(value::IntAt(dev, {"behind"}), 1);
  EXPECT_TRUE(m->Find({"apps", 0, "cells", 1, "running"})->IsNull()) << "nothing healthy in prod";

  // A release in pull-request mode whose pull request the server merges once ci/test passes.
  auto proposed = store_->CreateRelease({.app = "web", .source_revision = "abe", .config_revision = "dfa", .started_by = "ci",
                                         .pull_request = 7, .pull_request_url = "https://gitea.example/shop/config/pulls/7"});
  ASSERT_TRUE(proposed.ok());
  auto merge = store_->PutPullMerge({.forge = "https://gitea.example/", .repo = "shop/config", .number = 7, .sha = "dfa",
                                     .method = "squash", .release_id = *proposed});
  ASSERT_TRUE(merge.ok());
  ASSERT_TRUE(store_->RecordPullMergeAttempt(*merge, 1, store::NotificationState::kPending,
                                             "waiting for required check ci/test (pending)", store::Time{})
                  .ok());
  auto releases = Api("GET", "/api/v1/apps/web/releases");
  ExpectValid(releases, "/api/v1/apps/{app}/releases", "GET");
  EXPECT_THAT(releases.body, HasSubstr("\"crash loop\""));
  EXPECT_THAT(releases.body, HasSubstr("\"links\":{\"source\":null,\"config\":null,\"images\":{\"registry/web\":\"https://hub.docker.com/r/registry/web\"}}"))
      << "git.example is no known forge and this server has no link rules; registry/web is Docker Hub's";
  EXPECT_THAT(releases.body,
              HasSubstr(R"("supply_chain":{"registry/web":{"signature":"sha256:5151","provenance":"sha256:a7a7","sbom":"sha256:5b5b"}})"));
  EXPECT_THAT(releases.body, HasSubstr(R"("supply_chain":{})")) << "the unsigned release";
  EXPECT_THAT(releases.body, HasSubstr(R"js("pull_request":{"number":7,"url":"https://gitea.example/shop/config/pulls/7",)js"
                                       R"js("merge":{"state":"waiting","method":"squash","message":"waiting for required check ci/test (pending)"}})js"));
  EXPECT_THAT(releases.body, HasSubstr(R"("pull_request":null)")) << "the releases pushed to the branch";
  auto proposal = Api("GET", fmt::format("/api/v1/apps/web/releases/{}", *proposed));
  ExpectValid(proposal, "/api/v1/apps/{app}/releases/{id}", "GET");
  EXPECT_THAT(proposal.body, HasSubstr(R"("merge":{"state":"waiting")"));
  ExpectValid(Api("GET", fmt::format("/api/v1/apps/web/releases/{}", *id)), "/api/v1/apps/{app}/releases/{id}", "GET");
  auto flow = Api("GET", fmt::format("/api/v1/apps/web/releases/{}", *second));
  ExpectValid(flow, "/api/v1/apps/{app}/releases/{id}", "GET");
  EXPECT_THAT(flow.body, HasSubstr(R"("supply_chain":{"signature":"sha256:5151","provenance":"sha256:a7a7","sbom":"sha256:5b5b"})"));
  ExpectValid(Api("GET", "/api/v1/apps/web/releases/999"), "/api/v1/apps/{app}/releases/{id}", "GET");  // 404
  auto keys = Send("GET", "/api/v1/signing-keys");  // public: no credentials
  ExpectValid(keys, "/api/v1/signing-keys", "GET");
  EXPECT_EQ(keys.body, "{\"images\":null,\"commits\":null}\n") << "this server signs nothing";
  ExpectValid(Api("GET", "/api/v1/runs"), "/api/v1/runs", "GET");
  ExpectValid(Api("GET", "/api/v1/runs/1"), "/api/v1/runs/{id}", "GET");
  ExpectValid(Api("GET", "/api/v1/runs/1/logs"), "/api/v1/runs/{id}/logs", "GET");
  ExpectValid(Api("POST", "/api/v1/runs/1/approve"), "/api/v1/runs/{id}/approve", "POST");  // 409: queued
  auto cancelled = Api("POST", "/api/v1/runs/1/cancel");
  EXPECT_EQ(cancelled.status, 200);
  ExpectValid(cancelled, "/api/v1/runs/{id}/cancel", "POST");
  EXPECT_THAT(cancelled.body, HasSubstr("\"state\":\"cancelled\""));
  ExpectValid(Api("GET", "/api/v1/runs/99"), "/api/v1/runs/{id}", "GET");        // 404
  ExpectValid(Send("GET", "/api/v1/runs"), "/api/v1/runs", "GET");              // 401
  ExpectValid(Api("GET", "/api/v1/runs?limit=0"), "/api/v1/runs", "GET");       // 400
  ExpectValid(Api("GET", "/api/tokens"), "/api/tokens", "GET");
  ExpectValid(Api("GET", "/api/roles"), "/api/roles", "GET");
  ExpectValid(Api("GET", "/api/audit"), "/api/audit", "GET");

  auto audit = store_->ListAudit(10);
  ASSERT_TRUE(audit.ok());
  ASSERT_GE(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].action, "runs.cancel");
  EXPECT_EQ((*audit)[0].object, "run 1");
  EXPECT_EQ((*audit)[1].action, "runs.approve");
  EXPECT_THAT((*audit)[1].result, HasSubstr("FailedPrecondition"));
}

TEST_F(ApiV1Test, SigningKeysArePublishedWithAnAllowedSignersLine) {
  Front front("server", {});
  ASSERT_TRUE(ServeApiV1(front, {.access = access_.get(), .ci = ci_.get(),
                                 .signing_keys = {.images = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
                                                  .commits = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTM",
                                                  .commit_principal = "gantry@example.com"}})
                  .ok());
  ASSERT_TRUE(front.Start().ok());
  auto r = http::Client().Send({.method = "GET", .url = fmt::format("http://127.0.0.1:{}/api/v1/signing-keys", front.port())});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  ExpectValid(*r, "/api/v1/signing-keys", "GET");
  auto doc = value::ParseJson(r->body);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(value::StringAt(&*doc, {"images", "format"}), "cosign");
  EXPECT_THAT(value::StringAt(&*doc, {"images", "public_key"}), HasSubstr("BEGIN PUBLIC KEY"));
  EXPECT_EQ(value::StringAt(&*doc, {"commits", "allowed_signers"}),
            "gantry@example.com namespaces=\"git\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTM");
  front.Stop();
}

TEST_F(ApiV1Test, RetryQueuesANewRunOfAFinishedRunThatSaysWhatItRetries) {
  Hook(std::string(40, 'a'), "d1");
  auto early = Api("POST", "/api/v1/runs/1/retry");
  EXPECT_EQ(early.status, 409) << "queued: not finished";
  EXPECT_EQ(early.headers["content-type"], "application/problem+json");
  EXPECT_THAT(early.body, HasSubstr("only a finished run"));
  ExpectValid(early, "/api/v1/runs/{id}/retry", "POST");
  ASSERT_EQ(Api("POST", "/api/v1/runs/1/cancel").status, 200);
  auto retried = Api("POST", "/api/v1/runs/1/retry");
  ASSERT_EQ(retried.status, 201) << retried.body;
  ExpectValid(retried, "/api/v1/runs/{id}/retry", "POST");
  EXPECT_EQ(retried.headers["location"], "/api/v1/runs/2");
  auto run = value::ParseJson(retried.body);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(value::IntAt(&*run, {"id"}), 2);
  EXPECT_EQ(value::IntAt(&*run, {"retry_of"}), 1);
  EXPECT_EQ(value::StringAt(&*run, {"commit"}), std::string(40, 'a'));
  EXPECT_EQ(value::StringAt(&*run, {"state"}), "queued");
  EXPECT_THAT(Api("GET", "/api/v1/runs/2").body, HasSubstr("\"retry_of\":1"));
  EXPECT_THAT(Api("GET", "/api/v1/runs/1").body, HasSubstr("\"retry_of\":null"));
  auto audit = store_->ListAudit(1);
  ASSERT_TRUE(audit.ok() && !audit->empty());
  EXPECT_EQ((*audit)[0].action, "runs.retry");
  EXPECT_EQ((*audit)[0].object, "run 1");
  EXPECT_EQ((*audit)[0].details, "new run 2");

  ExpectValid(Api("POST", "/api/v1/runs/99/retry"), "/api/v1/runs/{id}/retry", "POST");  // 404
  const std::string viewer = UserToken("vera", "viewer", "*");
  auto refused = Post(viewer, "/api/v1/runs/1/retry", "");
  EXPECT_EQ(refused.status, 403);
  EXPECT_THAT(refused.body, HasSubstr("runs.approve"));
  ExpectValid(refused, "/api/v1/runs/{id}/retry", "POST");
}

TEST_F(ApiV1Test, AnUntrustedRunsRetryAwaitsApprovalAgain) {
  auto id = store_->CreateRun({.repo = "https://git.example/fork/app", .pipeline = kApiRepo, .commit = std::string(40, 'c'),
                               .ref = "refs/heads/main", .event = store::RunEvent::kPullRequest,
                               .state = store::RunState::kAwaitingApproval, .trusted = false});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  ASSERT_EQ(Api("POST", fmt::format("/api/v1/runs/{}/cancel", *id)).status, 200);
  auto retried = Api("POST", fmt::format("/api/v1/runs/{}/retry", *id));
  ASSERT_EQ(retried.status, 201) << retried.body;
  EXPECT_THAT(retried.body, HasSubstr("\"state\":\"awaiting_approval\""));
  auto again = store_->GetRun(*id + 1);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->trusted);
  EXPECT_EQ(again->repo, "https://git.example/fork/app");
  EXPECT_EQ(again->event, store::RunEvent::kPullRequest);
  EXPECT_THAT(Api("POST", fmt::format("/api/v1/runs/{}/approve", *id + 1)).body, HasSubstr("\"state\":\"queued\""));
}

TEST_F(ApiV1Test, ARunsStepsCarryTheirNeedsAndAttemptsAndThePipelineListsThem) {
  Hook(std::string(40, 'a'), "d1");
  Hook(std::string(40, 'b'), "d2");  // run 2: the newest, without steps yet
  ASSERT_TRUE(store_->UpsertStep(1, {.name = "build", .state = store::RunState::kSucceeded, .exit_code = 0, .attempts = 2}).ok());
  ASSERT_TRUE(store_->UpsertStep(1, {.name = "test", .needs = {"build"}}).ok());
  ASSERT_TRUE(store_->UpsertStep(1, {.name = "deploy", .needs = {"build", "test"}}).ok());
  auto detail = Api("GET", "/api/v1/runs/1");
  ExpectValid(detail, "/api/v1/runs/{id}", "GET");
  auto run = value::ParseJson(detail.body);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(value::IntAt(&*run, {"steps", 0, "attempts"}), 2);
  EXPECT_EQ(value::ToJson(*run->Find({"steps", 0, "needs"})), "[]");
  EXPECT_EQ(value::ToJson(*run->Find({"steps", 2, "needs"})), R"(["build","test"])");

  auto list = Api("GET", "/api/v1/pipelines");
  ExpectValid(list, "/api/v1/pipelines", "GET");
  auto pipelines = value::ParseJson(list.body);
  ASSERT_TRUE(pipelines.ok());
  EXPECT_EQ(value::StringAt(&*pipelines, {"items", 0, "repo"}), kApiRepo);
  EXPECT_EQ(value::IntAt(&*pipelines, {"items", 0, "last_run", "id"}), 2);
  EXPECT_EQ(value::IntAt(&*pipelines, {"items", 0, "steps_from_run"}), 1);
  EXPECT_EQ(value::StringAt(&*pipelines, {"items", 0, "steps", 1, "needs", 0}), "build");
  auto one = Api("GET", "/api/v1/pipelines/https%3A%2F%2Fgit.example%2Forg%2Fapp");
  EXPECT_EQ(one.status, 200) << one.body;
  ExpectValid(one, "/api/v1/pipelines/{repo}", "GET");
  auto missing = Api("GET", "/api/v1/pipelines/nope");
  EXPECT_EQ(missing.status, 404);
  ExpectValid(missing, "/api/v1/pipelines/{repo}", "GET");
  EXPECT_EQ(Api("GET", "/api/v1/pipelines/bad%zz").status, 400);
  // Runs of no project are read with a cluster-wide grant only.
  const std::string team = UserToken("tess", "viewer", "team-a");
  auto hidden = http::Client().Send({.method = "GET", .url = Url("/api/v1/pipelines"), .headers = {{"authorization", "Bearer " + team}}});
  ASSERT_TRUE(hidden.ok());
  EXPECT_THAT(hidden->body, HasSubstr("\"items\":[]"));
  auto forbidden = http::Client().Send({.method = "GET", .url = Url("/api/v1/pipelines/https%3A%2F%2Fgit.example%2Forg%2Fapp"),
                                        .headers = {{"authorization", "Bearer " + team}}});
  ASSERT_TRUE(forbidden.ok());
  EXPECT_EQ(forbidden->status, 403);
  ExpectValid(*forbidden, "/api/v1/pipelines/{repo}", "GET");
}

TEST_F(ApiV1Test, ProjectsShowTheirRulesAndRolesOnlyToWhoManagesThem) {
  auto list = Api("GET", "/api/v1/projects");
  ExpectValid(list, "/api/v1/projects", "GET");
  auto projects = value::ParseJson(list.body);
  ASSERT_TRUE(projects.ok());
  EXPECT_EQ(value::StringAt(&*projects, {"items", 0, "name"}), "default");
  EXPECT_TRUE(projects->Find({"items", 0, "built_in"})->AsBool());
  EXPECT_EQ(value::StringAt(&*projects, {"items", 1, "name"}), "team-a");
  EXPECT_EQ(value::StringAt(&*projects, {"items", 1, "destinations", 0, "namespace"}), "team-a-*");
  const std::string team = UserToken("tess", "viewer", "team-a");
  auto get = [&](const std::string& path) {
    auto r = http::Client().Send({.method = "GET", .url = Url(path), .headers = {{"authorization", "Bearer " + team}}});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  };
  // The admin sees tess's binding; tess sees team-a only, without bindings.
  auto detail = Api("GET", "/api/v1/projects/team-a");
  ExpectValid(detail, "/api/v1/projects/{name}", "GET");
  EXPECT_THAT(detail.body, HasSubstr("\"subject\":\"tess\""));
  EXPECT_THAT(detail.body, HasSubstr("\"image_repos\":[\"registry.example/team-a/*\"]"));
  auto mine = get("/api/v1/projects");
  EXPECT_EQ(mine.status, 200);
  EXPECT_THAT(mine.body, Not(HasSubstr("\"default\"")));
  EXPECT_THAT(mine.body, HasSubstr("\"roles\":null"));
  auto other = get("/api/v1/projects/default");
  EXPECT_EQ(other.status, 403);
  ExpectValid(other, "/api/v1/projects/{name}", "GET");
  auto missing = Api("GET", "/api/v1/projects/nope");
  EXPECT_EQ(missing.status, 404);
  ExpectValid(missing, "/api/v1/projects/{name}", "GET");
}

TEST_F(ApiV1Test, TokensAreCreatedOnceListedWithoutSecretsAndRevokedAtOnce) {
  auto created = Post(kApiToken, "/api/v1/tokens", R"({"name":"ci","project":"team-a","roles":["deployer"]})");
  ASSERT_EQ(created.status, 201) << created.body;
  ExpectValid(created, "/api/v1/tokens", "POST");
  auto token = value::ParseJson(created.body);
  ASSERT_TRUE(token.ok());
  const std::string secret = value::StringAt(&*token, {"token"});
  const std::string id = value::StringAt(&*token, {"id"});
  EXPECT_THAT(secret, ::testing::StartsWith("gty_"));
  auto list = Api("GET", "/api/v1/tokens?all=1");
  ExpectValid(list, "/api/v1/tokens", "GET");
  EXPECT_THAT(list.body, HasSubstr("\"name\":\"ci\""));
  EXPECT_THAT(list.body, Not(HasSubstr(secret)));
  EXPECT_THAT(list.body, Not(HasSubstr("\"token\"")));
  EXPECT_THAT(list.body, Not(HasSubstr(Sha256Hex(secret))));
  auto use = [&] {
    auto r = http::Client().Send({.method = "GET", .url = Url("/api/v1/projects/team-a"), .headers = {{"authorization", "Bearer " + secret}}});
    GANTRY_CHECK(r.ok());
    return r->status;
  };
  EXPECT_EQ(use(), 200);
  auto revoked = Api("DELETE", "/api/v1/tokens/" + id);
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  ExpectValid(revoked, "/api/v1/tokens/{id}", "DELETE");
  EXPECT_THAT(revoked.body, Not(HasSubstr("\"revoked_at\":null")));
  EXPECT_EQ(use(), 401) << "revoked: refused at the next request";
  auto audit = store_->ListAudit(2);
  ASSERT_TRUE(audit.ok() && audit->size() == 2u);
  EXPECT_EQ((*audit)[0].action, "tokens.revoke");
  EXPECT_EQ((*audit)[1].action, "tokens.create");

  const std::string viewer = UserToken("vera", "viewer", "team-a");
  auto refused = Post(viewer, "/api/v1/tokens", R"({"name":"x","project":"team-a","roles":["admin"]})");
  EXPECT_EQ(refused.status, 403);
  ExpectValid(refused, "/api/v1/tokens", "POST");
  auto typo = Post(kApiToken, "/api/v1/tokens", R"({"name":"x","role":["admin"]})");
  EXPECT_EQ(typo.status, 400);
  EXPECT_THAT(typo.body, HasSubstr("unknown field \\\"role\\\""));
  auto missing = Api("DELETE", "/api/v1/tokens/t-999");
  EXPECT_EQ(missing.status, 404);
  ExpectValid(missing, "/api/v1/tokens/{id}", "DELETE");
}

// The outbox through GET /api/v1/notifications: newest first, by state, validating, paged.
TEST_F(ApiV1Test, NotificationsListTheOutboxByStateAndValidate) {
  const store::Time now = std::chrono::system_clock::now();
  store::Notification n{.event_id = "run-1-failed", .subscription = "ops", .provider = "hook", .trigger = "run-failed",
                        .app = "ci", .subject = "Run 1 of ci failed", .body = "{}", .next_attempt_at = now,
                        .deadline = now + std::chrono::hours(1)};
  auto first = store_->EnqueueNotification(n);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(store_->RecordNotificationAttempt(*first, store::NotificationState::kFailed, "HTTP 404: no", now).ok());
  n.event_id = "run-2-failed";
  ASSERT_TRUE(store_->EnqueueNotification(n).ok());
  auto all = Api("GET", "/api/v1/notifications");
  ExpectValid(all, "/api/v1/notifications", "GET");
  auto v = value::ParseJson(all.body);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(value::StringAt(&*v, {"items", 0, "event_id"}), "run-2-failed");
  EXPECT_EQ(value::StringAt(&*v, {"items", 0, "state"}), "pending");
  EXPECT_EQ(value::StringAt(&*v, {"items", 1, "last_error"}), "HTTP 404: no");
  auto failed = Api("GET", "/api/v1/notifications?state=failed&limit=1");
  ExpectValid(failed, "/api/v1/notifications", "GET");
  EXPECT_THAT(failed.body, HasSubstr("run-1-failed"));
  EXPECT_THAT(failed.body, ::testing::Not(HasSubstr("run-2-failed")));
  auto bad = Api("GET", "/api/v1/notifications?state=lost");
  EXPECT_EQ(bad.status, 400);
  ExpectValid(bad, "/api/v1/notifications", "GET");
  EXPECT_THAT(bad.body, HasSubstr("expected pending, delivered or failed"));
}

TEST_F(ApiV1Test, ErrorsAreProblemJsonThroughTheOneMapping) {
  auto unauthenticated = Send("GET", "/api/v1/runs");
  EXPECT_EQ(unauthenticated.status, 401);
  EXPECT_EQ(unauthenticated.headers["content-type"], "application/problem+json");
  EXPECT_EQ(unauthenticated.headers["www-authenticate"], "Bearer realm=\"gantry\"");
  auto p = value::ParseJson(unauthenticated.body);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(value::StringAt(&*p, {"type"}), "about:blank");
  EXPECT_EQ(value::StringAt(&*p, {"title"}), "Unauthorized");
  EXPECT_EQ(value::IntAt(&*p, {"status"}), 401);
  EXPECT_EQ(value::StringAt(&*p, {"code"}), "Unauthenticated");
  EXPECT_EQ(ParseApiError(unauthenticated.status, unauthenticated.body).code(), Code::kUnauthenticated);

  auto missing = Api("GET", "/api/v1/runs/abc");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("no run \\\"abc\\\""));
  auto unknown = Api("GET", "/api/v1/nothing/here");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.headers["content-type"], "application/problem+json");
  auto wrong_method = Api("DELETE", "/api/v1/runs/1");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["allow"], "GET");
  EXPECT_TRUE(ParseApiError(wrong_method.status, wrong_method.body).Is(Code::kUnimplemented, kMethodNotAllowed));
  auto bad_cursor = Api("GET", "/api/v1/runs?cursor=x");
  EXPECT_EQ(bad_cursor.status, 400);
  EXPECT_THAT(ParseApiError(bad_cursor.status, bad_cursor.body).message(), HasSubstr("cursor \"x\""));
  EXPECT_EQ(Send("GET", "/nothing").body, "not found\n") << "outside /api/v1, text as before";
}

TEST_F(ApiV1Test, ListsPageWithCursorsAndAnswer304ForTheirETag) {
  for (char c : std::string("abc")) Hook(std::string(40, c), std::string("d") + c);
  auto first = Api("GET", "/api/v1/runs?limit=2");
  ASSERT_EQ(first.status, 200);
  auto doc = value::ParseJson(first.body);
  ASSERT_TRUE(doc.ok());
  ASSERT_EQ(doc->Get("items")->size(), 2u);
  EXPECT_EQ(value::IntAt(&*doc, {"items", 0, "id"}), 3);
  ASSERT_TRUE(doc->Get("next")->IsString());
  auto second = value::ParseJson(Api("GET", "/api/v1/runs?limit=2&cursor=" + std::string(doc->Get("next")->AsString())).body);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->Get("items")->size(), 1u);
  EXPECT_EQ(value::IntAt(&*second, {"items", 0, "id"}), 1);
  EXPECT_TRUE(second->Get("next")->IsNull());

  const std::string etag = first.headers["etag"];
  ASSERT_FALSE(etag.empty());
  auto same = Api("GET", "/api/v1/runs?limit=2", {{"if-none-match", etag}});
  EXPECT_EQ(same.status, 304);
  EXPECT_EQ(same.body, "");
  ASSERT_TRUE(Api("POST", "/api/v1/runs/3/cancel").status == 200);
  auto changed = Api("GET", "/api/v1/runs?limit=2", {{"if-none-match", etag}});
  EXPECT_EQ(changed.status, 200) << "a cancelled run changes the list";
  EXPECT_NE(changed.headers["etag"], etag);
}

TEST_F(ApiV1Test, MetricsCountRunsWebhooksAndApiLatencyByRoute) {
  Hook(std::string(40, 'a'), "d1");
  Hook(std::string(40, 'b'), "d2");
  ASSERT_EQ(Api("POST", "/api/v1/runs/1/cancel").status, 200);
  ASSERT_EQ(Api("GET", "/api/v1/runs/2").status, 200);
  std::string text;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5); std::chrono::steady_clock::now() < deadline;) {
    server_metrics_->Refresh();
    text = metrics_.Render();
    if (text.find("gantry_runs_finished_total{state=\"cancelled\"} 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(text, HasSubstr("gantry_runs_finished_total{state=\"cancelled\"} 1"));
  EXPECT_THAT(text, HasSubstr("gantry_runs{state=\"queued\"} 1"));
  EXPECT_THAT(text, HasSubstr("gantry_run_queue_depth 1"));
  EXPECT_THAT(text, HasSubstr("gantry_webhook_deliveries_total{code=\"201\"} 2"));
  EXPECT_THAT(text, HasSubstr("gantry_api_request_duration_seconds_count{route=\"/api/v1/runs/{id}\",method=\"GET\",code=\"200\"} 1"));
}

// Reads an SSE stream on a thread of its own, collecting what arrives.
class SseReader {
 public:
  // `nudge` makes the server write (so the reader sees that it should stop).
  SseReader(std::string url, http::Headers headers, std::function<void()> nudge) : nudge_(std::move(nudge)) {
    thread_ = std::thread([this, url = std::move(url), headers = std::move(headers)] {
      auto r = http::Client({.timeout = std::chrono::seconds(20)})
                   .Send({.url = url, .headers = headers}, [this](std::string_view chunk) {
                     MutexLock lock(mu_);
                     text_ += chunk;
                     arrived_.push_back({std::chrono::steady_clock::now(), text_.size()});
                     cv_.NotifyAll();
                     return !stop_;
                   });
      MutexLock lock(mu_);
      done_ = true;
      cv_.NotifyAll();
    });
  }
  ~SseReader() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    nudge_();
    thread_.join();
  }
  // Waits until the stream holds `needle`; returns when it arrived (the chunk that completed it).
  std::optional<std::chrono::steady_clock::time_point> WaitFor(std::string_view needle) {
    MutexLock lock(mu_);
    cv_.WaitFor(mu_, std::chrono::seconds(5),
                [&]() REQUIRES(mu_) { return done_ || text_.find(needle) != std::string::npos; });
    size_t at = text_.find(needle);
    if (at == std::string::npos) return std::nullopt;
    for (const auto& [when, size] : arrived_) {
      if (size >= at + needle.size()) return when;
    }
    return std::nullopt;
  }
  std::string text() {
    MutexLock lock(mu_);
    return text_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::string text_ GUARDED_BY(mu_);
  std::vector<std::pair<std::chrono::steady_clock::time_point, size_t>> arrived_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool done_ GUARDED_BY(mu_) = false;
  std::function<void()> nudge_;
  std::thread thread_;
};

TEST_F(ApiV1Test, EventsReachASubscriberWithinASecondAndResumeFromLastEventId) {
  const http::Headers auth = {{"authorization", std::string("Bearer ") + kApiToken}};
  auto nudge = [this] { bus_.Publish("run", Value::Map()); };
  {
    SseReader reader(Url("/api/v1/events"), auth, nudge);
    ASSERT_TRUE(reader.WaitFor("retry: 3000"));
    // A run's state change written through the store reaches the stream.
    Hook(std::string(40, 'a'), "d1");
    EXPECT_TRUE(reader.WaitFor("event: run\ndata: {\"id\":1,\"state\":\"queued\"}")) << reader.text();
    // Latency: from Publish to the client, for 20 events.
    std::chrono::duration<double, std::milli> worst{0}, total{0};
    for (int i = 0; i < 20; ++i) {
      Value v = Value::Map();
      v.Set("id", 100 + i);
      v.Set("state", "running");
      const auto sent = std::chrono::steady_clock::now();
      bus_.Publish("run", v);
      auto got = reader.WaitFor(fmt::format("{{\"id\":{},\"state\":\"running\"}}", 100 + i));
      ASSERT_TRUE(got) << reader.text();
      // Until this thread knows it arrived (an upper bound on the client's receiving it).
      std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - sent;
      worst = std::max(worst, took);
      total += took;
    }
    std::printf("SSE latency over 20 events: mean %.2f ms, worst %.2f ms\n", total.count() / 20, worst.count());
    EXPECT_LT(worst.count(), 1000.0);
  }
  // Resumption: a client that saw event 3 gets 4.. and nothing before.
  const int64_t last = bus_.last_id();
  ASSERT_GE(last, 5);
  {
    http::Headers resume = auth;
    resume["last-event-id"] = "3";
    SseReader reader(Url("/api/v1/events"), resume, nudge);
    ASSERT_TRUE(reader.WaitFor(fmt::format("id: {}\n", last))) << reader.text();
    EXPECT_TRUE(reader.WaitFor("id: 4\n"));
    EXPECT_EQ(reader.text().find("id: 3\n"), std::string::npos);
  }
  // One that missed more than the ring keeps (64 here) is told to reset.
  for (int i = 0; i < 70; ++i) bus_.Publish("run", Value::Map());
  {
    http::Headers resume = auth;
    resume["last-event-id"] = "1";
    SseReader reader(Url("/api/v1/events"), resume, nudge);
    EXPECT_TRUE(reader.WaitFor("event: reset\n")) << reader.text();
  }
  EXPECT_EQ(Send("GET", "/api/v1/events").status, 401);
}

TEST(EventBusTest, ASlowSubscriberIsDroppedNotTheBus) {
  EventBus bus(8, 4);
  auto slow = bus.Subscribe();
  auto fast = bus.Subscribe();
  for (int i = 0; i < 10; ++i) {
    bus.Publish("run", Value::Map());
    ASSERT_TRUE(fast->Next(std::chrono::milliseconds(100)).has_value());
  }
  EXPECT_TRUE(slow->dropped());
  EXPECT_FALSE(slow->Next(std::chrono::milliseconds(1)).has_value());
  EXPECT_FALSE(fast->dropped());
  EXPECT_EQ(bus.subscribers(), 2u);
  slow.reset();
  EXPECT_EQ(bus.subscribers(), 1u);
}

TEST(EventBusTest, ObservedStorePublishesStepsLogsAndTargets) {
  std::string tmpl = (fs::temp_directory_path() / "events_test.XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  {
    auto real = store::Open("sqlite:" + (fs::path(tmpl) / "gantry.db").string());
    ASSERT_TRUE(real.ok());
    EventBus bus;
    auto sub = bus.Subscribe();
    auto store = ObservedStore(**real, bus, [](const store::Run&) { return std::string("team-a"); });
    auto run = store->CreateRun({.repo = kApiRepo, .pipeline = kApiRepo, .commit = "c"});
    ASSERT_TRUE(run.ok());
    ASSERT_TRUE(store->UpsertStep(*run, {.name = "build", .state = store::RunState::kRunning}).ok());
    ASSERT_TRUE(store->AppendLogChunk(*run, "build", 0, "hello\n").ok());
    auto rel = store->CreateRelease({.app = "web"});
    ASSERT_TRUE(rel.ok());
    ASSERT_TRUE(store->UpsertTarget({.release_id = *rel, .env = "dev", .cluster = "c1"}).ok());
    std::vector<std::string> seen;
    while (auto e = sub->Next(std::chrono::milliseconds(10))) seen.push_back(e->type + " " + e->data + " " + e->project);
    EXPECT_THAT(seen, ::testing::ElementsAre(
                          R"(run {"id":1,"state":"queued"} team-a)", R"(step {"run":1,"name":"build","state":"running"} team-a)",
                          R"(log {"run":1,"step":"build","seq":0,"text":"hello\n"} team-a)",
                          R"(release {"app":"web","release":1,"environment":"dev","cluster":"c1","state":"pending"} )"));
  }
  fs::remove_all(tmpl);
}

// Two servers on one store: with a watch interval, each publishes the run state changes the other
// wrote (marked "elsewhere"), once per change, and not its own a second time.
TEST(EventBusTest, ObservedStoreWithAWatchPublishesRunsAnotherServerChanged) {
  std::string tmpl = (fs::temp_directory_path() / "events_test.XXXXXX").string();
  GANTRY_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  {
    auto real = store::Open("sqlite:" + (fs::path(tmpl) / "gantry.db").string());
    ASSERT_TRUE(real.ok());
    EventBus bus, other_bus;
    auto sub = bus.Subscribe();
    auto other = ObservedStore(**real, other_bus, nullptr);  // the other server
    auto old = other->CreateRun({.repo = kApiRepo, .pipeline = kApiRepo, .commit = "c0"});
    ASSERT_TRUE(old.ok());
    auto store = ObservedStore(**real, bus, nullptr, nullptr, std::chrono::milliseconds(20));
    auto mine = store->CreateRun({.repo = kApiRepo, .pipeline = kApiRepo, .commit = "c1"});
    ASSERT_TRUE(mine.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the first reads learn the states
    ASSERT_TRUE(other->UpdateRun(*old, store::RunState::kRunning).ok());
    std::vector<std::string> seen;
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         seen.size() < 2 && std::chrono::steady_clock::now() < until;) {
      if (auto e = sub->Next(std::chrono::milliseconds(50))) seen.push_back(e->type + " " + e->data);
    }
    while (auto e = sub->Next(std::chrono::milliseconds(100))) seen.push_back(e->type + " " + e->data);
    EXPECT_THAT(seen, ::testing::ElementsAre(R"(run {"id":2,"state":"queued"})",
                                             R"(run {"id":1,"state":"running","elsewhere":true})"));
  }
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace gantry::server

namespace gantry::server {
namespace {

TEST_F(ApiV1Test, DeployIsAuthorizedOnItsProjectAndAuditedOncePerRequest) {
  const std::string viewer = UserToken("alice", "viewer", "default");
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto made = Post(kApiToken, "/api/tokens", R"({"name":"ci","project":"team-b","roles":["deployer"]})");
  ASSERT_EQ(made.status, 201) << made.body;
  const std::string robot_token(value::ParseJson(made.body)->Get("token")->AsString());

  auto refused = Post(viewer, "/api/v1/apps/web/deploy", R"({"revision":"abc"})");
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.headers["content-type"], "application/problem+json");
  EXPECT_THAT(ParseApiError(refused.status, refused.body).message(), HasSubstr("lacks apps.deploy on project default"));
  ExpectValid(refused, "/api/v1/apps/{app}/deploy", "POST");
  auto other = Post(robot_token, "/api/v1/apps/web/deploy", R"({"revision":"abc","project":"default"})");
  EXPECT_EQ(other.status, 403);
  EXPECT_THAT(ParseApiError(other.status, other.body).message(), HasSubstr("apps.deploy"));
  EXPECT_EQ(Post(deployer, "/api/v1/apps/web/deploy", R"({"revison":"abc"})").status, 400);  // a typo is named

  auto sub = bus_.Subscribe();
  auto ok = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"abc","through":"dev"})");
  ASSERT_EQ(ok.status, 202) << ok.body;
  ExpectValid(ok, "/api/v1/apps/{app}/deploy", "POST");
  auto answer = value::ParseJson(ok.body);
  const int64_t release = answer->Get("release")->AsInt();
  EXPECT_EQ(answer->Get("state")->AsString(), "running");
  Value done = NextAction(*sub);
  ASSERT_FALSE(done.IsNull());
  EXPECT_EQ(done.Get("phase")->AsString(), "succeeded");
  EXPECT_EQ(done.Get("release")->AsInt(), release);
  auto rel = store_->GetRelease(release);
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->started_by, "bob");
  auto targets = store_->ListTargets(release);
  ASSERT_TRUE(targets.ok());
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].state, store::TargetState::kHealthy);

  auto audit = store_->ListAudit({.action = "apps.deploy", .limit = 10});
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 4u);  // alice, the robot, bob's typo, bob
  EXPECT_EQ((*audit)[0].actor, "bob");
  EXPECT_EQ((*audit)[0].result, "ok");
  EXPECT_EQ((*audit)[0].project, "default");
  EXPECT_EQ((*audit)[0].object, "app web");
  EXPECT_THAT((*audit)[3].result, HasSubstr("PermissionDenied"));
  EXPECT_EQ((*audit)[3].actor, "alice");
}

TEST_F(ApiV1Test, ASecondDeployOfAnAppWhileOneRunsIs409) {
  const std::string deployer = UserToken("bob", "deployer", "default");
  Close();
  auto first = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"abc","through":"dev"})");
  ASSERT_EQ(first.status, 202) << first.body;
  auto second = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"abd","through":"dev"})");
  EXPECT_EQ(second.status, 409);
  ExpectValid(second, "/api/v1/apps/{app}/deploy", "POST");
  EXPECT_THAT(ParseApiError(second.status, second.body).message(), HasSubstr("deploy of web is running"));
  EXPECT_EQ(Post(deployer, "/api/v1/apps/web/rollback", R"({"environment":"dev"})").status, 409);
  // Another app may deploy meanwhile, up to max_running (2) at once.
  EXPECT_EQ(Post(deployer, "/api/v1/apps/api/deploy", R"({"revision":"abc","through":"dev"})").status, 202);
  auto third = Post(deployer, "/api/v1/apps/db/deploy", R"({"revision":"abc","through":"dev"})");
  EXPECT_EQ(third.status, 409);
  EXPECT_THAT(ParseApiError(third.status, third.body).message(), HasSubstr("as many as it runs at once"));
  Open();
}

TEST_F(ApiV1Test, AWaitingDeployIsApprovedResumedAndRolledBack) {
  const std::string viewer = UserToken("alice", "viewer", "default");
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto sub = bus_.Subscribe();
  auto first = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"r1"})");
  ASSERT_EQ(first.status, 202) << first.body;
  const int64_t r1 = value::ParseJson(first.body)->Get("release")->AsInt();
  Value waiting = NextAction(*sub);
  ASSERT_FALSE(waiting.IsNull());
  EXPECT_EQ(waiting.Get("phase")->AsString(), "waiting_approval");

  auto refused = Post(viewer, "/api/v1/apps/web/approve", R"({"environment":"prod"})");
  EXPECT_EQ(refused.status, 403);
  EXPECT_THAT(ParseApiError(refused.status, refused.body).message(), HasSubstr("releases.approve"));
  EXPECT_EQ(Post(deployer, "/api/v1/apps/web/approve", R"({"environment":"qa"})").status, 400);
  auto approved = Post(deployer, "/api/v1/apps/web/approve", R"({"environment":"prod"})");
  ASSERT_EQ(approved.status, 200) << approved.body;
  ExpectValid(approved, "/api/v1/apps/{app}/approve", "POST");
  EXPECT_EQ(value::ParseJson(approved.body)->Get("approved_by")->AsString(), "bob");

  auto resumed = Post(deployer, "/api/v1/apps/web/resume", "");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  ExpectValid(resumed, "/api/v1/apps/{app}/resume", "POST");
  EXPECT_EQ(value::ParseJson(resumed.body)->Get("release")->AsInt(), r1);
  Value done = NextAction(*sub);
  ASSERT_FALSE(done.IsNull());
  EXPECT_EQ(done.Get("phase")->AsString(), "succeeded");
  EXPECT_EQ(Post(deployer, "/api/v1/apps/web/resume", "").status, 404);  // nothing unfinished

  auto second = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"r2","through":"dev"})");
  ASSERT_EQ(second.status, 202);
  ASSERT_FALSE(NextAction(*sub).IsNull());
  EXPECT_EQ(Post(viewer, "/api/v1/apps/web/rollback", R"({"environment":"dev"})").status, 403);
  auto back = Post(deployer, "/api/v1/apps/web/rollback", R"({"environment":"dev"})");
  ASSERT_EQ(back.status, 202) << back.body;
  ExpectValid(back, "/api/v1/apps/{app}/rollback", "POST");
  auto b = value::ParseJson(back.body);
  EXPECT_EQ(b->Get("release")->AsInt(), r1);
  EXPECT_EQ(b->Get("from_release")->AsInt(), value::ParseJson(second.body)->Get("release")->AsInt());
  Value rolled = NextAction(*sub);
  ASSERT_FALSE(rolled.IsNull());
  EXPECT_EQ(rolled.Get("action")->AsString(), "rollback");
  EXPECT_EQ(rolled.Get("phase")->AsString(), "succeeded");
  auto again = Post(deployer, "/api/v1/apps/web/rollback", R"({"environment":"staging"})");
  EXPECT_EQ(again.status, 400);
}

TEST_F(ApiV1Test, EnvironmentsShowPromotionOrderGatesAndTheReleaseWaitingForApproval) {
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto sub = bus_.Subscribe();
  auto deployed = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"r1"})");
  ASSERT_EQ(deployed.status, 202) << deployed.body;
  const int64_t r1 = value::ParseJson(deployed.body)->Get("release")->AsInt();
  ASSERT_EQ(NextAction(*sub).Get("phase")->AsString(), "waiting_approval");

  auto envs = Api("GET", "/api/v1/environments");
  ASSERT_EQ(envs.status, 200) << envs.body;
  ExpectValid(envs, "/api/v1/environments", "GET");
  auto doc = value::ParseJson(envs.body);
  ASSERT_TRUE(doc.ok());
  const Value* items = doc->Get("items");
  ASSERT_EQ(items->size(), 2u) << envs.body;
  EXPECT_EQ(value::StringAt(items, {0, "name"}), "dev");
  EXPECT_EQ(value::StringAt(items, {0, "clusters", 0, "name"}), "dev-1");
  EXPECT_FALSE(items->Find({0, "gate", "approval"})->AsBool());
  EXPECT_EQ(items->Find({0, "waiting"})->size(), 0u);
  EXPECT_EQ(value::StringAt(items, {0, "apps", 0, "app"}), "web");
  EXPECT_EQ(value::StringAt(items, {0, "apps", 0, "health"}), "Healthy");
  EXPECT_EQ(value::IntAt(items, {0, "summary", "Healthy"}), 1);
  EXPECT_EQ(value::StringAt(items, {1, "name"}), "prod");
  EXPECT_EQ(value::StringAt(items, {1, "after", 0}), "dev");
  EXPECT_TRUE(items->Find({1, "gate", "approval"})->AsBool());
  ASSERT_EQ(items->Find({1, "waiting"})->size(), 1u) << envs.body;
  EXPECT_EQ(value::StringAt(items, {1, "waiting", 0, "app"}), "web");
  EXPECT_EQ(value::IntAt(items, {1, "waiting", 0, "release"}), r1);
  EXPECT_EQ(value::StringAt(items, {1, "waiting", 0, "config_revision"}), "r1");
  auto same = Api("GET", "/api/v1/environments", {{"if-none-match", envs.headers["etag"]}});
  EXPECT_EQ(same.status, 304);

  // Approved, it no longer waits (resuming it is the deploy's business).
  ASSERT_EQ(Post(deployer, "/api/v1/apps/web/approve", R"({"environment":"prod"})").status, 200);
  auto after = value::ParseJson(Api("GET", "/api/v1/environments").body);
  EXPECT_EQ(after->Find({"items", 1, "waiting"})->size(), 0u);

  auto typo = Api("GET", "/api/v1/environments?env=prod");
  EXPECT_EQ(typo.status, 400);
  ExpectValid(typo, "/api/v1/environments", "GET");
  const std::string outsider = UserToken("carol", "viewer", "team-z");
  auto refused = http::Client().Send({.method = "GET", .url = Url("/api/v1/environments"),
                                      .headers = {{"authorization", "Bearer " + outsider}}});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 403);
}

TEST_F(ApiV1Test, AClusterWithoutAKubeconfigIsUnreachableAndSaysWhy) {
  auto r = Api("GET", "/api/v1/clusters");
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectValid(r, "/api/v1/clusters", "GET");
  auto doc = value::ParseJson(r.body);
  const Value* items = doc->Get("items");
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ(value::StringAt(items, {0, "name"}), "dev-1");
  EXPECT_EQ(value::StringAt(items, {0, "mode"}), "push");
  EXPECT_FALSE(items->Find({0, "reachable"})->AsBool());
  EXPECT_TRUE(items->Find({0, "kube_version"})->IsNull());
  EXPECT_THAT(value::StringAt(items, {0, "last_error"}), HasSubstr("no kubeconfig"));
  EXPECT_EQ(Api("GET", "/api/v1/clusters", {{"if-none-match", r.headers["etag"]}}).status, 304);
}

TEST_F(ApiV1Test, StoppingTheServerTerminatesADeployThatResumeContinues) {
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto sub = bus_.Subscribe();
  Close();
  auto first = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"r1"})");
  ASSERT_EQ(first.status, 202) << first.body;
  const int64_t r1 = value::ParseJson(first.body)->Get("release")->AsInt();
  std::thread stopper([this] { actions_->Stop(); });
  // Once the server refuses new work, Stop() has asked the deploy to end; then the render in
  // flight may finish, and the deploy ends at its next step.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Post(deployer, "/api/v1/apps/other/deploy", R"({"revision":"r2"})").status != 503 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Open();
  stopper.join();
  Value ended = NextAction(*sub);
  while (!ended.IsNull() && ended.Get("app")->AsString() != "web") ended = NextAction(*sub);
  ASSERT_FALSE(ended.IsNull());
  EXPECT_EQ(ended.Get("phase")->AsString(), "terminated");
  auto targets = store_->ListTargets(r1);
  ASSERT_TRUE(targets.ok());
  bool unfinished = false;
  for (const auto& t : *targets) unfinished = unfinished || t.state == store::TargetState::kPending;
  EXPECT_TRUE(unfinished);
  // The next server (here: another Actions on the same store) resumes it.
  Actions next(*store_, ActionsOptions{.config = deliver_config_, .renderer = renderer_, .connect = connect_, .events = &bus_});
  auto resumed = next.Resume("web", "default", "bob");
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->release, r1);
  next.Stop();
}

TEST_F(ApiV1Test, TerminateStopsTheAppsDeployWhichResumeContinues) {
  const std::string deployer = UserToken("bob", "deployer", "default");
  const std::string viewer = UserToken("alice", "viewer", "default");
  auto sub = bus_.Subscribe();
  Close();  // the deploy waits for its cluster
  auto first = Post(deployer, "/api/v1/apps/web/deploy", R"({"revision":"r1"})");
  ASSERT_EQ(first.status, 202) << first.body;
  const int64_t r1 = value::ParseJson(first.body)->Get("release")->AsInt();
  EXPECT_EQ(Post(viewer, "/api/v1/apps/web/terminate", "").status, 403);
  auto stop = Post(deployer, "/api/v1/apps/web/terminate", "");
  ASSERT_EQ(stop.status, 202) << stop.body;
  ExpectValid(stop, "/api/v1/apps/{app}/terminate", "POST");
  auto stopping = value::ParseJson(stop.body);
  ASSERT_TRUE(stopping.ok());
  EXPECT_EQ(value::StringAt(&*stopping, {"stopping"}), "deploy");
  EXPECT_EQ(Post(deployer, "/api/v1/apps/web/terminate", R"({"force":true})").status, 400) << "it takes no options";
  Open();
  Value ended = NextAction(*sub);
  ASSERT_FALSE(ended.IsNull());
  EXPECT_EQ(value::StringAt(&ended, {"phase"}), "terminated");
  EXPECT_EQ(value::IntAt(&ended, {"release"}), r1);
  auto gone = Post(deployer, "/api/v1/apps/web/terminate", "");
  EXPECT_EQ(gone.status, 404) << gone.body;
  auto resumed = Post(deployer, "/api/v1/apps/web/resume", "");
  EXPECT_EQ(resumed.status, 202) << resumed.body;
  auto again = value::ParseJson(resumed.body);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(value::IntAt(&*again, {"release"}), r1);
  Value waiting = NextAction(*sub);
  EXPECT_EQ(value::StringAt(&waiting, {"phase"}), "waiting_approval") << "dev deployed, prod has a gate";
}

}  // namespace
}  // namespace gantry::server

namespace gantry::server {
namespace {

// An Application on a pull cluster, synced and healthy at `revision` by the agent.
Value PulledApplication(std::string_view name, std::string_view revision) {
  auto docs = value::ParseYaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: gantry}}
spec:
  source: {{repoURL: "https://git.example/config", path: apps/{0}}}
  destination: {{namespace: {0}}}
)", name, revision), "test");
  GANTRY_CHECK(docs.ok());
  return (*docs)[0];
}

Value PulledStatus(std::string_view name, std::string_view revision) {
  auto docs = value::ParseYaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: {0}, namespace: gantry}}
status:
  sync: {{status: Synced, revision: {1}}}
  health: {{status: Healthy}}
  resources:
  - {{group: apps, version: v1, kind: Deployment, namespace: {0}, name: {0}, status: Synced, health: {{status: Healthy}}}}
  operationState: {{phase: Succeeded, revision: {1}, startedAt: "2026-12-06T10:00:00Z", finishedAt: "2026-12-06T10:01:00Z", trigger: revision, message: "applied 1"}}
)", name, revision), "test");
  GANTRY_CHECK(docs.ok());
  return (*docs)[0];
}

// What the push targets' config renders: a Deployment and a Secret.
Result<render::Rendered> RenderWebApp(std::string_view revision, const std::string& path, const deliver::RenderTarget&) {
  GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry/web:1"}]}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: web}
stringData: {password: desired-secret-value}
)", path));
  return render::Rendered{std::string(revision), std::move(docs)};
}

// The fixture's API again on a second front whose configuration adds a pull cluster, edge-1 in
// prod, whose Applications the server watches.
class AppsApiTest : public ApiV1Test {
 protected:
  void SetUp() override {
    ApiV1Test::SetUp();
    ASSERT_TRUE(edge_->Apply(PulledApplication("web", "abc")).ok());
    ASSERT_TRUE(edge_->ApplyStatus(PulledStatus("web", "abc")).ok());
    config_ = deliver_config_;
    config_.clusters.push_back({.name = "edge-1", .environment = "prod", .pull = true});
    deliver::ConnectFn connect = [this](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
      return fakes::ForwardingKubeClient::To(c.name == "edge-1" ? edge_ : cluster_);
    };
    watch_ = std::make_unique<PullWatch>(PullWatchOptions{.config = config_, .connect = connect, .store = store_.get(), .events = &bus_});
    ASSERT_TRUE(watch_->WaitSynced(std::chrono::seconds(10)));
    ASSERT_TRUE(ServeApiV1(pull_front_, {.access = access_.get(), .ci = ci_.get(), .events = &bus_, .deliver_config = config_,
                                         .connect = connect, .pull_applications = watch_->Source(),
                                         .renderer = [] { return RenderWebApp; },
                                         .actions = actions_.get(),
                                         .probe = ProbeFn([this](const deliver::Cluster& c) {
                                           MutexLock lock(probe_mu_);
                                           ++probes_[c.name];
                                           return ClusterProbe{.server = "https://" + c.name + ".example:6443", .reachable = true,
                                                               .kube_version = "v1.31.2"};
                                         }),
                                         .config_repo = "https://github.com/org/config.git",
                                         .links = {.commits = {{.prefix = "https://git.example/", .template_ = "gitea"}}}})
                    .ok());
    ASSERT_TRUE(pull_front_.Start().ok());
    // A push release of web healthy in dev.
    auto id = store_->CreateRelease({.app = "web", .source_revision = "abc", .config_revision = "cfg1", .started_by = "test"});
    ASSERT_TRUE(id.ok());
    release_ = *id;
    ASSERT_TRUE(store_->UpsertTarget({.release_id = release_, .env = "dev", .cluster = "dev-1", .state = store::TargetState::kHealthy}).ok());
    ASSERT_TRUE(store_->UpsertTarget({.release_id = release_, .env = "prod", .cluster = "prod-1", .state = store::TargetState::kPending,
                                      .message = "waiting for approval"}).ok());
  }
  void TearDown() override {
    pull_front_.Stop();
    watch_.reset();
    ApiV1Test::TearDown();
  }
  http::ClientResponse Call(const std::string& token, std::string method, std::string path, std::string body = "") {
    auto r = http::Client().Send({.method = std::move(method),
                                  .url = fmt::format("http://127.0.0.1:{}{}", pull_front_.port(), path),
                                  .headers = {{"authorization", "Bearer " + token}, {"content-type", "application/json"}},
                                  .body = std::move(body)});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  }
  std::string Annotation(std::string_view key) {
    auto app = edge_->Get({.api_version = "gantry.dev/v1alpha1", .kind = "Application", .namespace_ = "gantry", .name = "web"});
    GANTRY_CHECK(app.ok());
    return value::StringAt(&*app, {"metadata", "annotations", key});
  }

  std::shared_ptr<fakes::FakeKubeClient> edge_ = std::make_shared<fakes::FakeKubeClient>();
  deliver::Config config_;
  std::unique_ptr<PullWatch> watch_;
  Front pull_front_{"server", {}};
  int64_t release_ = 0;
  Mutex probe_mu_;
  std::map<std::string, int> probes_ GUARDED_BY(probe_mu_);  // probes by cluster name
  int Probes(const std::string& cluster) {
    MutexLock lock(probe_mu_);
    return probes_[cluster];
  }
};

TEST_F(AppsApiTest, ListAndDetailShowPushAndPullTargetsAndValidate) {
  auto list = Call(kApiToken, "GET", "/api/v1/apps");
  ASSERT_EQ(list.status, 200) << list.body;
  ExpectValid(list, "/api/v1/apps", "GET");
  auto doc = value::ParseJson(list.body);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(value::StringAt(&*doc, {"items", 0, "app"}), "web");
  EXPECT_EQ(value::StringAt(&*doc, {"items", 0, "project"}), "default");
  const Value* targets = doc->Find({"items", 0, "targets"});
  ASSERT_NE(targets, nullptr);
  ASSERT_EQ(targets->size(), 3u) << list.body;  // dev-1 (push), prod-1 (push, pending), edge-1 (pull)
  EXPECT_EQ(value::StringAt(targets, {0, "sync"}), "Synced");
  EXPECT_EQ(value::StringAt(targets, {1, "sync"}), "OutOfSync");
  EXPECT_EQ(value::IntAt(targets, {0, "release"}), release_);
  EXPECT_EQ(value::StringAt(targets, {2, "mode"}), "pull");
  EXPECT_EQ(value::IntAt(targets, {2, "release"}), release_) << "the pull revision is the release's";

  auto pulled = value::ParseJson(Call(kApiToken, "GET", "/api/v1/apps?mode=pull&health=Healthy").body);
  ASSERT_EQ(pulled->Find({"items", 0, "targets"})->size(), 1u);
  EXPECT_EQ(value::StringAt(&*pulled, {"items", 0, "targets", 0, "cluster"}), "edge-1");
  EXPECT_EQ(value::ParseJson(Call(kApiToken, "GET", "/api/v1/apps?health=Degraded").body)->Get("items")->size(), 0u);
  EXPECT_EQ(value::ParseJson(Call(kApiToken, "GET", "/api/v1/apps?project=team-z").body)->Get("items")->size(), 0u);
  auto typo = Call(kApiToken, "GET", "/api/v1/apps?helth=Healthy");
  EXPECT_EQ(typo.status, 400);
  ExpectValid(typo, "/api/v1/apps", "GET");
  EXPECT_EQ(Call(kApiToken, "GET", "/api/v1/apps", "").headers.count("etag"), 1u);

  auto detail = Call(kApiToken, "GET", "/api/v1/apps/web");
  ASSERT_EQ(detail.status, 200) << detail.body;
  ExpectValid(detail, "/api/v1/apps/{app}", "GET");
  auto d = value::ParseJson(detail.body);
  EXPECT_EQ(value::IntAt(&*d, {"latest_release"}), release_);
  EXPECT_EQ(value::StringAt(&*d, {"targets", 2, "last_operation", "phase"}), "Succeeded");
  EXPECT_EQ(value::StringAt(&*d, {"targets", 2, "namespace"}), "gantry");
  EXPECT_EQ(value::StringAt(&*d, {"targets", 0, "last_operation", "phase"}), "healthy");
  auto missing = Call(kApiToken, "GET", "/api/v1/apps/nope");
  EXPECT_EQ(missing.status, 404);
  ExpectValid(missing, "/api/v1/apps/{app}", "GET");
  // A viewer of another project sees nothing of it.
  const std::string outsider = UserToken("carol", "viewer", "team-z");
  EXPECT_EQ(Call(outsider, "GET", "/api/v1/apps/web").status, 403);
  EXPECT_EQ(value::ParseJson(Call(outsider, "GET", "/api/v1/apps").body)->Get("items")->size(), 0u);
}

TEST_F(AppsApiTest, SyncAndRefreshAskTheAgentOrDeployAndAreAudited) {
  const std::string viewer = UserToken("alice", "viewer", "default");
  const std::string deployer = UserToken("bob", "deployer", "default");
  EXPECT_EQ(Call(viewer, "POST", "/api/v1/apps/web/sync", R"({"environment":"prod"})").status, 403);

  auto pull = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"cluster":"edge-1"})");
  ASSERT_EQ(pull.status, 202) << pull.body;
  ExpectValid(pull, "/api/v1/apps/{app}/sync", "POST");
  EXPECT_THAT(Annotation("gantry.dev/sync-requested"), HasSubstr("/bob"));
  auto refresh = Call(deployer, "POST", "/api/v1/apps/web/refresh", R"({"cluster":"edge-1"})");
  ASSERT_EQ(refresh.status, 202) << refresh.body;
  ExpectValid(refresh, "/api/v1/apps/{app}/refresh", "POST");
  EXPECT_THAT(Annotation("gantry.dev/refresh-requested"), HasSubstr("/bob"));

  auto pruned = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"cluster":"edge-1","prune":true})");
  EXPECT_EQ(pruned.status, 400);
  EXPECT_THAT(pruned.body, HasSubstr("syncPolicy.prune"));
  // A dry run answers the diff of each push target the sync would deploy, and deploys nothing.
  auto dry = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"environment":"dev","dry_run":true})");
  ASSERT_EQ(dry.status, 200) << dry.body;
  ExpectValid(dry, "/api/v1/apps/{app}/sync", "POST");
  auto preview = value::ParseJson(dry.body);
  EXPECT_EQ(value::StringAt(&*preview, {"targets", 0, "cluster"}), "dev-1");
  EXPECT_EQ(value::IntAt(&*preview, {"targets", 0, "release"}), release_);
  EXPECT_EQ(value::StringAt(&*preview, {"targets", 0, "items", 1, "kind"}), "Deployment");
  EXPECT_EQ(value::StringAt(&*preview, {"targets", 0, "items", 1, "sync"}), "Missing") << dry.body;
  EXPECT_THAT(value::StringAt(&*preview, {"targets", 0, "items", 1, "diff"}), HasSubstr("+        image: registry/web:1"));
  EXPECT_EQ(store_->ListReleases("web", 10)->size(), 1u) << "a dry run starts no deploy";
  EXPECT_TRUE(cluster_->List("apps/v1", "Deployment", "web")->items.empty()) << "and applies nothing";
  // A pull target's preview says why it has no diff when the server renders no pull sources.
  auto dry_pull = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"cluster":"edge-1","dry_run":true})");
  EXPECT_EQ(dry_pull.status, 200) << dry_pull.body;
  ExpectValid(dry_pull, "/api/v1/apps/{app}/sync", "POST");
  auto pull_preview = value::ParseJson(dry_pull.body);
  EXPECT_TRUE(pull_preview->Find({"targets", 0, "items"})->IsNull());
  EXPECT_THAT(value::StringAt(&*pull_preview, {"targets", 0, "message"}), HasSubstr("renders no pull sources"));
  EXPECT_EQ(Call(deployer, "POST", "/api/v1/apps/web/refresh", R"({"dry_run":true})").status, 400) << "refresh takes no dry_run";
  auto nowhere = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"cluster":"mars-1"})");
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_EQ(Call(deployer, "POST", "/api/v1/apps/web/sync", "").status, 400) << "push targets in dev and prod: name one";

  auto sub = bus_.Subscribe();
  auto push = Call(deployer, "POST", "/api/v1/apps/web/sync", R"({"environment":"dev","prune":true})");
  ASSERT_EQ(push.status, 202) << push.body;
  ExpectValid(push, "/api/v1/apps/{app}/sync", "POST");
  auto answer = value::ParseJson(push.body);
  const int64_t deployed = value::IntAt(&*answer, {"targets", 0, "release"});
  EXPECT_GT(deployed, release_);
  Value done = NextAction(*sub);
  EXPECT_EQ(value::StringAt(&done, {"phase"}), "succeeded");
  auto rel = store_->GetRelease(deployed);
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->config_revision, "cfg1") << "the running release's config revision again";

  // Nothing of web runs any more: terminate has nothing to stop.
  auto terminate = Call(deployer, "POST", "/api/v1/apps/web/terminate");
  EXPECT_EQ(terminate.status, 404);
  EXPECT_THAT(terminate.body, HasSubstr("no deploy, resume or rollback of web runs in the server, and no sync"));
  EXPECT_EQ(terminate.headers["content-type"], "application/problem+json");
  ExpectValid(terminate, "/api/v1/apps/{app}/terminate", "POST");

  auto audit = store_->ListAudit({.action = "apps.sync", .limit = 20});
  ASSERT_TRUE(audit.ok());
  int by_bob = 0;
  for (const auto& row : *audit) by_bob += row.actor == "bob";
  EXPECT_EQ(by_bob, 7) << "every sync request, refused ones and dry runs too";
}

// Terminate of an app whose pull target was syncing answered 501: now its Application is asked
// to stop (its agent acts on the annotation: test/integration/agent_test.cc).
TEST_F(AppsApiTest, TerminateAsksTheAgentOfAPullTargetWhoseSyncRuns) {
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto idle = Call(deployer, "POST", "/api/v1/apps/web/terminate");
  EXPECT_EQ(idle.status, 404) << "its pull sync has ended (Succeeded): nothing to stop";
  EXPECT_THAT(idle.body, HasSubstr("no sync of it runs on its pull clusters"));
  EXPECT_EQ(Annotation(api::kTerminateRequested), "");

  Value running = PulledStatus("web", "abc");
  running.MutableGet("status")->Set("operationState", value::ParseYaml(
      "{phase: Running, revision: abc, startedAt: \"2026-12-06T10:02:00Z\", trigger: revision}\n")->front());
  ASSERT_TRUE(edge_->ApplyStatus(running).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto phase = [&] {
    auto detail = value::ParseJson(Call(deployer, "GET", "/api/v1/apps/web").body);
    return detail.ok() ? value::StringAt(&*detail, {"targets", 2, "last_operation", "phase"}) : std::string();
  };
  while (phase() != "Running" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(phase(), "Running") << "the pull watch sees the running sync";

  auto stop = Call(deployer, "POST", "/api/v1/apps/web/terminate");
  ASSERT_EQ(stop.status, 202) << stop.body;
  ExpectValid(stop, "/api/v1/apps/{app}/terminate", "POST");
  auto answer = value::ParseJson(stop.body);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(value::StringAt(&*answer, {"stopping"}), "sync") << "no deploy of web runs in the server";
  EXPECT_EQ(value::StringAt(&*answer, {"pull_targets", 0, "cluster"}), "edge-1");
  EXPECT_EQ(value::StringAt(&*answer, {"pull_targets", 0, "environment"}), "prod");
  EXPECT_THAT(Annotation(api::kTerminateRequested), HasSubstr("/bob"));
  auto audit = store_->ListAudit({.action = "apps.terminate", .limit = 5});
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_THAT(audit->front().details, HasSubstr("terminate sync on edge-1"));
  const std::string viewer = UserToken("alice", "viewer", "default");
  EXPECT_EQ(Call(viewer, "POST", "/api/v1/apps/web/terminate").status, 403);
}

TEST_F(AppsApiTest, ResourcesDiffAndEventsOfAPushTargetComeFromTheEngineAndTheCluster) {
  // The cluster holds the Deployment (an older image), its ReplicaSet and Pod, and the Secret.
  cluster_->AddKind({"apps", "v1", "ReplicaSet", "replicasets", true, {}});
  auto deployment = value::ParseYaml(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry/web:0"}]}
)", "live");
  auto applied = cluster_->Apply((*deployment)[0]);
  ASSERT_TRUE(applied.ok());
  const std::string deploy_uid = value::StringAt(&*applied, {"metadata", "uid"});
  auto rs = cluster_->Apply((*value::ParseYaml(fmt::format(R"(apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: web-1, namespace: web, ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: web, uid: "{}"}}]}}
spec: {{replicas: 1}}
)", deploy_uid), "rs"))[0]);
  ASSERT_TRUE(rs.ok());
  const std::string rs_uid = value::StringAt(&*rs, {"metadata", "uid"});
  ASSERT_TRUE(cluster_->Apply((*value::ParseYaml(fmt::format(R"(apiVersion: v1
kind: Pod
metadata: {{name: web-1-a, namespace: web, ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: "{}"}}]}}
status: {{phase: Running}}
)", rs_uid), "pod"))[0]).ok());
  ASSERT_TRUE(cluster_->Apply((*value::ParseYaml("apiVersion: v1\nkind: Pod\nmetadata: {name: stranger, namespace: web}\n", "pod"))[0]).ok());
  ASSERT_TRUE(cluster_->Apply((*value::ParseYaml(
      "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: web}\ndata: {password: bGl2ZS1zZWNyZXQtdmFsdWU=}\n", "secret"))[0]).ok());
  ASSERT_TRUE(cluster_->Create((*value::ParseYaml(R"(apiVersion: v1
kind: Event
metadata: {name: web-1-a.1, namespace: web}
involvedObject: {kind: Pod, namespace: web, name: web-1-a}
type: Warning
reason: BackOff
message: Back-off restarting failed container
count: 3
lastTimestamp: "2026-12-06T10:00:00Z"
)", "event"))[0]).ok());

  auto tree = Call(kApiToken, "GET", "/api/v1/apps/web/resources?environment=dev");
  ASSERT_EQ(tree.status, 200) << tree.body;
  ExpectValid(tree, "/api/v1/apps/{app}/resources", "GET");
  auto t = value::ParseJson(tree.body);
  std::map<std::string, const Value*> by_name;
  for (const auto& n : t->Get("items")->items()) by_name[std::string(value::StringAt(&n, {"kind"})) + "/" + value::StringAt(&n, {"name"})] = &n;
  ASSERT_EQ(by_name.size(), 4u) << tree.body;  // Deployment, Secret, ReplicaSet, Pod; not the stranger
  EXPECT_EQ(value::StringAt(by_name["Deployment/web"], {"sync"}), "OutOfSync");
  EXPECT_EQ(value::StringAt(by_name["ReplicaSet/web-1"], {"owners", 0}), deploy_uid);
  EXPECT_EQ(value::StringAt(by_name["Pod/web-1-a"], {"owners", 0}), rs_uid);
  EXPECT_EQ(value::StringAt(by_name["Pod/web-1-a"], {"sync"}), "");

  auto diff = Call(kApiToken, "GET", "/api/v1/apps/web/diff?environment=dev&cluster=dev-1");
  ASSERT_EQ(diff.status, 200) << diff.body;
  ExpectValid(diff, "/api/v1/apps/{app}/diff", "GET");
  EXPECT_THAT(diff.body, HasSubstr("registry/web:1"));
  EXPECT_THAT(diff.body, ::testing::Not(HasSubstr("desired-secret-value")));
  EXPECT_THAT(diff.body, ::testing::Not(HasSubstr("live-secret-value")));
  EXPECT_THAT(diff.body, ::testing::Not(HasSubstr("bGl2ZS1zZWNyZXQtdmFsdWU")));
  EXPECT_THAT(diff.body, ::testing::Not(HasSubstr("managedFields")));

  auto events = Call(kApiToken, "GET", "/api/v1/apps/web/events?environment=dev");
  ASSERT_EQ(events.status, 200) << events.body;
  ExpectValid(events, "/api/v1/apps/{app}/events", "GET");
  EXPECT_THAT(events.body, HasSubstr("Back-off restarting failed container"));

  auto ambiguous = Call(kApiToken, "GET", "/api/v1/apps/web/resources");
  EXPECT_EQ(ambiguous.status, 400);
  EXPECT_THAT(ambiguous.body, HasSubstr("name one with ?environment= and ?cluster="));
  ExpectValid(ambiguous, "/api/v1/apps/{app}/resources", "GET");
}

// A pull target's diff renders its Application's source at the revision its agent compared (a real
// Git repository, the agent's Source) and compares it with the cluster; a source outside the
// server's config repositories is not fetched.
TEST_F(AppsApiTest, APullTargetsDiffIsRenderedAsItsAgentRendersIt) {
  const fs::path repo = dir_ / "pull-config";
  fs::create_directories(repo / "apps" / "api");
  ASSERT_TRUE(WriteFileAtomic(repo / "apps" / "api" / "deploy.yaml", R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry/api:2"}]}
)").ok());
  ProcessOptions git;
  git.cwd = repo.string();
  git.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", dir_.string()}, {"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"},
             {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  for (auto argv : std::vector<std::vector<std::string>>{
           {"git", "init", "-q", "-b", "main"}, {"git", "add", "-A"}, {"git", "commit", "-q", "-m", "api 2"}}) {
    ASSERT_TRUE(RunChecked(argv, git).ok());
  }
  auto head = RunChecked({"git", "rev-parse", "HEAD"}, git);
  ASSERT_TRUE(head.ok());
  const std::string commit = head->out.substr(0, 40);
  const std::string url = "file://" + repo.string();
  auto app = value::ParseYaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: api, namespace: gantry}}
spec:
  source: {{repoURL: "{}", path: apps/api}}
  destination: {{namespace: api}}
)", url), "test");
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE(edge_->Apply((*app)[0]).ok());
  Value status = PulledStatus("api", commit);
  ASSERT_TRUE(edge_->ApplyStatus(status).ok());
  // Live: the Deployment at the older image the agent applied before.
  auto live = value::ParseYaml(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: api, labels: {gantry.dev/app: api}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry/api:1"}]}
)", "live");
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE(edge_->Apply((*live)[0]).ok());

  auto source = agent::NewSource({.cache_dir = (dir_ / "pull-render").string(), .allow_file_repos = true}, {});
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  deliver::ConnectFn connect = [this](const deliver::Cluster& c) -> Result<std::unique_ptr<kube::Client>> {
    return fakes::ForwardingKubeClient::To(c.name == "edge-1" ? edge_ : cluster_);
  };
  Front front("server", {});
  ASSERT_TRUE(ServeApiV1(front, {.access = access_.get(), .ci = ci_.get(), .deliver_config = config_, .connect = connect,
                                 .pull_applications = watch_->Source(), .pull_source = source->get(), .pull_repos = {url}})
                  .ok());
  ASSERT_TRUE(front.Start().ok());
  auto get = [&](const std::string& path) {
    auto r = http::Client().Send({.method = "GET", .url = fmt::format("http://127.0.0.1:{}{}", front.port(), path),
                                  .headers = {{"authorization", std::string("Bearer ") + kApiToken}}});
    GANTRY_CHECK(r.ok());
    return *std::move(r);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto diff = get("/api/v1/apps/api/diff?cluster=edge-1");
  while (diff.status == 404 && std::chrono::steady_clock::now() < deadline) {  // until the watch has it
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    diff = get("/api/v1/apps/api/diff?cluster=edge-1");
  }
  ASSERT_EQ(diff.status, 200) << diff.body;
  ExpectValid(diff, "/api/v1/apps/{app}/diff", "GET");
  auto d = value::ParseJson(diff.body);
  EXPECT_EQ(value::StringAt(&*d, {"mode"}), "pull");
  EXPECT_EQ(value::StringAt(&*d, {"items", 0, "kind"}), "Deployment");
  EXPECT_EQ(value::StringAt(&*d, {"items", 0, "namespace"}), "api") << "the destination namespace, as the agent renders";
  EXPECT_EQ(value::StringAt(&*d, {"items", 0, "sync"}), "OutOfSync");
  EXPECT_THAT(value::StringAt(&*d, {"items", 0, "diff"}), HasSubstr("+        image: registry/api:2"));
  EXPECT_THAT(value::StringAt(&*d, {"items", 0, "diff"}), HasSubstr("-        image: registry/api:1"));

  // The sync's dry run shows the same diff for the pull target.
  const std::string deployer = UserToken("bob", "deployer", "default");
  auto dry = http::Client().Send({.method = "POST", .url = fmt::format("http://127.0.0.1:{}/api/v1/apps/api/sync", front.port()),
                                  .headers = {{"authorization", "Bearer " + deployer}, {"content-type", "application/json"}},
                                  .body = R"({"cluster":"edge-1","dry_run":true})"});
  ASSERT_TRUE(dry.ok());
  ASSERT_EQ(dry->status, 200) << dry->body;
  ExpectValid(*dry, "/api/v1/apps/{app}/sync", "POST");
  auto preview = value::ParseJson(dry->body);
  ASSERT_TRUE(preview.ok());
  EXPECT_THAT(value::StringAt(&*preview, {"targets", 0, "items", 0, "diff"}), HasSubstr("registry/api:2"));

  // web's source is not one of this server's config repositories: not fetched, 409 saying so.
  auto elsewhere = get("/api/v1/apps/web/diff?cluster=edge-1");
  EXPECT_EQ(elsewhere.status, 409) << elsewhere.body;
  EXPECT_THAT(elsewhere.body, HasSubstr("is not a config repository of this server"));
  ExpectValid(elsewhere, "/api/v1/apps/{app}/diff", "GET");
  front.Stop();
}

TEST_F(AppsApiTest, APullTargetsTreeIsWhatItsAgentReports) {
  auto tree = Call(kApiToken, "GET", "/api/v1/apps/web/resources?cluster=edge-1");
  ASSERT_EQ(tree.status, 200) << tree.body;
  ExpectValid(tree, "/api/v1/apps/{app}/resources", "GET");
  auto t = value::ParseJson(tree.body);
  EXPECT_EQ(value::StringAt(&*t, {"items", 0, "kind"}), "Deployment");
  EXPECT_EQ(value::StringAt(&*t, {"items", 0, "group"}), "apps");
  EXPECT_EQ(value::StringAt(&*t, {"items", 0, "health", "status"}), "Healthy");
  EXPECT_EQ(value::StringAt(&*t, {"mode"}), "pull");
  auto diff = Call(kApiToken, "GET", "/api/v1/apps/web/diff?cluster=edge-1");
  EXPECT_EQ(diff.status, 501) << "this server has no Source for pull targets";
  EXPECT_THAT(diff.body, HasSubstr("renders no pull sources"));
  ExpectValid(diff, "/api/v1/apps/{app}/diff", "GET");
  auto events = Call(kApiToken, "GET", "/api/v1/apps/web/events?cluster=edge-1");
  EXPECT_EQ(events.status, 200) << events.body;
  ExpectValid(events, "/api/v1/apps/{app}/events", "GET");
}

TEST_F(AppsApiTest, ClustersShowModeReachabilityVersionAndAppsAndAreProbedOncePerTtl) {
  auto r = Call(kApiToken, "GET", "/api/v1/clusters");
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectValid(r, "/api/v1/clusters", "GET");
  auto doc = value::ParseJson(r.body);
  const Value* items = doc->Get("items");
  ASSERT_EQ(items->size(), 3u) << r.body;
  EXPECT_EQ(value::StringAt(items, {0, "name"}), "dev-1");
  EXPECT_EQ(value::StringAt(items, {0, "server"}), "https://dev-1.example:6443");
  EXPECT_EQ(value::StringAt(items, {0, "kube_version"}), "v1.31.2");
  EXPECT_TRUE(items->Find({0, "reachable"})->AsBool());
  EXPECT_EQ(value::StringAt(items, {0, "apps", 0, "app"}), "web");
  EXPECT_EQ(value::IntAt(items, {0, "apps", 0, "release"}), release_);
  EXPECT_EQ(value::StringAt(items, {1, "name"}), "edge-1");
  EXPECT_EQ(value::StringAt(items, {1, "mode"}), "pull");
  EXPECT_TRUE(items->Find({1, "reachable"})->AsBool()) << "its watch is synced";
  EXPECT_EQ(value::StringAt(items, {1, "apps", 0, "health"}), "Healthy");
  EXPECT_TRUE(items->Find({1, "last_error"})->IsNull());
  Call(kApiToken, "GET", "/api/v1/clusters");
  EXPECT_EQ(Probes("dev-1"), 1) << "the second page load is served from the cache";
  EXPECT_EQ(Probes("edge-1"), 1);

  // The pull cluster's environment lists it beside the push one.
  auto envs = value::ParseJson(Call(kApiToken, "GET", "/api/v1/environments").body);
  EXPECT_EQ(value::StringAt(&*envs, {"items", 1, "clusters", 0, "name"}), "edge-1");
  EXPECT_EQ(value::StringAt(&*envs, {"items", 1, "clusters", 0, "mode"}), "pull");

  // A pull cluster whose watch has stopped is not reachable, and says so.
  watch_->Stop();
  auto stopped = value::ParseJson(Call(kApiToken, "GET", "/api/v1/clusters").body);
  EXPECT_FALSE(stopped->Find({"items", 1, "reachable"})->AsBool()) << value::ToJson(*stopped);
  EXPECT_FALSE(stopped->Find({"items", 1, "last_error"})->IsNull());
}

}  // namespace
}  // namespace gantry::server

namespace gantry::server {
namespace {

TEST_F(AppsApiTest, AReleaseFlowJoinsCommitRunImagesConfigAndEachEnvironmentsGateAndClusters) {
  const std::string sha(40, 'c');
  Hook(sha, "flow-1");  // run 1, of https://git.example/org/app
  auto id = store_->CreateRelease({.app = "web", .source_revision = sha, .config_revision = "cfg2",
                                   .image_digests = {{"quay.io/org/web", "sha256:0123"}}, .started_by = "webhook:github",
                                   .run_id = 1});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *id, .env = "dev", .cluster = "dev-1", .state = store::TargetState::kHealthy}).ok());
  ASSERT_TRUE(store_->UpsertTarget({.release_id = *id, .env = "prod", .cluster = "prod-1", .state = store::TargetState::kPending,
                                    .message = "waiting for approval"}).ok());
  const std::string path = fmt::format("/api/v1/apps/web/releases/{}", *id);
  auto flow = Call(kApiToken, "GET", path);
  ASSERT_EQ(flow.status, 200) << flow.body;
  ExpectValid(flow, "/api/v1/apps/{app}/releases/{id}", "GET");
  auto f = value::ParseJson(flow.body);
  EXPECT_EQ(value::StringAt(&*f, {"commit", "repo"}), kApiRepo);
  EXPECT_EQ(value::StringAt(&*f, {"commit", "url"}), "https://git.example/org/app/commit/" + sha) << "by the gitea rule";
  EXPECT_EQ(value::IntAt(&*f, {"run", "id"}), 1);
  EXPECT_TRUE(f->Find({"commit", "message"})->IsNull()) << "the run was not fetched: no mirror has the commit";
  EXPECT_EQ(value::StringAt(&*f, {"run", "state"}), "queued");
  EXPECT_EQ(value::StringAt(&*f, {"images", 0, "reference"}), "quay.io/org/web@sha256:0123");
  EXPECT_EQ(value::StringAt(&*f, {"images", 0, "url"}), "https://quay.io/repository/org/web/manifest/sha256:0123");
  EXPECT_EQ(value::StringAt(&*f, {"config", "url"}), "https://github.com/org/config/commit/cfg2");
  EXPECT_EQ(value::StringAt(&*f, {"environments", 0, "name"}), "dev");
  EXPECT_EQ(value::StringAt(&*f, {"environments", 0, "clusters", 0, "state"}), "healthy");
  EXPECT_FALSE(f->Find({"environments", 0, "clusters", 0, "at"})->IsNull());
  const Value* prod = f->Find({"environments", 1});
  ASSERT_NE(prod, nullptr);
  EXPECT_EQ(value::StringAt(prod, {"name"}), "prod");
  EXPECT_TRUE(prod->Find({"gate", "approval"})->AsBool());
  EXPECT_TRUE(prod->Get("waiting_approval")->AsBool()) << flow.body;
  // prod's clusters: edge-1 (pull, still on the older release) and prod-1 (push, pending).
  EXPECT_EQ(value::StringAt(prod, {"clusters", 0, "name"}), "edge-1");
  EXPECT_EQ(value::StringAt(prod, {"clusters", 0, "mode"}), "pull");
  EXPECT_EQ(value::StringAt(prod, {"clusters", 0, "state"}), "behind");
  EXPECT_EQ(value::StringAt(prod, {"clusters", 1, "state"}), "pending");
  // The older release's flow: the pull cluster runs it.
  auto older = value::ParseJson(Call(kApiToken, "GET", fmt::format("/api/v1/apps/web/releases/{}", release_)).body);
  EXPECT_EQ(value::StringAt(&*older, {"environments", 1, "clusters", 0, "state"}), "synced");
  EXPECT_TRUE(older->Find({"run"})->IsNull());
  EXPECT_TRUE(older->Find({"commit", "url"})->IsNull()) << "no run, so no repository to link";

  EXPECT_EQ(Call(kApiToken, "GET", path, "").headers.count("etag"), 1u);
  auto same = http::Client().Send({.method = "GET", .url = fmt::format("http://127.0.0.1:{}{}", pull_front_.port(), path),
                                   .headers = {{"authorization", std::string("Bearer ") + kApiToken}, {"if-none-match", flow.headers["etag"]}}});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->status, 304);
  // Approving the gate (the console's Approve button) shows in the flow.
  auto approved = Call(kApiToken, "POST", "/api/v1/apps/web/approve", fmt::format(R"({{"environment":"prod","release":{}}})", *id));
  ASSERT_EQ(approved.status, 200) << approved.body;
  auto after = value::ParseJson(Call(kApiToken, "GET", path).body);
  EXPECT_TRUE(after->Find({"environments", 1, "approved"})->AsBool());
  EXPECT_FALSE(after->Find({"environments", 1, "waiting_approval"})->AsBool());

  auto other_app = Call(kApiToken, "GET", fmt::format("/api/v1/apps/api/releases/{}", *id));
  EXPECT_EQ(other_app.status, 404);
  ExpectValid(other_app, "/api/v1/apps/{app}/releases/{id}", "GET");
  EXPECT_THAT(other_app.body, HasSubstr("is web's"));
  EXPECT_EQ(Call(kApiToken, "GET", "/api/v1/apps/web/releases/x").status, 404);
  EXPECT_EQ(Call(UserToken("carol", "viewer", "team-z"), "GET", path).status, 403);

  // The history lists the same links.
  auto list = Call(kApiToken, "GET", "/api/v1/apps/web/releases");
  ExpectValid(list, "/api/v1/apps/{app}/releases", "GET");
  auto l = value::ParseJson(list.body);
  EXPECT_EQ(value::StringAt(&*l, {"items", 0, "links", "source"}), "https://git.example/org/app/commit/" + sha);
  EXPECT_EQ(value::StringAt(&*l, {"items", 0, "links", "images", "quay.io/org/web"}),
            "https://quay.io/repository/org/web/manifest/sha256:0123");
}

TEST_F(AppsApiTest, ClustersAndEnvironmentsPageWithCursorsAndETags) {
  auto first = Call(kApiToken, "GET", "/api/v1/clusters?limit=2");
  ASSERT_EQ(first.status, 200) << first.body;
  ExpectValid(first, "/api/v1/clusters", "GET");
  auto a = value::ParseJson(first.body);
  ASSERT_EQ(a->Get("items")->size(), 2u);
  EXPECT_EQ(value::StringAt(&*a, {"items", 0, "name"}), "dev-1");
  EXPECT_EQ(value::StringAt(&*a, {"items", 1, "name"}), "edge-1");
  ASSERT_TRUE(a->Get("next")->IsString());
  auto b = value::ParseJson(Call(kApiToken, "GET", "/api/v1/clusters?limit=2&cursor=" + std::string(a->Get("next")->AsString())).body);
  ASSERT_EQ(b->Get("items")->size(), 1u);
  EXPECT_EQ(value::StringAt(&*b, {"items", 0, "name"}), "prod-1");
  EXPECT_TRUE(b->Get("next")->IsNull());
  EXPECT_EQ(Probes("prod-1"), 1) << "the second page probed its own cluster";
  auto again = http::Client().Send({.method = "GET", .url = fmt::format("http://127.0.0.1:{}/api/v1/clusters?limit=2", pull_front_.port()),
                                    .headers = {{"authorization", std::string("Bearer ") + kApiToken}, {"if-none-match", first.headers["etag"]}}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, 304);

  auto envs = Call(kApiToken, "GET", "/api/v1/environments?limit=1");
  ASSERT_EQ(envs.status, 200) << envs.body;
  ExpectValid(envs, "/api/v1/environments", "GET");
  auto e = value::ParseJson(envs.body);
  EXPECT_EQ(value::StringAt(&*e, {"items", 0, "name"}), "dev");
  ASSERT_TRUE(e->Get("next")->IsString());
  auto prod = value::ParseJson(Call(kApiToken, "GET", "/api/v1/environments?limit=1&cursor=" + std::string(e->Get("next")->AsString())).body);
  EXPECT_EQ(value::StringAt(&*prod, {"items", 0, "name"}), "prod");
  EXPECT_EQ(value::IntAt(&*prod, {"items", 0, "waiting", 0, "release"}), release_) << "its gate, on a page of its own";
  EXPECT_TRUE(prod->Get("next")->IsNull());
  auto bad = Call(kApiToken, "GET", "/api/v1/environments?limit=501");
  EXPECT_EQ(bad.status, 400);
  ExpectValid(bad, "/api/v1/environments", "GET");
  EXPECT_THAT(bad.body, HasSubstr("limit \\\"501\\\""));
  EXPECT_EQ(Call(kApiToken, "GET", "/api/v1/clusters?cursor=zz").status, 400);
}

}  // namespace
}  // namespace gantry::server
