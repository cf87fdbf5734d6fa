#include "test/env/testenv.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/process.h"

namespace gantry::testenv {
namespace {

constexpr auto kStartTimeout = std::chrono::minutes(5);
constexpr auto kCommandTimeout = std::chrono::minutes(2);

bool KeepDirs() {
  const char* keep = std::getenv("GANTRY_KEEP_TESTENV");
  return keep != nullptr && std::string_view(keep) == "1";
}

// The last `max_lines` lines of `text`, at most a few kilobytes.
std::string Tail(std::string_view text, size_t max_lines = 40) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  size_t pos = text.size();
  for (size_t lines = 0; pos > 0 && lines < max_lines; ++lines) {
    size_t nl = text.rfind('\n', pos - 1);
    pos = nl == std::string_view::npos ? 0 : nl;
  }
  std::string_view tail = text.substr(pos);
  if (tail.size() > 8192) tail = tail.substr(tail.size() - 8192);
  if (!tail.empty() && tail.front() == '\n') tail.remove_prefix(1);
  return std::string(tail);
}

std::string ScriptPath(const std::string& script) {
  return script.find('/') == std::string::npos ? ScriptDir() + "/" + script : script;
}

std::string Name(const std::string& script) {
  return std::filesystem::path(script).filename().string();
}

// Runs `script verb dir args...` with the test's environment; its stdout, or an error naming the
// command with the tail of its stderr.
Result<std::string> RunScript(const std::string& script, const std::string& verb,
                              const std::string& dir, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {script, verb, dir};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options;
  options.inherit_env = true;
  // The servers stop themselves when this process dies without stopping them (lib.sh watch_owner).
  options.env["GANTRY_TESTENV_OWNER_PID"] = std::to_string(::getpid());
  options.timeout = timeout;
  std::string what = fmt::format("{} {} {}", Name(script), verb, dir);
  for (const auto& a : args) what += " " + a;
  auto run = Run(argv, options);
  if (!run.ok()) return run.status().WithContext(what);
  ProcessResult& r = *run;
  if (r.success()) return std::move(r.out);
  Code code = r.timed_out ? Code::kDeadlineExceeded : Code::kUnavailable;
  std::string tail = Tail(r.err);
  return Status(code, fmt::format("{}: {}{}{}", what, r.Describe(), tail.empty() ? "" : ":\n",
                                  tail));
}

// Removes `dir` (what `owner` used) unless GANTRY_KEEP_TESTENV=1, which prints it instead.
void RemoveDir(const std::string& dir, const std::string& owner) {
  if (KeepDirs()) {
    std::fprintf(stderr, "testenv: keeping %s of %s (GANTRY_KEEP_TESTENV=1)\n", dir.c_str(),
                 owner.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) std::fprintf(stderr, "testenv: removing %s: %s\n", dir.c_str(), ec.message().c_str());
}

// Stops what `script start dir` started; reports (does not fail on) a failed stop.
void StopScript(const std::string& script, const std::string& dir) {
  auto stopped = RunScript(script, "stop", dir, {}, kCommandTimeout);
  if (!stopped.ok()) {
    std::fprintf(stderr, "testenv: %s\n", stopped.status().ToString().c_str());
  }
}

}  // namespace

std::string SourceDir() {
  const char* source = std::getenv("GANTRY_SOURCE_DIR");
  return source != nullptr && *source != '\0' ? source : GANTRY_DEFAULT_SOURCE_DIR;
}

std::string ScriptDir() { return SourceDir() + "/test/env"; }

const std::string& ToolsDir() {
  static const std::string dir = [] {
    ProcessOptions po;
    po.inherit_env = true;
    po.timeout = std::chrono::minutes(30);
    auto r = RunChecked({ScriptDir() + "/build-tools.sh", "kustomize", "helm"}, po);
    if (!r.ok()) DieBecause("build-tools.sh: " + r.status().ToString());
    std::string out = r->out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  }();
  return dir;
}

std::string TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                        "/gantry-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    DieBecause(ErrnoError(errno, "testenv: mkdtemp " + pattern).ToString());
  }
  return std::filesystem::absolute(pattern).string();
}

ScopedTempDir::~ScopedTempDir() { RemoveDir(path_, "a test"); }

std::map<std::string, std::string> ParseValues(std::string_view output) {
  std::map<std::string, std::string> values;
  while (!output.empty()) {
    size_t nl = output.find('\n');
    std::string_view line = output.substr(0, nl);
    output.remove_prefix(nl == std::string_view::npos ? output.size() : nl + 1);
    size_t eq = line.find('=');
    if (eq == 0 || eq == std::string_view::npos) continue;
    std::string_view key = line.substr(0, eq);
    bool is_key = key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                  std::string_view::npos;
    if (is_key) values[std::string(key)] = std::string(line.substr(eq + 1));
  }
  return values;
}

Result<std::unique_ptr<Server>> Server::Start(const std::string& script,
                                              const std::vector<std::string>& args) {
  std::string path = ScriptPath(script);
  if (::access(path.c_str(), X_OK) != 0) {
    return ErrnoError(errno, fmt::format("testenv: no executable script {}", path));
  }
  // Free ports are picked by the scripts and released before the servers bind them, so servers
  // started at the same moment by parallel tests can collide: a failed start is tried once more.
  std::string dir;
  Result<std::string> out = InternalError("not started");
  for (int attempt = 1; attempt <= 2; ++attempt) {
    dir = TempDir();
    out = RunScript(path, "start", dir, args, kStartTimeout);
    if (out.ok()) break;
    StopScript(path, dir);
    RemoveDir(dir, Name(path));
    if (attempt == 1 && out.status().code() == Code::kUnavailable) {
      std::fprintf(stderr, "testenv: %s failed to start, trying again: %s\n", Name(path).c_str(),
                   out.status().message().c_str());
      continue;
    }
    return out.status();
  }
  auto values = ParseValues(*out);
  std::string_view trimmed = *out;
  while (!trimmed.empty() && trimmed.back() == '\n') trimmed.remove_suffix(1);
  if (!trimmed.ends_with("READY=1")) {
    StopScript(path, dir);
    RemoveDir(dir, Name(path));
    return InternalError("{} start {}: output does not end with READY=1:\n{}", Name(path), dir,
                         Tail(*out));
  }
  return std::unique_ptr<Server>(new Server(std::move(path), std::move(dir), std::move(values)));
}

Server::~Server() {
  StopScript(script_, dir_);
  RemoveDir(dir_, Name(script_));
}

const std::string& Server::Get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    std::string printed;
    for (const auto& [k, v] : values_) printed += " " + k;
    DieBecause(
        fmt::format("testenv: {} printed no {} (it printed:{})", Name(script_), key, printed));
  }
  return it->second;
}

std::optional<std::string> Server::Find(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

Result<std::string> Server::Command(const std::string& verb,
                                    const std::vector<std::string>& args) const {
  return RunScript(script_, verb, dir_, args, kCommandTimeout);
}

namespace {

// The servers of Shared(), by script and arguments. A failed start stays as its Status.
struct SharedServers {
  std::mutex mu;
  std::map<std::vector<std::string>, Result<std::unique_ptr<Server>>> servers;
  bool registered = false;
};

SharedServers& Servers() {
  static auto* servers = new SharedServers;  // lives until exit; the environment empties it
  return *servers;
}

class StopSharedServers : public ::testing::Environment {
 public:
  void TearDown() override {
    SharedServers& s = Servers();
    std::lock_guard lock(s.mu);
    s.servers.clear();
  }
};

}  // namespace

Server& Shared(const std::string& script, const std::vector<std::string>& args) {
  SharedServers& s = Servers();
  std::lock_guard lock(s.mu);
  if (!s.registered) {
    ::testing::AddGlobalTestEnvironment(new StopSharedServers);
    // Also when the tests are not run by GoogleTest: stop them at exit (of this process, not of
    // a forked child such as a death test's).
    static const pid_t owner = ::getpid();
    std::atexit([] {
      if (::getpid() == owner) StopSharedServers().TearDown();
    });
    s.registered = true;
  }
  std::vector<std::string> key = {script};
  key.insert(key.end(), args.begin(), args.end());
  auto it = s.servers.find(key);
  if (it == s.servers.end()) it = s.servers.emplace(key, Server::Start(script, args)).first;
  if (!it->second.ok()) {
    throw StartError("testenv: cannot start " + it->second.status().ToString());
  }
  return **it->second;
}

}  // namespace gantry::testenv
