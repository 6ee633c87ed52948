#include "notify/email_crypto.hpp"

#include <sodium.h>

#include <cctype>
#include <cstring>

#include "core/ids.hpp"

namespace harmar::notify {
namespace {

constexpr std::size_t kMacHex = 20;

std::string b64url(const unsigned char* p, std::size_t n) {
  std::string out(sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);
  return out;
}

std::optional<std::string> unb64url(std::string_view in) {
  std::string out(in.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(), in.size(), nullptr, &len,
                        nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string hex(const unsigned char* p, std::size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.resize(n * 2);
  return out;
}

std::string mac_hex(const Key32& key, char kind, std::string_view compact_id) {
  std::string msg(1, kind);
  msg += ':';
  msg += compact_id;
  unsigned char mac[crypto_auth_BYTES];
  crypto_auth(mac, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), key.data());
  return hex(mac, kMacHex / 2);
}

}  // namespace

EmailCrypto::EmailCrypto(const Key32& seal_key, const Key32& token_key) : seal_key_(seal_key), token_key_(token_key) {}

EmailCrypto::~EmailCrypto() {
  sodium_memzero(seal_key_.data(), seal_key_.size());
  sodium_memzero(token_key_.data(), token_key_.size());
}

std::string EmailCrypto::seal(std::string_view plain) const {
  std::string box(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plain.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(box.data());
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plain.data()),
                        plain.size(), nonce, seal_key_.data());
  return b64url(reinterpret_cast<const unsigned char*>(box.data()), box.size());
}

std::optional<std::string> EmailCrypto::open(std::string_view sealed) const {
  auto box = unb64url(sealed);
  if (!box || box->size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) return std::nullopt;
  auto* nonce = reinterpret_cast<const unsigned char*>(box->data());
  std::string plain(box->size() - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES, '\0');
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(plain.data()), nonce + crypto_secretbox_NONCEBYTES,
                                 box->size() - crypto_secretbox_NONCEBYTES, nonce, seal_key_.data()) != 0)
    return std::nullopt;
  return plain;
}

std::optional<std::string> EmailCrypto::reply_token(char kind, std::string_view id) const {
  if ((kind != 't' && kind != 'd') || !is_uuid(id)) return std::nullopt;
  std::string compact;
  for (char c : id)
    if (c != '-') compact.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return std::string(1, kind) + compact + mac_hex(token_key_, kind, compact);
}

std::optional<ReplyTarget> EmailCrypto::verify_token(std::string_view token) const {
  if (token.size() != 1 + 32 + kMacHex) return std::nullopt;
  char kind = static_cast<char>(std::tolower(static_cast<unsigned char>(token[0])));
  if (kind != 't' && kind != 'd') return std::nullopt;
  std::string compact, mac;
  for (char c : token.substr(1, 32)) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    compact.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  for (char c : token.substr(33)) mac.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  std::string want = mac_hex(token_key_, kind, compact);
  if (sodium_memcmp(want.data(), mac.data(), want.size()) != 0) return std::nullopt;
  ReplyTarget t;
  t.kind = kind;
  t.id = compact.substr(0, 8) + "-" + compact.substr(8, 4) + "-" + compact.substr(12, 4) + "-" + compact.substr(16, 4) +
         "-" + compact.substr(20);
  return t;
}

bool secrets_equal(std::string_view a, std::string_view b) {
  unsigned char ha[crypto_hash_sha256_BYTES], hb[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(ha, reinterpret_cast<const unsigned char*>(a.data()), a.size());
  crypto_hash_sha256(hb, reinterpret_cast<const unsigned char*>(b.data()), b.size());
  return sodium_memcmp(ha, hb, sizeof ha) == 0;
}

}  // namespace harmar::notify
