#include "realtime/history.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string_view>

namespace harmar::realtime {

namespace {
constexpr std::size_t kEventsPerInsert = 64;
}  // namespace

std::vector<store::Migration> history_migrations() {
  const char* ddl =
      "CREATE TABLE rt_channels (channel TEXT PRIMARY KEY, seq BIGINT NOT NULL);"
      "CREATE TABLE rt_events (channel TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,"
      " created_at BIGINT NOT NULL, PRIMARY KEY (channel, seq));"
      "CREATE INDEX rt_events_created ON rt_events (created_at);";
  const char* mysql =
      "CREATE TABLE rt_channels (channel VARCHAR(255) PRIMARY KEY, seq BIGINT NOT NULL) ENGINE=InnoDB DEFAULT"
      " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
      "CREATE TABLE rt_events (channel VARCHAR(255) NOT NULL, seq BIGINT NOT NULL, type VARCHAR(255) NOT NULL,"
      " data LONGTEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (channel, seq), INDEX rt_events_created"
      " (created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";
  return {{1, "channel history", ddl, ddl, mysql}};
}

boost::asio::awaitable<Result<std::vector<int64_t>>> History::append(const std::vector<NewEvent>& events) {
  // Each channel's row is locked (PostgreSQL) from its seq allocation to the commit. Allocating in
  // channel-name order, one statement per channel, keeps two nodes appending batches that share
  // channels from deadlocking (which would lose the whole batch).
  std::map<std::string_view, std::vector<std::size_t>> by_channel;
  for (std::size_t i = 0; i < events.size(); ++i) by_channel[events[i].channel].push_back(i);
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  std::vector<int64_t> seqs(events.size(), 0);
  for (const auto& [channel, indexes] : by_channel) {
    int64_t n = static_cast<int64_t>(indexes.size());
    std::string name(channel);
    auto last = co_await tx->query(
        "INSERT INTO rt_channels (channel, seq) VALUES ($1, $2) "
        "ON CONFLICT (channel) DO UPDATE SET seq = rt_channels.seq + $2 RETURNING seq",
        {name, n});
    if (!last.ok()) co_return last.error();
    int64_t first = last->front().integer(0) - n + 1;
    for (std::size_t k = 0; k < indexes.size(); ++k) seqs[indexes[k]] = first + static_cast<int64_t>(k);
  }
  // Several rows per statement, in power-of-two counts so that each connection prepares only a
  // few statements: a batch of events costs the database a handful of statements, not one each.
  for (std::size_t i = 0; i < events.size();) {
    std::size_t n = 1;
    while (n * 2 <= std::min<std::size_t>(events.size() - i, kEventsPerInsert)) n *= 2;
    std::string sql = "INSERT INTO rt_events (channel, seq, type, data, created_at) VALUES ";
    store::Params params;
    params.reserve(n * 5);
    for (std::size_t k = 0; k < n; ++k) {
      const auto& e = events[i + k];
      sql += fmt::format("{}(${}, ${}, ${}, ${}, ${})", k ? ", " : "", 5 * k + 1, 5 * k + 2, 5 * k + 3, 5 * k + 4, 5 * k + 5);
      params.insert(params.end(), {e.channel, seqs[i + k], e.type, e.data, e.at_ms});
    }
    auto ins = co_await tx->exec(sql, std::move(params));
    if (!ins.ok()) co_return ins.error();
    i += n;
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
