#pragma once
// The outbox table: one row per mail, whatever became of it. SQL only (see mailer.hpp for what
// is kept of a body).
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
  std::string status;  // queued | sent | failed | logged
  int64_t attempts = 0;
  std::optional<std::string> error;
  int64_t created_at = 0;
  std::optional<int64_t> sent_at;
};

std::vector<store::Migration> migrations();

asio::awaitable<Status> insert(store::Database& db, Row row);
asio::awaitable<Status> finish(store::Database& db, std::string id, std::string status, int64_t attempts,
                               std::optional<std::string> error, std::optional<int64_t> sent_at);
// The newest mails to `to` (all recipients when empty), newest first.
asio::awaitable<Result<std::vector<Row>>> recent(store::Database& db, std::string to, int limit);
// Deletes rows created before `before_ms`; the number deleted.
asio::awaitable<Result<int64_t>> purge(store::Database& db, int64_t before_ms);

}  // namespace harmar::notify::outbox
