#pragma once
// OpenID Connect ID tokens: a JWK set (RSA and P-256 keys) and the verification of an id_token
// against it (RS256 and ES256 only) and against what we expect of its claims.
//
// Refused: any other alg (none, HS*, PS*, ...), a `crit` header, a kid we do not have (or no kid
// when the set holds more than one key of that type), a key whose kty/crv/alg/use does not fit the
// header's alg, a bad signature, and claims that do not match: iss (exact), aud (must contain our
// client id; with several audiences azp must be our client id), exp (past, with skew), iat
// (missing or in the future), nbf (future), nonce (exact), sub (missing).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::auth::oauth {

inline constexpr std::size_t kMaxIdTokenBytes = 16 * 1024;

class JwkSet {
 public:
  JwkSet();
  ~JwkSet();
  JwkSet(JwkSet&&) noexcept;
  JwkSet& operator=(JwkSet&&) noexcept;

  // Reads {"keys":[...]}: RSA (n, e) and EC P-256 (x, y) signing keys; others are skipped.
  // 502 `invalid_jwks` when the document is not a JWK set or holds no usable key.
  static Result<JwkSet> parse(std::string_view json);

  bool has_kid(std::string_view kid) const;
  std::size_t size() const;
  // Checks `signature` over `signing_input` with the key for (alg, kid).
  Status verify(std::string_view alg, const std::optional<std::string>& kid, std::string_view signing_input,
                std::string_view signature) const;

 private:
  struct Key;
  std::vector<std::unique_ptr<Key>> keys_;
};

struct IdTokenExpectations {
  std::string issuer;
  std::string client_id;
  std::string nonce;
  int64_t now_s = 0;
  int64_t skew_s = 120;
};

struct IdTokenClaims {
  std::string sub;
  std::string email;
  std::optional<bool> email_verified;
  std::string name;
  int64_t exp = 0, iat = 0;
};

// The header's kid (nullopt if none) of a structurally valid token with an allowed alg; 401
// `invalid_id_token` otherwise. For choosing whether to refresh the key set before verify.
Result<std::optional<std::string>> id_token_kid(std::string_view token);

// 401 `invalid_id_token` with a detail saying what failed.
Result<IdTokenClaims> verify_id_token(std::string_view token, const JwkSet& keys, const IdTokenExpectations& expect);

}  // namespace harmar::auth::oauth
