// Notifications against real receivers: HTTP servers started here (Slack-, Teams- and generic
// webhook-style, one failing twice, one down), a real SMTP server (aiosmtpd, test/env/smtp-sink.sh)
// whose delivered messages are read back, and a SQLite store for the outbox, reopened to act as a
// restarted server.

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "base/path.h"
#include "base/process.h"
#include "http/metrics.h"
#include "notify/notify.h"
#include "server/front.h"
#include "store/store.h"
#include "test/env/testenv.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::notify {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// An HTTP receiver: records every POST to /hook and answers with the next of `answers` (200 after).
class Receiver {
 public:
  explicit Receiver(std::vector<int> answers = {}) : answers_(std::move(answers)), front_("receiver", {.address = "127.0.0.1"}) {
    front_.Handle("POST", "/hook", [this](const http::Request& req) {
      MutexLock lock(mu_);
      got_.push_back(req);
      const int status = next_ < answers_.size() ? answers_[next_++] : 200;
      return http::Response::Text(status, status == 200 ? "ok" : "receiver says no");
    });
    EXPECT_TRUE(front_.Start().ok());
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/hook", front_.port()); }
  std::vector<http::Request> got() {
    MutexLock lock(mu_);
    return got_;
  }

 private:
  Mutex mu_;
  std::vector<http::Request> got_ GUARDED_BY(mu_);
  std::vector<int> answers_;
  size_t next_ GUARDED_BY(mu_) = 0;
  server::Front front_;
};

class NotificationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::Open("sqlite://" + dir_.path() + "/gantry.db");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // The config: one provider and one subscription (to every project) per receiver given.
  Config MakeConfig(const std::string& yaml) {
    auto c = ParseConfig(yaml, "notifications.yaml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.value_or(Config{});
  }

  NotifierOptions Options(Config config) {
    return {.store = store_.get(), .config = std::move(config), .public_url = "https://gantry.example",
            .metrics = &registry_, .initial_backoff = 50ms, .max_backoff = 200ms, .poll = 50ms,
            .send_timeout = 5s};
  }

  // Runs the notifier until `done` holds (a deadline, never a sleep for correctness).
  template <typename F>
  bool RunUntil(Notifier& n, F done, std::chrono::seconds limit = 20s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      n.RunOnce();
      if (done()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::vector<store::Notification> All() {
    auto all = store_->ListNotifications({.limit = 100});
    EXPECT_TRUE(all.ok());
    return all.value_or(std::vector<store::Notification>{});
  }

  testenv::ScopedTempDir dir_;
  std::unique_ptr<store::Store> store_;
  http::Registry registry_;
};

Event DeployFailed() {
  return {.id = "release-4-prod-eu-failed-2", .trigger = Trigger::kDeployFailed, .project = "shop", .app = "web",
          .environment = "prod", .cluster = "eu", .release = 4, .message = "Deployment web: progress deadline exceeded"};
}

TEST_F(NotificationsTest, SlackTeamsAndSignedWebhookGetTheirExactPayloads) {
  Receiver slack, teams, hook;
  setenv("NT_SLACK_URL", slack.url().c_str(), 1);
  setenv("NT_TEAMS_URL", teams.url().c_str(), 1);
  setenv("NT_HOOK_SECRET", "hook-secret-value", 1);
  Config c = MakeConfig(fmt::format(R"(notifications:
  providers:
    - {{name: slack, type: slack, url: {{env: NT_SLACK_URL}}}}
    - {{name: teams, type: teams, url: {{env: NT_TEAMS_URL}}}}
    - {{name: hook, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: s, projects: ["*"], triggers: [deploy-failed], provider: slack}}
    - {{name: t, projects: [shop], triggers: [deploy-failed], provider: teams}}
    - {{name: h, projects: [shop], triggers: [deploy-failed], provider: hook, environments: [prod]}}
    - {{name: other, projects: [other], triggers: [deploy-failed], provider: hook}}
)",
                                    hook.url()));
  Notifier n(Options(c));
  n.Submit(DeployFailed());
  ASSERT_TRUE(RunUntil(n, [&] { return !slack.got().empty() && !teams.got().empty() && !hook.got().empty(); }));
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(slack.got()[0].body, RenderFor(c, c.providers[0], DeployFailed(), "https://gantry.example", now).body);
  EXPECT_THAT(slack.got()[0].body, HasSubstr(R"("text":"web deploy to prod failed")"));
  EXPECT_THAT(teams.got()[0].body, HasSubstr(R"("contentType":"application/vnd.microsoft.card.adaptive")"));
  EXPECT_THAT(teams.got()[0].body, HasSubstr(R"("url":"https://gantry.example/apps/web/releases")"));
  const std::vector<http::Request> hooks = hook.got();
  const http::Request& h = hooks[0];
  EXPECT_EQ(h.Header("x-gantry-signature"), Signature("hook-secret-value", h.body));
  EXPECT_EQ(h.Header("x-gantry-event"), "release-4-prod-eu-failed-2");
  EXPECT_FALSE(h.Header("x-gantry-timestamp").empty());
  EXPECT_EQ(h.Header("content-type"), "application/json");
  auto body = value::ParseJson(h.body);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(value::StringAt(&*body, {"id"}), "release-4-prod-eu-failed-2");
  EXPECT_EQ(value::StringAt(&*body, {"severity"}), "error");
  EXPECT_EQ(value::StringAt(&*body, {"links", "release_url"}), "https://gantry.example/apps/web/releases");
  // Delivered once each; the subscription of another project got nothing.
  auto all = All();
  ASSERT_EQ(all.size(), 3u);
  for (const auto& x : all) {
    EXPECT_EQ(x.state, store::NotificationState::kDelivered) << x.subscription;
    EXPECT_EQ(x.attempts, 1);
  }
  EXPECT_EQ(hook.got().size(), 1u);
}

TEST_F(NotificationsTest, AFailingReceiverIsRetriedAndADownOneRecordedFailedWithTheReason) {
  Receiver flaky({500, 500});
  Receiver refusing({404});
  setenv("NT_HOOK_SECRET", "hook-secret-value", 1);
  Config c = MakeConfig(fmt::format(R"(notifications:
  defaults: {{deadline: 2s}}
  providers:
    - {{name: flaky, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
    - {{name: down, type: webhook, url: "http://127.0.0.1:1/hook", secret: {{env: NT_HOOK_SECRET}}}}
    - {{name: refusing, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: a, projects: ["*"], triggers: [deploy-failed], provider: flaky}}
    - {{name: b, projects: ["*"], triggers: [deploy-failed], provider: down}}
    - {{name: c, projects: ["*"], triggers: [deploy-failed], provider: refusing}}
)",
                                    flaky.url(), refusing.url()));
  Notifier n(Options(c));
  n.Submit(DeployFailed());
  ASSERT_TRUE(RunUntil(n, [&] {
    auto pending = store_->ListNotifications({.state = store::NotificationState::kPending});
    return pending.ok() && pending->empty();
  }));
  std::map<std::string, store::Notification> by;
  for (const auto& x : All()) by[x.subscription] = x;
  EXPECT_EQ(by["a"].state, store::NotificationState::kDelivered);
  EXPECT_EQ(by["a"].attempts, 3);
  EXPECT_EQ(flaky.got().size(), 3u);
  EXPECT_EQ(flaky.got()[0].body, flaky.got()[2].body);  // the same event, the same id, each time
  EXPECT_EQ(by["b"].state, store::NotificationState::kFailed);
  EXPECT_GE(by["b"].attempts, 2);
  EXPECT_THAT(by["b"].last_error, HasSubstr("gave up after"));
  EXPECT_THAT(by["b"].last_error, HasSubstr("127.0.0.1:1"));
  // A 404 is not retried.
  EXPECT_EQ(by["c"].state, store::NotificationState::kFailed);
  EXPECT_EQ(by["c"].attempts, 1);
  EXPECT_EQ(by["c"].last_error, "HTTP 404: receiver says no");
  EXPECT_THAT(registry_.Render(), HasSubstr(R"(gantry_notifications_total{provider="flaky",result="retried"} 2)"));
}

TEST_F(NotificationsTest, RepeatedAlertsAreDedupedARecoverySendsOnceAndTheRateLimitHolds) {
  Receiver hook;
  setenv("NT_HOOK_SECRET", "hook-secret-value", 1);
  Config c = MakeConfig(fmt::format(R"(notifications:
  defaults: {{dedupe: 10m}}
  providers:
    - {{name: hook, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: health, projects: ["*"], triggers: [health-degraded], provider: hook}}
    - {{name: runs, projects: ["*"], triggers: [run-failed], provider: hook, rateLimit: 2/1h}}
)",
                                    hook.url()));
  Notifier n(Options(c));
  Event degraded{.id = "app-1", .trigger = Trigger::kHealthDegraded, .app = "web", .environment = "prod",
                 .cluster = "eu"};
  n.Submit(degraded);
  degraded.id = "app-2";  // the same app degraded again within the window
  n.Submit(degraded);
  Event recovered = degraded;
  recovered.id = "app-3";
  recovered.trigger = Trigger::kHealthRecovered;
  n.Submit(recovered);
  recovered.id = "app-4";  // a second recovery without an alert in between sends nothing
  n.Submit(recovered);
  for (int run = 1; run <= 3; ++run) {
    n.Submit({.id = fmt::format("run-{}-failed", run), .trigger = Trigger::kRunFailed, .app = "ci", .run = run});
  }
  ASSERT_TRUE(RunUntil(n, [&] { return hook.got().size() >= 4; }));
  n.RunOnce();
  std::vector<std::string> ids;
  for (const auto& r : hook.got()) ids.emplace_back(r.Header("x-gantry-event"));
  EXPECT_THAT(ids, ::testing::ElementsAre("app-1", "app-3", "run-1-failed", "run-2-failed"));
  auto failed = store_->ListNotifications({.state = store::NotificationState::kFailed});
  ASSERT_TRUE(failed.ok());
  ASSERT_EQ(failed->size(), 1u);
  EXPECT_EQ((*failed)[0].event_id, "run-3-failed");
  EXPECT_THAT((*failed)[0].last_error, HasSubstr("rate limited: subscription runs allows 2 per 3600s"));
}

// What a server accepted before it stopped is delivered by the next one.
TEST_F(NotificationsTest, APendingNotificationIsDeliveredAfterARestart) {
  setenv("NT_HOOK_SECRET", "hook-secret-value", 1);
  const std::string yaml = fmt::format(R"(notifications:
  providers:
    - {{name: hook, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: h, projects: ["*"], triggers: [deploy-failed], provider: hook}}
)",
                                       "http://127.0.0.1:1/hook");
  {
    NotifierOptions first = Options(MakeConfig(yaml));
    first.metrics = nullptr;  // one registry takes one notifier's counters
    Notifier before(std::move(first));
    before.Submit(DeployFailed());
    before.Stop();  // stopped before delivering: the event goes into the outbox
  }
  ASSERT_EQ(All().size(), 1u);
  EXPECT_EQ(All()[0].state, store::NotificationState::kPending);
  store_.reset();
  auto reopened = store::Open("sqlite://" + dir_.path() + "/gantry.db");
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  Receiver hook;
  Config c = MakeConfig(fmt::format(R"(notifications:
  providers:
    - {{name: hook, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: h, projects: ["*"], triggers: [deploy-failed], provider: hook}}
)",
                                    hook.url()));
  Notifier after(Options(c));
  after.Start();
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (hook.got().empty() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(20ms);
  after.Stop();
  ASSERT_EQ(hook.got().size(), 1u);
  EXPECT_EQ(hook.got()[0].Header("x-gantry-event"), "release-4-prod-eu-failed-2");
  EXPECT_EQ(All()[0].state, store::NotificationState::kDelivered);
}

TEST_F(NotificationsTest, EmailArrivesAtARealSmtpServerWithTheLink) {
  auto smtp = testenv::Server::Start("smtp-sink.sh");
  ASSERT_TRUE(smtp.ok()) << smtp.status().ToString();
  Config c = MakeConfig(fmt::format(R"(notifications:
  providers:
    - {{name: mail, type: email, smtp: "{}", from: gantry@example.com, to: [ops@example.com, dev@example.com]}}
  subscriptions:
    - {{name: m, projects: [shop], triggers: [approval-needed, deploy-failed], provider: mail}}
)",
                                    (*smtp)->Get("SMTP_URL")));
  Notifier n(Options(c));
  n.Submit({.id = "approval-web-4-9", .trigger = Trigger::kApprovalNeeded, .project = "shop", .app = "web",
            .environment = "prod", .release = 4, .message = "prod: waiting for approval"});
  const fs::path mail_dir = (*smtp)->Get("MAIL_DIR");
  ASSERT_TRUE(RunUntil(n, [&] { return fs::exists(mail_dir / "0001.eml"); }));
  const std::string mail = ReadFile(mail_dir / "0001.eml").value_or("");
  EXPECT_THAT(mail, HasSubstr("X-Envelope-From: gantry@example.com"));
  EXPECT_THAT(mail, HasSubstr("X-Envelope-To: ops@example.com, dev@example.com"));
  EXPECT_THAT(mail, HasSubstr("From: gantry@example.com\r\n"));
  EXPECT_THAT(mail, HasSubstr("Subject: web waits for approval\r\n"));
  EXPECT_THAT(mail, HasSubstr("web waits for approval in prod: prod: waiting for approval\r\n"
                              "https://gantry.example/apps/web/releases\r\n"));
  EXPECT_THAT(mail, HasSubstr("X-Gantry-Event: approval-web-4-9"));
  ASSERT_EQ(All().size(), 1u);
  EXPECT_EQ(All()[0].state, store::NotificationState::kDelivered);
}

// STARTTLS (required here) and AUTH: the password comes from the environment; a wrong one is the
// server's 535 reply, recorded and not retried.
TEST_F(NotificationsTest, EmailUsesStartTlsAndAuthAndRecordsARefusal) {
  auto smtp = testenv::Server::Start("smtp-sink.sh", {"--tls", "--auth", "gantry:mail-pass-123"});
  ASSERT_TRUE(smtp.ok()) << smtp.status().ToString();
  setenv("NT_SMTP_PASSWORD", "mail-pass-123", 1);
  setenv("NT_SMTP_WRONG", "not-the-password", 1);
  Config c = MakeConfig(fmt::format(R"(notifications:
  providers:
    - {{name: mail, type: email, smtp: "{0}", starttls: required, caFile: "{1}", from: gantry@example.com,
       to: [ops@example.com], username: gantry, password: {{env: NT_SMTP_PASSWORD}}}}
    - {{name: wrong, type: email, smtp: "{0}", starttls: required, caFile: "{1}", from: gantry@example.com,
       to: [ops@example.com], username: gantry, password: {{env: NT_SMTP_WRONG}}}}
  subscriptions:
    - {{name: m, projects: ["*"], triggers: [deploy-failed], provider: mail}}
    - {{name: w, projects: ["*"], triggers: [deploy-failed], provider: wrong}}
)",
                                    (*smtp)->Get("SMTP_URL"), (*smtp)->Get("CA_FILE")));
  Notifier n(Options(c));
  n.Submit(DeployFailed());
  ASSERT_TRUE(RunUntil(n, [&] {
    auto pending = store_->ListNotifications({.state = store::NotificationState::kPending});
    return pending.ok() && pending->empty();
  })) << [&] {
    std::string out;
    for (const auto& x : All()) out += fmt::format("{} {} {} {}\n", x.subscription, store::Name(x.state), x.attempts, x.last_error);
    return out;
  }();
  const fs::path mail_dir = (*smtp)->Get("MAIL_DIR");
  const std::string mail = ReadFile(mail_dir / "0001.eml").value_or("");
  EXPECT_THAT(mail, HasSubstr("Subject: web deploy to prod failed\r\n"));
  EXPECT_FALSE(fs::exists(mail_dir / "0002.eml"));
  std::map<std::string, store::Notification> by;
  for (const auto& x : All()) by[x.subscription] = x;
  EXPECT_EQ(by["m"].state, store::NotificationState::kDelivered);
  EXPECT_EQ(by["w"].state, store::NotificationState::kFailed);
  EXPECT_EQ(by["w"].attempts, 1);
  EXPECT_THAT(by["w"].last_error, HasSubstr("SMTP 535"));
  EXPECT_EQ(by["w"].last_error.find("not-the-password"), std::string::npos);
}

// The whole way: `gantry server` runs a pipeline whose step fails; the failure arrives by email
// (the real SMTP server) and by the signed webhook, and `gantry notifications list` shows both.
TEST_F(NotificationsTest, AFailedCiRunThroughTheServerArrivesByEmailAndWebhook) {
  auto smtp = testenv::Server::Start("smtp-sink.sh");
  ASSERT_TRUE(smtp.ok()) << smtp.status().ToString();
  Receiver hook;
  const fs::path root = dir_.path();
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  // A repository whose one step fails.
  const fs::path repo = root / "repo";
  fs::create_directories(repo / ".gantry");
  ASSERT_TRUE(WriteFileAtomic(repo / ".gantry" / "pipeline.yaml", "shell: sh\nsteps:\n  boom: {run: 'exit 3'}\n").ok());
  ProcessOptions git;
  git.cwd = repo.string();
  git.inherit_env = true;
  git.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e"}};
  for (auto argv : std::vector<std::vector<std::string>>{
           {"git", "init", "-q", "-b", "main"}, {"git", "add", "-A"}, {"git", "commit", "-q", "-m", "init"}}) {
    ASSERT_TRUE(RunChecked(argv, git).ok());
  }
  auto head = RunChecked({"git", "rev-parse", "HEAD"}, git);
  ASSERT_TRUE(head.ok());
  const std::string sha = head->out.substr(0, 40);
  const std::string url = "file://" + repo.string();
  ASSERT_TRUE(WriteFileAtomic(root / "notifications.yaml", fmt::format(R"(notifications:
  providers:
    - {{name: mail, type: email, smtp: "{}", from: gantry@example.com, to: [ops@example.com]}}
    - {{name: hook, type: webhook, url: "{}", secret: {{env: NT_HOOK_SECRET}}}}
  subscriptions:
    - {{name: mail-ops, projects: ["*"], triggers: [run-failed], provider: mail}}
    - {{name: hook-ops, projects: ["*"], triggers: [run-failed, run-succeeded], provider: hook}}
)",
                                                                   (*smtp)->Get("SMTP_URL"), hook.url()))
                  .ok());
  const char* binary = std::getenv("GANTRY_BINARY");
  const std::string gantry = binary != nullptr ? binary : "gantry";
  const std::string token = "api-token-0123456789abcdef";
  ProcessOptions po;
  po.inherit_env = true;
  po.env = {{"HOOK", "hook-secret-123"}, {"API_TOKEN", token}, {"NT_HOOK_SECRET", "hook-secret-value"}};
  const std::string log = (root / "server.log").string();
  auto server = Process::Start({gantry, "server", "--listen", "127.0.0.1:0", "--store",
                                "sqlite:" + (root / "server.db").string(), "--webhook-secret-env", "HOOK", "--repo", url,
                                "--data-dir", (root / "data").string(), "--allow-file-repos", "--api-token-env",
                                "API_TOKEN", "--public-url", "https://gantry.example", "--notifications-config",
                                (root / "notifications.yaml").string()},
                               po, log);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string port;
  for (int i = 0; i < 100 && port.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    std::smatch m;
    const std::string text = ReadFile(log).value_or("");
    if (std::regex_search(text, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) port = m[1];
  }
  ASSERT_FALSE(port.empty()) << ReadFile(log).value_or("");
  const std::string base = "http://127.0.0.1:" + port;
  const std::string body = R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000001","after":")" +
                           sha + R"(","repository":{"full_name":"org/app","clone_url":")" + url +
                           R"("},"pusher":{"name":"t"},"commits":[]})";
  ProcessOptions curl;
  curl.inherit_env = true;
  curl.stdin_data = body;
  auto posted = gantry::Run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data-binary", "@-", "-H",
                     "X-GitHub-Event: push", "-H", "X-GitHub-Delivery: n1", "-H",
                     "X-Hub-Signature-256: sha256=" + webhook::HmacSha256Hex("hook-secret-123", body), base + "/webhook"},
                    curl);
  ASSERT_TRUE(posted.ok());
  EXPECT_EQ(posted->out, "201");

  const fs::path mail_dir = (*smtp)->Get("MAIL_DIR");
  const auto end = std::chrono::steady_clock::now() + 120s;
  while ((hook.got().empty() || !fs::exists(mail_dir / "0001.eml")) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(hook.got().empty()) << ReadFile(log).value_or("");
  const http::Request got = hook.got()[0];
  EXPECT_EQ(got.Header("x-gantry-event"), "run-1-failed");
  EXPECT_EQ(got.Header("x-gantry-signature"), Signature("hook-secret-value", got.body));
  EXPECT_THAT(got.body, HasSubstr(R"("run_url":"https://gantry.example/runs/1")"));
  ASSERT_TRUE(fs::exists(mail_dir / "0001.eml")) << ReadFile(log).value_or("");
  const std::string mail = ReadFile(mail_dir / "0001.eml").value_or("");
  EXPECT_THAT(mail, HasSubstr("Subject: Run 1 of "));
  EXPECT_THAT(mail, HasSubstr("failed\r\n"));
  EXPECT_THAT(mail, HasSubstr("https://gantry.example/runs/1\r\n"));

  // The CLI reads the outbox through the API.
  ProcessOptions cli;
  cli.inherit_env = true;
  cli.env = {{"GANTRY_TOKEN", token}};
  std::string listed;
  for (int i = 0; i < 100; ++i) {
    auto list = gantry::Run({gantry, "notifications", "list", "--server", base}, cli);
    ASSERT_TRUE(list.ok());
    listed = list->out;
    if (listed.find("pending") == std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_THAT(listed, HasSubstr("delivered  run-failed"));
  EXPECT_THAT(listed, HasSubstr("mail-ops"));
  EXPECT_THAT(listed, HasSubstr("hook-ops"));
  auto failed = gantry::Run({gantry, "notifications", "list", "--failed", "--server", base}, cli);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->out.find("run-failed"), std::string::npos) << failed->out;
  EXPECT_EQ(server->Stop(), 0);
}

}  // namespace
}  // namespace gantry::notify
