#include "core/clock.hpp"

#include <charconv>
#include <climits>
#include <cstdint>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace harmar {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t y;
  unsigned m, d;
};

Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// Writes `v` (>= 0) as `width` decimal digits at out[at].
void put_digits(char* out, std::size_t at, std::size_t width, int64_t v) {
  for (std::size_t i = at + width; i > at; v /= 10) out[--i] = static_cast<char>('0' + v % 10);
}

}  // namespace

void append_rfc3339(std::string& out, int64_t unix_ms) {
  int64_t secs = floor_div(unix_ms, 1000);
  int ms = static_cast<int>(unix_ms - secs * 1000);
  int64_t days = floor_div(secs, 86400);
  int64_t rem = secs - days * 86400;
  // Lists format two of these per record, mostly of one day: the date part is kept per thread.
  thread_local int64_t cached_days = INT64_MIN;
  thread_local char date[11];  // "YYYY-MM-DDT"
  if (days != cached_days) {
    Civil c = civil_from_days(days);
    if (c.y < 0 || c.y > 9999) {
      char buf[48];
      int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<long long>(c.y), c.m,
                            c.d, static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60),
                            static_cast<int>(rem % 60), ms);
      out.append(buf, static_cast<std::size_t>(n));
      return;
    }
    put_digits(date, 0, 4, c.y);
    date[4] = '-';
    put_digits(date, 5, 2, c.m);
    date[7] = '-';
    put_digits(date, 8, 2, c.d);
    date[10] = 'T';
    cached_days = days;
  }
  // Digit by digit: snprintf was most of a list's formatting cost.
  char t[13] = {'0', '0', ':', '0', '0', ':', '0', '0', '.', '0', '0', '0', 'Z'};
  auto put = [&t](std::size_t at, std::size_t width, int64_t v) { put_digits(t, at, width, v); };
  put(0, 2, rem / 3600);
  put(3, 2, rem / 60 % 60);
  put(6, 2, rem % 60);
  put(9, 3, ms);
  out.append(date, sizeof date);
  out.append(t, sizeof t);
}

std::string format_rfc3339(int64_t unix_ms) {
  std::string out;
  out.reserve(24);
  append_rfc3339(out, unix_ms);
  return out;
}

std::optional<int64_t> parse_rfc3339(std::string_view s) {
  int y, mo, d, h, mi, se;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, h) ||
      s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, se))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (d > kDays[mo - 1]) return std::nullopt;
  std::size_t pos = 19;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    int scale = 100;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om) ||
        oh > 23 || om > 59)
      return std::nullopt;
    offset_min = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + std::min(se, 59) - offset_min * 60;
  // An offset can push year 0000 or 9999 out of the four-digit range RFC 3339 can write.
  static const int64_t kMin = days_from_civil(0, 1, 1) * 86400;
  static const int64_t kMax = days_from_civil(10000, 1, 1) * 86400;
  if (secs < kMin || secs >= kMax) return std::nullopt;
  return secs * 1000 + ms;
}

std::string format_http_date(int64_t unix_s) {
  static constexpr const char* kWday[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr const char* kMon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = floor_div(unix_s, 86400);
  int64_t rem = unix_s - days * 86400;
  Civil c = civil_from_days(days);
  int64_t wd = ((days % 7) + 7) % 7;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04lld %02d:%02d:%02d GMT", kWday[wd], c.d, kMon[c.m - 1],
                static_cast<long long>(c.y), static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60),
                static_cast<int>(rem % 60));
  return buf;
}

namespace {

std::optional<std::pair<int64_t, std::string_view>> split_number(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  int64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || n < 0) return std::nullopt;
  std::string_view unit = s.substr(static_cast<std::size_t>(p - s.data()));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return std::make_pair(n, unit);
}

std::optional<int64_t> scaled(int64_t n, int64_t factor) {
  if (factor != 0 && n > INT64_MAX / factor) return std::nullopt;
  return n * factor;
}

}  // namespace

std::optional<int64_t> parse_duration_ms(std::string_view s) {
  auto nu = split_number(s);
  if (!nu) return std::nullopt;
  auto [n, unit] = *nu;
  if (unit == "ms") return n;
  if (unit.empty() || unit == "s") return scaled(n, 1000);
  if (unit == "m") return scaled(n, 60'000);
  if (unit == "h") return scaled(n, 3'600'000);
  if (unit == "d") return scaled(n, 86'400'000);
  return std::nullopt;
}

std::optional<int64_t> parse_size(std::string_view s) {
  auto nu = split_number(s);
  if (!nu) return std::nullopt;
  auto [n, unit] = *nu;
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB" || unit == "K") return scaled(n, int64_t(1) << 10);
  if (unit == "MiB" || unit == "M") return scaled(n, int64_t(1) << 20);
  if (unit == "GiB" || unit == "G") return scaled(n, int64_t(1) << 30);
  if (unit == "KB") return scaled(n, 1000);
  if (unit == "MB") return scaled(n, 1000'000);
  if (unit == "GB") return scaled(n, 1000'000'000);
  return std::nullopt;
}

}  // namespace harmar
