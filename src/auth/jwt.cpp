#include "auth/jwt.hpp"

#include <sodium.h>

#include <boost/json.hpp>

#include <cctype>

namespace harmar::auth::jwt {

namespace js = boost::json;

namespace {

constexpr std::size_t kMaxHeaderBytes = 512;  // encoded

Error invalid(std::string detail) { return Error::unauthorized(std::move(detail), "invalid_token"); }

struct Split {
  std::string_view header, payload, signature, signing_input;
};

Result<Split> split(std::string_view token) {
  if (token.empty()) return invalid("empty token");
  if (token.size() > kMaxTokenBytes) return invalid("token too large");
  auto d1 = token.find('.');
  if (d1 == std::string_view::npos) return invalid("not a compact JWS");
  auto d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return invalid("not a compact JWS");
  if (token.find('.', d2 + 1) != std::string_view::npos) return invalid("not a compact JWS");
  Split s{token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1), token.substr(0, d2)};
  if (s.header.empty() || s.payload.empty() || s.signature.empty()) return invalid("empty JWS part");
  if (s.header.size() > kMaxHeaderBytes) return invalid("header too large");
  return s;
}

Result<js::object> decode_object(std::string_view part, const char* what) {
  auto raw = b64url_decode(part);
  if (!raw) return invalid(std::string(what) + " is not base64url");
  js::parse_options po;
  po.max_depth = 4;
  boost::system::error_code ec;
  js::value v = js::parse(*raw, ec, {}, po);
  if (ec || !v.is_object()) return invalid(std::string(what) + " is not a JSON object");
  return std::move(v.as_object());
}

// Returns the kid when the header is exactly what we issue: EdDSA, a kid, no crit.
Result<std::string> check_header(const js::object& h) {
  const js::value* alg = h.if_contains("alg");
  if (!alg || !alg->is_string()) return invalid("header has no alg");
  if (alg->as_string() != "EdDSA") return invalid("algorithm " + std::string(alg->as_string().subview()) + " is not accepted");
  if (h.contains("crit")) return invalid("crit headers are not supported");
  if (const js::value* typ = h.if_contains("typ"); typ && !(typ->is_string() && typ->as_string() == "JWT"))
    return invalid("typ must be JWT");
  const js::value* kid = h.if_contains("kid");
  if (!kid || !kid->is_string() || kid->as_string().empty() || kid->as_string().size() > 64)
    return invalid("header has no valid kid");
  return std::string(kid->as_string().subview());
}

std::optional<int64_t> int_claim(const js::object& o, std::string_view k) {
  const js::value* v = o.if_contains(k);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v->as_uint64());
  return std::nullopt;
}

std::optional<std::string> string_claim(const js::object& o, std::string_view k, std::size_t max = 256) {
  const js::value* v = o.if_contains(k);
  if (!v || !v->is_string() || v->as_string().size() > max) return std::nullopt;
  return std::string(v->as_string().subview());
}

}  // namespace

std::string b64url_encode(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> b64url_decode(std::string_view text) {
  if (text.empty()) return std::string();
  // libsodium decodes some bytes >= 0x80 as if they were alphabet characters: check first.
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (!std::isalnum(c) && c != '-' && c != '_') return std::nullopt;
  }
  std::string out(text.size() * 3 / 4 + 3, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  if (end != text.data() + text.size()) return std::nullopt;
  out.resize(len);
  return out;
}

std::string sign(const Claims& c, std::string_view kid, const SecretKey& sk) {
  js::object header{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", kid}};
  js::array roles;
  for (const auto& r : c.roles) roles.emplace_back(r);
  js::object payload{{"iss", c.iss}, {"sub", c.sub},   {"sid", c.sid}, {"roles", std::move(roles)},
                     {"iat", c.iat}, {"nbf", c.nbf},   {"exp", c.exp}, {"jti", c.jti}};
  std::string input = b64url_encode(js::serialize(header));
  input += '.';
  input += b64url_encode(js::serialize(payload));
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(), sk.data());
  input += '.';
  input += b64url_encode(std::string_view(reinterpret_cast<const char*>(sig), sizeof sig));
  return input;
}

Result<std::string> peek_kid(std::string_view token) {
  HARMAR_TRY(Split s, split(token));
  HARMAR_TRY(js::object h, decode_object(s.header, "header"));
  return check_header(h);
}

Result<Claims> verify(std::string_view token,
                      const std::function<std::optional<PublicKey>(std::string_view kid)>& key_for,
                      const VerifyOptions& opts) {
  HARMAR_TRY(Split s, split(token));
  HARMAR_TRY(js::object h, decode_object(s.header, "header"));
  HARMAR_TRY(std::string kid, check_header(h));
  std::optional<PublicKey> key = key_for(kid);
  if (!key) return invalid("unknown kid");
  auto sig = b64url_decode(s.signature);
  if (!sig || sig->size() != crypto_sign_BYTES) return invalid("malformed signature");
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig->data()),
                                  reinterpret_cast<const unsigned char*>(s.signing_input.data()),
                                  s.signing_input.size(), key->data()) != 0)
    return invalid("bad signature");

  HARMAR_TRY(js::object p, decode_object(s.payload, "payload"));
  Claims c;
  auto iss = string_claim(p, "iss");
  auto sub = string_claim(p, "sub", 64);
  auto sid = string_claim(p, "sid", 64);
  auto exp = int_claim(p, "exp");
  if (!iss || !sub || sub->empty() || !sid || !exp) return invalid("missing claims");
  if (*iss != opts.issuer) return invalid("wrong issuer");
  c.iss = std::move(*iss);
  c.sub = std::move(*sub);
  c.sid = std::move(*sid);
  c.exp = *exp;
  c.nbf = int_claim(p, "nbf").value_or(0);
  c.iat = int_claim(p, "iat").value_or(0);
  c.jti = string_claim(p, "jti", 64).value_or("");
  if (c.exp <= opts.now_s - opts.leeway_s) return Error::unauthorized("the access token has expired", "token_expired");
  if (c.nbf > opts.now_s + opts.leeway_s) return invalid("token not valid yet");
  if (c.iat > opts.now_s + opts.leeway_s) return invalid("token issued in the future");
  if (const js::value* roles = p.if_contains("roles")) {
    if (!roles->is_array() || roles->as_array().size() > 64) return invalid("roles must be an array");
    for (const auto& r : roles->as_array()) {
      if (!r.is_string() || r.as_string().size() > 64) return invalid("roles must be strings");
      c.roles.emplace_back(r.as_string().subview());
    }
  }
  return c;
}

}  // namespace harmar::auth::jwt
