#include "notify/outbox.hpp"

namespace harmar::notify::outbox {
namespace {

constexpr const char* kColumns =
    "id, kind, to_addr, subject, body, redacted, status, attempts, error, created_at, sent_at, next_at, max_attempts, config_id";

Row read_row(const store::Row& r) {
  Row o;
  o.id = r.text(0);
  o.kind = r.text(1);
  o.to = r.text(2);
  o.subject = r.text(3);
  o.body = r.opt_text(4);
  o.redacted = r.boolean(5);
  o.status = r.text(6);
  o.attempts = r.integer(7);
  o.error = r.opt_text(8);
  o.created_at = r.integer(9);
  o.sent_at = r.opt_integer(10);
  o.next_at = r.opt_integer(11);
  o.max_attempts = r.integer(12);
  o.config_id = r.opt_text(13);
  return o;
}

}  // namespace

std::vector<store::Migration> migrations() {
  return {
      {1, "outbox",
       "CREATE TABLE outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, to_addr TEXT NOT NULL, subject TEXT NOT NULL,"
       " body TEXT, redacted BOOLEAN NOT NULL DEFAULT 0, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
       " error TEXT, created_at BIGINT NOT NULL, sent_at BIGINT);"
       "CREATE INDEX outbox_created ON outbox (created_at);"
       "CREATE INDEX outbox_to ON outbox (to_addr, created_at);",
       "CREATE TABLE outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, to_addr TEXT NOT NULL, subject TEXT NOT NULL,"
       " body TEXT, redacted BOOLEAN NOT NULL DEFAULT FALSE, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
       " error TEXT, created_at BIGINT NOT NULL, sent_at BIGINT);"
       "CREATE INDEX outbox_created ON outbox (created_at);"
       "CREATE INDEX outbox_to ON outbox (to_addr, created_at);",
       "CREATE TABLE outbox (id VARCHAR(64) PRIMARY KEY, kind VARCHAR(64) NOT NULL, to_addr VARCHAR(255) NOT"
       " NULL, subject LONGTEXT NOT NULL, body LONGTEXT, redacted BOOLEAN NOT NULL DEFAULT FALSE, status"
       " VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error LONGTEXT, created_at BIGINT NOT NULL,"
       " sent_at BIGINT, INDEX outbox_created (created_at), INDEX outbox_to (to_addr, created_at))"
       " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"},
  };
}

store::Migration queue_migration(int version) {
  // Rows left `queued` by the in-memory retries of older versions have no message to send.
  const char* common =
      "ALTER TABLE outbox ADD COLUMN message TEXT;"
      "ALTER TABLE outbox ADD COLUMN next_at BIGINT;"
      "ALTER TABLE outbox ADD COLUMN lease_until BIGINT;"
      "ALTER TABLE outbox ADD COLUMN claimed_by TEXT;"
      "ALTER TABLE outbox ADD COLUMN config_id TEXT;"
      "ALTER TABLE outbox ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;"
      "UPDATE outbox SET status = 'dead', error = 'queued before delivery was durable; never retried'"
      " WHERE status = 'queued';"
      "CREATE INDEX outbox_due ON outbox (status, next_at);"
      "CREATE INDEX outbox_status ON outbox (status, id);";
  const char* mysql =
      "ALTER TABLE outbox ADD COLUMN message LONGTEXT, ADD COLUMN next_at BIGINT, ADD COLUMN lease_until BIGINT,"
      " ADD COLUMN claimed_by VARCHAR(255), ADD COLUMN config_id VARCHAR(64),"
      " ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1, ADD INDEX outbox_due (status, next_at),"
      " ADD INDEX outbox_status (status, id);"
      "UPDATE outbox SET status = 'dead', error = 'queued before delivery was durable; never retried'"
      " WHERE status = 'queued';";
  return {version, "outbox_queue", common, common, mysql};
}

asio::awaitable<Status> insert(store::Database& db, Row row) {
  auto done = co_await db.exec(
      "INSERT INTO outbox (id, kind, to_addr, subject, body, redacted, status, attempts, error, created_at, sent_at,"
      " message, next_at, max_attempts, config_id)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
      {row.id, row.kind, row.to, row.subject, store::nullable(row.body), row.redacted, row.status, row.attempts,
       store::nullable(row.error), row.created_at, store::nullable(row.sent_at), store::nullable(row.message),
       store::nullable(row.next_at), row.max_attempts, store::nullable(row.config_id)});
  if (!done.ok()) co_return done.error();
  co_return Status{};
}

asio::awaitable<Status> finish(store::Database& db, std::string id, std::string status, int64_t attempts,
                               std::optional<std::string> error, std::optional<int64_t> sent_at) {
  auto done = co_await db.exec(
      "UPDATE outbox SET status = $2, attempts = $3, error = $4, sent_at = $5, message = NULL WHERE id = $1",
      {id, status, attempts, store::nullable(error), store::nullable(sent_at)});
  if (!done.ok()) co_return done.error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<Claimed>>> claim(store::Database& db, std::string node, int64_t now,
                                                    int64_t lease_ms, int limit) {
  bool pg = db.backend() == store::Backend::Postgres;
  std::string sql =
      std::string("UPDATE outbox SET status = 'sending', attempts = attempts + 1, lease_until = $2, claimed_by = $3"
                  " WHERE id IN (SELECT id FROM outbox WHERE (status = 'queued' AND next_at <= $1)"
                  " OR (status = 'sending' AND lease_until < $1) ORDER BY next_at LIMIT $4") +
      (pg ? " FOR UPDATE SKIP LOCKED" : "") +
      ") RETURNING id, kind, to_addr, message, attempts, max_attempts, config_id";
  store::Params params{now, now + lease_ms, node, int64_t(limit)};
  auto rows = co_await db.query(sql, std::move(params));
  if (!rows.ok()) co_return rows.error();
  std::vector<Claimed> out;
  for (const auto& r : *rows) {
    Claimed c;
    c.id = r.text(0);
    c.kind = r.text(1);
    c.to = r.text(2);
    c.message = r.opt_text(3);
    c.attempts = r.integer(4);
    c.max_attempts = r.integer(5);
    c.config_id = r.opt_text(6);
    out.push_back(std::move(c));
  }
  co_return out;
}

asio::awaitable<Result<bool>> settle(store::Database& db, std::string id, std::string node, int64_t attempt,
                                     std::string status, std::optional<std::string> error,
                                     std::optional<int64_t> sent_at, std::optional<int64_t> next_at) {
  bool keep_message = status == "queued";
  std::string sql = std::string("UPDATE outbox SET status = $4, error = $5, sent_at = $6, next_at = $7,"
                                " lease_until = NULL, claimed_by = NULL") +
                    (keep_message ? "" : ", message = NULL") +
                    " WHERE id = $1 AND claimed_by = $2 AND attempts = $3 AND status = 'sending'";
  store::Params params{id, node, attempt, status, store::nullable(error), store::nullable(sent_at), store::nullable(next_at)};
  auto n = co_await db.exec(sql, std::move(params));
  if (!n.ok()) co_return n.error();
  co_return *n > 0;
}

asio::awaitable<Result<std::vector<Row>>> recent(store::Database& db, std::string to, int limit) {
  std::string sql = std::string("SELECT ") + kColumns +
                    " FROM outbox WHERE ($1 = '' OR to_addr = $1) ORDER BY created_at DESC, id DESC LIMIT $2";
  store::Params params{to, int64_t(limit)};
  auto rows = co_await db.query(sql, std::move(params));
  if (!rows.ok()) co_return rows.error();
  std::vector<Row> out;
  for (const auto& r : *rows) out.push_back(read_row(r));
  co_return out;
}

asio::awaitable<Result<std::vector<Row>>> list(store::Database& db, std::string status, std::optional<std::string> before,
                                               int limit) {
  std::string sql = std::string("SELECT ") + kColumns +
                    " FROM outbox WHERE ($1 = '' OR status = $1) AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3";
  store::Params params{status, before.value_or(""), int64_t(limit)};
  auto rows = co_await db.query(sql, std::move(params));
  if (!rows.ok()) co_return rows.error();
  std::vector<Row> out;
  for (const auto& r : *rows) out.push_back(read_row(r));
  co_return out;
}

asio::awaitable<Result<int64_t>> purge(store::Database& db, int64_t before_ms) {
  co_return co_await db.exec("DELETE FROM outbox WHERE created_at < $1 AND status <> 'sending'", {before_ms});
}

}  // namespace harmar::notify::outbox
