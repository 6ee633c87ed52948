#include "auth/signin_common.hpp"

#include <openssl/evp.h>
#include <sodium.h>

namespace harmar::auth {

std::string sha256_bytes(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string sha256_hex_of(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string raw = sha256_bytes(s), out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return a.empty() || sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

boost::asio::awaitable<Status> count_and_limit(store::Kv& kv, std::string key, int limit, int64_t window_ms,
                                               std::string detail) {
  if (limit <= 0) co_return Status{};
  auto n = co_await kv.incr(key, 1, window_ms);
  if (!n.ok()) co_return n.error();
  if (*n <= limit) co_return Status{};
  auto left = co_await kv.ttl(key);
  int64_t ms = left.ok() && left->has_value() ? **left : window_ms;
  co_return Error::rate_limited(static_cast<int>((ms + 999) / 1000), std::move(detail));
}

}  // namespace harmar::auth
