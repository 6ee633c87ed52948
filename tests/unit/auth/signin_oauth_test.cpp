// Third-party sign-in pieces that need no provider: id_token verification against keys made here
// with OpenSSL (RS256 and ES256, and every refusal), PKCE, provider configuration, app redirects.
// The flows against a real OpenID Connect provider are in tests/integration/test_oauth.py.
#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "auth/jwt.hpp"
#include "auth/oauth.hpp"
#include "auth/oauth_idtoken.hpp"
#include "core/config.hpp"

namespace harmar::auth::oauth {
namespace {

namespace js = boost::json;

struct Key {
  EVP_PKEY* pkey = nullptr;
  std::string kid, alg;
  ~Key() { EVP_PKEY_free(pkey); }
};

std::string bn_bytes(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(k, name, &bn);
  std::string out(std::max(BN_num_bytes(bn), pad), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

std::unique_ptr<Key> rsa(std::string kid) {
  auto k = std::make_unique<Key>();
  k->pkey = EVP_RSA_gen(2048);
  k->kid = std::move(kid);
  k->alg = "RS256";
  return k;
}

std::unique_ptr<Key> p256(std::string kid) {
  auto k = std::make_unique<Key>();
  k->pkey = EVP_EC_gen("P-256");
  k->kid = std::move(kid);
  k->alg = "ES256";
  return k;
}

js::object jwk(const Key& k) {
  if (k.alg == "RS256")
    return {{"kty", "RSA"}, {"kid", k.kid}, {"use", "sig"}, {"alg", "RS256"},
            {"n", jwt::b64url_encode(bn_bytes(k.pkey, OSSL_PKEY_PARAM_RSA_N))},
            {"e", jwt::b64url_encode(bn_bytes(k.pkey, OSSL_PKEY_PARAM_RSA_E))}};
  return {{"kty", "EC"}, {"kid", k.kid}, {"crv", "P-256"},
          {"x", jwt::b64url_encode(bn_bytes(k.pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
          {"y", jwt::b64url_encode(bn_bytes(k.pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
}

std::string sign_raw(const Key& k, std::string_view input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, k.pkey);
  size_t len = 0;
  EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  sig.resize(len);
  EVP_MD_CTX_free(md);
  if (k.alg != "ES256") return sig;
  // DER ECDSA-Sig-Value → JOSE r || s.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(es);
  return raw;
}

std::string token(const js::object& header, const js::object& claims, const Key* key) {
  std::string input = jwt::b64url_encode(js::serialize(header)) + "." + jwt::b64url_encode(js::serialize(claims));
  return input + "." + (key ? jwt::b64url_encode(sign_raw(*key, input)) : "");
}

constexpr int64_t kNow = 1'800'000'000;

js::object claims() {
  return {{"iss", "https://idp.example.test"}, {"aud", "harmar-client"}, {"sub", "user-42"}, {"nonce", "n-0S6_WzA2Mj"},
          {"iat", kNow - 10}, {"exp", kNow + 300}, {"email", "ann@example.test"}, {"email_verified", true}, {"name", "Ann"}};
}

IdTokenExpectations expect() {
  IdTokenExpectations e;
  e.issuer = "https://idp.example.test";
  e.client_id = "harmar-client";
  e.nonce = "n-0S6_WzA2Mj";
  e.now_s = kNow;
  return e;
}

struct Keys {
  std::unique_ptr<Key> r = rsa("rsa-1"), e = p256("ec-1");
  JwkSet set = std::move(JwkSet::parse(js::serialize(js::object{{"keys", js::array{jwk(*r), jwk(*e)}}}))).value();
};

js::object header(const Key& k) { return {{"alg", k.alg}, {"typ", "JWT"}, {"kid", k.kid}}; }

void expect_refused(const std::string& tok, const JwkSet& set, std::string_view why, IdTokenExpectations e = expect()) {
  auto r = verify_id_token(tok, set, e);
  ASSERT_FALSE(r.ok()) << "accepted a token that " << why;
  EXPECT_EQ(r.error().status, 401) << why;
  EXPECT_EQ(r.error().code, "invalid_id_token") << why;
}

TEST(IdToken, rs256_and_es256_tokens_from_the_provider_keys_verify) {
  Keys k;
  for (const Key* key : {k.r.get(), k.e.get()}) {
    auto r = verify_id_token(token(header(*key), claims(), key), k.set, expect());
    ASSERT_TRUE(r.ok()) << key->alg << ": " << r.error().detail;
    EXPECT_EQ(r->sub, "user-42");
    EXPECT_EQ(r->email, "ann@example.test");
    EXPECT_EQ(r->email_verified, true);
    EXPECT_EQ(r->name, "Ann");
  }
}

TEST(IdToken, alg_none_and_hmac_with_the_public_key_are_refused) {
  Keys k;
  expect_refused(token({{"alg", "none"}, {"kid", "rsa-1"}}, claims(), nullptr), k.set, "has alg none");
  expect_refused(token({{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(), nullptr), k.set, "has no signature");
  // HS256 keyed with the RSA modulus (what a confused verifier would use as the secret).
  std::string input = jwt::b64url_encode(js::serialize(js::object{{"alg", "HS256"}, {"kid", "rsa-1"}})) + "." +
                      jwt::b64url_encode(js::serialize(claims()));
  std::string secret = bn_bytes(k.r->pkey, OSSL_PKEY_PARAM_RSA_N);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  expect_refused(input + "." + jwt::b64url_encode(std::string(reinterpret_cast<char*>(mac), len)), k.set, "is HS256");
  expect_refused(token({{"alg", "PS256"}, {"kid", "rsa-1"}}, claims(), k.r.get()), k.set, "has alg PS256");
}

TEST(IdToken, a_tampered_payload_or_signature_is_refused) {
  Keys k;
  std::string good = token(header(*k.r), claims(), k.r.get());
  auto d1 = good.find('.'), d2 = good.rfind('.');
  auto evil = claims();
  evil["email"] = "admin@example.test";
  std::string tampered = good.substr(0, d1 + 1) + jwt::b64url_encode(js::serialize(evil)) + good.substr(d2);
  expect_refused(tampered, k.set, "has a changed payload");
  std::string sig = good.substr(d2 + 1);
  sig[5] = sig[5] == 'A' ? 'B' : 'A';
  expect_refused(good.substr(0, d2 + 1) + sig, k.set, "has a changed signature");
  expect_refused(good + ".x", k.set, "has four parts");
  expect_refused("not-a-token", k.set, "is not a JWS");
}

TEST(IdToken, keys_must_fit_the_header) {
  Keys k;
  auto other = rsa("rsa-1");  // same kid, another key
  expect_refused(token(header(*k.r), claims(), other.get()), k.set, "is signed by a key the provider does not have");
  js::object unknown{{"alg", "RS256"}, {"kid", "rsa-9"}};
  expect_refused(token(unknown, claims(), k.r.get()), k.set, "names an unknown kid");
  js::object crossed{{"alg", "ES256"}, {"kid", "rsa-1"}};
  expect_refused(token(crossed, claims(), k.e.get()), k.set, "uses ES256 with an RSA key's kid");
  js::object crit{{"alg", "RS256"}, {"kid", "rsa-1"}, {"crit", js::array{"exp"}}};
  expect_refused(token(crit, claims(), k.r.get()), k.set, "has a crit header");
  // Without a kid, a set with one key of the type is unambiguous.
  js::object no_kid{{"alg", "ES256"}};
  EXPECT_TRUE(verify_id_token(token(no_kid, claims(), k.e.get()), k.set, expect()).ok());
}

TEST(IdToken, claims_must_match_this_sign_in) {
  Keys k;
  auto with = [&](const char* field, js::value v) {
    auto c = claims();
    c[field] = std::move(v);
    return token(header(*k.r), c, k.r.get());
  };
  auto without = [&](const char* field) {
    auto c = claims();
    c.erase(field);
    return token(header(*k.r), c, k.r.get());
  };
  expect_refused(with("iss", "https://evil.example.test"), k.set, "has another issuer");
  expect_refused(with("aud", "other-client"), k.set, "is for another client");
  expect_refused(with("aud", js::array{"other-client", "harmar-client"}), k.set, "has several audiences and no azp");
  EXPECT_TRUE(verify_id_token(token(header(*k.r), [&] {
                                auto c = claims();
                                c["aud"] = js::array{"other-client", "harmar-client"};
                                c["azp"] = "harmar-client";
                                return c;
                              }(), k.r.get()),
                              k.set, expect())
                  .ok());
  expect_refused(with("azp", "other-client"), k.set, "was authorized for another client");
  expect_refused(with("exp", kNow - 600), k.set, "expired");
  expect_refused(with("iat", kNow + 3600), k.set, "was issued in the future");
  expect_refused(with("nbf", kNow + 3600), k.set, "is not valid yet");
  expect_refused(with("nonce", "another-sign-in"), k.set, "carries another sign-in's nonce");
  expect_refused(without("nonce"), k.set, "has no nonce");
  expect_refused(without("sub"), k.set, "has no subject");
  expect_refused(without("exp"), k.set, "has no exp");
  expect_refused(without("iat"), k.set, "has no iat");
  // Within the clock skew an expired token still passes.
  EXPECT_TRUE(verify_id_token(with("exp", kNow - 30), k.set, expect()).ok());
}

TEST(IdToken, a_jwk_set_without_usable_keys_is_refused) {
  EXPECT_FALSE(JwkSet::parse("{}").ok());
  EXPECT_FALSE(JwkSet::parse("not json").ok());
  EXPECT_FALSE(JwkSet::parse(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})").ok()) << "symmetric keys are never used";
  auto small = std::make_unique<Key>();
  small->pkey = EVP_RSA_gen(1024);
  small->kid = "weak";
  small->alg = "RS256";
  EXPECT_FALSE(JwkSet::parse(js::serialize(js::object{{"keys", js::array{jwk(*small)}}})).ok()) << "RSA under 2048 bits";
}

TEST(Pkce, s256_challenge_matches_rfc7636_appendix_b) {
  EXPECT_EQ(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

config::Config oauth_config(std::vector<std::pair<std::string, std::string>> sets) {
  config::Schema s;
  s.add({"public_url", config::Type::String, "https://cloud.example.test/", ""});
  OAuthSettings::add_keys(s);
  auto c = config::Config::load(s, "", sets, nullptr);
  EXPECT_TRUE(c.ok()) << c.error().detail;
  return std::move(c).value();
}

TEST(OAuthSettings, providers_come_from_auth_oauth_maps_with_defaults_per_type) {
  auto cfg = oauth_config({{"auth.oauth.github", "type=github,client_id=gh,client_secret=s1"},
                           {"auth.oauth.corp", "type=oidc,issuer=https://login.example.test/,client_id=c,client_secret=s2,"
                                               "token_auth=client_secret_post"},
                           {"auth.oauth.wx", "type=wechat,client_id=wxid,client_secret=s3,scopes=snsapi_userinfo"}});
  auto s = OAuthSettings::from_config(cfg);
  ASSERT_TRUE(s.ok()) << s.error().detail;
  auto kv = std::move(store::Kv::open("")).value();
  OAuthService svc(*s, *kv);
  const auto* gh = svc.provider("github");
  ASSERT_NE(gh, nullptr);
  EXPECT_EQ(gh->kind, Kind::GitHub);
  EXPECT_EQ(gh->token_url, "https://github.com/login/oauth/access_token");
  EXPECT_EQ(gh->redirect_uri, "https://cloud.example.test/v1/auth/oauth/github/callback");
  const auto* corp = svc.provider("corp");
  ASSERT_NE(corp, nullptr);
  EXPECT_EQ(corp->issuer, "https://login.example.test");
  EXPECT_TRUE(corp->secret_in_body);
  EXPECT_EQ(corp->scopes, "openid email profile");
  EXPECT_EQ(svc.provider("wx")->scopes, "snsapi_userinfo");
  EXPECT_EQ(svc.provider("nope"), nullptr);
}

TEST(OAuthSettings, a_misconfigured_provider_is_named_with_its_field) {
  auto cfg = oauth_config({{"auth.oauth.bad", "type=facebook,client_id=x"},
                           {"auth.oauth.idp", "type=oidc,client_id=c,client_secret=s,colour=blue"}});
  auto s = OAuthSettings::from_config(cfg);
  ASSERT_FALSE(s.ok());
  const auto& d = s.error().detail;
  EXPECT_NE(d.find("auth.oauth.bad.type"), std::string::npos) << d;
  EXPECT_NE(d.find("auth.oauth.bad.client_secret"), std::string::npos) << d;
  EXPECT_NE(d.find("auth.oauth.idp.issuer"), std::string::npos) << d;
  EXPECT_NE(d.find("auth.oauth.idp.colour"), std::string::npos) << d;
}

TEST(OAuthSettings, app_redirects_must_be_allow_listed) {
  auto cfg = oauth_config({{"auth.oauth_redirect_urls", "https://app.example.test/done,https://app.example.test/cb/"}});
  auto s = OAuthSettings::from_config(cfg);
  ASSERT_TRUE(s.ok());
  auto kv = std::move(store::Kv::open("")).value();
  OAuthService svc(*s, *kv);
  EXPECT_TRUE(svc.allowed_app_redirect("https://app.example.test/done"));
  EXPECT_TRUE(svc.allowed_app_redirect("https://app.example.test/cb/mobile"));
  EXPECT_FALSE(svc.allowed_app_redirect("https://app.example.test/done/more"));
  EXPECT_FALSE(svc.allowed_app_redirect("https://app.example.test/cb/../admin"));
  EXPECT_FALSE(svc.allowed_app_redirect("https://app.example.test.evil.test/done"));
  EXPECT_FALSE(svc.allowed_app_redirect("https://evil.test/?https://app.example.test/done"));
  EXPECT_FALSE(svc.allowed_app_redirect("https://app.example.test/done#x"));
}

}  // namespace
}  // namespace harmar::auth::oauth
