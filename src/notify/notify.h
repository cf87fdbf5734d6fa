#pragma once
// notify: telling people what happened. An Event (a run failed, a release reached an environment,
// a pull app degraded, ...) is matched against the subscriptions of the notifications config; each
// match is rendered for its provider (Slack incoming webhook, Microsoft Teams workflow webhook, a
// generic HMAC-signed webhook, email over SMTP) and put into the store's durable outbox
// (store::Notification). The Notifier's own thread then delivers what is due, retrying with
// exponential backoff and jitter until the config's deadline, after which the notification is
// recorded failed with the last reason (HTTP status and body excerpt, or the SMTP reply).
//
// Before the outbox, two filters, per subscription:
//   dedupe      an event whose key (trigger, app, environment, cluster) was notified within the
//               dedupe window sends nothing (the same app degraded again); a recovery of a health
//               alert sends once, and only when the alert was sent, and ends the window;
//   rate limit  at most N notifications per period; beyond, the notification is recorded failed
//               ("rate limited") without an attempt, so `gantry notifications list --failed` shows it.
// The dedupe memory is the process's: a restart forgets it (the outbox itself survives).
//
// Config (YAML; docs/notifications.md):
//   notifications:
//     defaults: {dedupe: 10m, deadline: 1h, rateLimit: 30/10m}
//     providers:
//       - {name: ops, type: slack, url: {env: SLACK_URL}}
//       - {name: team, type: teams, url: {file: /run/secrets/teams-url}}
//       - {name: hook, type: webhook, url: https://..., secret: {env: HOOK_SECRET}}
//       - {name: mail, type: email, smtp: smtp://mail:587, from: gantry@x, to: [ops@x],
//          username: gantry, password: {env: SMTP_PASSWORD}, starttls: required}
//     templates:
//       run-failed: {title: "...", body: "Run {{ .run }} of {{ .app }} failed: {{ .message }}"}
//     subscriptions:
//       - {name: shop-ops, projects: [shop], triggers: [run-failed, deploy-failed], provider: ops,
//          environments: [prod]}
// Secret values (webhook URLs of Slack and Teams, HMAC secrets, SMTP passwords) are read from an
// environment variable or a file, are never printed, and an inline secret is refused. Every config
// error names file:line:column.
//
// Thread-safety: Config and the functions are values; a Notifier is safe to use from any thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/status.h"
#include "http/metrics.h"
#include "store/store.h"

namespace gantry::notify {

enum class Trigger {
  kRunFailed,
  kRunSucceeded,
  kReleaseDeployed,
  kDeployFailed,
  kHealthDegraded,
  kHealthRecovered,  // not subscribed to: subscribers of health-degraded get it (once per alert)
  kApprovalNeeded,
  kDriftDetected,
  kSyncWindowBlocked,
};
std::string_view Name(Trigger trigger);  // "run-failed", ...
std::optional<Trigger> ParseTrigger(std::string_view name);

enum class Severity { kInfo, kWarning, kError };
std::string_view Name(Severity severity);  // "info", "warning", "error"
Severity SeverityOf(Trigger trigger);

// What happened. `id` is unique and stable per occurrence (receivers dedupe on it); `key` names
// what the alert is about for the dedupe window ("" : trigger, app, environment, cluster, run, release).
struct Event {
  std::string id;
  Trigger trigger = Trigger::kRunFailed;
  std::string project;
  std::string app;
  std::string environment;
  std::string cluster;
  int64_t run = 0;      // 0: none
  int64_t release = 0;  // 0: none
  std::string message;
  std::string key;
};

// The fields a template may use ({{ .name }}), with their values for `event`; links come from
// `public_url` (the server's --public-url; "" leaves them empty).
std::map<std::string, std::string> Fields(const Event& event, std::string_view public_url);

// A parsed `{{ .field }}` template: text, and fields substituted after escaping by the provider.
struct Template {
  struct Part {
    bool field = false;
    std::string text;  // the literal, or the field's name
  };
  std::vector<Part> parts;
};
// InvalidArgument "WHERE: ..." for an unclosed {{, anything but `.name` inside, or an unknown field.
Result<Template> ParseTemplate(std::string_view text, std::string_view where);
// `escape` is applied to each field's value (nullptr: none).
std::string Render(const Template& t, const std::map<std::string, std::string>& fields,
                   std::string (*escape)(std::string_view) = nullptr);

enum class ProviderType { kSlack, kTeams, kWebhook, kEmail };

struct Provider {
  std::string name;
  ProviderType type = ProviderType::kWebhook;
  std::string url;     // slack, teams, webhook; smtp:// or smtps:// for email
  std::string secret;  // webhook: the HMAC key (required)
  // email
  std::string from;
  std::vector<std::string> to;
  std::string username, password;
  bool starttls_required = false;  // smtp://: STARTTLS when offered, or (true) refuse without it
  std::string ca_file;             // PEM bundle for https and SMTP TLS ("" : the system's)
};

struct Subscription {
  std::string name;
  std::vector<std::string> projects;  // "*" : every project
  std::vector<Trigger> triggers;
  std::string provider;
  std::vector<std::string> environments;  // empty: any; otherwise the event's must be listed
  int rate_count = 30;
  std::chrono::seconds rate_period{600};
};

struct Config {
  std::vector<Provider> providers;
  std::vector<Subscription> subscriptions;
  std::map<Trigger, std::pair<Template, Template>> templates;  // title, body (defaults filled in)
  std::chrono::seconds dedupe_window{600};
  std::chrono::seconds deadline{3600};
  const Provider* FindProvider(std::string_view name) const;
};

// Reads the `notifications:` section of the YAML `text` (a file named `filename`). An absent
// section is an empty Config. InvalidArgument "FILE:LINE:COLUMN: ..." for anything wrong: an
// unknown key, type, trigger or provider, a bad template or duration, a missing or inline secret,
// an unset variable or unreadable file (named, never its content).
Result<Config> ParseConfig(std::string_view text, std::string_view filename);
// Reads and parses the file.
Result<Config> LoadConfig(const std::string& path);

// What goes into the outbox for one subscription's match: subject and body as the provider sends
// them (Slack/Teams/webhook: the JSON body; email: the text).
struct Rendered {
  std::string subject;
  std::string body;
};
Rendered RenderFor(const Config& config, const Provider& provider, const Event& event, std::string_view public_url,
                   std::chrono::system_clock::time_point now);

// The outcome of one delivery attempt: OK, or a failure whose message is the reason
// ("HTTP 500: body excerpt", "SMTP 550: ...", "connect: ..."); retryable() says whether to try again.
struct Attempt {
  Status status;
  bool retryable = true;
};
Attempt Deliver(const Provider& provider, const store::Notification& n, std::chrono::seconds timeout);

// The generic webhook's signature header value: "sha256=" + hex HMAC-SHA256(secret, body).
std::string Signature(std::string_view secret, std::string_view body);

struct NotifierOptions {
  store::Store* store = nullptr;  // required; outlives the Notifier
  Config config;
  std::string public_url;
  Clock* clock = nullptr;           // nullptr: SystemClock()
  http::Registry* metrics = nullptr;  // gantry_notifications_total{provider,result}; nullptr: none
  size_t queue_size = 1000;         // events waiting for the outbox; beyond, Submit drops (counted)
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{300'000};
  std::chrono::milliseconds poll{1000};  // how often the outbox is read for due notifications
  std::chrono::seconds send_timeout{15};
  // Servers sharing a store: only the holder of the store's lease "notifications" delivers (it is
  // renewed at every poll, and taken over `lease` after its holder stops). "" : no lease, this
  // notifier delivers (one server).
  std::string lease_holder;
  std::chrono::milliseconds lease{15'000};
};

// Accepts events (Submit never blocks), puts them into the outbox and delivers from it on its own
// thread (Start .. Stop). Pending notifications in the store when it starts (a restart) are
// delivered too.
class Notifier {
 public:
  explicit Notifier(NotifierOptions options);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Queues `event`; false when the queue is full (the event is dropped and counted).
  bool Submit(Event event);
  void Start();
  void Stop();
  // Processes the queued events and delivers what is due, once, on the caller's thread (tests).
  void RunOnce();

 private:
  void Loop();
  void Accept(const Event& event);
  void DeliverDue();
  void Count(std::string_view provider, std::string_view result);

  const NotifierOptions options_;
  Clock& clock_;
  http::Family<http::Counter>* counters_ = nullptr;
  Mutex mu_;
  CondVar cv_;
  std::vector<Event> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  // Owned by the delivery thread (or RunOnce's caller): dedupe keys and each subscription's recent sends.
  std::map<std::string, std::chrono::system_clock::time_point> sent_;
  std::map<std::string, std::vector<std::chrono::system_clock::time_point>> recent_;
  Mutex run_mu_;  // one RunOnce at a time
  std::unique_ptr<std::thread> thread_;
};

}  // namespace gantry::notify
