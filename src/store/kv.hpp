#pragma once
// A small shared key-value store with expiry: rate-limit counters, idempotency keys, locks,
// short-lived codes. In-process by default, Redis when configured, same semantics.
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

// Limits (422 `validation_failed` beyond them): keys 1..kMaxKeyBytes bytes, values at most
// kMaxValueBytes, 0 <= ttl_ms <= kMaxTtlMs. Keys are used verbatim (no prefix is added in Redis).
// incr on a value that is not a 64-bit integer, or that would overflow, is 409 `not_an_integer`.
// With Redis every call may fail with 503 `unavailable` (down, or no answer within its timeout).
class Kv {
 public:
  static constexpr std::size_t kMaxKeyBytes = 1024;
  static constexpr std::size_t kMaxValueBytes = 16 << 20;
  static constexpr int64_t kMaxTtlMs = int64_t{10} * 365 * 24 * 3600 * 1000;  // ten years

  virtual ~Kv() = default;
  // "" → in-process; "redis://[user:pass@]host:port[/db][?name=N&timeout=2s]" → Redis (see
  // store/redis.hpp). Opening Redis does not wait for the connection; ping() tells.
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
  // Whether the store answers (readiness checks); always OK in-process.
  virtual asio::awaitable<Status> ping() = 0;
};

}  // namespace harmar::store
