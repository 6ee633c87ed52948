// Devices against real storage: keys are hashed and prefixed, a deleted device's key stops
// working on every node at once (PostgreSQL + Redis fan-out, even with a warm cache), and the
// offline sweeper reports each silent device once.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "core/clock.hpp"
#include "devices/repo.hpp"
#include "devices/service.hpp"
#include "store/blobs.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "support/test_support.hpp"

namespace harmar::devices {
namespace {

template <class T>
T must(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.error().code + ": " + r.error().detail);
  return std::move(r).value();
}

Principal user(const std::string& id) {
  Principal p;
  p.id = p.user_id = id;
  return p;
}

struct Node {
  Node(const std::string& db_url, const std::string& redis, Options o, bool migrate) {
    db = std::move(store::Database::open(db_url)).value();
    if (migrate) {
      EXPECT_TRUE(testing::run(store::migrate(*db, {{"devices", repo::migrations()}})).ok());
    }
    pubsub = std::move(store::PubSub::open(redis)).value();
    kv = std::move(store::Kv::open("")).value();
    blobs = std::move(store::BlobStore::open("", testing::temp_dir())).value();
    events = std::make_unique<platform::EventBus>(*pubsub);
    services = std::make_unique<platform::Services>(cfg, *db, *pubsub, *kv, *blobs, *events, background);
    svc = std::make_shared<Service>(*services, o);
    svc->start();
    thread = std::thread([this] { background.run(); });
  }
  ~Node() {
    svc->stop();
    work.reset();
    background.stop();
    thread.join();
  }
  config::Config cfg{config::core_schema()};
  asio::io_context background;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(background);
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::PubSub> pubsub;
  std::unique_ptr<store::Kv> kv;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<platform::EventBus> events;
  std::unique_ptr<platform::Services> services;
  std::shared_ptr<Service> svc;
  std::thread thread;
};

std::string sqlite_url(const std::string& name) {
  std::string path = testing::temp_dir() + "/" + name + ".db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  return "sqlite://" + path;
}

TEST(Devices, keys_are_prefixed_random_and_only_their_hash_is_stored) {
  Node n(sqlite_url("keys"), "", Options{}, true);
  RegisterInput in;
  in.name = "box";
  auto reg = must(testing::run(n.svc->register_device(user("u1"), in)));
  EXPECT_TRUE(reg.api_key.starts_with("hdk_"));
  EXPECT_EQ(reg.api_key.size(), 47u);
  EXPECT_NE(new_api_key(), new_api_key());
  auto stored = must(testing::run(n.db->query("SELECT key_hash FROM devices", {})));
  EXPECT_EQ(stored.front().text(0), hash_api_key(reg.api_key));
  EXPECT_EQ(stored.front().text(0).find(reg.api_key.substr(4)), std::string::npos);
  auto p = must(testing::run(n.svc->authenticate(reg.api_key)));
  EXPECT_EQ(p.kind, Principal::Kind::Device);
  EXPECT_EQ(p.id, reg.device.id);
  EXPECT_EQ(p.user_id, "u1");
  std::string wrong = reg.api_key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  auto refused = testing::run(n.svc->authenticate(wrong));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "invalid_api_key");
  EXPECT_FALSE(testing::run(n.svc->authenticate("hak_notadevicekey")).ok());
}

TEST(Devices, a_deleted_devices_key_stops_working_on_every_node_at_once) {
  std::string url = testing::fresh_pg_schema_url("devices_revoke");
  std::string redis = testing::redis_url();
  Options o;
  o.auth_cache_ttl_ms = 600'000;  // a warm cache must not keep a revoked key alive
  Node a(url, redis, o, true);
  Node b(url, redis, o, false);
  RegisterInput in;
  in.name = "box";
  auto reg = must(testing::run(a.svc->register_device(user("u1"), in)));
  EXPECT_TRUE(testing::run(b.svc->authenticate(reg.api_key)).ok());  // cached on b now
  EXPECT_TRUE(testing::run(a.svc->authenticate(reg.api_key)).ok());
  auto st = testing::run(a.svc->remove(user("u1"), reg.device.id));
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(testing::run(a.svc->authenticate(reg.api_key)).ok()) << "the deleting node forgets at once";
  // The other node hears it through Redis within moments.
  bool revoked = false;
  for (int i = 0; i < 200 && !revoked; ++i) {
    revoked = !testing::run(b.svc->authenticate(reg.api_key)).ok();
    if (!revoked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(revoked);
}

TEST(Devices, the_sweeper_marks_a_silent_device_offline_once_across_nodes) {
  std::string url = testing::fresh_pg_schema_url("devices_sweep");
  Options o;
  o.heartbeat_timeout_ms = 50;
  o.sweep_interval_ms = 3'600'000;  // we sweep by hand
  Node a(url, "", o, true);
  Node b(url, "", o, false);
  std::atomic<int> offline{0};
  for (Node* n : {&a, &b})
    n->events->on_local("device.offline", n->background.get_executor(), [&](const platform::DomainEvent&) { ++offline; });
  RegisterInput in;
  in.name = "box";
  auto reg = must(testing::run(a.svc->register_device(user("u1"), in)));
  Principal dp;
  dp.kind = Principal::Kind::Device;
  dp.id = reg.device.id;
  dp.user_id = "u1";
  HeartbeatInput hb;
  ASSERT_TRUE(testing::run(a.svc->heartbeat(dp, hb)).ok());
  EXPECT_EQ(must(testing::run(a.svc->get(user("u1"), reg.device.id))).status, "online");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::atomic<int> swept{0};
  std::thread t1([&] { swept += must(testing::run(a.svc->sweep_once())); });
  std::thread t2([&] { swept += must(testing::run(b.svc->sweep_once())); });
  t1.join();
  t2.join();
  EXPECT_EQ(swept.load(), 1);
  EXPECT_EQ(must(testing::run(a.svc->get(user("u1"), reg.device.id))).status, "offline");
  for (int i = 0; i < 100 && offline.load() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(offline.load(), 1);
}

}  // namespace
}  // namespace harmar::devices
