// Schema migrations: every module's numbered steps, each applied once, in its own transaction.
#include <fmt/format.h>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "store/detail/sql_common.hpp"
#include "store/sql.hpp"

namespace harmar::store {
namespace {

// Held (transaction-scoped) while a step is checked and applied, so two processes migrating
// one PostgreSQL database take turns. The value is arbitrary but fixed: "harmar" in ASCII.
constexpr int64_t kMigrationLockKey = 0x6861726d6172;

constexpr std::string_view kCreateTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " module TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL,"
    " PRIMARY KEY (module, version))";
// MariaDB/MySQL cannot key a TEXT column.
constexpr std::string_view kCreateTableMysql =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " module VARCHAR(128) NOT NULL,"
    " version INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL,"
    " PRIMARY KEY (module, version))";

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

Status check_steps(const ModuleMigrations& m) {
  if (m.module.empty()) {
    logger()->error("migrations: a module without a name");
    return Error::internal("migrations of a module without a name");
  }
  int previous = 0;
  for (const auto& step : m.steps) {
    if (step.version <= previous) {
      logger()->error("migrations of {}: version {} follows {}; versions start at 1 and only grow", m.module,
                      step.version, previous);
      return Error::internal("migrations of module '" + m.module + "' are out of order");
    }
    previous = step.version;
  }
  return {};
}

asio::awaitable<Status> lock_migrations(Database& db, Transaction& tx) {
  if (db.backend() == Backend::Sqlite) co_return Status{};  // BEGIN IMMEDIATE already serialises
  if (db.backend() == Backend::Mysql) {
    // A named lock, which the MariaDB backend releases when the transaction ends.
    auto r = co_await tx.query("SELECT GET_LOCK('harmar_schema_migrations', 60)", {});
    if (!r) co_return std::move(r).error();
    if (r->empty() || r->front().integer(0) != 1) co_return Error::unavailable("another process holds the migration lock");
    co_return Status{};
  }
  auto r = co_await tx.query("SELECT pg_advisory_xact_lock($1)", {kMigrationLockKey});
  if (!r) co_return std::move(r).error();
  co_return Status{};
}

asio::awaitable<Result<int64_t>> recorded_version(Querier& q, const std::string& module) {
  auto rows = co_await q.query("SELECT MAX(version) FROM schema_migrations WHERE module = $1", {module});
  if (!rows) co_return std::move(rows).error();
  co_return rows->empty() ? 0 : rows->front().integer(0);
}

asio::awaitable<Status> ensure_table(Database& db) {
  auto tx = co_await db.begin();
  if (!tx) co_return std::move(tx).error();
  if (auto s = co_await lock_migrations(db, **tx); !s) co_return s;
  auto create = db.backend() == Backend::Mysql ? kCreateTableMysql : kCreateTable;
  if (auto s = co_await (*tx)->exec_script(create); !s) co_return s;
  co_return co_await (*tx)->commit();
}

// Applies one step unless another process did meanwhile. Returns whether it ran.
asio::awaitable<Result<bool>> apply_step(Database& db, const std::string& module, const Migration& step) {
  auto tx = co_await db.begin();
  if (!tx) co_return std::move(tx).error();
  Transaction& t = **tx;
  if (auto s = co_await lock_migrations(db, t); !s) co_return std::move(s).error();
  auto current = co_await recorded_version(t, module);
  if (!current) co_return std::move(current).error();
  if (*current >= step.version) {
    (void)co_await t.rollback();
    co_return false;
  }
  const std::string& sql = db.backend() == Backend::Sqlite     ? step.sqlite
                           : db.backend() == Backend::Postgres ? step.postgres
                                                               : step.mysql;
  if (db.backend() == Backend::Mysql && detail::is_blank_sql(sql) &&
      !(detail::is_blank_sql(step.sqlite) && detail::is_blank_sql(step.postgres)))
    co_return Error::internal("module '" + module + "' has no MariaDB/MySQL schema");
  if (!detail::is_blank_sql(sql)) {
    if (auto s = co_await t.exec_script(sql); !s) co_return std::move(s).error();
  }
  auto recorded = co_await t.exec(
      "INSERT INTO schema_migrations (module, version, name, applied_at) VALUES ($1, $2, $3, $4)",
      {module, int64_t{step.version}, step.name, now_ms()});
  if (!recorded) co_return std::move(recorded).error();
  if (auto s = co_await t.commit(); !s) co_return std::move(s).error();
  co_return true;
}

}  // namespace

asio::awaitable<Status> migrate(Database& db, const std::vector<ModuleMigrations>& modules) {
  for (const auto& m : modules)
    if (auto s = check_steps(m); !s) co_return s;
  if (auto s = co_await ensure_table(db); !s) {
    logger()->error("migrations: cannot create schema_migrations in {}", db.describe());
    co_return s;
  }
  for (const auto& m : modules) {
    auto current = co_await recorded_version(db, m.module);
    if (!current) co_return std::move(current).error();
    int64_t highest = m.steps.empty() ? 0 : m.steps.back().version;
    if (*current > highest) {
      auto detail = fmt::format(
          "the database schema of module '{}' is at version {}, newer than the latest this harmar knows ({}); "
          "run a newer harmar or restore a matching backup",
          m.module, *current, highest);
      logger()->error("migrations: {}", detail);
      co_return Error::conflict(detail, "schema_too_new");
    }
    for (const auto& step : m.steps) {
      if (step.version <= *current) continue;
      auto applied = co_await apply_step(db, m.module, step);
      if (!applied) {
        Error e = std::move(applied).error();
        logger()->error("migrations: {} version {} ({}) failed: {}", m.module, step.version, step.name, e.detail);
        e.detail = fmt::format("migration {} version {} ({}) failed: {}", m.module, step.version, step.name, e.detail);
        co_return e;
      }
      if (*applied) logger()->info("migrations: applied {} version {} ({})", m.module, step.version, step.name);
    }
  }
  co_return Status{};
}

}  // namespace harmar::store
