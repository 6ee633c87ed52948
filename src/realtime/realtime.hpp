#pragma once
// Realtime (shared/API.md "Realtime — WebSocket GET /v1/ws"): what other modules use.
//
// Every channel has a history with a growing `seq`. Publishing appends to that history (in the
// database, so every node agrees on the order) and delivers the event to every subscriber on
// every node (through PubSub). A client that reconnects with `since` gets what it missed, in order,
// exactly once; if the history no longer reaches back that far it is told so explicitly.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "platform/module.hpp"

namespace harmar::realtime {

namespace asio = boost::asio;

// Internal channel keys. A user's own channels ("devices", "tasks", "user") are stored per user;
// shared channels ("conversation:{id}", "collection:{name}") under their own name.
std::string user_channel(std::string_view user_id, std::string_view name);

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Appends {type, data} to `channel` (an internal key) and fans it out; returns its seq once the
  // append is committed. Events of one node are appended in the order publish() was called.
  virtual asio::awaitable<Result<int64_t>> publish(std::string channel, std::string type, boost::json::object data) = 0;
  // Delivers {type, data} to the channel's current subscribers on every node without storing it:
  // no seq (the frame has none), never replayed by `since`. For what is stale a second later
  // (typing indicators, presence). At most once; may overtake or trail stored events.
  virtual asio::awaitable<Status> publish_ephemeral(std::string channel, std::string type, boost::json::object data) {
    co_return Error{501, "not_implemented", "ephemeral events are not supported"};
  }
};

// Whether a principal may subscribe to a shared channel, and which of its events it may see.
struct Access {
  bool allowed = false;
  // Called for every event on the channel; null means every event.
  std::function<bool(const boost::json::object& data)> filter;
};
using ChannelRule = std::function<asio::awaitable<Access>(const Principal&, std::string_view channel)>;

class Channels {
 public:
  virtual ~Channels() = default;
  // The rule for channels whose client-visible name starts with `prefix` ("conversation:").
  virtual void add_rule(std::string prefix, ChannelRule rule) = 0;
};

// Which users have sockets open on this node (users and their API keys; not devices). Cluster-wide
// presence is built on it by whoever watches (the IM module).
class Connections {
 public:
  virtual ~Connections() = default;
  // Called with (user_id, true) when a user's first socket on this node opens and (user_id,
  // false) when their last one closes; on the background event loop, in the order they happened.
  using Watcher = std::function<void(const std::string& user_id, bool online)>;
  virtual void watch(Watcher w) = 0;
  // Users with at least one socket open on this node now.
  virtual std::vector<std::string> online_users() const = 0;
};

// Provides Publisher, Channels and Connections (Services::find), serves /v1/ws, and turns the domain events
// device.* and task.* into events on their owner's "devices" and "tasks" channels.
platform::Module module();

}  // namespace harmar::realtime
