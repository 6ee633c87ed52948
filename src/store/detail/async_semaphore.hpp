#pragma once
// A counting semaphore for coroutines on any executor and any thread. A waiter never blocks its
// thread: it is queued, and release() hands it the permit by posting its resumption to its own
// executor. Used for the SQLite writer (one permit, held across co_awaits by a transaction) and
// for each PostgreSQL pool (one permit per connection).
//
//   if (!co_await sem.acquire(std::chrono::seconds(5))) co_return Error::unavailable("busy");
//   SemaphorePermit permit(sem);  // releases when it goes out of scope
//
// Waiters are served first come, first served. A waiting coroutine keeps its io_context's
// run() from returning. The semaphore may be released from any thread.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>

namespace harmar::store::detail {

namespace asio = boost::asio;

class AsyncSemaphore {
 public:
  using Clock = std::chrono::steady_clock;

  explicit AsyncSemaphore(std::size_t permits);
  // Waiters still queued are destroyed without being resumed.
  ~AsyncSemaphore();
  AsyncSemaphore(const AsyncSemaphore&) = delete;
  AsyncSemaphore& operator=(const AsyncSemaphore&) = delete;

  bool try_acquire();
  // Waits for a permit; false when `timeout` passed first (then no permit is held).
  asio::awaitable<bool> acquire(Clock::duration timeout = Clock::duration::max());
  void release();

  // Destroys the queued waiters without resuming them, for an io_context that is shutting down.
  void abandon_waiters();

  std::size_t available() const;
  std::size_t waiting() const;

 private:
  struct Waiter;
  struct State;
  std::shared_ptr<State> state_;
};

// Holds one acquired permit and releases it once.
class SemaphorePermit {
 public:
  SemaphorePermit() = default;
  explicit SemaphorePermit(AsyncSemaphore& sem) : sem_(&sem) {}
  SemaphorePermit(SemaphorePermit&& o) noexcept : sem_(o.sem_) { o.sem_ = nullptr; }
  SemaphorePermit& operator=(SemaphorePermit&& o) noexcept {
    if (this != &o) {
      reset();
      sem_ = o.sem_;
      o.sem_ = nullptr;
    }
    return *this;
  }
  ~SemaphorePermit() { reset(); }
  void reset() {
    if (sem_) sem_->release();
    sem_ = nullptr;
  }
  // The permit now belongs to someone else, who will release it.
  void disown() { sem_ = nullptr; }
  explicit operator bool() const { return sem_ != nullptr; }

 private:
  AsyncSemaphore* sem_ = nullptr;
};

}  // namespace harmar::store::detail
