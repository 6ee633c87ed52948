// Access-token attacks: every forged or stale token must be refused, for the right reason.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <boost/json.hpp>

#include "auth/jwt.hpp"

namespace harmar::auth::jwt {
namespace {

namespace js = boost::json;

struct KeyPair {
  PublicKey pk{};
  SecretKey sk{};
  KeyPair() { crypto_sign_keypair(pk.data(), sk.data()); }
};

constexpr int64_t kNow = 1'800'000'000;

Claims claims() {
  Claims c;
  c.iss = "harmar-test";
  c.sub = "user-1";
  c.sid = "session-1";
  c.jti = "j1";
  c.roles = {"user"};
  c.iat = kNow - 10;
  c.nbf = kNow - 10;
  c.exp = kNow + 600;
  return c;
}

VerifyOptions opts(int64_t now = kNow) { return {"harmar-test", now, 0}; }

std::function<std::optional<PublicKey>(std::string_view)> only(const std::string& kid, const PublicKey& pk) {
  return [kid, pk](std::string_view k) -> std::optional<PublicKey> {
    if (k == kid) return pk;
    return std::nullopt;
  };
}

std::string part(const js::object& o) { return b64url_encode(js::serialize(o)); }

std::string payload_of(const std::string& token) { return token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1); }

TEST(Jwt, signed_token_verifies_with_its_claims) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  auto c = verify(t, only("k1", k.pk), opts());
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_EQ(c->sub, "user-1");
  EXPECT_EQ(c->sid, "session-1");
  EXPECT_EQ(c->roles, std::vector<std::string>{"user"});
  EXPECT_EQ(c->exp, kNow + 600);
  auto kid = peek_kid(t);
  ASSERT_TRUE(kid.ok());
  EXPECT_EQ(*kid, "k1");
}

TEST(Jwt, alg_none_is_refused) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  std::string forged = part({{"alg", "none"}, {"typ", "JWT"}, {"kid", "k1"}}) + "." + payload_of(t) + ".";
  auto c = verify(forged, only("k1", k.pk), opts());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().status, 401);
  // Even with a (valid) signature part kept, "none" never verifies.
  std::string with_sig = part({{"alg", "none"}, {"kid", "k1"}}) + "." + payload_of(t) + "." + t.substr(t.rfind('.') + 1);
  EXPECT_FALSE(verify(with_sig, only("k1", k.pk), opts()).ok());
  // Nor "None" or "EDDSA": the comparison is exact.
  for (const char* alg : {"None", "NONE", "EDDSA", "eddsa", "ES256", "RS256", "PS256"}) {
    std::string h = part({{"alg", alg}, {"kid", "k1"}});
    EXPECT_FALSE(verify(h + "." + payload_of(t) + "." + t.substr(t.rfind('.') + 1), only("k1", k.pk), opts()).ok()) << alg;
  }
}

TEST(Jwt, hs256_signed_with_the_public_key_is_refused) {
  // The classic confusion: an attacker signs with HMAC using the published public key as the
  // secret, hoping the verifier picks the algorithm from the header.
  KeyPair k;
  std::string input = part({{"alg", "HS256"}, {"typ", "JWT"}, {"kid", "k1"}}) + "." + payload_of(sign(claims(), "k1", k.sk));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), k.pk.data(), static_cast<int>(k.pk.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &mac_len);
  std::string forged = input + "." + b64url_encode(std::string_view(reinterpret_cast<char*>(mac), mac_len));
  auto c = verify(forged, only("k1", k.pk), opts());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().detail.find("HS256"), std::string::npos) << c.error().detail;
}

TEST(Jwt, tampered_payload_is_refused) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  Claims evil = claims();
  evil.roles = {"admin"};
  KeyPair other;
  std::string evil_token = sign(evil, "k1", other.sk);
  // The original header and signature around an escalated payload.
  std::string forged = t.substr(0, t.find('.')) + "." + payload_of(evil_token) + t.substr(t.rfind('.'));
  auto c = verify(forged, only("k1", k.pk), opts());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().detail, "bad signature");
  // One flipped bit in the signature, too.
  std::string flipped = t;
  flipped[flipped.size() - 5] = flipped[flipped.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verify(flipped, only("k1", k.pk), opts()).ok());
}

TEST(Jwt, token_signed_by_another_key_or_unknown_kid_is_refused) {
  KeyPair k, attacker;
  auto c = verify(sign(claims(), "k1", attacker.sk), only("k1", k.pk), opts());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().detail, "bad signature");
  auto u = verify(sign(claims(), "k2", k.sk), only("k1", k.pk), opts());
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error().detail, "unknown kid");
  // No kid at all.
  std::string t = sign(claims(), "k1", k.sk);
  std::string no_kid = part({{"alg", "EdDSA"}, {"typ", "JWT"}}) + t.substr(t.find('.'));
  EXPECT_FALSE(verify(no_kid, only("k1", k.pk), opts()).ok());
}

TEST(Jwt, expired_and_not_yet_valid_tokens_are_refused) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  auto expired = verify(t, only("k1", k.pk), opts(kNow + 600));
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().code, "token_expired");
  EXPECT_TRUE(verify(t, only("k1", k.pk), opts(kNow + 599)).ok());
  Claims future = claims();
  future.nbf = kNow + 60;
  future.iat = kNow;
  auto early = verify(sign(future, "k1", k.sk), only("k1", k.pk), opts());
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().detail, "token not valid yet");
  // Leeway covers small clock skew between nodes, and no more.
  EXPECT_TRUE(verify(sign(future, "k1", k.sk), only("k1", k.pk), {"harmar-test", kNow, 60}).ok());
}

TEST(Jwt, wrong_issuer_is_refused) {
  KeyPair k;
  Claims c = claims();
  c.iss = "someone-else";
  auto r = verify(sign(c, "k1", k.sk), only("k1", k.pk), opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().detail, "wrong issuer");
}

TEST(Jwt, malformed_tokens_are_refused_not_crashed_on) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  std::vector<std::string> bad = {
      "",
      ".",
      "..",
      "a.b",
      "a.b.c.d",
      t + ".",
      t.substr(0, t.rfind('.')),
      "!!!." + payload_of(t) + ".sig",
      t.substr(0, t.find('.')) + ".@@@@" + t.substr(t.rfind('.')),
      b64url_encode("[1,2]") + "." + payload_of(t) + t.substr(t.rfind('.')),
      b64url_encode("not json") + "." + payload_of(t) + t.substr(t.rfind('.')),
      t.substr(0, t.find('.')) + "=" + t.substr(t.find('.')),  // padding is not base64url-nopad
      std::string(kMaxTokenBytes + 1, 'a'),
  };
  for (const auto& b : bad) {
    auto r = verify(b, only("k1", k.pk), opts());
    EXPECT_FALSE(r.ok()) << b.substr(0, 80);
    if (!r.ok()) {
      EXPECT_EQ(r.error().status, 401);
    }
  }
}

TEST(Jwt, crit_header_and_wrong_typ_are_refused) {
  KeyPair k;
  std::string t = sign(claims(), "k1", k.sk);
  for (const js::object& h : {js::object{{"alg", "EdDSA"}, {"kid", "k1"}, {"crit", js::array{"exp"}}},
                              js::object{{"alg", "EdDSA"}, {"kid", "k1"}, {"typ", "at+jwt+other"}}}) {
    std::string header = part(h);
    std::string input = header + "." + payload_of(t);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(), k.sk.data());
    std::string forged = input + "." + b64url_encode(std::string_view(reinterpret_cast<char*>(sig), sizeof sig));
    EXPECT_FALSE(verify(forged, only("k1", k.pk), opts()).ok()) << js::serialize(h);
  }
}

TEST(Jwt, base64url_round_trips_and_is_strict) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00x"}) {
    auto d = b64url_decode(b64url_encode(s));
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, s);
  }
  EXPECT_FALSE(b64url_decode("Zm9v=").has_value());
  EXPECT_FALSE(b64url_decode("Zm9v+").has_value());
  EXPECT_FALSE(b64url_decode("Zm 9v").has_value());
  EXPECT_FALSE(b64url_decode("Zh").has_value());  // non-zero padding bits
  // Found by fuzz_jwt: libsodium alone takes some bytes >= 0x80 for alphabet characters.
  EXPECT_FALSE(b64url_decode("ITMKiyXGuZzOmVzOAt1GJCaA\x9b" "Fuv-8wQB0BIg5VYX3jORhCg").has_value());
}

}  // namespace
}  // namespace harmar::auth::jwt
