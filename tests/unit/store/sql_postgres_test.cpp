// What only the PostgreSQL backend promises: per-event-loop pools, prepared statements, broken
// connections turning into 503 and recovering, native cells from text results.
#include <boost/asio/use_future.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
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
    EXPECT_TRUE(std::holds_alternative<std::string>(rows.cell(0, 5)));
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
