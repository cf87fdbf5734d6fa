#pragma once
// cli::Deps: everything a command reaches outside its own process memory through (clusters, the
// ledger, time, its output streams). The composition root (src/exe/main.cc) builds the real ones
// ); tests of the commands hand in fakes from test/fakes/ and read what was printed.
//
// A command is shaped as flags → options → validate → run(options, deps): its Add<Name>Command
// registers the flags, and when the subcommand is chosen it turns them into options, validates
// them (a failure is a usage error, exit 2), runs with `deps` and stores ExitCode(...) (exit.h).
// A command never creates a client, opens the store or prints to stdout/stderr except through
// `deps`.

#include <cstdio>
#include <functional>
#include <memory>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "deliver/deliver.h"
#include "kube/kube.h"
#include "store/store.h"

namespace gantry::cli {

struct ClusterFlags;

struct Deps {
  // A client for the cluster the kubeconfig flags name (sync, diff, install, agent, app);
  // `config_out` receives its configuration (the context's namespace is the default namespace).
  std::function<Result<std::unique_ptr<kube::Client>>(const ClusterFlags&, kube::RestConfig* config_out)> connect;
  // A client for a push-mode cluster of the configuration (deliver, ci --deploy).
  std::function<Result<std::unique_ptr<kube::Client>>(const deliver::Cluster&, const deliver::ConnectOptions&)>
      connect_cluster;
  // The ledger at `url` (sqlite:PATH or postgres://...), migrated.
  std::function<Result<std::unique_ptr<store::Store>>(std::string_view url)> open_store;
  // Time: timeouts, intervals, timestamps printed.
  Clock* clock = nullptr;
  // Where the command prints its results (out) and its errors and progress (err).
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

}  // namespace gantry::cli
