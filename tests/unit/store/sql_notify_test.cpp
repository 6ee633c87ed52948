// LISTEN/NOTIFY on every backend (in-process on SQLite and MariaDB): delivery to listeners,
// silence after a listener goes, bad channels refused, and (PostgreSQL) delivery between two
// Database objects — two nodes — and a listener that survives the loss of its connection and says
// it may have missed something.
#include <boost/asio/steady_timer.hpp>
#include <libpq-fe.h>

#include <atomic>
#include <mutex>

#include "sql_test_support.hpp"

namespace harmar::store::sqltest {
namespace {

class SqlNotify : public BackendTest {};

// What a listener received, readable from the test's coroutine.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> payloads;
  std::atomic<int> gaps{0};
  std::size_t size() {
    std::lock_guard lock(mu);
    return payloads.size();
  }
  std::vector<std::string> copy() {
    std::lock_guard lock(mu);
    return payloads;
  }
  NotifyHandler handler() {
    return [this](std::string_view p) {
      std::lock_guard lock(mu);
      payloads.emplace_back(p);
    };
  }
};

// Waits (without blocking the loop) until `pred` holds or `ms` pass.
template <class Pred>
asio::awaitable<bool> eventually(Pred pred, int ms = 5000) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return true;
}

TEST_P(SqlNotify, a_notification_reaches_every_listener_of_its_channel_only) {
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    Inbox a, b, other;
    auto la = db_->listen("jobs", ex, a.handler());
    auto lb = db_->listen("jobs", ex, b.handler());
    auto lo = db_->listen("other_channel", ex, other.handler());
    SQL_CO_ASSERT_OK(co_await la->ready());
    SQL_CO_ASSERT_OK(co_await lb->ready());
    SQL_CO_ASSERT_OK(co_await lo->ready());
    SQL_CO_ASSERT_OK(co_await db_->notify("jobs", "u:42"));
    SQL_CO_ASSERT_OK(co_await db_->notify("jobs", "u:43"));
    EXPECT_TRUE(co_await eventually([&] { return a.size() == 2 && b.size() == 2; }));
    EXPECT_EQ(a.copy(), (std::vector<std::string>{"u:42", "u:43"}));
    EXPECT_EQ(b.copy(), (std::vector<std::string>{"u:42", "u:43"}));
    // Give a stray delivery the chance to show up on the other channel.
    SQL_CO_ASSERT_OK(co_await db_->notify("jobs", "last"));
    EXPECT_TRUE(co_await eventually([&] { return a.size() == 3; }));
    EXPECT_EQ(other.size(), 0u);
  }());
}

TEST_P(SqlNotify, a_destroyed_listener_hears_nothing_more) {
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    Inbox gone, kept;
    auto lg = db_->listen("jobs", ex, gone.handler());
    auto lk = db_->listen("jobs", ex, kept.handler());
    SQL_CO_ASSERT_OK(co_await lg->ready());
    SQL_CO_ASSERT_OK(co_await lk->ready());
    lg.reset();
    SQL_CO_ASSERT_OK(co_await db_->notify("jobs", "after"));
    EXPECT_TRUE(co_await eventually([&] { return kept.size() == 1; }));
    EXPECT_EQ(gone.size(), 0u);
  }());
}

TEST_P(SqlNotify, malformed_channels_and_oversized_payloads_are_refused) {
  run([&]() -> asio::awaitable<void> {
    auto bad = co_await db_->notify("Robert'); DROP", "x");
    EXPECT_FALSE(bad.ok());
    if (!bad.ok()) { EXPECT_EQ(bad.error().status, 422); }
    auto big = co_await db_->notify("jobs", std::string(kMaxNotifyPayload + 1, 'x'));
    EXPECT_FALSE(big.ok());
    if (!big.ok()) { EXPECT_EQ(big.error().status, 422); }
    auto ex = co_await asio::this_coro::executor;
    EXPECT_THROW(db_->listen("", ex, [](std::string_view) {}), std::invalid_argument);
    EXPECT_THROW(db_->listen("UPPER", ex, [](std::string_view) {}), std::invalid_argument);
  }());
}

INSTANTIATE_TEST_SUITE_P(Backends, SqlNotify, ::testing::Values(Backend::Sqlite, Backend::Postgres, Backend::Mysql),
                         param_name);

TEST(SqlNotifyPostgres, a_notification_reaches_a_listener_of_another_node) {
  std::string url = fresh_url(Backend::Postgres);
  auto node_a = open_or_fail(url);
  auto node_b = open_or_fail(url);
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    Inbox b;
    auto lb = node_b->listen("work", ex, b.handler());
    SQL_CO_ASSERT_OK(co_await lb->ready());
    SQL_CO_ASSERT_OK(co_await node_a->notify("work", "from a"));
    EXPECT_TRUE(co_await eventually([&] { return b.size() == 1; }));
    EXPECT_EQ(b.copy(), std::vector<std::string>{"from a"});
  }());
}

TEST(SqlNotifyPostgres, a_notification_sent_in_a_transaction_arrives_only_when_it_commits) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    Inbox in;
    auto l = db->listen("work", ex, in.handler());
    SQL_CO_ASSERT_OK(co_await l->ready());
    SQL_CO_ASSIGN_OK(tx, co_await db->begin());
    SQL_CO_ASSERT_OK(co_await tx->query("SELECT pg_notify('work', 'in tx')", {}));
    EXPECT_FALSE(co_await eventually([&] { return in.size() > 0; }, 200));
    SQL_CO_ASSERT_OK(co_await tx->commit());
    EXPECT_TRUE(co_await eventually([&] { return in.size() == 1; }));
    SQL_CO_ASSIGN_OK(rolled, co_await db->begin());
    SQL_CO_ASSERT_OK(co_await rolled->query("SELECT pg_notify('work', 'rolled back')", {}));
    SQL_CO_ASSERT_OK(co_await rolled->rollback());
    SQL_CO_ASSERT_OK(co_await db->notify("work", "marker"));
    EXPECT_TRUE(co_await eventually([&] { return in.size() == 2; }));
    EXPECT_EQ(in.copy(), (std::vector<std::string>{"in tx", "marker"}));
  }());
}

// Terminates the listening connection (found by its application_name) from outside.
int terminate_listeners() {
  PGconn* admin = PQconnectdb(harmar::testing::pg_url().c_str());
  PGresult* r = PQexec(admin,
                       "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                       "WHERE application_name = 'harmar-listen' AND pid <> pg_backend_pid()");
  int n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(admin);
  return n;
}

TEST(SqlNotifyPostgres, a_lost_listening_connection_comes_back_and_reports_the_gap) {
  auto db = open_or_fail(fresh_url(Backend::Postgres));
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    Inbox in;
    auto l = db->listen("work", ex, in.handler(), [&in] { ++in.gaps; });
    SQL_CO_ASSERT_OK(co_await l->ready());
    EXPECT_GE(terminate_listeners(), 1);
    EXPECT_TRUE(co_await eventually([&] { return in.gaps.load() >= 1; }, 10000)) << "the gap is reported";
    SQL_CO_ASSERT_OK(co_await l->ready());
    SQL_CO_ASSERT_OK(co_await db->notify("work", "after the gap"));
    EXPECT_TRUE(co_await eventually([&] { return in.size() == 1; }));
  }());
}

}  // namespace
}  // namespace harmar::store::sqltest
