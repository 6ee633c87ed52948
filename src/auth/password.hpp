#pragma once
// Passwords: the policy (NIST SP 800-63B: length 8..256, no composition rules, not one of the
// 1 000 most common passwords) and argon2id hashing through libsodium. The parameters live inside
// each stored hash ("$argon2id$v=19$m=19456,t=2,p=1$..."), so they can be raised later: a login
// whose hash is below the configured cost rehashes the password it just verified.
//
// Hashing is CPU- and memory-heavy: it always runs on the blocking pool, and at most
// `max_concurrent` hashes run at once (each holds `memlimit` bytes), the rest wait their turn.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace harmar::store::detail {
class AsyncSemaphore;
}

namespace harmar::auth {

namespace asio = boost::asio;

inline constexpr std::size_t kMinPasswordChars = 8;
inline constexpr std::size_t kMaxPasswordChars = 256;

struct HashParams {
  uint64_t opslimit = 2;           // argon2 t
  std::size_t memlimit = 19 << 20;  // bytes; argon2 m (OWASP minimum: 19 MiB)
};

// 422 `validation_failed` naming field `field` when the password breaks the policy. Length is
// counted in Unicode code points (bytes that do not start a UTF-8 sequence are not counted).
Status check_password_policy(std::string_view password, std::string_view field = "password");
// Whether `password` (compared case-insensitively) is in the shipped list of common passwords.
bool is_common_password(std::string_view password);

// Blocking primitives (call them from the blocking pool, or from tests).
std::string hash_password_blocking(std::string_view password, const HashParams& params);
bool verify_password_blocking(std::string_view stored_hash, std::string_view password);
bool hash_needs_rehash(std::string_view stored_hash, const HashParams& params);

class PasswordHasher {
 public:
  PasswordHasher(HashParams params, std::size_t max_concurrent);
  ~PasswordHasher();

  struct Verdict {
    bool ok = false;
    std::string rehashed;  // non-empty: a new hash at the configured cost, to store
  };
  asio::awaitable<Result<std::string>> hash(std::string password);
  // Verifies `password` against `stored_hash`. With an empty stored hash (unknown user, or an
  // account without a password) it verifies against a dummy hash of the same cost, so the
  // answer takes the same time and is always false.
  asio::awaitable<Result<Verdict>> verify(std::string stored_hash, std::string password);

  const HashParams& params() const { return params_; }

 private:
  static std::string random_dummy();
  HashParams params_;
  std::string dummy_hash_;
  std::unique_ptr<store::detail::AsyncSemaphore> slots_;
};

}  // namespace harmar::auth
