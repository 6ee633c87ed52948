#pragma once
// Internal to src/net: per-connection limits that HTTP/1.1 and HTTP/2 sessions apply alike.
#include <algorithm>
#include <cstdint>

namespace harmar::net::detail {

// A token bucket per connection: `rps` requests sustained, twice that in a burst. 0: unlimited.
class RateLimit {
 public:
  explicit RateLimit(int64_t rps) : rps_(static_cast<double>(rps)), tokens_(2.0 * static_cast<double>(rps)) {}
  bool take(int64_t now_us) {
    if (rps_ <= 0) return true;
    tokens_ = std::min(2 * rps_, tokens_ + static_cast<double>(now_us - last_us_) * rps_ / 1e6);
    last_us_ = now_us;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  double rps_;
  double tokens_;
  int64_t last_us_ = 0;
};

// Counts events in fixed windows of `window_ms`; add() is false once a window holds more than
// `bound` of them. For abuse that costs little per event but adds up (HTTP/2 resets, pings).
class WindowCounter {
 public:
  WindowCounter(int64_t bound, int64_t window_ms) : bound_(bound), window_ms_(window_ms) {}
  bool add(int64_t now_ms) {
    if (now_ms - window_start_ms_ >= window_ms_) {
      window_start_ms_ = now_ms;
      count_ = 0;
    }
    return ++count_ <= bound_;
  }

 private:
  int64_t bound_;
  int64_t window_ms_;
  int64_t window_start_ms_ = 0;
  int64_t count_ = 0;
};

}  // namespace harmar::net::detail
