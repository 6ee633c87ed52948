#include "devices/repo.hpp"

#include <boost/json.hpp>

namespace harmar::devices::repo {

namespace js = boost::json;

namespace {

constexpr const char* kColumns =
    "id, user_id, name, hostname, os, arch, version, labels, status, agent_status, metrics, last_seen_at, config, "
    "config_version, created_at, updated_at";

js::object parse_object(const std::string& text) {
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

Device read_device(const store::Row& r) {
  Device d;
  d.id = r.text(0);
  d.user_id = r.text(1);
  d.name = r.text(2);
  d.hostname = r.text(3);
  d.os = r.text(4);
  d.arch = r.text(5);
  d.version = r.text(6);
  d.labels = parse_labels(r.text(7));
  d.status = r.text(8);
  d.agent_status = r.text(9);
  d.metrics = parse_object(r.text(10));
  d.last_seen_at = r.opt_integer(11);
  d.config = parse_object(r.text(12));
  d.config_version = r.integer(13);
  d.created_at = r.integer(14);
  d.updated_at = r.integer(15);
  return d;
}

DeviceInfo read_info(const store::Row& r) { return {r.text(0), r.text(1), r.text(2), parse_labels(r.text(3))}; }

std::string select_devices(std::string_view where) { return fmt::format("SELECT {} FROM devices WHERE {}", kColumns, where); }

Result<std::optional<Device>> one_device(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<Device>{};
  return std::optional<Device>(read_device(rows->front()));
}

Result<std::optional<DeviceInfo>> one_info(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<DeviceInfo>{};
  return std::optional<DeviceInfo>(read_info(rows->front()));
}

}  // namespace

std::vector<store::Migration> migrations() {
  // last_seen_at and the *_at columns are Unix milliseconds. The partial index serves the
  // offline sweeper (online devices by last heartbeat); key_hash is the api key's SHA-256.
  return {
      {1, "devices",
       "CREATE TABLE devices (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,"
       " hostname TEXT NOT NULL DEFAULT '', os TEXT NOT NULL DEFAULT '', arch TEXT NOT NULL DEFAULT '',"
       " version TEXT NOT NULL DEFAULT '', labels TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL DEFAULT 'offline',"
       " agent_status TEXT NOT NULL DEFAULT '', metrics TEXT NOT NULL DEFAULT '{}', last_seen_at BIGINT,"
       " config TEXT NOT NULL DEFAULT '{}', config_version BIGINT NOT NULL DEFAULT 0, key_hash TEXT NOT NULL,"
       " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
       "CREATE UNIQUE INDEX devices_key_hash ON devices (key_hash);"
       "CREATE INDEX devices_user ON devices (user_id, id);"
       "CREATE INDEX devices_online_seen ON devices (last_seen_at) WHERE status = 'online';",
       "CREATE TABLE devices (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,"
       " hostname TEXT NOT NULL DEFAULT '', os TEXT NOT NULL DEFAULT '', arch TEXT NOT NULL DEFAULT '',"
       " version TEXT NOT NULL DEFAULT '', labels TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL DEFAULT 'offline',"
       " agent_status TEXT NOT NULL DEFAULT '', metrics TEXT NOT NULL DEFAULT '{}', last_seen_at BIGINT,"
       " config TEXT NOT NULL DEFAULT '{}', config_version BIGINT NOT NULL DEFAULT 0, key_hash TEXT NOT NULL,"
       " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
       "CREATE UNIQUE INDEX devices_key_hash ON devices (key_hash);"
       "CREATE INDEX devices_user ON devices (user_id, id);"
       "CREATE INDEX devices_online_seen ON devices (last_seen_at) WHERE status = 'online';",
       // MariaDB has no partial index: the sweeper's is on (status, last_seen_at).
       "CREATE TABLE devices (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, name LONGTEXT NOT NULL,"
       " hostname LONGTEXT NOT NULL DEFAULT '', os LONGTEXT NOT NULL DEFAULT '', arch LONGTEXT NOT NULL DEFAULT"
       " '', version LONGTEXT NOT NULL DEFAULT '', labels LONGTEXT NOT NULL DEFAULT '{}', status VARCHAR(16)"
       " NOT NULL DEFAULT 'offline', agent_status LONGTEXT NOT NULL DEFAULT '', metrics LONGTEXT NOT NULL"
       " DEFAULT '{}', last_seen_at BIGINT, config LONGTEXT NOT NULL DEFAULT '{}', config_version BIGINT NOT"
       " NULL DEFAULT 0, key_hash VARCHAR(128) NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT"
       " NULL, UNIQUE INDEX devices_key_hash (key_hash), INDEX devices_user (user_id, id), INDEX"
       " devices_online_seen (status, last_seen_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
       " COLLATE=utf8mb4_nopad_bin;"},
  };
}

asio::awaitable<Status> insert(Querier& q, const Device& d, const std::string& key_hash) {
  auto n = co_await q.exec(
      "INSERT INTO devices (id, user_id, name, hostname, os, arch, version, labels, status, config, config_version,"
      " key_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'offline', '{}', 0, $9, $10, $10)",
      {d.id, d.user_id, d.name, d.hostname, d.os, d.arch, d.version, labels_text(d.labels), key_hash, d.created_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<int64_t>> count_for_user(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM devices WHERE user_id = $1", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::optional<DeviceInfo>>> find_info(Querier& q, const std::string& id) {
  co_return one_info(co_await q.query("SELECT id, user_id, name, labels FROM devices WHERE id = $1", {id}));
}

asio::awaitable<Result<std::optional<DeviceInfo>>> find_info_by_key(Querier& q, const std::string& key_hash) {
  co_return one_info(co_await q.query("SELECT id, user_id, name, labels FROM devices WHERE key_hash = $1", {key_hash}));
}

asio::awaitable<Result<std::optional<Device>>> find_owned(Querier& q, const std::string& user_id, const std::string& id) {
  co_return one_device(co_await q.query(select_devices("id = $1 AND user_id = $2"), {id, user_id}));
}

asio::awaitable<Result<std::optional<Device>>> find(Querier& q, const std::string& id) {
  co_return one_device(co_await q.query(select_devices("id = $1"), {id}));
}

asio::awaitable<Result<std::vector<Device>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& after, int limit,
                                                  const std::optional<std::string>& status) {
  std::string sql = select_devices("user_id = $1 AND id > $2 AND ($3 = '' OR status = $3) ORDER BY id LIMIT $4");
  auto rows = co_await q.query(sql, {user_id, after.value_or(""), status.value_or(""), int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Device> out;
  for (const auto& r : *rows) out.push_back(read_device(r));
  co_return out;
}

asio::awaitable<Result<std::optional<Beat>>> heartbeat(Querier& q, const std::string& id, int64_t now,
                                                       const std::string& agent_status, const std::string& metrics) {
  // Two statements so that exactly one heartbeat (on any node) sees the offline → online edge.
  auto flipped = co_await q.query(
      "UPDATE devices SET status = 'online', last_seen_at = $2, agent_status = $3, metrics = $4"
      " WHERE id = $1 AND status <> 'online' RETURNING config_version",
      {id, now, agent_status, metrics});
  if (!flipped) co_return std::move(flipped).error();
  if (!flipped->empty()) co_return std::optional<Beat>(Beat{flipped->front().integer(0), true});
  auto rows = co_await q.query(
      "UPDATE devices SET last_seen_at = $2, agent_status = $3, metrics = $4 WHERE id = $1 RETURNING config_version",
      {id, now, agent_status, metrics});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Beat>{};
  co_return std::optional<Beat>(Beat{rows->front().integer(0), false});
}

asio::awaitable<Result<bool>> set_offline(Querier& q, const std::string& id, int64_t now) {
  auto n = co_await q.exec("UPDATE devices SET status = 'offline', last_seen_at = $2 WHERE id = $1 AND status = 'online'",
                           {id, now});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

asio::awaitable<Result<std::vector<DeviceInfo>>> sweep_offline(Querier& q, int64_t seen_before, int64_t now, int limit) {
  // The UPDATE takes each row once, so of several nodes sweeping together exactly one reports it.
  auto rows = co_await q.query(
      "UPDATE devices SET status = 'offline' WHERE id IN (SELECT id FROM devices WHERE status = 'online'"
      " AND last_seen_at < $1 LIMIT $2) AND status = 'online' AND last_seen_at < $1 RETURNING id, user_id, name, labels",
      {seen_before, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<DeviceInfo> out;
  for (const auto& r : *rows) out.push_back(read_info(r));
  co_return out;
}

asio::awaitable<Result<std::optional<Device>>> update_config(Querier& q, const std::string& user_id,
                                                             const std::string& id, const std::string& config,
                                                             int64_t now) {
  co_return one_device(co_await q.query(
      fmt::format("UPDATE devices SET config = $3, config_version = config_version + 1, updated_at = $4"
                  " WHERE id = $1 AND user_id = $2 RETURNING {}",
                  kColumns),
      {id, user_id, config, now}));
}

asio::awaitable<Result<std::optional<Device>>> update(Querier& q, const std::string& user_id, const std::string& id,
                                                      const std::optional<std::string>& name,
                                                      const std::optional<std::string>& labels, int64_t now) {
  co_return one_device(co_await q.query(
      fmt::format("UPDATE devices SET name = COALESCE($3, name), labels = COALESCE($4, labels), updated_at = $5"
                  " WHERE id = $1 AND user_id = $2 RETURNING {}",
                  kColumns),
      {id, user_id, store::nullable(name), store::nullable(labels), now}));
}

asio::awaitable<Result<std::optional<DeviceInfo>>> remove(Querier& q, const std::string& user_id, const std::string& id) {
  co_return one_info(co_await q.query(
      "DELETE FROM devices WHERE id = $1 AND user_id = $2 RETURNING id, user_id, name, labels", {id, user_id}));
}

}  // namespace harmar::devices::repo
