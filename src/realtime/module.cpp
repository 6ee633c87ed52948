#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "realtime/hub.hpp"
#include "realtime/realtime.hpp"

namespace harmar::realtime {

namespace {

using detail::Appender;
using detail::ChannelRules;
using detail::ConnectionCounter;
using detail::Hubs;
using detail::Limits;
using detail::Session;

struct State {
  std::shared_ptr<Appender> appender;
  std::shared_ptr<ChannelRules> rules;
  std::shared_ptr<ConnectionCounter> connections;
  std::unique_ptr<Hubs> hubs;
  std::unique_ptr<History> history;
  Limits limits;
  int64_t keep_per_channel = 1000;
  int64_t keep_ms = 24 * 3600 * 1000;
  std::shared_ptr<asio::steady_timer> trim_timer;
  bool stopped = false;
};

// Counts one socket towards its user's presence for as long as it lives.
class OpenSocket {
 public:
  OpenSocket(std::shared_ptr<ConnectionCounter> counter, std::string user_id)
      : counter_(std::move(counter)), user_id_(std::move(user_id)) {
    if (!user_id_.empty()) counter_->opened(user_id_);
  }
  ~OpenSocket() {
    if (!user_id_.empty()) counter_->closed(user_id_);
  }
  OpenSocket(const OpenSocket&) = delete;
  OpenSocket& operator=(const OpenSocket&) = delete;

 private:
  std::shared_ptr<ConnectionCounter> counter_;
  std::string user_id_;
};

asio::awaitable<void> trim_forever(std::shared_ptr<State> st) {
  while (!st->stopped) {
    auto gone = co_await st->history->trim(now_ms() - st->keep_ms, st->keep_per_channel);
    if (!gone.ok())
      log::get("realtime")->warn(log::fields({{"msg", "history trim failed"}, {"error", gone.error().detail}}));
    st->trim_timer->expires_after(std::chrono::minutes(5));
    boost::system::error_code ec;
    co_await st->trim_timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

// Domain events about a user's devices and tasks become events on that user's channels.
void forward_domain_events(platform::Services& s, std::shared_ptr<State> st) {
  auto ex = s.background.get_executor();
  auto forward = [st, ex](const char* channel) {
    return [st, ex, channel](const platform::DomainEvent& e) {
      if (e.user_id.empty()) return;
      auto data = e.data;
      if (!e.subject.empty() && !data.contains("id")) data["id"] = e.subject;
      asio::co_spawn(
          ex,
          [st, key = user_channel(e.user_id, channel), type = e.type, data = std::move(data)]() mutable
          -> asio::awaitable<void> {
            auto r = co_await st->appender->publish(std::move(key), std::move(type), std::move(data));
            if (!r.ok())
              log::get("realtime")->warn(log::fields({{"msg", "domain event not published"}, {"error", r.error().detail}}));
          },
          asio::detached);
    };
  };
  s.events.on_local("device.", s.background.get_executor(), forward("devices"));
  s.events.on_local("task.", s.background.get_executor(), forward("tasks"));
}

}  // namespace

platform::Module module() {
  auto st = std::make_shared<State>();
  platform::Module m;
  m.name = "realtime";
  m.configure = [](config::Schema& s) {
    s.add({"realtime.history_per_channel", config::Type::Int, "1000",
           "events kept per channel for clients that reconnect with since", 0, 10'000'000});
    s.add({"realtime.history_max_age", config::Type::Duration, "24h",
           "events older than this may be dropped (beyond history_per_channel)", 60'000, int64_t(365) * 86'400'000});
    s.add({"realtime.max_subscriptions", config::Type::Int, "100", "channels one connection may subscribe to", 1, 10'000});
    s.add({"realtime.ops_per_second", config::Type::Int, "50", "frames per second one connection may send (burst 2x)", 1, 100'000});
    s.add({"realtime.send_queue_bytes", config::Type::Size, "1MiB",
           "bytes queued for a slow client before it is disconnected (close 1008)", 4096, int64_t(1) << 30});
  };
  m.migrations = history_migrations();
  m.provide = [st](platform::Services& s) {
    st->keep_per_channel = s.config.get_int("realtime.history_per_channel");
    st->keep_ms = s.config.get_duration_ms("realtime.history_max_age");
    st->limits.max_subscriptions = static_cast<std::size_t>(s.config.get_int("realtime.max_subscriptions"));
    st->limits.ops_per_second = static_cast<int>(s.config.get_int("realtime.ops_per_second"));
    st->appender = std::make_shared<Appender>(s.db, s.pubsub, s.background, 100'000);
    st->rules = std::make_shared<ChannelRules>();
    st->connections = std::make_shared<ConnectionCounter>(s.background.get_executor());
    st->hubs = std::make_unique<Hubs>(s.pubsub);
    st->history = std::make_unique<History>(s.db);
    s.provide<Publisher>(st->appender);
    s.provide<Channels>(st->rules);
    s.provide<Connections>(st->connections);
  };
  m.routes = [st](net::Router& r, platform::Services& s) {
    net::WebSocket::Options ws_opts;
    ws_opts.max_queue_bytes = static_cast<std::size_t>(s.config.get_size("realtime.send_queue_bytes"));
    st->limits.replay_pause_bytes = ws_opts.max_queue_bytes / 2;
    r.websocket("/v1/ws", [st](net::WebSocket& ws, net::Request& req) -> asio::awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      auto session = std::make_shared<Session>(ws, *req.principal, st->hubs->for_executor(ex), *st->history,
                                               *st->rules, st->limits);
      // A user's sockets count towards their presence; a device's do not.
      OpenSocket counted(st->connections, req.principal->kind == Principal::Kind::Device ? "" : req.principal->user_id);
      co_await session->run();
      session->close();
    }, {.auth = net::Auth::Any, .websocket = ws_opts});
  };
  m.start = [st](platform::Services& s) {
    st->appender->start();
    forward_domain_events(s, st);
    st->trim_timer = std::make_shared<asio::steady_timer>(s.background);
    asio::co_spawn(s.background, trim_forever(st), asio::detached);
  };
  m.stop = [st] {
    st->stopped = true;
    if (st->trim_timer) asio::post(st->trim_timer->get_executor(), [t = st->trim_timer] { t->cancel(); });
    if (st->appender) st->appender->stop();
  };
  return m;
}

}  // namespace harmar::realtime
