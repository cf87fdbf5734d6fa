// The PostgreSQL of test/env/postgres.sh works for a libpq client: password auth over TCP on
// loopback, DDL, and a row that comes back as written.

#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "test/env/testenv.h"

namespace gantry {
namespace {

using Connection = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;

Connection Connect(const std::string& url) {
  return Connection(PQconnectdb(url.c_str()), &PQfinish);
}

TEST(PostgresSmokeTest, WritesAndReadsBackARow) {
  auto& pg = testenv::Shared("postgres.sh");
  EXPECT_EQ(pg.Get("PG_HOST"), "127.0.0.1");
  Connection conn = Connect(pg.Get("PG_URL"));
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(std::string(PQdb(conn.get())), pg.Get("PG_DATABASE"));
  EXPECT_EQ(std::string(PQuser(conn.get())), pg.Get("PG_USER"));

  PgResult created(
      PQexec(conn.get(), "CREATE TABLE smoke (id bigint PRIMARY KEY, name text NOT NULL)"),
      &PQclear);
  ASSERT_EQ(PQresultStatus(created.get()), PGRES_COMMAND_OK) << PQerrorMessage(conn.get());

  const char* params[] = {"42", "gantry ✓"};
  PgResult inserted(PQexecParams(conn.get(), "INSERT INTO smoke (id, name) VALUES ($1, $2)", 2,
                                 nullptr, params, nullptr, nullptr, 0),
                    &PQclear);
  ASSERT_EQ(PQresultStatus(inserted.get()), PGRES_COMMAND_OK) << PQerrorMessage(conn.get());
  EXPECT_STREQ(PQcmdTuples(inserted.get()), "1");

  // Read back on a second connection: the row was committed, not just visible to its writer.
  Connection reader = Connect(pg.Get("PG_URL"));
  ASSERT_EQ(PQstatus(reader.get()), CONNECTION_OK) << PQerrorMessage(reader.get());
  PgResult rows(PQexec(reader.get(), "SELECT id, name FROM smoke ORDER BY id"), &PQclear);
  ASSERT_EQ(PQresultStatus(rows.get()), PGRES_TUPLES_OK) << PQerrorMessage(reader.get());
  ASSERT_EQ(PQntuples(rows.get()), 1);
  EXPECT_STREQ(PQgetvalue(rows.get(), 0, 0), "42");
  EXPECT_STREQ(PQgetvalue(rows.get(), 0, 1), "gantry ✓");

  PgResult dropped(PQexec(conn.get(), "DROP TABLE smoke"), &PQclear);
  EXPECT_EQ(PQresultStatus(dropped.get()), PGRES_COMMAND_OK) << PQerrorMessage(conn.get());
}

TEST(PostgresSmokeTest, RejectsAWrongPassword) {
  auto& pg = testenv::Shared("postgres.sh");
  std::string url = "postgresql://" + pg.Get("PG_USER") + ":wrong@" + pg.Get("PG_HOST") + ":" +
                    pg.Get("PG_PORT") + "/" + pg.Get("PG_DATABASE");
  Connection conn = Connect(url);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(conn.get())).find("password authentication failed"),
            std::string::npos)
      << PQerrorMessage(conn.get());
}

}  // namespace
}  // namespace gantry
