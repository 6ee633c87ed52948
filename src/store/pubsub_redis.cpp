// The Redis PubSub: PUBLISH on one connection; one SUBSCRIBE connection per PubSub object carries
// every local subscription, and its messages fan out locally exactly as in-process.
//
// A Redis channel is subscribed while at least one local subscriber wants it. Local subscribe and
// unsubscribe (any thread) only change the Fanout and post sync(key) to the connection's thread,
// which compares what is wanted with what Redis was told and sends SUBSCRIBE / UNSUBSCRIBE; so
// racing subscribe/unsubscribe calls settle on the right final state. Our "prefix*" patterns become
// PSUBSCRIBE with the prefix's glob characters escaped, so Redis matches exactly what the
// in-process PubSub matches.
#include <boost/asio/steady_timer.hpp>

#include <map>

#include "core/log.hpp"
#include "store/pubsub_fanout.hpp"
#include "store/redis.hpp"

namespace harmar::store {

namespace {

using redis::Connection;
using redis::Reply;
using StatusCompletion = redis::detail::Completion<Status>;

std::string redis_pattern(const std::string& key) {
  std::string out;
  for (char c : std::string_view(key).substr(0, key.size() - 1)) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  out += '*';
  return out;
}

std::string key_of_pattern(std::string_view pattern) {
  std::string out;
  if (pattern.empty() || pattern.back() != '*') return out;
  pattern.remove_suffix(1);
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) ++i;
    out += pattern[i];
  }
  out += '*';
  return out;
}

// What Redis has been told, and who waits for it; lives on the subscriber connection's thread.
class Feed : public std::enable_shared_from_this<Feed> {
 public:
  Feed(std::shared_ptr<Fanout> fanout, int64_t timeout_ms) : fanout_(std::move(fanout)), timeout_ms_(timeout_ms) {}
  void attach(Connection* conn) { conn_ = conn; }

  void sync(const std::string& key) {
    if (closed_) return;
    bool want = fanout_->has(key);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      if (!want) return;
      it = entries_.emplace(key, Entry{}).first;
    }
    Entry& e = it->second;
    if (e.wanted != want) {
      e.wanted = want;
      e.active = false;
      if (conn_->ready()) {
        send(want, {key});
        ++e.outstanding;
      }
    }
    maybe_erase(it);
  }

  void on_ready() {
    std::vector<std::string> keys;
    for (auto& [key, e] : entries_) {
      e.active = false;
      e.outstanding = e.wanted ? 1 : 0;
      if (e.wanted) keys.push_back(key);
    }
    send(true, keys);
  }

  void on_down() {
    for (auto it = entries_.begin(); it != entries_.end();) {
      it->second.active = false;
      it->second.outstanding = 0;
      it = it->second.wanted || !it->second.waiters.empty() ? std::next(it) : entries_.erase(it);
    }
  }

  void on_push(Reply&& r) {
    if (r.type == Reply::Type::Error) {
      log::get("store")->warn("redis subscriber connection: {}", r.str);
      return;
    }
    if (r.type != Reply::Type::Array || r.elements.size() < 3) return;
    auto& el = r.elements;
    const std::string& kind = el[0].str;
    if (kind == "message") {
      fanout_->deliver_exact(std::make_shared<const Message>(Message{std::move(el[1].str), std::move(el[2].str)}));
    } else if (kind == "pmessage" && el.size() >= 4) {
      fanout_->deliver_pattern(key_of_pattern(el[1].str),
                               std::make_shared<const Message>(Message{std::move(el[2].str), std::move(el[3].str)}));
    } else if (kind == "subscribe" || kind == "unsubscribe") {
      settle(el[1].str);
    } else if (kind == "psubscribe" || kind == "punsubscribe") {
      settle(key_of_pattern(el[1].str));
    }
  }

  void wait(const std::string& key, std::unique_ptr<StatusCompletion> done) {
    if (closed_) return done->complete(Error::unavailable("pubsub is closed"));
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.active) return done->complete(Status{});
    if (it == entries_.end()) it = entries_.emplace(key, Entry{}).first;
    uint64_t id = ++next_waiter_;
    auto timer = std::make_unique<asio::steady_timer>(conn_->context(), std::chrono::milliseconds(timeout_ms_));
    timer->async_wait([self = shared_from_this(), key, id](boost::system::error_code ec) {
      if (!ec) self->expire(key, id);
    });
    it->second.waiters.emplace(id, Waiter{std::move(done), std::move(timer)});
  }

  // Fails every waiter and forgets everything; the PubSub is going away.
  void close() {
    closed_ = true;
    auto entries = std::move(entries_);
    entries_.clear();
    for (auto& [_, e] : entries) {
      for (auto& [_, w] : e.waiters) w.done->complete(Error::unavailable("pubsub is closed"));
    }
  }

 private:
  struct Waiter {
    std::unique_ptr<StatusCompletion> done;
    std::unique_ptr<asio::steady_timer> timer;
  };
  struct Entry {
    bool wanted = false;   // some local subscriber wants it (as last synced)
    bool active = false;   // Redis confirmed the subscription and nothing is pending since
    int outstanding = 0;   // (un)subscribe commands not yet acknowledged
    std::map<uint64_t, Waiter> waiters;
  };
  using Iter = std::map<std::string, Entry>::iterator;

  void send(bool subscribe, const std::vector<std::string>& keys) {
    std::vector<std::string> exact{subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE"};
    std::vector<std::string> patterns{subscribe ? "PSUBSCRIBE" : "PUNSUBSCRIBE"};
    auto flush = [&](std::vector<std::string>& cmd, bool force) {
      if (cmd.size() > 1 && (force || cmd.size() > 512)) {
        conn_->send(cmd);
        cmd.resize(1);
      }
    };
    for (const auto& key : keys) {
      if (is_pattern(key)) {
        patterns.push_back(redis_pattern(key));
      } else {
        exact.push_back(key);
      }
      flush(exact, false);
      flush(patterns, false);
    }
    flush(exact, true);
    flush(patterns, true);
  }

  void settle(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    Entry& e = it->second;
    if (e.outstanding > 0) --e.outstanding;
    if (e.outstanding == 0) {
      e.active = e.wanted;
      if (e.active) {
        auto waiters = std::move(e.waiters);
        e.waiters.clear();
        for (auto& [_, w] : waiters) {
          w.timer->cancel();
          w.done->complete(Status{});
        }
      }
    }
    maybe_erase(it);
  }

  void expire(const std::string& key, uint64_t id) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    auto w = it->second.waiters.find(id);
    if (w == it->second.waiters.end()) return;
    w->second.done->complete(Error::unavailable("redis has not confirmed the subscription to '" + key + "'"));
    it->second.waiters.erase(w);
    maybe_erase(it);
  }

  void maybe_erase(Iter it) {
    const Entry& e = it->second;
    if (!e.wanted && e.outstanding == 0 && e.waiters.empty()) entries_.erase(it);
  }

  std::shared_ptr<Fanout> fanout_;
  int64_t timeout_ms_;
  Connection* conn_ = nullptr;  // owned by the PubSub, which stops it before this goes away
  std::map<std::string, Entry> entries_;
  uint64_t next_waiter_ = 0;
  bool closed_ = false;
};

// The part of a Redis PubSub that its subscriptions share, and may outlive it.
class Hub {
 public:
  Hub(std::shared_ptr<Fanout> fanout, std::shared_ptr<Feed> feed, asio::io_context& ioc)
      : fanout_(std::move(fanout)), feed_(std::move(feed)), ioc_(&ioc) {}

  Fanout& fanout() { return *fanout_; }

  void sync(std::string key) {
    std::lock_guard lock(mu_);
    if (!ioc_) return;
    asio::post(*ioc_, [feed = feed_, key = std::move(key)] { feed->sync(key); });
  }

  void wait(std::string key, std::unique_ptr<StatusCompletion> done) {
    std::lock_guard lock(mu_);
    if (!ioc_) return done->complete(Error::unavailable("pubsub is closed"));
    asio::post(*ioc_, [feed = feed_, key = std::move(key), done = std::move(done)]() mutable {
      feed->wait(key, std::move(done));
    });
  }

  // The PubSub is going away: nothing more reaches its thread.
  void close() {
    std::lock_guard lock(mu_);
    if (!ioc_) return;
    asio::post(*ioc_, [feed = feed_] { feed->close(); });
    ioc_ = nullptr;
  }

 private:
  std::shared_ptr<Fanout> fanout_;
  std::shared_ptr<Feed> feed_;
  std::mutex mu_;
  asio::io_context* ioc_;
};

class RedisSubscription final : public Subscription {
 public:
  RedisSubscription(std::shared_ptr<Hub> hub, std::shared_ptr<Subscriber> sub)
      : hub_(std::move(hub)), sub_(std::move(sub)) {}
  ~RedisSubscription() override {
    sub_->deactivate();
    if (hub_->fanout().remove(sub_.get())) hub_->sync(sub_->key());
  }

  asio::awaitable<Status> ready() override {
    auto initiate = [hub = hub_, key = sub_->key()](auto handler) {
      hub->wait(key, redis::detail::make_completion<Status>(std::move(handler)));
    };
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(Status)>(initiate, asio::use_awaitable);
  }

 private:
  std::shared_ptr<Hub> hub_;
  std::shared_ptr<Subscriber> sub_;
};

class RedisPubSub final : public PubSub {
 public:
  explicit RedisPubSub(const redis::Url& url) : io_(std::make_unique<redis::IoThread>("redis-pubsub")) {
    auto& ioc = io_->context();
    auto fanout = std::make_shared<Fanout>();
    feed_ = std::make_shared<Feed>(fanout, url.timeout_ms);
    hub_ = std::make_shared<Hub>(fanout, feed_, ioc);

    pub_ = Connection::start(ioc, redis::ConnectionOptions{.url = url, .role = "pub"});
    redis::ConnectionOptions sub_opts{.url = url, .role = "sub", .subscriber = true};
    sub_opts.on_push = [feed = feed_](Reply&& r) { feed->on_push(std::move(r)); };
    sub_opts.on_ready = [feed = feed_] { feed->on_ready(); };
    sub_opts.on_down = [feed = feed_] { feed->on_down(); };
    sub_ = Connection::create(ioc, std::move(sub_opts));
    feed_->attach(sub_.get());
    sub_->start();
  }

  ~RedisPubSub() override {
    hub_->close();
    pub_->stop();
    sub_->stop();
    // io_ (declared first) joins its thread after the members below have let go.
  }

  asio::awaitable<Status> publish(std::string channel, std::string payload) override {
    if (auto st = check_publish(channel, payload); !st.ok()) co_return st;
    std::vector<std::string> cmd{"PUBLISH", std::move(channel), std::move(payload)};  // (not inside co_await: g++ 12)
    auto r = co_await pub_->command(std::move(cmd));
    if (!r.ok()) co_return std::move(r).error();
    co_return Status{};
  }

  std::unique_ptr<Subscription> subscribe(std::string channel, asio::any_io_executor ex,
                                          MessageHandler handler) override {
    check_subscribe_channel(channel);
    auto sub = std::make_shared<Subscriber>(std::move(ex), std::move(handler), std::move(channel));
    if (hub_->fanout().add(sub)) hub_->sync(sub->key());
    return std::make_unique<RedisSubscription>(hub_, std::move(sub));
  }

  asio::awaitable<Status> ping() override {
    if (!sub_->connected()) co_return Error::unavailable("the redis subscriber connection is down");
    std::vector<std::string> cmd{"PING"};
    auto r = co_await pub_->command(std::move(cmd));
    if (!r.ok()) co_return std::move(r).error();
    co_return Status{};
  }

 private:
  std::unique_ptr<redis::IoThread> io_;
  std::shared_ptr<Feed> feed_;
  std::shared_ptr<Hub> hub_;
  std::shared_ptr<Connection> pub_;
  std::shared_ptr<Connection> sub_;
};

}  // namespace

Result<std::unique_ptr<PubSub>> open_redis_pubsub(const std::string& url) {
  HARMAR_TRY(auto parsed, redis::parse_url(url));
  return std::unique_ptr<PubSub>(std::make_unique<RedisPubSub>(parsed));
}

}  // namespace harmar::store
