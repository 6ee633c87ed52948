#include <gtest/gtest.h>

#include "core/clock.hpp"
#include "tasks/cron.hpp"

namespace harmar::tasks {
namespace {

int64_t at(const char* rfc3339) { return *parse_rfc3339(rfc3339); }
std::string next(const char* expr, const char* after) {
  auto c = Cron::parse(expr);
  EXPECT_TRUE(c.ok()) << expr;
  if (!c.ok()) return "";
  auto n = c->next_after(at(after));
  return n ? format_rfc3339(*n) : "never";
}

TEST(Cron, fields_lists_ranges_and_steps_find_the_next_minute) {
  EXPECT_EQ(next("* * * * *", "2026-01-01T10:00:30Z"), "2026-01-01T10:01:00.000Z");
  EXPECT_EQ(next("*/15 * * * *", "2026-01-01T10:01:00Z"), "2026-01-01T10:15:00.000Z");
  EXPECT_EQ(next("0 3 * * *", "2026-01-01T03:00:00Z"), "2026-01-02T03:00:00.000Z");
  EXPECT_EQ(next("5,10 8-9 * * *", "2026-01-01T08:10:00Z"), "2026-01-01T09:05:00.000Z");
  EXPECT_EQ(next("0 0 1 jan *", "2026-03-01T00:00:00Z"), "2027-01-01T00:00:00.000Z");
  EXPECT_EQ(next("@hourly", "2026-01-01T10:59:59Z"), "2026-01-01T11:00:00.000Z");
}

TEST(Cron, weekdays_include_seven_as_sunday_and_either_day_field_matches_when_both_are_set) {
  // 2026-01-01 is a Thursday.
  EXPECT_EQ(next("0 9 * * mon", "2026-01-01T00:00:00Z"), "2026-01-05T09:00:00.000Z");
  EXPECT_EQ(next("0 9 * * 7", "2026-01-01T00:00:00Z"), "2026-01-04T09:00:00.000Z");
  EXPECT_EQ(next("0 9 * * 5-7", "2026-01-01T00:00:00Z"), "2026-01-02T09:00:00.000Z");
  EXPECT_EQ(next("0 0 15 * fri", "2026-01-01T00:00:00Z"), "2026-01-02T00:00:00.000Z");
}

TEST(Cron, impossible_dates_never_match_and_bad_expressions_are_refused) {
  EXPECT_EQ(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), "never");
  for (const char* bad : {"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *",
                          "a b c d e", "1-0 * * * *", "* * * * 8"}) {
    auto c = Cron::parse(bad);
    EXPECT_FALSE(c.ok()) << bad;
    if (!c.ok()) { EXPECT_EQ(c.error().status, 422); }
  }
}

}  // namespace
}  // namespace harmar::tasks
