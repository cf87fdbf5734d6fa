// The contract of store::Store: one suite, run against SQLite (a file in a temp dir) and PostgreSQL
// (a fresh database per test on the server of test/env/postgres.sh).

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/store.h"
#include "test/env/testenv.h"
#include "test/fakes/stepped_clock.h"

namespace gantry::store {
namespace {

using namespace std::chrono_literals;

#define ASSERT_OK(expr)                                                                \
  do {                                                                                 \
    auto&& v_ = (expr);                                                                \
    const ::gantry::Status& s_ = ::gantry::internal::GetStatus(v_);                    \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString();                            \
  } while (0)
#define EXPECT_OK(expr)                                                                \
  do {                                                                                 \
    auto&& v_ = (expr);                                                                \
    const ::gantry::Status& s_ = ::gantry::internal::GetStatus(v_);                    \
    EXPECT_TRUE(s_.ok()) << #expr << ": " << s_.ToString();                            \
  } while (0)
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                                \
  auto GANTRY_CONCAT(r_, __LINE__) = (expr);                                           \
  ASSERT_TRUE(GANTRY_CONCAT(r_, __LINE__).ok())                                        \
      << #expr << ": " << GANTRY_CONCAT(r_, __LINE__).status().ToString();             \
  lhs = std::move(GANTRY_CONCAT(r_, __LINE__)).value()
#define EXPECT_CODE(expr, want)                                                        \
  do {                                                                                 \
    auto&& v_ = (expr);                                                                \
    const ::gantry::Status& s_ = ::gantry::internal::GetStatus(v_);                    \
    EXPECT_EQ(s_.code(), want) << #expr << ": " << s_.ToString();                      \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Backends: each makes fresh databases and can break the connections to them.

class SqliteBackend {
 public:
  static constexpr const char* kName = "Sqlite";
  std::string NewDatabase() {
    return "sqlite://" + dir_.path() + "/db" + std::to_string(++n_) + ".db";
  }
  void BreakConnections() {}  // a file has no connection to lose
  void DropAll() {}           // the ScopedTempDir goes
  // Runs `sql` on the database at `url` behind the store's back: "" when it succeeded, else the
  // database's error message.
  static std::string Exec(const std::string& url, const std::string& sql) {
    sqlite3* db = nullptr;
    std::string error;
    if (sqlite3_open(url.substr(std::string_view("sqlite://").size()).c_str(), &db) != SQLITE_OK) {
      error = "cannot open";
    } else if (char* message = nullptr; sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      error = message != nullptr ? message : "failed";
      sqlite3_free(message);
    }
    sqlite3_close(db);
    return error;
  }

 private:
  testenv::ScopedTempDir dir_;
  int n_ = 0;
};

class PostgresBackend {
 public:
  static constexpr const char* kName = "Postgres";
  ~PostgresBackend() { DropAll(); }

  std::string NewDatabase() {
    static std::atomic<int> counter{0};
    const std::string name = "store_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    Admin("CREATE DATABASE " + name);
    names_.push_back(name);
    const std::string& admin = testenv::Shared("postgres.sh").Get("PG_URL");
    return admin.substr(0, admin.rfind('/') + 1) + name;
  }

  // Ends every server session of the databases made here, as a server restart would.
  void BreakConnections() {
    for (const std::string& name : names_) {
      Admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name +
            "' AND pid <> pg_backend_pid()");
    }
  }

  static std::string Exec(const std::string& url, const std::string& sql) {
    PGconn* conn = PQconnectdb(url.c_str());
    std::string error;
    if (PQstatus(conn) != CONNECTION_OK) {
      error = PQerrorMessage(conn);
    } else {
      PGresult* res = PQexec(conn, sql.c_str());
      if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        error = PQerrorMessage(conn);
      }
      PQclear(res);
    }
    PQfinish(conn);
    return error;
  }

  void DropAll() {
    for (const std::string& name : names_) {
      Admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    }
    names_.clear();
  }

 private:
  // Test-only SQL on the admin database; the names are made here, not taken from input.
  static void Admin(const std::string& sql) {
    PGconn* conn = PQconnectdb(testenv::Shared("postgres.sh").Get("PG_URL").c_str());
    ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
    PGresult* res = PQexec(conn, sql.c_str());
    EXPECT_TRUE(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
        << sql << ": " << PQerrorMessage(conn);
    PQclear(res);
    PQfinish(conn);
  }

  std::vector<std::string> names_;
};

template <typename B>
class StoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = backend_.NewDatabase();
    auto store = Open(url_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    backend_.DropAll();
  }

  Store& store() { return *store_; }

  int64_t NewRelease(const std::string& app, const std::string& rev = "abc") {
    auto id = store_->CreateRelease(
        {.app = app, .source_revision = rev, .config_revision = "cfg-" + rev});
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.value_or(0);
  }
  // Moves the target to `state` from whatever version it has (creating it).
  Target Set(int64_t release, const std::string& env, const std::string& cluster,
             TargetState state) {
    int64_t version = 0;
    auto targets = store_->ListTargets(release);
    EXPECT_TRUE(targets.ok());
    for (const Target& t : targets.value_or({})) {
      if (t.env == env && t.cluster == cluster) version = t.version;
    }
    auto t = store_->UpsertTarget({.release_id = release, .env = env, .cluster = cluster,
                                   .state = state, .version = version});
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.value_or(Target{});
  }
  // A run of a new commit (a run per (pipeline, repo, ref, commit, event)).
  int64_t NewRun(const std::string& pipeline = "shop/ci", const std::string& delivery = "") {
    auto id = store_->CreateRun({.repo = "https://git.example/shop.git", .pipeline = pipeline,
                                 .commit = "c0ffee" + std::to_string(++commits_),
                                 .ref = "refs/heads/main", .delivery_id = delivery});
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.value_or(0);
  }

  B backend_;
  int commits_ = 0;
  std::string url_;
  std::unique_ptr<Store> store_;
};

struct BackendName {
  template <typename B>
  static std::string GetName(int) {
    return B::kName;
  }
};
using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(StoreContractTest, Backends, BackendName);

// ---------------------------------------------------------------------------------------------
// Releases

TYPED_TEST(StoreContractTest, ReleasesRoundTripAndListNewestFirst) {
  Store& s = this->store();
  const Time before = std::chrono::system_clock::now();
  ASSERT_OK_AND_ASSIGN(int64_t run, s.CreateRun({.pipeline = "shop/ci", .commit = "c1"}));
  Release in{.app = "shop",
             .source_revision = "1111111",
             .config_revision = "2222222",
             .image_digests = {{"web", "sha256:aa"}, {"worker", "sha256:bb"}},
             .supply_chain = {{"web", {.signature = "sha256:51", .provenance = "sha256:a7", .sbom = "sha256:5b"}}},
             .started_by = "alice",
             .run_id = run,
             .note = "first ✓",
             .project = "team-a"};
  ASSERT_OK_AND_ASSIGN(int64_t first, s.CreateRelease(in));
  ASSERT_OK_AND_ASSIGN(Release got, s.GetRelease(first));
  EXPECT_EQ(got.id, first);
  EXPECT_EQ(got.app, "shop");
  EXPECT_EQ(got.source_revision, "1111111");
  EXPECT_EQ(got.config_revision, "2222222");
  EXPECT_EQ(got.image_digests, in.image_digests);
  EXPECT_EQ(got.supply_chain, in.supply_chain) << "the signed image's digests, none for the unsigned one";
  EXPECT_EQ(got.started_by, "alice");
  EXPECT_EQ(got.run_id, run);
  EXPECT_EQ(got.note, "first ✓");
  EXPECT_EQ(got.project, "team-a");
  EXPECT_GE(got.created_at + 1ms, before);
  EXPECT_LE(got.created_at, std::chrono::system_clock::now());

  const int64_t second = this->NewRelease("shop", "r2");
  this->NewRelease("other", "x");
  const int64_t third = this->NewRelease("shop", "r3");
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);

  ASSERT_OK_AND_ASSIGN(auto all, s.ListReleases("shop", 10));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, third);
  EXPECT_EQ(all[1].id, second);
  EXPECT_EQ(all[2].id, first);
  EXPECT_EQ(all[2].image_digests.at("worker"), "sha256:bb");
  EXPECT_FALSE(all[0].run_id.has_value());
  EXPECT_EQ(all[2].project, "team-a");
  EXPECT_EQ(all[0].project, "") << "no project: from before projects, or the default";

  EXPECT_EQ(all[2].supply_chain.at("web").sbom, "sha256:5b");
  Release stray = in;
  stray.supply_chain["db"] = {.signature = "sha256:cc"};
  auto refused = s.CreateRelease(stray);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << refused.status().ToString();

  ASSERT_OK_AND_ASSIGN(auto page, s.ListReleases("shop", 1, third));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].id, second);
  ASSERT_OK_AND_ASSIGN(auto none, s.ListReleases("nobody", 10));
  EXPECT_TRUE(none.empty());

  ASSERT_OK_AND_ASSIGN(auto apps, s.ListApps());
  EXPECT_EQ(apps, (std::vector<std::string>{"other", "shop"}));
}

TYPED_TEST(StoreContractTest, ReleaseErrors) {
  Store& s = this->store();
  EXPECT_CODE(s.GetRelease(424242), Code::kNotFound);
  EXPECT_CODE(s.CreateRelease({.app = ""}), Code::kInvalidArgument);
  auto bad_run = s.CreateRelease({.app = "shop", .run_id = 999});
  EXPECT_CODE(bad_run, Code::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto list, s.ListReleases("shop", 10));
  EXPECT_TRUE(list.empty()) << "a failed CreateRelease left a release behind";
  EXPECT_CODE(s.ListReleases("shop", 0), Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Deployments

TYPED_TEST(StoreContractTest, TargetsAreWrittenWithOptimisticConcurrency) {
  Store& s = this->store();
  const int64_t release = this->NewRelease("shop");
  Target t{.release_id = release, .env = "prod", .cluster = "eu-1", .state = TargetState::kPending};
  ASSERT_OK_AND_ASSIGN(Target created, s.UpsertTarget(t));
  EXPECT_EQ(created.version, 1);
  EXPECT_EQ(created.state, TargetState::kPending);
  EXPECT_FALSE(created.finished_at.has_value());
  EXPECT_CODE(s.UpsertTarget(t), Code::kAlreadyExists);

  t.state = TargetState::kApplying;
  t.version = 1;
  ASSERT_OK_AND_ASSIGN(Target applying, s.UpsertTarget(t));
  EXPECT_EQ(applying.version, 2);
  EXPECT_EQ(applying.created_at, created.created_at);

  // A second deployer that read version 1 loses.
  Target stale = t;
  stale.state = TargetState::kFailed;
  EXPECT_CODE(s.UpsertTarget(stale), Code::kAborted);

  t.state = TargetState::kHealthy;
  t.version = 2;
  t.message = "3/3 available";
  t.sync_result = R"({"applied":12,"pruned":0})";
  ASSERT_OK_AND_ASSIGN(Target healthy, s.UpsertTarget(t));
  EXPECT_EQ(healthy.version, 3);
  ASSERT_TRUE(healthy.finished_at.has_value());
  EXPECT_GE(healthy.updated_at, applying.updated_at);

  ASSERT_OK_AND_ASSIGN(Target other, s.UpsertTarget({.release_id = release, .env = "dev",
                                                     .cluster = "local",
                                                     .state = TargetState::kApplying}));
  EXPECT_EQ(other.version, 1);
  ASSERT_OK_AND_ASSIGN(auto targets, s.ListTargets(release));
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].env, "dev");
  EXPECT_EQ(targets[1].env, "prod");
  EXPECT_EQ(targets[1].message, "3/3 available");
  EXPECT_EQ(targets[1].sync_result, R"({"applied":12,"pruned":0})");
  EXPECT_EQ(targets[1].state, TargetState::kHealthy);
}

TYPED_TEST(StoreContractTest, TargetErrorsAndFinalStates) {
  Store& s = this->store();
  const int64_t release = this->NewRelease("shop");
  EXPECT_CODE(s.UpsertTarget({.release_id = 999, .env = "prod", .cluster = "c"}), Code::kNotFound);
  EXPECT_CODE(s.UpsertTarget({.release_id = release, .env = "prod", .cluster = "c", .version = 4}),
              Code::kNotFound);
  EXPECT_CODE(s.UpsertTarget({.release_id = release, .env = "", .cluster = "c"}),
              Code::kInvalidArgument);
  Target rolled = this->Set(release, "prod", "c", TargetState::kRolledBack);
  ASSERT_TRUE(rolled.finished_at.has_value());
  Status again = s.UpsertTarget({.release_id = release, .env = "prod", .cluster = "c",
                                 .state = TargetState::kApplying, .version = rolled.version})
                     .status();
  EXPECT_EQ(again.code(), Code::kFailedPrecondition) << again.ToString();
  EXPECT_NE(again.message().find("prod/c"), std::string::npos) << again.message();
  ASSERT_OK_AND_ASSIGN(auto targets, s.ListTargets(release));
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].state, TargetState::kRolledBack);
  ASSERT_OK_AND_ASSIGN(auto none, s.ListTargets(999));
  EXPECT_TRUE(none.empty());
}

TYPED_TEST(StoreContractTest, StatusShowsTheRunningReleaseAndHowFarBehindEachPlaceIs) {
  Store& s = this->store();
  const int64_t r1 = this->NewRelease("shop", "r1");
  const int64_t r2 = this->NewRelease("shop", "r2");
  this->NewRelease("other", "o1");  // another app's releases never count
  const int64_t r3 = this->NewRelease("shop", "r3");
  const int64_t r4 = this->NewRelease("shop", "r4");

  this->Set(r1, "dev", "k1", TargetState::kHealthy);
  this->Set(r2, "dev", "k1", TargetState::kHealthy);
  this->Set(r3, "dev", "k1", TargetState::kFailed);
  this->Set(r1, "prod", "eu", TargetState::kHealthy);
  this->Set(r2, "prod", "eu", TargetState::kPending);
  this->Set(r4, "staging", "k1", TargetState::kApplying);

  ASSERT_OK_AND_ASSIGN(auto status, s.CurrentByTarget("shop"));
  ASSERT_EQ(status.size(), 3u);
  EXPECT_EQ(status[0].env, "dev");
  ASSERT_TRUE(status[0].running.has_value());
  EXPECT_EQ(status[0].running->id, r2);
  EXPECT_EQ(status[0].running->source_revision, "r2");
  EXPECT_EQ(status[0].latest.id, r3);
  EXPECT_EQ(status[0].latest_target.state, TargetState::kFailed);
  EXPECT_EQ(status[0].behind, 2);  // r3, r4

  EXPECT_EQ(status[1].env, "prod");
  EXPECT_EQ(status[1].cluster, "eu");
  ASSERT_TRUE(status[1].running.has_value());
  EXPECT_EQ(status[1].running->id, r1);
  EXPECT_EQ(status[1].latest.id, r2);
  EXPECT_EQ(status[1].latest_target.state, TargetState::kPending);
  EXPECT_EQ(status[1].behind, 3);

  EXPECT_EQ(status[2].env, "staging");
  EXPECT_FALSE(status[2].running.has_value());
  EXPECT_EQ(status[2].latest.id, r4);
  EXPECT_EQ(status[2].behind, 4);

  ASSERT_OK_AND_ASSIGN(int64_t dev_behind, s.ReleasesBehind("shop", "dev", "k1"));
  EXPECT_EQ(dev_behind, 2);
  ASSERT_OK_AND_ASSIGN(int64_t nowhere, s.ReleasesBehind("shop", "qa", "k9"));
  EXPECT_EQ(nowhere, 4);

  // A rollback of dev to r1 marks r2 rolled back: r1 runs there again.
  this->Set(r2, "dev", "k1", TargetState::kRolledBack);
  ASSERT_OK_AND_ASSIGN(int64_t after_rollback, s.ReleasesBehind("shop", "dev", "k1"));
  EXPECT_EQ(after_rollback, 3);
  ASSERT_OK_AND_ASSIGN(auto after, s.CurrentByTarget("shop"));
  ASSERT_TRUE(after[0].running.has_value());
  EXPECT_EQ(after[0].running->id, r1);

  ASSERT_OK_AND_ASSIGN(auto empty, s.CurrentByTarget("nothing"));
  EXPECT_TRUE(empty.empty());
}

TYPED_TEST(StoreContractTest, ApprovalsAreIdempotentPerEnvironment) {
  Store& s = this->store();
  const int64_t release = this->NewRelease("shop");
  ASSERT_OK_AND_ASSIGN(bool before, s.IsApproved(release, "prod"));
  EXPECT_FALSE(before);
  ASSERT_OK(s.Approve(release, "prod", "alice"));
  ASSERT_OK(s.Approve(release, "prod", "bob"));
  ASSERT_OK_AND_ASSIGN(bool prod, s.IsApproved(release, "prod"));
  EXPECT_TRUE(prod);
  ASSERT_OK_AND_ASSIGN(bool staging, s.IsApproved(release, "staging"));
  EXPECT_FALSE(staging);
  EXPECT_CODE(s.Approve(999, "prod", "alice"), Code::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Runs

TYPED_TEST(StoreContractTest, RunsAndStepsMoveThroughTheirStates) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(int64_t id, s.CreateRun({.repo = "https://git.example/shop.git",
                                                .pipeline = "shop/ci", .commit = "c0ffee",
                                                .ref = "refs/pull/7/head",
                                                .event = RunEvent::kPullRequest,
                                                .delivery_id = "d-1"}));
  ASSERT_OK_AND_ASSIGN(Run queued, s.GetRun(id));
  EXPECT_EQ(queued.state, RunState::kQueued);
  EXPECT_EQ(queued.event, RunEvent::kPullRequest);
  EXPECT_EQ(queued.ref, "refs/pull/7/head");
  EXPECT_EQ(queued.delivery_id, "d-1");
  EXPECT_EQ(queued.attempt, 0);
  EXPECT_FALSE(queued.started_at.has_value());

  ASSERT_OK(s.UpdateRun(id, RunState::kRunning));
  ASSERT_OK(s.UpsertStep(id, {.name = "build", .state = RunState::kRunning}));
  ASSERT_OK(s.UpsertStep(id, {.name = "lint", .state = RunState::kQueued}));
  ASSERT_OK(s.UpsertStep(id, {.name = "build", .state = RunState::kSucceeded, .exit_code = 0}));
  ASSERT_OK(s.UpsertStep(id, {.name = "lint", .state = RunState::kRunning}));
  ASSERT_OK(s.UpsertStep(id, {.name = "lint", .state = RunState::kFailed, .exit_code = 2}));
  ASSERT_OK(s.UpsertStep(id, {.name = "deploy", .state = RunState::kSkipped}));
  ASSERT_OK(s.UpdateRun(id, RunState::kFailed, "step lint failed"));

  ASSERT_OK_AND_ASSIGN(Run done, s.GetRun(id));
  EXPECT_EQ(done.state, RunState::kFailed);
  EXPECT_EQ(done.message, "step lint failed");
  ASSERT_TRUE(done.started_at && done.finished_at);
  EXPECT_LE(*done.started_at, *done.finished_at);
  ASSERT_EQ(done.steps.size(), 3u);
  EXPECT_EQ(done.steps[0].name, "build");
  EXPECT_EQ(done.steps[0].exit_code, 0);
  ASSERT_TRUE(done.steps[0].started_at && done.steps[0].finished_at);
  EXPECT_LE(*done.steps[0].started_at, *done.steps[0].finished_at);
  EXPECT_EQ(done.steps[1].name, "lint");
  EXPECT_EQ(done.steps[1].state, RunState::kFailed);
  EXPECT_EQ(done.steps[1].exit_code, 2);
  EXPECT_EQ(done.steps[2].state, RunState::kSkipped);
  EXPECT_FALSE(done.steps[2].exit_code.has_value());

  // Final is final; repeating the final write (a retry) is fine.
  EXPECT_CODE(s.UpdateRun(id, RunState::kRunning), Code::kFailedPrecondition);
  EXPECT_OK(s.UpdateRun(id, RunState::kFailed, "step lint failed"));
  EXPECT_CODE(s.UpsertStep(id, {.name = "lint", .state = RunState::kRunning}),
              Code::kFailedPrecondition);
  EXPECT_OK(s.UpsertStep(id, {.name = "lint", .state = RunState::kFailed, .exit_code = 2}));

  EXPECT_CODE(s.GetRun(999), Code::kNotFound);
  EXPECT_CODE(s.UpdateRun(999, RunState::kRunning), Code::kNotFound);
  EXPECT_CODE(s.UpsertStep(999, {.name = "x"}), Code::kNotFound);
  EXPECT_CODE(s.CreateRun({.pipeline = ""}), Code::kInvalidArgument);
  const int64_t other = this->NewRun();
  EXPECT_CODE(s.UpdateRun(other, RunState::kSkipped), Code::kFailedPrecondition);
}

TYPED_TEST(StoreContractTest, StepsKeepTheirNeedsAndAttempts) {
  Store& s = this->store();
  const int64_t id = this->NewRun();
  ASSERT_OK(s.UpsertStep(id, {.name = "build"}));
  ASSERT_OK(s.UpsertStep(id, {.name = "test (a, b)", .needs = {"build"}}));
  ASSERT_OK(s.UpsertStep(id, {.name = "deploy", .needs = {"build", "test (a, b)"}}));
  ASSERT_OK(s.UpsertStep(id, {.name = "build", .state = RunState::kRunning}));
  // A write without needs keeps them; attempts are what the last write that knew them said.
  ASSERT_OK(s.UpsertStep(id, {.name = "test (a, b)", .state = RunState::kFailed, .exit_code = 1,
                              .attempts = 3}));
  ASSERT_OK_AND_ASSIGN(Run run, s.GetRun(id));
  ASSERT_EQ(run.steps.size(), 3u);
  EXPECT_TRUE(run.steps[0].needs.empty());
  EXPECT_EQ(run.steps[1].needs, std::vector<std::string>{"build"});
  EXPECT_EQ(run.steps[1].attempts, 3);
  EXPECT_EQ(run.steps[2].needs, (std::vector<std::string>{"build", "test (a, b)"}));
  EXPECT_EQ(run.steps[2].attempts, 0);
}

TYPED_TEST(StoreContractTest, ARetryBuildsTheSameCommitAgainAndSaysWhatItRetries) {
  Store& s = this->store();
  const Run first{.repo = "https://git.example/shop.git", .pipeline = "shop/ci", .commit = "feed",
                  .ref = "refs/heads/main", .event = RunEvent::kPush};
  ASSERT_OK_AND_ASSIGN(int64_t id, s.CreateRun(first));
  EXPECT_CODE(s.CreateRun(first), Code::kAlreadyExists);  // a replay is still refused
  Run retry = first;
  retry.retry_of = id;
  ASSERT_OK_AND_ASSIGN(int64_t again, s.CreateRun(retry));
  ASSERT_OK_AND_ASSIGN(Run got, s.GetRun(again));
  EXPECT_EQ(got.retry_of, id);
  EXPECT_EQ(got.commit, "feed");
  ASSERT_OK_AND_ASSIGN(Run original, s.GetRun(id));
  EXPECT_EQ(original.retry_of, 0);
  retry.retry_of = 999;
  EXPECT_CODE(s.CreateRun(retry), Code::kNotFound);
}

TYPED_TEST(StoreContractTest, ARedeliveredWebhookDoesNotCreateASecondRun) {
  Store& s = this->store();
  this->NewRun("shop/ci", "delivery-7");
  EXPECT_CODE(s.CreateRun({.pipeline = "shop/ci", .delivery_id = "delivery-7"}),
              Code::kAlreadyExists);
  this->NewRun("shop/release", "delivery-7");  // one delivery, two pipelines
  this->NewRun("shop/ci");
  this->NewRun("shop/ci");  // runs without a delivery (manual) never collide
  ASSERT_OK_AND_ASSIGN(auto runs, s.ListRuns({.pipeline = "shop/ci"}));
  EXPECT_EQ(runs.size(), 3u);
}

TYPED_TEST(StoreContractTest, ACommitIsBuiltOncePerRefAndEventWhateverTheDeliveryId) {
  Store& s = this->store();
  const Run push{.repo = "https://git.example/shop.git", .pipeline = "shop/ci", .commit = "abc1",
                 .ref = "refs/heads/main", .delivery_id = "d-1"};
  ASSERT_OK_AND_ASSIGN(int64_t first, s.CreateRun(push));
  Run replay = push;
  replay.delivery_id = "d-2";  // a replayed webhook: new delivery id, same commit
  auto again = s.CreateRun(replay);
  EXPECT_CODE(again, Code::kAlreadyExists);
  EXPECT_NE(again.status().message().find("run " + std::to_string(first)), std::string::npos)
      << again.status().message();
  Run poll = push;
  poll.delivery_id = "poll:main:abc1";  // a poll finding the commit the webhook queued
  EXPECT_CODE(s.CreateRun(poll), Code::kAlreadyExists);
  // Another event, ref, commit or pipeline is another run; manual runs are never deduplicated.
  Run pr = push;
  pr.delivery_id = "d-3";
  pr.event = RunEvent::kPullRequest;
  EXPECT_OK(s.CreateRun(pr));
  Run other = push;
  other.delivery_id = "d-4";
  other.ref = "refs/heads/dev";
  EXPECT_OK(s.CreateRun(other));
  Run manual = push;
  manual.delivery_id = "";
  manual.event = RunEvent::kManual;
  EXPECT_OK(s.CreateRun(manual));
  EXPECT_OK(s.CreateRun(manual));

  // A run bound to the tip its ref pointed to claims that commit too.
  Run stale = push;
  stale.delivery_id = "d-5";
  stale.commit = "old1";
  ASSERT_OK_AND_ASSIGN(int64_t bound, s.CreateRun(stale));
  ASSERT_OK(s.BindRunCommit(bound, "tip1"));
  ASSERT_OK_AND_ASSIGN(Run got, s.GetRun(bound));
  EXPECT_EQ(got.commit, "tip1");
  Run tip = push;
  tip.delivery_id = "poll:main:tip1";
  tip.commit = "tip1";
  EXPECT_CODE(s.CreateRun(tip), Code::kAlreadyExists);
  stale.delivery_id = "d-6";
  EXPECT_CODE(s.CreateRun(stale), Code::kAlreadyExists);  // old1 stays taken
  EXPECT_CODE(s.BindRunCommit(bound, "abc1"), Code::kAlreadyExists);  // the first run builds abc1
  EXPECT_OK(s.BindRunCommit(bound, "tip1"));
  EXPECT_CODE(s.BindRunCommit(4242, "x"), Code::kNotFound);
}

TYPED_TEST(StoreContractTest, UntrustedRunsAwaitApprovalAndAreClaimedOnlyByUntrustedWorkers) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(int64_t fork, s.CreateRun({.repo = "https://git.example/fork.git",
                                                   .pipeline = "shop/ci", .commit = "f1",
                                                   .event = RunEvent::kPullRequest,
                                                   .state = RunState::kAwaitingApproval,
                                                   .trusted = false}));
  const int64_t push = this->NewRun();
  EXPECT_CODE(s.CreateRun({.pipeline = "shop/ci", .state = RunState::kRunning}),
              Code::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(Run waiting, s.GetRun(fork));
  EXPECT_EQ(waiting.state, RunState::kAwaitingApproval);
  EXPECT_FALSE(waiting.trusted);
  EXPECT_EQ(waiting.approved_by, "");
  ASSERT_OK_AND_ASSIGN(auto none, s.ClaimNextQueuedRun("w", false));
  EXPECT_FALSE(none.has_value()) << "a run awaiting approval was claimed";
  EXPECT_CODE(s.UpdateRun(fork, RunState::kRunning), Code::kFailedPrecondition);
  EXPECT_CODE(s.ApproveRun(push, "alice"), Code::kFailedPrecondition);
  EXPECT_CODE(s.ApproveRun(4242, "alice"), Code::kNotFound);

  ASSERT_OK(s.ApproveRun(fork, "alice"));
  ASSERT_OK_AND_ASSIGN(Run approved, s.GetRun(fork));
  EXPECT_EQ(approved.state, RunState::kQueued);
  EXPECT_EQ(approved.approved_by, "alice");
  EXPECT_CODE(s.ApproveRun(fork, "bob"), Code::kFailedPrecondition);

  ASSERT_OK_AND_ASSIGN(auto trusted, s.ClaimNextQueuedRun("w", true));
  ASSERT_TRUE(trusted.has_value());
  EXPECT_EQ(trusted->id, push) << "a trusted worker took the older untrusted run";
  ASSERT_OK_AND_ASSIGN(auto more, s.ClaimNextQueuedRun("w", true));
  EXPECT_FALSE(more.has_value());
  ASSERT_OK_AND_ASSIGN(auto untrusted, s.ClaimNextQueuedRun("w", false));
  ASSERT_TRUE(untrusted.has_value());
  EXPECT_EQ(untrusted->id, fork);
  EXPECT_FALSE(untrusted->trusted);
}

TYPED_TEST(StoreContractTest, ListRunsFiltersAndPagesNewestFirst) {
  Store& s = this->store();
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(this->NewRun(i % 2 ? "b" : "a"));
  ASSERT_OK(s.UpdateRun(ids[2], RunState::kCancelled));
  ASSERT_OK_AND_ASSIGN(auto all, s.ListRuns({}));
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all.front().id, ids[4]);
  EXPECT_EQ(all.back().id, ids[0]);
  ASSERT_OK_AND_ASSIGN(auto a, s.ListRuns({.pipeline = "a"}));
  ASSERT_EQ(a.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto cancelled, s.ListRuns({.state = RunState::kCancelled}));
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0].id, ids[2]);
  ASSERT_OK_AND_ASSIGN(auto page, s.ListRuns({.before_id = ids[3], .limit = 2}));
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, ids[2]);
  EXPECT_EQ(page[1].id, ids[1]);
  EXPECT_TRUE(page[0].steps.empty());
}

TYPED_TEST(StoreContractTest, ARestartedRunnerInterruptsItsRunsAndMayRequeueThem) {
  Store& s = this->store();
  const int64_t mine = this->NewRun();
  const int64_t theirs = this->NewRun();
  const int64_t waiting = this->NewRun();
  ASSERT_OK_AND_ASSIGN(auto claimed1, s.ClaimNextQueuedRun("server-1", std::nullopt));
  ASSERT_TRUE(claimed1.has_value());
  EXPECT_EQ(claimed1->id, mine);  // oldest first
  EXPECT_EQ(claimed1->worker, "server-1");
  EXPECT_EQ(claimed1->attempt, 1);
  ASSERT_OK_AND_ASSIGN(auto claimed2, s.ClaimNextQueuedRun("server-2", std::nullopt));
  ASSERT_TRUE(claimed2.has_value());
  EXPECT_EQ(claimed2->id, theirs);
  ASSERT_OK(s.UpsertStep(mine, {.name = "build", .state = RunState::kRunning}));
  ASSERT_OK(s.UpsertStep(mine, {.name = "lint", .state = RunState::kSucceeded, .exit_code = 0}));

  ASSERT_OK_AND_ASSIGN(auto interrupted, s.MarkUnfinishedInterrupted("server-1"));
  ASSERT_EQ(interrupted.size(), 1u);
  EXPECT_EQ(interrupted[0].id, mine);
  EXPECT_EQ(interrupted[0].state, RunState::kInterrupted);
  ASSERT_OK_AND_ASSIGN(Run run, s.GetRun(mine));
  EXPECT_EQ(run.state, RunState::kInterrupted);
  EXPECT_TRUE(run.finished_at.has_value());
  EXPECT_EQ(run.steps[0].state, RunState::kInterrupted);
  EXPECT_EQ(run.steps[1].state, RunState::kSucceeded);
  ASSERT_OK_AND_ASSIGN(Run other, s.GetRun(theirs));
  EXPECT_EQ(other.state, RunState::kRunning) << "another server's run was interrupted";

  // Re-queue per policy; the next claim is attempt 2.
  ASSERT_OK(s.UpdateRun(mine, RunState::kQueued, "re-queued after restart"));
  ASSERT_OK_AND_ASSIGN(Run requeued, s.GetRun(mine));
  EXPECT_EQ(requeued.worker, "");
  EXPECT_FALSE(requeued.finished_at.has_value());
  ASSERT_OK_AND_ASSIGN(auto again, s.ClaimNextQueuedRun("server-1", std::nullopt));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->id, mine);
  EXPECT_EQ(again->attempt, 2);

  // A single server restarting ("" = anyone's).
  ASSERT_OK_AND_ASSIGN(auto rest, s.MarkUnfinishedInterrupted(""));
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].id, mine);
  EXPECT_EQ(rest[1].id, theirs);
  ASSERT_OK_AND_ASSIGN(Run still, s.GetRun(waiting));
  EXPECT_EQ(still.state, RunState::kQueued);
}

TYPED_TEST(StoreContractTest, EightThreadsClaimEachQueuedRunExactlyOnce) {
  Store& s = this->store();
  std::set<int64_t> created;
  for (int i = 0; i < 60; ++i) created.insert(this->NewRun());
  std::mutex mu;
  std::vector<int64_t> claimed;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int w = 0; w < 8; ++w) {
    threads.emplace_back([&, w] {
      for (;;) {
        auto run = s.ClaimNextQueuedRun("worker-" + std::to_string(w), std::nullopt);
        std::lock_guard lock(mu);
        if (!run.ok()) {
          errors.push_back(run.status().ToString());
          return;
        }
        if (!run->has_value()) return;
        claimed.push_back((*run)->id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  std::sort(claimed.begin(), claimed.end());
  EXPECT_EQ(std::adjacent_find(claimed.begin(), claimed.end()), claimed.end())
      << "a run was claimed twice";
  EXPECT_EQ(std::set<int64_t>(claimed.begin(), claimed.end()), created);
  ASSERT_OK_AND_ASSIGN(auto queued, s.ListRuns({.state = RunState::kQueued}));
  EXPECT_TRUE(queued.empty());
  ASSERT_OK_AND_ASSIGN(auto none, s.ClaimNextQueuedRun("late", std::nullopt));
  EXPECT_FALSE(none.has_value());
}

// Leases (several servers on one store): a claim lasts until its lease expires unless its server
// renews it; then any server marks the run interrupted (exactly once) and the old claim can
// neither renew nor write the run's final state.
TYPED_TEST(StoreContractTest, AnExpiredRunLeaseIsTakenOverAndTheOldClaimIsFenced) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  const int64_t id = this->NewRun();
  const int64_t other = this->NewRun();
  ASSERT_OK_AND_ASSIGN(auto a, s->ClaimNextQueuedRun("server-a", std::nullopt, 10s));
  ASSERT_TRUE(a.has_value());
  ASSERT_EQ(a->id, id);
  ASSERT_TRUE(a->lease_expires_at.has_value());
  EXPECT_EQ(*a->lease_expires_at, clock.WallNow() + 10s);
  ASSERT_OK_AND_ASSIGN(auto b0, s->ClaimNextQueuedRun("server-b", std::nullopt, 60s));
  ASSERT_TRUE(b0.has_value());
  ASSERT_OK(s->UpsertStep(id, {.name = "build", .state = RunState::kRunning}));

  clock.Advance(6s);
  ASSERT_OK_AND_ASSIGN(auto none, s->MarkExpiredInterrupted());
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(store::Renewal renewed, s->RenewRunLease(id, "server-a", 1, 10s));
  EXPECT_EQ(renewed, store::Renewal::kRenewed);
  ASSERT_OK_AND_ASSIGN(store::Renewal wrong_worker, s->RenewRunLease(id, "server-b", 1, 10s));
  EXPECT_EQ(wrong_worker, store::Renewal::kLost);
  clock.Advance(9s);  // 15 s after the claim, 9 s after the renewal
  ASSERT_OK_AND_ASSIGN(auto still, s->MarkExpiredInterrupted());
  EXPECT_TRUE(still.empty()) << "a renewed lease expired early";

  clock.Advance(2s);
  ASSERT_OK_AND_ASSIGN(auto expired, s->MarkExpiredInterrupted());
  ASSERT_EQ(expired.size(), 1u) << "only the run whose lease expired (not server-b's)";
  EXPECT_EQ(expired[0].id, id);
  EXPECT_EQ(expired[0].state, RunState::kInterrupted);
  ASSERT_OK_AND_ASSIGN(auto twice, s->MarkExpiredInterrupted());
  EXPECT_TRUE(twice.empty()) << "a run was taken over twice";
  ASSERT_OK_AND_ASSIGN(Run interrupted, s->GetRun(id));
  EXPECT_EQ(interrupted.steps.at(0).state, RunState::kInterrupted);
  EXPECT_FALSE(interrupted.lease_expires_at.has_value());
  ASSERT_OK_AND_ASSIGN(store::Renewal late, s->RenewRunLease(id, "server-a", 1, 10s));
  EXPECT_EQ(late, store::Renewal::kLost);

  // Re-queued and taken by server-b: server-a's attempt 1 is fenced out.
  ASSERT_OK(s->UpdateRun(id, RunState::kQueued, "re-queued"));
  ASSERT_OK_AND_ASSIGN(auto b, s->ClaimNextQueuedRun("server-b", std::nullopt, 10s));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->attempt, 2);
  ASSERT_OK_AND_ASSIGN(store::Renewal stale, s->RenewRunLease(id, "server-a", 1, 10s));
  EXPECT_EQ(stale, store::Renewal::kLost);
  Status fenced = s->UpdateRun(id, RunState::kSucceeded, "attempt 1 done", 1);
  EXPECT_EQ(fenced.code(), Code::kAborted) << fenced.ToString();
  EXPECT_NE(fenced.message().find("server-b"), std::string::npos) << fenced.message();
  ASSERT_OK_AND_ASSIGN(Run running, s->GetRun(id));
  EXPECT_EQ(running.state, RunState::kRunning);
  EXPECT_EQ(running.worker, "server-b");
  ASSERT_OK(s->UpdateRun(id, RunState::kSucceeded, "attempt 2 done", 2));
  ASSERT_OK_AND_ASSIGN(Run done, s->GetRun(id));
  EXPECT_EQ(done.state, RunState::kSucceeded);
  EXPECT_FALSE(done.lease_expires_at.has_value());
  ASSERT_OK_AND_ASSIGN(store::Renewal after_end, s->RenewRunLease(id, "server-b", 2, 10s));
  EXPECT_EQ(after_end, store::Renewal::kLost);
  EXPECT_EQ(s->RenewRunLease(other + 1000, "server-b", 1, 10s).status().code(), Code::kNotFound);
}

// Remote workers: a run is claimed only by a claimer with every label it asks for; a cancel asked
// of a running run reaches its claimer at its next renewal; changed paths come back as written.
TYPED_TEST(StoreContractTest, LabelsRouteClaimsAndACancelRequestReachesTheClaimerAtRenewal) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(int64_t arm, s.CreateRun({.repo = "r", .pipeline = "p", .commit = "c1", .ref = "refs/heads/a",
                                                 .labels = {{"arch", "arm64"}}, .changed_paths = std::vector<std::string>{"a/b.c", "d"}}));
  ASSERT_OK_AND_ASSIGN(int64_t any, s.CreateRun({.repo = "r", .pipeline = "p", .commit = "c2", .ref = "refs/heads/b"}));
  ASSERT_OK_AND_ASSIGN(auto plain, s.ClaimNextQueuedRun("plain", std::nullopt));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->id, any) << "a claimer without labels took a run that asks for arch=arm64";
  EXPECT_FALSE(plain->changed_paths.has_value());
  ASSERT_OK_AND_ASSIGN(auto x86, s.ClaimNextQueuedRun("x86", std::nullopt, 10s, {{"arch", "amd64"}}));
  EXPECT_FALSE(x86.has_value());
  ASSERT_OK_AND_ASSIGN(auto arm64, s.ClaimNextQueuedRun("arm", std::nullopt, 10s, {{"arch", "arm64"}, {"gpu", "no"}}));
  ASSERT_TRUE(arm64.has_value());
  EXPECT_EQ(arm64->id, arm);
  EXPECT_EQ(arm64->labels, (Labels{{"arch", "arm64"}}));
  EXPECT_EQ(arm64->changed_paths, (std::vector<std::string>{"a/b.c", "d"}));

  ASSERT_OK_AND_ASSIGN(store::Renewal before, s.RenewRunLease(arm, "arm", 1, 10s));
  EXPECT_EQ(before, store::Renewal::kRenewed);
  ASSERT_OK(s.RequestRunCancel(arm));
  ASSERT_OK_AND_ASSIGN(store::Renewal after, s.RenewRunLease(arm, "arm", 1, 10s));
  EXPECT_EQ(after, store::Renewal::kCancelRequested);
  ASSERT_OK(s.UpdateRun(arm, RunState::kCancelled, "cancelled", 1));
  EXPECT_CODE(s.RequestRunCancel(arm), Code::kFailedPrecondition);
  EXPECT_CODE(s.RequestRunCancel(arm + 1000), Code::kNotFound);
  EXPECT_EQ(FormatLabels({{"b", "2"}, {"a", "1"}}), "a=1,b=2");
  EXPECT_CODE(ParseLabels("a=1,a=2").status(), Code::kInvalidArgument);
  EXPECT_CODE(ParseLabels("a b=1").status(), Code::kInvalidArgument);
  EXPECT_CODE(ParseLabels("a").status(), Code::kInvalidArgument);
}

// Per-project worker pools: a claimer for one project takes only that project's runs (not those
// of another project, nor of none); a claimer without a project takes any.
TYPED_TEST(StoreContractTest, AProjectsClaimerTakesOnlyThatProjectsRuns) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(int64_t a, s.CreateRun({.repo = "ra", .pipeline = "p", .commit = "c1", .project = "team-a"}));
  ASSERT_OK_AND_ASSIGN(int64_t none, s.CreateRun({.repo = "r", .pipeline = "p", .commit = "c2"}));
  ASSERT_OK_AND_ASSIGN(int64_t b, s.CreateRun({.repo = "rb", .pipeline = "p", .commit = "c3", .project = "team-b"}));
  ASSERT_OK_AND_ASSIGN(auto for_b, s.ClaimNextQueuedRun("robot:b/w", std::nullopt, 10s, {}, "team-b"));
  ASSERT_TRUE(for_b.has_value());
  EXPECT_EQ(for_b->id, b) << "team-b's worker took a run of another project";
  EXPECT_EQ(for_b->project, "team-b");
  ASSERT_OK_AND_ASSIGN(auto more_b, s.ClaimNextQueuedRun("robot:b/w", std::nullopt, 10s, {}, "team-b"));
  EXPECT_FALSE(more_b.has_value()) << "team-b's worker took run " << more_b->id;
  ASSERT_OK_AND_ASSIGN(auto for_c, s.ClaimNextQueuedRun("robot:c/w", std::nullopt, 10s, {}, "team-c"));
  EXPECT_FALSE(for_c.has_value());
  ASSERT_OK_AND_ASSIGN(auto any, s.ClaimNextQueuedRun("robot:pool/w", std::nullopt, 10s));
  ASSERT_TRUE(any.has_value());
  EXPECT_EQ(any->id, a);
  ASSERT_OK_AND_ASSIGN(auto for_a, s.ClaimNextQueuedRun("robot:a/w", std::nullopt, 10s, {}, "team-a"));
  EXPECT_FALSE(for_a.has_value()) << "a run of no project went to team-a's worker";
  ASSERT_OK_AND_ASSIGN(Run left, s.GetRun(none));
  EXPECT_EQ(left.state, RunState::kQueued);
  EXPECT_EQ(left.project, "");
}

// Workspace uploads in the store: parts appended at the bytes held by the holder of the run at
// its attempt only, read back from any offset, started over at 0, and dropped when the run is
// re-queued or ends.
TYPED_TEST(StoreContractTest, AWorkspaceUploadIsHeldForItsClaimOnlyAndDroppedWhenTheRunMoves) {
  Store& s = this->store();
  const int64_t id = this->NewRun();
  ASSERT_OK_AND_ASSIGN(auto claimed, s.ClaimNextQueuedRun("w1", std::nullopt, 10s));
  ASSERT_TRUE(claimed.has_value() && claimed->id == id);
  const std::string part1(1000, 'a'), part2 = std::string("\0\xff", 2) + "tail";
  EXPECT_CODE(s.AppendRunUpload(id, "w2", 1, 0, part1).status(), Code::kAborted);
  EXPECT_CODE(s.AppendRunUpload(id, "w1", 2, 0, part1).status(), Code::kAborted);
  EXPECT_CODE(s.AppendRunUpload(id + 1000, "w1", 1, 0, part1).status(), Code::kNotFound);
  ASSERT_OK_AND_ASSIGN(uint64_t held, s.AppendRunUpload(id, "w1", 1, 0, part1));
  EXPECT_EQ(held, part1.size());
  EXPECT_CODE(s.AppendRunUpload(id, "w1", 1, 5, part2).status(), Code::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(held, s.AppendRunUpload(id, "w1", 1, part1.size(), part2));
  EXPECT_EQ(held, part1.size() + part2.size());
  std::string whole;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::string got, s.ReadRunUpload(id, 1, whole.size()));
    if (got.empty()) break;
    whole += got;
  }
  EXPECT_EQ(whole, part1 + part2);
  ASSERT_OK_AND_ASSIGN(std::string middle, s.ReadRunUpload(id, 1, 998));
  EXPECT_EQ(middle, "aa");
  ASSERT_OK_AND_ASSIGN(held, s.AppendRunUpload(id, "w1", 1, 0, "again"));
  EXPECT_EQ(held, 5u) << "offset 0 starts the upload over";
  ASSERT_OK_AND_ASSIGN(std::string restarted, s.ReadRunUpload(id, 1, 0));
  EXPECT_EQ(restarted, "again");
  ASSERT_OK(s.UpdateRun(id, RunState::kQueued, "re-queued", 1));
  ASSERT_OK_AND_ASSIGN(std::string dropped, s.ReadRunUpload(id, 1, 0));
  EXPECT_EQ(dropped, "") << "the upload of a re-queued run was kept";
  ASSERT_OK_AND_ASSIGN(auto again, s.ClaimNextQueuedRun("w2", std::nullopt, 10s));
  ASSERT_TRUE(again.has_value() && again->attempt == 2);
  EXPECT_CODE(s.AppendRunUpload(id, "w1", 1, 0, part1).status(), Code::kAborted);  // the old attempt
  ASSERT_OK(s.AppendRunUpload(id, "w2", 2, 0, part1).status());
  ASSERT_OK(s.UpdateRun(id, RunState::kSucceeded, "done", 2));
  ASSERT_OK_AND_ASSIGN(std::string ended, s.ReadRunUpload(id, 2, 0));
  EXPECT_EQ(ended, "") << "the upload of an ended run was kept";
  ASSERT_OK(s.DeleteRunUploads(id));
}

// Clock steps (issue 21): leases are stamped with the wall clock, which NTP or an operator may step.
// Forwards: the claim looks expired at once, the run is taken over, and the old claim is fenced
// (it can neither renew nor finish the run), so the run is repeated, never run twice at once.
// Backwards: the holder's renewals go on, and once it stops renewing the lease expires a lease
// duration after its last renewal, as without the step.
TYPED_TEST(StoreContractTest, WallClockStepsKeepOneHolderPerRun) {
  fakes::SteppedClock clock;
  clock.Advance(std::chrono::hours(1000));
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  const int64_t id = this->NewRun();
  ASSERT_OK_AND_ASSIGN(auto a, s->ClaimNextQueuedRun("server-a", std::nullopt, 10s));
  ASSERT_TRUE(a.has_value());
  clock.StepWall(std::chrono::hours(1));
  ASSERT_OK_AND_ASSIGN(auto expired, s->MarkExpiredInterrupted());
  ASSERT_EQ(expired.size(), 1u) << "a lease 10 s long survived a step of an hour forwards";
  ASSERT_OK_AND_ASSIGN(store::Renewal renewed, s->RenewRunLease(id, "server-a", 1, 10s));
  EXPECT_EQ(renewed, store::Renewal::kLost) << "the claim taken over after the step could still renew";
  ASSERT_OK(s->UpdateRun(id, RunState::kQueued, "re-queued"));
  ASSERT_OK_AND_ASSIGN(auto b, s->ClaimNextQueuedRun("server-b", std::nullopt, 10s));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(s->UpdateRun(id, RunState::kSucceeded, "attempt 1 done", 1).code(), Code::kAborted);

  clock.StepWall(-std::chrono::hours(2));
  for (int i = 0; i < 3; ++i) {
    clock.Advance(5s);
    ASSERT_OK_AND_ASSIGN(store::Renewal kept, s->RenewRunLease(id, "server-b", 2, 10s));
    EXPECT_EQ(kept, store::Renewal::kRenewed) << "the holder lost its claim after the wall clock went back";
    ASSERT_OK_AND_ASSIGN(auto none, s->MarkExpiredInterrupted());
    EXPECT_TRUE(none.empty());
  }
  clock.Advance(11s);  // server-b died after its last renewal
  ASSERT_OK_AND_ASSIGN(auto taken, s->MarkExpiredInterrupted());
  ASSERT_EQ(taken.size(), 1u) << "a lease renewed after a backward step did not expire a lease duration later";
  EXPECT_EQ(taken[0].id, id);
}

// A named lease (scheduled work done once across servers) has one holder until it expires.
TYPED_TEST(StoreContractTest, ANamedLeaseHasOneHolderUntilItExpires) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  ASSERT_OK_AND_ASSIGN(bool a, s->AcquireLease("notifications", "server-a", 10s));
  EXPECT_TRUE(a);
  ASSERT_OK_AND_ASSIGN(bool b, s->AcquireLease("notifications", "server-b", 10s));
  EXPECT_FALSE(b);
  ASSERT_OK_AND_ASSIGN(bool other_name, s->AcquireLease("forge-statuses", "server-b", 10s));
  EXPECT_TRUE(other_name);
  clock.Advance(8s);
  ASSERT_OK_AND_ASSIGN(bool renewed, s->AcquireLease("notifications", "server-a", 10s));
  EXPECT_TRUE(renewed);
  clock.Advance(8s);  // 16 s after the first, 8 s after the renewal
  ASSERT_OK_AND_ASSIGN(bool early, s->AcquireLease("notifications", "server-b", 10s));
  EXPECT_FALSE(early);
  clock.Advance(3s);
  ASSERT_OK_AND_ASSIGN(bool taken, s->AcquireLease("notifications", "server-b", 10s));
  EXPECT_TRUE(taken);
  ASSERT_OK_AND_ASSIGN(bool back, s->AcquireLease("notifications", "server-a", 10s));
  EXPECT_FALSE(back);
  EXPECT_EQ(s->AcquireLease("", "server-a", 10s).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->AcquireLease("x", "", 10s).status().code(), Code::kInvalidArgument);

  // Eight servers asking at once for a free lease: one gets it.
  std::atomic<int> holders{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 8; ++w) {
    threads.emplace_back([&, w] {
      auto got = this->store().AcquireLease("gc", "server-" + std::to_string(w), 60s);
      if (got.ok() && *got) holders.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(holders.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// Logs

TYPED_TEST(StoreContractTest, LogChunksAreIdempotentAndReadInOrderForFollowing) {
  Store& s = this->store();
  const int64_t run = this->NewRun();
  const std::string binary("line\0with nul \xff\n", 16);
  ASSERT_OK(s.AppendLogChunk(run, "build", 0, "hello\n"));
  ASSERT_OK(s.AppendLogChunk(run, "build", 2, binary));  // arrives before 1
  ASSERT_OK(s.AppendLogChunk(run, "build", 1, "world\n"));
  ASSERT_OK(s.AppendLogChunk(run, "test", 0, "other step\n"));
  EXPECT_OK(s.AppendLogChunk(run, "build", 1, "world\n"));  // a retried append
  EXPECT_CODE(s.AppendLogChunk(run, "build", 1, "changed\n"), Code::kAlreadyExists);

  ASSERT_OK_AND_ASSIGN(auto all, s.ReadLog(run, "build", 0));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].data, "hello\n");
  EXPECT_EQ(all[1].data, "world\n");
  EXPECT_EQ(all[2].data, binary);
  EXPECT_EQ(all[2].seq, 2);
  EXPECT_EQ(all[2].step, "build");
  ASSERT_OK_AND_ASSIGN(auto tail, s.ReadLog(run, "build", 1, 1));
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0].seq, 1);

  // Following: poll from the next seq.
  ASSERT_OK_AND_ASSIGN(auto nothing, s.ReadLog(run, "build", 3));
  EXPECT_TRUE(nothing.empty());
  ASSERT_OK(s.AppendLogChunk(run, "build", 3, "more\n"));
  ASSERT_OK_AND_ASSIGN(auto more, s.ReadLog(run, "build", 3));
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].data, "more\n");

  const std::string full(kMaxLogChunkBytes, 'x');
  EXPECT_OK(s.AppendLogChunk(run, "big", 0, full));
  ASSERT_OK_AND_ASSIGN(auto big, s.ReadLog(run, "big", 0));
  ASSERT_EQ(big.size(), 1u);
  EXPECT_EQ(big[0].data, full);
  EXPECT_CODE(s.AppendLogChunk(run, "big", 1, full + "x"), Code::kInvalidArgument);
  EXPECT_CODE(s.AppendLogChunk(run, "big", -1, "x"), Code::kInvalidArgument);
  EXPECT_CODE(s.AppendLogChunk(999, "build", 0, "x"), Code::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Deliveries and audit

TYPED_TEST(StoreContractTest, ReleaseProgressIsWrittenWithOptimisticConcurrency) {
  Store& s = this->store();
  const int64_t run = this->NewRun();
  ASSERT_OK_AND_ASSIGN(auto none, s.GetReleaseProgress(run));
  EXPECT_FALSE(none.has_value());

  ASSERT_OK_AND_ASSIGN(ReleaseProgress first, s.PutReleaseProgress({.run_id = run, .stage = "package",
                                                                    .data = R"({"digest":"sha256:aa"})"}));
  EXPECT_EQ(first.version, 1);
  EXPECT_GT(first.updated_at.time_since_epoch().count(), 0);
  ASSERT_OK_AND_ASSIGN(auto read, s.GetReleaseProgress(run));
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->stage, "package");
  EXPECT_EQ(read->data, R"({"digest":"sha256:aa"})");
  EXPECT_EQ(read->version, 1);

  ReleaseProgress next = *read;
  next.stage = "update";
  next.data = R"({"commit":"c1"})";
  ASSERT_OK_AND_ASSIGN(ReleaseProgress second, s.PutReleaseProgress(next));
  EXPECT_EQ(second.version, 2);
  EXPECT_EQ(second.stage, "update");

  // A writer that read version 1 lost: it must stop, not overwrite.
  next.stage = "notify";
  EXPECT_CODE(s.PutReleaseProgress(next), Code::kAborted);
  EXPECT_CODE(s.PutReleaseProgress({.run_id = run, .stage = "package"}), Code::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(auto now, s.GetReleaseProgress(run));
  EXPECT_EQ(now->stage, "update");

  EXPECT_CODE(s.PutReleaseProgress({.run_id = run, .stage = ""}), Code::kInvalidArgument);
  EXPECT_CODE(s.PutReleaseProgress({.run_id = 999, .stage = "package"}), Code::kNotFound);
  const int64_t other = this->NewRun();
  EXPECT_CODE(s.PutReleaseProgress({.run_id = other, .stage = "package", .version = 3}), Code::kNotFound);
}

// Migration 4 (release_progress) on a database an older Gantry made: the data stays, the table comes.
TYPED_TEST(StoreContractTest, MigratingAnOlderDatabaseAddsReleaseProgressAndKeepsTheRuns) {
  const std::string url = this->backend_.NewDatabase();
  int64_t run = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto old, Open(url, {.max_schema_version = 3}));
    ASSERT_OK_AND_ASSIGN(int version, old->SchemaVersion());
    EXPECT_EQ(version, 3);
    ASSERT_OK_AND_ASSIGN(run, old->CreateRun({.repo = "https://git.example/shop.git", .pipeline = "shop/ci",
                                              .commit = "c0ffee", .ref = "refs/heads/main"}));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Open(url));
  ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
  EXPECT_GE(version, 4);
  ASSERT_OK_AND_ASSIGN(Run got, store->GetRun(run));
  EXPECT_EQ(got.commit, "c0ffee");
  ASSERT_OK(store->PutReleaseProgress({.run_id = run, .stage = "package", .data = "{}"}));
  ASSERT_OK_AND_ASSIGN(auto progress, store->GetReleaseProgress(run));
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->stage, "package");
}

TYPED_TEST(StoreContractTest, DeliveriesAreDedupedWithinTheRetention) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(bool first, s.RecordDelivery("github", "abc-1"));
  EXPECT_TRUE(first);
  ASSERT_OK_AND_ASSIGN(bool again, s.RecordDelivery("github", "abc-1"));
  EXPECT_FALSE(again);
  ASSERT_OK_AND_ASSIGN(bool other, s.RecordDelivery("gitlab", "abc-1"));
  EXPECT_TRUE(other);

  // A store whose clock has passed the retention forgets old deliveries.
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto timed,
                       Open(this->url_, {.clock = &clock, .delivery_retention = 24h}));
  ASSERT_OK_AND_ASSIGN(bool old, timed->RecordDelivery("gitea", "d"));
  EXPECT_TRUE(old);
  clock.Advance(std::chrono::hours(23));
  ASSERT_OK_AND_ASSIGN(bool within, timed->RecordDelivery("gitea", "d"));
  EXPECT_FALSE(within);
  clock.Advance(std::chrono::hours(2));
  ASSERT_OK_AND_ASSIGN(bool expired, timed->RecordDelivery("gitea", "d"));
  EXPECT_TRUE(expired);
}

// The forge status outbox: one row per (forge, repo, sha, context), the newest wanted status; an
// attempt on a replaced version is refused (Aborted), so a late pending never overwrites success.
TYPED_TEST(StoreContractTest, ForgeStatusesKeepTheNewestStatusPerCommitAndContext) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  const Time now = clock.WallNow();
  ForgeStatus st{.forge = "https://git.example/", .repo = "shop/web", .sha = "abc", .context = "gantry/ci",
                 .state = "pending", .description = "queued", .target_url = "https://g/runs/1",
                 .next_attempt_at = now, .deadline = now + 1h};
  ASSERT_OK_AND_ASSIGN(int64_t id, s->PutForgeStatus(st));
  ASSERT_OK_AND_ASSIGN(auto due, s->ListForgeStatuses({.due_by = now}));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].version, 1);
  EXPECT_EQ(due[0].description, "queued");
  // A failed attempt, then the run moves on: the row is replaced, and the old attempt is refused.
  ASSERT_OK(s->RecordForgeStatusAttempt(id, 1, NotificationState::kPending, "HTTP 502", now + 1min));
  st.state = "success";
  st.description = "all steps succeeded";
  ASSERT_OK_AND_ASSIGN(int64_t again, s->PutForgeStatus(st));
  EXPECT_EQ(again, id);
  EXPECT_CODE(s->RecordForgeStatusAttempt(id, 1, NotificationState::kDelivered, "", now), Code::kAborted);
  ASSERT_OK_AND_ASSIGN(due, s->ListForgeStatuses({.due_by = now}));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].version, 2);
  EXPECT_EQ(due[0].state, "success");
  EXPECT_EQ(due[0].attempts, 0);
  EXPECT_EQ(due[0].last_error, "");
  ASSERT_OK(s->RecordForgeStatusAttempt(id, 2, NotificationState::kDelivered, "", now));
  EXPECT_CODE(s->RecordForgeStatusAttempt(id, 2, NotificationState::kFailed, "late", now), Code::kFailedPrecondition);
  EXPECT_CODE(s->RecordForgeStatusAttempt(999, 1, NotificationState::kFailed, "x", now), Code::kNotFound);
  // The same status again changes nothing; another context is another row.
  ASSERT_OK(s->PutForgeStatus(st).status());
  ASSERT_OK_AND_ASSIGN(auto all, s->ListForgeStatuses({}));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].delivery, NotificationState::kDelivered);
  EXPECT_EQ(all[0].version, 2);
  st.context = "gantry/deploy/prod";
  ASSERT_OK(s->PutForgeStatus(st).status());
  ASSERT_OK_AND_ASSIGN(all, s->ListForgeStatuses({.sha = "abc"}));
  EXPECT_EQ(all.size(), 2u);
  ASSERT_OK_AND_ASSIGN(all, s->ListForgeStatuses({.delivery = NotificationState::kDelivered}));
  EXPECT_EQ(all.size(), 1u);
  st.sha = "";
  EXPECT_CODE(s->PutForgeStatus(st), Code::kInvalidArgument);
  EXPECT_CODE(s->ListForgeStatuses({.limit = 0}), Code::kInvalidArgument);
}

// The merge outbox of releases in pull-request mode: one row per pull request, the newest head;
// an attempt on a replaced version is refused. A release keeps the pull request it opened.
TYPED_TEST(StoreContractTest, PullMergesKeepTheNewestHeadPerPullRequest) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  const Time now = clock.WallNow();
  ASSERT_OK_AND_ASSIGN(int64_t release, s->CreateRelease({.app = "web", .pull_request = 7,
                                                          .pull_request_url = "https://git.example/shop/config/pulls/7"}));
  ASSERT_OK_AND_ASSIGN(Release got, s->GetRelease(release));
  EXPECT_EQ(got.pull_request, 7);
  EXPECT_EQ(got.pull_request_url, "https://git.example/shop/config/pulls/7");
  PullMerge m{.forge = "https://git.example/", .repo = "shop/config", .number = 7, .sha = "aaa", .method = "squash",
              .required_checks = {"gantry/ci", "lint"}, .release_id = release, .next_attempt_at = now,
              .deadline = now + 24h};
  ASSERT_OK_AND_ASSIGN(int64_t id, s->PutPullMerge(m));
  ASSERT_OK_AND_ASSIGN(auto due, s->ListPullMerges(now, 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].sha, "aaa");
  ASSERT_OK_AND_ASSIGN(auto of_release, s->PullMergeOfRelease(release));
  ASSERT_TRUE(of_release.has_value());
  EXPECT_EQ(of_release->id, id);
  EXPECT_EQ(due[0].required_checks, (std::vector<std::string>{"gantry/ci", "lint"}));
  EXPECT_EQ(due[0].release_id, release);
  // Waiting for the checks: pending again, later, with the reason.
  ASSERT_OK(s->RecordPullMergeAttempt(id, 1, NotificationState::kPending, "waiting for check gantry/ci", now + 1min));
  ASSERT_OK_AND_ASSIGN(due, s->ListPullMerges(now, 10));
  EXPECT_TRUE(due.empty());
  // The next release pushes a new head: it replaces the row, the old attempt is refused.
  ASSERT_OK_AND_ASSIGN(int64_t next_release, s->CreateRelease({.app = "web", .pull_request = 7}));
  m.sha = "bbb";
  m.required_checks.clear();
  m.release_id = next_release;
  ASSERT_OK_AND_ASSIGN(int64_t again, s->PutPullMerge(m));
  EXPECT_EQ(again, id);
  EXPECT_CODE(s->RecordPullMergeAttempt(id, 1, NotificationState::kDelivered, "", now), Code::kAborted);
  ASSERT_OK_AND_ASSIGN(due, s->ListPullMerges(now, 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].sha, "bbb");
  EXPECT_EQ(due[0].version, 2);
  EXPECT_EQ(due[0].attempts, 0);
  EXPECT_TRUE(due[0].required_checks.empty());
  ASSERT_OK(s->RecordPullMergeAttempt(id, 2, NotificationState::kDelivered, "", now));
  EXPECT_CODE(s->RecordPullMergeAttempt(id, 2, NotificationState::kFailed, "late", now), Code::kFailedPrecondition);
  EXPECT_CODE(s->RecordPullMergeAttempt(999, 1, NotificationState::kFailed, "x", now), Code::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto all, s->ListPullMerges(std::nullopt, 10));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, NotificationState::kDelivered);
  // The merge is the newer release's now; the older one has none.
  ASSERT_OK_AND_ASSIGN(of_release, s->PullMergeOfRelease(next_release));
  ASSERT_TRUE(of_release.has_value());
  EXPECT_EQ(of_release->state, NotificationState::kDelivered);
  ASSERT_OK_AND_ASSIGN(of_release, s->PullMergeOfRelease(release));
  EXPECT_FALSE(of_release.has_value());
  m.number = 0;
  EXPECT_CODE(s->PutPullMerge(m), Code::kInvalidArgument);
  EXPECT_CODE(s->ListPullMerges(std::nullopt, 0), Code::kInvalidArgument);
}

// The notifications outbox: an accepted notification stays until an attempt delivers it or fails it
// for good; due ones come oldest first; the same event is accepted once per subscription.
TYPED_TEST(StoreContractTest, NotificationsOutboxKeepsPendingUntilDeliveredOrFailed) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto s, Open(this->url_, {.clock = &clock}));
  const Time now = clock.WallNow();
  Notification n{.event_id = "run-7-failed", .subscription = "ops", .provider = "slack", .trigger = "run-failed",
                 .project = "shop", .app = "web", .environment = "prod", .subject = "run 7 failed",
                 .body = R"({"text":"x"})", .next_attempt_at = now, .deadline = now + 1h};
  ASSERT_OK_AND_ASSIGN(int64_t first, s->EnqueueNotification(n));
  EXPECT_CODE(s->EnqueueNotification(n), Code::kAlreadyExists);
  n.subscription = "dev";
  n.next_attempt_at = now + 10s;
  ASSERT_OK_AND_ASSIGN(int64_t second, s->EnqueueNotification(n));
  n.subscription = "limited";
  n.state = NotificationState::kFailed;
  n.last_error = "rate limited";
  ASSERT_OK_AND_ASSIGN(int64_t refused, s->EnqueueNotification(n));
  n.event_id = "";
  EXPECT_CODE(s->EnqueueNotification(n), Code::kInvalidArgument);

  ASSERT_OK_AND_ASSIGN(auto due, s->ListNotifications({.due_by = now}));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, first);
  EXPECT_EQ(due[0].body, R"({"text":"x"})");
  EXPECT_EQ(due[0].deadline, now + 1h);
  ASSERT_OK_AND_ASSIGN(due, s->ListNotifications({.due_by = now + 20s}));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[1].id, second);

  // A failed attempt puts it back for later; a good one ends it.
  clock.Advance(1s);
  ASSERT_OK(s->RecordNotificationAttempt(first, NotificationState::kPending, "HTTP 500: boom", now + 1min));
  ASSERT_OK_AND_ASSIGN(due, s->ListNotifications({.due_by = now + 20s}));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, second);
  ASSERT_OK(s->RecordNotificationAttempt(first, NotificationState::kDelivered, "", now));
  EXPECT_CODE(s->RecordNotificationAttempt(first, NotificationState::kFailed, "late", now), Code::kFailedPrecondition);
  EXPECT_CODE(s->RecordNotificationAttempt(999, NotificationState::kFailed, "x", now), Code::kNotFound);

  ASSERT_OK_AND_ASSIGN(auto all, s->ListNotifications({}));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, refused);
  EXPECT_EQ(all[2].id, first);
  EXPECT_EQ(all[2].state, NotificationState::kDelivered);
  EXPECT_EQ(all[2].attempts, 2);
  EXPECT_EQ(all[2].last_error, "");
  EXPECT_TRUE(all[2].finished_at.has_value());
  ASSERT_OK_AND_ASSIGN(auto failed, s->ListNotifications({.state = NotificationState::kFailed}));
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].last_error, "rate limited");
  ASSERT_OK_AND_ASSIGN(auto page, s->ListNotifications({.before_id = refused, .limit = 1}));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].id, second);

  // It survives reopening (a server restart).
  s.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, Open(this->url_));
  ASSERT_OK_AND_ASSIGN(due, reopened->ListNotifications({.due_by = now + 20s}));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].subscription, "dev");
}

TYPED_TEST(StoreContractTest, AuditIsAppendOnlyNewestFirst) {
  Store& s = this->store();
  std::vector<int64_t> ids;
  for (const char* action : {"deploy", "approve", "rollback"}) {
    ASSERT_OK_AND_ASSIGN(int64_t id, s.Audit({.actor = "alice", .action = action,
                                              .object = "app/shop env/prod",
                                              .details = "release 7"}));
    ids.push_back(id);
  }
  ASSERT_OK_AND_ASSIGN(auto all, s.ListAudit(10));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].action, "rollback");
  EXPECT_EQ(all[0].id, ids[2]);
  EXPECT_EQ(all[2].actor, "alice");
  EXPECT_EQ(all[2].object, "app/shop env/prod");
  EXPECT_EQ(all[2].details, "release 7");
  EXPECT_GT(all[0].at.time_since_epoch().count(), 0);
  ASSERT_OK_AND_ASSIGN(auto page, s.ListAudit(1, ids[2]));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].action, "approve");
}

TYPED_TEST(StoreContractTest, AuditKeepsSourceResultAndProjectAndFilters) {
  Store& s = this->store();
  FakeClock clock;
  clock.Advance(std::chrono::hours(24 * 365 * 50));
  ASSERT_OK_AND_ASSIGN(auto timed, Open(this->url_, {.clock = &clock}));
  const Time start = clock.WallNow();
  ASSERT_OK(timed->Audit({.actor = "alice", .action = "runs.cancel", .object = "run 1",
                          .source = "10.0.0.7:5123", .project = "team-a"}));
  clock.Advance(std::chrono::hours(1));
  ASSERT_OK(timed->Audit({.actor = "bob", .action = "runs.cancel", .object = "run 2",
                          .source = "10.0.0.8:6000",
                          .result = "PermissionDenied: user bob lacks runs.cancel on project team-b",
                          .project = "team-b"}));
  clock.Advance(std::chrono::hours(1));
  ASSERT_OK_AND_ASSIGN(int64_t third, timed->Audit({.actor = "alice", .action = "tokens.create",
                                                    .object = "token t-1", .source = "cli"}));

  ASSERT_OK_AND_ASSIGN(auto all, s.ListAudit(AuditFilter{}));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, third);
  EXPECT_EQ(all[0].result, "ok") << "the default result";
  EXPECT_EQ(all[1].result, "PermissionDenied: user bob lacks runs.cancel on project team-b");
  EXPECT_EQ(all[1].source, "10.0.0.8:6000");
  EXPECT_EQ(all[1].project, "team-b");
  EXPECT_EQ(all[2].at, start);

  auto count = [&](const AuditFilter& f) {
    auto r = s.ListAudit(f);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->size() : 0u;
  };
  EXPECT_EQ(count({.actor = "alice"}), 2u);
  EXPECT_EQ(count({.action = "runs.cancel"}), 2u);
  EXPECT_EQ(count({.actor = "alice", .action = "runs.cancel"}), 1u);
  EXPECT_EQ(count({.project = "team-b"}), 1u);
  EXPECT_EQ(count({.since = start + std::chrono::minutes(30)}), 2u);
  EXPECT_EQ(count({.until = start + std::chrono::minutes(30)}), 1u);
  EXPECT_EQ(count({.since = start, .until = start + std::chrono::hours(1)}), 1u);
  EXPECT_EQ(count({.before_id = third, .limit = 1}), 1u);
  EXPECT_EQ(count({.actor = "carol"}), 0u);
  EXPECT_CODE(s.ListAudit(AuditFilter{.limit = 0}), Code::kInvalidArgument);
}

TYPED_TEST(StoreContractTest, TheDatabaseRefusesToChangeOrDeleteAuditEntries) {
  ASSERT_OK(this->store().Audit({.actor = "alice", .action = "deploy", .object = "app/shop"}));
  for (const char* sql : {"UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"}) {
    const std::string error = TypeParam::Exec(this->url_, sql);
    EXPECT_NE(error.find("append-only"), std::string::npos) << sql << ": " << error;
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListAudit(10));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].actor, "alice");
}

// ---------------------------------------------------------------------------------------------
// API tokens and role bindings

std::string Hash(char c) { return std::string(64, c); }

TYPED_TEST(StoreContractTest, TokensRoundTripAndAreFoundByTheirHashOnly) {
  Store& s = this->store();
  FakeClock clock;
  clock.Advance(std::chrono::hours(24 * 365 * 50));
  ASSERT_OK_AND_ASSIGN(auto timed, Open(this->url_, {.clock = &clock}));
  const Time expires = clock.WallNow() + std::chrono::hours(24);
  ASSERT_OK_AND_ASSIGN(ApiToken user, timed->CreateToken({.name = "laptop", .owner = "alice",
                                                          .secret_sha256 = Hash('a'),
                                                          .created_by = "alice",
                                                          .expires_at = expires}));
  EXPECT_GT(user.id, 0);
  EXPECT_EQ(user.created_at, clock.WallNow());
  ASSERT_OK_AND_ASSIGN(ApiToken robot,
                       timed->CreateToken({.name = "ci", .kind = TokenKind::kRobot,
                                           .owner = "team-a", .roles = {"deployer", "viewer"},
                                           .secret_sha256 = Hash('b'), .created_by = "admin"}));
  ASSERT_OK_AND_ASSIGN(ApiToken found, s.FindTokenByHash(Hash('b')));
  EXPECT_EQ(found.id, robot.id);
  EXPECT_EQ(found.kind, TokenKind::kRobot);
  EXPECT_EQ(found.owner, "team-a");
  EXPECT_EQ(found.roles, (std::vector<std::string>{"deployer", "viewer"}));
  EXPECT_EQ(found.created_by, "admin");
  EXPECT_EQ(found.expires_at, std::nullopt);
  EXPECT_EQ(found.last_used_at, std::nullopt);
  ASSERT_OK_AND_ASSIGN(ApiToken got, s.GetToken(user.id));
  EXPECT_EQ(got.expires_at, expires);
  EXPECT_EQ(got.kind, TokenKind::kUser);
  EXPECT_TRUE(got.roles.empty());
  EXPECT_CODE(s.FindTokenByHash(Hash('c')), Code::kNotFound);
  EXPECT_CODE(s.GetToken(robot.id + 100), Code::kNotFound);

  clock.Advance(std::chrono::minutes(5));
  ASSERT_OK(timed->TouchToken(user.id));
  ASSERT_OK_AND_ASSIGN(got, s.GetToken(user.id));
  EXPECT_EQ(got.last_used_at, clock.WallNow());
  EXPECT_CODE(s.TouchToken(robot.id + 100), Code::kNotFound);

  ASSERT_OK_AND_ASSIGN(auto every, s.ListTokens(""));
  ASSERT_EQ(every.size(), 2u);
  EXPECT_EQ(every[0].id, robot.id) << "newest first";
  ASSERT_OK_AND_ASSIGN(auto alices, s.ListTokens("alice"));
  ASSERT_EQ(alices.size(), 1u);
  EXPECT_EQ(alices[0].name, "laptop");

  // Bad records, and a second token with the same secret.
  EXPECT_CODE(s.CreateToken({.name = "", .owner = "a", .secret_sha256 = Hash('d')}), Code::kInvalidArgument);
  EXPECT_CODE(s.CreateToken({.name = "x", .owner = "", .secret_sha256 = Hash('d')}), Code::kInvalidArgument);
  EXPECT_CODE(s.CreateToken({.name = "x", .owner = "a", .secret_sha256 = "gty_plain"}), Code::kInvalidArgument);
  EXPECT_CODE(s.CreateToken({.name = "x", .kind = TokenKind::kRobot, .owner = "p", .secret_sha256 = Hash('d')}),
              Code::kInvalidArgument);
  EXPECT_CODE(s.CreateToken({.name = "x", .owner = "a", .secret_sha256 = Hash('a')}), Code::kAlreadyExists);
}

TYPED_TEST(StoreContractTest, ARevokedTokenKeepsItsFirstRevocation) {
  Store& s = this->store();
  ASSERT_OK_AND_ASSIGN(ApiToken t, s.CreateToken({.name = "n", .owner = "alice", .secret_sha256 = Hash('e')}));
  ASSERT_OK(s.RevokeToken(t.id, "admin"));
  ASSERT_OK_AND_ASSIGN(ApiToken revoked, s.FindTokenByHash(Hash('e')));
  ASSERT_TRUE(revoked.revoked_at.has_value());
  EXPECT_EQ(revoked.revoked_by, "admin");
  ASSERT_OK(s.RevokeToken(t.id, "alice"));
  ASSERT_OK_AND_ASSIGN(revoked, s.GetToken(t.id));
  EXPECT_EQ(revoked.revoked_by, "admin");
  EXPECT_CODE(s.RevokeToken(t.id + 1, "admin"), Code::kNotFound);
}

TYPED_TEST(StoreContractTest, OnlyTheFirstTokenIsCreatedWithOnlyIfFirst) {
  Store& s = this->store();
  ASSERT_OK(s.CreateToken({.name = "bootstrap", .owner = "admin", .secret_sha256 = Hash('1')}, true));
  EXPECT_CODE(s.CreateToken({.name = "bootstrap", .owner = "admin", .secret_sha256 = Hash('2')}, true),
              Code::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(auto all, s.ListTokens(""));
  EXPECT_EQ(all.size(), 1u);
  // Servers starting together create one.
  ASSERT_OK_AND_ASSIGN(auto fresh, Open(this->backend_.NewDatabase()));
  std::atomic<int> created{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto t = fresh->CreateToken({.name = "bootstrap", .owner = "admin",
                                   .secret_sha256 = Hash(static_cast<char>('a' + i))}, true);
      if (t.ok()) ++created;
      else EXPECT_EQ(t.status().code(), Code::kAlreadyExists) << t.status().ToString();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
}

TYPED_TEST(StoreContractTest, RoleBindingsAreGrantedOnceAndRevoked) {
  Store& s = this->store();
  ASSERT_OK(s.GrantRole({.subject = "alice", .role = "deployer", .project = "team-a", .created_by = "admin"}));
  ASSERT_OK(s.GrantRole({.subject = "alice", .role = "deployer", .project = "team-a", .created_by = "bob"}));
  ASSERT_OK(s.GrantRole({.subject_kind = SubjectKind::kGroup, .subject = "ops", .role = "admin", .project = "*"}));
  ASSERT_OK(s.GrantRole({.subject = "alice", .role = "viewer", .project = "*"}));
  ASSERT_OK_AND_ASSIGN(auto all, s.ListRoleBindings());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].subject_kind, SubjectKind::kGroup);
  EXPECT_EQ(all[0].subject, "ops");
  EXPECT_EQ(all[1].project, "*");
  EXPECT_EQ(all[2].role, "deployer");
  EXPECT_EQ(all[2].created_by, "admin") << "a second grant keeps the first";
  EXPECT_CODE(s.GrantRole({.subject = "", .role = "viewer", .project = "*"}), Code::kInvalidArgument);
  EXPECT_CODE(s.GrantRole({.subject = "a", .role = "viewer", .project = ""}), Code::kInvalidArgument);

  ASSERT_OK(s.RevokeRole(SubjectKind::kUser, "alice", "deployer", "team-a"));
  EXPECT_CODE(s.RevokeRole(SubjectKind::kUser, "alice", "deployer", "team-a"), Code::kNotFound);
  EXPECT_CODE(s.RevokeRole(SubjectKind::kUser, "ops", "admin", "*"), Code::kNotFound);  // ops is a group
  ASSERT_OK_AND_ASSIGN(all, s.ListRoleBindings());
  EXPECT_EQ(all.size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Schema, connections, durability

TYPED_TEST(StoreContractTest, OpeningAgainAppliesNoMigrationAndKeepsTheData) {
  const int64_t release = this->NewRelease("shop");
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_GE(version, 1);
  ASSERT_OK_AND_ASSIGN(auto second, Open(this->url_));
  ASSERT_OK_AND_ASSIGN(int version2, second->SchemaVersion());
  EXPECT_EQ(version2, version);
  ASSERT_OK_AND_ASSIGN(Release got, second->GetRelease(release));
  EXPECT_EQ(got.app, "shop");
  EXPECT_OK(second->Verify());
}

TYPED_TEST(StoreContractTest, ADatabaseFromANewerGantryIsRefused) {
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  auto older = Open(this->url_, {.max_schema_version = version - 1});
  ASSERT_FALSE(older.ok());
  EXPECT_EQ(older.status().code(), Code::kFailedPrecondition) << older.status().ToString();
  EXPECT_NE(older.status().message().find("newer"), std::string::npos) << older.status().message();
  EXPECT_OK(this->store().Verify());  // and it was left alone
}

TYPED_TEST(StoreContractTest, ServersOpeningOneNewDatabaseTogetherMigrateItOnce) {
  const std::string url = this->backend_.NewDatabase();
  std::vector<Status> results(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      auto store = Open(url);
      results[i] = store.ok() ? (*store)->SchemaVersion().status() : store.status();
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& r : results) EXPECT_TRUE(r.ok()) << r.ToString();
  ASSERT_OK_AND_ASSIGN(auto store, Open(url));
  ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
  ASSERT_OK_AND_ASSIGN(int expected, this->store().SchemaVersion());
  EXPECT_EQ(version, expected);
}

TYPED_TEST(StoreContractTest, LostConnectionsAreReplacedTransparently) {
  Store& s = this->store();
  const int64_t release = this->NewRelease("shop");
  this->backend_.BreakConnections();
  ASSERT_OK_AND_ASSIGN(Release got, s.GetRelease(release));
  EXPECT_EQ(got.id, release);
  this->backend_.BreakConnections();
  ASSERT_OK_AND_ASSIGN(int64_t next, s.CreateRelease({.app = "shop"}));
  EXPECT_GT(next, release);
}

// A child process acknowledges releases (writes their ids to a pipe after CreateRelease returned)
// until it is killed with SIGKILL mid-stream; every acknowledged release must be there afterwards,
// in a database that passes its consistency checks.
TYPED_TEST(StoreContractTest, AcknowledgedReleasesSurviveSigkill) {
  // SQLite must not carry open connections of the same file across fork() (its lock bookkeeping
  // is per process): the parent's store is closed first.
  this->store_.reset();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto store = Open(this->url_);
    if (!store.ok()) _exit(3);
    for (int i = 0;; ++i) {
      auto id = (*store)->CreateRelease(
          {.app = "durable",
           .source_revision = std::to_string(i),
           .image_digests = {{"web", "sha256:" + std::to_string(i)}}});
      if (!id.ok()) _exit(4);
      const int64_t ack = *id;
      if (write(fds[1], &ack, sizeof ack) != sizeof ack) _exit(5);
    }
  }
  close(fds[1]);
  std::vector<int64_t> acked;
  int64_t id = 0;
  while (acked.size() < 30 && read(fds[0], &id, sizeof id) == sizeof id) acked.push_back(id);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  while (read(fds[0], &id, sizeof id) == sizeof id) acked.push_back(id);  // acked before the kill
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "the child exited with " << WEXITSTATUS(wstatus);
  ASSERT_GE(acked.size(), 30u);

  ASSERT_OK_AND_ASSIGN(auto reopened, Open(this->url_));
  EXPECT_OK(reopened->Verify());
  for (int64_t ack : acked) {
    auto release = reopened->GetRelease(ack);
    ASSERT_TRUE(release.ok()) << "acknowledged release " << ack << ": "
                              << release.status().ToString();
    EXPECT_EQ(release->app, "durable");
    EXPECT_EQ(release->image_digests.size(), 1u) << "release " << ack << " lost its digest";
  }
  // No half-written release: every release has its digest.
  ASSERT_OK_AND_ASSIGN(auto all, reopened->ListReleases("durable", 100000));
  EXPECT_GE(all.size(), acked.size());
  for (const Release& r : all) EXPECT_EQ(r.image_digests.size(), 1u) << "release " << r.id;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: reaching the server.

TEST(PostgresStoreTest, AnUnreachableServerIsUnavailableAfterBoundedRetries) {
  auto store = Open("postgresql://gantry:hunter2@127.0.0.1:1/gantry",
                    {.retry = {.initial = 1ms, .max_delay = 5ms, .max_attempts = 3}});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kUnavailable) << store.status().ToString();
  EXPECT_EQ(store.status().message().find("hunter2"), std::string::npos)
      << store.status().message();
}

TEST(PostgresStoreTest, AWrongPasswordIsUnauthenticatedAndNotRetried) {
  auto& pg = testenv::Shared("postgres.sh");
  const std::string url = "postgresql://" + pg.Get("PG_USER") + ":wrong-secret@" +
                          pg.Get("PG_HOST") + ":" + pg.Get("PG_PORT") + "/" + pg.Get("PG_DATABASE");
  auto store = Open(url);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kUnauthenticated) << store.status().ToString();
  EXPECT_EQ(store.status().message().find("wrong-secret"), std::string::npos);
}

}  // namespace
}  // namespace gantry::store
