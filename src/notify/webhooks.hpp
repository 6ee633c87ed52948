#pragma once
// Outgoing webhooks (docs/notifications.md "Webhooks"): a user registers URLs and the event
// types they want; each matching event becomes one delivery row per webhook, POSTed signed
//   Harmar-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
// and retried with exponential backoff until it is answered 2xx or runs out of attempts.
//
// Deliveries live in the webhook_deliveries table, not in memory and not in the task queue (the
// task queue hands work to devices; these are jobs the server runs itself): each node claims due
// rows with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so retries survive a restart, a
// crash mid-delivery is retried once the lease runs out, and two nodes never send one attempt
// twice.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::notify {

namespace asio = boost::asio;

struct Webhook {
  std::string id;
  std::string user_id;
  std::string url;
  std::string secret;  // never in a DTO except right after creation
  std::vector<std::string> event_types;  // or {"*"}
  std::string description;
  bool enabled = true;
  int64_t created_at = 0;
  int64_t updated_at = 0;

  // {id, url, event_types, description, enabled, created_at, updated_at}
  boost::json::object to_json() const;
};

struct Delivery {
  std::string id;
  std::string webhook_id;
  std::string user_id;
  std::string event_id;
  std::string event_type;
  std::string payload;  // the JSON body, exactly as signed and sent
  std::string status;   // pending | succeeded | failed
  int64_t attempts = 0;
  int64_t max_attempts = 0;
  int64_t next_attempt_at = 0;
  std::optional<int64_t> response_status;
  std::optional<std::string> error;
  std::optional<std::string> response_excerpt;
  std::optional<int64_t> duration_ms;
  int64_t created_at = 0;
  std::optional<int64_t> last_attempt_at;
  std::optional<int64_t> delivered_at;

  boost::json::object to_json() const;
};

// The event types a webhook may ask for ("*" is every one of them).
const std::vector<std::string>& webhook_event_types();

// The Harmar-Signature header value for `body` sent at `unix_s`.
std::string webhook_signature(const std::string& secret, int64_t unix_s, const std::string& body);
// Whether an address is one a webhook may reach without webhooks.allow_private_targets:
// false for loopback, private (RFC 1918, fc00::/7), link-local (cloud metadata), CGNAT,
// unspecified, multicast and reserved ranges, IPv4-mapped IPv6 of those included.
bool is_public_address(const std::string& ip);
// Validates a webhook URL: http(s), a host, no credentials, at most 2048 bytes; with
// `allow_private` false also no literal non-public address and no "localhost". The final check is
// at connect time, after DNS (net::ClientRequest::allow_address).
Status check_webhook_url(const std::string& url, bool allow_private);

struct WebhookOptions {
  bool allow_private = false;
  int64_t max_attempts = 8;
  int64_t retry_base_ms = 10'000;
  int64_t retry_max_ms = 3'600'000;
  int64_t timeout_ms = 10'000;
  int64_t concurrency = 8;
  int64_t poll_interval_ms = 2'000;
  int64_t max_per_user = 20;
  int64_t retention_ms = int64_t{7} * 24 * 3600 * 1000;
};

// The wait before attempt `attempt` + 1: retry_base doubled per attempt, capped at retry_max,
// plus up to a quarter more at random so failing deliveries do not retry in lockstep.
int64_t webhook_backoff_ms(const WebhookOptions& o, int64_t attempt);

struct WebhookInput {
  std::optional<std::string> url;
  std::optional<std::string> secret;
  std::optional<std::vector<std::string>> event_types;
  std::optional<std::string> description;
  std::optional<bool> enabled;
};

class Webhooks : public std::enable_shared_from_this<Webhooks> {
 public:
  Webhooks(store::Database& db, WebhookOptions opts) : db_(db), opts_(opts) {}

  // Answers the webhook with its secret (generated "whsec_…" unless one was given).
  asio::awaitable<Result<Webhook>> create(const Principal& who, WebhookInput in);
  asio::awaitable<Result<std::vector<Webhook>>> list(const Principal& who, std::optional<std::string> after, int limit);
  asio::awaitable<Result<Webhook>> get(const Principal& who, const std::string& id);
  asio::awaitable<Result<Webhook>> update(const Principal& who, const std::string& id, WebhookInput in);
  asio::awaitable<Status> remove(const Principal& who, const std::string& id);
  asio::awaitable<Result<std::vector<Delivery>>> deliveries(const Principal& who, const std::string& id,
                                                           std::optional<std::string> after, int limit);
  // Sends a finished (succeeded or failed) delivery again, from its first attempt; 409
  // `delivery_pending` while it is still being tried.
  asio::awaitable<Result<Delivery>> redeliver(const Principal& who, const std::string& id, const std::string& delivery_id);
  // Queues a `webhook.ping` delivery to this webhook alone.
  asio::awaitable<Result<Delivery>> ping(const Principal& who, const std::string& id);

  // Queues one delivery per enabled webhook of `user_id` that wants `type`; the number queued.
  // `event_id` is unique per event: queuing the same event twice queues nothing new.
  asio::awaitable<Result<int>> enqueue(std::string user_id, std::string event_id, std::string type,
                                       boost::json::object data);

  // Deletes finished deliveries older than the retention.
  asio::awaitable<Result<int64_t>> purge();

  // Runs the delivery loop on `ioc` until stop().
  void start(asio::io_context& ioc);
  void stop();
  // Wakes the loop now (after an enqueue on this node).
  void kick();

 private:
  asio::awaitable<void> attempt(Delivery d, Webhook w);
  asio::awaitable<void> loop();

  store::Database& db_;
  WebhookOptions opts_;
  std::shared_ptr<asio::steady_timer> timer_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> kicked_{false};
};

}  // namespace harmar::notify
