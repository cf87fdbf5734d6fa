#include "base/process.h"

#include <signal.h>

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
  // The shell starts a grandchild that would outlive a plain kill of the shell.
  auto r = gantry::Run({"sh", "-c", "sleep 30 & echo $! > " + pidfile.string() + "; wait"},
               {.timeout = std::chrono::milliseconds(300)});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->success());
  EXPECT_LT(r->duration.count(), 5000);
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  in >> grandchild;
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

TEST(Process, StopEndsALongRunningChild) {
  auto p = Process::Start({"sleep", "60"}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Running());
  int status = p->Stop(std::chrono::milliseconds(1000));
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace gantry
