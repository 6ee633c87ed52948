#include "auth/oauth_idtoken.hpp"

#include <boost/json.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "auth/jwt.hpp"

namespace harmar::auth::oauth {
namespace {

namespace js = boost::json;

Error bad_token(std::string detail) { return Error::unauthorized("id_token refused: " + std::move(detail), "invalid_id_token"); }

Error bad_jwks(std::string detail) {
  Error e;
  e.status = 502;
  e.code = "invalid_jwks";
  e.detail = "the identity provider's keys are unusable: " + std::move(detail);
  return e;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::optional<std::string> str(const js::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end() || !it->value().is_string()) return std::nullopt;
  return std::string(it->value().as_string());
}

Pkey rsa_key(const std::string& n, const std::string& e) {
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;
  EVP_PKEY* key = nullptr;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) && (params = OSSL_PARAM_BLD_to_param(bld)) &&
      (ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr)) && EVP_PKEY_fromdata_init(ctx) > 0)
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  return Pkey(key);
}

Pkey p256_key(const std::string& x, const std::string& y) {
  if (x.size() != 32 || y.size() != 32) return nullptr;
  std::string point = "\x04" + x + y;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>("prime256v1"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  if (ctx && EVP_PKEY_fromdata_init(ctx) > 0) EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  return Pkey(key);
}

// A raw ES256 signature (r || s, 32 bytes each) as the DER ECDSA-Sig-Value OpenSSL verifies.
std::optional<std::string> es256_der(std::string_view raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool digest_verify(EVP_PKEY* key, std::string_view input, std::string_view sig) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  bool ok = md && EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

bool allowed_alg(std::string_view alg) { return alg == "RS256" || alg == "ES256"; }

struct Parts {
  js::object header, payload;
  std::string signing_input, signature;
};

Result<Parts> split(std::string_view token) {
  if (token.size() > kMaxIdTokenBytes) return bad_token("too large");
  auto d1 = token.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return bad_token("not a compact JWS");
  auto header = jwt::b64url_decode(token.substr(0, d1));
  auto payload = jwt::b64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  auto sig = jwt::b64url_decode(token.substr(d2 + 1));
  if (!header || !payload || !sig) return bad_token("not base64url");
  Parts p;
  boost::system::error_code ec;
  auto h = js::parse(*header, ec);
  if (ec || !h.is_object()) return bad_token("header is not a JSON object");
  auto b = js::parse(*payload, ec);
  if (ec || !b.is_object()) return bad_token("payload is not a JSON object");
  p.header = std::move(h.as_object());
  p.payload = std::move(b.as_object());
  p.signing_input = std::string(token.substr(0, d2));
  p.signature = std::move(*sig);
  auto alg = str(p.header, "alg");
  if (!alg || !allowed_alg(*alg)) return bad_token("alg must be RS256 or ES256");
  if (p.header.contains("crit")) return bad_token("crit headers are not supported");
  if (p.header.contains("kid") && !p.header.at("kid").is_string()) return bad_token("kid is not a string");
  return p;
}

std::optional<int64_t> num(const js::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end()) return std::nullopt;
  if (it->value().is_int64()) return it->value().as_int64();
  if (it->value().is_uint64() && it->value().as_uint64() < (uint64_t(1) << 62)) return static_cast<int64_t>(it->value().as_uint64());
  if (it->value().is_double()) return static_cast<int64_t>(it->value().as_double());
  return std::nullopt;
}

}  // namespace

struct JwkSet::Key {
  std::string kid, kty, alg;  // alg "" when the JWK does not say
  Pkey pkey;
};

JwkSet::JwkSet() = default;
JwkSet::~JwkSet() = default;
JwkSet::JwkSet(JwkSet&&) noexcept = default;
JwkSet& JwkSet::operator=(JwkSet&&) noexcept = default;

Result<JwkSet> JwkSet::parse(std::string_view json) {
  boost::system::error_code ec;
  auto v = js::parse(json, ec);
  if (ec || !v.is_object() || !v.as_object().contains("keys") || !v.as_object().at("keys").is_array())
    return bad_jwks("not a JWK set");
  JwkSet set;
  for (const auto& item : v.as_object().at("keys").as_array()) {
    if (!item.is_object() || set.keys_.size() >= 32) continue;
    const auto& o = item.as_object();
    auto kty = str(o, "kty");
    auto use = str(o, "use");
    if (!kty || (use && *use != "sig")) continue;
    auto k = std::make_unique<Key>();
    k->kid = str(o, "kid").value_or("");
    k->kty = *kty;
    k->alg = str(o, "alg").value_or("");
    if (*kty == "RSA") {
      auto n = str(o, "n");
      auto e = str(o, "e");
      std::optional<std::string> nb, eb;
      if (n && e) nb = jwt::b64url_decode(*n), eb = jwt::b64url_decode(*e);
      if (!nb || !eb || nb->size() < 256) continue;  // RSA keys under 2048 bits are refused
      k->pkey = rsa_key(*nb, *eb);
    } else if (*kty == "EC") {
      auto crv = str(o, "crv");
      auto x = str(o, "x");
      auto y = str(o, "y");
      if (!crv || *crv != "P-256" || !x || !y) continue;
      auto xb = jwt::b64url_decode(*x);
      auto yb = jwt::b64url_decode(*y);
      if (!xb || !yb) continue;
      k->pkey = p256_key(*xb, *yb);
    }
    if (k->pkey) set.keys_.push_back(std::move(k));
  }
  if (set.keys_.empty()) return bad_jwks("no RSA or P-256 signing key");
  return set;
}

bool JwkSet::has_kid(std::string_view kid) const {
  for (const auto& k : keys_)
    if (k->kid == kid) return true;
  return false;
}

std::size_t JwkSet::size() const { return keys_.size(); }

Status JwkSet::verify(std::string_view alg, const std::optional<std::string>& kid, std::string_view signing_input,
                      std::string_view signature) const {
  std::string_view kty = alg == "RS256" ? "RSA" : alg == "ES256" ? "EC" : "";
  if (kty.empty()) return bad_token("alg must be RS256 or ES256");
  const Key* chosen = nullptr;
  int candidates = 0;
  for (const auto& k : keys_) {
    if (k->kty != kty || (!k->alg.empty() && k->alg != alg)) continue;
    if (kid) {
      if (k->kid == *kid) chosen = k.get();
    } else {
      ++candidates;
      chosen = k.get();
    }
  }
  if (!kid && candidates > 1) return bad_token("no kid, and the provider has several keys");
  if (!chosen) return bad_token(kid ? "unknown kid " + *kid + " for " + std::string(alg) : "no key for " + std::string(alg));
  std::string sig(signature);
  if (alg == "ES256") {
    auto der = es256_der(signature);
    if (!der) return bad_token("malformed ES256 signature");
    sig = std::move(*der);
  }
  if (!digest_verify(chosen->pkey.get(), signing_input, sig)) return bad_token("bad signature");
  return {};
}

Result<std::optional<std::string>> id_token_kid(std::string_view token) {
  HARMAR_TRY(Parts p, split(token));
  return str(p.header, "kid");
}

Result<IdTokenClaims> verify_id_token(std::string_view token, const JwkSet& keys, const IdTokenExpectations& expect) {
  HARMAR_TRY(Parts p, split(token));
  std::string alg = *str(p.header, "alg");
  auto sig_ok = keys.verify(alg, str(p.header, "kid"), p.signing_input, p.signature);
  if (!sig_ok.ok()) return std::move(sig_ok).error();

  const js::object& c = p.payload;
  if (str(c, "iss").value_or("") != expect.issuer) return bad_token("iss is not " + expect.issuer);
  bool aud_ok = false;
  std::size_t audiences = 0;
  if (auto it = c.find("aud"); it != c.end()) {
    if (it->value().is_string()) {
      audiences = 1;
      aud_ok = it->value().as_string() == expect.client_id;
    } else if (it->value().is_array()) {
      for (const auto& a : it->value().as_array()) {
        ++audiences;
        aud_ok = aud_ok || (a.is_string() && a.as_string() == expect.client_id);
      }
    }
  }
  if (!aud_ok) return bad_token("aud does not name this client");
  if (audiences > 1 && str(c, "azp").value_or("") != expect.client_id) return bad_token("azp is not this client");
  if (auto azp = str(c, "azp"); azp && *azp != expect.client_id) return bad_token("azp is not this client");
  auto exp = num(c, "exp");
  auto iat = num(c, "iat");
  if (!exp) return bad_token("exp is missing");
  if (*exp + expect.skew_s <= expect.now_s) return bad_token("expired");
  if (!iat) return bad_token("iat is missing");
  if (*iat > expect.now_s + expect.skew_s) return bad_token("iat is in the future");
  if (auto nbf = num(c, "nbf"); nbf && *nbf > expect.now_s + expect.skew_s) return bad_token("not valid yet (nbf)");
  auto nonce = str(c, "nonce");
  if (!nonce || *nonce != expect.nonce) return bad_token("nonce does not match this sign-in");
  auto sub = str(c, "sub");
  if (!sub || sub->empty() || sub->size() > 255) return bad_token("sub is missing");

  IdTokenClaims out;
  out.sub = *sub;
  out.email = str(c, "email").value_or("");
  if (auto it = c.find("email_verified"); it != c.end()) {
    if (it->value().is_bool()) out.email_verified = it->value().as_bool();
    else if (it->value().is_string()) out.email_verified = it->value().as_string() == "true";  // some providers
  }
  out.name = str(c, "name").value_or("");
  out.exp = *exp;
  out.iat = *iat;
  return out;
}

}  // namespace harmar::auth::oauth
