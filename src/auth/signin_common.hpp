#pragma once
// Small pieces the captcha, SMS and third-party login code share.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "store/kv.hpp"

namespace harmar::auth {

// SHA-256 of `s`: raw bytes, and lowercase hex.
std::string sha256_bytes(std::string_view s);
std::string sha256_hex_of(std::string_view s);

// Equal without an early exit (for comparing secrets' hashes).
bool constant_time_equal(std::string_view a, std::string_view b);

// Counts one event under `key` in a fixed window of `window_ms`; once more than `limit` happened
// in the window, 429 `rate_limited` with Retry-After = the rest of the window. limit <= 0: no limit.
boost::asio::awaitable<Status> count_and_limit(store::Kv& kv, std::string key, int limit, int64_t window_ms,
                                               std::string detail);

}  // namespace harmar::auth
