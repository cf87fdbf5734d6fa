// SqliteStore: the Store in one SQLite file.
//
// Each pooled connection runs in WAL mode with synchronous=FULL (a committed transaction survives
// power loss, not only a crash of the process), foreign keys on and a busy timeout for other
// processes' locks. Write transactions are BEGIN IMMEDIATE, and within one process they also take
// a mutex, so writers queue on it instead of polling SQLite's lock; readers never wait (WAL).

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <map>
#include <mutex>

#include "store/internal/sql_store.h"

namespace gantry::store::internal {
namespace {

// "$1" → "?1": SQLite binds ?NNN by number (a "$1" would be a named parameter numbered by first
// use). Quoted literals are copied unchanged.
std::string SqliteParams(std::string_view sql) {
  std::string out(sql);
  bool quoted = false;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '\'') quoted = !quoted;
    if (!quoted && out[i] == '$' && out[i + 1] >= '0' && out[i + 1] <= '9') out[i] = '?';
  }
  return out;
}

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(sqlite3* db, std::shared_ptr<std::mutex> write_mu)
      : db_(db), write_mu_(std::move(write_mu)) {}
  ~SqliteConnection() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params) override {
    GANTRY_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const Value& v = params[i];
      int rc = SQLITE_OK;
      if (std::holds_alternative<std::nullptr_t>(v)) {
        rc = sqlite3_bind_null(stmt, index);
      } else if (const int64_t* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(stmt, index, *n);
      } else if (const std::string* s = std::get_if<std::string>(&v)) {
        rc = sqlite3_bind_text64(stmt, index, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else {
        const std::string& b = std::get<Blob>(v).bytes;
        rc = sqlite3_bind_blob64(stmt, index, b.data(), b.size(), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) return Error(rc);
    }
    Rows rows;
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error(rc);
      Row& row = rows.emplace_back();
      const int n = sqlite3_column_count(stmt);
      row.cells.reserve(n);
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
          row.cells.emplace_back();
          continue;
        }
        const void* data = sqlite3_column_blob(stmt, c);
        const int bytes = sqlite3_column_bytes(stmt, c);
        row.cells.emplace_back(std::string(static_cast<const char*>(data), bytes));
      }
    }
    return rows;
  }

  Status Script(std::string_view sql) override {
    const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? OkStatus() : Error(rc);
  }

  Status Begin(TxMode mode) override {
    transient_ = false;
    if (mode == TxMode::kWrite) write_lock_ = std::unique_lock(*write_mu_);
    Status s = Script(mode == TxMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
    if (!s.ok()) Unlock();
    return s;
  }
  Status Commit() override {
    Status s = Script("COMMIT");
    if (s.ok()) Unlock();
    return s;  // on failure the transaction is still open: Rollback() ends it
  }
  void Rollback() override {
    if (sqlite3_get_autocommit(db_) == 0 && !Script("ROLLBACK").ok()) broken_ = true;
    Unlock();
  }

 private:
  void Unlock() {
    if (write_lock_.owns_lock()) write_lock_.unlock();
  }

  Result<sqlite3_stmt*> Prepare(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) return it->second;
    const std::string text = SqliteParams(sql);
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, text.c_str(), static_cast<int>(text.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(rc);
    statements_.emplace(std::string(sql), stmt);
    return stmt;
  }

  Status Error(int rc) {
    const std::string message = sqlite3_errmsg(db_);
    switch (rc & 0xff) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        transient_ = true;
        return UnavailableError("SQLite database is locked by another writer: {}", message);
      case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return NotFoundError("{}", message);
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
          return AlreadyExistsError("{}", message);
        }
        return InternalError("SQLite: {}", message);
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        broken_ = true;
        return DataLossError("SQLite database is corrupt: {}", message);
      case SQLITE_FULL:
        return ResourceExhaustedError("SQLite: {}", message);
      case SQLITE_READONLY:
      case SQLITE_PERM:
      case SQLITE_AUTH:
        return PermissionDeniedError("SQLite: {}", message);
      case SQLITE_IOERR:
      case SQLITE_CANTOPEN:
        broken_ = true;
        return UnavailableError("SQLite I/O error: {}", message);
      default:
        return InternalError("SQLite: {}", message);
    }
  }

  sqlite3* const db_;
  const std::shared_ptr<std::mutex> write_mu_;
  std::unique_lock<std::mutex> write_lock_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
};

class SqliteStore final : public SqlStore {
 public:
  SqliteStore(std::string path, const Options& options)
      : SqlStore(Dialect::kSqlite, options),
        path_(std::move(path)),
        busy_timeout_(options.busy_timeout) {}

 protected:
  Result<std::unique_ptr<Connection>> Connect() override {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path_.c_str(), &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
      const std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close_v2(db);
      return FailedPreconditionError(
          "cannot open SQLite database {}: {} (does its directory exist and is it writable?)",
          path_, message);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(busy_timeout_.count()));
    auto conn = std::make_unique<SqliteConnection>(db, write_mu_);
    // journal_mode is the first statement that reads the file: "not a database" shows up here.
    GANTRY_ASSIGN_OR_RETURN(Rows mode, conn->Query("PRAGMA journal_mode = WAL", {}));
    if (mode.empty() || mode[0].Text(0) != "wal") {
      return FailedPreconditionError("SQLite database {} cannot use WAL mode (journal_mode {})",
                                     path_, mode.empty() ? "?" : mode[0].Text(0));
    }
    GANTRY_RETURN_IF_ERROR(conn->Script("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON"));
    return std::unique_ptr<Connection>(std::move(conn));
  }

 private:
  const std::string path_;
  const std::chrono::milliseconds busy_timeout_;
  const std::shared_ptr<std::mutex> write_mu_ = std::make_shared<std::mutex>();
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqlite(const std::string& path, const Options& options) {
  if (!sqlite3_threadsafe()) return InternalError("this SQLite library was built without threads");
  // A new database file is readable by its owner only (SQLite gives the -wal and -shm files the
  // mode of the database file); an existing one keeps its mode.
  if (int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600); fd >= 0) {
    ::close(fd);
  } else if (errno != EEXIST && errno != ENOENT) {
    return FailedPreconditionError("cannot create SQLite database {}: {}", path, std::strerror(errno));
  }
  auto store = std::make_unique<SqliteStore>(path, options);
  Status s = store->Migrate();
  if (!s.ok()) return s.WithContext(fmt::format("open SQLite store {}", path));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace gantry::store::internal
