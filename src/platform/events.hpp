#pragma once
// Domain events: facts a module states ("task.completed", "device.offline") that others react to.
//
// Two ways to listen, for two kinds of listener:
//  - on_local(): runs once per event, on the node that published it, right after the publish
//    (notifications, webhooks, email: work that must not happen once per node);
//  - subscribe(): every node sees every event, through PubSub (realtime fan-out to sockets that
//    may be connected to any node).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/pubsub.hpp"

namespace harmar::platform {

struct DomainEvent {
  std::string type;     // "task.created", "device.offline", "message.new", ...
  std::string user_id;  // the user the event concerns (its owner); "" for system-wide events
  std::string subject;  // the id of what it is about (task id, device id, ...)
  boost::json::object data;
  int64_t at_ms = 0;  // set by publish() if 0

  std::string to_json() const;
  static std::optional<DomainEvent> from_json(std::string_view text);
};

class EventBus {
 public:
  using Handler = std::function<void(const DomainEvent&)>;

  explicit EventBus(store::PubSub& pubsub) : pubsub_(pubsub) {}

  // Runs local handlers, then publishes to every node. A PubSub failure is logged, not returned:
  // the fact already happened and local handlers already ran.
  boost::asio::awaitable<void> publish(DomainEvent e);

  // Runs `h` (on `ex`) for each event published on this node whose type starts with `type_prefix`.
  void on_local(std::string type_prefix, boost::asio::any_io_executor ex, Handler h);

  // Every node's events, delivered on `ex`. The PubSub channel is "events".
  std::unique_ptr<store::Subscription> subscribe(boost::asio::any_io_executor ex, Handler h);

 private:
  struct Local {
    std::string prefix;
    boost::asio::any_io_executor ex;
    Handler handler;
  };
  store::PubSub& pubsub_;
  std::mutex mu_;
  std::vector<Local> local_;
};

}  // namespace harmar::platform
