#pragma once
// Fan-out of domain events between modules and nodes. In-process by default; with a Redis URL
// every node sees every publish (Redis PUBLISH/SUBSCRIBE). Delivery is at-most-once and ordered
// per channel per publisher; durable history (for realtime `since`) is the realtime module's job.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

// Unsubscribes when destroyed. Once the destructor has returned on the subscriber's executor,
// the handler is not called again; destroyed from another thread, a call already running may
// still finish (the handler itself stays alive until then).
class Subscription {
 public:
  virtual ~Subscription() = default;
  // Completes once every message published from now on will be delivered: at once in-process;
  // with Redis once Redis has confirmed the SUBSCRIBE (503 `unavailable` if it has not within the
  // Redis timeout, e.g. while Redis is down). Await it before relying on "subscribe, then read
  // history" being gap-free.
  virtual asio::awaitable<Status> ready() { co_return Status{}; }
};

using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;

// Limits: a channel is 1..kMaxChannelBytes bytes, a payload at most kMaxPayloadBytes; a subscriber
// whose executor falls kMaxQueuedPerSubscriber messages behind loses the newer ones (logged).
// Messages to one subscriber are delivered in publish order (even on a multi-threaded executor:
// one call at a time per subscriber).
class PubSub {
 public:
  static constexpr std::size_t kMaxChannelBytes = 1024;
  static constexpr std::size_t kMaxPayloadBytes = 16 << 20;
  static constexpr std::size_t kMaxQueuedPerSubscriber = 10000;

  virtual ~PubSub() = default;
  // "" → in-process; "redis://[user:pass@]host:port[/db][?name=N&timeout=2s]" → Redis (see
  // store/redis.hpp). Opening Redis does not wait for the connection; ping() tells.
  static Result<std::unique_ptr<PubSub>> open(const std::string& redis_url);

  // 422 for an empty or oversized channel or payload; with Redis, 503 while it is unreachable.
  virtual asio::awaitable<Status> publish(std::string channel, std::string payload) = 0;
  // `handler` runs on `ex` (the subscriber's own event loop). A `channel` ending in '*' is a
  // prefix pattern ("conversation:*"); any other channel matches exactly. Throws
  // std::invalid_argument for an empty or oversized channel (a programming error).
  virtual std::unique_ptr<Subscription> subscribe(std::string channel, asio::any_io_executor ex,
                                                  MessageHandler handler) = 0;
  // With Redis: both connections (publish and subscribe) are up and Redis answers.
  virtual asio::awaitable<Status> ping() = 0;
};

}  // namespace harmar::store
