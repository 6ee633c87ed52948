#include <gtest/gtest.h>

#include "core/clock.hpp"

namespace harmar {
namespace {

TEST(Clock, rfc3339_round_trips) {
  for (int64_t ms : {int64_t(0), int64_t(1764097291123), int64_t(951782400000) /* 2000-02-29 */, int64_t(-1000)}) {
    auto s = format_rfc3339(ms);
    auto back = parse_rfc3339(s);
    ASSERT_TRUE(back) << s;
    EXPECT_EQ(*back, ms) << s;
  }
  EXPECT_EQ(format_rfc3339(1764097291123), "2025-11-25T19:01:31.123Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339(-62135596800000), "0001-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(253402300799999), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339(253402300800000), "10000-01-01T00:00:00.000Z");  // past RFC 3339: still readable
  // Times of alternating days (the date part is cached per thread) and appending.
  std::string both;
  append_rfc3339(both, 1764097291123);
  append_rfc3339(both, 1764010891123);
  append_rfc3339(both, 1764097291999);
  EXPECT_EQ(both, "2025-11-25T19:01:31.123Z2025-11-24T19:01:31.123Z2025-11-25T19:01:31.999Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
}

TEST(Clock, rfc3339_applies_offsets_and_rejects_garbage) {
  EXPECT_EQ(parse_rfc3339("2026-01-01T01:00:00+01:00"), parse_rfc3339("2026-01-01T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-02-30T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T00:00:00"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01 junk"));
  EXPECT_FALSE(parse_rfc3339("2026-13-01T00:00:00Z"));
  // Offsets that leave the years RFC 3339 can write (found by fuzz_time_parsers).
  EXPECT_FALSE(parse_rfc3339("0000-01-01T00:00:00+05:30"));
  EXPECT_FALSE(parse_rfc3339("9999-12-31T23:00:00-05:00"));
  EXPECT_TRUE(parse_rfc3339("0000-01-01T00:00:00Z"));
}

TEST(Clock, http_date_is_imf_fixdate) { EXPECT_EQ(format_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT"); }

TEST(Clock, durations_and_sizes_parse_with_units) {
  EXPECT_EQ(parse_duration_ms("250ms"), 250);
  EXPECT_EQ(parse_duration_ms("90s"), 90000);
  EXPECT_EQ(parse_duration_ms("15m"), 900000);
  EXPECT_EQ(parse_duration_ms("7"), 7000);
  EXPECT_FALSE(parse_duration_ms("7 weeks"));
  EXPECT_FALSE(parse_duration_ms("-1s"));
  EXPECT_EQ(parse_size("64KiB"), 65536);
  EXPECT_EQ(parse_size("100MB"), 100000000);
  EXPECT_FALSE(parse_size("99999999999999999999GiB"));
}

}  // namespace
}  // namespace harmar
