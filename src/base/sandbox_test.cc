// The sandbox on this machine's bubblewrap. CI and development machines have a working one
// (scripts/setup installs it); where it does not work the tests say why and skip.

#include "base/sandbox.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "base/process.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status works = SandboxWorks("bwrap");
    // CI has a working bubblewrap (scripts/setup installs it): there a broken one is a failure.
    if (!works.ok() && std::getenv("CI") != nullptr) FAIL() << works.message();
    if (!works.ok()) GTEST_SKIP() << works.message();
    bwrap_ = *FindBwrap("bwrap");
    char tmpl[] = "/tmp/gantry-sandbox-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Runs `script` with sh in a sandbox built from `spec` (command and PATH filled in).
  ProcessResult Sh(const std::string& script, SandboxSpec spec = {}, ProcessOptions po = {}) {
    spec.command = {"/bin/sh", "-c", script};
    spec.env.emplace("PATH", "/usr/bin:/bin");
    auto cmd = PrepareSandbox(bwrap_, spec);
    GANTRY_CHECK(cmd.ok());
    po.pass_fds = cmd->fds();
    po.merge_stderr = true;
    auto r = gantry::Run(cmd->argv, po);
    GANTRY_CHECK(r.ok());
    return *r;
  }

  std::string bwrap_;
  fs::path dir_;
};

TEST_F(SandboxTest, SeesOnlyItsOwnEtcAndNoHostHomes) {
  ProcessResult r = Sh("cat /etc/passwd; id -un; for f in /etc/shadow /etc/sudoers /etc/ssh /etc/machine-id /etc/hostname "
                       "/root /home /opt /srv /var/lib; do [ -e $f ] && echo \"VISIBLE $f\"; done; "
                       "test -s /etc/ssl/certs/ca-certificates.crt && echo certs; true");
  EXPECT_TRUE(r.success()) << r.out;
  EXPECT_THAT(r.out, HasSubstr("builder:x:1000:1000"));
  EXPECT_THAT(r.out, HasSubstr("\nbuilder\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("VISIBLE")));
  if (fs::exists("/etc/ssl/certs/ca-certificates.crt")) {
    EXPECT_THAT(r.out, HasSubstr("certs"));
  }
}

// Issue 12, finding 3: a step found the server's listening socket at descriptor 3.
TEST_F(SandboxTest, ProgramFindsNoDescriptorAboveStderr) {
  int devnull = ::open("/dev/null", O_RDONLY);  // not close-on-exec, like an Asio socket
  int leaked = ::fcntl(devnull, F_DUPFD, 50);
  ::close(devnull);
  ProcessResult r = Sh("ls /proc/self/fd | tr '\\n' ' '");
  ::close(leaked);
  // 0, 1, 2 and the directory ls reads.
  EXPECT_EQ(r.out, "0 1 2 3 ") << "descriptors visible in the sandbox: " << r.out;
}

// Issue 12, finding 4: the step's variables became bubblewrap's own environment, and this
// bubblewrap (not setuid) honoured LD_PRELOAD on the host before any namespace existed.
TEST_F(SandboxTest, StepVariablesNeverReachTheLauncher) {
  fs::path src = dir_ / "preload.c";
  fs::path so = dir_ / "preload.so";
  fs::path canary = dir_ / "host-canary";
  {
    std::ofstream f(src);
    f << "#include <stdio.h>\n__attribute__((constructor)) static void hit(void) {\n"
      << "  FILE* f = fopen(\"" << canary.string() << "\", \"w\"); if (f) fclose(f);\n}\n";
  }
  auto cc = gantry::Run({"cc", "-shared", "-fPIC", "-o", so.string(), src.string()}, {.inherit_env = true});
  if (!cc.ok() || !cc->success()) GTEST_SKIP() << "no C compiler to build the preload library";
  SandboxSpec spec;
  spec.env = {{"LD_PRELOAD", so.string()}, {"GCONV_PATH", dir_.string()}, {"MARKER", "inside"}};
  ProcessResult r = Sh("echo \"$MARKER\"", spec);
  EXPECT_THAT(r.out, HasSubstr("inside"));  // the program does get its variables
  EXPECT_FALSE(fs::exists(canary)) << "LD_PRELOAD ran on the host: " << r.out;
}

TEST_F(SandboxTest, SecretsDoNotShowInTheHostsProcessList) {
  SandboxSpec spec;
  spec.env = {{"TOKEN", "canary-secret-in-argv"}};
  spec.command = {"/bin/sleep", "5"};
  spec.env.emplace("PATH", "/usr/bin:/bin");
  auto cmd = PrepareSandbox(bwrap_, spec);
  ASSERT_TRUE(cmd.ok());
  auto p = Process::Start(cmd->argv, {.pass_fds = cmd->fds()});
  ASSERT_TRUE(p.ok());
  auto cmdline = ReadFile("/proc/" + std::to_string(p->pid()) + "/cmdline");
  p->Stop(std::chrono::milliseconds(100));
  ASSERT_TRUE(cmdline.ok());
  EXPECT_THAT(*cmdline, Not(HasSubstr("canary-secret-in-argv")));
}

TEST_F(SandboxTest, NoNetworkUnlessAsked) {
  ProcessResult off = Sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '");
  EXPECT_EQ(off.out, "lo ");
  SandboxSpec on;
  on.network = true;
  ProcessResult shared = Sh("cat /proc/net/dev | tail -n +3 | wc -l", on);
  EXPECT_NE(shared.out, "1\n");
}

TEST_F(SandboxTest, MountsAreTheOnlyWritablePlaceAndCannotNestUserNamespaces) {
  fs::create_directories(dir_ / "ws");
  SandboxSpec spec;
  spec.mounts = {{(dir_ / "ws").string(), "/workspace", true}};
  spec.cwd = "/workspace";
  ProcessResult r = Sh("echo ok > out && echo wrote; touch /usr/x 2>/dev/null || echo usr-ro; "
                       "unshare -U true 2>/dev/null || echo no-userns", spec);
  EXPECT_THAT(r.out, HasSubstr("wrote"));
  EXPECT_THAT(r.out, HasSubstr("usr-ro"));
  EXPECT_THAT(r.out, HasSubstr("no-userns"));
  EXPECT_TRUE(fs::exists(dir_ / "ws" / "out"));
}

// A fork bomb: RLIMIT_NPROC does not bind a root-run server's steps, a pids cgroup does.
TEST_F(SandboxTest, APidsCgroupStopsAForkBomb) {
  auto cg = PidsCgroup::Create(16);
  if (!cg.ok()) GTEST_SKIP() << cg.status().message();
  ProcessOptions po;
  po.cgroup_procs = cg->procs_file();
  po.timeout = std::chrono::seconds(30);
  // A shell dies when it cannot fork; Python counts the forks that worked.
  ProcessResult r = Sh("python3 -c 'import os, time\n"
                       "n = 0\n"
                       "for i in range(64):\n"
                       "    try:\n"
                       "        pid = os.fork()\n"
                       "    except OSError:\n"
                       "        break\n"
                       "    if pid == 0:\n"
                       "        time.sleep(2)\n"
                       "        os._exit(0)\n"
                       "    n += 1\n"
                       "print(\"running=%d\" % n)'",
                       {}, po);
  EXPECT_GT(cg->Refusals(), 0u) << r.out;
  ASSERT_THAT(r.out, HasSubstr("running=")) << r.Describe();
  int running = std::atoi(r.out.substr(r.out.find("running=") + 8).c_str());
  EXPECT_LE(running, 16) << r.out;
}

TEST_F(SandboxTest, ExtraPathsAreVisibleReadOnlyAtTheirHostPath) {
  fs::create_directories(dir_ / "sdk" / "bin");
  GANTRY_CHECK(WriteFileAtomic(dir_ / "sdk" / "bin" / "tool", "sdk-tool\n").ok());
  SandboxSpec spec;
  spec.extra_ro_paths = {(dir_ / "sdk").string()};
  std::string tool = (dir_ / "sdk" / "bin" / "tool").string();
  ProcessResult r = Sh("cat " + tool + "; (echo x >> " + tool + ") 2>/dev/null || echo read-only", spec);
  EXPECT_EQ(r.out, "sdk-tool\nread-only\n");
}

// Found by the hostile corpus: with the server run as root, the sandbox's uid maps to host root,
// and /proc/sys checks only that (no capability): a step could set kernel.core_pattern and have
// the kernel run its program as root. The write below stores the value already there.
TEST_F(SandboxTest, KernelSettingsAreReadOnly) {
  ProcessResult r = Sh("v=$(cat /proc/sys/vm/stat_interval) && (echo \"$v\" > /proc/sys/vm/stat_interval) 2>/dev/null "
                       "&& echo WROTE-HOST-SYSCTL; (cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern) "
                       "2>/dev/null && echo WROTE-CORE-PATTERN; echo done");
  EXPECT_EQ(r.out, "done\n");
}

// A server killed mid-step left its steps' (empty) groups behind, one per step, for good.
TEST(Sandbox, PidsCgroupsOfDeadProcessesAreRemoved) {
  auto probe = PidsCgroup::Create(8);
  if (!probe.ok()) GTEST_SKIP() << probe.status().message();
  std::string parent = fs::path(probe->procs_file()).parent_path().parent_path().string();
  pid_t gone = 0;  // a pid that was, and is no more
  {
    auto p = Process::Start({"true"}, {});
    ASSERT_TRUE(p.ok());
    gone = p->pid();
    p->Stop();
  }
  std::string stale = fmt::format("{}/gantry-{}-0", parent, gone);
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0) << stale;
  // Groups younger than a minute may be another PID namespace's, about to be joined: age this one.
  struct timespec old_times[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
  ::utimensat(AT_FDCWD, stale.c_str(), old_times, 0);
  auto next = PidsCgroup::Create(8);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(fs::exists(stale)) << "the group of dead process " << gone << " is still there";
}

TEST(Sandbox, RelativeMountsAndEmptyCommandsAreRefused) {
  SandboxSpec spec;
  EXPECT_EQ(PrepareSandbox("/usr/bin/bwrap", spec).status().code(), Code::kInvalidArgument);
  spec.command = {"true"};
  spec.mounts = {{"relative", "/x", false}};
  EXPECT_EQ(PrepareSandbox("/usr/bin/bwrap", spec).status().code(), Code::kInvalidArgument);
}

TEST(Sandbox, MissingBubblewrapSaysWhatToInstall) {
  auto r = FindBwrap("gantry-no-such-bwrap");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("install the bubblewrap package"));
}

}  // namespace
}  // namespace gantry
