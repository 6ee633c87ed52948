#include <gtest/gtest.h>

#include <thread>

#include "core/blocking.hpp"
#include "support/test_support.hpp"

namespace harmar {
namespace {

asio::awaitable<std::pair<bool, bool>> offload_and_come_back() {
  auto caller = std::this_thread::get_id();
  auto worker = co_await run_blocking([] { return std::this_thread::get_id(); });
  co_return std::make_pair(worker != caller, std::this_thread::get_id() == caller);
}

TEST(Blocking, work_runs_off_the_loop_and_resumes_on_it) {
  auto [off_loop, back_on_loop] = testing::run(offload_and_come_back());
  EXPECT_TRUE(off_loop);
  EXPECT_TRUE(back_on_loop);
}

asio::awaitable<int> throws_inside() {
  co_await run_blocking([]() -> int { throw std::runtime_error("boom"); });
  co_return 1;
}

TEST(Blocking, exceptions_cross_back_to_the_caller) {
  EXPECT_THROW(testing::run(throws_inside()), std::runtime_error);
}

}  // namespace
}  // namespace harmar
