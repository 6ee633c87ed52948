#include "notify/inbox_repo.hpp"

#include <boost/json.hpp>

#include <fmt/format.h>

namespace harmar::notify::inbox_repo {

namespace js = boost::json;

namespace {

constexpr const char* kCols = "id, user_id, kind, title, body, data, read_at, created_at";
constexpr const char* kAnnCols = "id, title, body, data, user_ids, created_by, done, delivered, created_at, \"cursor\"";

js::object parse_object(const std::string& text) {
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

InboxMessage read_message(const store::Row& r) {
  InboxMessage m;
  m.id = r.text(0);
  m.user_id = r.text(1);
  m.kind = r.text(2);
  m.title = r.text(3);
  m.body = r.text(4);
  m.data = parse_object(r.text(5));
  m.read_at = r.opt_integer(6);
  m.created_at = r.integer(7);
  return m;
}

AnnouncementWork read_announcement(const store::Row& r) {
  AnnouncementWork w;
  w.a.id = r.text(0);
  w.a.title = r.text(1);
  w.a.body = r.text(2);
  w.a.data = parse_object(r.text(3));
  if (auto ids = r.opt_text(4)) {
    boost::system::error_code ec;
    js::value v = js::parse(*ids, ec);
    std::vector<std::string> list;
    if (!ec && v.is_array())
      for (const auto& x : v.as_array())
        if (x.is_string()) list.emplace_back(x.get_string());
    w.a.user_ids = std::move(list);
  }
  w.a.created_by = r.text(5);
  w.a.status = r.boolean(6) ? "done" : "pending";
  w.a.delivered = r.integer(7);
  w.a.created_at = r.integer(8);
  w.cursor = r.text(9);
  return w;
}

}  // namespace

asio::awaitable<Result<bool>> insert(Querier& q, const InboxMessage& m, const std::string& dedupe_key) {
  store::Param key = dedupe_key.empty() ? store::Param(nullptr) : store::Param(dedupe_key);
  auto n = co_await q.exec(
      "INSERT INTO inbox_messages (id, user_id, kind, title, body, data, read_at, created_at, dedupe_key)"
      " VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8) ON CONFLICT DO NOTHING",
      {m.id, m.user_id, m.kind, m.title, m.body, js::serialize(m.data), m.created_at, key});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

asio::awaitable<Result<std::vector<InboxMessage>>> list(Querier& q, const std::string& user_id,
                                                       const std::optional<std::string>& before, int64_t limit,
                                                       bool unread_only) {
  std::string sql = fmt::format("SELECT {} FROM inbox_messages WHERE user_id = $1 AND ($2 = '' OR id < $2){}"
                                " ORDER BY id DESC LIMIT $3",
                                kCols, unread_only ? " AND read_at IS NULL" : "");
  auto rows = co_await q.query(sql, {user_id, before.value_or(""), limit});
  if (!rows) co_return std::move(rows).error();
  std::vector<InboxMessage> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(read_message(r));
  co_return out;
}

asio::awaitable<Result<int64_t>> unread_count(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM inbox_messages WHERE user_id = $1 AND read_at IS NULL", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::optional<InboxMessage>>> find(Querier& q, const std::string& user_id, const std::string& id) {
  auto rows = co_await q.query(fmt::format("SELECT {} FROM inbox_messages WHERE id = $1 AND user_id = $2", kCols),
                               {id, user_id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<InboxMessage>{};
  co_return std::optional<InboxMessage>(read_message(rows->front()));
}

asio::awaitable<Result<bool>> mark_read(Querier& q, const std::string& user_id, const std::string& id, int64_t now) {
  auto rows = co_await q.query(
      "UPDATE inbox_messages SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2 RETURNING id",
      {id, user_id, now});
  if (!rows) co_return std::move(rows).error();
  co_return !rows->empty();
}

asio::awaitable<Result<int64_t>> mark_all_read(Querier& q, const std::string& user_id, int64_t now) {
  co_return co_await q.exec("UPDATE inbox_messages SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
                            {user_id, now});
}

asio::awaitable<Result<bool>> remove(Querier& q, const std::string& user_id, const std::string& id) {
  auto n = co_await q.exec("DELETE FROM inbox_messages WHERE id = $1 AND user_id = $2", {id, user_id});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

asio::awaitable<Result<int64_t>> purge(Querier& q, int64_t before_ms) {
  auto done = co_await q.exec("DELETE FROM inbox_announcements WHERE done = TRUE AND created_at < $1", {before_ms});
  if (!done) co_return std::move(done).error();
  co_return co_await q.exec("DELETE FROM inbox_messages WHERE created_at < $1", {before_ms});
}

asio::awaitable<Result<std::vector<std::string>>> users_over(Querier& q, int64_t keep, int64_t limit) {
  auto rows = co_await q.query(
      "SELECT user_id FROM inbox_messages GROUP BY user_id HAVING COUNT(*) > $1 ORDER BY user_id LIMIT $2", {keep, limit});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> out;
  for (const auto& r : *rows) out.push_back(r.text(0));
  co_return out;
}

asio::awaitable<Result<int64_t>> trim_user(Querier& q, const std::string& user_id, int64_t keep) {
  co_return co_await q.exec(
      "DELETE FROM inbox_messages WHERE user_id = $1 AND id < (SELECT id FROM inbox_messages WHERE user_id = $1"
      " ORDER BY id DESC LIMIT 1 OFFSET $2)",
      {user_id, keep - 1});
}

asio::awaitable<Result<Preferences>> preferences(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT kind, inbox, email FROM inbox_preferences WHERE user_id = $1", {user_id});
  if (!rows) co_return std::move(rows).error();
  Preferences out;
  for (const auto& r : *rows) out[r.text(0)] = ChannelChoice{r.boolean(1), r.boolean(2)};
  co_return out;
}

asio::awaitable<Status> set_preference(Querier& q, const std::string& user_id, const std::string& kind,
                                       ChannelChoice c, int64_t now) {
  auto n = co_await q.exec(
      "INSERT INTO inbox_preferences (user_id, kind, inbox, email, updated_at) VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT (user_id, kind) DO UPDATE SET inbox = $3, email = $4, updated_at = $5",
      {user_id, kind, c.inbox, c.email, now});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Status> insert_announcement(Querier& q, const Announcement& a) {
  store::Param ids(nullptr);
  if (a.user_ids) {
    js::array arr;
    for (const auto& u : *a.user_ids) arr.emplace_back(u);
    ids = js::serialize(arr);
  }
  auto n = co_await q.exec(
      "INSERT INTO inbox_announcements (id, title, body, data, user_ids, created_by, \"cursor\", delivered, done,"
      " lease_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, '', 0, FALSE, 0, $7)",
      {a.id, a.title, a.body, js::serialize(a.data), ids, a.created_by, a.created_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<AnnouncementWork>>> claim_announcement(store::Database& db, int64_t now,
                                                                           int64_t lease_until) {
  bool pg = db.backend() == store::Backend::Postgres;
  std::string sql = fmt::format(
      "UPDATE inbox_announcements SET lease_until = $2 WHERE id IN (SELECT id FROM inbox_announcements"
      " WHERE done = FALSE AND lease_until < $1 ORDER BY id LIMIT 1{}) AND lease_until < $1 RETURNING {}",
      pg ? " FOR UPDATE SKIP LOCKED" : "", kAnnCols);
  auto rows = co_await db.query(sql, {now, lease_until});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<AnnouncementWork>{};
  co_return std::optional<AnnouncementWork>(read_announcement(rows->front()));
}

asio::awaitable<Status> advance_announcement(Querier& q, const std::string& id, const std::string& cursor,
                                             int64_t delivered, bool done) {
  auto n = co_await q.exec(
      "UPDATE inbox_announcements SET \"cursor\" = $2, delivered = delivered + $3, done = $4, lease_until = 0"
      " WHERE id = $1",
      {id, cursor, delivered, done});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

}  // namespace harmar::notify::inbox_repo
