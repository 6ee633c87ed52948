// The parsers of the other sign-in paths (src/auth/{oauth_idtoken,sms}.*): OIDC key sets, id_tokens
// and phone numbers from outside. The first byte picks the parser; any input must be refused or
// accepted without crashing, and no id_token may verify.
#include <cstdlib>
#include <string>

#include "auth/oauth_idtoken.hpp"
#include "auth/sms.hpp"

using namespace harmar::auth;

namespace {

// A fixed P-256 public key (RFC 7515 A.3's example: its private half is published, but a fuzzer
// cannot forge an ECDSA signature over claims that also pass every check).
constexpr const char* kJwks =
    R"({"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
    R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})";

const oauth::JwkSet& keys() {
  static const oauth::JwkSet set = [] {
    auto s = oauth::JwkSet::parse(kJwks);
    if (!s.ok()) std::abort();
    return std::move(s).value();
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto set = oauth::JwkSet::parse(in);
      if (set.ok() && set->size() == 0) std::abort();  // parse promises at least one key
      break;
    }
    case 1: {
      (void)oauth::id_token_kid(in);
      oauth::IdTokenExpectations e;
      e.issuer = "https://idp.example.test";
      e.client_id = "harmar";
      e.nonce = "n";
      e.now_s = 1'800'000'000;
      if (oauth::verify_id_token(in, keys(), e).ok()) std::abort();  // nobody can sign for this key
      break;
    }
    default: {
      auto phone = normalize_phone(in, "86");
      if (phone && (phone->size() < 9 || phone->size() > 16 || (*phone)[0] != '+')) std::abort();
      break;
    }
  }
  return 0;
}
