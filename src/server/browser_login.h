#pragma once
// server/browser_login: signing in to the web console through the OIDC provider, with the
// authorization code grant and PKCE (RFC 7636), the server being the OIDC client:
//
//   GET /auth/config          {"oidc": {"issuer": "...", "login": "/auth/login"}}, or {"oidc": null}
//                             when the server has no --oidc-issuer. No credential needed.
//   GET /auth/login?return=P  302 to the provider's authorization endpoint with a fresh state,
//                             nonce and code challenge; P (a path of the console, default "/") is
//                             where the browser lands after signing in.
//   GET /auth/callback?code=C&state=S
//                             the provider's redirect: checks the state (one use, ten minutes),
//                             exchanges the code with the verifier, verifies the ID token (issuer,
//                             audience, signature, expiry, nonce), then 302 to
//                             /login#id_token=TOKEN&return=P. The console keeps the token in the
//                             tab's sessionStorage and sends it as "Authorization: Bearer", as
//                             gantry login's token; it lasts as long as the provider made it.
//
// The token travels in the fragment, which browsers never send to a server, and every answer says
// "Referrer-Policy: no-referrer" and "Cache-Control: no-store". Errors (the provider's error=,
// an unknown or expired state, a refused exchange) answer 400 or 502 with a text page saying what
// happened and linking back to the console; nothing is signed in.
//
// Thread-safety: the pending sign-ins are guarded by a mutex; handlers run concurrently.

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/mutex.h"
#include "oidc/oidc.h"
#include "server/front.h"

namespace gantry::server {

struct BrowserLoginOptions {
  oidc::Verifier* verifier = nullptr;  // the server's (its options name the issuer and the client)
  // Where browsers reach the server ("https://gantry.example.com", no trailing slash): the
  // redirect URI is this + "/auth/callback", and must be registered with the provider. "": the
  // browser's Host header over http (a server on a loopback or private address).
  std::string public_url;
  Clock* clock = nullptr;  // nullptr: SystemClock()
  size_t max_pending = 1024;  // sign-ins started and not come back; the oldest is dropped beyond
  std::chrono::seconds pending_ttl{600};
};

class BrowserLogin {
 public:
  explicit BrowserLogin(BrowserLoginOptions options);
  // Registers the three routes above on `front`. With no verifier, only /auth/config (oidc: null).
  void Register(Front& front);

 private:
  struct Pending {
    oidc::AuthorizationRequest request;
    std::string return_to;
    std::chrono::steady_clock::time_point started;
  };
  http::Response Config() const;
  http::Response Login(const http::Request& req);
  http::Response Callback(const http::Request& req);

  const BrowserLoginOptions options_;
  Clock* const clock_;
  Mutex mu_;
  std::map<std::string, Pending> pending_ GUARDED_BY(mu_);  // by state
};

}  // namespace gantry::server
