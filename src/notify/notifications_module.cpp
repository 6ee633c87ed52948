// harmar::notify::notifications_module(): configuration, migrations, the routes, and the
// background work: domain events into inboxes and webhook deliveries, the announcement fan-out,
// the webhook delivery loop and the retention sweep.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>

#include "auth/service.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "notify/inbox.hpp"
#include "notify/mailer.hpp"
#include "notify/notifications.hpp"
#include "notify/webhooks.hpp"
#include "realtime/realtime.hpp"

namespace harmar::notify {

namespace {

using config::Type;
auto logger() { return log::get("notifications"); }

constexpr std::size_t kMaxQueuedEvents = 100'000;

void configure(config::Schema& s) {
  s.add({"notifications.email_unverified", Type::Bool, "false",
         "also mail notifications to addresses their users have not verified"});
  s.add({"notifications.retention", Type::Duration, "90d", "inbox messages older than this are deleted", 3'600'000,
         int64_t{3650} * 24 * 3600 * 1000});
  s.add({"notifications.max_per_user", Type::Int, "10000",
         "inbox messages kept per user; the hourly sweep deletes the oldest beyond this", 10, 10'000'000});
  s.add({"webhooks.allow_private_targets", Type::Bool, "false",
         "let webhooks reach loopback, private and link-local addresses (tests, trusted networks only)"});
  s.add({"webhooks.max_attempts", Type::Int, "8", "attempts per delivery before it is marked failed", 1, 50});
  s.add({"webhooks.retry_base", Type::Duration, "10s", "wait before the second attempt; doubles with each further one",
         10, 3'600'000});
  s.add({"webhooks.retry_max", Type::Duration, "1h", "longest wait between two attempts", 10, 86'400'000});
  s.add({"webhooks.timeout", Type::Duration, "10s", "bound on one delivery attempt (connecting included)", 100, 60'000});
  s.add({"webhooks.concurrency", Type::Int, "8", "deliveries one node sends at once", 1, 256});
  s.add({"webhooks.poll_interval", Type::Duration, "2s",
         "how often a node looks for due deliveries (new ones on this node are sent at once)", 10, 60'000});
  s.add({"webhooks.max_per_user", Type::Int, "20", "webhooks one account may register", 1, 1000});
  s.add({"webhooks.delivery_retention", Type::Duration, "7d", "finished deliveries older than this are deleted", 60'000,
         int64_t{365} * 24 * 3600 * 1000});
}

std::vector<store::Migration> migrations() {
  const char* inbox =
      "CREATE TABLE inbox_messages (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL,"
      " body TEXT NOT NULL, data TEXT NOT NULL, read_at BIGINT, created_at BIGINT NOT NULL, dedupe_key TEXT);"
      "CREATE INDEX inbox_messages_user ON inbox_messages (user_id, id);"
      "CREATE INDEX inbox_messages_unread ON inbox_messages (user_id, id) WHERE read_at IS NULL;"
      "CREATE UNIQUE INDEX inbox_messages_dedupe ON inbox_messages (user_id, dedupe_key);"
      "CREATE INDEX inbox_messages_created ON inbox_messages (created_at);"
      "CREATE TABLE inbox_preferences (user_id TEXT NOT NULL, kind TEXT NOT NULL, inbox BOOLEAN NOT NULL,"
      " email BOOLEAN NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (user_id, kind));"
      "CREATE TABLE inbox_announcements (id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, data TEXT NOT NULL,"
      " user_ids TEXT, created_by TEXT NOT NULL, cursor TEXT NOT NULL, delivered BIGINT NOT NULL, done BOOLEAN NOT NULL,"
      " lease_until BIGINT NOT NULL, created_at BIGINT NOT NULL);"
      "CREATE INDEX inbox_announcements_pending ON inbox_announcements (id) WHERE done = FALSE;";
  // Deliveries: one row per (webhook, event); the partial index is the delivery loop's claim.
  const char* hooks =
      "CREATE TABLE webhooks (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,"
      " event_types TEXT NOT NULL, description TEXT NOT NULL, enabled BOOLEAN NOT NULL, created_at BIGINT NOT NULL,"
      " updated_at BIGINT NOT NULL);"
      "CREATE INDEX webhooks_user ON webhooks (user_id, id);"
      "CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, user_id TEXT NOT NULL,"
      " event_id TEXT NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,"
      " attempts BIGINT NOT NULL, max_attempts BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL,"
      " lease_until BIGINT NOT NULL, response_status BIGINT, error TEXT, response_excerpt TEXT, duration_ms BIGINT,"
      " created_at BIGINT NOT NULL, last_attempt_at BIGINT, delivered_at BIGINT);"
      "CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (webhook_id, event_id);"
      "CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);"
      "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';"
      "CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);";
  // MariaDB has no partial index: those become indexes led by the column they filtered on.
  const char* inbox_mysql =
      "CREATE TABLE inbox_messages (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, kind VARCHAR(128)"
      " NOT NULL, title LONGTEXT NOT NULL, body LONGTEXT NOT NULL, data LONGTEXT NOT NULL, read_at BIGINT,"
      " created_at BIGINT NOT NULL, dedupe_key VARCHAR(255), INDEX inbox_messages_user (user_id, id), INDEX"
      " inbox_messages_unread (user_id, read_at, id), UNIQUE INDEX inbox_messages_dedupe (user_id, dedupe_key),"
      " INDEX inbox_messages_created (created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
      " COLLATE=utf8mb4_nopad_bin;"
      "CREATE TABLE inbox_preferences (user_id VARCHAR(64) NOT NULL, kind VARCHAR(128) NOT NULL, inbox BOOLEAN"
      " NOT NULL, email BOOLEAN NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (user_id, kind))"
      " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
      "CREATE TABLE inbox_announcements (id VARCHAR(64) PRIMARY KEY, title LONGTEXT NOT NULL, body LONGTEXT NOT"
      " NULL, data LONGTEXT NOT NULL, user_ids LONGTEXT, created_by VARCHAR(64) NOT NULL, \"cursor\" LONGTEXT NOT"
      " NULL, delivered BIGINT NOT NULL, done BOOLEAN NOT NULL, lease_until BIGINT NOT NULL, created_at BIGINT"
      " NOT NULL, INDEX inbox_announcements_pending (done, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
      " COLLATE=utf8mb4_nopad_bin;";
  const char* hooks_mysql =
      "CREATE TABLE webhooks (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, url LONGTEXT NOT NULL,"
      " secret LONGTEXT NOT NULL, event_types LONGTEXT NOT NULL, description LONGTEXT NOT NULL, enabled BOOLEAN"
      " NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, INDEX webhooks_user (user_id, id))"
      " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
      "CREATE TABLE webhook_deliveries (id VARCHAR(64) PRIMARY KEY, webhook_id VARCHAR(64) NOT NULL, user_id"
      " VARCHAR(64) NOT NULL, event_id VARCHAR(255) NOT NULL, event_type VARCHAR(128) NOT NULL, payload"
      " LONGTEXT NOT NULL, status VARCHAR(16) NOT NULL, attempts BIGINT NOT NULL, max_attempts BIGINT NOT NULL,"
      " next_attempt_at BIGINT NOT NULL, lease_until BIGINT NOT NULL, response_status BIGINT, error LONGTEXT,"
      " response_excerpt LONGTEXT, duration_ms BIGINT, created_at BIGINT NOT NULL, last_attempt_at BIGINT,"
      " delivered_at BIGINT, UNIQUE INDEX webhook_deliveries_event (webhook_id, event_id), INDEX"
      " webhook_deliveries_hook (webhook_id, id), INDEX webhook_deliveries_due (status, next_attempt_at), INDEX"
      " webhook_deliveries_created (created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
      " COLLATE=utf8mb4_nopad_bin;";
  return {{1, "inbox", inbox, inbox, inbox_mysql}, {2, "webhooks", hooks, hooks, hooks_mysql}};
}

struct State {
  std::shared_ptr<Inbox> inbox;
  std::shared_ptr<Announcements> announcements;
  std::shared_ptr<Webhooks> hooks;
  // Events in the order this node raised them, handled one at a time so a user's inbox keeps it.
  std::deque<platform::DomainEvent> queue;
  bool draining = false;
  std::shared_ptr<asio::steady_timer> announce_timer;
  std::shared_ptr<asio::steady_timer> sweep_timer;
  bool stopped = false;
};

asio::awaitable<void> handle(std::shared_ptr<State> st, platform::DomainEvent e) {
  if (auto n = notice_for(e)) {
    auto d = co_await st->inbox->deliver(std::move(*n));
    if (!d)
      logger()->warn(log::fields({{"msg", "notification not stored"}, {"type", e.type}, {"error", d.error().detail}}));
  }
  auto data = e.data;
  if (!e.subject.empty() && !data.contains("id")) data["id"] = e.subject;
  auto q = co_await st->hooks->enqueue(e.user_id, new_id(), e.type, std::move(data));
  if (!q) logger()->warn(log::fields({{"msg", "webhook deliveries not queued"}, {"type", e.type}, {"error", q.error().detail}}));
}

asio::awaitable<void> drain(std::shared_ptr<State> st) {
  while (!st->queue.empty() && !st->stopped) {
    platform::DomainEvent e = std::move(st->queue.front());
    st->queue.pop_front();
    co_await handle(st, std::move(e));
  }
  st->draining = false;
}

void take_events(platform::Services& s, std::shared_ptr<State> st) {
  auto ex = s.background.get_executor();
  auto on_event = [st, ex](const platform::DomainEvent& e) {
    if (e.user_id.empty() || st->stopped) return;
    if (st->queue.size() >= kMaxQueuedEvents) {
      logger()->error(log::fields({{"msg", "notification queue full: event dropped"}, {"type", e.type}}));
      return;
    }
    st->queue.push_back(e);
    if (!st->draining) {
      st->draining = true;
      asio::co_spawn(ex, drain(st), asio::detached);
    }
  };
  s.events.on_local("task.", ex, on_event);
  s.events.on_local("device.", ex, on_event);
}

asio::awaitable<void> announce_forever(std::shared_ptr<State> st) {
  while (!st->stopped) {
    auto worked = co_await st->announcements->work_once();
    if (!worked) logger()->warn(log::fields({{"msg", "announcement fan-out failed; retried"}, {"error", worked.error().detail}}));
    if (worked && *worked) continue;
    st->announce_timer->expires_after(std::chrono::seconds(5));
    boost::system::error_code ec;
    co_await st->announce_timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> sweep_forever(std::shared_ptr<State> st) {
  while (!st->stopped) {
    auto a = co_await st->inbox->purge();
    if (!a) logger()->warn(log::fields({{"msg", "inbox sweep failed"}, {"error", a.error().detail}}));
    auto b = co_await st->hooks->purge();
    if (!b) logger()->warn(log::fields({{"msg", "delivery sweep failed"}, {"error", b.error().detail}}));
    st->sweep_timer->expires_after(std::chrono::hours(1));
    boost::system::error_code ec;
    co_await st->sweep_timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

void cancel_later(const std::shared_ptr<asio::steady_timer>& t) {
  if (t) asio::post(t->get_executor(), [t] { t->cancel(); });
}

}  // namespace

platform::Module notifications_module() {
  auto st = std::make_shared<State>();
  platform::Module m;
  m.name = "notifications";
  m.configure = configure;
  m.migrations = migrations();
  m.provide = [st](platform::Services& s) {
    InboxOptions io;
    io.email_unverified = s.config.get_bool("notifications.email_unverified");
    io.retention_ms = s.config.get_duration_ms("notifications.retention");
    io.max_per_user = s.config.get_int("notifications.max_per_user");
    st->inbox = std::make_shared<Inbox>(s.db, io);
    st->announcements = std::make_shared<Announcements>(s.db, st->inbox);
    WebhookOptions wo;
    wo.allow_private = s.config.get_bool("webhooks.allow_private_targets");
    wo.max_attempts = s.config.get_int("webhooks.max_attempts");
    wo.retry_base_ms = s.config.get_duration_ms("webhooks.retry_base");
    wo.retry_max_ms = s.config.get_duration_ms("webhooks.retry_max");
    wo.timeout_ms = s.config.get_duration_ms("webhooks.timeout");
    wo.concurrency = s.config.get_int("webhooks.concurrency");
    wo.poll_interval_ms = s.config.get_duration_ms("webhooks.poll_interval");
    wo.max_per_user = s.config.get_int("webhooks.max_per_user");
    wo.retention_ms = s.config.get_duration_ms("webhooks.delivery_retention");
    st->hooks = std::make_shared<Webhooks>(s.db, wo);
    if (wo.allow_private)
      logger()->warn(log::fields({{"msg", "webhooks.allow_private_targets is on: webhooks may reach this host and its network"}}));
  };
  m.routes = [st](net::Router& r, platform::Services& s) {
    // Every module has provided by now.
    auto accounts = s.find<auth::Accounts>();
    st->inbox->wire(s.find<Mailer>(), accounts, s.find<realtime::Publisher>());
    st->announcements->wire(accounts);
    std::weak_ptr<Webhooks> hooks = st->hooks;
    st->inbox->on_new([hooks](const InboxMessage& msg) -> asio::awaitable<void> {
      auto h = hooks.lock();
      if (!h) co_return;
      boost::json::object data{{"message", msg.to_json()}};
      auto q = co_await h->enqueue(msg.user_id, msg.id, "message.new", std::move(data));
      if (!q) logger()->warn(log::fields({{"msg", "webhook deliveries not queued"}, {"error", q.error().detail}}));
    });
    std::weak_ptr<State> weak = st;
    auto kick = [weak] {
      if (auto s = weak.lock()) cancel_later(s->announce_timer);
    };
    install_notification_routes(r, s, st->inbox, st->announcements, kick, st->hooks);
  };
  m.start = [st](platform::Services& s) {
    take_events(s, st);
    st->hooks->start(s.background);
    st->announce_timer = std::make_shared<asio::steady_timer>(s.background);
    st->sweep_timer = std::make_shared<asio::steady_timer>(s.background);
    asio::co_spawn(s.background, announce_forever(st), asio::detached);
    asio::co_spawn(s.background, sweep_forever(st), asio::detached);
  };
  m.stop = [st] {
    st->stopped = true;
    if (st->hooks) st->hooks->stop();
    cancel_later(st->announce_timer);
    cancel_later(st->sweep_timer);
  };
  return m;
}

}  // namespace harmar::notify
