// The commands sync, diff, install, agent, app and update run through cli::Main on fakes: a
// FakeKubeClient behind Deps::connect, a FakeClock, and memory streams for what they print. Each
// test checks the exit code (cli/exit.h) and what a user would read.

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/testing.h"
#include "cli/cluster.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "store/store.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;


value::Value Yaml(std::string_view text) {
  auto docs = value::ParseYaml(text);
  EXPECT_TRUE(docs.ok() && docs->size() == 1) << text;
  return docs.ok() && !docs->empty() ? (*docs)[0] : value::Value();
}

constexpr std::string_view kConfigMap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\ndata: {{k: {}}}\n";

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "cli-commands-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    deps_.connect = [this](const ClusterFlags& flags,
                           kube::RestConfig* config) -> Result<std::unique_ptr<kube::Client>> {
      ++connects_;
      connected_with_ = flags;
      if (!connect_error_.ok()) return connect_error_;
      config->namespace_ = flags.namespace_.empty() ? "default" : flags.namespace_;
      return std::unique_ptr<kube::Client>(std::make_unique<fakes::ForwardingKubeClient>(kube_));
    };
    deps_.clock = &clock_;
    // A sync records itself in the ledger of the state directory: this test's.
    ::setenv("GANTRY_HOME", (dir_ / "state").c_str(), 1);
    ::unsetenv("GANTRY_DB");
    deps_.open_store = [](std::string_view url) { return store::Open(url); };
  }
  void TearDown() override {
    ::unsetenv("GANTRY_HOME");
    fs::remove_all(dir_);
  }

  // The audit rows of `action` in the test's ledger, newest first.
  std::vector<store::AuditEntry> Audit(const std::string& action) {
    auto s = store::Open("sqlite:" + (dir_ / "state" / "gantry.db").string());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return {};
    auto rows = (*s)->ListAudit({.action = action});
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.value_or(std::vector<store::AuditEntry>{});
  }

  Ran Gantry(std::vector<std::string> args) { return RunForTest(std::move(args), deps_); }

  // Writes a file under the temp dir; returns its path.
  std::string Write(const std::string& rel, std::string_view data) {
    fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << data;
    return p.string();
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(dir_ / rel, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }

  bool Exists(std::string_view kind, std::string_view ns, std::string_view name) {
    return kube_.Get({"v1", std::string(kind), std::string(ns), std::string(name)}).ok();
  }

  fs::path dir_;
  fakes::FakeKubeClient kube_;
  FakeClock clock_;
  Deps deps_;
  Status connect_error_;
  int connects_ = 0;
  ClusterFlags connected_with_;
};

// ---- sync ----

TEST_F(CommandsTest, SyncAppliesTracksAndPrintsTheTable) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Ran r = Gantry({"sync", Path("app"), "--app", "web", "--context", "dev", "-n", "team"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(connected_with_.context, "dev");
  auto cm = kube_.Get({"v1", "ConfigMap", "team", "a"});
  ASSERT_TRUE(cm.ok()) << cm.status().ToString();
  EXPECT_EQ(value::StringAt(&*cm, {"metadata", "labels", "gantry.dev/app"}), "web");
  EXPECT_THAT(r.out, HasSubstr("==> "));
  EXPECT_THAT(r.out, HasSubstr("KIND"));
  EXPECT_THAT(r.out, HasSubstr("ConfigMap  team/a"));
  EXPECT_THAT(r.out, HasSubstr("api requests="));
  EXPECT_THAT(r.out, Not(HasSubstr("\033[")));  // not a terminal: no escapes
  EXPECT_EQ(r.err, "");

  // A second sync changes nothing.
  uint64_t applies = kube_.count("apply");
  r = Gantry({"sync", Path("app"), "--app", "web", "-n", "team"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(kube_.count("apply"), applies);
}

TEST_F(CommandsTest, SyncDryRunPersistsNothing) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Ran r = Gantry({"sync", Path("app"), "--app", "web", "--dry-run"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_FALSE(Exists("ConfigMap", "default", "a"));
  EXPECT_THAT(r.out, HasSubstr("ConfigMap  default/a"));
}

TEST_F(CommandsTest, SyncPrunesOnlyWithPrune) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Write("app/b.yaml", fmt::format(kConfigMap, "b", "1"));
  ASSERT_EQ(Gantry({"sync", Path("app"), "--app", "web"}).code, kExitOk);
  ASSERT_TRUE(Exists("ConfigMap", "default", "b"));
  fs::remove(dir_ / "app/b.yaml");

  // diff shows what --prune would delete.
  Ran r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.out, HasSubstr("Extra v1 ConfigMap default/b"));

  r = Gantry({"sync", Path("app"), "--app", "web", "--prune", "--dry-run"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_TRUE(Exists("ConfigMap", "default", "b"));

  r = Gantry({"sync", Path("app"), "--app", "web", "--prune"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_FALSE(Exists("ConfigMap", "default", "b"));
  EXPECT_TRUE(Exists("ConfigMap", "default", "a"));
  EXPECT_THAT(r.out, HasSubstr("pruned"));
}

TEST_F(CommandsTest, SyncThatFailsExitsOne) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  kube_.FailNext("apply", UnavailableError("apiserver went away"), 100);
  Ran r = Gantry({"sync", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.err, HasSubstr("error: sync web: "));
  EXPECT_THAT(r.out, HasSubstr("KIND"));  // the table still shows what happened
}

TEST_F(CommandsTest, SyncUsageErrorsExitTwoBeforeConnecting) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Ran r = Gantry({"sync", Path("app"), "--app", "web", "--timeout", "soon"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, StartsWith("error: --timeout: "));
  r = Gantry({"sync", "--app", "web"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, HasSubstr("give a directory of manifests"));
  r = Gantry({"sync", Path("app")});  // --app is required
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, HasSubstr("--app"));
  r = Gantry({"sync", Path("app"), "--app", "web", "--parallelism", "0"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_EQ(connects_, 0);
}

TEST_F(CommandsTest, SyncEnvironmentErrorsExitThree) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  connect_error_ = NotFoundError("kubeconfig /nowhere: no such file");
  Ran r = Gantry({"sync", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_EQ(r.err, "error: kubeconfig /nowhere: no such file\n");

  connect_error_ = OkStatus();
  Write("bad/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n");
  r = Gantry({"sync", Path("bad"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_THAT(r.err, HasSubstr("a.yaml"));

  r = Gantry({"sync", Path("missing"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;

  // A kind the cluster does not serve stops the sync before anything is applied.
  Write("unknown/a.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n");
  r = Gantry({"sync", Path("unknown"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_THAT(r.err, HasSubstr("Widget"));
  EXPECT_EQ(kube_.count("apply"), 0u);
}

// ---- diff ----

TEST_F(CommandsTest, DiffExitsOneWhenTheClusterDiffersAndZeroWhenInSync) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Ran r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.out, HasSubstr("Missing v1 ConfigMap default/a"));
  EXPECT_EQ(r.err, "error: 1 of 1 objects differ\n");

  ASSERT_EQ(Gantry({"sync", Path("app"), "--app", "web"}).code, kExitOk);
  r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "0 of 1 objects differ\n");

  Write("app/a.yaml", fmt::format(kConfigMap, "a", "2"));
  r = Gantry({"diff", Path("app"), "--app", "web", "--color", "never"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.out, HasSubstr("OutOfSync v1 ConfigMap default/a"));
  EXPECT_THAT(r.out, Not(HasSubstr("\033[")));
  r = Gantry({"diff", Path("app"), "--app", "web", "--color", "always"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.out, HasSubstr("\033["));
  EXPECT_EQ(kube_.count("apply"), 2u);  // the sync's inventory and object; diff writes nothing
}

// A generateName hook made `gantry diff` fail ("object needs apiVersion, kind and metadata.name").
TEST_F(CommandsTest, DiffShowsHooksAsWillBeCreatedAndStaysCleanWhenObjectsAreInSync) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  ASSERT_EQ(Gantry({"sync", Path("app"), "--app", "web"}).code, kExitOk);
  Write("app/hook.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n"
                         "  annotations: {argocd.argoproj.io/hook: PreSync}\nspec: {}\n");
  Ran r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "Hook batch/v1 Job default/migrate-*: PreSync hook: will be created by the sync (named by the "
                   "server from generateName \"migrate-\")\n");
  EXPECT_EQ(r.err, "0 of 1 objects differ\n");
}

TEST_F(CommandsTest, DiffUsageAndEnvironmentErrors) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  EXPECT_EQ(Gantry({"diff", Path("app"), "--app", "web", "--color", "sometimes"}).code, kExitUsage);
  EXPECT_EQ(Gantry({"diff", Path("app"), "--app", "web", "--timeout", "-"}).code, kExitUsage);
  EXPECT_EQ(connects_, 0);
  connect_error_ = UnavailableError("dial tcp 127.0.0.1:1: connection refused");
  Ran r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_THAT(r.err, HasSubstr("connection refused"));
  connect_error_ = OkStatus();
  kube_.FailNext("get", UnavailableError("apiserver went away"), 100);
  kube_.FailNext("list", UnavailableError("apiserver went away"), 100);
  r = Gantry({"diff", Path("app"), "--app", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_THAT(r.err, HasSubstr("error: diff web: "));
}

// ---- install ----

TEST_F(CommandsTest, InstallPrintsWithoutConnecting) {
  Ran r = Gantry({"install", "--print", "--agent-namespace", "ops", "--image", "gantry:test"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_THAT(r.out, StartsWith("---\n"));
  EXPECT_THAT(r.out, HasSubstr("kind: CustomResourceDefinition"));
  EXPECT_THAT(r.out, HasSubstr("image: gantry:test"));
  EXPECT_THAT(r.out, HasSubstr("namespace: ops"));
  EXPECT_EQ(connects_, 0);
}

TEST_F(CommandsTest, InstallAppliesEveryManifest) {
  kube_.AddKind({"rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, {}});
  kube_.AddKind({"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, {}});
  kube_.AddKind({"gantry.dev", "v1alpha1", "Project", "projects", true, {}});  // its CRD is established
  Ran r = Gantry({"install", "--image", "gantry:test"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_THAT(r.out, HasSubstr("applied apps/v1 Deployment gantry-system/"));
  EXPECT_THAT(r.out, HasSubstr("applied apiextensions.k8s.io/v1 CustomResourceDefinition "));
  EXPECT_TRUE(kube_.Get({"v1", "Namespace", "", "gantry-system"}).ok());
  EXPECT_TRUE(kube_.Get({"gantry.dev/v1alpha1", "Project", "gantry-system", "default"}).ok());

  kube_.FailNext("apply", PermissionDeniedError("forbidden: cannot create clusterroles"));
  r = Gantry({"install"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_EQ(r.err,
            "error: apply apiextensions.k8s.io/v1 CustomResourceDefinition applications.gantry.dev: forbidden: "
            "cannot create clusterroles\n");

  connect_error_ = NotFoundError("no kubeconfig");
  EXPECT_EQ(Gantry({"install"}).code, kExitError);
}

// ---- projects ----

TEST_F(CommandsTest, ValidateChecksProjectsWithFileLineAndColumn) {
  Write("ok/project.yaml", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\n"
                           "spec:\n  sourceRepos: [\"https://git.example/team-a/*\"]\n");
  Ran ok = Gantry({"validate", Path("ok")});
  EXPECT_EQ(ok.code, kExitOk) << ok;
  Write("bad/project.yaml", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\n"
                            "spec:\n  sourceRepo: [\"https://git.example/team-a/*\"]\n");
  Ran bad = Gantry({"validate", Path("bad")});
  EXPECT_EQ(bad.code, kExitFailed) << bad;
  EXPECT_THAT(bad.err, HasSubstr("project.yaml:5:3"));
  EXPECT_THAT(bad.err, HasSubstr("sourceRepo"));
}

TEST_F(CommandsTest, SyncRefusesWhatItsProjectDoesNotAllowAndAppliesNothing) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Write("projects.yaml", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\n"
                         "spec:\n  sourceRepos: [\"*\"]\n  destinations: [{server: \"*\", namespace: team-a}]\n");
  Ran refused = Gantry({"sync", Path("app"), "--app", "web", "-n", "team-b", "--project", "team-a",
                        "--project-file", Path("projects.yaml")});
  EXPECT_EQ(refused.code, kExitFailed) << refused;
  EXPECT_THAT(refused.err, HasSubstr("project team-a"));
  EXPECT_THAT(refused.err, HasSubstr("namespace team-b"));
  EXPECT_FALSE(Exists("ConfigMap", "team-b", "a"));
  // The refusal is audited: one row, as the local operator, from the CLI.
  auto rows = Audit("apps.sync");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0].actor, StartsWith("local:"));
  EXPECT_EQ(rows[0].source, "cli");
  EXPECT_EQ(rows[0].project, "team-a");
  EXPECT_EQ(rows[0].object, "app web");
  EXPECT_THAT(rows[0].result, StartsWith("PermissionDenied: project team-a"));
  Ran allowed = Gantry({"sync", Path("app"), "--app", "web", "-n", "team-a", "--project", "team-a",
                        "--project-file", Path("projects.yaml")});
  EXPECT_EQ(allowed.code, kExitOk) << allowed;
  EXPECT_TRUE(Exists("ConfigMap", "team-a", "a"));
  rows = Audit("apps.sync");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].result, "ok");
  // A dry run changes nothing and records nothing.
  ASSERT_EQ(Gantry({"sync", Path("app"), "--app", "web", "-n", "team-a", "--dry-run"}).code, kExitOk);
  EXPECT_EQ(Audit("apps.sync").size(), 2u);
  Ran unknown = Gantry({"sync", Path("app"), "--app", "web", "--project", "team-z", "--project-file", Path("projects.yaml")});
  EXPECT_NE(unknown.code, kExitOk);
  EXPECT_THAT(unknown.err, HasSubstr("no Project \"team-z\""));
}

// gantry sync honours the project's sync windows as push deploys do: a closed window refuses (and
// says when it opens and how to override); --override-window needs --reason, and the override is
// in the sync's audit row with who and why.
TEST_F(CommandsTest, SyncHonoursTheProjectsWindowsAndAuditsAnOverride) {
  Write("app/a.yaml", fmt::format(kConfigMap, "a", "1"));
  Write("projects.yaml", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\n"
                         "spec:\n  destinations: [{server: \"*\", namespace: team-a}]\n"
                         "  syncWindows:\n  - {kind: deny, schedule: \"0 0 * * *\", duration: 2h, environments: [prod], manualSync: true}\n");
  const std::vector<std::string> base = {"sync", Path("app"), "--app", "web", "-n", "team-a", "--project", "team-a",
                                         "--project-file", Path("projects.yaml")};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return Gantry(args);
  };
  // The fake clock reads 1970-01-01T00:00Z: inside the prod window.
  Ran closed = with({"--env", "prod"});
  EXPECT_EQ(closed.code, kExitFailed) << closed;
  EXPECT_THAT(closed.err, HasSubstr("project team-a: sync window deny \"0 0 * * *\" 2h"));
  EXPECT_THAT(closed.err, HasSubstr("syncs open at 1970-01-01T02:00:00Z"));
  EXPECT_THAT(closed.err, HasSubstr("--override-window --reason WHY"));
  EXPECT_FALSE(Exists("ConfigMap", "team-a", "a"));
  auto rows = Audit("apps.sync");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0].result, StartsWith("FailedPrecondition: project team-a: sync window deny"));

  Ran no_reason = with({"--env", "prod", "--override-window"});
  EXPECT_EQ(no_reason.code, kExitUsage) << no_reason;
  EXPECT_THAT(no_reason.err, HasSubstr("--override-window needs --reason"));

  Ran overridden = with({"--env", "prod", "--override-window", "--reason", "hotfix INC-9"});
  EXPECT_EQ(overridden.code, kExitOk) << overridden;
  EXPECT_TRUE(Exists("ConfigMap", "team-a", "a"));
  rows = Audit("apps.sync");
  ASSERT_EQ(rows.size(), 2u) << "the usage error reached nothing";
  EXPECT_EQ(rows[0].result, "ok");
  EXPECT_THAT(rows[0].details, HasSubstr("window override: hotfix INC-9"));
  EXPECT_THAT(rows[0].details, HasSubstr("environment prod"));

  // Another environment's sync is outside the window.
  EXPECT_EQ(with({"--env", "dev"}).code, kExitOk);
}

// ---- agent (validation only: a valid agent runs until a signal) ----

TEST_F(CommandsTest, AgentRejectsBadFlagsBeforeConnecting) {
  std::vector<std::string> base = {"agent", "--cache-dir", Path("cache")};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = base;
    args.insert(args.end(), more.begin(), more.end());
    return Gantry(args);
  };
  Ran r = with({"--interval", "often"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, StartsWith("error: --interval: "));
  r = with({"--interval", "500ms"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, HasSubstr("at least 1s"));
  r = with({"--lease-duration", "x"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, StartsWith("error: --lease-duration: "));
  r = with({"--git-credentials-env", "GANTRY_CLI_TEST_UNSET"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_EQ(r.err, "error: --git-credentials-env GANTRY_CLI_TEST_UNSET: the variable is not set\n");
  ::setenv("GANTRY_CLI_TEST_CREDS", "no-equals-sign-s3cret", 1);
  r = with({"--git-credentials-env", "GANTRY_CLI_TEST_CREDS"});
  ::unsetenv("GANTRY_CLI_TEST_CREDS");
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, HasSubstr("GANTRY_CLI_TEST_CREDS"));
  EXPECT_THAT(r.err, Not(HasSubstr("s3cret")));
  // An SSH repository secret without --ssh-known-hosts: a usage error naming the directory.
  std::string secret = (std::filesystem::temp_directory_path() / ("gantry-cli-secret-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(secret);
  std::ofstream(secret + "/url") << "git@git.example.com:org/config.git\n";
  std::ofstream(secret + "/sshPrivateKey") << "s3cret";
  r = with({"--git-repo-secret", secret});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_THAT(r.err, HasSubstr("--git-repo-secret: repository secret " + secret));
  EXPECT_THAT(r.err, HasSubstr("--ssh-known-hosts"));
  EXPECT_THAT(r.err, Not(HasSubstr("s3cret")));
  std::filesystem::remove_all(secret);
  r = with({"--workers", "0"});
  EXPECT_EQ(r.code, kExitUsage) << r;
  EXPECT_EQ(connects_, 0);

  connect_error_ = NotFoundError("no kubeconfig");
  r = with({"--in-cluster"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_TRUE(connected_with_.in_cluster);
  EXPECT_EQ(r.err, "error: no kubeconfig\n");
}

// ---- app ----

class AppCommandTest : public CommandsTest {
 protected:
  void AddApplication(const std::string& name, std::string_view status_yaml) {
    value::Value app = Yaml(fmt::format(
        "apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {{name: {}, namespace: default}}\n"
        "spec: {{source: {{repoURL: https://git.example/a.git, path: .}}}}\n",
        name));
    ASSERT_TRUE(kube_.Apply(app, {.field_manager = "test"}).ok());
    if (status_yaml.empty()) return;
    value::Value with_status = app;
    with_status.Set("status", Yaml(status_yaml));
    auto r = kube_.ApplyStatus(with_status, {.field_manager = "test"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
};

TEST_F(AppCommandTest, GroupFlagsWorkAfterTheSubcommandAsWithKubectl) {
  AddApplication("api", "sync: {status: Synced}\nhealth: {status: Healthy}\n");
  Ran r = Gantry({"app", "list", "-n", "team-a"});
  EXPECT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(connected_with_.namespace_, "team-a");
  r = Gantry({"app", "sync", "--context", "prod", "api", "-n", "default"});
  EXPECT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(connected_with_.context, "prod");
  EXPECT_EQ(connected_with_.namespace_, "default");
  r = Gantry({"app", "list", "--no-such-flag"});
  EXPECT_EQ(r.code, kExitUsage) << "an unknown flag is still refused";
}

// Every option of every command group (and the global ones) parses when written after each of
// the group's subcommands, as it does before them.
TEST(CommandGroups, EveryGroupOptionParsesAfterEverySubcommand) {
  Deps deps;
  // A fresh command tree with nothing required, whose commands never run: the root's
  // parse-complete callback runs after parsing (and its check for unexpected arguments) and before
  // any command's callback, and ends the parse there. Parsing alone is what is tested.
  auto tree = [&](int& exit_code) {
    auto app = std::make_unique<CLI::App>("gantry");
    app->add_option("--log-level", [](const CLI::results_t&) { return true; }, "");
    app->parse_complete_callback([] { throw CLI::Success(); });
    AddCommands(*app, deps, exit_code);
    std::function<void(CLI::App&)> neuter = [&](CLI::App& a) {
      for (CLI::Option* o : a.get_options()) o->required(false);
      a.require_subcommand(0);
      for (CLI::App* sub : a.get_subcommands([](CLI::App*) { return true; })) neuter(*sub);
    };
    neuter(*app);
    return app;
  };
  int exit_code = 0;
  auto shape = tree(exit_code);
  std::set<std::string> checked;
  // (path to the group, its options) for the root and each group with subcommands.
  std::function<void(CLI::App&, std::vector<std::string>)> walk = [&](CLI::App& group, std::vector<std::string> path) {
    auto subs = group.get_subcommands([](CLI::App* a) { return !a->get_name().empty(); });
    if (subs.empty()) return;
    for (const CLI::Option* o : group.get_options()) {
      if (o->get_positional() || o == group.get_help_ptr() || o == group.get_help_all_ptr()) continue;
      std::vector<std::string> names;
      for (const auto& l : o->get_lnames()) names.push_back("--" + l);
      for (const auto& n : o->get_snames()) names.push_back("-" + n);
      for (CLI::App* sub : subs) {
        for (const std::string& name : names) {
          // A subcommand with a flag of the same name takes it itself (runs approve --server).
          if (sub->get_option_no_throw(name) != nullptr) continue;
          std::vector<std::string> args = path;
          args.push_back(sub->get_name());
          args.push_back(name);
          if (o->get_expected_min() > 0) args.push_back(o->get_default_str().empty() ? "x" : o->get_default_str());
          int code = 0;
          auto app = tree(code);
          std::vector<std::string> reversed(args.rbegin(), args.rend());
          std::string what;
          for (const auto& a : args) what += " " + a;
          try {
            app->parse(reversed);
          } catch (const CLI::ExtrasError& e) {
            ADD_FAILURE() << "gantry" << what << ": " << e.what();
            continue;
          } catch (const CLI::ParseError& e) {
            // Parsed, then refused for its value (validators): the option was recognised.
          }
          CLI::App* g = app.get();
          for (const auto& p : path) g = g->get_subcommand(p);
          EXPECT_GE(g->get_option(o->get_name())->count(), 1u) << "gantry" << what << ": the group did not get " << name;
          checked.insert(what.substr(1));
        }
      }
    }
    for (CLI::App* sub : subs) {
      std::vector<std::string> p = path;
      p.push_back(sub->get_name());
      walk(*sub, p);
    }
  };
  walk(*shape, {});
  // The walk reaches the groups the issue was about (a test that checks nothing cannot fail).
  EXPECT_TRUE(checked.contains("app list -n x")) << checked.size();
  EXPECT_TRUE(checked.contains("app sync --kubeconfig x"));
  EXPECT_TRUE(checked.contains("version --log-level x"));
}

TEST_F(AppCommandTest, ListShowsSyncHealthRevisionAndTheFailingCondition) {
  AddApplication("api", "sync: {status: Synced, revision: 0123456789abcdef0123}\nhealth: {status: Healthy}\n");
  AddApplication("web",
                 "sync: {status: OutOfSync}\nhealth: {status: Degraded}\n"
                 "conditions: [{type: SyncFailed, status: 'True', reason: Apply, message: field manager conflict}]\n");
  Ran r = Gantry({"app", "list"});
  ASSERT_EQ(r.code, kExitOk) << r;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << r;
  EXPECT_THAT(lines[0], StartsWith("NAME"));
  EXPECT_THAT(lines[1], StartsWith("api "));
  EXPECT_THAT(lines[1], HasSubstr("Synced"));
  EXPECT_THAT(lines[1], HasSubstr("Healthy"));
  EXPECT_THAT(lines[1], HasSubstr("0123456789ab "));  // 12 characters of the revision
  EXPECT_THAT(lines[2], StartsWith("web "));
  EXPECT_THAT(lines[2], HasSubstr("OutOfSync"));
  EXPECT_THAT(lines[2], HasSubstr("field manager conflict"));

  kube_.FailNext("list", UnavailableError("apiserver went away"));
  r = Gantry({"app", "list"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_EQ(r.err, "error: list gantry.dev/v1alpha1 Application: apiserver went away\n");
}

TEST_F(AppCommandTest, SyncAndRefreshAnnotateTheApplicationWithTheTime) {
  AddApplication("web", "");
  clock_.Advance(std::chrono::hours(24 * 365 * 50));
  Ran r = Gantry({"app", "sync", "web"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "sync requested for Application default/web\n");
  auto app = kube_.Get({"gantry.dev/v1alpha1", "Application", "default", "web"});
  ASSERT_TRUE(app.ok());
  std::string requested = value::StringAt(&*app, {"metadata", "annotations", "gantry.dev/sync-requested"});
  EXPECT_THAT(requested, StartsWith(Rfc3339(clock_.WallNow()) + "/"));
  EXPECT_EQ(value::StringAt(&*app, {"spec", "source", "path"}), ".");  // the spec is left alone

  r = Gantry({"app", "refresh", "web"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "refresh requested for Application default/web\n");
  app = kube_.Get({"gantry.dev/v1alpha1", "Application", "default", "web"});
  EXPECT_NE(value::StringAt(&*app, {"metadata", "annotations", "gantry.dev/refresh-requested"}), "");
}

TEST_F(AppCommandTest, ConfirmPruneApprovesWithTheTimeAndRequestsASync) {
  AddApplication("web", "");
  clock_.Advance(std::chrono::hours(24 * 365 * 50));
  Ran r = Gantry({"app", "confirm-prune", "web"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "prune confirmation and sync requested for Application default/web\n");
  auto app = kube_.Get({"gantry.dev/v1alpha1", "Application", "default", "web"});
  ASSERT_TRUE(app.ok());
  EXPECT_EQ(value::StringAt(&*app, {"metadata", "annotations", "gantry.dev/prune-approved"}), Rfc3339(clock_.WallNow()));
  EXPECT_THAT(value::StringAt(&*app, {"metadata", "annotations", "gantry.dev/sync-requested"}),
              StartsWith(Rfc3339(clock_.WallNow()) + "/"));
}

TEST_F(AppCommandTest, RequestsForAMissingApplicationExitOneOtherErrorsThree) {
  Ran r = Gantry({"app", "sync", "nope"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.err, HasSubstr("nope"));
  EXPECT_EQ(kube_.count("apply"), 0u);

  AddApplication("web", "");
  kube_.FailNext("get", UnavailableError("apiserver went away"));
  EXPECT_EQ(Gantry({"app", "refresh", "web"}).code, kExitError);
  kube_.FailNext("apply", PermissionDeniedError("forbidden"));
  r = Gantry({"app", "sync", "web"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_EQ(r.err, "error: apply gantry.dev/v1alpha1 Application default/web: forbidden\n");
  connect_error_ = NotFoundError("no kubeconfig");
  EXPECT_EQ(Gantry({"app", "list"}).code, kExitError);

  EXPECT_EQ(Gantry({"app"}).code, kExitUsage);
  EXPECT_EQ(Gantry({"app", "sync"}).code, kExitUsage);
}

// ---- update ----

constexpr std::string_view kDeployment = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.local/web:1.0.0
)";

TEST_F(CommandsTest, UpdateDirectoryRewritesAndPrintsEachChange) {
  Write("envs/dev/deploy.yaml", kDeployment);
  Ran r = Gantry({"update", "--dir", Path("envs"), "--image", "registry.local/web=registry.local/web:2.0.0", "--dry-run"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "dev/deploy.yaml:10:18: image: registry.local/web:1.0.0 → registry.local/web:2.0.0\n");
  EXPECT_EQ(r.err, "would make 1 change in 1 file\n");
  EXPECT_EQ(Read("envs/dev/deploy.yaml"), kDeployment);

  r = Gantry({"update", "--dir", Path("envs"), "--image", "registry.local/web=registry.local/web:2.0.0"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.err, "made 1 change in 1 file\n");
  EXPECT_THAT(Read("envs/dev/deploy.yaml"), HasSubstr("image: registry.local/web:2.0.0\n"));

  r = Gantry({"update", "--dir", Path("envs"), "--image", "registry.local/web=registry.local/web:2.0.0"});
  ASSERT_EQ(r.code, kExitOk) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "made 0 changes in 0 files\n");
}

TEST_F(CommandsTest, UpdateSkipsUnparsableFilesAndExitsOne) {
  Write("envs/broken.yaml", "image: registry.local/web:1.0.0\n  bad: [indent\n");
  Write("envs/deploy.yaml", kDeployment);
  Ran r = Gantry({"update", "--dir", Path("envs"), "--image", "registry.local/web=registry.local/web:2.0.0"});
  EXPECT_EQ(r.code, kExitFailed) << r;
  EXPECT_THAT(r.err, HasSubstr("warning: skipped broken.yaml"));
  EXPECT_THAT(r.err, HasSubstr("error: 1 YAML file could not be parsed"));
  EXPECT_THAT(Read("envs/deploy.yaml"), HasSubstr("registry.local/web:2.0.0"));
}

TEST_F(CommandsTest, UpdateUsageErrorsExitTwo) {
  Write("envs/deploy.yaml", kDeployment);
  std::string rule = "registry.local/web=registry.local/web:2.0.0";
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  std::vector<Case> cases = {
      {{"update", "--image", rule}, "give either --dir DIR or --repo URL"},
      {{"update", "--dir", Path("envs"), "--repo", "https://git.example/c.git", "--image", rule}, "give either"},
      {{"update", "--dir", Path("envs")}, "give at least one --image"},
      {{"update", "--dir", Path("envs"), "--image", "no-equals-sign"}, "no-equals-sign"},
      {{"update", "--dir", Path("envs"), "--helm-keys", "only", "--image", rule}, "--helm-keys \"only\""},
      {{"update", "--dir", Path("envs"), "--policy", "=registry.local/web:2"}, "--policy"},
      {{"update", "--repo", "file:///tmp/config.git", "--image", rule}, "--repo"},
      {{"update", "--repo", "https://git.example/c.git", "--branch", "a..b", "--image", rule}, "--branch"},
      {{"update", "--repo", "https://git.example/c.git", "--author", "nobody", "--image", rule}, "--author \"nobody\""},
      {{"update", "--repo", "https://git.example/c.git", "--message", "{{nope}}", "--image", rule}, "--message"},
  };
  for (const Case& c : cases) {
    Ran r = Gantry(c.args);
    EXPECT_EQ(r.code, kExitUsage) << fmt::format("{}", fmt::join(c.args, " ")) << "\n" << r;
    EXPECT_THAT(r.err, HasSubstr(c.error)) << fmt::format("{}", fmt::join(c.args, " "));
  }
  EXPECT_EQ(Read("envs/deploy.yaml"), kDeployment);
}

TEST_F(CommandsTest, UpdateEnvironmentErrorsExitThree) {
  Ran r = Gantry({"update", "--dir", Path("missing"), "--image", "registry.local/web=registry.local/web:2.0.0"});
  EXPECT_EQ(r.code, kExitError) << r;
  EXPECT_THAT(r.err, HasSubstr("missing: no such directory"));
}

}  // namespace
}  // namespace gantry::cli
