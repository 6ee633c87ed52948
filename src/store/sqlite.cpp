// SQLite backend: one writer connection and N reader connections on a WAL database. Every
// statement runs on the blocking pool (run_blocking); the event loop only awaits it.
//
// - A statement SQLite calls read-only (sqlite3_stmt_readonly) runs on a free reader, which in
//   WAL mode sees the last committed state without waiting for the writer.
// - Anything else, and every transaction (BEGIN IMMEDIATE), runs on the writer. The writer is
//   an AsyncSemaphore with one permit: a transaction holds it across co_awaits, and other
//   writers wait for it asynchronously, bounded by busy_timeout_ms.
// - Each connection caches its prepared statements (LRU). The SQL's $N become ?N first.
#include <sqlite3.h>

#include <cassert>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "core/blocking.hpp"
#include "core/log.hpp"
#include "store/detail/async_semaphore.hpp"
#include "store/detail/lru.hpp"
#include "store/detail/notify.hpp"
#include "store/detail/sql_common.hpp"

namespace harmar::store::detail {
namespace {

constexpr std::size_t kStatementCacheSize = 128;
constexpr std::size_t kMaxRememberedStatements = 4096;

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

// Maps a SQLite result code (extended codes are on) to the store's error words, logging the
// SQLite message; the message never reaches the client.
Error sqlite_error(int rc, const char* message, std::string_view sql) {
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
      logger()->debug("sqlite conflict: {}; statement: {}", message, sql);
      return conflict_error();
    default:
      break;
  }
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    logger()->warn("sqlite busy ({}): {}; statement: {}", sqlite3_errstr(rc), message, sql);
    return unavailable_error("database busy");
  }
  logger()->error("sqlite error {} ({}): {}; statement: {}", rc, sqlite3_errstr(rc), message, sql);
  return internal_error();
}

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> open(const std::string& path, bool writer,
                                                  const Database::Options& opts) {
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    std::unique_ptr<Connection> conn(new Connection(db));  // closes db even when opening failed
    if (rc != SQLITE_OK)
      return Error::unavailable("cannot open SQLite database " + path + ": " +
                                (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, opts.busy_timeout_ms);
    std::string pragmas = "PRAGMA foreign_keys=ON;";
    if (writer) pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; " + pragmas;
    char* err = nullptr;
    rc = sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return Error::unavailable("cannot set up SQLite database " + path + ": " + msg);
    }
    return conn;
  }

  ~Connection() {
    cache_.clear([](sqlite3_stmt* s) { sqlite3_finalize(s); });
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  // The cached prepared statement for `sql` (one statement, $N placeholders).
  Result<sqlite3_stmt*> prepare(std::string_view sql) {
    std::string key(sql);
    if (auto* st = cache_.get(key)) return *st;
    std::string rewritten = sqlite_placeholders(sql);
    sqlite3_stmt* st = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, rewritten.c_str(), static_cast<int>(rewritten.size() + 1),
                                SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK) return sqlite_error(rc, sqlite3_errmsg(db_), sql);
    if (!st) {
      logger()->error("sqlite: empty statement");
      return internal_error();
    }
    if (tail && !is_blank_sql(tail)) {
      sqlite3_finalize(st);
      logger()->error("sqlite: query() runs one statement, use exec_script() for several; statement: {}", sql);
      return internal_error();
    }
    if (auto evicted = cache_.put(key, st)) sqlite3_finalize(evicted->second);
    return st;
  }

  void forget(std::string_view sql) {
    if (auto st = cache_.take(std::string(sql))) sqlite3_finalize(*st);
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  LruCache<sqlite3_stmt*> cache_{kStatementCacheSize};
};

// Leaves a cached statement ready for its next use, so a reader holds no read snapshot open.
class ResetOnExit {
 public:
  explicit ResetOnExit(sqlite3_stmt* st) : st_(st) {}
  ~ResetOnExit() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  sqlite3_stmt* st_;
};

int bind(sqlite3_stmt* st, int index, const Param& p) {
  return std::visit(
      [&](const auto& v) -> int {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          return sqlite3_bind_null(st, index);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return sqlite3_bind_int64(st, index, v);
        } else if constexpr (std::is_same_v<T, double>) {
          return sqlite3_bind_double(st, index, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          return sqlite3_bind_int(st, index, v ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return sqlite3_bind_text64(st, index, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
        } else {
          static_assert(std::is_same_v<T, Bytes>);
          return sqlite3_bind_blob64(st, index, v.data.data(), v.data.size(), SQLITE_STATIC);
        }
      },
      p);
}

Rows::Cell read_cell(sqlite3_stmt* st, int col) {
  switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(st, col));
    case SQLITE_FLOAT:
      return sqlite3_column_double(st, col);
    case SQLITE_TEXT: {
      auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
      return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, col)));
    }
    case SQLITE_BLOB: {
      auto* p = static_cast<const char*>(sqlite3_column_blob(st, col));  // null when empty
      return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, col)));
    }
    default:
      return std::monostate{};
  }
}

struct Outcome {
  Result<Rows> rows = Rows{};
  bool compiled = false;      // the statement prepared (so its kind is known)
  bool needs_writer = false;  // asked to run read-only, but the statement writes
};

// Runs one statement on `conn` (on a blocking-pool thread). With `read_only`, a statement that
// would write is not run: the outcome says it needs the writer.
Outcome run_statement(Connection& conn, std::string_view sql, const Params& params, bool read_only) {
  Outcome out;
  auto prepared = conn.prepare(sql);
  if (!prepared) {
    out.rows = std::move(prepared).error();
    return out;
  }
  sqlite3_stmt* st = *prepared;
  out.compiled = true;
  if (read_only && !sqlite3_stmt_readonly(st)) {
    conn.forget(sql);
    out.needs_writer = true;
    return out;
  }
  ResetOnExit reset(st);
  sqlite3* db = conn.db();
  int expected = sqlite3_bind_parameter_count(st);
  if (static_cast<std::size_t>(expected) != params.size()) {
    logger()->error("sqlite: statement takes {} parameters, {} given; statement: {}", expected, params.size(), sql);
    out.rows = internal_error();
    return out;
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (int rc = bind(st, static_cast<int>(i + 1), params[i]); rc != SQLITE_OK) {
      out.rows = sqlite_error(rc, sqlite3_errmsg(db), sql);
      return out;
    }
  }
  int ncols = sqlite3_column_count(st);
  std::vector<std::string> columns;
  columns.reserve(static_cast<std::size_t>(ncols));
  for (int c = 0; c < ncols; ++c) columns.emplace_back(sqlite3_column_name(st, c));
  std::vector<Rows::Cell> cells;
  int64_t changes_before = sqlite3_total_changes64(db);
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      for (int c = 0; c < ncols; ++c) cells.push_back(read_cell(st, c));
      continue;
    }
    if (rc == SQLITE_DONE) break;
    out.rows = sqlite_error(rc, sqlite3_errmsg(db), sql);
    return out;
  }
  // sqlite3_changes64() keeps the count of the last INSERT/UPDATE/DELETE even after a SELECT;
  // only a statement that changed something reports it.
  int64_t affected = sqlite3_total_changes64(db) != changes_before ? sqlite3_changes64(db) : 0;
  out.rows = Rows(std::move(columns), std::move(cells), affected);
  return out;
}

Status run_simple(Connection& conn, std::string_view sql) {
  auto out = run_statement(conn, sql, {}, false);
  if (!out.rows) return std::move(out.rows).error();
  return {};
}

Status run_script(Connection& conn, std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(conn.db(), text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return {};
  std::string msg = err ? err : sqlite3_errmsg(conn.db());
  sqlite3_free(err);
  return sqlite_error(sqlite3_extended_errcode(conn.db()), msg.c_str(), sql);
}

// Ends any transaction still open on the writer, so the next holder starts clean.
Status rollback_if_open(Connection& writer) {
  if (sqlite3_get_autocommit(writer.db())) return {};
  return run_simple(writer, "ROLLBACK");
}

struct State {
  std::string path;
  Database::Options opts;
  std::unique_ptr<Connection> writer;
  std::vector<std::unique_ptr<Connection>> readers;
  AsyncSemaphore writer_lock{1};
  AsyncSemaphore reader_slots;
  std::mutex readers_mu;
  std::vector<Connection*> idle_readers;
  std::mutex kinds_mu;
  std::unordered_map<std::string, bool> writes;  // SQL → needs the writer
  std::shared_ptr<ListenRegistry> listeners = std::make_shared<ListenRegistry>();  // in-process NOTIFY

  explicit State(std::size_t nreaders) : reader_slots(nreaders) {}

  std::chrono::milliseconds busy_timeout() const { return std::chrono::milliseconds(opts.busy_timeout_ms); }

  std::optional<bool> known_to_write(std::string_view sql) {
    std::lock_guard lock(kinds_mu);
    auto it = writes.find(std::string(sql));
    if (it == writes.end()) return std::nullopt;
    return it->second;
  }
  void remember(std::string_view sql, bool needs_writer) {
    std::lock_guard lock(kinds_mu);
    if (writes.size() >= kMaxRememberedStatements) writes.clear();
    writes.emplace(std::string(sql), needs_writer);
  }

  asio::awaitable<Result<SemaphorePermit>> lock_writer() {
    bool acquired = co_await writer_lock.acquire(busy_timeout());
    if (!acquired) {
      logger()->warn("sqlite: waited {} ms for the writer; {} still waiting", opts.busy_timeout_ms,
                     writer_lock.waiting());
      co_return unavailable_error("database busy");
    }
    co_return SemaphorePermit(writer_lock);
  }
};

// A reader connection, returned to the idle list when this goes away.
class ReaderLease {
 public:
  ReaderLease(State& st, Connection* conn) : st_(&st), conn_(conn), permit_(st.reader_slots) {}
  ReaderLease(ReaderLease&& o) noexcept
      : st_(o.st_), conn_(std::exchange(o.conn_, nullptr)), permit_(std::move(o.permit_)) {}
  ReaderLease& operator=(ReaderLease&&) = delete;
  ~ReaderLease() {
    if (!conn_) return;
    std::lock_guard lock(st_->readers_mu);
    st_->idle_readers.push_back(conn_);
  }  // then permit_ releases the slot
  Connection& conn() const { return *conn_; }

 private:
  State* st_;
  Connection* conn_;
  SemaphorePermit permit_;
};

asio::awaitable<Result<ReaderLease>> lease_reader(State& st) {
  bool acquired = co_await st.reader_slots.acquire(st.busy_timeout());
  if (!acquired) {
    logger()->warn("sqlite: waited {} ms for a reader", st.opts.busy_timeout_ms);
    co_return unavailable_error("database busy");
  }
  Connection* conn = nullptr;
  {
    std::lock_guard lock(st.readers_mu);
    assert(!st.idle_readers.empty());  // one slot per idle reader
    conn = st.idle_readers.back();
    st.idle_readers.pop_back();
  }
  co_return ReaderLease(st, conn);
}

class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(std::shared_ptr<State> st, SemaphorePermit writer)
      : st_(std::move(st)), writer_(std::move(writer)) {}

  ~SqliteTransaction() override {
    if (!writer_) return;
    // Dropped while open: roll back on the blocking pool, and only then hand the writer on.
    asio::post(blocking_pool(), [st = st_, writer = std::move(writer_)]() mutable {
      if (auto s = rollback_if_open(*st->writer); !s) logger()->error("sqlite: rollback of a dropped transaction failed");
      writer.reset();
    });
  }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (!writer_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto* conn = st_->writer.get();
    auto out = co_await run_blocking([&] { return run_statement(*conn, sql, params, false); });
    if (!out.rows) failed_ = true;
    co_return std::move(out.rows);
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    if (!writer_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    auto* conn = st_->writer.get();
    auto s = co_await run_blocking([&] { return run_script(*conn, sql); });
    if (!s) failed_ = true;
    co_return s;
  }

  asio::awaitable<Status> commit() override {
    if (!writer_) co_return finished_transaction_error();
    auto* conn = st_->writer.get();
    bool failed = failed_;
    auto s = co_await run_blocking([conn, failed]() -> Status {
      if (failed) {
        (void)rollback_if_open(*conn);
        return aborted_transaction_error();
      }
      Status s = run_simple(*conn, "COMMIT");
      if (!s) (void)rollback_if_open(*conn);
      return s;
    });
    writer_.reset();
    co_return s;
  }

  asio::awaitable<Status> rollback() override {
    if (!writer_) co_return finished_transaction_error();
    auto* conn = st_->writer.get();
    auto s = co_await run_blocking([conn] { return rollback_if_open(*conn); });
    writer_.reset();
    co_return s;
  }

 private:
  std::shared_ptr<State> st_;
  SemaphorePermit writer_;  // empty once committed or rolled back
  bool failed_ = false;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(std::shared_ptr<State> st) : st_(std::move(st)) {}

  Backend backend() const override { return Backend::Sqlite; }
  std::string describe() const override { return "sqlite://" + st_->path; }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto st = st_;
    if (!st->readers.empty() && st->known_to_write(sql) != true) {
      auto reader = co_await lease_reader(*st);
      if (!reader) co_return std::move(reader).error();
      auto& conn = reader->conn();
      auto out = co_await run_blocking([&] { return run_statement(conn, sql, params, true); });
      if (out.compiled) st->remember(sql, out.needs_writer);
      if (!out.needs_writer) co_return std::move(out.rows);
    }
    auto writer = co_await st->lock_writer();
    if (!writer) co_return std::move(writer).error();
    auto* conn = st->writer.get();
    auto out = co_await run_blocking([&] {
      auto o = run_statement(*conn, sql, params, false);
      clean_writer(*conn, sql);
      return o;
    });
    co_return std::move(out.rows);
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    auto writer = co_await st_->lock_writer();
    if (!writer) co_return std::move(writer).error();
    auto* conn = st_->writer.get();
    co_return co_await run_blocking([&] {
      auto s = run_script(*conn, sql);
      clean_writer(*conn, sql);
      return s;
    });
  }

  asio::awaitable<Result<std::unique_ptr<Transaction>>> begin() override {
    auto writer = co_await st_->lock_writer();
    if (!writer) co_return std::move(writer).error();
    auto* conn = st_->writer.get();
    auto s = co_await run_blocking([conn] { return run_simple(*conn, "BEGIN IMMEDIATE"); });
    if (!s) co_return std::move(s).error();
    co_return std::unique_ptr<Transaction>(new SqliteTransaction(st_, std::move(*writer)));
  }

  asio::awaitable<Status> ping() override {
    auto rows = co_await query("SELECT 1", {});
    if (!rows) co_return std::move(rows).error();
    co_return Status{};
  }

  std::unique_ptr<Listener> listen(std::string channel, asio::any_io_executor ex, NotifyHandler on_notify,
                                   std::function<void()> on_gap) override {
    if (!check_notify(channel, ""))
      throw std::invalid_argument("invalid notification channel '" + channel + "'");
    auto e = std::make_shared<ListenEntry>();
    e->channel = std::move(channel);
    e->ex = std::move(ex);
    e->on_notify = std::move(on_notify);
    e->on_gap = std::move(on_gap);  // never called: nothing is lost in-process
    e->confirmed = true;
    st_->listeners->add(e);
    return std::make_unique<RegistryListener>(st_->listeners, std::move(e), st_->busy_timeout(), nullptr);
  }

  asio::awaitable<Status> notify(std::string channel, std::string payload) override {
    if (auto s = check_notify(channel, payload); !s) co_return s;
    st_->listeners->deliver(channel, payload);
    co_return Status{};
  }

 private:
  // A BEGIN sent through Database::query() must not leak into the next writer's statements.
  static void clean_writer(Connection& conn, std::string_view sql) {
    if (sqlite3_get_autocommit(conn.db())) return;
    logger()->warn("sqlite: statement left a transaction open, rolled back (use Database::begin()): {}", sql);
    (void)rollback_if_open(conn);
  }

  std::shared_ptr<State> st_;
};

}  // namespace

Result<std::unique_ptr<Database>> open_sqlite(const std::string& path, const Database::Options& opts) {
  bool memory = path == ":memory:";
  if (!memory) {
    std::error_code ec;
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec) return Error::unavailable("cannot create directory " + dir.string() + ": " + ec.message());
  }
  // An in-memory database exists once per connection: it gets the writer only.
  std::size_t nreaders = memory ? 0 : static_cast<std::size_t>(opts.sqlite_readers);
  auto st = std::make_shared<State>(nreaders);
  st->path = path;
  st->opts = opts;
  HARMAR_TRY(st->writer, Connection::open(path, true, opts));
  for (std::size_t i = 0; i < nreaders; ++i) {
    HARMAR_TRY(auto reader, Connection::open(path, false, opts));
    st->idle_readers.push_back(reader.get());
    st->readers.push_back(std::move(reader));
  }
  logger()->info("sqlite database {} open (WAL, {} readers)", path, nreaders);
  return std::unique_ptr<Database>(new SqliteDatabase(std::move(st)));
}

}  // namespace harmar::store::detail
