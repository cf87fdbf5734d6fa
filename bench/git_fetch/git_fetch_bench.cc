// The Gantry side of bench/git_fetch/run.sh: fetch a fresh mirror and read one path, then fetch
// again with nothing changed and read it again; best of RUNS wall times in milliseconds.
//
//   GIT_HOST=127.0.0.1:PORT GIT_USER=... GIT_PASSWORD=... git_fetch_bench CACHE_DIR URL PATH RUNS
//
// Prints "gantry-fresh MS FILES BYTES" and "gantry-nochange MS FILES BYTES".

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "git/git.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Fetches and reads `path` at HEAD; returns false (after printing why) on failure.
bool FetchAndRead(gantry::git::Repository& repo, const std::string& path, size_t* files, size_t* bytes) {
  auto fetched = repo.Fetch();
  if (!fetched.ok()) return std::fprintf(stderr, "%s\n", fetched.status().ToString().c_str()), false;
  auto head = repo.Resolve("HEAD");
  if (!head.ok()) return std::fprintf(stderr, "%s\n", head.status().ToString().c_str()), false;
  auto tree = repo.ReadTree(*head, path);
  if (!tree.ok()) return std::fprintf(stderr, "%s\n", tree.status().ToString().c_str()), false;
  *files = tree->files.size();
  *bytes = 0;
  for (const auto& f : tree->files) *bytes += f.content.size();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s CACHE_DIR URL PATH RUNS (credentials in GIT_HOST, GIT_USER, GIT_PASSWORD)\n",
                 argv[0]);
    return 2;
  }
  std::filesystem::path cache = argv[1];
  std::string url = argv[2], path = argv[3];
  int runs = std::atoi(argv[4]);
  gantry::git::OpenOptions options;
  if (!Env("GIT_PASSWORD").empty()) {
    options.credentials = gantry::git::Credentials{
        .host = Env("GIT_HOST"), .username = Env("GIT_USER"), .password = Env("GIT_PASSWORD")};
  }
  double best_fresh = 1e18, best_nochange = 1e18;
  size_t files = 0, bytes = 0;
  for (int run = 0; run < runs; ++run) {
    std::filesystem::remove_all(cache);
    gantry::git::Mirrors mirrors(cache);
    auto start = Clock::now();
    auto repo = mirrors.Open(url, options);
    if (!repo.ok()) return std::fprintf(stderr, "%s\n", repo.status().ToString().c_str()), 1;
    if (!FetchAndRead(**repo, path, &files, &bytes)) return 1;
    best_fresh = std::min(best_fresh, Ms(Clock::now() - start));
    start = Clock::now();
    if (!FetchAndRead(**repo, path, &files, &bytes)) return 1;
    best_nochange = std::min(best_nochange, Ms(Clock::now() - start));
  }
  std::printf("gantry-fresh %.1f %zu %zu\n", best_fresh, files, bytes);
  std::printf("gantry-nochange %.1f %zu %zu\n", best_nochange, files, bytes);
  return 0;
}
