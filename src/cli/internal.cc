// `gantry internal …`: hidden commands Gantry runs in its own image, never meant for people. The
// Kubernetes CI executor (ci/kube_executor.cc) runs them in a step Pod's helper containers to ship
// the workspace in and out over pods/exec, so that nothing but the gantry binary is assumed there
// (no shell, no tar):
//   await-file PATH --timeout S   waits until PATH exists (exit 0), or S seconds (exit 1)
//   untar DIR [--marker FILE]     extracts the tar on stdin into DIR (oci/tree_tar.h), then creates
//                                 FILE (after the last byte, so a waiter sees all or nothing)
//   tar DIR NAME...               writes DIR/NAME... to stdout as one tar, entries NAME/...

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "oci/tree_tar.h"

namespace gantry::cli {

void AddInternalCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* internal = app.add_subcommand("internal", "");  // an empty description hides it from --help
  internal->group("");
  internal->require_subcommand(1);

  struct AwaitFlags {
    std::string path;
    int timeout = 3600;
  };
  auto await = std::make_shared<AwaitFlags>();
  auto* a = internal->add_subcommand("await-file", "Wait until a file exists");
  a->add_option("path", await->path)->required();
  a->add_option("--timeout", await->timeout, "Seconds");
  a->callback([&exit_code, await] {
    // PID 1 of a container ignores signals it has no handler for: deleting the Pod must end it
    // now, not after the grace period.
    std::signal(SIGTERM, [](int) { ::_exit(143); });
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(await->timeout);
    while (std::chrono::steady_clock::now() < end) {
      if (::access(await->path.c_str(), F_OK) == 0) {
        exit_code = kExitOk;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    exit_code = kExitFailed;
  });

  struct UntarFlags {
    std::string dir, marker;
    uint64_t max_bytes = 16ull << 30;
  };
  auto untar = std::make_shared<UntarFlags>();
  auto* u = internal->add_subcommand("untar", "Extract a tar from stdin");
  u->add_option("dir", untar->dir)->required();
  u->add_option("--marker", untar->marker, "File created when everything is extracted");
  u->add_option("--max-bytes", untar->max_bytes, "Most bytes of tar read");
  u->callback([&deps, &exit_code, untar] {
    oci::ReadFn read = [](char* buf, size_t n) -> Result<size_t> {
      for (;;) {
        ssize_t r = ::read(STDIN_FILENO, buf, n);
        if (r >= 0) return static_cast<size_t>(r);
        if (errno != EINTR) return ErrnoError(errno, "read stdin");
      }
    };
    auto stats = oci::ExtractTreeTar(read, untar->dir, {.max_total_bytes = untar->max_bytes});
    if (!stats.ok()) {
      fmt::print(deps.err, "error: untar into {}: {}\n", untar->dir, stats.status().message());
      exit_code = kExitError;
      return;
    }
    if (!untar->marker.empty()) {
      int fd = ::open(untar->marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0) {
        fmt::print(deps.err, "error: create {}: {}\n", untar->marker, std::strerror(errno));
        exit_code = kExitError;
        return;
      }
      ::close(fd);
    }
    fmt::print(deps.err, "{} entries, {} bytes\n", stats->entries, stats->bytes);
    exit_code = kExitOk;
  });

  struct TarFlags {
    std::string dir;
    std::vector<std::string> names;
    uint64_t max_bytes = 0;
  };
  auto tar = std::make_shared<TarFlags>();
  auto* t = internal->add_subcommand("tar", "Write directories as a tar to stdout");
  t->add_option("dir", tar->dir)->required();
  t->add_option("names", tar->names)->required();
  t->add_option("--max-bytes", tar->max_bytes, "Most bytes of files");
  t->callback([&deps, &exit_code, tar] {
    std::vector<oci::TarTree> trees;
    for (const auto& n : tar->names) trees.push_back({std::filesystem::path(tar->dir) / n, n});
    auto stats = oci::WriteTreesTar(
        trees,
        [&](std::string_view d) -> Status {
          if (std::fwrite(d.data(), 1, d.size(), deps.out) != d.size()) return ErrnoError(errno, "write stdout");
          return OkStatus();
        },
        tar->max_bytes);
    std::fflush(deps.out);
    if (!stats.ok()) {
      fmt::print(deps.err, "error: tar {}: {}\n", tar->dir, stats.status().message());
      exit_code = kExitError;
      return;
    }
    exit_code = kExitOk;
  });
}

}  // namespace gantry::cli
