// Triggers, templates, the config and rendering: values only, no I/O but reading secrets.

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "base/duration.h"
#include "notify/notify.h"
#include "value/value.h"
#include "value/position.h"

namespace gantry::notify {
namespace {

using value::Value;

constexpr std::array<std::pair<Trigger, std::string_view>, 9> kTriggers = {{
    {Trigger::kRunFailed, "run-failed"},
    {Trigger::kRunSucceeded, "run-succeeded"},
    {Trigger::kReleaseDeployed, "release-deployed"},
    {Trigger::kDeployFailed, "deploy-failed"},
    {Trigger::kHealthDegraded, "health-degraded"},
    {Trigger::kHealthRecovered, "health-recovered"},
    {Trigger::kApprovalNeeded, "approval-needed"},
    {Trigger::kDriftDetected, "drift-detected"},
    {Trigger::kSyncWindowBlocked, "sync-window-blocked"},
}};

// The defaults: title, body.
struct DefaultTemplate {
  Trigger trigger;
  std::string_view title, body;
};
constexpr std::array<DefaultTemplate, 9> kDefaults = {{
    {Trigger::kRunFailed, "Run {{ .run }} of {{ .app }} failed",
     "Run {{ .run }} of {{ .app }} failed: {{ .message }}\n{{ .run_url }}"},
    {Trigger::kRunSucceeded, "Run {{ .run }} of {{ .app }} succeeded",
     "Run {{ .run }} of {{ .app }} succeeded.\n{{ .run_url }}"},
    {Trigger::kReleaseDeployed, "{{ .app }} release {{ .release }} deployed to {{ .environment }}",
     "Release {{ .release }} of {{ .app }} is healthy in {{ .environment }} ({{ .cluster }}).\n{{ .release_url }}"},
    {Trigger::kDeployFailed, "{{ .app }} deploy to {{ .environment }} failed",
     "Release {{ .release }} of {{ .app }} failed in {{ .environment }} ({{ .cluster }}): {{ .message }}\n"
     "{{ .release_url }}"},
    {Trigger::kHealthDegraded, "{{ .app }} is degraded in {{ .environment }}",
     "{{ .app }} is degraded in {{ .environment }} ({{ .cluster }}): {{ .message }}\n{{ .app_url }}"},
    {Trigger::kHealthRecovered, "{{ .app }} recovered in {{ .environment }}",
     "{{ .app }} is healthy again in {{ .environment }} ({{ .cluster }}).\n{{ .app_url }}"},
    {Trigger::kApprovalNeeded, "{{ .app }} waits for approval",
     "{{ .app }} waits for approval{{ .environment_suffix }}: {{ .message }}\n{{ .approval_url }}"},
    {Trigger::kDriftDetected, "{{ .app }} drifted in {{ .environment }}",
     "{{ .app }} is OutOfSync in {{ .environment }} ({{ .cluster }}) after having been Synced.\n{{ .app_url }}"},
    {Trigger::kSyncWindowBlocked, "{{ .app }} deploy to {{ .environment }} blocked by a sync window",
     "Release {{ .release }} of {{ .app }} was not deployed to {{ .environment }}: {{ .message }}\n"
     "{{ .release_url }}"},
}};

constexpr std::array<std::string_view, 17> kFieldNames = {
    "event_id", "trigger", "severity", "project", "app", "environment", "environment_suffix", "cluster", "run",
    "release", "message", "url", "run_url", "release_url", "app_url", "approval_url", "title"};

Status Bad(const Value& at, std::string message) {
  return InvalidArgumentError("{}{}", value::PositionPrefix(at), message);
}

Result<std::string> String(const Value& v, std::string_view what) {
  if (!v.IsString()) return Bad(v, fmt::format("{} must be a string, not {}", what, value::TypeName(v)));
  return std::string(v.AsString());
}

Result<std::vector<std::string>> Strings(const Value& v, std::string_view what) {
  std::vector<std::string> out;
  if (v.IsString()) {
    out.emplace_back(v.AsString());
    return out;
  }
  if (!v.IsSeq()) return Bad(v, fmt::format("{} must be a list of strings", what));
  for (const Value& item : v.items()) {
    GANTRY_ASSIGN_OR_RETURN(std::string s, String(item, what));
    out.push_back(std::move(s));
  }
  return out;
}

Status OnlyKeys(const Value& map, std::string_view what, std::initializer_list<std::string_view> keys) {
  if (!map.IsMap()) return Bad(map, fmt::format("{} must be a map", what));
  for (const auto& e : map.entries()) {
    if (std::find(keys.begin(), keys.end(), e.key.AsString()) == keys.end()) {
      std::string known;
      for (auto k : keys) known += (known.empty() ? "" : ", ") + std::string(k);
      return Bad(e.key, fmt::format("unknown key {:?} in {} (known: {})", e.key.AsString(), what, known));
    }
  }
  return OkStatus();
}

Result<std::chrono::seconds> Seconds(const Value& v, std::string_view what) {
  GANTRY_ASSIGN_OR_RETURN(std::string s, String(v, what));
  auto d = ParseDuration(s);
  if (!d.ok() || *d <= std::chrono::nanoseconds(0)) {
    return Bad(v, fmt::format("{} {:?}: expected a positive duration such as 10m", what, s));
  }
  return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

// A secret: {env: VAR} or {file: PATH}; an inline string only when `inline_ok` (not a secret then).
Result<std::string> Secret(const Value& v, std::string_view what, bool inline_ok) {
  if (v.IsString()) {
    if (inline_ok) return std::string(v.AsString());
    return Bad(v, fmt::format("{} is a secret: give it as {{env: VARIABLE}} or {{file: PATH}}, not inline", what));
  }
  GANTRY_RETURN_IF_ERROR(OnlyKeys(v, what, {"env", "file"}));
  if (v.size() != 1) return Bad(v, fmt::format("{}: give exactly one of env and file", what));
  if (const Value* env = v.Get("env")) {
    GANTRY_ASSIGN_OR_RETURN(std::string name, String(*env, what));
    const char* got = std::getenv(name.c_str());
    if (got == nullptr || *got == '\0') return Bad(*env, fmt::format("{}: the variable {} is not set", what, name));
    return std::string(got);
  }
  const Value& file = *v.Get("file");
  GANTRY_ASSIGN_OR_RETURN(std::string path, String(file, what));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Bad(file, fmt::format("{}: cannot read {}", what, path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string out = ss.str();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty()) return Bad(file, fmt::format("{}: {} is empty", what, path));
  return out;
}

Result<Provider> ParseProvider(const Value& v) {
  GANTRY_RETURN_IF_ERROR(OnlyKeys(v, "a provider", {"name", "type", "url", "secret", "smtp", "from", "to", "username",
                                                    "password", "starttls", "caFile"}));
  Provider p;
  const Value* name = v.Get("name");
  if (name == nullptr) return Bad(v, "a provider needs a name");
  GANTRY_ASSIGN_OR_RETURN(p.name, String(*name, "name"));
  const Value* type = v.Get("type");
  if (type == nullptr) return Bad(v, fmt::format("provider {}: needs a type (slack, teams, webhook or email)", p.name));
  GANTRY_ASSIGN_OR_RETURN(std::string t, String(*type, "type"));
  const std::string what = "provider " + p.name;
  if (t == "slack") {
    p.type = ProviderType::kSlack;
  } else if (t == "teams") {
    p.type = ProviderType::kTeams;
  } else if (t == "webhook") {
    p.type = ProviderType::kWebhook;
  } else if (t == "email") {
    p.type = ProviderType::kEmail;
  } else {
    return Bad(*type, fmt::format("{}: unknown type {:?} (slack, teams, webhook or email)", what, t));
  }
  if (const Value* ca = v.Get("caFile")) {
    GANTRY_ASSIGN_OR_RETURN(p.ca_file, String(*ca, "caFile"));
  }
  if (p.type == ProviderType::kEmail) {
    for (std::string_view key : {"url", "secret"}) {
      if (const Value* k = v.Get(key)) return Bad(*k, fmt::format("{}: {} is not for email (smtp, from, to)", what, key));
    }
    const Value* smtp = v.Get("smtp");
    const Value* from = v.Get("from");
    const Value* to = v.Get("to");
    if (smtp == nullptr || from == nullptr || to == nullptr) return Bad(v, what + ": email needs smtp, from and to");
    GANTRY_ASSIGN_OR_RETURN(p.url, String(*smtp, "smtp"));
    if (!p.url.starts_with("smtp://") && !p.url.starts_with("smtps://")) {
      return Bad(*smtp, fmt::format("{}: smtp {:?}: expected smtp://HOST[:PORT] or smtps://HOST[:PORT]", what, p.url));
    }
    GANTRY_ASSIGN_OR_RETURN(p.from, String(*from, "from"));
    GANTRY_ASSIGN_OR_RETURN(p.to, Strings(*to, "to"));
    for (const std::string& addr : p.to) {
      if (addr.find('@') == std::string::npos || addr.find_first_of("\r\n<>,") != std::string::npos) {
        return Bad(*to, fmt::format("{}: {:?} is not an email address", what, addr));
      }
    }
    if (p.from.find('@') == std::string::npos || p.from.find_first_of("\r\n<>,") != std::string::npos) {
      return Bad(*from, fmt::format("{}: from {:?} is not an email address", what, p.from));
    }
    if (const Value* u = v.Get("username")) {
    GANTRY_ASSIGN_OR_RETURN(p.username, String(*u, "username"));
  }
    if (const Value* pw = v.Get("password")) {
    GANTRY_ASSIGN_OR_RETURN(p.password, Secret(*pw, what + ": password", false));
  }
    if (p.username.empty() != p.password.empty()) return Bad(v, what + ": username and password go together");
    if (const Value* s = v.Get("starttls")) {
      GANTRY_ASSIGN_OR_RETURN(std::string mode, String(*s, "starttls"));
      if (mode != "required" && mode != "optional") {
        return Bad(*s, fmt::format("{}: starttls {:?}: expected optional (use it when offered) or required", what, mode));
      }
      p.starttls_required = mode == "required";
    }
    return p;
  }
  for (std::string_view key : {"smtp", "from", "to", "username", "password", "starttls"}) {
    if (const Value* k = v.Get(key)) return Bad(*k, fmt::format("{}: {} is for email providers only", what, key));
  }
  const Value* url = v.Get("url");
  if (url == nullptr) return Bad(v, what + ": needs a url");
  // Slack's and Teams' webhook URLs are their credential; a generic webhook's URL is not (its secret is).
  GANTRY_ASSIGN_OR_RETURN(p.url, Secret(*url, what + ": url", p.type == ProviderType::kWebhook));
  if (!p.url.starts_with("https://") && !p.url.starts_with("http://")) {
    return Bad(*url, what + ": url: expected an http:// or https:// URL");
  }
  if (p.type == ProviderType::kWebhook) {
    const Value* secret = v.Get("secret");
    if (secret == nullptr) return Bad(v, what + ": a webhook needs a secret (its payloads are signed)");
    GANTRY_ASSIGN_OR_RETURN(p.secret, Secret(*secret, what + ": secret", false));
  } else if (const Value* secret = v.Get("secret")) {
    return Bad(*secret, what + ": secret is for webhook providers only");
  }
  return p;
}

// "30/10m": count per period.
Status ParseRate(const Value& v, int& count, std::chrono::seconds& period) {
  GANTRY_ASSIGN_OR_RETURN(std::string s, String(v, "rateLimit"));
  const size_t slash = s.find('/');
  int n = 0;
  if (slash != std::string::npos) {
    auto [ptr, err] = std::from_chars(s.data(), s.data() + slash, n);
    auto d = ParseDuration(s.substr(slash + 1));
    if (err == std::errc() && ptr == s.data() + slash && n >= 1 && d.ok() && *d > std::chrono::nanoseconds(0)) {
      count = n;
      period = std::chrono::duration_cast<std::chrono::seconds>(*d);
      return OkStatus();
    }
  }
  return Bad(v, fmt::format("rateLimit {:?}: expected COUNT/PERIOD such as 30/10m", s));
}

}  // namespace

std::string_view Name(Trigger trigger) {
  for (const auto& [t, name] : kTriggers) {
    if (t == trigger) return name;
  }
  return "unknown";
}

std::optional<Trigger> ParseTrigger(std::string_view name) {
  for (const auto& [t, n] : kTriggers) {
    if (n == name) return t;
  }
  return std::nullopt;
}

std::string_view Name(Severity severity) {
  switch (severity) {
    case Severity::kInfo: return "info";
    case Severity::kWarning: return "warning";
    case Severity::kError: return "error";
  }
  return "info";
}

Severity SeverityOf(Trigger trigger) {
  switch (trigger) {
    case Trigger::kRunFailed:
    case Trigger::kDeployFailed: return Severity::kError;
    case Trigger::kHealthDegraded:
    case Trigger::kDriftDetected:
    case Trigger::kSyncWindowBlocked:
    case Trigger::kApprovalNeeded: return Severity::kWarning;
    default: return Severity::kInfo;
  }
}

std::map<std::string, std::string> Fields(const Event& e, std::string_view public_url) {
  std::map<std::string, std::string> f;
  const std::string base(public_url);
  f["event_id"] = e.id;
  f["trigger"] = Name(e.trigger);
  f["severity"] = Name(SeverityOf(e.trigger));
  f["project"] = e.project;
  f["app"] = e.app;
  f["environment"] = e.environment;
  f["environment_suffix"] = e.environment.empty() ? "" : " in " + e.environment;
  f["cluster"] = e.cluster;
  f["run"] = e.run ? std::to_string(e.run) : "";
  f["release"] = e.release ? std::to_string(e.release) : "";
  f["message"] = e.message;
  f["url"] = base.empty() ? "" : base + "/";
  f["run_url"] = base.empty() || e.run == 0 ? "" : fmt::format("{}/runs/{}", base, e.run);
  // A run's "app" is its pipeline, which has no app page.
  const bool run_only = e.run != 0 && e.release == 0 && e.environment.empty();
  const bool app_links = !base.empty() && !e.app.empty() && !run_only;
  f["release_url"] = app_links ? fmt::format("{}/apps/{}/releases", base, e.app) : "";
  f["app_url"] = app_links ? fmt::format("{}/apps/{}", base, e.app) : "";
  f["approval_url"] = e.run != 0 && e.release == 0 ? f["run_url"] : f["release_url"];
  f["title"] = "";
  return f;
}

Result<Template> ParseTemplate(std::string_view text, std::string_view where) {
  Template t;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find("{{", at);
    if (open == std::string_view::npos) {
      t.parts.push_back({false, std::string(text.substr(at))});
      break;
    }
    if (open > at) t.parts.push_back({false, std::string(text.substr(at, open - at))});
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      return InvalidArgumentError("{}: template: {{{{ at character {} is not closed by }}}}", where, open + 1);
    }
    std::string_view inside = text.substr(open + 2, close - open - 2);
    while (!inside.empty() && inside.front() == ' ') inside.remove_prefix(1);
    while (!inside.empty() && inside.back() == ' ') inside.remove_suffix(1);
    if (!inside.starts_with('.') || inside.size() < 2) {
      return InvalidArgumentError("{}: template: {{{{ {} }}}} at character {}: expected {{{{ .field }}}}", where, inside,
                                  open + 1);
    }
    const std::string_view name = inside.substr(1);
    if (std::find(kFieldNames.begin(), kFieldNames.end(), name) == kFieldNames.end()) {
      std::string known;
      for (auto k : kFieldNames) known += (known.empty() ? "" : ", ") + std::string(k);
      return InvalidArgumentError("{}: template: unknown field .{} (known: {})", where, name, known);
    }
    t.parts.push_back({true, std::string(name)});
    at = close + 2;
  }
  return t;
}

std::string Render(const Template& t, const std::map<std::string, std::string>& fields,
                   std::string (*escape)(std::string_view)) {
  std::string out;
  for (const auto& part : t.parts) {
    if (!part.field) {
      out += part.text;
      continue;
    }
    auto it = fields.find(part.text);
    const std::string& v = it == fields.end() ? part.text : it->second;
    out += escape == nullptr ? v : escape(v);
  }
  return out;
}

const Provider* Config::FindProvider(std::string_view name) const {
  for (const Provider& p : providers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<Config> ParseConfig(std::string_view text, std::string_view filename) {
  GANTRY_ASSIGN_OR_RETURN(std::vector<Value> docs, value::ParseYaml(text, filename));
  Config c;
  for (const auto& d : kDefaults) {
    c.templates[d.trigger] = {*ParseTemplate(d.title, "built-in"), *ParseTemplate(d.body, "built-in")};
  }
  if (docs.empty()) return c;
  if (docs.size() > 1) return Bad(docs[1], "one YAML document expected");
  const Value& root = docs[0];
  if (!root.IsMap()) return Bad(root, "expected a map with a notifications: key");
  const Value* n = root.Get("notifications");
  if (n == nullptr || n->IsNull()) return c;
  GANTRY_RETURN_IF_ERROR(OnlyKeys(*n, "notifications", {"defaults", "providers", "templates", "subscriptions"}));
  int rate_count = 30;
  std::chrono::seconds rate_period{600};
  if (const Value* d = n->Get("defaults")) {
    GANTRY_RETURN_IF_ERROR(OnlyKeys(*d, "defaults", {"dedupe", "deadline", "rateLimit"}));
    if (const Value* v = d->Get("dedupe")) {
    GANTRY_ASSIGN_OR_RETURN(c.dedupe_window, Seconds(*v, "dedupe"));
  }
    if (const Value* v = d->Get("deadline")) {
    GANTRY_ASSIGN_OR_RETURN(c.deadline, Seconds(*v, "deadline"));
  }
    if (const Value* v = d->Get("rateLimit")) GANTRY_RETURN_IF_ERROR(ParseRate(*v, rate_count, rate_period));
  }
  if (const Value* ps = n->Get("providers")) {
    if (!ps->IsSeq()) return Bad(*ps, "providers must be a list");
    for (const Value& v : ps->items()) {
      GANTRY_ASSIGN_OR_RETURN(Provider p, ParseProvider(v));
      if (c.FindProvider(p.name) != nullptr) return Bad(v, fmt::format("provider {} is defined twice", p.name));
      c.providers.push_back(std::move(p));
    }
  }
  if (const Value* ts = n->Get("templates")) {
    if (!ts->IsMap()) return Bad(*ts, "templates must be a map of trigger → {title, body}");
    for (const auto& e : ts->entries()) {
      auto trigger = ParseTrigger(e.key.AsString());
      if (!trigger) return Bad(e.key, fmt::format("templates: unknown trigger {:?}", e.key.AsString()));
      GANTRY_RETURN_IF_ERROR(OnlyKeys(e.value, "a template", {"title", "body"}));
      for (std::string_view part : {"title", "body"}) {
        const Value* v = e.value.Get(part);
        if (v == nullptr) continue;
        GANTRY_ASSIGN_OR_RETURN(std::string s, String(*v, part));
        GANTRY_ASSIGN_OR_RETURN(Template t, ParseTemplate(s, value::PositionOf(*v, part)));
        (part == "title" ? c.templates[*trigger].first : c.templates[*trigger].second) = std::move(t);
      }
    }
  }
  if (const Value* ss = n->Get("subscriptions")) {
    if (!ss->IsSeq()) return Bad(*ss, "subscriptions must be a list");
    for (const Value& v : ss->items()) {
      GANTRY_RETURN_IF_ERROR(
          OnlyKeys(v, "a subscription", {"name", "projects", "triggers", "provider", "environments", "rateLimit"}));
      Subscription s{.rate_count = rate_count, .rate_period = rate_period};
      const Value* name = v.Get("name");
      const Value* projects = v.Get("projects");
      const Value* triggers = v.Get("triggers");
      const Value* provider = v.Get("provider");
      if (name == nullptr || projects == nullptr || triggers == nullptr || provider == nullptr) {
        return Bad(v, "a subscription needs name, projects, triggers and provider");
      }
      GANTRY_ASSIGN_OR_RETURN(s.name, String(*name, "name"));
      for (const Subscription& other : c.subscriptions) {
        if (other.name == s.name) return Bad(*name, fmt::format("subscription {} is defined twice", s.name));
      }
      GANTRY_ASSIGN_OR_RETURN(s.projects, Strings(*projects, "projects"));
      GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> names, Strings(*triggers, "triggers"));
      for (size_t i = 0; i < names.size(); ++i) {
        auto t = ParseTrigger(names[i]);
        if (!t || *t == Trigger::kHealthRecovered) {
          std::string known;
          for (const auto& [tr, tn] : kTriggers) {
            if (tr != Trigger::kHealthRecovered) known += (known.empty() ? "" : ", ") + std::string(tn);
          }
          const Value* at = triggers->IsSeq() ? triggers->At(i) : triggers;
          return Bad(*at, fmt::format("subscription {}: unknown trigger {:?} (known: {})", s.name, names[i], known));
        }
        s.triggers.push_back(*t);
      }
      GANTRY_ASSIGN_OR_RETURN(s.provider, String(*provider, "provider"));
      if (c.FindProvider(s.provider) == nullptr) {
        return Bad(*provider, fmt::format("subscription {}: no provider named {:?}", s.name, s.provider));
      }
      if (const Value* envs = v.Get("environments")) {
    GANTRY_ASSIGN_OR_RETURN(s.environments, Strings(*envs, "environments"));
  }
      if (const Value* r = v.Get("rateLimit")) GANTRY_RETURN_IF_ERROR(ParseRate(*r, s.rate_count, s.rate_period));
      c.subscriptions.push_back(std::move(s));
    }
  }
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("{}: cannot read the notifications config", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

namespace {

// Slack mrkdwn: &, < and > are control characters.
std::string SlackEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

// Teams' TextBlocks read Markdown: a value must not add emphasis, links or lists.
std::string MarkdownEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\*_[]()#`>~").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// An email Subject stays one header line.
std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : s) out += (c == '\r' || c == '\n') ? ' ' : c;
  return out;
}

}  // namespace

Rendered RenderFor(const Config& config, const Provider& provider, const Event& event, std::string_view public_url,
                   std::chrono::system_clock::time_point now) {
  auto fields = Fields(event, public_url);
  const auto& [title_t, body_t] = config.templates.at(event.trigger);
  const std::string title = OneLine(Render(title_t, fields));
  fields["title"] = title;
  const std::string link = fields["approval_url"].empty() ? fields["app_url"] : fields["approval_url"];
  Rendered out{.subject = title};
  switch (provider.type) {
    case ProviderType::kSlack: {
      Value v = Value::Map();
      v.Set("text", SlackEscape(title));
      Value blocks = Value::Seq();
      Value header = Value::Map();
      header.Set("type", "section");
      Value text = Value::Map();
      text.Set("type", "mrkdwn");
      text.Set("text", "*" + SlackEscape(title) + "*\n" + Render(body_t, fields, SlackEscape));
      header.Set("text", text);
      blocks.Append(header);
      Value context = Value::Map();
      context.Set("type", "context");
      Value elements = Value::Seq();
      Value el = Value::Map();
      el.Set("type", "mrkdwn");
      el.Set("text", fmt::format("{} · {} · {}", Name(SeverityOf(event.trigger)), Name(event.trigger),
                                 SlackEscape(event.project.empty() ? "-" : event.project)));
      elements.Append(el);
      context.Set("elements", elements);
      blocks.Append(context);
      v.Set("blocks", blocks);
      out.body = value::ToJson(v);
      break;
    }
    case ProviderType::kTeams: {
      Value card = Value::Map();
      card.Set("$schema", "http://adaptivecards.io/schemas/adaptive-card.json");
      card.Set("type", "AdaptiveCard");
      card.Set("version", "1.4");
      Value body = Value::Seq();
      Value head = Value::Map();
      head.Set("type", "TextBlock");
      head.Set("text", MarkdownEscape(title));
      head.Set("weight", "Bolder");
      head.Set("size", "Medium");
      head.Set("wrap", true);
      head.Set("color", SeverityOf(event.trigger) == Severity::kError     ? "Attention"
                        : SeverityOf(event.trigger) == Severity::kWarning ? "Warning"
                                                                          : "Good");
      body.Append(head);
      Value text = Value::Map();
      text.Set("type", "TextBlock");
      text.Set("text", Render(body_t, fields, MarkdownEscape));
      text.Set("wrap", true);
      body.Append(text);
      card.Set("body", body);
      if (!link.empty()) {
        Value actions = Value::Seq();
        Value open = Value::Map();
        open.Set("type", "Action.OpenUrl");
        open.Set("title", "Open in Gantry");
        open.Set("url", link);
        actions.Append(open);
        card.Set("actions", actions);
      }
      Value attachment = Value::Map();
      attachment.Set("contentType", "application/vnd.microsoft.card.adaptive");
      attachment.Set("contentUrl", nullptr);
      attachment.Set("content", card);
      Value attachments = Value::Seq();
      attachments.Append(attachment);
      Value v = Value::Map();
      v.Set("type", "message");
      v.Set("attachments", attachments);
      out.body = value::ToJson(v);
      break;
    }
    case ProviderType::kWebhook: {
      Value v = Value::Map();
      v.Set("id", event.id);
      v.Set("trigger", Name(event.trigger));
      v.Set("severity", Name(SeverityOf(event.trigger)));
      v.Set("timestamp", fmt::format("{:%FT%TZ}", std::chrono::floor<std::chrono::seconds>(now)));
      v.Set("project", event.project);
      v.Set("app", event.app);
      v.Set("environment", event.environment);
      v.Set("cluster", event.cluster);
      v.Set("run", event.run ? Value(event.run) : Value());
      v.Set("release", event.release ? Value(event.release) : Value());
      v.Set("message", event.message);
      v.Set("title", title);
      v.Set("text", Render(body_t, fields));
      Value links = Value::Map();
      for (const char* k : {"url", "run_url", "release_url", "app_url"}) {
        if (!fields[k].empty()) links.Set(k, fields[k]);
      }
      v.Set("links", links);
      out.body = value::ToJson(v);
      break;
    }
    case ProviderType::kEmail:
      out.body = Render(body_t, fields);
      break;
  }
  return out;
}

}  // namespace gantry::notify
