// PostgresStore: the Store in a PostgreSQL database shared by several servers.
//
// libpq connections in SqlStore's pool; every statement goes through PQsendQueryParams with its values
// as parameters (bytea in binary, everything else as text that the server casts to the column's
// type). Write transactions run at READ COMMITTED: every read-modify-write is a compare-and-set
// UPDATE (version or state in its WHERE), and run claims lock with FOR UPDATE SKIP LOCKED. Reads
// run at REPEATABLE READ READ ONLY so that a multi-query read sees one snapshot. A connection that
// fails with CONNECTION_BAD, or whose server does not answer within Options::reply_timeout, is
// dropped and the transaction retried on a new one. Connections are non-blocking: a statement is
// sent and answered within reply_timeout, however much it writes.

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <memory>

#include "base/log.h"
#include "store/internal/sql_store.h"

namespace gantry::store::internal {
namespace {

constexpr Oid kByteaOid = 17;

using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class PgConnection final : public Connection {
 public:
  PgConnection(PGconn* conn, std::chrono::milliseconds reply_timeout)
      : conn_(conn), reply_timeout_(reply_timeout) {}
  ~PgConnection() override { PQfinish(conn_); }

  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params) override {
    std::vector<std::string> text(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<int> lengths(params.size(), 0);
    std::vector<int> formats(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) {
      const Value& v = params[i];
      if (const int64_t* n = std::get_if<int64_t>(&v)) {
        text[i] = std::to_string(*n);
        values[i] = text[i].c_str();
      } else if (const std::string* s = std::get_if<std::string>(&v)) {
        values[i] = s->c_str();
      } else if (const Blob* b = std::get_if<Blob>(&v)) {
        values[i] = b->bytes.data();
        lengths[i] = static_cast<int>(b->bytes.size());
        formats[i] = 1;
      }
    }
    PgResult res = Await(PQsendQueryParams(conn_, std::string(sql).c_str(),
                                           static_cast<int>(params.size()), nullptr, values.data(),
                                           lengths.data(), formats.data(), 0));
    const ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK) return Rows();
    if (status != PGRES_TUPLES_OK) return Error(res.get());
    Rows rows(PQntuples(res.get()));
    const int columns = PQnfields(res.get());
    for (int r = 0; r < static_cast<int>(rows.size()); ++r) {
      rows[r].cells.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(res.get(), r, c)) {
          rows[r].cells.emplace_back();
          continue;
        }
        const char* value = PQgetvalue(res.get(), r, c);
        if (PQftype(res.get(), c) != kByteaOid) {
          rows[r].cells.emplace_back(std::string(value, PQgetlength(res.get(), r, c)));
          continue;
        }
        size_t size = 0;
        unsigned char* bytes =
            PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &size);
        if (!bytes) return ResourceExhaustedError("out of memory decoding bytea");
        rows[r].cells.emplace_back(std::string(reinterpret_cast<char*>(bytes), size));
        PQfreemem(bytes);
      }
    }
    return rows;
  }

  Status Script(std::string_view sql) override {
    PgResult res = Await(PQsendQuery(conn_, std::string(sql).c_str()));
    if (res && PQresultStatus(res.get()) == PGRES_COMMAND_OK) return OkStatus();
    if (res && PQresultStatus(res.get()) == PGRES_TUPLES_OK) return OkStatus();
    return Error(res.get());
  }

  Status Begin(TxMode mode) override {
    transient_ = false;
    return Script(mode == TxMode::kWrite ? "BEGIN"
                                         : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }
  Status Commit() override { return Script("COMMIT"); }
  void Rollback() override {
    if (!Script("ROLLBACK").ok()) broken_ = true;
  }

 private:
  // The answer to what PQsend* just sent (`sent` is its return), as PQexec gives it: the first
  // error, else the last result. The connection is non-blocking (Connect), so what PQsend* could
  // not write at once is flushed here: sending and waiting for the answer take at most
  // reply_timeout_ together, and a server that stops reading cannot hold a large write (a log
  // chunk) forever. Past the deadline, null with timed_out_ set. Null also when sending failed or
  // the connection broke.
  PgResult Await(int sent) {
    PgResult answer(nullptr, &PQclear);
    timed_out_ = false;
    if (sent == 0) return answer;
    const auto deadline = std::chrono::steady_clock::now() + reply_timeout_;
    // libpq's order for a non-blocking send: PQflush until it returns 0, reading what arrives
    // meanwhile so that the server is never stuck writing to us while we write to it.
    for (int left = PQflush(conn_); left != 0; left = PQflush(conn_)) {
      if (left < 0) return answer;
      const short ready = WaitSocket(POLLIN | POLLOUT, deadline);
      if (ready <= 0) return answer;
      if ((ready & POLLIN) && !PQconsumeInput(conn_)) return answer;
    }
    while (true) {
      while (PQisBusy(conn_)) {
        if (WaitSocket(POLLIN, deadline) <= 0 || !PQconsumeInput(conn_)) return PgResult(nullptr, &PQclear);
      }
      PGresult* next = PQgetResult(conn_);
      if (next == nullptr) return answer;
      if (answer && PQresultStatus(answer.get()) == PGRES_FATAL_ERROR) {
        PQclear(next);  // keep the first error
      } else {
        answer.reset(next);
      }
    }
  }

  // Waits until the socket is ready for `events` or `deadline` passes: the events it is ready for
  // (POLLERR and POLLHUP included: libpq's next call reports them), 0 with timed_out_ set at the
  // deadline, -1 when poll fails.
  short WaitSocket(short events, std::chrono::steady_clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{.fd = PQsocket(conn_), .events = events, .revents = 0};
      int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return -1;
      if (ready == 0) {
        timed_out_ = true;
        return 0;
      }
      return static_cast<short>(p.revents != 0 ? p.revents : events);
    }
  }

  Status Error(const PGresult* res) {
    if (timed_out_) {
      broken_ = true;
      transient_ = true;
      return UnavailableError("PostgreSQL did not answer within {} ms; the connection is dropped",
                              reply_timeout_.count());
    }
    if (PQstatus(conn_) == CONNECTION_BAD) {
      broken_ = true;
      transient_ = true;
      return UnavailableError("lost the connection to PostgreSQL: {}",
                              Trim(PQerrorMessage(conn_)));
    }
    const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    const std::string message = primary ? primary : Trim(PQerrorMessage(conn_));
    const std::string code = state ? state : "";
    if (code == "23505") return AlreadyExistsError("{}", message);
    if (code == "23503") return NotFoundError("{}", message);
    if (code == "40001" || code == "40P01") {
      transient_ = true;
      return AbortedError("PostgreSQL: {} (the transaction is retried)", message);
    }
    if (code.starts_with("08") || code.starts_with("57P")) {
      broken_ = true;
      transient_ = true;
      return UnavailableError("PostgreSQL connection: {}", message);
    }
    if (code.starts_with("53")) return ResourceExhaustedError("PostgreSQL: {}", message);
    if (code == "XX001" || code == "XX002") return DataLossError("PostgreSQL: {}", message);
    if (code.starts_with("42501")) return PermissionDeniedError("PostgreSQL: {}", message);
    return InternalError("PostgreSQL ({}): {}", code.empty() ? "no SQLSTATE" : code, message);
  }

  PGconn* const conn_;
  const std::chrono::milliseconds reply_timeout_;
  bool timed_out_ = false;  // the last Await() gave up waiting
};

class PostgresStore final : public SqlStore {
 public:
  PostgresStore(std::string url, const Options& options)
      : SqlStore(Dialect::kPostgres, options), url_(std::move(url)), reply_timeout_(options.reply_timeout) {}

 protected:
  Result<std::unique_ptr<Connection>> Connect() override {
    // Keywords before dbname are defaults the URL may override.
    const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {"10", "gantry", url_.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (!conn) return ResourceExhaustedError("out of memory connecting to PostgreSQL");
    if (PQstatus(conn) != CONNECTION_OK) {
      const std::string message = Trim(PQerrorMessage(conn));
      PQfinish(conn);
      if (message.find("authentication failed") != std::string::npos) {
        return UnauthenticatedError("connect to {}: {}", RedactUrl(url_), message);
      }
      if (message.find("does not exist") != std::string::npos) {
        return FailedPreconditionError("connect to {}: {}", RedactUrl(url_), message);
      }
      return UnavailableError("connect to {}: {}", RedactUrl(url_), message);
    }
    // Non-blocking, so that PgConnection::Await bounds sending by reply_timeout as it bounds the
    // answer.
    if (PQsetnonblocking(conn, 1) != 0) {
      const std::string message = Trim(PQerrorMessage(conn));
      PQfinish(conn);
      return UnavailableError("connect to {}: cannot make the connection non-blocking: {}", RedactUrl(url_), message);
    }
    // NOTICEs ("relation ... already exists, skipping") go to the debug log, not to stderr.
    PQsetNoticeProcessor(
        conn, [](void*, const char* message) { log::Debug("postgres: {}", Trim(message)); },
        nullptr);
    return std::unique_ptr<Connection>(std::make_unique<PgConnection>(conn, reply_timeout_));
  }

 private:
  const std::string url_;
  const std::chrono::milliseconds reply_timeout_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgres(const std::string& url, const Options& options) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (!parsed) {
    std::string message = error ? Trim(error) : "out of memory";
    PQfreemem(error);
    return InvalidArgumentError("store URL {}: {}", RedactUrl(url), message);
  }
  PQconninfoFree(parsed);
  auto store = std::make_unique<PostgresStore>(url, options);
  Status s = store->Migrate();
  if (!s.ok()) return s.WithContext(fmt::format("open PostgreSQL store {}", RedactUrl(url)));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace gantry::store::internal
