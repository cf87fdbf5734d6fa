// What only SQLite has: the file's journal mode, and files that are not (or no longer) databases.
// The behaviour both backends share is tested by test/integration/store_contract_test.cc.

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "store/store.h"

namespace gantry::store {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "store_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

// One value of a query on a raw connection to `path`.
std::string QueryOne(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

TEST_F(SqliteStoreTest, CreatesAWalDatabaseWithEveryMigrationRecorded) {
  auto store = Open("sqlite://" + Path("gantry.db"));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto version = (*store)->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_GE(*version, 1);
  EXPECT_EQ(QueryOne(Path("gantry.db"), "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryOne(Path("gantry.db"), "SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(*version));
}

TEST_F(SqliteStoreTest, ANewDatabaseFileIsReadableByItsOwnerOnly) {
  const mode_t old = ::umask(022);
  auto store = Open(Path("gantry.db"));
  ::umask(old);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->Audit({.actor = "a", .action = "b"}).ok());  // the -wal file exists now
  for (const char* name : {"gantry.db", "gantry.db-wal"}) {
    struct stat st;
    ASSERT_EQ(::stat(Path(name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseIsDataLoss) {
  std::ofstream(Path("notes.txt")) << std::string(8192, 'x');
  auto store = Open(Path("notes.txt"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kDataLoss) << store.status().ToString();
  EXPECT_NE(store.status().message().find("notes.txt"), std::string::npos);
}

TEST_F(SqliteStoreTest, AMissingDirectoryFailsAtOnceNamingThePath) {
  auto store = Open(Path("no/such/dir/gantry.db"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kFailedPrecondition) << store.status().ToString();
  EXPECT_NE(store.status().message().find("no/such/dir"), std::string::npos);
}

TEST_F(SqliteStoreTest, ADamagedFileIsReportedAsDataLoss) {
  const std::string path = Path("gantry.db");
  {
    auto store = Open(path);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE((*store)->Audit({.actor = "alice", .action = "deploy",
                                   .object = std::string(200, 'o'), .details = std::to_string(i)})
                      .ok());
    }
  }  // closing the last connection checkpoints the WAL into the file
  const auto size = std::filesystem::file_size(path);
  ASSERT_GT(size, 8192u);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);  // page 2 onwards: tables and indexes, the header (page 1) stays valid
    const std::string garbage(size - 4096, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = Open(path);
  Status s = store.ok() ? (*store)->Verify() : store.status();
  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
}

}  // namespace
}  // namespace gantry::store
