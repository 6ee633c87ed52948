// The in-process PubSub, and PubSub::open.
#include "store/pubsub.hpp"

#include "store/pubsub_fanout.hpp"

namespace harmar::store {

namespace {

class LocalSubscription final : public Subscription {
 public:
  LocalSubscription(std::shared_ptr<Fanout> fanout, std::shared_ptr<Subscriber> sub)
      : fanout_(std::move(fanout)), sub_(std::move(sub)) {}
  ~LocalSubscription() override {
    sub_->deactivate();
    fanout_->remove(sub_.get());
  }

 private:
  std::shared_ptr<Fanout> fanout_;
  std::shared_ptr<Subscriber> sub_;
};

class LocalPubSub final : public PubSub {
 public:
  asio::awaitable<Status> publish(std::string channel, std::string payload) override {
    if (auto st = check_publish(channel, payload); !st.ok()) co_return st;
    fanout_->deliver(std::make_shared<const Message>(Message{std::move(channel), std::move(payload)}));
    co_return Status{};
  }

  std::unique_ptr<Subscription> subscribe(std::string channel, asio::any_io_executor ex,
                                          MessageHandler handler) override {
    check_subscribe_channel(channel);
    auto sub = std::make_shared<Subscriber>(std::move(ex), std::move(handler), std::move(channel));
    fanout_->add(sub);
    return std::make_unique<LocalSubscription>(fanout_, std::move(sub));
  }

  asio::awaitable<Status> ping() override { co_return Status{}; }

 private:
  // Shared with the subscriptions, which may outlive this object.
  std::shared_ptr<Fanout> fanout_ = std::make_shared<Fanout>();
};

}  // namespace

Result<std::unique_ptr<PubSub>> PubSub::open(const std::string& redis_url) {
  if (redis_url.empty()) return std::unique_ptr<PubSub>(std::make_unique<LocalPubSub>());
  return open_redis_pubsub(redis_url);
}

}  // namespace harmar::store
