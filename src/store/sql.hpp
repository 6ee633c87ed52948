#pragma once
// One async SQL interface, backends chosen by URL:
//   sqlite://./data/harmar.db   embedded (WAL); statements run on the blocking pool
//   postgres://user@host:port/db  libpq in non-blocking mode; a pool of connections per worker
//   mysql://user:pw@host:port/db  MariaDB/MySQL (libmariadb); a shared pool, statements on the
//                                 blocking pool (see mysql.cpp for what differs there)
//
// SQL is written once with $1..$N placeholders; the SQLite backend maps them to ?N. Schema DDL
// differs per backend and lives in per-backend migrations (see Migration below).
//
//   auto rows = co_await db.query("SELECT id, name FROM users WHERE email = $1", {email});
//   if (!rows) co_return rows.error();
//   for (const Row& r : *rows) use(r.text(0), r.text(1));
//
// Two g++ 12 coroutine bugs to avoid (both crash at run time, with no warning):
// - a co_await placed directly in an if/while/switch/?: condition: write
//   `auto s = co_await tx->commit(); if (!s) ...` or `if (auto s = co_await ...; !s) ...`;
// - a brace-initialised aggregate temporary inside a co_await expression (`co_await f(Agg{x})`)
//   is destroyed twice: give such types a constructor, or build the value before the co_await.
//
// Rules both backends keep (tests/unit/store/sql_backend_test.cpp runs one suite against each):
// - Never blocks the calling event loop. SQLite work runs on the blocking pool; PostgreSQL uses
//   libpq in non-blocking mode on the caller's io_context. Waiting for the SQLite writer or a
//   pooled PostgreSQL connection is asynchronous and bounded by Options::busy_timeout_ms (503).
// - A statement that fails inside a transaction aborts it (as PostgreSQL does): later queries
//   and commit() fail with 500, and nothing the transaction wrote is kept. Use
//   `INSERT ... ON CONFLICT DO NOTHING` where a duplicate is expected.
// - A std::string parameter holding a NUL byte is refused (400 `invalid_text`): PostgreSQL TEXT
//   cannot store one. Use Bytes for binary data.
// - query() runs one statement; several ;-separated statements go through exec_script().
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cassert>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

// Raw bytes for a BLOB / BYTEA parameter (a std::string parameter binds as TEXT).
// Deliberately not an aggregate: g++ 12 destroys a brace-initialised aggregate temporary twice
// when it appears inside a co_await expression, as in `co_await db.exec(sql, {Bytes{b}})`.
struct Bytes {
  Bytes() = default;
  explicit Bytes(std::string d) : data(std::move(d)) {}
  std::string data;
};

using Param = std::variant<std::nullptr_t, int64_t, double, bool, std::string, Bytes>;
// A std::vector<Param> that is built from a braced list *without* a std::initializer_list:
// g++ 12 rejects an initializer_list temporary inside a co_await expression ("array used as
// initializer"), which would break the intended `co_await db.query(sql, {a, b})`. Everything
// else about it is the vector.
class Params : public std::vector<Param> {
 public:
  Params() = default;
  Params(std::vector<Param> v) : std::vector<Param>(std::move(v)) {}  // NOLINT: implicit by design
  template <class... A>
    requires(sizeof...(A) > 0 && (std::is_constructible_v<Param, A&&> && ...))
  Params(A&&... values) {  // NOLINT: implicit by design
    reserve(sizeof...(A));
    (emplace_back(std::forward<A>(values)), ...);
  }
};

// nullopt binds NULL.
template <class T>
Param nullable(const std::optional<T>& v) {
  if (v) return Param(*v);
  return Param(nullptr);
}

class Rows;

// One row of a result; valid while its Rows lives. Getters convert between the backends' text
// and native forms (PostgreSQL "t"/"f" and SQLite 0/1 are both bools; bytea hex decodes).
// The PostgreSQL backend already turns bool, integer and float columns into native cells and
// decodes bytea when it builds the Rows, so a cell reads the same whichever backend made it;
// text cells ("t", "42", "1.5") still convert, for columns of other types (numeric, unknown).
class Row {
 public:
  Row(const Rows* rows, std::size_t index) : rows_(rows), index_(index) {}
  bool is_null(std::size_t col) const;
  int64_t integer(std::size_t col) const;  // 0 for NULL
  double real(std::size_t col) const;
  bool boolean(std::size_t col) const;
  std::string text(std::size_t col) const;  // "" for NULL
  // text() without a copy for text cells (the view lives as long as the Rows); other cells are
  // written into `scratch` and the view points there.
  std::string_view text_view(std::size_t col, std::string& scratch) const;
  std::string bytes(std::size_t col) const;  // a BLOB / BYTEA column as raw bytes
  std::optional<int64_t> opt_integer(std::size_t col) const;
  std::optional<std::string> opt_text(std::size_t col) const;
  std::size_t size() const;

 private:
  const Rows* rows_;
  std::size_t index_;
};

// A fully materialised result (every row in memory: page large reads with LIMIT).
class Rows {
 public:
  // Text is owned (std::string) or, when the backend keeps its result alive for the Rows
  // (`owner`), a view into that result: no copy per cell.
  using Cell = std::variant<std::monostate, int64_t, double, std::string, std::string_view>;

  Rows() = default;
  Rows(std::vector<std::string> columns, std::vector<Cell> cells, int64_t affected,
       std::shared_ptr<const void> owner = nullptr);

  std::size_t size() const { return columns_.empty() ? 0 : cells_.size() / columns_.size(); }
  bool empty() const { return size() == 0; }
  Row operator[](std::size_t i) const { return Row(this, i); }
  Row front() const { return Row(this, 0); }
  const std::vector<std::string>& columns() const { return columns_; }
  std::optional<std::size_t> column(std::string_view name) const;
  // Rows changed by INSERT/UPDATE/DELETE.
  int64_t affected() const { return affected_; }

  class iterator {
   public:
    iterator(const Rows* r, std::size_t i) : r_(r), i_(i) {}
    Row operator*() const { return Row(r_, i_); }
    iterator& operator++() { ++i_; return *this; }
    bool operator!=(const iterator& o) const { return i_ != o.i_; }

   private:
    const Rows* r_;
    std::size_t i_;
  };
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, size()}; }

  const Cell& cell(std::size_t row, std::size_t col) const {
    assert(row < size() && col < columns_.size());
    return cells_[row * columns_.size() + col];
  }

 private:
  std::vector<std::string> columns_;
  std::vector<Cell> cells_;
  int64_t affected_ = 0;
  std::shared_ptr<const void> owner_;  // what the std::string_view cells point into
};

enum class Backend { Sqlite, Postgres, Mysql };

// Errors from the store carry these codes:
//   "conflict" (409)     a unique or exclusion constraint was violated
//   "unavailable" (503)  the database cannot be reached or is busy past the deadline (also: a
//                        broken connection, PostgreSQL serialization failure / deadlock / lock
//                        timeout / statement timeout, SQLITE_BUSY)
//   "internal" (500)     anything else (the SQL error is logged, never sent to clients)
//   "invalid_text" (400) a text parameter held a NUL byte (see above)
class Querier {
 public:
  virtual ~Querier() = default;
  virtual asio::awaitable<Result<Rows>> query(std::string_view sql, Params params = {}) = 0;
  // As query(), returning the number of rows changed.
  asio::awaitable<Result<int64_t>> exec(std::string_view sql, Params params = {});
};

// A transaction holds one connection until commit() or rollback(). Dropping it without either
// rolls back (the connection is cleaned before anyone else uses it).
// Use it from one coroutine at a time, on the event loop that began it. While it is open, write
// through it, not through the Database: on SQLite the Database would wait for this very writer
// (and fail with 503 after busy_timeout_ms).
class Transaction : public Querier {
 public:
  virtual asio::awaitable<Status> commit() = 0;
  virtual asio::awaitable<Status> rollback() = 0;
  // Runs several ;-separated statements without parameters (schema changes, migrations). On
  // PostgreSQL this is the simple-query protocol.
  virtual asio::awaitable<Status> exec_script(std::string_view sql) = 0;
};

// LISTEN/NOTIFY: a wake-up signal to every node that shares the database ("there is new work
// for user U"), not a message queue: delivery is at most once, payloads are small, and after a
// gap (the listening connection was lost and came back) a listener is told so it can re-read
// what it may have missed.
//   - PostgreSQL: NOTIFY through the pool (pg_notify); every Database that listen()s keeps one
//     dedicated connection on a thread of its own that LISTENs, reconnects with backoff, and
//     posts each notification to the listener's executor. A notification sent inside a
//     transaction is delivered when it commits (PostgreSQL's rule).
//   - SQLite: notify() delivers in-process, at once, to this Database's listeners.
// Channels are 1..63 characters of [a-z0-9_] (a PostgreSQL identifier); payloads are at most
// kMaxNotifyPayload bytes. Each notification is posted to the listener's executor in arrival order.
inline constexpr std::size_t kMaxNotifyPayload = 7900;  // PostgreSQL's limit is 8000 bytes
using NotifyHandler = std::function<void(std::string_view payload)>;

// Stops listening when destroyed; once the destructor has returned on the listener's executor
// the handlers are not called again.
class Listener {
 public:
  virtual ~Listener() = default;
  // Completes once notifications sent from now on will be delivered (PostgreSQL: LISTEN is
  // confirmed on the listening connection); 503 `unavailable` if that did not happen within
  // busy_timeout_ms (e.g. the database is down; the listener keeps trying in the background).
  virtual asio::awaitable<Status> ready() = 0;
};

class Database : public Querier {
 public:
  // Opens (and for SQLite creates, with its directory) the database at `url`:
  //   sqlite://./data/harmar.db   sqlite:///abs/path.db   sqlite://:memory: (tests; no readers)
  //   postgres://… or postgresql://… (a libpq URI, e.g. ?options=-csearch_path%3Dmyschema)
  //   mysql://… or mariadb://… (user:password@host:port/db, ?socket=PATH)
  // SQLite files are opened here, synchronously: call open() at startup, not from a request
  // (and destroy the Database at shutdown: closing the last SQLite connection checkpoints).
  // PostgreSQL connects lazily, per event loop, on first use; a loop's connections close when
  // its io_context is destroyed or the Database is.
  struct Options {
    int pool_per_worker = 4;  // PostgreSQL connections per event loop (per io_context)
    int sqlite_readers = 4;   // SQLite read connections besides the one writer
    // SQLite busy timeout; also the bound on waiting for the SQLite writer, for a pooled
    // PostgreSQL connection, and on connecting to PostgreSQL (503 `unavailable` after it).
    int busy_timeout_ms = 5000;
  };
  static Result<std::unique_ptr<Database>> open(const std::string& url, const Options& opts);
  static Result<std::unique_ptr<Database>> open(const std::string& url) { return open(url, Options{}); }

  virtual Backend backend() const = 0;
  // As query(), for a statement that only reads (a SELECT without FOR UPDATE/SHARE, calling no
  // function with side effects). PostgreSQL may send several such reads of one event loop in one
  // pipeline, sharing a round trip and a Sync; the others run it as query().
  virtual asio::awaitable<Result<Rows>> read(std::string_view sql, Params params = {});
  virtual asio::awaitable<Result<std::unique_ptr<Transaction>>> begin() = 0;
  // A trivial round trip, for /readyz.
  virtual asio::awaitable<Status> ping() = 0;
  // As Transaction::exec_script, outside a transaction (each statement commits on its own).
  virtual asio::awaitable<Status> exec_script(std::string_view sql) = 0;
  // The URL with any password removed, for logs.
  virtual std::string describe() const = 0;

  // Calls `on_notify` (on `ex`) for every notification on `channel`, and `on_gap` (if set, on
  // `ex`) after the listening connection was re-established: notifications sent meanwhile were
  // lost. Throws std::invalid_argument for a malformed channel (a programming error).
  virtual std::unique_ptr<Listener> listen(std::string channel, asio::any_io_executor ex, NotifyHandler on_notify,
                                           std::function<void()> on_gap = {}) = 0;
  // Wakes every listener of `channel` on every node; 422 for a bad channel or payload.
  virtual asio::awaitable<Status> notify(std::string channel, std::string payload) = 0;
};

// Versioned schema changes of one module, per backend. Versions start at 1 and only grow.
struct Migration {
  int version;
  std::string name;
  std::string sqlite;    // may hold several statements
  std::string postgres;
  std::string mysql;     // MariaDB/MySQL; a step with SQL for the others but none here is refused there
};

struct ModuleMigrations {
  std::string module;
  std::vector<Migration> steps;
};

// Applies the pending migrations of every module, each in its own transaction, recording them
// in `schema_migrations(module, version, name, applied_at)` (applied_at in Unix ms). Refuses
// (409 `schema_too_new`) a database that a newer harmar migrated. Safe to run from several
// processes at once: on PostgreSQL each step takes a transaction-scoped advisory lock, on SQLite
// BEGIN IMMEDIATE serialises them; a step another process applied meanwhile is skipped.
// Steps must have strictly increasing versions >= 1 (500 otherwise); an empty SQL text for the
// current backend is a no-op step that is still recorded.
asio::awaitable<Status> migrate(Database& db, const std::vector<ModuleMigrations>& modules);

}  // namespace harmar::store
