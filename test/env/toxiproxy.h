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

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"
#include "http/client.h"
#include "test/env/testenv.h"

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

// ---- Helpers of the fault scenarios (test/integration/faults_*_test.cc) ----

// The Toxiproxy of toxiproxy.sh shared by the tests of this binary (testenv::Shared).
Toxiproxy& SharedToxiproxy();

// The seed of the fault schedule: $GANTRY_FAULT_SEED, 1 when unset.
uint64_t FaultSeed();

// Whether the whole campaign runs ($GANTRY_FAULTS_FULL=1, set by bench/faults/run.sh): the
// scenarios that take longer (process kills with restarts, agent processes) run only then, and CI
// runs the bounded rest. A scenario skipped here says so with GTEST_SKIP.
bool FullFaults();

// Prints "FAULT <scenario> seed=<n> outcome=<...> fault_s=<time under the fault> recover_s=<time
// from removing the fault to the next success>" and appends it to $GANTRY_FAULTS_REPORT when set
// (bench/faults/run.sh tabulates those lines).
void RecordFault(const std::string& scenario, const std::string& outcome, double fault_s, double recover_s);

// A throwaway proxy `name` to `upstream` whose both directions are sliced into pieces of a seeded
// 16-256 bytes a few microseconds apart (slicer: every read and parse sees fragments), and whose
// server side's close is delayed a seeded 0.2-1 s (slow_close). Returns its address
// ("127.0.0.1:PORT"); `what` says what it does, for the log. Delete it (DeleteProxy) when the
// scenario ends; never reset and reuse it: Toxiproxy 2.12 corrupts a proxy's toxic chain when slicer
// and slow_close are removed from it, and a toxic added to it later crashes the server ("index out
// of range" in ToxicLink.AddToxic).
Result<std::string> CreateSlicedSlowCloseProxy(Toxiproxy& toxi, const std::string& name, const std::string& upstream,
                                               std::mt19937_64& random, std::string& what);

// Half-open: `after` from now, the server's direction of `proxy` goes silent (timeout 0 downstream:
// nothing more arrives, no FIN, no reset) while the client's direction still flows, as when the
// server's host vanished. Runs on its own thread; the future is ready once the toxic is in.
std::future<Status> GoHalfOpenAfter(Toxiproxy& toxi, const std::string& proxy, std::chrono::milliseconds after);

// `size` bytes from `random` (incompressible: a transfer of them cannot be shrunk by gzip).
std::string RandomBytes(size_t size, std::mt19937_64& random);

// A small tmpfs mounted in a temp dir for the test (root only; unprivileged, why_not() says why not
// and the test skips), unmounted after: the full disk of the ENOSPC scenarios.
class SmallDisk {
 public:
  explicit SmallDisk(const std::string& size = "8m");
  ~SmallDisk();
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  const std::string& why_not() const { return why_not_; }
  const std::filesystem::path& dir() const { return dir_; }

  // Fills the disk with a file (1 MiB, then 4 KiB writes until ENOSPC); returns its path, which the
  // test removes to give the space back.
  std::filesystem::path Fill();

 private:
  ScopedTempDir tmp_;
  std::filesystem::path dir_;
  std::string why_not_;
};

// Seconds in a steady-clock duration.
inline double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Runs `fn` on another thread and returns its result, or nullopt when it has not returned within
// `limit`: an operation that hangs under a fault fails the test instead of hanging it (its thread
// is left behind, detached; what `fn` refers to must outlive the process or the test fails anyway).
template <typename T>
std::optional<T> RunWithin(std::chrono::milliseconds limit, std::function<T()> fn) {
  auto done = std::make_shared<std::promise<T>>();
  std::future<T> result = done->get_future();
  std::thread([fn = std::move(fn), done] { done->set_value(fn()); }).detach();
  if (result.wait_for(limit) != std::future_status::ready) return std::nullopt;
  return result.get();
}

}  // namespace gantry::testenv
