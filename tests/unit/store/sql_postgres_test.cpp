// What only the PostgreSQL backend promises: per-event-loop pools, prepared statements, broken
// connections turning into 503 and recovering, native cells from text results.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "sql_test_support.hpp"

namespace harmar::store::sqltest {
namespace {

// Terminates server backends from a separate, plain libpq connection (not the code under test)
// and waits until they are gone.
void terminate_backends(const std::vector<int64_t>& pids) {
  PGconn* admin = PQconnectdb(harmar::testing::pg_url().c_str());
  ASSERT_EQ(PQstatus(admin), CONNECTION_OK) << PQerrorMessage(admin);
  for (int64_t pid : pids) {
    std::string sql = "SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)";
    PGresult* r = PQexec(admin, sql.c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQerrorMessage(admin);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) { EXPECT_STREQ(PQgetvalue(r, 0, 0), "t") << "pid " << pid; }
    PQclear(r);
  }
  PQfinish(admin);
}

asio::awaitable<int64_t> backend_pid(Querier& q) {
  auto rows = co_await q.query("SELECT pg_backend_pid()", {});
  co_return rows.ok() ? rows->front().integer(0) : -1;
}

TEST(SqlPostgres, a_connection_broken_inside_a_transaction_is_503_and_the_next_call_reconnects) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());
    int64_t pid = co_await backend_pid(*tx);
    if (pid <= 0) {
      ADD_FAILURE() << "no backend pid";
      co_return;
    }
    terminate_backends({pid});
    auto lost = co_await tx->query("SELECT 1", {});
    EXPECT_FALSE(lost.ok());
    if (!lost.ok()) {
      EXPECT_EQ(lost.error().status, 503);
      EXPECT_EQ(lost.error().code, "unavailable");
    }
    EXPECT_FALSE((co_await tx->commit()).ok());
    tx.reset();
    int64_t fresh = co_await backend_pid(*db);
    EXPECT_GT(fresh, 0) << "the next call reconnects";
    EXPECT_NE(fresh, pid);
  }());
}

TEST(SqlPostgres, pooled_connections_the_server_closed_are_replaced) {
  constexpr int kPool = 3;
  Database::Options opts;
  opts.pool_per_worker = kPool;
  auto db = open_or_fail(fresh_url(Backend::Postgres), opts);
  run([&]() -> asio::awaitable<void> {
    // Fill the pool: three transactions at once hold three connections.
    std::vector<std::unique_ptr<Transaction>> txs;
    std::vector<int64_t> pids;
    for (int i = 0; i < kPool; ++i) {
      SQL_CO_ASSIGN_OK(tx, co_await db->begin());
      pids.push_back(co_await backend_pid(*tx));
      txs.push_back(std::move(tx));
    }
    for (auto& tx : txs) SQL_CO_ASSERT_OK(co_await tx->commit());
    EXPECT_EQ(std::set<int64_t>(pids.begin(), pids.end()).size(), std::size_t{kPool});
    terminate_backends(pids);
    // Every pooled connection is dead now. Calls fail with 503 at worst, and one succeeds
    // before the pool is used up (normally the first: idle connections are checked first).
    int failures = 0;
    int64_t pid = -1;
    for (int attempt = 0; attempt <= kPool && pid < 0; ++attempt) {
      auto rows = co_await db->query("SELECT pg_backend_pid()", {});
      if (rows) {
        pid = rows->front().integer(0);
      } else {
        ++failures;
        EXPECT_EQ(rows.error().code, "unavailable");
      }
    }
    EXPECT_GT(pid, 0);
    EXPECT_EQ(std::count(pids.begin(), pids.end(), pid), 0) << "a dead connection was reused";
    EXPECT_LE(failures, 1) << "dead idle connections should be noticed before use";
  }());
}

TEST(SqlPostgres, unreachable_server_is_503) {
  Database::Options opts;
  opts.busy_timeout_ms = 2000;
  auto db = open_or_fail("postgres://harmar@127.0.0.1:1/nothing", opts);  // nothing listens on port 1
  run([&]() -> asio::awaitable<void> {
    auto s = co_await db->ping();
    EXPECT_FALSE(s.ok());
    if (!s.ok()) {
      EXPECT_EQ(s.error().status, 503);
      EXPECT_EQ(s.error().code, "unavailable");
    }
  }());
}

TEST(SqlPostgres, each_statement_is_prepared_once_per_connection) {
  Database::Options opts;
  opts.pool_per_worker = 1;
  auto db = open_or_fail(fresh_url(Backend::Postgres), opts);
  const std::string sql = "SELECT $1::bigint * 2 AS doubled";
  run([&]() -> asio::awaitable<void> {
    for (int64_t i = 0; i < 5; ++i) {
      SQL_CO_ASSIGN_OK(rows, co_await db->query(sql, {i}));
      EXPECT_EQ(rows.front().integer(0), 2 * i);
    }
    SQL_CO_ASSIGN_OK(prepared, co_await db->query("SELECT COUNT(*) FROM pg_prepared_statements WHERE statement = $1", {sql}));
    EXPECT_EQ(prepared.front().integer(0), 1);
  }());
}

TEST(SqlPostgres, each_event_loop_has_its_own_pool) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  auto pid_on = [&](asio::io_context& ctx) {
    auto fut = asio::co_spawn(ctx, backend_pid(*db), asio::use_future);
    ctx.restart();
    ctx.run();
    return fut.get();
  };
  asio::io_context first, second;
  int64_t a = pid_on(first);
  int64_t b = pid_on(second);
  int64_t a_again = pid_on(first);
  EXPECT_GT(a, 0);
  EXPECT_GT(b, 0);
  EXPECT_NE(a, b) << "two event loops shared a connection";
  EXPECT_EQ(a, a_again) << "an event loop's idle connection is reused";
}

TEST(SqlPostgres, a_dropped_transaction_is_rolled_back_and_its_connection_reused) {
  Database::Options opts;
  opts.pool_per_worker = 1;
  auto db = open_or_fail(fresh_url(Backend::Postgres), opts);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await db->exec_script("CREATE TABLE t (x INTEGER)"));
    int64_t first = -1;
    {
      SQL_CO_ASSIGN_OK(tx, co_await db->begin());
      first = co_await backend_pid(*tx);
      SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO t (x) VALUES (1)", {}));
    }
    SQL_CO_ASSIGN_OK(rows, co_await db->query("SELECT pg_backend_pid(), (SELECT COUNT(*) FROM t)", {}));
    EXPECT_EQ(rows.front().integer(0), first) << "the connection came back to the pool";
    EXPECT_EQ(rows.front().integer(1), 0) << "after its transaction was rolled back";
  }());
}

TEST(SqlPostgres, text_results_become_native_cells) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(rows, co_await db->query(
                               "SELECT true, false, '\\x00ff'::bytea, 1.5::float8, 42::int4, 7::numeric, "
                               "'t'::text, NULL::int, 'Infinity'::float8, 32767::int2",
                               {}));
    Row r = rows.front();
    EXPECT_TRUE(r.boolean(0));
    EXPECT_FALSE(r.boolean(1));
    EXPECT_EQ(r.integer(0), 1);
    EXPECT_EQ(r.bytes(2), std::string("\0\xff", 2));
    EXPECT_EQ(r.real(3), 1.5);
    EXPECT_EQ(r.integer(4), 42);
    EXPECT_EQ(r.integer(5), 7) << "numeric arrives as text and still reads as a number";
    EXPECT_TRUE(r.boolean(6));
    EXPECT_TRUE(r.is_null(7));
    EXPECT_EQ(r.real(8), std::numeric_limits<double>::infinity());
    EXPECT_EQ(r.integer(9), 32767);
    EXPECT_TRUE(std::holds_alternative<int64_t>(rows.cell(0, 0)));
    EXPECT_TRUE(std::holds_alternative<std::string_view>(rows.cell(0, 5))) << "other types stay text, read in place";
  }());
}

TEST(SqlPostgres, text_read_in_place_lives_as_long_as_any_copy_of_its_rows) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    Rows kept;
    {
      SQL_CO_ASSIGN_OK(rows, co_await db->read("SELECT repeat('x', 100) || $1, 'short'", {std::string("end")}));
      kept = rows;  // the original goes away with this scope
    }
    // A result of the same shape and sizes: it would take the memory of a result freed too early.
    (void)co_await db->read("SELECT repeat('y', 100) || $1, 'SHORT'", {std::string("END")});
    EXPECT_EQ(kept[0].text(0), std::string(100, 'x') + "end");
    std::string scratch;
    EXPECT_EQ(kept[0].text_view(1, scratch), "short");
    Rows moved = std::move(kept);
    EXPECT_EQ(moved[0].text(1), "short");
  }());
}

TEST(SqlPostgres, special_doubles_round_trip_as_parameters) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(rows, co_await db->query("SELECT $1::float8, $2::float8, $3::float8, $4::float8",
                                              {std::numeric_limits<double>::infinity(),
                                               -std::numeric_limits<double>::infinity(), 5e-324, -0.0}));
    Row r = rows.front();
    EXPECT_EQ(r.real(0), std::numeric_limits<double>::infinity());
    EXPECT_EQ(r.real(1), -std::numeric_limits<double>::infinity());
    EXPECT_EQ(r.real(2), 5e-324);
    EXPECT_TRUE(std::signbit(r.real(3)));
  }());
}

// A database with one pooled connection per event loop.
std::unique_ptr<Database> one_connection(int busy_timeout_ms = 5000) {
  Database::Options opts;
  opts.pool_per_worker = 1;
  opts.busy_timeout_ms = busy_timeout_ms;
  return open_or_fail(fresh_url(Backend::Postgres), opts);
}

// Starts `n` reads at once on this event loop (they queue behind each other and go out in
// pipelines) and returns their results in order once all are back.
asio::awaitable<std::vector<Result<Rows>>> reads_at_once(Database& db, int n,
                                                         const std::function<std::pair<std::string, Params>(int)>& make) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::optional<Result<Rows>>> got(static_cast<std::size_t>(n));
  int left = n;
  asio::steady_timer all_back(ex, asio::steady_timer::time_point::max());
  for (int i = 0; i < n; ++i) {
    auto [sql, params] = make(i);
    asio::co_spawn(
        ex,
        [&, i, sql = std::move(sql), params = std::move(params)]() mutable -> asio::awaitable<void> {
          got[static_cast<std::size_t>(i)] = co_await db.read(sql, std::move(params));
          if (--left == 0) all_back.cancel();
        },
        fail_on_exception("read"));
  }
  if (left > 0) co_await all_back.async_wait(asio::as_tuple(asio::use_awaitable));
  std::vector<Result<Rows>> out;
  for (auto& g : got) out.push_back(g ? std::move(*g) : Result<Rows>(Error{}));
  co_return out;
}

// Fails the test for each result that is an error; hands the others to `check` with their index.
void expect_all_ok(const std::vector<Result<Rows>>& results, const std::function<void(int, const Rows&)>& check) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok())
      check(static_cast<int>(i), *results[i]);
    else
      ADD_FAILURE() << "read " << i << ": " << results[i].error().code;
  }
}

TEST(SqlPostgres, reads_sent_together_each_get_their_own_result) {
  auto db = one_connection();  // the reads queue and share pipelines
  run([&]() -> asio::awaitable<void> {
    auto results = co_await reads_at_once(*db, 200, [](int i) {
      return std::pair<std::string, Params>{"SELECT $1::bigint * 3, pg_backend_pid()", {int64_t{i}}};
    });
    std::set<int64_t> pids;
    expect_all_ok(results, [&](int i, const Rows& rows) {
      EXPECT_EQ(rows.front().integer(0), 3 * i);
      pids.insert(rows.front().integer(1));
    });
    EXPECT_EQ(pids.size(), 1u) << "one connection served them all";
  }());
}

TEST(SqlPostgres, a_read_that_fails_in_a_pipeline_fails_alone) {
  auto db = one_connection();
  run([&]() -> asio::awaitable<void> {
    // Every 7th divides by zero (fails while executing), every 11th is not SQL (fails to
    // prepare); the server skips what follows each failure up to the Sync, and those run again.
    auto make = [](int i) -> std::pair<std::string, Params> {
      if (i % 11 == 5) return {"SELEC $1::int", {int64_t{i}}};
      return {"SELECT 1000 / $1::int", {int64_t{i % 7 == 3 ? 0 : i + 1}}};
    };
    auto results = co_await reads_at_once(*db, 120, make);
    for (int i = 0; i < 120; ++i) {
      auto& r = results[static_cast<std::size_t>(i)];
      if (i % 11 == 5 || i % 7 == 3) {
        EXPECT_FALSE(r.ok()) << "read " << i;
        if (!r.ok()) { EXPECT_EQ(r.error().status, 500) << "read " << i; }
      } else if (!r.ok()) {
        ADD_FAILURE() << "read " << i << " failed: " << r.error().code;
      } else {
        EXPECT_EQ(r->front().integer(0), 1000 / (i + 1)) << "read " << i;
      }
    }
    // The failed prepare left nothing behind: the same connection reads on.
    SQL_CO_ASSIGN_OK(after, co_await db->read("SELECT 1000 / $1::int", {int64_t{8}}));
    EXPECT_EQ(after.front().integer(0), 125);
    SQL_CO_ASSIGN_OK(prepared, co_await db->read("SELECT COUNT(*) FROM pg_prepared_statements WHERE statement LIKE 'SELEC %'", {}));
    EXPECT_EQ(prepared.front().integer(0), 0);
  }());
}

TEST(SqlPostgres, reads_beyond_the_statement_cache_still_answer_and_the_cache_stays_bounded) {
  auto db = one_connection();
  run([&]() -> asio::awaitable<void> {
    // 300 distinct statements (the cache keeps 256 per connection): some pipelines prepare a
    // statement and drop an older one in the same breath.
    auto results = co_await reads_at_once(*db, 300, [](int i) {
      return std::pair<std::string, Params>{"SELECT $1::bigint + " + std::to_string(i), {int64_t{1000}}};
    });
    expect_all_ok(results, [](int i, const Rows& rows) { EXPECT_EQ(rows.front().integer(0), 1000 + i); });
    SQL_CO_ASSIGN_OK(prepared, co_await db->read("SELECT COUNT(*) FROM pg_prepared_statements", {}));
    EXPECT_LE(prepared.front().integer(0), 256);
  }());
}

TEST(SqlPostgres, a_read_waiting_for_a_busy_pool_gives_up_with_503) {
  auto db = one_connection(300);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());  // holds the only connection
    auto r = co_await db->read("SELECT 1", {});
    EXPECT_FALSE(r.ok());
    if (!r.ok()) {
      EXPECT_EQ(r.error().status, 503);
      EXPECT_EQ(r.error().code, "unavailable");
    }
    SQL_CO_ASSERT_OK(co_await tx->commit());
    SQL_CO_ASSIGN_OK(again, co_await db->read("SELECT 2", {}));
    EXPECT_EQ(again.front().integer(0), 2);
  }());
}

TEST(SqlPostgres, a_stream_of_reads_does_not_keep_a_transaction_from_its_connection) {
  auto db = one_connection(3000);
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    // More readers than one pipeline takes, so the queue is never empty while they run.
    constexpr int kReaders = 100;
    bool stop = false;
    int running = kReaders;
    asio::steady_timer readers_done(ex, asio::steady_timer::time_point::max());
    for (int k = 0; k < kReaders; ++k)
      asio::co_spawn(
          ex,
          [&]() -> asio::awaitable<void> {
            while (!stop) (void)co_await db->read("SELECT 1", {});
            if (--running == 0) readers_done.cancel();
          },
          fail_on_exception("reader"));
    co_await yield();
    auto tx = co_await db->begin();
    stop = true;
    EXPECT_TRUE(tx.ok()) << "the transaction waited out the readers' stream: " << (tx.ok() ? "" : tx.error().code);
    if (tx.ok()) SQL_CO_ASSERT_OK(co_await (*tx)->commit());
    if (running > 0) co_await readers_done.async_wait(asio::as_tuple(asio::use_awaitable));
  }());
}

TEST(SqlPostgres, describe_leaves_out_the_password) {
  auto db = open_or_fail("postgres://app:s3cret@127.0.0.1:1/db?password=other&sslmode=disable");
  auto text = db->describe();
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_EQ(text.find("other"), std::string::npos) << text;
  EXPECT_NE(text.find("app@127.0.0.1:1/db"), std::string::npos) << text;
  EXPECT_NE(text.find("sslmode=disable"), std::string::npos) << text;
}

TEST(SqlPostgres, an_invalid_url_is_refused_at_open) {
  auto db = Database::open("postgresql://[::1/db");
  EXPECT_FALSE(db.ok());
  if (!db.ok()) { EXPECT_EQ(db.error().code, "invalid_database_url"); }
}

}  // namespace
}  // namespace harmar::store::sqltest
