#pragma once
// Blocking work (SQLite, argon2, file I/O, process spawn) runs on one shared thread pool and is
// co_awaited from an event-loop coroutine, which resumes on its own executor afterwards:
//
//   auto rows = co_await run_blocking([&] { return db.query_sync(sql); });
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <optional>
#include <type_traits>

namespace harmar {

namespace asio = boost::asio;

// The process-wide pool; sized on first use or by set_blocking_threads() before that.
asio::thread_pool& blocking_pool();
void set_blocking_threads(std::size_t n);
// Waits for queued blocking work and joins the threads (at shutdown).
void stop_blocking_pool();

namespace detail {
template <class R>
struct BlockingOutcome {
  std::exception_ptr error;
  std::optional<R> value;
};
template <>
struct BlockingOutcome<void> {
  std::exception_ptr error;
};
}  // namespace detail

template <class F>
asio::awaitable<std::invoke_result_t<F&>> run_blocking(F fn) {
  using R = std::invoke_result_t<F&>;
  using Outcome = detail::BlockingOutcome<R>;
  auto initiate = [&fn](auto handler) {
    auto work = asio::make_work_guard(asio::get_associated_executor(handler));
    asio::post(blocking_pool(), [fn = std::move(fn), handler = std::move(handler), work = std::move(work)]() mutable {
      Outcome out;
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
        } else {
          out.value.emplace(fn());
        }
      } catch (...) {
        out.error = std::current_exception();
      }
      auto ex = work.get_executor();
      asio::post(ex, [handler = std::move(handler), out = std::move(out)]() mutable { handler(std::move(out)); });
    });
  };
  Outcome out = co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(Outcome)>(initiate,
                                                                                             asio::use_awaitable);
  if (out.error) std::rethrow_exception(out.error);
  if constexpr (!std::is_void_v<R>) co_return std::move(*out.value);
}

}  // namespace harmar
