// The queue's guarantees against real databases: concurrent claimers (on PostgreSQL, two nodes)
// never get the same task, a lost lease cannot complete, leases expire into retries and death,
// schedules fire once across nodes, rate limits hold under concurrency, and a long-poll is woken.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <set>
#include <thread>

#include "core/clock.hpp"
#include "devices/repo.hpp"
#include "devices/service.hpp"
#include "platform/idempotency.hpp"
#include "store/blobs.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "support/test_support.hpp"
#include "tasks/repo.hpp"
#include "tasks/service.hpp"

namespace harmar::tasks {
namespace {

using store::Backend;

std::string slug() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = std::string(info->test_suite_name()) + "_" + info->name();
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  if (out.size() > 50) out = out.substr(0, 40) + "_" + std::to_string(std::hash<std::string>{}(out) % 1000000000);
  return "q_" + out;
}

std::string fresh_url(Backend b) {
  if (b == Backend::Postgres) return testing::fresh_pg_schema_url(slug());
  std::string path = testing::temp_dir() + "/" + slug() + ".db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  return "sqlite://" + path;
}

// One harmar node's worth of the queue: its own Database (pool), background loop and services.
struct Node {
  Node(const std::string& url, Options o, bool migrate_schema) {
    db = std::move(store::Database::open(url)).value();
    if (migrate_schema) {
      std::vector<store::ModuleMigrations> m{{"devices", devices::repo::migrations()}, {"tasks", migrations()}};
      auto st = testing::run(store::migrate(*db, m));
      EXPECT_TRUE(st.ok());
    }
    pubsub = std::move(store::PubSub::open("")).value();
    kv = std::move(store::Kv::open("")).value();
    blobs = std::move(store::BlobStore::open("", testing::temp_dir())).value();
    events = std::make_unique<platform::EventBus>(*pubsub);
    services = std::make_unique<platform::Services>(cfg, *db, *pubsub, *kv, *blobs, *events, background);
    dev = std::make_shared<devices::Service>(*services, devices::Options{});
    services->provide<devices::Directory>(dev);
    queue = std::make_shared<Service>(*services, o, dev);
    thread = std::thread([this] { background.run(); });
  }
  ~Node() {
    queue->stop();
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
  std::shared_ptr<devices::Service> dev;
  std::shared_ptr<Service> queue;
  std::thread thread;
};

Principal user(const std::string& id) {
  Principal p;
  p.kind = Principal::Kind::User;
  p.id = p.user_id = id;
  return p;
}

Principal device_principal(const devices::Device& d) {
  Principal p;
  p.kind = Principal::Kind::Device;
  p.id = d.id;
  p.user_id = d.user_id;
  return p;
}

template <class T>
T must(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.error().code + ": " + r.error().detail);
  return std::move(r).value();
}

class Queue : public ::testing::TestWithParam<Backend> {
 protected:
  Options fast() {
    Options o;
    o.tick_ms = 50;
    o.backoff_base_ms = 0;
    return o;
  }
  void SetUp() override {
    url_ = fresh_url(GetParam());
    node_ = std::make_unique<Node>(url_, fast(), true);
  }
  devices::Device new_device(Node& n, const std::string& owner, devices::Labels labels = {}) {
    devices::RegisterInput in;
    in.name = "d";
    in.labels = std::move(labels);
    return must(testing::run(n.dev->register_device(user(owner), in))).device;
  }
  Task create(Node& n, const std::string& owner, NewTask t) {
    if (t.type.empty()) t.type = "echo";
    return must(testing::run(n.queue->create(user(owner), t)));
  }
  std::vector<Task> claim(Node& n, const devices::Device& d, int64_t max) {
    PendingInput in;
    in.max = max;
    return must(testing::run(n.queue->pending(device_principal(d), in))).tasks;
  }
  std::string url_;
  std::unique_ptr<Node> node_;
};

TEST_P(Queue, concurrent_claimers_never_get_the_same_task) {
  constexpr int kTasks = 300;
  auto& a = *node_;
  std::unique_ptr<Node> other;
  Node* b = &a;
  if (GetParam() == Backend::Postgres) {  // a second node on the same database
    other = std::make_unique<Node>(url_, fast(), false);
    b = other.get();
  }
  std::vector<devices::Device> devs;
  for (int i = 0; i < 6; ++i) devs.push_back(new_device(a, "u1"));
  for (int i = 0; i < kTasks; ++i) create(a, "u1", NewTask{});
  std::mutex mu;
  std::multiset<std::string> seen;
  std::vector<std::thread> claimers;
  for (int i = 0; i < 6; ++i) {
    Node* n = i % 2 ? b : &a;
    claimers.emplace_back([&, n, i] {
      for (;;) {
        auto got = claim(*n, devs[static_cast<std::size_t>(i)], 7);
        if (got.empty()) return;
        std::lock_guard lock(mu);
        for (auto& t : got) seen.insert(t.id);
      }
    });
  }
  for (auto& t : claimers) t.join();
  EXPECT_EQ(seen.size(), std::size_t{kTasks});
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), std::size_t{kTasks}) << "a task was claimed twice";
}

TEST_P(Queue, only_the_lease_holder_completes_and_a_repeat_is_answered_not_applied) {
  auto& n = *node_;
  auto d1 = new_device(n, "u1"), d2 = new_device(n, "u1");
  auto t = create(n, "u1", NewTask{});
  auto got = claim(n, d1, 1);
  ASSERT_EQ(got.size(), 1u);
  ResultInput ok;
  ok.result = boost::json::value("first");
  ok.attempt = 1;
  auto stolen = testing::run(n.queue->result(device_principal(d2), t.id, ok));
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.error().code, "lease_lost");
  auto done = must(testing::run(n.queue->result(device_principal(d1), t.id, ok)));
  EXPECT_EQ(done.status, "succeeded");
  ResultInput again = ok;
  again.result = boost::json::value("second");
  auto replay = must(testing::run(n.queue->result(device_principal(d1), t.id, again)));
  EXPECT_EQ(replay.result, boost::json::value("first")) << "a repeated result is not applied twice";
  ResultInput fail;
  fail.succeeded = false;
  fail.attempt = 1;
  auto late = testing::run(n.queue->result(device_principal(d1), t.id, fail));
  EXPECT_FALSE(late.ok());
}

TEST_P(Queue, racing_results_for_one_lease_complete_it_exactly_once) {
  auto& n = *node_;
  auto d = new_device(n, "u1");
  auto t = create(n, "u1", NewTask{});
  ASSERT_EQ(claim(n, d, 1).size(), 1u);
  std::atomic<int> succeeded{0}, failed_result{0};
  std::vector<std::thread> th;
  for (int i = 0; i < 8; ++i)
    th.emplace_back([&, i] {
      ResultInput in;
      in.succeeded = i % 2 == 0;
      in.attempt = 1;
      in.retry = false;
      auto r = testing::run(n.queue->result(device_principal(d), t.id, in));
      if (r.ok()) (r->status == "succeeded" ? succeeded : failed_result)++;
    });
  for (auto& x : th) x.join();
  auto final = must(testing::run(n.queue->get(user("u1"), t.id)));
  // Whichever came first won; the others saw a lost lease (or, for the same outcome, a replay).
  if (final.status == "succeeded") {
    EXPECT_EQ(failed_result.load(), 0);
  } else {
    EXPECT_EQ(final.status, "failed");
    EXPECT_EQ(succeeded.load(), 0);
  }
}

TEST_P(Queue, an_expired_lease_retries_then_dies_and_a_released_task_keeps_its_attempt) {
  Options o = fast();
  o.lease_ms = 1;
  node_.reset();
  node_ = std::make_unique<Node>(url_, o, false);
  auto& n = *node_;
  auto d = new_device(n, "u1");
  NewTask nt;
  nt.max_attempts = 2;
  auto t = create(n, "u1", nt);
  ASSERT_EQ(claim(n, d, 1).size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  testing::run(n.queue->tick_once(false));
  auto back = must(testing::run(n.queue->get(user("u1"), t.id)));
  EXPECT_EQ(back.status, "queued");
  EXPECT_EQ(back.attempts, 1);
  testing::run(n.queue->tick_once(false));  // promote (backoff 0)
  ASSERT_EQ(claim(n, d, 1).size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  testing::run(n.queue->tick_once(false));
  EXPECT_EQ(must(testing::run(n.queue->get(user("u1"), t.id))).status, "dead");

  auto r = create(n, "u1", NewTask{});
  auto got = claim(n, d, 1);
  ASSERT_EQ(got.size(), 1u);
  auto released = must(testing::run(n.queue->release(device_principal(d), r.id)));
  EXPECT_EQ(released.status, "queued");
  EXPECT_EQ(released.attempts, 0);
}

TEST_P(Queue, backoff_doubles_per_attempt_with_jitter_and_a_cap) {
  Options o;
  o.backoff_base_ms = 1000;
  o.backoff_max_ms = 10'000;
  auto& n = *node_;
  Service s(*n.services, o, n.dev);
  for (int i = 0; i < 50; ++i) {
    int64_t first = s.backoff_ms(1), third = s.backoff_ms(3), big = s.backoff_ms(30);
    EXPECT_GE(first, 500);
    EXPECT_LE(first, 1000);
    EXPECT_GE(third, 2000);
    EXPECT_LE(third, 4000);
    EXPECT_GE(big, 5000);
    EXPECT_LE(big, 10'000);
  }
}

TEST_P(Queue, a_due_schedule_creates_one_task_even_with_two_nodes_ticking) {
  auto& a = *node_;
  std::unique_ptr<Node> other;
  Node* b = &a;
  if (GetParam() == Backend::Postgres) {
    other = std::make_unique<Node>(url_, fast(), false);
    b = other.get();
  }
  NewTask tmpl;
  tmpl.type = "report";
  auto s = must(testing::run(a.queue->create_schedule(user("u1"), "r", "*/5 * * * *", tmpl, true)));
  ASSERT_TRUE(s.next_run_at);
  // Make it due now.
  auto moved = testing::run(a.db->exec("UPDATE task_schedules SET next_run_at = $1 WHERE id = $2", {now_ms() - 1000, s.id}));
  ASSERT_TRUE(moved.ok());
  std::thread t1([&] { testing::run(a.queue->tick_once(false)); });
  std::thread t2([&] { testing::run(b->queue->tick_once(false)); });
  t1.join();
  t2.join();
  Repo::ListFilter f;
  f.type = "report";
  auto made = must(testing::run(a.queue->list(user("u1"), f)));
  ASSERT_EQ(made.size(), 1u);
  EXPECT_EQ(made[0].schedule_id, s.id);
  auto after = must(testing::run(a.queue->schedule(user("u1"), s.id)));
  EXPECT_GT(*after.next_run_at, now_ms());
  EXPECT_EQ(after.last_task_id, made[0].id);
}

TEST_P(Queue, a_rate_limit_holds_under_concurrent_claims) {
  auto& n = *node_;
  std::vector<devices::Device> devs;
  for (int i = 0; i < 4; ++i) devs.push_back(new_device(n, "u1"));
  must(testing::run(n.queue->set_type(user("u1"), "mail", std::nullopt, std::make_pair(int64_t{5}, int64_t{60'000}))));
  NewTask mail;
  mail.type = "mail";
  for (int i = 0; i < 30; ++i) create(n, "u1", mail);
  std::atomic<int> got{0};
  std::vector<std::thread> th;
  for (auto& d : devs)
    th.emplace_back([&, d] {
      for (int k = 0; k < 3; ++k) got += static_cast<int>(claim(n, d, 4).size());
    });
  for (auto& x : th) x.join();
  EXPECT_EQ(got.load(), 5);
}

TEST_P(Queue, labels_and_targets_decide_who_may_claim) {
  auto& n = *node_;
  auto gpu = new_device(n, "u1", {{"gpu", "yes"}, {"zone", "eu"}});
  auto plain = new_device(n, "u1", {{"zone", "eu"}});
  auto stranger = new_device(n, "u2", {{"gpu", "yes"}, {"zone", "eu"}});
  NewTask needs_gpu;
  needs_gpu.labels = {{"gpu", "yes"}};
  auto g = create(n, "u1", needs_gpu);
  NewTask wrong_value;
  wrong_value.labels = {{"zone", "us"}};
  create(n, "u1", wrong_value);
  EXPECT_TRUE(claim(n, stranger, 10).empty());
  EXPECT_TRUE(claim(n, plain, 10).empty());
  auto got = claim(n, gpu, 10);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, g.id);
}

TEST_P(Queue, a_long_poll_sleeps_until_a_task_arrives) {
  auto& n = *node_;
  n.queue->start();  // LISTEN, so the creation's NOTIFY wakes the waiter
  auto d = new_device(n, "u1");
  auto started = std::chrono::steady_clock::now();
  auto poll = std::async(std::launch::async, [&] {
    PendingInput in;
    in.max = 1;
    in.wait_s = 20;
    return must(testing::run(n.queue->pending(device_principal(d), in)));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(n.queue->wakeups().waiting(), 1u);
  auto t = create(n, "u1", NewTask{});
  auto out = poll.get();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].id, t.id);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // Shutdown answers a waiting poll at once.
  auto second = std::async(std::launch::async, [&] {
    PendingInput in;
    in.max = 1;
    in.wait_s = 60;
    return must(testing::run(n.queue->pending(device_principal(d), in)));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto drained = std::chrono::steady_clock::now();
  n.queue->drain();
  EXPECT_TRUE(second.get().tasks.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - drained, std::chrono::seconds(2));
}

std::string backend_name(const ::testing::TestParamInfo<Backend>& i) {
  return i.param == Backend::Sqlite ? "Sqlite" : "Postgres";
}
INSTANTIATE_TEST_SUITE_P(Backends, Queue, ::testing::Values(Backend::Sqlite, Backend::Postgres), backend_name);

}  // namespace
}  // namespace harmar::tasks
