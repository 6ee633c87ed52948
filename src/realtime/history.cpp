#include "realtime/history.hpp"

namespace harmar::realtime {

std::vector<store::Migration> history_migrations() {
  const char* ddl =
      "CREATE TABLE rt_channels (channel TEXT PRIMARY KEY, seq BIGINT NOT NULL);"
      "CREATE TABLE rt_events (channel TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,"
      " created_at BIGINT NOT NULL, PRIMARY KEY (channel, seq));"
      "CREATE INDEX rt_events_created ON rt_events (created_at);";
  return {{1, "channel history", ddl, ddl}};
}

boost::asio::awaitable<Result<std::vector<int64_t>>> History::append(const std::vector<NewEvent>& events) {
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  std::vector<int64_t> seqs;
  seqs.reserve(events.size());
  for (const auto& e : events) {
    // One statement allocates the next seq atomically on both backends (the row lock, or
    // SQLite's single writer, serialises concurrent appends to one channel).
    auto next = co_await tx->query(
        "INSERT INTO rt_channels (channel, seq) VALUES ($1, 1) "
        "ON CONFLICT (channel) DO UPDATE SET seq = rt_channels.seq + 1 RETURNING seq",
        {e.channel});
    if (!next.ok()) co_return next.error();
    int64_t seq = next->front().integer(0);
    auto ins = co_await tx->exec("INSERT INTO rt_events (channel, seq, type, data, created_at) VALUES ($1, $2, $3, $4, $5)",
                                 {e.channel, seq, e.type, e.data, e.at_ms});
    if (!ins.ok()) co_return ins.error();
    seqs.push_back(seq);
  }
  auto committed = co_await tx->commit();
  if (!committed.ok()) co_return committed.error();
  co_return seqs;
}

boost::asio::awaitable<Result<std::vector<StoredEvent>>> History::read(const std::string& channel, int64_t after,
                                                                       int64_t upto, int limit) {
  auto rows = co_await db_.query(
      "SELECT seq, type, data, created_at FROM rt_events WHERE channel = $1 AND seq > $2 AND ($3 = 0 OR seq <= $3) "
      "ORDER BY seq LIMIT $4",
      {channel, after, upto, int64_t(limit)});
  if (!rows.ok()) co_return rows.error();
  std::vector<StoredEvent> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back({channel, r.integer(0), r.text(1), r.text(2), r.integer(3)});
  co_return out;
}

boost::asio::awaitable<Result<History::Bounds>> History::bounds(const std::string& channel) {
  auto rows = co_await db_.query(
      "SELECT (SELECT seq FROM rt_channels WHERE channel = $1), (SELECT MIN(seq) FROM rt_events WHERE channel = $1)",
      {channel});
  if (!rows.ok()) co_return rows.error();
  Bounds b;
  b.head = rows->front().integer(0);
  b.oldest = rows->front().integer(1);
  co_return b;
}

boost::asio::awaitable<Result<int64_t>> History::trim(int64_t before_ms, int64_t keep) {
  co_return co_await db_.exec(
      "DELETE FROM rt_events WHERE created_at < $1 AND seq <= "
      "(SELECT c.seq FROM rt_channels c WHERE c.channel = rt_events.channel) - $2",
      {before_ms, keep});
}

}  // namespace harmar::realtime
