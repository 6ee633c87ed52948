#include "tasks/cron.hpp"

#include <charconv>
#include <ctime>
#include <vector>

namespace harmar::tasks {
namespace {

Error bad(std::string_view expr, std::string why) {
  return Error::validation("invalid cron expression '" + std::string(expr.substr(0, 100)) + "': " + why,
                           {{"cron", std::move(why)}});
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

std::optional<int> number(std::string_view s, const char* const* names, int name_base) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && p == s.data() + s.size()) return v;
  if (names && s.size() == 3) {
    for (int i = 0; names[i]; ++i) {
      std::string_view n = names[i];
      bool eq = true;
      for (int k = 0; k < 3; ++k) eq = eq && (std::tolower(static_cast<unsigned char>(s[k])) == n[k]);
      if (eq) return i + name_base;
    }
  }
  return std::nullopt;
}

// Parses one field into `bits` (indices lo..hi); false on error.
template <std::size_t N>
bool field(std::string_view f, int lo, int hi, std::bitset<N>& bits, bool& any, const char* const* names = nullptr,
           int name_base = 0, bool sunday7 = false) {
  any = f == "*" || f == "?";
  for (auto part : split(f, ',')) {
    if (part.empty()) return false;
    int step = 1;
    if (auto slash = part.find('/'); slash != std::string_view::npos) {
      auto s = number(part.substr(slash + 1), nullptr, 0);
      if (!s || *s <= 0 || *s > hi) return false;
      step = *s;
      part = part.substr(0, slash);
    }
    int a = lo, b = hi;
    if (part != "*" && part != "?") {
      if (auto dash = part.find('-'); dash != std::string_view::npos) {
        auto x = number(part.substr(0, dash), names, name_base), y = number(part.substr(dash + 1), names, name_base);
        if (!x || !y) return false;
        a = *x;
        b = *y;
      } else {
        auto x = number(part, names, name_base);
        if (!x) return false;
        a = *x;
        b = step > 1 ? hi : *x;
      }
    }
    if (sunday7 && b == 7 && a <= 7) {  // 7 is Sunday too
      bits.set(0);
      if (a == 7) continue;
      b = 6;
    }
    if (a < lo || b > hi || a > b) return false;
    for (int v = a; v <= b; v += step) bits.set(static_cast<std::size_t>(v));
  }
  return true;
}

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", nullptr};
const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};

}  // namespace

Result<Cron> Cron::parse(std::string_view expr) {
  std::string_view e = expr;
  while (!e.empty() && e.front() == ' ') e.remove_prefix(1);
  while (!e.empty() && e.back() == ' ') e.remove_suffix(1);
  if (e.size() > 200) return bad(expr, "too long");
  std::string text(e);
  if (e == "@hourly") e = "0 * * * *";
  else if (e == "@daily" || e == "@midnight") e = "0 0 * * *";
  else if (e == "@weekly") e = "0 0 * * 0";
  else if (e == "@monthly") e = "0 0 1 * *";
  else if (e == "@yearly" || e == "@annually") e = "0 0 1 1 *";
  std::vector<std::string_view> f;
  for (auto p : split(e, ' '))
    if (!p.empty()) f.push_back(p);
  if (f.size() != 5) return bad(expr, "must have five fields: minute hour day-of-month month day-of-week");
  Cron c;
  c.text_ = std::move(text);
  bool any = false;
  if (!field(f[0], 0, 59, c.minutes_, any)) return bad(expr, "bad minute field");
  if (!field(f[1], 0, 23, c.hours_, any)) return bad(expr, "bad hour field");
  if (!field(f[2], 1, 31, c.days_, c.days_any_)) return bad(expr, "bad day-of-month field");
  if (!field(f[3], 1, 12, c.months_, any, kMonths, 1)) return bad(expr, "bad month field");
  if (!field(f[4], 0, 7, c.weekdays_, c.weekdays_any_, kDays, 0, true)) return bad(expr, "bad day-of-week field");
  return c;
}

std::optional<int64_t> Cron::next_after(int64_t after_ms) const {
  int64_t t = (after_ms / 60000 + 1) * 60;  // the next whole minute, in seconds
  const int64_t limit = t + int64_t(5) * 366 * 86400;
  while (t < limit) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    if (!months_.test(static_cast<std::size_t>(tm.tm_mon + 1))) {
      // Jump to the first day of the next month.
      tm.tm_mday = 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      tm.tm_mon += 1;
      t = static_cast<int64_t>(timegm(&tm));
      continue;
    }
    bool dom = days_.test(static_cast<std::size_t>(tm.tm_mday));
    bool dow = weekdays_.test(static_cast<std::size_t>(tm.tm_wday));
    bool day_ok = days_any_ && weekdays_any_ ? true : days_any_ ? dow : weekdays_any_ ? dom : (dom || dow);
    if (!day_ok) {
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      tm.tm_mday += 1;
      t = static_cast<int64_t>(timegm(&tm));
      continue;
    }
    if (!hours_.test(static_cast<std::size_t>(tm.tm_hour))) {
      tm.tm_min = tm.tm_sec = 0;
      tm.tm_hour += 1;
      t = static_cast<int64_t>(timegm(&tm));
      continue;
    }
    if (!minutes_.test(static_cast<std::size_t>(tm.tm_min))) {
      t += 60;
      continue;
    }
    return t * 1000;
  }
  return std::nullopt;
}

}  // namespace harmar::tasks
