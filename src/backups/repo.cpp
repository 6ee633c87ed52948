#include "backups/repo.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"

namespace harmar::backups {

boost::json::object to_json(const Backup& b) {
  return {{"id", b.id},
          {"device_id", b.device_id},
          {"name", b.name},
          {"content_type", b.content_type},
          {"size", b.size},
          {"sha256", b.sha256},
          {"created_at", format_rfc3339(b.created_at)}};
}

namespace repo {

namespace {

constexpr const char* kColumns = "id, user_id, device_id, name, content_type, size, sha256, blob_key, created_at";

Backup read_backup(const store::Row& r) {
  Backup b;
  b.id = r.text(0);
  b.user_id = r.text(1);
  b.device_id = r.text(2);
  b.name = r.text(3);
  b.content_type = r.text(4);
  b.size = r.integer(5);
  b.sha256 = r.text(6);
  b.blob_key = r.text(7);
  b.created_at = r.integer(8);
  return b;
}

}  // namespace

std::vector<store::Migration> migrations() {
  // size in bytes, created_at in Unix ms. (user_id, id) serves listing and the quota sums.
  const char* ddl =
      "CREATE TABLE config_backups (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
      " name TEXT NOT NULL, content_type TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL,"
      " blob_key TEXT NOT NULL, created_at BIGINT NOT NULL);"
      "CREATE INDEX config_backups_user ON config_backups (user_id, id);"
      "CREATE INDEX config_backups_device ON config_backups (device_id, id);";
  const char* mysql =
      "CREATE TABLE config_backups (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, device_id"
      " VARCHAR(64) NOT NULL, name LONGTEXT NOT NULL, content_type LONGTEXT NOT NULL, size BIGINT NOT NULL,"
      " sha256 LONGTEXT NOT NULL, blob_key LONGTEXT NOT NULL, created_at BIGINT NOT NULL, INDEX"
      " config_backups_user (user_id, id), INDEX config_backups_device (device_id, id)) ENGINE=InnoDB DEFAULT"
      " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";
  return {{1, "config_backups", ddl, ddl, mysql}};
}

asio::awaitable<Status> insert(Querier& q, const Backup& b) {
  auto n = co_await q.exec(
      "INSERT INTO config_backups (id, user_id, device_id, name, content_type, size, sha256, blob_key, created_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      {b.id, b.user_id, b.device_id, b.name, b.content_type, b.size, b.sha256, b.blob_key, b.created_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<Usage>> usage(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM config_backups WHERE user_id = $1", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return Usage{rows->front().integer(0), rows->front().integer(1)};
}

asio::awaitable<Status> lock_user(Querier& q, store::Backend backend, const std::string& user_id) {
  if (backend == store::Backend::Sqlite) co_return Status{};  // its one writer already serialises
  if (backend == store::Backend::Mysql) {
    // A named lock, which the MariaDB backend releases when the transaction ends.
    auto rows = co_await q.query("SELECT GET_LOCK('config_backups:' || $1, 10)", {user_id});
    if (!rows) co_return std::move(rows).error();
    if (rows->empty() || rows->front().integer(0) != 1) co_return Error::unavailable("another upload holds the quota lock");
    co_return Status{};
  }
  auto rows = co_await q.query("SELECT pg_advisory_xact_lock(hashtext('config_backups:' || $1))", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<Backup>>> get(Querier& q, const std::string& id) {
  auto rows = co_await q.query(fmt::format("SELECT {} FROM config_backups WHERE id = $1", kColumns), {id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Backup>{};
  co_return std::optional<Backup>(read_backup(rows->front()));
}

asio::awaitable<Result<std::vector<Backup>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& device_id,
                                                  const std::optional<std::string>& before, int limit) {
  std::string sql = fmt::format("SELECT {} FROM config_backups WHERE user_id = $1", kColumns);
  store::Params params;
  params.emplace_back(user_id);
  if (device_id) {
    params.emplace_back(*device_id);
    sql += fmt::format(" AND device_id = ${}", params.size());
  }
  if (before) {
    params.emplace_back(*before);
    sql += fmt::format(" AND id < ${}", params.size());
  }
  params.emplace_back(static_cast<int64_t>(limit));
  sql += fmt::format(" ORDER BY id DESC LIMIT ${}", params.size());
  auto rows = co_await q.query(sql, std::move(params));
  if (!rows) co_return std::move(rows).error();
  std::vector<Backup> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(read_backup(r));
  co_return out;
}

asio::awaitable<Result<bool>> remove(Querier& q, const std::string& id) {
  auto n = co_await q.exec("DELETE FROM config_backups WHERE id = $1", {id});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

}  // namespace repo
}  // namespace harmar::backups
