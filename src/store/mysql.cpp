// MariaDB / MySQL backend (libmariadb, MariaDB Connector/C, whose calls block): per event loop a
// pool of connections, as for PostgreSQL, and a thread per connection that runs its statements,
// so the event loop only awaits them.
//
// - SQL keeps the store's $1..$N placeholders; they become ? with the parameters reordered (and
//   repeated) to match, and run as server-side prepared statements, cached per connection. Values
//   never become SQL text.
// - Sessions run with sql_mode ANSI_QUOTES (so "name" quotes an identifier, as on SQLite and
//   PostgreSQL), PIPES_AS_CONCAT (|| joins text), STRICT_ALL_TABLES, SIMULTANEOUS_ASSIGNMENT (an
//   UPDATE's SET reads the row as it was, not as the assignments before have left it), utf8mb4
//   and UTC. The
//   session collation is utf8mb4_bin, the one MariaDB's JSON functions answer in (two different
//   collations of equal strength cannot be compared); tables are utf8mb4_nopad_bin, which wins
//   over a parameter's, so a text column compares byte for byte with no padding.
// - The few PostgreSQL constructs the modules' SQL shares are rewritten before a statement is
//   prepared (mysql_dialect: ON CONFLICT, CAST AS TEXT/BIGINT, LIMIT in an IN subquery), and
//   UPDATE … RETURNING, which MariaDB lacks, runs as lock, update by primary key, read back
//   (run_update_returning). What a rewrite cannot express is SQL of its own in the repo, chosen
//   on Database::backend().
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

// The PostgreSQL/SQLite constructs the modules' SQL shares, as MariaDB spells them. Rewritten here,
// once per prepared statement, rather than in every repo:
//   INSERT … ON CONFLICT [(k)] DO NOTHING            → INSERT IGNORE …
//   ON CONFLICT (k) DO UPDATE SET c = excluded.c      → ON DUPLICATE KEY UPDATE c = VALUES(c)
//   … DO UPDATE SET c = x WHERE cond                  → … UPDATE c = IF(cond, x, c) (MariaDB assigns
//                                                       left to right: cond should not read a column
//                                                       an earlier assignment set)
//   CAST(x AS TEXT), CAST(x AS BIGINT)               → CAST(x AS CHAR), CAST(x AS SIGNED)
//   x IN (SELECT … LIMIT n)                          → x IN (SELECT * FROM (SELECT … LIMIT n) AS …)
// Limits: ON DUPLICATE KEY fires on any unique key of the table, not only the one named; IGNORE
// also lets a row through whose value had to be cut to its column's length (the columns are sized
// past what the API accepts) or whose foreign key is missing (the row is then skipped).
struct Token {
  enum Kind { Word, Quoted, Space, Punct } kind;
  std::string_view text;
};

std::vector<Token> tokenize(std::string_view sql) {
  std::vector<Token> out;
  const std::size_t n = sql.size();
  std::size_t i = 0;
  auto word_char = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '$'; };
  while (i < n) {
    char c = sql[i];
    char next = i + 1 < n ? sql[i + 1] : '\0';
    std::size_t j = i + 1;
    Token::Kind kind = Token::Punct;
    if (c == '\'' || c == '"' || c == '`') {
      kind = Token::Quoted;
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
      j = std::min(j, n);
    } else if (c == '-' && next == '-') {
      kind = Token::Space;
      j = sql.find('\n', i);
      j = j == std::string_view::npos ? n : j + 1;
    } else if (c == '/' && next == '*') {
      kind = Token::Space;
      j = sql.find("*/", i + 2);
      j = j == std::string_view::npos ? n : j + 2;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      kind = Token::Space;
      while (j < n && std::isspace(static_cast<unsigned char>(sql[j]))) ++j;
    } else if (word_char(c)) {
      kind = Token::Word;
      while (j < n && word_char(sql[j])) ++j;
    }
    out.push_back({kind, sql.substr(i, j - i)});
    i = j;
  }
  return out;
}

bool is_word(const std::vector<Token>& t, std::size_t i, std::string_view w) {
  if (i >= t.size() || t[i].kind != Token::Word || t[i].text.size() != w.size()) return false;
  for (std::size_t k = 0; k < w.size(); ++k)
    if (std::toupper(static_cast<unsigned char>(t[i].text[k])) != std::toupper(static_cast<unsigned char>(w[k])))
      return false;
  return true;
}

bool is_punct(const std::vector<Token>& t, std::size_t i, char c) {
  return i < t.size() && t[i].kind == Token::Punct && t[i].text.size() == 1 && t[i].text[0] == c;
}

// The next token after i that is not white space or a comment (t.size() if none).
std::size_t skip_space(const std::vector<Token>& t, std::size_t i) {
  ++i;
  while (i < t.size() && t[i].kind == Token::Space) ++i;
  return i;
}

// The ')' closing the '(' at i (t.size() if unbalanced).
std::size_t closing(const std::vector<Token>& t, std::size_t i) {
  int depth = 0;
  for (; i < t.size(); ++i) {
    if (is_punct(t, i, '(')) ++depth;
    if (is_punct(t, i, ')') && --depth == 0) return i;
  }
  return t.size();
}

std::string concat(const std::vector<Token>& t, std::size_t from, std::size_t to) {
  std::string s;
  for (std::size_t i = from; i < to && i < t.size(); ++i) s += t[i].kind == Token::Space ? std::string_view(" ") : t[i].text;
  return s;
}

// Whether tokens [from, to) hold LIMIT outside any parentheses.
bool has_top_level_limit(const std::vector<Token>& t, std::size_t from, std::size_t to) {
  int depth = 0;
  for (std::size_t i = from; i < to; ++i) {
    if (is_punct(t, i, '(')) ++depth;
    if (is_punct(t, i, ')')) --depth;
    if (depth == 0 && is_word(t, i, "LIMIT")) return true;
  }
  return false;
}

// excluded.c (the row that was refused) is VALUES(c) in ON DUPLICATE KEY UPDATE.
std::string excluded_as_values(std::string_view sql) {
  auto t = tokenize(sql);
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (is_word(t, i, "excluded") && is_punct(t, i + 1, '.') && i + 2 < t.size() && t[i + 2].kind == Token::Word) {
      out += "VALUES(" + std::string(t[i + 2].text) + ")";
      i += 2;
      continue;
    }
    out += t[i].text;
  }
  return out;
}

std::string mysql_dialect(std::string_view sql, int* subqueries) {
  auto t = tokenize(sql);
  std::string out;
  out.reserve(sql.size() + 32);
  std::size_t first = 0;
  while (first < t.size() && t[first].kind == Token::Space) ++first;
  std::size_t after_first = 0;  // where the first word ends in `out`
  bool ignore = false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (is_word(t, i, "ON") && is_word(t, skip_space(t, i), "CONFLICT") && is_word(t, first, "INSERT")) {
      std::size_t j = skip_space(t, skip_space(t, i));
      if (is_punct(t, j, '(')) j = skip_space(t, closing(t, j));
      std::size_t k = skip_space(t, j);
      if (is_word(t, j, "DO") && is_word(t, k, "NOTHING")) {
        ignore = true;
        i = k;
        continue;
      }
      if (is_word(t, j, "DO") && is_word(t, k, "UPDATE") && is_word(t, skip_space(t, k), "SET")) {
        std::size_t set = skip_space(t, skip_space(t, k));
        std::size_t end = set, where = 0;
        std::vector<std::size_t> commas;
        for (int depth = 0; end < t.size(); ++end) {
          if (is_punct(t, end, '(')) ++depth;
          if (is_punct(t, end, ')')) --depth;
          if (depth != 0) continue;
          if (is_word(t, end, "RETURNING")) break;
          if (!where && is_word(t, end, "WHERE")) where = end;
          if (!where && is_punct(t, end, ',')) commas.push_back(end);
        }
        out += "ON DUPLICATE KEY UPDATE ";
        if (!where) {
          out += excluded_as_values(concat(t, set, end));
        } else {
          std::string cond = excluded_as_values(concat(t, where + 1, end));
          commas.push_back(where);
          std::size_t from = set;
          for (std::size_t c : commas) {
            std::string assignment = excluded_as_values(concat(t, from, c));
            auto a = tokenize(assignment);
            std::size_t col = 0;
            while (col < a.size() && a[col].kind == Token::Space) ++col;
            std::size_t eq = skip_space(a, col);
            if (col >= a.size() || !is_punct(a, eq, '=')) return std::string(sql);  // not col = expr: MariaDB says why
            if (from != set) out += ", ";
            out += fmt::format("{0} = IF({1}, {2}, {0})", a[col].text, cond, concat(a, eq + 1, a.size()));
            from = c + 1;
          }
        }
        out += ' ';
        i = end - 1;
        continue;
      }
    }
    if (is_word(t, i, "AS")) {
      std::size_t j = skip_space(t, i);
      bool text = is_word(t, j, "TEXT"), bigint = is_word(t, j, "BIGINT");
      if ((text || bigint) && is_punct(t, skip_space(t, j), ')')) {
        out += text ? "AS CHAR" : "AS SIGNED";
        i = j;
        continue;
      }
    }
    if (is_word(t, i, "IN")) {
      std::size_t open = skip_space(t, i);
      if (is_punct(t, open, '(') && is_word(t, skip_space(t, open), "SELECT")) {
        std::size_t close = closing(t, open);
        if (close < t.size() && has_top_level_limit(t, open + 1, close)) {
          std::string inner = mysql_dialect(concat(t, open + 1, close), subqueries);
          out += fmt::format("IN (SELECT * FROM ({}) AS harmar_in_{})", inner, ++*subqueries);
          i = close;
          continue;
        }
      }
    }
    out += t[i].text;
    if (i == first) after_first = out.size();
  }
  if (ignore) out.insert(after_first, " IGNORE");  // INSERT IGNORE
  return out;
}

std::string mysql_dialect(std::string_view sql) {
  int subqueries = 0;
  return mysql_dialect(sql, &subqueries);
}

// UPDATE … RETURNING, which MariaDB lacks, split into its parts: run_update_returning() locks the
// rows WHERE picks (SELECT … FOR UPDATE), updates them by primary key and reads RETURNING's
// columns back, in one transaction (the caller's, or one of its own).
struct UpdateReturning {
  std::string table, set, where, returning;
};

std::optional<UpdateReturning> split_update_returning(std::string_view sql) {
  auto t = tokenize(sql);
  std::size_t first = 0;
  while (first < t.size() && t[first].kind == Token::Space) ++first;
  if (!is_word(t, first, "UPDATE")) return std::nullopt;
  std::size_t table = skip_space(t, first);
  if (table >= t.size() || (t[table].kind != Token::Word && t[table].kind != Token::Quoted)) return std::nullopt;
  std::size_t set = 0, where = 0, returning = 0;
  int depth = 0;
  for (std::size_t i = table + 1; i < t.size(); ++i) {
    if (is_punct(t, i, '(')) ++depth;
    if (is_punct(t, i, ')')) --depth;
    if (depth != 0) continue;
    if (!set && is_word(t, i, "SET")) set = i;
    else if (set && !where && !returning && is_word(t, i, "WHERE")) where = i;
    else if (set && is_word(t, i, "RETURNING")) returning = i;
  }
  if (!set || !returning || skip_space(t, table) != set) return std::nullopt;
  UpdateReturning u;
  u.table = std::string(t[table].text);
  u.set = concat(t, set + 1, where ? where : returning);
  if (where) u.where = concat(t, where + 1, returning);
  u.returning = concat(t, returning + 1, t.size());
  while (!u.returning.empty() && (std::isspace(static_cast<unsigned char>(u.returning.back())) || u.returning.back() == ';'))
    u.returning.pop_back();
  return u;
}

Rewritten rewrite_placeholders(std::string_view sql) {
  Rewritten out;
  out.sql.reserve(sql.size());
  for (const Token& t : tokenize(sql)) {
    if (t.kind == Token::Space && !std::isspace(static_cast<unsigned char>(t.text[0]))) {
      out.sql += ' ';  // comments go (a trailing one would hide the end)
    } else if (t.kind == Token::Word && t.text.size() > 1 && t.text[0] == '$' &&
               std::isdigit(static_cast<unsigned char>(t.text[1]))) {
      std::size_t j = 1, v = 0;
      while (j < t.text.size() && std::isdigit(static_cast<unsigned char>(t.text[j]))) v = v * 10 + static_cast<std::size_t>(t.text[j++] - '0');
      out.sql += '?';
      out.sql += t.text.substr(j);
      out.order.push_back(v - 1);
    } else {
      out.sql += t.text;
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
        "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,SIMULTANEOUS_ASSIGNMENT', NAMES utf8mb4 COLLATE utf8mb4_bin,"
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
  std::map<std::string, std::string> primary_keys;  // by table, for UPDATE … RETURNING

  Result<Statement*> prepare(std::string_view sql) {
    std::string key(sql);
    if (auto* s = cache_.get(key)) return s;
    Rewritten rw = rewrite_placeholders(mysql_dialect(sql));
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

// The primary key column of `table`, looked up once per connection. 500 for a table without a
// one-column primary key (UPDATE … RETURNING needs one on MariaDB).
Result<std::string> primary_key(Connection& conn, const std::string& table) {
  if (auto it = conn.primary_keys.find(table); it != conn.primary_keys.end()) return it->second;
  auto rows = run_prepared(conn,
                           "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()"
                           " AND TABLE_NAME = $1 AND CONSTRAINT_NAME = 'PRIMARY'",
                           {table});
  if (!rows) return std::move(rows).error();
  if (rows->size() != 1) {
    logger()->error("mariadb: UPDATE … RETURNING needs a one-column primary key, and {} has none", table);
    return internal_error();
  }
  std::string key = "\"" + rows->front().text(0) + "\"";
  conn.primary_keys.emplace(table, key);
  return key;
}

// `key IN ($first, …)` for n keys, padded to a power of two by repeating the last one so that a
// statement's variants share a few cached prepared statements.
std::string keys_in(const std::string& key, std::size_t first, std::size_t n) {
  std::size_t padded = 1;
  while (padded < n) padded *= 2;
  std::string sql = key + " IN (";
  for (std::size_t i = 0; i < padded; ++i) {
    if (i) sql += ", ";
    sql += fmt::format("${}", first + std::min(i, n - 1) + 1);
  }
  return sql + ")";
}

Result<Rows> run_update_returning(Connection& conn, const UpdateReturning& u, const Params& params) {
  auto key = primary_key(conn, u.table);
  if (!key) return std::move(key).error();
  unsigned int status = 0;
  mariadb_get_infov(conn.raw(), MARIADB_CONNECTION_SERVER_STATUS, &status);
  bool own = !(status & SERVER_STATUS_IN_TRANS);
  if (own) {
    if (auto s = run_prepared(conn, "START TRANSACTION", {}); !s) return std::move(s).error();
  }
  auto run = [&]() -> Result<Rows> {
    std::string where = u.where.empty() ? "" : " WHERE " + u.where;
    auto picked = run_prepared(conn, "SELECT " + *key + " FROM " + u.table + where + " FOR UPDATE", params);
    if (!picked) return std::move(picked).error();
    if (picked->empty()) return Rows();
    Params all = params;
    std::size_t first = all.size();
    for (std::size_t r = 0; r < picked->size(); ++r) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) all.emplace_back(nullptr);
            else if constexpr (std::is_same_v<T, std::string_view>) all.emplace_back(std::string(v));
            else all.emplace_back(v);
          },
          picked->cell(r, 0));
    }
    std::size_t n = all.size() - first;
    std::string in = keys_in(*key, first, n);
    auto updated = run_prepared(conn, "UPDATE " + u.table + " SET " + u.set + " WHERE " + in, all);
    if (!updated) return std::move(updated).error();
    auto rows = run_prepared(conn, "SELECT " + u.returning + " FROM " + u.table + " WHERE " + in, all);
    if (!rows) return std::move(rows).error();
    std::vector<Rows::Cell> cells;
    for (std::size_t r = 0; r < rows->size(); ++r)
      for (std::size_t c = 0; c < rows->columns().size(); ++c) cells.push_back(rows->cell(r, c));
    return Rows(rows->columns(), std::move(cells), static_cast<int64_t>(rows->size()));
  };
  auto out = run();
  if (own) {
    if (!run_simple(conn, out ? "COMMIT" : "ROLLBACK")) {
      conn.broken = true;
      if (out) return internal_error();
    }
  }
  return out;
}

// A statement as the store's callers write it: UPDATE … RETURNING emulated, the rest prepared.
Result<Rows> run_statement(Connection& conn, std::string_view sql, const Params& params) {
  auto start = sql.find_first_not_of(" \t\r\n");
  bool update = start != std::string_view::npos && sql.size() >= start + 6 &&
                std::toupper(static_cast<unsigned char>(sql[start])) == 'U' &&
                std::toupper(static_cast<unsigned char>(sql[start + 1])) == 'P';
  if (update && sql.find("RETURNING") != std::string_view::npos) {
    if (auto u = split_update_returning(sql)) return run_update_returning(conn, *u, params);
  }
  return run_prepared(conn, sql, params);
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
    auto run = [&] { return run_statement(*conn, sql, params); };
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
      auto out = run_statement(*conn, sql, params);
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
