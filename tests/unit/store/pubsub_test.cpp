// One suite, run against the in-process PubSub and against Redis, plus what only Redis has:
// several nodes, and connections that drop.
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "events_support.hpp"
#include "store/pubsub.hpp"

namespace harmar::store {
namespace {

using testing::Collected;
using testing::Loop;
using testing::wait_until;

struct Got {
  std::string channel;
  std::string payload;
  std::thread::id thread;
  bool operator==(const Got& o) const { return channel == o.channel && payload == o.payload; }
};

MessageHandler collect_into(Collected<Got>& out) {
  return [&out](std::string_view ch, std::string_view payload) {
    out.add({std::string(ch), std::string(payload), std::this_thread::get_id()});
  };
}

std::vector<std::string> payloads(const std::vector<Got>& got) {
  std::vector<std::string> out;
  for (const auto& g : got) out.push_back(g.payload);
  return out;
}

class PubSubTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    name_ = testing::unique_name("ps");
    pubsub_ = open_pubsub(name_);
  }

  std::unique_ptr<PubSub> open_pubsub(const std::string& name) {
    auto ps = PubSub::open(redis() ? testing::named_redis_url(name) : "");
    if (!ps.ok()) throw std::runtime_error(ps.error().detail);
    return std::move(ps).value();
  }
  bool redis() const { return GetParam() == "redis"; }

  void ready(Loop& loop, Subscription& sub) {
    auto st = loop.run(sub.ready());
    ASSERT_TRUE(st.ok()) << st.error().detail;
  }
  void publish(Loop& loop, const std::string& channel, const std::string& payload) {
    auto st = loop.run(pubsub_->publish(channel, payload));
    ASSERT_TRUE(st.ok()) << st.error().detail;
  }
  std::string channel(const std::string& base) { return name_ + ":" + base; }

  std::string name_;
  std::unique_ptr<PubSub> pubsub_;
};

TEST_P(PubSubTest, delivers_on_the_subscribers_executor_across_threads) {
  Loop subscriber_loop, publisher_loop;
  Collected<Got> got;
  auto sub = pubsub_->subscribe(channel("news"), subscriber_loop.executor(), collect_into(got));
  ready(subscriber_loop, *sub);

  for (std::string p : {"one", "two", "three"}) publish(publisher_loop, channel("news"), p);

  ASSERT_TRUE(wait_until([&] { return got.size() == 3; }));
  auto items = got.items();
  EXPECT_EQ(payloads(items), (std::vector<std::string>{"one", "two", "three"}));
  for (const auto& g : items) {
    EXPECT_EQ(g.channel, channel("news"));
    EXPECT_EQ(g.thread, subscriber_loop.thread_id());
  }
}

TEST_P(PubSubTest, pattern_subscription_matches_its_prefix_literally) {
  Loop loop;
  Collected<Got> pattern, exact, glob;
  auto by_pattern = pubsub_->subscribe(channel("room:*"), loop.executor(), collect_into(pattern));
  auto by_name = pubsub_->subscribe(channel("room:1"), loop.executor(), collect_into(exact));
  // '[', ']' and '?' are glob syntax in Redis; here they must match only themselves.
  auto by_glob = pubsub_->subscribe(channel("a[1]?*"), loop.executor(), collect_into(glob));
  ready(loop, *by_pattern);
  ready(loop, *by_name);
  ready(loop, *by_glob);

  publish(loop, channel("room:1"), "r1");
  publish(loop, channel("roomy"), "not a room");
  publish(loop, channel("room:2"), "r2");
  publish(loop, channel("other"), "other");
  publish(loop, channel("a1xy"), "glob would match");
  publish(loop, channel("a[1]?z"), "literal");
  publish(loop, channel("room:end"), "end");
  publish(loop, channel("room:1"), "end");

  ASSERT_TRUE(wait_until([&] { return pattern.size() == 4 && exact.size() == 2 && glob.size() == 1; }))
      << pattern.size() << " " << exact.size() << " " << glob.size();
  EXPECT_EQ(payloads(pattern.items()), (std::vector<std::string>{"r1", "r2", "end", "end"}));
  EXPECT_EQ(pattern.items()[1].channel, channel("room:2"));
  EXPECT_EQ(payloads(exact.items()), (std::vector<std::string>{"r1", "end"}));
  EXPECT_EQ(payloads(glob.items()), (std::vector<std::string>{"literal"}));
}

TEST_P(PubSubTest, destroying_a_subscription_stops_its_delivery) {
  Loop loop;
  Collected<Got> kept, dropped;
  auto keep = pubsub_->subscribe(channel("c"), loop.executor(), collect_into(kept));
  auto drop = pubsub_->subscribe(channel("c"), loop.executor(), collect_into(dropped));
  ready(loop, *keep);
  ready(loop, *drop);
  publish(loop, channel("c"), "both");
  ASSERT_TRUE(wait_until([&] { return kept.size() == 1 && dropped.size() == 1; }));

  drop.reset();
  publish(loop, channel("c"), "only kept");
  ASSERT_TRUE(wait_until([&] { return kept.size() == 2; }));
  EXPECT_EQ(dropped.size(), 1u);

  if (redis()) {
    testing::RedisAdmin admin;
    // One local subscriber remains: Redis must still have the channel...
    EXPECT_EQ(admin.command({"PUBSUB", "NUMSUB", channel("c")}), channel("c") + "\n1");
    keep.reset();
    // ...and lose it with the last one.
    EXPECT_TRUE(wait_until([&] { return admin.command({"PUBSUB", "NUMSUB", channel("c")}) == channel("c") + "\n0"; }));
  }
}

TEST_P(PubSubTest, a_handler_may_unsubscribe_itself) {
  Loop loop;
  Collected<Got> self_removing, witness;
  std::unique_ptr<Subscription> once;
  once = pubsub_->subscribe(channel("c"), loop.executor(), [&](std::string_view ch, std::string_view p) {
    self_removing.add({std::string(ch), std::string(p), {}});
    once.reset();  // runs on `loop`, like the subscriber's own code would
  });
  auto watch = pubsub_->subscribe(channel("c"), loop.executor(), collect_into(witness));
  ready(loop, *once);
  ready(loop, *watch);

  for (int i = 0; i < 5; ++i) publish(loop, channel("c"), std::to_string(i));

  ASSERT_TRUE(wait_until([&] { return witness.size() == 5; }));
  EXPECT_EQ(payloads(self_removing.items()), (std::vector<std::string>{"0"}));
}

TEST_P(PubSubTest, keeps_the_order_of_a_thousand_messages) {
  Loop subscriber_loop, publisher_loop;
  Collected<Got> got;
  auto sub = pubsub_->subscribe(channel("seq"), subscriber_loop.executor(), collect_into(got));
  ready(subscriber_loop, *sub);

  auto publish_all = [&]() -> asio::awaitable<Status> {
    for (int i = 0; i < 1000; ++i) {
      auto st = co_await pubsub_->publish(channel("seq"), std::to_string(i));
      if (!st.ok()) co_return st;
    }
    co_return Status{};
  };
  auto st = publisher_loop.run(publish_all());
  ASSERT_TRUE(st.ok()) << st.error().detail;

  ASSERT_TRUE(wait_until([&] { return got.size() == 1000; })) << got.size();
  auto items = got.items();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(items[i].payload, std::to_string(i)) << "at " << i;
}

TEST_P(PubSubTest, publish_refuses_bad_channels_and_subscribe_throws) {
  Loop loop;
  auto empty = loop.run(pubsub_->publish("", "x"));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().status, 422);
  auto huge = loop.run(pubsub_->publish(std::string(PubSub::kMaxChannelBytes + 1, 'c'), "x"));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().status, 422);
  EXPECT_THROW(pubsub_->subscribe("", loop.executor(), [](auto, auto) {}), std::invalid_argument);
}

TEST_P(PubSubTest, ping_answers) {
  Loop loop;
  // With Redis the subscriber connection may still be connecting right after open().
  ASSERT_TRUE(wait_until([&] { return loop.run(pubsub_->ping()).ok(); }));
}

TEST_P(PubSubTest, subscription_may_outlive_its_pubsub) {
  Loop loop;
  Collected<Got> got;
  auto sub = pubsub_->subscribe(channel("c"), loop.executor(), collect_into(got));
  ready(loop, *sub);
  pubsub_.reset();
  auto st = loop.run(sub->ready());
  // In-process the fan-out lives on with the subscription; Redis's connection is gone.
  EXPECT_EQ(st.ok(), !redis());
  sub.reset();
  EXPECT_EQ(got.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, PubSubTest, ::testing::Values("local", "redis"),
                         [](const auto& info) { return info.param; });

// --- Redis only -------------------------------------------------------------------------------

TEST(RedisPubSub, two_nodes_on_one_redis_see_each_others_publishes) {
  Loop loop_a, loop_b;
  std::string channel = testing::unique_name("nodes");
  auto a = PubSub::open(testing::named_redis_url(testing::unique_name("node-a")));
  auto b = PubSub::open(testing::named_redis_url(testing::unique_name("node-b")));
  ASSERT_TRUE(a.ok() && b.ok());
  Collected<Got> on_a, on_b;
  auto sub_a = (*a)->subscribe(channel, loop_a.executor(), collect_into(on_a));
  auto sub_b = (*b)->subscribe(channel, loop_b.executor(), collect_into(on_b));
  ASSERT_TRUE(loop_a.run(sub_a->ready()).ok());
  ASSERT_TRUE(loop_b.run(sub_b->ready()).ok());

  ASSERT_TRUE(loop_a.run((*a)->publish(channel, "from a")).ok());
  ASSERT_TRUE(wait_until([&] { return on_a.size() == 1 && on_b.size() == 1; }));
  ASSERT_TRUE(loop_b.run((*b)->publish(channel, "from b")).ok());
  ASSERT_TRUE(wait_until([&] { return on_a.size() == 2 && on_b.size() == 2; }));

  // Exactly once per node: a sentinel published after everything else arrives last.
  ASSERT_TRUE(loop_a.run((*a)->publish(channel, "end")).ok());
  ASSERT_TRUE(wait_until([&] { return on_a.size() == 3 && on_b.size() == 3; }));
  std::vector<std::string> expected{"from a", "from b", "end"};
  EXPECT_EQ(payloads(on_a.items()), expected);
  EXPECT_EQ(payloads(on_b.items()), expected);
}

TEST(RedisPubSub, subscriptions_come_back_after_the_connection_is_killed) {
  Loop loop;
  testing::RedisAdmin admin;
  std::string name = testing::unique_name("resub");
  std::string channel = name + ":c";
  auto ps = PubSub::open(testing::named_redis_url(name));
  ASSERT_TRUE(ps.ok());
  Collected<Got> got;
  auto exact = (*ps)->subscribe(channel, loop.executor(), collect_into(got));
  Collected<Got> by_pattern;
  auto pattern = (*ps)->subscribe(name + ":*", loop.executor(), collect_into(by_pattern));
  ASSERT_TRUE(loop.run(exact->ready()).ok());
  ASSERT_TRUE(loop.run(pattern->ready()).ok());
  auto before = admin.client_ids(name + ":sub");
  ASSERT_EQ(before.size(), 1u);

  ASSERT_EQ(admin.kill(name + ":sub"), 1u);

  // A new subscriber connection appears, and carries both subscriptions again.
  ASSERT_TRUE(wait_until([&] {
    auto now = admin.client_ids(name + ":sub");
    return now.size() == 1 && now[0] != before[0];
  }));
  ASSERT_TRUE(loop.run(exact->ready()).ok());
  ASSERT_TRUE(loop.run(pattern->ready()).ok());
  EXPECT_EQ(admin.command({"PUBSUB", "NUMSUB", channel}), channel + "\n1");
  ASSERT_TRUE(loop.run((*ps)->publish(channel, "after")).ok());
  ASSERT_TRUE(wait_until([&] { return got.size() == 1 && by_pattern.size() == 1; }));
  EXPECT_EQ(got.items()[0].payload, "after");
  EXPECT_EQ(by_pattern.items()[0].payload, "after");
}

TEST(RedisPubSub, publish_fails_cleanly_while_redis_is_unreachable) {
  Loop loop;
  // A port nobody listens on: bind, read the port, close.
  asio::io_context ioc;
  asio::ip::tcp::acceptor probe(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = probe.local_endpoint().port();
  probe.close();

  auto ps = PubSub::open("redis://127.0.0.1:" + std::to_string(port) + "?timeout=300ms");
  ASSERT_TRUE(ps.ok());
  auto started = std::chrono::steady_clock::now();
  auto st = loop.run((*ps)->publish("c", "x"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().status, 503);
  EXPECT_EQ(st.error().code, "unavailable");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  auto ping = loop.run((*ps)->ping());
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.error().status, 503);

  Collected<Got> got;
  auto sub = (*ps)->subscribe("c", loop.executor(), collect_into(got));
  auto ready = loop.run(sub->ready());
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().status, 503);
}

TEST(RedisPubSub, publishing_recovers_after_the_connection_is_killed) {
  Loop loop;
  testing::RedisAdmin admin;
  std::string name = testing::unique_name("repub");
  auto ps = PubSub::open(testing::named_redis_url(name));
  ASSERT_TRUE(ps.ok());
  ASSERT_TRUE(wait_until([&] { return loop.run((*ps)->ping()).ok(); }));
  ASSERT_EQ(admin.kill(name + ":pub"), 1u);

  std::vector<Error> failures;
  ASSERT_TRUE(wait_until([&] {
    auto st = loop.run((*ps)->publish(name + ":c", "x"));
    if (!st.ok()) failures.push_back(st.error());
    return st.ok();
  }));
  for (const auto& e : failures) {
    EXPECT_EQ(e.status, 503) << e.detail;
    EXPECT_EQ(e.code, "unavailable");
  }
  EXPECT_EQ(admin.client_ids(name + ":pub").size(), 1u);
}

}  // namespace
}  // namespace harmar::store
