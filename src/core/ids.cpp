#include "core/ids.hpp"

#include <sodium.h>

#include <atomic>
#include <chrono>

namespace harmar {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void ensure_sodium() {
  static const bool ok = sodium_init() >= 0;
  (void)ok;
}

std::string hex(const unsigned char* p, std::size_t n) {
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}

}  // namespace

std::string new_id() {
  ensure_sodium();
  // 48-bit Unix ms, then a 12-bit counter (rand_a, RFC 9562 method 1) so ids from this thread stay
  // ordered within a millisecond, then 62 random bits.
  thread_local uint64_t last_ms = 0;
  thread_local uint16_t seq = 0;
  uint64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  if (ms <= last_ms) {
    ms = last_ms;
    if (++seq > 0xfff) {  // counter exhausted: borrow the next millisecond
      ms = ++last_ms;
      seq = 0;
    }
  } else {
    last_ms = ms;
    uint16_t r;
    randombytes_buf(&r, sizeof r);
    seq = r & 0x1ff;  // random start, leaving room to count up
  }
  unsigned char b[16];
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  b[6] = static_cast<unsigned char>(0x70 | (seq >> 8));
  b[7] = static_cast<unsigned char>(seq & 0xff);
  randombytes_buf(b + 8, 8);
  b[8] = (b[8] & 0x3f) | 0x80;
  std::string h = hex(b, 16);
  std::string out;
  out.reserve(36);
  out.append(h, 0, 8).push_back('-');
  out.append(h, 8, 4).push_back('-');
  out.append(h, 12, 4).push_back('-');
  out.append(h, 16, 4).push_back('-');
  out.append(h, 20, 12);
  return out;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::string random_hex(std::size_t n) {
  ensure_sodium();
  std::string buf(n, '\0');
  randombytes_buf(buf.data(), n);
  return hex(reinterpret_cast<const unsigned char*>(buf.data()), n);
}

std::string random_token(std::size_t n) {
  ensure_sodium();
  std::string raw(n, '\0');
  randombytes_buf(raw.data(), n);
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), n,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

std::string next_request_id() {
  // Process-random prefix + a per-thread counter: unique, no syscalls per call, and 15 characters
  // in base32, so the string is held inline (no allocation per request).
  static constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
  static const std::string prefix = [] {
    std::string r = random_hex(3);  // 24 random bits, 20 of them used
    uint32_t bits = static_cast<uint32_t>(std::stoul(r, nullptr, 16));
    std::string p(4, ' ');
    for (int i = 0; i < 4; ++i) p[i] = kBase32[(bits >> (5 * i)) & 31];
    return p;
  }();
  // 8 bits of thread (the callers are the server's workers, far fewer than 256), 42 of count.
  static std::atomic<uint32_t> thread_seq{0};
  thread_local const uint64_t thread_part = uint64_t(thread_seq.fetch_add(1) & 0xff) << 42;
  thread_local uint64_t n = 0;
  uint64_t v = thread_part | (++n & ((uint64_t(1) << 42) - 1));
  char buf[15];
  prefix.copy(buf, 4);
  buf[4] = '-';
  for (int i = 0; i < 10; ++i) buf[5 + i] = kBase32[(v >> (45 - 5 * i)) & 31];
  return std::string(buf, sizeof buf);
}

}  // namespace harmar
