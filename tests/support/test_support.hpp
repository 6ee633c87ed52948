#pragma once
// Shared helpers for unit tests: the real services started by scripts/test-services.sh, and a
// way to run a coroutine to completion from a plain TEST body.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <optional>
#include <string>

namespace harmar::testing {

namespace asio = boost::asio;

// The URL in environment variable `name`; fails the test (and throws) when it is missing, since a
// test that needs PostgreSQL or Redis must not silently pass without one.
std::string require_env(const char* name);
inline std::string pg_url() { return require_env("HARMAR_TEST_PG_URL"); }
inline std::string redis_url() { return require_env("HARMAR_TEST_REDIS_URL"); }

// A fresh, empty PostgreSQL schema for one test: returns a URL whose search_path is that schema
// (created on first use, dropped and recreated for each call with the same name).
std::string fresh_pg_schema_url(const std::string& name);

namespace detail {
template <class T>
asio::awaitable<std::optional<T>> as_optional(asio::awaitable<T> aw) {
  co_return co_await std::move(aw);
}
}  // namespace detail

// Runs `aw` on a private io_context until it completes and returns its value (any T, including
// Result<T> which has no default constructor).
template <class T>
T run(asio::awaitable<T> aw) {
  asio::io_context ctx;
  auto fut = asio::co_spawn(ctx, detail::as_optional(std::move(aw)), asio::use_future);
  ctx.run();
  return std::move(*fut.get());
}

inline void run(asio::awaitable<void> aw) {
  asio::io_context ctx;
  auto fut = asio::co_spawn(ctx, std::move(aw), asio::use_future);
  ctx.run();
  fut.get();
}

// A scratch directory removed at process exit.
std::string temp_dir();

}  // namespace harmar::testing
