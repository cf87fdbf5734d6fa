// The gantry binary and its composition root: the one place that builds the real implementations
// (kubeconfig clients, the ledger, the system clock, stdout/stderr) and hands them to the commands.
#include <cstdio>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/cluster.h"
#include "deliver/deliver.h"
#include "store/store.h"

int main(int argc, char** argv) {
  using namespace gantry;
  cli::Deps deps;
  deps.connect = [](const cli::ClusterFlags& flags, kube::RestConfig* config) { return cli::Connect(flags, config); };
  deps.connect_cluster = [](const deliver::Cluster& cluster, const deliver::ConnectOptions& options) {
    return deliver::Connect(cluster, options);
  };
  deps.open_store = [](std::string_view url) { return store::Open(url); };
  deps.clock = &SystemClock();
  deps.out = stdout;
  deps.err = stderr;
  return cli::Main(argc, argv, deps);
}
