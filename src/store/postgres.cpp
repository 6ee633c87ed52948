// PostgreSQL backend: libpq in non-blocking mode, driven by the calling coroutine's io_context
// (an asio stream_descriptor on PQsocket; we wait for readiness, libpq does the I/O).
//
// Pools: each io_context that uses the database gets its own pool of at most
// Options::pool_per_worker connections, created lazily and owned by an asio service of that
// io_context (so it closes when the io_context goes away). Waiting for a free connection is
// asynchronous and bounded by busy_timeout_ms (503). A connection that breaks is dropped; the
// next caller reconnects. Each connection prepares each distinct SQL once (PQsendPrepare) and
// then runs it with PQsendQueryPrepared; parameters go as text, except Bytes (binary bytea).
//
// Reads (Database::read) queue per pool instead of each taking a connection: up to
// pool_per_worker coroutines drain the queue, each sending what is waiting (at most
// kMaxPipeline reads) in one libpq pipeline with a single Sync, so a burst of reads costs one
// write and one wake-up of the server instead of one each. Statements between two Syncs form one
// implicit transaction, which is why only reads go this way: when one fails, the server skips
// the rest up to the Sync, and those go back to the head of the queue for the next pipeline.
#include <libpq-fe.h>
#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <charconv>
#include <cmath>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "core/log.hpp"
#include "store/detail/async_semaphore.hpp"
#include "store/detail/lru.hpp"
#include "store/detail/notify.hpp"
#include "store/detail/sql_common.hpp"

namespace harmar::store::detail {
namespace {

constexpr std::size_t kPreparedCacheSize = 256;
constexpr std::size_t kMaxPipeline = 32;  // reads sent together on one connection
constexpr Oid kBoolOid = 16, kByteaOid = 17, kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23, kOidOid = 26,
              kFloat4Oid = 700, kFloat8Oid = 701;

using WaitType = asio::posix::descriptor_base::wait_type;

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

std::string_view trim_newline(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// Server notices (e.g. "relation already exists, skipping") go to the log, not to stderr.
void on_notice(void*, const char* message) { logger()->debug("postgres: {}", trim_newline(message)); }

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

struct Config {
  uint64_t id;  // tells the pools of different Database objects apart
  std::string url;
  std::string described;
  Database::Options opts;
  std::chrono::milliseconds busy_timeout() const { return std::chrono::milliseconds(opts.busy_timeout_ms); }
};

std::atomic<uint64_t> next_database_id{1};

class Connection {
 public:
  Connection(PGconn* pg, const asio::any_io_executor& ex) : pg(pg), sock(ex) {}
  ~Connection() {
    if (sock.is_open()) sock.release();  // libpq owns the descriptor and closes it
    PQfinish(pg);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  PGconn* pg;
  asio::posix::stream_descriptor sock;
  LruCache<std::string> prepared{kPreparedCacheSize};  // SQL + parameter kinds → statement name
  uint64_t statements = 0;
  bool broken = false;  // never reuse: the socket failed or the protocol state is unknown
};

Error connection_lost(Connection& c, std::string_view sql) {
  c.broken = true;
  logger()->warn("postgres connection lost: {}; statement: {}", trim_newline(PQerrorMessage(c.pg)), sql);
  return unavailable_error("database connection lost");
}

Error result_error(Connection& c, const PGresult* r, std::string_view sql) {
  const char* field = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  std::string_view state = field ? field : "";
  std::string_view message = trim_newline(PQresultErrorMessage(r));
  // 08P01 (protocol violation, e.g. a wrong parameter count) leaves the connection usable.
  if (PQstatus(c.pg) == CONNECTION_BAD || (state.starts_with("08") && state != "08P01") ||
      state.starts_with("57P0")) {
    c.broken = true;
    logger()->warn("postgres connection lost ({}): {}; statement: {}", state, message, sql);
    return unavailable_error("database connection lost");
  }
  if (state == "23505" || state == "23P01") {  // unique_violation, exclusion_violation
    logger()->debug("postgres conflict: {}; statement: {}", message, sql);
    return conflict_error();
  }
  // insufficient resources, serialization failure, deadlock, lock or statement timeout:
  // retryable, so 503 rather than 500.
  if (state.starts_with("53") || state == "40001" || state == "40P01" || state == "55P03" || state == "57014") {
    logger()->warn("postgres busy ({}): {}; statement: {}", state, message, sql);
    return unavailable_error("database busy");
  }
  logger()->error("postgres error {}: {}; statement: {}", state, message, sql);
  return internal_error();
}

// A PQsend* call refused to start the command.
Error send_failed(Connection& c, std::string_view sql) {
  if (PQstatus(c.pg) == CONNECTION_BAD) return connection_lost(c, sql);
  c.broken = true;
  logger()->error("postgres: cannot send command: {}; statement: {}", trim_newline(PQerrorMessage(c.pg)), sql);
  return internal_error();
}

asio::awaitable<bool> wait_socket(Connection& c, WaitType w) {
  auto [ec] = co_await c.sock.async_wait(w, asio::as_tuple(asio::use_awaitable));
  co_return !ec;
}

// Pushes the command libpq buffered to the server.
asio::awaitable<Status> flush(Connection& c, std::string_view sql) {
  for (;;) {
    int r = PQflush(c.pg);
    if (r == 0) co_return Status{};
    if (r < 0) co_return connection_lost(c, sql);
    bool writable = co_await wait_socket(c, asio::posix::descriptor_base::wait_write);
    if (!writable) co_return connection_lost(c, sql);
    // The server may answer (an error) before taking all our input; keep reading what it sends.
    if (!PQconsumeInput(c.pg)) co_return connection_lost(c, sql);
  }
}

// Reads every result of the command in flight: the last one, or the first error.
asio::awaitable<Result<PgResult>> collect(Connection& c, std::string_view sql) {
  PgResult last;
  std::optional<Error> error;
  for (;;) {
    while (PQisBusy(c.pg)) {
      bool readable = co_await wait_socket(c, asio::posix::descriptor_base::wait_read);
      if (!readable) co_return connection_lost(c, sql);
      if (!PQconsumeInput(c.pg)) co_return connection_lost(c, sql);
    }
    PgResult r(PQgetResult(c.pg));
    if (!r) break;
    switch (PQresultStatus(r.get())) {
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
      case PGRES_EMPTY_QUERY:
        last = std::move(r);
        break;
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        c.broken = true;  // we cannot drive COPY; the connection is mid-protocol
        logger()->error("postgres: COPY is not supported through the store; statement: {}", sql);
        co_return internal_error();
      default:
        if (!error) error = result_error(c, r.get(), sql);
        break;
    }
  }
  if (PQstatus(c.pg) == CONNECTION_BAD) {
    if (error && c.broken) co_return std::move(*error);  // already reported as lost
    co_return connection_lost(c, sql);
  }
  if (error) co_return std::move(*error);
  if (!last) {
    logger()->error("postgres: no result; statement: {}", sql);
    co_return internal_error();
  }
  co_return std::move(last);
}

// The simple-query protocol: no parameters, several statements allowed.
asio::awaitable<Result<PgResult>> run_simple(Connection& c, const std::string& sql) {
  if (!PQsendQuery(c.pg, sql.c_str())) co_return send_failed(c, sql);
  if (auto s = co_await flush(c, sql); !s) co_return std::move(s).error();
  co_return co_await collect(c, sql);
}

struct EncodedParams {
  std::vector<std::string> text;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  std::vector<Oid> types;  // bytea for Bytes; 0 (let the server infer) for the rest
  std::string kinds;       // one letter per parameter: part of the prepared statement's key
};

std::string format_double(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return fmt::format("{}", d);  // shortest text that reads back to the same double
}

EncodedParams encode(const Params& params) {
  EncodedParams e;
  const std::size_t n = params.size();
  e.text.resize(n);
  e.values.resize(n, nullptr);
  e.lengths.resize(n, 0);
  e.formats.resize(n, 0);
  e.types.resize(n, 0);
  e.kinds.resize(n, 't');
  for (std::size_t i = 0; i < n; ++i) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) {
            e.kinds[i] = 'n';
          } else if constexpr (std::is_same_v<T, int64_t>) {
            e.text[i] = std::to_string(v);
          } else if constexpr (std::is_same_v<T, double>) {
            e.text[i] = format_double(v);
          } else if constexpr (std::is_same_v<T, bool>) {
            e.text[i] = v ? "true" : "false";
          } else if constexpr (std::is_same_v<T, std::string>) {
            e.text[i] = v;
          } else {
            static_assert(std::is_same_v<T, Bytes>);
            e.text[i] = v.data;
            e.formats[i] = 1;
            e.types[i] = kByteaOid;
            e.kinds[i] = 'b';
          }
        },
        params[i]);
  }
  // Pointers last: the strings no longer move.
  for (std::size_t i = 0; i < n; ++i) {
    if (e.kinds[i] == 'n') continue;
    e.values[i] = e.text[i].c_str();
    e.lengths[i] = static_cast<int>(e.text[i].size());
  }
  return e;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// bytea in text form: "\x0a0b" (hex, the default) or the old escape form ("a\\b\000").
std::string decode_bytea(std::string_view s) {
  std::string out;
  if (s.starts_with("\\x")) {
    out.reserve((s.size() - 2) / 2);
    for (std::size_t i = 2; i + 1 < s.size(); i += 2) {
      int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
      if (hi < 0 || lo < 0) break;
      out += static_cast<char>(hi * 16 + lo);
    }
    return out;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Rows::Cell read_cell(const PGresult* r, int row, int col, Oid type) {
  if (PQgetisnull(r, row, col)) return std::monostate{};
  const char* v = PQgetvalue(r, row, col);
  std::string_view s(v, static_cast<std::size_t>(PQgetlength(r, row, col)));
  switch (type) {
    case kBoolOid:
      return static_cast<int64_t>(s == "t");
    case kInt8Oid:
    case kInt4Oid:
    case kInt2Oid:
    case kOidOid: {
      int64_t n = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec == std::errc() && end == s.data() + s.size()) return n;
      return s;
    }
    case kFloat4Oid:
    case kFloat8Oid:
      return std::strtod(v, nullptr);  // also reads NaN, Infinity, -Infinity
    case kByteaOid:
      return decode_bytea(s);
    default:
      return s;  // a view into the result, which the Rows keeps
  }
}

// The result's rows; text cells stay in the result, which the Rows then owns.
Rows to_rows(PgResult result) {
  const PGresult* r = result.get();
  const int nfields = PQnfields(r), ntuples = PQntuples(r);
  std::vector<std::string> columns;
  std::vector<Oid> types;
  for (int c = 0; c < nfields; ++c) {
    columns.emplace_back(PQfname(r, c));
    types.push_back(PQftype(r, c));
  }
  std::vector<Rows::Cell> cells;
  cells.reserve(static_cast<std::size_t>(nfields) * static_cast<std::size_t>(ntuples));
  for (int row = 0; row < ntuples; ++row)
    for (int c = 0; c < nfields; ++c) cells.push_back(read_cell(r, row, c, types[static_cast<std::size_t>(c)]));
  // PQcmdTuples also counts the rows a SELECT returned; only changes count as affected.
  std::string_view status = PQcmdStatus(const_cast<PGresult*>(r));
  int64_t affected = 0;
  if (status.starts_with("INSERT") || status.starts_with("UPDATE") || status.starts_with("DELETE") ||
      status.starts_with("MERGE"))
    affected = std::atoll(PQcmdTuples(const_cast<PGresult*>(r)));
  std::shared_ptr<const void> owner(result.release(), [](const void* p) { PQclear(static_cast<PGresult*>(const_cast<void*>(p))); });
  return Rows(std::move(columns), std::move(cells), affected, std::move(owner));
}

// What a connection's prepared statements are cached by: the SQL and its parameters' kinds.
std::string statement_key(std::string_view sql, const EncodedParams& p) {
  std::string key(sql);
  key += '\0';
  key += p.kinds;
  return key;
}

std::string new_statement_name(Connection& c) { return "harmar_" + std::to_string(++c.statements); }

// Runs one statement with parameters, preparing it on this connection the first time.
asio::awaitable<Result<Rows>> run_query(Connection& c, std::string_view sql, const Params& params) {
  EncodedParams p = encode(params);
  const int n = static_cast<int>(params.size());
  std::string key = statement_key(sql, p);
  std::string name;
  if (auto* known = c.prepared.get(key)) {
    name = *known;
  } else {
    name = new_statement_name(c);
    std::string text(sql);
    if (!PQsendPrepare(c.pg, name.c_str(), text.c_str(), n, n ? p.types.data() : nullptr)) co_return send_failed(c, sql);
    if (auto s = co_await flush(c, sql); !s) co_return std::move(s).error();
    if (auto prepared = co_await collect(c, sql); !prepared) co_return std::move(prepared).error();
    if (auto evicted = c.prepared.put(key, name)) {
      auto r = co_await run_simple(c, "DEALLOCATE " + evicted->second);
      if (!r && c.broken) co_return std::move(r).error();
    }
  }
  if (!PQsendQueryPrepared(c.pg, name.c_str(), n, n ? p.values.data() : nullptr, n ? p.lengths.data() : nullptr,
                           n ? p.formats.data() : nullptr, 0))
    co_return send_failed(c, sql);
  if (auto s = co_await flush(c, sql); !s) co_return std::move(s).error();
  auto res = co_await collect(c, sql);
  if (!res) co_return std::move(res).error();
  co_return to_rows(std::move(*res));
}

// A read waiting for a pipeline: shared by its caller, who stops waiting for a connection
// after busy_timeout_ms, and the coroutine that runs it. Touched only on its pool's event loop.
struct PendingRead {
  PendingRead(std::string_view sql, Params params, const asio::any_io_executor& ex)
      : sql(sql), params(std::move(params)), wake(ex) {}
  void finish(Result<Rows> r) {
    result = std::move(r);
    wake.cancel();
  }

  // The caller's text: it waits until the read is finished or withdrawn, so the view stays valid.
  std::string_view sql;
  Params params;
  bool started = false;                // taken into a pipeline: the caller waits for its end
  std::optional<Result<Rows>> result;  // set once
  asio::steady_timer wake;             // cancelled by finish()
};
using ReadPtr = std::shared_ptr<PendingRead>;

// The next result of the pipeline in flight, reading from the socket as needed; nullptr
// between two commands' results. A failed socket marks the connection broken (then nullptr).
asio::awaitable<PgResult> next_result(Connection& c) {
  while (PQisBusy(c.pg)) {
    bool readable = co_await wait_socket(c, asio::posix::descriptor_base::wait_read);
    if (!readable || !PQconsumeInput(c.pg)) {
      c.broken = true;
      co_return nullptr;
    }
  }
  co_return PgResult(PQgetResult(c.pg));
}

// Sends `reads` in one pipeline on `c` and finishes each, except those the server skipped after
// another failed: they are returned, to run again. The connection is out of pipeline mode after
// (or broken).
asio::awaitable<std::vector<ReadPtr>> run_pipeline(Connection& c, std::vector<ReadPtr> reads) {
  std::vector<ReadPtr> skipped;
  // What went into the pipeline, in order; each command's results end with a nullptr.
  struct Command {
    enum Kind { Prepare, Deallocate, Execute } kind;
    std::size_t read = 0;  // index into reads
    std::string key;       // Prepare: the cache key, dropped again if the prepare fails
  };
  std::vector<Command> commands;
  std::vector<std::optional<Error>> prepare_errors(reads.size());
  auto fail_all = [&](const Error& e) {
    for (auto& r : reads)
      if (!r->result) r->finish(e);
  };
  if (!PQenterPipelineMode(c.pg)) {
    fail_all(send_failed(c, reads.front()->sql));
    co_return skipped;
  }
  for (std::size_t i = 0; i < reads.size(); ++i) {
    const PendingRead& r = *reads[i];
    EncodedParams p = encode(r.params);
    const int n = static_cast<int>(r.params.size());
    std::string key = statement_key(r.sql, p);
    std::string name;
    if (auto* known = c.prepared.get(key)) {
      name = *known;
    } else {
      name = new_statement_name(c);
      std::string text(r.sql);  // libpq wants it terminated
      if (!PQsendPrepare(c.pg, name.c_str(), text.c_str(), n, n ? p.types.data() : nullptr)) {
        fail_all(send_failed(c, r.sql));
        co_return skipped;
      }
      commands.push_back({Command::Prepare, i, key});
      if (auto evicted = c.prepared.put(key, name)) {
        std::string sql = "DEALLOCATE " + evicted->second;
        if (!PQsendQueryParams(c.pg, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)) {
          fail_all(send_failed(c, sql));
          co_return skipped;
        }
        commands.push_back({Command::Deallocate, i, {}});
      }
    }
    if (!PQsendQueryPrepared(c.pg, name.c_str(), n, n ? p.values.data() : nullptr, n ? p.lengths.data() : nullptr,
                             n ? p.formats.data() : nullptr, 0)) {
      fail_all(send_failed(c, r.sql));
      co_return skipped;
    }
    commands.push_back({Command::Execute, i, {}});
  }
  if (!PQpipelineSync(c.pg)) {
    fail_all(send_failed(c, reads.front()->sql));
    co_return skipped;
  }
  if (auto s = co_await flush(c, reads.front()->sql); !s) {
    fail_all(s.error());
    co_return skipped;
  }
  auto lost = [&]() -> Error { return connection_lost(c, reads.front()->sql); };
  for (const Command& cmd : commands) {
    PendingRead& r = *reads[cmd.read];
    PgResult last;
    std::optional<Error> error;
    bool aborted = false;
    while (PgResult res = co_await next_result(c)) {
      switch (PQresultStatus(res.get())) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY: last = std::move(res); break;
        case PGRES_PIPELINE_ABORTED: aborted = true; break;
        default:
          if (!error) error = result_error(c, res.get(), r.sql);
      }
    }
    if (c.broken || PQstatus(c.pg) == CONNECTION_BAD) {
      fail_all(error && c.broken ? *error : lost());
      co_return std::vector<ReadPtr>{};
    }
    switch (cmd.kind) {
      case Command::Prepare:
        if (error || aborted || !last) {
          c.prepared.take(cmd.key);  // never prepared on the server
          if (error) prepare_errors[cmd.read] = std::move(error);
        }
        break;
      case Command::Deallocate:
        if (error) logger()->warn("postgres: could not drop a prepared statement ({})", error->code);
        break;
      case Command::Execute:
        if (prepare_errors[cmd.read]) {
          r.finish(std::move(*prepare_errors[cmd.read]));
        } else if (error) {
          r.finish(std::move(*error));
        } else if (aborted) {
          skipped.push_back(reads[cmd.read]);
        } else if (last) {
          r.finish(to_rows(std::move(last)));
        } else {
          logger()->error("postgres: no result in a pipeline; statement: {}", r.sql);
          r.finish(internal_error());
        }
        break;
    }
  }
  PgResult sync = co_await next_result(c);
  if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC || !PQexitPipelineMode(c.pg)) {
    if (!c.broken) logger()->error("postgres: pipeline out of step: {}", trim_newline(PQerrorMessage(c.pg)));
    c.broken = true;  // the protocol state is unknown: never reuse it
    fail_all(unavailable_error("database connection lost"));  // the skipped ones too
    co_return std::vector<ReadPtr>{};
  }
  co_return skipped;
}

enum class WaitOutcome { Ready, TimedOut, Failed };

// Waits for `fd` (not owned) to be ready, or for the deadline.
asio::awaitable<WaitOutcome> wait_fd(const asio::any_io_executor& ex, int fd, WaitType w,
                                     std::chrono::steady_clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  asio::posix::stream_descriptor sd(ex);
  boost::system::error_code ec;
  sd.assign(fd, ec);
  if (ec) co_return WaitOutcome::Failed;
  struct Release {
    asio::posix::stream_descriptor& sd;
    ~Release() { sd.release(); }
  } release{sd};
  asio::steady_timer timer(ex, deadline);
  auto r = co_await (sd.async_wait(w, asio::as_tuple(asio::use_awaitable)) ||
                     timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (r.index() == 1) co_return WaitOutcome::TimedOut;
  co_return std::get<0>(std::get<0>(r)) ? WaitOutcome::Failed : WaitOutcome::Ready;
}

// Connects without blocking (PQconnectStartParams / PQconnectPoll), within busy_timeout_ms.
asio::awaitable<Result<std::unique_ptr<Connection>>> connect(const Config& cfg, asio::any_io_executor ex) {
  const char* keys[] = {"dbname", "fallback_application_name", "client_encoding", nullptr};
  const char* values[] = {cfg.url.c_str(), "harmar", "UTF8", nullptr};
  PGconn* pg = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  if (!pg) {
    logger()->error("postgres: out of memory connecting to {}", cfg.described);
    co_return internal_error();
  }
  auto conn = std::make_unique<Connection>(pg, ex);
  auto fail = [&](std::string_view why) -> Error {
    logger()->warn("postgres: cannot connect to {}: {}", cfg.described, why);
    return unavailable_error();
  };
  if (PQstatus(pg) == CONNECTION_BAD) co_return fail(trim_newline(PQerrorMessage(pg)));
  PQsetNoticeProcessor(pg, on_notice, nullptr);
  auto deadline = std::chrono::steady_clock::now() + std::max(cfg.busy_timeout(), std::chrono::milliseconds(1000));
  // PQconnectPoll's contract: behave as if it last said WRITING; the socket may change between calls.
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) co_return fail(trim_newline(PQerrorMessage(pg)));
    auto w = st == PGRES_POLLING_READING ? asio::posix::descriptor_base::wait_read
                                         : asio::posix::descriptor_base::wait_write;
    WaitOutcome ready = co_await wait_fd(ex, PQsocket(pg), w, deadline);
    switch (ready) {
      case WaitOutcome::Ready:
        break;
      case WaitOutcome::TimedOut:
        co_return fail("timed out");
      case WaitOutcome::Failed:
        co_return fail("socket error");
    }
    st = PQconnectPoll(pg);
  }
  if (PQsetnonblocking(pg, 1) != 0) co_return fail(trim_newline(PQerrorMessage(pg)));
  boost::system::error_code ec;
  conn->sock.assign(PQsocket(pg), ec);
  if (ec) co_return fail(ec.message());
  co_return std::move(conn);
}

// An idle connection whose server went away (pg_terminate_backend, restart) has an error
// message and EOF waiting on its socket: read them now instead of failing the next query.
bool still_usable(Connection& c) {
  if (c.broken || PQstatus(c.pg) != CONNECTION_OK) return false;
  for (int i = 0; i < 4; ++i) {
    pollfd p{PQsocket(c.pg), POLLIN, 0};
    int ready = ::poll(&p, 1, 0);
    if (ready == 0) return true;
    if (ready < 0) return false;
    if (!PQconsumeInput(c.pg) || PQstatus(c.pg) != CONNECTION_OK) return false;
  }
  return true;
}

class Pool;

// One pooled connection and the pool permit that goes with it; both go back on destruction.
class Lease {
 public:
  Lease() = default;
  Lease(std::shared_ptr<Pool> pool, std::unique_ptr<Connection> conn) : pool_(std::move(pool)), conn_(std::move(conn)) {}
  Lease(Lease&& o) noexcept = default;
  Lease& operator=(Lease&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::move(o.pool_);
      conn_ = std::move(o.conn_);
    }
    return *this;
  }
  ~Lease() { reset(); }
  void reset();
  explicit operator bool() const { return pool_ != nullptr; }
  Connection& conn() const { return *conn_; }
  Pool& pool() const { return *pool_; }

 private:
  std::shared_ptr<Pool> pool_;
  std::unique_ptr<Connection> conn_;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(std::shared_ptr<const Config> cfg, asio::any_io_executor ex)
      : cfg_(std::move(cfg)), ex_(std::move(ex)), permits_(static_cast<std::size_t>(cfg_->opts.pool_per_worker)) {}

  const asio::any_io_executor& executor() const { return ex_; }

  asio::awaitable<Result<Lease>> acquire() {
    bool acquired = co_await permits_.acquire(cfg_->busy_timeout());
    if (!acquired) {
      logger()->warn("postgres: no free connection in {} ms ({} per worker)", cfg_->opts.busy_timeout_ms,
                     cfg_->opts.pool_per_worker);
      co_return unavailable_error("database busy");
    }
    SemaphorePermit permit(permits_);
    while (auto c = take_idle()) {
      if (still_usable(*c)) {
        permit.disown();  // the Lease gives it back
        co_return Lease(shared_from_this(), std::move(c));
      }
      logger()->info("postgres: dropped a pooled connection that the server closed");
    }
    if (is_closed()) co_return unavailable_error("database closed");
    auto conn = co_await connect(*cfg_, ex_);
    if (!conn) co_return std::move(conn).error();
    permit.disown();
    co_return Lease(shared_from_this(), std::move(*conn));
  }

  // Takes back a leased connection (keeping it only if it is clean) and its permit.
  void give_back(std::unique_ptr<Connection> c) {
    bool reusable = c && !c->broken && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    if (reusable) {
      std::lock_guard lock(mu_);
      if (!closed_) idle_.push_back(std::move(c));
    }
    c.reset();  // closes it when not kept
    permits_.release();
  }

  // Queues a read for the pool's pipelines, starting another coroutine to drain the queue while
  // fewer than the pool's size are. Call on the pool's event loop.
  void enqueue_read(ReadPtr r) {
    reads_.push_back(std::move(r));
    if (readers_ >= cfg_->opts.pool_per_worker) return;
    ++readers_;
    asio::co_spawn(ex_, drain_reads(shared_from_this()), asio::detached);
  }

  // A read whose caller stopped waiting before it went into a pipeline; false once it has.
  bool withdraw_read(const ReadPtr& r) {
    if (r->started) return false;
    std::erase(reads_, r);
    return true;
  }

  // The io_context is going away (or the Database is): close idle connections, drop waiters.
  void close() {
    std::vector<std::unique_ptr<Connection>> idle;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      idle.swap(idle_);
    }
    idle.clear();
    permits_.abandon_waiters();
  }

 private:
  // Leases a connection and sends the queued reads through it, a pipeline at a time, until the
  // queue is empty; lets the connection go between pipelines when someone else waits for one.
  static asio::awaitable<void> drain_reads(std::shared_ptr<Pool> self) {
    struct Done {
      Pool& pool;
      ~Done() { --pool.readers_; }
    } done{*self};
    while (!self->reads_.empty()) {
      auto lease = co_await self->acquire();
      if (!lease) {
        // The error is the oldest waiting read's: each read gets at most one such failure, as
        // if it had asked for the connection itself.
        if (self->reads_.empty()) co_return;
        ReadPtr first = std::move(self->reads_.front());
        self->reads_.pop_front();
        first->started = true;
        first->finish(std::move(lease).error());
        continue;
      }
      Connection& c = lease->conn();
      while (!self->reads_.empty() && !c.broken) {
        std::vector<ReadPtr> batch;
        while (!self->reads_.empty() && batch.size() < kMaxPipeline) {
          batch.push_back(std::move(self->reads_.front()));
          self->reads_.pop_front();
          batch.back()->started = true;
        }
        auto again = co_await run_pipeline(c, std::move(batch));
        for (auto it = again.rbegin(); it != again.rend(); ++it) {
          (*it)->started = false;
          self->reads_.push_front(std::move(*it));
        }
        if (self->permits_.waiting() > 0) break;  // a transaction or query waits for a connection
      }
    }
  }

  std::unique_ptr<Connection> take_idle() {
    std::lock_guard lock(mu_);
    if (idle_.empty()) return nullptr;
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  bool is_closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

  std::shared_ptr<const Config> cfg_;
  asio::any_io_executor ex_;
  AsyncSemaphore permits_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
  bool closed_ = false;
  // Reads waiting for a pipeline, and the coroutines draining them; on the pool's event loop
  // only (each io_context is run by one thread).
  std::deque<ReadPtr> reads_;
  int readers_ = 0;
};

void Lease::reset() {
  if (!pool_) return;
  auto pool = std::move(pool_);
  pool->give_back(std::move(conn_));
}

// The pools of one io_context, one per Database; shut down with the io_context.
class PoolService : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit PoolService(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}

  // nullptr once the io_context is shutting down.
  std::shared_ptr<Pool> pool(const std::shared_ptr<const Config>& cfg, const asio::any_io_executor& ex,
                             bool& created) {
    std::lock_guard lock(mu_);
    if (shut_down_) return nullptr;
    auto& p = pools_[cfg->id];
    if (!p) {
      p = std::make_shared<Pool>(cfg, ex);
      created = true;
    }
    return p;
  }

 private:
  void shutdown() override {
    std::unordered_map<uint64_t, std::shared_ptr<Pool>> pools;
    {
      std::lock_guard lock(mu_);
      shut_down_ = true;
      pools.swap(pools_);
    }
    for (auto& [id, p] : pools) p->close();
  }

  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Pool>> pools_;
  bool shut_down_ = false;
};

class PgTransaction final : public Transaction {
 public:
  explicit PgTransaction(Lease lease) : lease_(std::move(lease)) {}

  ~PgTransaction() override {
    if (!lease_) return;
    // Dropped while open: roll back on the pool's own event loop; the connection (and its
    // permit) returns only after that, or is discarded if the rollback fails.
    auto ex = lease_.pool().executor();
    asio::co_spawn(
        ex,
        [lease = std::move(lease_)]() mutable -> asio::awaitable<void> {
          auto& c = lease.conn();
          auto state = PQtransactionStatus(c.pg);
          if (!c.broken && (state == PQTRANS_INTRANS || state == PQTRANS_INERROR)) {
            if (auto r = co_await run_simple(c, "ROLLBACK"); !r) c.broken = true;
          }
        },
        asio::detached);
  }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (!lease_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto r = co_await run_query(lease_.conn(), sql, params);
    if (!r) failed_ = true;
    co_return r;
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    if (!lease_) co_return finished_transaction_error();
    if (failed_) co_return aborted_transaction_error();
    auto r = co_await run_simple(lease_.conn(), std::string(sql));
    if (!r) {
      failed_ = true;
      co_return std::move(r).error();
    }
    co_return Status{};
  }

  asio::awaitable<Status> commit() override {
    if (!lease_) co_return finished_transaction_error();
    Lease lease = std::move(lease_);
    if (failed_) {
      if (!lease.conn().broken) (void)co_await run_simple(lease.conn(), "ROLLBACK");
      co_return aborted_transaction_error();
    }
    auto r = co_await run_simple(lease.conn(), "COMMIT");
    if (!r) co_return std::move(r).error();
    // COMMIT of a transaction the server already aborted answers "ROLLBACK", not an error.
    if (std::string_view(PQcmdStatus(r->get())) != "COMMIT") {
      logger()->error("postgres: COMMIT rolled back the transaction ({})", PQcmdStatus(r->get()));
      co_return aborted_transaction_error();
    }
    co_return Status{};
  }

  asio::awaitable<Status> rollback() override {
    if (!lease_) co_return finished_transaction_error();
    Lease lease = std::move(lease_);
    auto r = co_await run_simple(lease.conn(), "ROLLBACK");
    if (!r) co_return std::move(r).error();
    co_return Status{};
  }

 private:
  Lease lease_;  // empty once committed or rolled back
  bool failed_ = false;
};

class PgDatabase final : public Database {
 public:
  explicit PgDatabase(std::shared_ptr<const Config> cfg) : cfg_(std::move(cfg)) {}

  ~PgDatabase() override {
    listen_thread_.reset();  // stops and joins the listening thread
    std::lock_guard lock(pools_mu_);
    for (auto& weak : pools_)
      if (auto p = weak.lock()) p->close();
  }

  Backend backend() const override { return Backend::Postgres; }
  std::string describe() const override { return cfg_->described; }

  asio::awaitable<Result<Rows>> query(std::string_view sql, Params params) override {
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto lease = co_await lease_connection();
    if (!lease) co_return std::move(lease).error();
    co_return co_await run_query(lease->conn(), sql, params);
  }

  asio::awaitable<Result<Rows>> read(std::string_view sql, Params params) override {
    if (auto s = check_params(params); !s) co_return std::move(s).error();
    auto pool = co_await this_pool();
    if (!pool) co_return std::move(pool).error();
    auto ex = co_await asio::this_coro::executor;
    auto r = std::make_shared<PendingRead>(sql, std::move(params), ex);
    (*pool)->enqueue_read(r);
    // Bounded like any wait for a connection; once in a pipeline, it waits for the server.
    r->wake.expires_after(cfg_->busy_timeout());
    for (;;) {
      co_await r->wake.async_wait(asio::as_tuple(asio::use_awaitable));
      if (r->result) co_return std::move(*r->result);
      if ((*pool)->withdraw_read(r)) {
        logger()->warn("postgres: no free connection in {} ms ({} per worker)", cfg_->opts.busy_timeout_ms,
                       cfg_->opts.pool_per_worker);
        co_return unavailable_error("database busy");
      }
      r->wake.expires_at(asio::steady_timer::time_point::max());
    }
  }

  asio::awaitable<Status> exec_script(std::string_view sql) override {
    auto lease = co_await lease_connection();
    if (!lease) co_return std::move(lease).error();
    auto r = co_await run_simple(lease->conn(), std::string(sql));
    if (!r) co_return std::move(r).error();
    co_return Status{};
  }

  asio::awaitable<Result<std::unique_ptr<Transaction>>> begin() override {
    auto lease = co_await lease_connection();
    if (!lease) co_return std::move(lease).error();
    auto r = co_await run_simple(lease->conn(), "BEGIN");
    if (!r) co_return std::move(r).error();
    co_return std::unique_ptr<Transaction>(new PgTransaction(std::move(*lease)));
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
    e->on_gap = std::move(on_gap);
    PgListenThread* thread = nullptr;
    {
      std::lock_guard lock(listen_mu_);
      if (!listen_thread_) listen_thread_ = std::make_unique<PgListenThread>(cfg_->url, cfg_->described, listeners_);
      thread = listen_thread_.get();
    }
    listeners_->add(e);
    thread->sync();
    // The thread lives as long as this Database; a listener outliving it is a caller's bug
    // (the same rule as for any query), so the raw pointer is fine.
    return std::make_unique<RegistryListener>(listeners_, std::move(e), cfg_->busy_timeout(),
                                              [thread] { thread->sync(); });
  }

  asio::awaitable<Status> notify(std::string channel, std::string payload) override {
    if (auto s = check_notify(channel, payload); !s) co_return s;
    auto rows = co_await query("SELECT pg_notify($1, $2)", {std::move(channel), std::move(payload)});
    if (!rows) co_return std::move(rows).error();
    co_return Status{};
  }

 private:
  // The pool of the calling coroutine's io_context.
  asio::awaitable<Result<std::shared_ptr<Pool>>> this_pool() {
    auto ex = co_await asio::this_coro::executor;
    auto& ctx = asio::query(ex, asio::execution::context);
    bool created = false;
    auto pool = asio::use_service<PoolService>(ctx).pool(cfg_, ex, created);
    if (!pool) co_return unavailable_error("shutting down");
    if (created) {
      std::lock_guard lock(pools_mu_);
      std::erase_if(pools_, [](const std::weak_ptr<Pool>& w) { return w.expired(); });
      pools_.push_back(pool);
    }
    co_return pool;
  }

  // A connection from the pool of the calling coroutine's io_context.
  asio::awaitable<Result<Lease>> lease_connection() {
    auto pool = co_await this_pool();
    if (!pool) co_return std::move(pool).error();
    co_return co_await (*pool)->acquire();
  }

  std::shared_ptr<const Config> cfg_;
  std::shared_ptr<ListenRegistry> listeners_ = std::make_shared<ListenRegistry>();
  std::mutex listen_mu_;
  std::unique_ptr<PgListenThread> listen_thread_;  // started by the first listen()
  std::mutex pools_mu_;
  std::vector<std::weak_ptr<Pool>> pools_;  // to close them when this Database goes
};

}  // namespace

Result<std::unique_ptr<Database>> open_postgres(const std::string& url, const Database::Options& opts) {
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &err);
  if (!parsed) {
    std::string why = err ? std::string(trim_newline(err)) : "out of memory";
    PQfreemem(err);
    return Error::bad_request("invalid_database_url", "invalid PostgreSQL URL " + redact_url(url) + ": " + why);
  }
  PQconninfoFree(parsed);
  auto cfg = std::make_shared<Config>();
  cfg->id = next_database_id.fetch_add(1);
  cfg->url = url;
  cfg->described = redact_url(url);
  cfg->opts = opts;
  return std::unique_ptr<Database>(new PgDatabase(std::move(cfg)));
}

}  // namespace harmar::store::detail
