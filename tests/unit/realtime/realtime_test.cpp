// /v1/ws against a real SQLite history, the in-process PubSub and a real WebSocket client:
// live events, catching up with `since` exactly once, explicit history loss, permissions.
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "realtime/history.hpp"
#include "realtime/realtime.hpp"
#include "support/test_client.hpp"
#include "support/test_support.hpp"

namespace harmar::realtime {
namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace js = boost::json;
using tcp = asio::ip::tcp;

// Tokens are "user:<id>" in these tests; anything else is refused.
net::AuthHook test_auth() {
  net::AuthHook a;
  a.authenticate = [](net::Request& req) -> asio::awaitable<Result<Principal>> {
    std::string_view h = req.header("Authorization");
    if (h.rfind("Bearer user:", 0) != 0) co_return Error::unauthorized("bad token");
    Principal p;
    p.kind = Principal::Kind::User;
    p.id = p.user_id = std::string(h.substr(12));
    co_return p;
  };
  return a;
}

struct Node {
  explicit Node(const std::string& db_url, std::vector<std::pair<std::string, std::string>> settings = {})
      : cfg(make_config(std::move(settings))), server(testing::TestServer::defaults(), test_auth()) {
    db = std::move(store::Database::open(db_url)).value();
    mod = module();
    auto st = testing::run(store::migrate(*db, {{mod.name, mod.migrations}}));
    EXPECT_TRUE(st.ok());
    pubsub = std::move(store::PubSub::open("")).value();
    kv = std::move(store::Kv::open("")).value();
    blobs = std::move(store::BlobStore::open("", testing::temp_dir())).value();
    events = std::make_unique<platform::EventBus>(*pubsub);
    services = std::make_unique<platform::Services>(cfg, *db, *pubsub, *kv, *blobs, *events, background);
    mod.provide(*services);
    mod.routes(server.router, *services);
    server.start();
    background_thread = std::thread([this] { background.run(); });
    mod.start(*services);
    publisher = services->find<Publisher>();
  }
  ~Node() {
    server.server->shutdown();
    server.server->wait();
    mod.stop();
    work.reset();
    background.stop();
    background_thread.join();
  }
  static config::Config make_config(std::vector<std::pair<std::string, std::string>> settings) {
    config::Schema schema = config::core_schema();
    module().configure(schema);
    return std::move(config::Config::load(schema, "", settings)).value();
  }
  int64_t publish(const std::string& key, const std::string& type, js::object data) {
    auto r = testing::run(publisher->publish(key, type, std::move(data)));
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : -1;
  }

  config::Config cfg;
  asio::io_context background;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(background);
  std::thread background_thread;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::PubSub> pubsub;
  std::unique_ptr<store::Kv> kv;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<platform::EventBus> events;
  std::unique_ptr<platform::Services> services;
  platform::Module mod;
  testing::TestServer server;
  std::shared_ptr<Publisher> publisher;
};

std::string db_url(const std::string& name) { return "sqlite://" + testing::temp_dir() + "/" + name + ".db"; }

struct Client {
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buf;

  boost::system::error_code connect(uint16_t port, const std::string& user) {
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    timeval tv{10, 0};  // a missing frame fails the test instead of hanging it
    setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ws.set_option(websocket::stream_base::decorator(
        [user](websocket::request_type& r) { r.set(beast::http::field::authorization, "Bearer user:" + user); }));
    boost::system::error_code ec;
    ws.handshake("127.0.0.1", "/v1/ws", ec);
    return ec;
  }
  void send(const js::object& o) { ws.write(asio::buffer(js::serialize(o))); }
  js::object read() {
    buf.clear();
    ws.read(buf);
    return js::parse(beast::buffers_to_string(buf.data())).as_object();
  }
  // Reads until a frame of `type` arrives, returning the event frames seen on the way.
  std::vector<js::object> read_until(std::string_view type) {
    std::vector<js::object> seen;
    for (;;) {
      auto f = read();
      if (f["type"].as_string() == type) {
        seen.push_back(std::move(f));
        return seen;
      }
      seen.push_back(std::move(f));
    }
  }
};

TEST(Realtime, subscribers_get_live_events_in_order_and_only_their_own) {
  Node n(db_url("live"));
  Client alice, bob;
  ASSERT_FALSE(alice.connect(n.server.port, "alice"));
  ASSERT_FALSE(bob.connect(n.server.port, "bob"));
  alice.send({{"op", "subscribe"}, {"channel", "tasks"}});
  auto ack = alice.read();
  EXPECT_EQ(ack["type"], "subscribed");
  EXPECT_EQ(ack["seq"], 0);
  bob.send({{"op", "subscribe"}, {"channel", "tasks"}});
  EXPECT_EQ(bob.read()["type"], "subscribed");

  for (int i = 1; i <= 5; ++i) n.publish(user_channel("alice", "tasks"), "task.updated", {{"i", i}});
  n.publish(user_channel("bob", "tasks"), "task.created", {{"mine", true}});
  for (int i = 1; i <= 5; ++i) {
    auto f = alice.read();
    EXPECT_EQ(f["type"], "task.updated");
    EXPECT_EQ(f["channel"], "tasks");
    EXPECT_EQ(f["seq"], i);
    EXPECT_EQ(f["data"].as_object()["i"], i);
    EXPECT_TRUE(f["ts"].is_string());
  }
  auto b = bob.read();
  EXPECT_EQ(b["type"], "task.created");
  EXPECT_EQ(b["seq"], 1);
  // ping is answered in order after everything else
  alice.send({{"op", "ping"}});
  EXPECT_EQ(alice.read()["type"], "pong");
}

TEST(Realtime, reconnecting_with_since_replays_what_was_missed_exactly_once) {
  Node n(db_url("since"));
  std::string key = user_channel("carol", "devices");
  for (int i = 1; i <= 3; ++i) n.publish(key, "device.online", {{"i", i}});
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "carol"));
  c.send({{"op", "subscribe"}, {"channel", "devices"}, {"since", 1}});
  auto frames = c.read_until("subscribed");
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0]["seq"], 2);
  EXPECT_EQ(frames[1]["seq"], 3);
  EXPECT_EQ(frames[2]["seq"], 3);  // the ack names the position reached
  // Live events continue the sequence with no gap and no repeat.
  n.publish(key, "device.offline", {});
  auto live = c.read();
  EXPECT_EQ(live["seq"], 4);
  // Subscribing again from an older position replays only what is after it.
  c.send({{"op", "subscribe"}, {"channel", "devices"}, {"since", 3}});
  frames = c.read_until("subscribed");
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0]["seq"], 4);
}

TEST(Realtime, replay_crosses_many_pages_in_order) {
  Node n(db_url("pages"));
  std::string key = user_channel("dave", "tasks");
  for (int i = 1; i <= 1200; ++i) n.publish(key, "task.updated", {{"i", i}});
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "dave"));
  c.send({{"op", "subscribe"}, {"channel", "tasks"}, {"since", 0}});
  auto frames = c.read_until("subscribed");
  ASSERT_EQ(frames.size(), 1201u);
  for (int i = 0; i < 1200; ++i) ASSERT_EQ(frames[i]["seq"], i + 1);
}

TEST(Realtime, a_since_older_than_the_history_is_reported_not_skipped) {
  Node n(db_url("gone"), {{"realtime.history_per_channel", "2"}, {"realtime.history_max_age", "1m"}});
  std::string key = user_channel("erin", "tasks");
  for (int i = 1; i <= 5; ++i) n.publish(key, "task.updated", {{"i", i}});
  // Age the history and trim it the way the sweeper does.
  auto aged = testing::run(n.db->exec("UPDATE rt_events SET created_at = 0"));
  ASSERT_TRUE(aged.ok());
  auto trimmed = testing::run(History(*n.db).trim(1, 2));
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(*trimmed, 3);
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "erin"));
  c.send({{"op", "subscribe"}, {"channel", "tasks"}, {"since", 1}});
  auto frames = c.read_until("subscribed");
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0]["type"], "error");
  EXPECT_EQ(frames[0]["code"], "history_gone");
  EXPECT_EQ(frames[0]["oldest_seq"], 4);
  EXPECT_EQ(frames[1]["seq"], 4);
  EXPECT_EQ(frames[2]["seq"], 5);
}

TEST(Realtime, shared_channels_follow_their_rules_and_filters) {
  Node n(db_url("rules"));
  auto channels = n.services->find<Channels>();
  channels->add_rule("conversation:", [](const Principal& p, std::string_view ch) -> asio::awaitable<Access> {
    Access a;
    a.allowed = p.user_id == "member";
    if (a.allowed) a.filter = [](const js::object& data) { return !data.contains("secret"); };
    co_return a;
  });
  Client outsider, member;
  ASSERT_FALSE(outsider.connect(n.server.port, "outsider"));
  ASSERT_FALSE(member.connect(n.server.port, "member"));
  outsider.send({{"op", "subscribe"}, {"channel", "conversation:1"}});
  auto refused = outsider.read();
  EXPECT_EQ(refused["type"], "error");
  EXPECT_EQ(refused["code"], "forbidden");
  outsider.send({{"op", "subscribe"}, {"channel", "nonsense"}});
  EXPECT_EQ(outsider.read()["code"], "not_found");
  member.send({{"op", "subscribe"}, {"channel", "conversation:1"}});
  EXPECT_EQ(member.read()["type"], "subscribed");
  n.publish("conversation:1", "message.new", {{"secret", true}});
  n.publish("conversation:1", "message.new", {{"body", "hi"}});
  auto f = member.read();
  EXPECT_EQ(f["seq"], 2);
  EXPECT_EQ(f["channel"], "conversation:1");
}

TEST(Realtime, bad_frames_get_error_frames_and_the_connection_stays) {
  Node n(db_url("bad"));
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "frank"));
  c.ws.write(asio::buffer(std::string("not json")));
  EXPECT_EQ(c.read()["code"], "invalid_json");
  c.send({{"op", "dance"}, {"channel", "tasks"}});
  EXPECT_EQ(c.read()["code"], "unknown_op");
  c.send({{"op", "subscribe"}, {"channel", "tasks"}, {"since", "yesterday"}});
  EXPECT_EQ(c.read()["code"], "validation_failed");
  c.send({{"op", "subscribe"}, {"channel", "tasks"}, {"since", 99}});
  auto ahead = c.read_until("subscribed");
  EXPECT_EQ(ahead[0]["code"], "since_ahead");
  c.send({{"op", "ping"}});
  EXPECT_EQ(c.read()["type"], "pong");
}

TEST(Realtime, unauthenticated_upgrades_are_refused) {
  Node n(db_url("noauth"));
  Client c;
  c.ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), n.server.port});
  boost::system::error_code ec;
  c.ws.handshake("127.0.0.1", "/v1/ws", ec);
  EXPECT_TRUE(ec);
}

TEST(Realtime, domain_events_reach_their_owners_channel) {
  Node n(db_url("domain"));
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "gina"));
  c.send({{"op", "subscribe"}, {"channel", "devices"}});
  EXPECT_EQ(c.read()["type"], "subscribed");
  platform::DomainEvent e;
  e.type = "device.online";
  e.user_id = "gina";
  e.subject = "dev-1";
  testing::run(n.events->publish(e));
  auto f = c.read();
  EXPECT_EQ(f["type"], "device.online");
  EXPECT_EQ(f["data"].as_object()["id"], "dev-1");
}

TEST(Realtime, ephemeral_events_reach_subscribers_without_seq_and_are_never_replayed) {
  Node n(db_url("ephemeral"));
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "hana"));
  c.send({{"op", "subscribe"}, {"channel", "user"}});
  EXPECT_EQ(c.read()["type"], "subscribed");
  auto sent = testing::run(n.publisher->publish_ephemeral(user_channel("hana", "user"), "typing.started", {{"who", "ivo"}}));
  ASSERT_TRUE(sent.ok());
  auto f = c.read();
  EXPECT_EQ(f["type"], "typing.started");
  EXPECT_EQ(f["channel"], "user");
  EXPECT_FALSE(f.contains("seq"));
  EXPECT_EQ(f["data"].as_object()["who"], "ivo");
  // Stored events keep their own sequence, untouched by ephemeral ones in between.
  EXPECT_EQ(n.publish(user_channel("hana", "user"), "message.new", {{"n", 1}}), 1);
  EXPECT_EQ(c.read()["seq"], 1);
  Client late;
  ASSERT_FALSE(late.connect(n.server.port, "hana"));
  late.send({{"op", "subscribe"}, {"channel", "user"}, {"since", 0}});
  auto frames = late.read_until("subscribed");
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0]["type"], "message.new");
}

TEST(Realtime, connections_tell_watchers_of_a_users_first_socket_and_last_close) {
  Node n(db_url("presence"));
  auto conns = n.services->find<Connections>();
  ASSERT_TRUE(conns);
  std::mutex mu;
  std::vector<std::pair<std::string, bool>> seen;
  conns->watch([&](const std::string& user, bool online) {
    std::lock_guard lock(mu);
    seen.emplace_back(user, online);
  });
  auto wait_for = [&](std::size_t count) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu);
        if (seen.size() >= count) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  {
    Client a, b;
    ASSERT_FALSE(a.connect(n.server.port, "jo"));
    ASSERT_FALSE(b.connect(n.server.port, "jo"));
    a.send({{"op", "ping"}});
    b.send({{"op", "ping"}});
    EXPECT_EQ(a.read()["type"], "pong");
    EXPECT_EQ(b.read()["type"], "pong");
    ASSERT_TRUE(wait_for(1));
    EXPECT_EQ(conns->online_users(), std::vector<std::string>{"jo"});
    a.ws.close(websocket::close_code::normal);
  }
  ASSERT_TRUE(wait_for(2));
  std::lock_guard lock(mu);
  // Two sockets, one user: online once, offline once, after the last one closed.
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, bool>>{{"jo", true}, {"jo", false}}));
}

TEST(Realtime, replaying_a_backlog_larger_than_the_send_queue_is_paced_not_cut_off) {
  Node n(db_url("paced"), {{"realtime.send_queue_bytes", "8KiB"}});
  std::string key = user_channel("kim", "tasks");
  std::string pad(400, 'x');
  for (int i = 1; i <= 300; ++i) n.publish(key, "task.updated", {{"i", i}, {"pad", pad}});  // ~140 KB of frames
  Client c;
  ASSERT_FALSE(c.connect(n.server.port, "kim"));
  c.send({{"op", "subscribe"}, {"channel", "tasks"}, {"since", 0}});
  auto frames = c.read_until("subscribed");
  ASSERT_EQ(frames.size(), 301u);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(frames[i]["seq"], i + 1);
}

TEST(Realtime, batches_sharing_channels_in_opposite_orders_append_without_deadlock) {
  // Two nodes' appenders write batches that touch the same channels in opposite orders; on
  // PostgreSQL each batch locks its channels' rows until it commits.
  auto db = std::move(store::Database::open(testing::fresh_pg_schema_url("rt_lock_order"))).value();
  auto migrated = testing::run(store::migrate(*db, {{"realtime", history_migrations()}}));
  ASSERT_TRUE(migrated.ok());
  std::vector<std::string> channels;
  for (int i = 0; i < 8; ++i) channels.push_back("c" + std::to_string(i));
  std::atomic<int> failures{0};
  auto writer = [&](bool reversed) {
    History h(*db);
    for (int round = 0; round < 40; ++round) {
      std::vector<NewEvent> batch;
      for (int i = 0; i < 8; ++i) {
        const std::string& ch = channels[reversed ? 7 - i : i];
        batch.push_back({ch, "e", "{}", 0});
        batch.push_back({ch, "e", "{}", 0});
      }
      auto seqs = testing::run(h.append(batch));
      if (!seqs.ok()) {
        failures++;
        continue;
      }
      // Within a batch a channel's events keep their order.
      for (std::size_t i = 0; i + 1 < seqs->size(); i += 2) EXPECT_EQ((*seqs)[i] + 1, (*seqs)[i + 1]);
    }
  };
  std::thread a(writer, false), b(writer, true);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  for (const auto& ch : channels) {
    auto bounds = testing::run(History(*db).bounds(ch));
    ASSERT_TRUE(bounds.ok());
    EXPECT_EQ(bounds->head, 160);
  }
}

}  // namespace
}  // namespace harmar::realtime
