#pragma once
// Real servers for integration tests, started by the scripts in test/env.
//
// Every script there follows the protocol of test/env/lib.sh: `SCRIPT start DIR [ARGS...]` starts
// its servers on 127.0.0.1 (free ports) with all state in DIR, waits until they are ready, and
// prints KEY=VALUE lines ending with READY=1; `SCRIPT stop DIR` stops them. Server runs a script in
// a fresh temp dir and holds the values it printed; Shared() starts one server per test binary and
// lets all its tests reuse it.
//
//   auto& git = gantry::testenv::Shared("git-server.sh");
//   ASSERT_TRUE(git.Command("create", {"demo"}).ok());   // git-server.sh create DIR demo
//   std::string url = git.Get("GIT_URL") + "/demo.git";
//
// Set GANTRY_KEEP_TESTENV=1 to keep the directories (configs, data, logs) after the servers stop.

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace gantry::testenv {

// The source tree: $GANTRY_SOURCE_DIR (gantry_cc_test sets it), or the source tree this library was
// built from when it is unset, so that a test binary run by hand finds its test data too.
std::string SourceDir();

// The directory of the test/env scripts: SourceDir()/test/env.
std::string ScriptDir();

// The bin directory of the tool cache test/env/build-tools.sh fills, after building kustomize and
// helm there if needed (once per process). Aborts when the build fails.
const std::string& ToolsDir();

// Creates a fresh directory only the current user can enter, under $TMPDIR (default /tmp), and
// returns its absolute path. Aborts when that is impossible: a test cannot run without one.
std::string TempDir();

// A TempDir() that is removed with its contents when this goes out of scope (kept, and its path
// printed, when GANTRY_KEEP_TESTENV=1).
class ScopedTempDir {
 public:
  ScopedTempDir() : path_(TempDir()) {}
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Parses the KEY=VALUE lines of a script's output; other lines are ignored.
std::map<std::string, std::string> ParseValues(std::string_view output);

// The servers one run of a test/env script started. Owns them and their directory: the destructor
// runs `SCRIPT stop DIR` and removes DIR. Const methods may be called from several threads.
class Server {
 public:
  // Runs `ScriptDir()/SCRIPT start DIR ARGS...` (SCRIPT may also be a path) in a new TempDir().
  // NotFound when there is no such executable script; Unavailable with the script's exit and the
  // tail of its stderr when it fails (the servers started so far are stopped); DeadlineExceeded
  // when it takes longer than 5 minutes; Internal when its output does not end with READY=1.
  static Result<std::unique_ptr<Server>> Start(const std::string& script,
                                               const std::vector<std::string>& args = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The value the script printed for `key`; aborts naming the key when there is none.
  const std::string& Get(const std::string& key) const;
  std::optional<std::string> Find(const std::string& key) const;
  const std::map<std::string, std::string>& values() const { return values_; }
  const std::string& dir() const { return dir_; }

  // Runs `SCRIPT VERB DIR ARGS...` (e.g. git-server.sh create DIR demo) and returns its stdout
  // (ParseValues() reads it); an error with the tail of its stderr when it fails.
  Result<std::string> Command(const std::string& verb,
                              const std::vector<std::string>& args = {}) const;

 private:
  Server(std::string script, std::string dir, std::map<std::string, std::string> values)
      : script_(std::move(script)), dir_(std::move(dir)), values_(std::move(values)) {}

  std::string script_;  // the path of the script
  std::string dir_;
  std::map<std::string, std::string> values_;
};

// Thrown by Shared() when the server cannot be started; GoogleTest reports its message (with the
// script's stderr) as the failure of the test that asked.
class StartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server of `script args...` shared by all tests of this binary: started on first use, stopped
// when the tests end (a ::testing::Environment) or at exit. A failed start is remembered, so every
// test that needs it fails quickly with the same message (a StartError). Thread-safe.
Server& Shared(const std::string& script, const std::vector<std::string>& args = {});

}  // namespace gantry::testenv
