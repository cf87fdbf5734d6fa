// Faults under the store: PostgreSQL (test/env/postgres.sh) behind Toxiproxy, and SQLite on a small
// tmpfs that fills up. The invariants are read from outside the store under test (libpq straight to
// the database, a second SQLite handle):
//   - every write the store acknowledged is in the database exactly once, no row is duplicated, and
//     a write that failed is absent unless its error said its outcome is unknown;
//   - a PostgreSQL that accepts and then stays silent, from the start or half-open mid-stream, fails
//     a write within the store's reply and connect timeouts (before Options::reply_timeout: never);
//   - sliced streams and delayed closes lose and duplicate nothing;
//   - a full disk fails SQLite writes with a clear ResourceExhausted, reads go on, and once space is
//     freed writes go on, with everything acknowledged still there after a reopen.
// The fault schedule comes from GANTRY_FAULT_SEED; each scenario prints its FAULT line.

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "store/store.h"
#include "test/env/testenv.h"
#include "test/env/toxiproxy.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using testenv::RecordFault;
using testenv::Seconds;

testenv::Toxiproxy& Toxi() { return testenv::SharedToxiproxy(); }

// One statement on `url` (libpq, not the store under test); the first column of every row, or
// "ERROR: ..." when it fails.
std::vector<std::string> Sql(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::vector<std::string> out;
  if (PQstatus(conn) != CONNECTION_OK) {
    out.push_back(std::string("ERROR: ") + PQerrorMessage(conn));
  } else {
    PGresult* res = PQexec(conn, sql.c_str());
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      for (int r = 0; r < PQntuples(res); ++r) out.emplace_back(PQgetvalue(res, r, 0));
    } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      out.push_back(std::string("ERROR: ") + PQerrorMessage(conn));
    }
    PQclear(res);
  }
  PQfinish(conn);
  return out;
}

// What a stream of writes saw: the keys acknowledged, and the failures (key → message).
struct Ledger {
  std::vector<std::string> acked;
  std::map<std::string, std::string> failed;
};

// Checks, against `count(key)` read from outside, that every acknowledged key is there once and
// every failed one is absent unless its error said the outcome is unknown.
void ExpectExactlyOnce(const Ledger& ledger, const std::function<int(const std::string&)>& count,
                       const std::string& what) {
  for (const std::string& key : ledger.acked) {
    EXPECT_EQ(count(key), 1) << what << " " << key << " was acknowledged";
  }
  for (const auto& [key, error] : ledger.failed) {
    int n = count(key);
    EXPECT_LE(n, 1) << what << " " << key;
    if (n == 1) {
      EXPECT_NE(error.find("unknown"), std::string::npos)
          << what << " " << key << " is in the database although its write failed with: " << error;
    }
  }
}

// Writes release rev-I and run c0ffeeIIII, noting each in its ledger; true when both were
// acknowledged.
bool WriteReleaseAndRun(store::Store& store, int i, Ledger& releases, Ledger& runs) {
  std::string rev = fmt::format("rev-{}", i);
  auto release = store.CreateRelease({.app = "shop", .source_revision = rev, .config_revision = "cfg-" + rev});
  if (release.ok()) releases.acked.push_back(rev);
  else releases.failed[rev] = release.status().ToString();
  std::string commit = fmt::format("c0ffee{:04}", i);
  auto run = store.CreateRun({.repo = "https://git.example/shop.git", .pipeline = "shop/ci", .commit = commit,
                              .ref = "refs/heads/main"});
  if (run.ok()) runs.acked.push_back(commit);
  else runs.failed[commit] = run.status().ToString();
  return release.ok() && run.ok();
}

// ---- PostgreSQL behind Toxiproxy ------------------------------------------------------------------

class PostgresFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& pg = testenv::Shared("postgres.sh");
    ASSERT_TRUE(Toxi().Reset().ok());
    auto listen = Toxi().CreateProxy("postgres", pg.Get("PG_HOST") + ":" + pg.Get("PG_PORT"));
    ASSERT_TRUE(listen.ok()) << listen.status().ToString();
    static int counter = 0;
    database_ = fmt::format("faults_{}_{}", getpid(), ++counter);
    const std::string& admin = pg.Get("PG_URL");
    ASSERT_TRUE(Sql(admin, "CREATE DATABASE " + database_).empty());
    direct_url_ = admin.substr(0, admin.rfind('/') + 1) + database_;
    proxied_url_ = UrlThrough(*listen);
  }
  void TearDown() override {
    ASSERT_TRUE(Toxi().Reset().ok());
    Sql(testenv::Shared("postgres.sh").Get("PG_URL"), "DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)");
  }

  // The test's database through the proxy listening on `listen`.
  std::string UrlThrough(const std::string& listen) {
    auto& pg = testenv::Shared("postgres.sh");
    return "postgresql://" + pg.Get("PG_USER") + ":" + pg.Get("PG_PASSWORD") + "@" + listen + "/" + database_ +
           "?connect_timeout=2";
  }

  // The store through the proxy, with short bounds so that faults show within seconds.
  std::unique_ptr<store::Store> Proxied(int attempts, const std::string& url = "") {
    auto s = store::Open(url.empty() ? proxied_url_ : url, {.max_connections = 2,
                                        .reply_timeout = 2s,
                                        .retry = {.initial = 20ms, .max_delay = 200ms, .max_attempts = attempts,
                                                  .max_elapsed = 6s}});
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // How many rows of `table` have each value of `column` (one query: the checks read hundreds).
  std::map<std::string, int> Counts(const std::string& table, const std::string& column) {
    std::map<std::string, int> out;
    for (const std::string& row : Sql(direct_url_, fmt::format("SELECT {0} || '=' || count(*) FROM {1} GROUP BY {0}",
                                                               column, table))) {
      out[row.substr(0, row.rfind('='))] = std::atoi(row.substr(row.rfind('=') + 1).c_str());
    }
    return out;
  }
  // The invariant, read with libpq: no release is duplicated, and every acknowledged release and
  // run is in the database once (ExpectExactlyOnce).
  void ExpectLedgersInDatabase(const Ledger& releases, const Ledger& runs) {
    auto release_counts = Counts("releases", "source_revision");
    auto run_counts = Counts("runs", "commit_sha");
    for (const auto& [key, n] : release_counts) EXPECT_EQ(n, 1) << "release " << key << " is duplicated";
    ExpectExactlyOnce(releases, [&](const std::string& k) { return release_counts[k]; }, "release");
    ExpectExactlyOnce(runs, [&](const std::string& k) { return run_counts[k]; }, "run");
  }
  int Count(const std::string& table, const std::string& column, const std::string& key) {
    auto counts = Counts(table, column);
    return counts.count(key) ? counts[key] : 0;
  }

  std::string database_, direct_url_, proxied_url_;
};

// Releases and runs are written one after another while the proxy resets every connection for
// seeded windows of 50-400 ms (Toxiproxy reset_peer), three times: statements and commits are cut
// mid-transaction. Every acknowledged release and run is in the database exactly once, none is
// duplicated, a failed one is absent unless its error said "unknown", and writes go on afterwards.
TEST_F(PostgresFaultsTest, ResetsMidTransactionLoseAndDuplicateNothing) {
  auto store = Proxied(6);
  ASSERT_NE(store, nullptr);
  std::mt19937_64 random(testenv::FaultSeed());
  std::vector<std::pair<int, int>> windows;  // (start after the previous end, length) in ms
  for (int i = 0; i < 3; ++i) windows.emplace_back(100 + random() % 300, 50 + random() % 350);

  std::atomic<bool> done{false};
  Clock::time_point healed;
  double fault_s = 0;
  std::thread schedule([&] {
    for (auto [gap, length] : windows) {
      std::this_thread::sleep_for(std::chrono::milliseconds(gap));
      auto start = Clock::now();
      EXPECT_TRUE(Toxi().AddToxic("postgres", {.name = "reset", .type = "reset_peer",
                                               .attributes = {{"timeout", 0}}}).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(length));
      EXPECT_TRUE(Toxi().RemoveToxic("postgres", "reset").ok());
      fault_s += Seconds(Clock::now() - start);
    }
    healed = Clock::now();
    done = true;
  });
  Ledger releases, runs;
  int i = 0;
  while (!done || i < 10) {
    WriteReleaseAndRun(*store, i, releases, runs);
    ++i;
  }
  schedule.join();
  // The first write after the last window: the time to recover.
  auto after = store->CreateRelease({.app = "shop", .source_revision = "after", .config_revision = "cfg-after"});
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(after.ok()) << after.status().ToString();

  ExpectLedgersInDatabase(releases, runs);
  for (const auto& [key, error] : releases.failed) std::cout << "  release " << key << ": " << error << std::endl;
  std::cout << "  " << releases.acked.size() << " releases and " << runs.acked.size() << " runs acknowledged, "
            << releases.failed.size() + runs.failed.size() << " writes failed" << std::endl;
  RecordFault("postgres-reset-mid-transaction",
              releases.failed.empty() && runs.failed.empty() ? "all-acked-once" : "acked-once-some-failed", fault_s,
              recover_s);
}

// PostgreSQL accepts and then nothing comes back (Toxiproxy timeout 0, existing connections too):
// a write fails Unavailable within the reply timeout (2 s) and connect timeout (2 s) of its two
// attempts, instead of hanging; the release it tried is not in the database; the next write after
// the fault succeeds.
TEST_F(PostgresFaultsTest, SilentServerFailsWithinTheReplyTimeout) {
  auto store = Proxied(2);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateRelease({.app = "shop", .source_revision = "before", .config_revision = "c"}).ok());
  ASSERT_TRUE(Toxi().AddToxic("postgres", {.name = "silence", .type = "timeout", .attributes = {{"timeout", 0}}}).ok());
  auto start = Clock::now();
  auto* s = store.get();
  auto written = testenv::RunWithin<Status>(60s, [s] {
    return s->CreateRelease({.app = "shop", .source_revision = "silent", .config_revision = "c"}).status();
  });
  double fault_s = Seconds(Clock::now() - start);
  ASSERT_TRUE(written.has_value()) << "a write to a silent PostgreSQL did not return within 60 s";
  EXPECT_EQ(written->code(), Code::kUnavailable) << written->ToString();
  EXPECT_LT(fault_s, 12.0);
  std::cout << "  after " << fault_s << " s: " << written->ToString() << std::endl;

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  auto after = store->CreateRelease({.app = "shop", .source_revision = "after", .config_revision = "c"});
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(Count("releases", "source_revision", "before"), 1);
  EXPECT_EQ(Count("releases", "source_revision", "silent"), 0) << "a write that failed is in the database";
  EXPECT_EQ(Count("releases", "source_revision", "after"), 1);
  RecordFault("postgres-timeout", written->code() == Code::kUnavailable ? "failed-in-bounds" : "unexpected", fault_s,
              recover_s);
}

// Both directions to PostgreSQL in slices of a seeded 16-256 bytes, every close delayed (slicer,
// slow_close): 40 releases and runs written through it are all acknowledged and each is in the
// database once.
TEST_F(PostgresFaultsTest, SlicedStreamsAndSlowCloseLoseNothing) {
  std::mt19937_64 random(testenv::FaultSeed() + 1);
  auto& pg = testenv::Shared("postgres.sh");
  std::string what;
  auto sliced = testenv::CreateSlicedSlowCloseProxy(Toxi(), "postgres-sliced", pg.Get("PG_HOST") + ":" + pg.Get("PG_PORT"),
                                                    random, what);
  ASSERT_TRUE(sliced.ok()) << sliced.status().ToString();
  auto store = Proxied(3, UrlThrough(*sliced));
  ASSERT_NE(store, nullptr);
  Ledger releases, runs;
  auto start = Clock::now();
  for (int i = 0; i < 20; ++i) WriteReleaseAndRun(*store, i, releases, runs);
  double took = Seconds(Clock::now() - start);
  EXPECT_TRUE(releases.failed.empty()) << releases.failed.begin()->second;
  EXPECT_TRUE(runs.failed.empty()) << runs.failed.begin()->second;
  ExpectLedgersInDatabase(releases, runs);
  std::cout << "  " << what << ": 40 writes in " << took << " s" << std::endl;
  store.reset();
  EXPECT_TRUE(Toxi().DeleteProxy("postgres-sliced").ok());
  RecordFault("postgres-sliced-slow-close", "all-acked-once", took, 0);
}

// Half-open: a seeded 100-400 ms into a stream of writes, PostgreSQL's direction goes silent while
// the store's still flows (no FIN, no reset: a vanished host). The write in flight fails within the
// reply timeout (2 s) of its attempts and connect timeouts instead of hanging; every acknowledged
// write is there once, a failed one only if its error said the outcome is unknown; writes go on
// after the fault.
TEST_F(PostgresFaultsTest, HalfOpenMidStreamFailsWithinTheReplyTimeoutAndLosesNothing) {
  auto store = Proxied(2);
  ASSERT_NE(store, nullptr);
  std::mt19937_64 random(testenv::FaultSeed() + 2);
  auto silent = testenv::GoHalfOpenAfter(Toxi(), "postgres", std::chrono::milliseconds(100 + random() % 300));
  Ledger releases, runs;
  auto start = Clock::now();
  Clock::time_point first_failure;
  for (int i = 0; i < 10'000 && releases.failed.empty() && runs.failed.empty(); ++i) {
    auto* s = store.get();
    auto wrote = testenv::RunWithin<bool>(60s, [&, s, i] { return WriteReleaseAndRun(*s, i, releases, runs); });
    ASSERT_TRUE(wrote.has_value()) << "a write to a half-open PostgreSQL did not return within 60 s";
    first_failure = Clock::now();
  }
  ASSERT_TRUE(silent.get().ok());
  double fault_s = Seconds(first_failure - start);
  ASSERT_FALSE(releases.failed.empty() && runs.failed.empty()) << "10000 writes went through a silent connection";
  std::string error = !releases.failed.empty() ? releases.failed.begin()->second : runs.failed.begin()->second;
  std::cout << "  after " << fault_s << " s: " << error << std::endl;
  EXPECT_NE(error.find("Unavailable"), std::string::npos) << error;

  ASSERT_TRUE(Toxi().Reset().ok());
  auto healed = Clock::now();
  auto after = store->CreateRelease({.app = "shop", .source_revision = "after", .config_revision = "c"});
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  ExpectLedgersInDatabase(releases, runs);
  RecordFault("postgres-half-open", "failed-in-bounds-acked-once", fault_s, recover_s);
}

// ---- SQLite on a full disk ------------------------------------------------------------------------

// The SQLite store (and its run logs) on an 8 MB tmpfs that is then filled: releases with a 32 KiB
// note and 60 KiB log chunks are written until the disk refuses them. The failure is
// ResourceExhausted naming the full disk; reads go on; after the filler is removed writes go on; and
// everything acknowledged is there, once, when the database is opened again.
TEST(SqliteFaultsTest, FullDiskFailsWritesClearlyAndLosesNothing) {
  testenv::SmallDisk disk;
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  const std::string url = "sqlite://" + (disk.dir() / "gantry.db").string();
  auto opened = store::Open(url);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<store::Store> store = std::move(*opened);
  auto run = store->CreateRun({.repo = "https://git.example/shop.git", .pipeline = "shop/ci", .commit = "c0ffee",
                               .ref = "refs/heads/main"});
  ASSERT_TRUE(run.ok()) << run.status().ToString();

  std::mt19937_64 random(testenv::FaultSeed());
  auto letters = [&random](size_t n) {
    std::string s = testenv::RandomBytes(n, random);
    for (char& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
    return s;
  };
  const std::string note = letters(32 << 10);
  Ledger releases, logs;
  auto write = [&](int i) {
    std::string rev = fmt::format("rev-{}", i);
    auto r = store->CreateRelease({.app = "shop", .source_revision = rev, .config_revision = "c", .note = note});
    if (r.ok()) releases.acked.push_back(rev);
    else releases.failed[rev] = r.status().ToString();
    std::string chunk = fmt::format("chunk {} ", i) + letters(60 << 10);
    Status s = store->AppendLogChunk(*run, "build", i, chunk);
    if (s.ok()) logs.acked.push_back(std::to_string(i));
    else logs.failed[std::to_string(i)] = s.ToString();
    return r.ok() && s.ok();
  };
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(write(i)) << (releases.failed.empty() ? "" : releases.failed.begin()->second)
                          << (logs.failed.empty() ? "" : logs.failed.begin()->second);
  }

  fs::path filler = disk.Fill();
  auto start = Clock::now();
  int i = 10;
  while (write(i) && i < 200) ++i;
  double fault_s = Seconds(Clock::now() - start);
  ASSERT_FALSE(releases.failed.empty() && logs.failed.empty()) << "200 writes went onto a full 8 MB disk";
  std::string error = !releases.failed.empty() ? releases.failed.begin()->second : logs.failed.begin()->second;
  std::cout << "  on the full disk: " << error << std::endl;
  EXPECT_NE(error.find("ResourceExhausted"), std::string::npos) << error;
  EXPECT_NE(error.find("full"), std::string::npos) << error;
  // Reads go on while the disk is full.
  auto listed = store->ListReleases("shop", 1000);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->size(), releases.acked.size());

  fs::remove(filler);
  auto healed = Clock::now();
  ++i;
  bool recovered = write(i);
  double recover_s = Seconds(Clock::now() - healed);
  ASSERT_TRUE(recovered) << "writes did not resume after space was freed: "
                         << (releases.failed.empty() ? "" : releases.failed.rbegin()->second);
  EXPECT_TRUE(store->Verify().ok());
  store.reset();

  auto reopened = store::Open(url);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  auto all = (*reopened)->ListReleases("shop", 1000);
  ASSERT_TRUE(all.ok());
  std::map<std::string, int> count;
  for (const auto& r : *all) ++count[r.source_revision];
  ExpectExactlyOnce(releases, [&](const std::string& k) { return count[k]; }, "release");
  auto chunks = (*reopened)->ReadLog(*run, "build", 0, 10000);
  ASSERT_TRUE(chunks.ok()) << chunks.status().ToString();
  std::map<std::string, int> seqs;
  for (const auto& c : *chunks) ++seqs[std::to_string(c.seq)];
  ExpectExactlyOnce(logs, [&](const std::string& k) { return seqs[k]; }, "log chunk");
  RecordFault("sqlite-enospc", "failed-clearly-nothing-lost", fault_s, recover_s);
}

}  // namespace
}  // namespace gantry
