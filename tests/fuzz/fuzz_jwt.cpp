// Access tokens through the verifier: any input must be refused or accepted without crashing,
// and nothing but a token signed by the one known key may ever verify.
#include <sodium.h>

#include <cstdlib>
#include <string>

#include "auth/jwt.hpp"

using namespace harmar::auth;

namespace {

struct Keys {
  jwt::PublicKey pk{};
  jwt::SecretKey sk{};
  Keys() {
    if (sodium_init() < 0) std::abort();
    // A fixed seed: the corpus holds tokens signed by this key, so mutations start from valid ones.
    unsigned char seed[crypto_sign_SEEDBYTES] = {42};
    crypto_sign_seed_keypair(pk.data(), sk.data(), seed);
  }
};

const Keys& keys() {
  static const Keys k;
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const Keys& k = keys();
  auto key_for = [&k](std::string_view kid) -> std::optional<jwt::PublicKey> {
    if (kid == "fuzz") return k.pk;
    return std::nullopt;
  };
  (void)jwt::peek_kid(in);
  auto claims = jwt::verify(in, key_for, {"harmar", 1'800'000'000, 5});
  if (claims.ok()) {
    // Only a token whose signature the real key made can get here: re-signing its claims must
    // give a token that verifies too (the claims survived the round trip intact).
    std::string again = jwt::sign(*claims, "fuzz", k.sk);
    if (!jwt::verify(again, key_for, {"harmar", 1'800'000'000, 5}).ok()) std::abort();
  }
  auto decoded = jwt::b64url_decode(in);
  if (decoded && jwt::b64url_encode(*decoded) != in) std::abort();
  return 0;
}
