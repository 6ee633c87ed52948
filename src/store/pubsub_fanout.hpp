#pragma once
// Internal to the store: the local half of every PubSub. A Fanout maps channels and prefix
// patterns to subscribers; each Subscriber queues its messages and drains them on its own
// executor, one at a time, in order. The in-process PubSub delivers publishes straight into it;
// the Redis PubSub feeds it from its one SUBSCRIBE connection.
#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/pubsub.hpp"

namespace harmar::store {

struct Message {
  std::string channel;
  std::string payload;
};
using MessagePtr = std::shared_ptr<const Message>;

class Subscriber : public std::enable_shared_from_this<Subscriber> {
 public:
  Subscriber(asio::any_io_executor ex, MessageHandler handler, std::string key);
  // From any thread; drops the message when the queue is full.
  void push(const MessagePtr& msg);
  // After this, queued messages are discarded and the handler is not called again (see Subscription).
  void deactivate() { active_.store(false); }
  const std::string& key() const { return key_; }

 private:
  void drain();

  asio::any_io_executor ex_;
  MessageHandler handler_;
  std::string key_;
  std::atomic<bool> active_{true};
  std::mutex mu_;
  std::deque<MessagePtr> queue_;
  bool scheduled_ = false;
  uint64_t dropped_ = 0;
};

class Fanout {
 public:
  // True if `sub` is the first subscriber of its key.
  bool add(const std::shared_ptr<Subscriber>& sub);
  // True if `sub` was the last subscriber of its key.
  bool remove(const Subscriber* sub);
  bool has(const std::string& key) const;
  std::vector<std::string> keys() const;

  // To every subscriber of the exact channel and of every prefix pattern the channel matches.
  void deliver(const MessagePtr& msg);
  // Only to the subscribers of the exact channel (Redis "message").
  void deliver_exact(const MessagePtr& msg);
  // Only to the subscribers of pattern `key` ("prefix*"; Redis "pmessage").
  void deliver_pattern(const std::string& key, const MessagePtr& msg);

 private:
  using List = std::vector<std::shared_ptr<Subscriber>>;
  static void push_all(const List& subs, const MessagePtr& msg);

  mutable std::mutex mu_;
  std::unordered_map<std::string, List> exact_;
  std::unordered_map<std::string, List> prefixes_;  // pattern without its '*'
  std::map<std::size_t, std::size_t> prefix_lengths_;  // length → number of prefixes of that length
};

// "foo:*" → true. Keys are the channel strings given to subscribe().
inline bool is_pattern(std::string_view key) { return !key.empty() && key.back() == '*'; }

// Throws std::invalid_argument for a channel subscribe() must refuse.
void check_subscribe_channel(const std::string& channel);
// 422 for a publish() the interface refuses.
Status check_publish(const std::string& channel, const std::string& payload);

// Defined in pubsub_redis.cpp.
Result<std::unique_ptr<PubSub>> open_redis_pubsub(const std::string& url);

}  // namespace harmar::store
