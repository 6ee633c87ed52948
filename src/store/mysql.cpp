// MariaDB / MySQL backend (libmariadb, MariaDB Connector/C, whose calls block): per event loop a
// pool of connections, as for PostgreSQL, and a thread per connection that runs its statements,
// so the event loop only awaits them.
//
// - SQL keeps the store's $1..$N placeholders; they become ? with the parameters reordered (and
//   repeated) to match, and run as server-side prepared statements, cached per connection. Values
//   never become SQL text.
// - Sessions run with sql_mode ANSI_QUOTES (so "name" quotes an identifier, as on SQLite and
//   PostgreSQL), PIPES_AS_CONCAT (|| joins text), STRICT_ALL_TABLES, utf8mb4 and UTC. The
//   session collation is utf8mb4_bin, the one MariaDB's JSON functions answer in (two different
//   collations of equal strength cannot be compared); tables are utf8mb4_nopad_bin, which wins
//   over a parameter's, so a text column compares byte for byte with no padding.
// - Affected rows count matched rows (CLIENT_FOUND_ROWS), as PostgreSQL and SQLite do.
// - Transactions run at READ COMMITTED. A statement that fails inside one aborts it, as on
//   PostgreSQL (MariaDB itself would carry on): later statements are refused and commit rolls
//   back. Named locks (GET_LOCK) taken in a transaction are released when it ends.
// - Schema changes (DDL) commit implicitly on MariaDB: a transaction (or migration step) that
//   changes the schema is not atomic there; a step that fails halfway leaves its first part.
// - LISTEN/NOTIFY is in-process only (like SQLite): several nodes on one MariaDB database do not
//   wake each other.
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>

#include <fmt/format.h>

#include <cassert>
#include <cctype>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "store/detail/async_semaphore.hpp"
#include "store/detail/lru.hpp"
#include "store/detail/notify.hpp"
#include "store/detail/sql_common.hpp"

namespace harmar::store::detail {
namespace {

constexpr std::size_t kStatementCacheSize = 128;

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

struct UrlParts {
  std::string user, password, host = "127.0.0.1", db, socket;
  unsigned port = 3306;
};

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int v = 0;
    auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

// mysql://user:password@host:port/db?socket=/path  (or mariadb://)
Result<UrlParts> parse_url(std::string_view url) {
  auto bad = [&] {
    return Error::bad_request("invalid_database_url",
                              "invalid MariaDB URL '" + redact_url(url) + "': expected mysql://USER[:PASSWORD]@HOST[:PORT]/DB");
  };
  UrlParts u;
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return bad();
  std::string_view rest = url.substr(scheme + 3);
  std::string_view query;
  if (auto qm = rest.find('?'); qm != std::string_view::npos) {
    query = rest.substr(qm + 1);
    rest = rest.substr(0, qm);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    auto user = url_decode(userinfo.substr(0, colon));
    if (!user) return bad();
    u.user = *user;
    if (colon != std::string_view::npos) {
      auto pw = url_decode(userinfo.substr(colon + 1));
      if (!pw) return bad();
      u.password = *pw;
    }
  }
  std::string_view hostport = rest.substr(0, rest.find('/'));
  if (rest.find('/') != std::string_view::npos) {
    auto db = url_decode(rest.substr(rest.find('/') + 1));
    if (!db) return bad();
    u.db = *db;
  }
  if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    unsigned port = 0;
    auto p = hostport.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535) return bad();
    u.port = port;
    hostport = hostport.substr(0, colon);
  }
  if (!hostport.empty()) u.host = std::string(hostport);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (kv.starts_with("socket=")) {
      auto s = url_decode(kv.substr(7));
      if (!s) return bad();
      u.socket = *s;
    }
  }
  return u;
}

bool connection_lost(unsigned err) {
  return err == CR_SERVER_GONE_ERROR || err == CR_SERVER_LOST || err == CR_CONNECTION_ERROR ||
         err == CR_CONN_HOST_ERROR || err == CR_SERVER_LOST_EXTENDED || err == ER_CONNECTION_KILLED ||
         err == CR_COMMANDS_OUT_OF_SYNC;
}

Error mysql_error(unsigned err, const char* message, std::string_view sql) {
  switch (err) {
    case ER_DUP_ENTRY:
    case ER_DUP_ENTRY_WITH_KEY_NAME:
    case ER_DUP_KEY:
      logger()->debug("mariadb conflict: {}; statement: {}", message, sql);
      return conflict_error();
    case ER_LOCK_WAIT_TIMEOUT:
    case ER_LOCK_DEADLOCK:
      logger()->warn("mariadb busy ({}): {}; statement: {}", err, message, sql);
      return unavailable_error("database busy");
    default:
      break;
  }
  if (connection_lost(err) || err == CR_CONN_HOST_ERROR || err == ER_CON_COUNT_ERROR) {
    logger()->warn("mariadb unavailable ({}): {}", err, message);
    return unavailable_error();
  }
  logger()->error("mariadb error {}: {}; statement: {}", err, message, sql);
  return internal_error();
}

// $1..$N → ?, and the parameter index each ? takes, leaving quoted text and comments alone.
struct Rewritten {
  std::string sql;
  std::vector<std::size_t> order;  // 0-based parameter index per ?
};

Rewritten rewrite_placeholders(std::string_view sql) {
  Rewritten out;
  out.sql.reserve(sql.size());
  const std::size_t n = sql.size();
  std::size_t i = 0;
  while (i < n) {
    char c = sql[i];
    char next = i + 1 < n ? sql[i + 1] : '\0';
    if (c == '\'' || c == '"' || c == '`') {
      std::size_t j = i + 1;
      while (j < n) {
        if (sql[j] == '\\' && c == '\'') {
          j += 2;
          continue;
        }
        if (sql[j] == c) {
          if (j + 1 < n && sql[j + 1] == c) {
            j += 2;
            continue;
          }
          ++j;
          break;
        }
        ++j;
      }
      out.sql.append(sql.substr(i, std::min(j, n) - i));
      i = std::min(j, n);
    } else if (c == '-' && next == '-') {  // comments go (a trailing one would hide the end)
      std::size_t j = sql.find('\n', i);
      j = j == std::string_view::npos ? n : j + 1;
      out.sql += ' ';
      i = j;
    } else if (c == '/' && next == '*') {
      std::size_t j = sql.find("*/", i + 2);
      j = j == std::string_view::npos ? n : j + 2;
      out.sql += ' ';
      i = j;
    } else if (c == '$' && std::isdigit(static_cast<unsigned char>(next))) {
      std::size_t j = i + 1, v = 0;
      while (j < n && std::isdigit(static_cast<unsigned char>(sql[j]))) v = v * 10 + static_cast<std::size_t>(sql[j++] - '0');
      out.sql += '?';
      out.order.push_back(v - 1);
      i = j;
    } else {
      out.sql += c;
      ++i;
    }
  }
  // One statement may end in ';' (a prepared statement may not); a second one stays and fails.
  while (!out.sql.empty() && (std::isspace(static_cast<unsigned char>(out.sql.back())) || out.sql.back() == ';'))
    out.sql.pop_back();
  return out;
}

// INSERT/REPLACE/DELETE … RETURNING: its rows are the rows it changed, as on PostgreSQL.
bool changes_rows(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  auto word = sql.substr(i, 7);
  auto upper = [](std::string_view w) {
    std::string u(w);
    for (auto& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return u;
  };
  std::string u = upper(word);
  return u.starts_with("INSERT") || u.starts_with("REPLACE") || u.starts_with("DELETE") || u.starts_with("UPDATE");
}

struct Statement {
  MYSQL_STMT* stmt = nullptr;
  std::vector<std::size_t> order;
};

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> open(const UrlParts& u, const Database::Options& opts) {
    MYSQL* m = mysql_init(nullptr);
    if (!m) return Error::unavailable("cannot allocate a MariaDB connection");
    std::unique_ptr<Connection> conn(new Connection(m));
    unsigned timeout = static_cast<unsigned>(std::max(1, opts.busy_timeout_ms / 1000));
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    my_bool reconnect = 0;
    mysql_options(m, MYSQL_OPT_RECONNECT, &reconnect);
    unsigned long flags = CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS;
    if (!mysql_real_connect(m, u.host.c_str(), u.user.c_str(), u.password.c_str(), u.db.empty() ? nullptr : u.db.c_str(),
                            u.port, u.socket.empty() ? nullptr : u.socket.c_str(), flags)) {
      std::string msg = mysql_error(m);
      logger()->warn("mariadb: cannot connect to {}:{}: {}", u.host, u.port, msg);
      return Error::unavailable("cannot connect to MariaDB: " + msg);
    }
    const char* setup[] = {
        "SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
        "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', NAMES utf8mb4 COLLATE utf8mb4_bin,"
        " time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    };
    for (const char* sql : setup) {
      if (mysql_real_query(m, sql, std::strlen(sql)) != 0) {
        std::string msg = mysql_error(m);
        logger()->error("mariadb: session setup failed: {}", msg);
        return Error::unavailable("cannot set up the MariaDB session: " + msg);
      }
    }
    return conn;
  }

  ~Connection() {
    cache_.clear([](Statement& s) { mysql_stmt_close(s.stmt); });
    mysql_close(m_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  MYSQL* raw() const { return m_; }
  bool broken = false;

  Result<Statement*> prepare(std::string_view sql) {
    std::string key(sql);
    if (auto* s = cache_.get(key)) return s;
    Rewritten rw = rewrite_placeholders(sql);
    MYSQL_STMT* st = mysql_stmt_init(m_);
    if (!st) return internal_error();
    if (mysql_stmt_prepare(st, rw.sql.data(), rw.sql.size()) != 0) {
      unsigned err = mysql_stmt_errno(st);
      Error e = mysql_error(err, mysql_stmt_error(st), sql);
      if (connection_lost(err)) broken = true;
      mysql_stmt_close(st);
      return e;
    }
    Statement s{st, std::move(rw.order)};
    if (auto evicted = cache_.put(key, std::move(s))) mysql_stmt_close(evicted->second.stmt);
    return cache_.get(key);
  }

  void forget(std::string_view sql) {
    if (auto s = cache_.take(std::string(sql))) mysql_stmt_close(s->stmt);
  }

 private:
  explicit Connection(MYSQL* m) : m_(m) {}
  MYSQL* m_;
  LruCache<Statement> cache_{kStatementCacheSize};
};

Rows::Cell cell_of(const MYSQL_FIELD& f, const MYSQL_BIND& b, const std::vector<char>& buf, unsigned long length,
                   my_bool is_null) {
  if (is_null) return std::monostate{};
  switch (b.buffer_type) {
    case MYSQL_TYPE_LONGLONG: {
      int64_t v = 0;
      std::memcpy(&v, buf.data(), sizeof v);
      if ((f.flags & UNSIGNED_FLAG) && v < 0) return fmt::format("{}", static_cast<uint64_t>(v));
      return v;
    }
    case MYSQL_TYPE_DOUBLE: {
      double v = 0;
      std::memcpy(&v, buf.data(), sizeof v);
      return v;
    }
    default:
      return std::string(buf.data(), std::min<std::size_t>(length, buf.size()));
  }
}

// Runs one prepared statement on `conn` (on a blocking-pool thread).
Result<Rows> run_prepared(Connection& conn, std::string_view sql, const Params& params) {
  for (int attempt = 0;; ++attempt) {
    auto prepared = conn.prepare(sql);
    if (!prepared) {
      if (prepared.error().code == "internal" && attempt == 0 && mysql_errno(conn.raw()) == ER_UNSUPPORTED_PS) break;
      return std::move(prepared).error();
    }
    Statement& s = **prepared;
    MYSQL_STMT* st = s.stmt;
    unsigned long expected = mysql_stmt_param_count(st);
    if (expected != s.order.size()) {
      logger()->error("mariadb: statement takes {} parameters but names {}; statement: {}", expected, s.order.size(), sql);
      return internal_error();
    }
    std::vector<MYSQL_BIND> binds(s.order.size());
    std::vector<int64_t> ints(s.order.size());
    std::vector<double> reals(s.order.size());
    std::vector<signed char> bools(s.order.size());
    std::vector<unsigned long> lengths(s.order.size());
    for (std::size_t i = 0; i < s.order.size(); ++i) {
      std::size_t idx = s.order[i];
      if (idx >= params.size()) {
        logger()->error("mariadb: statement uses ${} but {} parameters are given; statement: {}", idx + 1, params.size(), sql);
        return internal_error();
      }
      MYSQL_BIND& b = binds[i];
      std::memset(&b, 0, sizeof b);
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) {
              b.buffer_type = MYSQL_TYPE_NULL;
            } else if constexpr (std::is_same_v<T, int64_t>) {
              ints[i] = v;
              b.buffer_type = MYSQL_TYPE_LONGLONG;
              b.buffer = &ints[i];
            } else if constexpr (std::is_same_v<T, double>) {
              reals[i] = v;
              b.buffer_type = MYSQL_TYPE_DOUBLE;
              b.buffer = &reals[i];
            } else if constexpr (std::is_same_v<T, bool>) {
              bools[i] = v ? 1 : 0;
              b.buffer_type = MYSQL_TYPE_TINY;
              b.buffer = &bools[i];
            } else if constexpr (std::is_same_v<T, std::string>) {
              lengths[i] = v.size();
              b.buffer_type = MYSQL_TYPE_STRING;
              b.buffer = const_cast<char*>(v.data());
              b.buffer_length = v.size();
              b.length = &lengths[i];
            } else {
              static_assert(std::is_same_v<T, Bytes>);
              lengths[i] = v.data.size();
              b.buffer_type = MYSQL_TYPE_BLOB;
              b.buffer = const_cast<char*>(v.data.data());
              b.buffer_length = v.data.size();
              b.length = &lengths[i];
            }
          },
          params[idx]);
    }
    if (!binds.empty() && mysql_stmt_bind_param(st, binds.data()) != 0)
      return mysql_error(mysql_stmt_errno(st), mysql_stmt_error(st), sql);
    if (mysql_stmt_execute(st) != 0) {
      unsigned err = mysql_stmt_errno(st);
      if (err == ER_NEED_REPREPARE && attempt == 0) {  // the schema changed under a cached statement
        conn.forget(sql);
        continue;
      }
      if (connection_lost(err)) conn.broken = true;
      return mysql_error(err, mysql_stmt_error(st), sql);
    }
    MYSQL_RES* meta = mysql_stmt_result_metadata(st);
    if (!meta) {
      int64_t affected = static_cast<int64_t>(mysql_stmt_affected_rows(st));
      mysql_stmt_free_result(st);
      return Rows({}, {}, affected == -1 ? 0 : affected);
    }
    my_bool update_max = 1;
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max);
    if (mysql_stmt_store_result(st) != 0) {
      mysql_free_result(meta);
      unsigned err = mysql_stmt_errno(st);
      if (connection_lost(err)) conn.broken = true;
      return mysql_error(err, mysql_stmt_error(st), sql);
    }
    unsigned ncols = mysql_num_fields(meta);
    MYSQL_FIELD* fields = mysql_fetch_fields(meta);
    std::vector<std::string> columns;
    std::vector<MYSQL_BIND> out(ncols);
    std::vector<std::vector<char>> bufs(ncols);
    std::vector<unsigned long> out_len(ncols);
    std::vector<my_bool> nulls(ncols), errors(ncols);
    for (unsigned c = 0; c < ncols; ++c) {
      columns.emplace_back(fields[c].name, fields[c].name_length);
      MYSQL_BIND& b = out[c];
      std::memset(&b, 0, sizeof b);
      switch (fields[c].type) {
        case MYSQL_TYPE_TINY:
        case MYSQL_TYPE_SHORT:
        case MYSQL_TYPE_INT24:
        case MYSQL_TYPE_LONG:
        case MYSQL_TYPE_LONGLONG:
        case MYSQL_TYPE_YEAR:
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          bufs[c].resize(sizeof(int64_t));
          break;
        case MYSQL_TYPE_FLOAT:
        case MYSQL_TYPE_DOUBLE:
          b.buffer_type = MYSQL_TYPE_DOUBLE;
          bufs[c].resize(sizeof(double));
          break;
        default:
          b.buffer_type = MYSQL_TYPE_STRING;
          bufs[c].resize(std::max<std::size_t>(fields[c].max_length, 1));
          break;
      }
      b.buffer = bufs[c].data();
      b.buffer_length = bufs[c].size();
      b.length = &out_len[c];
      b.is_null = &nulls[c];
      b.error = &errors[c];
    }
    std::vector<Rows::Cell> cells;
    Status failure;
    if (ncols && mysql_stmt_bind_result(st, out.data()) != 0) {
      failure = mysql_error(mysql_stmt_errno(st), mysql_stmt_error(st), sql);
    } else {
      for (;;) {
        int rc = mysql_stmt_fetch(st);
        if (rc == MYSQL_NO_DATA) break;
        if (rc == 1) {
          failure = mysql_error(mysql_stmt_errno(st), mysql_stmt_error(st), sql);
          break;
        }
        for (unsigned c = 0; c < ncols; ++c) cells.push_back(cell_of(fields[c], out[c], bufs[c], out_len[c], nulls[c]));
      }
    }
    mysql_free_result(meta);
    mysql_stmt_free_result(st);
    if (!failure) return std::move(failure).error();
    int64_t affected = changes_rows(sql) && ncols ? static_cast<int64_t>(cells.size() / ncols) : 0;
    return Rows(std::move(columns), std::move(cells), affected);
  }
  // Not preparable (some administrative statements): the text protocol, without parameters.
  if (!params.empty()) {
    logger()->error("mariadb: a statement the server cannot prepare takes no parameters; statement: {}", sql);
    return internal_error();
  }
  if (mysql_real_query(conn.raw(), sql.data(), sql.size()) != 0)
    return mysql_error(mysql_errno(conn.raw()), mysql_error(conn.raw()), sql);
  MYSQL_RES* res = mysql_store_result(conn.raw());
  if (!res) return Rows({}, {}, static_cast<int64_t>(mysql_affected_rows(conn.raw())));
  unsigned ncols = mysql_num_fields(res);
  MYSQL_FIELD* fields = mysql_fetch_fields(res);
  std::vector<std::string> columns;
  for (unsigned c = 0; c < ncols; ++c) columns.emplace_back(fields[c].name, fields[c].name_length);
  std::vector<Rows::Cell> cells;
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* lens = mysql_fetch_lengths(res);
    for (unsigned c = 0; c < ncols; ++c) {
      if (!row[c]) cells.emplace_back(std::monostate{});
      else cells.emplace_back(std::string(row[c], lens[c]));
    }
  }
  mysql_free_result(res);
  return Rows(std::move(columns), std::move(cells), 0);
}

Status run_script(Connection& conn, std::string_view sql) {
  if (mysql_real_query(conn.raw(), sql.data(), sql.size()) != 0) {
    unsigned err = mysql_errno(conn.raw());
    if (connection_lost(err)) conn.broken = true;
    return mysql_error(err, mysql_error(conn.raw()), sql);
  }
  // Drain every statement's result; the first failure ends the script.
  for (;;) {
    if (MYSQL_RES* r = mysql_store_result(conn.raw())) mysql_free_result(r);
    int next = mysql_next_result(conn.raw());
    if (next == -1) return {};
    if (next > 0) {
      unsigned err = mysql_errno(conn.raw());
      if (connection_lost(err)) conn.broken = true;
      return mysql_error(err, mysql_error(conn.raw()), sql);
    }
  }
}

Status run_simple(Connection& conn, std::string_view sql) {
  auto r = run_prepared(conn, sql, {});
  if (!r) return std::move(r).error();
  return {};
}

// COMMIT or ROLLBACK, then the named locks the transaction took (GET_LOCK), which MariaDB would
// otherwise keep for the session: as with pg_advisory_xact_lock, they last as long as the
// transaction. A connection left in an unknown state is marked broken.
Status end_transaction(Connection& conn, std::string_view verb, bool named_locks) {
  Status s = run_simple(conn, verb);
  if (!s && verb == "COMMIT" && !run_simple(conn, "ROLLBACK")) conn.broken = true;
  if (!s && verb == "ROLLBACK") conn.broken = true;
  if (named_locks && !conn.broken && !run_simple(conn, "DO RELEASE_ALL_LOCKS()")) conn.broken = true;
  return s;
}

// The connections of one event loop (io_context), as PostgreSQL has them: pool_per_worker of
// them, and as many threads of its own to run their statements on. A statement that waits for a
// row lock holds its thread, so the shared blocking pool (argon2, files, SQLite) is never the
// one starved, and every leased connection always has a thread to finish on.
struct LoopPool {
  AsyncSemaphore slots;
  std::mutex mu;
  std::vector<std::unique_ptr<Connection>> idle;
  asio::thread_pool threads;
  explicit LoopPool(std::size_t size) : slots(size), threads(size) {}
};

struct State {
  UrlParts url;
  std::string redacted;
  Database::Options opts;
  std::mutex mu;
  std::map<const void*, std::unique_ptr<LoopPool>> loops;  // by io_context; never shrinks
  std::shared_ptr<ListenRegistry> listeners = std::make_shared<ListenRegistry>();

  std::chrono::milliseconds busy_timeout() const { return std::chrono::milliseconds(opts.busy_timeout_ms); }
  LoopPool& loop_pool(const asio::any_io_executor& ex) {
    const void* key = &asio::query(ex, asio::execution::context);
    std::lock_guard lock(mu);
    auto& p = loops[key];
    if (!p) p = std::make_unique<LoopPool>(static_cast<std::size_t>(std::max(1, opts.pool_per_worker)));
    return *p;
  }
  // Lets queued work (rollbacks of dropped transactions) finish, on the destroying thread.
  void join() {
    std::lock_guard lock(mu);
    for (auto& [_, p] : loops) p->threads.join();
  }
};

// Runs fn() on one of `pool`'s threads; the awaiting coroutine resumes on its own executor.
template <class F>
asio::awaitable<std::invoke_result_t<F&>> on_pool(LoopPool& pool, F& fn) {
  using R = std::invoke_result_t<F&>;
  // co_spawn's result must be default-constructible; Result<T> is not.
  auto task = [&fn]() -> asio::awaitable<std::optional<R>> { co_return fn(); };
  std::optional<R> out = co_await asio::co_spawn(pool.threads.get_executor(), task, asio::use_awaitable);
  co_return std::move(*out);
}

// A pooled connection (opened on first use), returned to its pool when this goes away unless
// it broke.
class Lease {
 public:
  Lease(LoopPool& pool, std::unique_ptr<Connection> conn) : pool_(&pool), conn_(std::move(conn)), permit_(pool.slots) {}
  Lease(Lease&& o) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() { give_back(); }
  Connection& conn() { return *conn_; }
  LoopPool& pool() { return *pool_; }
  void give_back() {
    if (!conn_) return;
    if (!conn_->broken) {
      std::lock_guard lock(pool_->mu);
      pool_->idle.push_back(std::move(conn_));
    }
    conn_.reset();
    permit_.reset();
  }
  // Ownership for work that outlives this coroutine (a rollback on the pool's threads).
  std::unique_ptr<Connection> take() { return std::move(conn_); }
  SemaphorePermit take_permit() { return std::move(permit_); }

 private:
  LoopPool* pool_;
  std::unique_ptr<Connection> conn_;
  SemaphorePermit permit_;
};

asio::awaitable<Result<Lease>> lease(std::shared_ptr<State> st) {
  LoopPool& pool = st->loop_pool(co_await asio::this_coro::executor);
  bool acquired = co_await pool.slots.acquire(st->busy_timeout());
  if (!acquired) {
    logger()->warn("mariadb: waited {} ms for a pooled connection", st->opts.busy_timeout_ms);
    co_return unavailable_error("database busy");
  }
  std::unique_ptr<Connection> conn;
  {
    std::lock_guard lock(pool.mu);
    if (!pool.idle.empty()) {
      conn = std::move(pool.idle.back());
      pool.idle.pop_back();
    }
  }
  if (!conn) {
    auto open = [&st] { return Connection::open(st->url, st->opts); };
    auto opened = co_await on_pool(pool, open);
    if (!opened) {
      pool.slots.release();
      co_return std::move(opened).error();
    }
    conn = std::move(*opened);
  }
  co_return Lease(pool, std::move(conn));
}

class MysqlTransaction final : public Transaction {
 public:
  MysqlTransaction(std::shared_ptr<State> st, Lease lease) : state_(std::move(st)), lease_(std::move(lease)) {}

  ~MysqlTransaction() override {
    if (done_) return;
    // Dropped while open: roll back on the pool's threads, then hand the connection back.
    LoopPool* pool = &lease_.pool();
    Connection* conn = lease_.take().release();
    asio::post(pool->threads, [conn, pool, locks = named_locks_, permit = lease_.take_permit(), st = state_]() mutable {
      std::unique_ptr<Connection> owned(conn);
      if (owned && !owned->broken) (void)end_transaction(*owned, "ROLLBACK", locks);
      if (owned && !owned->broken) {
        std::lock_guard lock(pool->mu);
        pool->idle.push_back(std::move(owned));
      }
      permit.reset();
    });
  }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (done_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    if (sql.find("GET_LOCK(") != std::string_view::npos) named_locks_ = true;
    auto* conn = &lease_.conn();
    auto run = [&] { return run_prepared(*conn, sql, params); };
    auto r = co_await on_pool(lease_.pool(), run);
    if (!r) failed_ = true;
    co_return r;
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    if (done_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    auto* conn = &lease_.conn();
    auto run = [&] { return run_script(*conn, sql); };
    auto s = co_await on_pool(lease_.pool(), run);
    if (!s) failed_ = true;
    co_return s;
  }

  asio::awaitable<Status> commit() override {
    if (done_) co_return finished_transaction_error();
    auto* conn = &lease_.conn();
    bool failed = failed_, locks = named_locks_;
    auto run = [conn, failed, locks]() -> Status {
      if (failed) {
        (void)end_transaction(*conn, "ROLLBACK", locks);
        return aborted_transaction_error();
      }
      return end_transaction(*conn, "COMMIT", locks);
    };
    auto s = co_await on_pool(lease_.pool(), run);
    done_ = true;
    lease_.give_back();
    co_return s;
  }

  asio::awaitable<Status> rollback() override {
    if (done_) co_return finished_transaction_error();
    auto* conn = &lease_.conn();
    bool locks = named_locks_;
    auto run = [conn, locks]() -> Status { return end_transaction(*conn, "ROLLBACK", locks); };
    auto s = co_await on_pool(lease_.pool(), run);
    done_ = true;
    lease_.give_back();
    co_return s;
  }

 private:
  std::shared_ptr<State> state_;
  Lease lease_;
  bool done_ = false;
  bool failed_ = false;
  bool named_locks_ = false;
};

class MysqlDatabase final : public Database {
 public:
  explicit MysqlDatabase(std::shared_ptr<State> st) : st_(std::move(st)) {}
  ~MysqlDatabase() override { st_->join(); }

  Backend backend() const override { return Backend::Mysql; }
  std::string describe() const override { return st_->redacted; }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto l = co_await lease(st_);
    if (!l) co_return std::move(l).error();
    auto* conn = &l->conn();
    auto run = [&] {
      auto out = run_prepared(*conn, sql, params);
      // A BEGIN sent through Database::query() must not leak into the next user's statements.
      unsigned int status = 0;
      mariadb_get_infov(conn->raw(), MARIADB_CONNECTION_SERVER_STATUS, &status);
      if (out && !conn->broken && (status & SERVER_STATUS_IN_TRANS)) {
        logger()->warn("mariadb: statement left a transaction open, rolled back (use Database::begin()): {}", sql);
        if (!run_simple(*conn, "ROLLBACK")) conn->broken = true;
      }
      return out;
    };
    co_return co_await on_pool(l->pool(), run);
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    auto l = co_await lease(st_);
    if (!l) co_return std::move(l).error();
    auto* conn = &l->conn();
    auto run = [&] { return run_script(*conn, sql); };
    co_return co_await on_pool(l->pool(), run);
  }

  asio::awaitable<Result<std::unique_ptr<Transaction>>> begin() override {
    auto l = co_await lease(st_);
    if (!l) co_return std::move(l).error();
    auto* conn = &l->conn();
    auto run = [conn] { return run_simple(*conn, "START TRANSACTION"); };
    auto s = co_await on_pool(l->pool(), run);
    if (!s) co_return std::move(s).error();
    co_return std::unique_ptr<Transaction>(new MysqlTransaction(st_, std::move(*l)));
  }

  asio::awaitable<Status> ping() override {
    auto rows = co_await query("SELECT 1", {});
    if (!rows) co_return std::move(rows).error();
    co_return Status{};
  }

  std::unique_ptr<Listener> listen(std::string channel, asio::any_io_executor ex, NotifyHandler on_notify,
                                   std::function<void()> on_gap) override {
    if (!check_notify(channel, "")) throw std::invalid_argument("invalid notification channel '" + channel + "'");
    auto e = std::make_shared<ListenEntry>();
    e->channel = std::move(channel);
    e->ex = std::move(ex);
    e->on_notify = std::move(on_notify);
    e->on_gap = std::move(on_gap);
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
  std::shared_ptr<State> st_;
};

}  // namespace

Result<std::unique_ptr<Database>> open_mysql(const std::string& url, const Database::Options& opts) {
  static std::once_flag init;
  std::call_once(init, [] { mysql_library_init(0, nullptr, nullptr); });
  HARMAR_TRY(auto parts, parse_url(url));
  auto st = std::make_shared<State>();
  st->url = std::move(parts);
  st->redacted = redact_url(url);
  st->opts = opts;
  logger()->info("mariadb database {} ({} connections per event loop)", st->redacted, opts.pool_per_worker);
  return std::unique_ptr<Database>(new MysqlDatabase(std::move(st)));
}

}  // namespace harmar::store::detail
