#pragma once
// The email module's keys, derived from the server secret (auth::ServerKeys):
//  - a secretbox key that seals SMTP passwords of email configs and queued messages at rest;
//  - a MAC key for reply tokens: a mail about a task or a device carries a token (in its Reply-To
//    address notify+TOKEN@domain and in its Message-ID) that an inbound reply brings back.
// A token is KIND (t = task, d = device) + the 32 hex digits of the UUID + 20 hex digits of
// HMAC-SHA-512/256 (libsodium crypto_auth) over the kind and id: 53 characters, a valid local part
// with the "notify+" prefix, and unforgeable without the server secret.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace harmar::notify {

using Key32 = std::array<unsigned char, 32>;

struct ReplyTarget {
  char kind = 't';  // 't' task, 'd' device
  std::string id;   // the UUID, with dashes
};

class EmailCrypto {
 public:
  // Derivation contexts (for auth::ServerKeys::derive).
  static constexpr const char* kSealContext = "harmar.email.seal.v1";
  static constexpr const char* kTokenContext = "harmar.email.reply-token.v1";

  EmailCrypto(const Key32& seal_key, const Key32& token_key);
  ~EmailCrypto();
  EmailCrypto(const EmailCrypto&) = default;
  EmailCrypto& operator=(const EmailCrypto&) = default;

  // base64url(nonce || secretbox(plain)).
  std::string seal(std::string_view plain) const;
  // nullopt when `sealed` was not made by seal() with this key (tampered, other key, garbage).
  std::optional<std::string> open(std::string_view sealed) const;

  // nullopt when `id` is not a UUID or kind is not t/d.
  std::optional<std::string> reply_token(char kind, std::string_view id) const;
  // The target of a token made by reply_token(); nullopt for anything else (constant-time MAC check).
  std::optional<ReplyTarget> verify_token(std::string_view token) const;

 private:
  Key32 seal_key_{};
  Key32 token_key_{};
};

// Constant-time equality of two secrets of any length (compares their SHA-256).
bool secrets_equal(std::string_view a, std::string_view b);

}  // namespace harmar::notify
