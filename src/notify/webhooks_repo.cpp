#include "notify/webhooks_repo.hpp"

#include <boost/json.hpp>

#include <fmt/format.h>

namespace harmar::notify::webhooks_repo {

namespace js = boost::json;

namespace {

constexpr const char* kCols = "id, user_id, url, secret, event_types, description, enabled, created_at, updated_at";
constexpr const char* kDeliveryCols =
    "id, webhook_id, user_id, event_id, event_type, payload, status, attempts, max_attempts, next_attempt_at,"
    " response_status, error, response_excerpt, duration_ms, created_at, last_attempt_at, delivered_at";

std::string join_types(const std::vector<std::string>& types) {
  js::array a;
  for (const auto& t : types) a.emplace_back(t);
  return js::serialize(a);
}

std::vector<std::string> split_types(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (!ec && v.is_array())
    for (const auto& x : v.as_array())
      if (x.is_string()) out.emplace_back(x.get_string());
  return out;
}

Webhook read_webhook(const store::Row& r) {
  Webhook w;
  w.id = r.text(0);
  w.user_id = r.text(1);
  w.url = r.text(2);
  w.secret = r.text(3);
  w.event_types = split_types(r.text(4));
  w.description = r.text(5);
  w.enabled = r.boolean(6);
  w.created_at = r.integer(7);
  w.updated_at = r.integer(8);
  return w;
}

Delivery read_delivery(const store::Row& r) {
  Delivery d;
  d.id = r.text(0);
  d.webhook_id = r.text(1);
  d.user_id = r.text(2);
  d.event_id = r.text(3);
  d.event_type = r.text(4);
  d.payload = r.text(5);
  d.status = r.text(6);
  d.attempts = r.integer(7);
  d.max_attempts = r.integer(8);
  d.next_attempt_at = r.integer(9);
  d.response_status = r.opt_integer(10);
  d.error = r.opt_text(11);
  d.response_excerpt = r.opt_text(12);
  d.duration_ms = r.opt_integer(13);
  d.created_at = r.integer(14);
  d.last_attempt_at = r.opt_integer(15);
  d.delivered_at = r.opt_integer(16);
  return d;
}

Result<std::vector<Webhook>> webhooks(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  std::vector<Webhook> out;
  for (const auto& r : *rows) out.push_back(read_webhook(r));
  return out;
}

Result<std::vector<Delivery>> deliveries_of(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  std::vector<Delivery> out;
  for (const auto& r : *rows) out.push_back(read_delivery(r));
  return out;
}

}  // namespace

asio::awaitable<Status> insert(Querier& q, const Webhook& w) {
  auto n = co_await q.exec(
      "INSERT INTO webhooks (id, user_id, url, secret, event_types, description, enabled, created_at, updated_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      {w.id, w.user_id, w.url, w.secret, join_types(w.event_types), w.description, w.enabled, w.created_at, w.updated_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<int64_t>> count(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM webhooks WHERE user_id = $1", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::vector<Webhook>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& after, int64_t limit) {
  auto rows = co_await q.query(
      fmt::format("SELECT {} FROM webhooks WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3", kCols),
      {user_id, after.value_or(""), limit});
  co_return webhooks(std::move(rows));
}

asio::awaitable<Result<std::vector<Webhook>>> enabled(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(
      fmt::format("SELECT {} FROM webhooks WHERE user_id = $1 AND enabled = TRUE ORDER BY id LIMIT 1000", kCols), {user_id});
  co_return webhooks(std::move(rows));
}

asio::awaitable<Result<std::optional<Webhook>>> find(Querier& q, const std::string& user_id, const std::string& id) {
  auto rows = co_await q.query(fmt::format("SELECT {} FROM webhooks WHERE id = $1 AND ($2 = '' OR user_id = $2)", kCols),
                               {id, user_id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Webhook>{};
  co_return std::optional<Webhook>(read_webhook(rows->front()));
}

asio::awaitable<Status> update(Querier& q, const Webhook& w) {
  auto n = co_await q.exec(
      "UPDATE webhooks SET url = $3, secret = $4, event_types = $5, description = $6, enabled = $7, updated_at = $8"
      " WHERE id = $1 AND user_id = $2",
      {w.id, w.user_id, w.url, w.secret, join_types(w.event_types), w.description, w.enabled, w.updated_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<bool>> remove(Querier& q, const std::string& user_id, const std::string& id) {
  auto n = co_await q.exec("DELETE FROM webhooks WHERE id = $1 AND user_id = $2", {id, user_id});
  if (!n) co_return std::move(n).error();
  if (*n == 0) co_return false;
  auto d = co_await q.exec("DELETE FROM webhook_deliveries WHERE webhook_id = $1", {id});
  if (!d) co_return std::move(d).error();
  co_return true;
}

asio::awaitable<Result<bool>> insert_delivery(Querier& q, const Delivery& d) {
  auto n = co_await q.exec(
      "INSERT INTO webhook_deliveries (id, webhook_id, user_id, event_id, event_type, payload, status, attempts,"
      " max_attempts, next_attempt_at, lease_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, 0, $9)"
      " ON CONFLICT DO NOTHING",
      {d.id, d.webhook_id, d.user_id, d.event_id, d.event_type, d.payload, d.max_attempts, d.next_attempt_at, d.created_at});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

asio::awaitable<Result<std::vector<Delivery>>> deliveries(Querier& q, const std::string& webhook_id,
                                                         const std::optional<std::string>& after, int64_t limit) {
  auto rows = co_await q.query(
      fmt::format("SELECT {} FROM webhook_deliveries WHERE webhook_id = $1 AND ($2 = '' OR id < $2)"
                  " ORDER BY id DESC LIMIT $3",
                  kDeliveryCols),
      {webhook_id, after.value_or(""), limit});
  co_return deliveries_of(std::move(rows));
}

asio::awaitable<Result<std::vector<Delivery>>> claim(store::Database& db, int64_t now, int64_t lease_until, int64_t limit) {
  bool pg = db.backend() == store::Backend::Postgres;
  auto rows = co_await db.query(
      fmt::format("UPDATE webhook_deliveries SET lease_until = $2, attempts = attempts + 1, last_attempt_at = $1"
                  " WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1"
                  " AND lease_until < $1 ORDER BY next_attempt_at LIMIT $3{})"
                  " AND status = 'pending' AND lease_until < $1 RETURNING {}",
                  pg ? " FOR UPDATE SKIP LOCKED" : "", kDeliveryCols),
      {now, lease_until, limit});
  co_return deliveries_of(std::move(rows));
}

asio::awaitable<Status> finish_attempt(Querier& q, const Delivery& d) {
  auto n = co_await q.exec(
      "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, lease_until = 0, response_status = $5,"
      " error = $6, response_excerpt = $7, duration_ms = $8, delivered_at = $9"
      " WHERE id = $1 AND attempts = $2 AND status = 'pending'",
      {d.id, d.attempts, d.status, d.next_attempt_at, store::nullable(d.response_status), store::nullable(d.error),
       store::nullable(d.response_excerpt), store::nullable(d.duration_ms), store::nullable(d.delivered_at)});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<Delivery>>> find_delivery(Querier& q, const std::string& webhook_id,
                                                              const std::string& id) {
  auto rows = co_await q.query(
      fmt::format("SELECT {} FROM webhook_deliveries WHERE id = $1 AND webhook_id = $2", kDeliveryCols), {id, webhook_id});
  auto out = deliveries_of(std::move(rows));
  if (!out) co_return std::move(out).error();
  if (out->empty()) co_return std::optional<Delivery>{};
  co_return std::optional<Delivery>(std::move(out->front()));
}

asio::awaitable<Result<std::optional<Delivery>>> requeue(Querier& q, const std::string& webhook_id,
                                                        const std::string& id, int64_t now) {
  auto rows = co_await q.query(
      fmt::format("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3, lease_until = 0,"
                  " response_status = NULL, error = NULL, response_excerpt = NULL, duration_ms = NULL,"
                  " delivered_at = NULL WHERE id = $1 AND webhook_id = $2 AND status <> 'pending' RETURNING {}",
                  kDeliveryCols),
      {id, webhook_id, now});
  auto out = deliveries_of(std::move(rows));
  if (!out) co_return std::move(out).error();
  if (out->empty()) co_return std::optional<Delivery>{};
  co_return std::optional<Delivery>(std::move(out->front()));
}

asio::awaitable<Result<int64_t>> purge(Querier& q, int64_t before_ms) {
  co_return co_await q.exec("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1", {before_ms});
}

}  // namespace harmar::notify::webhooks_repo
