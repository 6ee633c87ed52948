// One suite, run against the in-process Kv and against Redis: both must behave the same.
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <atomic>

#include "events_support.hpp"
#include "store/kv.hpp"

namespace harmar::store {
namespace {

using testing::Loop;
using testing::wait_until;

class KvTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    name_ = testing::unique_name("kv");
    auto kv = Kv::open(redis() ? testing::named_redis_url(name_) : "");
    ASSERT_TRUE(kv.ok()) << kv.error().detail;
    kv_ = std::move(kv).value();
  }
  bool redis() const { return GetParam() == "redis"; }
  std::string key(const std::string& base) const { return name_ + ":" + base; }

  template <class T>
  T value(Result<T> r) {
    if (!r.ok()) throw std::runtime_error(r.error().code + ": " + r.error().detail);
    return std::move(r).value();
  }
  std::optional<std::string> get(const std::string& k) { return value(testing::run_any(kv_->get(k))); }
  std::optional<int64_t> ttl(const std::string& k) { return value(testing::run_any(kv_->ttl(k))); }
  void set(const std::string& k, const std::string& v, int64_t ttl_ms = 0) {
    auto st = testing::run_any(kv_->set(k, v, ttl_ms));
    if (!st.ok()) throw std::runtime_error(st.error().detail);
  }

  std::string name_;
  std::unique_ptr<Kv> kv_;
};

TEST_P(KvTest, set_get_del_round_trip_binary_values) {
  std::string binary("a\0b\r\nc", 6);
  EXPECT_EQ(get(key("k")), std::nullopt);
  set(key("k"), binary);
  EXPECT_EQ(get(key("k")), binary);
  EXPECT_TRUE(value(testing::run_any(kv_->del(key("k")))));
  EXPECT_FALSE(value(testing::run_any(kv_->del(key("k")))));
  EXPECT_EQ(get(key("k")), std::nullopt);
}

TEST_P(KvTest, keys_expire_after_their_ttl) {
  set(key("short"), "v", 100);
  set(key("forever"), "v");
  auto left = ttl(key("short"));
  ASSERT_TRUE(left.has_value());
  EXPECT_GT(*left, 0);
  EXPECT_LE(*left, 100);
  EXPECT_EQ(ttl(key("forever")), std::nullopt);

  ASSERT_TRUE(wait_until([&] { return !get(key("short")).has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(ttl(key("short")), std::nullopt);
  EXPECT_FALSE(value(testing::run_any(kv_->del(key("short")))));
  EXPECT_EQ(get(key("forever")), "v");
}

TEST_P(KvTest, set_replaces_the_value_and_the_expiry) {
  set(key("k"), "v1", 100000);
  set(key("k"), "v2");
  EXPECT_EQ(get(key("k")), "v2");
  EXPECT_EQ(ttl(key("k")), std::nullopt);
}

TEST_P(KvTest, set_if_absent_has_exactly_one_winner_among_racing_coroutines) {
  constexpr int kPerLoop = 25;
  Loop loop_a, loop_b;
  std::atomic<int> wins{0}, errors{0}, finished{0};
  auto contender = [&](int id) -> asio::awaitable<void> {
    auto r = co_await kv_->set_if_absent(key("lock"), "owner-" + std::to_string(id), 10000);
    if (!r.ok()) {
      ++errors;
    } else if (*r) {
      ++wins;
    }
    ++finished;
  };
  // All contenders in flight at once, half on each of two event loops.
  for (int i = 0; i < kPerLoop; ++i) {
    asio::co_spawn(loop_a.executor(), contender(i), asio::detached);
    asio::co_spawn(loop_b.executor(), contender(kPerLoop + i), asio::detached);
  }
  ASSERT_TRUE(wait_until([&] { return finished.load() == 2 * kPerLoop; }));
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(wins.load(), 1);
  auto owner = get(key("lock"));
  ASSERT_TRUE(owner.has_value());
  EXPECT_TRUE(owner->starts_with("owner-"));
  auto left = ttl(key("lock"));
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(*left, 10000);
}

TEST_P(KvTest, set_if_absent_succeeds_again_once_the_key_expired) {
  EXPECT_TRUE(value(testing::run_any(kv_->set_if_absent(key("code"), "1", 80))));
  EXPECT_FALSE(value(testing::run_any(kv_->set_if_absent(key("code"), "2", 80))));
  EXPECT_EQ(get(key("code")), "1");
  ASSERT_TRUE(wait_until([&] { return value(testing::run_any(kv_->set_if_absent(key("code"), "3", 0))); },
                         std::chrono::seconds(5)));
  EXPECT_EQ(get(key("code")), "3");
  EXPECT_EQ(ttl(key("code")), std::nullopt);
}

TEST_P(KvTest, incr_from_many_threads_adds_up_exactly) {
  constexpr int kThreads = 4, kPerThread = 250;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Each thread its own event loop, with its increments in flight together.
      asio::io_context ioc;
      auto one = [&]() -> asio::awaitable<void> {
        auto r = co_await kv_->incr(key("n"), 1, 0);
        if (!r.ok()) ++errors;
      };
      for (int i = 0; i < kPerThread; ++i) asio::co_spawn(ioc, one(), asio::detached);
      ioc.run();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(get(key("n")), std::to_string(kThreads * kPerThread));
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("n"), -1000, 0))), 0);
}

TEST_P(KvTest, incr_sets_the_expiry_only_when_it_creates_the_key) {
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("rate"), 5, 100000))), 5);
  auto first = ttl(key("rate"));
  ASSERT_TRUE(first.has_value());
  EXPECT_LE(*first, 100000);
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("rate"), 2, 5000000))), 7);
  auto second = ttl(key("rate"));
  ASSERT_TRUE(second.has_value());
  EXPECT_LE(*second, *first);

  set(key("plain"), "10");
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("plain"), 1, 100000))), 11);
  EXPECT_EQ(ttl(key("plain")), std::nullopt);

  EXPECT_EQ(value(testing::run_any(kv_->incr(key("no-ttl"), 3, 0))), 3);
  EXPECT_EQ(ttl(key("no-ttl")), std::nullopt);
}

TEST_P(KvTest, incr_expired_counter_starts_again_with_a_new_expiry) {
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("window"), 1, 60))), 1);
  ASSERT_TRUE(wait_until([&] { return !get(key("window")).has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(value(testing::run_any(kv_->incr(key("window"), 1, 100000))), 1);
  EXPECT_TRUE(ttl(key("window")).has_value());
}

TEST_P(KvTest, incr_refuses_values_that_are_not_integers) {
  set(key("text"), "abc");
  auto r = testing::run_any(kv_->incr(key("text"), 1, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 409);
  EXPECT_EQ(r.error().code, "not_an_integer");

  set(key("max"), std::to_string(INT64_MAX));
  auto overflow = testing::run_any(kv_->incr(key("max"), 1, 1000));
  ASSERT_FALSE(overflow.ok());
  EXPECT_EQ(overflow.error().code, "not_an_integer");
  EXPECT_EQ(get(key("max")), std::to_string(INT64_MAX));
}

TEST_P(KvTest, refuses_bad_keys_values_and_ttls) {
  auto empty = testing::run_any(kv_->get(""));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().status, 422);
  auto negative = testing::run_any(kv_->set(key("k"), "v", -1));
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().status, 422);
  auto long_key = testing::run_any(kv_->set(std::string(Kv::kMaxKeyBytes + 1, 'k'), "v"));
  ASSERT_FALSE(long_key.ok());
  EXPECT_EQ(long_key.error().status, 422);
  auto big = testing::run_any(kv_->set(key("big"), std::string(Kv::kMaxValueBytes + 1, 'v')));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().status, 422);
  EXPECT_EQ(get(key("k")), std::nullopt);
}

TEST_P(KvTest, ping_answers) { EXPECT_TRUE(testing::run_any(kv_->ping()).ok()); }

INSTANTIATE_TEST_SUITE_P(Backends, KvTest, ::testing::Values("local", "redis"),
                         [](const auto& info) { return info.param; });

// --- Redis only -------------------------------------------------------------------------------

TEST(RedisKv, commands_fail_with_503_after_a_drop_then_recover) {
  testing::RedisAdmin admin;
  std::string name = testing::unique_name("kvdrop");
  auto kv = Kv::open(testing::named_redis_url(name));
  ASSERT_TRUE(kv.ok());
  ASSERT_TRUE(testing::run_any((*kv)->set(name + ":k", "before")).ok());
  ASSERT_EQ(admin.kill(name + ":kv"), 1u);

  std::vector<Error> failures;
  ASSERT_TRUE(wait_until([&] {
    auto r = testing::run_any((*kv)->get(name + ":k"));
    if (!r.ok()) failures.push_back(r.error());
    return r.ok() && *r == "before";
  }));
  for (const auto& e : failures) {
    EXPECT_EQ(e.status, 503) << e.detail;
    EXPECT_EQ(e.code, "unavailable");
  }
  EXPECT_EQ(admin.client_ids(name + ":kv").size(), 1u);
}

TEST(RedisKv, unreachable_redis_fails_fast_with_503) {
  asio::io_context ioc;
  asio::ip::tcp::acceptor probe(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = probe.local_endpoint().port();
  probe.close();
  auto kv = Kv::open("redis://127.0.0.1:" + std::to_string(port) + "?timeout=300ms");
  ASSERT_TRUE(kv.ok());
  for (int i = 0; i < 3; ++i) {
    auto started = std::chrono::steady_clock::now();
    auto r = testing::run_any((*kv)->get("k"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 503);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  }
}

TEST(KvOpen, refuses_urls_it_does_not_understand) {
  EXPECT_FALSE(Kv::open("memcached://x").ok());
  EXPECT_FALSE(Kv::open("redis://").ok());
  EXPECT_FALSE(Kv::open("rediss://host:6380").ok());
}

}  // namespace
}  // namespace harmar::store
