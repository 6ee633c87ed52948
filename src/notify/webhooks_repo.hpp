#pragma once
// The SQL of webhooks and their deliveries (tables webhooks, webhook_deliveries). Times are Unix ms.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "notify/webhooks.hpp"
#include "store/sql.hpp"

namespace harmar::notify::webhooks_repo {

namespace asio = boost::asio;
using store::Querier;

asio::awaitable<Status> insert(Querier& q, const Webhook& w);
asio::awaitable<Result<int64_t>> count(Querier& q, const std::string& user_id);
asio::awaitable<Result<std::vector<Webhook>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& after, int64_t limit);
// The enabled webhooks of a user (every event type; the caller filters).
asio::awaitable<Result<std::vector<Webhook>>> enabled(Querier& q, const std::string& user_id);
// By id; `user_id` "" finds any user's (the delivery worker).
asio::awaitable<Result<std::optional<Webhook>>> find(Querier& q, const std::string& user_id, const std::string& id);
asio::awaitable<Status> update(Querier& q, const Webhook& w);
asio::awaitable<Result<bool>> remove(Querier& q, const std::string& user_id, const std::string& id);

// Inserts unless (webhook_id, event_id) exists; true when inserted.
asio::awaitable<Result<bool>> insert_delivery(Querier& q, const Delivery& d);
asio::awaitable<Result<std::vector<Delivery>>> deliveries(Querier& q, const std::string& webhook_id,
                                                         const std::optional<std::string>& after, int64_t limit);
// Leases up to `limit` pending deliveries due at `now` until `lease_until`, counting the attempt.
asio::awaitable<Result<std::vector<Delivery>>> claim(store::Database& db, int64_t now, int64_t lease_until, int64_t limit);
// Records an attempt's outcome; only while the claim (its attempt number) still holds.
asio::awaitable<Status> finish_attempt(Querier& q, const Delivery& d);
asio::awaitable<Result<std::optional<Delivery>>> find_delivery(Querier& q, const std::string& webhook_id,
                                                              const std::string& id);
// Queues a finished delivery again from its first attempt; nullopt when there is no such finished
// delivery of that webhook.
asio::awaitable<Result<std::optional<Delivery>>> requeue(Querier& q, const std::string& webhook_id,
                                                        const std::string& id, int64_t now);
asio::awaitable<Result<int64_t>> purge(Querier& q, int64_t before_ms);

}  // namespace harmar::notify::webhooks_repo
