// The delivery commands (cluster, env, deploy, approve, status, history, rollback), the CI commands
// (ci run, server, runs, logs) and the image commands, run through cli::Main on fakes: a
// FakeKubeClient behind every cluster connection, the real store on a temporary SQLite file, a
// FakeClock, and memory streams for what they print. Each test checks the exit code and output a
// user sees.

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/testing.h"
#include "cli/cluster.h"
#include "cli/deps.h"
#include "store/store.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using Outcome = Ran;

class CommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cli_delivery_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ::unsetenv("GANTRY_HOME");
    ::unsetenv("GANTRY_DB");
    deps_.connect = [this](const ClusterFlags& flags, kube::RestConfig* config) -> Result<std::unique_ptr<kube::Client>> {
      if (!connect_error_.ok()) return connect_error_;
      config->namespace_ = flags.namespace_;
      return fakes::ForwardingKubeClient::To(kube_);
    };
    deps_.connect_cluster = [this](const deliver::Cluster& c,
                                   const deliver::ConnectOptions&) -> Result<std::unique_ptr<kube::Client>> {
      if (!connect_error_.ok()) return connect_error_.WithContext("cluster " + c.name);
      connected_.push_back(c.name);
      return fakes::ForwardingKubeClient::To(kube_);
    };
    deps_.open_store = [this](std::string_view url) -> Result<std::unique_ptr<store::Store>> {
      if (!store_error_.ok()) return store_error_;
      opened_.emplace_back(url);
      return store::Open(url);
    };
    deps_.clock = &clock_;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `gantry ARGS...` and returns its exit code and output.
  Outcome Run(std::vector<std::string> args) { return RunForTest(std::move(args), deps_); }
  // The same with --state-dir of this test.
  Outcome State(std::vector<std::string> args) {
    args.push_back("--state-dir");
    args.push_back((dir_ / "state").string());
    return Run(std::move(args));
  }
  void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  // A config directory with a ConfigMap for each environment.
  fs::path ConfigDir(const std::string& data) {
    fs::path config = dir_ / "config";
    for (const char* env : {"dev", "prod"}) {
      Write(config / "envs" / env / "web.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: " + std::string(env) +
                "\ndata:\n  value: " + data + "\n");
    }
    return config;
  }
  // dev (cluster dev-1) then prod (cluster prod-1, approval gate).
  void TwoEnvironments() {
    Write(dir_ / "kubeconfig", "not read: the clusters are fakes\n");
    for (auto [cluster, env] : {std::pair{"dev-1", "dev"}, std::pair{"prod-1", "prod"}}) {
      Outcome added = State({"cluster", "add", cluster, "--kubeconfig", (dir_ / "kubeconfig").string(), "--env", env,
                             "--reference"});
      ASSERT_EQ(added.code, 0) << added.err;
    }
    ASSERT_EQ(State({"env", "add", "dev"}).code, 0);
    Outcome prod = State({"env", "add", "prod", "--after", "dev", "--approval"});
    ASSERT_EQ(prod.code, 0) << prod.err;
  }
  std::string ConfigMap(const std::string& ns) {
    auto cm = kube_->Get({.api_version = "v1", .kind = "ConfigMap", .namespace_ = ns, .name = "web"});
    if (!cm.ok()) return "";
    const value::Value* data = cm->Get("data");
    const value::Value* v = data != nullptr ? data->Get("value") : nullptr;
    return v != nullptr && v->IsString() ? std::string(v->AsString()) : "";
  }

  fs::path dir_;
  Deps deps_;
  FakeClock clock_;
  std::shared_ptr<fakes::FakeKubeClient> kube_ = std::make_shared<fakes::FakeKubeClient>();
  Status connect_error_;
  Status store_error_;
  std::vector<std::string> connected_;
  std::vector<std::string> opened_;
};

// ---------------------------------------------------------------------------------------------
// cluster, env

TEST_F(CommandTest, ClusterAddChecksTheClusterSavesItAndListAndRemoveSeeIt) {
  Write(dir_ / "kubeconfig", "x\n");
  Outcome added = State({"cluster", "add", "eu-1", "--kubeconfig", (dir_ / "kubeconfig").string(), "--env", "prod",
                         "--label", "region=eu", "--reference"});
  ASSERT_EQ(added.code, 0) << added.err;
  EXPECT_EQ(added.out, "cluster eu-1 added to environment prod (reachable)\n");
  EXPECT_EQ(connected_, std::vector<std::string>{"eu-1"});
  EXPECT_TRUE(fs::exists(dir_ / "state" / "config" / "cluster-eu-1.yaml"));

  Outcome listed = State({"cluster", "list"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("NAME  ENVIRONMENT  MODE"));
  EXPECT_THAT(listed.out, HasSubstr("eu-1  prod         push  -"));
  EXPECT_THAT(listed.out, HasSubstr("region=eu"));

  Outcome again = State({"cluster", "add", "eu-1", "--kubeconfig", (dir_ / "kubeconfig").string(), "--env", "prod",
                         "--reference"});
  EXPECT_EQ(again.code, 3);
  EXPECT_EQ(again.err, "error: cluster eu-1 exists; remove it first\n");

  Outcome removed = State({"cluster", "remove", "eu-1"});
  EXPECT_EQ(removed.code, 0) << removed.err;
  EXPECT_EQ(removed.out, "cluster eu-1 removed\n");
  Outcome gone = State({"cluster", "remove", "eu-1"});
  EXPECT_EQ(gone.code, 3);
  EXPECT_THAT(gone.err, HasSubstr("error: no cluster eu-1 in "));
}

TEST_F(CommandTest, ClusterAddRefusesBadFlagsAsUsageAndAnUnreachableClusterAsEnvironment) {
  Outcome label = State({"cluster", "add", "eu-1", "--kubeconfig", "k", "--env", "prod", "--label", "region"});
  EXPECT_EQ(label.code, 2);
  EXPECT_EQ(label.err, "error: --label \"region\": expected key=value\n");
  Outcome name = State({"cluster", "add", "Not_A_Name", "--kubeconfig", "k", "--env", "prod"});
  EXPECT_EQ(name.code, 2) << name.err;
  EXPECT_TRUE(connected_.empty()) << "usage errors are caught before anything runs";

  connect_error_ = UnavailableError("cannot reach https://10.0.0.1:6443: connection refused");
  Outcome down = State({"cluster", "add", "eu-1", "--kubeconfig", "k", "--env", "prod", "--reference"});
  EXPECT_EQ(down.code, 3);
  EXPECT_EQ(down.err, "error: cluster eu-1: cannot reach https://10.0.0.1:6443: connection refused\n");
  EXPECT_FALSE(fs::exists(dir_ / "state" / "config" / "cluster-eu-1.yaml"));
}

TEST_F(CommandTest, EnvAddKeepsThePromotionOrderValidAndListShowsItWithGates) {
  ASSERT_EQ(State({"env", "add", "dev"}).code, 0);
  Outcome prod = State({"env", "add", "prod", "--after", "dev", "--approval", "--soak", "10m"});
  ASSERT_EQ(prod.code, 0) << prod.err;
  EXPECT_EQ(prod.out, "environment prod saved\n");

  Outcome listed = State({"env", "list"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_EQ(listed.out,
            "ENVIRONMENT  AFTER  CLUSTERS  GATES\n"
            "dev          -                healthy\n"
            "prod         dev              healthy,approval,soak 600s\n");

  Outcome unknown = State({"env", "add", "qa", "--after", "nope"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("names unknown environment \"nope\""));
  Outcome cycle = State({"env", "add", "dev", "--after", "prod"});
  EXPECT_EQ(cycle.code, 2);
  EXPECT_THAT(cycle.err, HasSubstr("error: "));
  Outcome soak = State({"env", "add", "qa", "--soak", "soon"});
  EXPECT_EQ(soak.code, 2);
  EXPECT_THAT(soak.err, HasSubstr("--soak"));
  EXPECT_FALSE(fs::exists(dir_ / "state" / "config" / "environment-qa.yaml"));

  Outcome read_only = Run({"env", "add", "qa", "--config", (dir_ / "state" / "config").string()});
  EXPECT_EQ(read_only.code, 3);
  EXPECT_THAT(read_only.err, HasSubstr("is read-only here: edit its files instead"));

  EXPECT_EQ(State({"env", "remove", "prod"}).code, 0);
  Outcome gone = State({"env", "remove", "prod"});
  EXPECT_EQ(gone.code, 3);
  EXPECT_EQ(gone.err, "error: no environment prod\n");
}

// ---------------------------------------------------------------------------------------------
// deploy, approve, status, history, rollback

TEST_F(CommandTest, DeployWaitsForApprovalWithExit4ThenApproveAndResumeFinishIt) {
  TwoEnvironments();
  fs::path config = ConfigDir("one");
  Outcome first = State({"deploy", "web", "--revision", "v1", "--dir", config.string()});
  EXPECT_EQ(first.code, 4) << first.out << first.err;
  EXPECT_THAT(first.out, HasSubstr("==> "));
  EXPECT_THAT(first.out, HasSubstr("release 1: "));
  EXPECT_THAT(first.err, HasSubstr("error: release 1 of web: WaitingApproval"));
  EXPECT_EQ(ConfigMap("dev"), "one");
  EXPECT_EQ(ConfigMap("prod"), "") << "prod has an approval gate";

  Outcome approved = State({"approve", "web", "--env", "prod"});
  ASSERT_EQ(approved.code, 0) << approved.err;
  EXPECT_EQ(approved.out, "release 1 of web approved for prod; continue with: gantry deploy web --resume\n");

  Outcome resumed = State({"deploy", "web", "--resume", "--dir", config.string()});
  EXPECT_EQ(resumed.code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(ConfigMap("prod"), "one");
  EXPECT_THAT(resumed.out, HasSubstr("ENVIRONMENT  CLUSTER  STATE"));

  Outcome history = State({"history", "web"});
  ASSERT_EQ(history.code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("RELEASE  CREATED"));
  EXPECT_THAT(history.out, HasSubstr("dev/dev-1=healthy"));
  EXPECT_THAT(history.out, HasSubstr("prod/prod-1=healthy"));

  Outcome status = State({"status", "web"});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("web  dev          dev-1    push"));
  EXPECT_THAT(status.out, HasSubstr("up to date"));
}

TEST_F(CommandTest, RollbackGoesBackToThePreviousRelease) {
  TwoEnvironments();
  ASSERT_EQ(State({"deploy", "web", "--revision", "v1", "--dir", ConfigDir("one").string(), "--env", "dev"}).code, 0);
  ASSERT_EQ(State({"deploy", "web", "--revision", "v2", "--dir", ConfigDir("two").string(), "--env", "dev"}).code, 0);
  EXPECT_EQ(ConfigMap("dev"), "two");
  // A directory holds one revision: going back to v1 needs it (or a Git repository).
  Outcome dir_mismatch = State({"rollback", "web", "--env", "dev", "--dir", ConfigDir("one").string()});
  EXPECT_EQ(dir_mismatch.code, 0) << dir_mismatch.out << dir_mismatch.err;
  EXPECT_EQ(ConfigMap("dev"), "one");
  Outcome usage = State({"rollback", "web", "--env", "dev"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_EQ(usage.err, "error: give exactly one of --repo URL and --dir DIR\n");
}

// Without --server the push commands act as the local operator: each leaves one audit row in
// the ledger (source cli), refusals included.
TEST_F(CommandTest, EveryLocalDeployApproveResumeAndRollbackLeavesOneAuditRow) {
  TwoEnvironments();
  Write(dir_ / "state" / "config" / "project-team-c.yaml",
        "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-c}\n"
        "spec:\n  destinations: [{name: \"*\", namespace: \"*\"}]\n  credentials: [dev-*]\n");
  fs::path config = ConfigDir("one");
  EXPECT_EQ(State({"deploy", "web", "--revision", "v1", "--dir", config.string()}).code, 4);
  EXPECT_EQ(State({"approve", "web", "--env", "prod"}).code, 0);
  EXPECT_EQ(State({"deploy", "web", "--resume", "--dir", config.string()}).code, 0);
  EXPECT_EQ(State({"deploy", "web", "--revision", "v2", "--dir", ConfigDir("two").string(), "--env", "dev"}).code, 0);
  EXPECT_EQ(State({"rollback", "web", "--env", "dev", "--dir", config.string()}).code, 0);
  Outcome refused = State({"deploy", "api", "--revision", "v1", "--dir", config.string(), "--project", "team-c"});
  EXPECT_EQ(refused.code, 3) << refused.err;
  EXPECT_EQ(refused.err, "error: deploy: cluster prod-1: project team-c: credentials does not allow credential prod-1 "
                         "(it lists dev-*)\n");

  auto store = store::Open("sqlite://" + (dir_ / "state" / "gantry.db").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::vector<std::string> rows;
  auto audit = (*store)->ListAudit(100);
  ASSERT_TRUE(audit.ok()) << audit.status().ToString();
  for (const auto& a : *audit) {
    if (a.source != "cli") continue;
    EXPECT_EQ(a.actor.rfind("local:", 0), 0u) << a.actor;
    rows.insert(rows.begin(), fmt::format("{} {} {}: {}", a.action, a.object, a.project, a.result));
  }
  EXPECT_EQ(rows, (std::vector<std::string>{
                      "apps.deploy app web default: FailedPrecondition: release 1 of web: WaitingApproval",
                      "releases.approve app web default: ok",
                      "apps.resume app web default: ok",
                      "apps.deploy app web default: ok",
                      "apps.rollback app web default: ok",
                      "apps.deploy app api team-c: PermissionDenied: deploy: cluster prod-1: project team-c: credentials "
                      "does not allow credential prod-1 (it lists dev-*)",
                  }));
}

TEST_F(CommandTest, DeployUsageErrorsComeBeforeAnythingRuns) {
  fs::path config = ConfigDir("one");
  Outcome no_revision = State({"deploy", "web", "--dir", config.string()});
  EXPECT_EQ(no_revision.code, 2);
  EXPECT_EQ(no_revision.err, "error: --revision is required (or --resume)\n");
  Outcome both = State({"deploy", "web", "--revision", "v1", "--dir", config.string(), "--repo", "https://x/y.git"});
  EXPECT_EQ(both.code, 2);
  Outcome timeout = State({"deploy", "web", "--revision", "v1", "--dir", config.string(), "--timeout", "later"});
  EXPECT_EQ(timeout.code, 2);
  EXPECT_THAT(timeout.err, HasSubstr("--timeout"));
  Outcome digest = State({"deploy", "web", "--revision", "v1", "--dir", config.string(), "--image-digest", "web"});
  EXPECT_EQ(digest.code, 2);
  EXPECT_EQ(digest.err, "error: --image-digest \"web\": expected IMAGE=sha256:...\n");
  Outcome parse = State({"deploy", "web", "--revision", "v1", "--dir", config.string(), "--env", "a", "--through", "b"});
  EXPECT_EQ(parse.code, 2);
  EXPECT_TRUE(opened_.empty()) << "the ledger was opened for a usage error";
}

TEST_F(CommandTest, AnUnreachableLedgerIsAnEnvironmentError) {
  store_error_ = UnavailableError("connect postgresql://db/gantry: connection refused");
  for (std::vector<std::string> args : {std::vector<std::string>{"history", "web"}, {"status"},
                                        {"approve", "web", "--env", "prod"}}) {
    Outcome o = State(args);
    EXPECT_EQ(o.code, 3) << args[0];
    EXPECT_EQ(o.err, "error: connect postgresql://db/gantry: connection refused\n") << args[0];
  }
  Outcome nothing = Run({"history", "web", "--db", "sqlite://" + (dir_ / "x.db").string()});
  EXPECT_EQ(nothing.code, 3);
}

TEST_F(CommandTest, ApproveWithoutReleasesSaysSo) {
  Outcome o = State({"approve", "web", "--env", "prod"});
  EXPECT_EQ(o.code, 3);
  EXPECT_EQ(o.err, "error: web has no releases\n");
  EXPECT_EQ(opened_.size(), 1u);
  EXPECT_EQ(opened_[0], "sqlite://" + (dir_ / "state" / "gantry.db").string());
}

// ---------------------------------------------------------------------------------------------
// ci run, server, runs, logs

class CiRunTest : public CommandTest {
 protected:
  void Pipeline(const std::string& steps) {
    Write(dir_ / "repo" / ".gantry" / "pipeline.yaml", "name: demo\nsteps:\n" + steps);
  }
  Outcome CiRun(std::vector<std::string> args) {
    args.insert(args.begin(), {"ci", "run", (dir_ / "repo").string()});
    return Run(std::move(args));
  }
};

TEST_F(CiRunTest, EveryStepSucceedingIsExit0AndAFailedStepExit1WithTheTable) {
  Pipeline("  hello:\n    run: [sh, -c, \"echo hi\"]\n");
  Outcome ok = CiRun({"--no-sandbox"});
  ASSERT_EQ(ok.code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("▶ hello started\n"));
  EXPECT_THAT(ok.out, HasSubstr("  hello │ hi\n"));
  EXPECT_THAT(ok.out, HasSubstr("STEP   STATE       DURATION   RESULT\n"));
  EXPECT_THAT(ok.out, HasSubstr("pipeline demo succeeded in "));
  EXPECT_EQ(ok.err, "");

  Pipeline("  hello:\n    run: [sh, -c, \"echo hi\"]\n  bad:\n    run: [sh, -c, \"exit 2\"]\n");
  Outcome failed = CiRun({"--no-sandbox", "--quiet"});
  EXPECT_EQ(failed.code, 1) << failed.out << failed.err;
  EXPECT_THAT(failed.out, HasSubstr("✘ bad failed in "));
  EXPECT_THAT(failed.out, Not(HasSubstr("│ hi")));
  EXPECT_THAT(failed.out, HasSubstr("pipeline demo failed in "));
  EXPECT_EQ(failed.err, "error: pipeline demo failed\n");
}

TEST_F(CiRunTest, BadFlagsAreUsageAndABadPipelineOrEnvironmentExit3) {
  Pipeline("  hello:\n    run: [sh, -c, \"echo hi\"]\n");
  Outcome kube_flag = CiRun({"--namespace", "ci"});
  EXPECT_EQ(kube_flag.code, 2);
  EXPECT_EQ(kube_flag.err, "error: --namespace is for the kube executor: add --executor kube\n");
  Outcome relative = CiRun({"--sandbox-path", "opt/jdk"});
  EXPECT_EQ(relative.code, 2);
  Outcome sandbox = CiRun({"--executor", "kube", "--no-sandbox"});
  EXPECT_EQ(sandbox.code, 2);
  Outcome event = CiRun({"--event", "nightly"});
  EXPECT_EQ(event.code, 2);

  Outcome secret = CiRun({"--no-sandbox", "--secret-env", "GANTRY_TEST_NOT_SET_ANYWHERE"});
  EXPECT_EQ(secret.code, 3);
  EXPECT_EQ(secret.err, "error: --secret-env GANTRY_TEST_NOT_SET_ANYWHERE: the variable is not set\n");

  connect_error_ = NotFoundError("context \"ci\" not found in /home/me/.kube/config");
  Outcome kube = CiRun({"--executor", "kube", "--context", "ci"});
  EXPECT_EQ(kube.code, 3);
  EXPECT_EQ(kube.err, "error: context \"ci\" not found in /home/me/.kube/config\n");

  Pipeline("  - hello\n");
  Outcome bad = CiRun({"--no-sandbox"});
  EXPECT_EQ(bad.code, 3);
  EXPECT_THAT(bad.err, HasSubstr("error: .gantry/pipeline.yaml:"));
  Outcome missing = Run({"ci", "run", (dir_ / "nothing").string()});
  EXPECT_EQ(missing.code, 3);
  EXPECT_THAT(missing.err, HasSubstr((dir_ / "nothing" / ".gantry" / "pipeline.yaml").string()));
}

TEST_F(CommandTest, ServerRefusesBadFlagsAsUsageAndAnUnopenableStoreAsEnvironment) {
  const std::string data = (dir_ / "data").string();
  Outcome listen = Run({"server", "--listen", ":abc", "--repo", "file:///r", "--webhook-secret-env", "X"});
  EXPECT_EQ(listen.code, 2);
  EXPECT_THAT(listen.err, HasSubstr("--listen"));
  Outcome unsigned_hooks = Run({"server", "--repo", "file:///r", "--webhook-secret-env", "GANTRY_TEST_NOT_SET_ANYWHERE",
                                "--data-dir", data});
  EXPECT_EQ(unsigned_hooks.code, 2);
  EXPECT_EQ(unsigned_hooks.err,
            "error: --webhook-secret-env must name a set, non-empty variable (unsigned webhooks are refused)\n");
  ::setenv("GANTRY_TEST_WEBHOOK_SECRET", "s3cret", 1);
  Outcome poll = Run({"server", "--repo", "file:///r", "--webhook-secret-env", "GANTRY_TEST_WEBHOOK_SECRET", "--poll",
                      "often", "--data-dir", data});
  EXPECT_EQ(poll.code, 2);
  EXPECT_EQ(poll.err, "error: --poll \"often\": expected a duration such as 60s\n");
  Outcome policy = Run({"server", "--repo", "file:///r", "--webhook-secret-env", "GANTRY_TEST_WEBHOOK_SECRET",
                        "--repo-policy", "file:///other approval=none", "--data-dir", data});
  EXPECT_EQ(policy.code, 2);
  EXPECT_EQ(policy.err, "error: --repo-policy file:///other: not a --repo\n");
  Outcome notify = Run({"server", "--repo", "file:///r", "--webhook-secret-env", "GANTRY_TEST_WEBHOOK_SECRET",
                        "--notify", "http://agent/webhook", "--data-dir", data});
  EXPECT_EQ(notify.code, 2);
  EXPECT_THAT(notify.err, HasSubstr("--notify needs --notify-secret-env"));
  EXPECT_TRUE(opened_.empty()) << "usage errors are caught before the store is opened";

  store_error_ = UnavailableError("connection refused");
  Outcome store = Run({"server", "--repo", "file:///r", "--webhook-secret-env", "GANTRY_TEST_WEBHOOK_SECRET",
                       "--store", "postgresql://gantry:hunter2@db/gantry", "--data-dir", data, "--listen",
                       "127.0.0.1:0"});
  EXPECT_EQ(store.code, 3);
  EXPECT_THAT(store.err, HasSubstr("error: store postgresql://gantry:"));
  EXPECT_THAT(store.err, HasSubstr("connection refused"));
  EXPECT_THAT(store.err, Not(HasSubstr("hunter2")));
  EXPECT_THAT(store.out, HasSubstr("the REST API's token is in " + data + "/api-token"));
  ::unsetenv("GANTRY_TEST_WEBHOOK_SECRET");
}

TEST_F(CommandTest, RunsAndLogsOfAnUnreachableServerExit3) {
  for (std::vector<std::string> args : {std::vector<std::string>{"runs"}, {"runs", "approve", "7"}, {"logs", "7"}}) {
    args.insert(args.end(), {"--server", "127.0.0.1:1"});
    Outcome o = Run(args);
    EXPECT_EQ(o.code, 3) << args[0];
    EXPECT_THAT(o.err, HasSubstr("error: "));
    EXPECT_THAT(o.err, HasSubstr("127.0.0.1:1"));
  }
  Outcome approve = Run({"runs", "approve", "7", "--server", "127.0.0.1:1"});
  EXPECT_THAT(approve.err, HasSubstr("error: approve run 7: "));
  EXPECT_EQ(Run({"logs", "--server", "127.0.0.1:1"}).code, 2) << "the run id is required";
}

// ---------------------------------------------------------------------------------------------
// image

TEST_F(CommandTest, ImageBuildAndUnpackUsageIs2AndTheirFailuresExit1) {
  Write(dir_ / "app" / "index.html", "hello\n");
  Outcome output = Run({"image", "build", "--layer", (dir_ / "app").string(), "--output", (dir_ / "out").string()});
  EXPECT_EQ(output.code, 2);
  EXPECT_THAT(output.err, HasSubstr("error: --output: "));
  Outcome label = Run({"image", "build", "--layer", (dir_ / "app").string(), "--label", "x", "--output",
                       "oci:" + (dir_ / "out").string()});
  EXPECT_EQ(label.code, 2);
  EXPECT_EQ(label.err, "error: --label \"x\": expected KEY=VALUE\n");

  Outcome built = Run({"image", "build", "--layer", (dir_ / "app").string() + ":/srv", "--output",
                       "oci:" + (dir_ / "out").string() + ":v1", "--digest-file", (dir_ / "digest").string()});
  ASSERT_EQ(built.code, 0) << built.err;
  EXPECT_THAT(built.out, HasSubstr("sha256:"));
  std::ifstream digest(dir_ / "digest");
  std::string written;
  std::getline(digest, written);
  EXPECT_EQ(built.out, written + "\n");

  Outcome unpacked = Run({"image", "unpack", "oci:" + (dir_ / "out").string() + ":v1", (dir_ / "root").string()});
  ASSERT_EQ(unpacked.code, 0) << unpacked.err;
  EXPECT_THAT(unpacked.out, HasSubstr(" entries, "));
  EXPECT_TRUE(fs::exists(dir_ / "root" / "srv" / "index.html"));

  Outcome bad_target = Run({"image", "unpack", (dir_ / "out").string(), (dir_ / "root").string()});
  EXPECT_EQ(bad_target.code, 2);
  Outcome missing = Run({"image", "unpack", "oci:" + (dir_ / "none").string(), (dir_ / "root").string()});
  EXPECT_EQ(missing.code, 1) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("error: "));
}

TEST_F(CommandTest, ImageRegistryCommandsRefuseBadReferencesAsUsage) {
  Outcome latest = Run({"image", "latest", "registry.test/web", "--semver", "^1", "--numerical"});
  EXPECT_EQ(latest.code, 2);
  EXPECT_EQ(latest.err, "error: give exactly one of --semver RANGE, --alphabetical, --numerical\n");
  Outcome extract = Run({"image", "latest", "registry.test/web", "--numerical", "--extract", "$ts"});
  EXPECT_EQ(extract.code, 2);
  Outcome push = Run({"image", "push", (dir_ / "out").string(), "registry.test/web:v1"});
  EXPECT_EQ(push.code, 2);
  Outcome pair = Run({"image", "tags", "registry.test/web", "--username", "me"});
  EXPECT_EQ(pair.code, 2);
  EXPECT_EQ(pair.err, "error: --username and --password-stdin go together\n");
  Outcome inspect = Run({"image", "inspect", "oci:" + (dir_ / "none").string()});
  EXPECT_EQ(inspect.code, 3);
}

TEST_F(CommandTest, PushArtifactRefusesBadInputAsUsageBeforeContactingTheRegistry) {
  fs::create_directories(dir_ / "manifests");
  std::ofstream(dir_ / "manifests" / "cm.yaml") << "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
  const std::string dir = (dir_ / "manifests").string();
  Outcome digest = Run({"push", "artifact", dir, "oci://registry.test/cfg@sha256:" + std::string(64, 'a')});
  EXPECT_EQ(digest.code, 2);
  EXPECT_THAT(digest.err, HasSubstr("push to a tag"));
  Outcome type = Run({"push", "artifact", dir, "oci://registry.test/cfg:v1", "--layer-media-type", "zip"});
  EXPECT_EQ(type.code, 2);
  Outcome annotation = Run({"push", "artifact", dir, "oci://registry.test/cfg:v1", "--annotation", "novalue"});
  EXPECT_EQ(annotation.code, 2);
  EXPECT_THAT(annotation.err, HasSubstr("--annotation \"novalue\": want key=value"));
  Outcome missing = Run({"push", "artifact", (dir_ / "none").string(), "oci://registry.test/cfg:v1"});
  EXPECT_EQ(missing.code, 2);
  fs::create_symlink("cm.yaml", dir_ / "manifests" / "link.yaml");
  Outcome link = Run({"push", "artifact", dir, "oci://registry.test/cfg:v1"});
  EXPECT_EQ(link.code, 2) << link.err;
  EXPECT_THAT(link.err, HasSubstr("link.yaml: a symlink"));
}

}  // namespace
}  // namespace gantry::cli
