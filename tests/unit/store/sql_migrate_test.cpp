// migrate(): each step once, in order, in its own transaction; refuses a newer schema; safe
// when two processes migrate at once. Runs against SQLite, PostgreSQL and MariaDB.
#include <thread>

#include "sql_test_support.hpp"

namespace harmar::store::sqltest {
namespace {

// A list of modules built outside the co_await expression (g++ 12 rejects a braced
// std::initializer_list there).
template <class... M>
std::vector<ModuleMigrations> mods(M... m) {
  std::vector<ModuleMigrations> v;
  (v.push_back(std::move(m)), ...);
  return v;
}

class SqlMigrate : public BackendTest {
 protected:
  // notes: step 1 creates a table, step 2 adds a row (so a re-run would show as a second row).
  static ModuleMigrations notes(int steps = 2) {
    ModuleMigrations m{"notes", {}};
    m.steps.push_back({1, "create notes",
                       "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
                       "CREATE INDEX notes_body ON notes (body);",
                       "CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);"
                       "CREATE INDEX notes_body ON notes (body);",
                       "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL);"
                       "CREATE INDEX notes_body ON notes (body);"});
    for (int v = 2; v <= steps; ++v) {
      std::string insert = "INSERT INTO notes (body) VALUES ('step " + std::to_string(v) + "');";
      m.steps.push_back({v, "seed " + std::to_string(v), insert, insert, insert});
    }
    return m;
  }

  asio::awaitable<int64_t> scalar(Database& db, std::string sql) {
    auto rows = co_await db.query(sql, {});
    EXPECT_TRUE(rows.ok()) << sql;
    co_return rows.ok() && !rows->empty() ? rows->front().integer(0) : -1;
  }
};

TEST_P(SqlMigrate, steps_apply_once_and_a_rerun_changes_nothing) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes())));
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes"), 1);
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes())));
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes())));
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes"), 1);
    SQL_CO_ASSIGN_OK(recorded, co_await db_->query(
                                   "SELECT module, version, name, applied_at FROM schema_migrations ORDER BY version", {}));
    EXPECT_EQ(recorded.size(), 2u);
    if (recorded.size() != 2) co_return;
    EXPECT_EQ(recorded[0].text(0), "notes");
    EXPECT_EQ(recorded[0].integer(1), 1);
    EXPECT_EQ(recorded[0].text(2), "create notes");
    EXPECT_GT(recorded[0].integer(3), 1'600'000'000'000) << "applied_at is Unix milliseconds";
    EXPECT_EQ(recorded[1].integer(1), 2);
  }());
}

TEST_P(SqlMigrate, a_new_step_applies_alone) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes(2))));
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes(4))));
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes"), 3);
    EXPECT_EQ(co_await scalar(*db_, "SELECT MAX(version) FROM schema_migrations WHERE module = 'notes'"), 4);
  }());
}

TEST_P(SqlMigrate, modules_are_versioned_independently) {
  ModuleMigrations other{"other", {{1, "t", "CREATE TABLE other_t (x INTEGER);", "CREATE TABLE other_t (x INTEGER);",
                                    "CREATE TABLE other_t (x INTEGER);"},
                                   {2, "not on sqlite", "", "ALTER TABLE other_t ADD COLUMN y INTEGER;",
                                    "ALTER TABLE other_t ADD COLUMN y INTEGER;"}}};
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes(3), other)));
    EXPECT_EQ(co_await scalar(*db_, "SELECT MAX(version) FROM schema_migrations WHERE module = 'notes'"), 3);
    EXPECT_EQ(co_await scalar(*db_, "SELECT MAX(version) FROM schema_migrations WHERE module = 'other'"), 2)
        << "a step with no SQL for this backend is still recorded";
  }());
}

TEST_P(SqlMigrate, a_database_from_a_newer_harmar_is_refused) {
  run([&]() -> asio::awaitable<void> {
    SQL_CO_ASSERT_OK(co_await migrate(*db_, mods(notes(3))));
    auto refused = co_await migrate(*db_, mods(notes(2)));
    EXPECT_FALSE(refused.ok());
    if (refused.ok()) co_return;
    EXPECT_EQ(refused.error().status, 409);
    EXPECT_EQ(refused.error().code, "schema_too_new");
    const auto& detail = refused.error().detail;
    EXPECT_NE(detail.find("notes"), std::string::npos) << detail;
    EXPECT_NE(detail.find('3'), std::string::npos) << detail;
    EXPECT_NE(detail.find('2'), std::string::npos) << detail;
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes"), 2) << "nothing ran";
  }());
}

TEST_P(SqlMigrate, a_failing_step_leaves_no_trace) {
  ModuleMigrations m = notes(2);
  m.steps.push_back({3, "broken",
                     "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);",
                     "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);",
                     "INSERT INTO notes (body) VALUES ('half'); INSERT INTO no_such_table VALUES (1);"});
  run([&]() -> asio::awaitable<void> {
    auto failed = co_await migrate(*db_, mods(m));
    EXPECT_FALSE(failed.ok());
    if (!failed.ok()) {
      EXPECT_EQ(failed.error().code, "internal");
      EXPECT_NE(failed.error().detail.find("notes version 3"), std::string::npos) << failed.error().detail;
    }
    EXPECT_EQ(co_await scalar(*db_, "SELECT MAX(version) FROM schema_migrations"), 2) << "steps before it stay applied";
    if (mysql()) {
      // MariaDB commits DDL implicitly, so only a step without DDL is atomic there.
      EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes WHERE body = 'half'"), 0)
          << "the failed step's first statement was rolled back with it";
      co_return;
    }
    auto half = co_await db_->query("SELECT COUNT(*) FROM half_done", {});
    EXPECT_FALSE(half.ok()) << "the failed step's first statement was rolled back with it";
  }());
}

TEST_P(SqlMigrate, steps_out_of_order_are_refused) {
  ModuleMigrations m{"bad", {{2, "two", "SELECT 1;", "SELECT 1;"}, {1, "one", "SELECT 1;", "SELECT 1;"}}};
  run([&]() -> asio::awaitable<void> {
    auto r = co_await migrate(*db_, mods(m));
    EXPECT_FALSE(r.ok());
  }());
}

// Two harmar processes starting together against one database: each step runs exactly once.
TEST_P(SqlMigrate, concurrent_migrations_apply_each_step_once) {
  constexpr int kSteps = 12;
  auto a = open();
  auto b = open();
  Status status_a, status_b;
  std::thread ta([&] { status_a = harmar::testing::run(migrate(*a, mods(notes(kSteps)))); });
  std::thread tb([&] { status_b = harmar::testing::run(migrate(*b, mods(notes(kSteps)))); });
  ta.join();
  tb.join();
  EXPECT_TRUE(status_a.ok()) << (status_a.ok() ? "" : status_a.error().detail);
  EXPECT_TRUE(status_b.ok()) << (status_b.ok() ? "" : status_b.error().detail);
  run([&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM notes"), kSteps - 1);
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM schema_migrations"), kSteps);
  }());
}

// MariaDB refuses a module that has SQL for the others but none for it, naming the module, rather
// than recording a step it never ran.
// Instantiated on MariaDB alone: no skipped runs on the other backends.
class SqlMigrateMysql : public SqlMigrate {};

TEST_P(SqlMigrateMysql, a_module_without_a_mariadb_schema_is_refused_there_by_name) {
  ModuleMigrations m{"legacy", {{1, "t", "CREATE TABLE legacy_t (x INTEGER);", "CREATE TABLE legacy_t (x INTEGER);"}}};
  run([&]() -> asio::awaitable<void> {
    auto r = co_await migrate(*db_, mods(m));
    EXPECT_FALSE(r.ok());
    if (!r.ok()) { EXPECT_NE(r.error().detail.find("'legacy' has no MariaDB/MySQL schema"), std::string::npos) << r.error().detail; }
    EXPECT_EQ(co_await scalar(*db_, "SELECT COUNT(*) FROM schema_migrations WHERE module = 'legacy'"), 0);
  }());
}

INSTANTIATE_TEST_SUITE_P(Backends, SqlMigrate, ::testing::Values(Backend::Sqlite, Backend::Postgres, Backend::Mysql),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Backends, SqlMigrateMysql, ::testing::Values(Backend::Mysql), param_name);

}  // namespace
}  // namespace harmar::store::sqltest
