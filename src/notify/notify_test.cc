#include "notify/notify.h"

#include <stdlib.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "value/value.h"

namespace gantry::notify {
namespace {

using ::testing::HasSubstr;

const std::chrono::system_clock::time_point kNow = std::chrono::sys_days{std::chrono::year{2026} / 12 / 6} +
                                                   std::chrono::hours(18);

Event RunFailed() {
  return {.id = "run-12-failed", .trigger = Trigger::kRunFailed, .project = "shop", .app = "shop/ci", .run = 12,
          .message = "step test exited with 1"};
}

TEST(Template, SubstitutesFieldsAndEscapes) {
  auto t = ParseTemplate("Run {{ .run }} of {{.app}}: {{ .message }}", "x");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto fields = Fields(RunFailed(), "https://gantry.example");
  EXPECT_EQ(Render(*t, fields), "Run 12 of shop/ci: step test exited with 1");
  EXPECT_EQ(fields["run_url"], "https://gantry.example/runs/12");
}

TEST(Template, BadTemplatesSayWhereAndWhat) {
  auto unclosed = ParseTemplate("Run {{ .run", "cfg.yaml:3:14");
  EXPECT_THAT(unclosed.status().message(), HasSubstr("cfg.yaml:3:14: template: {{ at character 5 is not closed"));
  auto unknown = ParseTemplate("{{ .nope }}", "cfg.yaml:3:14");
  EXPECT_THAT(unknown.status().message(), HasSubstr("cfg.yaml:3:14: template: unknown field .nope"));
  auto no_dot = ParseTemplate("{{ run }}", "w");
  EXPECT_THAT(no_dot.status().message(), HasSubstr("expected {{ .field }}"));
}

constexpr std::string_view kConfig = R"(notifications:
  defaults: {dedupe: 5m, rateLimit: 3/1m}
  providers:
    - name: ops
      type: slack
      url: {env: NOTIFY_TEST_SLACK_URL}
    - name: hook
      type: webhook
      url: http://127.0.0.1:9/hook
      secret: {env: NOTIFY_TEST_SECRET}
    - name: mail
      type: email
      smtp: smtp://127.0.0.1:2525
      from: gantry@example.com
      to: [ops@example.com]
  templates:
    run-failed:
      title: "CI {{ .run }} broke"
  subscriptions:
    - name: shop-ops
      projects: [shop]
      triggers: [run-failed, health-degraded]
      provider: ops
      environments: [prod]
      rateLimit: 10/1h
)";

TEST(Config, ParsesProvidersTemplatesAndSubscriptions) {
  setenv("NOTIFY_TEST_SLACK_URL", "https://hooks.slack.test/T/B/secret", 1);
  setenv("NOTIFY_TEST_SECRET", "s3cret", 1);
  auto c = ParseConfig(kConfig, "n.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->providers.size(), 3u);
  EXPECT_EQ(c->providers[0].url, "https://hooks.slack.test/T/B/secret");
  EXPECT_EQ(c->providers[1].secret, "s3cret");
  EXPECT_EQ(c->providers[2].to, std::vector<std::string>{"ops@example.com"});
  EXPECT_EQ(c->dedupe_window, std::chrono::minutes(5));
  ASSERT_EQ(c->subscriptions.size(), 1u);
  EXPECT_EQ(c->subscriptions[0].rate_count, 10);
  EXPECT_EQ(c->subscriptions[0].rate_period, std::chrono::hours(1));
  Rendered r = RenderFor(*c, c->providers[2], RunFailed(), "", kNow);
  EXPECT_EQ(r.subject, "CI 12 broke");
  EXPECT_EQ(r.body, "Run 12 of shop/ci failed: step test exited with 1\n");
}

struct BadCase {
  std::string yaml;
  std::string want;
};

TEST(Config, BadInputNamesFileLineAndWhat) {
  setenv("NOTIFY_TEST_SECRET", "s3cret", 1);
  unsetenv("NOTIFY_TEST_UNSET");
  const std::vector<BadCase> cases = {
      {"notifications:\n  providers:\n    - {name: a, type: pager, url: http://x}\n",
       "n.yaml:3:23: provider a: unknown type \"pager\""},
      {"notifications:\n  providers:\n    - {name: a, type: slack, url: https://hooks.slack.com/x}\n",
       "n.yaml:3:35: provider a: url is a secret: give it as {env: VARIABLE} or {file: PATH}, not inline"},
      {"notifications:\n  providers:\n    - {name: a, type: webhook, url: http://x, secret: {env: NOTIFY_TEST_UNSET}}\n",
       "provider a: secret: the variable NOTIFY_TEST_UNSET is not set"},
      {"notifications:\n  providers:\n    - {name: a, type: webhook, url: http://x, secret: {env: NOTIFY_TEST_SECRET}}\n"
       "  subscriptions:\n    - {name: s, projects: [p], triggers: [run-exploded], provider: a}\n",
       "n.yaml:5:43: subscription s: unknown trigger \"run-exploded\""},
      {"notifications:\n  subscriptions:\n    - {name: s, projects: [p], triggers: [run-failed], provider: nope}\n",
       "n.yaml:3:66: subscription s: no provider named \"nope\""},
      {"notifications:\n  templates:\n    run-failed:\n      body: \"{{ .bogus }}\"\n",
       "n.yaml:4:13: template: unknown field .bogus"},
      {"notifications:\n  defaults: {rateLimit: lots}\n", "n.yaml:2:25: rateLimit \"lots\": expected COUNT/PERIOD"},
      {"notifications:\n  colour: red\n", "n.yaml:2:3: unknown key \"colour\" in notifications"},
  };
  for (const auto& c : cases) {
    auto got = ParseConfig(c.yaml, "n.yaml");
    ASSERT_FALSE(got.ok()) << c.yaml;
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(got.status().message(), HasSubstr(c.want)) << c.yaml;
    EXPECT_THAT(got.status().message(), ::testing::Not(HasSubstr("s3cret")));
  }
}

TEST(Render, SlackPayloadEscapesMrkdwn) {
  Config c = *ParseConfig("", "n.yaml");
  Provider slack{.name = "ops", .type = ProviderType::kSlack, .url = "https://x"};
  Event e = RunFailed();
  e.message = "a <b> & c";
  Rendered r = RenderFor(c, slack, e, "https://g.example", kNow);
  EXPECT_EQ(r.body,
            R"({"text":"Run 12 of shop/ci failed","blocks":[{"type":"section","text":{"type":"mrkdwn","text":)"
            R"("*Run 12 of shop/ci failed*\nRun 12 of shop/ci failed: a &lt;b&gt; &amp; c\nhttps://g.example/runs/12"}},)"
            R"({"type":"context","elements":[{"type":"mrkdwn","text":"error · run-failed · shop"}]}]})");
}

TEST(Render, TeamsPayloadIsAnAdaptiveCardMessage) {
  Config c = *ParseConfig("", "n.yaml");
  Provider teams{.name = "t", .type = ProviderType::kTeams, .url = "https://x"};
  Event e{.id = "release-4-prod-eu-healthy", .trigger = Trigger::kReleaseDeployed, .project = "shop", .app = "web",
          .environment = "prod", .cluster = "eu", .release = 4};
  Rendered r = RenderFor(c, teams, e, "https://g.example", kNow);
  EXPECT_EQ(
      r.body,
      R"({"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,)"
      R"("content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4",)"
      R"("body":[{"type":"TextBlock","text":"web release 4 deployed to prod","weight":"Bolder","size":"Medium",)"
      R"("wrap":true,"color":"Good"},{"type":"TextBlock","text":"Release 4 of web is healthy in prod (eu).\n)"
      R"(https://g.example/apps/web/releases","wrap":true}],"actions":[{"type":"Action.OpenUrl","title":"Open in Gantry",)"
      R"("url":"https://g.example/apps/web/releases"}]}}]})");
}

TEST(Render, WebhookPayloadCarriesTheEventIdAndIsSigned) {
  Config c = *ParseConfig("", "n.yaml");
  Provider hook{.name = "h", .type = ProviderType::kWebhook, .url = "https://x", .secret = "key"};
  Rendered r = RenderFor(c, hook, RunFailed(), "https://g.example", kNow);
  EXPECT_EQ(r.body,
            R"({"id":"run-12-failed","trigger":"run-failed","severity":"error","timestamp":"2026-12-06T18:00:00Z",)"
            R"("project":"shop","app":"shop/ci","environment":"","cluster":"","run":12,"release":null,)"
            R"("message":"step test exited with 1","title":"Run 12 of shop/ci failed",)"
            R"("text":"Run 12 of shop/ci failed: step test exited with 1\nhttps://g.example/runs/12",)"
            R"("links":{"url":"https://g.example/","run_url":"https://g.example/runs/12"}})");
  // RFC 4231 test case 2.
  EXPECT_EQ(Signature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Render, EmailSubjectStaysOneLine) {
  Config c = *ParseConfig("notifications:\n  templates:\n    run-failed: {title: \"{{ .message }}\"}\n", "n.yaml");
  Provider mail{.name = "m", .type = ProviderType::kEmail};
  Event e = RunFailed();
  e.message = "x\r\nBcc: victim@example.com";
  EXPECT_EQ(RenderFor(c, mail, e, "", kNow).subject, "x  Bcc: victim@example.com");
}

}  // namespace
}  // namespace gantry::notify
