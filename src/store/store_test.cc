// The store's pure parts: names, transition rules, URLs, migration SQL.

#include "store/store.h"

#include <gtest/gtest.h>

#include "store/internal/sql.h"

namespace gantry::store {
namespace {

TEST(StoreNamesTest, RoundTrip) {
  for (TargetState s : {TargetState::kPending, TargetState::kApplying, TargetState::kHealthy,
                        TargetState::kFailed, TargetState::kRolledBack, TargetState::kSuperseded}) {
    EXPECT_EQ(ParseTargetState(Name(s)), s) << Name(s);
  }
  for (RunState s : {RunState::kQueued, RunState::kRunning, RunState::kSucceeded, RunState::kFailed,
                     RunState::kCancelled, RunState::kInterrupted, RunState::kSkipped}) {
    EXPECT_EQ(ParseRunState(Name(s)), s) << Name(s);
  }
  for (RunEvent e : {RunEvent::kPush, RunEvent::kPullRequest, RunEvent::kManual}) {
    EXPECT_EQ(ParseRunEvent(Name(e)), e) << Name(e);
  }
  EXPECT_EQ(Name(TargetState::kRolledBack), "rolled_back");
  EXPECT_EQ(Name(RunEvent::kPullRequest), "pull_request");
  EXPECT_EQ(ParseTargetState("Healthy"), std::nullopt);
  EXPECT_EQ(ParseRunState(""), std::nullopt);
}

TEST(StoreTransitionTest, TargetsLeaveEveryStateButRolledBackAndSuperseded) {
  EXPECT_TRUE(CheckTransition(TargetState::kHealthy, TargetState::kApplying).ok());
  EXPECT_TRUE(CheckTransition(TargetState::kFailed, TargetState::kRolledBack).ok());
  EXPECT_TRUE(CheckTransition(TargetState::kPending, TargetState::kSuperseded).ok());
  Status s = CheckTransition(TargetState::kRolledBack, TargetState::kHealthy);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("rolled_back"), std::string::npos) << s.message();
  EXPECT_EQ(CheckTransition(TargetState::kSuperseded, TargetState::kSuperseded).code(),
            Code::kFailedPrecondition);
}

TEST(StoreTransitionTest, RunsStopAtFinalStatesButMayBeRequeuedAfterAnInterruption) {
  EXPECT_TRUE(CheckRunTransition(RunState::kQueued, RunState::kRunning).ok());
  EXPECT_TRUE(CheckRunTransition(RunState::kInterrupted, RunState::kQueued).ok());
  EXPECT_TRUE(CheckRunTransition(RunState::kSucceeded, RunState::kSucceeded).ok());  // a retry
  EXPECT_EQ(CheckRunTransition(RunState::kSucceeded, RunState::kRunning).code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(CheckRunTransition(RunState::kCancelled, RunState::kQueued).code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(CheckRunTransition(RunState::kRunning, RunState::kSkipped).code(),
            Code::kFailedPrecondition);
  EXPECT_TRUE(CheckStepTransition(RunState::kQueued, RunState::kSkipped).ok());
  EXPECT_EQ(CheckStepTransition(RunState::kSkipped, RunState::kRunning).code(),
            Code::kFailedPrecondition);
  EXPECT_FALSE(IsFinal(RunState::kInterrupted));
  EXPECT_TRUE(IsFinal(RunState::kFailed));
}

TEST(StoreUrlTest, SqliteForms) {
  auto abs = ParseUrl("sqlite:///var/lib/gantry/gantry.db");
  ASSERT_TRUE(abs.ok()) << abs.status().ToString();
  EXPECT_EQ(abs->kind, Location::Kind::kSqlite);
  EXPECT_EQ(abs->target, "/var/lib/gantry/gantry.db");
  auto rel = ParseUrl("sqlite:state/gantry.db");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->target, "state/gantry.db");
  auto plain = ParseUrl("/tmp/g.db");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->kind, Location::Kind::kSqlite);
  EXPECT_EQ(plain->target, "/tmp/g.db");
}

TEST(StoreUrlTest, PostgresForms) {
  for (std::string_view url : {"postgresql://u:p@db:5432/gantry", "postgres://db/gantry"}) {
    auto loc = ParseUrl(url);
    ASSERT_TRUE(loc.ok()) << url;
    EXPECT_EQ(loc->kind, Location::Kind::kPostgres);
    EXPECT_EQ(loc->target, url);
  }
}

TEST(StoreUrlTest, RejectsWhatItCannotOpen) {
  for (std::string_view url : {"", "sqlite:", "sqlite://relative.db", ":memory:",
                               "sqlite:///a.db?mode=ro", "mysql://u:secret@h/db"}) {
    auto loc = ParseUrl(url);
    ASSERT_FALSE(loc.ok()) << url;
    EXPECT_EQ(loc.status().code(), Code::kInvalidArgument) << url;
    EXPECT_EQ(loc.status().message().find("secret"), std::string::npos) << loc.status().message();
  }
}

TEST(StoreUrlTest, RedactsPasswords) {
  EXPECT_EQ(RedactUrl("postgresql://gantry:s3cret@db:5432/gantry?sslmode=require"),
            "postgresql://gantry:***@db:5432/gantry?sslmode=require");
  EXPECT_EQ(RedactUrl("postgres://db/gantry?user=g&password=s3cret&sslmode=verify-full"),
            "postgres://db/gantry?user=g&password=***&sslmode=verify-full");
  EXPECT_EQ(RedactUrl("postgresql://gantry@db/gantry"), "postgresql://gantry@db/gantry");
  EXPECT_EQ(RedactUrl("/var/lib/gantry.db"), "/var/lib/gantry.db");
}

TEST(StoreMigrationsTest, NumberedFromOneWithoutGaps) {
  const auto& all = internal::Migrations();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, static_cast<int>(i) + 1);
}

TEST(StoreMigrationsTest, TokensAreReplacedPerDialect) {
  for (const auto& m : internal::Migrations()) {
    std::string sqlite = internal::MigrationSql(m, internal::Dialect::kSqlite);
    std::string pg = internal::MigrationSql(m, internal::Dialect::kPostgres);
    EXPECT_EQ(sqlite.find('@'), std::string::npos) << m.version;
    EXPECT_EQ(pg.find('@'), std::string::npos) << m.version;
    EXPECT_EQ(pg.find("AUTOINCREMENT"), std::string::npos);
    EXPECT_EQ(sqlite.find("BYTEA"), std::string::npos);
  }
}

}  // namespace
}  // namespace gantry::store
