#pragma once
// A client of Toxiproxy's admin API (test/env/toxiproxy.sh) for fault-injection tests: creates
// proxies in front of real servers and adds and removes toxics (latency, bandwidth, reset_peer,
// timeout, ...) while Gantry talks through them. Uses Gantry's http::Client.
//
//   auto& tp = testenv::Shared("toxiproxy.sh");
//   testenv::Toxiproxy toxi(tp.Get("TOXIPROXY_URL"));
//   auto listen = toxi.CreateProxy("apiserver", "127.0.0.1:6443");   // "127.0.0.1:PORT"
//   ASSERT_TRUE(toxi.AddToxic("apiserver", {.name = "slow", .type = "latency",
//                                           .attributes = {{"latency", 100}, {"jitter", 50}}}).ok());
//   ...
//   ASSERT_TRUE(toxi.RemoveToxic("apiserver", "slow").ok());
//
// Thread-safety: holds only the URL and the client; calls may come from several threads.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "http/client.h"

namespace gantry::testenv {

// One toxic, as Toxiproxy's API takes it (https://github.com/Shopify/toxiproxy#toxics).
struct Toxic {
  std::string name;              // unique per proxy
  std::string type;              // latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data
  std::string stream = "downstream";  // downstream: server -> client; upstream: client -> server
  double toxicity = 1.0;         // the share of connections it applies to
  std::vector<std::pair<std::string, int64_t>> attributes;  // e.g. {"latency", 100}, {"timeout", 0}
};

class Toxiproxy {
 public:
  // `admin_url`: TOXIPROXY_URL of toxiproxy.sh.
  explicit Toxiproxy(std::string admin_url);

  // Creates proxy `name` forwarding to `upstream` ("HOST:PORT") on a port the kernel picks, and
  // returns the address it listens on ("127.0.0.1:PORT"). An existing proxy of that name is
  // replaced. Unavailable when the API cannot be reached; Internal with the API's answer otherwise.
  Result<std::string> CreateProxy(const std::string& name, const std::string& upstream);
  Status DeleteProxy(const std::string& name);
  // Enables or disables a proxy: disabled, it refuses new connections and closes open ones.
  Status SetEnabled(const std::string& name, bool enabled);
  Status AddToxic(const std::string& proxy, const Toxic& toxic);
  Status RemoveToxic(const std::string& proxy, const std::string& toxic);
  // Removes every toxic of every proxy and enables all of them again (POST /reset).
  Status Reset();

 private:
  Result<std::string> Call(const std::string& method, const std::string& path, const std::string& body,
                           int want_status);

  std::string url_;
  http::Client client_;
};

}  // namespace gantry::testenv
