// One suite, three backends: every behaviour the store promises in sql.hpp, checked against
// SQLite, PostgreSQL and MariaDB alike.
#include <atomic>
#include <cstdint>
#include <limits>
#include <thread>

#include "sql_test_support.hpp"

namespace harmar::store::sqltest {
namespace {

class SqlBackend : public BackendTest {
 protected:
  // items(id, name UNIQUE, qty): the table most tests use.
  asio::awaitable<Status> create_items(Database& db) {
    co_return co_await db.exec_script(
        pick("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL DEFAULT 0)",
             "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty BIGINT NOT NULL DEFAULT 0)",
             "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, qty BIGINT NOT NULL DEFAULT 0)"));
  }
  asio::awaitable<int64_t> count_items(Querier& q) {
    auto rows = co_await q.query("SELECT COUNT(*) FROM items", {});
    EXPECT_TRUE(rows.ok());
    co_return rows.ok() ? rows->front().integer(0) : -1;
  }
};

TEST_P(SqlBackend, values_of_every_type_round_trip) {
  const std::string unicode = "h\xC3\xA9llo, \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x9A\x80 ' \" \\ $1";
  const std::string binary("\0\x01\xff\0end\x80", 7);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await db_->exec_script(pick(
        "CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, b BOOLEAN, s TEXT, y BLOB)",
        "CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, b BOOLEAN, s TEXT, y BYTEA)",
        "CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE, b BOOLEAN, s LONGTEXT, y LONGBLOB)")));
    const char* insert = "INSERT INTO v (id, i, r, b, s, y) VALUES ($1, $2, $3, $4, $5, $6)";
    SQL_CO_ASSERT_OK(co_await db_->exec(insert, {int64_t{1}, nullptr, nullptr, nullptr, nullptr, nullptr}));
    SQL_CO_ASSERT_OK(co_await db_->exec(insert, {int64_t{2}, std::numeric_limits<int64_t>::min(),
                                                 3.141592653589793, true, unicode, Bytes{binary}}));
    SQL_CO_ASSERT_OK(co_await db_->exec(insert, {int64_t{3}, std::numeric_limits<int64_t>::max(), 1e-300,
                                                 false, std::string(), Bytes{}}));
    SQL_CO_ASSERT_OK(co_await db_->exec(insert, {int64_t{4}, int64_t{0}, -1.7976931348623157e308,
                                                 nullable(std::optional<bool>(true)),
                                                 nullable(std::optional<std::string>()), nullptr}));
    SQL_CO_ASSERT_OK(co_await db_->exec(insert, {int64_t{5}, 0, 0.1, false, "plain", Bytes{"x"}}));

    SQL_CO_ASSIGN_OK(rows, co_await db_->query("SELECT i, r, b, s, y FROM v ORDER BY id", {}));
    if (rows.size() != 5) {
      ADD_FAILURE() << "rows: " << rows.size();
      co_return;
    }
    Row null_row = rows[0];
    for (std::size_t c = 0; c < 5; ++c) EXPECT_TRUE(null_row.is_null(c)) << c;
    EXPECT_EQ(null_row.opt_integer(0), std::nullopt);
    EXPECT_EQ(null_row.opt_text(3), std::nullopt);
    EXPECT_EQ(null_row.text(3), "");
    EXPECT_EQ(null_row.integer(0), 0);
    EXPECT_FALSE(null_row.boolean(2));

    Row full = rows[1];
    EXPECT_EQ(full.integer(0), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(full.real(1), 3.141592653589793);
    EXPECT_TRUE(full.boolean(2));
    EXPECT_EQ(full.text(3), unicode);
    EXPECT_EQ(full.bytes(4), binary);
    EXPECT_EQ(full.bytes(4).size(), 7u);

    Row edge = rows[2];
    EXPECT_EQ(edge.integer(0), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(edge.opt_integer(0), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(edge.real(1), 1e-300);
    EXPECT_FALSE(edge.boolean(2));
    EXPECT_FALSE(edge.is_null(3)) << "an empty string is not NULL";
    EXPECT_EQ(edge.opt_text(3), std::string());
    EXPECT_FALSE(edge.is_null(4)) << "empty bytes are not NULL";
    EXPECT_EQ(edge.bytes(4), "");

    EXPECT_EQ(rows[3].real(1), -1.7976931348623157e308);
    EXPECT_TRUE(rows[3].boolean(2));
    EXPECT_TRUE(rows[3].is_null(3));
    EXPECT_EQ(rows[4].real(1), 0.1);
    EXPECT_EQ(rows[4].text(3), "plain");

    // read() answers a SELECT as query() does (PostgreSQL sends it in a pipeline), binary
    // parameters included.
    SQL_CO_ASSIGN_OK(read, co_await db_->read("SELECT i, r, b, s, y FROM v WHERE y = $1", {Bytes{binary}}));
    if (read.size() != 1) {
      ADD_FAILURE() << "read rows: " << read.size();
      co_return;
    }
    EXPECT_EQ(read[0].integer(0), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(read[0].real(1), 3.141592653589793);
    EXPECT_TRUE(read[0].boolean(2));
    EXPECT_EQ(read[0].text(3), unicode);
    EXPECT_EQ(read[0].bytes(4), binary);
  }());
}

TEST_P(SqlBackend, text_with_a_nul_byte_is_refused) {
  run([&]() -> asio::awaitable<void> {
    auto r = co_await db_->query("SELECT $1 AS v", {std::string("a\0b", 3)});
    EXPECT_FALSE(r.ok());
    if (!r.ok()) {
      EXPECT_EQ(r.error().status, 400);
      EXPECT_EQ(r.error().code, "invalid_text");
    }
    // Bytes carry NULs fine.
    SQL_CO_ASSIGN_OK(ok, co_await db_->query(pick("SELECT $1 AS v", "SELECT $1::bytea AS v"), {Bytes{std::string("a\0b", 3)}}));
    EXPECT_EQ(ok.front().bytes(0), std::string("a\0b", 3));
  }());
}

TEST_P(SqlBackend, placeholders_outside_literals_bind_by_number) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(lit, co_await db_->query("SELECT '$1' AS lit, $1 AS val, 'it''s $2' AS esc", {"x"}));
    EXPECT_EQ(lit.front().text(0), "$1");
    EXPECT_EQ(lit.front().text(1), "x");
    EXPECT_EQ(lit.front().text(2), "it's $2");

    SQL_CO_ASSIGN_OK(order, co_await db_->query("SELECT $2 || '-' || $1 || '-' || $2 AS v", {"a", "b"}));
    EXPECT_EQ(order.front().text(0), "b-a-b");

    SQL_CO_ASSIGN_OK(comments, co_await db_->query("SELECT /* $2 */ $1 AS v -- $3\n", {"c"}));
    EXPECT_EQ(comments.front().text(0), "c");

    SQL_CO_ASSIGN_OK(ident, co_await db_->query("SELECT $1 AS \"$2\"", {"q"}));
    EXPECT_EQ(ident.columns().at(0), "$2");
    EXPECT_EQ(ident.front().text(0), "q");
    EXPECT_EQ(ident.column("$2"), std::optional<std::size_t>(0));
  }());
}

TEST_P(SqlBackend, a_wrong_parameter_count_is_an_internal_error) {
  run([&]() -> asio::awaitable<void> {
    auto r = co_await db_->query("SELECT $1 AS v", {});
    EXPECT_FALSE(r.ok());
    if (!r.ok()) { EXPECT_EQ(r.error().code, "internal"); }
    // The connection is still fine afterwards.
    SQL_CO_ASSIGN_OK(ok, co_await db_->query("SELECT $1 AS v", {"fine"}));
    EXPECT_EQ(ok.front().text(0), "fine");
  }());
}

TEST_P(SqlBackend, affected_counts_only_changed_rows) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSIGN_OK(inserted, co_await db_->exec("INSERT INTO items (id, name, qty) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)", {}));
    EXPECT_EQ(inserted, 3);
    SQL_CO_ASSIGN_OK(updated, co_await db_->exec("UPDATE items SET qty = qty + 1 WHERE qty >= $1", {int64_t{2}}));
    EXPECT_EQ(updated, 2);
    SQL_CO_ASSIGN_OK(none, co_await db_->exec("DELETE FROM items WHERE id = $1", {int64_t{99}}));
    EXPECT_EQ(none, 0);
    SQL_CO_ASSIGN_OK(selected, co_await db_->query("SELECT id, name, qty FROM items ORDER BY id", {}));
    EXPECT_EQ(selected.size(), 3u);
    EXPECT_EQ(selected.affected(), 0) << "a SELECT changes nothing";
    EXPECT_EQ(selected.column("qty"), std::optional<std::size_t>(2));
    EXPECT_EQ(selected.column("nope"), std::nullopt);
    EXPECT_EQ(selected[2].integer(*selected.column("qty")), 4);
    SQL_CO_ASSIGN_OK(returned, co_await db_->query("INSERT INTO items (id, name) VALUES ($1, $2) RETURNING id, qty", {int64_t{4}, "d"}));
    EXPECT_EQ(returned.size(), 1u);
    EXPECT_EQ(returned.affected(), 1);
    EXPECT_EQ(returned.front().integer(0), 4);
    EXPECT_EQ(returned.front().integer(1), 0);
    SQL_CO_ASSIGN_OK(deleted, co_await db_->exec("DELETE FROM items WHERE id <> $1", {int64_t{4}}));
    EXPECT_EQ(deleted, 3);
    // A statement after a DML statement does not inherit its count.
    SQL_CO_ASSIGN_OK(ddl, co_await db_->exec("CREATE TABLE other (x INTEGER)", {}));
    EXPECT_EQ(ddl, 0);
  }());
}

TEST_P(SqlBackend, one_statement_per_query) {
  run([&]() -> asio::awaitable<void> {
    auto r = co_await db_->query("SELECT 1; SELECT 2", {});
    EXPECT_FALSE(r.ok());
    if (!r.ok()) { EXPECT_EQ(r.error().code, "internal"); }
    SQL_CO_ASSIGN_OK(trailing, co_await db_->query("SELECT 1 AS v; -- done\n", {}));
    EXPECT_EQ(trailing.front().integer(0), 1);
  }());
}

TEST_P(SqlBackend, committed_writes_become_visible_to_others) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSIGN_OK(tx, co_await db_->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES ($1, $2)", {int64_t{1}, "a"}));
    EXPECT_EQ(co_await count_items(*tx), 1) << "a transaction sees its own writes";
    EXPECT_EQ(co_await count_items(*db_), 0) << "others do not, before commit";
    SQL_CO_ASSERT_OK(co_await tx->commit());
    EXPECT_EQ(co_await count_items(*db_), 1);
    auto after = co_await tx->query("SELECT 1", {});
    EXPECT_FALSE(after.ok()) << "a finished transaction refuses queries";
    EXPECT_FALSE((co_await tx->commit()).ok());
  }());
}

TEST_P(SqlBackend, rollback_discards_writes) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSIGN_OK(tx, co_await db_->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES (1, 'a')", {}));
    SQL_CO_ASSERT_OK(co_await tx->rollback());
    EXPECT_EQ(co_await count_items(*db_), 0);
    // The writer / connection is free again.
    SQL_CO_ASSERT_OK(co_await db_->exec("INSERT INTO items (id, name) VALUES (2, 'b')", {}));
    EXPECT_EQ(co_await count_items(*db_), 1);
  }());
}

TEST_P(SqlBackend, a_dropped_transaction_rolls_back_before_its_connection_is_reused) {
  Database::Options one;
  one.pool_per_worker = 1;  // the next transaction must get the very same PostgreSQL connection
  auto db = open(one);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db));
    {
      SQL_CO_ASSIGN_OK(tx, co_await db->begin());
      SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES (1, 'dropped')", {}));
      // tx goes out of scope without commit() or rollback()
    }
    SQL_CO_ASSIGN_OK(next, co_await db->begin());
    EXPECT_EQ(co_await count_items(*next), 0) << "the dropped transaction's write leaked into the next one";
    SQL_CO_ASSERT_OK(co_await next->exec("INSERT INTO items (id, name) VALUES (2, 'kept')", {}));
    SQL_CO_ASSERT_OK(co_await next->commit());
    SQL_CO_ASSIGN_OK(rows, co_await db->query("SELECT name FROM items", {}));
    EXPECT_EQ(rows.size(), 1u);
    if (rows.size() == 1) { EXPECT_EQ(rows.front().text(0), "kept"); }
  }());
}

TEST_P(SqlBackend, a_unique_violation_is_a_conflict_without_sql_details) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSERT_OK(co_await db_->exec("INSERT INTO items (id, name) VALUES (1, 'a')", {}));
    auto dup_key = co_await db_->exec("INSERT INTO items (id, name) VALUES (1, 'b')", {});
    auto dup_name = co_await db_->exec("INSERT INTO items (id, name) VALUES (2, 'a')", {});
    for (const auto* r : {&dup_key, &dup_name}) {
      EXPECT_FALSE(r->ok());
      if (r->ok()) continue;
      EXPECT_EQ(r->error().status, 409);
      EXPECT_EQ(r->error().code, "conflict");
      EXPECT_EQ(r->error().detail.find("items"), std::string::npos) << r->error().detail;
      EXPECT_EQ(r->error().detail.find("UNIQUE"), std::string::npos) << r->error().detail;
      EXPECT_EQ(r->error().detail.find("duplicate"), std::string::npos) << r->error().detail;
    }
    SQL_CO_ASSIGN_OK(ignored, co_await db_->exec(pick("INSERT INTO items (id, name) VALUES (3, 'a') ON CONFLICT DO NOTHING",
                                                      "INSERT INTO items (id, name) VALUES (3, 'a') ON CONFLICT DO NOTHING",
                                                      "INSERT IGNORE INTO items (id, name) VALUES (3, 'a')"),
                                                 {}));
    EXPECT_EQ(ignored, 0);
  }());
}

// The modules write these PostgreSQL spellings once; the MariaDB backend rewrites them (mysql.cpp).
TEST_P(SqlBackend, upserts_casts_limited_subqueries_and_update_returning_mean_the_same_everywhere) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSERT_OK(co_await db_->exec("INSERT INTO items (id, name, qty) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)", {}));
    SQL_CO_ASSIGN_OK(nothing, co_await db_->exec("INSERT INTO items (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                                                 {int64_t{1}, "z"}));
    EXPECT_EQ(nothing, 0);
    const char* upsert =
        "INSERT INTO items (id, name, qty) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty"
        " WHERE excluded.qty > items.qty";
    SQL_CO_ASSERT_OK(co_await db_->exec(upsert, {int64_t{2}, "b", int64_t{20}}));
    SQL_CO_ASSERT_OK(co_await db_->exec(upsert, {int64_t{3}, "c", int64_t{0}}));
    SQL_CO_ASSERT_OK(co_await db_->exec(upsert, {int64_t{4}, "d", int64_t{4}}));
    SQL_CO_ASSIGN_OK(bumped, co_await db_->query("INSERT INTO items (id, name, qty) VALUES ($1, $2, 1) ON CONFLICT (id)"
                                                 " DO UPDATE SET qty = items.qty + $3 RETURNING qty",
                                                 {int64_t{1}, "a", int64_t{5}}));
    EXPECT_EQ(bumped.size(), 1u);
    EXPECT_EQ(bumped.empty() ? 0 : bumped.front().integer(0), 6);
    SQL_CO_ASSIGN_OK(qty, co_await db_->query("SELECT id, qty FROM items ORDER BY id", {}));
    std::vector<int64_t> got;
    for (const Row& r : qty) got.push_back(r.integer(1));
    EXPECT_EQ(got, (std::vector<int64_t>{6, 20, 3, 4}));

    SQL_CO_ASSIGN_OK(cast, co_await db_->query("SELECT CAST($1 AS TEXT) || 'x', CAST($2 AS BIGINT) + 1", {int64_t{7}, "41"}));
    EXPECT_EQ(cast.front().text(0), "7x");
    EXPECT_EQ(cast.front().integer(1), 42);
    SQL_CO_ASSIGN_OK(limited, co_await db_->query("SELECT name FROM items WHERE id IN (SELECT id FROM items ORDER BY qty"
                                                  " DESC LIMIT $1) ORDER BY name",
                                                  {int64_t{2}}));
    EXPECT_EQ(limited.size(), 2u);
    EXPECT_EQ(limited.size() == 2 ? limited[0].text(0) + limited[1].text(0) : "", "ab");

    // UPDATE … RETURNING: the changed rows, as they are after the change; none when none matched.
    SQL_CO_ASSIGN_OK(updated, co_await db_->query("UPDATE items SET qty = qty + $2 WHERE id IN (SELECT id FROM items"
                                                  " ORDER BY id LIMIT $1) RETURNING id, qty",
                                                  {int64_t{2}, int64_t{100}}));
    EXPECT_EQ(updated.size(), 2u);
    EXPECT_EQ(updated.affected(), 2);
    int64_t sum = 0;
    for (const Row& r : updated) sum += r.integer(1);
    EXPECT_EQ(sum, 106 + 120);
    SQL_CO_ASSIGN_OK(none, co_await db_->query("UPDATE items SET qty = 0 WHERE id = $1 RETURNING id", {int64_t{99}}));
    EXPECT_TRUE(none.empty());
    SQL_CO_ASSIGN_OK(tx, co_await db_->begin());
    SQL_CO_ASSIGN_OK(in_tx, co_await tx->query("UPDATE items SET name = $2 WHERE id = $1 RETURNING name", {int64_t{4}, "dd"}));
    EXPECT_EQ(in_tx.size() == 1 ? in_tx.front().text(0) : "", "dd");
    SQL_CO_ASSERT_OK(co_await tx->rollback());
    SQL_CO_ASSIGN_OK(after, co_await db_->query("SELECT name FROM items WHERE id = 4", {}));
    EXPECT_EQ(after.front().text(0), "d") << "the rolled back UPDATE … RETURNING left nothing";
  }());
}

TEST_P(SqlBackend, other_sql_errors_are_internal_without_sql_details) {
  run([&]() -> asio::awaitable<void> {
    auto r = co_await db_->query("SELECT * FROM no_such_table", {});
    EXPECT_FALSE(r.ok());
    if (r.ok()) co_return;
    EXPECT_EQ(r.error().status, 500);
    EXPECT_EQ(r.error().code, "internal");
    EXPECT_EQ(r.error().detail.find("no_such_table"), std::string::npos) << r.error().detail;
  }());
}

TEST_P(SqlBackend, foreign_keys_are_enforced) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await db_->exec_script(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL, FOREIGN KEY (parent_id) REFERENCES parent (id));"));
    auto orphan = co_await db_->exec("INSERT INTO child (id, parent_id) VALUES (1, 42)", {});
    EXPECT_FALSE(orphan.ok());
    if (!orphan.ok()) { EXPECT_EQ(orphan.error().code, "internal"); }
  }());
}

TEST_P(SqlBackend, an_error_inside_a_transaction_aborts_it) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSERT_OK(co_await db_->exec("INSERT INTO items (id, name) VALUES (1, 'a')", {}));
    SQL_CO_ASSIGN_OK(tx, co_await db_->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES (2, 'b')", {}));
    auto dup = co_await tx->exec("INSERT INTO items (id, name) VALUES (3, 'a')", {});
    EXPECT_FALSE(dup.ok());
    if (!dup.ok()) { EXPECT_EQ(dup.error().code, "conflict"); }
    auto after = co_await tx->query("SELECT 1", {});
    EXPECT_FALSE(after.ok()) << "queries after a failed statement are refused";
    auto committed = co_await tx->commit();
    EXPECT_FALSE(committed.ok()) << "commit of an aborted transaction must not report success";
    EXPECT_EQ(co_await count_items(*db_), 1) << "nothing the aborted transaction wrote is kept";
  }());
}

TEST_P(SqlBackend, reads_do_not_wait_for_an_open_transaction) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db_));
    SQL_CO_ASSERT_OK(co_await db_->exec("INSERT INTO items (id, name) VALUES (1, 'a')", {}));
    SQL_CO_ASSIGN_OK(tx, co_await db_->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES (2, 'b')", {}));
    // On SQLite this needs a reader connection: the writer is held by tx.
    EXPECT_EQ(co_await count_items(*db_), 1);
    SQL_CO_ASSERT_OK(co_await tx->commit());
    EXPECT_EQ(co_await count_items(*db_), 2);
  }());
}

TEST_P(SqlBackend, waiting_for_a_connection_does_not_block_the_event_loop) {
  Database::Options one;
  one.pool_per_worker = 1;
  auto db = open(one);
  bool writer_done = false;
  Status writer_status;
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db));
    const char* insert = "INSERT INTO items (id, name) VALUES ($1, $2)";
    SQL_CO_ASSERT_OK(co_await db->exec(insert, {int64_t{1}, "warm-up"}));  // SQLite now knows it writes
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec(insert, {int64_t{2}, "in tx"}));
    // A second writer on this same single-threaded loop has to wait for tx.
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&, insert]() -> asio::awaitable<void> {
          auto r = co_await db->exec(insert, {int64_t{3}, "waiter"});
          writer_status = r.ok() ? Status{} : Status(r.error());
          writer_done = true;
        },
        fail_on_exception("waiting writer"));
    co_await yield();  // the waiter runs until it waits
    EXPECT_FALSE(writer_done);
    // The loop is not blocked by the waiter: this coroutine goes on, on the same thread.
    SQL_CO_ASSERT_OK(co_await tx->exec("UPDATE items SET qty = 5 WHERE id = 2", {}));
    EXPECT_EQ(co_await count_items(*tx), 2);
    EXPECT_FALSE(writer_done) << "a writer got in while the transaction held the connection";
    SQL_CO_ASSERT_OK(co_await tx->commit());
  }());
  EXPECT_TRUE(writer_done);
  EXPECT_TRUE(writer_status.ok());
  run([&]() -> asio::awaitable<void> { EXPECT_EQ(co_await count_items(*db), 3); }());
}

TEST_P(SqlBackend, waiting_for_a_busy_connection_is_bounded) {
  Database::Options opts;
  opts.pool_per_worker = 1;
  opts.busy_timeout_ms = 200;
  auto db = open(opts);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await create_items(*db));
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO items (id, name) VALUES (1, 'a')", {}));
    // Writing through the Database while this coroutine holds the only writer / connection.
    auto blocked = co_await db->exec("INSERT INTO items (id, name) VALUES (2, 'b')", {});
    EXPECT_FALSE(blocked.ok());
    if (!blocked.ok()) {
      EXPECT_EQ(blocked.error().status, 503);
      EXPECT_EQ(blocked.error().code, "unavailable");
    }
    SQL_CO_ASSERT_OK(co_await tx->commit());
    SQL_CO_ASSERT_OK(co_await db->exec("INSERT INTO items (id, name) VALUES (3, 'c')", {}));
  }());
}

// Many coroutines on several event-loop threads each read-modify-write one counter inside a
// transaction: without proper isolation some increments would be lost.
TEST_P(SqlBackend, concurrent_transactions_on_several_threads_lose_no_updates) {
  constexpr int kThreads = 3, kCoroutinesPerThread = 6, kIncrements = 5;
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await db_->exec_script("CREATE TABLE counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL);"
                                               "INSERT INTO counter (id, n) VALUES (1, 0);"));
  }());
  const std::string select = pick("SELECT n FROM counter WHERE id = 1", "SELECT n FROM counter WHERE id = 1 FOR UPDATE",
                                  "SELECT n FROM counter WHERE id = 1 FOR UPDATE");
  std::atomic<int> committed{0};
  std::atomic<int> failures{0};
  auto increment = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < kIncrements; ++i) {
      auto tx = co_await db_->begin();
      if (!tx) {
        ADD_FAILURE() << "begin: " << tx.error().code << " " << tx.error().detail;
        ++failures;
        co_return;
      }
      auto rows = co_await (*tx)->query(select, {});
      if (!rows || rows->empty()) {
        ++failures;
        co_return;
      }
      int64_t n = rows->front().integer(0);
      co_await yield();  // give the others every chance to interleave
      auto updated = co_await (*tx)->exec("UPDATE counter SET n = $1 WHERE id = 1", {n + 1});
      if (!updated || *updated != 1) {
        ++failures;
        co_return;
      }
      if (auto s = co_await (*tx)->commit(); !s) {
        ADD_FAILURE() << "commit: " << s.error().code;
        ++failures;
        co_return;
      }
      ++committed;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      asio::io_context ctx;
      for (int c = 0; c < kCoroutinesPerThread; ++c) asio::co_spawn(ctx, increment(), fail_on_exception("increment"));
      ctx.run();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(committed.load(), kThreads * kCoroutinesPerThread * kIncrements);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(rows, co_await db_->query("SELECT n FROM counter WHERE id = 1", {}));
    EXPECT_EQ(rows.front().integer(0), kThreads * kCoroutinesPerThread * kIncrements);
  }());
}

TEST_P(SqlBackend, more_distinct_statements_than_the_cache_holds_still_work) {
  run([&]() -> asio::awaitable<void> {
    for (int64_t i = 0; i < 300; ++i) {
      auto sql = "SELECT " + std::to_string(i) + " + $1 AS v";
      SQL_CO_ASSIGN_OK(rows, co_await db_->query(sql, {int64_t{1}}));
      EXPECT_EQ(rows.front().integer(0), i + 1);
    }
    // The earliest ones were evicted and prepare again.
    SQL_CO_ASSIGN_OK(again, co_await db_->query("SELECT 0 + $1 AS v", {int64_t{7}}));
    EXPECT_EQ(again.front().integer(0), 7);
  }());
}

TEST_P(SqlBackend, ping_and_describe) {
  run([&]() -> asio::awaitable<void> { SQL_CO_ASSERT_OK(co_await db_->ping()); }());
  EXPECT_EQ(db_->backend(), GetParam());
  EXPECT_EQ(db_->describe().rfind(pg() ? "postgres" : mysql() ? "mysql://" : "sqlite://", 0), 0u) << db_->describe();
}

INSTANTIATE_TEST_SUITE_P(Backends, SqlBackend, ::testing::Values(Backend::Sqlite, Backend::Postgres, Backend::Mysql),
                         param_name);

}  // namespace
}  // namespace harmar::store::sqltest
