#include "store/pubsub_fanout.hpp"

#include <boost/asio/post.hpp>

#include <stdexcept>

#include "core/log.hpp"

namespace harmar::store {

namespace {
// Messages one drain delivers before yielding its executor to other work.
constexpr std::size_t kDrainBatch = 64;
}  // namespace

Subscriber::Subscriber(asio::any_io_executor ex, MessageHandler handler, std::string key)
    : ex_(std::move(ex)), handler_(std::move(handler)), key_(std::move(key)) {}

void Subscriber::push(const MessagePtr& msg) {
  if (!active_.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(mu_);
  if (queue_.size() >= PubSub::kMaxQueuedPerSubscriber) {
    if (dropped_++ % 1000 == 0) {
      log::get("store")->warn("pubsub subscriber of '{}' is too slow: {} messages dropped", key_, dropped_);
    }
    return;
  }
  queue_.push_back(msg);
  if (!scheduled_) {
    scheduled_ = true;
    asio::post(ex_, [self = shared_from_this()] { self->drain(); });
  }
}

void Subscriber::drain() {
  std::deque<MessagePtr> batch;
  {
    std::lock_guard lock(mu_);
    std::size_t n = std::min(kDrainBatch, queue_.size());
    batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
    queue_.erase(queue_.begin(), queue_.begin() + n);
  }
  for (const auto& msg : batch) {
    if (!active_.load()) break;
    try {
      handler_(msg->channel, msg->payload);
    } catch (const std::exception& e) {
      // A throwing handler must not take the subscriber's event loop down with it.
      log::get("store")->error("pubsub handler for '{}' threw: {}", key_, e.what());
    }
  }
  std::lock_guard lock(mu_);
  if (queue_.empty() || !active_.load()) {
    scheduled_ = false;
    queue_.clear();
    return;
  }
  asio::post(ex_, [self = shared_from_this()] { self->drain(); });
}

bool Fanout::add(const std::shared_ptr<Subscriber>& sub) {
  const std::string& key = sub->key();
  std::lock_guard lock(mu_);
  if (is_pattern(key)) {
    std::string prefix = key.substr(0, key.size() - 1);
    auto& list = prefixes_[prefix];
    if (list.empty()) ++prefix_lengths_[prefix.size()];
    list.push_back(sub);
    return list.size() == 1;
  }
  auto& list = exact_[key];
  list.push_back(sub);
  return list.size() == 1;
}

bool Fanout::remove(const Subscriber* sub) {
  const std::string& key = sub->key();
  std::lock_guard lock(mu_);
  bool pattern = is_pattern(key);
  auto& map = pattern ? prefixes_ : exact_;
  auto it = map.find(pattern ? key.substr(0, key.size() - 1) : key);
  if (it == map.end()) return false;
  auto& list = it->second;
  std::erase_if(list, [&](const auto& s) { return s.get() == sub; });
  if (!list.empty()) return false;
  if (pattern) {
    auto len = prefix_lengths_.find(it->first.size());
    if (--len->second == 0) prefix_lengths_.erase(len);
  }
  map.erase(it);
  return true;
}

bool Fanout::has(const std::string& key) const {
  std::lock_guard lock(mu_);
  if (is_pattern(key)) return prefixes_.contains(key.substr(0, key.size() - 1));
  return exact_.contains(key);
}

std::vector<std::string> Fanout::keys() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(exact_.size() + prefixes_.size());
  for (const auto& [k, _] : exact_) out.push_back(k);
  for (const auto& [k, _] : prefixes_) out.push_back(k + "*");
  return out;
}

void Fanout::push_all(const List& subs, const MessagePtr& msg) {
  for (const auto& s : subs) s->push(msg);
}

void Fanout::deliver(const MessagePtr& msg) {
  std::lock_guard lock(mu_);
  if (auto it = exact_.find(msg->channel); it != exact_.end()) push_all(it->second, msg);
  // One hash lookup per distinct prefix length rather than a scan of every pattern.
  std::string_view channel = msg->channel;
  for (const auto& [len, _] : prefix_lengths_) {
    if (len > channel.size()) break;
    if (auto it = prefixes_.find(std::string(channel.substr(0, len))); it != prefixes_.end()) {
      push_all(it->second, msg);
    }
  }
}

void Fanout::deliver_exact(const MessagePtr& msg) {
  std::lock_guard lock(mu_);
  if (auto it = exact_.find(msg->channel); it != exact_.end()) push_all(it->second, msg);
}

void Fanout::deliver_pattern(const std::string& key, const MessagePtr& msg) {
  if (!is_pattern(key)) return;
  std::lock_guard lock(mu_);
  if (auto it = prefixes_.find(key.substr(0, key.size() - 1)); it != prefixes_.end()) push_all(it->second, msg);
}

void check_subscribe_channel(const std::string& channel) {
  if (channel.empty() || channel.size() > PubSub::kMaxChannelBytes) {
    throw std::invalid_argument("pubsub channel must be 1.." + std::to_string(PubSub::kMaxChannelBytes) + " bytes");
  }
}

Status check_publish(const std::string& channel, const std::string& payload) {
  if (channel.empty() || channel.size() > PubSub::kMaxChannelBytes) {
    return Error::validation("pubsub channel must be 1.." + std::to_string(PubSub::kMaxChannelBytes) + " bytes");
  }
  if (payload.size() > PubSub::kMaxPayloadBytes) {
    return Error::validation("pubsub payload is larger than " + std::to_string(PubSub::kMaxPayloadBytes) + " bytes");
  }
  return {};
}

}  // namespace harmar::store
