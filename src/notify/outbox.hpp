#pragma once
// The outbox table: one row per mail, whatever became of it, and the durable queue that delivers
// them (notify/email_delivery.hpp). SQL only (see mailer.hpp for what is kept of a body).
//
// Statuses: queued (waiting for its next attempt at next_at) → sending (claimed by one node
// until lease_until) → sent | failed (refused for good: 5xx, TLS or AUTH) | dead (every attempt
// failed transiently). `logged` when no SMTP is configured. A queued row keeps its whole message
// sealed (secretbox under the server key) in `message`; a finished row keeps none.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::notify::outbox {

namespace asio = boost::asio;

struct Row {
  std::string id, kind, to, subject;
  std::optional<std::string> body;  // the text part, redacted for sensitive mail; absent if not kept
  bool redacted = false;
  std::string status;  // queued | sending | sent | failed | dead | logged
  int64_t attempts = 0;
  std::optional<std::string> error;
  int64_t created_at = 0;
  std::optional<int64_t> sent_at;
  // The queue (email module migrations).
  std::optional<std::string> message;  // sealed RFC 5322 message while queued
  std::optional<int64_t> next_at;
  int64_t max_attempts = 1;
  std::optional<std::string> config_id;  // the email config whose SMTP server delivers it
};

std::vector<store::Migration> migrations();
// The queue's columns, applied by the email module (its own migration namespace).
store::Migration queue_migration(int version);

asio::awaitable<Status> insert(store::Database& db, Row row);
asio::awaitable<Status> finish(store::Database& db, std::string id, std::string status, int64_t attempts,
                               std::optional<std::string> error, std::optional<int64_t> sent_at);

// A row this node now holds for one attempt (attempts already counts it).
struct Claimed {
  std::string id, kind, to;
  std::optional<std::string> message;
  int64_t attempts = 0;
  int64_t max_attempts = 1;
  std::optional<std::string> config_id;
};
// Claims up to `limit` due rows (queued with next_at <= now, or sending with an expired lease) for
// `node` until now + lease_ms. PostgreSQL: FOR UPDATE SKIP LOCKED, so nodes never take the same
// row; SQLite has one writer.
asio::awaitable<Result<std::vector<Claimed>>> claim(store::Database& db, std::string node, int64_t now,
                                                    int64_t lease_ms, int limit);
// Ends this node's attempt (fenced by node and attempt number: a node whose lease was taken over
// changes nothing). Terminal statuses drop the sealed message. false when the lease was lost.
asio::awaitable<Result<bool>> settle(store::Database& db, std::string id, std::string node, int64_t attempt,
                                     std::string status, std::optional<std::string> error,
                                     std::optional<int64_t> sent_at, std::optional<int64_t> next_at);

// The newest mails to `to` (all recipients when empty), newest first.
asio::awaitable<Result<std::vector<Row>>> recent(store::Database& db, std::string to, int limit);
// Rows with `status` (all when empty), newest first, older than the row `before` (a cursor: id).
asio::awaitable<Result<std::vector<Row>>> list(store::Database& db, std::string status, std::optional<std::string> before,
                                               int limit);
// Deletes rows created before `before_ms`; the number deleted.
asio::awaitable<Result<int64_t>> purge(store::Database& db, int64_t before_ms);

}  // namespace harmar::notify::outbox
