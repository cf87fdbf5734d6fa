#include "cli/server_client.h"

#include <sys/stat.h>

#include <cstdlib>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "server/front.h"

namespace gantry::cli {
namespace fs = std::filesystem;

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

std::string QueryEscape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                       c == '.' || c == '~' || c == '*';
    out += plain ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace gantry::cli
