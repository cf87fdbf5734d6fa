// gantry login: a person logs in at the OpenID provider with the device authorization grant
// (RFC 8628), and the ID token is kept for the other commands.
//
//   gantry login --issuer URL [--client-id gantry] [--groups-claim groups] [--scopes "openid ..."]
//                [--token-file PATH] [--ca-file PEM]
//
// It prints where to go and the code to enter (stderr), waits while the person logs in in a
// browser (on any device), verifies the ID token it gets as the server will (oidc::Verifier:
// signature, issuer, audience = client ID, expiry) and writes it to --token-file (default
// $XDG_CONFIG_HOME/gantry/token, else ~/.config/gantry/token; mode 0600, replaced atomically), then
// prints who logged in (stdout). Exit codes: 0 logged in; 2 usage; 3 the provider could not be
// reached, refused the client, the person denied the login, or the code expired first.

#include <fmt/ranges.h>

#include <CLI/CLI.hpp>

#include "base/clock.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "oidc/oidc.h"

namespace gantry::cli {
namespace {

struct LoginOptions {
  std::string issuer;
  std::string client_id = "gantry";
  std::string groups_claim = "groups";
  std::string scopes = "openid profile email";
  std::string token_file;  // "" = oidc::DefaultTokenFile()
  std::string ca_file;
};

Status ValidateLogin(LoginOptions& o) {
  if (o.issuer.empty()) return InvalidArgumentError("login: --issuer is required (or GANTRY_OIDC_ISSUER)");
  GANTRY_RETURN_IF_ERROR(oidc::CheckIssuerUrl(o.issuer).WithContext("login: --issuer"));
  if (o.client_id.empty()) return InvalidArgumentError("login: --client-id must not be empty");
  if (o.scopes.find("openid") == std::string::npos) {
    return InvalidArgumentError("login: --scopes must include openid (the ID token is what gantry keeps)");
  }
  if (o.token_file.empty()) o.token_file = oidc::DefaultTokenFile();
  return OkStatus();
}

Status RunLogin(const LoginOptions& o, const Deps& deps) {
  oidc::Transport transport = oidc::HttpTransport({.timeout = std::chrono::seconds(30), .ca_file = o.ca_file});
  GANTRY_ASSIGN_OR_RETURN(oidc::ProviderMetadata provider, oidc::Discover(transport, o.issuer));
  GANTRY_ASSIGN_OR_RETURN(oidc::DeviceAuthorization a,
                          oidc::StartDeviceAuthorization(transport, provider, o.client_id, o.scopes));
  if (!a.verification_uri_complete.empty()) {
    fmt::print(deps.err, "To log in, open {}\n  (or open {} and enter the code {})\n", a.verification_uri_complete,
               a.verification_uri, a.user_code);
  } else {
    fmt::print(deps.err, "To log in, open {} and enter the code {}\n", a.verification_uri, a.user_code);
  }
  fmt::print(deps.err, "Waiting for the login at {} (the code expires in {}s)...\n", provider.issuer, a.expires_in.count());
  std::fflush(deps.err);
  GANTRY_ASSIGN_OR_RETURN(oidc::Tokens tokens, oidc::WaitForDeviceTokens(transport, provider, o.client_id, a, *deps.clock));
  if (tokens.id_token.empty()) {
    return DataLossError("login at {}: the provider sent no ID token (is openid among --scopes?)", provider.issuer);
  }
  oidc::VerifierOptions vo;
  vo.verify.issuer = provider.issuer;
  vo.verify.client_id = o.client_id;
  vo.verify.groups_claim = o.groups_claim;
  GANTRY_ASSIGN_OR_RETURN(auto verifier, oidc::Verifier::Create(vo, transport, deps.clock));
  GANTRY_ASSIGN_OR_RETURN(oidc::Identity id, verifier->Verify(tokens.id_token));
  GANTRY_RETURN_IF_ERROR(oidc::WriteTokenFile(o.token_file, tokens.id_token).WithContext("login: save the token"));
  fmt::print(deps.out, "Logged in to {} as {}{}; token saved to {} (valid until {})\n", provider.issuer, id.name,
             id.groups.empty() ? "" : fmt::format(" (groups: {})", fmt::join(id.groups, ", ")), o.token_file,
             Rfc3339(id.expires_at));
  return OkStatus();
}

}  // namespace

void AddLoginCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto o = std::make_shared<LoginOptions>();
  auto* cmd = app.add_subcommand("login", "Log in at the OpenID provider (device flow) and keep the token for gantry");
  cmd->add_option("--issuer", o->issuer, "OpenID provider (issuer URL)")->envname("GANTRY_OIDC_ISSUER");
  cmd->add_option("--client-id", o->client_id, "Client ID registered at the provider (default gantry)")
      ->envname("GANTRY_OIDC_CLIENT_ID");
  cmd->add_option("--groups-claim", o->groups_claim, "Claim that lists the user's groups (default groups)");
  cmd->add_option("--scopes", o->scopes, "Scopes to ask for (default \"openid profile email\")");
  cmd->add_option("--token-file", o->token_file, "Where to keep the token (default $XDG_CONFIG_HOME/gantry/token)");
  cmd->add_option("--ca-file", o->ca_file, "PEM CA bundle for an https issuer (default: the system's)");
  cmd->callback([o, &deps, &exit_code] {
    Status valid = ValidateLogin(*o);
    exit_code = valid.ok() ? Report(RunLogin(*o, deps), deps.err) : UsageError(valid, deps.err);
  });
}

}  // namespace gantry::cli
