#pragma once
// The REST API of `gantry server` as the commands that talk to it see it (runs, logs, token, role,
// audit): where the server is, which CA signed it, and the bearer token.
//
// The server's URL comes from --server or GANTRY_SERVER, its CA from --ca-file or GANTRY_CA_FILE.
// The token: GANTRY_TOKEN when set and not empty; else the token file, $XDG_CONFIG_HOME/gantry/token
// (~/.config/gantry/token without XDG_CONFIG_HOME), which `gantry login` writes and which must be
// private to its owner (0600); else none (the server answers 401).

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"
#include "http/client.h"

namespace CLI {
class App;
}

namespace gantry::cli {

struct ServerClient {
  std::string server = "http://127.0.0.1:8080";
  std::string ca_file;
};

// --server and --ca-file on `cmd`.
void AddServerClientFlags(CLI::App* cmd, ServerClient& client);

// Where the token file is ("" when neither XDG_CONFIG_HOME nor HOME is set).
std::filesystem::path TokenFilePath();
// The bearer token as in the file comment ("" for none). PermissionDenied when the token file is
// readable by others; FailedPrecondition when it cannot be read.
Result<std::string> ClientToken();

// `method` on the server's `path` ("/api/tokens?all=1") with the bearer token and, when not empty,
// a JSON `body`. No overall timeout (a followed log lasts as long as its run).
Result<http::ClientRequest> ApiRequest(const ServerClient& client, const char* method, const std::string& path,
                                       std::string body = "");
http::Client ApiClient(const ServerClient& client);

// ApiRequest sent: the body of a 2xx; for another answer, Unavailable "HTTP 403: <the API's
// message>"; the client's errors.
Result<std::string> CallApi(const ServerClient& client, const char* method, const std::string& path,
                            std::string body = "");

// A deploy, resume or rollback the server runs (POST /api/v1/apps/{app}/ACTION, docs/api.md):
// sends `body`, prints what the server answers on `out` and, unless `wait` is false, follows its
// release events (GET /api/v1/events from the answer's last_event_id, reconnecting with
// Last-Event-ID) to the action event that ends it, printing each target's change. OK when it
// succeeded (or, without wait, started); kReasonFailed when it failed or the server stopped it,
// kReasonBlocked when it waits for approval; the API's refusal as CallApi's (exit code 3), e.g.
// "HTTP 403: user alice lacks apps.deploy on project default (roles: viewer)".
Status RunServerAction(const ServerClient& client, std::string_view app, std::string_view action, std::string body,
                       bool wait, std::FILE* out);

}  // namespace gantry::cli
