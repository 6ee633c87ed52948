#include "store/detail/async_semaphore.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <list>
#include <mutex>
#include <optional>

namespace harmar::store::detail {

namespace {

// A move-only completion handler taking a bool, type-erased. (Boost 1.81's
// asio::any_completion_handler recurses forever when constructed from a non-const lvalue of
// itself, so we keep our own.)
class BoolHandler {
 public:
  BoolHandler() = default;
  template <class H>
  explicit BoolHandler(H h) : impl_(std::make_unique<Impl<H>>(std::move(h))) {}
  // Calls the handler once; it is empty afterwards.
  void operator()(bool v) {
    auto impl = std::move(impl_);
    impl->call(v);
  }
  void reset() { impl_.reset(); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call(bool v) = 0;
  };
  template <class H>
  struct Impl final : Base {
    explicit Impl(H h) : handler(std::move(h)) {}
    void call(bool v) override { std::move(handler)(v); }
    H handler;
  };
  std::unique_ptr<Base> impl_;
};

}  // namespace

// Every member of a Waiter, the timer included, is touched only under State::mu until the
// waiter leaves the queue; after that only by the one completion that removed it.
struct AsyncSemaphore::Waiter {
  asio::any_io_executor ex;
  std::optional<asio::executor_work_guard<asio::any_io_executor>> work;
  BoolHandler handler;
  std::optional<asio::steady_timer> timer;
  std::list<std::shared_ptr<Waiter>>::iterator pos;
  bool queued = false;
};

struct AsyncSemaphore::State {
  mutable std::mutex mu;
  std::size_t permits;
  std::list<std::shared_ptr<Waiter>> queue;

  explicit State(std::size_t n) : permits(n) {}

  // Removes every waiter; the caller destroys them outside the lock, since destroying a
  // coroutine's handler unwinds that coroutine, which may release this very semaphore.
  std::list<std::shared_ptr<Waiter>> take_all() {
    std::list<std::shared_ptr<Waiter>> out;
    std::lock_guard lock(mu);
    out.swap(queue);
    for (auto& w : out) {
      w->queued = false;
      if (w->timer) w->timer->cancel();
    }
    return out;
  }
};

AsyncSemaphore::AsyncSemaphore(std::size_t permits) : state_(std::make_shared<State>(permits)) {}

AsyncSemaphore::~AsyncSemaphore() { abandon_waiters(); }

bool AsyncSemaphore::try_acquire() {
  std::lock_guard lock(state_->mu);
  if (state_->permits == 0) return false;
  --state_->permits;
  return true;
}

asio::awaitable<bool> AsyncSemaphore::acquire(Clock::duration timeout) {
  if (try_acquire()) co_return true;
  auto ex = co_await asio::this_coro::executor;
  auto st = state_;
  auto initiate = [st, ex, timeout](auto handler) {
    std::unique_lock lock(st->mu);
    if (st->permits > 0) {  // released between try_acquire() and here
      --st->permits;
      lock.unlock();
      asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(true); });
      return;
    }
    auto w = std::make_shared<Waiter>();
    w->ex = ex;
    w->work.emplace(ex);
    w->handler = BoolHandler(std::move(handler));
    w->queued = true;
    st->queue.push_back(w);
    w->pos = std::prev(st->queue.end());
    // A timeout of years means "no timeout" (and now() + max() would overflow).
    if (timeout < std::chrono::hours(24 * 365)) {
      w->timer.emplace(ex, timeout);
      w->timer->async_wait([st, w](boost::system::error_code ec) {
        if (ec) return;  // cancelled: release() granted the permit, or the waiter was abandoned
        std::unique_lock lock(st->mu);
        if (!w->queued) return;  // granted just before the timer fired
        st->queue.erase(w->pos);
        w->queued = false;
        auto h = std::move(w->handler);
        auto work = std::move(w->work);
        lock.unlock();
        h(false);  // already on the waiter's executor (the timer's)
      });
    }
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(bool)>(initiate, asio::use_awaitable);
}

void AsyncSemaphore::release() {
  std::shared_ptr<Waiter> w;
  {
    std::lock_guard lock(state_->mu);
    if (state_->queue.empty()) {
      ++state_->permits;
      return;
    }
    w = std::move(state_->queue.front());
    state_->queue.pop_front();
    w->queued = false;
    if (w->timer) w->timer->cancel();
  }
  // The permit passes straight to the waiter: nobody can take it in between.
  auto ex = w->ex;
  asio::post(ex, [w = std::move(w)]() mutable {
    auto h = std::move(w->handler);
    w->work.reset();
    h(true);
  });
}

void AsyncSemaphore::abandon_waiters() {
  auto waiters = state_->take_all();
  for (auto& w : waiters) {
    w->handler.reset();
    w->work.reset();
  }
}

std::size_t AsyncSemaphore::available() const {
  std::lock_guard lock(state_->mu);
  return state_->permits;
}

std::size_t AsyncSemaphore::waiting() const {
  std::lock_guard lock(state_->mu);
  return state_->queue.size();
}

}  // namespace harmar::store::detail
