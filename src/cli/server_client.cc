#include "cli/server_client.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "base/percent.h"
#include "cli/exit.h"
#include "server/front.h"
#include "value/value.h"

namespace gantry::cli {
namespace fs = std::filesystem;
using value::Value;

void AddServerClientFlags(CLI::App* cmd, ServerClient& client) {
  cmd->add_option("--server", client.server, "Server URL")->envname("GANTRY_SERVER");
  cmd->add_option("--ca-file", client.ca_file, "PEM CA bundle for an https server URL (default: the system's)")
      ->envname("GANTRY_CA_FILE");
}

fs::path TokenFilePath() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg == '/') return fs::path(xdg) / "gantry" / "token";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return fs::path(home) / ".config" / "gantry" / "token";
  return {};
}

Result<std::string> ClientToken() {
  if (const char* token = std::getenv("GANTRY_TOKEN"); token != nullptr && *token != '\0') return std::string(token);
  const fs::path file = TokenFilePath();
  struct stat st;
  if (file.empty() || ::stat(file.c_str(), &st) != 0) return std::string();
  if ((st.st_mode & 077) != 0) {
    return PermissionDeniedError("{} is readable by others (mode {:o}): chmod 600 it, or set GANTRY_TOKEN", file.string(),
                                 st.st_mode & 0777);
  }
  auto text = ReadFile(file, 64 * 1024);
  if (!text.ok()) return FailedPreconditionError("read the token file: {}", text.status().message());
  std::string token = *std::move(text);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

Result<http::ClientRequest> ApiRequest(const ServerClient& client, const char* method, const std::string& path,
                                       std::string body) {
  std::string base = client.server;
  while (base.ends_with("/")) base.pop_back();
  if (base.find("://") == std::string::npos) base = "http://" + base;
  http::ClientRequest request{.method = method, .url = base + path};
  GANTRY_ASSIGN_OR_RETURN(std::string token, ClientToken());
  if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
  if (!body.empty()) {
    request.headers["content-type"] = "application/json";
    request.body = std::move(body);
  }
  return request;
}

http::Client ApiClient(const ServerClient& client) {
  return http::Client({.timeout = std::chrono::milliseconds(0), .ca_file = client.ca_file});
}

Result<std::string> CallApi(const ServerClient& client, const char* method, const std::string& path, std::string body) {
  GANTRY_ASSIGN_OR_RETURN(http::ClientRequest request, ApiRequest(client, method, path, std::move(body)));
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse response, ApiClient(client).Send(request));
  if (response.status < 200 || response.status >= 300) {
    return UnavailableError("HTTP {}: {}", response.status, server::ParseApiError(response.status, response.body).message());
  }
  return std::move(response.body);
}

namespace {

// One Server-Sent Event as read from the stream.
struct SseEvent {
  std::string id, type, data;
};

// Splits complete events off the front of `buffer` (events end with a blank line).
std::vector<SseEvent> TakeEvents(std::string& buffer) {
  std::vector<SseEvent> events;
  size_t end;
  while ((end = buffer.find("\n\n")) != std::string::npos) {
    SseEvent e;
    std::string_view block(buffer.data(), end);
    while (!block.empty()) {
      size_t nl = block.find('\n');
      std::string_view line = block.substr(0, nl);
      auto value = [&](std::string_view field) {
        std::string_view v = line.substr(field.size());
        if (v.starts_with(' ')) v.remove_prefix(1);
        return std::string(v);
      };
      if (line.starts_with("id:")) e.id = value("id:");
      if (line.starts_with("event:")) e.type = value("event:");
      if (line.starts_with("data:")) e.data += value("data:");
      if (nl == std::string_view::npos) break;
      block.remove_prefix(nl + 1);
    }
    buffer.erase(0, end + 2);
    if (!e.type.empty()) events.push_back(std::move(e));
  }
  return events;
}

}  // namespace

Status RunServerAction(const ServerClient& client, std::string_view app, std::string_view action, std::string body,
                       bool wait, std::FILE* out) {
  GANTRY_ASSIGN_OR_RETURN(std::string answer,
                          CallApi(client, "POST", fmt::format("/api/v1/apps/{}/{}", PercentEncode(app), action), std::move(body)));
  auto doc = value::ParseJson(answer, "the server's answer");
  if (!doc.ok() || doc->Get("release") == nullptr || !doc->Get("release")->IsInt()) {
    return UnavailableError("the server answered {:?}, not a started {} (is {} a Gantry server?)", answer, action, client.server);
  }
  const int64_t release = doc->Get("release")->AsInt();
  const Value* from = doc->Get("from_release");
  if (action == "rollback" && from != nullptr && from->IsInt()) {
    fmt::print(out, "rolling back {} from release {} to release {} in the server\n", app, from->AsInt(), release);
  } else {
    fmt::print(out, "release {} of {}: {} started in the server\n", release, app, action);
  }
  std::fflush(out);
  if (!wait) return OkStatus();
  const Value* last = doc->Get("last_event_id");
  std::string last_id = last != nullptr && last->IsInt() ? std::to_string(last->AsInt()) : "";
  std::string phase, message;
  int failures = 0;
  while (phase.empty()) {
    GANTRY_ASSIGN_OR_RETURN(http::ClientRequest request, ApiRequest(client, "GET", "/api/v1/events"));
    if (!last_id.empty()) request.headers["last-event-id"] = last_id;
    std::string buffer;
    auto sent = ApiClient(client).Send(request, [&](std::string_view chunk) {
      buffer.append(chunk);
      for (const SseEvent& e : TakeEvents(buffer)) {
        if (!e.id.empty()) last_id = e.id;
        if (e.type != "release" && e.type != "action") continue;
        auto data = value::ParseJson(e.data);
        if (!data.ok() || !data->IsMap()) continue;
        auto str = [&](std::string_view key) {
          const Value* v = data->Get(key);
          return v != nullptr && v->IsString() ? std::string(v->AsString()) : std::string();
        };
        const Value* rel = data->Get("release");
        if (rel == nullptr || !rel->IsInt() || rel->AsInt() != release || str("app") != app) continue;
        if (e.type == "release") {
          fmt::print(out, "==> {}/{}: {}\n", str("environment"), str("cluster"), str("state"));
          std::fflush(out);
          continue;
        }
        const std::string ended = str("action");
        if (ended != action && !(action == "deploy" && ended == "resume")) continue;
        phase = str("phase");
        message = str("message");
        return false;
      }
      return true;
    });
    if (!phase.empty()) break;
    if (sent.ok() && (sent->status < 200 || sent->status >= 300)) {
      return UnavailableError("follow release {}: HTTP {}: {}", release, sent->status,
                              server::ParseApiError(sent->status, sent->body).message());
    }
    if (++failures >= 5) {
      return UnavailableError("lost the server's events ({}); release {} goes on in the server (see the console or GET "
                              "/api/v1/apps/{}/releases)",
                              sent.ok() ? "the stream ended" : sent.status().message(), release, app);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  fmt::print(out, "\nrelease {} of {}: {}{}\n", release, app, phase, message.empty() ? "" : " (" + message + ")");
  if (phase == "succeeded") return OkStatus();
  Status outcome = FailedPreconditionError("release {} of {}: {}", release, app, phase);
  return outcome.set_reason(phase == "waiting_approval" ? kReasonBlocked : kReasonFailed);
}

}  // namespace gantry::cli
