#pragma once
// Five-field cron expressions ("minute hour day-of-month month day-of-week", UTC), as in
// crontab(5): numbers, "*", lists "1,5", ranges "1-5", steps "*/15" and "10-50/20", names for
// months and weekdays ("jan", "mon"), and the shorthands @hourly, @daily, @weekly, @monthly,
// @yearly. Day-of-month and day-of-week: when both are restricted a day matching either runs.
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace harmar::tasks {

class Cron {
 public:
  static Result<Cron> parse(std::string_view expr);
  // The first time strictly after `after_ms` (Unix ms) that matches, at a whole minute; nullopt
  // if none within five years (e.g. "0 0 30 2 *").
  std::optional<int64_t> next_after(int64_t after_ms) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;    // 1..31
  std::bitset<13> months_;  // 1..12
  std::bitset<7> weekdays_; // 0 = Sunday
  bool days_any_ = true, weekdays_any_ = true;
};

}  // namespace harmar::tasks
