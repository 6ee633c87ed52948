// A Redis server that really goes away and comes back on the same port: Kv and PubSub fail with
// 503 while it is down, then recover by themselves, subscriptions included.
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "events_support.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"

extern char** environ;

namespace harmar::store {
namespace {

using testing::Collected;
using testing::Loop;
using testing::wait_until;

// A redis-server of this test's own (the shared test server must stay up for the others).
class OwnRedis {
 public:
  OwnRedis() {
    asio::io_context ioc;
    asio::ip::tcp::acceptor probe(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port_ = probe.local_endpoint().port();
    probe.close();
    start();
  }
  ~OwnRedis() { stop(); }

  void start() {
    std::string port = std::to_string(port_);
    std::string dir = scratch_.path().string();
    std::vector<std::string> args{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", dir, "--logfile", dir + "/redis.log"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawnp(&pid_, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start redis-server");
    }
    bool up = wait_until([&] {
      timeval tv{0, 200000};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      bool ok = c && !c->err;
      if (c) redisFree(c);
      return ok;
    });
    if (!up) throw std::runtime_error("redis-server did not start");
  }

  // Like a crash: no goodbye to the clients.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string url(const std::string& query) const { return "redis://127.0.0.1:" + std::to_string(port_) + "?" + query; }

 private:
  testing::ScratchDir scratch_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

TEST(RedisRestart, kv_and_pubsub_fail_cleanly_while_redis_is_down_and_recover_with_their_subscriptions) {
  OwnRedis server;
  auto kv = Kv::open(server.url("name=restart&timeout=500ms"));
  auto ps = PubSub::open(server.url("name=restart&timeout=500ms"));
  ASSERT_TRUE(kv.ok() && ps.ok());
  Loop loop;
  Collected<std::string> got;
  auto sub = (*ps)->subscribe("events", loop.executor(),
                              [&](std::string_view, std::string_view payload) { got.add(std::string(payload)); });
  ASSERT_TRUE(loop.run(sub->ready()).ok());
  ASSERT_TRUE(loop.run((*kv)->set("k", "v")).ok());

  server.stop();

  std::vector<Error> kv_errors, publish_errors;
  ASSERT_TRUE(wait_until([&] {
    auto r = loop.run((*kv)->get("k"));
    if (!r.ok()) kv_errors.push_back(r.error());
    return !r.ok();
  }));
  auto published = loop.run((*ps)->publish("events", "lost"));
  ASSERT_FALSE(published.ok());
  publish_errors.push_back(published.error());
  auto ping = loop.run((*ps)->ping());
  ASSERT_FALSE(ping.ok());
  publish_errors.push_back(ping.error());
  for (const auto& e : kv_errors) EXPECT_EQ(e.status, 503) << e.detail;
  for (const auto& e : publish_errors) EXPECT_EQ(e.status, 503) << e.detail;

  server.start();

  ASSERT_TRUE(wait_until([&] { return loop.run((*kv)->set("k", "again")).ok(); }));
  auto value = loop.run((*kv)->get("k"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, "again");
  // The subscription is made again on the new server without the subscriber doing anything.
  ASSERT_TRUE(wait_until([&] { return loop.run(sub->ready()).ok(); }));
  // The publishing connection reconnects on its own schedule; wait for it before publishing once.
  ASSERT_TRUE(wait_until([&] { return loop.run((*ps)->ping()).ok(); }));
  ASSERT_TRUE(loop.run((*ps)->publish("events", "after restart")).ok());
  ASSERT_TRUE(wait_until([&] { return got.size() == 1; }));
  EXPECT_EQ(got.items(), std::vector<std::string>{"after restart"});
}

}  // namespace
}  // namespace harmar::store
