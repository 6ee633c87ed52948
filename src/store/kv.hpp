#pragma once
// A small shared key-value store with expiry: rate-limit counters, idempotency keys, locks,
// short-lived codes. In-process by default, Redis when configured, same semantics.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

class Kv {
 public:
  virtual ~Kv() = default;
  // "" → in-process; "redis://host:port[/db]" → Redis.
  static Result<std::unique_ptr<Kv>> open(const std::string& redis_url);

  virtual asio::awaitable<Result<std::optional<std::string>>> get(std::string key) = 0;
  // ttl_ms == 0: no expiry.
  virtual asio::awaitable<Status> set(std::string key, std::string value, int64_t ttl_ms = 0) = 0;
  // Sets only if absent; true if this call set it (locks, idempotency keys).
  virtual asio::awaitable<Result<bool>> set_if_absent(std::string key, std::string value, int64_t ttl_ms) = 0;
  // True if the key existed.
  virtual asio::awaitable<Result<bool>> del(std::string key) = 0;
  // Adds `by` and returns the new value; a key created by this call expires after ttl_ms (if > 0).
  virtual asio::awaitable<Result<int64_t>> incr(std::string key, int64_t by = 1, int64_t ttl_ms = 0) = 0;
  // Remaining time to live in ms; nullopt if the key is absent or has no expiry.
  virtual asio::awaitable<Result<std::optional<int64_t>>> ttl(std::string key) = 0;
};

}  // namespace harmar::store
