#include "notify/outbox.hpp"

namespace harmar::notify::outbox {

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
       "CREATE INDEX outbox_to ON outbox (to_addr, created_at);"},
  };
}

asio::awaitable<Status> insert(store::Database& db, Row row) {
  auto done = co_await db.exec(
      "INSERT INTO outbox (id, kind, to_addr, subject, body, redacted, status, attempts, error, created_at, sent_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
      {row.id, row.kind, row.to, row.subject, store::nullable(row.body), row.redacted, row.status, row.attempts,
       store::nullable(row.error), row.created_at, store::nullable(row.sent_at)});
  if (!done.ok()) co_return done.error();
  co_return Status{};
}

asio::awaitable<Status> finish(store::Database& db, std::string id, std::string status, int64_t attempts,
                               std::optional<std::string> error, std::optional<int64_t> sent_at) {
  auto done = co_await db.exec("UPDATE outbox SET status = $2, attempts = $3, error = $4, sent_at = $5 WHERE id = $1",
                               {id, status, attempts, store::nullable(error), store::nullable(sent_at)});
  if (!done.ok()) co_return done.error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<Row>>> recent(store::Database& db, std::string to, int limit) {
  std::string sql = "SELECT id, kind, to_addr, subject, body, redacted, status, attempts, error, created_at, sent_at"
                    " FROM outbox WHERE ($1 = '' OR to_addr = $1) ORDER BY created_at DESC, id DESC LIMIT $2";
  store::Params params{to, int64_t(limit)};
  auto rows = co_await db.query(sql, std::move(params));
  if (!rows.ok()) co_return rows.error();
  std::vector<Row> out;
  for (const auto& r : *rows) {
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
    out.push_back(std::move(o));
  }
  co_return out;
}

asio::awaitable<Result<int64_t>> purge(store::Database& db, int64_t before_ms) {
  co_return co_await db.exec("DELETE FROM outbox WHERE created_at < $1", {before_ms});
}

}  // namespace harmar::notify::outbox
