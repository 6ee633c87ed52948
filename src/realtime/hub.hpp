#pragma once
// Internal to src/realtime: the pieces behind Publisher and /v1/ws.
//
//   publish() ──▶ Appender (one writer, batches) ──▶ History (DB: seq per channel)
//                                   └──▶ PubSub "rt:{key}" ──▶ Hub of every worker on every node
//                                                               └──▶ Session.deliver() ──▶ socket
//
// A Hub belongs to one worker (event loop): it holds which of that worker's sockets listen to
// which channel, with one PubSub subscription per channel per worker. Everything a Session does
// happens on its worker's thread, so its state needs no locks.
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/metrics.hpp"
#include "net/websocket.hpp"
#include "realtime/history.hpp"
#include "realtime/realtime.hpp"
#include "store/pubsub.hpp"

namespace harmar::realtime::detail {

// The frame a client receives for an event; the same bytes whether live or replayed.
std::string make_frame(std::string_view client_channel, int64_t seq, std::string_view type, std::string_view data_json,
                       int64_t at_ms);
// The frame of an ephemeral event: as make_frame, without a seq.
std::string make_ephemeral_frame(std::string_view client_channel, std::string_view type, std::string_view data_json,
                                 int64_t at_ms);
// The name a client uses for an internal key ("u/{id}/tasks" → "tasks").
std::string client_name(std::string_view key);
// What travels on PubSub: "{seq}\n{frame}"; seq 0 marks an ephemeral event.
std::string wire(int64_t seq, const std::string& frame);

// Appends events in the order they are published, batching what queues up meanwhile into one
// transaction, then fans each out on PubSub. Runs on the background event loop.
class Appender final : public Publisher, public std::enable_shared_from_this<Appender> {
 public:
  Appender(store::Database& db, store::PubSub& pubsub, asio::io_context& background, std::size_t max_queue);
  asio::awaitable<Result<int64_t>> publish(std::string channel, std::string type, boost::json::object data) override;
  asio::awaitable<Status> publish_ephemeral(std::string channel, std::string type, boost::json::object data) override;
  void start();
  void stop();

 private:
  struct Pending;
  asio::awaitable<void> run();
  History history_;
  store::PubSub& pubsub_;
  asio::io_context& background_;
  std::size_t max_queue_;
  std::mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_;
  bool stopped_ = false;
  asio::steady_timer wake_;
};

class ChannelRules final : public Channels {
 public:
  void add_rule(std::string prefix, ChannelRule rule) override;
  // The rule for a shared channel's client name, or nullptr.
  const ChannelRule* find(std::string_view name) const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, ChannelRule>> rules_;
};

// Counts each user's open sockets on this node and tells watchers about 0 <-> 1 changes.
class ConnectionCounter final : public Connections {
 public:
  explicit ConnectionCounter(asio::any_io_executor background) : background_(std::move(background)) {}
  void watch(Watcher w) override;
  std::vector<std::string> online_users() const override;
  void opened(const std::string& user_id);
  void closed(const std::string& user_id);

 private:
  void tell(const std::string& user_id, bool online);  // with mu_ held, so posts keep their order
  asio::any_io_executor background_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> open_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
};

// A live event as it reaches the sessions of one worker; its data is parsed at most once, for
// the sessions whose subscription has a filter, and its WebSocket frame is encoded once, for all.
class LiveEvent {
 public:
  LiveEvent(int64_t seq, std::string_view frame) : seq(seq), frame(frame) {}
  // The event's data object, or nullptr if the frame has none.
  const boost::json::object* data() const;
  // The frame as it goes on the wire, shared by every socket it is sent to.
  const net::WebSocket::Frame& ws_frame() const;
  int64_t seq;  // 0 for an ephemeral event
  std::string_view frame;

 private:
  mutable bool parsed_ = false;
  mutable boost::json::value value_;
  mutable net::WebSocket::Frame ws_frame_;
};

class Session;

// One channel a session listens to: its position, the events held while it catches up, its filter.
struct Subscription {
  std::string client;
  int64_t last = 0;
  bool syncing = true;
  std::map<int64_t, std::string> held;  // live frames that arrived while syncing
  std::function<bool(const boost::json::object&)> filter;
};

class Hub {
 public:
  Hub(store::PubSub& pubsub, asio::any_io_executor ex) : pubsub_(pubsub), ex_(std::move(ex)) {}
  // `sub` stays valid until leave(): the hub hands it back with each event, so a delivery does not
  // look the channel up again in the session.
  void join(const std::string& key, Session* s, Subscription* sub);
  void leave(const std::string& key, Session* s);
  std::size_t channels() const { return entries_.size(); }

 private:
  struct Member {
    Session* session;
    Subscription* sub;
  };
  struct Entry {
    std::vector<Member> members;
    std::unique_ptr<store::Subscription> sub;
  };
  void on_message(const std::string& key, std::string_view payload);
  store::PubSub& pubsub_;
  asio::any_io_executor ex_;
  std::unordered_map<std::string, Entry> entries_;
};

// One Hub per worker event loop, created on first use.
class Hubs {
 public:
  explicit Hubs(store::PubSub& pubsub) : pubsub_(pubsub) {}
  Hub& for_executor(const asio::any_io_executor& ex);

 private:
  store::PubSub& pubsub_;
  std::mutex mu_;
  std::unordered_map<const void*, std::unique_ptr<Hub>> hubs_;
};

struct Limits {
  std::size_t max_subscriptions = 100;
  int ops_per_second = 50;
  int replay_page = 500;
  // Replay waits while more than this is queued for the socket, so a client catching up on a long
  // backlog is paced by how fast it reads, not cut off as a slow consumer (half the send queue).
  std::size_t replay_pause_bytes = 512 * 1024;
};

// One WebSocket client: its subscriptions and their positions.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(net::WebSocket& ws, Principal who, Hub& hub, History& history, const ChannelRules& rules, Limits limits);
  ~Session();
  // Reads and answers the client's frames until the socket closes.
  asio::awaitable<void> run();
  // Detaches from the hub and the socket; coroutines still holding the session see it closed.
  void close();
  // A live event for `key`, whose subscription is `sub` (called by the Hub, on this session's
  // worker); true if it was sent.
  bool deliver(const std::string& key, Subscription& sub, const LiveEvent& event);

 private:
  using Sub = Subscription;
  asio::awaitable<void> handle(std::string_view text);
  asio::awaitable<void> subscribe(std::string channel, std::optional<int64_t> since);
  void unsubscribe(const std::string& channel);
  // Sends what the history holds after the sub's position, then what was held, in seq order.
  asio::awaitable<void> catch_up(std::string key);
  // Sends one event of the sub's sequence (advancing its position) if its filter lets it through;
  // `data` is the event's parsed data when the caller has it.
  void send_event(Sub& sub, int64_t seq, std::string_view frame, const boost::json::object* data = nullptr);
  bool passes(const Sub& sub, std::string_view frame, const boost::json::object* data) const;
  void send_error(std::string_view code, std::string_view detail, std::string_view channel = {});
  // Waits until the socket's queue is below replay_pause_bytes; false if the session ended.
  asio::awaitable<bool> wait_for_room();
  std::optional<std::string> key_for(std::string_view channel) const;

  net::WebSocket& ws_;
  bool alive_ = true;  // false once the socket's handler returned: ws_ is gone
  Principal who_;
  Hub& hub_;
  History& history_;
  const ChannelRules& rules_;
  Limits limits_;
  std::unordered_map<std::string, Sub> subs_;  // by internal key
  double tokens_;
  int64_t refill_us_ = 0;
};

}  // namespace harmar::realtime::detail
