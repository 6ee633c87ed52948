#pragma once
// Fan-out of domain events between modules and nodes. In-process by default; with a Redis URL
// every node sees every publish (Redis PUBLISH/SUBSCRIBE). Delivery is at-most-once and ordered
// per channel per publisher; durable history (for realtime `since`) is the realtime module's job.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

// Unsubscribes when destroyed.
class Subscription {
 public:
  virtual ~Subscription() = default;
};

using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;

class PubSub {
 public:
  virtual ~PubSub() = default;
  // "" → in-process; "redis://host:port[/db]" → Redis.
  static Result<std::unique_ptr<PubSub>> open(const std::string& redis_url);

  virtual asio::awaitable<Status> publish(std::string channel, std::string payload) = 0;
  // `handler` runs on `ex` (the subscriber's own event loop). A `channel` ending in '*' is a
  // prefix pattern ("conversation:*").
  virtual std::unique_ptr<Subscription> subscribe(std::string channel, asio::any_io_executor ex,
                                                  MessageHandler handler) = 0;
  virtual asio::awaitable<Status> ping() = 0;
};

}  // namespace harmar::store
