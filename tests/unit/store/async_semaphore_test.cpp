// AsyncSemaphore: waiting coroutines never block their thread, resume on their own executor,
// are served in order, time out cleanly, and exclude each other across threads.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "store/detail/async_semaphore.hpp"
#include "support/test_support.hpp"

namespace harmar::store::detail {
namespace {

using namespace std::chrono_literals;

asio::awaitable<void> yield() { co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable); }

TEST(AsyncSemaphore, counts_permits) {
  AsyncSemaphore sem(2);
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_FALSE(sem.try_acquire());
  sem.release();
  EXPECT_EQ(sem.available(), 1u);
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_EQ(sem.available(), 0u);
}

// One thread, two coroutines: the holder can only release because the waiter did not block
// the thread (a blocking wait would deadlock here).
TEST(AsyncSemaphore, a_waiter_does_not_block_its_thread) {
  AsyncSemaphore sem(1);
  std::vector<std::string> events;
  harmar::testing::run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await sem.acquire());
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> {
          events.push_back("waiter waits");
          bool got = co_await sem.acquire();
          events.push_back(got ? "waiter acquired" : "waiter timed out");
          sem.release();
        },
        asio::detached);
    co_await yield();
    EXPECT_EQ(sem.waiting(), 1u);
    events.push_back("holder releases");
    sem.release();
  }());
  EXPECT_EQ(events, (std::vector<std::string>{"waiter waits", "holder releases", "waiter acquired"}));
  EXPECT_EQ(sem.available(), 1u);
}

TEST(AsyncSemaphore, waiters_are_served_in_arrival_order) {
  AsyncSemaphore sem(1);
  std::vector<int> order;
  harmar::testing::run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(sem.try_acquire());
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 5; ++i) {
      asio::co_spawn(
          ex,
          [&, i]() -> asio::awaitable<void> {
            co_await sem.acquire();
            order.push_back(i);
            co_await yield();  // hold it across a suspension
            sem.release();
          },
          asio::detached);
      co_await yield();  // make arrival order explicit
    }
    EXPECT_EQ(sem.waiting(), 5u);
    sem.release();
  }());
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(AsyncSemaphore, a_timed_out_waiter_takes_no_permit) {
  AsyncSemaphore sem(0);
  auto started = std::chrono::steady_clock::now();
  bool got = harmar::testing::run(sem.acquire(50ms));
  EXPECT_FALSE(got);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 50ms);
  EXPECT_EQ(sem.waiting(), 0u);
  sem.release();
  EXPECT_EQ(sem.available(), 1u) << "the release went to nobody, so it stays available";
}

TEST(AsyncSemaphore, a_waiter_resumes_on_its_own_executor_when_released_from_another_thread) {
  AsyncSemaphore sem(0);
  asio::io_context ctx;
  std::promise<std::thread::id> loop_thread;
  auto fut = asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<std::thread::id> {
        loop_thread.set_value(std::this_thread::get_id());
        co_await sem.acquire();
        co_return std::this_thread::get_id();
      },
      asio::use_future);
  std::thread loop([&] { ctx.run(); });
  auto loop_id = loop_thread.get_future().get();
  // The waiter keeps the loop alive (its run() does not return) until it gets the permit.
  while (sem.waiting() == 0) std::this_thread::yield();
  sem.release();  // from this (non-loop) thread
  EXPECT_EQ(fut.get(), loop_id);
  loop.join();
  EXPECT_NE(loop_id, std::this_thread::get_id());
}

TEST(AsyncSemaphore, excludes_holders_across_threads) {
  constexpr int kThreads = 4, kCoroutines = 8, kRounds = 20;
  AsyncSemaphore sem(1);
  std::atomic<int> inside{0}, max_inside{0};
  int unprotected = 0;  // a data race unless the semaphore excludes
  auto worker = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < kRounds; ++i) {
      EXPECT_TRUE(co_await sem.acquire());
      int now = ++inside;
      int seen = max_inside.load();
      while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
      }
      int v = unprotected;
      co_await yield();
      unprotected = v + 1;
      --inside;
      sem.release();
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      asio::io_context ctx;
      for (int c = 0; c < kCoroutines; ++c) asio::co_spawn(ctx, worker(), asio::detached);
      ctx.run();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(max_inside.load(), 1);
  EXPECT_EQ(unprotected, kThreads * kCoroutines * kRounds);
  EXPECT_EQ(sem.available(), 1u);
}

TEST(AsyncSemaphore, abandoned_waiters_are_destroyed_without_resuming) {
  struct Flag {
    bool* destroyed;
    ~Flag() { *destroyed = true; }
  };
  bool destroyed = false, resumed = false;
  asio::io_context ctx;
  {
    AsyncSemaphore sem(0);
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
          Flag flag{&destroyed};
          co_await sem.acquire();
          resumed = true;
        },
        asio::detached);
    ctx.run_one();  // start it; it queues
    EXPECT_EQ(sem.waiting(), 1u);
    sem.abandon_waiters();
  }
  ctx.restart();
  ctx.run();  // the coroutine's frame unwinds on its executor
  EXPECT_TRUE(destroyed);
  EXPECT_FALSE(resumed);
}

}  // namespace
}  // namespace harmar::store::detail
