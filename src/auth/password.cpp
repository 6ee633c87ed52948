#include "auth/password.hpp"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <unordered_set>

#include "auth/common_passwords.hpp"
#include "core/blocking.hpp"
#include "store/detail/async_semaphore.hpp"

namespace harmar::auth {

namespace {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

const std::unordered_set<std::string>& common_passwords() {
  static const std::unordered_set<std::string> set = [] {
    std::unordered_set<std::string> s;
    std::string_view text = kCommonPasswords;
    while (!text.empty()) {
      auto nl = text.find('\n');
      auto line = text.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) s.insert(lower_ascii(line));
      if (nl == std::string_view::npos) break;
      text.remove_prefix(nl + 1);
    }
    return s;
  }();
  return set;
}

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

constexpr auto kHashWait = std::chrono::seconds(30);

}  // namespace

bool is_common_password(std::string_view password) { return common_passwords().count(lower_ascii(password)) > 0; }

Status check_password_policy(std::string_view password, std::string_view field) {
  std::size_t n = code_points(password);
  std::string f(field);
  if (n < kMinPasswordChars || password.size() > kMaxPasswordChars * 4 || n > kMaxPasswordChars)
    return Error::validation("the password must be 8 to 256 characters long",
                             {{f, "must be 8 to 256 characters long"}});
  if (is_common_password(password))
    return Error::validation("this password is one of the most common ones; choose another",
                             {{f, "is too common"}});
  return {};
}

std::string hash_password_blocking(std::string_view password, const HashParams& params) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), params.opslimit, params.memlimit) != 0)
    throw std::runtime_error("argon2id hashing ran out of memory");
  return out;
}

bool verify_password_blocking(std::string_view stored_hash, std::string_view password) {
  if (stored_hash.empty() || stored_hash.size() >= crypto_pwhash_STRBYTES) return false;
  std::string h(stored_hash);  // NUL-terminated for libsodium
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

bool hash_needs_rehash(std::string_view stored_hash, const HashParams& params) {
  std::string h(stored_hash);
  return crypto_pwhash_str_needs_rehash(h.c_str(), params.opslimit, params.memlimit) != 0;
}

PasswordHasher::PasswordHasher(HashParams params, std::size_t max_concurrent)
    : params_(params), slots_(std::make_unique<store::detail::AsyncSemaphore>(std::max<std::size_t>(1, max_concurrent))) {
  // A hash of a random password: verifying against it costs what verifying a real one does.
  dummy_hash_ = hash_password_blocking(random_dummy(), params_);
}

PasswordHasher::~PasswordHasher() = default;

std::string PasswordHasher::random_dummy() {
  unsigned char b[16];
  randombytes_buf(b, sizeof b);
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

asio::awaitable<Result<std::string>> PasswordHasher::hash(std::string password) {
  bool got = co_await slots_->acquire(kHashWait);
  if (!got) co_return Error::unavailable("too many password hashes in progress", 1);
  store::detail::SemaphorePermit permit(*slots_);
  HashParams p = params_;
  // A named closure: g++ 12 destroys a closure temporary inside a co_await expression twice.
  auto work = [password = std::move(password), p] { return hash_password_blocking(password, p); };
  std::string h = co_await run_blocking(std::move(work));
  co_return h;
}

asio::awaitable<Result<PasswordHasher::Verdict>> PasswordHasher::verify(std::string stored_hash, std::string password) {
  bool got = co_await slots_->acquire(kHashWait);
  if (!got) co_return Error::unavailable("too many password hashes in progress", 1);
  store::detail::SemaphorePermit permit(*slots_);
  bool known = !stored_hash.empty();
  std::string against = known ? std::move(stored_hash) : dummy_hash_;
  HashParams p = params_;
  auto work = [against = std::move(against), password = std::move(password), p, known] {
    Verdict out;
    out.ok = verify_password_blocking(against, password) && known;
    if (out.ok && hash_needs_rehash(against, p)) out.rehashed = hash_password_blocking(password, p);
    return out;
  };
  Verdict v = co_await run_blocking(std::move(work));
  co_return v;
}

}  // namespace harmar::auth
