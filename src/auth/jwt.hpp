#pragma once
// Access tokens: compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), nothing else.
//
// The verifier is deliberately narrow: the header must say alg "EdDSA" and name a kid we know;
// "none", HS*, RS*, ES* and anything unknown are refused before a key is looked at, so no key can
// be used with an algorithm it was not made for (no HS/RS confusion). A `crit` header is refused.
// Every part is bounded and strictly decoded (base64url without padding, JSON objects only).
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::auth::jwt {

inline constexpr std::size_t kMaxTokenBytes = 4096;

using PublicKey = std::array<unsigned char, 32>;
using SecretKey = std::array<unsigned char, 64>;  // libsodium's Ed25519 secret key (seed + public)

struct Claims {
  std::string iss;
  std::string sub;  // user id
  std::string sid;  // session id
  std::string jti;
  std::vector<std::string> roles;
  int64_t iat = 0;  // seconds since the epoch
  int64_t nbf = 0;
  int64_t exp = 0;
};

// Signs `claims` as header {"alg":"EdDSA","typ":"JWT","kid":kid}.
std::string sign(const Claims& claims, std::string_view kid, const SecretKey& sk);

// The parts of a token that can be read without a key: the header's kid (after the header
// passed every check above). For the key lookup before verify().
Result<std::string> peek_kid(std::string_view token);

struct VerifyOptions {
  std::string_view issuer;
  int64_t now_s = 0;
  int64_t leeway_s = 0;  // tolerated clock skew for nbf/iat and exp
};

// Verifies `token`: structure, header, signature with the key `key_for(kid)` returns (nullopt →
// unknown kid), then the claims (iss, exp, nbf, required fields). 401 `invalid_token`, or
// `token_expired` for an expired one; `detail` says what failed.
Result<Claims> verify(std::string_view token,
                      const std::function<std::optional<PublicKey>(std::string_view kid)>& key_for,
                      const VerifyOptions& opts);

// base64url without padding, both ways (strict: no padding, no whitespace, no other alphabet).
std::string b64url_encode(std::string_view bytes);
std::optional<std::string> b64url_decode(std::string_view text);

}  // namespace harmar::auth::jwt
