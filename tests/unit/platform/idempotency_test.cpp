// Idempotency-Key against a real SQLite database and a real in-process server.
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <atomic>

#include "platform/idempotency.hpp"
#include "support/test_client.hpp"
#include "support/test_support.hpp"

namespace harmar::platform {
namespace {

using testing::RawClient;

struct Fixture {
  Fixture() {
    static int n = 0;
    db = std::move(store::Database::open("sqlite://" + testing::temp_dir() + "/idem" + std::to_string(++n) + ".db")).value();
    auto mod = platform_module();
    auto st = testing::run(store::migrate(*db, {{mod.name, mod.migrations}}));
    EXPECT_TRUE(st.ok());
    pubsub = std::move(store::PubSub::open("")).value();
    kv = std::move(store::Kv::open("")).value();
    blobs = std::move(store::BlobStore::open("", testing::temp_dir())).value();
    events = std::make_unique<EventBus>(*pubsub);
    services = std::make_unique<Services>(cfg, *db, *pubsub, *kv, *blobs, *events, background);
  }
  config::Config cfg{config::core_schema()};
  asio::io_context background;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::PubSub> pubsub;
  std::unique_ptr<store::Kv> kv;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<EventBus> events;
  std::unique_ptr<Services> services;
};

std::string post(std::string_view body, std::string_view key) {
  std::string r = "POST /things HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (!key.empty()) r += "Idempotency-Key: " + std::string(key) + "\r\n";
  return r + "\r\n" + std::string(body);
}

TEST(Idempotency, same_key_and_body_replays_the_first_response_and_runs_once) {
  Fixture f;
  testing::TestServer s;
  auto runs = std::make_shared<std::atomic<int>>(0);
  s.router.post("/things", [runs](net::Request& req) -> asio::awaitable<net::Response> {
    int n = ++*runs;
    co_return net::Response(201, "{\"n\":" + std::to_string(n) + "}");
  }, {.middleware = {idempotent(*f.services)}});
  s.start();
  RawClient c(s.port);
  auto first = c.request(post("{\"a\":1}", "key-1"));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result_int(), 201);
  EXPECT_EQ(first->body(), "{\"n\":1}");
  auto again = c.request(post("{\"a\":1}", "key-1"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->result_int(), 201);
  EXPECT_EQ(again->body(), "{\"n\":1}");
  EXPECT_EQ((*again)["Idempotent-Replayed"], "true");
  EXPECT_EQ(runs->load(), 1);

  auto other = c.request(post("{\"a\":2}", "key-1"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->result_int(), 409);
  EXPECT_NE(other->body().find("idempotency_key_reused"), std::string::npos);

  auto fresh = c.request(post("{\"a\":1}", "key-2"));
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->body(), "{\"n\":2}");
  auto none = c.request(post("{\"a\":1}", ""));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->body(), "{\"n\":3}");
  EXPECT_EQ(runs->load(), 3);
}

TEST(Idempotency, server_errors_are_not_kept_so_a_retry_runs_again) {
  Fixture f;
  testing::TestServer s;
  auto runs = std::make_shared<std::atomic<int>>(0);
  s.router.post("/things", [runs](net::Request&) -> asio::awaitable<net::Response> {
    if (++*runs == 1) co_return Error::unavailable("try later");
    co_return net::Response(201, "{}");
  }, {.middleware = {idempotent(*f.services)}});
  s.start();
  RawClient c(s.port);
  EXPECT_EQ(c.request(post("{}", "k"))->result_int(), 503);
  EXPECT_EQ(c.request(post("{}", "k"))->result_int(), 201);
  EXPECT_EQ(c.request(post("{}", "k"))->result_int(), 201);
  EXPECT_EQ(runs->load(), 2);
}

TEST(Idempotency, malformed_keys_are_refused) {
  Fixture f;
  testing::TestServer s;
  s.router.post("/things", [](net::Request&) -> asio::awaitable<net::Response> { co_return net::Response(201, "{}"); },
                {.middleware = {idempotent(*f.services)}});
  s.start();
  RawClient c(s.port);
  auto r = c.request(post("{}", std::string(300, 'k')));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 422);
}

}  // namespace
}  // namespace harmar::platform
