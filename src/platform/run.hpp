#pragma once
// For command-line programs (harmar migrate, admin, collections apply, ...): the database the
// configuration names, and a way to run a coroutine to completion from plain code.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <optional>
#include <string>

#include "core/config.hpp"

namespace harmar::platform {

// The `db` key, or sqlite://DATA_DIR/harmar.db when it is empty.
std::string database_url(const config::Config& cfg);

namespace detail {
template <class T>
boost::asio::awaitable<std::optional<T>> as_optional(boost::asio::awaitable<T> aw) {
  co_return co_await std::move(aw);
}
}  // namespace detail

// Runs `aw` on `ioc` until it completes (any T, including Result<T>, which has no default
// constructor). Keep `ioc` alive as long as what the coroutine opened may use it.
template <class T>
T run_sync(boost::asio::io_context& ioc, boost::asio::awaitable<T> aw) {
  auto fut = boost::asio::co_spawn(ioc, detail::as_optional(std::move(aw)), boost::asio::use_future);
  ioc.restart();
  ioc.run();
  return std::move(*fut.get());
}

template <class T>
T run_sync(boost::asio::awaitable<T> aw) {
  boost::asio::io_context ioc;
  return run_sync(ioc, std::move(aw));
}

}  // namespace harmar::platform
