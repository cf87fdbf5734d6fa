#include "base/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace gantry {
namespace {

TEST(Run, CapturesOutputAndExitCode) {
  auto r = gantry::Run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_FALSE(r->success());
}

TEST(Run, ArgumentsAreNeverInterpretedByAShell) {
  auto r = gantry::Run({"echo", "$(id)", "; rm -rf /", "*"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "$(id) ; rm -rf / *\n");
}

TEST(Run, EnvironmentIsCleanUnlessInherited) {
  setenv("GANTRY_TEST_LEAK", "secret", 1);
  auto clean = gantry::Run({"/usr/bin/env"}, {.env = {{"A", "1"}}});
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->out, "A=1\n");
  auto inherited = gantry::Run({"/usr/bin/env"}, {.inherit_env = true});
  ASSERT_TRUE(inherited.ok());
  EXPECT_NE(inherited->out.find("GANTRY_TEST_LEAK=secret"), std::string::npos);
}

TEST(Run, FeedsStdinLargerThanAPipe) {
  std::string big(1 << 20, 'x');
  auto r = gantry::Run({"wc", "-c"}, {.stdin_data = big});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::stoul(r->out), big.size());
}

TEST(Run, MissingProgramIsNotFound) {
  auto r = gantry::Run({"gantry-no-such-program-xyz"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  auto abs = gantry::Run({"/nonexistent/prog"});
  EXPECT_EQ(abs.status().code(), Code::kNotFound);
}

TEST(Run, TimeoutKillsTheWholeProcessTree) {
  auto dir = std::filesystem::temp_directory_path() / ("gantry-proc-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto pidfile = dir / "child.pid";
  // The shell starts a grandchild that would outlive a plain kill of the shell. The timeout must
  // come after the shell wrote the grandchild's pid: 300 ms is plenty on an idle machine, but under
  // TSan on a loaded one the shell had not started by then, so a longer timeout is tried until it did.
  pid_t grandchild = 0;
  for (auto timeout = std::chrono::milliseconds(300); grandchild == 0 && timeout.count() <= 9600; timeout *= 2) {
    std::filesystem::remove(pidfile);
    auto r = gantry::Run({"sh", "-c", "sleep 30 & echo $! > " + pidfile.string() + "; wait"}, {.timeout = timeout});
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->timed_out);
    EXPECT_FALSE(r->success());
    EXPECT_LT(r->duration.count(), timeout.count() + 5000);
    std::ifstream in(pidfile);
    in >> grandchild;
  }
  ASSERT_GT(grandchild, 0);
  // Reaped by init eventually; it must at least be dead or a zombie, never running.
  for (int i = 0; i < 100 && kill(grandchild, 0) == 0; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string a, b, state;
    stat >> a >> b >> state;
    if (state == "Z" || !stat) break;
    usleep(10000);
  }
  std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
  std::string a, b, state;
  if (stat >> a >> b >> state) {
    EXPECT_EQ(state, "Z");
  }
  std::filesystem::remove_all(dir);
}

TEST(RunChecked, FailureNamesProgramAndStderr) {
  auto r = RunChecked({"sh", "-c", "echo 'fatal: repository not found' >&2; exit 128"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exit code 128"), std::string::npos);
  EXPECT_NE(r.status().message().find("repository not found"), std::string::npos);
}

// A failed command that printed nothing made LastLines read past the end (std::out_of_range).
TEST(RunChecked, FailureOfACommandThatPrintedNothing) {
  auto r = RunChecked({"sh", "-c", "exit 3"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "sh failed: exit code 3");
}

TEST(Process, StopEndsALongRunningChild) {
  auto p = Process::Start({"sleep", "60"}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Running());
  int status = p->Stop(std::chrono::milliseconds(1000));
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

// A server's sockets are not close-on-exec (Boost.Asio's are not): a child must still get none of
// them (issue 12, finding 3: a build step read the next API request from the inherited listener).
TEST(Run, ChildInheritsNoDescriptorAboveStderrEvenWithoutCloexec) {
  int devnull = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(devnull, 0);
  int leaked = ::fcntl(devnull, F_DUPFD, 100);
  ::close(devnull);
  ASSERT_GE(leaked, 100);
  auto r = gantry::Run({"/bin/sh", "-c", "ls /proc/self/fd"});
  ::close(leaked);
  ASSERT_TRUE(r.ok());
  std::vector<std::string> fds;
  std::istringstream in(r->out);
  for (std::string fd; in >> fd;) fds.push_back(fd);
  // 0, 1, 2 and the descriptor ls opens on /proc/self/fd itself; never the leaked one.
  EXPECT_EQ(fds.size(), 4u) << r->out;
  EXPECT_EQ(std::count(fds.begin(), fds.end(), std::to_string(leaked)), 0) << r->out;
}

TEST(Run, PassFdsArriveAsThreeFourInOrder) {
  int p1[2], p2[2];
  ASSERT_EQ(::pipe2(p1, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(p2, O_CLOEXEC), 0);
  ASSERT_EQ(::write(p1[1], "one", 3), 3);
  ASSERT_EQ(::write(p2[1], "two", 3), 3);
  ::close(p1[1]);
  ::close(p2[1]);
  // Reversed on purpose, so the mapping must not clobber one source with another.
  auto r = gantry::Run({"/bin/sh", "-c", "cat <&3; cat <&4; ls /proc/self/fd | wc -l"},
                       {.pass_fds = {p2[0], p1[0]}});
  ::close(p1[0]);
  ::close(p2[0]);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "twoone6\n");  // 0, 1, 2, 3, 4 and ls's own
}

TEST(Run, RlimitsApplyToTheChild) {
  auto r = gantry::Run({"/bin/sh", "-c", "ulimit -n"}, {.rlimits = {{RLIMIT_NOFILE, 77}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "77\n");
}

TEST(Process, StartPipedMergesOutputAndPassesNothingElse) {
  int out = -1;
  auto p = Process::StartPiped({"/bin/sh", "-c", "echo out; echo err >&2; ls /proc/self/fd | wc -l"}, {}, &out);
  ASSERT_TRUE(p.ok());
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(out, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(out);
  p->Stop();
  EXPECT_EQ(text, "out\nerr\n4\n");
}

}  // namespace
}  // namespace gantry
