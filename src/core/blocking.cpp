#include "core/blocking.hpp"

#include <memory>
#include <mutex>
#include <thread>

namespace harmar {
namespace {

std::mutex mu;
std::size_t wanted = 0;
std::unique_ptr<asio::thread_pool> pool;

}  // namespace

void set_blocking_threads(std::size_t n) {
  std::lock_guard lock(mu);
  wanted = n;
}

asio::thread_pool& blocking_pool() {
  std::lock_guard lock(mu);
  if (!pool) {
    std::size_t n = wanted ? wanted : std::max<std::size_t>(4, 2 * std::thread::hardware_concurrency());
    pool = std::make_unique<asio::thread_pool>(n);
  }
  return *pool;
}

void stop_blocking_pool() {
  std::unique_ptr<asio::thread_pool> p;
  {
    std::lock_guard lock(mu);
    p = std::move(pool);
  }
  if (p) p->join();
}

}  // namespace harmar
