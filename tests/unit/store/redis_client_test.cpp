// The store's Redis client on its own: URLs, pipelining, the handshake, timeouts and drops.
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "events_support.hpp"
#include "store/redis.hpp"

namespace harmar::store::redis {
namespace {

using testing::Loop;
using testing::wait_until;

// A Connection with its own thread, as the Kv and PubSub hold them.
struct Client {
  explicit Client(const std::string& url_text, std::string role = "t") {
    auto url = parse_url(url_text);
    if (!url.ok()) throw std::runtime_error(url.error().detail);
    conn = Connection::start(io.context(), ConnectionOptions{.url = *url, .role = std::move(role)});
  }
  ~Client() { conn->stop(); }
  Result<Reply> run(std::vector<std::string> args) { return testing::run_any(conn->command(std::move(args))); }

  IoThread io{"redis-test"};
  std::shared_ptr<Connection> conn;
};

uint16_t unused_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor probe(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return probe.local_endpoint().port();
}

TEST(RedisUrl, parses_every_part) {
  auto u = parse_url("redis://alice:p%40ss@example.org:6380/3?name=node-1&timeout=250ms");
  ASSERT_TRUE(u.ok()) << u.error().detail;
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "p@ss");
  EXPECT_EQ(u->host, "example.org");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 3);
  EXPECT_EQ(u->name, "node-1");
  EXPECT_EQ(u->timeout_ms, 250);

  auto d = parse_url("redis://localhost");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 6379);
  EXPECT_EQ(d->db, 0);
  EXPECT_EQ(d->password, "");
  EXPECT_EQ(d->timeout_ms, 2000);

  auto v6 = parse_url("redis://:secret@[::1]:7000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 7000);
  EXPECT_EQ(v6->user, "");
  EXPECT_EQ(v6->password, "secret");
}

TEST(RedisUrl, refuses_what_it_cannot_honour) {
  for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/db", "redis://h?x=1",
                          "rediss://h", "redis://h?name=a%20b", "redis://h?timeout=forever", "redis://[::1"}) {
    auto u = parse_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().status, 422) << bad;
  }
}

TEST(RedisClient, encodes_binary_safe_commands) {
  EXPECT_EQ(encode_command({"SET", std::string("k\0", 2), "a b\r\n"}),
            std::string("*3\r\n$3\r\nSET\r\n$2\r\nk") + '\0' + "\r\n$5\r\na b\r\n\r\n");
}

TEST(RedisClient, pipelined_replies_reach_their_own_callers_on_their_own_threads) {
  Client client(testing::named_redis_url(testing::unique_name("pipe")));
  constexpr int kPerLoop = 1000;
  Loop loop_a, loop_b;
  std::atomic<int> right{0}, wrong{0}, finished{0};
  auto echo = [&](int i, std::thread::id home) -> asio::awaitable<void> {
    std::vector<std::string> cmd{"ECHO", "m" + std::to_string(i)};
    auto r = co_await client.conn->command(std::move(cmd));
    bool ok = r.ok() && r->str == "m" + std::to_string(i) && std::this_thread::get_id() == home;
    ++(ok ? right : wrong);
    ++finished;
  };
  for (int i = 0; i < kPerLoop; ++i) {
    asio::co_spawn(loop_a.executor(), echo(i, loop_a.thread_id()), asio::detached);
    asio::co_spawn(loop_b.executor(), echo(kPerLoop + i, loop_b.thread_id()), asio::detached);
  }
  ASSERT_TRUE(wait_until([&] { return finished.load() == 2 * kPerLoop; }));
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(right.load(), 2 * kPerLoop);
}

TEST(RedisClient, error_replies_become_errors_and_batches_keep_them_as_elements) {
  Client client(testing::named_redis_url(testing::unique_name("err")));
  auto r = client.run({"NOSUCHCOMMAND"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "redis_error");
  EXPECT_NE(r.error().detail.find("unknown command"), std::string::npos) << r.error().detail;

  std::string key = testing::unique_name("batch");
  auto batch = testing::run_any(client.conn->commands({{"SET", key, "x"}, {"INCR", key}, {"GET", key}}));
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->elements.size(), 3u);
  EXPECT_TRUE(batch->elements[0].is_ok());
  EXPECT_EQ(batch->elements[1].type, Reply::Type::Error);
  EXPECT_EQ(batch->elements[2].str, "x");
}

TEST(RedisClient, in_flight_command_fails_with_503_when_the_connection_is_killed) {
  testing::RedisAdmin admin;
  std::string name = testing::unique_name("kill");
  Client client(testing::named_redis_url(name, "timeout=20s"));
  Loop loop;
  auto blocked = std::async(std::launch::async, [&] {
    return loop.run(client.conn->command({"BLPOP", testing::unique_name("nothing"), "0"}));
  });
  ASSERT_TRUE(wait_until([&] { return admin.client_ids(name + ":t", "blpop").size() == 1; }));

  auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(admin.kill(name + ":t"), 1u);
  auto r = blocked.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 503);
  EXPECT_EQ(r.error().code, "unavailable");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));

  // It reconnects by itself.
  ASSERT_TRUE(wait_until([&] { return client.run({"PING"}).ok(); }));
  EXPECT_EQ(admin.client_ids(name + ":t").size(), 1u);
}

TEST(RedisClient, refused_connection_fails_fast) {
  Client client("redis://127.0.0.1:" + std::to_string(unused_port()) + "?timeout=500ms");
  for (int i = 0; i < 3; ++i) {
    auto started = std::chrono::steady_clock::now();
    auto r = client.run({"PING"});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 503);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  }
}

// Answers the handshake, then never says another word.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 8);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~SilentServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    for (int c : clients_) ::close(c);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++accepted_;
      clients_.push_back(c);
      char buf[4096];
      std::string seen;
      while (seen.find("SETNAME") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        seen.append(buf, static_cast<std::size_t>(n));
      }
      ::write(c, "+OK\r\n", 5);
    }
  }

  int fd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::vector<int> clients_;
};

TEST(RedisClient, a_command_without_an_answer_times_out_and_the_connection_is_replaced) {
  SilentServer server;
  Client client("redis://127.0.0.1:" + std::to_string(server.port()) + "?timeout=200ms");
  ASSERT_TRUE(wait_until([&] { return client.conn->connected(); }));

  auto started = std::chrono::steady_clock::now();
  auto r = client.run({"GET", "k"});
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 503);
  EXPECT_NE(r.error().detail.find("did not answer"), std::string::npos) << r.error().detail;
  EXPECT_GE(took, std::chrono::milliseconds(150));
  EXPECT_LT(took, std::chrono::seconds(2));
  // A connection that stopped answering is dropped and a new one made.
  EXPECT_TRUE(wait_until([&] { return server.accepted() >= 2; }));
}

TEST(RedisClient, authenticates_and_selects_the_database_from_the_url) {
  testing::RedisAdmin admin;
  std::string user = testing::unique_name("user");
  ASSERT_EQ(admin.command({"ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all"}), "OK");
  auto base = parse_url(testing::redis_url());
  ASSERT_TRUE(base.ok());
  std::string hostport = base->host + ":" + std::to_string(base->port);
  std::string key = testing::unique_name("db3");
  {
    Client client("redis://" + user + ":s3cret@" + hostport + "/3");
    auto set = client.run({"SET", key, "in three"});
    ASSERT_TRUE(set.ok()) << set.error().detail;
    EXPECT_EQ(admin.command({"GET", key}), "(nil)");
    admin.command({"SELECT", "3"});
    EXPECT_EQ(admin.command({"GET", key}), "in three");
    admin.command({"DEL", key});
    admin.command({"SELECT", "0"});
  }
  {
    Client wrong("redis://" + user + ":nope@" + hostport + "?timeout=500ms");
    auto r = wrong.run({"PING"});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 503);
    EXPECT_NE(r.error().detail.find("AUTH"), std::string::npos) << r.error().detail;
  }
  admin.command({"ACL", "DELUSER", user});
}

TEST(RedisClient, stop_fails_what_is_pending_and_everything_after) {
  std::string name = testing::unique_name("stop");
  auto client = std::make_unique<Client>(testing::named_redis_url(name, "timeout=20s"));
  Loop loop;
  auto blocked = std::async(std::launch::async, [&] {
    return loop.run(client->conn->command({"BLPOP", testing::unique_name("nothing"), "0"}));
  });
  testing::RedisAdmin admin;
  ASSERT_TRUE(wait_until([&] { return admin.client_ids(name + ":t", "blpop").size() == 1; }));
  client->conn->stop();
  auto r = blocked.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 503);
  auto after = client->run({"PING"});
  ASSERT_FALSE(after.ok());
  EXPECT_NE(after.error().detail.find("closed"), std::string::npos);
  client.reset();  // joins the client's thread: nothing left hanging
  EXPECT_TRUE(wait_until([&] { return admin.client_ids(name + ":t").empty(); }));
}

}  // namespace
}  // namespace harmar::store::redis
