#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace harmar {

// Wall-clock milliseconds since the Unix epoch; the unit of every stored time.
int64_t now_ms();
// Monotonic milliseconds, for deadlines and durations.
int64_t mono_ms();

// RFC 3339 UTC with milliseconds: "2026-11-25T19:01:31.123Z".
std::string format_rfc3339(int64_t unix_ms);
// The same, appended to `out` (no allocation of its own).
void append_rfc3339(std::string& out, int64_t unix_ms);
// Accepts RFC 3339 date-times with an offset or "Z" (fraction optional); nullopt if malformed.
std::optional<int64_t> parse_rfc3339(std::string_view s);
// The IMF-fixdate of RFC 9110 for HTTP Date headers: "Wed, 25 Nov 2026 19:01:31 GMT".
std::string format_http_date(int64_t unix_s);

// "250ms", "90s", "15m", "2h", "7d" or a bare number of seconds → milliseconds.
std::optional<int64_t> parse_duration_ms(std::string_view s);
// "512", "64KiB", "1MiB", "100MB", "2GiB" → bytes.
std::optional<int64_t> parse_size(std::string_view s);

}  // namespace harmar
