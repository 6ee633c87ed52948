// What only the SQLite backend promises: its pragmas, the blocking pool, the URL forms.
#include <sqlite3.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "sql_test_support.hpp"

namespace harmar::store::sqltest {
namespace {

// test_thread(): a hash of the thread a statement runs on, in every connection opened after
// install_thread_function() (sqlite3_auto_extension).
void thread_hash(sqlite3_context* ctx, int, sqlite3_value**) {
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
}
int register_thread_function(sqlite3* db, char**, const sqlite3_api_routines*) {
  return sqlite3_create_function(db, "test_thread", 0, SQLITE_UTF8, nullptr, thread_hash, nullptr, nullptr);
}
void install_thread_function() {
  sqlite3_auto_extension(reinterpret_cast<void (*)()>(register_thread_function));
}
int64_t this_thread_hash() { return static_cast<int64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())); }

TEST(SqlSqlite, statements_run_on_the_blocking_pool_not_on_the_event_loop) {
  install_thread_function();
  auto db = open_or_fail(fresh_url(Backend::Sqlite));
  run([&]() -> asio::awaitable<void> {
    const int64_t loop = this_thread_hash();
    SQL_CO_ASSIGN_OK(read, co_await db->query("SELECT test_thread()", {}));  // a reader
    EXPECT_NE(read.front().integer(0), loop);
    EXPECT_EQ(this_thread_hash(), loop) << "the coroutine resumes on its own event loop";
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());  // the writer
    SQL_CO_ASSIGN_OK(in_tx, co_await tx->query("SELECT test_thread()", {}));
    EXPECT_NE(in_tx.front().integer(0), loop);
    SQL_CO_ASSERT_OK(co_await tx->commit());
    SQL_CO_ASSERT_OK(co_await db->exec_script("CREATE TABLE t (x INTEGER)"));
    SQL_CO_ASSIGN_OK(written, co_await db->query("INSERT INTO t (x) VALUES (test_thread()) RETURNING x", {}));
    EXPECT_NE(written.front().integer(0), loop);
    EXPECT_EQ(this_thread_hash(), loop);
  }());
}

TEST(SqlSqlite, the_database_runs_in_wal_mode_with_foreign_keys) {
  auto url = fresh_url(Backend::Sqlite);
  auto db = open_or_fail(url);
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());  // the writer connection
    SQL_CO_ASSIGN_OK(journal, co_await tx->query("PRAGMA journal_mode", {}));
    EXPECT_EQ(journal.front().text(0), "wal");
    SQL_CO_ASSIGN_OK(sync, co_await tx->query("PRAGMA synchronous", {}));
    EXPECT_EQ(sync.front().integer(0), 1) << "NORMAL";
    SQL_CO_ASSIGN_OK(fk, co_await tx->query("PRAGMA foreign_keys", {}));
    EXPECT_EQ(fk.front().integer(0), 1);
    SQL_CO_ASSERT_OK(co_await tx->commit());
    SQL_CO_ASSIGN_OK(reader_fk, co_await db->query("PRAGMA foreign_keys", {}));
    EXPECT_EQ(reader_fk.front().integer(0), 1);
  }());
  std::string path = url.substr(std::string("sqlite://").size());
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));
}

TEST(SqlSqlite, open_creates_missing_directories_and_accepts_relative_paths) {
  auto dir = std::filesystem::path(harmar::testing::temp_dir()) / test_slug() / "a" / "b";
  auto abs_db = open_or_fail("sqlite://" + (dir / "abs.db").string());
  EXPECT_TRUE(std::filesystem::exists(dir / "abs.db"));
  auto relative = std::filesystem::relative(dir / "rel.db");
  auto rel_db = open_or_fail("sqlite://./" + relative.string());
  EXPECT_TRUE(std::filesystem::exists(dir / "rel.db"));
  run([&]() -> asio::awaitable<void> { SQL_CO_ASSERT_OK(co_await rel_db->ping()); }());
}

TEST(SqlSqlite, an_in_memory_database_serves_reads_writes_and_transactions) {
  auto db = open_or_fail("sqlite://:memory:");
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await db->exec_script("CREATE TABLE t (x INTEGER)"));
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());
    SQL_CO_ASSERT_OK(co_await tx->exec("INSERT INTO t (x) VALUES ($1)", {int64_t{7}}));
    SQL_CO_ASSERT_OK(co_await tx->commit());
    SQL_CO_ASSIGN_OK(rows, co_await db->query("SELECT x FROM t", {}));
    EXPECT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows.front().integer(0), 7);
  }());
}

TEST(SqlSqlite, urls_without_a_path_or_with_an_unknown_scheme_are_refused) {
  auto empty = Database::open("sqlite://");
  EXPECT_FALSE(empty.ok());
  auto unknown = Database::open("mongodb://root@localhost/db");
  EXPECT_FALSE(unknown.ok());
  if (!unknown.ok()) { EXPECT_EQ(unknown.error().code, "invalid_database_url"); }
  auto unwritable = Database::open("sqlite:///proc/no/such/dir/x.db");
  EXPECT_FALSE(unwritable.ok());
}

}  // namespace
}  // namespace harmar::store::sqltest
