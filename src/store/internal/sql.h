#pragma once
// Private to the store module: the little of SQL both databases share.
//
// SqlStore (sql_store.cc) implements every Store operation once, in SQL common to SQLite 3.35+ and
// PostgreSQL (RETURNING, ON CONFLICT, partial indexes), with $1..$n parameters; values are always
// bound, never spliced into SQL. A backend (sqlite_store.cc, postgres_store.cc) supplies
// connections and the few statements that differ (Dialect).

#include <charconv>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace gantry::store::internal {

enum class Dialect { kSqlite, kPostgres };

// Bytes bound as a BLOB / bytea rather than text.
struct Blob {
  std::string bytes;
};
using Value = std::variant<std::nullptr_t, int64_t, std::string, Blob>;

// One result row; every cell as its text (integers in decimal, BLOB/bytea as raw bytes), nullopt
// for NULL.
struct Row {
  std::vector<std::optional<std::string>> cells;

  bool IsNull(size_t i) const { return !cells.at(i).has_value(); }
  const std::string& Text(size_t i) const {
    static const std::string kEmpty;
    return cells.at(i) ? *cells[i] : kEmpty;
  }
  int64_t Int(size_t i) const {
    int64_t v = 0;
    const std::string& s = Text(i);
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  std::optional<int64_t> OptInt(size_t i) const {
    return IsNull(i) ? std::nullopt : std::optional<int64_t>(Int(i));
  }
};
using Rows = std::vector<Row>;

enum class TxMode { kRead, kWrite };

// One database connection, used by one thread at a time (the pool hands it out).
class Connection {
 public:
  virtual ~Connection() = default;

  // Runs one statement with $1..$n bound to `params`. Errors: AlreadyExists for a unique
  // violation, NotFound for a foreign-key violation, DataLoss for corruption, Unavailable when the
  // connection is lost, Aborted for a deadlock/serialization failure; transient() tells whether
  // retrying the whole transaction may succeed.
  virtual Result<Rows> Query(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs a script of statements without parameters (migrations).
  virtual Status Script(std::string_view sql) = 0;

  virtual Status Begin(TxMode mode) = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;  // best effort; a failure marks the connection broken

  // True when the last failure was transient (busy, deadlock, lost connection); reset by Begin().
  bool transient() const { return transient_; }
  // True when the connection must not be reused.
  bool broken() const { return broken_; }

 protected:
  bool transient_ = false;
  bool broken_ = false;
};

// Microseconds since the Unix epoch, UTC.
inline int64_t Micros(Time t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
inline Time FromMicros(int64_t us) {
  return Time(std::chrono::duration_cast<Time::duration>(std::chrono::microseconds(us)));
}

// The migrations, in order (migrations.cc); their SQL for `dialect`.
struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;  // @ID@ and @BLOB@ are replaced per dialect
  // Run after `sql` on one database only (triggers, whose syntax differs).
  std::string_view sqlite_only = {};
  std::string_view postgres_only = {};
};
const std::vector<Migration>& Migrations();
std::string MigrationSql(const Migration& m, Dialect dialect);

// The backends: each opens its database and returns a migrated SqlStore.
Result<std::unique_ptr<Store>> OpenSqlite(const std::string& path, const Options& options);
Result<std::unique_ptr<Store>> OpenPostgres(const std::string& url, const Options& options);

}  // namespace gantry::store::internal
